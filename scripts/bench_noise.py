#!/usr/bin/env python
"""Per-draw cost of per-seed noise: one draw per sample and step (``lookahead=1``, the old path) vs a
run's draws made at once per sample (``lookahead=steps``, what ``tgsample.sample`` does) vs one batched
``torch.randn`` (batch-dependent, the floor). Same numbers from both per-seed paths (checked here).

    python scripts/bench_noise.py                 # CPU, 1 thread, min / median of 10 interleaved runs

Each run: a fresh :class:`~tgsample.noise.NoiseStreams` (generators seeded), then ``steps`` ancestral
draws; the time per draw is the run's time / ``steps``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tgsample.noise import NoiseStreams

CASES = {"digits 4096 x 1x8x8": (4096, (1, 8, 8)), "SD1.5 latent 8 x 4x64x64": (8, (4, 64, 64)),
         "SDXL latent 8 x 4x128x128": (8, (4, 128, 128))}


def per_seed(batch: int, shape: tuple, steps: int, k: int) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    s = NoiseStreams(range(batch), lookahead={"ancestral": k})
    z = [s.randn("ancestral", shape) for _ in range(steps)]
    return (time.perf_counter() - t) / steps, z[-1]


def batched(batch: int, shape: tuple, steps: int) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    z = [torch.randn((batch, *shape), generator=g) for _ in range(steps)]
    return (time.perf_counter() - t) / steps, z[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(1)
    print(f"CPU, 1 thread, {a.steps} draws per run, ms per draw (min / median of {a.repeats}, interleaved)")
    print(f"{'case':28s} {'per draw (old)':>18s} {'drawn ahead':>18s} {'one batched randn':>18s}  old/ahead")
    for name, (b, shape) in CASES.items():
        times: dict[str, list[float]] = {"old": [], "ahead": [], "batched": []}
        for _ in range(a.repeats):
            t_old, z_old = per_seed(b, shape, a.steps, 1)
            t_new, z_new = per_seed(b, shape, a.steps, a.steps)
            assert torch.equal(z_old, z_new), "drawing ahead changed the numbers"
            times["old"].append(t_old)
            times["ahead"].append(t_new)
            times["batched"].append(batched(b, shape, a.steps)[0])
        cell = {k: f"{1e3 * min(v):7.2f} / {1e3 * statistics.median(v):7.2f}" for k, v in times.items()}
        ratio = statistics.median(times["old"]) / statistics.median(times["ahead"])
        print(f"{name:28s} {cell['old']:>18s} {cell['ahead']:>18s} {cell['batched']:>18s}  {ratio:6.2f}x")


if __name__ == "__main__":
    main()
