"""The embedded default models: a digit teacher and two guided-distillation students.

* :mod:`.zoo` -- the registered factories (``digits`` teacher, ``digits`` and ``digits-compact``
  students), the EDM-preconditioned UNets and the label encoder;
* :mod:`.recipes` -- the students' published sampling recipes (torch-free);
* :mod:`.weights`, :mod:`.data`, :mod:`.classifier`, :mod:`.training` -- shipped weights, the data,
  the scoring classifier and the training code.

Importing this package imports nothing: the names of :mod:`.zoo` load on first use, so that
``tgsample.models.digits.recipes`` stays torch-free.
"""

from __future__ import annotations

import importlib
from typing import Any

_ZOO = ("teacher", "student", "compact_student", "build_denoiser", "load_denoiser", "encode_labels", "NULL_CLASS",
        "SHAPE", "TEACHER_CONFIG", "COMPACT_CONFIG", "student_schedule", "SIGMA_DATA", "SIGMA_MIN", "SIGMA_MAX")

__all__ = list(_ZOO)


def __getattr__(name: str) -> Any:
    if name in _ZOO:
        return getattr(importlib.import_module(f"{__name__}.zoo"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
