"""The cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM") in sigma space.

With offset ``s = 0``, ``abar(t) = cos^2(pi t / 2)``, so ``sigma(t) = sqrt((1 - abar) / abar) = tan(pi t / 2)``.
The schedule takes ``steps`` levels uniform in ``t`` from ``t(sigma_max)`` to ``t(sigma_min)``, with
``t(sigma) = 2 atan(sigma) / pi``, then appends 0. Compared with Karras (rho = 7) it spends fewer
steps at very high and very low noise.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from tgsample.errors import ConfigError
from tgsample.schedules import validate_sigmas


def _range(model: Any, sigma_min: Optional[float], sigma_max: Optional[float]) -> tuple[float, float]:
    denoiser = getattr(model, "denoiser", model)
    lo = sigma_min if sigma_min is not None else getattr(denoiser, "sigma_min", None)
    hi = sigma_max if sigma_max is not None else getattr(denoiser, "sigma_max", None)
    if lo is None or hi is None:
        raise ConfigError("cosine schedule: give sigma_min and sigma_max, or a model that has them")
    if not 0 < float(lo) < float(hi) < math.inf:
        raise ConfigError(f"cosine schedule needs 0 < sigma_min < sigma_max < inf; got {lo!r}, {hi!r}")
    return float(lo), float(hi)


def cosine(steps: int, model: Any = None, *, sigma_min: Optional[float] = None,
           sigma_max: Optional[float] = None) -> Tensor:
    """``sigma_i = tan(pi t_i / 2)``, ``t_i`` uniform from ``2 atan(sigma_max) / pi`` to ``2 atan(sigma_min) / pi``, then 0."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer")
    lo, hi = _range(model, sigma_min, sigma_max)
    t = torch.linspace(math.atan(hi), math.atan(lo), steps, dtype=torch.float64)  # pi t / 2
    return validate_sigmas(torch.cat([t.tan(), t.new_zeros(1)]).float())
