"""The miniature's students trained on other seeds, beside the shipped seed 0 (docs/results.md).

    python scripts/train_mini.py lcm --seed 1 --out DIR1      # after copying the shipped folder's
    ...                                                        # vae/, unet/, text_encoder/, ... into DIR1
    python scripts/mini_seeds.py DIR1 DIR2

Each DIR is a pipeline folder whose ``students/`` the training script wrote (the teacher, VAE and text
encoder are the shipped ones: only the students' seed differs). Every student's published recipes ``""`` and
``"++"`` are scored on the bench plan's seeds (``src/tgsample/bench/mini.yaml``: replicates x n); the table
gives each seed's mean with its 95 % interval over replicates (the sampling interval), the paired difference
``"++"`` minus ``""`` (what teacher guidance does to that model) and, per student, the standard deviation of the
seeds' means (the spread between trained models).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path


def build(name: str, folder: Path | None):
    """The registered student `name`, with its own weights from `folder/students` (None: the shipped)."""
    from tgsample import registry
    from tgsample.models.diffusers.zoo import LORA_FILE

    if folder is None:
        return registry.create("students", name)
    students = folder / "students"
    weights = {"mini-lcm": {"unet": str(students / "lcm" / "unet")},
               "mini-lcm-lora": {"lora": str(students / "lcm_lora"), "lora_weight_name": LORA_FILE},
               "mini-lightning": {"unet": str(students / "lightning" / "unet")}}[name]
    for path in weights.values():
        if path != LORA_FILE and not Path(path).exists():
            raise SystemExit(f"mini_seeds: {path} does not exist (train it with scripts/train_mini.py --out {folder})")
    return registry.create("students", name, **weights)


def main(argv: list[str] | None = None) -> int:
    import torch

    from tgsample import registry
    from tgsample.bench import mini as B
    from tgsample.eval.stats import mean_ci
    from tgsample.models.mini.evaluate import Scorer

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="pipeline folders with students/ trained on other seeds")
    p.add_argument("--students", default=None, help="comma-separated (default: the plan's)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    plan = B.load_plan()
    names = a.students.split(",") if a.students else plan["students"]
    caps, scorer = B.captions(plan["per_caption"]), Scorer()
    n = len(caps)
    print(f"{plan['replicates']} replicates x n = {n} (the bench plan's seeds); mean ± 95 % interval over replicates\n")
    print("| student | recipe | seed | alignment | FD |\n|---|---|---|---|---|")
    for name in names:
        means: dict[tuple[str, str], list[float]] = {}
        for seed, folder in [("0 (shipped)", None), *((f.name, f) for f in a.folders)]:
            student = build(name, folder)
            teacher = registry.create("teachers", student.recipes["++"].teacher, student=student)
            sampler = B.Sampler(student, teacher, caps, scorer)
            reps = {variant: [sampler(student.recipes[variant], B.replicate_seeds(plan, r, n))
                              for r in range(plan["replicates"])] for variant in ("", "++")}
            reps["++ minus ''"] = [{m: g[m] - p[m] for m in ("alignment", "fd")} for p, g in zip(reps[""], reps["++"])]
            for variant, values in reps.items():
                cells = []
                for metric, digits in (("alignment", 3), ("fd", 1)):
                    m, h = mean_ci([x[metric] for x in values])
                    means.setdefault((variant, metric), []).append(m)
                    cells.append(f"{m:+.{digits}f} ± {h:.{digits}f}" if "minus" in variant else
                                 f"{m:.{digits}f} ± {h:.{digits}f}")
                print(f"| {name} | {variant or chr(39) * 2} | {seed} | {cells[0]} | {cells[1]} |", flush=True)
        for variant in ("", "++", "++ minus ''"):
            sd = [statistics.stdev(means[(variant, m)]) for m in ("alignment", "fd")]
            print(f"| {name} | {variant or chr(39) * 2} | **sd between seeds** | {sd[0]:.3f} | {sd[1]:.1f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
