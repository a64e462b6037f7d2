"""Exact denoisers of simple data distributions, for tests that know the right answer."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tgsample.denoisers import CallableDenoiser
from tgsample.math import append_dims


def point_mass(points: dict) -> CallableDenoiser:
    """D(x, sigma, label) = the point of the label (label -1: the 'uncond' point)."""

    def D(x: Tensor, sigma: Tensor, label: Tensor) -> Tensor:
        table = torch.stack([points[int(k)] for k in label.tolist()]).to(x)
        return table.reshape(x.shape)

    return CallableDenoiser(D, sigma_min=0.002, sigma_max=80.0)


def gaussian(mu: float, s: float) -> CallableDenoiser:
    """Exact denoiser of N(mu, s^2) per coordinate: ``mu + s^2 / (s^2 + sigma^2) (x - mu)``."""

    def D(x: Tensor, sigma: Tensor, **_) -> Tensor:
        sig = append_dims(sigma, x.ndim)
        return mu + s**2 / (s**2 + sig**2) * (x - mu)

    return CallableDenoiser(D, sigma_min=0.002, sigma_max=80.0)


def gaussian_flow_map(x_start: Tensor, sigma_start: float, mu: float, s: float) -> Tensor:
    """Probability-flow ODE of N(mu, s^2) from ``sigma_start`` to 0, in closed form."""
    return mu + (x_start - mu) * s / math.sqrt(s**2 + sigma_start**2)


def mixture(means: Tensor, weights: Tensor, s: float) -> CallableDenoiser:
    """Exact denoiser of a 1-D mixture sum_k w_k N(m_k, s^2) (shape [B, 1])."""

    def D(x: Tensor, sigma: Tensor, **_) -> Tensor:
        sig2 = append_dims(sigma, x.ndim) ** 2
        var = s**2 + sig2
        logp = torch.log(weights.to(x)) - 0.5 * (x - means.to(x)) ** 2 / var  # [B, K]
        post = torch.softmax(logp, dim=-1)
        comp = means.to(x) + s**2 / var * (x - means.to(x))
        return (post * comp).sum(-1, keepdim=True)

    return CallableDenoiser(D, sigma_min=0.002, sigma_max=80.0)


class TinyNet(torch.nn.Module):
    """A small nonlinear, class-conditional x0 predictor (row-independent), for equivalence tests."""

    def __init__(self, dim: int = 6, classes: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(dim, 16, generator=g) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(16, dim, generator=g) * 0.5)
        self.emb = torch.nn.Parameter(torch.randn(classes + 1, 16, generator=g))
        self.sample_shape = (dim,)

    def forward(self, x: Tensor, sigma: Tensor, label: Tensor) -> Tensor:
        c_in = append_dims(1 / (1 + sigma**2).sqrt(), x.ndim)
        h = torch.tanh((x * c_in).unsqueeze(-2) @ self.w1).squeeze(-2) + self.emb[label] + append_dims(sigma.log(), 2)
        c_skip = append_dims(1 / (1 + sigma**2), x.ndim)
        return c_skip * x + (torch.tanh(h).unsqueeze(-2) @ self.w2).squeeze(-2)


def tiny_denoiser(seed: int = 0) -> CallableDenoiser:
    net = TinyNet(seed=seed)
    d = CallableDenoiser(net, sigma_min=0.01, sigma_max=20.0, sample_shape=net.sample_shape)
    d.net = net
    return d


def rational_denoiser(seed: int = 0, dim: int = 6) -> CallableDenoiser:
    """A nonlinear, label-conditional denoiser made of + - * / only, so every row is computed bit-identically
    whatever the batch size (vectorised and scalar loops round these operations the same way)."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(dim, generator=g), torch.randn(4, dim, generator=g)

    def D(x: Tensor, sigma: Tensor, label: Tensor) -> Tensor:
        s2 = append_dims(sigma, x.ndim) ** 2
        y = x / (1 + s2) + b[label]
        return y + a * y / (1 + y * y)

    return CallableDenoiser(D, sigma_min=0.01, sigma_max=20.0, sample_shape=(dim,))


# --- the same data distributions as exact flow-matching (rectified-flow) velocity nets ---------------
# x_t = (1 - t) x0 + t eps and v = eps - x0, so E[v | x_t] = (x_t - E[x0 | x_t]) / t: written in flow
# coordinates (t), independently of the sigma-space denoisers above.


def flow_point_mass(points: dict):
    """A :class:`FlowDenoiser` over the exact velocity of a point mass per label: ``v = (x_t - p) / t``."""
    from tgsample.denoisers import FlowDenoiser

    def v(x_t: Tensor, t: Tensor, label: Tensor) -> Tensor:
        p = torch.stack([points[int(k)] for k in label.tolist()]).to(x_t).reshape(x_t.shape)
        return (x_t - p) / append_dims(t, x_t.ndim)

    return FlowDenoiser(v, t_scale=1.0)


def flow_gaussian(mu, s: float):
    """A :class:`FlowDenoiser` over the exact velocity of N(mu, s^2) per coordinate:
    ``E[x0 | x_t] = mu + (1 - t) s^2 / ((1 - t)^2 s^2 + t^2) (x_t - (1 - t) mu)``. ``mu`` is a number, or a
    dict label -> mean (read from ``cond["label"]``, for CFG between two Gaussians)."""
    from tgsample.denoisers import FlowDenoiser

    def v(x_t: Tensor, t: Tensor, label: Tensor = None) -> Tensor:
        m = mu if label is None else torch.tensor([mu[int(k)] for k in label.tolist()]).to(x_t)
        m = append_dims(m, x_t.ndim) if isinstance(m, Tensor) else m
        t = append_dims(t, x_t.ndim)
        x0 = m + (1 - t) * s**2 / ((1 - t) ** 2 * s**2 + t**2) * (x_t - (1 - t) * m)
        return (x_t - x0) / t

    return FlowDenoiser(v, t_scale=1.0)
