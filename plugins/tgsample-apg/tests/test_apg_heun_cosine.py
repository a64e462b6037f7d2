"""The plugin's Heun solver and cosine schedule, against closed forms and k-diffusion."""

from __future__ import annotations

import math

import pytest
import torch

from tgsample import CallableDenoiser, GuidedModel
from tgsample.errors import ConfigError
from tgsample.guidance import CFG, CFGPP, NoGuidance
from tgsample.noise import NoiseStreams
from tgsample_apg.schedules import cosine
from tgsample_apg.solvers import sample_heun

torch.set_num_threads(1)
MU, S = 0.7, 0.5  # data ~ N(MU, S^2) per coordinate


def gaussian(x, sigma, **_):
    """The exact denoiser of N(MU, S^2): ``MU + (x - MU) S^2 / (S^2 + sigma^2)``."""
    s2 = sigma.view(-1, *([1] * (x.ndim - 1))) ** 2
    return MU + (x - MU) * S**2 / (S**2 + s2)


def flow_map(x_start: torch.Tensor, sigma_start: float) -> torch.Tensor:
    """Closed-form probability-flow map to sigma 0: ``MU + (x - MU) S / sqrt(S^2 + sigma^2)``."""
    return MU + (x_start - MU) * S / math.sqrt(S**2 + sigma_start**2)


def euler(model, x, sigmas):
    for i in range(len(sigmas) - 1):
        est = model(x, sigmas[i], i)
        x = est.denoised + sigmas[i + 1] * (x - est.direction) / sigmas[i]
    return x


def run(solver, steps: int, guidance=None, fn=gaussian, cond=None, uncond=None):
    sigmas = cosine(steps, sigma_min=0.002, sigma_max=80.0).double()
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigmas[0]
    model = GuidedModel(CallableDenoiser(fn), guidance or NoGuidance(), cond or {}, uncond, sigmas,
                        NoiseStreams(range(64), dtype=torch.float64))
    return x, sigmas, solver(model, x, sigmas)


def test_cosine_schedule_is_tan_of_uniform_time():
    s = cosine(6, sigma_min=0.01, sigma_max=20.0).double()
    assert s[-1] == 0 and bool((s[1:] < s[:-1]).all())
    t = 2 / math.pi * torch.atan(s[:-1])
    torch.testing.assert_close(t, torch.linspace(t[0].item(), t[-1].item(), 6, dtype=torch.float64), atol=1e-6, rtol=0)
    assert s[0].item() == pytest.approx(20.0, rel=1e-5) and s[-2].item() == pytest.approx(0.01, rel=1e-5)


def test_cosine_takes_the_range_from_the_model_and_rejects_bad_input():
    s = cosine(4, CallableDenoiser(gaussian, sigma_min=0.1, sigma_max=10.0))
    assert s[0].item() == pytest.approx(10.0) and s[-2].item() == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="sigma_min"):
        cosine(4)
    with pytest.raises(ConfigError, match="sigma_min < sigma_max"):
        cosine(4, sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ConfigError, match="steps"):
        cosine(0, sigma_min=0.1, sigma_max=1.0)


def test_heun_matches_k_diffusion_without_split_direction():
    from k_diffusion.sampling import sample_heun as k_heun

    x, sigmas, ours = run(sample_heun, 8)
    theirs = k_heun(lambda x, s: gaussian(x, s), x, sigmas, disable=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_heun_is_second_order_where_euler_is_first():
    errors = {}
    for steps in (16, 32):  # below ~12 steps from sigma 80, both are far from their asymptotic regime
        for name, solver in (("heun", sample_heun), ("euler", euler)):
            x, sigmas, out = run(solver, steps)
            errors[name, steps] = (out - flow_map(x, sigmas[0].item())).abs().max().item()
    assert errors["heun", 16] < errors["euler", 16] / 3
    assert errors["euler", 16] / errors["euler", 32] < 2.6  # first order: ~2x per halving (measured 2.0)
    assert errors["heun", 16] / errors["heun", 32] > 3.5  # second order: ~4x per halving (measured 5.5)


@pytest.mark.parametrize("guidance, target", [
    (NoGuidance(), lambda pc, pu: pc),
    (CFG(3.0), lambda pc, pu: pu + 3.0 * (pc - pu)),
    (CFGPP(0.6), lambda pc, pu: pu + 0.6 * (pc - pu)),
])
def test_heun_lands_on_the_point_mass_under_every_guidance(guidance, target):
    def point(x, sigma, p):
        return p.expand_as(x)

    pc, pu = torch.full((64, 3), 2.0, dtype=torch.float64), torch.full((64, 3), -1.0, dtype=torch.float64)
    _, _, out = run(sample_heun, 6, guidance, point, {"p": pc}, {"p": pu})
    torch.testing.assert_close(out, target(pc, pu))


def test_heun_cfgpp_at_zero_is_the_unconditional_trajectory():
    def two_gaussians(x, sigma, shift):
        return gaussian(x - shift.view(-1, 1), sigma) + shift.view(-1, 1)

    cond, uncond = {"shift": torch.full((64,), 1.0, dtype=torch.float64)}, {"shift": torch.zeros(64, dtype=torch.float64)}
    _, _, guided = run(sample_heun, 6, CFGPP(0.0), two_gaussians, cond, uncond)
    _, _, plain = run(sample_heun, 6, NoGuidance(), two_gaussians, uncond, None)
    torch.testing.assert_close(guided, plain, rtol=1e-12, atol=1e-12)
