"""`evaluate`: the paper's main table for one or more runs; `reference_stats`: statistics of a dataset.

For runs `A` (the baseline) and `B, C, ...` that share image ids, prompts and seeds (the same
records generated with different settings, e.g. `lcm` vs `lcm++`):

* **per run**: FID (and KID) of its images against the reference, and the mean of every per-image
  score (CLIP score, PickScore, ImageReward, HPS v2, digit accuracy, ...), on the ids all runs share;
* **paired, each run vs the baseline**: for a per-image score the mean of `d_i = s_B(i) - s_A(i)`
  with its t-interval and t-test; for FID the difference on the full set with a *paired* bootstrap
  interval (image ids resampled with replacement, the same resample for every run); for KID the mean
  difference over `kid_folds` disjoint folds of the ids (paired per fold, same reference subsets),
  with its t-interval; a **per-prompt win rate** for per-image scores (a prompt is won when its
  mean score is better; ties count half; Wilson interval); p-values **Holm-adjusted** over every
  comparison in the table (all runs x all metrics), and a verdict at the family-wise level.

The reference is a folder of images, a built-in dataset ([`tgsample.eval.runs.DATASETS`][tgsample.eval.runs.DATASETS])
or a
`.npz` written by [`reference_stats`][tgsample.eval.evaluation.reference_stats] (or any file with clean-fid /
pytorch-fid's `mu` and
`sigma`; `feats` too for KID). Statistics condition on the reference: it is fixed, the generated
images are the random part (each with its seed).
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError
from .errors import ReferenceStatsError
from .extractors import Extractor, build_extractor
from .runs import Source, open_source, paired_ids, prompt_key
from .stats import holm, mean_ci, t_pvalue, wilson

__all__ = ["evaluate", "reference_stats", "load_reference", "Reference", "Result", "EVAL_DEFAULTS"]

EVAL_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"features": "digits", "reference": "digits-train", "scores": ["digits"]},
    "digits-compact": {"features": "digits", "reference": "digits-train", "scores": ["digits"]},
}
"""a student's evaluation defaults (students registry name -> features, reference, scores); a model that
ships its own feature network adds one line here."""
FALLBACK = {"features": "inception", "reference": None, "scores": []}
"""The evaluation defaults for a run whose student has no entry in
[`EVAL_DEFAULTS`][tgsample.eval.evaluation.EVAL_DEFAULTS]."""

PathLike = Union[str, Path]
"""A path given as a string or a `Path`."""


# ----------------------------------------------------------------------------- reference statistics


@dataclass
class Reference:
    """Statistics of the reference set in one feature space.

    Attributes:
        mu: the mean of its features.
        sigma: the covariance of its features.
        features: the features themselves (KID needs them), or `None`.
        provenance: source, count, feature network identity, tgsample version, date (see
            [`reference_stats`][tgsample.eval.evaluation.reference_stats]).
    """

    mu: np.ndarray
    sigma: np.ndarray
    features: Optional[np.ndarray]
    provenance: dict


def _identity(extractor: Extractor, precision: str) -> dict:
    return {**extractor.identity(), "precision": str(precision)}


def _provenance(source: Source, extractor: Extractor, precision: str, n: int) -> dict:
    import hashlib

    from .. import __version__

    listing = hashlib.sha256(json.dumps([[it.id, it.fingerprint] for it in source.items]).encode()).hexdigest()
    return {"source": source.location, "kind": source.kind, "count": n, "features": _identity(extractor, precision),
            "tgsample": __version__, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "images_sha256": listing}


def _same_network(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("name", "weights", "transform"))


def load_reference(path: PathLike, extractor: Optional[Extractor] = None, precision: str = "32-true") -> Reference:
    """Read a `.npz` of reference statistics; with `extractor`, check it was made with that network."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ReferenceStatsError(f"reference statistics {str(path)!r} do not exist; make them with "
                                  "`tgsample eval --reference-stats FOLDER --out FILE.npz`")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ReferenceStatsError(f"reference statistics {str(path)!r} are not a readable .npz ({exc})") from None
    if "mu" not in data or "sigma" not in data:
        raise ReferenceStatsError(f"reference statistics {str(path)!r} have no 'mu' and 'sigma' arrays "
                                  f"(keys: {sorted(data)})")
    prov = json.loads(str(data["provenance"])) if "provenance" in data else {"source": str(p), "foreign": True}
    if extractor is not None and "features" in prov and not _same_network(prov["features"], extractor.identity()):
        raise ReferenceStatsError(
            f"reference statistics {str(path)!r} were computed with feature network {prov['features'].get('name')!r} "
            f"(weights {prov['features'].get('weights')}), not with {extractor.name!r} (weights "
            f"{extractor.identity()['weights']}); recompute them with the same --features")
    feats = data.get("feats")
    return Reference(np.asarray(data["mu"], np.float64), np.asarray(data["sigma"], np.float64),
                     None if feats is None else np.asarray(feats), prov)


def _reference_from(source: Source, extractor: Extractor, features: np.ndarray, precision: str) -> Reference:
    from .metrics import gaussian_stats

    mu, sigma = gaussian_stats(features)
    return Reference(mu, sigma, features, _provenance(source, extractor, precision, len(features)))


def reference_stats(source: Union[PathLike, Source], features: Union[str, Extractor] = "inception", *,
                    out: Optional[PathLike] = None, weights: Optional[PathLike] = None, keep_features: bool = True,
                    cache_dir: Optional[PathLike] = None, batch_size: int = 64, num_workers: int = 0,
                    trainer: Optional[dict] = None, progress: bool = True) -> Optional[Reference]:
    """Features of every image of `source` (a folder or a built-in dataset) -> `mu`, `sigma` (and the
    features, for KID), saved to `out` (`.npz`, readable by clean-fid / pytorch-fid too) with provenance:
    source, count, feature network identity (name, weights digest, transform, precision), tgsample version, date.
    Returns `None` on ranks other than 0."""
    from .features import extract

    src = open_source(source)
    ext = features if isinstance(features, Extractor) else build_extractor(features, weights)
    precision = str((trainer or {}).get("precision", "32-true"))
    if out is not None:
        _check_writable(Path(out).expanduser().parent)
    got = extract([src], [ext], cache_dir=cache_dir, batch_size=batch_size, num_workers=num_workers, trainer=trainer,
                  progress=progress)
    if got is None:
        return None
    ref = _reference_from(src, ext, got.outputs[0][0]["features"], precision)
    if out is not None:
        save_reference(ref, out, keep_features)
    return ref


def save_reference(ref: Reference, out: PathLike, keep_features: bool = True) -> Path:
    """Write `mu`, `sigma` (float64), `feats` (float32, optional) and `provenance` (JSON) to a `.npz`."""
    import os

    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"mu": ref.mu, "sigma": ref.sigma, "provenance": np.array(json.dumps(ref.provenance))}
    if keep_features and ref.features is not None:
        arrays["feats"] = np.asarray(ref.features, np.float32)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write to {str(folder)!r}: {exc.strerror or exc}") from None


# ----------------------------------------------------------------------------- the result


@dataclass
class Result:
    """An evaluation: per-run values, paired comparisons, and what they were computed from.

    `as_dict()` is the JSON; `markdown` the tables; [`save`][tgsample.eval.evaluation.Result.save] writes `eval.md`,
    `eval.json`,
    `per_image.csv` and `eval.png`.
    """

    runs: list[dict]
    n: int
    metrics: list[dict]
    comparisons: list[dict]
    reference: Optional[dict]
    networks: dict
    settings: dict
    per_image: dict = field(default_factory=dict, repr=False)
    """run -> metric -> array, rows = ids"""
    ids: list[str] = field(default_factory=list, repr=False)
    items: list[Any] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {"runs": self.runs, "n": self.n, "metrics": self.metrics, "comparisons": self.comparisons,
                "reference": self.reference, "networks": self.networks, "settings": self.settings}

    def metric(self, key: str) -> dict:
        return next(m for m in self.metrics if m["key"] == key)

    def comparison(self, metric: str, run: str) -> dict:
        return next(c for c in self.comparisons if c["metric"] == metric and c["run"] == run)

    def markdown(self, command: str = "") -> str:
        from .report import markdown

        return markdown(self, command)

    def save(self, out: PathLike, command: str = "", plot: bool = True) -> list[Path]:
        """Write the tables, the JSON, the per-image CSV and (with comparisons) the plot."""
        from .report import save

        return save(self, Path(out), command, plot)


# ----------------------------------------------------------------------------- evaluate


def _defaults(sources: Sequence[Source]) -> dict:
    return dict(EVAL_DEFAULTS.get(sources[0].student or "", FALLBACK))


def _as_list(v: Any) -> list:
    if v is None:
        return []
    if isinstance(v, (str, Extractor)) or not isinstance(v, Sequence):
        return [v]
    return list(v)


def _name(spec: Any) -> str:
    """The key of a network spec: a name / `module:attr` string, or the object's `name` (class name)."""
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def _fid_label(net: str) -> tuple[str, str]:
    return ("FID", "KID") if net == "inception" else (f"FID [{net}]", f"KID [{net}]")


def evaluate(runs: Sequence[Union[PathLike, Source]], *, reference: Any = "default", features: Any = "default",
             scores: Any = "default", metrics: Optional[Sequence[str]] = None,
             weights: Optional[Mapping[str, PathLike]] = None, labels: Optional[Sequence[str]] = None,
             baseline: Union[int, str] = 0, level: float = 0.95, resamples: int = 1000, bootstrap: str = "basic",
             seed: int = 0, kid_subsets: int = 100, kid_subset_size: int = 1000, kid_folds: int = 10,
             cache_dir: Optional[PathLike] = None, batch_size: int = 64, num_workers: int = 0,
             trainer: Optional[dict] = None, progress: bool = True) -> Optional[Result]:
    """Evaluate runs (see the module docs); the first run (or `baseline`) is the one the others are compared with.

    Args:
        runs: run directories (`tgsample generate` outputs), image folders, or [`Source`][tgsample.eval.runs.Source]
            objects.
        reference: a folder, a built-in dataset name, a `.npz` of
            [`reference_stats`][tgsample.eval.evaluation.reference_stats], or `None` (no
            FID / KID). `"default"`: the run's student's default
            ([`EVAL_DEFAULTS`][tgsample.eval.evaluation.EVAL_DEFAULTS]).
        features: the feature network of FID / KID: a name in
            [`tgsample.eval.extractors.EXTRACTORS`][tgsample.eval.extractors.EXTRACTORS],
            `"module:attr"`, an `nn.Module` or an [`Extractor`][tgsample.eval.extractors.Extractor] (`"default"`: the
            student's default,
            else `"inception"`).
        scores: per-image scorers (names, specs or Extractors), e.g. `["clip", "pickscore"]`.
        metrics: which to report (`"fid"`, `"kid"` and score names such as `"clip"`, `"acc"`); default:
            every one available.
        weights: local weights per network name (`{"inception": "/w/inception-2015-12-05.pt"}`).
        labels: names of the runs in tables (default: directory names).
        level: the confidence level of every interval, and the family-wise level of the verdicts.
        resamples: bootstrap resamples for FID.
        bootstrap: `"basic"` or `"percentile"` bootstrap interval.
        seed: seeds the bootstrap and the KID subsets.
        kid_subsets: the number of KID's random subsets (clean-fid's `num_subsets`).
        kid_subset_size: the largest size of a KID subset (clean-fid's `max_subset_size`).
        kid_folds: disjoint folds of the paired KID interval.
        cache_dir: where extracted features are cached
            ([`tgsample.eval.features.extract`][tgsample.eval.features.extract], as the next three).
        batch_size: images per batch of the feature extraction.
        num_workers: data-loader workers of the feature extraction.
        trainer: Lightning Trainer options of the feature extraction.
        progress: show a progress bar.

    Returns:
        a [`Result`][tgsample.eval.evaluation.Result], or `None` on ranks other than 0 of a multi-process run.
    """
    from .features import extract

    if not runs:
        raise ConfigError("give at least one run to evaluate")
    if labels is not None and len(labels) != len(runs):
        raise ConfigError(f"{len(labels)} labels for {len(runs)} runs")
    sources = [open_source(r, None if labels is None else labels[i]) for i, r in enumerate(runs)]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"runs need distinct labels (got {names}); pass labels=[...] (--labels a,b)")
    base = names.index(baseline) if isinstance(baseline, str) and baseline in names else baseline
    if not isinstance(base, int) or not 0 <= base < len(sources):
        raise ConfigError(f"baseline={baseline!r} is not a run index or label (runs: {names})")
    if resamples < 10 or not 0 < level < 1 or kid_folds < 2:
        raise ConfigError(f"resamples={resamples} must be >= 10, level={level} in (0, 1), kid_folds={kid_folds} >= 2")
    ids = paired_ids(sources) if len(sources) > 1 else [it.id for it in sources[0].items]

    d = _defaults(sources)
    features = d["features"] if isinstance(features, str) and features == "default" else features
    reference = d["reference"] if isinstance(reference, str) and reference == "default" else reference
    scores = d["scores"] if isinstance(scores, str) and scores == "default" else scores
    weights = dict(weights or {})
    unknown_w = sorted(set(weights) - {_name(s) for s in [features, *_as_list(scores)] if s is not None})
    if unknown_w:
        raise ConfigError(f"weights given for {unknown_w}, which this evaluation does not use")

    # networks: each built once (the feature network may also be a scorer, e.g. "digits")
    built: dict[str, Extractor] = {}

    def get(spec: Any) -> Extractor:
        key = _name(spec)
        if key not in built:
            built[key] = spec if isinstance(spec, Extractor) else build_extractor(spec, weights.get(key))
        return built[key]

    want_fd = reference is not None and features is not None and (metrics is None or {"fid", "kid"} & set(metrics))
    feat_ext = get(features) if want_fd else None
    score_exts = [get(s) for s in _as_list(scores)]
    extractors = list(built.values())
    precision = str((trainer or {}).get("precision", "32-true"))

    # the reference: a file (checked now), or images to run the feature network on
    ref: Optional[Reference] = None
    ref_source: Optional[Source] = None
    if want_fd:
        if isinstance(reference, (str, Path)) and str(reference).endswith(".npz"):
            ref = load_reference(reference, feat_ext, precision)
        else:
            ref_source = open_source(reference)

    score_keys: list[tuple[str, int, Optional[bool]]] = []  # (output, extractor index, higher is better)
    for ext in score_exts:
        for out, better in ext.outputs.items():
            if better is not None:
                score_keys.append((out, extractors.index(ext), better))
    available = (["fid"] if want_fd else []) + (["kid"] if want_fd and (ref is None or ref.features is not None) else [])
    available += [k for k, _, _ in score_keys]
    chosen = available if metrics is None else list(metrics)
    bad = [m for m in chosen if m not in available]
    if bad:
        why = " (KID needs reference features: this .npz has only mu and sigma)" if "kid" in bad and want_fd else ""
        raise ConfigError(f"metric(s) {bad} are not available{why}; available here: {available or 'none'} "
                          "(FID / KID need a reference and a feature network; scores need --scores)")
    if not chosen:
        raise ConfigError("nothing to compute: give a reference (for FID / KID) or scores (e.g. scores=['clip'])")

    all_sources = sources + ([ref_source] if ref_source is not None else [])
    fe = extractors.index(feat_ext) if feat_ext is not None else None
    use = [sorted({*(e for _, e, _ in score_keys), *([fe] if fe is not None else [])}) for _ in sources]
    if ref_source is not None:
        use.append([fe])
    t0 = time.perf_counter()
    got = extract(all_sources, extractors, use=use, cache_dir=cache_dir, batch_size=batch_size,
                  num_workers=num_workers, trainer=trainer, progress=progress)
    if got is None:
        return None
    seconds_extract = time.perf_counter() - t0
    if ref_source is not None:
        ref = _reference_from(ref_source, feat_ext, got.outputs[-1][fe]["features"], precision)

    positions = [{it.id: j for j, it in enumerate(s.items)} for s in sources]
    rows = [np.array([pos[i] for i in ids]) for pos in positions]
    items = [sources[0].by_id()[i] for i in ids]
    per_image: dict[str, dict[str, np.ndarray]] = {s.name: {} for s in sources}
    for s, src in enumerate(sources):
        for key, e, _ in score_keys:
            per_image[src.name][key] = got.outputs[s][e][key][rows[s], 0].astype(np.float64)
    feats = [got.outputs[s][fe]["features"][rows[s]] for s in range(len(sources))] if fe is not None else []

    import torch

    device = torch.device("cuda") if torch.cuda.is_available() and (trainer or {}).get("accelerator") != "cpu" \
        else torch.device("cpu")
    fid_label, kid_label = _fid_label(feat_ext.name if feat_ext is not None else "")
    metric_rows: list[dict] = []
    comparisons: list[dict] = []
    order = [base] + [i for i in range(len(sources)) if i != base]

    if "fid" in chosen:
        metric_rows.append(_fid(fid_label, sources, feats, ref, order, base, comparisons, level=level,
                                resamples=resamples, method=bootstrap, seed=seed, device=device))
    if "kid" in chosen:
        metric_rows.append(_kid(kid_label, sources, feats, ref, order, base, comparisons, level=level, seed=seed,
                                subsets=kid_subsets, subset_size=kid_subset_size, folds=kid_folds))
    for key, e, better in score_keys:
        if key in chosen:
            metric_rows.append(_score(key, better, sources, per_image, items, order, base, comparisons, level=level))

    adjusted = holm([c["p"] for c in comparisons])
    alpha = 1 - level
    for c, p in zip(comparisons, adjusted):
        c["p_holm"] = p
        better = c["higher_is_better"]
        if math.isnan(p) or p >= alpha:
            c["verdict"] = "no clear difference"
        else:
            c["verdict"] = "better" if (c["delta"] > 0) == better else "worse"

    nets = {"features": None if feat_ext is None else _identity(feat_ext, precision),
            "scores": [_identity(x, precision) for x in score_exts]}
    computed = {src.name: {extractors[e].name: got.computed[s][e] for e in use[s]} for s, src in enumerate(all_sources)}
    runs_info = [{"name": s.name, "location": s.location, "kind": s.kind, "images": len(s.items),
                  "student": s.student, "config_hash": s.info.get("config_hash"),
                  "settings": (s.info.get("config") or {}).get("settings")} for s in sources]
    settings = {"level": level, "resamples": resamples, "bootstrap": bootstrap, "seed": seed,
                "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "kid_folds": kid_folds,
                "baseline": names[base], "computed": computed, "extract_seconds": round(seconds_extract, 2),
                "precision": precision}
    ref_info = None if ref is None else {**ref.provenance, "n": int(len(ref.features)) if ref.features is not None
                                         else ref.provenance.get("count")}
    return Result(runs_info, len(ids), metric_rows, comparisons, ref_info, nets, settings, per_image, ids, items)


# ----------------------------------------------------------------------------- metric blocks


def _per_run_entry(value: float, lo: float = float("nan"), hi: float = float("nan"), **extra: Any) -> dict:
    return {"value": float(value), "lo": float(lo), "hi": float(hi), **extra}


def _compare(metric: str, label: str, run: str, baseline: str, higher: bool, delta: float, lo: float, hi: float,
             p: float, method: str, n: int, **extra: Any) -> dict:
    return {"metric": metric, "label": label, "run": run, "baseline": baseline, "higher_is_better": higher,
            "delta": float(delta), "lo": float(lo), "hi": float(hi), "p": float(p), "method": method, "n": n, **extra}


def _fid(label: str, sources: Sequence[Source], feats: list, ref: Reference, order: list[int], base: int,
         comparisons: list, *, level: float, resamples: int, method: str, seed: int, device: Any) -> dict:
    from .metrics import paired_fid

    got = paired_fid([feats[s] for s in order], ref.mu, ref.sigma, resamples=resamples, seed=seed, level=level,
                     method=method, device=device)
    per_run = {sources[s].name: _per_run_entry(v, std=se) for s, v, se in zip(order, got["fid"], got["se"])}
    for s, (delta, lo, hi, p) in zip(order[1:], got["delta"]):
        comparisons.append(_compare("fid", label, sources[s].name, sources[base].name, False, delta, lo, hi, p,
                                    f"paired bootstrap ({method}, {resamples} resamples of ids)", len(feats[s])))
    return {"key": "fid", "label": label, "higher_is_better": False, "per_run": per_run,
            "interval": "± bootstrap standard error"}


def _kid(label: str, sources: Sequence[Source], feats: list, ref: Reference, order: list[int], base: int,
         comparisons: list, *, level: float, seed: int, subsets: int, subset_size: int, folds: int) -> dict:
    from .metrics import paired_kid

    got = paired_kid([feats[s] for s in order], ref.features, folds=folds, subsets=subsets, subset_size=subset_size,
                     seed=seed, level=level)
    per_run = {sources[s].name: _per_run_entry(m, std=sd) for s, (m, sd) in zip(order, got["kid"])}
    for s, (m, lo, hi, p) in zip(order[1:], got["delta"]):
        comparisons.append(_compare("kid", label, sources[s].name, sources[base].name, False, m, lo, hi, p,
                                    f"paired t over {folds} disjoint folds (mean of folds)", len(feats[s])))
    return {"key": "kid", "label": label, "higher_is_better": False, "per_run": per_run,
            "interval": f"± std over {subsets} subsets"}


def _score(key: str, higher: bool, sources: Sequence[Source], per_image: dict, items: list, order: list[int],
           base: int, comparisons: list, *, level: float) -> dict:
    vals = [per_image[s.name][key] for s in sources]
    ok = np.all([np.isfinite(v) for v in vals], axis=0)
    per_run = {}
    for s in order:
        v = vals[s][ok]
        m, h = mean_ci(v, level)
        lo, hi = wilson(float(v.sum()), len(v), level) if np.isin(v, (0.0, 1.0)).all() else (m - h, m + h)
        per_run[sources[s].name] = _per_run_entry(m, lo, hi, n=int(ok.sum()))
    groups: dict[str, list[int]] = {}
    for n, it in enumerate(items):
        if ok[n]:
            groups.setdefault(prompt_key(it), []).append(n)
    for s in order[1:]:
        diffs = vals[s][ok] - vals[base][ok]
        m, h = mean_ci(diffs, level)
        wins = 0.0
        for rows in groups.values():
            a, b = vals[base][rows].mean(), vals[s][rows].mean()
            wins += 0.5 if a == b else float((b > a) == higher)
        w_lo, w_hi = wilson(wins, len(groups), level)
        comparisons.append(_compare(key, key, sources[s].name, sources[base].name, higher, m, m - h, m + h,
                                    t_pvalue(diffs), "paired t over images", int(ok.sum()),
                                    win_rate=wins / len(groups) if groups else float("nan"), win_lo=w_lo, win_hi=w_hi,
                                    prompts=len(groups)))
    return {"key": key, "label": key, "higher_is_better": higher, "per_run": per_run, "interval": "t-interval"}


def write_per_image(result: Result, path: Path) -> Path:
    """`id, prompt, seed, <run>:<metric> ...` for every paired image."""
    runs = list(result.per_image)
    keys = sorted({k for r in runs for k in result.per_image[r]})
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "prompt", "seed", *[f"{r}:{k}" for r in runs for k in keys]])
        for n, it in enumerate(result.items):
            w.writerow([it.id, it.prompt, it.seed, *[repr(float(result.per_image[r][k][n])) for r in runs for k in keys]])
    return path
