"""`tgsample bench mini`: the paper's tables on the shipped miniature, as pre-registered in `mini.yaml`.

Every configuration is a recipe derived from a student's published ones (`""` plain, `"++"` teacher-guided);
each is sampled on `replicates` sets of `n = 40 x per_caption` samples (all 40 captions, every sample its own
noise seed) through [`tgsample.sampling.sample`][tgsample.sampling.sample], decoded, and scored by the shipped
classifier ([`tgsample.models.mini.evaluate.Scorer`][tgsample.models.mini.evaluate.Scorer]): prompt alignment
(overall, in-distribution, held-out), FD against the real held-out split, k-NN precision / recall and the
memorisation rate; `time` is the wall time of the `sample` call.

A row compares a configuration with a baseline on the same seeds: per replicate `d_r = m(run) - m(base)`,
reported as the mean with its 95 % t-interval; `p` is the paired t-test's, Holm-adjusted across every
verdict on the page ([`tgsample.eval.stats.holm`][tgsample.eval.stats.holm]).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

PLAN = Path(__file__).with_name("mini.yaml")
"""the pre-registered plan shipped with the package"""
LOWER_IS_BETTER = {"fd", "memorisation", "time"}
"""the metrics whose decrease is `better`"""
_KEYS = {"students", "teacher", "replicates", "per_caption", "seed", "tune", "level", "metrics", "reported",
         "plain_steps", "renoise", "guided_steps", "lams", "teacher_cfgs", "solvers", "teacher_ceiling"}


def load_plan(path: Optional[Path] = None) -> dict:
    """The plan (`mini.yaml` by default), its keys checked."""
    import yaml

    from ..errors import ConfigError

    path = Path(path) if path is not None else PLAN
    if not path.is_file():
        raise ConfigError(f"bench plan {str(path)!r} is not a file")
    plan = yaml.safe_load(path.read_text())
    if not isinstance(plan, dict) or set(plan) != _KEYS:
        got = sorted(plan) if isinstance(plan, dict) else type(plan).__name__
        raise ConfigError(f"bench plan {str(path)!r} has keys {got}; it needs exactly {sorted(_KEYS)}")
    if plan["replicates"] < 2 or plan["per_caption"] < 1:
        raise ConfigError(f"bench plan: replicates={plan['replicates']} must be >= 2 (intervals) and "
                          f"per_caption={plan['per_caption']} >= 1")
    return plan


# ----------------------------------------------------------------------------- configurations and rows


@dataclass(frozen=True)
class Row:
    """`run` against `base` on `metrics` (`base` `"@equal_time"`: the plain step count chosen by time)."""

    table: str
    label: str
    run: str
    base: str
    metrics: tuple[str, ...] = ()


def _guided_at(steps: Sequence[int]) -> tuple[str, str]:
    """The key and the (1-based) label of a run that guides the 0-based `steps`."""
    return "guided_at_" + "_".join(map(str, steps)), ", ".join(str(i + 1) for i in steps)


def configurations(plain: Any, guided: Any, plan: dict) -> dict[str, tuple[str, Any]]:
    """`{key: (label, Recipe)}` of one student, from its published `plain` and `guided` recipes."""
    def tg(**spec: Any) -> Any:
        return guided.replace(guidance={**guided.guidance, **spec})

    g = guided.guidance
    out = {"plain": (f"{plain.steps} plain steps (published)", plain),
           "guided": (f"{plain.steps} steps, step 1 teacher-guided (published ++)", guided)}
    out.update({f"plain{k}": (f"{k} plain step" + "s" * (k != 1), plain.replace(steps=k))
                for k in plan["plain_steps"]})
    out.update({f"renoise_{r}": (f"renoise {r}", tg(renoise=r)) for r in plan["renoise"]})
    # the first k steps are written `k`, as the published recipes write them (the same recipe, sampled once)
    for s in plan["guided_steps"]:
        key, label = _guided_at(s)
        out[key] = (f"guided step(s) {label}", tg(guided_steps=len(s) if list(s) == list(range(len(s))) else list(s)))
    out.update({f"lam{v:g}": (f"lam {v:g}", tg(lam=float(v))) for v in plan["lams"][g["space"]]})
    out.update({f"tcfg{v:g}": (f"teacher CFG {v:g}", tg(teacher_cfg=float(v))) for v in plan["teacher_cfgs"]})
    for s in plan["solvers"].get(plain.solver, []):
        out[s] = (f"{s} alone", plain.replace(solver=s))
        out[f"{s}_tg"] = (f"{s} + teacher", guided.replace(solver=s))
    return out


def rows(plain: Any, guided: Any, plan: dict) -> list[Row]:
    """Every table row of one student (the paper's tables)."""
    n, m = plain.steps, tuple(plan["metrics"])
    g = guided.guidance
    R = Row
    out = [R("main", "guided vs N plain", "guided", "plain", m),
           *[R("main", f"{n + k} plain vs N plain", f"plain{n + k}", "plain", m) for k in (1, 2)
             if n + k in plan["plain_steps"]],
           *[R("main", f"guided vs {n + k} plain", "guided", f"plain{n + k}", m) for k in (1, 2)
             if n + k in plan["plain_steps"]],
           R("main", "guided vs the best plain at equal wall time", "guided", "@equal_time", m),
           *[R("competence", f"N plain vs {k} plain", "plain", f"plain{k}", m) for k in plan["plain_steps"] if k < n],
           R("teacher", f"teacher alone ({plan['teacher_ceiling']['steps']} steps) vs N plain", "teacher", "plain", m),
           R("prompts", "guided vs N plain, in-distribution prompts", "guided", "plain", ("alignment_in",)),
           R("prompts", "guided vs N plain, held-out prompts", "guided", "plain", ("alignment_heldout",)),
           *[R("renoise", f"renoise {r} vs N plain", f"renoise_{r}", "plain", m) for r in plan["renoise"]],
           *[R("renoise", f"renoise {r} vs next", f"renoise_{r}", "renoise_next", m)
             for r in plan["renoise"] if r != "next"],
           *[R("guided steps", f"step(s) {label} vs N plain", key, "plain", m)
             for key, label in map(_guided_at, plan["guided_steps"])],
           *[R("lam", f"lam {v:g} vs N plain", f"lam{v:g}", "plain", m) for v in plan["lams"][g["space"]]],
           *[R("teacher CFG", f"teacher CFG {v:g} vs N plain", f"tcfg{v:g}", "plain", m)
             for v in plan["teacher_cfgs"]]]
    for s in plan["solvers"].get(plain.solver, []):
        out += [R("solver", f"{s}: + teacher vs alone", f"{s}_tg", s, m),
                R("solver", f"{s} alone vs {plain.solver} alone", s, "plain", m)]
    return out


# ----------------------------------------------------------------------------- sampling


def captions(per_caption: int) -> list[str]:
    """The 40 captions (30 in-distribution, then 10 held-out), each `per_caption` times (caption-major)."""
    from ..models.mini.evaluate import prompts

    return prompts(False, per_caption) + prompts(True, per_caption)


def replicate_seeds(plan: dict, r: int, n: int, first: Optional[int] = None) -> list[int]:
    """The noise seeds of replicate `r`: `seed + r n + i` (each sample its own)."""
    first = plan["seed"] if first is None else first
    return [first + r * n + i for i in range(n)]


@dataclass
class Sampler:
    """Samples and scores one model's configurations on shared seeds (prompts encoded once)."""

    model: Any
    teacher: Any
    caps: list[str]
    scorer: Any
    _cond: Any = field(default=None, init=False)

    def __call__(self, recipe: Any, seeds: Sequence[int]) -> dict:
        import torch

        from ..resolve import resolve
        from ..sampling import sample

        if self._cond is None:
            self._cond = self.model.encode(self.caps, None)
        cond, uncond = self._cond
        run = resolve(self.model, recipe, teacher=self.teacher if recipe.teacher else None)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = sample(self.model, cond, uncond=uncond, seeds=list(seeds), run=run)
        dt = time.perf_counter() - t0
        with torch.no_grad():
            return {**self.scorer.full(self.model.decode(x), self.caps), "time": dt}


def unique(configs: dict[str, tuple[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The keys to sample (one per distinct recipe) and `{key: the key it shares results with}`."""
    seen: dict[Any, str] = {}
    alias = {}
    for key, (_, recipe) in configs.items():
        alias[key] = seen.setdefault(recipe, key)
    return list(seen.values()), alias


def evaluate_teacher(plan: dict, *, scorer: Any = None, position: int = 0, progress: bool = True) -> dict:
    """The teacher alone (its own recipe, `teacher_ceiling` steps) on every replicate's seeds."""
    from tqdm.auto import tqdm

    from .. import registry
    from ..models.mini.evaluate import Scorer

    caps = captions(plan["per_caption"])
    teacher = registry.create("teachers", plan["teacher"])
    ceiling = teacher.recipes[""].replace(steps=plan["teacher_ceiling"]["steps"])
    sampler = Sampler(teacher, None, caps, scorer or Scorer())
    res = [sampler(ceiling, replicate_seeds(plan, r, len(caps)))
           for r in tqdm(range(plan["replicates"]), desc=f"teacher {plan['teacher']}", unit="replicate",
                         position=position, disable=not progress)]
    return {"label": f"teacher {plan['teacher']}, {ceiling.steps} {ceiling.solver} steps, "
                     f"CFG {ceiling.guidance['scale']:g}", "results": res}


def evaluate_student(plan: dict, name: str, *, student: Any = None, scorer: Any = None, position: int = 0,
                     progress: bool = True) -> dict:
    """One student's configurations on every replicate (`student`: a built model instead of `name`'s)."""
    from tqdm.auto import tqdm

    from .. import registry
    from ..errors import ConfigError
    from ..models.mini.evaluate import Scorer

    caps = captions(plan["per_caption"])
    student = student if student is not None else registry.create("students", name)
    plain, guided = student.recipes[""], student.recipes["++"]
    teacher = registry.create("teachers", guided.teacher, student=student)
    configs = configurations(plain, guided, plan)
    keys, alias = unique(configs)
    sampler = Sampler(student, teacher, caps, scorer or Scorer())
    res: dict[str, Any] = {k: [] for k in keys}
    skipped: dict[str, str] = {}
    bar = tqdm(total=plan["replicates"] * len(keys), desc=name, unit="run", position=position, disable=not progress)
    for r in range(plan["replicates"]):
        seeds = replicate_seeds(plan, r, len(caps))
        for key in keys:
            if key not in skipped:
                try:
                    res[key].append(sampler(configs[key][1], seeds))
                except ConfigError as e:  # a configuration this student cannot have (said under its tables)
                    res[key], skipped[key] = None, str(e)
            bar.update(1)
    bar.close()
    return {"results": {k: res[alias[k]] for k in configs}, "labels": {k: lab for k, (lab, _) in configs.items()},
            "recipes": {v: rc.as_dict() for v, rc in student.recipes.items()}, "not_applicable": skipped,
            "rows": [r.__dict__ | {"metrics": list(r.metrics)} for r in rows(plain, guided, plan)]}


def evaluate_real(plan: dict, *, scorer: Any = None) -> dict:
    """The real-data references at the bench's n: per replicate, `n` train-split digits drawn without
    replacement (seeded by the replicate) scored like samples, with their own captions (the FD floor; their
    memorisation rate is the share of them in the generative training set, a positive control), and the
    memorisation rate of the 1,000 real held-out digits (a negative control)."""
    import numpy as np
    import torch

    from ..eval.metrics import memorisation_rate
    from ..models.mini import data as D
    from ..models.mini.evaluate import Scorer

    scorer = scorer or Scorer()
    n = len(captions(plan["per_caption"]))
    train = D.load("train")
    caps = train.captions()
    res = []
    for r in range(plan["replicates"]):
        idx = np.random.default_rng(r).permutation(len(caps))[:n]
        res.append(scorer.full(D.pad32(train.images[idx]) / 2 + 0.5, [caps[i] for i in idx]))
    held = memorisation_rate(torch.as_tensor(D.load("heldout").images), scorer.real()[1])
    return {"label": f"real train-split digits, n = {n} per replicate", "results": res,
            "heldout_memorisation": held, "in_training_set": float(train.in_distribution().mean())}


def _job(args: tuple) -> dict:
    import torch

    plan, name, threads, position = args
    torch.set_num_threads(threads)
    if name is None:
        return {"teacher": evaluate_teacher(plan, position=position), "real": evaluate_real(plan)}
    return evaluate_student(plan, name, position=position)


def evaluate(plan: dict, *, jobs: int = 1) -> dict:
    """Run the plan (`jobs` processes, one model each at a time); a JSON-able dict of every configuration's
    per-replicate metrics, the teacher alone's under every student's `results["teacher"]`."""
    import torch

    names = [None, *plan["students"]]
    threads = torch.get_num_threads()
    work = [(plan, name, max(1, threads // jobs) if jobs > 1 else threads, i) for i, name in enumerate(names)]
    if jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            done = list(pool.map(_job, work))
    else:
        done = [_job(w) for w in work]
    (teacher, real), students = done[0].values(), dict(zip(plan["students"], done[1:]))
    for s in students.values():
        s["results"]["teacher"] = teacher["results"]
    return {"plan": plan, "n": len(captions(plan["per_caption"])), "threads": threads, "jobs": jobs,
            "teacher": teacher, "real": real, "students": students}


# ----------------------------------------------------------------------------- analysis


def tuned(scores: dict[Any, dict], within: float) -> Any:
    """The plan's tuning rule: the key whose scores have the highest `alignment`; among the keys within
    `within` of it, the one with the lowest `fd` (`scripts/tune_mini.py` applies it to steps, then `lam`)."""
    best = max(s["alignment"] for s in scores.values())
    return min((k for k, s in scores.items() if s["alignment"] >= best - within), key=lambda k: scores[k]["fd"])


def equal_time_base(results: dict, guided: str, plan: dict) -> Optional[str]:
    """The plain step count whose mean time is at most `guided`'s, with the highest mean alignment (lowest FD
    among ties); `None` when none is that fast."""
    budget = _mean(results[guided], "time")
    fast = [f"plain{k}" for k in plan["plain_steps"]
            if results.get(f"plain{k}") and _mean(results[f"plain{k}"], "time") <= budget]
    return max(fast, key=lambda k: (_mean(results[k], "alignment"), -_mean(results[k], "fd")), default=None)


def _mean(reps: list[dict], metric: str) -> float:
    return sum(r[metric] for r in reps) / len(reps)


def analyse(result: dict) -> list[dict]:
    """Every verdict of the page: `{student, table, label, run, base, metric, mean, half, p, p_holm, verdict}`."""
    from ..eval.stats import holm, mean_ci, t_pvalue

    plan = result["plan"]
    level = plan["level"]
    out = []
    for name, s in result["students"].items():
        res = s["results"]
        for row in s["rows"]:
            base = row["base"]
            if base == "@equal_time":
                base = equal_time_base(res, row["run"], plan)
            for metric in row["metrics"]:
                item = {"student": name, **{k: row[k] for k in ("table", "label", "run")}, "base": base,
                        "metric": metric}
                a, b = res.get(row["run"]), res.get(base) if base else None
                if not a or not b:
                    out.append({**item, "mean": math.nan, "half": math.nan, "p": math.nan, "same": None})
                    continue
                d = [x[metric] - y[metric] for x, y in zip(a, b)]
                m, h = mean_ci(d, level)
                # the comparison's identity: its data (a sweep value equal to the published recipe is that run)
                same = (name, metric, tuple(x[metric] for x in a), tuple(y[metric] for y in b))
                out.append({**item, "mean": m, "half": h, "p": t_pvalue(d), "same": same})
    # one family: every distinct comparison once (a comparison repeated in two tables is one test)
    distinct = {v["same"]: v["p"] for v in out if v["same"] is not None}
    test = {same: i for i, same in enumerate(distinct)}
    adjusted = holm(list(distinct.values()))
    for v in out:
        same = v.pop("same")
        v["test"] = test[same] if same is not None else None  # the comparison's index in the Holm family
        v["p_holm"] = adjusted[v["test"]] if same is not None else math.nan
        v["verdict"] = verdict(v["mean"], v["p_holm"], v["metric"], 1 - level)
    return out


def family_size(verdicts: list[dict]) -> int:
    """How many distinct comparisons the Holm correction covered (a repeated one is one test)."""
    return len({v["test"] for v in verdicts if v["test"] is not None})


def verdict(mean: float, p_holm: float, metric: str, alpha: float) -> str:
    """`better` / `worse` (for `metric`'s direction) when the Holm-adjusted `p < alpha`, else `no clear
    difference` (`n/a` without data)."""
    if math.isnan(p_holm):
        return "n/a"
    if p_holm >= alpha:
        return "no clear difference"
    return "better" if (mean < 0) == (metric in LOWER_IS_BETTER) else "worse"


# ----------------------------------------------------------------------------- report

_DIGITS = {"alignment": 3, "alignment_in": 3, "alignment_heldout": 3, "fd": 1, "precision": 3, "recall": 3,
           "memorisation": 3, "time": 2}


def _summary(reps: Optional[list[dict]], metric: str) -> str:
    from ..eval.stats import mean_ci

    if not reps:
        return "n/a"
    m, h = mean_ci([r[metric] for r in reps])
    return f"{m:.{_DIGITS[metric]}f} ± {h:.{_DIGITS[metric]}f}"


def markdown(result: dict, verdicts: list[dict], command: str = "") -> str:
    """The page: per student, the absolute values of every configuration, then the verdict tables."""
    plan = result["plan"]
    shown = [*plan["metrics"], *(m for m in plan["reported"] if m not in plan["metrics"])]
    fam = family_size(verdicts)
    lines = [f"`{command}`: {plan['replicates']} paired replicates x n = {result['n']} samples (all 40 captions x "
             f"{plan['per_caption']}, one noise seed each, seeds {plan['seed']}–"
             f"{plan['seed'] + plan['replicates'] * result['n'] - 1}); mean ± 95 % t-interval half-width over "
             f"replicates; verdicts on the paired difference, Holm-adjusted over all {fam} distinct comparisons "
             f"on the page; {result['threads']} torch thread(s), {result.get('seconds', '?')} s.", ""]
    t, real = result["teacher"], result.get("real")
    ref = [m for m in shown if m != "time"]
    lines += [f"Teacher ceiling ({t['label']}): " + ", ".join(f"{k} {_summary(t['results'], k)}" for k in shown), ""]
    if real:
        lines += [f"Real data ({real['label']}; the FD floor): " + ", ".join(f"{k} {_summary(real['results'], k)}"
                                                                       for k in ref)
                  + f". The memorisation test flags {real['heldout_memorisation']:.3f} of the 1,000 real held-out "
                  f"digits and, of train-split digits, about the {real['in_training_set']:.3f} that are in the generative "
                  "models' training set.", ""]
    for name, s in result["students"].items():
        res = s["results"]
        lines += [f"### {name}", "", "| configuration | " + " | ".join(shown) + " |",
                  "|---" * (len(shown) + 1) + "|"]
        lines += [f"| {s['labels'][k]} | " + " | ".join(_summary(res[k], m) for m in shown) + " |"
                  for k in s["labels"]]
        lines += ["", "| table | comparison | metric | difference | p (Holm) | verdict |", "|---|---|---|---|---|---|"]
        for v in (v for v in verdicts if v["student"] == name):
            base = f" ({v['base']})" if v["label"].endswith("equal wall time") else ""
            diff = "n/a" if math.isnan(v["mean"]) else f"{v['mean']:+.{_DIGITS[v['metric']]}f} ± " \
                                                       f"{v['half']:.{_DIGITS[v['metric']]}f}"
            lines.append(f"| {v['table']} | {v['label']}{base} | {v['metric']} | {diff} | {v['p_holm']:.2g} | "
                         f"{v['verdict']} |")
        lines.append("")
        if s["not_applicable"]:
            lines += ["Not applicable: " + "; ".join(f"{k}: {e}" for k, e in s["not_applicable"].items()), ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line


def parse(argv: Optional[Sequence[str]]) -> Any:
    """The command line of `tgsample bench mini`."""
    from ..cli import ArgumentParser

    p = ArgumentParser(prog="tgsample bench mini", description=__doc__.split("\n")[0])
    p.add_argument("--plan", type=Path, default=None, help=f"the pre-registered plan (default: the shipped {PLAN.name})")
    p.add_argument("--replicates", type=int, default=None, help="override the plan's (a quick look, not the page)")
    p.add_argument("--per-caption", type=int, default=None, help="override the plan's")
    p.add_argument("--students", default=None, help="comma-separated subset of the plan's students")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads in all (default: torch's)")
    p.add_argument("--jobs", type=int, default=1, help="processes, one model each at a time (default 1)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"), help="writes mini.md and mini.json there")
    p.add_argument("--report", type=Path, default=None, metavar="JSON",
                   help="sample nothing: analyse a run's mini.json again and write its page to --out")
    return p.parse_args(argv)


def write(result: dict, out: Path, command: str) -> str:
    """Analyse `result` and write `mini.json` (with the verdicts) and `mini.md` to `out`; returns the page."""
    verdicts = analyse(result)
    out.mkdir(parents=True, exist_ok=True)
    result = {k: v for k, v in result.items() if k != "verdicts"}
    (out / "mini.json").write_text(json.dumps({**result, "verdicts": verdicts}, indent=1, default=str))
    md = markdown(result, verdicts, command)
    (out / "mini.md").write_text(md)
    return md


def main(argv: Optional[list[str]] = None) -> int:
    """`tgsample bench mini`: run the plan (or `--report` a saved run) and write `mini.md` / `mini.json`."""
    import shlex
    import sys

    from ..errors import ConfigError

    a = parse(argv)
    command = ("tgsample bench mini " + shlex.join(sys.argv[2:] if argv is None else argv)).strip()
    if a.report is not None:
        if not a.report.is_file():
            raise ConfigError(f"--report {str(a.report)!r} is not a file (a mini.json that tgsample bench mini wrote)")
        result = json.loads(a.report.read_text())
        print(write(result, a.out, result.get("command", command)))
        return 0
    plan = load_plan(a.plan)
    for key, value in (("replicates", a.replicates), ("per_caption", a.per_caption)):
        if value is not None:
            plan[key] = value
    if plan["replicates"] < 2 or plan["per_caption"] < 1 or a.jobs < 1:
        raise ConfigError(f"--jobs={a.jobs} must be >= 1, --replicates={plan['replicates']} >= 2 and "
                          f"--per-caption={plan['per_caption']} >= 1")
    if a.students is not None:
        chosen = [s for s in a.students.split(",") if s]
        unknown = sorted(set(chosen) - set(plan["students"]))
        if unknown or not chosen:
            raise ConfigError(f"--students={a.students!r}: {unknown or 'none'} not in the plan's {plan['students']}")
        plan["students"] = chosen
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    result = evaluate(plan, jobs=a.jobs)
    result["seconds"], result["command"] = round(time.perf_counter() - t0), command
    print(write(result, a.out, command))
    print(f"wrote {a.out / 'mini.md'} and {a.out / 'mini.json'} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
