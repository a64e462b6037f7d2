"""Students and teachers: the :class:`Model` bundle and the shipped / diffusers-backed models.

Importing this package imports nothing heavy (``Model`` loads on first use), so that the
torch-free recipe modules beside the models (``models/*/recipes.py``) stay torch-free.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Model"]


def __getattr__(name: str) -> Any:
    if name == "Model":
        from .base import Model

        return Model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
