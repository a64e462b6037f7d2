"""What `tgsample generate` runs when given neither a model nor records."""

from __future__ import annotations

from .mini.data import SHOWN

DEFAULT_JOB = {"preset": "mini-lightning++", "prompts": list(SHOWN[::2]), "seeds": 2}
"""The miniature's teacher-guided Lightning preset (`tgsample list presets`) on every other caption
the demo shows (two in-distribution, two held out of training) x 2 seeds: 8 images, quick on CPU."""
