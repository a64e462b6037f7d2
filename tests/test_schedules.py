"""Schedules: validation, k-diffusion's continuous ones, and discrete timestep schedules through an abar table."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tgsample import schedules as S
from tgsample.denoisers import CallableDenoiser, DiscreteVPDenoiser
from tgsample.errors import ConfigError, ScheduleError


def sd_abar() -> torch.Tensor:
    """SD 1.5's table: scaled-linear betas 0.00085 .. 0.012 over 1000 steps."""
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0)


def sd_model():
    return DiscreteVPDenoiser(lambda x, t, **c: torch.zeros_like(x), sd_abar())


@pytest.mark.parametrize("bad,match", [
    ([1.0, 2.0, 0.0], r"not strictly decreasing: sigma\[0\]=1.0 <= sigma\[1\]=2.0"),
    ([3.0, 3.0, 0.0], "not strictly decreasing"),
    ([3.0, 1.0], "must end at sigma 0"),
    ([0.0], "at least 2 sigmas"),
    ([float("nan"), 0.0], "non-finite"),
])
def test_invalid_schedules_are_rejected(bad, match):
    with pytest.raises(ScheduleError, match=match):
        S.validate_sigmas(bad)


@given(st.lists(st.floats(min_value=0.0009765625, max_value=100.0, width=32), min_size=1, max_size=20, unique=True))
def test_any_strictly_decreasing_positive_list_plus_zero_is_valid(values):
    s = S.validate_sigmas(sorted(values, reverse=True) + [0.0])
    assert torch.all(s[1:] < s[:-1]) and s[-1] == 0


@pytest.mark.parametrize("name", ["karras", "exponential", "polyexponential", "vp"])
def test_continuous_schedules_come_from_kdiffusion_and_validate(name):
    model = CallableDenoiser(lambda x, s: x, sigma_min=0.03, sigma_max=14.6)
    s = getattr(S, name)(6, model)
    assert len(s) == 7 and s[-1] == 0
    if name != "vp":
        assert s[0] == pytest.approx(14.6, rel=1e-5) and s[-2] == pytest.approx(0.03, rel=1e-5)


def test_lcm_and_trailing_timesteps_match_diffusers():
    from diffusers import EulerDiscreteScheduler, LCMScheduler

    for n in (1, 2, 4, 8):
        lcm = LCMScheduler()
        lcm.set_timesteps(n)
        assert S.lcm_timesteps(n) == lcm.timesteps.tolist()
        eul = EulerDiscreteScheduler(timestep_spacing="trailing")
        eul.set_timesteps(n)
        assert S.trailing_timesteps(n) == [int(t) for t in eul.timesteps.tolist()]


def test_discrete_schedules_through_the_models_own_table():
    """SD's [999, 759, 499, 259] gives sigmas 14.6 -> 4.3 -> 1.6 -> 0.72 (DESIGN.md section 2)."""
    s = S.lcm(4, sd_model())
    abar = sd_abar()[[999, 759, 499, 259]]
    assert torch.allclose(s[:-1].double(), ((1 - abar) / abar).sqrt(), rtol=1e-5)
    assert s.tolist() == pytest.approx([14.6, 4.3, 1.6, 0.72, 0.0], abs=0.05)
    from diffusers import EulerDiscreteScheduler

    eul = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                 timestep_spacing="trailing")
    eul.set_timesteps(4)
    assert torch.allclose(S.trailing(4, sd_model()), eul.sigmas.double(), rtol=1e-4)
    assert len(S.tdd(None, sd_model())) == 6
    assert torch.allclose(S.timesteps(model=sd_model(), timesteps=[999, 499])[:2], S.lcm(4, sd_model())[[0, 2]])


def test_schedule_errors_name_the_problem():
    cont = CallableDenoiser(lambda x, s: x)
    with pytest.raises(ConfigError, match="needs a discrete-time model with an abar table; CallableDenoiser"):
        S.trailing(4, cont)
    with pytest.raises(ConfigError, match=r"fall outside the model's table \[0, 999\]"):
        S.timesteps(model=sd_model(), timesteps=[1200, 10])
    with pytest.raises(ConfigError, match="steps=0 must be a positive integer"):
        S.karras(0, cont)
    with pytest.raises(ConfigError, match="tdd: steps=4 but the timestep list"):
        S.tdd(4, sd_model())
    with pytest.raises(ConfigError, match="give sigma_min and sigma_max"):
        S.karras(4)
