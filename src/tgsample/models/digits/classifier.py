"""The digit classifier that scores samples: Frechet distance in its feature space and accuracy.

Frechet distance between Gaussians fitted to features (the role FID plays in the paper):
`FD = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})` (clean-fid's implementation).
Features are the classifier's 64-d penultimate activations of images in `[-1, 1]` (samples
are clamped to that range first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import NUM_CLASSES, load
from .weights import read, weights_path

FEATURES = 64


class DigitClassifier(nn.Module):
    """conv(32) -> conv(64) -> pool -> conv(64) -> pool -> linear(64) [features] -> linear(10)."""

    def __init__(self, features: int = FEATURES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4, features), nn.SiLU(),
        )
        self.head = nn.Linear(features, NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features `[B, 64]` of images `[B, 1, 8, 8]` in `[-1, 1]` (clamped)."""
        return self.body(x.clamp(-1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def load_classifier(path: Optional[Union[str, Path]] = None) -> DigitClassifier:
    """The shipped classifier (eval mode, no grad)."""
    state, config, _ = read(path if path is not None else weights_path("digits_classifier"))
    clf = DigitClassifier(**config)
    clf.load_state_dict(state)
    return clf.eval().requires_grad_(False)


def shift_augment(x: Tensor, gen: torch.Generator, max_shift: int = 1) -> Tensor:
    """Random integer translations by up to `max_shift` pixels (background = -1)."""
    b = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    return torch.stack([pad[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] for i in range(b)])


def train_classifier(iters: int = 1500, batch: int = 128, lr: float = 2e-3, seed: int = 0) -> DigitClassifier:
    """Train on the train split (shift augmentation, label smoothing 0.05); returns it in eval mode."""
    from .training import batches, fit

    torch.manual_seed(seed)
    clf = DigitClassifier()
    x, y = load("train")
    it = batches(x, y, batch, torch.Generator().manual_seed(seed + 1))

    def step(i: int, gen: torch.Generator) -> Tensor:
        xb, yb = next(it)
        return F.cross_entropy(clf(shift_augment(xb, gen)), yb, label_smoothing=0.05)

    clf.train()
    fit(step, clf.parameters(), iters, lr, seed, None, max(1, min(300, iters)), "classifier")
    return clf.eval().requires_grad_(False)


@torch.no_grad()
def accuracy(clf: DigitClassifier, x: Tensor, y: Tensor) -> float:
    """Fraction of `x` classified as `y`."""
    return float((clf(x).argmax(1) == y).float().mean())


@torch.no_grad()
def feature_stats(clf: DigitClassifier, x: Tensor, batch: int = 4096) -> tuple[Tensor, Tensor]:
    """Mean `[d]` and covariance `[d, d]` (float64) of the features of `x`."""
    f = torch.cat([clf.features(x[i:i + batch]) for i in range(0, len(x), batch)]).double()
    return f.mean(0), torch.cov(f.T)


def frechet_distance(stats_1: tuple[Tensor, Tensor], stats_2: tuple[Tensor, Tensor]) -> float:
    """`||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})`: clean-fid's implementation
    ([`tgsample.eval.metrics.fid`][tgsample.eval.metrics.fid]), on float64 statistics."""
    from ...eval.metrics import fid

    (m1, s1), (m2, s2) = stats_1, stats_2
    return fid((m1.double().numpy(), s1.double().numpy()), (m2.double().numpy(), s2.double().numpy()))
