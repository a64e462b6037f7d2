"""Adaptive Projected Guidance (APG), Sadat, Hilliges & Weber 2024, arXiv 2410.02416.

CFG's update ``Delta = D_c - D_u`` is split per sample into the component parallel to the
conditional estimate ``D_c`` and the one orthogonal to it. The parallel part mostly raises
saturation, the orthogonal part carries the quality gain, so APG down-weights the first::

    Delta_t   = Delta + beta * Delta_{t-1}            (momentum, beta < 0 in the paper)
    Delta     = Delta * min(1, r / ||Delta||)          (norm threshold r; r = 0 disables it)
    Delta_par = <Delta, u> u,  u = D_c / ||D_c||       (norms over all non-batch dims)
    update    = (Delta - Delta_par) + eta * Delta_par
    denoised  = D_c + (w - 1) * update

With ``eta = 1``, ``r = 0`` and ``beta = 0`` this is CFG: ``D_u + w (D_c - D_u)``. It is
written as CFG against the effective unconditional estimate ``D_c - update`` so that the
one CFG formula of :func:`tgsample.math.cfg` is reused.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch import Tensor

from tgsample import math as M
from tgsample.errors import ConfigError, UnsupportedGuidanceError
from tgsample.guidance import Estimate, Guidance, StepContext, denoise, denoise_pair


def _norm(v: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch dims, shaped ``[B, 1, ..., 1]``."""
    return M.append_dims(v.flatten(1).norm(dim=1), v.ndim)


def project(v: Tensor, onto: Tensor) -> tuple[Tensor, Tensor]:
    """``(v_par, v_orth)``: ``v_par = <v, u> u`` with ``u = onto / ||onto||`` per sample; ``v = v_par + v_orth``."""
    u = onto / _norm(onto).clamp_min(1e-12)
    v_par = M.append_dims((v * u).flatten(1).sum(dim=1), v.ndim) * u
    return v_par, v - v_par


def clip_norm(v: Tensor, threshold: float) -> Tensor:
    """``v * min(1, threshold / ||v||)`` per sample; ``threshold = 0`` returns ``v``."""
    if threshold <= 0:
        return v
    return v * (threshold / _norm(v).clamp_min(1e-12)).clamp(max=1.0)


def _finite(name: str, value: Any) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"APG {name}={value!r} must be a finite number")
    return value


class APG(Guidance):
    """Adaptive Projected Guidance on the x0 estimate (see the module docstring for the formula).

    Args:
        scale: guidance scale ``w`` (as CFG's).
        eta: weight of the update's component parallel to ``D_c``, ``>= 0`` (the paper recommends 0).
        norm_threshold: ``r``, the largest allowed per-sample norm of the update (0 disables;
            its scale depends on the sample size, so it has no universal default).
        momentum: ``beta`` in ``(-1, 1)``; the paper uses negative values (-0.5). Momentum is state
            carried across the steps of one sampling run: it is reset at step 0, so a non-zero
            momentum needs the step index (``needs_step``) and a tgsample solver. On two-stage
            solvers (Heun, DPM++ 2S) every model evaluation updates it.
    """

    splits_direction = False

    def __init__(self, scale: float = 7.5, eta: float = 0.0, norm_threshold: float = 0.0, momentum: float = -0.5):
        self.scale = _finite("scale", scale)
        self.eta = _finite("eta", eta)
        self.norm_threshold = _finite("norm_threshold", norm_threshold)
        self.momentum = _finite("momentum", momentum)
        if self.eta < 0:
            raise ConfigError(f"APG eta={eta!r} must be >= 0 (0 removes the parallel component, 1 keeps it)")
        if self.norm_threshold < 0:
            raise ConfigError(f"APG norm_threshold={norm_threshold!r} must be >= 0 (0 disables the threshold)")
        if not -1.0 < self.momentum < 1.0:
            raise ConfigError(f"APG momentum={momentum!r} is outside the allowed range (-1, 1)")
        self.needs_step = self.momentum != 0.0
        self._average: Optional[Tensor] = None

    def _with_momentum(self, delta: Tensor, ctx: StepContext) -> Tensor:
        """``Delta_t = Delta + beta * Delta_{t-1}``, restarted at step 0 of each sampling run."""
        if not self.needs_step:
            return delta
        if ctx.index is None:
            raise UnsupportedGuidanceError(
                f"APG with momentum={self.momentum} needs the step index to restart its momentum at each "
                "sampling run; use a tgsample solver (euler, heun, dpmpp_2m, ...) or momentum=0"
            )
        if (ctx.index == 0 and ctx.stage == 0) or self._average is None:
            self._average = torch.zeros_like(delta)
        elif self._average.shape != delta.shape:
            raise ConfigError(
                f"APG momentum state has shape {tuple(self._average.shape)} but step {ctx.index} has "
                f"{tuple(delta.shape)}: a sampling run must start at step 0"
            )
        self._average = delta + self.momentum * self._average
        return self._average

    def update(self, d_c: Tensor, d_u: Tensor, ctx: StepContext) -> Tensor:
        """The adapted update that replaces CFG's ``D_c - D_u``."""
        delta = clip_norm(self._with_momentum(d_c - d_u, ctx), self.norm_threshold)
        parallel, orthogonal = project(delta, d_c)
        return orthogonal + self.eta * parallel

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        if self.scale == 1.0:
            return Estimate.same(denoise(model, x, sigma, ctx.cond))
        if ctx.uncond is None:
            raise ConfigError("APG needs an unconditional input: pass uncond=... (e.g. the empty prompt or the null class)")
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, ctx.uncond)
        return Estimate.same(M.cfg(d_c - self.update(d_c, d_u, ctx), d_c, self.scale))

    def __repr__(self) -> str:
        return (f"APG(scale={self.scale}, eta={self.eta}, norm_threshold={self.norm_threshold}, "
                f"momentum={self.momentum})")
