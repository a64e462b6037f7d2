"""Recipes: the value object, one precedence rule, every student publishing its recipes beside it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tgsample import registry
from tgsample.errors import ConfigError, UnknownNameError
from tgsample.recipes import DEFAULT, FIELDS, REQUIRED_VARIANTS, Recipe, get, published, settle


def entry_point_students() -> list[str]:
    """Students registered through entry points (built-ins and installed plugins, not in-process ones)."""
    return sorted({e.name for e in registry.entries("students") if e.dist != registry.IN_PROCESS})


# --- the value object --------------------------------------------------------------------------


def test_recipe_is_plain_data_and_round_trips():
    r = Recipe(solver="tcd", solver_options={"gamma": 0.3}, schedule="lcm", steps=4,
               guidance={"name": "cfg", "scale": 2.0}, teacher="sd15", note="n")
    d = r.as_dict()
    assert set(d) == set(FIELDS) and json.loads(json.dumps(d)) == d
    assert Recipe.from_dict(d) == r and hash(Recipe.from_dict(d)) == hash(r)
    assert Recipe(sigmas=[80, 1, 0]).sigmas == (80.0, 1.0, 0.0)
    r2 = r.replace(steps=6)
    assert r2.steps == 6 and r.steps == 4 and r2.solver_options == {"gamma": 0.3}
    opts = {"gamma": 0.3}
    r3 = Recipe(solver_options=opts)
    opts["gamma"] = 1.0
    assert r3.solver_options == {"gamma": 0.3}  # copied, not shared


@pytest.mark.parametrize("bad,match", [
    (dict(stepz=4), r"no field\(s\) 'stepz' \(did you mean 'steps'\?\)"),
    (dict(steps=0), r"steps=0 must be a positive integer"),
    (dict(solver=3), r"solver must be a registry name"),
    (dict(guidance={"scale": 2.0}), r"needs a 'name'"),
    (dict(solver_options=[1]), r"solver_options must be a mapping"),
    (dict(guidance=object()), r"holds a object"),
])
def test_recipe_rejects_what_it_cannot_hold(bad, match):
    with pytest.raises(ConfigError, match=match):
        Recipe.from_dict(bad)


def test_guided_wraps_the_recipes_own_guidance():
    plain = Recipe(solver="lcm", guidance={"name": "distilled_cfg", "scale": 3.0})
    g = plain.guided(teacher="digits", lam=0.5, steps=1, teacher_cfg=3.0, noise_mode="hybrid")
    assert g.teacher == "digits" and plain.teacher is None
    assert g.guidance == {"name": "teacher", "lam": 0.5, "guided_steps": 1, "renoise": "next", "teacher_cfg": 3.0,
                          "noise_mode": "hybrid", "student": {"name": "distilled_cfg", "scale": 3.0}}
    assert "student" not in Recipe().guided(teacher="t", lam=0.1).guidance


# --- one precedence rule: explicit > recipe > library default ----------------------------------


def test_settle_field_by_field():
    recipe = Recipe(schedule="lcm", steps=4, solver="tcd", solver_options={"gamma": 0.3},
                    guidance="cfg", teacher="sd15", teacher_options={"height": 512})
    assert settle() == {**DEFAULT.as_dict(), "note": ""}
    s = settle(recipe)
    assert (s["schedule"], s["steps"], s["solver"], s["solver_options"]) == ("lcm", 4, "tcd", {"gamma": 0.3})
    # explicit options merge over the recipe's for the same component
    assert settle(recipe, solver_options={"gamma": 0.5})["solver_options"] == {"gamma": 0.5}
    assert settle(recipe, solver="tcd", solver_options={"x": 1})["solver_options"] == {"gamma": 0.3, "x": 1}
    # another component: the recipe's options do not follow it
    assert settle(recipe, solver="euler")["solver_options"] == {}
    assert settle(recipe, teacher="sdxl")["teacher_options"] == {}
    # steps belong to the schedule
    assert settle(recipe, steps=6)["steps"] == 6 and settle(recipe, steps=6)["schedule"] == "lcm"
    assert settle(recipe, schedule="trailing")["steps"] is None  # the new schedule's own count, or the default's
    assert settle(recipe, schedule="lcm", schedule_options={"original_steps": 40})["steps"] == 4
    # sigmas replace a schedule, a schedule replaces sigmas
    s = settle(recipe, sigmas=[3.0, 1.0, 0.0])
    assert (s["sigmas"], s["schedule"], s["steps"]) == ([3.0, 1.0, 0.0], None, None)
    own = Recipe(sigmas=(80.0, 1.0, 0.0), solver="lcm")
    s = settle(own, schedule="karras", steps=3)
    assert (s["sigmas"], s["schedule"], s["steps"]) == (None, "karras", 3)
    assert settle(own, steps=2)["sigmas"] == (80.0, 1.0, 0.0)  # agrees with the sigmas
    # the guidance is replaced whole; objects pass through
    marker = object()
    assert settle(recipe, guidance=marker)["guidance"] is marker
    assert settle(recipe, guidance="none")["guidance"] == "none"


@pytest.mark.parametrize("explicit,match", [
    (dict(steps=6), r"steps=6, but the recipe has the explicit 2-step schedule sigmas=\[80.0, 1.0, 0.0\]"),
    (dict(sigmas=[1.0, 0.0], steps=1), r"give both sigmas=\[1.0, 0.0\] and steps=1"),
    (dict(schedule_options={"rho": 5}), r"schedule_options=\{'rho': 5\} were given for an explicit schedule"),
    (dict(stepz=6), r"no field\(s\) 'stepz'"),
])
def test_settle_refuses_contradictions(explicit, match):
    with pytest.raises(ConfigError, match=match):
        settle(Recipe(sigmas=(80.0, 1.0, 0.0)), **explicit)


# --- published beside the models -----------------------------------------------------------------


def test_every_registered_student_publishes_plain_and_guided_recipes():
    students = entry_point_students()
    assert {"digits", "digits-compact", "lcm-sd15", "tdd-sd15"} <= set(students)
    for name in students:
        table = published(name)
        missing = [v for v in REQUIRED_VARIANTS if v not in table]
        assert not missing, f"student {name!r} does not publish recipe(s) {missing}"
        plain, guided = table[""], table["++"]
        assert plain.teacher is None or plain.guidance is not None
        assert guided.teacher in registry.names("teachers"), (name, guided.teacher)
        assert isinstance(guided.guidance, dict) and guided.guidance["name"] == "teacher"
        assert guided.guidance.get("student") == plain.guidance  # ++ = the same student plus teacher guidance
        assert guided.replace(guidance=plain.guidance, teacher=None, teacher_options={}, note=plain.note) == plain


def test_recipes_are_registry_entries_and_lookups_say_what_exists():
    assert set(registry.names("recipes")) >= set(entry_point_students())
    with pytest.raises(UnknownNameError, match=r"publishes no recipe 'plus'; its recipes: '', '\+\+'"):
        get("digits", "plus")
    with pytest.raises(UnknownNameError, match="unknown recipes name 'digitz'"):
        get("digitz")


def test_digits_recipes_equal_the_weights_metadata():
    """The recipe module is the source; the metadata the distillation script stored must agree with it."""
    from safetensors import safe_open

    from tgsample.models.digits.weights import weights_path

    for name, file in (("digits", "digits_student"), ("digits-compact", "digits_compact")):
        with safe_open(str(weights_path(file)), framework="pt") as f:
            info = json.loads(f.metadata()["info"])
        plain, guided = get(name), get(name, "++")
        assert list(plain.sigmas) == info["sigmas"] and plain.solver == "lcm"
        assert plain.guidance == {"name": "distilled_cfg", "scale": info["w"]}
        spec = guided.guidance
        assert (spec["lam"], spec["teacher_cfg"], spec["guided_steps"], spec["renoise"]) == (
            info["lam"], info["teacher_cfg"], 1, "next")
    # the values the issue and docs/results-digits.md quote for the compact student
    c = get("digits-compact", "++")
    assert c.sigmas == (80.0, 1.0, 0.5, 0.2, 0.0) and c.guidance["student"]["scale"] == 3.0
    assert c.guidance["lam"] == 0.5 and c.guidance["teacher_cfg"] == 3.0


def test_recipes_import_no_torch():
    code = ("import sys, tgsample.recipes as R, tgsample.registry as reg\n"
            "for n in reg.names('recipes'): R.published(n)\n"
            "print([m for m in ('torch', 'diffusers', 'lightning') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("page,module", [("models.md", "tgsample.models.diffusers.recipes:"),
                                         ("flow.md", "tgsample.models.diffusers.flow_recipes:")])
def test_the_models_page_table_is_the_published_recipes(page, module):
    """docs/models.md's (docs/flow.md's) table of students says what their recipes say (schedule, steps, solver,
    own guidance, teacher CFG, lam, guided steps and interpolation space), for every student whose recipes
    ``module`` publishes."""
    import re
    from pathlib import Path

    from tgsample.schedules import TDD_DEFAULT

    text = (Path(__file__).resolve().parents[1] / "docs" / page).read_text()
    rows = [ln for ln in text.splitlines()  # the students' table: six columns
            if re.match(r"^\| `[a-z0-9-]+` (/ `[a-z0-9-]+` )?\|", ln) and ln.count("|") == 7]
    checked = set()
    for row in rows:
        students, _, run, own, teacher, lam = [c.strip() for c in row.strip("|").split("|")]
        m = re.match(r"^`(\w+)`(?: \([^)]*\))?, (\d+), `(\w+)`(?: \(gamma ([\d.]+)\))?$", run)
        assert m, run
        schedule, steps, solver, gamma = m[1], int(m[2]), m[3], m[4]
        cfg = float(re.search(r", ([\d.]+)(?: \(zero-copy\))?$", teacher)[1])
        lam_value, guided, space = re.match(r"^([\d.]+) \((\d)\)\*?, (x0|eps)$", lam).groups()
        for student in re.findall(r"`([a-z0-9-]+)`", students):
            plain, tg = get(student), get(student, "++")
            assert (plain.schedule, plain.solver) == (schedule, solver), student
            assert (plain.steps or len(TDD_DEFAULT)) == steps, student
            assert plain.solver_options == ({"gamma": float(gamma)} if gamma else {}), student
            if own == "none":
                assert plain.guidance is None, student
            else:
                name, scale = re.match(r"^`(\w+)` ([\d.]+)", own).groups()
                assert plain.guidance == {"name": name, "scale": float(scale)}, student
            spec = tg.guidance
            assert (spec["teacher_cfg"], spec["lam"], spec["guided_steps"], spec["space"]) == (
                cfg, float(lam_value), int(guided), space), student
            assert f"in {space} space" in tg.note, student  # the note says which form
            checked.add(student)
    publishers = {e.name for e in registry.entries("recipes") if e.value.startswith(module)}
    assert checked == publishers
