"""The public sampling entry point: [`sample`][tgsample.sampling.sample].

Everything a run needs -- schedule, solver, guidance, teacher -- comes from one resolver
([`tgsample.resolve.resolve`][tgsample.resolve.resolve]): explicit arguments > the model's recipe > library defaults.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from .conventions import run_convention
from .errors import ConfigError, ShapeMismatchError
from .guidance.base import check_finite_samples, finite_checks_deferred
from .noise import GeneratorNoise, NoiseStreams, generator_seeds
from .resolve import RecipeArg, Run, resolve
from .solvers import GuidedModel

__all__ = ["sample", "resolve_model"]


def resolve_model(model: Any, kind: str = "students") -> Any:
    """A registry name becomes the registered [`Model`][tgsample.models.base.Model]; objects pass through."""
    if isinstance(model, str):
        from . import registry

        return registry.create(kind, model)
    return model


def _batch_size(cond: Mapping[str, Any], seeds: Sequence[int]) -> int:
    b = len(seeds)
    for k, v in cond.items():
        if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] != b:
            raise ShapeMismatchError(f"cond[{k!r}] has batch size {v.shape[0]} but {b} seeds were given; give one seed per sample")
    return b


def _device_dtype(denoiser: Any) -> tuple[torch.device, torch.dtype]:
    """The denoiser's `sample_device` / `sample_dtype` where it says (flow models: offloaded weights, and a
    pure-noise level that needs float32), else its parameters' device and dtype, else the CPU and float32."""
    device, dtype = getattr(denoiser, "sample_device", None), getattr(denoiser, "sample_dtype", None)
    for p in getattr(denoiser, "parameters", lambda: iter(()))():
        return device or p.device, dtype or (p.dtype if p.is_floating_point() else torch.float32)
    return device or torch.device("cpu"), dtype or torch.float32


@torch.no_grad()
def sample(model: Any, cond: Optional[Mapping[str, Any]] = None, *, seeds: Optional[Sequence[int]] = None,
           recipe: RecipeArg = None,
           sigmas: Any = None, schedule: Union[None, str, Callable] = None,
           schedule_options: Optional[Mapping[str, Any]] = None, steps: Optional[int] = None,
           solver: Union[None, str, Callable[..., Tensor]] = None, solver_options: Optional[Mapping[str, Any]] = None,
           guidance: Any = None, teacher: Any = None, teacher_options: Optional[Mapping[str, Any]] = None,
           uncond: Optional[Mapping[str, Any]] = None, shape: Optional[Sequence[int]] = None,
           progress: bool = False, callback: Optional[Callable[[dict], Any]] = None,
           device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None,
           run: Optional[Run] = None, generator: Optional[torch.Generator] = None, latents: Optional[Tensor] = None,
           **options: Any) -> Tensor:
    """Sample a (student) model; returns the final x0 samples `[B, *shape]`.

    With no settings, the model's own plain recipe runs completely (schedule, solver, its guidance);
    `recipe="++"` runs its teacher-guided one. Every argument below overrides the recipe's field
    of the same name (explicit > recipe > library default):

    ```python
    x = tgsample.sample("digits-compact", cond, uncond=uncond, seeds=range(8), recipe="++")
    x = tgsample.sample(student, cond, uncond=uncond, seeds=range(8), recipe="++", teacher=teacher)
    x = tgsample.sample(student, cond, seeds=range(8), schedule="timesteps", timesteps=[999, 499])
    ```

    Args:
        model: a denoiser `D(x, sigma, **cond)`, a [`Model`][tgsample.models.base.Model], or a student's registry name.
        cond: conditioning dict (batch-first tensors), passed to the denoiser as keywords.
        seeds: one seed per sample. Sample `i` depends only on `seeds[i]` (and its cond), never on
            the batch size or its position in the batch. Optional with `generator`.
        recipe: the recipe to start from: a variant of the model's recipes (`""` plain, the default;
            `"++"` teacher-guided), a [`Recipe`][tgsample.recipes.Recipe], or a mapping of its fields.
        sigmas: an explicit schedule of noise levels (sigmas, not timesteps): strictly decreasing,
            ending at 0; replaces the recipe's schedule and steps.
        schedule: a schedule's registry name (`karras`, `lcm`, `trailing`, `tdd`, `timesteps`, ...) or
            a function `fn(steps, model, **options) -> sigmas`; `schedule_options` its options.
        steps: number of solver steps of the schedule.
        solver: registry name (`euler`, `euler_ancestral`, `dpmpp_2m`, `dpmpp_2s_ancestral`, `lcm`,
            `tcd`, `k_*` for k-diffusion's stock samplers, plugins) or a solver function;
            `solver_options` its options (`eta`, `gamma`, ...).
        guidance: a [`Guidance`][tgsample.guidance.base.Guidance], a registry name, or `{"name": ..., **options}`
            (nestable: [`tgsample.guidance.build`][tgsample.guidance.spec.build]).
        teacher: the teacher for teacher guidance: a registry name (built with `student=model` and
            `teacher_options`) or a built model; default the recipe's.
        uncond: the unconditional (or negative) conditioning dict for CFG-type guidances.
        shape: per-sample shape (default: the model's `sample_shape`).
        progress: show a progress bar over the steps.
        callback: called at each step with `{"x", "i", "sigma", "sigma_hat", "denoised"}` (k-diffusion's keys).
        device: where to sample (default: the denoiser's `sample_device` where it has one -- an offloaded flow
            transformer's compute device --, else its parameters' device, else the CPU).
        dtype: the sampling dtype (default: the denoiser's `sample_dtype` where it has one -- float32 for flow
            models, whose pure-noise level `2**53` does not fit float16 --, else its parameters' dtype, else float32).
        run: an already resolved [`Run`][tgsample.resolve.Run] (from
            [`tgsample.resolve.resolve`][tgsample.resolve.resolve]);
            then no other setting may be given.
        generator: diffusers' seeding convention instead of per-sample streams: the initial noise and the
            solver's noise are drawn from this `torch.Generator`, the whole batch per call, as a diffusers
            pipeline given `generator=` draws them ([`GeneratorNoise`][tgsample.noise.GeneratorNoise]); the teacher's
            draws keep per-sample streams (`seeds`, else seeds derived from `generator.initial_seed()`).
        latents: the initial noise `z` `[B, *shape]`, in diffusers' convention: the unit-variance tensor a
            diffusers pipeline takes as `latents=` (it scales it by `init_noise_sigma`); the start is
            `x = init_scale(sigmas[0]) * latents`. Give `z = x / init_scale` to start from a sigma-space `x`.
        **options: more options of the solver or the schedule, each given to whichever takes it
            (`eta=0.5`, `timesteps=[...]`); a [`ConfigError`][tgsample.errors.ConfigError] if both or neither do.

    Returns:
        The final samples, shape `[B, *shape]`; initial noise `x = init_scale(sigmas[0]) * z` with `z`
        from `latents`, else each seed's `"init"` stream (or `generator`). `init_scale` is the model's
        `init_noise_scale` (`sqrt(1 + sigma^2)` for VP models), or diffusers' where the model was loaded
        with `diffusers_parity=True` ([`tgsample.conventions`][tgsample.conventions]).
    """
    model = resolve_model(model)
    settings = dict(recipe=recipe, sigmas=sigmas, schedule=schedule, schedule_options=schedule_options, steps=steps,
                    solver=solver, solver_options=solver_options, guidance=guidance, teacher=teacher,
                    teacher_options=teacher_options)
    if run is None:
        run = resolve(model, settings.pop("recipe"), options=options, **settings)
    elif options or any(v is not None for v in settings.values()):
        given = sorted([k for k, v in settings.items() if v is not None] + list(options))
        raise ConfigError(f"run=... is already resolved; do not give {given} with it")
    denoiser = getattr(model, "denoiser", model)
    shape = tuple(shape or getattr(model, "sample_shape", None) or getattr(denoiser, "sample_shape", None) or ())
    if not shape:
        raise ConfigError("the sample shape is unknown: pass shape=(C, H, W) or use a model with sample_shape")
    cond = dict(cond or {})
    seeds = _seeds(seeds, generator, cond, latents)
    _batch_size(cond, seeds)
    if uncond is not None:
        _batch_size(uncond, seeds)
    dev, dt = _device_dtype(denoiser)
    dev, dt = torch.device(device) if device is not None else dev, dtype or dt
    schedule_name = run.settings["schedule"] if run.settings["sigmas"] is None else None
    conv = run_convention(denoiser, run.solver_name, schedule_name)
    sig = run.sigmas.to(dev, dt)
    ahead = {"ancestral": len(sig) - 1}  # a solver draws at most once per step: one generator call per run
    streams = (NoiseStreams(seeds, dev, dt, lookahead=ahead) if generator is None
               else GeneratorNoise(generator, seeds, dev, dt, lookahead=ahead))
    guided = GuidedModel(conv.denoiser, run.guidance, cond, uncond, sig, streams)
    x = _initial_noise(streams, latents, shape) * conv.init_scale(sig[0])
    extra = {k: v for k, v in conv.solver_options.items() if k not in run.settings["solver_options"]}
    with finite_checks_deferred():  # no host sync per model call: the final samples are checked once
        x = run.solver(guided, x, sig, callback=callback, disable=not progress, **extra)
    return check_finite_samples(x)


def _seeds(seeds: Optional[Sequence[int]], generator: Optional[torch.Generator], cond: Mapping[str, Any],
           latents: Optional[Tensor]) -> list[int]:
    """The per-sample seeds; with `generator` and no seeds, derived from it for the batch size of
    `latents` or `cond`."""
    if seeds is not None:
        return list(seeds)
    if generator is None:
        raise ConfigError("give seeds=[...] (one per sample), or generator=torch.Generator().manual_seed(s) "
                          "for diffusers' seeding convention")
    sizes = [v.shape[0] for v in [latents, *cond.values()] if isinstance(v, Tensor) and v.ndim > 0]
    if not sizes:
        raise ConfigError("with generator= and no seeds the batch size is unknown: pass seeds=, latents= or cond")
    return generator_seeds(generator, sizes[0])


def _initial_noise(streams: NoiseStreams, latents: Optional[Tensor], shape: tuple[int, ...]) -> Tensor:
    """`z`: the given `latents` (checked), else a draw from the `init` purpose."""
    if latents is None:
        return streams.randn("init", shape)
    latents = torch.as_tensor(latents)
    if tuple(latents.shape) != (len(streams), *shape):
        raise ShapeMismatchError(f"latents has shape {tuple(latents.shape)}; expected {(len(streams), *shape)} "
                                 f"(one unit-variance noise tensor per sample)")
    return latents.to(streams.device, streams.dtype)
