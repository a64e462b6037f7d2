"""Conditional sampling: none, CFG, CFG++ and the distilled (embedded) guidance scale."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import math as M
from ..errors import ConfigError
from .base import Estimate, Guidance, StepContext, denoise, denoise_pair


def check_unit(name: str, value: float) -> float:
    """Validate a strength in ``[0, 1]``."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name}={value!r} is outside the allowed range [0, 1]")
    return value


def _need_uncond(ctx: StepContext, who: str) -> None:
    if ctx.uncond is None:
        raise ConfigError(f"{who} needs an unconditional input: pass uncond=... (e.g. the empty prompt or the null class)")


class NoGuidance(Guidance):
    """The conditional denoiser alone: ``denoised = direction = D_c``."""

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        return Estimate.same(denoise(model, x, sigma, ctx.cond))

    def __repr__(self) -> str:
        return "NoGuidance()"


class CFG(Guidance):
    """Classifier-free guidance: ``denoised = direction = D_u + w (D_c - D_u)``.

    Cond and uncond are evaluated in one batched call; ``w = 1`` makes one conditional call.
    ``rescale = phi > 0`` is diffusers' ``guidance_rescale`` on the implied noise ``eps = (x - D) / sigma``:
    ``eps <- phi eps_cfg std(eps_c) / std(eps_cfg) + (1 - phi) eps_cfg`` (:func:`tgsample.math.rescale_guided`),
    then ``D = x - sigma eps`` (equal to diffusers' for eps-prediction models; for v-prediction diffusers
    rescales v instead).
    """

    def __init__(self, scale: float = 7.5, rescale: float = 0.0):
        self.scale = float(scale)
        if not torch.isfinite(torch.tensor(self.scale)):
            raise ConfigError(f"CFG scale={scale!r} must be a finite number")
        self.rescale = check_unit("CFG rescale", rescale)

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        if self.scale == 1.0:
            return Estimate.same(denoise(model, x, sigma, ctx.cond))
        _need_uncond(ctx, "CFG")
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, ctx.uncond)
        d = M.cfg(d_u, d_c, self.scale)
        if self.rescale:
            eps = M.rescale_guided(M.implied_noise(x, d, sigma), M.implied_noise(x, d_c, sigma), self.rescale)
            d = M.eps_to_x0(x, eps, sigma)
        return Estimate.same(d)

    def __repr__(self) -> str:
        return f"CFG(scale={self.scale})" if not self.rescale else f"CFG(scale={self.scale}, rescale={self.rescale})"


class CFGPP(Guidance):
    """CFG++ (Chung et al. 2024): ``denoised = D_u + lam (D_c - D_u)``, ``direction = D_u``.

    With Euler this is CFG with the per-step scale ``w_i = lam * sigma_i / (sigma_i - sigma_{i+1})``;
    ``lam = 0`` follows the unconditional trajectory and ``lam = 1`` is *not* the conditional sampler.
    """

    splits_direction = True

    def __init__(self, lam: float = 0.6):
        self.lam = check_unit("CFG++ lam", lam)

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        _need_uncond(ctx, "CFG++")
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, ctx.uncond)
        return Estimate(M.cfg(d_u, d_c, self.lam), d_u)

    def __repr__(self) -> str:
        return f"CFGPP(lam={self.lam})"


class DistilledCFG(Guidance):
    """Guidance folded into a guided-distillation student (Meng et al. 2023, arXiv 2210.03142).

    The student takes the guidance scale ``w`` as an input, so any ``w`` costs one model call:
    ``D = D_student(x, sigma, cond, w)``. The scale is passed to the denoiser as the
    conditioning key ``key`` (a ``[B]`` tensor); LCM-style students embed ``w - 1``.
    """

    def __init__(self, scale: float = 8.0, key: str = "guidance_scale"):
        self.scale = float(scale)
        self.key = key

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        w = torch.full((x.shape[0],), self.scale, dtype=x.dtype, device=x.device)
        return Estimate.same(denoise(model, x, sigma, {**ctx.cond, self.key: w}))

    def __repr__(self) -> str:
        return f"DistilledCFG(scale={self.scale}, key={self.key!r})"
