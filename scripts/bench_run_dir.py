"""What a run directory costs at scale: rank 0's memory when merging and when resuming, and the preview.

Merging and resuming stream the manifest through an on-disk index (``tgsample.lightning.manifest.RowIndex``),
so their memory should not grow with the number of rows. This script measures it on synthetic run
directories of N rows (empty image files whose SHA-256 the rows carry, so resuming verifies every one),
each operation in a fresh process: the peak resident memory (``ru_maxrss``) of the operation minus that
of the same process just before it (the records themselves, which every rank holds, are in the baseline).
For comparison it also runs what the merge did before (every row parsed into one dict), and it times the
preview of 64 SDXL-sized (1024 x 1024) images.

    python scripts/bench_run_dir.py                 # 10k and 100k rows
    python scripts/bench_run_dir.py --rows 1000000  # takes a while (and ~1M inodes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG_HASH = "0123456789abcdef"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def make_run(root: Path, n: int) -> None:
    """``root/images/<id>.png`` (empty) and ``root/manifest.jsonl`` with one realistic row per record."""
    (root / "images").mkdir(parents=True)
    (root / "manifest").mkdir()
    config = {"student": "dmd2-sdxl", "guidance": {"name": "teacher", "lam": 0.01, "steps": 2}, "solver": "lcm",
              "schedule": "trailing", "steps": 4, "sigmas": None}
    with open(root / "manifest.jsonl", "w") as f:
        for i in range(n):
            rid = f"{i:07d}"
            (root / "images" / f"{rid}.png").touch()
            f.write(json.dumps({"id": rid, "prompt": f"a photo of object number {i} on a wooden table", "seed": i,
                                "negative": None, "overrides": {}, "config": config, "config_hash": CONFIG_HASH,
                                "path": f"images/{rid}.png", "sha256": EMPTY_SHA, "latent": None,
                                "latent_sha256": None, "seconds": 0.5, "rank": i % 8, "run": "r1",
                                "finished": 1.7e9 + i}) + "\n")


def _records(n: int) -> list:
    from tgsample.lightning.data import Record

    return [Record(f"{i:07d}", f"a photo of object number {i} on a wooden table", i) for i in range(n)]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(op: str, root: Path, n: int) -> dict:
    """One operation in this (fresh) process; its peak memory above the baseline and its time."""
    from tgsample.lightning.manifest import RowIndex, read_rows
    from tgsample.lightning.writer import GenerationWriter

    records = _records(n)
    w = GenerationWriter(dir=str(root), preview=0)
    w.config_hash, w.records = CONFIG_HASH, records
    base = _maxrss_mb()
    t0 = time.perf_counter()
    if op == "merge":
        done = w.merge(records)
    elif op == "resume":
        with RowIndex() as index:
            pending, _, _ = w._decide(index, records, w._parts(), verify=True)
        done = n - sum(pending)
    else:  # the merge before streaming: every row parsed and kept in one dict
        latest = {}
        for _, row in read_rows([root / "manifest.jsonl"]):
            latest[row["id"]] = row
        done = len([latest[r.id] for r in records if r.id in latest])
    return {"op": op, "rows": n, "done": done, "seconds": time.perf_counter() - t0,
            "peak_mb": _maxrss_mb() - base}


def preview() -> dict:
    """The preview of 64 SDXL-sized images: its size on disk and in pixels, and the time to draw it."""
    import io

    import numpy as np
    from PIL import Image

    from tgsample.lightning.writer import preview_grid

    with tempfile.TemporaryDirectory() as d:
        paths, rng = [], np.random.default_rng(0)
        for i in range(64):  # noise: the worst case for PNG compression
            paths.append(Path(d) / f"{i}.png")
            Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(paths[-1], compress_level=1)
        t0 = time.perf_counter()
        grid = preview_grid(paths)
        buf = io.BytesIO()
        grid.save(buf, format="PNG")
        return {"pixels": f"{grid.width}x{grid.height}", "mb": len(buf.getvalue()) / 1e6,
                "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--no-preview", action="store_true", help="skip the preview measurement")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], Path(a.child[1]), int(a.child[2]))))
        return 0
    print("rows     op      peak MB  bytes/row  seconds")
    for n in a.rows:
        with tempfile.TemporaryDirectory() as d:
            make_run(Path(d) / "run", n)
            for op in ("merge", "resume", "dict (before)"):
                key = op.split()[0]
                out = subprocess.run([sys.executable, __file__, "--child", key, str(Path(d) / "run"), str(n)],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout)
                assert r["done"] == n, r
                print(f"{n:<8d} {op:14s} {r['peak_mb']:7.1f}  {r['peak_mb'] * 2**20 / n:9.0f}  {r['seconds']:7.2f}",
                      flush=True)
    if a.no_preview:
        return 0
    r = preview()
    print(f"preview of 64 images of 1024x1024: {r['pixels']} px, {r['mb']:.1f} MB, {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
