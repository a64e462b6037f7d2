"""Recipes: a model's published sampling settings, as plain data (no torch).

A [`Recipe`][tgsample.recipes.Recipe] names everything a run needs -- schedule (or explicit sigmas), steps, solver, the
student's own guidance, the teacher -- by registry name, so it is JSON-serialisable and importable
without torch. Models publish theirs **beside the model**, through the entry-point group
`tgsample.recipes`: the entry name is the student's registry name, the value points at a
module-level `dict[str, Recipe]` keyed by variant suffix:

```text
[project.entry-points."tgsample.recipes"]
digits-compact = "tgsample.models.digits.recipes:DIGITS_COMPACT"
```

`""` is the plain published recipe, `"++"` the same student with teacher guidance
(Distillation++); a model may publish more. Presets are derived from them: preset
`NAME + SUFFIX` is student `NAME` with recipe `SUFFIX` ([`tgsample.presets`][tgsample.presets]).

One precedence rule turns a recipe and explicit settings into the settings of a run,
field by field ([`settle`][tgsample.recipes.settle]): **explicit argument > recipe > library default**
([`DEFAULT`][tgsample.recipes.DEFAULT]). Options follow their component: a recipe's `solver_options` apply only when
the solver is the recipe's (likewise schedule and teacher options), and explicit `sigmas` replace a
recipe's schedule and steps, an explicit `schedule` a recipe's sigmas.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields, replace as _replace
from typing import Any, Mapping, Optional

from .errors import ConfigError, UnknownNameError

__all__ = ["DEFAULT", "FIELDS", "PLAIN", "GUIDED", "REQUIRED_VARIANTS", "Recipe", "get", "published", "settle"]

PLAIN, GUIDED = "", "++"
REQUIRED_VARIANTS: tuple[str, ...] = (PLAIN, GUIDED)
"""the variants every registered student must publish."""


def _plain(value: Any, where: str) -> Any:
    """A deep copy of `value` as JSON-like data (dicts, lists, str, numbers, bool, None); a guidance
    object with `to_spec()` becomes its spec."""
    if hasattr(value, "to_spec") and not isinstance(value, (str, Mapping)):
        value = value.to_spec()
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    raise ConfigError(f"recipe field {where} holds a {type(value).__name__} ({value!r}); a recipe holds plain "
                      "data only (registry names, numbers, lists, mappings) so that it can be written to a manifest")


def _options(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"recipe field {where} must be a mapping of keyword options, got {type(value).__name__} "
                          f"{value!r}")
    return _plain(value, where)


def _name(value: Any, where: str) -> Optional[str]:
    if value is not None and not (isinstance(value, str) and value):
        raise ConfigError(f"recipe field {where} must be a registry name (a non-empty string) or None, got {value!r}")
    return value


@dataclass(frozen=True)
class Recipe:
    """A model's published sampling settings: plain, torch-free, JSON-serialisable.

    Every field may be `None` / empty, meaning "not set here" (a later precedence level decides).

    Attributes:
        solver: solvers registry name (`euler`, `lcm`, `k_dpmpp_2m`, ...).
        solver_options: the solver's keyword options, e.g. `{"gamma": 0.3}`.
        schedule: schedules registry name (`karras`, `lcm`, `trailing`, `tdd`, ...).
        schedule_options: the schedule's keyword options, e.g. `{"timesteps": [999, 875, 751, 499, 251]}`.
        steps: number of solver steps of `schedule`.
        sigmas: an explicit schedule (strictly decreasing, ending at 0) instead of `schedule` / `steps`.
        guidance: a guidance spec: a registry name (`"cfg"`) or `{"name": "cfg", "scale": 7.5}`,
            nestable (`{"name": "teacher", ..., "student": {"name": "distilled_cfg", "scale": 3.0}}`).
        teacher: teachers registry name (what teacher guidance uses when its spec names none).
        teacher_options: the teacher factory's keyword options (`student=` is added by the resolver).
        note: where the settings come from (free text).
    """

    solver: Optional[str] = None
    solver_options: Mapping[str, Any] = field(default_factory=dict)
    schedule: Optional[str] = None
    schedule_options: Mapping[str, Any] = field(default_factory=dict)
    steps: Optional[int] = None
    sigmas: Optional[tuple[float, ...]] = None
    guidance: Any = None
    teacher: Optional[str] = None
    teacher_options: Mapping[str, Any] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for key in ("solver", "schedule", "teacher"):
            set_(self, key, _name(getattr(self, key), key))
        for key in ("solver_options", "schedule_options", "teacher_options"):
            set_(self, key, _options(getattr(self, key), key))
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int)
                                       or self.steps < 1):
            raise ConfigError(f"recipe field steps={self.steps!r} must be a positive integer or None")
        if self.sigmas is not None:
            try:
                sig = tuple(float(s) for s in self.sigmas)
            except (TypeError, ValueError):
                raise ConfigError(f"recipe field sigmas={self.sigmas!r} must be a list of numbers") from None
            set_(self, "sigmas", sig)
        guidance = _plain(self.guidance, "guidance")
        if isinstance(guidance, dict) and not isinstance(guidance.get("name"), str):
            raise ConfigError(f"recipe field guidance={guidance!r}: a guidance mapping needs a 'name' "
                              "(a guidance registry name)")
        if not (guidance is None or isinstance(guidance, (str, dict))):
            raise ConfigError(f"recipe field guidance={guidance!r} must be a registry name, a mapping with "
                              "'name', or None")
        set_(self, "guidance", guidance)
        if not isinstance(self.note, str):
            raise ConfigError(f"recipe field note={self.note!r} must be a string")

    def __hash__(self) -> int:
        return hash(json.dumps(self.as_dict(), sort_keys=True))

    def replace(self, **overrides: Any) -> "Recipe":
        """A copy with `overrides` (field names; [`ConfigError`][tgsample.errors.ConfigError] names an unknown one)."""
        _check_keys(overrides, "Recipe.replace()")
        return _replace(self, **overrides)

    def as_dict(self) -> dict:
        """Every field as plain data (`sigmas` a list): what a manifest or a YAML file holds."""
        d = asdict(self)
        if d["sigmas"] is not None:
            d["sigmas"] = list(d["sigmas"])
        return copy.deepcopy(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Recipe":
        """The recipe of a mapping with (a subset of) the field names; unknown keys are a
        [`ConfigError`][tgsample.errors.ConfigError]."""
        if isinstance(d, Recipe):
            return d
        if not isinstance(d, Mapping):
            raise ConfigError(f"a recipe must be a mapping of its fields, got {type(d).__name__} {d!r}")
        _check_keys(d, "a recipe")
        return cls(**dict(d))

    def guided(self, *, teacher: str, lam: float, steps: Any = 1, renoise: str = "next", teacher_cfg: float = 1.0,
               **options: Any) -> "Recipe":
        """This recipe with teacher guidance (Distillation++) around its own guidance.

        Args:
            teacher: teachers registry name.
            lam: strength in `[0, 1]`.
            steps: the *guided* steps (`guided_steps` of
                [`TeacherGuidance`][tgsample.guidance.teacher.TeacherGuidance]):
                `n` for the first `n` steps, or a list of step indices. Guide 1--2 early steps only.
            renoise: `next` / `current` / `random` (uniform in the teacher's timestep) / `random_sigma`.
            teacher_cfg: the teacher's CFG scale.
            **options: more options of the `teacher` guidance (`noise_mode`, `hybrid`, `space`).
        """
        spec: dict[str, Any] = {"name": "teacher", "lam": lam, "guided_steps": steps, "renoise": renoise,
                                "teacher_cfg": teacher_cfg, **options}
        if self.guidance is not None:
            spec["student"] = self.guidance
        return self.replace(guidance=spec, teacher=teacher)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Recipe))
"""The field names of a [`Recipe`][tgsample.recipes.Recipe]."""

DEFAULT = Recipe(solver="euler", schedule="karras", steps=10, note="tgsample's library defaults")
"""library defaults, the last precedence level (no guidance: the conditional denoiser alone)."""


def _check_keys(keys: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(keys) - set(FIELDS))
    if unknown:
        import difflib

        hints = [f"{u!r}" + (f" (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(u, FIELDS, 1, 0.6))
                             else "") for u in unknown]
        raise ConfigError(f"{where} has no field(s) {', '.join(hints)}; recipe fields are: {', '.join(FIELDS)}")


def settle(recipe: Optional[Recipe] = None, *, default: Recipe = DEFAULT, **explicit: Any) -> dict[str, Any]:
    """The settings of a run, `{field: value}` for every recipe field: **explicit** (non-`None`
    values) > `recipe` > `default`, applied level by level, from the default up.

    Each component carries its options: a level naming another `solver` / `schedule` /
    `teacher` than the level below drops the lower level's options for it; a level naming the
    same one (or giving options alone) merges its options over them. `steps` belong to the
    schedule the same way. A level with `sigmas` replaces the schedule (options, steps); a level
    with a `schedule` replaces lower `sigmas`; `steps` alone on top of explicit `sigmas` must
    agree with them (else [`ConfigError`][tgsample.errors.ConfigError]: say which schedule to take the steps from). The
    guidance and the note are replaced whole.

    `explicit` values may be objects (a guidance, a solver function, a tensor of sigmas, a teacher
    model) -- the resolver ([`tgsample.resolve`][tgsample.resolve]) builds what is a name; only names and plain
    data make a publishable [`Recipe`][tgsample.recipes.Recipe] (`Recipe(**settle(...))`).
    """
    _check_keys(explicit, "settle()")
    top = {k: v for k, v in explicit.items() if v is not None and not (k.endswith("_options") and not v)}
    levels: list[dict[str, Any]] = [_given(default), _given(recipe or Recipe()), top]
    out: dict[str, Any] = {}
    for comp in ("solver", "teacher"):
        name, options = None, {}
        for level in levels:
            if comp in level and level[comp] != name:
                name, options = level[comp], {}
            options = {**options, **level.get(f"{comp}_options", {})}
        out[comp], out[f"{comp}_options"] = name, options

    schedule, options, steps, sigmas = None, {}, None, None
    for i, level in enumerate(levels):
        where = ("the library default", "the recipe", "the explicit settings")[i]
        if "sigmas" in level:
            for key in ("schedule", "steps"):
                if key in level:
                    raise ConfigError(f"{where} give both sigmas={_short(level['sigmas'])} and {key}={level[key]!r}; "
                                      "give one of them")
            schedule, options, steps, sigmas = None, {}, None, level["sigmas"]
            continue
        if "schedule" in level and level["schedule"] != schedule:
            schedule, options, steps, sigmas = level["schedule"], {}, None, None
        if "steps" in level:
            if sigmas is not None and "schedule" not in level:
                n = len(sigmas) - 1
                if level["steps"] != n:
                    raise ConfigError(
                        f"steps={level['steps']!r}, but the recipe has the explicit {n}-step schedule "
                        f"sigmas={_short(sigmas)}; give schedule=... to take {level['steps']} steps from, or sigmas=...")
            else:
                steps = level["steps"]
        if level.get("schedule_options"):
            if sigmas is not None:
                raise ConfigError(f"schedule_options={level['schedule_options']!r} were given for an explicit "
                                  f"schedule sigmas={_short(sigmas)}; give schedule=... too")
            options = {**options, **level["schedule_options"]}
    out.update(schedule=schedule, schedule_options=options, steps=steps, sigmas=sigmas)
    out["guidance"] = next((lv["guidance"] for lv in reversed(levels) if "guidance" in lv), None)
    out["note"] = next((lv["note"] for lv in reversed(levels[1:]) if lv.get("note")), "")
    return out


def _given(recipe: Recipe) -> dict[str, Any]:
    """The fields a recipe sets (not `None`, not empty options)."""
    return {k: v for k, v in ((f, getattr(recipe, f)) for f in FIELDS)
            if v is not None and not (k.endswith("_options") and not v) and not (k == "note" and not v)}


def _short(value: Any) -> str:
    try:
        return str([round(float(v), 4) for v in value])
    except (TypeError, ValueError):
        return repr(value)


# --- published recipes (the ``tgsample.recipes`` entry points) -------------------------------------


def published(student: str) -> dict[str, Recipe]:
    """Every recipe student `student` publishes, `{variant: Recipe}` (a copy; loads no torch)."""
    from . import registry

    try:
        return dict(registry.get("recipes", student))
    except UnknownNameError:
        students = registry.names("students")
        if student in students:
            raise UnknownNameError(
                f"student {student!r} publishes no recipes: its package must declare an entry point "
                f"'{student}' in the group 'tgsample.recipes' (docs: Plugins, 'Publish recipes')") from None
        raise


def get(student: str, variant: str = PLAIN) -> Recipe:
    """Recipe `variant` of `student` (`""` plain, `"++"` with teacher guidance)."""
    table = published(student)
    if variant not in table:
        raise UnknownNameError(f"student {student!r} publishes no recipe {variant!r}; its recipes: "
                               f"{', '.join(repr(v) for v in sorted(table))}")
    return table[variant]


def conform(obj: Any, label: str) -> None:
    """What a `tgsample.recipes` registration must be: a mapping of variant suffix ->
    [`Recipe`][tgsample.recipes.Recipe]."""
    from .errors import PluginError

    if not isinstance(obj, Mapping):
        raise PluginError(f"{label} is an object of type {type(obj).__name__}; expected a dict mapping variant "
                          "suffixes ('' and '++') to tgsample.recipes.Recipe")
    bad = {k: type(v).__name__ for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Recipe)}
    if bad:
        raise PluginError(f"{label} maps {bad} (variant: type); every key must be a variant suffix string and "
                          "every value a tgsample.recipes.Recipe")
