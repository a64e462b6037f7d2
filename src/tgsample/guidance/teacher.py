"""Teacher guidance (Distillation++, Park et al., arXiv 2412.08871)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import math as M
from ..errors import ConfigError
from .base import Estimate, Guidance, StepContext, frozen_set
from .cfg import CFG, NoGuidance, check_finite, check_unit
from .interval import check_step_indices, check_steps_exist
from .spec import model_part, part

RENOISE_SCHEDULES = ("next", "current", "random", "random_sigma")
"""The teacher's noise level `sigma_r` on a guided step: `next`, `current`, `random` (uniform in the teacher's timestep)
or `random_sigma` (uniform in sigma)."""
NOISE_MODES = ("random", "deterministic", "hybrid")
"""The renoise noise `n`: fresh Gaussian, the student's implied noise, or a normalised mix of both."""

Lam = Union[float, Sequence[float], Callable[[float], float]]
"""A teacher-guidance weight: one `lam`, one per guided step, or a function of sigma."""

INTERPOLATION_SPACES = ("x0", "eps")
"""where the teacher's estimate is mixed in: `x0` (the paper's update rule) or `eps` (the reference code's
`random++`: the noise predictions)."""


def timestep_map(teacher: Any) -> Optional[tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    """`(sigma_to_t, t_to_sigma)` of a teacher (a model or its denoiser) that has a timestep: a discrete
    model's `abar` table, a flow model's exact `t = sigma / (1 + sigma)`; `None` otherwise (EDM)."""
    d = getattr(teacher, "denoiser", teacher)
    if hasattr(d, "sigma_to_t") and hasattr(d, "t_to_sigma"):
        return d.sigma_to_t, d.t_to_sigma
    return None


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of the allowed values {list(allowed)}")
    return value


@dataclass(frozen=True)
class TeacherGuidance(Guidance):
    r"""Let a teacher correct the student's x0 estimate on chosen steps.

    At a guided step `i` (noise `sigma_i`, next `sigma_{i+1}`), with the student's
    estimate `D_s` (after the student's own guidance, `student=`):

    1. `sigma_r`: `next` = `sigma_{i+1}` (the paper's `s = t - dt`), `current` = `sigma_i`,
       `random` = uniform in the teacher's **timestep** over the schedule's positive range (the paper's
       random `s`: on its `abar` table, or a flow model's `t = sigma / (1 + sigma)`; uniform in sigma for
       a teacher without a timestep), `random_sigma` = uniform in sigma over that range; both per sample;
    2. $x_r = D_s + \sigma_r n$ with $n$ fresh (`random`), the student's implied noise
       $(x_i - \text{direction}) / \sigma_i$ (`deterministic`), or $c\, n_{\text{det}} + \sqrt{1 - c^2}\, z$ (`hybrid`);
    3. $D_T = D_{\text{teacher}}(x_r, \sigma_r)$, with the teacher's own CFG scale `teacher_cfg`;
    4. `space="x0"`: $\text{denoised} = (1 - \lambda) D_s + \lambda D_T$, `direction` stays the student's;
       `space="eps"`: the noise predictions are interpolated,
       $\epsilon_{\text{new}} = (1 - \lambda)\, \epsilon_s + \lambda\, \epsilon_T$ with
       $\epsilon_T = (x_r - D_T) / \sigma_r$, and the step is taken with it: `denoised` and `direction` each
       become $x_i - \sigma_i \epsilon_{\text{new}}$ of their own $\epsilon_s = (x_i - D_s) / \sigma_i$
       ([`tgsample.math.interpolate_noise`][tgsample.math.interpolate_noise]).

    Args:
        teacher: the teacher: a registered [`Model`][tgsample.models.base.Model] or a denoiser (same sample shape
            as the student). In a spec: a teachers registry name, or left out for the run's teacher.
        lam: strength in `[0, 1]`: a constant, one value per guided step, or a function of sigma.
        guided_steps: the guided step indices, or an int `n` for the first `n` steps (default 1).
            Guide 1--2 early steps: applied on every step, teacher guidance shrinks samples even
            with an exact teacher (docs: Guidance, "Guide the first 1–2 steps only").
        renoise: the renoise schedule, one of `next` / `current` / `random` / `random_sigma`.
        noise_mode: where the renoise noise comes from, one of `random` / `deterministic` / `hybrid`
            (the draws themselves come from the run's per-sample `renoise` stream).
        hybrid: the weight `c` of the deterministic noise in `hybrid` mode.
        teacher_cfg: the teacher's CFG scale (1 = conditional teacher, one call).
        space: `x0` (default) or `eps`, where the teacher's estimate is mixed in (docs: Guidance,
            "x0 or noise space"). In `eps` a given `lam` moves `denoised` `sigma_i / sigma_r` times
            as far toward the teacher as in `x0`, plus `lam sigma_i (eps_s - n)` of renoise noise.
        student: the student's own guidance (e.g. `CFG(2)` or `CFGPP(0.6)`); default none.
    """

    teacher: Any = model_part()
    lam: Lam = 0.1
    guided_steps: Union[int, Sequence[int]] = 1
    renoise: str = "next"
    noise_mode: str = "random"
    hybrid: float = 0.5
    teacher_cfg: float = 1.0
    student: Optional[Guidance] = part()
    space: str = "x0"

    needs_step = True
    splits_direction = True

    def __post_init__(self) -> None:
        if self.teacher is None:
            raise ConfigError("TeacherGuidance needs a teacher (a model or a denoiser)")
        steps = check_step_indices("TeacherGuidance", self.guided_steps)
        lam = self.lam
        if not callable(lam):
            if isinstance(lam, (list, tuple)):
                lam = tuple(check_unit("teacher guidance lam", v) for v in lam)
                if len(lam) != len(steps):
                    raise ConfigError(f"lam has {len(lam)} values for {len(steps)} guided steps {list(steps)}")
            else:
                lam = check_unit("teacher guidance lam", lam)
        frozen_set(self, guided_steps=steps, lam=lam, renoise=_choice("renoise", self.renoise, RENOISE_SCHEDULES),
                   noise_mode=_choice("noise_mode", self.noise_mode, NOISE_MODES),
                   hybrid=check_unit("hybrid", self.hybrid),
                   teacher_cfg=check_finite("teacher_cfg", self.teacher_cfg),
                   space=_choice("space", self.space, INTERPOLATION_SPACES))

    @property
    def own(self) -> Guidance:
        """The student's own guidance (the conditional denoiser alone when none was given)."""
        return self.student if self.student is not None else NoGuidance()

    def check(self, sigmas: Tensor) -> None:
        """Every guided step exists, none renoises to `sigma_r = 0` (`next` on the last step), and none
        interpolates noise predictions (`space="eps"`) from a flow schedule's pure-noise level `2**53`."""
        from ..flow import PURE_NOISE_SIGMA

        check_steps_exist("TeacherGuidance", self.guided_steps, sigmas)
        last = len(sigmas) - 2
        if self.renoise == "next" and last in self.guided_steps:
            raise ConfigError(f"teacher-guided step {last} is the last step: renoise='next' would renoise to "
                              "sigma_r=0 there; guide an earlier step or use renoise='current'")
        if self.space == "eps":
            pure = [i for i in self.guided_steps if float(sigmas[i]) >= PURE_NOISE_SIGMA]
            if pure:
                raise ConfigError(
                    f"teacher-guided step {pure[0]} starts at the pure-noise level sigma=2**53 (a flow schedule's "
                    "t = 1): space='eps' moves the estimate sigma_i / sigma_r times as far as space='x0' does, "
                    "an infinite factor there; use space='x0' or guide a later step")
        super().check(sigmas)

    def lam_at(self, index: int, sigma: Tensor) -> Union[float, Tensor]:
        """The strength at guided step `index`: a float, or per sample `[B]` for a function of sigma."""
        if callable(self.lam):
            return torch.tensor([check_unit(f"lam({s:.4g})", self.lam(s)) for s in sigma.tolist()], dtype=sigma.dtype,
                                device=sigma.device)
        if isinstance(self.lam, tuple):
            return self.lam[self.guided_steps.index(index)]
        return self.lam

    def renoise_sigma(self, sigma: Tensor, ctx: StepContext) -> Tensor:
        """The teacher's noise level `sigma_r` per sample, `[B]`: `sigma_{i+1}` (`next`), `sigma_i`
        (`current`), or drawn per sample (the `renoise_level` stream) over the schedule's positive range
        `[lo, hi]`: uniform in the teacher's timestep `t(lo) .. t(hi)` (`random`,
        [`timestep_map`][tgsample.guidance.teacher.timestep_map];
        uniform in sigma for a teacher without one) or uniform in sigma (`random_sigma`)."""
        if self.renoise == "current":
            return sigma
        if self.renoise == "next":
            return ctx.sigma_next
        if ctx.streams is None:
            raise ConfigError(f"renoise={self.renoise!r} needs per-sample noise streams (sample with seeds=...)")
        # a schedule is strictly decreasing to 0: its positive range is [sigmas[-2], sigmas[0]] (no device read)
        lo, hi = ctx.sigmas[-2].double(), ctx.sigmas[0].double()
        u = ctx.streams.rand("renoise_level").to(lo.device)
        maps = timestep_map(self.teacher) if self.renoise == "random" else None
        if maps is None:
            return (lo + (hi - lo) * u).to(sigma)
        to_t, to_sigma = maps
        t_lo, t_hi = to_t(torch.stack([lo, hi])).double().unbind()
        return to_sigma(t_lo + (t_hi - t_lo) * u).to(sigma)

    def renoise_noise(self, x: Tensor, sigma: Tensor, est: Estimate, ctx: StepContext) -> Tensor:
        """The noise `n` of the renoise `x_r = D_s + sigma_r n`, by `noise_mode`."""
        if self.noise_mode == "deterministic":
            return M.implied_noise(x, est.direction, sigma)
        if ctx.streams is None:
            raise ConfigError(f"noise_mode={self.noise_mode!r} needs per-sample noise streams (sample with seeds=...)")
        z = ctx.streams.randn_like("renoise", x)
        if self.noise_mode == "random":
            return z
        return M.hybrid_noise(M.implied_noise(x, est.direction, sigma), z, self.hybrid)

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        est = self.own(model, x, sigma, ctx)
        index = ctx.require_step("teacher guidance")
        if index not in self.guided_steps:
            return est
        sigma_r = self.renoise_sigma(sigma, ctx)  # > 0: check() refused a guided last step with renoise='next'
        x_r = M.renoise(est.denoised, sigma_r, self.renoise_noise(x, sigma, est, ctx))
        d_t = CFG(self.teacher_cfg)(self.teacher, x_r, sigma_r, ctx).denoised
        lam = self.lam_at(index, sigma)
        if self.space == "x0":
            return Estimate(M.interpolate(est.denoised, d_t, lam), est.direction)
        eps_t = M.implied_noise(x_r, d_t, sigma_r)
        denoised = M.interpolate_noise(x, sigma, est.denoised, eps_t, lam)
        same = est.direction is est.denoised
        return Estimate(denoised, denoised if same else M.interpolate_noise(x, sigma, est.direction, eps_t, lam))
