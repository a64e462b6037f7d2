"""`tgsample eval` and `tgsample export`.

    tgsample eval runs/digits-compact runs/digits-compact++   # digit models: defaults from the run
    tgsample eval runs/lcm runs/lcm++ --reference coco10k.npz --features inception \\
        --scores clip,pickscore \\
        --weights inception=/w/inception-2015-12-05.pt --weights clip=/w/clip-vit-large-patch14
    tgsample eval --reference-stats /data/coco-val2014-10k --features inception --out coco10k.npz
    tgsample export runs/lcm --format geneval \\
        --metadata geneval/prompts/evaluation_metadata.jsonl --out geneval/lcm

`eval` writes `eval.md` (the tables), `eval.json`, `per_image.csv` and `eval.png` to `--out` and
prints the tables. Feature extraction runs on Lightning `Trainer.predict`: `--devices 8 --strategy ddp`
(or torchrun / SLURM, as for `tgsample generate`). Exit status: 0 done, 2 bad input (one line, no traceback).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import TgsampleError

__all__ = ["main", "export_main", "eval_parser", "export_parser"]


def _list(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def _devices(s: str) -> Any:
    return int(s) if s.isdigit() else s


def eval_parser() -> argparse.ArgumentParser:
    """The argument parser of `tgsample eval`."""
    p = argparse.ArgumentParser(prog="tgsample eval", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Defaults (--features, --reference, --scores) come from the first run's student "
                                       "(tgsample.eval.EVAL_DEFAULTS), else inception / none / none.")
    p.add_argument("runs", nargs="*", help="run directories (tgsample generate outputs) or image folders; the first is "
                   "the baseline of the paired comparisons")
    g = p.add_argument_group("what to compute")
    g.add_argument("--reference", default="default", help="a folder, a built-in dataset (digits-train, ...), a .npz of "
                   "--reference-stats, or 'none'")
    g.add_argument("--features", default="default", help="feature network of FID / KID: inception, digits, clip, ... "
                   "or package.module:attr")
    g.add_argument("--scores", default="default", help="comma-separated per-image scorers: clip, pickscore, "
                   "imagereward, hpsv2, digits, module:attr ... or 'none'")
    g.add_argument("--metrics", type=_list, default=None, help="comma-separated subset to report (fid, kid, clip, acc, "
                   "...); default: all available")
    g.add_argument("--weights", action="append", default=[], metavar="NAME=PATH",
                   help="local weights of a network (repeatable); nothing is downloaded")
    g.add_argument("--labels", type=_list, default=None, help="comma-separated names of the runs in tables")
    g.add_argument("--baseline", default=None, help="the run (label) the others are compared with (default: the first)")
    g.add_argument("--reference-stats", metavar="SOURCE", default=None,
                   help="instead of evaluating: compute reference statistics of a folder or dataset into --out (.npz)")
    g.add_argument("--no-reference-features", action="store_true",
                   help="with --reference-stats: keep only mu and sigma (smaller; no KID)")
    s = p.add_argument_group("statistics")
    s.add_argument("--level", type=float, default=0.95, help="confidence level (default 0.95)")
    s.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of FID (default 1000)")
    s.add_argument("--bootstrap", choices=("basic", "percentile"), default="basic")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--kid-subsets", type=int, default=100)
    s.add_argument("--kid-subset-size", type=int, default=1000)
    s.add_argument("--kid-folds", type=int, default=10)
    r = p.add_argument_group("running")
    r.add_argument("--out", default=None, help="output folder (default outputs/eval), or the .npz of --reference-stats")
    r.add_argument("--cache-dir", default=None, help="feature cache (default $TGSAMPLE_CACHE or ~/.cache/tgsample/eval)")
    r.add_argument("--batch-size", type=int, default=64)
    r.add_argument("--num-workers", type=int, default=4, help="DataLoader workers decoding images (default 4)")
    r.add_argument("--accelerator", default="auto")
    r.add_argument("--devices", type=_devices, default=1)
    r.add_argument("--num-nodes", type=int, default=1)
    r.add_argument("--strategy", default="auto")
    r.add_argument("--precision", default="32-true")
    r.add_argument("--no-plot", action="store_true")
    r.add_argument("--no-progress", action="store_true")
    return p


def _weights(pairs: Sequence[str]) -> dict[str, str]:
    from ..errors import ConfigError

    out = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--weights {pair!r} must be NAME=PATH, e.g. inception=/w/inception-2015-12-05.pt")
        out[name] = path
    return out


def _none(v: Optional[str]) -> Any:
    return None if v in ("none", "None", "") else v


def _run_eval(a: argparse.Namespace, command: str) -> int:
    from ..errors import ConfigError
    from .evaluation import evaluate, reference_stats

    trainer = {"accelerator": a.accelerator, "devices": a.devices, "num_nodes": a.num_nodes, "strategy": a.strategy,
               "precision": a.precision}
    common = dict(cache_dir=a.cache_dir, batch_size=a.batch_size, num_workers=a.num_workers, trainer=trainer,
                  progress=not a.no_progress)
    weights = _weights(a.weights)
    if a.reference_stats is not None:
        if a.runs:
            raise ConfigError("--reference-stats computes statistics of one folder or dataset; give no runs with it")
        features = "inception" if a.features == "default" else a.features
        out = Path(a.out) if a.out else Path(f"{Path(a.reference_stats).name}-{features.replace(':', '_')}.npz")
        if out.suffix != ".npz":
            raise ConfigError(f"--out {str(out)!r}: reference statistics are written as a .npz file")
        ref = reference_stats(a.reference_stats, features, out=out, weights=weights.get(features),
                              keep_features=not a.no_reference_features, **common)
        if ref is not None:
            print(f"wrote {out}: {ref.provenance['count']} images of {ref.provenance['source']}, features "
                  f"{ref.provenance['features']['name']} (weights {ref.provenance['features']['weights']})")
        return 0
    if not a.runs:
        raise ConfigError("give at least one run directory (or --reference-stats SOURCE); see tgsample eval --help")
    scores: Any = a.scores
    if scores not in ("default",):
        scores = [] if _none(scores) is None else _list(scores)
    result = evaluate(a.runs, reference=_none(a.reference), features=_none(a.features), scores=scores,
                      metrics=a.metrics, weights=weights, labels=a.labels,
                      baseline=a.baseline if a.baseline is not None else 0, level=a.level, resamples=a.resamples,
                      bootstrap=a.bootstrap, seed=a.seed, kid_subsets=a.kid_subsets,
                      kid_subset_size=a.kid_subset_size, kid_folds=a.kid_folds, **common)
    if result is None:  # another rank of a multi-process run
        return 0
    out = Path(a.out or "outputs/eval")
    paths = result.save(out, command, plot=not a.no_plot)
    print(result.markdown(command))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """`tgsample eval`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = eval_parser().parse_args(argv)
    try:
        return _run_eval(a, "tgsample eval " + shlex.join(argv))
    except TgsampleError as exc:
        print(f"tgsample eval: error: {exc}", file=sys.stderr)
        return 2


def export_parser() -> argparse.ArgumentParser:
    """The argument parser of `tgsample export`."""
    from .export import FORMATS, MODES

    p = argparse.ArgumentParser(prog="tgsample export", description="Write a run in an evaluator's folder layout "
                                "(links or copies; the run is never changed).")
    p.add_argument("run", help="a tgsample generate output directory")
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--out", required=True, help="the export folder (new, or an earlier export of the same run)")
    p.add_argument("--mode", choices=MODES, default="symlink")
    p.add_argument("--metadata", default=None, help="geneval: evaluation_metadata.jsonl; hpsv2: the benchmark "
                   "prompt folder; t2i-compbench: the prompt file (for its order)")
    return p


def export_main(argv: Optional[list[str]] = None) -> int:
    """`tgsample export`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    a = export_parser().parse_args(argv)
    try:
        from .export import export

        print(export(a.run, a.format, a.out, mode=a.mode, metadata=a.metadata))
    except TgsampleError as exc:
        print(f"tgsample export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
