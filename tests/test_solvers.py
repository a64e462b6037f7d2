"""Exact-denoiser tests of every solver under every guidance, and equivalence with k-diffusion."""

import math

import pytest
import torch

import tgsample
from tgsample import CFG, CFGPP, Interval, NoGuidance, TeacherGuidance
from tgsample.kdiffusion import STOCK, k_sampling
from tgsample.noise import NoiseStreams

from analytic import gaussian, gaussian_flow_map, mixture, point_mass, rational_denoiser, tiny_denoiser

OWN = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2s_ancestral", "lcm", "tcd"]
SIGMAS = torch.tensor([14.6, 4.3, 1.6, 0.72, 0.0])
P_C, P_U = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([-1.0, 0.0, 3.0])
P_T = torch.tensor([2.5, 1.0, -1.5])  # the teacher's point: not the student's, so the interpolation shows


def _cond(b):
    return {"label": torch.zeros(b, dtype=torch.long)}, {"label": torch.full((b,), -1, dtype=torch.long)}


def _point_run(solver, guidance, teacher_points=None):
    D = point_mass({0: P_C, -1: P_U})
    cond, uncond = _cond(4)
    return tgsample.sample(D, cond, uncond=uncond, seeds=range(4), sigmas=SIGMAS, solver=solver,
                           guidance=guidance, shape=(3,))


GUIDANCES = {
    "none": (lambda: NoGuidance(), P_C),
    "cfg": (lambda: CFG(3.0), P_U + 3.0 * (P_C - P_U)),
    "cfgpp": (lambda: CFGPP(0.4), P_U + 0.4 * (P_C - P_U)),
    # the last step is guided (renoise "current": sigma_r > 0 there), so the output is D_new = (1 - lam) D_s + lam D_T
    "teacher": (lambda: TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.7, guided_steps=[0, 3],
                                        renoise="current"), P_C + 0.7 * (P_T - P_C)),
    "teacher_cfgpp": (lambda: TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.5, guided_steps=[0, 3],
                                              renoise="current", noise_mode="hybrid", teacher_cfg=2.0,
                                              student=CFGPP(1.0)), 0.5 * P_C + 0.5 * (P_U + 2.0 * (P_T - P_U))),
    "interval_cfg": (lambda: Interval(CFG(2.0), sigma_lo=0.0, sigma_hi=100.0), P_U + 2.0 * (P_C - P_U)),
    # noise space, renoise "current" with the student's own noise: eps_T = eps_s + (P_C - P_T) / sigma, so
    # x - sigma eps_new = P_C + lam (P_T - P_C), the x0 form's point (a direction change does not move a point mass)
    "teacher_eps": (lambda: TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.7, guided_steps=[0, 3],
                                            renoise="current", noise_mode="deterministic", space="eps"),
                    P_C + 0.7 * (P_T - P_C)),
    "cfgpp_1.2": (lambda: CFGPP(1.2), P_U + 1.2 * (P_C - P_U)),  # the official 2S-a runs' slight extrapolation
}


@pytest.mark.parametrize("solver", OWN)
@pytest.mark.parametrize("name", sorted(GUIDANCES))
def test_point_mass_every_solver_every_guidance_lands_on_the_point(solver, name):
    make, target = GUIDANCES[name]
    x = _point_run(solver, make())
    assert torch.allclose(x, target.expand_as(x), atol=1e-5), (solver, name, x[0], target)


@pytest.mark.parametrize("sampler", STOCK)
@pytest.mark.parametrize("name", ["none", "cfg", "interval_cfg"])
def test_point_mass_stock_samplers(sampler, name):
    make, target = GUIDANCES[name]
    x = _point_run(f"k_{sampler}", make())
    assert torch.allclose(x, target.expand_as(x), atol=1e-4), (sampler, name, x[0], target)


@pytest.mark.parametrize("guidance", [CFGPP(0.5), "teacher_like", Interval(CFG(2.0), guided_steps=[0])])
def test_stock_samplers_refuse_what_they_cannot_honour(guidance):
    if guidance == "teacher_like":
        guidance = TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.2)
    with pytest.raises(tgsample.UnsupportedGuidanceError, match="solver 'k_heun' cannot run"):
        _point_run("k_heun", guidance)


@pytest.mark.parametrize("solver,order", [("euler", 1), ("tcd", 1), ("dpmpp_2m", 2), ("dpmpp_2s_ancestral", 2)])
def test_gaussian_converges_to_closed_form_flow_map_at_the_solver_order(solver, order):
    """Per-sample comparison with the exact probability-flow map of N(mu, s^2) (robust, unlike sample
    statistics): the error shrinks by 2^order when the steps double, and is small at 100 steps."""
    mu, s = 0.7, 0.5
    from tgsample.schedules import karras

    opts = {"gamma": 0.0} if solver == "tcd" else ({"eta": 0.0} if "ancestral" in solver else {})
    x_T = NoiseStreams(range(16)).randn("init", (4,)) * 20.0
    exact = gaussian_flow_map(x_T, 20.0, mu, s)
    errs = []
    for n in (25, 50, 100):
        sigmas = karras(n, sigma_min=0.002, sigma_max=20.0)
        x = tgsample.sample(gaussian(mu, s), seeds=range(16), sigmas=sigmas, solver=solver, shape=(4,), **opts)
        errs.append((x - exact).abs().max().item())
    rates = [math.log2(a / b) for a, b in zip(errs, errs[1:])]
    assert all(abs(r - order) < 0.3 for r in rates), (errs, rates)
    assert errs[-1] < (0.05 if order == 1 else 0.002) * s * 20, errs


def test_gaussian_mixture_occupancy_with_exact_start_and_teacher_on_first_step():
    """Mixture statistics only where they are sound: the start is drawn from the exact noisy distribution,
    50 DPM++ steps, tolerance from the binomial Monte-Carlo error. With an exact teacher, teacher guidance on
    the first step leaves the distribution unchanged."""
    means, weights, s = torch.tensor([-2.0, 2.0]), torch.tensor([0.3, 0.7]), 0.3
    D = mixture(means, weights, s)
    n, sigma_max = 4000, 10.0
    from tgsample.schedules import karras

    sigmas = karras(50, sigma_min=0.002, sigma_max=sigma_max)
    g = torch.Generator().manual_seed(1)
    comp = (torch.rand(n, generator=g) < weights[1]).long()
    x0 = means[comp] + s * torch.randn(n, generator=g)
    x_start = (x0 + sigma_max * torch.randn(n, generator=g)).reshape(n, 1)
    se = math.sqrt(0.3 * 0.7 / n)
    for guidance in (None, TeacherGuidance(D, lam=1.0, guided_steps=1, renoise="next")):
        model = tgsample.GuidedModel(D, guidance or NoGuidance(), {}, None, sigmas, NoiseStreams(range(n)))
        from tgsample.solvers import sample_dpmpp_2m

        x = sample_dpmpp_2m(model, x_start.clone(), sigmas, disable=True)
        frac = (x > 0).float().mean().item()
        assert abs(frac - 0.7) < 4.5 * se, (guidance, frac)
        upper = x[x > 0]
        assert abs(upper.mean().item() - 2.0) < 4.5 * s / math.sqrt(len(upper))


def test_cfgpp_lam_zero_follows_the_unconditional_trajectory():
    D = tiny_denoiser()
    cond, uncond = {"label": torch.tensor([0, 1, 2])}, {"label": torch.tensor([3, 3, 3])}
    for solver in OWN:
        a = tgsample.sample(D, cond, uncond=uncond, seeds=[5, 6, 7], sigmas=SIGMAS, solver=solver, guidance=CFGPP(0.0))
        b = tgsample.sample(D, uncond, seeds=[5, 6, 7], sigmas=SIGMAS, solver=solver)
        assert torch.allclose(a, b, atol=1e-6), solver


def test_cfg_scale_one_equals_conditional_sampler():
    D = tiny_denoiser()
    cond, uncond = {"label": torch.tensor([0, 1])}, {"label": torch.tensor([3, 3])}
    a = tgsample.sample(D, cond, uncond=uncond, seeds=[1, 2], sigmas=SIGMAS, guidance=CFG(1.0))
    b = tgsample.sample(D, cond, seeds=[1, 2], sigmas=SIGMAS)
    assert torch.equal(a, b)


def test_cfgpp_with_euler_is_cfg_with_a_per_step_scale():
    """Euler + CFG++(lam) == Euler + CFG with w_i = lam * sigma_i / (sigma_i - sigma_{i+1})."""
    D = tiny_denoiser()
    cond, uncond = {"label": torch.tensor([0, 1])}, {"label": torch.tensor([3, 3])}
    lam = 0.6
    a = tgsample.sample(D, cond, uncond=uncond, seeds=[1, 2], sigmas=SIGMAS, guidance=CFGPP(lam))
    noise = NoiseStreams([1, 2])
    x = noise.randn("init", (6,)) * SIGMAS[0]
    for i in range(len(SIGMAS) - 1):
        w = lam * SIGMAS[i] / (SIGMAS[i] - SIGMAS[i + 1])
        m = tgsample.GuidedModel(D, CFG(float(w)), cond, uncond, SIGMAS)
        d = m(x, SIGMAS[i], i).denoised
        x = x + (SIGMAS[i + 1] - SIGMAS[i]) * (x - d) / SIGMAS[i]
    assert torch.allclose(a, x, atol=1e-5)


@pytest.mark.parametrize("solver", OWN)
@pytest.mark.parametrize("renoise,noise", [("next", "random"), ("current", "deterministic"), ("random", "hybrid")])
@pytest.mark.parametrize("space", ["x0", "eps"])
def test_teacher_lam_zero_is_the_plain_student_bit_for_bit(solver, renoise, noise, space):
    student, teacher = tiny_denoiser(0), tiny_denoiser(1)
    cond = {"label": torch.tensor([0, 1, 2])}
    plain = tgsample.sample(student, cond, seeds=[3, 4, 5], sigmas=SIGMAS, solver=solver)
    g = TeacherGuidance(teacher, lam=0.0, guided_steps=2, renoise=renoise, noise_mode=noise, space=space)
    guided = tgsample.sample(student, cond, seeds=[3, 4, 5], sigmas=SIGMAS, solver=solver, guidance=g)
    assert torch.equal(plain, guided)
    g1 = TeacherGuidance(teacher, lam=0.3, guided_steps=2, renoise=renoise, noise_mode=noise, space=space)
    assert not torch.equal(plain, tgsample.sample(student, cond, seeds=[3, 4, 5], sigmas=SIGMAS, solver=solver, guidance=g1))


@pytest.mark.parametrize("solver", OWN)
def test_eps_space_lam_zero_with_a_split_student_is_bit_for_bit(solver):
    """With CFG++ (direction != denoised) both estimates are interpolated in noise space; lam = 0 leaves both."""
    D = tiny_denoiser(0)
    cond, uncond = {"label": torch.tensor([0, 1, 2])}, {"label": torch.tensor([3, 3, 3])}
    run = dict(uncond=uncond, seeds=[3, 4, 5], sigmas=SIGMAS, solver=solver)
    plain = tgsample.sample(D, cond, guidance=CFGPP(0.6), **run)
    g = TeacherGuidance(tiny_denoiser(1), lam=0.0, guided_steps=2, teacher_cfg=2.0, student=CFGPP(0.6), space="eps")
    assert torch.equal(plain, tgsample.sample(D, cond, guidance=g, **run))


def _teacher_spy(teacher):
    """A teacher recording its input, noise level and output at each call."""
    calls = []

    def spy(x, sigma, **c):
        out = teacher(x, sigma, **c)
        calls.append((x.clone(), sigma.clone(), out.clone()))
        return out

    return tgsample.CallableDenoiser(spy), calls


@pytest.mark.parametrize("student", [None, CFGPP(0.5)], ids=["plain", "cfgpp"])
def test_eps_space_lam_one_steps_with_the_teachers_noise(student):
    """lam = 1 in noise space replaces the student's noise by the teacher's, eps_T = (x_r - D_T) / sigma_r, in
    what the step moves toward *and* what it carries: Euler's guided step is x_1 = x_0 + (sigma_1 - sigma_0) eps_T."""
    D, T = tiny_denoiser(0), tiny_denoiser(1)
    teacher, calls = _teacher_spy(T)
    cond, uncond = {"label": torch.tensor([0, 1, 2])}, {"label": torch.tensor([3, 3, 3])}
    g = TeacherGuidance(teacher, lam=1.0, guided_steps=[0], student=student, space="eps")
    seen = []
    tgsample.sample(D, cond, uncond=uncond, seeds=[3, 4, 5], sigmas=SIGMAS, guidance=g, callback=seen.append)
    (x_r, sigma_r, d_t), = calls
    eps_t = (x_r - d_t) / sigma_r[:, None]
    assert torch.equal(sigma_r, SIGMAS[1].expand(3))
    torch.testing.assert_close(seen[0]["denoised"], seen[0]["x"] - SIGMAS[0] * eps_t)
    torch.testing.assert_close(seen[1]["x"], seen[0]["x"] + (SIGMAS[1] - SIGMAS[0]) * eps_t, rtol=1e-5, atol=1e-5)
    # x0 space at lam = 1: the step moves to D_T but keeps the student's noise
    g0 = TeacherGuidance(teacher, lam=1.0, guided_steps=[0], student=student)
    seen0 = []
    tgsample.sample(D, cond, uncond=uncond, seeds=[3, 4, 5], sigmas=SIGMAS, guidance=g0, callback=seen0.append)
    torch.testing.assert_close(seen0[0]["denoised"], calls[-1][2])
    assert not torch.allclose(seen0[1]["x"], seen[1]["x"], atol=1e-3)


@pytest.mark.parametrize("noise", ["deterministic", "random"])
def test_eps_space_closed_form_on_point_masses(noise):
    """Student a point mass at P_C, teacher one at P_T, renoise to sigma_1: eps_T = n + (P_C - P_T) / sigma_1, so
    D_new = P_C + lam (sigma_0 / sigma_1) (P_T - P_C) + lam sigma_0 (eps_s - n), eps_s = (x - P_C) / sigma_0.
    The deterministic noise n = eps_s leaves the teacher's pull amplified by sigma_0 / sigma_1; fresh noise adds
    the second term. In x0 space the same lam gives P_C + lam (P_T - P_C)."""
    lam, seeds = 0.05, [7, 8]
    cond = {"label": torch.zeros(2, dtype=torch.long)}
    x = NoiseStreams(seeds).randn("init", (3,)) * SIGMAS[0]
    eps_s = (x - P_C) / SIGMAS[0]
    n = eps_s if noise == "deterministic" else NoiseStreams(seeds).randn("renoise", (3,))
    expected = P_C + lam * SIGMAS[0] / SIGMAS[1] * (P_T - P_C) + lam * SIGMAS[0] * (eps_s - n)
    for space, want in (("eps", expected), ("x0", (P_C + lam * (P_T - P_C)).expand(2, 3))):
        g = TeacherGuidance(point_mass({0: P_T}), lam=lam, guided_steps=[0], noise_mode=noise, space=space)
        est = tgsample.GuidedModel(point_mass({0: P_C}), g, cond, None, SIGMAS, NoiseStreams(seeds))(x, SIGMAS[0], 0)
        torch.testing.assert_close(est.denoised, want, rtol=1e-5, atol=1e-5)
        if space == "eps":
            assert est.direction is est.denoised  # no split: one interpolation serves both


def test_exact_teacher_with_current_deterministic_renoise_returns_the_student():
    D = gaussian(0.3, 0.8)
    calls = []

    def spy(x, sigma, **c):
        calls.append(x.clone())
        return D(x, sigma)

    teacher = tgsample.CallableDenoiser(spy)
    g = TeacherGuidance(teacher, lam=1.0, guided_steps=1, renoise="current", noise_mode="deterministic")
    model = tgsample.GuidedModel(D, g, {}, None, SIGMAS, NoiseStreams([0, 1]))
    x = torch.randn(2, 3) * SIGMAS[0]
    est = model(x, SIGMAS[0], 0)
    assert torch.allclose(calls[0], x, atol=1e-5)  # x_r == x_i
    assert torch.allclose(est.denoised, D(x, SIGMAS[0].expand(2)), atol=1e-6)


def test_per_sample_noise_is_independent_of_batch_size_and_position():
    """Every draw (init, ancestral, renoise level, renoise noise) depends only on the sample's seed."""
    D = rational_denoiser(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    seeds = [11, 12, 13, 14, 15, 16, 17, 18]
    g = TeacherGuidance(rational_denoiser(1), lam=0.4, guided_steps=2, renoise="random", noise_mode="random")
    full = tgsample.sample(D, {"label": labels}, seeds=seeds, sigmas=SIGMAS, solver="euler_ancestral", guidance=g)
    for i in (0, 3, 7):
        one = tgsample.sample(D, {"label": labels[i:i + 1]}, seeds=[seeds[i]], sigmas=SIGMAS, solver="euler_ancestral", guidance=g)
        assert torch.equal(one[0], full[i])
    perm = [7, 0, 3]
    part = tgsample.sample(D, {"label": labels[perm]}, seeds=[seeds[i] for i in perm], sigmas=SIGMAS,
                           solver="euler_ancestral", guidance=g)
    assert torch.equal(part, full[perm])


@pytest.mark.parametrize("teacher_kind", ["table", "edm"])
@pytest.mark.parametrize("renoise", ["random", "random_sigma"])
def test_random_renoise_level_is_uniform_in_the_teachers_timestep(renoise, teacher_kind):
    """``random``: each sample's ``renoise_level`` draw ``u`` is uniform in the teacher's timestep over the
    schedule's positive range, ``t = t(lo) + (t(hi) - t(lo)) u`` on a discrete teacher's ``abar`` table (the
    paper's random ``s``); ``random_sigma``, and ``random`` for a teacher without a timestep (EDM), uniformly in
    sigma, ``lo + (hi - lo) u``. (Flow teachers: tests/test_flow.py.)"""
    from diffusers import DDPMScheduler

    seen = []
    if teacher_kind == "table":
        abar = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod
        teacher = tgsample.DiscreteVPDenoiser(lambda x, t, **c: seen.append(t.clone()) or torch.zeros_like(x), abar)
    else:
        teacher = tgsample.CallableDenoiser(lambda x, sigma, **c: seen.append(sigma.clone()) or torch.zeros_like(x))
    n = 2000
    g = TeacherGuidance(teacher, lam=0.5, guided_steps=1, renoise=renoise)
    tgsample.sample(gaussian(0.3, 0.8), {}, seeds=range(n), sigmas=SIGMAS, solver="euler", guidance=g, shape=(3,),
                    dtype=torch.float64)
    u = NoiseStreams(range(n), dtype=torch.float64).rand("renoise_level")
    lo, hi = float(SIGMAS[SIGMAS > 0].min()), float(SIGMAS.max())
    if teacher_kind == "table" and renoise == "random":
        t_lo, t_hi = teacher.sigma_to_t(torch.tensor([lo, hi], dtype=torch.float64)).tolist()
        torch.testing.assert_close(seen[0], t_lo + (t_hi - t_lo) * u, rtol=0, atol=1e-6)
        sigma = teacher.t_to_sigma(seen[0])
        assert abs(float(((sigma - lo) / (hi - lo)).mean()) - 0.5) > 0.1  # not uniform in sigma on SD's table
    else:
        sigma = teacher.t_to_sigma(seen[0]) if teacher_kind == "table" else seen[0]
        torch.testing.assert_close(sigma, lo + (hi - lo) * u, rtol=1e-6, atol=0)


# --- equivalence with k-diffusion's own samplers, driven by an independent CFG wrapper ---

def _kdiff_cfg(D, cond, uncond, w):
    def model(x, sigma):
        out = D(torch.cat([x, x]), torch.cat([sigma, sigma]), label=torch.cat([cond, uncond]))
        d_c, d_u = out.chunk(2)
        return d_u + (d_c - d_u) * w

    return model


@pytest.mark.parametrize("solver", ["euler", "euler_ancestral", "dpmpp_2m"])
def test_equivalent_to_kdiffusion_with_cfg(solver):
    K = k_sampling()
    D = tiny_denoiser()
    seeds = [21, 22, 23]
    cond, uncond = torch.tensor([0, 1, 2]), torch.tensor([3, 3, 3])
    from tgsample.schedules import karras

    sigmas = karras(12, sigma_min=0.02, sigma_max=20.0)
    ours = tgsample.sample(D, {"label": cond}, uncond={"label": uncond}, seeds=seeds, sigmas=sigmas,
                           solver=solver, guidance=CFG(4.0))
    noise = NoiseStreams(seeds)
    x = noise.randn("init", (6,)) * sigmas[0]
    extra = {"noise_sampler": lambda s, sn: noise.randn("ancestral", (6,))} if solver == "euler_ancestral" else {}
    theirs = getattr(K, f"sample_{solver}")(_kdiff_cfg(D, cond, uncond, 4.0), x, sigmas, disable=True, **extra)
    assert torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4), (ours - theirs).abs().max()


def test_nan_from_a_model_is_a_typed_error():
    D = tgsample.CallableDenoiser(lambda x, s, **c: x * float("nan"))
    with pytest.raises(tgsample.NonFiniteError, match="NaN or inf"):
        tgsample.sample(D, seeds=[0], sigmas=SIGMAS, shape=(2,))


def test_teacher_with_another_sample_shape_is_a_typed_error():
    student = gaussian(0.0, 1.0)
    teacher = tgsample.CallableDenoiser(lambda x, s, **c: torch.zeros(x.shape[0], 5))
    with pytest.raises(tgsample.ShapeMismatchError, match=r"returned shape \(2, 5\) for an input of shape \(2, 3\)"):
        tgsample.sample(student, seeds=[0, 1], sigmas=SIGMAS, shape=(3,), guidance=TeacherGuidance(teacher, lam=0.1))


def test_guided_last_step_with_next_renoise_is_a_config_error():
    D = gaussian(0.0, 1.0)
    g = TeacherGuidance(D, lam=0.1, guided_steps=[3])  # the last step: sigma_next = 0
    with pytest.raises(tgsample.ConfigError, match="sigma_r=0"):
        tgsample.sample(D, seeds=[0], sigmas=SIGMAS, shape=(2,), guidance=g)


@pytest.mark.parametrize("kwargs,match", [
    ({"lam": 1.5}, r"lam=1.5 is outside the allowed range \[0, 1\]"),
    ({"lam": -0.1}, r"lam=-0.1"),
    ({"renoise": "later"}, r"renoise='later' is not one of the allowed values \['next', 'current', 'random', 'random_sigma'\]"),
    ({"noise_mode": "pink"}, r"noise_mode='pink'"),
    ({"lam": [0.1, 0.2], "guided_steps": 1}, r"lam has 2 values for 1 guided steps"),
    ({"guided_steps": [1.5]}, r"step indices must be integers"),
    ({"teacher_cfg": float("inf")}, r"teacher_cfg=inf must be a finite number"),
    ({"space": "v"}, r"space='v' is not one of the allowed values \['x0', 'eps'\]"),
])
def test_teacher_guidance_bad_parameters(kwargs, match):
    with pytest.raises(tgsample.ConfigError, match=match):
        TeacherGuidance(gaussian(0.0, 1.0), **kwargs)


def test_cfgpp_lam_out_of_range():
    """[0, 1.2]: the official Distillation++ 2S-a runs use 1.2; a CFG-sized scale is refused, saying why."""
    assert CFGPP(1.2).lam == 1.2
    for bad in (1.21, 7.5, -0.1):
        with pytest.raises(tgsample.ConfigError, match=rf"CFG\+\+ lam={bad} is outside the allowed range \[0, 1.2\] "
                                                       r"\(CFG\+\+'s lam is not a CFG scale"):
            CFGPP(bad)


def test_lam_as_function_of_sigma_and_per_step():
    D = tiny_denoiser(0)
    T = tiny_denoiser(1)
    cond = {"label": torch.tensor([0, 1])}
    a = tgsample.sample(D, cond, seeds=[1, 2], sigmas=SIGMAS, guidance=TeacherGuidance(T, lam=lambda s: 0.2, guided_steps=2))
    b = tgsample.sample(D, cond, seeds=[1, 2], sigmas=SIGMAS, guidance=TeacherGuidance(T, lam=[0.2, 0.2], guided_steps=2))
    c = tgsample.sample(D, cond, seeds=[1, 2], sigmas=SIGMAS, guidance=TeacherGuidance(T, lam=0.2, guided_steps=2))
    assert torch.equal(a, b) and torch.equal(b, c)
    with pytest.raises(tgsample.ConfigError, match=r"lam\(14.6\)=3.0 is outside"):
        tgsample.sample(D, cond, seeds=[1, 2], sigmas=SIGMAS, guidance=TeacherGuidance(T, lam=lambda s: 3.0))


def test_unknown_solver_and_schedule_names():
    D = gaussian(0.0, 1.0)
    with pytest.raises(tgsample.UnknownNameError, match="eulr"):
        tgsample.sample(D, seeds=[0], sigmas=SIGMAS, shape=(2,), solver="eulr")
    with pytest.raises(tgsample.UnknownNameError, match="karas"):
        tgsample.sample(D, seeds=[0], schedule="karas", steps=4, shape=(2,))


# --- the same properties, over schedules and seeds Hypothesis picks ---
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# width=32: values distinct as float32, the dtype the schedule is sampled in (float64-distinct values
# such as 0.05 and 0.05000000000000001 collapse there and make an invalid, non-decreasing schedule)
schedules = st.lists(st.floats(min_value=0.0625, max_value=80.0, width=32), min_size=1, max_size=6, unique=True).map(
    lambda v: torch.tensor(sorted(v, reverse=True) + [0.0]))


@settings(max_examples=25, deadline=None)
@given(sigmas=schedules, solver=st.sampled_from(OWN), name=st.sampled_from(sorted(GUIDANCES)))
def test_point_mass_lands_on_the_point_for_any_schedule(sigmas, solver, name):
    make, target = GUIDANCES[name]
    guidance = make()
    last = len(sigmas) - 2
    if name == "teacher":  # the first and the last step guided, whatever the schedule's length
        guidance = TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.7, guided_steps=sorted({0, last}),
                                   renoise="current")
    if name == "teacher_cfgpp":
        guidance = TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.5, guided_steps=sorted({0, last}),
                                   renoise="current", noise_mode="hybrid", teacher_cfg=2.0, student=CFGPP(1.0))
    if name == "teacher_eps":
        guidance = TeacherGuidance(point_mass({0: P_T, -1: P_U}), lam=0.7, guided_steps=sorted({0, last}),
                                   renoise="current", noise_mode="deterministic", space="eps")
    D = point_mass({0: P_C, -1: P_U})
    cond, uncond = _cond(2)
    x = tgsample.sample(D, cond, uncond=uncond, seeds=[0, 1], sigmas=sigmas, solver=solver, guidance=guidance, shape=(3,))
    assert torch.allclose(x, target.expand_as(x), atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(seeds=st.lists(st.integers(0, 2**40), min_size=2, max_size=6, unique=True), data=st.data())
def test_each_sample_depends_only_on_its_seed(seeds, data):
    D = rational_denoiser(0)
    g = TeacherGuidance(rational_denoiser(1), lam=0.5, guided_steps=1, renoise="random", noise_mode="hybrid")
    labels = torch.tensor([s % 4 for s in seeds])
    full = tgsample.sample(D, {"label": labels}, seeds=seeds, sigmas=SIGMAS, solver="dpmpp_2s_ancestral", guidance=g)
    idx = data.draw(st.permutations(range(len(seeds))))[: data.draw(st.integers(1, len(seeds)))]
    part = tgsample.sample(D, {"label": labels[idx]}, seeds=[seeds[i] for i in idx], sigmas=SIGMAS,
                           solver="dpmpp_2s_ancestral", guidance=g)
    assert torch.equal(part, full[idx])
