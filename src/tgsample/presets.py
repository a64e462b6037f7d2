"""Presets: what `tgsample generate --model.preset NAME` runs, derived from the students' recipes.

Nothing here is written by hand: preset `NAME + SUFFIX` is student `NAME` with its published
recipe `SUFFIX` ([`tgsample.recipes`][tgsample.recipes]). Every registered student publishes `""` and `"++"`,
so `digits-compact` is the compact digit student with its own settings and `digits-compact++`
the same run with teacher guidance (Distillation++) on its first step. A plugin that registers a
student and publishes its recipes adds its presets the same way. Torch-free: listing presets
(`tgsample list presets`) imports only the recipe modules.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from .errors import UnknownNameError
from .recipes import Recipe, published

__all__ = ["Preset", "get", "names", "table"]


@dataclass(frozen=True)
class Preset:
    """A named run: `student` with its recipe `variant`."""

    name: str
    student: str
    variant: str
    recipe: Recipe

    def as_dict(self) -> dict:
        """The preset as plain data (what `tgsample list presets --json` prints)."""
        return {"name": self.name, "student": self.student, "variant": self.variant, "recipe": self.recipe.as_dict()}


def _students() -> list[str]:
    from . import registry

    return registry.names("recipes")


def table() -> dict[str, Preset]:
    """Every preset, by name (loads every registered recipe module; each must be torch-free)."""
    out: dict[str, Preset] = {}
    for student in _students():
        try:
            recipes = published(student)
        except Exception:  # a broken plugin's recipes: its presets are missing, the others stay
            continue
        for variant, recipe in recipes.items():
            out.setdefault(student + variant, Preset(student + variant, student, variant, recipe))
    return dict(sorted(out.items()))


def names() -> list[str]:
    """The preset names, sorted."""
    return list(table())


def get(name: str) -> Preset:
    """Preset `name`: the longest registered student `name` starts with, whose recipes have the rest as
    a variant; [`UnknownNameError`][tgsample.errors.UnknownNameError] lists the presets (and the closest names)."""
    for student in sorted(_students(), key=len, reverse=True):
        if name.startswith(student):
            variant = name[len(student):]
            recipes = published(student)
            if variant in recipes:
                return Preset(name, student, variant, recipes[variant])
    available = names()
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise UnknownNameError(f"unknown preset {name!r}{hint} Available presets: {', '.join(available)}")

