"""Flow matching in sigma space: conversions, shifts and schedules against diffusers, and exact flow
denoisers (point mass, Gaussian) under every solver and guidance, from the pure-noise start."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tgsample
import tgsample.math as M
from tgsample import CFG, CFGPP, Interval, NoGuidance, TeacherGuidance
from tgsample.errors import ConfigError
from tgsample.flow import PURE_NOISE_SIGMA, FlowSchedule, flow, sigma_to_t, t_to_sigma
from tgsample.noise import NoiseStreams

from analytic import flow_gaussian, flow_point_mass

OWN = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2s_ancestral", "lcm", "tcd"]
P_C, P_U = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-1.0, 0.0, 3.0])
times = st.floats(min_value=1e-6, max_value=1 - 1e-6, allow_nan=False)
shifts = st.floats(min_value=0.1, max_value=20.0, allow_nan=False)


# --- conversions ------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(t=times)
def test_t_sigma_t_roundtrip_to_rounding(t):
    """t -> sigma -> t is the identity to a few float64 ulps (flow_t is well conditioned)."""
    back = float(M.flow_t(M.flow_sigma(torch.tensor(t, dtype=torch.float64))))
    assert abs(back - t) <= 4 * np.spacing(t)


@settings(max_examples=200, deadline=None)
@given(sigma=st.floats(min_value=1e-8, max_value=1e8, allow_nan=False))
def test_sigma_t_sigma_roundtrip_to_conditioning(sigma):
    """sigma -> t -> sigma loses what 1 - t cannot hold: relative error <= a few ulps times (1 + sigma)."""
    s = torch.tensor(sigma, dtype=torch.float64)
    back = float(M.flow_sigma(M.flow_t(s)))
    assert abs(back - sigma) <= 4 * np.finfo(np.float64).eps * sigma * (1 + sigma)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_pure_noise_sigma_is_exactly_t_one(dtype):
    s = torch.tensor(PURE_NOISE_SIGMA, dtype=dtype)
    assert float(M.flow_t(s)) == 1.0 and bool(1 + s == s)
    z = torch.randn(64, dtype=torch.float32).to(dtype)
    x = z * (1 + s)  # the start x = (1 + sigma) z ...
    assert torch.equal(x / (1 + s), z)  # ... is exactly x_t = z for the net
    assert torch.equal(M.implied_noise(x, torch.zeros_like(x), s), z)
    assert float(t_to_sigma(torch.tensor(1.0))) == PURE_NOISE_SIGMA and float(sigma_to_t(s)) == 1.0


@settings(max_examples=100, deadline=None)
@given(t=times, shift=shifts)
def test_static_shift_is_a_factor_on_sigma(t, shift):
    """diffusers' ``shift t / (1 + (shift - 1) t)`` (FlowMatchEulerDiscreteScheduler) is sigma * shift."""
    theirs = shift * t / (1 + (shift - 1) * t)
    ours = float(M.flow_t(M.flow_shift(M.flow_sigma(torch.tensor(t, dtype=torch.float64)), shift)))
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


@functools.lru_cache(maxsize=None)
def _dynamic_scheduler(kind):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type=kind)


@settings(max_examples=100, deadline=None)
@given(t=times, mu=st.floats(min_value=0.05, max_value=3.0), kind=st.sampled_from(["exponential", "linear"]))
def test_dynamic_shift_is_a_factor_on_sigma(t, mu, kind):
    sched = _dynamic_scheduler(kind)
    theirs = float(sched.time_shift(mu, 1.0, np.float64(t)))
    factor = FlowSchedule.from_config(dict(sched.config)).factor(mu=mu)
    ours = float(M.flow_t(M.flow_shift(M.flow_sigma(torch.tensor(t, dtype=torch.float64)), factor)))
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(steps=st.integers(1, 60), shift=st.floats(min_value=0.5, max_value=8.0), dynamic=st.booleans(),
       spacing=st.sampled_from(["linspace", "scheduler"]), seq_len=st.integers(16, 8192))
def test_schedule_reproduces_the_scheduler(steps, shift, dynamic, spacing, seq_len):
    """The ``flow`` schedule is FlowMatchEulerDiscreteScheduler's sigmas (t) in sigma space, as the FLUX
    (``linspace``: sigmas=linspace(1, 1/N, N), mu) and SD3 (``scheduler``: its own timesteps) pipelines set it."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    sched = FlowMatchEulerDiscreteScheduler(shift=shift, use_dynamic_shifting=dynamic)
    ours = FlowSchedule.from_config(dict(sched.config), spacing)
    mu = ours.mu(seq_len) if dynamic else None
    kwargs = {"sigmas": np.linspace(1.0, 1 / steps, steps)} if spacing == "linspace" else {}
    sched.set_timesteps(steps, mu=mu, **kwargs)
    sigmas = ours.sigmas(steps, image_seq_len=seq_len)
    assert float(sigmas[0]) == PURE_NOISE_SIGMA and float(sigmas[-1]) == 0.0 and len(sigmas) == steps + 1
    t = sigma_to_t(sigmas.float())
    assert float(t[0]) == 1.0
    torch.testing.assert_close(t, sched.sigmas, rtol=0, atol=2.5e-7)  # float32 rounding, at most 2 ulps near 1
    assert bool((sigmas[1:] < sigmas[:-1]).all())


def test_known_schedules():
    schnell = FlowSchedule(shift=1.0).sigmas(4)
    torch.testing.assert_close(schnell[1:], torch.tensor([3.0, 1.0, 1 / 3, 0.0], dtype=torch.float64))
    turbo = FlowSchedule(shift=3.0, spacing="scheduler").sigmas(4)
    torch.testing.assert_close(sigma_to_t(turbo)[1:4].float(), torch.tensor([0.857692, 0.602151, 0.008929]), atol=1e-6,
                               rtol=0)
    assert torch.equal(flow(4, shift=3.0)[1:], 3 * schnell[1:])  # a shift multiplies every sigma


def test_refused_scheduler_options():
    for key in ("use_karras_sigmas", "shift_terminal", "invert_sigmas"):
        with pytest.raises(ConfigError, match=key):
            FlowSchedule.from_config({"_class_name": "FlowMatchEulerDiscreteScheduler", key: 0.5})
    with pytest.raises(ConfigError, match="solver 'lcm'"):
        FlowSchedule.from_config({"stochastic_sampling": True})
    with pytest.raises(ConfigError, match="not a FlowMatchEulerDiscreteScheduler"):
        FlowSchedule.from_config({"_class_name": "EulerDiscreteScheduler"})
    with pytest.raises(ConfigError, match="image_seq_len"):
        FlowSchedule(use_dynamic_shifting=True).sigmas(4)
    with pytest.raises(ConfigError, match="spacing='uniform'"):
        FlowSchedule(spacing="uniform")


def test_sigma_space_euler_is_the_flow_euler_step():
    """One sigma-space Euler step of a flow denoiser equals ``x_t' = x_t + (t' - t) v`` in flow coordinates."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 5, generator=g, dtype=torch.float64)
    net = lambda x_t, t: torch.tanh(x_t @ w) * (1 + t[:, None])  # noqa: E731  (any velocity field)
    D = tgsample.FlowDenoiser(net, t_scale=1.0)
    x_t = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for t, t_next in ((0.9, 0.6), (0.5, 0.2), (1.0, 0.75)):
        s, s_next = (torch.tensor(float(M.flow_sigma(v)) if v < 1 else PURE_NOISE_SIGMA, dtype=torch.float64)
                     for v in (t, t_next))
        x = x_t * (1 + s)
        x_next = D(x, s.expand(3)) + s_next * (x - D(x, s.expand(3))) / s
        flow_step = x_t + (t_next - t) * net(x_t, torch.full((3,), t, dtype=torch.float64))
        torch.testing.assert_close(x_next / (1 + s_next), flow_step, rtol=1e-12, atol=1e-12)


# --- exact flow denoisers under every solver and guidance, from pure noise ------------------------------------


def _cond(b):
    return {"label": torch.zeros(b, dtype=torch.long)}, {"label": torch.full((b,), -1, dtype=torch.long)}


def _teacher():
    return flow_point_mass({0: P_C, -1: P_U})


FLOW_GUIDANCES = {
    "none": (lambda: NoGuidance(), P_C),
    "cfg": (lambda: CFG(3.0), P_U + 3.0 * (P_C - P_U)),
    "cfgpp": (lambda: CFGPP(0.4), P_U + 0.4 * (P_C - P_U)),
    "teacher": (lambda: TeacherGuidance(_teacher(), lam=0.7, guided_steps=2), P_C),
    "teacher_current": (lambda: TeacherGuidance(_teacher(), lam=0.5, guided_steps=[0], renoise="current",
                                                noise_mode="deterministic", teacher_cfg=2.0), P_C),
    "teacher_cfgpp": (lambda: TeacherGuidance(_teacher(), lam=0.5, guided_steps=[0, 2], noise_mode="hybrid",
                                              student=CFGPP(1.0)), P_C),
    "teacher_eps": (lambda: TeacherGuidance(_teacher(), lam=0.5, guided_steps=[1, 2], space="eps"), P_C),
    "interval_cfg": (lambda: Interval(CFG(2.0), sigma_lo=0.0, sigma_hi=10.0), None),
}


@pytest.mark.parametrize("schedule", [FlowSchedule(shift=1.0), FlowSchedule(shift=3.0, spacing="scheduler"),
                                      FlowSchedule(use_dynamic_shifting=True)], ids=["schnell", "sd3", "dev"])
@pytest.mark.parametrize("solver", OWN)
@pytest.mark.parametrize("name", sorted(FLOW_GUIDANCES))
def test_point_mass_flow_every_solver_every_guidance_lands_on_the_point(schedule, solver, name):
    make, target = FLOW_GUIDANCES[name]
    if target is None:  # the interval covers the steps below sigma 10, which include the last one
        target = P_U + 2.0 * (P_C - P_U)
    sigmas = schedule.sigmas(5, image_seq_len=1024)
    cond, uncond = _cond(4)
    x = tgsample.sample(flow_point_mass({0: P_C, -1: P_U}), cond, uncond=uncond, seeds=range(4), sigmas=sigmas,
                        solver=solver, guidance=make(), shape=(3,))
    assert torch.allclose(x, target.expand_as(x), atol=1e-5), (solver, name, x[0], target)


@settings(max_examples=25, deadline=None)
@given(steps=st.integers(4, 12), shift=st.floats(min_value=0.3, max_value=10.0), solver=st.sampled_from(OWN),
       name=st.sampled_from(sorted(FLOW_GUIDANCES)))
def test_point_mass_flow_lands_on_the_point_for_any_shift(steps, shift, solver, name):
    make, target = FLOW_GUIDANCES[name]
    target = P_U + 2.0 * (P_C - P_U) if target is None else target
    cond, uncond = _cond(2)
    x = tgsample.sample(flow_point_mass({0: P_C, -1: P_U}), cond, uncond=uncond, seeds=[0, 1],
                        sigmas=flow(steps, shift=shift), solver=solver, guidance=make(), shape=(3,))
    assert torch.allclose(x, target.expand_as(x), atol=1e-4)


MU_C, MU_U, S = 0.7, -0.4, 0.5


def _gaussian_run(solver, guidance, n, spacing):
    opts = {"gamma": 0.0} if solver == "tcd" else ({"eta": 0.0} if "ancestral" in solver else {})
    D = flow_gaussian({0: MU_C, -1: MU_U}, S)
    cond, uncond = _cond(16)
    sigmas = FlowSchedule(shift=3.0, spacing=spacing).sigmas(n)
    x = tgsample.sample(D, cond, uncond=uncond, seeds=range(16), sigmas=sigmas, solver=solver, shape=(4,),
                        guidance=guidance, dtype=torch.float64, **opts)
    return x, NoiseStreams(range(16), dtype=torch.float64).randn("init", (4,))


GAUSSIAN_GUIDANCES = {  # guidance -> the mean its closed-form flow map N(0, 1) -> N(mean, S^2) lands on
    "none": (lambda: NoGuidance(), MU_C),
    "cfg": (lambda: CFG(2.5), MU_U + 2.5 * (MU_C - MU_U)),  # equal variances: CFG is the Gaussian of the lerped mean
    "cfgpp_lam0": (lambda: CFGPP(0.0), MU_U),  # the unconditional trajectory
    "teacher_exact": (lambda: TeacherGuidance(flow_gaussian({0: MU_C, -1: MU_U}, S), lam=1.0, guided_steps=2,
                                              renoise="current", noise_mode="deterministic"), MU_C),
}


@pytest.mark.parametrize("spacing", ["linspace", "scheduler"])
@pytest.mark.parametrize("solver,order", [("euler", 1), ("tcd", 1), ("dpmpp_2s_ancestral", 2)])
@pytest.mark.parametrize("name", sorted(GAUSSIAN_GUIDANCES))
def test_gaussian_flow_converges_to_the_closed_form(spacing, solver, order, name):
    """From pure noise (sigma 2**53: x_t = z) the exact probability-flow map of N(mu, S^2) is ``mu + S z``;
    each deterministic solver converges to it at its order on the shifted flow schedule."""
    make, mean = GAUSSIAN_GUIDANCES[name]
    errs = []
    for n in (25, 50, 100):
        x, z = _gaussian_run(solver, make(), n, spacing)
        errs.append((x - (mean + S * z)).abs().max().item())
    rates = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert all(abs(r - order) < 0.3 for r in rates), (errs, rates)
    assert errs[-1] < (0.06 if order == 1 else 0.01), errs


def test_gaussian_flow_dpmpp_2m_reaches_the_closed_form():
    """DPM++ 2M's first interval (from sigma 2**53) is huge, so its rate is irregular; it still gets there."""
    errs = [(x - (MU_C + S * z)).abs().max().item() for x, z in (_gaussian_run("dpmpp_2m", None, n, "scheduler")
                                                               for n in (25, 100, 400))]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 2e-3, errs


def test_noise_space_teacher_guidance_from_pure_noise_is_refused():
    """``space="eps"`` scales the teacher's pull by ``sigma_i / sigma_r``: infinite from the pure-noise start, so a
    guided step 0 on a flow schedule is a ConfigError before sampling (``space="x0"`` runs)."""
    cond, _ = _cond(2)
    run = dict(seeds=[0, 1], sigmas=FlowSchedule(shift=1.0).sigmas(4), solver="euler", shape=(3,))
    with pytest.raises(ConfigError, match=r"step 0 starts at the pure-noise level sigma=2\*\*53.*space='x0'"):
        tgsample.sample(flow_point_mass({0: P_C}), cond, guidance=TeacherGuidance(_teacher(), space="eps"), **run)
    x = tgsample.sample(flow_point_mass({0: P_C}), cond, guidance=TeacherGuidance(_teacher(), lam=0.5), **run)
    assert torch.allclose(x, P_C.expand_as(x), atol=1e-5)


def test_teacher_renoise_is_the_flow_interpolation_at_the_teachers_t():
    """Renoising in sigma space, ``x_r = D_s + sigma_r n``, hands the teacher's velocity net exactly the flow
    interpolation ``x_t = (1 - t_r) D_s + t_r n`` at ``t_r = sigma_r / (1 + sigma_r)``."""
    seen = []

    def spy(x_t, t, label):
        seen.append((x_t.clone(), t.clone()))
        return torch.zeros_like(x_t)

    teacher = tgsample.FlowDenoiser(spy, t_scale=1.0)
    sigmas = FlowSchedule(shift=3.0, spacing="scheduler").sigmas(4).float()
    seeds = [3, 4]
    cond, _ = _cond(2)
    for step in (0, 1, 2):
        seen.clear()
        g = TeacherGuidance(teacher, lam=0.5, guided_steps=[step], renoise="next", noise_mode="random")
        tgsample.sample(flow_point_mass({0: P_C}), cond, seeds=seeds, sigmas=sigmas, solver="euler", guidance=g,
                        shape=(3,))
        (x_t, t), = seen
        t_r = float(M.flow_t(sigmas[step + 1]))
        n = NoiseStreams(seeds).randn("renoise", (3,))  # the renoise stream's first draw
        torch.testing.assert_close(t, torch.full((2,), t_r))
        torch.testing.assert_close(x_t, (1 - t_r) * P_C + t_r * n, rtol=1e-6, atol=1e-6)


class _SpyFlow(tgsample.FlowDenoiser):
    """An exact flow denoiser that records the noise levels it is called at."""

    def __init__(self, seen):
        super().__init__(flow_point_mass({0: P_C}).net, t_scale=1.0)
        self.seen = seen

    def forward(self, x, sigma, **cond):
        self.seen.append(sigma.clone())
        return super().forward(x, sigma, **cond)


def _uniform_ks(u):
    """Kolmogorov-Smirnov distance of the sample ``u`` to the uniform distribution on [0, 1]."""
    u, n = u.sort().values, len(u)
    i = torch.arange(1, n + 1, dtype=u.dtype)
    return float(torch.maximum(i / n - u, u - (i - 1) / n).max())


@pytest.mark.parametrize("as_model", [False, True], ids=["denoiser", "model"])
@pytest.mark.parametrize("renoise", ["random", "random_sigma"])
def test_random_renoise_on_a_flow_schedule_is_uniform_in_the_teachers_t(renoise, as_model):
    """``random`` draws the teacher's level uniformly in its time ``t = sigma / (1 + sigma)`` over the schedule's
    positive range -- never the pure-noise level 2**53, which is ``t = 1`` --; ``random_sigma`` uniformly in sigma,
    where a flow schedule's range ``[sigma_min, 2**53]`` puts nearly every draw at pure noise. Per sample, from the
    ``renoise_level`` stream; the teacher may be a model (its denoiser's ``t`` is read)."""
    from tgsample.models import Model

    seen = []
    teacher = _SpyFlow(seen)
    if as_model:
        teacher = Model(name="flow-teacher", denoiser=teacher, sample_shape=(3,), encode=None)
    sigmas = FlowSchedule(shift=3.0, spacing="scheduler").sigmas(4)
    n = 4000
    cond, _ = _cond(n)
    g = TeacherGuidance(teacher, lam=0.5, guided_steps=[1], renoise=renoise)
    tgsample.sample(flow_point_mass({0: P_C}), cond, seeds=range(n), sigmas=sigmas, solver="euler", guidance=g,
                    shape=(3,), dtype=torch.float64)
    (sigma_r,) = seen
    lo, hi = float(sigmas[sigmas > 0].min()), float(sigmas.max())
    assert hi == PURE_NOISE_SIGMA and sigma_r.dtype == torch.float64
    u = NoiseStreams(range(n), dtype=torch.float64).rand("renoise_level")  # each sample's own draw
    t = sigma_to_t(sigma_r)
    t_lo = float(sigma_to_t(torch.tensor(lo, dtype=torch.float64)))
    if renoise == "random":
        torch.testing.assert_close(t, t_lo + (1 - t_lo) * u, rtol=1e-12, atol=0)
        assert bool((sigma_r < PURE_NOISE_SIGMA).all()) and bool((sigma_r >= lo * (1 - 1e-12)).all())
        assert _uniform_ks((t - t_lo) / (1 - t_lo)) < 0.03  # 4000 draws: 0.03 is p < 0.001 for a uniform
        assert float((sigma_r > 1e6).double().mean()) < 0.01  # hardly any near-pure-noise level
    else:
        torch.testing.assert_close(sigma_r, lo + (hi - lo) * u, rtol=1e-12, atol=0)
        assert float((sigma_r > 1e12).double().mean()) > 0.99  # t within 1e-12 of pure noise, nearly always
