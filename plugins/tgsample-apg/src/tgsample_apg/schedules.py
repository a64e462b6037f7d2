"""The cosine schedule (Nichol & Dhariwal 2021, "Improved DDPM") in sigma space.

With offset `s = 0`, `abar(t) = cos^2(pi t / 2)`, so `sigma(t) = sqrt((1 - abar) / abar) = tan(pi t / 2)`.
The schedule takes `steps` levels uniform in `t` from `t(sigma_max)` to `t(sigma_min)`, with
`t(sigma) = 2 atan(sigma) / pi`, then appends 0. Compared with Karras (rho = 7) it spends fewer
steps at very high and very low noise.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from tgsample.schedules import check_steps, sigma_range, validate_sigmas


def cosine(steps: int, model: Any = None, *, sigma_min: Optional[float] = None,
           sigma_max: Optional[float] = None) -> Tensor:
    """`sigma_i = tan(pi t_i / 2)`, `t_i` uniform from `2 atan(sigma_max) / pi` to `2 atan(sigma_min) / pi`, then 0."""
    lo, hi = sigma_range(model, sigma_min, sigma_max, who="cosine schedule")
    t = torch.linspace(math.atan(hi), math.atan(lo), check_steps(steps), dtype=torch.float64)  # pi t / 2
    return validate_sigmas(torch.cat([t.tan(), t.new_zeros(1)]).float())
