"""One resolver for sample(), tgsample generate, the demo and the bench: precedence, schedule options,
the recorded run, and bad input refused early with typed errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import lightning_tiny  # noqa: F401  (registers the "tiny" student, teacher and recipes in-process)
import tgsample
from tgsample import registry
from tgsample.denoisers import DiscreteVPDenoiser
from tgsample.errors import ConfigError, ScheduleError, UnknownNameError, UnsupportedGuidanceError
from tgsample.guidance import CFG, NoGuidance, TeacherGuidance
from tgsample.models import Model
from tgsample.recipes import Recipe
from tgsample.resolve import resolve, validate
from tgsample.schedules import tdd, timesteps_to_sigmas

from analytic import rational_denoiser

torch.set_num_threads(1)


def sd_model() -> DiscreteVPDenoiser:
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    return DiscreteVPDenoiser(lambda x, t, **c: 0.1 * x, torch.cumprod(1 - betas, 0), sample_shape=(2,))


def published_model() -> Model:
    """A student publishing a plain recipe with its own solver and guidance, and a guided one."""
    plain = Recipe(sigmas=(20.0, 3.0, 1.0, 0.0), solver="euler_ancestral", solver_options={"eta": 0.5},
                   guidance={"name": "cfg", "scale": 2.0})
    recipes = {"": plain, "++": plain.guided(teacher="tiny", lam=0.4, steps=1, teacher_cfg=1.5)}
    return Model("pub", rational_denoiser(0), (6,), encode=lambda p, n: ({}, {}), recipes=recipes)


COND, UNCOND = {"label": torch.tensor([0, 1])}, {"label": torch.tensor([3, 3])}


# --- explicit > recipe > library default ------------------------------------------------------------


def test_no_options_runs_the_plain_recipe_completely():
    m = published_model()
    run = resolve(m)
    assert run.solver_name == "euler_ancestral" and run.guidance == CFG(2.0) and run.sigmas.tolist() == [20, 3, 1, 0]
    explicit = tgsample.sample(m.denoiser, COND, uncond=UNCOND, seeds=[1, 2], sigmas=[20.0, 3.0, 1.0, 0.0],
                               solver="euler_ancestral", eta=0.5, guidance=CFG(2.0))
    assert torch.equal(tgsample.sample(m, COND, uncond=UNCOND, seeds=[1, 2]), explicit)


def test_each_field_explicit_beats_recipe_beats_default():
    m = published_model()
    assert resolve(m, solver="euler").solver_name == "euler"  # another solver: the recipe's eta does not follow
    assert resolve(m, guidance="none").guidance == NoGuidance()
    assert resolve(m, solver_options={"eta": 1.0}).settings["solver_options"] == {"eta": 1.0}
    assert resolve(m, schedule="karras", steps=3).sigmas[0] == pytest.approx(20.0)  # the denoiser's sigma_max
    bare = resolve(rational_denoiser(0))  # no recipe: the library defaults
    assert bare.solver_name == "euler" and len(bare.sigmas) == 11 and bare.guidance == NoGuidance()
    guided = resolve(m, "++", teacher=rational_denoiser(1))
    assert isinstance(guided.guidance, TeacherGuidance) and guided.guidance.student == CFG(2.0)
    assert guided.guidance.lam == 0.4 and guided.guidance.teacher_cfg == 1.5 and guided.solver_name == "euler_ancestral"


def test_recipe_variant_names_what_exists():
    with pytest.raises(UnknownNameError, match=r"'pub' publishes no recipe 'plus'; its recipes: '', '\+\+'"):
        resolve(published_model(), "plus")


def test_the_run_records_every_parameter():
    run = resolve(published_model(), "++", teacher="tiny")
    d = run.as_dict()
    assert d["sigmas"] == [20.0, 3.0, 1.0, 0.0] and d["steps"] == 3 and d["solver"] == "euler_ancestral"
    assert d["solver_options"] == {"eta": 0.5} and d["teacher"] == "tiny"
    assert d["guidance"] == {"name": "teacher", "teacher": "tiny", "lam": 0.4, "guided_steps": [0], "renoise": "next",
                             "noise_mode": "random", "hybrid": 0.5, "teacher_cfg": 1.5,
                             "student": {"name": "cfg", "scale": 2.0}, "space": "x0"}
    assert json.loads(json.dumps(d)) == d


# --- schedule options reach the schedule ------------------------------------------------------------


def test_timesteps_and_tdd_schedules_take_their_lists():
    D = sd_model()
    a = tgsample.sample(D, seeds=[0], schedule="timesteps", timesteps=[999, 499, 99])
    b = tgsample.sample(D, seeds=[0], sigmas=timesteps_to_sigmas(D, [999, 499, 99]))
    assert torch.equal(a, b)
    c = tgsample.sample(D, seeds=[0], schedule="tdd", schedule_options={"timesteps": [999, 751, 251]})
    assert torch.equal(c, tgsample.sample(D, seeds=[0], sigmas=tdd(None, D, timesteps=[999, 751, 251])))
    assert len(resolve(D, schedule="tdd").sigmas) == 6  # the default list [999, 875, 751, 499, 251]


def test_keyword_options_go_to_whichever_component_takes_them():
    D = sd_model()
    run = resolve(D, schedule="lcm", steps=4, solver="tcd", options={"gamma": 0.5, "original_steps": 40})
    assert run.settings["solver_options"] == {"gamma": 0.5}
    assert run.settings["schedule_options"] == {"original_steps": 40}
    with pytest.raises(ConfigError, match=r"option gamm=0.5: .*neither takes it"):
        resolve(D, schedule="lcm", steps=4, solver="tcd", options={"gamm": 0.5})
    with pytest.raises(ConfigError, match=r"does not accept option\(s\) 'rhoo'"):
        resolve(D, schedule="karras", schedule_options={"rhoo": 3})


# --- bad input, early --------------------------------------------------------------------------------


def test_guided_steps_the_schedule_does_not_have_are_refused():
    D = rational_denoiser(0)
    g = TeacherGuidance(rational_denoiser(1), lam=0.3, guided_steps=[8, 20])
    with pytest.raises(ConfigError, match=r"guided_steps=\[8, 20\]: the schedule has 8 steps \(indices 0-7\)"):
        tgsample.sample(D, {"label": torch.tensor([0])}, seeds=[0], schedule="karras", steps=8, guidance=g)
    spec = {"name": "teacher", "lam": 0.3, "guided_steps": [8, 20]}
    with pytest.raises(ConfigError, match=r"the schedule has 8 steps"):
        validate("tiny", Recipe(schedule="karras", steps=8, teacher="tiny", guidance=spec))  # no model built


@pytest.mark.parametrize("recipe,match", [
    (Recipe(guidance="teacher"), "teacher guidance needs a teacher: set teacher="),
    (Recipe(guidance={"name": "interval", "inner": {"name": "teacher"}}), "teacher guidance needs a teacher"),
    (Recipe(guidance="teacher", teacher="nobody"), "unknown teachers name 'nobody'"),
    (Recipe(solver="tcd", solver_options={"gama": 0.3}), r"'gama' \(did you mean 'gamma'\?\)"),
    (Recipe(solver="k_euler", guidance={"name": "cfgpp", "lam": 0.5}), "solver 'k_euler' cannot run"),
    (Recipe(sigmas=(1.0, 2.0, 0.0)), "not strictly decreasing"),
    (Recipe(guidance={"name": "teacher", "lam": 2.0}, teacher="tiny"), r"lam=2.0 is outside the allowed range"),
    (Recipe(sigmas=(3.0, 1.0, 0.0), teacher="tiny", guidance={"name": "teacher", "guided_steps": [1]}),
     "renoise='next' would renoise to sigma_r=0"),
])
def test_validate_refuses_without_building_a_model(recipe, match):
    before = registry.entries("students")
    with pytest.raises((ConfigError, UnknownNameError, ScheduleError)) as info:
        validate("tiny", recipe)
    assert info.match(match)
    assert registry.entries("students") == before


def test_teacher_guidance_with_the_recipes_teacher_is_fine():
    validate("tiny", "++")
    validate("tiny", Recipe(sigmas=(3.0, 1.0, 0.0), teacher="tiny", guidance="teacher"))
    assert validate("digits-compact", "++")["teacher"] == "digits"


def test_unsupported_guidance_is_its_own_type():
    with pytest.raises(UnsupportedGuidanceError):
        validate(None, Recipe(solver="k_heun", guidance={"name": "interval", "inner": "cfg", "guided_steps": [0]}))


def generate(out: Path, *args: str):
    from tgsample.lightning.cli import main

    return main(["--data.prompts", "[0, 3, 7]", "--output.dir", str(out), "--output.latents", "true",
                 "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", *args])


@pytest.mark.parametrize("args,match", [
    (["--model.student", "tiny", "--model.guidance", '{"name": "teacher", "lam": 0.2}'],
     "teacher guidance needs a teacher"),
    (["--model.preset", "tiny++", "--model.guidance", '{"name": "teacher", "guided_steps": [3, 9]}'],
     r"guided_steps=\[3, 9\]: the schedule has 3 steps"),
    (["--model.preset", "tiny", "--model.solver_options", '{"etaa": 1}'], r"'etaa'"),
    (["--model.preset", "tiny", "--model.steps", "6"], "give schedule=... to take 6 steps from"),
    (["--model.preset", "tinyy"], r"unknown preset 'tinyy'; did you mean 'tiny'"),
])
def test_generate_refuses_bad_settings_in_one_line_before_writing(tmp_path, capsys, args, match):
    import re

    out = tmp_path / "out"
    assert generate(out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(match, err) and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


# --- sample() and generate agree ---------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["digits-compact", "digits-compact++"])
def test_sample_and_generate_give_the_same_pixels_for_the_same_recipe_and_seed(tmp_path, preset):
    from safetensors.torch import load_file

    out = tmp_path / "out"
    # one record at a time (the exact opt-in): generate then equals sample() of each record alone, bit for bit
    assert generate(out, "--model.preset", preset, "--data.seeds", "[5]", "--model.batch_invariant", "true") == 0
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    student = registry.create("students", "digits-compact")
    variant = preset.removeprefix("digits-compact")
    for e in entries:
        cond, uncond = student.encode([e["prompt"]], None)
        x = tgsample.sample(student, cond, uncond=uncond, seeds=[e["seed"]], recipe=variant)
        assert torch.equal(load_file(str(out / e["latent"]))["x"], x[0])
        assert e["config"]["sigmas"] == [80.0, 1.0, 0.5, pytest.approx(0.2), 0.0]
    assert entries[0]["config"]["guidance"]["name"] == ("teacher" if variant else "distilled_cfg")
