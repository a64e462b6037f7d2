"""The ``Guidance`` protocol: what a guidance receives and what it returns.

A solver step needs two x0 estimates (docs: Concepts):

* ``denoised`` -- the estimate the step moves toward;
* ``direction`` -- the estimate whose implied noise ``(x - direction) / sigma`` carries the
  trajectory to the next noise level.

Plain sampling and CFG return the same tensor twice; CFG++ and teacher guidance are
the cases where they differ. One solver implementation therefore serves all guidances.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Optional, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..errors import NonFiniteError, ShapeMismatchError
from ..noise import NoiseStreams

Cond = Mapping[str, Any]


@dataclass(frozen=True)
class Estimate:
    """The pair a guidance returns: ``denoised`` (move toward) and ``direction`` (implied noise)."""

    denoised: Tensor
    direction: Tensor

    @classmethod
    def same(cls, x0: Tensor) -> "Estimate":
        """An estimate whose direction is its denoised (no split)."""
        return cls(x0, x0)


@dataclass(frozen=True)
class StepContext:
    """What a solver knows at a model evaluation.

    Attributes:
        cond, uncond: conditioning dicts (batch-first tensors), passed to the denoiser as keywords.
        index: the step number ``i`` (``None`` under a stock k-diffusion sampler, which has none).
        sigmas: the whole schedule (``None`` where unknown).
        noise: the per-sample random streams (``None``: draws are refused).
        stage: the evaluation within a step (0, or 1 for the second stage of a two-stage solver).
    """

    cond: Cond
    uncond: Optional[Cond] = None
    index: Optional[int] = None
    sigmas: Optional[Tensor] = None
    noise: Optional[NoiseStreams] = None
    stage: int = 0

    @property
    def sigma_next(self) -> Optional[Tensor]:
        """``sigma_{i+1}``, the next level on the schedule (``None`` where unknown)."""
        if self.index is None or self.sigmas is None:
            return None
        return self.sigmas[self.index + 1]

    def with_cond(self, cond: Cond, uncond: Optional[Cond] = None) -> "StepContext":
        """A copy with other conditioning (e.g. a teacher's), the step, schedule and noise unchanged."""
        return replace(self, cond=cond, uncond=uncond)


@runtime_checkable
class Guidance(Protocol):
    """A guidance turns one model evaluation into an :class:`Estimate`.

    Implement ``__call__(model, x, sigma, ctx) -> Estimate`` and set the two flags:

    * ``needs_step`` -- it reads ``ctx.index`` / ``ctx.sigma_next`` (step-aware guidances);
    * ``splits_direction`` -- its ``direction`` can differ from its ``denoised``.

    Stock k-diffusion samplers can run only guidances with both flags false.
    Subclassing this protocol gives both flags the default ``False``.
    """

    needs_step: bool = False
    splits_direction: bool = False

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate: ...


def _checked(out: Tensor, x: Tensor, model: Any, sigma: Tensor) -> Tensor:
    if out.shape != x.shape:
        raise ShapeMismatchError(
            f"{type(model).__name__} returned shape {tuple(out.shape)} for an input of shape "
            f"{tuple(x.shape)}; a denoiser must return an x0 estimate of the input's shape"
        )
    if not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"{type(model).__name__} returned NaN or inf at sigma={sigma.flatten()[:4].tolist()} "
            f"for batch rows {bad[:8]}; outputs must be finite"
        )
    return out


def denoise(model: Any, x: Tensor, sigma: Tensor, cond: Cond) -> Tensor:
    """One checked model call: ``D(x, sigma, **cond)`` with ``sigma`` broadcast to ``[B]``.

    Raises :class:`ShapeMismatchError` or :class:`NonFiniteError` on a bad output.
    """
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
    return _checked(model(x, sigma, **cond), x, model, sigma)


def _cat(a: Any, b: Any, batch: int) -> Any:
    if isinstance(a, Tensor) and a.ndim > 0 and a.shape[0] == batch:
        return torch.cat([a, b])
    return a  # a shared, non-batched value: must agree between cond and uncond


def denoise_pair(model: Any, x: Tensor, sigma: Tensor, cond: Cond, uncond: Cond) -> tuple[Tensor, Tensor]:
    """``(D_c, D_u)`` from **one** batched model call on ``[x; x]``."""
    b = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(b)
    keys = set(cond) | set(uncond)
    both = {k: _cat(cond.get(k, uncond.get(k)), uncond.get(k, cond.get(k)), b) for k in keys}
    out = denoise(model, torch.cat([x, x]), torch.cat([sigma, sigma]), both)
    return out[:b], out[b:]
