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


def held_out(captions: Sequence[str]) -> torch.Tensor:
    """Mask `[N]` of the captions whose attribute combination was kept out of training (`data.HELD_OUT_COMBOS`)."""
    parsed = [D.parse_caption(c) for c in captions]
    return torch.tensor([D.HELD_OUT_COMBOS[d] == (t, s) for d, t, s in parsed], dtype=torch.bool)


class Scorer:
    """The shipped classifier with the held-out split's feature statistics (computed once).

    `scorer(images, captions)` gives `alignment`, `fd` and `n`; `scorer.full(images, captions)` adds the
    alignment on the in-distribution and held-out captions, k-NN `precision` / `recall` against the real
    held-out digits (in the classifier's features) and the `memorisation` rate against the generative
    models' training images (pixels; [`tgsample.eval.metrics`][tgsample.eval.metrics]).
    """

    def __init__(self):
        self.clf = K.load_classifier()
        self.reference = K.heldout_stats(self.clf)
        self._real: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def __call__(self, images: torch.Tensor, captions: Sequence[str]) -> dict:
        return {"alignment": K.alignment(self.clf, images, list(captions)),
                "fd": K.fd(self.clf, images, self.reference), "n": len(captions)}

    def real(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the held-out split's features, the generative models' training images `[M, 28, 28]`), loaded once."""
        if self._real is None:
            train = D.load("train")
            train = train.subset(train.in_distribution())
            self._real = (K.features(self.clf, K._tensor(D.load("heldout").images)), torch.as_tensor(train.images))
        return self._real

    def full(self, images: torch.Tensor, captions: Sequence[str]) -> dict:
        """Every metric of decoded samples `[N, 1, 32, 32]` in [0, 1] for their `captions`."""
        from ...eval.metrics import knn_precision_recall, memorisation_rate

        real, train = self.real()
        caps = list(captions)
        x28 = D.crop28(images.float())
        ok, held, f = K.matches(self.clf, images, caps).float(), held_out(caps), K.features(self.clf, x28)
        out = {"alignment": float(ok.mean()), "fd": K.features_fd(f, self.reference), "n": len(caps)}
        for key, mask in (("alignment_in", ~held), ("alignment_heldout", held)):
            out[key] = float(ok[mask].mean()) if mask.any() else float("nan")
        out.update(knn_precision_recall(f.numpy(), real.numpy()))
        out["memorisation"] = memorisation_rate(x28[:, 0].clamp(0, 1), train)
        return out


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

