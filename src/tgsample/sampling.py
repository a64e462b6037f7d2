"""The public sampling entry point: :func:`sample`."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from .conventions import resolve_run
from .errors import ConfigError, ShapeMismatchError
from .guidance import Guidance, NoGuidance
from .noise import GeneratorNoise, NoiseStreams, generator_seeds
from .schedules import validate_sigmas
from .solvers import GuidedModel

GuidanceSpec = Union[None, str, Guidance, Mapping[str, Any]]


def _registry():
    from . import registry

    return registry


def resolve_model(model: Any, kind: str = "students") -> Any:
    """A registry name becomes the registered :class:`~tgsample.models.Model`; objects pass through."""
    return _registry().create(kind, model) if isinstance(model, str) else model


def resolve_guidance(spec: GuidanceSpec) -> Guidance:
    """A guidance from an object, a registry name, or a mapping ``{"name": ..., **options}``.

    In a mapping, ``teacher`` may itself be a teacher's registry name and ``student`` / ``inner`` /
    ``outside`` nested guidance specs, so a whole configuration can be written in YAML.
    """
    if spec is None:
        return NoGuidance()
    if isinstance(spec, str):
        return _registry().create("guidance", spec)
    if isinstance(spec, Mapping):
        options = dict(spec)
        try:
            name = options.pop("name")
        except KeyError:
            raise ConfigError(f"a guidance mapping needs a 'name' key; got keys {sorted(spec)}") from None
        if isinstance(options.get("teacher"), str):
            options["teacher"] = resolve_model(options["teacher"], "teachers").denoiser
        elif hasattr(options.get("teacher"), "denoiser"):
            options["teacher"] = options["teacher"].denoiser
        for key in ("student", "inner", "outside"):
            if key in options and options[key] is not None and not isinstance(options[key], Guidance):
                options[key] = resolve_guidance(options[key])
        return _registry().create("guidance", name, **options)
    if isinstance(spec, Guidance):
        return spec
    raise ConfigError(f"guidance={spec!r} is not a Guidance, a registry name or a mapping with 'name'")


def resolve_solver(solver: Union[str, Callable[..., Tensor]]) -> Callable[..., Tensor]:
    """A solver function from a registry name (``euler``, ``k_heun``, ...) or a callable."""
    if isinstance(solver, str):
        return _registry().get("solvers", solver)
    if callable(solver):
        return solver
    raise ConfigError(f"solver={solver!r} is neither a registry name nor a callable")


def resolve_sigmas(model: Any, sigmas: Any = None, schedule: Union[None, str, Callable] = None,
                   steps: Optional[int] = None, **options: Any) -> Tensor:
    """The schedule: explicit ``sigmas``, or ``schedule`` (name or function) with ``steps``, else the model's default."""
    if sigmas is not None:
        if schedule is not None:
            raise ConfigError("give either sigmas=... or schedule=..., not both")
        return validate_sigmas(sigmas)
    defaults = getattr(model, "defaults", {}) or {}
    if schedule is None:
        schedule = defaults.get("schedule", "karras")
        options = {**defaults.get("schedule_options", {}), **options}
    if steps is None:
        steps = defaults.get("steps", 10)
    fn = _registry().get("schedules", schedule) if isinstance(schedule, str) else schedule
    return validate_sigmas(fn(steps, model, **options))


def _batch_size(cond: Mapping[str, Any], seeds: Sequence[int]) -> int:
    b = len(seeds)
    for k, v in cond.items():
        if isinstance(v, Tensor) and v.ndim > 0 and v.shape[0] != b:
            raise ShapeMismatchError(f"cond[{k!r}] has batch size {v.shape[0]} but {b} seeds were given; give one seed per sample")
    return b


def _device_dtype(denoiser: Any) -> tuple[torch.device, torch.dtype]:
    for p in getattr(denoiser, "parameters", lambda: iter(()))():
        return p.device, (p.dtype if p.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.float32


@torch.no_grad()
def sample(model: Any, cond: Optional[Mapping[str, Any]] = None, *, seeds: Optional[Sequence[int]] = None,
           sigmas: Any = None, schedule: Union[None, str, Callable] = None, steps: Optional[int] = None,
           solver: Union[str, Callable[..., Tensor]] = "euler", guidance: GuidanceSpec = None,
           uncond: Optional[Mapping[str, Any]] = None, shape: Optional[Sequence[int]] = None,
           progress: bool = False, callback: Optional[Callable[[dict], Any]] = None,
           device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None,
           generator: Optional[torch.Generator] = None, latents: Optional[Tensor] = None,
           **solver_options: Any) -> Tensor:
    """Sample a (student) model with any guidance and solver; returns the final x0 samples ``[B, *shape]``.

    Example::

        x = tgsample.sample("digits-compact", cond, uncond=uncond, seeds=range(8), steps=4, solver="euler",
                            guidance=TeacherGuidance(teacher, lam=0.3, steps=1))

    Args:
        model: a denoiser ``D(x, sigma, **cond)``, a :class:`~tgsample.models.Model`, or a student's registry name.
        cond: conditioning dict (batch-first tensors), passed to the denoiser as keywords.
        seeds: one seed per sample. Sample ``i`` depends only on ``seeds[i]`` (and its cond), never on
            the batch size or its position in the batch. Optional with ``generator``.
        sigmas: an explicit schedule of noise levels (sigmas, not timesteps): strictly decreasing,
            ending at 0. Give either this or ``schedule``; with neither, the model's own default.
        schedule: a schedule's registry name (``karras``, ``lcm``, ``trailing``, ...) or a function
            ``fn(steps, model) -> sigmas``; discrete schedules convert timesteps to sigmas themselves.
        steps: number of solver steps (``len(sigmas) - 1``); default the model's, else 10.
        solver: registry name (``euler``, ``euler_ancestral``, ``dpmpp_2m``, ``dpmpp_2s_ancestral``, ``lcm``,
            ``tcd``, ``k_*`` for k-diffusion's stock samplers) or a solver function.
        guidance: a :class:`~tgsample.guidance.Guidance`, a registry name, or ``{"name": ..., **options}``.
        uncond: the unconditional (or negative) conditioning dict for CFG-type guidances.
        shape: per-sample shape (default: the model's ``sample_shape``).
        progress: show a progress bar over the steps.
        callback: called at each step with ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` (k-diffusion's keys).
        device: where to sample (default: the denoiser's parameters' device, else the CPU).
        dtype: the sampling dtype (default: the denoiser's parameters' dtype, else float32).
        generator: diffusers' seeding convention instead of per-sample streams: the initial noise and the
            solver's noise are drawn from this ``torch.Generator``, the whole batch per call, as a diffusers
            pipeline given ``generator=`` draws them (:class:`~tgsample.noise.GeneratorNoise`); the teacher's
            draws keep per-sample streams (``seeds``, else seeds derived from ``generator.initial_seed()``).
        latents: the initial noise ``z`` ``[B, *shape]``, in diffusers' convention: the unit-variance tensor a
            diffusers pipeline takes as ``latents=`` (it scales it by ``init_noise_sigma``); the start is
            ``x = init_scale(sigmas[0]) * latents``. Give ``z = x / init_scale`` to start from a sigma-space ``x``.
        **solver_options: passed to the solver (``eta``, ``gamma``, ...).

    Returns:
        The final samples, shape ``[B, *shape]``; initial noise ``x = init_scale(sigmas[0]) * z`` with ``z``
        from ``latents``, else each seed's ``"init"`` stream (or ``generator``). ``init_scale`` is the model's
        ``init_noise_scale`` (``sqrt(1 + sigma^2)`` for VP models), or diffusers' where the model was loaded
        with ``diffusers_parity=True`` (:mod:`tgsample.conventions`).
    """
    model = resolve_model(model)
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
    run = resolve_run(denoiser, solver, schedule if schedule is not None else _default_schedule(model, sigmas))
    sigmas = resolve_sigmas(model, sigmas, schedule, steps).to(dev, dt)
    noise = NoiseStreams(seeds, dev, dt) if generator is None else GeneratorNoise(generator, seeds, dev, dt)
    guided = GuidedModel(run.denoiser, resolve_guidance(guidance), cond, uncond, sigmas, noise)
    x = _initial_noise(noise, latents, shape) * run.init_scale(sigmas[0])
    return resolve_solver(solver)(guided, x, sigmas, callback=callback, disable=not progress,
                                  **{**run.solver_options, **solver_options})


def _default_schedule(model: Any, sigmas: Any) -> Any:
    return None if sigmas is not None else (getattr(model, "defaults", {}) or {}).get("schedule")


def _seeds(seeds: Optional[Sequence[int]], generator: Optional[torch.Generator], cond: Mapping[str, Any],
           latents: Optional[Tensor]) -> list[int]:
    """The per-sample seeds; with ``generator`` and no seeds, derived from it for the batch size of
    ``latents`` or ``cond``."""
    if seeds is not None:
        return list(seeds)
    if generator is None:
        raise ConfigError("give seeds=[...] (one per sample), or generator=torch.Generator().manual_seed(s) "
                          "for diffusers' seeding convention")
    sizes = [v.shape[0] for v in [latents, *cond.values()] if isinstance(v, Tensor) and v.ndim > 0]
    if not sizes:
        raise ConfigError("with generator= and no seeds the batch size is unknown: pass seeds=, latents= or cond")
    return generator_seeds(generator, sizes[0])


def _initial_noise(noise: NoiseStreams, latents: Optional[Tensor], shape: tuple[int, ...]) -> Tensor:
    """``z``: the given ``latents`` (checked), else a draw from the ``init`` purpose."""
    if latents is None:
        return noise.randn("init", shape)
    latents = torch.as_tensor(latents)
    if tuple(latents.shape) != (len(noise), *shape):
        raise ShapeMismatchError(f"latents has shape {tuple(latents.shape)}; expected {(len(noise), *shape)} "
                                 f"(one unit-variance noise tensor per sample)")
    return latents.to(noise.device, noise.dtype)
