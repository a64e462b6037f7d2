"""Model adapters: sigma <-> t on a model's own table, and eps / v / x0 / flow / EDM nets turned into D."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tgsample.math as M
from tgsample.denoisers import DiscreteSchedule, DiscreteVPDenoiser, EDMDenoiser, FlowDenoiser, lcm_boundary
from tgsample.errors import ConfigError
from tgsample.kdiffusion import k_sampling

from test_schedules import sd_abar


def test_sigma_to_t_matches_kdiffusion_discrete_schedule():
    import k_diffusion.external as KE  # noqa: F401  (imported through k_sampling's warning filter first)

    k_sampling()
    from k_diffusion.external import DiscreteSchedule as KDS

    abar = sd_abar().float()
    ours = DiscreteSchedule(abar)
    ref = KDS(((1 - abar) / abar) ** 0.5, quantize=False)
    sig = torch.tensor([0.03, 0.1, 0.72, 1.6, 4.3, 14.6])
    assert torch.allclose(ours.sigma_to_t(sig), ref.sigma_to_t(sig), atol=1e-3)
    t = torch.tensor([0.0, 10.5, 259.0, 998.2])
    assert torch.allclose(ours.t_to_sigma(t).float(), ref.t_to_sigma(t), rtol=1e-4)


@settings(max_examples=50)
@given(st.floats(min_value=0.0, max_value=999.0))
def test_t_sigma_roundtrip(t):
    table = DiscreteSchedule(sd_abar())
    back = table.sigma_to_t(table.t_to_sigma(torch.tensor([t])))
    assert abs(float(back) - t) < 1e-3


def _exact_vp_net(prediction, x0, abar_table):
    table = DiscreteSchedule(abar_table)

    def net(x_vp, t, **_):
        sigma = table.t_to_sigma(t).to(x_vp)
        s = M.append_dims(sigma, x_vp.ndim)
        x = x_vp * (1 + s**2) ** 0.5
        eps = (x - x0) / s
        if prediction == "epsilon":
            return eps
        if prediction == "v_prediction":
            abar = 1 / (1 + s**2)
            return abar**0.5 * eps - (1 - abar) ** 0.5 * x0
        return x0.expand_as(x_vp)

    return net


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample", "eps", "v", "x0"])
def test_vp_adapters_recover_x0_from_an_exact_net(prediction):
    abar = sd_abar()
    x0 = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    D = DiscreteVPDenoiser(_exact_vp_net({"eps": "epsilon", "v": "v_prediction", "x0": "sample"}.get(prediction, prediction), x0, abar), abar, prediction)
    for sigma in (0.05, 0.72, 14.6):
        x = x0 + sigma * torch.tensor([[0.5, 1.0, -0.7]], dtype=torch.float64)
        assert torch.allclose(D(x, torch.tensor([sigma], dtype=torch.float64)), x0, atol=1e-6)


def test_unknown_prediction_type_is_a_typed_error():
    with pytest.raises(ConfigError, match=r"unknown prediction type 'flow_magic'; allowed: \["):
        DiscreteVPDenoiser(lambda *a: None, sd_abar(), "flow_magic")


def test_flow_adapter_recovers_x0():
    x0 = torch.tensor([[0.3, -1.2]])
    eps = torch.tensor([[1.0, 0.5]])

    def net(x_t, t1000, **_):
        return (eps - x0).expand_as(x_t)  # exact rectified-flow velocity

    D = FlowDenoiser(net)
    for sigma in (0.1, 1.0, 30.0):
        x = x0 + sigma * eps
        assert torch.allclose(D(x, torch.tensor([sigma])), x0, atol=1e-5)


def test_edm_adapter_scalings_and_lcm_boundary():
    D = EDMDenoiser(torch.nn.Identity(), sigma_data=0.5)
    c_skip, c_out, c_in = D.scalings(torch.tensor(0.5))
    assert float(c_skip) == pytest.approx(0.5) and float(c_in) == pytest.approx(2**0.5)
    c_skip, c_out = lcm_boundary()(torch.tensor([0.0, 259.0]))
    assert c_skip[0] == 1 and c_out[0] == 0  # identity at t = 0
    assert c_skip[1] < 1e-5 and c_out[1] == pytest.approx(1.0, abs=1e-5)  # tiny at t >= 259
