"""Named sampling settings: what ``tgsample generate --model.preset NAME`` runs.

A preset is a plain dict with these keys (``None`` / absent means "the student's own default",
taken from its :attr:`tgsample.models.Model.defaults`):

=================  =====================================================================
``student``        students registry name (required)
``student_options``  keyword options of the student factory
``teacher``        teachers registry name, or ``None`` (needed by teacher guidance)
``teacher_options``  keyword options of the teacher factory
``guidance``       a guidance spec for :func:`tgsample.sampling.resolve_guidance`: a registry name
                   or ``{"name": ..., **options}``; a ``{"name": "teacher", ...}`` mapping
                   (anywhere inside, e.g. under ``interval``) receives the built teacher
``solver``         solvers registry name; ``solver_options`` its keyword options
``schedule``       schedules registry name; ``schedule_options`` its keyword options
``steps``          number of steps of ``schedule``
``sigmas``         an explicit schedule (list, strictly decreasing, ending at 0) instead of ``schedule``
=================  =====================================================================

Add one by adding an entry to :data:`PRESETS` (other modules may do ``PRESETS["name"] = {...}``).
A ``++`` suffix marks the same student with teacher guidance (Distillation++) on its first step;
guidance applies on the first 1-2 steps only (see the guidance guide, docs/guidance.md), on the student's own schedule.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from .errors import UnknownNameError

__all__ = ["KEYS", "PRESETS", "get", "resolve"]

KEYS: tuple[str, ...] = ("student", "student_options", "teacher", "teacher_options", "guidance", "solver",
                         "solver_options", "schedule", "schedule_options", "steps", "sigmas")

_DIGITS_SIGMAS = [80.0, 2.0, 0.8, 0.3, 0.0]  # the digit students' own 4-step schedule
_DIGITS_W = 2.0  # the CFG scale the digit students were distilled at


def _digits(student: str, teacher_guidance: bool) -> dict[str, Any]:
    inner = {"name": "distilled_cfg", "scale": _DIGITS_W}
    guidance = ({"name": "teacher", "lam": 0.3, "steps": 1, "renoise": "next", "teacher_cfg": _DIGITS_W,
                 "student": inner} if teacher_guidance else inner)
    return {"student": student, "student_options": {}, "teacher": "digits" if teacher_guidance else None,
            "teacher_options": {}, "guidance": guidance, "solver": "lcm", "solver_options": {},
            "schedule": None, "schedule_options": {}, "steps": None, "sigmas": list(_DIGITS_SIGMAS)}


PRESETS: dict[str, dict[str, Any]] = {
    "digits": _digits("digits", False),
    "digits++": _digits("digits", True),
    "digits-compact": _digits("digits-compact", False),
    "digits-compact++": _digits("digits-compact", True),
}

from .models.diffusers.presets import PRESETS as _DIFFUSERS_PRESETS  # noqa: E402  (lcm-sd15++, dmd2-sdxl++, ...)

PRESETS.update(_DIFFUSERS_PRESETS)


def get(name: str) -> dict[str, Any]:
    """A deep copy of preset ``name``; :class:`UnknownNameError` lists the presets."""
    if name not in PRESETS:
        import difflib

        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownNameError(f"unknown preset {name!r}{hint} Available presets: {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name])


def resolve(preset: Optional[str] = None, **overrides: Any) -> dict[str, Any]:
    """Settings with every key of :data:`KEYS`: the preset's (or ``None``s), then non-``None`` ``overrides``."""
    unknown = sorted(set(overrides) - set(KEYS))
    if unknown:
        from .errors import ConfigError

        raise ConfigError(f"unknown setting(s) {unknown}; settings are: {', '.join(KEYS)}")
    settings: dict[str, Any] = {k: None for k in KEYS}
    if preset is not None:
        settings.update(get(preset))
    settings.update({k: copy.deepcopy(v) for k, v in overrides.items() if v is not None})
    if overrides.get("schedule") is not None and overrides.get("sigmas") is None:
        settings["sigmas"] = None  # an explicit schedule replaces the preset's explicit sigmas
    return settings
