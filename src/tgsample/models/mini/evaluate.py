"""Scoring the miniature's samples: prompt alignment and FD against the real held-out split.

`score` samples a registered student (or the teacher) on `prompts x seeds` through the same
path as every other model (`registry.create` -> [`tgsample.resolve.resolve`][tgsample.resolve.resolve] ->
[`tgsample.sampling.sample`][tgsample.sampling.sample]), decodes with the pipeline's VAE and scores with the shipped
classifier (`classifier`): `alignment` (digit and both attributes right) and `fd`.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

from . import classifier as K
from . import data as D


def prompts(held_out: bool = False, repeat: int = 1) -> list[str]:
    """The in-distribution (30) or held-out (10) captions, each `repeat` times (caption-major)."""
    return [c for c in D.all_captions(held_out) for _ in range(repeat)]


class Scorer:
    """The shipped classifier with the held-out split's feature statistics (computed once)."""

    def __init__(self):
        self.clf = K.load_classifier()
        self.reference = K.heldout_stats(self.clf)

    def __call__(self, images: torch.Tensor, captions: Sequence[str]) -> dict:
        return {"alignment": K.alignment(self.clf, images, list(captions)),
                "fd": K.fd(self.clf, images, self.reference), "n": len(captions)}


def generate(student: Any, captions: Sequence[str], seeds: Sequence[int], recipe: Any = "", *,
             lam: Optional[float] = None, steps: Optional[int] = None, teacher: Any = None) -> torch.Tensor:
    """Decoded samples `[N, 1, 32, 32]` of `student` (a Model) with `recipe` (a variant or a Recipe);
    `lam` replaces a teacher-guided recipe's strength, `steps` the number of steps."""
    from ...resolve import resolve
    from ...sampling import sample

    if isinstance(recipe, str):
        recipe = student.recipes[recipe]
    if lam is not None:
        recipe = recipe.replace(guidance={**recipe.guidance, "lam": float(lam)})
    explicit = {"steps": steps} if steps is not None else {}
    run = resolve(student, recipe, teacher=teacher, **explicit)
    cond, uncond = student.encode(list(captions), None)
    with torch.no_grad():
        return student.decode(sample(student, cond, uncond=uncond, seeds=list(seeds), run=run))

