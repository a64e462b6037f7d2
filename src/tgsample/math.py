r"""Pure tensor formulas in sigma space ($x = x_0 + \sigma \epsilon$).

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
"""A number or a tensor (a per-sample `[B]` tensor where a formula allows it)."""


def append_dims(t: Tensor | float, ndim: int) -> Tensor | float:
    """Right-pad `t` (shape `[B]` or scalar) with singleton dims to `ndim` dims."""
    if not isinstance(t, Tensor) or t.ndim == 0:
        return t
    return t.reshape(t.shape + (1,) * (ndim - t.ndim))


def lerp(a: Tensor, b: Tensor, weight: Scalar) -> Tensor:
    r"""$(1 - w)\,a + w\,b$ with $w$ = `weight`, exact at $w = 0$ (gives `a`) and $w = 1$ (gives `b`).

    The single linear-combination formula behind CFG ($a = D_u$, $b = D_c$, $w$ the scale),
    CFG++ ($w = \lambda$) and teacher guidance ($a = D_s$, $b = D_T$, $w = \lambda$).
    `weight` may be a float or a per-sample tensor of shape `[B]`; values
    outside `[0, 1]` extrapolate (CFG with `w > 1`).
    """
    if isinstance(weight, Tensor):
        weight = append_dims(weight.to(a.dtype), a.ndim)
    else:
        weight = float(weight)
    return torch.lerp(a, b, weight)


def interpolate(student: Tensor, teacher: Tensor, lam: Scalar) -> Tensor:
    r"""Teacher-guided estimate $D_{\text{new}} = (1 - \lambda) D_s + \lambda D_T$ (Distillation++, the update rule)."""
    return lerp(student, teacher, lam)


def interpolate_noise(x: Tensor, sigma: Scalar, student: Tensor, teacher_noise: Tensor, lam: Scalar) -> Tensor:
    r"""Teacher-guided estimate in noise space (the Distillation++ reference code's `random++` update):
    $\epsilon_{\text{new}} = (1 - \lambda)\,\epsilon_s + \lambda\,\epsilon_T$ with the student's
    $\epsilon_s = (x - D_s) / \sigma$ at its own $x, \sigma$ and the teacher's noise prediction $\epsilon_T$
    (at its renoised input), returned as the x0 estimate $x - \sigma \epsilon_{\text{new}}$.

    Computed as `interpolate(D_s, x - sigma * eps_T, lam)` (the same value): the teacher's noise carried to
    the student's point, then the x0 interpolation, so $\lambda = 0$ gives $D_s$ and $\lambda = 1$ gives
    $x - \sigma \epsilon_T$ exactly.
    """
    return interpolate(student, eps_to_x0(x, teacher_noise, sigma), lam)


def cfg(uncond: Tensor, cond: Tensor, scale: Scalar) -> Tensor:
    r"""Classifier-free guidance $D_u + w\,(D_c - D_u)$; $w = 1$ returns $D_c$ exactly."""
    return lerp(uncond, cond, scale)


def rescale_guided(guided: Tensor, cond: Tensor, phi: float) -> Tensor:
    r"""Guidance rescale (Lin et al. 2023, sec. 3.4; diffusers' `rescale_noise_cfg`):
    $\phi\, g \operatorname{std}(c) / \operatorname{std}(g) + (1 - \phi)\, g$ with $g$ = `guided`, $c$ = `cond`,
    std per sample over all other dims.

    Applied to noise predictions (`guided = eps_cfg`, `cond = eps_c`), as diffusers does for eps models.
    """
    dims = list(range(1, guided.ndim))
    return phi * guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)) + (1 - phi) * guided


def implied_noise(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    r"""The noise an x0 estimate implies: $\epsilon = (x - x_0) / \sigma$ (k-diffusion's `to_d`)."""
    return (x - x0) / append_dims(sigma, x.ndim)


def renoise(x0: Tensor, sigma: Scalar, noise: Tensor) -> Tensor:
    r"""Forward-noise an x0 estimate to level $\sigma$: $x_r = x_0 + \sigma n$.

    $\sigma = 0$ returns `x0` unchanged (the identity).
    """
    return x0 + append_dims(sigma, x0.ndim) * noise


def hybrid_noise(deterministic: Tensor, fresh: Tensor, c: Scalar) -> Tensor:
    r"""Unit-variance mix $n = c\, n_{\text{det}} + \sqrt{1 - c^2}\, z$ for $c \in [0, 1]$."""
    c = float(c)
    if not 0.0 <= c <= 1.0:
        from .errors import ConfigError

        raise ConfigError(f"hybrid noise weight c={c!r} is outside the allowed range [0, 1]")
    return c * deterministic + _math.sqrt(1.0 - c * c) * fresh


def ancestral_split(sigma: Scalar, sigma_next: Scalar, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""Split a step `sigma -> sigma_next` into a deterministic and a stochastic part:

    $$\sigma_{\text{up}} = \min\Big(\sigma_{\text{next}},\ \eta \sqrt{\sigma_{\text{next}}^2 (\sigma^2 - \sigma_{\text{next}}^2) / \sigma^2}\Big),
    \qquad \sigma_{\text{down}} = \sqrt{\sigma_{\text{next}}^2 - \sigma_{\text{up}}^2},$$

    so $\sigma_{\text{down}}^2 + \sigma_{\text{up}}^2 = \sigma_{\text{next}}^2$ and
    $0 \le \sigma_{\text{down}} \le \sigma_{\text{next}}$. $\eta = 0$ is deterministic.

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
    r"""$\sigma = \sqrt{(1 - \bar\alpha) / \bar\alpha}$ (`abar` is $\bar\alpha$, the cumulative product of the
    alphas)."""
    return ((1 - abar) / abar).sqrt()


def sigma_to_abar(sigma: Tensor) -> Tensor:
    r"""$\bar\alpha = 1 / (1 + \sigma^2)$ (inverse of [`abar_to_sigma`][tgsample.math.abar_to_sigma])."""
    return 1.0 / (1.0 + sigma**2)


def vp_scale(sigma: Scalar) -> Scalar:
    r"""$c_{\text{in}} = 1 / \sqrt{1 + \sigma^2}$: sigma-space $x$ to the VP net input $x_{\text{vp}}$."""
    return 1.0 / (1.0 + sigma**2) ** 0.5


def eps_to_x0(x: Tensor, eps: Tensor, sigma: Scalar) -> Tensor:
    r"""$D = x - \sigma \hat\epsilon$ (epsilon-prediction)."""
    return x - append_dims(sigma, x.ndim) * eps


def x0_to_eps(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """Inverse of [`eps_to_x0`][tgsample.math.eps_to_x0]: `eps = (x - x0) / sigma`."""
    return implied_noise(x, x0, sigma)


def v_to_x0(x: Tensor, v: Tensor, sigma: Scalar) -> Tensor:
    r"""VP v-prediction: $D = c_{\text{skip}}\, x + c_{\text{out}}\, \hat v$ with
    $c_{\text{skip}} = 1 / (\sigma^2 + 1)$,
    $c_{\text{out}} = -\sigma / \sqrt{\sigma^2 + 1}$."""
    s = append_dims(sigma, x.ndim)
    return x / (s**2 + 1) - s / (s**2 + 1) ** 0.5 * v


def x0_to_v(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """Inverse of [`v_to_x0`][tgsample.math.v_to_x0]: `v = (x / (sigma^2+1) - x0) * sqrt(sigma^2+1) / sigma`."""
    s = append_dims(sigma, x.ndim)
    return (x / (s**2 + 1) - x0) * (s**2 + 1) ** 0.5 / s


def flow_t(sigma: Scalar) -> Scalar:
    r"""Rectified-flow time $t = \sigma / (1 + \sigma)$ (so $x_t = (1 - t)\, x_0 + t \epsilon = x / (1 + \sigma)$)."""
    return sigma / (1 + sigma)


def flow_sigma(t: Scalar) -> Scalar:
    r"""Inverse of [`flow_t`][tgsample.math.flow_t]: $\sigma = t / (1 - t)$."""
    return t / (1 - t)


def flow_to_x0(x: Tensor, velocity: Tensor, sigma: Scalar) -> Tensor:
    r"""Flow matching, $v = \epsilon - x_0$: $D = x_t - t \hat v$ with $x_t = x / (1 + \sigma)$."""
    s = append_dims(sigma, x.ndim)
    t = flow_t(s)
    return x / (1 + s) - t * velocity


def x0_to_flow(x: Tensor, x0: Tensor, sigma: Scalar) -> Tensor:
    """Inverse of [`flow_to_x0`][tgsample.math.flow_to_x0]: `v = (x_t - x0) / t`."""
    s = append_dims(sigma, x.ndim)
    return (x / (1 + s) - x0) / flow_t(s)


def flow_shift(sigma: Scalar, shift: Scalar) -> Scalar:
    r"""A flow model's time shift in sigma space: $\sigma' = s \sigma$ with $s$ = `shift`.

    diffusers' static shift $t' = s t / (1 + (s - 1)\, t)$ is exactly this, since
    $t' / (1 - t') = s\, t / (1 - t)$; the resolution-dependent ("dynamic") shifts are the same
    with `shift = exp(mu)` (`time_shift_type="exponential"`: `t' = e^mu / (e^mu + 1/t - 1)`) or
    `shift = mu` (`"linear"`). A shift multiplies every noise level by one constant.
    """
    return shift * sigma
