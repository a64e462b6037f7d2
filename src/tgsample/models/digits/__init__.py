"""The embedded default models: a digit teacher and two guided-distillation students.

* [`zoo`][tgsample.models.digits.zoo] -- the registered factories (`digits` teacher, `digits` and `digits-compact`
  students), the EDM-preconditioned UNets and the label encoder;
* [`recipes`][tgsample.models.digits.recipes] -- the students' published sampling recipes (torch-free);
* [`weights`][tgsample.models.digits.weights], `data`, `classifier`, `training` -- shipped weights, the data,
  the scoring classifier and the training code.

Importing this package imports nothing: the names of [`zoo`][tgsample.models.digits.zoo] load on first use, so that
`tgsample.models.digits.recipes` stays torch-free.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_ZOO = ("teacher", "student", "compact_student", "build_denoiser", "load_denoiser", "encode_labels", "NULL_CLASS",
        "SHAPE", "TEACHER_CONFIG", "COMPACT_CONFIG", "student_schedule", "SIGMA_DATA", "SIGMA_MIN", "SIGMA_MAX")

__all__ = list(_ZOO)
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_ZOO, "zoo"))
