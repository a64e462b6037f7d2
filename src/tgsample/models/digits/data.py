"""The real data: scikit-learn's bundled handwritten digits (1,797 images, 8x8, 10 classes).

No download: `sklearn.datasets.load_digits` reads a file shipped with scikit-learn.
Pixels (0..16) are scaled to `[-1, 1]` as `x = p / 8 - 1`; samples have shape `(1, 8, 8)`.
The split is fixed: stratified, 80 % train / 20 % test, `random_state=0`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

SHAPE = (1, 8, 8)
"""The shape of one digit image, `(C, H, W)`."""
NUM_CLASSES = 10
NULL_CLASS = 10
"""the label of "no class" (label dropout, CFG's unconditional input)"""
SPLIT_SEED = 0
TEST_FRACTION = 0.2


@lru_cache(maxsize=1)
def _arrays():
    from sklearn.datasets import load_digits  # heavy: lazy
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    y = torch.tensor(d.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        torch.arange(len(y)).numpy(), test_size=TEST_FRACTION, stratify=y.numpy(), random_state=SPLIT_SEED
    )
    return x, y, torch.as_tensor(idx_train), torch.as_tensor(idx_test)


def load(split: str = "train") -> tuple[Tensor, Tensor]:
    """Images `[N, 1, 8, 8]` in `[-1, 1]` and labels `[N]` of `split` (`train`/`test`/`all`)."""
    x, y, tr, te = _arrays()
    if split == "all":
        return x.clone(), y.clone()
    if split not in ("train", "test"):
        from ...errors import ConfigError

        raise ConfigError(f"split={split!r} is not one of ['train', 'test', 'all']")
    idx = tr if split == "train" else te
    return x[idx].clone(), y[idx].clone()


def to_unit(x: Tensor) -> Tensor:
    """Model space `[-1, 1]` to image space `[0, 1]` (clamped)."""
    return ((x.float() + 1) / 2).clamp(0, 1)
