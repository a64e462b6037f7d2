"""Guidance specs (one builder, round trips, plugins nesting guidances) and the solver <-> guidance contract."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

import tgsample
from tgsample import registry
from tgsample.errors import ConfigError, UnsupportedGuidanceError
from tgsample.guidance import (CFG, CFGPP, DistilledCFG, Estimate, Guidance, Interval, NoGuidance, StepContext,
                               TeacherGuidance, build, part)
from tgsample.models import Model
from tgsample.noise import NoiseStreams, stream_seed
from tgsample.solvers import GuidedModel

from analytic import gaussian, point_mass, rational_denoiser, tiny_denoiser

SIGMAS = torch.tensor([14.6, 4.3, 1.6, 0.72, 0.0])


def teacher_model(name: str = "digits") -> Model:
    """A 'registered' teacher: a Model whose name is a teachers registry name (what to_spec writes)."""
    return Model(name, tiny_denoiser(1), (6,), encode=lambda p, n: ({}, {}))


# --- one builder, round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda t: NoGuidance(),
    lambda t: CFG(3.0),
    lambda t: CFGPP(0.4),
    lambda t: DistilledCFG(1.0, inner=CFG(2.0)),
    lambda t: Interval(CFG(2.0), sigma_lo=0.5, sigma_hi=5.0, guided_steps=[1], outside=CFGPP(0.2)),
    lambda t: TeacherGuidance(t, lam=[0.3, 0.1], guided_steps=[0, 2], renoise="random", noise_mode="hybrid",
                              hybrid=0.7, teacher_cfg=2.0, student=DistilledCFG(3.0)),
    lambda t: Interval(TeacherGuidance(t, lam=0.2, student=CFG(1.5)), sigma_hi=10.0),
    lambda t: TeacherGuidance(t, lam=0.02, teacher_cfg=6.0, space="eps", student=CFGPP(1.2)),
], ids=["none", "cfg", "cfgpp", "distilled", "interval", "teacher", "interval_teacher", "teacher_eps"])
def test_to_spec_round_trips_and_equality_come_free(make):
    t = teacher_model()
    g = make(t)
    spec = g.to_spec()
    assert build(spec, teacher=lambda name: t) == g
    assert build(spec, teacher=lambda name: t) is not g and make(t) == g and make(t) != CFG(9.0)
    assert repr(g).startswith(type(g).__name__ + "(")


def test_a_spec_in_yaml_form_builds_the_whole_tree():
    t = teacher_model()
    spec = {"name": "interval", "sigma_hi": 5.0,
            "inner": {"name": "teacher", "lam": 0.3, "guided_steps": 2, "student": {"name": "cfgpp", "lam": 0.6}}}
    g = build(spec, teacher=lambda name: t)
    assert g == Interval(TeacherGuidance(t, lam=0.3, guided_steps=[0, 1], student=CFGPP(0.6)), sigma_hi=5.0)
    assert g.needs_step and g.splits_direction  # derived from the parts
    assert g.to_spec()["inner"]["teacher"] == "digits"  # a model part is written as its registry name


def test_a_plugin_guidance_that_nests_another_is_written_in_yaml():
    @dataclass(frozen=True)
    class Halved(Guidance):
        """``inner``'s estimate, halved: a plugin guidance with a nested part."""

        inner: Guidance = part(required=True)
        factor: float = 0.5

        def __call__(self, model, x, sigma, ctx):
            est = self.inner(model, x, sigma, ctx)
            return Estimate(est.denoised * self.factor, est.direction * self.factor)

    registry.register("guidance", "halved", Halved)
    try:
        g = build({"name": "halved", "inner": {"name": "cfg", "scale": 2.0}})
        assert g == Halved(CFG(2.0)) and g.to_spec() == {"name": "halved", "inner": {"name": "cfg", "scale": 2.0},
                                                          "factor": 0.5}
        with pytest.raises(ConfigError, match=r"'innr' \(did you mean 'inner'\?\)"):
            build({"name": "halved", "innr": "cfg"})
    finally:
        registry.unregister("guidance", "halved")


def test_the_example_plugins_guidance_is_a_spec_too():
    apg = build({"name": "apg", "scale": 5.0, "momentum": 0.0})
    assert apg.to_spec() == {"name": "apg", "scale": 5.0, "eta": 0.0, "norm_threshold": 0.0, "momentum": 0.0}
    assert build(apg.to_spec()) == apg and repr(apg) == "APG(scale=5.0, eta=0.0, norm_threshold=0.0, momentum=0.0)"


@pytest.mark.parametrize("spec,match", [
    ({"scale": 2.0}, "needs a 'name'"),
    ({"name": "cfg", "scal": 2.0}, r"'scal' \(did you mean 'scale'\?\)"),
    ({"name": "teacher", "lam": 0.2}, "teacher guidance needs a teacher: set teacher="),
    ({"name": "interval"}, "cannot be built from options"),
    ({"name": "cfgpp", "lam": 3}, r"CFG\+\+ lam=3.0 is outside the allowed range \[0, 1.2\]"),
    ({"name": "cfg", "scale": "high"}, "CFG scale='high' must be a finite number"),
])
def test_bad_specs_are_typed_errors_naming_the_value(spec, match):
    with pytest.raises(ConfigError, match=match):
        build(spec)


def test_a_teacher_named_in_a_spec_is_built_with_the_student():
    """The resolver builds a teacher named inside a guidance spec with student= (zero-copy teacher, shared encoder)."""
    seen = []

    def spy_teacher(student=None, **options):
        seen.append((student, options))
        return teacher_model("spy")

    registry.register("teachers", "spy", spy_teacher)
    try:
        student = Model("s", tiny_denoiser(0), (6,), encode=lambda p, n: ({}, {}))
        cond = {"label": torch.tensor([0, 1])}
        tgsample.sample(student, cond, seeds=[0, 1], sigmas=SIGMAS,
                        guidance={"name": "teacher", "teacher": "spy", "lam": 0.3})
        tgsample.sample(student, cond, seeds=[0, 1], sigmas=SIGMAS, teacher="spy", teacher_options={"size": 3},
                        guidance={"name": "teacher", "lam": 0.3})
        assert [s for s, _ in seen] == [student, student] and seen[1][1] == {"size": 3}
    finally:
        registry.unregister("teachers", "spy")


# --- the solver <-> guidance contract ---------------------------------------------------------------


class Spy(Guidance):
    """Records what the solver side gives a guidance."""

    def __init__(self):
        self.seen = []

    def __call__(self, model, x, sigma, ctx):
        self.seen.append((sigma, ctx.sigma_next, ctx.index, ctx.state))
        return NoGuidance()(model, x, sigma, ctx)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2s_ancestral", "k_euler", "k_heun", "k_dpm_2"])
def test_sigma_and_sigma_next_come_in_one_form(solver):
    spy = Spy()
    x = tgsample.sample(rational_denoiser(0), {"label": torch.tensor([0, 1, 2])}, seeds=[0, 1, 2], sigmas=SIGMAS,
                        solver=solver, guidance=spy, dtype=torch.float64)
    assert x.dtype == torch.float64 and spy.seen
    for sigma, sigma_next, index, state in spy.seen:
        assert sigma.shape == (3,) and sigma.dtype == torch.float64
        if solver.startswith("k_"):
            assert index is None and sigma_next is None
        else:
            assert sigma_next.shape == (3,) and sigma_next.dtype == torch.float64
            assert torch.equal(sigma_next, SIGMAS[index + 1].double().expand(3))
    assert len({id(s) for *_, s in spy.seen}) == 1  # one scratch state for the whole run


def test_scratch_state_is_per_run():
    class Counter(Guidance):
        def __call__(self, model, x, sigma, ctx):
            s = ctx.scratch(self)
            s["n"] = s.get("n", 0) + 1
            return Estimate.same(denoise_n(model, x, sigma, ctx, s["n"]))

    def denoise_n(model, x, sigma, ctx, n):
        return NoGuidance()(model, x, sigma, ctx).denoised + n

    g = Counter()
    a = tgsample.sample(gaussian(0.0, 1.0), seeds=[0], sigmas=SIGMAS, shape=(2,), guidance=g)
    b = tgsample.sample(gaussian(0.0, 1.0), seeds=[0], sigmas=SIGMAS, shape=(2,), guidance=g)
    assert torch.equal(a, b)  # the second run starts from an empty state


@pytest.mark.parametrize("guidance,needs", [
    (lambda: CFGPP(0.5), "a direction distinct from denoised"),
    (lambda: TeacherGuidance(gaussian(0.0, 1.0), lam=0.2), "the step index"),
    (lambda: Interval(CFG(2.0), guided_steps=[0]), "the step index"),
])
def test_a_solver_that_cannot_run_a_guidance_is_refused_up_front_naming_those_that_can(guidance, needs):
    calls = []
    D = tgsample.CallableDenoiser(lambda x, s, **c: calls.append(1) or x * 0)
    with pytest.raises(UnsupportedGuidanceError) as info:
        tgsample.sample(D, seeds=[0], sigmas=SIGMAS, shape=(2,), solver="k_dpmpp_2m", guidance=guidance())
    msg = str(info.value)
    assert "solver 'k_dpmpp_2m' cannot run" in msg and needs in msg
    able = msg.split("Solvers that can: ")[1].split(", ")
    assert {"euler", "dpmpp_2m", "lcm", "heun"} <= set(able)  # heun: the example plugin's, from the registry
    assert not any(n.startswith("k_") for n in able)
    assert not calls  # refused before any model evaluation


def test_a_solver_function_declares_what_it_provides():
    from tgsample.solvers import SPLIT_DIRECTION, STEP_INDEX, capabilities, provides

    assert capabilities(registry.get("solvers", "tcd")) == {STEP_INDEX, SPLIT_DIRECTION}
    assert capabilities(registry.get("solvers", "heun")) == {STEP_INDEX, SPLIT_DIRECTION}  # the plugin's
    assert capabilities(registry.get("solvers", "k_lms")) == set()
    with pytest.raises(ConfigError, match="unknown solver capabilities"):
        provides("time_travel")

    def plain(model, x, sigmas, *, callback=None, disable=None):  # declares nothing: CFG-like guidances only
        for i in range(len(sigmas) - 1):
            x = model(x, sigmas[i], None).denoised
        return x

    assert tgsample.sample(gaussian(0.0, 1.0), seeds=[0], sigmas=SIGMAS, shape=(2,), solver=plain).shape == (1, 2)
    with pytest.raises(UnsupportedGuidanceError, match="solver 'plain' cannot run"):
        tgsample.sample(gaussian(0.0, 1.0), seeds=[0], sigmas=SIGMAS, shape=(2,), solver=plain, guidance=CFGPP(0.5),
                        uncond={})


# --- tests that fail when the formulas they guard are broken -----------------------------------------


def _capture_renoise(guidance_kwargs, student=None):
    """Run one teacher-guided step; returns (x, sigma, the student's estimate, the x_r the teacher saw)."""
    seen = []

    def teacher(x, sigma, **c):
        seen.append((x.clone(), sigma.clone()))
        return x * 0.5

    P_C, P_U = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-1.0, 0.0, 3.0])
    D = point_mass({0: P_C, -1: P_U})
    g = TeacherGuidance(tgsample.CallableDenoiser(teacher), guided_steps=[0], student=student, **guidance_kwargs)
    cond, uncond = {"label": torch.zeros(2, dtype=torch.long)}, {"label": torch.full((2,), -1, dtype=torch.long)}
    model = GuidedModel(D, g, cond, uncond, SIGMAS, NoiseStreams([7, 8]))
    x = NoiseStreams([7, 8]).randn("init", (3,)) * SIGMAS[0]
    model(x, SIGMAS[0], 0)
    est = (student or NoGuidance())(D, x, SIGMAS[0].expand(2), StepContext(cond, uncond))
    return x, est, seen[0]


def test_deterministic_renoise_noise_is_the_implied_noise_of_the_direction():
    """x_r = D_s + sigma_r (x - direction) / sigma: with CFG++ the direction (D_u) is not the denoised estimate."""
    x, est, (x_r, sigma_r) = _capture_renoise(dict(lam=0.5, renoise="next", noise_mode="deterministic"), CFGPP(0.5))
    assert not torch.allclose(est.direction, est.denoised)
    expected = est.denoised + SIGMAS[1] * (x - est.direction) / SIGMAS[0]
    torch.testing.assert_close(x_r, expected, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(sigma_r, SIGMAS[1].expand(2))


@pytest.mark.parametrize("c", [0.8, 0.3])
def test_hybrid_renoise_noise_weights_the_deterministic_part_by_c(c):
    """n = c n_det + sqrt(1 - c^2) z, z from the sample's own renoise stream."""
    x, est, (x_r, _) = _capture_renoise(dict(lam=0.5, renoise="current", noise_mode="hybrid", hybrid=c), CFGPP(0.5))
    n_det = (x - est.direction) / SIGMAS[0]
    z = NoiseStreams([7, 8]).randn("renoise", (3,))
    expected = est.denoised + SIGMAS[0] * (c * n_det + math.sqrt(1 - c * c) * z)
    torch.testing.assert_close(x_r, expected, rtol=1e-6, atol=1e-4)


def test_every_purpose_has_its_own_stream():
    """Initial, ancestral and renoise noise (and the renoise level) of one seed are different draws."""
    from tgsample.noise import PURPOSES

    draws = {p: NoiseStreams([3]).randn(p, (16,)) for p in PURPOSES}
    for i, a in enumerate(PURPOSES):
        for b in PURPOSES[i + 1:]:
            assert stream_seed(3, a) != stream_seed(3, b)
            assert not torch.allclose(draws[a], draws[b]), (a, b)
    # and a purpose's draws do not depend on whether another purpose drew first
    s = NoiseStreams([3])
    s.randn("ancestral", (16,))
    assert torch.equal(s.randn("init", (16,)), draws["init"])


def test_euler_moves_along_the_implied_noise():
    """One Euler step of the exact Gaussian denoiser: x' = D + sigma' (x - D) / sigma (not x' = D)."""
    D = gaussian(0.7, 0.5)
    sigmas = torch.tensor([2.0, 1.0, 0.0])
    x0 = NoiseStreams([5]).randn("init", (4,)) * 2.0
    d0 = D(x0, sigmas[0].expand(1))
    x1 = d0 + 1.0 * (x0 - d0) / 2.0
    expected = D(x1, sigmas[1].expand(1))  # the last step lands on its denoised estimate
    out = tgsample.sample(D, seeds=[5], sigmas=sigmas, solver="euler", shape=(4,))
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(out, D(d0, sigmas[1].expand(1)), atol=1e-3)  # what x' = D would give
