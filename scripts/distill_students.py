#!/usr/bin/env python
"""Distil the digit teacher into the two shipped students (LCM-style consistency distillation,
guidance scale ``w`` as an input); writes ``<out>/digits_student.safetensors`` and/or
``<out>/digits_compact.safetensors``.

    python scripts/distill_students.py                          # both shipped students (seed 0)
    python scripts/distill_students.py --which compact --iters 3 --out /tmp/s   # smoke test

The full-size student has the teacher's architecture plus a ``w`` embedding and starts from the
teacher's weights; the compact one (~6x fewer parameters) starts from random weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from tgsample.models.digits import COMPACT_CONFIG, TEACHER_CONFIG, build_denoiser, load_denoiser
from tgsample.models.digits.training import distill, set_threads, training_parser
from tgsample.models.digits.weights import save, weights_path

# the students' own few-step schedule and the published defaults stored with the weights
# (chosen on seeds 1,000,000+, disjoint from the benchmark's: FD of 500-1000 samples per setting)
SIGMAS = [80.0, 1.0, 0.5, 0.2, 0.0]
PUBLISHED = {"full": {"w": 1.5, "lam": 0.3}, "compact": {"w": 3.0, "lam": 0.5}}
# the teacher's CFG scale inside teacher guidance defaults to the student's w: the teacher then
# targets the guided distribution the student was distilled toward


def main(argv: Optional[list[str]] = None) -> int:
    p = training_parser(__doc__, iters=None, lr=None)  # --iters default: 1800 (full), 3000 (compact)
    p.add_argument("--which", choices=["full", "compact", "both"], default="both")
    p.add_argument("--teacher", type=Path, default=weights_path("digits_teacher"))
    p.add_argument("--w", type=float, default=None, help="the student's default guidance scale (default: PUBLISHED)")
    p.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS, help="the students' own schedule")
    p.add_argument("--lam", type=float, default=None, help="the student's teacher-guidance strength (default: PUBLISHED)")
    p.add_argument("--teacher-cfg", type=float, default=None, help="the teacher's CFG scale in teacher guidance (default: w)")
    a = p.parse_args(argv)
    set_threads(a.threads)
    teacher, _ = load_denoiser(a.teacher)
    jobs = {"full": ("digits_student", 1800, 2e-4), "compact": ("digits_compact", 3000, 1e-3)}
    for which in (["full", "compact"] if a.which == "both" else [a.which]):
        file, iters, lr = jobs[which]
        iters = a.iters if a.iters is not None else iters
        if which == "full":
            config = TEACHER_CONFIG.__class__(**{**TEACHER_CONFIG.to_dict(), "mult": TEACHER_CONFIG.mult,
                                                 "guidance_embedding": True})
            student = build_denoiser(config)
            missing, unexpected = student.net.load_state_dict(teacher.net.state_dict(), strict=False)
            assert not unexpected and all(k.startswith("w_emb.") for k in missing), (missing, unexpected)
        else:
            config = COMPACT_CONFIG
            student = build_denoiser(config)
        student.requires_grad_(True)
        t0 = time.time()
        ema = distill(student, teacher, iters, a.batch, lr, a.seed, log_every=max(1, min(200, iters)), name=which)
        w = a.w if a.w is not None else PUBLISHED[which]["w"]
        lam = a.lam if a.lam is not None else PUBLISHED[which]["lam"]
        info = {"iters": iters, "batch": a.batch, "lr": lr, "seed": a.seed, "seconds": round(time.time() - t0),
                "w": w, "sigmas": a.sigmas, "teacher_cfg": a.teacher_cfg if a.teacher_cfg is not None else w, "lam": lam,
                "params": sum(q.numel() for q in ema.parameters())}
        path = save(ema.net, a.out / f"{file}.safetensors", config.to_dict(), info)
        print(f"wrote {path} ({info['seconds']} s, {info['params']} parameters)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
