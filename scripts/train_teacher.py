#!/usr/bin/env python
"""Train the digit teacher (EDM UNet, CFG label dropout) on CPU; writes ``<out>/digits_teacher.safetensors``.

    python scripts/train_teacher.py                     # the shipped weights (seed 0)
    python scripts/train_teacher.py --iters 3 --out /tmp/t   # smoke test
"""

from __future__ import annotations

import time
from typing import Optional

from tgsample.models.digits import TEACHER_CONFIG, build_denoiser
from tgsample.models.digits.training import set_threads, training_parser, train_teacher
from tgsample.models.digits.weights import save


def main(argv: Optional[list[str]] = None) -> int:
    p = training_parser(__doc__, iters=5000, lr=2e-3)
    a = p.parse_args(argv)
    set_threads(a.threads)
    t0 = time.time()
    ema = train_teacher(build_denoiser(TEACHER_CONFIG), a.iters, a.batch, a.lr, a.seed,
                        log_every=max(1, min(200, a.iters)))
    info = {"iters": a.iters, "batch": a.batch, "lr": a.lr, "seed": a.seed, "seconds": round(time.time() - t0)}
    path = save(ema.net, a.out / "digits_teacher.safetensors", TEACHER_CONFIG.to_dict(), info)
    print(f"wrote {path} ({info['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
