"""An evaluation as a table to paste into a paper (Markdown), JSON, a per-image CSV and a forest plot.

Numbers are rounded to their uncertainty: two significant digits of the interval's half-width.
The plot needs matplotlib (``pip install 'tgsample[eval]'``); without it the other files are still written.
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
    """``v [lo, hi]`` or ``v ± std``, rounded to the uncertainty."""
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


def plot(result: Any, path: Path) -> Optional[Path]:
    """A forest plot of every paired Δ with its interval, one panel per metric; ``None`` without matplotlib
    or without comparisons."""
    if not result.comparisons:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = [m["key"] for m in result.metrics if any(c["metric"] == m["key"] for c in result.comparisons)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys) + 0.8, 0.5 * len(result.runs) + 1.6),
                             squeeze=False)
    colors = {"better": "tab:green", "worse": "tab:red", "no clear difference": "tab:gray"}
    for ax, key in zip(axes[0], keys):
        cs = [c for c in result.comparisons if c["metric"] == key]
        k, unit = _scale(result.metric(key))
        for y, c in enumerate(cs):
            ax.errorbar([c["delta"] * k], [y], xerr=[[(c["delta"] - c["lo"]) * k], [(c["hi"] - c["delta"]) * k]],
                        fmt="o", color=colors[c["verdict"]], capsize=3)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_yticks(range(len(cs)), [c["run"] for c in cs])
        ax.set_ylim(-0.7, len(cs) - 0.3)
        ax.set_title(f"Δ {cs[0]['label']}{unit} {_arrow(cs[0]['higher_is_better'])}",
                     fontsize=9)
        ax.tick_params(labelsize=8)
    fig.suptitle(f"vs {result.settings['baseline']} ({int(round(result.settings['level'] * 100))} % intervals; "
                 "green/red: Holm-significant)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def save(result: Any, out: Path, command: str = "", with_plot: bool = True) -> list[Path]:
    """``eval.md``, ``eval.json``, ``per_image.csv`` and (if it can) ``eval.png`` in ``out``."""
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
