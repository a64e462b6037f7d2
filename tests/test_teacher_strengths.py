"""The strengths of the ``++`` recipes against the official Distillation++ code's own arithmetic
(``scripts/measure_teacher_strengths.py``; docs: Guidance, "What a strength means")."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from tgsample import registry
from tgsample.noise import NoiseStreams

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("measure_teacher_strengths", ROOT / "scripts" / "measure_teacher_strengths.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def script():
    return _script()


def _reference_random_pp(student, teacher, x, cond, uncond, seeds, lam):
    """The reference code's ``random++`` loop written out in its own (VP) notation: ``z = x / sqrt(1 + sigma^2)``,
    the student's eps prediction, the x0 estimate ``(z - sqrt(1 - a) eps) / sqrt(a)``; on the first step the x0
    estimate renoised to the next level with fresh noise, the teacher's eps there (with CFG), the eps predictions
    interpolated and the x0 estimate recomputed; then fresh noise to the next level. Returns (first-step change of
    the x0 estimate, final samples)."""
    plain, guided = student.recipes[""], student.recipes["++"].guidance
    sigmas = torch.tensor(plain.sigmas, dtype=x.dtype)
    w, teacher_cfg = plain.guidance["scale"], guided["teacher_cfg"]
    streams, b = NoiseStreams(seeds), x.shape[0]
    first = None
    for i in range(len(sigmas) - 1):
        s = sigmas[i]
        a = 1 / (1 + s**2)
        z = x * a.sqrt()
        d_s = student.denoiser(x, s.expand(b), **cond, guidance_scale=torch.full((b,), w))
        eps_s = (z - a.sqrt() * d_s) / (1 - a).sqrt()
        z0 = (z - (1 - a).sqrt() * eps_s) / a.sqrt()
        if i == 0:
            a_r = 1 / (1 + sigmas[1] ** 2)
            z_r = a_r.sqrt() * z0 + (1 - a_r).sqrt() * streams.randn_like("renoise", x)
            x_r = z_r / a_r.sqrt()
            d_c = teacher.denoiser(x_r, sigmas[1].expand(b), **cond)
            d_u = teacher.denoiser(x_r, sigmas[1].expand(b), **uncond)
            eps_t = (z_r - a_r.sqrt() * (d_u + teacher_cfg * (d_c - d_u))) / (1 - a_r).sqrt()
            eps = eps_s + lam * (eps_t - eps_s)
            z0_new = (z - (1 - a).sqrt() * eps) / a.sqrt()
            first, z0 = (z0_new - z0).abs().mean().item(), z0_new
        if sigmas[i + 1] > 0:
            a_n = 1 / (1 + sigmas[i + 1] ** 2)
            x = (a_n.sqrt() * z0 + (1 - a_n).sqrt() * streams.randn_like("ancestral", x)) / a_n.sqrt()
        else:
            x = z0
    return first, x


@pytest.mark.parametrize("lam", [0.01, 0.3])
def test_the_reference_noise_space_effect_on_a_trained_model_is_what_the_script_prints(script, lam):
    """On the trained compact digits student and its teacher, the reference code's random++ update (above) moves
    the first x0 estimate and the final samples by what the script reports for ``space="eps"``."""
    torch.set_num_threads(1)
    student, teacher = registry.create("students", "digits-compact"), registry.create("teachers", "digits")
    cond, uncond, seeds = script.digits_inputs(student, 20)
    plain = script.run(student, teacher, cond, uncond, seeds)
    printed = script.effect(student, teacher, lam, "eps", cond, uncond, seeds, plain)
    with torch.no_grad():
        first, final = _reference_random_pp(student, teacher, plain["x"], cond, uncond, seeds, lam)
    assert first == pytest.approx(printed["first"], rel=1e-4)
    assert (final - plain["final"]).abs().mean().item() == pytest.approx(printed["final"], rel=1e-3)
    # the x0 form at the same lam moves it far less: the eps form's pull is sigma_0 / sigma_1 = 80 times larger,
    # plus the renoise noise
    x0 = script.effect(student, teacher, lam, "x0", cond, uncond, seeds, plain)
    assert printed["first"] > 20 * x0["first"] and printed["pull"] == pytest.approx(80 * x0["first"], rel=0.05)


def test_the_recipes_pull_as_hard_as_the_reference_code(script):
    """Every student the reference ran with random++ publishes a noise-space ``++`` recipe with its teacher CFG and
    guided steps whose per-step teacher pull, on the recipe's schedule and SD's table, is within 5 % of the
    reference's at its own lam (it renoises to t - 1000 // steps on a table shifted by one for LCM); the x0
    recipes (Lightning, Turbo) take a lam of the reference's range and its teacher CFG 7.5."""
    rows = script.recipe_rows(script.sd_table())
    assert {r["student"] for r in rows} >= set(script.REFERENCE_RANDOM_PP) | set(script.REFERENCE_X0)
    for r in rows:
        recipe = registry.get("recipes", r["student"])["++"].guidance
        if r["student"] in script.REFERENCE_RANDOM_PP:
            ref = script.REFERENCE_RANDOM_PP[r["student"]]
            assert r["space"] == "eps" and (recipe["teacher_cfg"], recipe["guided_steps"]) == (
                ref["teacher_cfg"], ref["guided_steps"]), r
            assert r["pull"] == pytest.approx(r["reference"], rel=0.05), r
            assert r["pull"] > 1.9 * r["lam"]  # what a noise-space lam means on these schedules: 2-3.6x the x0 form's
        elif r["student"] in script.REFERENCE_X0:
            lo, hi = script.REFERENCE_X0[r["student"]]
            assert r["space"] == "x0" and lo <= r["lam"] <= hi and recipe["teacher_cfg"] == 7.5, r
            assert r["pull"] == r["lam"] and r["noise"] == 0
    dmd = [r for r in rows if r["student"] == "dmd2-sdxl"]
    assert [r["step"] for r in dmd] == [0, 1] and all(r["pull"] == pytest.approx(r["reference"], rel=1e-9) for r in dmd)


def test_the_guidance_page_shows_what_the_script_prints_for_the_recipes(script):
    """docs/guidance.md's table of the recipes' strengths is the script's output (rerun it after changing a recipe)."""
    page = (ROOT / "docs" / "guidance.md").read_text()
    for row in script.recipe_table(script.recipe_rows(script.sd_table())).splitlines()[2:]:
        assert row in page, f"docs/guidance.md lacks (or has another version of) the row\n{row}"
