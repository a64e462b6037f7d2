"""Benchmark plugin discovery and ``tgsample list``.

Builds a temporary distribution (a real ``NAME-VERSION.dist-info`` folder) declaring 100 entry points
(20 per kind) and puts it on ``sys.path``, then measures:

* discovery -- ``registry.refresh(); registry.entries()`` in this process (metadata only), the median
  and best of ``--repeat`` runs; target < 50 ms;
* cold discovery -- the first ``entries()`` call in a fresh interpreter, including the import of
  ``importlib_metadata`` (a subprocess that reports its own timer);
* ``tgsample list`` -- the wall time of the console script in a subprocess (interpreter start-up
  included) with the 100 extra entry points on ``PYTHONPATH``; target <= 3 s; and whether it imported torch.

Usage: ``python scripts/bench_registry.py [--repeat 20]``. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tgsample import registry

PER_KIND = 20
COLD = """
import time
t0 = time.perf_counter()
from tgsample import registry
t1 = time.perf_counter()
import importlib_metadata
t2 = time.perf_counter()
registry.entries()
t3 = time.perf_counter()
print(*(f"{(b - a) * 1e3:.1f}" for a, b in ((t0, t1), (t1, t2), (t2, t3), (t0, t3))))
"""


def make_plugin(root: Path) -> int:
    """A dist-info with ``PER_KIND`` entry points per kind; returns how many."""
    info = root / "tgsample_bench-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tgsample-bench\nVersion: 1.0\n")
    lines = []
    for kind in registry.KINDS:
        lines.append(f"[{registry.group(kind)}]")
        lines += [f"bench_{kind}_{i} = tgsample_bench_{kind}:obj_{i}" for i in range(PER_KIND)]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return PER_KIND * len(registry.KINDS)


def time_discovery(repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        registry.refresh()
        t = time.perf_counter()
        registry.entries()
        times.append((time.perf_counter() - t) * 1e3)
    return times


def time_cli(env: dict, repeat: int) -> list[float]:
    exe = str(Path(sys.executable).with_name("tgsample"))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([exe, "list"], env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        n = make_plugin(Path(tmp))
        sys.path.insert(0, tmp)
        env = {**os.environ, "PYTHONPATH": tmp}
        times = time_discovery(args.repeat)
        found = sum(1 for e in registry.entries() if e.dist == "tgsample-bench")
        total = len(registry.entries())
        cold = [subprocess.run([sys.executable, "-c", COLD], env=env, check=True, capture_output=True,
                               text=True).stdout.split() for _ in range(5)]
        cli = time_cli(env, 5)
        torch_in_list = subprocess.run(
            [sys.executable, "-c", "import sys; from tgsample import listing; listing.main([]); "
             "print('torch' in sys.modules, file=sys.stderr)"],
            env=env, check=True, capture_output=True, text=True).stderr.strip()
    warm_ms, cli_s = statistics.median(times), statistics.median(cli)
    cold_ms = [statistics.median(float(c[i]) for c in cold) for i in range(4)]
    print(f"entry points: {found} benchmark + {total - found} installed = {total}")
    print(f"discovery (refresh + entries, in process): median {warm_ms:.1f} ms, best {min(times):.1f} ms "
          f"over {args.repeat} runs  [target < 50 ms]")
    print(f"cold, fresh interpreter (medians of 5): import tgsample.registry {cold_ms[0]:.1f} ms + import "
          f"importlib_metadata {cold_ms[1]:.1f} ms + first discovery {cold_ms[2]:.1f} ms = {cold_ms[3]:.1f} ms")
    print(f"`tgsample list` wall time (subprocess, interpreter start-up included): median {cli_s:.3f} s, "
          f"max {max(cli):.3f} s over 5 runs  [target <= 3 s]; imports torch: {torch_in_list}")
    ok = found == n and warm_ms < 50 and max(cli) <= 3.0
    print("OK" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
