"""`tgsample eval` / `tgsample export`: FID, KID, CLIP score, preference scores and paired comparisons of runs.

* [`evaluate`][tgsample.eval.evaluation.evaluate] ([`evaluation`][tgsample.eval.evaluation]): per-run metrics and paired
comparisons with intervals, win rates
  and Holm-adjusted p-values, as a [`Result`][tgsample.eval.evaluation.Result] (Markdown / JSON / CSV / plot,
  [`report`][tgsample.eval.report]);
* [`reference_stats`][tgsample.eval.evaluation.reference_stats]: reference statistics of a folder or dataset, saved with
provenance;
* [`export`][tgsample.eval.export] ([`export`][tgsample.eval.export]): a run in the folder layouts of the field's
evaluators;
* [`extractors`][tgsample.eval.extractors]: feature networks and scorers
([`EXTRACTORS`][tgsample.eval.extractors.EXTRACTORS], any `nn.Module` plugs in);
* [`features`][tgsample.eval.features]: extraction on Lightning `Trainer.predict`, cached per image id;
* [`metrics`][tgsample.eval.metrics] (clean-fid's FID / KID), [`stats`][tgsample.eval.stats] (intervals, tests, Holm),
[`runs`][tgsample.eval.runs] (what is read).

Importing this package is cheap; the names below load their modules on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate": "evaluation", "reference_stats": "evaluation", "load_reference": "evaluation",
    "Reference": "evaluation", "Result": "evaluation", "EVAL_DEFAULTS": "evaluation",
    "export": "export", "FORMATS": "export",
    "Extractor": "extractors", "ModuleExtractor": "extractors", "ImageTransform": "extractors",
    "EXTRACTORS": "extractors", "build_extractor": "extractors",
    "extract": "features",
    "Source": "runs", "Item": "runs", "open_source": "runs", "DATASETS": "runs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
