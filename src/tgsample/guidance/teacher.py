"""Teacher guidance (Distillation++, Park et al., arXiv 2412.08871)."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import math as M
from ..errors import ConfigError, UnsupportedGuidanceError
from .base import Estimate, Guidance, StepContext
from .cfg import CFG, NoGuidance, check_unit

RENOISE_SCHEDULES = ("next", "current", "random")
NOISE_MODES = ("random", "deterministic", "hybrid")

Lam = Union[float, Sequence[float], Callable[[float], float]]


def _choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of the allowed values {list(allowed)}")
    return value


class TeacherGuidance(Guidance):
    r"""Let a teacher correct the student's x0 estimate on chosen steps.

    At a guided step ``i`` (noise ``sigma_i``, next ``sigma_{i+1}``), with the student's
    estimate ``D_s`` (after the student's own guidance, ``student=``):

    1. ``sigma_r``: ``next`` = ``sigma_{i+1}`` (the paper's ``s = t - dt``), ``current`` = ``sigma_i``,
       ``random`` = uniform over the schedule's positive range, per sample;
    2. ``x_r = D_s + sigma_r * n`` with ``n`` fresh (``random``), the student's implied noise
       ``(x_i - direction) / sigma_i`` (``deterministic``), or ``c n_det + sqrt(1 - c^2) z`` (``hybrid``);
    3. ``D_T = D_teacher(x_r, sigma_r)``, with the teacher's own CFG scale ``teacher_cfg``;
    4. ``denoised = (1 - lam) D_s + lam D_T``; ``direction`` stays the student's.

    Args:
        teacher: the teacher denoiser (same sample shape as the student).
        lam: strength in ``[0, 1]``: a constant, one value per guided step, or a function of sigma.
        steps: the guided step numbers, or an int ``n`` for the first ``n`` steps (default 1).
            Guide 1--2 early steps: applied on every step, teacher guidance shrinks samples even
            with an exact teacher (docs: Guidance, "Guide the first 1–2 steps only").
        renoise: the renoise schedule, one of ``next`` / ``current`` / ``random``.
        noise: the noise mode, one of ``random`` / ``deterministic`` / ``hybrid``.
        hybrid: the weight ``c`` of the deterministic noise in ``hybrid`` mode.
        teacher_cfg: the teacher's CFG scale (1 = conditional teacher, one call).
        student: the student's own guidance (e.g. ``CFG(2)`` or ``CFGPP(0.6)``); default none.
    """

    needs_step = True

    def __init__(self, teacher: Any, lam: Lam = 0.1, steps: Union[int, Sequence[int]] = 1,
                 renoise: str = "next", noise: str = "random", hybrid: float = 0.5,
                 teacher_cfg: float = 1.0, student: Optional[Guidance] = None):
        self.teacher = teacher
        if isinstance(steps, int):
            if steps < 0:
                raise ConfigError(f"steps={steps!r} must be >= 0 (the number of leading guided steps)")
            steps = range(steps)
        self.steps = tuple(int(s) for s in steps)
        if any(s < 0 for s in self.steps):
            raise ConfigError(f"steps={list(self.steps)!r}: step numbers must be >= 0")
        self.lam = lam
        if callable(lam):
            pass
        elif isinstance(lam, (int, float)):
            check_unit("teacher guidance lam", lam)
        else:
            self.lam = [check_unit("teacher guidance lam", v) for v in lam]
            if len(self.lam) != len(self.steps):
                raise ConfigError(f"lam has {len(self.lam)} values for {len(self.steps)} guided steps {list(self.steps)}")
        self.renoise = _choice("renoise", renoise, RENOISE_SCHEDULES)
        self.noise = _choice("noise", noise, NOISE_MODES)
        self.hybrid = check_unit("hybrid", hybrid)
        self.teacher_guidance = CFG(teacher_cfg)
        self.student = student if student is not None else NoGuidance()
        self.splits_direction = True

    def __repr__(self) -> str:
        return (f"TeacherGuidance(lam={self.lam!r}, steps={list(self.steps)}, renoise={self.renoise!r}, "
                f"noise={self.noise!r}, teacher_cfg={self.teacher_guidance.scale}, student={self.student!r})")

    def lam_at(self, index: int, sigma: float) -> float:
        """The strength at guided step ``index`` (noise ``sigma``)."""
        if callable(self.lam):
            return check_unit(f"lam({sigma:.4g})", self.lam(sigma))
        if isinstance(self.lam, list):
            return self.lam[self.steps.index(index)]
        return float(self.lam)

    def renoise_sigma(self, sigma: Tensor, ctx: StepContext, batch: int) -> Tensor:
        """The teacher's noise level ``sigma_r`` per sample, shape ``[B]``: ``sigma_{i+1}`` (``next``),
        ``sigma_i`` (``current``) or uniform over the schedule's positive sigmas (``random``, per-sample stream)."""
        if self.renoise == "current":
            s = torch.as_tensor(sigma).flatten()[0].expand(batch)
        elif self.renoise == "next":
            s = ctx.sigma_next.expand(batch)
        else:
            if ctx.noise is None:
                raise ConfigError("renoise='random' needs per-sample noise streams (sample with seeds=...)")
            positive = ctx.sigmas[ctx.sigmas > 0]
            lo, hi = float(positive.min()), float(positive.max())
            s = lo + (hi - lo) * ctx.noise.rand("renoise_level")
        return s.to(sigma.device if torch.is_tensor(sigma) else "cpu")  # keeps the schedule's dtype

    def renoise_noise(self, x: Tensor, sigma: Tensor, est: Estimate, ctx: StepContext) -> Tensor:
        """The noise ``n`` of the renoise ``x_r = D_s + sigma_r n``."""
        if self.noise == "deterministic":
            return M.implied_noise(x, est.direction, sigma)
        if ctx.noise is None:
            raise ConfigError(f"noise={self.noise!r} needs per-sample noise streams (sample with seeds=...)")
        z = ctx.noise.randn_like("renoise", x)
        if self.noise == "random":
            return z
        return M.hybrid_noise(M.implied_noise(x, est.direction, sigma), z, self.hybrid)

    def __call__(self, model: Any, x: Tensor, sigma: Tensor, ctx: StepContext) -> Estimate:
        est = self.student(model, x, sigma, ctx)
        if ctx.index is None or ctx.sigmas is None:
            raise UnsupportedGuidanceError(
                "teacher guidance needs the step number and the schedule; this solver does not provide "
                "them (use one of tgsample's own solvers: euler, euler_ancestral, dpmpp_2m, dpmpp_2s_ancestral, lcm, tcd)"
            )
        if ctx.index not in self.steps:
            return est
        sig = float(torch.as_tensor(sigma).flatten()[0])
        lam = self.lam_at(ctx.index, sig)
        sigma_r = self.renoise_sigma(torch.as_tensor(sigma), ctx, x.shape[0]).to(x.device, x.dtype)
        if not bool((sigma_r > 0).all()):
            raise ConfigError(
                f"teacher-guided step {ctx.index} would renoise to sigma_r=0 (renoise={self.renoise!r} at the "
                f"last step); guide an earlier step or use renoise='current'"
            )
        x_r = M.renoise(est.denoised, sigma_r, self.renoise_noise(x, sigma, est, ctx))
        d_t = self.teacher_guidance(self.teacher, x_r, sigma_r, ctx).denoised
        return Estimate(M.interpolate(est.denoised, d_t, lam), est.direction)
