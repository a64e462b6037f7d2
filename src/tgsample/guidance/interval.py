"""Restrict a guidance to a sigma interval or to chosen steps."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from .base import Estimate, Guidance, StepContext, frozen_set
from .cfg import NoGuidance
from .spec import part


def check_step_indices(who: str, steps: Any) -> tuple[int, ...]:
    """`steps` as a tuple of step indices (an int `n` means the first `n` steps)."""
    if isinstance(steps, bool) or not isinstance(steps, (int, Sequence)) or isinstance(steps, str):
        raise ConfigError(f"{who} guided_steps={steps!r} must be a number of leading steps or a list of step indices")
    if isinstance(steps, int):
        if steps < 0:
            raise ConfigError(f"{who} guided_steps={steps!r} must be >= 0 (the number of leading guided steps)")
        return tuple(range(steps))
    out = tuple(int(s) for s in steps)
    if any(s < 0 for s in out) or any(isinstance(s, bool) or int(s) != s for s in steps):
        raise ConfigError(f"{who} guided_steps={list(steps)!r}: step indices must be integers >= 0")
    return out


def check_steps_exist(who: str, guided: Sequence[int], sigmas: Tensor) -> None:
    """Refuse guided step indices that the schedule `sigmas` does not have."""
    n = len(sigmas) - 1
    missing = [s for s in guided if s >= n]
    if missing:
        raise ConfigError(f"{who} guided_steps={list(guided)}: the schedule has {n} steps (indices 0-{n - 1}), so "
                          f"step(s) {missing} would never be guided; guide indices below {n}")


@dataclass(frozen=True)
class Interval(Guidance):
    """Apply `inner` only where `sigma_lo <= sigma <= sigma_hi` (and, if given, on `guided_steps`);
    elsewhere `outside` (default: the conditional denoiser alone).

    Guidance in a limited interval (Kynkaanniemi et al. 2024) is the usual use. A step
    restriction needs the step number, so only solvers that provide it can run it. The test is per
    sample (a batch whose samples sit at different sigmas mixes both branches row by row).
    """

    inner: Guidance = part(required=True)
    sigma_lo: float = 0.0
    sigma_hi: float = math.inf
    guided_steps: Optional[tuple[int, ...]] = None
    outside: Optional[Guidance] = part()

    def __post_init__(self) -> None:
        lo, hi = float(self.sigma_lo), float(self.sigma_hi)
        if not 0.0 <= lo <= hi:
            raise ConfigError(f"interval [sigma_lo={self.sigma_lo!r}, sigma_hi={self.sigma_hi!r}] must satisfy "
                              "0 <= lo <= hi")
        steps = None if self.guided_steps is None else check_step_indices("Interval", self.guided_steps)
        frozen_set(self, sigma_lo=lo, sigma_hi=hi, guided_steps=steps)

    @property
    def otherwise(self) -> Guidance:
        """What runs outside the interval."""
        return self.outside if self.outside is not None else NoGuidance()

    @property
    def needs_step(self) -> bool:  # type: ignore[override]
        return self.guided_steps is not None or self.inner.needs_step or self.otherwise.needs_step

    @property
    def splits_direction(self) -> bool:  # type: ignore[override]
        return self.inner.splits_direction or self.otherwise.splits_direction

    def check(self, sigmas: Tensor) -> None:
        if self.guided_steps is not None:
            check_steps_exist("Interval", self.guided_steps, sigmas)
        super().check(sigmas)

    def active(self, sigma: Tensor, ctx: StepContext) -> Tensor:
        """Per sample (`[B]` bool): `sigma_lo <= sigma <= sigma_hi` and, with `guided_steps`, the step is one."""
        inside = (sigma >= self.sigma_lo) & (sigma <= self.sigma_hi)
        if self.guided_steps is not None and ctx.require_step("Interval(guided_steps=...)") not in self.guided_steps:
            inside = torch.zeros_like(inside)
        return inside

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        mask = self.active(sigma, ctx)
        if bool(mask.all()):
            return self.inner(model, x, sigma, ctx)
        if not bool(mask.any()):
            return self.otherwise(model, x, sigma, ctx)
        a, b = self.inner(model, x, sigma, ctx), self.otherwise(model, x, sigma, ctx)
        m = mask.reshape(-1, *([1] * (x.ndim - 1)))
        return Estimate(torch.where(m, a.denoised, b.denoised), torch.where(m, a.direction, b.direction))
