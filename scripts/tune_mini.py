"""Tune the miniature's published recipes: ``python scripts/tune_mini.py [--students a,b]``.

The rule and the seeds are the bench plan's ``tune`` section (``src/tgsample/bench/mini.yaml``): seeds
``tune.seed + i``, disjoint from the benchmark's; per student, the plain recipe's step count in ``tune.steps``
with the highest prompt alignment (among those within ``tune.within`` of it, the lowest FD), then the
teacher-guided recipe's ``lam`` over ``lams[space]`` at those steps by the same rule. Prints every score and the
values to publish in ``src/tgsample/models/mini/recipes.py`` (which holds them; docs/results.md quotes this run).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    import torch

    from tgsample import registry
    from tgsample.bench import mini as B
    from tgsample.models.mini.evaluate import Scorer

    plan = B.load_plan()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", default=",".join(plan["students"]))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tune, scorer = plan["tune"], Scorer()
    caps = B.captions(tune["per_caption"])
    seeds = B.replicate_seeds(plan, 0, len(caps), first=tune["seed"])
    print(f"seeds {seeds[0]}..{seeds[-1]} (n = {len(caps)}); rule: highest alignment, lowest FD within "
          f"{tune['within']}", flush=True)
    for name in [n for n in a.students.split(",") if n]:
        student = registry.create("students", name)
        plain, guided = student.recipes[""], student.recipes["++"]
        sampler = B.Sampler(student, registry.create("teachers", guided.teacher, student=student), caps, scorer)
        scores = {k: sampler(plain.replace(steps=k), seeds) for k in tune["steps"]}
        for k, s in scores.items():
            print(f"{name} plain {k} steps: alignment {s['alignment']:.3f} FD {s['fd']:.1f}", flush=True)
        steps = B.tuned(scores, tune["within"])
        lams = {}
        for lam in plan["lams"][guided.guidance["space"]]:
            recipe = guided.replace(steps=steps, guidance={**guided.guidance, "lam": float(lam)})
            lams[lam] = sampler(recipe, seeds)
            print(f"{name} ++ {steps} steps lam {lam:g}: alignment {lams[lam]['alignment']:.3f} "
                  f"FD {lams[lam]['fd']:.1f}", flush=True)
        print(f"PUBLISH {name}: steps={steps} lam={B.tuned(lams, tune['within']):g}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
