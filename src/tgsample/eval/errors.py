"""Errors of `tgsample eval` / `tgsample export` (all [`tgsample.errors.TgsampleError`][tgsample.errors.TgsampleError]
subclasses)."""

from __future__ import annotations

from ..errors import ConfigError, TgsampleError


class RunError(ConfigError):
    """A run directory, its `manifest.jsonl` or one of its images is missing or malformed."""


class PairingError(ConfigError):
    """Runs compared image for image do not share ids, or disagree on an id's prompt or seed."""


class MissingWeightsError(ConfigError, FileNotFoundError):
    """A feature network's weights are not at the local path (nothing is downloaded at run time)."""


class MissingDependencyError(TgsampleError, ImportError):
    """An optional package a metric needs is not installed (the message names the package / extra)."""


class ReferenceStatsError(ConfigError):
    """Reference statistics are unusable: wrong file, or computed with another feature network."""


class ExportError(ConfigError):
    """A run cannot be written in an evaluator's layout (a rule of that layout is broken, or a file is in the way)."""


__all__ = ["RunError", "PairingError", "MissingWeightsError", "MissingDependencyError", "ReferenceStatsError",
           "ExportError"]
