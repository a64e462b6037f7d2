"""The newcomer's picture (`tgsample demo` on a miniature student): captions x seeds, the student alone
beside the student with teacher guidance on the same seeds, labelled, with the scores of both underneath.

Rows are captions (the held-out, out-of-distribution ones marked), columns seeds; both panels use the
same noise. Underneath: prompt alignment (digit and both attributes right, by the shipped classifier)
and FD against the real held-out split, each on all 40 captions x `score_seeds` samples, each sample with
its own seed (1000 + first_seed + i).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from . import data as D
from . import evaluate as E

CAPTIONS = D.SHOWN
"""the demo's rows (`data.SHOWN`)"""
BG, GAP, INK = 40, 96, 235  # label background, the gaps between cells (darker than strokes), text


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def panel(images: torch.Tensor, rows: int, cols: int, scale: int, gap: int = 3) -> np.ndarray:
    """`[rows*cols, 1, 32, 32]` in [0, 1] -> a uint8 grid of the 28x28 centres, upscaled (nearest), gaps of `GAP`."""
    from ...demo import grid

    return grid(D.crop28(images).clamp(0, 1), rows, cols, scale, pad=gap, pad_value=GAP)


def compose(panels: dict[str, np.ndarray], captions: Sequence[str], footer: Sequence[str], cell: int) -> Any:
    """Two panels side by side with a caption column, panel titles and `footer` lines (a PIL image)."""
    from PIL import Image, ImageDraw

    font, small = _font(18), _font(15)
    held = set(D.all_captions(True))
    label_w, top, sep = 300, 34, 24
    left, right = panels.values()
    h, w = left.shape
    foot_h = 10 + 24 * len(footer)
    img = Image.new("L", (label_w + 2 * w + sep, top + h + foot_h), BG)
    img.paste(Image.fromarray(left), (label_w, top))
    img.paste(Image.fromarray(right), (label_w + w + sep, top))
    d = ImageDraw.Draw(img)
    for k, name in enumerate(panels):
        d.text((label_w + k * (w + sep) + 6, 8), name, fill=INK, font=font)
    step = (h - 3) / len(captions)
    for r, cap in enumerate(captions):
        y = top + 3 + r * step + step / 2 - 18
        d.text((8, y), f'"{cap}"', fill=INK, font=small)
        d.text((8, y + 18), "held-out (never trained on)" if cap in held else "in distribution", fill=160, font=small)
    for k, line in enumerate(footer):
        d.text((8, top + h + 8 + 24 * k), line, fill=INK, font=small)
    return img


def picture(student: Any, out: Path, *, seeds: int = 6, first_seed: int = 0, lam: Optional[float] = None,
            scale: int = 4, score_seeds: int = 3, teacher: Any = None, steps: Optional[int] = None) -> tuple[Path, dict]:
    """Write `out/demo_<student>.png`; returns the path and `{run: scores}`."""
    plain, guided = student.recipes[""], student.recipes["++"]
    lam = guided.guidance["lam"] if lam is None else lam
    if teacher is None:
        from ... import registry

        teacher = registry.create("teachers", guided.teacher, student=student)
    caps = [c for c in CAPTIONS for _ in range(seeds)]
    sd = [first_seed + k for _ in CAPTIONS for k in range(seeds)]
    every = E.prompts(False) + E.prompts(True)
    score_caps = [c for c in every for _ in range(score_seeds)]
    score_sd = [1000 + first_seed + i for i in range(len(score_caps))]  # one seed each: captions sharing a seed
    # would share its luck (docs/results.md)
    scorer = E.Scorer()
    runs = {"student alone": ("", None), f"student + teacher guidance (lam {lam:g})": ("++", lam)}
    panels, scores = {}, {}
    for name, (variant, lam_v) in runs.items():
        images = E.generate(student, caps + score_caps, sd + score_sd, variant, lam=lam_v, teacher=teacher, steps=steps)
        panels[name] = panel(images[: len(caps)], len(CAPTIONS), seeds, scale)
        scores[name] = scorer(images[len(caps):], score_caps)
    g = guided.guidance
    footer = [f"{student.name}: {steps or plain.steps} steps, solver {plain.solver}, schedule {plain.schedule}; right: teacher "
              f"{guided.teacher} (CFG {g['teacher_cfg']:g}) corrects step 1 in {g['space']} space, same seeds",
              *(f"{name}: alignment {s['alignment']:.3f} (digit + thickness + slant right), FD {s['fd']:.2f} vs real "
                f"held-out digits  [n = {s['n']}: 40 captions x {score_seeds}, a seed each]" for name, s in scores.items())]
    img = compose(panels, CAPTIONS, footer, 28 * scale)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"demo_{student.name}.png"
    img.save(path)
    return path, scores
