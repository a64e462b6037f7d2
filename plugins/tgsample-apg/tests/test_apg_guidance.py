"""APG's formula: reduces to CFG, removes the parallel part, caps the norm, carries momentum per run."""

from __future__ import annotations

import pytest
import torch

from tgsample.errors import ConfigError
from tgsample.guidance import CFG, StepContext
from tgsample_apg.guidance import APG, clip_norm, project

torch.set_num_threads(1)


def fixed_model(d_c: torch.Tensor, d_u: torch.Tensor):
    """A denoiser returning ``d_c`` for cond (label 1) and ``d_u`` for uncond (label 0), row by row."""

    def model(x, sigma, label):
        pick = tuple([-1] + [1] * (x.ndim - 1))
        both_c = torch.cat([d_c] * (x.shape[0] // d_c.shape[0]))
        both_u = torch.cat([d_u] * (x.shape[0] // d_u.shape[0]))
        return torch.where(label.view(pick) == 1, both_c, both_u)

    return model


def ctx(b: int, index=0, stage=0, state=None) -> StepContext:
    """A context of one sampling run: ``state`` is the run's scratch dict (a new dict = a new run)."""
    return StepContext({"label": torch.ones(b, dtype=torch.long)}, {"label": torch.zeros(b, dtype=torch.long)},
                       index=index, stage=stage, state={} if state is None else state)


@pytest.fixture
def pair():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 2, 4, 4, generator=g), torch.randn(3, 2, 4, 4, generator=g)


def test_project_splits_into_parallel_and_orthogonal(pair):
    v, onto = pair
    par, orth = project(v, onto)
    torch.testing.assert_close(par + orth, v)
    dots = (orth * onto).flatten(1).sum(1)
    torch.testing.assert_close(dots, torch.zeros(3), atol=1e-5, rtol=0)
    # parallel part is a per-sample multiple of `onto`
    ratio = par.flatten(1) / onto.flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-4, atol=1e-4)


def test_clip_norm_caps_only_large_updates(pair):
    v, _ = pair
    norms = v.flatten(1).norm(dim=1)
    r = float(norms.median())
    clipped = clip_norm(v, r).flatten(1).norm(dim=1)
    torch.testing.assert_close(clipped, torch.minimum(norms, torch.full_like(norms, r)))
    assert clip_norm(v, 0.0) is v


@pytest.mark.parametrize("scale", [1.0, 2.5, 7.5])
def test_eta_one_without_threshold_or_momentum_is_cfg(pair, scale):
    d_c, d_u = pair
    model, x, sigma = fixed_model(d_c, d_u), torch.zeros_like(d_c), torch.tensor(1.0)
    apg = APG(scale, eta=1.0, norm_threshold=0.0, momentum=0.0)(model, x, sigma, ctx(3))
    cfg = CFG(scale)(model, x, sigma, ctx(3))
    torch.testing.assert_close(apg.denoised, cfg.denoised, rtol=1e-5, atol=1e-5)
    assert apg.direction is apg.denoised


def test_eta_zero_update_is_orthogonal_to_the_conditional_estimate(pair):
    d_c, d_u = pair
    model, x, sigma = fixed_model(d_c, d_u), torch.zeros_like(d_c), torch.tensor(1.0)
    out = APG(5.0, eta=0.0, momentum=0.0)(model, x, sigma, ctx(3)).denoised
    dots = ((out - d_c) * d_c).flatten(1).sum(1)
    torch.testing.assert_close(dots, torch.zeros(3), atol=1e-4, rtol=0)
    cfg = CFG(5.0)(model, x, sigma, ctx(3)).denoised
    assert ((cfg - d_c) * d_c).flatten(1).sum(1).abs().min() > 1e-2  # CFG keeps a parallel part


def test_norm_threshold_bounds_the_guided_shift(pair):
    d_c, d_u = pair
    model, x, sigma = fixed_model(d_c, d_u), torch.zeros_like(d_c), torch.tensor(1.0)
    r, w = 0.5, 4.0
    out = APG(w, eta=1.0, norm_threshold=r, momentum=0.0)(model, x, sigma, ctx(3)).denoised
    shift = (out - d_c).flatten(1).norm(dim=1)
    torch.testing.assert_close(shift, torch.full((3,), (w - 1) * r), rtol=1e-5, atol=1e-5)


def test_momentum_accumulates_within_a_run_and_each_run_starts_afresh(pair):
    d_c, d_u = pair
    x, sigma, beta = torch.zeros_like(d_c), torch.tensor(1.0), -0.5
    apg = APG(3.0, eta=1.0, momentum=beta)
    assert not apg.needs_step  # the state lives in the run, not in the step index
    run = {}
    first = apg(fixed_model(d_c, d_u), x, sigma, ctx(3, index=0, state=run)).denoised
    torch.testing.assert_close(first, CFG(3.0)(fixed_model(d_c, d_u), x, sigma, ctx(3)).denoised, rtol=1e-5, atol=1e-5)
    # the run's next evaluation with another pair: Delta_1 = delta_1 + beta * delta_0
    d_c1, d_u1 = d_u, d_c
    second = apg(fixed_model(d_c1, d_u1), x, sigma, ctx(3, index=1, state=run)).denoised
    expected_delta = (d_c1 - d_u1) + beta * (d_c - d_u)
    torch.testing.assert_close(second, d_c1 + 2.0 * expected_delta, rtol=1e-5, atol=1e-5)
    # a new run (a new scratch dict) forgets the previous one, whatever the step index says
    again = apg(fixed_model(d_c, d_u), x, sigma, ctx(3, index=5, state={})).denoised
    torch.testing.assert_close(again, first)
    assert not vars(apg).get("_average")  # nothing kept on the instance


def test_momentum_needs_a_run_state_not_a_step_index(pair):
    d_c, d_u = pair
    no_run = StepContext({"label": torch.ones(3, dtype=torch.long)}, {"label": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ConfigError, match="per-run state"):
        APG(3.0, momentum=-0.5)(fixed_model(d_c, d_u), torch.zeros_like(d_c), torch.tensor(1.0), no_run)
    out = APG(3.0, momentum=-0.5)(fixed_model(d_c, d_u), torch.zeros_like(d_c), torch.tensor(1.0),
                                  ctx(3, index=None))  # k-diffusion's samplers give no step index: fine
    assert torch.isfinite(out.denoised).all()


def test_momentum_runs_on_stock_samplers_like_on_the_guidance_aware_euler():
    """k_euler (k-diffusion's sample_euler) and tgsample's euler are the same integrator for a guidance without a
    split: with APG's momentum in the run state both give the same samples, and a second run repeats the first."""
    import tgsample
    from tgsample import CallableDenoiser

    mu = torch.tensor([0.5, -1.0, 2.0, 0.0])

    def gaussian(x, sigma, shift):  # exact denoiser of N(shift * mu, 0.25 I)
        return shift.view(-1, 1) * mu + (x - shift.view(-1, 1) * mu) * 0.25 / (0.25 + sigma.view(-1, 1) ** 2)

    model = CallableDenoiser(gaussian, sigma_min=0.01, sigma_max=20.0, sample_shape=(4,))
    cond, uncond = {"shift": torch.ones(4)}, {"shift": torch.zeros(4)}
    apg = APG(3.0, momentum=-0.5)
    common = dict(uncond=uncond, seeds=range(4), schedule="karras", steps=6, guidance=apg)
    ours = tgsample.sample(model, cond, solver="euler", **common)
    stock = tgsample.sample(model, cond, solver="k_euler", **common)
    torch.testing.assert_close(stock, ours, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tgsample.sample(model, cond, solver="euler", **common), ours, rtol=0, atol=0)
    no_momentum = tgsample.sample(model, cond, solver="euler", **{**common, "guidance": APG(3.0, momentum=0.0)})
    assert (no_momentum - ours).abs().max() > 1e-3  # the momentum did something


@pytest.mark.parametrize("kwargs, word", [({"momentum": 1.0}, "momentum"), ({"eta": -0.1}, "eta"),
                                          ({"norm_threshold": -1}, "norm_threshold"),
                                          ({"scale": float("nan")}, "scale")])
def test_bad_parameters_name_themselves(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        APG(**kwargs)


def test_needs_uncond(pair):
    d_c, d_u = pair
    c = StepContext({"label": torch.ones(3, dtype=torch.long)}, None, index=0, state={})
    with pytest.raises(ConfigError, match="uncond"):
        APG(3.0)(fixed_model(d_c, d_u), torch.zeros_like(d_c), torch.tensor(1.0), c)
