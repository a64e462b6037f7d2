"""``tgsample eval`` / ``tgsample export``: FID, KID, CLIP score, preference scores and paired comparisons of runs.

* :func:`evaluate` (:mod:`.evaluation`): per-run metrics and paired comparisons with intervals, win rates
  and Holm-adjusted p-values, as a :class:`Result` (Markdown / JSON / CSV / plot, :mod:`.report`);
* :func:`reference_stats`: reference statistics of a folder or dataset, saved with provenance;
* :func:`export` (:mod:`.export`): a run in the folder layouts of the field's evaluators;
* :mod:`.extractors`: feature networks and scorers (:data:`EXTRACTORS`, any ``nn.Module`` plugs in);
* :mod:`.features`: extraction on Lightning ``Trainer.predict``, cached per image id;
* :mod:`.metrics` (clean-fid's FID / KID), :mod:`.stats` (intervals, tests, Holm), :mod:`.runs` (what is read).

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
