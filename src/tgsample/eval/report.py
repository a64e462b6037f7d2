"""An evaluation as a table to paste into a paper (Markdown), JSON, a per-image CSV and a forest plot.

Numbers are rounded to their uncertainty: two significant digits of the interval's half-width. The plot is
drawn with PIL (matplotlib is not a dependency: with it installed, `import lightning` also imports pyplot
through torchmetrics, which slows every generation process).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

__all__ = ["markdown", "save", "plot", "fmt"]

_KID_SCALE = 1e3  # Inception KID is printed x 10^3, as papers do


def _scale(metric: dict) -> tuple[float, str]:
    return (_KID_SCALE, " x 10³") if metric["key"] == "kid" and metric["label"] == "KID" else (1.0, "")


def _decimals(halfwidth: float, default: int = 3) -> int:
    if not math.isfinite(halfwidth) or halfwidth <= 0:
        return default
    return max(0, min(6, 1 - math.floor(math.log10(halfwidth))))


def fmt(value: float, lo: float = float("nan"), hi: float = float("nan"), std: Optional[float] = None,
        signed: bool = False) -> str:
    """`v [lo, hi]` or `v ± std`, rounded to the uncertainty."""
    if std is not None:
        d = _decimals(std)
        return f"{value:{'+' if signed else ''}.{d}f} ± {std:.{d}f}" if math.isfinite(std) else f"{value:.{d}f}"
    d = _decimals((hi - lo) / 2)
    sign = "+" if signed else ""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{value:{sign}.{d}f}"
    return f"{value:{sign}.{d}f} [{lo:{sign}.{d}f}, {hi:{sign}.{d}f}]"


def _p(p: float) -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def _arrow(higher: bool) -> str:
    return "↑" if higher else "↓"


def _header(result: Any) -> str:
    lvl = int(round(result.settings["level"] * 100))
    parts = [f"{result.n} images per run"]
    if len(result.runs) > 1:
        parts[0] += " (the ids every run shares: same prompts and seeds)"
    ref = result.reference
    if ref is not None:
        parts.append(f"reference: `{ref.get('source')}` ({ref.get('n')} images)")
    nets = result.networks
    if nets.get("features"):
        f = nets["features"]
        parts.append(f"feature network: {f['name']} (weights {f['weights']})")
    for sc in nets.get("scores", []):
        parts.append(f"scorer: {sc['name']} (weights {sc['weights']})")
    s = result.settings
    how = [f"FID ± its bootstrap standard error ({s['resamples']} resamples of the image ids)",
           f"KID ± its std over {s['kid_subsets']} subsets",
           f"scores: mean with its {lvl} % t-interval (Wilson for 0/1 scores)"]
    return "; ".join(parts) + ".\n\n" + "Values: " + "; ".join(how) + "."


def markdown(result: Any, command: str = "") -> str:
    """The per-run table and the paired-comparison table (Markdown)."""
    lines = [_header(result), ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    cols = []
    for m in result.metrics:
        cols.append(f"{m['label']}{_scale(m)[1]} {_arrow(m['higher_is_better'])}")
    lines += ["| run | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for run in result.runs:
        cells = []
        for m in result.metrics:
            v = m["per_run"][run["name"]]
            k = _scale(m)[0]
            if "std" in v:
                cells.append(fmt(v["value"] * k, std=v["std"] * k))
            else:
                cells.append(fmt(v["value"], v["lo"], v["hi"]))
        lines.append(f"| {run['name']} | " + " | ".join(cells) + " |")
    if result.comparisons:
        lvl = int(round(result.settings["level"] * 100))
        lines += ["", f"Paired comparisons with `{result.settings['baseline']}` (Δ = run − baseline on the same images); "
                      f"p-values Holm-adjusted over the {len(result.comparisons)} comparisons; verdicts at a "
                      f"family-wise {100 - lvl} % level; win rate: share of prompts whose mean score is better "
                      "(ties count half), Wilson interval.", "",
                  f"| run | metric | Δ [{lvl} % CI] | p | p (Holm) | win rate (prompts) | verdict | interval |",
                  "|---|---|---|---|---|---|---|---|"]
        scales = {m["key"]: _scale(m) for m in result.metrics}
        for c in result.comparisons:
            k, unit = scales[c["metric"]]
            label = c["label"] + unit
            win = (f"{c['win_rate']:.2f} [{c['win_lo']:.2f}, {c['win_hi']:.2f}] ({c['prompts']})"
                   if "win_rate" in c else "—")
            lines.append(f"| {c['run']} | {label} {_arrow(c['higher_is_better'])} | "
                         f"{fmt(c['delta'] * k, c['lo'] * k, c['hi'] * k, signed=True)} | {_p(c['p'])} | "
                         f"{_p(c['p_holm'])} | {win} | {c['verdict']} | {c['method']} |")
    return "\n".join(lines) + "\n"


def _nice_ticks(lo: float, hi: float) -> list[float]:
    """About five round tick values covering `[lo, hi]`."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 1.0
    for m in (1, 2, 5, 10):
        if span / (m * step) <= 5:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def plot(result: Any, path: Path) -> Optional[Path]:
    """A forest plot (PNG, drawn with PIL): every paired Δ with its interval, one panel per metric, a line at 0;
    green / red when Holm-significantly better / worse. `None` without comparisons."""
    if not result.comparisons:
        return None
    from PIL import Image, ImageDraw

    keys = [m["key"] for m in result.metrics if any(c["metric"] == m["key"] for c in result.comparisons)]
    runs = list(dict.fromkeys(c["run"] for c in result.comparisons))
    label_w, panel_w, row_h, top, pad = 10 + 7 * max(len(r) for r in runs), 260, 28, 46, 18
    width, height = label_w + len(keys) * (panel_w + pad) + pad, top + row_h * len(runs) + 40
    img = Image.new("RGB", (width, height), "white")
    g = ImageDraw.Draw(img)
    lvl = int(round(result.settings["level"] * 100))
    g.text((10, 6), f"difference vs {result.settings['baseline']} ({lvl} % intervals; green / red: Holm-significant "
                    "better / worse)", fill="black")
    colors = {"better": (0, 140, 60), "worse": (200, 30, 30), "no clear difference": (110, 110, 110)}
    for j, r in enumerate(runs):
        g.text((10, top + j * row_h + row_h // 2 - 5), r, fill="black")
    for k, key in enumerate(keys):
        cs = {c["run"]: c for c in result.comparisons if c["metric"] == key}
        scale, unit = _scale(result.metric(key))
        vals = [v * scale for c in cs.values() for v in (c["lo"], c["hi"], c["delta"]) if math.isfinite(v)] + [0.0]
        lo, hi = min(vals), max(vals)
        lo, hi = (lo - 1, hi + 1) if hi == lo else (lo - 0.08 * (hi - lo), hi + 0.08 * (hi - lo))
        x0 = label_w + pad + k * (panel_w + pad)
        to_x = lambda v: x0 + (v - lo) / (hi - lo) * panel_w  # noqa: E731
        bottom = top + row_h * len(runs)
        first = next(iter(cs.values()))
        g.text((x0, top - 16), f"{first['label']}{unit} {'higher' if first['higher_is_better'] else 'lower'} is better",
               fill="black")
        g.rectangle([x0, top, x0 + panel_w, bottom], outline=(180, 180, 180))
        g.line([(to_x(0), top), (to_x(0), bottom)], fill="black")
        for t in _nice_ticks(lo, hi):
            g.line([(to_x(t), bottom), (to_x(t), bottom + 4)], fill="black")
            g.text((to_x(t) - 10, bottom + 6), f"{t:g}", fill="black")
        for j, r in enumerate(runs):
            c = cs.get(r)
            if c is None:
                continue
            y, color = top + j * row_h + row_h // 2, colors[c["verdict"]]
            if math.isfinite(c["lo"]) and math.isfinite(c["hi"]):
                g.line([(to_x(c["lo"] * scale), y), (to_x(c["hi"] * scale), y)], fill=color, width=2)
                for v in (c["lo"], c["hi"]):
                    g.line([(to_x(v * scale), y - 4), (to_x(v * scale), y + 4)], fill=color, width=2)
            x = to_x(c["delta"] * scale)
            g.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save(result: Any, out: Path, command: str = "", with_plot: bool = True) -> list[Path]:
    """`eval.md`, `eval.json`, `per_image.csv` and (with comparisons) `eval.png` in `out`."""
    from .evaluation import write_per_image

    out.mkdir(parents=True, exist_ok=True)
    md = out / "eval.md"
    md.write_text(markdown(result, command), encoding="utf-8")
    js = out / "eval.json"
    js.write_text(json.dumps({**result.as_dict(), "command": command}, indent=1, default=str), encoding="utf-8")
    paths = [md, js, write_per_image(result, out / "per_image.csv")]
    if with_plot:
        png = plot(result, out / "eval.png")
        if png is not None:
            paths.append(png)
    return paths
