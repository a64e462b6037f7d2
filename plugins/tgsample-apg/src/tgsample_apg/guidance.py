"""Adaptive Projected Guidance (APG), Sadat, Hilliges & Weber 2024, arXiv 2410.02416.

CFG's update `Delta = D_c - D_u` is split per sample into the component parallel to the
conditional estimate `D_c` and the one orthogonal to it. The parallel part mostly raises
saturation, the orthogonal part carries the quality gain, so APG down-weights the first:

```text
Delta_t   = Delta + beta * Delta_{t-1}            (momentum, beta < 0 in the paper)
Delta     = Delta * min(1, r / ||Delta||)          (norm threshold r; r = 0 disables it)
Delta_par = <Delta, u> u,  u = D_c / ||D_c||       (norms over all non-batch dims)
update    = (Delta - Delta_par) + eta * Delta_par
denoised  = D_c + (w - 1) * update
```

With `eta = 1`, `r = 0` and `beta = 0` this is CFG: `D_u + w (D_c - D_u)`. It is
written as CFG against the effective unconditional estimate `D_c - update` so that the
one CFG formula of [`tgsample.math.cfg`][tgsample.math.cfg] is reused.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tgsample import math as M
from tgsample.errors import ConfigError
from tgsample.guidance import Estimate, Guidance, StepContext, check_finite, denoise, denoise_pair, require_uncond


def _norm(v: Tensor) -> Tensor:
    """Per-sample L2 norm over all non-batch dims, shaped `[B, 1, ..., 1]`."""
    return M.append_dims(v.flatten(1).norm(dim=1), v.ndim)


def project(v: Tensor, onto: Tensor) -> tuple[Tensor, Tensor]:
    """`(v_par, v_orth)`: `v_par = <v, u> u` with `u = onto / ||onto||` per sample; `v = v_par + v_orth`."""
    u = onto / _norm(onto).clamp_min(1e-12)
    v_par = M.append_dims((v * u).flatten(1).sum(dim=1), v.ndim) * u
    return v_par, v - v_par


def clip_norm(v: Tensor, threshold: float) -> Tensor:
    """`v * min(1, threshold / ||v||)` per sample; `threshold = 0` returns `v`."""
    if threshold <= 0:
        return v
    return v * (threshold / _norm(v).clamp_min(1e-12)).clamp(max=1.0)


@dataclass(frozen=True)
class APG(Guidance):
    """Adaptive Projected Guidance on the x0 estimate (see the module docstring for the formula).

    A dataclass: its fields are its parameters, so `{"name": "apg", "scale": 5.0}` in YAML, `repr`,
    equality and `to_spec()` come from tgsample.

    Args:
        scale: guidance scale `w` (as CFG's).
        eta: weight of the update's component parallel to `D_c`, `>= 0` (the paper recommends 0).
        norm_threshold: `r`, the largest allowed per-sample norm of the update (0 disables;
            its scale depends on the sample size, so it has no universal default).
        momentum: `beta` in `(-1, 1)`; the paper uses negative values (-0.5). Momentum is state of one
            sampling run: it lives in the run's scratch state (`ctx.scratch`), so every run starts
            afresh on any solver, stock k-diffusion samplers included. On two-stage solvers (Heun,
            DPM++ 2S) every model evaluation updates it.
    """

    scale: float = 7.5
    eta: float = 0.0
    norm_threshold: float = 0.0
    momentum: float = -0.5

    def __post_init__(self) -> None:
        for name in ("scale", "eta", "norm_threshold", "momentum"):
            object.__setattr__(self, name, check_finite(f"APG {name}", getattr(self, name)))
        if self.eta < 0:
            raise ConfigError(f"APG eta={self.eta!r} must be >= 0 (0 removes the parallel component, 1 keeps it)")
        if self.norm_threshold < 0:
            raise ConfigError(f"APG norm_threshold={self.norm_threshold!r} must be >= 0 (0 disables the threshold)")
        if not -1.0 < self.momentum < 1.0:
            raise ConfigError(f"APG momentum={self.momentum!r} is outside the allowed range (-1, 1)")

    def _with_momentum(self, delta: Tensor, ctx: StepContext) -> Tensor:
        """`Delta_t = Delta + beta * Delta_{t-1}`, with `Delta_{t-1}` from this run's scratch state."""
        if self.momentum == 0.0:
            return delta
        state = ctx.scratch(self)
        previous = state.get("average")
        if previous is not None and previous.shape != delta.shape:
            raise ConfigError(f"APG momentum state has shape {tuple(previous.shape)} but this evaluation has "
                              f"{tuple(delta.shape)}: one sampling run keeps one batch")
        state["average"] = delta if previous is None else delta + self.momentum * previous
        return state["average"]

    def update(self, d_c: Tensor, d_u: Tensor, ctx: StepContext) -> Tensor:
        """The adapted update that replaces CFG's `D_c - D_u`."""
        delta = clip_norm(self._with_momentum(d_c - d_u, ctx), self.norm_threshold)
        parallel, orthogonal = project(delta, d_c)
        return orthogonal + self.eta * parallel

    def __call__(self, model, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        if self.scale == 1.0:
            return Estimate.same(denoise(model, x, sigma, ctx.cond))
        d_c, d_u = denoise_pair(model, x, sigma, ctx.cond, require_uncond(ctx, "APG"))
        return Estimate.same(M.cfg(d_c - self.update(d_c, d_u, ctx), d_c, self.scale))
