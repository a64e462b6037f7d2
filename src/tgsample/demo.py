"""`tgsample demo`: a shipped student, alone and with teacher guidance, on the same seeds.

A miniature student (`mini-*`, the default) draws captions x seeds, labelled and scored
(`tgsample.models.mini.picture`). A digits student (`--student digits-compact`):
Each class 0-9 is drawn `--per-class` times; the left panel is the student's plain recipe
(`""`: its own schedule, solver and distilled guidance scale), the right panel the same seeds with
its teacher-guided recipe (`"++"`: the teacher corrects the first step). Digits are upscaled
(nearest) so the 8x8 images are viewable. Writes `<out>/demo_<student>.png`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional, Sequence

T0 = time.perf_counter()
"""When the demo module was imported: the demo's printed times count from here (imports included)."""
DEFAULT_STUDENT = "mini-lightning"
"""the demo's student: the shipped text-to-image miniature (docs/mini.md), where teacher guidance visibly acts"""


def grid(images, rows: int, cols: int, scale: int = 4, pad: int = 2, pad_value: int = 255):
    """`[rows*cols, 1, H, W]` images in `[0, 1]` to one `uint8` array `[rows*(H*scale+pad)+pad, ...]`
    (row-major, nearest-neighbour upscaling by `scale`, gaps of `pad` pixels valued `pad_value`;
    torchvision's `make_grid`)."""
    import torch
    from torchvision.utils import make_grid

    x = images[: rows * cols, :1].mul(255).round().float().div(255)  # quantized in their dtype first
    x = x.repeat_interleave(scale, 2).repeat_interleave(scale, 3)  # nearest upscale
    g = make_grid(x, nrow=cols, padding=pad, pad_value=pad_value / 255)[0]
    canvas = torch.full((rows * (x.shape[2] + pad) + pad, cols * (x.shape[3] + pad) + pad), pad_value / 255)
    canvas[: g.shape[0], : g.shape[1]] = g  # make_grid stops at the last non-empty row
    return (canvas * 255).round().byte().numpy()


def side_by_side(left, right, gap: int = 12):
    """Two panels with a white gap between them."""
    import numpy as np

    return np.concatenate([left, np.full((left.shape[0], gap), 255, np.uint8), right], axis=1)


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The parsed arguments of `tgsample demo`."""
    from .cli import ArgumentParser

    p = ArgumentParser(prog="tgsample demo", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder (default: outputs/demo)")
    p.add_argument("--student", default=DEFAULT_STUDENT, help=f"registered student (default: {DEFAULT_STUDENT}, the "
                   "text-to-image miniature; digits-compact: the 8x8 digits)")
    p.add_argument("--teacher", default=None, help="registered teacher (default: the recipe's, digits)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps (default: the recipe's; others on the student's own sigma range)")
    p.add_argument("--seed", type=int, default=0, help="first seed; sample k uses seed + k")
    p.add_argument("--lam", type=float, default=None, help="teacher-guidance strength in [0, 1] (default: the student's)")
    p.add_argument("--per-class", type=int, default=8, help="samples per digit (default: 8)")
    p.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling factor (default: 4)")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    """`tgsample demo`: sample the student plain and teacher-guided, save a comparison grid; the exit status."""
    a = parse(argv)
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    from . import registry
    from .errors import ConfigError
    from .resolve import resolve
    from .sampling import sample

    if a.per_class < 1 or a.scale < 1:
        raise ConfigError(f"--per-class={a.per_class} and --scale={a.scale} must be >= 1")
    if a.lam is not None:  # before any model is loaded
        from .guidance.cfg import check_unit

        check_unit("teacher guidance lam", a.lam)
    a.out.mkdir(parents=True, exist_ok=True)  # an unusable output folder fails before any sampling
    torch.set_num_threads(min(2, torch.get_num_threads()))
    student = registry.create("students", a.student)
    if a.student.startswith("mini-"):  # a text-to-image miniature: captions x seeds, labelled, scored
        return _mini(student, a)
    labels = [c for c in range(10) for _ in range(a.per_class)]
    cond, uncond = student.encode(labels, None)
    seeds = [a.seed + k for k in range(a.per_class)] * 10  # the same noise in every row
    guided = student.recipes["++"]
    if a.lam is not None:
        guided = guided.replace(guidance={**guided.guidance, "lam": a.lam})
    explicit: dict = {}
    own = student.recipes[""].sigmas
    if a.steps is not None and own is not None:  # the student's own sigma range, another number of steps
        from .models.digits import student_schedule

        explicit["sigmas"] = student_schedule(a.steps, sigmas=own)
    elif a.steps is not None:
        explicit["steps"] = a.steps
    runs = {"student": resolve(student, "", **explicit),
            "student + teacher": resolve(student, guided, teacher=a.teacher, **explicit)}
    steps = len(runs["student"].sigmas) - 1
    panels = {}
    with tqdm(total=len(runs) * steps, desc="demo", unit="step") as bar:
        for name, run in runs.items():
            x = sample(student, cond, uncond=uncond, seeds=seeds, run=run, callback=lambda _: bar.update(1))
            panels[name] = grid(student.decode(x), 10, a.per_class, a.scale)
    path = a.out / f"demo_{student.name}.png"
    Image.fromarray(side_by_side(panels["student"], panels["student + teacher"])).save(path)
    plain, tg = runs["student"], runs["student + teacher"].guidance
    own = plain.guidance.to_spec()
    print(f"wrote {path}: rows = digits 0-9, left = {student.name} alone (recipe '': {steps} steps, "
          f"{plain.solver_name}, {own['name']} {own.get('scale', '')}), right = same seeds, recipe '++' (teacher "
          f"guidance lam={tg.lam}, renoise={tg.renoise}, guided steps {list(tg.guided_steps)}) "
          f"[{time.perf_counter() - T0:.1f} s]")
    return 0


def _mini(student, a: argparse.Namespace) -> int:
    from .models.mini.picture import picture

    teacher = None
    if a.teacher is not None:
        from . import registry

        teacher = registry.create("teachers", a.teacher, student=student)
    path, scores = picture(student, a.out, seeds=a.per_class, first_seed=a.seed, lam=a.lam, scale=a.scale,
                           teacher=teacher, steps=a.steps)
    print(f"wrote {path}: rows = captions (the last four held out of training), left = {student.name} alone "
          f"(recipe ''), right = the same seeds with teacher guidance (recipe '++')")
    for name, s in scores.items():
        print(f"  {name}: alignment {s['alignment']:.3f}, FD {s['fd']:.2f} (n = {s['n']})")
    print(f"[{time.perf_counter() - T0:.1f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
