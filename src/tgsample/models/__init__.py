"""Students and teachers: the :class:`Model` bundle and the shipped / diffusers-backed models."""

from .base import Model

__all__ = ["DEFAULT", "Model"]

#: What ``tgsample generate`` runs when given neither a model nor records: a preset of
#: :data:`tgsample.presets.PRESETS` and example records for its student (class labels 0-9 x 8 seeds).
DEFAULT = {"preset": "digits-compact", "prompts": list(range(10)), "seeds": 8}
