#!/usr/bin/env python
"""Benchmark ``tgsample generate`` (Lightning ``Trainer.predict``) against a plain loop; print ratios.

    python scripts/bench_generate.py                      # all three, defaults below
    python scripts/bench_generate.py --records 256 --memory-records 10000

1. **overhead**: the Lightning path (``tgsample.lightning.cli.main``, 1 process, in-process) against a
   plain Python loop that calls :func:`tgsample.sample` on the same records, decodes and writes the
   same PNGs (goal: ratio <= 1.05);
2. **memory**: resident memory (VmRSS) of a generation subprocess over ``--memory-records`` small
   generations, polled; growth = peak after the first 10% of images minus the RSS then (goal <= 50 MB);
3. **scaling**: throughput of 2 processes (``--trainer.devices 2 --trainer.strategy ddp``) against 1, from
   the manifest's finish times (startup excluded), and the wall time with startup.

The model is ``--student`` (default ``bench-compact``: the shipped compact digits UNet's architecture with
seeded random weights, registered by this script, so the numbers do not depend on trained weights;
``digits-compact`` uses the shipped student). One thread per process (``torch.set_num_threads(1)``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from tgsample import registry

SIGMAS = [80.0, 2.0, 0.8, 0.3, 0.0]


def bench_compact(**_):
    """The compact digit student's network with seeded random weights (timing only)."""
    from tgsample.models import Model
    from tgsample.models.digits import COMPACT_CONFIG, build_denoiser, encode_labels
    from tgsample.models.digits.data import to_unit

    torch.manual_seed(0)
    den = build_denoiser(COMPACT_CONFIG).eval().requires_grad_(False)
    for p in den.parameters():
        p.data.normal_(0, 0.1)
    return Model("bench-compact", den, (1, 8, 8), encode_labels, to_unit,
                 {"sigmas": SIGMAS, "solver": "lcm", "guidance": {"name": "distilled_cfg", "scale": 2.0}})


if "bench-compact" not in registry.names("students"):
    registry.register("students", "bench-compact", bench_compact)


def prompt_file(n: int, where: Path) -> Path:
    """``n`` digit classes, one per line (a file, as a large job has: jsonargparse type-checks an inline
    ``--data.prompts`` list element by element, which costs ~4 ms per element)."""
    path = where.parent / f"prompts-{n}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i % 10}\n" for i in range(n)))
    return path


def _args(student: str, n: int, out: Path, batch: int, invariant: bool) -> list[str]:
    return ["--model.student", student, "--model.batch_invariant", str(invariant).lower(),
            "--data.prompt_file", str(prompt_file(n, out)), "--data.batch_size", str(batch),
            "--output.dir", str(out), "--output.preview", "0", "--trainer.accelerator", "cpu",
            "--trainer.enable_progress_bar", "false"]


def plain_loop(student: str, n: int, out: Path, batch: int, invariant: bool) -> float:
    """Seconds for: build the model, then per batch sample + decode + write PNGs (what the Lightning path does)."""
    from tgsample import sample
    from tgsample.lightning.data import read_records
    from tgsample.lightning.module import to_uint8
    from tgsample.lightning.writer import write_png

    t0 = time.perf_counter()
    model = registry.create("students", student)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = read_records(prompt_file(n, out))
    from tgsample.resolve import resolve

    run = resolve(model)  # the student's plain recipe, as tgsample generate resolves it
    step = 1 if invariant else batch
    with torch.inference_mode():  # what Trainer.predict uses
        for i in range(0, n, batch):
            chunk = records[i:i + batch]
            for j in range(0, len(chunk), step):
                group = chunk[j:j + step]
                cond, uncond = model.encode([r.prompt for r in group], None)
                x = sample(model, cond, uncond=uncond, seeds=[r.seed for r in group], run=run)
                for r, img in zip(group, to_uint8(model.decode(x))):
                    write_png(out / "images" / f"{r.id}.png", img)
    return time.perf_counter() - t0


def lightning_path(student: str, n: int, out: Path, batch: int, invariant: bool) -> float:
    from tgsample.lightning.cli import main

    t0 = time.perf_counter()
    rc = main(_args(student, n, out, batch, invariant) + ["--trainer.devices", "1"])
    assert rc == 0, rc
    return time.perf_counter() - t0


def overhead(a: argparse.Namespace, tmp: Path) -> dict:
    import lightning  # noqa: F401  (import cost is not part of the comparison)

    lightning_path(a.student, 16, tmp / "warm", a.batch, a.invariant)  # warm-up: first-call costs of both paths
    plain_loop(a.student, 16, tmp / "warm2", a.batch, a.invariant)
    loop, light = [], []
    for k in range(a.repeats):  # interleaved, best of
        loop.append(plain_loop(a.student, a.records, tmp / f"loop{k}", a.batch, a.invariant))
        light.append(lightning_path(a.student, a.records, tmp / f"light{k}", a.batch, a.invariant))
    same = all(_pixels(tmp / "loop0" / "images" / p.name) == _pixels(p)  # the PNGs' text chunks differ
               for p in (tmp / "light0" / "images").glob("*.png"))
    return {"loop_s": min(loop), "lightning_s": min(light), "ratio": min(light) / min(loop), "identical_pngs": same}


def _pixels(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        return img.tobytes()


def _child(a: argparse.Namespace, n: int, out: Path, devices: int, batch: int, invariant: bool) -> subprocess.Popen:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", *_args(a.student, n, out, batch, invariant),
           "--trainer.devices", str(devices)] + (["--trainer.strategy", "ddp"] if devices > 1 else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _rss_mb(pid: int) -> Optional[float]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def memory(a: argparse.Namespace, tmp: Path) -> dict:
    out = tmp / "mem"
    proc = _child(a, a.memory_records, out, 1, a.memory_batch, False)
    samples: list[tuple[int, float]] = []
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        done = len(os.listdir(out / "images")) if (out / "images").exists() else 0
        if rss is not None:
            samples.append((done, rss))
        time.sleep(0.25)
    log = proc.communicate()[0]
    assert proc.returncode == 0, log[-3000:]
    warm = [r for d, r in samples if d >= a.memory_records // 10]
    return {"images": a.memory_records, "rss_after_10pct_mb": warm[0] if warm else float("nan"),
            "rss_peak_after_mb": max(warm) if warm else float("nan"),
            "growth_mb": (max(warm) - warm[0]) if warm else float("nan")}


def _throughput(out: Path) -> float:
    entries = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
    first = {}
    for e in entries:  # per rank: the time of its first image minus that image's own time
        first[e["rank"]] = min(first.get(e["rank"], 1e99), e["finished"] - e["seconds"])
    span = max(e["finished"] for e in entries) - min(first.values())
    return len(entries) / span


def scaling(a: argparse.Namespace, tmp: Path) -> dict:
    res = {}
    for devices in (1, 2):
        t0 = time.perf_counter()
        proc = _child(a, a.scale_records, tmp / f"scale{devices}", devices, a.batch, a.invariant)
        log = proc.communicate()[0]
        assert proc.returncode == 0, log[-3000:]
        res[devices] = {"wall_s": time.perf_counter() - t0, "images_per_s": _throughput(tmp / f"scale{devices}")}
    same = all((tmp / "scale1" / "images" / p.name).read_bytes() == p.read_bytes()
               for p in (tmp / "scale2" / "images").glob("*.png"))
    return {"1": res[1], "2": res[2], "ratio": res[2]["images_per_s"] / res[1]["images_per_s"],
            "identical_pngs": same}


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    torch.set_num_threads(1)
    if argv[:1] == ["--child"]:  # a generation subprocess (and, under ddp, its rank 1)
        from tgsample.lightning.cli import main as generate

        return generate(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--student", default="bench-compact")
    p.add_argument("--records", type=int, default=512, help="records of the overhead comparison")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--invariant", type=lambda s: s.lower() in ("1", "true", "yes"), default=False,
                   help="batch_invariant (one record at a time) for the overhead and scaling runs")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--memory-records", type=int, default=10000)
    p.add_argument("--memory-batch", type=int, default=50)
    p.add_argument("--scale-records", type=int, default=1024)
    p.add_argument("--only", choices=["overhead", "memory", "scaling"], action="append")
    a = p.parse_args(argv)
    which = a.only or ["overhead", "memory", "scaling"]
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for name in which:
            results[name] = {"overhead": overhead, "memory": memory, "scaling": scaling}[name](a, Path(d))
            print(name, json.dumps(results[name], default=lambda v: round(v, 4)), flush=True)
    print("\nsummary (one run, CPU, 1 thread per process):")
    if "overhead" in results:
        r = results["overhead"]
        print(f"  Lightning / plain loop time : {r['ratio']:.3f}  ({r['lightning_s']:.2f} s vs {r['loop_s']:.2f} s, "
              f"{a.records} images; goal <= 1.05; identical pixels: {r['identical_pngs']})")
    if "memory" in results:
        r = results["memory"]
        print(f"  RSS growth over {r['images']} images : {r['growth_mb']:.1f} MB  "
              f"({r['rss_after_10pct_mb']:.0f} -> peak {r['rss_peak_after_mb']:.0f} MB; goal <= 50 MB)")
    if "scaling" in results:
        r = results["scaling"]
        print(f"  2 processes / 1 process throughput : {r['ratio']:.2f}  ({r['2']['images_per_s']:.1f} vs "
              f"{r['1']['images_per_s']:.1f} images/s; wall with startup {r['2']['wall_s']:.1f} s vs "
              f"{r['1']['wall_s']:.1f} s, {a.scale_records} images; identical PNGs: {r['identical_pngs']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
