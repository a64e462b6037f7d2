"""Restrict a guidance to a sigma interval or to chosen steps."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from torch import Tensor

from ..errors import ConfigError
from .base import Estimate, Guidance, StepContext
from .cfg import NoGuidance


class Interval(Guidance):
    """Apply ``inner`` only where ``sigma_lo <= sigma <= sigma_hi`` (and, if given, on ``steps``);
    elsewhere ``outside`` (default: the conditional denoiser alone).

    Guidance in a limited interval (Kynkaanniemi et al. 2024) is the usual use. A step
    restriction needs the step number, so only tgsample's own solvers can run it.
    """

    def __init__(self, inner: Guidance, sigma_lo: float = 0.0, sigma_hi: float = math.inf,
                 steps: Optional[Sequence[int]] = None, outside: Optional[Guidance] = None):
        if not 0.0 <= sigma_lo <= sigma_hi:
            raise ConfigError(f"interval [sigma_lo={sigma_lo!r}, sigma_hi={sigma_hi!r}] must satisfy 0 <= lo <= hi")
        self.inner, self.outside = inner, outside if outside is not None else NoGuidance()
        self.sigma_lo, self.sigma_hi = float(sigma_lo), float(sigma_hi)
        self.steps = None if steps is None else tuple(int(s) for s in steps)
        self.needs_step = self.steps is not None or inner.needs_step or self.outside.needs_step
        self.splits_direction = inner.splits_direction or self.outside.splits_direction

    def active(self, sigma: Tensor, ctx: StepContext) -> bool:
        """Whether ``inner`` applies: ``sigma_lo <= sigma <= sigma_hi`` (noise levels) and, with ``steps``,
        ``ctx.index in steps``."""
        s = float(sigma.flatten()[0]) if hasattr(sigma, "flatten") else float(sigma)
        if not self.sigma_lo <= s <= self.sigma_hi:
            return False
        if self.steps is not None:
            if ctx.index is None:
                from ..errors import UnsupportedGuidanceError

                raise UnsupportedGuidanceError("Interval(steps=...) needs the step number, which this solver does not provide")
            return ctx.index in self.steps
        return True

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        return (self.inner if self.active(sigma, ctx) else self.outside)(model, x, sigma, ctx)

    def __repr__(self) -> str:
        return f"Interval({self.inner!r}, sigma_lo={self.sigma_lo}, sigma_hi={self.sigma_hi}, steps={self.steps})"
