"""Pure tensor formulas in sigma space (`x = x0 + sigma * eps`).

Every formula of the toolkit is written once here; guidances, solvers and model
adapters call these functions. Nothing here draws random numbers: noise comes in
as an argument.
"""

from __future__ import annotations

import math as _math
from typing import Union

import torch
from torch import Tensor

Scalar = Union[float, Tensor]


def append_dims(t: Tensor | float, ndim: int) -> Tensor | float:
    """Right-pad `t` (shape `[B]` or scalar) with singleton dims to `ndim` dims."""
    if not isinstance(t, Tensor) or t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def lerp(a: Tensor, b: Tensor, weight: Scalar) -> Tensor:
    """`(1 - weight) * a + weight * b`, exact at `weight = 0` (gives `a`) and `1` (gives `b`).

    The single linear-combination formula behind CFG (`a = D_u, b = D_c, weight = w`),
    CFG++ (`weight = lam`) and teacher guidance (`a = D_s, b = D_T, weight = lam`).
    `weight` may be a float or a per-sample tensor of shape `[B]`; values
    outside `[0, 1]` extrapolate (CFG with `w > 1`).
    """
    if isinstance(weight, Tensor):
        weight = append_dims(weight.to(a.dtype), a.ndim)
    else:
        weight = float(weight)
    return torch.lerp(a, b, weight)


def interpolate(student: Tensor, teacher: Tensor, lam: Scalar) -> Tensor:
    """Teacher-guided estimate `D_new = (1 - lam) * D_s + lam * D_T` (Distillation++, eq. of the update rule)."""
    return lerp(student, teacher, lam)


def interpolate_noise(x: Tensor, sigma: Scalar, student: Tensor, teacher_noise: Tensor, lam: Scalar) -> Tensor:
    r"""Teacher-guided estimate in noise space (the Distillation++ reference code's `random++` update):
    `eps_new = (1 - lam) eps_s + lam eps_T` with the student's `eps_s = (x - D_s) / sigma` at its own
    `x, sigma` and the teacher's noise prediction `eps_T` (at its renoised input), returned as the x0
    estimate `x - sigma eps_new`.

    Computed as `interpolate(D_s, x - sigma eps_T, lam)` (the same value): the teacher's noise carried to
    the student's point, then the x0 interpolation, so `lam = 0` gives `D_s` and `lam = 1` gives
    `x - sigma eps_T` exactly.
    """
    return interpolate(student, eps_to_x0(x, teacher_noise, sigma), lam)


def cfg(uncond: Tensor, cond: Tensor, scale: Scalar) -> Tensor:
    """Classifier-free guidance `D_u + w * (D_c - D_u)`; `w = 1` returns `D_c` exactly."""
    return lerp(uncond, cond, scale)


def rescale_guided(guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    """Guidance rescale (Lin et al. 2023, sec. 3.4; diffusers' `rescale_noise_cfg`):
    `phi * guided * std(cond) / std(guided) + (1 - phi) * guided`, std per sample over all other dims.

    Applied to noise predictions (`guided = eps_cfg`, `cond = eps_c`), as diffusers does for eps models.
    """
    dims = list(range(1, guided.ndim))
    return phi * guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)) + (1 - phi) * guided


def implied_noise(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """The noise an x0 estimate implies: `eps = (x - x0) / sigma` (k-diffusion's `to_d`)."""
    return (x - x0) / append_dims(sigma, x.ndim)


def renoise(x0: Tensor, sigma: Scalar, noise: Tensor) -> Tensor:
    """Forward-noise an x0 estimate to level `sigma`: `x_r = x0 + sigma * n`.

    `sigma = 0` returns `x0` unchanged (the identity).
    """
    return x0 + append_dims(sigma, x0.ndim) * noise


def hybrid_noise(deterministic: Tensor, fresh: Tensor, c: Scalar) -> Tensor:
    """Unit-variance mix `n = c * n_det + sqrt(1 - c^2) * z` for `c` in `[0, 1]`."""
    c = float(c)
    if not 0.0 <= c <= 1.0:
        from .errors import ConfigError

        raise ConfigError(f"hybrid noise weight c={c!r} is outside the allowed range [0, 1]")
    return c * deterministic + _math.sqrt(1.0 - c * c) * fresh


def ancestral_split(sigma: Scalar, sigma_next: Scalar, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split a step `sigma -> sigma_next` into a deterministic and a stochastic part.

    `sigma_up = min(sigma_next, eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))`,
    `sigma_down = sqrt(sigma_next^2 - sigma_up^2)`; so `sigma_down^2 + sigma_up^2 = sigma_next^2`
    and `0 <= sigma_down <= sigma_next`. `eta = 0` is deterministic.

    Computed as `sigma_next` times factors in `[0, 1]` (`f = min(1, eta sqrt(1 - (sigma_next/sigma)^2))`,
    `sigma_up = sigma_next f`, `sigma_down = sigma_next sqrt(1 - f^2)`), so no square of a tiny sigma
    underflows to a subnormal and `sigma_down <= sigma_next` holds exactly in floating point.
    """
    sigma = torch.as_tensor(sigma)
    sigma_next = torch.as_tensor(sigma_next, dtype=sigma.dtype, device=sigma.device)
    if not eta:
        return sigma_next.clone(), torch.zeros_like(sigma_next)
    ratio = sigma_next / sigma
    f = (eta * (1 - ratio**2).clamp(min=0.0).sqrt()).clamp(max=1.0)
    return sigma_next * (1 - f**2).clamp(min=0.0).sqrt(), sigma_next * f


# --- parameterisations ---------------------------------------------------------------
# VP models: x_vp = sqrt(abar) x0 + sqrt(1 - abar) eps, and x = x_vp / sqrt(abar) = x0 + sigma eps
# with sigma = sqrt((1 - abar) / abar). The net sees x_vp = x / sqrt(1 + sigma^2).


def abar_to_sigma(abar: Tensor) -> Tensor:
    """`sigma = sqrt((1 - abar) / abar)`."""
    return ((1 - abar) / abar).sqrt()


def sigma_to_abar(sigma: Tensor) -> Tensor:
    """`abar = 1 / (1 + sigma^2)` (inverse of [`abar_to_sigma`][tgsample.math.abar_to_sigma])."""
    return 1.0 / (1.0 + sigma**2)


def vp_scale(sigma: Scalar) -> Scalar:
    """`c_in = 1 / sqrt(1 + sigma^2)`: sigma-space `x` to the VP net input `x_vp`."""
    return 1.0 / (1.0 + sigma**2) ** 0.5


def eps_to_x0(x: Tensor, eps: Tensor, sigma: Scalar) -> Tensor:
    """`D = x - sigma * eps_hat`."""
    return x - append_dims(sigma, x.ndim) * eps


def x0_to_eps(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """Inverse of [`eps_to_x0`][tgsample.math.eps_to_x0]: `eps = (x - x0) / sigma`."""
    return implied_noise(x, x0, sigma)


def v_to_x0(x: Tensor, v: Tensor, sigma: Scalar) -> Tensor:
    """VP v-prediction: `D = c_skip x + c_out v` with `c_skip = 1/(sigma^2+1)`, `c_out = -sigma/sqrt(sigma^2+1)`."""
    s = append_dims(sigma, x.ndim)
    return x / (s**2 + 1) - s / (s**2 + 1) ** 0.5 * v


def x0_to_v(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """Inverse of [`v_to_x0`][tgsample.math.v_to_x0]: `v = (x / (sigma^2+1) - x0) * sqrt(sigma^2+1) / sigma`."""
    s = append_dims(sigma, x.ndim)
    return (x / (s**2 + 1) - x0) * (s**2 + 1) ** 0.5 / s


def flow_t(sigma: Scalar) -> Scalar:
    """Rectified-flow time `t = sigma / (1 + sigma)` (so `x_t = (1 - t) x0 + t eps = x / (1 + sigma)`)."""
    return sigma / (1 + sigma)


def flow_sigma(t: Scalar) -> Scalar:
    """Inverse of [`flow_t`][tgsample.math.flow_t]: `sigma = t / (1 - t)`."""
    return t / (1 - t)


def flow_to_x0(x: Tensor, velocity: Tensor, sigma: Scalar) -> Tensor:
    """Flow matching, `v = eps - x0`: `D = x_t - t * v` with `x_t = x / (1 + sigma)`."""
    s = append_dims(sigma, x.ndim)
    t = flow_t(s)
    return x / (1 + s) - t * velocity


def x0_to_flow(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """Inverse of [`flow_to_x0`][tgsample.math.flow_to_x0]: `v = (x_t - x0) / t`."""
    s = append_dims(sigma, x.ndim)
    return (x / (1 + s) - x0) / flow_t(s)


def flow_shift(sigma: Scalar, shift: Scalar) -> Scalar:
    """A flow model's time shift in sigma space: `sigma' = shift * sigma`.

    diffusers' static shift `t' = shift t / (1 + (shift - 1) t)` is exactly this, since
    `t' / (1 - t') = shift * t / (1 - t)`; the resolution-dependent ("dynamic") shifts are the same
    with `shift = exp(mu)` (`time_shift_type="exponential"`: `t' = e^mu / (e^mu + 1/t - 1)`) or
    `shift = mu` (`"linear"`). A shift multiplies every noise level by one constant.
    """
    return shift * sigma
