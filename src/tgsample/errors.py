"""Typed errors. Every message names the bad value and what is allowed."""

from __future__ import annotations


class TgsampleError(Exception):
    """Base class of every error tgsample raises on purpose."""


class ConfigError(TgsampleError, ValueError):
    """A parameter is out of range or inconsistent with the others."""


class ScheduleError(ConfigError):
    """A sigma schedule is not strictly decreasing, not finite, or does not end at 0."""


class UnknownNameError(TgsampleError, KeyError):
    """A registry name (solver, schedule, guidance, student, teacher) is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class UnsupportedGuidanceError(ConfigError):
    """A solver cannot honour what a guidance needs (a split direction, the step index)."""


class ShapeMismatchError(ConfigError):
    """Two models (student and teacher) or a model and its input disagree on the sample shape."""


class NonFiniteError(TgsampleError, FloatingPointError):
    """A model returned NaN or inf."""


class PluginError(TgsampleError):
    """A registered entry point could not be loaded or does not conform."""
