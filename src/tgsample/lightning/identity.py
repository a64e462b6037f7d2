"""What identifies a generation job: what decides its pixels, and which records it makes.

A run directory holds one job. Its identity has two parts, both stored in `run.json`:

* the **config**: the sampling settings *without* where the weights are read from (`path`,
  `unet`, `lora`, ... in `student_options` / `teacher_options`:
  [`LOCATION_OPTIONS`][tgsample.lightning.identity.LOCATION_OPTIONS]), a
  fingerprint of the loaded weights in their place, `batch_invariant` and the Trainer's precision.
  Moving the weights to another mount keeps the identity; other weights change it.
* the **records**: an order-free digest of every record's content
([`records_hash`][tgsample.lightning.identity.records_hash]).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from typing import Any, Iterable, Iterator, Mapping

__all__ = ["LOCATION_OPTIONS", "config_hash", "records_hash", "without_locations", "fingerprint"]

LOCATION_OPTIONS = ("path", "unet", "lora", "allow_download", "cache_dir", "local_files_only")
"""model-factory options that say where weights come from, not what they are (see load_model)"""
SAMPLES = 256
"""values sampled from each weight tensor by [`fingerprint`][tgsample.lightning.identity.fingerprint]"""


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of `config` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def records_hash(keys: Iterable[str]) -> str:
    """An order-free digest of a set of records (their canonical JSON `Record.key()`): the sum of their
    SHA-256 digests modulo 2**128, with the count. Streams: memory does not grow with the records."""
    total, count = 0, 0
    for key in keys:
        total = (total + int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "little")) % (1 << 128)
        count += 1
    return f"{count}-{total:032x}"


def without_locations(settings: Mapping[str, Any]) -> dict:
    """`settings` with the [`LOCATION_OPTIONS`][tgsample.lightning.identity.LOCATION_OPTIONS] removed from
    `student_options` / `teacher_options`."""
    out = copy.deepcopy(dict(settings))
    for key in ("student_options", "teacher_options"):
        if isinstance(out.get(key), Mapping):
            out[key] = {k: v for k, v in out[key].items() if k not in LOCATION_OPTIONS}
    return out


def _modules(obj: Any, depth: int = 0, seen: set | None = None) -> Iterator[Any]:
    """The `torch.nn.Module` objects a model bundle holds (its denoiser, and e.g. a pipeline's UNet,
    text encoders and VAE in its `parts`), each once."""
    import torch

    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 5:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.nn.Module):
        yield obj
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _modules(getattr(obj, f.name, None), depth + 1, seen)
    elif isinstance(obj, (list, tuple)) and len(obj) < 64:
        for item in obj:
            yield from _modules(item, depth + 1, seen)
    elif hasattr(obj, "__dict__") and not callable(obj):
        for value in vars(obj).values():
            yield from _modules(value, depth + 1, seen)


def fingerprint(*models: Any) -> str:
    """A cheap fingerprint of the weights that `models` hold, as loaded (dtype included): per tensor
    its name, shape and dtype and [`SAMPLES`][tgsample.lightning.identity.SAMPLES] evenly spaced values. Different
    checkpoints differ in
    nearly every value, so they differ here; the same files at another path do not."""
    import torch

    h = hashlib.sha256()
    done: set = set()
    for model in models:
        if model is None:
            continue
        for module in _modules(model):
            for name, t in module.state_dict().items():
                if not torch.is_tensor(t) or t.is_meta or (t.data_ptr(), t.dtype, t.shape) in done:
                    continue
                done.add((t.data_ptr(), t.dtype, t.shape))
                flat = torch.view_as_real(t) if t.is_complex() else t
                flat = flat.detach().reshape(-1)
                step = max(1, flat.numel() // SAMPLES)
                values = flat[::step][:SAMPLES].to("cpu", torch.float64)
                h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
                h.update(values.numpy().tobytes())
    return h.hexdigest()[:16]
