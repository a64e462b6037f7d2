#!/usr/bin/env python
"""Train the digit classifier that scores samples (Frechet distance features, accuracy);
writes ``<out>/digits_classifier.safetensors`` and prints its test-split accuracy.

    python scripts/train_classifier.py
    python scripts/train_classifier.py --iters 3 --out /tmp/c   # smoke test
"""

from __future__ import annotations

import time
from typing import Optional

from tgsample.models.digits.classifier import FEATURES, accuracy, train_classifier
from tgsample.models.digits.data import load
from tgsample.models.digits.training import set_threads, training_parser
from tgsample.models.digits.weights import save


def main(argv: Optional[list[str]] = None) -> int:
    p = training_parser(__doc__, iters=1500, lr=2e-3)
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
