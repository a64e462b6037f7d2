"""Flow matching in sigma space: the pure-noise level, time shifts and the pipelines' schedules.

A rectified-flow model (FLUX, SD3) samples `x_t = (1 - t) x0 + t eps` for `t` from 1 to 0. In
tgsample's coordinates that is `x = x_t / (1 - t) = x0 + sigma eps` with `sigma = t / (1 - t)`
([`tgsample.math.flow_sigma`][tgsample.math.flow_sigma]); the denoiser is
[`tgsample.denoisers.FlowDenoiser`][tgsample.denoisers.FlowDenoiser]. Every
solver of tgsample then runs on flow models unchanged -- Euler in sigma space *is* the flow Euler step
`x_t' = x_t + (t' - t) v` -- and a student and a teacher with different time shifts meet at the same
`sigma` (docs: Flow models).

Two facts make the schedules simple:

* **Pure noise.** The pipelines start at `t = 1`, i.e. `sigma = inf`. A schedule stands for it with
  [`PURE_NOISE_SIGMA`][tgsample.flow.PURE_NOISE_SIGMA] `= 2**53`: `1 + 2**53` rounds to `2**53` in float32, float64 and
  bfloat16, so the start `x = (1 + sigma) z` is exactly `2**53 z`, the net sees exactly `x_t = z` at
  exactly `t = 1`, and the first step's `(x - D) / sigma` is `z` to the last bit.
* **Shifts multiply sigma.** diffusers' static `shift` and its dynamic, resolution-dependent shift
  `mu` both multiply every noise level by one factor ([`tgsample.math.flow_shift`][tgsample.math.flow_shift]):
  `shift`, `exp(mu)` (exponential) or `mu` (linear).

[`FlowSchedule`][tgsample.flow.FlowSchedule] reads a `FlowMatchEulerDiscreteScheduler` config and reproduces the sigmas
that a FLUX or SD3 pipeline hands its scheduler; the `flow` schedule ([`flow`][tgsample.flow.flow]) asks the model's
adapter for it, so the shift is applied once, in the adapter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

import torch
from torch import Tensor

from . import math as M
from .errors import ConfigError

PURE_NOISE_SIGMA = 2.0**53
"""The sigma that stands for `t = 1` (pure noise): `t(2**53)` is exactly 1 in float32, float64 and bfloat16."""

SPACINGS = ("linspace", "scheduler")
"""How a pipeline spaces its base times before the shift: `"linspace"` -- FLUX pipelines pass
`t = linspace(1, 1/N, N)`; `"scheduler"` -- SD3 pipelines use the scheduler's own
`linspace(t_max, t_min, N)` over its (init-shifted) training range."""
TIME_SHIFT_TYPES = ("exponential", "linear")
"""A dynamic shift's types (diffusers' `time_shift_type`): factor `exp(mu)` or `mu`."""
# scheduler options whose sigmas are not a shifted base schedule: refused rather than ignored
_UNSUPPORTED = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "shift_terminal", "invert_sigmas",
                "stochastic_sampling")


def t_to_sigma(t: Tensor) -> Tensor:
    """`sigma = t / (1 - t)` elementwise, with `t = 1` (pure noise) mapped to
    [`PURE_NOISE_SIGMA`][tgsample.flow.PURE_NOISE_SIGMA]."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.where(t >= 1, torch.full_like(t, PURE_NOISE_SIGMA), M.flow_sigma(t))  # 1/0 = inf is masked


def sigma_to_t(sigma: Tensor) -> Tensor:
    """`t = sigma / (1 + sigma)` ([`tgsample.math.flow_t`][tgsample.math.flow_t]);
    [`PURE_NOISE_SIGMA`][tgsample.flow.PURE_NOISE_SIGMA] gives exactly 1."""
    return M.flow_t(torch.as_tensor(sigma))


@dataclass(frozen=True)
class FlowSchedule:
    """A flow model's sampling times, from its `FlowMatchEulerDiscreteScheduler` config.

    Attributes:
        shift: the static shift (`use_dynamic_shifting=False`).
        use_dynamic_shifting: shift by `mu(image_seq_len)` instead (FLUX-dev).
        base_shift: `mu` at `base_image_seq_len` image tokens (`mu` is linear in the number of image
            tokens through `(base_image_seq_len, base_shift)` and `(max_image_seq_len, max_shift)`).
        max_shift: `mu` at `max_image_seq_len` image tokens.
        base_image_seq_len: the image-token count of `base_shift`.
        max_image_seq_len: the image-token count of `max_shift`.
        time_shift_type: `"exponential"` (factor `exp(mu)`) or `"linear"` (factor `mu`).
        num_train_timesteps: the scheduler's `T` (its smallest training time is `1 / T`).
        spacing: the pipeline's base times, one of [`SPACINGS`][tgsample.flow.SPACINGS].
    """

    shift: float = 1.0
    use_dynamic_shifting: bool = False
    base_shift: float = 0.5
    max_shift: float = 1.15
    base_image_seq_len: int = 256
    max_image_seq_len: int = 4096
    time_shift_type: str = "exponential"
    num_train_timesteps: int = 1000
    spacing: str = "linspace"

    def __post_init__(self) -> None:
        if self.spacing not in SPACINGS:
            raise ConfigError(f"flow schedule spacing={self.spacing!r}; allowed: {list(SPACINGS)}")
        if self.time_shift_type not in TIME_SHIFT_TYPES:
            raise ConfigError(f"time_shift_type={self.time_shift_type!r}; allowed: {list(TIME_SHIFT_TYPES)}")
        if not (self.shift > 0 and math.isfinite(self.shift)):
            raise ConfigError(f"flow shift={self.shift!r} must be a finite number > 0")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], spacing: str = "linspace") -> "FlowSchedule":
        """From a scheduler config dict (`scheduler/scheduler_config.json`); options that do not
        describe a shifted schedule (Karras / exponential / beta sigmas, `shift_terminal`,
        `invert_sigmas`, `stochastic_sampling`) are refused with a [`ConfigError`][tgsample.errors.ConfigError]."""
        name = config.get("_class_name", "FlowMatchEulerDiscreteScheduler")
        if name != "FlowMatchEulerDiscreteScheduler":
            raise ConfigError(f"scheduler {name!r} is not a FlowMatchEulerDiscreteScheduler: not a flow-matching "
                              "pipeline that tgsample's flow adapters read")
        used = [k for k in _UNSUPPORTED if config.get(k)]
        if used:
            hint = " (stochastic sampling is tgsample's solver 'lcm')" if "stochastic_sampling" in used else ""
            raise ConfigError(f"scheduler options {used} are not supported by the flow schedule{hint}; "
                              f"supported: shift, use_dynamic_shifting (mu), time_shift_type")
        known = {f.name for f in fields(cls)} - {"spacing"}
        return cls(**{k: config[k] for k in known if config.get(k) is not None}, spacing=spacing)

    def mu(self, image_seq_len: int) -> float:
        """The dynamic shift of an image of `image_seq_len` tokens (diffusers' `calculate_shift`):
        `mu = base_shift + (max_shift - base_shift) (n - base_seq_len) / (max_seq_len - base_seq_len)`."""
        m = (self.max_shift - self.base_shift) / (self.max_image_seq_len - self.base_image_seq_len)
        return image_seq_len * m + (self.base_shift - m * self.base_image_seq_len)

    def factor(self, image_seq_len: Optional[int] = None, mu: Optional[float] = None) -> float:
        """The factor every sigma is multiplied by: `shift`, or `exp(mu)` / `mu` with dynamic shifting."""
        if not self.use_dynamic_shifting:
            return float(self.shift)
        if mu is None:
            if image_seq_len is None:
                raise ConfigError("this flow model shifts its schedule by the image size (use_dynamic_shifting): "
                                  "give image_seq_len (the number of image tokens) or mu")
            mu = self.mu(int(image_seq_len))
        return math.exp(mu) if self.time_shift_type == "exponential" else float(mu)

    def base_times(self, steps: int) -> Tensor:
        """The pipeline's unshifted times `t_0 = 1 > ... > t_{N-1}` (float32, as diffusers rounds them)."""
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ConfigError(f"steps={steps!r} must be a positive integer")
        if self.spacing == "linspace":
            return torch.linspace(1.0, 1.0 / steps, steps, dtype=torch.float64).float()
        T = self.num_train_timesteps
        t_min = torch.tensor(1.0 / T, dtype=torch.float32)  # the scheduler's sigma_min, computed at init
        if not self.use_dynamic_shifting:
            t_min = self.shift * t_min / (1 + (self.shift - 1) * t_min)
        return (torch.linspace(T * 1.0, float(t_min) * T, steps, dtype=torch.float64) / T).float()

    def sigmas(self, steps: int, image_seq_len: Optional[int] = None, mu: Optional[float] = None,
               shift: Optional[float] = None) -> Tensor:
        """The schedule in sigma space, float64, ending at 0: `factor * t / (1 - t)` of
        [`base_times`][tgsample.flow.FlowSchedule.base_times],
        the first (`t = 1`) being [`PURE_NOISE_SIGMA`][tgsample.flow.PURE_NOISE_SIGMA]. `shift` overrides the factor."""
        factor = float(shift) if shift is not None else self.factor(image_seq_len, mu)
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"flow shift factor {factor!r} must be a finite number > 0")
        t = self.base_times(steps).double()
        sigma = torch.where(t >= 1, torch.full_like(t, PURE_NOISE_SIGMA), M.flow_shift(t_to_sigma(t), factor))
        return torch.cat([sigma, sigma.new_zeros(1)])


def flow(steps: int, model: Any = None, *, shift: Optional[float] = None, mu: Optional[float] = None,
         image_seq_len: Optional[int] = None, spacing: Optional[str] = None) -> Tensor:
    """The flow-matching schedule of `model`'s pipeline in sigma space (what its
    `FlowMatchEulerDiscreteScheduler` would use), from pure noise ([`PURE_NOISE_SIGMA`][tgsample.flow.PURE_NOISE_SIGMA])
    to 0.

    `model` (a flow adapter or a [`Model`][tgsample.models.base.Model] around one) supplies its
    [`FlowSchedule`][tgsample.flow.FlowSchedule] (`flow_schedule`) and its image size in tokens (`image_seq_len`);
    without one the schedule is unshifted FLUX spacing. `shift` replaces the model's factor
    (static or dynamic), `mu` its dynamic shift, `spacing` its base times.
    """
    d = getattr(model, "denoiser", model)
    schedule = getattr(d, "flow_schedule", None) or FlowSchedule()
    if spacing is not None:
        schedule = FlowSchedule(**{**{f.name: getattr(schedule, f.name) for f in fields(schedule)}, "spacing": spacing})
    seq = image_seq_len if image_seq_len is not None else getattr(d, "image_seq_len", None)
    return schedule.sigmas(steps, image_seq_len=seq, mu=mu, shift=shift)
