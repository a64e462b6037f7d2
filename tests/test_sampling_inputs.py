"""``sample(latents=..., generator=...)``: initial latents in diffusers' convention, diffusers' seeding."""

from __future__ import annotations

import pytest
import torch

import tgsample
from tgsample import TeacherGuidance
from tgsample.denoisers import DiscreteVPDenoiser
from tgsample.errors import ConfigError, ShapeMismatchError
from tgsample.noise import GeneratorNoise, NoiseStreams

from analytic import gaussian

torch.set_num_threads(1)
SIGMAS = torch.tensor([14.6, 4.3, 1.6, 0.72, 0.0])


def _vp():
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    return DiscreteVPDenoiser(lambda x, t: 0.1 * x, abar, sample_shape=(3,))


def test_latents_are_the_unit_noise_scaled_by_the_start():
    den = _vp()
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    steps = []
    tgsample.sample(den, seeds=[0, 1], latents=z, sigmas=SIGMAS, solver="euler", callback=steps.append)
    torch.testing.assert_close(steps[0]["x"], z * (1 + 14.6**2) ** 0.5)  # the VP start, as a pipeline's latents
    default = tgsample.sample(den, seeds=[0, 1], sigmas=SIGMAS, solver="euler")
    given = tgsample.sample(den, seeds=[0, 1], sigmas=SIGMAS, solver="euler",
                            latents=NoiseStreams([0, 1]).randn("init", (3,)))
    assert torch.equal(default, given)  # latents= is exactly the init stream's role


def test_latents_shape_is_checked():
    with pytest.raises(ShapeMismatchError, match=r"latents has shape \(3, 3\); expected \(2, 3\)"):
        tgsample.sample(_vp(), seeds=[0, 1], latents=torch.zeros(3, 3), sigmas=SIGMAS)


def test_generator_draws_the_batch_in_one_call():
    g = torch.Generator().manual_seed(42)
    noise = GeneratorNoise(g, seeds=[5, 6, 7])
    first, second = noise.randn("init", (2, 4)), noise.randn("ancestral", (2, 4))
    ref = torch.Generator().manual_seed(42)
    assert torch.equal(first, torch.randn(3, 2, 4, generator=ref))
    assert torch.equal(second, torch.randn(3, 2, 4, generator=ref))
    assert torch.equal(noise.randn("renoise", (2, 4)), NoiseStreams([5, 6, 7]).randn("renoise", (2, 4)))


def test_generator_run_keeps_lam_zero_bit_for_bit():
    den = gaussian(0.3, 1.5)
    cond = {"label": torch.zeros(4)}
    run = lambda guidance: tgsample.sample(den, cond, generator=torch.Generator().manual_seed(3), sigmas=SIGMAS,  # noqa: E731
                                           solver="euler_ancestral", guidance=guidance, shape=(5,))
    plain = run(None)
    assert torch.equal(run(TeacherGuidance(gaussian(0.0, 1.0), lam=0.0, guided_steps=2)), plain)
    assert not torch.equal(run(TeacherGuidance(gaussian(0.0, 1.0), lam=0.5, guided_steps=2)), plain)
    two = tgsample.sample(den, {"label": torch.zeros(2)}, generator=torch.Generator().manual_seed(3), sigmas=SIGMAS,
                          solver="euler_ancestral", shape=(5,))
    assert not torch.equal(two, plain[:2])  # diffusers' convention: a sample depends on its batch


def test_seeds_or_generator_required():
    with pytest.raises(ConfigError, match="give seeds="):
        tgsample.sample(_vp(), sigmas=SIGMAS)
    with pytest.raises(ConfigError, match="batch size is unknown"):
        tgsample.sample(_vp(), generator=torch.Generator(), sigmas=SIGMAS)
    x = tgsample.sample(_vp(), generator=torch.Generator().manual_seed(1), latents=torch.zeros(2, 3), sigmas=SIGMAS)
    assert x.shape == (2, 3)


def test_tcd_final_option_is_checked():
    with pytest.raises(ConfigError, match=r"final='vp'; allowed: \['x0', 't0'\]"):
        tgsample.sample(_vp(), seeds=[0], sigmas=SIGMAS, solver="tcd", final="vp")
