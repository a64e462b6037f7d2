"""Overhead of tgsample's sampling loop, and the cost of ``import tgsample``.

Prints, for 4-step student sampling and for 4-step sampling with 1 teacher-guided step,
the ratio of the whole run's wall time to the time spent inside model calls in the same
run (goal: <= 1.05), and the import cost of tgsample beyond ``import torch`` (goal: <= 0.5 s).

Then the per-step overhead (wall time of the whole call minus the time inside the network, per
step) of a whole ``tgsample.sample(...)`` call against k-diffusion's sampler on the same network in
the same run (Euler, Euler ancestral, CFG) and of teacher guidance against a hand-written loop doing
the same arithmetic (goals: <= k-diffusion's; within 10% of the loop). Both sides draw the same per-seed
noise and their samples are checked equal; runs are interleaved A/B, min / median of ``--repeats``.

    .venv/bin/python scripts/bench_sampling.py [--batch 64] [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
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
    guidance = TeacherGuidance(teacher, lam=0.3, guided_steps=1) if guided else None
    sigmas = torch.tensor([14.6, 4.3, 1.6, 0.72, 0.0])
    tgsample.sample(student, seeds=range(batch), sigmas=sigmas, guidance=guidance, shape=SHAPE)  # warm-up
    student.seconds = teacher.seconds = 0.0
    start = time.perf_counter()
    for r in range(repeats):
        tgsample.sample(student, seeds=range(r * batch, (r + 1) * batch), sigmas=sigmas, guidance=guidance, shape=SHAPE)
    wall = time.perf_counter() - start
    return wall / (student.seconds + teacher.seconds), student.calls + teacher.calls


def overhead_pairs(batch: int, repeats: int, steps: int = 8) -> list[tuple[str, list[float], list[float]]]:
    """Per-step overhead in seconds (wall - network time) / steps of each (tgsample, reference) pair."""
    import k_diffusion.sampling as K

    from tgsample import CFG
    from tgsample.noise import NoiseStreams
    from tgsample.schedules import karras

    torch.manual_seed(0)
    student, teacher = Timed(EDMDenoiser(SmallUNetish(32))), Timed(EDMDenoiser(SmallUNetish(32)))
    sigmas = karras(steps, sigma_min=0.02, sigma_max=20.0).float()
    seeds = list(range(batch))
    lam = 0.3

    def streams() -> NoiseStreams:
        return NoiseStreams(seeds, lookahead={"ancestral": steps})

    def ours(solver, guidance=None, **kw):
        return lambda: tgsample.sample(student, seeds=seeds, sigmas=sigmas, solver=solver, guidance=guidance,
                                       shape=SHAPE, **kw)

    def kdiff(name, cfg=None):
        def go():
            noise = streams()
            x = noise.randn("init", SHAPE) * sigmas[0]
            extra = {"noise_sampler": lambda s, sn: noise.randn("ancestral", SHAPE)} if "ancestral" in name else {}
            model = student
            if cfg is not None:
                def model(x, s, **_):  # k-diffusion's usual CFG wrapper: one batched call on [x; x]
                    c, u = student(torch.cat([x, x]), torch.cat([s, s])).chunk(2)
                    return u + cfg * (c - u)
            return getattr(K, f"sample_{name}")(model, x, sigmas, disable=True, **extra)
        return go

    def by_hand():
        """Euler with teacher guidance on step 0 (renoise to sigma_1 with fresh noise, x0 space), written out."""
        noise = NoiseStreams(seeds)
        x = noise.randn("init", SHAPE) * sigmas[0]
        s_in = x.new_ones(batch)
        for i in range(steps):
            d_s = student(x, sigmas[i] * s_in)
            den = d_s
            if i == 0:
                x_r = d_s + sigmas[1] * noise.randn("renoise", SHAPE)
                den = (1 - lam) * d_s + lam * teacher(x_r, sigmas[1] * s_in)
            x = den + sigmas[i + 1] * (x - d_s) / sigmas[i]
        return x

    pairs = [("Euler vs k-diffusion", ours("euler"), kdiff("euler")),
             ("Euler-a vs k-diffusion", ours("euler_ancestral"), kdiff("euler_ancestral")),
             ("CFG 3 (Euler) vs k-diffusion", ours("euler", CFG(3.0), uncond={}), kdiff("euler", cfg=3.0)),
             ("teacher guidance vs by hand", ours("euler", TeacherGuidance(teacher, lam=lam, guided_steps=1)), by_hand)]
    out = []
    for label, a, b in pairs:
        assert torch.allclose(a(), b(), atol=1e-5, rtol=1e-5), f"{label}: the two sides disagree"
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(repeats):
            for fn, acc in ((a, times[0]), (b, times[1])):
                student.seconds = teacher.seconds = 0.0
                t = time.perf_counter()
                fn()
                acc.append((time.perf_counter() - t - student.seconds - teacher.seconds) / steps)
        out.append((label, *times))
    return out


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
    print(f"\nper-step overhead (whole call - network time) / step, us, batch {args.batch}, 8 steps, "
          f"min / median of {args.repeats}, interleaved (CPU, 1 thread):")
    for label, a, b in overhead_pairs(args.batch, args.repeats):
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"  {label:30s} tgsample {1e6 * min(a):7.0f} / {1e6 * ma:7.0f}   other {1e6 * min(b):7.0f} / "
              f"{1e6 * mb:7.0f}   ratio (median) {ma / mb:5.2f}")
    cost, heavy = import_cost()
    print(f"import tgsample + its public API after import torch: {cost:.3f} s (goal <= 0.5 s); "
          f"heavy modules imported: {heavy}")


if __name__ == "__main__":
    main()
