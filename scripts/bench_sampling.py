"""Overhead of tgsample's sampling loop, and the cost of ``import tgsample``.

Prints, for 4-step student sampling and for 4-step sampling with 1 teacher-guided step,
the ratio of the whole run's wall time to the time spent inside model calls in the same
run (goal: <= 1.05), and the import cost of tgsample beyond ``import torch`` (goal: <= 0.5 s).

    .venv/bin/python scripts/bench_sampling.py [--batch 64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from torch import nn

import tgsample
from tgsample import EDMDenoiser, TeacherGuidance


class SmallUNetish(nn.Module):
    """A small conv net (~0.3 M parameters) standing in for a CPU model."""

    def __init__(self, ch: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(ch, ch, 3, padding=1), nn.SiLU(), nn.Conv2d(ch, 1, 3, padding=1))

    def forward(self, x, c_noise, **_):
        return self.net(x + c_noise.reshape(-1, 1, 1, 1))


SHAPE = (1, 16, 16)


class Timed(nn.Module):
    """Accumulates the wall time spent inside the wrapped denoiser."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def forward(self, x, sigma, **cond):
        t = time.perf_counter()
        out = self.inner(x, sigma, **cond)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def run(guided: bool, batch: int, repeats: int) -> tuple[float, int]:
    torch.manual_seed(0)
    student = Timed(EDMDenoiser(SmallUNetish()))
    teacher = Timed(EDMDenoiser(SmallUNetish()))
    guidance = TeacherGuidance(teacher, lam=0.3, steps=1) if guided else None
    sigmas = torch.tensor([14.6, 4.3, 1.6, 0.72, 0.0])
    tgsample.sample(student, seeds=range(batch), sigmas=sigmas, guidance=guidance, shape=SHAPE)  # warm-up
    student.seconds = teacher.seconds = 0.0
    start = time.perf_counter()
    for r in range(repeats):
        tgsample.sample(student, seeds=range(r * batch, (r + 1) * batch), sigmas=sigmas, guidance=guidance, shape=SHAPE)
    wall = time.perf_counter() - start
    return wall / (student.seconds + teacher.seconds), student.calls + teacher.calls


IMPORT_PROBE = """
import sys, time
import torch
t = time.perf_counter()
import tgsample
tgsample.sample, tgsample.TeacherGuidance, tgsample.CFGPP
print(time.perf_counter() - t)
print(','.join(m for m in ('diffusers', 'k_diffusion', 'lightning', 'transformers') if m in sys.modules))
"""


def import_cost() -> tuple[float, str]:
    """Seconds to import tgsample's public API in a process that already imported torch (best of 5)."""
    runs = [subprocess.run([sys.executable, "-c", IMPORT_PROBE], check=True, capture_output=True, text=True).stdout.split("\n")
            for _ in range(5)]
    return min(float(r[0]) for r in runs), runs[0][1] or "none"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(1)
    for guided in (False, True):
        ratio, calls = run(guided, args.batch, args.repeats)
        label = "4 steps + 1 teacher-guided step" if guided else "4 steps, student only"
        print(f"{label:34s} wall / model-time = {ratio:.3f}  (goal <= 1.05; {calls} model calls)")
    cost, heavy = import_cost()
    print(f"import tgsample + its public API after import torch: {cost:.3f} s (goal <= 0.5 s); "
          f"heavy modules imported: {heavy}")


if __name__ == "__main__":
    main()
