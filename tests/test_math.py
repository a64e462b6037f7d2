"""Hypothesis properties of the interpolation, renoising and splitting formulas (DESIGN.md section 6)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tgsample.math as M
from tgsample.errors import ConfigError

floats = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
sigmas = st.floats(min_value=1e-3, max_value=200.0, allow_nan=False)
vectors = st.lists(floats, min_size=1, max_size=8)


def pair(data, n):
    return torch.tensor(data.draw(st.lists(floats, min_size=n, max_size=n)))


@given(a=vectors, data=st.data())
def test_interpolate_endpoints_exact(a, data):
    a = torch.tensor(a)
    b = pair(data, len(a))
    assert torch.equal(M.interpolate(a, b, 0.0), a)
    assert torch.equal(M.interpolate(a, b, 1.0), b)


@given(a=vectors, data=st.data(), lam=unit)
def test_interpolate_between_student_and_teacher(a, data, lam):
    a = torch.tensor(a)
    b = pair(data, len(a))
    out = M.interpolate(a, b, lam)
    assert torch.all(out >= torch.minimum(a, b)) and torch.all(out <= torch.maximum(a, b))


@given(a=vectors, data=st.data(), l1=unit, l2=unit)
def test_interpolate_linear_in_lam(a, data, l1, l2):
    a64 = torch.tensor(a, dtype=torch.float64)
    b64 = pair(data, len(a)).double()
    mid = M.interpolate(a64, b64, (l1 + l2) / 2)
    avg = (M.interpolate(a64, b64, l1) + M.interpolate(a64, b64, l2)) / 2
    assert torch.allclose(mid, avg, rtol=1e-9, atol=1e-9)


@given(a=vectors, data=st.data(), lam=st.lists(unit, min_size=1, max_size=1))
def test_interpolate_per_sample_lam_matches_scalar(a, data, lam):
    a = torch.tensor(a).reshape(1, -1)
    b = pair(data, a.shape[1]).reshape(1, -1)
    assert torch.equal(M.interpolate(a, b, torch.tensor(lam)), M.interpolate(a, b, lam[0]))


@given(a=vectors, data=st.data(), lam=unit, sigma=sigmas)
def test_interpolate_noise_is_the_noise_space_update(a, data, lam, sigma):
    """x - sigma ((1 - lam) eps_s + lam eps_T) with eps_s = (x - D_s) / sigma, written out in float64; exact at the
    endpoints (lam = 0: D_s; lam = 1: x - sigma eps_T)."""
    d_s = torch.tensor(a, dtype=torch.float64)
    x, eps_t = pair(data, len(a)).double(), pair(data, len(a)).double()
    eps_s = (x - d_s) / sigma
    expected = x - sigma * ((1 - lam) * eps_s + lam * eps_t)
    torch.testing.assert_close(M.interpolate_noise(x, sigma, d_s, eps_t, lam), expected, rtol=1e-9, atol=1e-7)
    assert torch.equal(M.interpolate_noise(x, sigma, d_s, eps_t, 0.0), d_s)
    assert torch.equal(M.interpolate_noise(x, sigma, d_s, eps_t, 1.0), x - sigma * eps_t)


@given(a=vectors, data=st.data())
def test_cfg_scale_one_is_conditional(a, data):
    u = torch.tensor(a)
    c = pair(data, len(a))
    assert torch.equal(M.cfg(u, c, 1.0), c)
    assert torch.equal(M.cfg(u, c, 0.0), u)


@given(x0=vectors, data=st.data())
def test_renoise_sigma_zero_is_identity(x0, data):
    x0 = torch.tensor(x0)
    n = pair(data, len(x0))
    assert torch.equal(M.renoise(x0, 0.0, n), x0)


@given(x=vectors, data=st.data(), sigma=sigmas)
def test_renoise_with_implied_noise_at_current_sigma_returns_x(x, data, sigma):
    """renoise 'current' + deterministic noise + direction == denoised gives back x_i."""
    x = torch.tensor(x, dtype=torch.float64)
    d = pair(data, len(x)).double()
    x_r = M.renoise(d, sigma, M.implied_noise(x, d, sigma))
    assert torch.allclose(x_r, x, rtol=1e-12, atol=1e-9)


@given(det=vectors, data=st.data(), c=unit)
def test_hybrid_noise_weights_are_unit_norm(det, data, c):
    det = torch.tensor(det, dtype=torch.float64)
    z = pair(data, len(det)).double()
    out = M.hybrid_noise(det, z, c)
    assert torch.allclose(out, c * det + math.sqrt(1 - c * c) * z)
    assert torch.equal(M.hybrid_noise(det, z, 1.0), det)
    assert torch.equal(M.hybrid_noise(det, z, 0.0), z)


def test_hybrid_noise_rejects_out_of_range():
    with pytest.raises(ConfigError, match="c=1.5"):
        M.hybrid_noise(torch.zeros(2), torch.zeros(2), 1.5)


@given(sigma=sigmas, frac=unit, eta=st.floats(min_value=0.0, max_value=2.0))
def test_ancestral_split(sigma, frac, eta):
    s = torch.tensor(sigma, dtype=torch.float64)
    s_next = s * frac
    down, up = M.ancestral_split(s, s_next, eta)
    assert torch.allclose(down**2 + up**2, s_next**2, rtol=1e-9, atol=1e-12)
    assert 0 <= float(down) <= float(s_next) and 0 <= float(up) <= float(s_next)  # exactly, no slack


@pytest.mark.parametrize("sigma,sigma_next,eta", [
    (1.0, 6.004e-159, 6.004e-159),  # squares of these are subnormal: the naive form gave sigma_down > sigma_next
    (1.0, 1e-300, 1.0), (1e-300, 5e-301, 2.0), (80.0, 0.0, 1.0), (2.0, 2.0, 1.0),
])
def test_ancestral_split_at_extreme_values(sigma, sigma_next, eta):
    s, s_next = torch.tensor(sigma, dtype=torch.float64), torch.tensor(sigma_next, dtype=torch.float64)
    down, up = M.ancestral_split(s, s_next, eta)
    assert 0 <= float(down) <= float(s_next) and 0 <= float(up) <= float(s_next)
    if sigma_next > 0:  # the identity, scaled so that it does not underflow
        assert torch.allclose((down / s_next) ** 2 + (up / s_next) ** 2, torch.ones((), dtype=torch.float64), rtol=1e-12)


def test_ancestral_split_eta_zero_is_deterministic():
    down, up = M.ancestral_split(torch.tensor(2.0), torch.tensor(1.0), 0.0)
    assert float(down) == 1.0 and float(up) == 0.0


@settings(max_examples=60)
@given(x=vectors, data=st.data(), sigma=sigmas)
def test_parameterisations_are_mutually_inverse(x, data, sigma):
    x = torch.tensor(x, dtype=torch.float64)
    x0 = pair(data, len(x)).double()
    s = torch.tensor(sigma, dtype=torch.float64)
    tol = dict(rtol=1e-9, atol=1e-6 * (1 + sigma))
    assert torch.allclose(M.eps_to_x0(x, M.x0_to_eps(x, x0, s), s), x0, **tol)
    assert torch.allclose(M.v_to_x0(x, M.x0_to_v(x, x0, s), s), x0, **tol)
    assert torch.allclose(M.flow_to_x0(x, M.x0_to_flow(x, x0, s), s), x0, **tol)
    assert torch.allclose(M.flow_sigma(M.flow_t(s)), s, rtol=1e-9)
    assert torch.allclose(M.abar_to_sigma(M.sigma_to_abar(s)), s, rtol=1e-9)


def test_parameterisations_agree_on_a_noisy_sample():
    """With x = x0 + sigma eps, each prediction type's exact target maps back to x0."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    for sigma in (0.05, 1.0, 14.6):
        x = x0 + sigma * eps
        abar = 1 / (1 + sigma**2)
        x_vp = x * abar**0.5
        v = abar**0.5 * eps - (1 - abar) ** 0.5 * x0  # diffusers' v target
        t = sigma / (1 + sigma)
        assert torch.allclose(M.eps_to_x0(x, eps, sigma), x0)
        assert torch.allclose(M.v_to_x0(x, v, sigma), x0)
        assert torch.allclose(x_vp, x * M.vp_scale(sigma))
        assert torch.allclose(M.flow_to_x0(x, eps - x0, sigma), x0)
        assert torch.allclose(x / (1 + sigma), (1 - t) * x0 + t * eps)
