#!/usr/bin/env python
"""Images/s of ``tgsample generate`` with PNG encoding + writes in the writer thread (``--output.queue 2``,
the default) and on the main thread between batches (``--output.queue 0``), interleaved.

    python scripts/bench_writer.py [--records 96] [--batch 16] [--repeats 3] [--size 512]

The student (``bench-png``, registered here) is a small conv net on 3x64x64 samples whose ``decode``
upsamples to ``--size`` pixels with high-frequency detail, so that zlib has real work (an 8x8 digit PNG
costs microseconds). Throughput is taken from the manifest's finish times after the first batch (start-up
excluded). One torch thread: the writer thread gets the other core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from tgsample import registry

SIZE = [512]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x, c_noise, **_):
        return self.c2(torch.tanh(self.c1(x) + c_noise[:, None, None, None]))


def bench_png(**_):
    from tgsample.denoisers import EDMDenoiser
    from tgsample.models import Model
    from tgsample.models.digits import encode_labels

    def decode(x):
        up = nn.functional.interpolate(x, size=(SIZE[0], SIZE[0]), mode="bilinear")
        return (torch.sin(up * 37.0) + 1) / 2  # high-frequency detail: zlib cannot shortcut it

    den = EDMDenoiser(Net(), sample_shape=(3, 64, 64)).eval().requires_grad_(False)
    return Model("bench-png", den, (3, 64, 64), encode_labels, decode,
                 {"sigmas": [80.0, 2.0, 0.5, 0.0], "solver": "euler", "guidance": {"name": "none"}})


if "bench-png" not in registry.names("students"):
    registry.register("students", "bench-png", bench_png)


def one(records: int, batch: int, queue: int, out: Path) -> float:
    from tgsample.lightning.cli import main as generate

    out.parent.mkdir(parents=True, exist_ok=True)
    prompts = out.parent / "prompts.txt"
    prompts.write_text("".join(f"{i % 10}\n" for i in range(records)))
    code = generate(["--model.student", "bench-png", "--data.prompt_file", str(prompts), "--data.batch_size",
                     str(batch), "--output.dir", str(out), "--output.preview", "0", "--output.queue", str(queue),
                     "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])
    assert code == 0
    done = sorted(json.loads(line)["finished"] for line in (out / "manifest.jsonl").read_text().splitlines())
    return (len(done) - batch) / (done[-1] - done[batch - 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=96)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=512)
    a = p.parse_args()
    SIZE[0] = a.size
    torch.set_num_threads(1)
    rates: dict[int, list[float]] = {2: [], 0: []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(a.repeats):
            for q in rates:
                rates[q].append(one(a.records, a.batch, q, Path(d) / f"q{q}-{r}" / "out"))
    print(f"CPU, 1 torch thread, {a.records} images of {a.size}x{a.size} RGB, batch {a.batch}, "
          f"{a.repeats} interleaved runs (images/s after the first batch, max / median):", file=sys.stderr)
    for q, v in rates.items():
        label = "writer thread (queue 2)" if q else "main thread (queue 0)"
        print(f"  {label:26s} {max(v):7.2f} / {statistics.median(v):7.2f}")
    print(f"  thread / main (median): {statistics.median(rates[2]) / statistics.median(rates[0]):.2f}x")


if __name__ == "__main__":
    main()
