"""Students and teachers: the [`Model`][tgsample.models.base.Model] bundle and the shipped / diffusers-backed models.

Importing this package imports nothing heavy (`Model` and `DEFAULT_JOB` load on first use), so that the
torch-free recipe modules beside the models (`models/*/recipes.py`) stay torch-free.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ["DEFAULT_JOB", "Model"]
__getattr__, __dir__ = lazy_exports(__name__, {"Model": "base", "DEFAULT_JOB": "default"})
