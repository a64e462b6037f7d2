"""A tiny class-conditional student/teacher for the ``tgsample generate`` tests, and a launcher script.

Registered in-process as ``tiny`` (students and teachers). Run as a script it registers them and
runs ``tgsample generate`` with its arguments; DDP's ``strategy="ddp"`` re-runs this same script for
rank 1, so the child registers them too. ``TINY_DELAY`` (seconds per network call) slows it down so a
test can interrupt a run mid-way; it does not change any value. ``TINY_MERGE_MARKER=<file>`` (script
only) makes the final merge create that file and then wait ``TINY_MERGE_DELAY`` seconds, so a test can
signal a run *inside* its merge. Also ``tiny-file`` (a student whose weights are read from ``path``)
and ``tiny-rgb`` (a teacher of 3-channel samples).
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


def tiny_file(path: str, **_) -> Model:
    """``tiny`` with its weights read from a safetensors file at ``path`` (a model that lives on a mount)."""
    from safetensors.torch import load_file

    model = tiny()
    model.denoiser.net.load_state_dict(load_file(path))
    return model


def tiny_rgb(**_) -> Model:
    """A teacher of 3-channel samples (the student's are 1-channel)."""
    from tgsample.models.digits import encode_labels

    class RGB(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(3, 3, 1)

        def forward(self, x, c_noise, class_labels, **_):
            return self.c(x)

    return Model("tiny-rgb", EDMDenoiser(RGB(), sample_shape=(3, 8, 8)), (3, 8, 8), encode_labels)


for _kind, _name, _obj in (("students", "tiny", tiny), ("teachers", "tiny", tiny), ("recipes", "tiny", RECIPES),
                           ("students", "tiny-file", tiny_file), ("recipes", "tiny-file", RECIPES),
                           ("teachers", "tiny-rgb", tiny_rgb)):
    if _name not in registry.names(_kind):
        registry.register(_kind, _name, _obj)


def _slow_merge() -> None:
    from pathlib import Path

    from tgsample.lightning.writer import GenerationWriter

    marker, delay = Path(os.environ["TINY_MERGE_MARKER"]), float(os.environ.get("TINY_MERGE_DELAY", "3"))
    merge = GenerationWriter.merge

    def slow(self, records):
        marker.touch()
        time.sleep(delay)
        return merge(self, records)

    GenerationWriter.merge = slow


if __name__ == "__main__":
    torch.set_num_threads(1)
    from tgsample.lightning.cli import main

    if os.environ.get("TINY_MERGE_MARKER"):
        _slow_merge()

    raise SystemExit(main(sys.argv[1:]))
