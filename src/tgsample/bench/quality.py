"""`tgsample bench quality`: the paper's tables in miniature, on the shipped digit models.

For each student (default: `digits` and `digits-compact`) every configuration is sampled on
`R` replicates ("seeds") of `n` samples, classes balanced (sample `i` has label `i mod 10`,
noise seed `seed + r * n + i`). Each replicate is scored by the shipped digit classifier:

* `FD`: Frechet distance of its features against the real train split (1,437 images), the
  role FID plays in the paper; the real-data floor is the held-out test split (360 real images)
  scored the same way (FD has a small-sample bias ~1/n, so a floor at n=360 is a bit pessimistic
  next to samples at n=1000);
* `acc`: the fraction classified as the requested digit (the role of ImageReward / PickScore).

Results are **paired**: a configuration and its baseline share every random draw (initial
noise, the solver's ancestral noise; the teacher's renoise draws come from their own streams),
so a difference is computed per replicate and reported as the mean difference with its 95 %
t-interval over replicates. Lower FD is better; higher acc is better. `time` is the mean wall
time of one replicate's `tgsample.sample` call (`n` samples, this machine, the thread count
printed in the header).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..eval.stats import mean_ci

# ----------------------------------------------------------------------------- configurations


@dataclass
class Run:
    """One sampling configuration: a recipe derived from the student's published ones."""

    key: str
    label: str
    recipe: Callable[[Any, Any], Any]
    """(plain Recipe, guided Recipe) -> Recipe"""


@dataclass
class Row:
    """A table row: `run` compared with `base` (paired) or alone (`base=None`)."""

    table: str
    label: str
    run: str
    base: Optional[str] = None


def _plain(**fields: Any) -> Callable[[Any, Any], Any]:
    """The student's plain recipe with `fields` replaced."""
    return lambda plain, guided: plain.replace(**fields)


def _tg(student: Optional[dict] = None, **spec: Any) -> Callable[[Any, Any], Any]:
    """The student's teacher-guided recipe with `spec` changing its teacher-guidance options (and
    `student` its own guidance); recipe fields in `spec` (`solver`, ...) replace the recipe's."""
    fields = {k: spec.pop(k) for k in list(spec) if k in ("solver", "schedule", "steps", "sigmas")}

    def make(plain: Any, guided: Any) -> Any:
        g = {**guided.guidance, **spec}
        if student is not None:
            g["student"] = student
        return guided.replace(guidance=g, **fields)

    return make


def _steps(k: int) -> Callable[[Any, Any], Any]:
    """The plain recipe with `k` more steps on the student's own sigma range."""
    def make(plain: Any, guided: Any) -> Any:
        from ..models.digits import student_schedule

        n = len(plain.sigmas) - 1 + k
        return plain.replace(sigmas=tuple(student_schedule(n, sigmas=plain.sigmas).tolist()))

    return make


def _karras(make: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """`make`'s recipe on a Karras schedule over the model's range with the same number of steps."""
    def karras(plain: Any, guided: Any) -> Any:
        r = make(plain, guided)
        return r.replace(sigmas=None, schedule="karras", steps=len(plain.sigmas) - 1)

    return karras


def _on_w1(name: str, value: float) -> dict:
    """CFG / CFG++ on the student at the fixed distilled scale `w = 1` (the plain conditional student)."""
    inner = {"name": name, "scale": value} if name == "cfg" else {"name": name, "lam": value}
    return {"name": "distilled_cfg", "scale": 1.0, "inner": inner}


def _plan(lams: Sequence[float], teacher_cfgs: Sequence[float], student_cfg: float,
          student_cfgpp: float) -> tuple[list[Run], list[Row]]:
    """All runs and table rows (the paper's tables, in miniature)."""
    R = Run
    cfg, cfgpp = _on_w1("cfg", student_cfg), _on_w1("cfgpp", student_cfgpp)
    runs = [
        R("plain", "N steps (student alone)", _plain()),
        R("tg", "N steps, 1st teacher-guided", _tg()),
        R("plain+1", "N+1 plain steps", _steps(1)),
        R("plain+2", "N+2 plain steps", _steps(2)),
        R("tg_current", "renoise current", _tg(renoise="current")),
        R("tg_random", "renoise random", _tg(renoise="random")),
        R("tg_2", "2 guided steps", _tg(guided_steps=2)),
        R("tg_at1", "2nd step guided", _tg(guided_steps=[1])),
        R("tg_at2", "3rd step guided", _tg(guided_steps=[2])),
        R("euler", "euler", _plain(solver="euler")),
        R("euler_tg", "euler + teacher", _tg(solver="euler")),
        R("dpm2s", "dpmpp_2s_ancestral", _plain(solver="dpmpp_2s_ancestral")),
        R("dpm2s_tg", "dpmpp_2s_ancestral + teacher", _tg(solver="dpmpp_2s_ancestral")),
        # CFG / CFG++ on the student use Euler: with LCM's fresh-noise step the direction is unused,
        # so CFG++ would reduce to CFG at scale lam there
        R("cfg", f"euler, CFG {student_cfg} on the w=1 student", _plain(guidance=cfg, solver="euler")),
        R("cfg_tg", f"euler, CFG {student_cfg} + teacher", _tg(cfg, solver="euler")),
        R("cfgpp", f"euler, CFG++ lam={student_cfgpp} on the w=1 student", _plain(guidance=cfgpp, solver="euler")),
        R("cfgpp_tg", f"euler, CFG++ lam={student_cfgpp} + teacher", _tg(cfgpp, solver="euler")),
        R("karras", "karras from sigma 80", _karras(_plain())),
        R("karras_tg", "karras from sigma 80 + teacher", _karras(_tg())),
    ]
    runs += [R(f"lam{v:g}", f"lam = {v:g}", _tg(lam=v)) for v in lams]
    runs += [R(f"tcfg{v:g}", f"teacher CFG {v:g}", _tg(teacher_cfg=v)) for v in teacher_cfgs]
    rows = [
        Row("main", "N steps (student alone)", "plain"),
        Row("main", "N steps, 1st teacher-guided (N+1 NFE)", "tg", "plain"),
        Row("main", "N+1 plain steps", "plain+1", "plain"),
        Row("main", "N+2 plain steps", "plain+2", "plain"),
        Row("main", "teacher-guided vs N+1 plain (same NFE)", "tg", "plain+1"),
        Row("renoise", "next (s = t - dt)", "tg", "plain"),
        Row("renoise", "current (s = t)", "tg_current", "plain"),
        Row("renoise", "random", "tg_random", "plain"),
        Row("guided steps", "1 guided step (1st)", "tg", "plain"),
        Row("guided steps", "2 guided steps (1st and 2nd)", "tg_2", "plain"),
        Row("guided steps", "only the 2nd step guided", "tg_at1", "plain"),
        Row("guided steps", "only the 3rd step guided", "tg_at2", "plain"),
        Row("solver", "lcm: + teacher vs alone", "tg", "plain"),
        Row("solver", "euler: + teacher vs alone", "euler_tg", "euler"),
        Row("solver", "dpmpp_2s_ancestral: + teacher vs alone", "dpm2s_tg", "dpm2s"),
        Row("solver", "euler alone vs lcm alone", "euler", "plain"),
        Row("solver", "dpmpp_2s_ancestral alone vs lcm alone", "dpm2s", "plain"),
        Row("student guidance", f"CFG {student_cfg}: + teacher vs alone", "cfg_tg", "cfg"),
        Row("student guidance", f"CFG++ {student_cfgpp}: + teacher vs alone", "cfgpp_tg", "cfgpp"),
        Row("student guidance", "CFG++ alone vs CFG alone", "cfgpp", "cfg"),
        Row("student guidance", "CFG alone vs distilled w alone (both euler)", "cfg", "euler"),
        Row("schedule", "own schedule: + teacher vs alone", "tg", "plain"),
        Row("schedule", "karras from 80: + teacher vs alone", "karras_tg", "karras"),
        Row("schedule", "karras alone vs own alone", "karras", "plain"),
    ]
    rows += [Row("lam", f"lam = {v:g}", f"lam{v:g}", "plain") for v in lams]
    rows += [Row("teacher CFG", f"teacher CFG {v:g}", f"tcfg{v:g}", "plain") for v in teacher_cfgs]
    return runs, rows


# ----------------------------------------------------------------------------- statistics

def verdict(m: float, h: float, better_low: bool) -> str:
    """`better` / `worse` when the interval excludes 0, else `no clear difference`."""
    if math.isnan(h) or abs(m) <= h:
        return "no clear difference"
    return "better" if (m < 0) == better_low else "worse"


# ----------------------------------------------------------------------------- sampling + scoring


class Scorer:
    """The classifier, the reference statistics (real train split) and the real-data floor."""

    def __init__(self, classifier: Any = None):
        from ..models.digits.classifier import feature_stats, frechet_distance, load_classifier
        from ..models.digits.data import load

        self.clf = classifier or load_classifier()
        self._fd, self._stats = frechet_distance, feature_stats
        x_ref, _ = load("train")
        self.ref = feature_stats(self.clf, x_ref)
        x_test, y_test = load("test")
        self.floor = {"FD": frechet_distance(feature_stats(self.clf, x_test), self.ref),
                      "acc": float((self.clf(x_test).argmax(1) == y_test).float().mean()), "n": len(x_test)}

    def __call__(self, x: Any, labels: Any) -> dict[str, float]:
        import torch

        with torch.no_grad():
            logits = self.clf(x)
        return {"FD": self._fd(self._stats(self.clf, x), self.ref),
                "acc": float((logits.argmax(1) == labels).float().mean())}


def sample_run(run: Run, student: Any, teacher: Any, cond: dict, uncond: dict, seeds: list[int]) -> Any:
    """Samples `[n, 1, 8, 8]` of one configuration: `tgsample.sample` with its recipe."""
    from ..sampling import sample

    recipe = run.recipe(student.recipes[""], student.recipes["++"])
    return sample(student, cond, uncond=uncond, seeds=seeds, recipe=recipe, teacher=teacher)


def published(student: Any) -> dict:
    """The student's published settings the tables quote, read from its recipes."""
    plain, guided = student.recipes[""], student.recipes["++"]
    g = guided.guidance
    return {"sigmas": list(plain.sigmas), "steps": len(plain.sigmas) - 1, "solver": plain.solver,
            "w": plain.guidance["scale"], "lam": g["lam"], "renoise": g["renoise"], "teacher_cfg": g["teacher_cfg"],
            "guided_steps": g["guided_steps"]}


def evaluate(students: dict[str, Any], teacher: Any, *, replicates: int = 10, n: int = 1000, seed: int = 0,
             lams: Sequence[float] = (0.1, 0.2, 0.3, 0.5, 0.7, 1.0), teacher_cfgs: Sequence[float] = (1, 1.5, 2, 3, 4),
             student_cfg: float = 2.0, student_cfgpp: float = 0.6, teacher_steps: int = 32,
             teacher_replicates: Optional[int] = None, scorer: Optional[Scorer] = None,
             tables: Optional[Sequence[str]] = None, progress: bool = True) -> dict:
    """Score every run on every replicate; returns a JSON-able dict of raw per-replicate metrics."""
    import torch
    from tqdm.auto import tqdm

    from ..errors import ConfigError

    scorer = scorer or Scorer()
    runs, rows = _plan(lams, teacher_cfgs, student_cfg, student_cfgpp)
    if tables is not None:
        unknown = set(tables) - {r.table for r in rows}
        if unknown:
            raise ConfigError(f"unknown tables {sorted(unknown)}; allowed: {sorted({r.table for r in rows})}")
        rows = [r for r in rows if r.table in tables]
        needed = {r.run for r in rows} | {r.base for r in rows if r.base}
        runs = [r for r in runs if r.key in needed]
    labels = torch.arange(n) % 10
    cond, uncond = (next(iter(students.values())) if students else teacher).encode(labels.tolist(), None)
    out: dict[str, Any] = {"n": n, "replicates": replicates, "seed": seed, "floor": scorer.floor,
                           "threads": torch.get_num_threads(), "students": {}, "rows": [r.__dict__ for r in rows],
                           "labels": {r.key: r.label for r in runs}}
    t_reps = replicates if teacher_replicates is None else min(teacher_replicates, replicates)
    total = sum(replicates * len(runs) for _ in students) + t_reps
    bar = tqdm(total=total, desc="bench quality", unit="run", disable=not progress)
    # the ceiling: the teacher with its own recipe, on teacher_steps steps
    from ..resolve import resolve
    from ..sampling import sample

    ceiling = resolve(teacher, steps=teacher_steps)
    tres = []
    for r in range(t_reps):
        seeds = [seed + r * n + i for i in range(n)]
        t0 = time.perf_counter()
        x = sample(teacher, cond, uncond=uncond, seeds=seeds, run=ceiling)
        dt = time.perf_counter() - t0
        m = int(scorer.floor["n"])  # the same score on the floor's sample size (FD is biased ~1/n)
        tres.append({**scorer(x, labels), "time": dt, "FD_at_floor_n": scorer(x[:m], labels[:m])["FD"]})
        bar.update(1)
    c = ceiling.as_dict()
    own = f"CFG {c['guidance']['scale']:g}" if c["guidance"]["name"] == "cfg" else c["guidance"]["name"]
    label = f"teacher, {c['steps']} {c['solver'].capitalize()} steps ({c['schedule']}), {own}"
    out["teacher"] = None if not tres else {"label": label, "results": tres}
    for name, student in students.items():
        res: dict[str, list[dict]] = {run.key: [] for run in runs}
        todo, seen = [], {}
        for run in runs:  # a configuration equal to an earlier one (a sweep value at the default): score it once
            recipe = run.recipe(student.recipes[""], student.recipes["++"])
            if recipe in seen:
                res[run.key] = res[seen[recipe]]
                bar.update(replicates)
            else:
                seen[recipe] = run.key
                todo.append(run)
        for r in range(replicates):
            seeds = [seed + r * n + i for i in range(n)]
            for run in todo:
                t0 = time.perf_counter()
                x = sample_run(run, student, teacher, cond, uncond, seeds)
                res[run.key].append({**scorer(x, labels), "time": time.perf_counter() - t0})
                bar.update(1)
        out["students"][name] = {"results": res, "published": published(student),
                                 "recipes": {v: r.as_dict() for v, r in student.recipes.items()},
                                 "params": sum(p.numel() for p in student.denoiser.parameters())}
    bar.close()
    return out


# ----------------------------------------------------------------------------- report


def _fmt(m: float, h: float, digits: int) -> str:
    return f"{m:+.{digits}f} ± {h:.{digits}f}" if not math.isnan(h) else f"{m:+.{digits}f}"


def _summary(vals: list[dict], key: str) -> tuple[float, float]:
    return mean_ci([v[key] for v in vals])


def markdown(result: dict, command: str = "") -> str:
    """The tables (one per study, both students side by side in rows)."""
    n, k = result["n"], result["replicates"]
    lines = [f"Paired over {k} replicates x {n} samples (classes balanced); mean ± 95 % t-interval half-width. "
             f"FD: Frechet distance in the digit classifier's feature space vs the real train split "
             f"(lower is better); acc: classifier accuracy on the requested digit (higher is better); "
             f"Δ = configuration − baseline on the same noise; time = wall seconds per {n} samples "
             f"({result['threads']} CPU thread(s)).", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    f = result["floor"]
    lines += ["| reference | FD | acc | time (s) |", "|---|---|---|---|",
              f"| real data floor (held-out test split, n={f['n']}) | {f['FD']:.3f} | {f['acc']:.3f} | |"]
    if result["teacher"]:
        t = result["teacher"]["results"]
        fd, fh = _summary(t, "FD")
        ac, ah = _summary(t, "acc")
        lines.append(f"| {result['teacher']['label']} ({len(t)} replicates of {n}) | {fd:.3f} ± {fh:.3f} | "
                     f"{ac:.4f} ± {ah:.4f} | {sum(v['time'] for v in t) / len(t):.2f} |")
        if "FD_at_floor_n" in t[0]:
            fm, fmh = _summary(t, "FD_at_floor_n")
            lines.append(f"| the same teacher samples, first {f['n']} of each replicate (the floor's n) | "
                         f"{fm:.3f} ± {fmh:.3f} | | |")
    for name, s in result["students"].items():
        d = s["published"]
        guided = "first step" if d["guided_steps"] == 1 else f"guided steps {d['guided_steps']}"
        lines += ["", f"Student `{name}` ({s['params']:,} parameters): own schedule {d['sigmas']}, {d['steps']} steps, "
                  f"solver {d['solver']}, w = {d['w']}; teacher guidance: lam = {d['lam']}, renoise {d['renoise']}, "
                  f"teacher CFG {d['teacher_cfg']}, {guided}."]
    tables: dict[str, list[dict]] = {}
    for row in result["rows"]:
        tables.setdefault(row["table"], []).append(row)
    for table, rows in tables.items():
        lines += ["", f"### {table}", "", "| student | configuration | baseline | FD | ΔFD | Δacc | verdict | time (s) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, s in result["students"].items():
            res = s["results"]
            for row in rows:
                run = res[row["run"]]
                fd, fh = _summary(run, "FD")
                tm = sum(v["time"] for v in run) / len(run)
                if row["base"] is None:
                    ac, ah = _summary(run, "acc")
                    lines.append(f"| {name} | {row['label']} | — | {fd:.3f} ± {fh:.3f} | | acc {ac:.4f} ± {ah:.4f} | | {tm:.2f} |")
                    continue
                base = res[row["base"]]
                dfd = mean_ci([a["FD"] - b["FD"] for a, b in zip(run, base)])
                dac = mean_ci([a["acc"] - b["acc"] for a, b in zip(run, base)])
                v_fd, v_ac = verdict(*dfd, better_low=True), verdict(*dac, better_low=False)
                verdict_s = f"FD {v_fd}; acc {v_ac}"
                lines.append(f"| {name} | {row['label']} | {result['labels'][row['base']]} | {fd:.3f} | "
                             f"{_fmt(*dfd, 3)} | {_fmt(*dac, 4)} | {verdict_s} | {tm:.2f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> Path:
    """A forest plot (PIL): ΔFD with its 95 % interval for every paired row, one panel per student."""
    from PIL import Image, ImageDraw

    students = list(result["students"])
    rows = [r for r in result["rows"] if r["base"] is not None]
    row_h, left, width, top = 18, 430, 300, 40
    W = left + (width + 40) * len(students) + 20
    H = top + row_h * len(rows) + 40
    img = Image.new("RGB", (W, H), "white")
    g = ImageDraw.Draw(img)
    g.text((10, 8), "ΔFD vs baseline (paired, 95% CI); left of the red line = better".replace("Δ", "d"), fill="black")
    for k, name in enumerate(students):
        res = result["students"][name]["results"]
        stats = [mean_ci([a["FD"] - b["FD"] for a, b in zip(res[r["run"]], res[r["base"]])]) for r in rows]
        # signed log scale, so that effects of 0.05 and of 20 FD both show: f(v) = sign(v) log10(1 + |v| / 0.05)
        slog = lambda v: math.copysign(math.log10(1 + abs(v) / 0.05), v)  # noqa: E731
        span = max(1e-6, 1.1 * max(abs(slog(m)) for m, h in stats))
        x0 = left + k * (width + 40)
        to_x = lambda v: x0 + width / 2 + max(-1.0, min(1.0, slog(v) / span)) * (width / 2 - 5)  # noqa: E731
        g.text((x0, top - 16), f"{name} (signed log scale)", fill="black")
        for tick in (-10, -1, -0.1, 0.1, 1, 10):
            if abs(slog(tick)) <= span:
                g.line([(to_x(tick), top + row_h * len(rows)), (to_x(tick), top + row_h * len(rows) + 4)], fill="black")
                g.text((to_x(tick) - 8, top + row_h * len(rows) + 6), f"{tick:g}", fill="black")
        g.line([(to_x(0), top), (to_x(0), top + row_h * len(rows))], fill="red")
        for j, ((m, h), r) in enumerate(zip(stats, rows)):
            y = top + j * row_h + row_h // 2
            if k == 0:
                g.text((10, y - 6), f"{r['table']}: {r['label']}"[:70], fill="black")
            hh = 0 if math.isnan(h) else h
            color = "green" if m + hh < 0 else ("firebrick" if m - hh > 0 else "gray")
            g.line([(to_x(m - hh), y), (to_x(m + hh), y)], fill=color, width=2)
            g.ellipse([to_x(m) - 3, y - 3, to_x(m) + 3, y + 3], fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


# ----------------------------------------------------------------------------- CLI


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v.strip()]


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """The command line of `tgsample bench quality`."""
    from ..cli import ArgumentParser

    p = ArgumentParser(prog="tgsample bench quality", description=__doc__.split("\n")[0])
    p.add_argument("--students", default="digits,digits-compact", help="comma-separated registered students")
    p.add_argument("--teacher", default="digits")
    p.add_argument("--seeds", type=int, default=10, help="replicates (paired seeds sets); default 10")
    p.add_argument("--n", type=int, default=1000, help="samples per replicate; default 1000")
    p.add_argument("--seed", type=int, default=0, help="first noise seed")
    p.add_argument("--lams", type=_floats, default=[0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    p.add_argument("--teacher-cfgs", type=_floats, default=[1, 1.5, 2, 3, 4])
    p.add_argument("--student-cfg", type=float, default=2.0, help="CFG scale on the w=1 student")
    p.add_argument("--student-cfgpp", type=float, default=0.6, help="CFG++ lam on the w=1 student")
    p.add_argument("--teacher-steps", type=int, default=32)
    p.add_argument("--teacher-seeds", type=int, default=None,
                   help="replicates of the teacher ceiling (default: --seeds; 0 skips it)")
    p.add_argument("--tables", default=None, help="comma-separated subset of: main, renoise, guided steps, solver, "
                   "student guidance, schedule, lam, teacher CFG (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"), help="writes quality.md, quality.json, quality.png")
    a = p.parse_args(argv)
    from ..errors import ConfigError

    if a.seeds < 1 or a.n < 10:
        raise ConfigError(f"--seeds={a.seeds} must be >= 1 and --n={a.n} >= 10 (one sample per class)")
    return a


def main(argv: Optional[list[str]] = None) -> int:
    """`tgsample bench quality`: every table on the digits models; writes `quality.md`, `.json`, `.png`."""
    import sys

    a = parse(argv)
    import torch

    from .. import registry

    if a.threads:
        torch.set_num_threads(a.threads)
    students = {name: registry.create("students", name) for name in a.students.split(",") if name}
    teacher = registry.create("teachers", a.teacher)
    t0 = time.perf_counter()
    result = evaluate(students, teacher, replicates=a.seeds, n=a.n, seed=a.seed, lams=a.lams,
                      teacher_cfgs=a.teacher_cfgs, student_cfg=a.student_cfg, student_cfgpp=a.student_cfgpp,
                      teacher_steps=a.teacher_steps, teacher_replicates=a.teacher_seeds,
                      tables=None if a.tables is None else [t.strip() for t in a.tables.split(",")])
    result["seconds"] = round(time.perf_counter() - t0, 1)
    import shlex

    command = "tgsample bench quality " + shlex.join(sys.argv[1:] if argv is None else argv)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "quality.json").write_text(json.dumps(result, indent=1))
    md = markdown(result, command.strip())
    (a.out / "quality.md").write_text(md)
    png = plot(result, a.out / "quality.png")
    print(md)
    print(f"wrote {a.out / 'quality.md'}, {a.out / 'quality.json'}, {png} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
