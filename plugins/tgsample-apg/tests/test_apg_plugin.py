"""The installed plugin, as a user meets it: found through entry points and sampled by name (tgsample.sample)."""

from __future__ import annotations

import pytest
import torch

import tgsample
from tgsample import CallableDenoiser, registry
from tgsample.guidance import CFG

torch.set_num_threads(1)
PLUGIN = {("guidance", "apg"): "tgsample_apg.guidance:APG", ("solvers", "heun"): "tgsample_apg.solvers:sample_heun",
          ("schedules", "cosine"): "tgsample_apg.schedules:cosine"}


def test_found_through_its_own_entry_points():
    registry.refresh()
    for (kind, name), value in PLUGIN.items():
        [entry] = [e for e in registry.entries(kind) if e.name == name]
        assert (entry.dist, entry.value, entry.builtin, entry.active) == ("tgsample-apg", value, False, True)
        module, attr = value.split(":")
        assert registry.get(kind, name) is getattr(__import__(module, fromlist=[attr]), attr)


def point_masses(b: int = 6, dim: int = 5):
    g = torch.Generator().manual_seed(3)
    p_c, p_u = torch.randn(b, dim, generator=g, dtype=torch.float64), torch.randn(b, dim, generator=g, dtype=torch.float64)
    model = CallableDenoiser(lambda x, sigma, p: p.expand_as(x), sigma_min=0.01, sigma_max=10.0, sample_shape=(dim,))
    return model, {"p": p_c}, {"p": p_u}


def apg_on_point_masses(p_c, p_u, w, eta, r, beta, evaluations):
    """Independent closed form: the buffer after n evaluations of a constant update is ``delta * sum beta^k``."""
    delta = (p_c - p_u) * sum(beta**k for k in range(evaluations))
    norm = delta.norm(dim=1, keepdim=True)
    delta = delta * torch.clamp(r / norm, max=1.0) if r > 0 else delta
    u = p_c / p_c.norm(dim=1, keepdim=True)
    par = (delta * u).sum(dim=1, keepdim=True) * u
    return p_c + (w - 1) * ((delta - par) + eta * par)


@pytest.mark.parametrize("solver, evaluations", [("euler", 5), ("heun", 9)])  # Heun: 2 per step, 1 on the last
def test_sampling_by_name_lands_where_the_closed_form_says(solver, evaluations):
    model, cond, uncond = point_masses()
    spec = {"name": "apg", "scale": 4.0, "eta": 0.25, "norm_threshold": 3.0, "momentum": -0.5}
    out = tgsample.sample(model, cond, uncond=uncond, seeds=range(6), schedule="cosine", steps=5,
                          solver=solver, guidance=spec, dtype=torch.float64)
    expected = apg_on_point_masses(cond["p"], uncond["p"], 4.0, 0.25, 3.0, -0.5, evaluations)
    torch.testing.assert_close(out, expected)
    # a second run starts its momentum afresh
    again = tgsample.sample(model, cond, uncond=uncond, seeds=range(6), schedule="cosine", steps=5,
                            solver=solver, guidance=spec, dtype=torch.float64)
    torch.testing.assert_close(again, out, rtol=0, atol=0)


def test_apg_with_eta_one_samples_like_cfg_end_to_end():
    mu = torch.linspace(-1, 1, 4, dtype=torch.float64)

    def gaussian(x, sigma, shift):  # exact denoiser of N(shift * mu, 0.25 I)
        return shift.view(-1, 1) * mu + (x - shift.view(-1, 1) * mu) * 0.25 / (0.25 + sigma.view(-1, 1) ** 2)

    model = CallableDenoiser(gaussian, sigma_min=0.01, sigma_max=20.0, sample_shape=(4,))
    cond, uncond = {"shift": torch.ones(8, dtype=torch.float64)}, {"shift": torch.zeros(8, dtype=torch.float64)}
    common = dict(uncond=uncond, seeds=range(8), schedule="cosine", steps=8, solver="heun", dtype=torch.float64)
    apg = tgsample.sample(model, cond, guidance={"name": "apg", "scale": 3.0, "eta": 1.0, "momentum": 0.0}, **common)
    cfg = tgsample.sample(model, cond, guidance=CFG(3.0), **common)
    torch.testing.assert_close(apg, cfg, rtol=1e-9, atol=1e-9)
    default = tgsample.sample(model, cond, guidance="apg", **common)  # eta=0, momentum=-0.5
    assert torch.isfinite(default).all() and (default - cfg).abs().max() > 1e-3


def test_apg_on_a_unet_model_through_the_public_api():
    """A real network: the digit teacher's architecture (untrained, seeded) wrapped as a tgsample Model."""
    from tgsample.models import Model
    from tgsample.models.digits import SHAPE, TEACHER_CONFIG, build_denoiser, encode_labels

    torch.manual_seed(0)
    denoiser = build_denoiser(TEACHER_CONFIG).eval()
    for p in denoiser.parameters():  # untrained nets zero their output layer: give every weight a value
        p.data.normal_(0.0, 0.05)
    model = Model("tiny-digits", denoiser, SHAPE, encode_labels)
    cond, uncond = model.encode([3, 7, 1, 0], None)
    common = dict(uncond=uncond, seeds=range(4), schedule="cosine", steps=4, solver="heun")
    out = tgsample.sample(model, cond, guidance={"name": "apg", "scale": 4.0}, **common)
    assert out.shape == (4, *SHAPE) and torch.isfinite(out).all()
    cfg = tgsample.sample(model, cond, guidance=CFG(4.0), **common)
    assert (out - cfg).abs().max() > 1e-4  # the projection changes the result
    same = tgsample.sample(model, cond, guidance={"name": "apg", "scale": 4.0, "eta": 1.0, "momentum": 0.0}, **common)
    torch.testing.assert_close(same, cfg, rtol=1e-4, atol=1e-4)
