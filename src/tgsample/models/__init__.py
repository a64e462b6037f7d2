"""Students and teachers: the [`Model`][tgsample.models.base.Model] bundle and the shipped / diffusers-backed models.

Importing this package imports nothing heavy (`Model` loads on first use), so that the
torch-free recipe modules beside the models (`models/*/recipes.py`) stay torch-free.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ["DEFAULT_JOB", "Model"]
__getattr__, __dir__ = lazy_exports(__name__, {"Model": "base"})

DEFAULT_JOB = {"preset": "digits-compact", "prompts": list(range(10)), "seeds": 8}
"""What `tgsample generate` runs when given neither a model nor records: a preset (`tgsample list
presets`) and example records for its student (class labels 0-9 x 8 seeds)."""
