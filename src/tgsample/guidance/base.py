"""The guidance contract: what a guidance receives ([`StepContext`][tgsample.guidance.base.StepContext]) and returns
([`Estimate`][tgsample.guidance.base.Estimate]).

A solver step needs two x0 estimates (docs: Concepts):

* `denoised` -- the estimate the step moves toward;
* `direction` -- the estimate whose implied noise `(x - direction) / sigma` carries the
  trajectory to the next noise level.

Plain sampling and CFG return the same tensor twice; CFG++ and teacher guidance are
the cases where they differ. One solver implementation therefore serves all guidances.

The solver side ([`tgsample.solvers.GuidedModel`][tgsample.solvers.GuidedModel]) guarantees one form: `sigma` and
`ctx.sigma_next` are per-sample tensors of shape `[B]` in `x`'s dtype and device. What a
guidance needs from the solver it declares with two flags (`needs_step`, `splits_direction`);
solvers declare what they provide, and a mismatch is refused once, before sampling starts
([`tgsample.solvers.check_solver`][tgsample.solvers.check_solver]).
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, replace
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import Tensor

from ..errors import ConfigError, NonFiniteError, ShapeMismatchError, UnsupportedGuidanceError
from ..noise import NoiseStreams

Cond = Mapping[str, Any]
"""A conditioning dict: batch-first tensors passed to a denoiser as keywords."""

__all__ = ["Cond", "Estimate", "Guidance", "StepContext", "denoise", "denoise_pair", "is_guidance", "require_uncond"]


@dataclass(frozen=True)
class Estimate:
    """The pair a guidance returns: `denoised` (move toward) and `direction` (implied noise)."""

    denoised: Tensor
    direction: Tensor

    @classmethod
    def same(cls, x0: Tensor) -> "Estimate":
        """An estimate whose direction is its denoised (no split)."""
        return cls(x0, x0)


@dataclass(frozen=True)
class StepContext:
    """What a solver knows at a model evaluation (the guidance's `sigma` argument is the level itself).

    Attributes:
        cond: the conditioning dict (batch-first tensors), passed to the denoiser as keywords.
        uncond: the unconditional (or negative) conditioning dict, the same way; `None` without one.
        index: the step number `i` (`None` where the solver provides none, e.g. k-diffusion's samplers).
        sigma_next: `sigma_{i+1}` per sample, shape `[B]` like `sigma` (`None` where unknown).
            A two-stage solver gives the step's `sigma_{i+1}` at both stages.
        sigmas: the whole schedule (`None` where unknown).
        streams: the per-sample random streams (`None`: draws are refused).
        stage: the evaluation within a step (0, or 1 for the second stage of a two-stage solver).
        state: per-run scratch space for stateful guidances ([`scratch`][tgsample.guidance.base.StepContext.scratch]);
            one dict per sampling run.
    """

    cond: Cond
    uncond: Optional[Cond] = None
    index: Optional[int] = None
    sigma_next: Optional[Tensor] = None
    sigmas: Optional[Tensor] = None
    streams: Optional[NoiseStreams] = None
    stage: int = 0
    state: Optional[dict] = None

    def with_cond(self, cond: Cond, uncond: Optional[Cond] = None) -> "StepContext":
        """A copy with other conditioning (e.g. a teacher's), everything else unchanged."""
        return replace(self, cond=cond, uncond=uncond)

    def scratch(self, owner: Any) -> dict:
        """`owner`'s own dict in this run's scratch state: empty at the run's first evaluation, kept
        across its steps, gone with the run (APG's momentum lives here)."""
        if self.state is None:
            raise ConfigError(f"{type(owner).__name__} keeps state across steps, but this context has no per-run "
                              "state: evaluate it through tgsample.GuidedModel (tgsample.sample does)")
        return self.state.setdefault(id(owner), {})

    def require_step(self, who: str) -> int:
        """`index`, or [`UnsupportedGuidanceError`][tgsample.errors.UnsupportedGuidanceError] saying `who` needs the
        step (and `sigma_next`)."""
        if self.index is None or self.sigmas is None:
            raise UnsupportedGuidanceError(
                f"{who} needs the step number and the schedule, which this solver does not provide; sample "
                "through tgsample.sample, which checks the solver first and names the ones that can")
        return self.index


def require_uncond(ctx: StepContext, who: str) -> Cond:
    """`ctx.uncond`, or [`ConfigError`][tgsample.errors.ConfigError] saying `who` needs one (the message plugins should
    use)."""
    if ctx.uncond is None:
        raise ConfigError(f"{who} needs an unconditional input: pass uncond=... (e.g. the empty prompt or the null class)")
    return ctx.uncond


class Guidance:
    """Base class of guidances: turn one model evaluation into an [`Estimate`][tgsample.guidance.base.Estimate].

    Implement `__call__(model, x, sigma, ctx) -> Estimate` (`sigma` is `[B]`) and, where they
    apply, set the two flags:

    * `needs_step` -- it reads `ctx.index` / `ctx.sigma_next` (step-aware guidances);
    * `splits_direction` -- its `direction` can differ from its `denoised`.

    Stock k-diffusion samplers can run only guidances with both flags false. Write a guidance
    as a `@dataclass(frozen=True)`: its fields are its parameters
    ([`tgsample.guidance.spec.part`][tgsample.guidance.spec.part]
    marks nested guidances, [`model_part`][tgsample.guidance.spec.model_part] a teacher), so YAML specs,
    `repr`, equality and [`to_spec`][tgsample.guidance.base.Guidance.to_spec] come for free. Override
    [`check`][tgsample.guidance.base.Guidance.check] to refuse a schedule
    before sampling starts.
    """

    needs_step: bool = False
    splits_direction: bool = False

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        raise NotImplementedError

    def to_spec(self) -> dict:
        """`{"name": ..., **parameters}`, nested guidances as specs
        ([`tgsample.guidance.spec.to_spec`][tgsample.guidance.spec.to_spec])."""
        from .spec import to_spec

        return to_spec(self)

    def check(self, sigmas: Tensor) -> None:
        """Raise [`ConfigError`][tgsample.errors.ConfigError] if this guidance cannot run on the schedule `sigmas`
        (called once,
        before sampling). The default checks the nested guidances."""
        from .spec import parts

        for p in parts(self):
            if hasattr(p, "check"):
                p.check(sigmas)


def is_guidance(obj: Any) -> bool:
    """A [`Guidance`][tgsample.guidance.base.Guidance] instance, or a duck-typed one: callable with `needs_step` and
    `splits_direction`."""
    if isinstance(obj, type):
        return False
    return isinstance(obj, Guidance) or (callable(obj) and hasattr(obj, "needs_step")
                                         and hasattr(obj, "splits_direction"))


_EACH_CALL = contextvars.ContextVar("tgsample_finite_each_call", default=True)
"""whether each model call's output is checked for NaN / inf here (a device sync);
[`tgsample.sample`][tgsample.sampling.sample]
turns it off around its solver and checks the final samples once instead
([`finite_checks_deferred`][tgsample.guidance.base.finite_checks_deferred])."""


@contextlib.contextmanager
def finite_checks_deferred() -> Iterator[None]:
    """Within the block, model outputs are not checked for NaN / inf call by call (`torch.isfinite(out).all()`
    reads the device: a host sync per model call); the caller checks the result once
    ([`check_finite_samples`][tgsample.guidance.base.check_finite_samples]). A non-finite model output propagates to the
    samples it touches."""
    token = _EACH_CALL.set(False)
    try:
        yield
    finally:
        _EACH_CALL.reset(token)


def check_finite_samples(x: Tensor) -> Tensor:
    """`x`, or [`NonFiniteError`][tgsample.errors.NonFiniteError] naming the batch rows that hold NaN or inf (one device
    read)."""
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(f"sampling returned NaN or inf for batch rows {bad[:8]}: a model output, guidance or "
                             "solver step was not finite (checked once, on the final samples; outputs must be "
                             "finite). tgsample.guidance.denoise(model, x, sigma, cond) checks a single model call")
    return x


def _checked(out: Tensor, x: Tensor, model: Any, sigma: Tensor) -> Tensor:
    if out.shape != x.shape:
        raise ShapeMismatchError(
            f"{type(model).__name__} returned shape {tuple(out.shape)} for an input of shape "
            f"{tuple(x.shape)}; a denoiser must return an x0 estimate of the input's shape"
        )
    if _EACH_CALL.get() and not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"{type(model).__name__} returned NaN or inf at sigma={sigma[:4].tolist()} "
            f"for batch rows {bad[:8]}; outputs must be finite"
        )
    return out


def _model(model: Any) -> Any:
    """A registered [`Model`][tgsample.models.base.Model] stands for its denoiser."""
    return getattr(model, "denoiser", model)


def denoise(model: Any, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
    """One checked model call: `D(x, sigma, **cond)` with `sigma` broadcast to `[B]`.

    Raises [`ShapeMismatchError`][tgsample.errors.ShapeMismatchError] or
    [`NonFiniteError`][tgsample.errors.NonFiniteError] on a bad output (the finite check is
    deferred to the final samples inside [`tgsample.sample`][tgsample.sampling.sample]:
    [`finite_checks_deferred`][tgsample.guidance.base.finite_checks_deferred]).
    """
    model = _model(model)
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
    return _checked(model(x, sigma, **cond), x, model, sigma)


def _cat(a: Any, b: Any, batch: int) -> Any:
    if isinstance(a, Tensor) and a.ndim > 0 and a.shape[0] == batch:
        return torch.cat([a, b])
    return a  # a shared, non-batched value: must agree between cond and uncond


def denoise_pair(model: Any, x: Tensor, sigma: Tensor, cond: Cond, uncond: Cond) -> tuple[Tensor, Tensor]:
    """`(D_c, D_u)` from **one** batched model call on `[x; x]`."""
    b = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(b)
    keys = set(cond) | set(uncond)
    both = {k: _cat(cond.get(k, uncond.get(k)), uncond.get(k, cond.get(k)), b) for k in keys}
    out = denoise(model, torch.cat([x, x]), torch.cat([sigma, sigma]), both)
    return out[:b], out[b:]


def frozen_set(obj: Any, **values: Any) -> None:
    """Set attributes of a frozen dataclass in its `__post_init__` (normalised parameters)."""
    for k, v in values.items():
        object.__setattr__(obj, k, v)

