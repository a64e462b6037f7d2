"""Sigma schedules: strictly decreasing sequences of noise levels that end at 0.

Continuous schedules (karras, exponential, polyexponential, vp) come from k-diffusion.
Discrete schedules of distilled models are timestep lists converted to sigmas through
the model's own `abar` table (log-sigma interpolation, [`DiscreteSchedule`][tgsample.denoisers.DiscreteSchedule]):

* `lcm` -- LCM's skipping schedule over `original_steps` (4 steps: `[999, 759, 499, 259]`);
* `trailing` -- SDXL-Lightning / Turbo / DMD2 (4 steps: `[999, 749, 499, 249]`);
* `tdd` / `timesteps` -- an explicit, possibly non-equidistant list (TDD: `[999, 875, 751, 499, 251]`).

Every schedule function has the signature `fn(steps, model=None, **options) -> Tensor`; `model`
(a denoiser or a [`Model`][tgsample.models.base.Model]) supplies `sigma_min` / `sigma_max` / the `abar` table.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from .denoisers import has_table
from .errors import ConfigError, ScheduleError

__all__ = ["TDD_DEFAULT", "check_steps", "exponential", "karras", "lcm", "lcm_timesteps", "polyexponential",
           "sigma_range", "tdd", "timesteps", "timesteps_to_sigmas", "trailing", "trailing_timesteps", "validate_sigmas",
           "vp"]


def k_sampling() -> Any:
    """`k_diffusion.sampling` ([`tgsample.kdiffusion.k_sampling`][tgsample.kdiffusion.k_sampling]), imported on first
    use."""
    from .kdiffusion import k_sampling as load

    return load()


def validate_sigmas(sigmas: Any) -> Tensor:
    """Return `sigmas` as a 1-D float tensor after checking it is a valid schedule.

    A floating tensor keeps its dtype (a float64 schedule stays float64); anything else becomes
    float64 (Python floats are doubles). Raises [`ScheduleError`][tgsample.errors.ScheduleError] unless it has >= 2
    finite
    entries, is strictly decreasing and ends at exactly 0.
    """
    s = sigmas.flatten() if torch.is_tensor(sigmas) else torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if s.numel() < 2:
        raise ScheduleError(f"a schedule needs at least 2 sigmas (one step); got {s.tolist()}")
    if not bool(torch.isfinite(s).all()):
        raise ScheduleError(f"schedule has non-finite sigmas: {s.tolist()}")
    if float(s[-1]) != 0.0:
        raise ScheduleError(f"a schedule must end at sigma 0; it ends at {float(s[-1])!r}")
    bad = (s[1:] >= s[:-1]).nonzero().flatten().tolist()
    if bad:
        i = bad[0]
        raise ScheduleError(
            f"schedule is not strictly decreasing: sigma[{i}]={float(s[i])!r} <= sigma[{i + 1}]={float(s[i + 1])!r} "
            f"in {[round(v, 5) for v in s.tolist()]}"
        )
    return s


def _denoiser(model: Any) -> Any:
    return getattr(model, "denoiser", model)


def sigma_range(model: Any, sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
                who: str = "schedule") -> tuple[float, float]:
    """`(sigma_min, sigma_max)`: the given values, else the model's (its denoiser's) attributes;
    [`ConfigError`][tgsample.errors.ConfigError] unless `0 < sigma_min < sigma_max < inf`. For schedule functions
    (plugins too)."""
    d = _denoiser(model)
    lo = sigma_min if sigma_min is not None else getattr(d, "sigma_min", None)
    hi = sigma_max if sigma_max is not None else getattr(d, "sigma_max", None)
    if lo is None or hi is None:
        raise ConfigError(f"{who}: give sigma_min and sigma_max, or a model that has them")
    if not 0 < float(lo) < float(hi) < math.inf:
        raise ConfigError(f"{who} needs 0 < sigma_min < sigma_max < inf; got sigma_min={lo!r}, sigma_max={hi!r}")
    return float(lo), float(hi)


def check_steps(steps: Any) -> int:
    """`steps` if it is a positive integer, else [`ConfigError`][tgsample.errors.ConfigError] (for schedule functions,
    plugins too)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ConfigError(f"steps={steps!r} must be a positive integer")
    return steps


def karras(steps: int, model: Any = None, *, sigma_min: Optional[float] = None,
           sigma_max: Optional[float] = None, rho: float = 7.0) -> Tensor:
    """Karras et al. (2022): `sigma_i = (hi^(1/rho) + i/(n-1) (lo^(1/rho) - hi^(1/rho)))^rho`, then 0."""
    lo, hi = sigma_range(model, sigma_min, sigma_max)
    return validate_sigmas(k_sampling().get_sigmas_karras(check_steps(steps), lo, hi, rho=rho))


def exponential(steps: int, model: Any = None, *, sigma_min: Optional[float] = None,
                sigma_max: Optional[float] = None) -> Tensor:
    """Log-linear: `sigma_i = exp(log hi + i/(n-1) (log lo - log hi))` from `sigma_max` to `sigma_min`, then 0."""
    lo, hi = sigma_range(model, sigma_min, sigma_max)
    return validate_sigmas(k_sampling().get_sigmas_exponential(check_steps(steps), lo, hi))


def polyexponential(steps: int, model: Any = None, *, sigma_min: Optional[float] = None,
                    sigma_max: Optional[float] = None, rho: float = 1.0) -> Tensor:
    """Polynomial in log sigma: `sigma_i = exp(log lo + (1 - i/(n-1))^rho (log hi - log lo))`, then 0
    (`rho = 1` is [`exponential`][tgsample.schedules.exponential])."""
    lo, hi = sigma_range(model, sigma_min, sigma_max)
    return validate_sigmas(k_sampling().get_sigmas_polyexponential(check_steps(steps), lo, hi, rho=rho))


def vp(steps: int, model: Any = None, *, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> Tensor:
    """The continuous VP schedule (Song et al. 2021): `sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)`
    at `t` linear from 1 to `eps_s` (continuous time, not table timesteps), then 0."""
    return validate_sigmas(k_sampling().get_sigmas_vp(check_steps(steps), beta_d=beta_d, beta_min=beta_min, eps_s=eps_s))


def timesteps_to_sigmas(model: Any, timesteps: Sequence[float]) -> Tensor:
    """Sigmas of discrete timesteps through the model's own `abar` table, with a final 0 (float64, the
    table's precision; [`tgsample.sample`][tgsample.sampling.sample] casts them to the sampling dtype)."""
    d = _denoiser(model)
    if d is None or not has_table(d):
        raise ConfigError(
            f"a timestep schedule needs a discrete-time model with an abar table; {type(d).__name__} has none "
            f"(use karras / exponential for continuous models)"
        )
    ts = torch.as_tensor(list(timesteps), dtype=torch.float64)
    n = d.schedule.num_timesteps if hasattr(d, "schedule") else None
    if n is not None and (bool((ts < 0).any()) or bool((ts > n - 1).any())):
        raise ConfigError(f"timesteps {ts.tolist()} fall outside the model's table [0, {n - 1}]")
    return validate_sigmas(torch.cat([d.t_to_sigma(ts).cpu(), torch.zeros(1, dtype=torch.float64)]))


def timesteps(steps: Optional[int] = None, model: Any = None, *, timesteps: Sequence[float]) -> Tensor:
    """An explicit list of discrete timesteps (descending) converted through the model's table."""
    if steps is not None and steps != len(timesteps):
        raise ConfigError(f"steps={steps} but {len(timesteps)} timesteps were given: {list(timesteps)}")
    return timesteps_to_sigmas(model, timesteps)


def lcm_timesteps(steps: int, num_train_timesteps: int = 1000, original_steps: int = 50) -> list[int]:
    """LCM's skipping schedule (diffusers' `LCMScheduler`): every `T // original_steps`-th timestep,
    `steps` of them picked evenly from the top. 4 of 50 over 1000: `[999, 759, 499, 259]`."""
    k = num_train_timesteps // original_steps
    origin = [(j + 1) * k - 1 for j in range(original_steps)][::-1]
    if check_steps(steps) > original_steps:
        raise ConfigError(f"steps={steps} exceeds LCM's original_steps={original_steps}")
    return [origin[math.floor(j * original_steps / steps)] for j in range(steps)]


def trailing_timesteps(steps: int, num_train_timesteps: int = 1000) -> list[int]:
    """Diffusers' "trailing" spacing: `round(T - j T / n) - 1`. 4 over 1000: `[999, 749, 499, 249]`."""
    n = check_steps(steps)
    return [int(round(num_train_timesteps - j * num_train_timesteps / n)) - 1 for j in range(n)]


def _table_size(model: Any) -> int:
    d = _denoiser(model)
    return d.schedule.num_timesteps if hasattr(d, "schedule") else 1000


def lcm(steps: int, model: Any = None, *, original_steps: int = 50) -> Tensor:
    """LCM's schedule ([`lcm_timesteps`][tgsample.schedules.lcm_timesteps]) in sigmas of `model`'s table."""
    return timesteps_to_sigmas(model, lcm_timesteps(steps, _table_size(model), original_steps))


def trailing(steps: int, model: Any = None) -> Tensor:
    """The "trailing" schedule ([`trailing_timesteps`][tgsample.schedules.trailing_timesteps]) in sigmas of `model`'s
    table."""
    return timesteps_to_sigmas(model, trailing_timesteps(steps, _table_size(model)))


TDD_DEFAULT = (999, 875, 751, 499, 251)
"""TDD's default timesteps (its non-equidistant special-jump schedule)."""


def tdd(steps: Optional[int] = None, model: Any = None, *, timesteps: Sequence[int] = TDD_DEFAULT) -> Tensor:
    """TDD's non-equidistant ("special jump") schedule, given as an explicit timestep list
    (default `[999, 875, 751, 499, 251]`, finer steps at high noise)."""
    if steps is not None and steps != len(timesteps):
        raise ConfigError(f"tdd: steps={steps} but the timestep list {list(timesteps)} has {len(timesteps)}; "
                          f"pass timesteps=[...] with {steps} entries")
    return timesteps_to_sigmas(model, timesteps)
