"""Is ``tgsample eval``'s feature extraction bounded by the network, or by Python (decoding, resizing, batching)?

Writes ``--n`` synthetic ``--size`` x ``--size`` PNGs (COCO-like), then measures on the same device:

1. the network alone: an Inception-v3-sized network (torchvision's architecture, random weights: no download)
   on pre-made ``[B, 3, 299, 299]`` batches, images/s;
2. the whole pipeline: :func:`tgsample.eval.features.extract` over the PNG folder (Lightning ``Trainer.predict``,
   DataLoader workers decoding and "clean"-resizing, the cache written per batch), images/s, Trainer start-up
   excluded (a run on one image is subtracted);

and prints ``pipeline / network``: close to 1 means the network is the bottleneck.

    python scripts/bench_eval.py                                  # CPU, small
    python scripts/bench_eval.py --n 4096 --batch-size 256 --workers 16 --accelerator gpu
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--precision", default="32-true")
    a = p.parse_args()

    from torchvision.models import inception_v3

    from tgsample.eval.extractors import CleanResize, ModuleExtractor
    from tgsample.eval.features import extract
    from tgsample.eval.runs import open_folder

    torch.manual_seed(0)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=False)
    net.fc = torch.nn.Identity()  # the 2048-d pool features, as FID uses
    ext = ModuleExtractor(net, transform=CleanResize(), name="inception-sized")
    device = torch.device("cuda" if a.accelerator in ("gpu", "cuda") else "cpu")

    # 1. the network alone
    net_d = net.to(device).eval()
    x = torch.rand(a.batch_size, 3, 299, 299, device=device) * 255
    dtype = torch.float16 if a.precision.startswith("16") else torch.bfloat16 if a.precision.startswith("bf16") else None
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        net_d(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        reps = max(2, a.n // a.batch_size)
        t0 = time.perf_counter()
        for _ in range(reps):
            net_d(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        net_rate = reps * a.batch_size / (time.perf_counter() - t0)
    net.cpu()

    # 2. the pipeline
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        g = np.random.default_rng(0)
        (root / "imgs").mkdir()
        (root / "one").mkdir()
        for i in range(a.n):
            low = g.integers(0, 255, (a.size // 32, a.size // 32, 3), dtype=np.uint8)
            img = Image.fromarray(low).resize((a.size, a.size), Image.Resampling.BICUBIC)
            img.save(root / "imgs" / f"{i:06d}.png")
        img.save(root / "one" / "0.png")
        trainer = {"accelerator": a.accelerator, "precision": a.precision, "enable_progress_bar": False}
        kw = dict(batch_size=a.batch_size, num_workers=a.workers, trainer=trainer, progress=False)
        t0 = time.perf_counter()
        extract([open_folder(root / "one")], [ext], cache_dir=root / "c1", **kw)
        startup = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = extract([open_folder(root / "imgs")], [ext], cache_dir=root / "c", **kw)
        wall = time.perf_counter() - t0
        assert got is not None and got.computed[0][0] == a.n
    pipe_rate = a.n / max(wall - startup, 1e-9)
    print(f"device {device}, {torch.get_num_threads()} torch threads, {a.workers} workers, batch {a.batch_size}, "
          f"{a.n} PNGs of {a.size}x{a.size}, precision {a.precision}")
    print(f"  network alone          : {net_rate:8.1f} images/s")
    print(f"  pipeline (extract)     : {pipe_rate:8.1f} images/s  (wall {wall:.1f} s, start-up {startup:.1f} s excluded)")
    print(f"  pipeline / network     : {pipe_rate / net_rate:8.2f}")


if __name__ == "__main__":
    main()
