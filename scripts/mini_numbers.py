"""The miniature's numbers (docs/mini.md): ``python scripts/mini_numbers.py {tune,measure} [--seeds N]``.

``tune``: each student's ``++`` recipe at several teacher strengths ``lam`` on seeds 10,000+ (disjoint
from ``measure``'s); prints the alignment / FD of each and the best ``lam`` by alignment (the value
published in ``tgsample/models/mini/recipes.py``).

``measure`` (seeds 0+): per student its published recipe ``""`` at 1..N steps (competence: fewer plain
steps must not beat it), ``"++"``, and the teacher alone (25 steps, CFG at the students' w); alignment on
the 30 in-distribution and the 10 held-out captions, FD (all 40) against the real held-out split, and the
floor (FD of real train-split images at the same n).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

STUDENTS = ("mini-lcm", "mini-lcm-lora", "mini-lightning")
#: the strengths tried, per space (a noise-space lam pulls sigma_i / sigma_{i+1} times harder: docs/guidance.md)
LAMS = {"eps": (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5), "x0": (0.1, 0.2, 0.3, 0.5, 0.7, 1.0)}


def evaluate(scorer, student, recipe, seeds, **kw) -> dict:
    from tgsample.models.mini import evaluate as E

    out = {}
    for split, held in (("in", False), ("heldout", True)):
        caps = E.prompts(held, repeat=1)
        caps = [c for c in caps for _ in seeds]
        sd = [s for _ in E.prompts(held) for s in seeds]
        images = E.generate(student, caps, sd, recipe, **kw)
        out[split] = (images, caps)
    images = __import__("torch").cat([out["in"][0], out["heldout"][0]])
    caps = out["in"][1] + out["heldout"][1]
    res = scorer(images, caps)
    return {"align_in": scorer(*out["in"])["alignment"], "align_heldout": scorer(*out["heldout"])["alignment"],
            "align": res["alignment"], "fd": res["fd"], "n": res["n"]}


def main(argv=None) -> int:
    import numpy as np
    import torch

    from tgsample import registry
    from tgsample.models.mini import classifier as K
    from tgsample.models.mini import data as D
    from tgsample.models.mini.evaluate import Scorer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["tune", "measure"])
    p.add_argument("--seeds", type=int, default=10, help="seeds per caption (default 10: n = 400)")
    p.add_argument("--students", default=",".join(STUDENTS))
    p.add_argument("--max-steps", type=int, default=4)
    p.add_argument("--teacher", action="store_true", help="measure: also the teacher alone and the floor")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    scorer = Scorer()
    first = 10_000 if a.what == "tune" else 0
    seeds = list(range(first, first + a.seeds))
    rows = []
    t0 = time.time()
    for name in [n for n in a.students.split(",") if n]:
        student = registry.create("students", name)
        teacher = registry.create("teachers", student.recipes["++"].teacher, student=student)
        if a.what == "tune":
            for lam in LAMS[student.recipes["++"].guidance["space"]]:
                rows.append({"student": name, "run": f"++ lam {lam}", "lam": lam,
                             **evaluate(scorer, student, "++", seeds, lam=lam, teacher=teacher)})
                print(json.dumps(rows[-1]), flush=True)
            best = max((r for r in rows if r["student"] == name), key=lambda r: (r["align"], -r["fd"]))
            print(f"best {name}: lam {best['lam']}", flush=True)
            continue
        own = student.recipes[""].steps
        for steps in range(1, max(own, a.max_steps) + 1):
            rows.append({"student": name, "run": f"'' {steps} steps",
                         **evaluate(scorer, student, "", seeds, steps=steps)})
            print(json.dumps(rows[-1]), flush=True)
        rows.append({"student": name, "run": f"'++' {own} steps (lam {student.recipes['++'].guidance['lam']})",
                     **evaluate(scorer, student, "++", seeds, teacher=teacher)})
        print(json.dumps(rows[-1]), flush=True)
    if a.what == "measure" and a.teacher:
        student = registry.create("students", STUDENTS[-1])
        teacher = registry.create("teachers", "mini", student=student)
        rows.append({"student": "teacher mini", "run": "25 steps dpmpp_2m CFG 4",
                     **evaluate(scorer, teacher, "", seeds)})
        print(json.dumps(rows[-1]), flush=True)
        n = rows[-1]["n"]
        tr = D.load("train")
        idx = np.random.default_rng(0).permutation(len(tr.images))[:n]
        floor = K.fd(scorer.clf, D.pad32(tr.images[idx]) / 2 + 0.5, scorer.reference)
        acc = K.accuracies(scorer.clf, D.load("heldout"))
        print(json.dumps({"floor_fd_train_split": floor, "n": n, "classifier_heldout": acc}), flush=True)
    print("\n| model | run | align (in) | align (held-out) | FD |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['student']} | {r['run']} | {r['align_in']:.3f} | {r['align_heldout']:.3f} | {r['fd']:.2f} |")
    print(f"\n[{time.time() - t0:.0f} s, {a.seeds} seeds per caption]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
