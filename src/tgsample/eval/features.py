"""Running extractors over images on Lightning `Trainer.predict`, with a per-image cache.

[`extract`][tgsample.eval.features.extract] computes what is missing and returns every output of every (source,
extractor):

* **Cached per image id.** Outputs live under `<cache>/<source key>/<extractor key>/` (the
  extractor key hashes its class, weights, transform and the Trainer precision): per-batch
  `part-*.safetensors` files while running, merged into `outputs.safetensors` afterwards. An
  image counts as done when its id has an entry with the same fingerprint (see
  [`tgsample.eval.runs`][tgsample.eval.runs]), so a rerun, an added run, or an added scorer reuses everything else;
  a regenerated image is recomputed. The cache never lives in a run directory: runs are only read.
* **Resumable.** Each batch is written as soon as it is done (atomically); a killed eval keeps
  every finished batch and the rerun computes the rest.
* **Sharded like generation.** Pending images are split over ranks `r, r + W, ...` before
  Lightning sees them ([`tgsample.lightning.data.shard`][tgsample.lightning.data.shard]; an idle rank runs one empty
  batch);
  rank 0 decides what is pending and broadcasts it, and merges the parts at the end.
* **Bounded by the network.** PNG decoding and each extractor's `transform` run in the
  DataLoader's `num_workers` processes; the module only moves batches to the device and runs the
  networks.

The cache directory default is `$TGSAMPLE_CACHE` or `~/.cache/tgsample/eval`; on a cluster give
every rank the same one on a shared filesystem (`cache_dir=`, `--cache-dir`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import nn

from .extractors import Extractor, identity_key
from .runs import Source

__all__ = ["FeatureCache", "FeatureModule", "FeatureData", "FeatureWriter", "extract", "default_cache_dir",
           "Extraction"]

OUTPUTS = "outputs.safetensors"
"""The file of a run's extracted features inside the feature cache."""


def default_cache_dir() -> Path:
    """`$TGSAMPLE_CACHE`, else `~/.cache/tgsample/eval`."""
    env = os.environ.get("TGSAMPLE_CACHE")
    return Path(env).expanduser() if env else Path("~/.cache/tgsample/eval").expanduser()


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class FeatureCache:
    """The cached outputs of one extractor on one source, by image id (see the module docs)."""

    def __init__(self, root: Union[str, Path], source: Source, key: str):
        self.dir = Path(root) / source.key / key
        self.source = source

    def _files(self) -> list[Path]:
        main = self.dir / OUTPUTS
        return ([main] if main.is_file() else []) + sorted(self.dir.glob("part-*.safetensors"))

    def read(self) -> dict[str, tuple[str, dict[str, torch.Tensor]]]:
        """`{id: (fingerprint, {output: row})}` of every cached entry (unreadable parts are skipped)."""
        from safetensors import safe_open

        out: dict[str, tuple[str, dict[str, torch.Tensor]]] = {}
        for file in self._files():
            try:
                with safe_open(str(file), framework="pt") as f:
                    meta = f.metadata() or {}
                    ids, prints = json.loads(meta["ids"]), json.loads(meta["fingerprints"])
                    tensors = {k: f.get_tensor(k) for k in f.keys()}
            except Exception:  # a part cut off by a kill: its batch is recomputed
                continue
            for n, (i, fp) in enumerate(zip(ids, prints)):
                out[i] = (fp, {k: v[n] for k, v in tensors.items()})
        return out

    def valid_ids(self, cached: Optional[dict] = None) -> set[str]:
        """Ids of the source whose cached fingerprint matches the image's."""
        cached = self.read() if cached is None else cached
        return {it.id for it in self.source.items if it.id in cached and cached[it.id][0] == it.fingerprint}

    def write_part(self, ids: Sequence[str], fingerprints: Sequence[str], outputs: dict[str, torch.Tensor],
                   tag: str) -> Path:
        """One batch's outputs as `part-<tag>.safetensors` (atomic)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"part-{tag}.safetensors"
        _atomic_save({k: v.detach().float().cpu() for k, v in outputs.items()}, path,
                     {"ids": json.dumps(list(ids)), "fingerprints": json.dumps(list(fingerprints))})
        return path

    def merge(self) -> dict[str, tuple[str, dict[str, torch.Tensor]]]:
        """Fold the parts into `outputs.safetensors` (entries of images no longer in the source, or with a stale
        fingerprint, are dropped) and delete the parts merged; returns what it holds."""
        parts = sorted(self.dir.glob("part-*.safetensors"))
        cached = self.read()
        if not parts:
            return cached
        keep = [it for it in self.source.items if it.id in cached and cached[it.id][0] == it.fingerprint]
        if keep:
            names = list(cached[keep[0].id][1])
            tensors = {k: torch.stack([cached[it.id][1][k] for it in keep]) for k in names}
            _atomic_save(tensors, self.dir / OUTPUTS, {"ids": json.dumps([it.id for it in keep]),
                                                      "fingerprints": json.dumps([it.fingerprint for it in keep])})
        for p in parts:
            p.unlink(missing_ok=True)
        return {it.id: cached[it.id] for it in keep}


# ----------------------------------------------------------------------------- Lightning pieces


@dataclass(frozen=True)
class _Work:
    source: int
    """index into sources"""
    item: int
    """index into that source's items"""
    extractors: tuple[int, ...]
    """which extractors still need this image"""


class _Images(torch.utils.data.Dataset):
    """Decodes each image once and applies the transform of every extractor that needs it (in the workers)."""

    def __init__(self, sources: Sequence[Source], work: Sequence[Optional[_Work]], transforms: Sequence[Any]):
        self.sources, self.work, self.transforms = list(sources), list(work), list(transforms)

    def __len__(self) -> int:
        return len(self.work)

    def __getitem__(self, i: int) -> Any:
        w = self.work[i]
        if w is None:
            return None
        src = self.sources[w.source]
        img = src.open_image(src.items[w.item])
        return w, {e: self.transforms[e](img) for e in w.extractors}


def _collate(batch: list) -> dict:
    """`{"work": [...], "inputs": {extractor: (positions, stacked tensor)}}` (empty placeholders dropped)."""
    batch = [b for b in batch if b is not None]
    inputs: dict[int, tuple[list[int], Any]] = {}
    for e in sorted({e for w, _ in batch for e in w.extractors}):
        rows = [n for n, (w, _) in enumerate(batch) if e in w.extractors]
        xs = [batch[n][1][e] for n in rows]
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            from ..errors import ShapeMismatchError

            raise ShapeMismatchError(f"extractor {e}: its transform gave tensors of different shapes {sorted(shapes)}; "
                                     "images of different sizes need a transform that resizes")
        inputs[e] = (rows, torch.stack(xs))
    return {"work": [w for w, _ in batch], "inputs": inputs}


class FeatureModule(LightningModule):
    """`predict_step`: every extractor on the rows of the batch that need it; outputs go back to the CPU."""

    def __init__(self, extractors: Sequence[Extractor], sources: Sequence[Source]):
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.sources = list(sources)

    def predict_step(self, batch: dict, batch_idx: int = 0, dataloader_idx: int = 0) -> dict:
        out: dict[int, tuple[list[int], dict[str, torch.Tensor]]] = {}
        for e, (rows, x) in batch["inputs"].items():
            works = [batch["work"][n] for n in rows]
            prompts = [self.sources[w.source].items[w.item].prompt for w in works]
            y = self.extractors[e](x.to(self.device), prompts)
            out[e] = (rows, {k: v.detach().float().cpu().reshape(len(rows), -1) for k, v in y.items()})
        return {"records": batch["work"], "outputs": out}


class FeatureData(LightningDataModule):
    """The pending images, sharded over ranks (rank 0 decides what is pending; see the module docs)."""

    def __init__(self, sources: Sequence[Source], extractors: Sequence[Extractor], pending: Sequence[_Work],
                 batch_size: int = 64, num_workers: int = 0):
        super().__init__()
        self.sources, self.pending = list(sources), list(pending)
        self.transforms = [e.transform for e in extractors]
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def setup(self, stage: str) -> None:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:
            self.pending = trainer.strategy.broadcast(self.pending, src=0)

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch  # the module moves each extractor's input itself

    def predict_dataloader(self):
        from torch.utils.data import DataLoader

        from ..lightning.data import _local_sampler, shard

        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        local: list[Optional[_Work]] = shard(self.pending, rank, world)
        if not local and self.pending:
            local = [None]  # an idle rank runs one empty batch, so every rank runs the same hooks
        return DataLoader(_Images(self.sources, local, self.transforms), batch_size=self.batch_size,
                          sampler=_local_sampler(len(local)), collate_fn=_collate, num_workers=self.num_workers,
                          persistent_workers=False, pin_memory=torch.cuda.is_available())


class FeatureWriter(BasePredictionWriter):
    """Writes each batch's outputs to the caches as a part file; rank 0 merges them at the end."""

    def __init__(self, caches: dict[tuple[int, int], FeatureCache]):
        super().__init__(write_interval="batch")
        self.caches = caches
        self.tag = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.written = 0

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int) -> None:
        works = prediction["records"]
        for e, (rows, outputs) in prediction["outputs"].items():
            by_source: dict[int, list[int]] = {}
            for pos, n in enumerate(rows):
                by_source.setdefault(works[n].source, []).append(pos)
            for s, positions in by_source.items():
                cache = self.caches[(s, e)]
                items = [cache.source.items[works[rows[p]].item] for p in positions]
                idx = torch.tensor(positions)
                cache.write_part([it.id for it in items], [it.fingerprint for it in items],
                                 {k: v[idx] for k, v in outputs.items()},
                                 f"{self.tag}-r{trainer.global_rank:04d}-b{batch_idx:07d}")
        self.written += len(works)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        trainer.strategy.barrier("tgsample-eval-written")  # every rank's parts are on disk before rank 0 merges


# ----------------------------------------------------------------------------- the entry point


@dataclass
class Extraction:
    """What [`extract`][tgsample.eval.features.extract] found and computed.

    Attributes:
        outputs: `outputs[s][e]` = `{output name: array [n_items, width]}` of source `s`, extractor `e`
            (those the source used), rows in the source's item order.
        computed: `computed[s][e]` = how many images were run through the network now (the rest came from the cache).
        keys: the extractor cache keys.
    """

    outputs: list[dict[int, dict[str, np.ndarray]]]
    computed: list[list[int]]
    keys: list[str]


TRAINER_DEFAULTS = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False}
"""The Lightning Trainer options of a feature extraction (no logger, checkpoints or model summary)."""


def extract(sources: Sequence[Source], extractors: Sequence[Extractor], *, use: Optional[Sequence[Sequence[int]]] = None,
            cache_dir: Optional[Union[str, Path]] = None, batch_size: int = 64, num_workers: int = 0,
            trainer: Optional[dict] = None, progress: bool = True) -> Optional[Extraction]:
    """Run every extractor on every image it has no valid cached output for, then return all outputs.

    `use[s]` lists the extractors source `s` needs (default: all). `trainer` holds `lightning.Trainer`
    arguments (`accelerator`, `devices`, `num_nodes`, `strategy`, `precision`, ...). Returns `None`
    on ranks other than 0 of a multi-process run.
    """
    from lightning.pytorch import Trainer

    from ..lightning.cli import ImagesPerSecondBar

    kwargs = {**TRAINER_DEFAULTS, "accelerator": "auto", "devices": 1, **(trainer or {})}
    if not progress:
        kwargs["enable_progress_bar"] = False
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    precision = str(kwargs.get("precision", "32-true"))
    keys = [identity_key(e, precision) for e in extractors]
    use = [tuple(range(len(extractors)))] * len(sources) if use is None else [tuple(u) for u in use]
    caches = {(s, e): FeatureCache(root, src, keys[e]) for s, src in enumerate(sources) for e in use[s]}
    valid = {se: c.valid_ids() for se, c in caches.items()}
    pending = []
    for s, src in enumerate(sources):
        for j, it in enumerate(src.items):
            need = tuple(e for e in use[s] if it.id not in valid[(s, e)])
            if need:
                pending.append(_Work(s, j, need))
    computed = [[sum(1 for w in pending if w.source == s and e in w.extractors) for e in range(len(extractors))]
                for s in range(len(sources))]
    rank = 0
    if pending:
        bar = [ImagesPerSecondBar()] if kwargs.get("enable_progress_bar", True) else []
        t = Trainer(callbacks=[*kwargs.pop("callbacks", []), *bar, FeatureWriter(caches)], **kwargs)
        t.predict(FeatureModule(extractors, sources),
                  datamodule=FeatureData(sources, extractors, pending, batch_size, num_workers),
                  return_predictions=False)
        rank = t.global_rank
        if rank != 0:
            return None
    outputs: list[dict[int, dict[str, np.ndarray]]] = []
    for s, src in enumerate(sources):
        row: dict[int, dict[str, np.ndarray]] = {}
        for e in use[s]:
            cached = caches[(s, e)].merge()
            missing = [it.id for it in src.items if it.id not in cached]
            if missing:
                from ..errors import TgsampleError

                raise TgsampleError(f"{src.name}: {len(missing)} image(s) have no {extractors[e].name} outputs after "
                                    f"extraction (first: {missing[0]!r}); rerun to compute them")
            names = list(cached[src.items[0].id][1])
            row[e] = {k: torch.stack([cached[it.id][1][k] for it in src.items]).numpy() for k in names}
        outputs.append(row)
    return Extraction(outputs, computed, keys)
