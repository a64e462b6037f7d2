"""Train the miniature's parts (docs/mini.md): ``python scripts/train_mini.py PART [--iters N] ...``.

PART is ``vae``, ``teacher``, ``lcm``, ``lcm-lora``, ``lightning`` or ``classifier`` (in that order: each
needs the ones before it in ``--out``). Seeded before any model is built, deterministic, and resumable:
with ``--ckpt DIR`` a checkpoint is written every 200 iterations and the same command resumes from it.
Prints the part's wall time and measurements as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    from tgsample.models.mini import components as C
    from tgsample.models.mini import training as T

    from tgsample.models.mini.classifier import train as train_classifier

    parts = {"vae": T.train_vae, "teacher": T.train_teacher, **T.DISTILL, "classifier": train_classifier}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=sorted(parts))
    p.add_argument("--iters", type=int, default=None, help="iterations (default: the part's)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=C.MINI_DIR, help=f"pipeline folder (default: the shipped {C.MINI_DIR})")
    p.add_argument("--ckpt", type=Path, default=None, help="checkpoint folder (resume from it)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    kw = {k: v for k, v in (("iters", a.iters), ("batch", a.batch)) if v is not None}
    a.out.mkdir(parents=True, exist_ok=True)
    result = parts[a.part](a.out, seed=a.seed, ckpt=a.ckpt, **kw)
    print(json.dumps({"part": a.part, "seed": a.seed, **kw, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
