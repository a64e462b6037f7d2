"""Model adapters: every parameterisation becomes a denoiser `D(x, sigma, **cond) -> x0`.

tgsample works in the EDM / k-diffusion convention `x = x0 + sigma * eps`. A
network that predicts eps, v, x0 or a flow velocity, in VP or rectified-flow
coordinates, is converted here, once, at the edge (docs: Concepts, "Sigma space"):

| family | net input | D |
| --- | --- | --- |
| VP eps | `x / sqrt(1 + sigma^2)` at `t(sigma)` | `x - sigma * eps_hat` |
| VP v | same | `x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) * v_hat` |
| VP x0 | same | `x0_hat` |
| flow | `x / (1 + sigma)` at `t = sigma / (1 + sigma)` | `x_t - t * v_hat` |
| EDM | `c_in x` at `log(sigma) / 4` | `c_skip x + c_out F` |

`t(sigma)` of a discrete-time model interpolates in log-sigma over the model's own
`abar` table (`alphas_cumprod`); a flow model's is exact, `t = sigma / (1 + sigma)`. Both
expose it as `sigma_to_t` / `t_to_sigma` (teacher guidance draws its random renoise level
uniformly in that `t`); only the first has a table of integer timesteps ([`has_table`][tgsample.denoisers.has_table]).

A denoiser takes `sigma` of shape `[B]` (one noise level per sample) and the
conditioning as keyword tensors, batch first; an adapter ignores keys it does not use,
so one conditioning dict can serve a student and a teacher.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from . import math as M
from .errors import ConfigError

PREDICTIONS = ("epsilon", "v_prediction", "sample")
"""The prediction types of a [`DiscreteVPDenoiser`][tgsample.denoisers.DiscreteVPDenoiser] (diffusers'
`prediction_type`)."""


def has_table(denoiser: Any) -> bool:
    """Whether `denoiser` is a discrete-time model with an `abar` table: its `sigma_to_t` /
    `t_to_sigma` map to the table's timesteps `0 .. T - 1` (TCD's integer steps, timestep schedules).
    A flow denoiser's `t` is continuous in `[0, 1]` and has none."""
    return getattr(denoiser, "alphas_cumprod", None) is not None and hasattr(denoiser, "t_to_sigma")
_ALIASES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample", "epsilon": "epsilon",
            "v_prediction": "v_prediction", "sample": "sample"}


def check_prediction(prediction: str) -> str:
    """Normalise a prediction-type name (diffusers' names or eps / v / x0)."""
    try:
        return _ALIASES[prediction]
    except KeyError:
        raise ConfigError(
            f"unknown prediction type {prediction!r}; allowed: {sorted(_ALIASES)}"
        ) from None


class Denoiser(nn.Module):
    """Base class of all adapters: `forward(x, sigma, **cond)` returns the x0 estimate.

    Attributes:
        sigma_min: the smallest positive noise level the model was trained on.
        sigma_max: the largest noise level the model was trained on.
        alphas_cumprod: the discrete model's `abar` table (`None` for continuous models).
        sample_shape: the per-sample shape `(C, H, W)` when the model knows it, else `None`.
        sample_device: where [`tgsample.sample`][tgsample.sampling.sample] computes samples by default;
            `None`: the parameters' device (an offloaded flow transformer says its compute device).
        sample_dtype: the dtype in which it computes them by default; `None`: the parameters' dtype
            (a flow model says float32 whatever its weights' dtype).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    alphas_cumprod: Optional[Tensor] = None
    sample_shape: Optional[tuple[int, ...]] = None
    sample_device: Optional[torch.device] = None
    sample_dtype: Optional[torch.dtype] = None

    def init_noise_scale(self, sigma: Tensor) -> Tensor:
        """Std of the starting sample at noise `sigma`: `sigma` (k-diffusion's convention)."""
        return sigma


class CallableDenoiser(Denoiser):
    """Wrap a plain function `fn(x, sigma, **cond) -> x0` (analytic denoisers, tests, plugins)."""

    def __init__(self, fn: Callable[..., Tensor], sigma_min: float = 0.002, sigma_max: float = 80.0,
                 sample_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.fn = fn
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else None

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """`D = fn(x, sigma, **cond)`; `sigma` is the noise level per sample, shape `[B]`."""
        return self.fn(x, sigma, **cond)


class DiscreteSchedule(nn.Module):
    """A discrete-time model's `abar` table and the map `sigma <-> t` (log-sigma interpolation)."""

    def __init__(self, alphas_cumprod: Tensor):
        super().__init__()
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64)
        if abar.ndim != 1 or len(abar) < 2 or not bool(((abar > 0) & (abar < 1)).all()):
            raise ConfigError("alphas_cumprod must be a 1-D table of at least 2 values in (0, 1)")
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)
        self.register_buffer("log_sigmas", M.abar_to_sigma(abar).log(), persistent=False)

    @property
    def num_timesteps(self) -> int:
        """Length `T` of the table: timesteps run over `0 .. T - 1`."""
        return len(self.log_sigmas)

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Fractional timestep `t` whose noise level is `sigma`: linear in `log sigma` between the two
        neighbouring table entries, `sigma_t = sqrt((1 - abar_t) / abar_t)` (clamped to the table's range)."""
        log_sigmas = self.log_sigmas
        sigma = torch.as_tensor(sigma)
        dtype = sigma.dtype if sigma.is_floating_point() else torch.float32
        flat = sigma.to(log_sigmas.device, torch.float64).log().reshape(-1)
        high = torch.searchsorted(log_sigmas, flat).clamp(1, len(log_sigmas) - 1)
        low = high - 1
        w = ((flat - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])).clamp(0, 1)
        return (low + w).reshape(sigma.shape).to(dtype)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Noise level of a (fractional) timestep `t`: `log sigma` interpolated linearly between
        `floor(t)` and `ceil(t)` of the table, `sigma_t = sqrt((1 - abar_t) / abar_t)`."""
        t = torch.as_tensor(t, dtype=torch.float64, device=self.log_sigmas.device)
        low = t.floor().long().clamp(0, len(self.log_sigmas) - 1)
        high = t.ceil().long().clamp(0, len(self.log_sigmas) - 1)
        w = t - t.floor()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()


class DiscreteVPDenoiser(Denoiser):
    """A VP network `net(x_vp, t, **cond)` with eps, v or x0 prediction, as a sigma-space denoiser.

    Args:
        net: called on `x / sqrt(1 + sigma^2)` and the fractional timestep `t(sigma)`.
        alphas_cumprod: the model's own `abar` table.
        prediction: `"epsilon"` / `"v_prediction"` / `"sample"` (or `eps` / `v` / `x0`).
        boundary: optional consistency-model boundary scalings `t -> (c_skip, c_out)` applied as
            `D = c_skip * x_vp + c_out * D_raw` (LCM students).
        quantize: round `t` to the nearest integer timestep (models trained on integer t only).
    """

    def __init__(self, net: Callable[..., Tensor], alphas_cumprod: Tensor, prediction: str = "epsilon",
                 boundary: Optional[Callable[[Tensor], tuple[Tensor, Tensor]]] = None,
                 quantize: bool = False, sample_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.net = net
        self.schedule = DiscreteSchedule(alphas_cumprod)
        self.prediction = check_prediction(prediction)
        self.boundary = boundary
        self.quantize = quantize
        sigmas = self.schedule.log_sigmas.exp()
        self.sigma_min, self.sigma_max = float(sigmas[0]), float(sigmas[-1])
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else None

    @property
    def alphas_cumprod(self) -> Tensor:  # type: ignore[override]
        return self.schedule.alphas_cumprod

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Fractional timestep of noise level `sigma` on the model's table
        ([`DiscreteSchedule.sigma_to_t`][tgsample.denoisers.DiscreteSchedule.sigma_to_t])."""
        return self.schedule.sigma_to_t(sigma)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Noise level of timestep `t` on the model's table
        ([`DiscreteSchedule.t_to_sigma`][tgsample.denoisers.DiscreteSchedule.t_to_sigma])."""
        return self.schedule.t_to_sigma(t)

    def init_noise_scale(self, sigma: Tensor) -> Tensor:
        """VP models start from `x_vp ~ N(0, I)`, i.e. `x = sqrt(1 + sigma^2) z` in sigma space."""
        return (sigma**2 + 1) ** 0.5

    def quantized(self) -> "DiscreteVPDenoiser":
        """This denoiser with `quantize=True`: a view sharing the net and the table (`self` if already so)."""
        if self.quantize:
            return self
        view = copy.copy(self)  # a new attribute dict; parameters, buffers and submodules are shared
        view.quantize = True
        return view

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """x0 estimate at noise level `sigma` (`[B]`).

        The net sees `x_vp = x / sqrt(1 + sigma^2)` at the timestep `t(sigma)`; eps gives
        `D = x - sigma eps`, v gives `D = x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) v`, x0 gives
        `D = x0`; then `D = c_skip(t) x_vp + c_out(t) D` if `boundary` is set.
        """
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        t = self.sigma_to_t(sigma).to(x.dtype)
        if self.quantize:
            t = t.round()
        x_vp = x * M.append_dims(M.vp_scale(sigma), x.ndim)
        out = self.net(x_vp, t, **cond)
        if self.prediction == "epsilon":
            x0 = M.eps_to_x0(x, out, sigma)
        elif self.prediction == "v_prediction":
            x0 = M.v_to_x0(x, out, sigma)
        else:
            x0 = out
        if self.boundary is not None:
            c_skip, c_out = self.boundary(t)
            x0 = M.append_dims(c_skip, x.ndim) * x_vp + M.append_dims(c_out, x.ndim) * x0
        return x0


def lcm_boundary(timestep_scaling: float = 10.0, sigma_data: float = 0.5) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """LCM's boundary scalings (diffusers' `LCMScheduler`):
    `c_skip = sd^2 / ((s t)^2 + sd^2)`, `c_out = s t / sqrt((s t)^2 + sd^2)` with `s = timestep_scaling`."""

    def scalings(t: Tensor) -> tuple[Tensor, Tensor]:
        st = t * timestep_scaling
        return sigma_data**2 / (st**2 + sigma_data**2), st / (st**2 + sigma_data**2) ** 0.5

    return scalings


class FlowDenoiser(Denoiser):
    """A rectified-flow network `net(x_t, t * t_scale, **cond) -> v` (`v = eps - x0`) as a denoiser.

    `x_t = (1 - t) x0 + t eps = x / (1 + sigma)`, `t = sigma / (1 + sigma)`, `D = x_t - t v`.
    """

    def __init__(self, net: Callable[..., Tensor], t_scale: float = 1000.0, t_min: float = 1e-3,
                 t_max: float = 0.999, sample_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.net = net
        self.t_scale = float(t_scale)
        self.sigma_min, self.sigma_max = float(M.flow_sigma(t_min)), float(M.flow_sigma(t_max))
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else None

    def init_noise_scale(self, sigma: Tensor) -> Tensor:
        """Flow models start from `x_t = eps`: `x = (1 + sigma) z`."""
        return 1 + sigma

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """The flow time `t = sigma / (1 + sigma)` in `[0, 1]`, exact
        ([`tgsample.flow.sigma_to_t`][tgsample.flow.sigma_to_t];
        the pure-noise level `2**53` is `t = 1`)."""
        from .flow import sigma_to_t

        return sigma_to_t(sigma)

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """`sigma = t / (1 - t)`, float64; `t = 1` is the pure-noise level `2**53`
        ([`tgsample.flow.t_to_sigma`][tgsample.flow.t_to_sigma])."""
        from .flow import t_to_sigma

        return t_to_sigma(t)

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """`D = x_t - t v_hat`, `v_hat = net(x_t, t * t_scale)`, `t = sigma / (1 + sigma)`, `x_t = x / (1 + sigma)`."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        t = M.flow_t(sigma)
        x_t = x / M.append_dims(1 + sigma, x.ndim)
        v = self.net(x_t, t * self.t_scale, **cond)
        return M.flow_to_x0(x, v, sigma)


class EDMDenoiser(Denoiser):
    """EDM preconditioning (Karras et al. 2022) of a network `F(c_in x, c_noise, **cond)`.

    `D = c_skip x + c_out F`, `c_skip = sd^2 / (s^2 + sd^2)`, `c_out = s sd / sqrt(s^2 + sd^2)`,
    `c_in = 1 / sqrt(s^2 + sd^2)`, `c_noise = log(s) / 4` with `sd = sigma_data`.
    """

    def __init__(self, net: nn.Module, sigma_data: float = 0.5, sigma_min: float = 0.002,
                 sigma_max: float = 80.0, sample_shape: Optional[Sequence[int]] = None):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sample_shape = tuple(sample_shape) if sample_shape is not None else None

    def scalings(self, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """`(c_skip, c_out, c_in)` at noise level `sigma` (formulas in the class docstring)."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2) ** 0.5
        c_in = 1 / (sigma**2 + sd2) ** 0.5
        return c_skip, c_out, c_in

    def forward(self, x: Tensor, sigma: Tensor, **cond: Any) -> Tensor:
        """`D = c_skip x + c_out F(c_in x, log(sigma) / 4, **cond)` at noise level `sigma` (`[B]`)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        c_skip, c_out, c_in = (M.append_dims(c, x.ndim) for c in self.scalings(sigma))
        return c_skip * x + c_out * self.net(x * c_in, sigma.log() / 4, **cond)
