"""A tiny class-conditional student/teacher for the ``tgsample generate`` tests, and a launcher script.

Registered in-process as ``tiny`` (students and teachers). Run as a script it registers them and
runs ``tgsample generate`` with its arguments; DDP's ``strategy="ddp"`` re-runs this same script for
rank 1, so the child registers them too. ``TINY_DELAY`` (seconds per network call) slows it down so a
test can interrupt a run mid-way; it does not change any value.
"""

from __future__ import annotations

import os
import sys
import time

import torch
from torch import nn

from tgsample import registry
from tgsample.denoisers import EDMDenoiser
from tgsample.models import Model
from tgsample.recipes import Recipe

PLAIN = Recipe(sigmas=(80.0, 2.0, 0.5, 0.0), solver="euler", note="tiny: 3 Euler steps, conditional")
#: the tiny model's recipes, published in-process beside it (as a package would through tgsample.recipes)
RECIPES = {"": PLAIN, "++": PLAIN.guided(teacher="tiny", lam=0.5, steps=1, teacher_cfg=2.0)}


class TinyNet(nn.Module):
    """``F(x, c_noise, class_labels)``: two convs around a class and noise embedding (seeded weights)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 1, 3, padding=1)
        self.emb = nn.Embedding(11, 16)
        for p in self.parameters():
            p.data = torch.randn(p.shape, generator=g) * 0.3

    def forward(self, x, c_noise, class_labels, **_):
        delay = float(os.environ.get("TINY_DELAY", "0"))
        if delay:
            time.sleep(delay)
        h = self.c1(x) + self.emb(class_labels)[:, :, None, None] + c_noise[:, None, None, None]
        return self.c2(torch.tanh(h))


def tiny(**_) -> Model:
    from tgsample.models.digits import encode_labels

    return Model("tiny", EDMDenoiser(TinyNet(), sample_shape=(1, 8, 8)), (1, 8, 8), encode_labels, recipes=RECIPES)


for _kind, _obj in (("students", tiny), ("teachers", tiny), ("recipes", RECIPES)):
    if "tiny" not in registry.names(_kind):
        registry.register(_kind, "tiny", _obj)


if __name__ == "__main__":
    torch.set_num_threads(1)
    from tgsample.lightning.cli import main

    raise SystemExit(main(sys.argv[1:]))
