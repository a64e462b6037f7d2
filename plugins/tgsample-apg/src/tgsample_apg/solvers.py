"""Heun's second-order method (Karras et al. 2022, Algorithm 1 without churn) for split-direction guidances.

tgsample's stock `k_heun` runs only guidances whose `direction` equals `denoised`. Here the
trajectory follows the tgsample solver convention: with `d = (x - direction) / sigma`, an Euler
step is `x + (sigma' - sigma) d + (denoised - direction)`. Heun averages both parts over the
Euler predictor (at `sigma_i`) and the corrector evaluation (at `sigma_{i+1}`):

```text
x_e     = denoised_1 + sigma_{i+1} d_1
x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (d_1 + d_2) / 2 + ((denoised_1 - direction_1) + (denoised_2 - direction_2)) / 2
```

It is k-diffusion's `sample_heun` (s_churn = 0) when `denoised == direction`; with CFG++ at
`lam = 0` it follows the unconditional Heun trajectory. The last step (to sigma 0) is an Euler
step, which returns `denoised_1`. Two model evaluations per step except the last.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
from torch import Tensor
from tqdm.auto import trange

from tgsample import math as M
from tgsample.solvers import SPLIT_DIRECTION, STEP_INDEX, provides, report


@provides(STEP_INDEX, SPLIT_DIRECTION)
@torch.no_grad()
def sample_heun(model: Any, x: Tensor, sigmas: Tensor, *, callback: Optional[Callable[[dict], Any]] = None,
                disable: Optional[bool] = None) -> Tensor:
    """Heun (2nd order) on `model(x, sigma, i, stage) -> Estimate` (a
    [`tgsample.GuidedModel`][tgsample.solvers.GuidedModel])."""
    for i in trange(len(sigmas) - 1, disable=disable):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        est = model(x, sigma, i)
        report(callback, x, i, sigma, est)
        d = M.implied_noise(x, est.direction, sigma)
        x_euler = est.denoised + sigma_next * d
        if sigma_next == 0:
            x = x_euler
            continue
        est2 = model(x_euler, sigma_next, i, stage=1)
        d2 = M.implied_noise(x_euler, est2.direction, sigma_next)
        offset = ((est.denoised - est.direction) + (est2.denoised - est2.direction)) / 2
        x = x + (sigma_next - sigma) * (d + d2) / 2 + offset
    return x
