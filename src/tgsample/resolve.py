"""One resolver: a recipe plus explicit settings -> a [`Run`][tgsample.resolve.Run] (sigmas, solver, guidance, teacher).

[`tgsample.sample`][tgsample.sampling.sample], `tgsample generate`, the demo and the bench all go through it:

1. [`tgsample.recipes.settle`][tgsample.recipes.settle] applies the one precedence rule, field by field:
   **explicit argument > recipe > library default**;
2. [`resolve`][tgsample.resolve.resolve] builds what the names say: the schedule's sigmas (through the model's table for
   discrete schedules), the solver with its options, the guidance from its spec
   ([`tgsample.guidance.build`][tgsample.guidance.spec.build]) with the teacher built **with** `student=` (a LoRA
   student's
   zero-copy teacher, a shared prompt encoder), then checks the guidance against the schedule and the
   solver once, before anything is sampled;
3. [`Run.as_dict`][tgsample.resolve.Run.as_dict] is what a manifest records: the sigmas, the solver and the guidance
with all
   their parameters.

[`validate`][tgsample.resolve.validate] makes the checks that need no model weights (names, options, guidance specs and
their parameters, guided steps against a known step count, the solver's capabilities), so a
generation run can refuse bad settings before it builds a model or writes a file.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Union

import torch
from torch import Tensor

from . import registry
from .errors import ConfigError, UnknownNameError
from .guidance import Guidance, build
from .guidance.spec import missing_teacher, walk
from .recipes import DEFAULT, PLAIN, Recipe, settle
from .schedules import validate_sigmas
from .solvers import check_solver

__all__ = ["Run", "RecipeArg", "pick_recipe", "resolve", "validate"]

RecipeArg = Union[None, str, Recipe, Mapping[str, Any]]
"""what `recipe=` accepts: a variant suffix of the model's recipes, a [`Recipe`][tgsample.recipes.Recipe] (or its dict),
or None."""


@dataclass
class Run:
    """A resolved sampling run.

    Attributes:
        settings: the settled fields ([`tgsample.recipes.settle`][tgsample.recipes.settle]: names and plain options;
            objects
            where objects were given).
        sigmas: the schedule, validated (float32, CPU).
        solver: the solver function with its options bound; `solver_name` its registry name (if any).
        guidance: the guidance object (nested parts and teacher built).
        teacher: the teacher model built (or given) for the guidance, or `None`.
    """

    settings: dict
    sigmas: Tensor
    solver: Callable[..., Tensor]
    solver_name: Optional[str]
    guidance: Guidance
    teacher: Any = None

    def as_dict(self) -> dict:
        """The run as plain data -- what a manifest records: the sigmas, the solver and its options, the
        guidance spec with every parameter ([`tgsample.guidance.to_spec`][tgsample.guidance.spec.to_spec]), the teacher
        and its options."""
        s = self.settings
        teacher = s["teacher"] if isinstance(s["teacher"], str) else getattr(self.teacher, "name", None)
        return {
            "sigmas": [float(v) for v in self.sigmas.tolist()],
            "steps": len(self.sigmas) - 1,
            "schedule": s["schedule"] if isinstance(s["schedule"], str) else None,
            "schedule_options": _jsonable(s["schedule_options"]),
            "solver": self.solver_name,
            "solver_options": _jsonable(s["solver_options"]),
            "guidance": _spec(self.guidance),
            "teacher": teacher if self.teacher is not None else None,
            "teacher_options": _jsonable(s["teacher_options"]) if self.teacher is not None else {},
        }


def _jsonable(options: Mapping[str, Any]) -> dict:
    return {k: (v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v))
            for k, v in options.items()}


def _spec(guidance: Any) -> Any:
    try:
        return guidance.to_spec()
    except (ConfigError, AttributeError):
        return repr(guidance)  # an unregistered or non-serialisable guidance (Python API only)


# --- recipes of a model ------------------------------------------------------------------------


def pick_recipe(model: Any, recipe: RecipeArg = None) -> Optional[Recipe]:
    """The recipe a run starts from: `recipe` itself, the model's recipe `recipe` (a variant suffix
    such as `"++"`, from `model.recipes`), or -- for `None` -- the model's plain recipe (`None` if it
    publishes none)."""
    return _pick(dict(getattr(model, "recipes", None) or {}), recipe, getattr(model, "name", type(model).__name__))


def _pick(table: Mapping[str, Recipe], recipe: RecipeArg, who: str) -> Optional[Recipe]:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return Recipe.from_dict(recipe)
    if recipe is None:
        return table.get(PLAIN)
    if not isinstance(recipe, str):
        raise ConfigError(f"recipe={recipe!r} must be a variant name ('' or '++'), a Recipe or a mapping of its fields")
    if recipe not in table:
        raise UnknownNameError(f"{who!r} publishes no recipe {recipe!r}; its recipes: "
                               f"{', '.join(repr(v) for v in sorted(table)) or '(none)'}")
    return table[recipe]


# --- building the parts --------------------------------------------------------------------------


def _site(kind: str, name: str, fn: Any) -> registry.Site:
    value = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"
    return registry.Site(kind, name, value, f"{kind} {name!r}")


def _component(kind: str, spec: Any) -> tuple[Callable, Optional[str]]:
    """`(function, registry name or None)` of a schedule / solver given by name or as a function."""
    if isinstance(spec, str):
        return registry.get(kind, spec), spec
    if callable(spec):
        return spec, registry.name_of(kind, spec) if hasattr(spec, "__name__") else None
    raise ConfigError(f"{kind[:-1]}={spec!r} is neither a registry name nor a function")


def _bind(kind: str, fn: Callable, name: Optional[str], options: Mapping[str, Any]) -> Callable:
    if not options:
        return fn
    registry.check_options(fn, dict(options), _site(kind, name or getattr(fn, "__name__", "?"), fn))
    return functools.partial(fn, **options)


def _has_default_steps(fn: Callable) -> bool:
    try:
        param = inspect.signature(fn).parameters.get("steps")
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is not inspect.Parameter.empty


def _sigmas(model: Any, s: Mapping[str, Any]) -> Tensor:
    if s["sigmas"] is not None:
        return validate_sigmas(s["sigmas"])
    fn, name = _component("schedules", s["schedule"])
    steps = s["steps"]
    if steps is None and not _has_default_steps(fn):
        steps = DEFAULT.steps
    schedule = _bind("schedules", fn, name, s["schedule_options"])
    return validate_sigmas(schedule(steps, model))


def _route(options: Mapping[str, Any], s: dict) -> None:
    """Put keyword `options` of [`tgsample.sample`][tgsample.sampling.sample] into `solver_options` or
    `schedule_options`:
    to whichever component accepts the keyword ([`ConfigError`][tgsample.errors.ConfigError] if both or neither do)."""
    if not options:
        return
    takes = {}
    for kind, key, skip in (("solvers", "solver", {"model", "x", "sigmas", "callback", "disable"}),
                            ("schedules", "schedule", {"steps", "model"})):
        params: set = set()
        if s[key] is not None:
            fn, _ = _component(kind, s[key])
            try:
                params = set(inspect.signature(fn).parameters) - skip
            except (TypeError, ValueError):
                pass
        takes[key] = params
    for k, v in options.items():
        hits = [key for key in ("solver", "schedule") if k in takes[key]]
        if len(hits) != 1:
            why = "both take it" if hits else "neither takes it"
            raise ConfigError(
                f"option {k}={v!r}: solver {s['solver']!r} takes {sorted(takes['solver']) or 'no options'} and schedule "
                f"{s['schedule']!r} takes {sorted(takes['schedule']) or 'no options'}; {why}: pass it in "
                "solver_options={...} or schedule_options={...}")
        s[f"{hits[0]}_options"] = {**s[f"{hits[0]}_options"], k: v}


class _Teachers:
    """The teacher source of one run: the run's teacher (given or by name) and teachers named inside a
    guidance spec, each built once, **with** `student=` when its factory takes it."""

    def __init__(self, student: Any, teacher: Any, options: Mapping[str, Any]):
        self.student, self.default, self.options = student, teacher, dict(options)
        self.built: dict[str, Any] = {}

    def __call__(self, name: Optional[str]) -> Any:
        if name is None:
            if self.default is None:
                raise missing_teacher()
            if not isinstance(self.default, str):
                return self.default  # a built model (or a denoiser)
            name, options = self.default, self.options
        else:
            options = self.options if name == self.default else {}
        if name not in self.built:
            self.built[name] = build_teacher(name, self.student, options)
        return self.built[name]


def build_teacher(name: str, student: Any, options: Optional[Mapping[str, Any]] = None) -> Any:
    """Teacher `name` built for `student`: `student=` is passed when the factory accepts it
    (zero-copy teacher of a LoRA student, shared prompt encoder, checked shapes)."""
    options = dict(options or {})
    factory = registry.get("teachers", name)
    try:
        params = inspect.signature(factory).parameters
        takes = "student" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        takes = False
    if takes and student is not None and hasattr(student, "denoiser"):
        options.setdefault("student", student)
    return registry.create("teachers", name, **options)


def resolve(model: Any, recipe: RecipeArg = None, *, options: Optional[Mapping[str, Any]] = None,
            **explicit: Any) -> Run:
    """The run for `model`: `explicit` settings > `recipe` (default: the model's plain recipe) >
    the library default ([`tgsample.recipes.DEFAULT`][tgsample.recipes.DEFAULT]), built. A schedule that needs a step
    count and
    gets none (another schedule than the recipe's, without `steps`) takes the library default's.

    Args:
        model: the student (a [`Model`][tgsample.models.base.Model] or a denoiser).
        recipe: see [`pick_recipe`][tgsample.resolve.pick_recipe].
        options: keyword options routed to the solver or the schedule, whichever takes them.
        **explicit: recipe fields (`tgsample.recipes.FIELDS`): names or objects -- `sigmas` a list or
            a tensor, `schedule` / `solver` a name or a function, `guidance` a spec or an object,
            `teacher` a name or a built model.

    Raises:
        ConfigError: contradicting settings, options a component does not take, a guidance parameter out
            of range, guided steps the schedule does not have, teacher guidance without a teacher.
        UnsupportedGuidanceError: the solver cannot provide what the guidance needs (names the solvers that can).
        UnknownNameError: an unknown registry name (with the close ones).
    """
    s = settle(pick_recipe(model, recipe), **explicit)
    _route(options or {}, s)
    sigmas = _sigmas(model, s)
    teachers = _Teachers(model, s["teacher"], s["teacher_options"])
    guidance = build(s["guidance"], teacher=teachers)
    if hasattr(guidance, "check"):
        guidance.check(sigmas)
    fn, name = _component("solvers", s["solver"])
    solver = _bind("solvers", fn, name, s["solver_options"])
    check_solver(solver, guidance, name)
    used = [getattr(g, "teacher", None) for g in walk(guidance)]
    teacher = next((t for t in used if t is not None), None)
    return Run(s, sigmas, solver, name, guidance, teacher)


# --- checks without models -----------------------------------------------------------------------


class _Unbuilt:
    """Stands for a teacher that [`validate`][tgsample.resolve.validate] does not build (it checks the name only)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<teacher {self.name!r}, not built>"


def _known_steps(s: Mapping[str, Any]) -> Optional[int]:
    if s["sigmas"] is not None:
        return len(s["sigmas"]) - 1
    if s["steps"] is not None:
        return int(s["steps"])
    listed = (s["schedule_options"] or {}).get("timesteps")
    if listed is not None:
        return len(listed)
    fn = registry.get("schedules", s["schedule"]) if isinstance(s["schedule"], str) else None
    if fn is not None:
        try:
            default = inspect.signature(fn).parameters.get("timesteps")
        except (TypeError, ValueError):
            default = None
        if default is not None and isinstance(default.default, (list, tuple)):
            return len(default.default)
    return None


def validate(student: Optional[str] = None, recipe: RecipeArg = None, **explicit: Any) -> dict:
    """Check settings without building a model or loading weights; returns the settled fields.

    `student` (a students registry name) supplies the recipes `recipe` picks from (default: its
    plain recipe). Checks: every registry name (student, teacher, solver, schedule, each guidance in
    the spec), the options each component takes, the guidance spec and its parameters, that teacher
    guidance has a teacher, the guided steps against the step count (when it is known without the
    model: explicit sigmas, `steps`, a timestep list), and that the solver can run the guidance.
    Each failure is a typed [`TgsampleError`][tgsample.errors.TgsampleError] naming the value and what is allowed.
    """
    from .recipes import published

    if student is not None:
        registry.get("students", student)
        recipe = _pick(published(student), recipe, student)
    elif isinstance(recipe, str):
        raise ConfigError(f"recipe={recipe!r} names a variant of a student's recipes: give the student too")
    else:
        recipe = _pick({}, recipe, "")
    s = settle(recipe, **explicit)
    for kind, key in (("schedules", "schedule"), ("solvers", "solver"), ("teachers", "teacher")):
        if isinstance(s[key], str):
            registry.check_create(kind, s[key], dict(s[f"{key}_options"]))
    if s["sigmas"] is not None:
        validate_sigmas(s["sigmas"])

    def stand_in(name: Optional[str]) -> Any:
        name = name if name is not None else s["teacher"]
        if name is None:
            raise missing_teacher()
        if isinstance(name, str):
            registry.get("teachers", name)
            return _Unbuilt(name)
        return name

    guidance = build(s["guidance"], teacher=stand_in)
    n = _known_steps(s)
    if n is not None and hasattr(guidance, "check"):
        guidance.check(torch.linspace(1.0, 0.0, n + 1) if s["sigmas"] is None else validate_sigmas(s["sigmas"]))
    if s["solver"] is not None:
        fn, name = _component("solvers", s["solver"])
        check_solver(fn, guidance, name)
    return s

