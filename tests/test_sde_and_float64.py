"""k-diffusion's SDE samplers get their Brownian tree; float64 runs stay float64 (exact denoisers)."""

from __future__ import annotations

import pytest
import torch

import tgsample
from tgsample import TeacherGuidance
from tgsample.denoisers import CallableDenoiser, DiscreteVPDenoiser
from tgsample.kdiffusion import BROWNIAN, k_sampling
from tgsample.noise import NoiseStreams
from tgsample.schedules import karras, lcm, validate_sigmas

from analytic import gaussian

torch.set_num_threads(1)


# --- 6. SDE samplers: k-diffusion's Brownian tree, per-sample seeds -----------------------------------------------


def _unit_gaussian():
    return CallableDenoiser(lambda x, s: x / (1 + s.reshape(-1, *[1] * (x.ndim - 1)) ** 2), sigma_min=0.03,
                            sigma_max=14.6)


TORCHSDE_ROUNDING = pytest.mark.filterwarnings("ignore:Should have t:UserWarning")  # k-diffusion's own calls


@TORCHSDE_ROUNDING
@pytest.mark.parametrize("sampler", BROWNIAN)
def test_sde_samplers_equal_k_diffusion_with_its_brownian_tree(sampler):
    """Same start, same per-sample tree seeds: tgsample's bridge gives k-diffusion's own result bit for bit."""
    K = k_sampling()
    den, seeds = _unit_gaussian(), [3, 1, 4]
    sig = karras(6, den)
    ours = tgsample.sample(den, seeds=seeds, shape=(5,), sigmas=sig, solver=f"k_{sampler}")
    noise = NoiseStreams(seeds)
    x = noise.randn("init", (5,)) * sig[0]
    tree = K.BrownianTreeNoiseSampler(x, sig[sig > 0].min(), sig.max(), seed=noise.integers("ancestral"))
    theirs = getattr(K, f"sample_{sampler}")(lambda x, s: den(x, s), x, sig, noise_sampler=tree, disable=True)
    assert torch.equal(ours, theirs)
    one = tgsample.sample(den, seeds=seeds[1:2], shape=(5,), sigmas=sig, solver=f"k_{sampler}")
    assert torch.equal(one[0], ours[1])  # a sample's tree depends on its own seed only


@TORCHSDE_ROUNDING
def test_dpmpp_sde_variance_on_an_exact_gaussian():
    """N(0, 1) data, start drawn at sigma_max: DPM++ SDE keeps the unit variance only with correlated noise
    over its two overlapping intervals per step (20 steps: ~0.97 with the tree, ~0.76 with independent draws)."""
    K = k_sampling()
    den = _unit_gaussian()
    sig = karras(20, den)
    seeds = list(range(32))
    x = tgsample.sample(den, seeds=seeds, shape=(256,), sigmas=sig, solver="k_dpmpp_sde")
    streams = NoiseStreams(seeds)
    start = streams.randn("init", (256,)) * sig[0]
    fresh = K.sample_dpmpp_sde(lambda x, s: den(x, s), start, sig, disable=True,
                               noise_sampler=lambda a, b: streams.randn_like("ancestral", start))
    assert 0.92 < x.var().item() < 1.03, x.var().item()
    assert fresh.var().item() < 0.85, fresh.var().item()  # the old bridge's independent draws


# --- 7. float64 end to end --------------------------------------------------------------------------------


def _sd_denoiser(dtype=torch.float64):
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    return DiscreteVPDenoiser(lambda x, t: 0.1 * x, abar.double(), prediction="epsilon", sample_shape=(3,)).to(dtype)


def test_schedules_keep_their_dtype():
    s64 = torch.tensor([3.0, 1.0 + 1e-12, 0.0], dtype=torch.float64)
    assert validate_sigmas(s64).dtype == torch.float64 and validate_sigmas(s64)[1].item() == 1.0 + 1e-12
    assert validate_sigmas([2.0, 1.0, 0.0]).dtype == torch.float64
    den = _sd_denoiser()
    sig = lcm(4, den)
    assert sig.dtype == torch.float64
    torch.testing.assert_close(sig[:-1], den.t_to_sigma(torch.tensor([999.0, 759, 499, 259])), rtol=0, atol=0)


def test_float64_run_sees_float64_sigmas_and_renoise_levels():
    den = _sd_denoiser()
    seen = []

    def teacher_fn(x, sigma):
        seen.append(sigma)
        return 0.1 * x

    teacher = CallableDenoiser(teacher_fn, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    sig = lcm(4, den)
    steps = []
    x = tgsample.sample(den, seeds=[0, 1], sigmas=sig, solver="euler", dtype=torch.float64,
                        guidance=TeacherGuidance(teacher, lam=0.3, guided_steps=2), callback=lambda d: steps.append(d))
    assert x.dtype == torch.float64
    assert [d["sigma"].dtype for d in steps] == [torch.float64] * 4
    assert torch.equal(torch.stack([d["sigma"] for d in steps]), sig[:-1])
    assert len(seen) == 2 and all(s.dtype == torch.float64 for s in seen)
    assert torch.equal(seen[0], sig[1].expand(2)) and torch.equal(seen[1], sig[2].expand(2))  # renoise to sigma_{i+1}


@pytest.mark.parametrize("schedule", ["lcm", "trailing"])
def test_tcd_with_gamma_zero_is_euler_in_float64(schedule):
    den = _sd_denoiser()
    run = lambda solver, **o: tgsample.sample(den, seeds=[0, 1, 2], schedule=schedule, steps=4, solver=solver,  # noqa: E731
                                              dtype=torch.float64, **o)
    euler, tcd = run("euler"), run("tcd", gamma=0.0)
    assert torch.allclose(tcd, euler, rtol=0, atol=1e-12), (tcd - euler).abs().max()
    assert not torch.allclose(run("tcd", gamma=0.3), euler, atol=1e-3)


def test_float64_gaussian_flow_is_exact():
    """Euler on an exact Gaussian with the sigma_max start: float64 reproduces the closed-form flow map."""
    den = gaussian(0.5, 2.0)
    sig = torch.linspace(20.0, 0.0, 2001, dtype=torch.float64)
    x = tgsample.sample(den, seeds=[7], shape=(4,), sigmas=sig, solver="euler", dtype=torch.float64)
    start = NoiseStreams([7], dtype=torch.float64).randn("init", (4,)) * 20.0
    from analytic import gaussian_flow_map

    assert torch.allclose(x, gaussian_flow_map(start, 20.0, 0.5, 2.0), rtol=0, atol=5e-3)
