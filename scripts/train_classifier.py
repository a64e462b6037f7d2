#!/usr/bin/env python
"""Train the digit classifier that scores samples (Frechet distance features, accuracy);
writes ``<out>/digits_classifier.safetensors`` and prints its test-split accuracy.

    python scripts/train_classifier.py
    python scripts/train_classifier.py --iters 3 --out /tmp/c   # smoke test
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Optional

from tgsample.models.digits.classifier import FEATURES, accuracy, train_classifier
from tgsample.models.digits.data import load
from tgsample.models.digits.training import set_threads
from tgsample.models.digits.weights import WEIGHTS_DIR, save


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=1500)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    a = p.parse_args(argv)
    set_threads(a.threads)
    t0 = time.time()
    clf = train_classifier(a.iters, a.batch, a.lr, a.seed)
    acc = accuracy(clf, *load("test"))
    info = {"iters": a.iters, "batch": a.batch, "lr": a.lr, "seed": a.seed, "seconds": round(time.time() - t0),
            "test_accuracy": round(acc, 4)}
    path = save(clf, a.out / "digits_classifier.safetensors", {"features": FEATURES}, info, dtype=__import__("torch").float32)
    print(f"test accuracy {acc:.4f}; wrote {path} ({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
