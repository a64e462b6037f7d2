"""Conditional sampling: none, CFG, CFG++ and the distilled (embedded) guidance scale."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor

from .. import math as M
from ..errors import ConfigError
from .base import Estimate, Guidance, StepContext, denoise, denoise_pair, frozen_set, require_uncond
from .spec import part

__all__ = ["CFG", "CFGPP", "CFGPP_MAX_LAM", "DistilledCFG", "NoGuidance", "RescaledCFG", "check_finite", "check_unit"]

CFGPP_MAX_LAM = 1.2
"""the largest CFG++ `lam` accepted: the official Distillation++ code's DPM++ 2S-a runs use 1.2 (the CFG++
paper's range is [0, 1]); above 1 the guided estimate extrapolates past the conditional one."""


def check_unit(name: str, value: Any, hi: float = 1.0, why: str = "") -> float:
    """`value` as a float after checking it is a strength in `[0, hi]` ([`ConfigError`][tgsample.errors.ConfigError]
    naming
    `name`, the range and `why`)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} must be a number in [0, {hi:g}]") from None
    if not 0.0 <= value <= hi:
        raise ConfigError(f"{name}={value!r} is outside the allowed range [0, {hi:g}]{why}")
    return value


def check_finite(name: str, value: Any) -> float:
    """`value` as a float after checking it is a finite number ([`ConfigError`][tgsample.errors.ConfigError] naming
    `name`)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} must be a finite number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    return value


@dataclass(frozen=True)
class NoGuidance(Guidance):
    """The conditional denoiser alone: `denoised = direction = D_c`."""

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        return Estimate.same(denoise(model, x, sigma, ctx.cond))


@dataclass(frozen=True)
class CFG(Guidance):
    r"""Classifier-free guidance: $\text{denoised} = \text{direction} = D_u + w\, (D_c - D_u)$.

    Cond and uncond are evaluated in one batched call; `w = 1` makes one conditional call.
    """

    scale: float = 7.5

    def __post_init__(self) -> None:
        frozen_set(self, scale=check_finite("CFG scale", self.scale))

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        if self.scale == 1.0:
            return Estimate.same(denoise(model, x, sigma, ctx.cond))
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, require_uncond(ctx, "CFG"))
        return Estimate.same(M.cfg(d_u, d_c, self.scale))


@dataclass(frozen=True)
class RescaledCFG(CFG):
    """CFG with diffusers' `guidance_rescale` (Lin et al. 2023, sec. 3.4), on the implied noise
    `eps = (x - D) / sigma` as diffusers applies it to an eps model's output:
    `eps <- phi eps_cfg std(eps_c) / std(eps_cfg) + (1 - phi) eps_cfg`
    ([`tgsample.math.rescale_guided`][tgsample.math.rescale_guided],
    std per sample), then `denoised = direction = x - sigma eps`. `RescaledCFG(w, phi)` is a diffusers
    pipeline's `guidance_scale=w, guidance_rescale=phi` (for v-prediction models diffusers rescales v instead).
    """

    rescale: float = 0.7

    def __post_init__(self) -> None:
        super().__post_init__()
        frozen_set(self, rescale=check_unit("rescaled_cfg rescale", self.rescale))

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        if self.scale == 1.0:
            return Estimate.same(denoise(model, x, sigma, ctx.cond))
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, require_uncond(ctx, "rescaled_cfg"))
        eps_cfg, eps_c = M.implied_noise(x, M.cfg(d_u, d_c, self.scale), sigma), M.implied_noise(x, d_c, sigma)
        return Estimate.same(M.eps_to_x0(x, M.rescale_guided(eps_cfg, eps_c, self.rescale), sigma))


@dataclass(frozen=True)
class CFGPP(Guidance):
    r"""CFG++ (Chung et al. 2024): $\text{denoised} = D_u + \lambda\, (D_c - D_u)$, $\text{direction} = D_u$.

    With Euler this is CFG with the per-step scale $w_i = \lambda \sigma_i / (\sigma_i - \sigma_{i+1})$;
    `lam = 0` follows the unconditional trajectory and `lam = 1` is *not* the conditional sampler.
    `lam` lies in `[0, CFGPP_MAX_LAM]` = `[0, 1.2]`: the paper's `[0, 1]` and the slight
    extrapolation (`lam > 1`: `denoised` beyond `D_c`) of the official Distillation++ DPM++ 2S-a runs.
    """

    lam: float = 0.6
    splits_direction = True

    def __post_init__(self) -> None:
        frozen_set(self, lam=check_unit(
            "CFG++ lam", self.lam, CFGPP_MAX_LAM,
            " (CFG++'s lam is not a CFG scale: lam = 1 already moves to the conditional estimate and lam > 1 "
            "extrapolates past it; the CFG++ paper uses [0, 1], the official Distillation++ code at most 1.2)"))

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, require_uncond(ctx, "CFG++"))
        return Estimate(M.cfg(d_u, d_c, self.lam), d_u)


@dataclass(frozen=True)
class DistilledCFG(Guidance):
    """Guidance folded into a guided-distillation student (Meng et al. 2023, arXiv 2210.03142).

    The student takes the guidance scale `w` as an input, so any `w` costs one model call:
    `D = D_student(x, sigma, cond, w)`. The scale is passed to the denoiser as the
    conditioning key `key` (a `[B]` tensor, on cond and uncond); LCM-style students embed `w - 1`.
    `inner` is the guidance evaluated with that input (default: the conditional denoiser alone),
    e.g. `DistilledCFG(1.0, inner=CFG(2.0))` is CFG on the student at `w = 1`.
    """

    scale: float = 8.0
    key: str = "guidance_scale"
    inner: Optional[Guidance] = part()

    def __post_init__(self) -> None:
        frozen_set(self, scale=check_finite("DistilledCFG scale", self.scale))

    @property
    def needs_step(self) -> bool:  # type: ignore[override]
        return bool(self.inner is not None and self.inner.needs_step)

    @property
    def splits_direction(self) -> bool:  # type: ignore[override]
        return bool(self.inner is not None and self.inner.splits_direction)

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        w = torch.full((x.shape[0],), self.scale, dtype=x.dtype, device=x.device)
        if self.inner is None:
            return Estimate.same(denoise(model, x, sigma, {**ctx.cond, self.key: w}))
        with_w = ctx.with_cond({**ctx.cond, self.key: w}, None if ctx.uncond is None else {**ctx.uncond, self.key: w})
        return self.inner(model, x, sigma, with_w)
