"""What an evaluation reads: a generation run, a folder of images, or a built-in dataset (torch-free).

A **run** is what `tgsample generate` writes (see the distributed-generation guide): `run.json`,
`manifest.jsonl` (one JSON object a line) and `images/<id>.png`. Only `id` and `path` are
required of a manifest row; `prompt`, `seed` and `negative` are used when present, and any
other column is ignored (rows are read defensively: a malformed line is skipped, the last row of an
id wins). A **folder** is any directory of images (recursively; ids are the relative paths). A
**dataset** is a name in [`DATASETS`][tgsample.eval.runs.DATASETS] (the digit models' real splits ship with
scikit-learn).

Every image has a *fingerprint* that changes when the image does: the manifest's checksum column
when it has one (`sha256`, `checksum` or `md5`), else `<size>:<mtime_ns>` of the file. The
feature cache keys on it, so a regenerated image is never scored from stale features.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .errors import PairingError, RunError

__all__ = ["Item", "Source", "DATASETS", "IMAGE_EXTENSIONS", "open_source", "open_run", "open_folder",
           "open_dataset", "paired_ids", "prompt_key"]

MANIFEST, RUN_FILE = "manifest.jsonl", "run.json"
IMAGE_EXTENSIONS = (".bmp", ".jpg", ".jpeg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")
"""file extensions read as images in a folder (those clean-fid reads), compared case-insensitively."""
_CHECKSUM_KEYS = ("sha256", "checksum", "md5")

DATASETS: dict[str, str] = {
    "digits-train": "tgsample.eval.runs:_digits_train",
    "digits-test": "tgsample.eval.runs:_digits_test",
    "digits-all": "tgsample.eval.runs:_digits_all",
}
"""built-in datasets: name -> `"module:function"` returning `(ids, uint8 images [N, H, W(, C)], prompts)`.
Other modules may add theirs (`DATASETS["mini-train"] = "pkg.mod:fn"`)."""


@dataclass(frozen=True)
class Item:
    """One image.

    Attributes:
        id: unique within its source (a run's record id, a folder's relative path, a dataset index).
        prompt: what it was generated from (text, a class label), or `None`.
        seed: its seed, or `None`.
        negative: its negative prompt, or `None`.
        path: the image file (absolute), or `None` for an in-memory dataset.
        fingerprint: changes whenever the image does (see the module docs).
    """

    id: str
    prompt: Any = None
    seed: Optional[int] = None
    negative: Any = None
    path: Optional[str] = None
    fingerprint: str = ""


@dataclass
class Source:
    """Images to evaluate, with where they came from.

    Attributes:
        name: the label in tables (a run's directory name by default).
        kind: `"run"`, `"folder"` or `"dataset"`.
        location: the absolute directory, or the dataset name.
        items: the images, in the source's order (a run's manifest order).
        info: a run's `run.json` (`config`, `config_hash`, ...); a dataset's description.
    """

    name: str
    kind: str
    location: str
    items: list[Item]
    info: dict = field(default_factory=dict)
    _pixels: Any = field(default=None, repr=False)  # a dataset's uint8 array

    @property
    def key(self) -> str:
        """The cache folder name: `<name>-<hash of the location>`."""
        digest = hashlib.sha256(f"{self.kind}:{self.location}".encode()).hexdigest()[:12]
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in Path(self.location).name or self.location)
        return f"{safe[:40]}-{digest}"

    @property
    def student(self) -> Optional[str]:
        """A run's student registry name (from `run.json`), else `None`."""
        settings = (self.info.get("config") or {}).get("settings") or {}
        return settings.get("student")

    def by_id(self) -> dict[str, Item]:
        return {it.id: it for it in self.items}

    def open_image(self, item: Item):
        """The image of `item` as a PIL image (its own mode: `L`, `RGB`, ...)."""
        from PIL import Image

        if item.path is None:
            return Image.fromarray(self._pixels[int(item.id)])
        img = Image.open(item.path)
        img.load()
        return img


# ----------------------------------------------------------------------------- runs and folders


def _fingerprint(path: Path, row: Optional[dict] = None) -> str:
    for key in _CHECKSUM_KEYS:
        if row and isinstance(row.get(key), str) and row[key]:
            return f"{key}:{row[key]}"
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def _rows(manifest: Path) -> list[dict]:
    rows: dict[str, dict] = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a cut-off last line
        if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("path"), str):
            rows.pop(row["id"], None)
            rows[row["id"]] = row
    return list(rows.values())


def open_run(path: Union[str, Path], name: Optional[str] = None) -> Source:
    """The images of a `tgsample generate` run directory (its `manifest.jsonl`)."""
    root = Path(path).expanduser().resolve()
    manifest = root / MANIFEST
    if not manifest.is_file():
        parts = sorted((root / "manifest").glob("part-*.jsonl")) if (root / "manifest").is_dir() else []
        hint = (" It has unmerged manifest parts: the run did not finish; rerun the same `tgsample generate` "
                "command to finish it." if parts else " Is it a `tgsample generate` output directory?")
        raise RunError(f"run {str(path)!r} has no {MANIFEST}.{hint}")
    rows = _rows(manifest)
    if not rows:
        raise RunError(f"run {str(path)!r}: {MANIFEST} has no rows with an 'id' and a 'path'")
    items, missing = [], []
    for row in rows:
        file = root / row["path"]
        if not file.is_file():
            missing.append(row["path"])
            continue
        seed = row.get("seed")
        items.append(Item(row["id"], row.get("prompt"), int(seed) if isinstance(seed, int) else None,
                          row.get("negative"), str(file), _fingerprint(file, row)))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise RunError(f"run {str(path)!r}: {len(missing)} image(s) of the manifest are missing ({', '.join(missing[:3])}"
                       f"{more}); rerun `tgsample generate` with the same config to remake them")
    try:
        info = json.loads((root / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        info = {}
    return Source(name or root.name, "run", str(root), items, info)


def open_folder(path: Union[str, Path], name: Optional[str] = None) -> Source:
    """Every image file under `path` (recursively, sorted); ids are relative POSIX paths."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise RunError(f"image folder {str(path)!r} does not exist or is not a directory")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise RunError(f"image folder {str(path)!r} has no images (extensions: {', '.join(IMAGE_EXTENSIONS)})")
    items = [Item(p.relative_to(root).as_posix(), path=str(p), fingerprint=_fingerprint(p)) for p in files]
    return Source(name or root.name, "folder", str(root), items)


# ----------------------------------------------------------------------------- datasets


def _digits(split: str) -> tuple[list[str], Any, list[int]]:
    """The digit models' real split as the PNGs `tgsample generate` would write: `round(255 * unit)`."""
    from ..lightning.module import to_uint8
    from ..models.digits.data import load, to_unit

    x, y = load(split)
    pixels = to_uint8(to_unit(x))[..., 0].numpy()
    return [str(i) for i in range(len(y))], pixels, [int(v) for v in y]


def _digits_train():
    return _digits("train")


def _digits_test():
    return _digits("test")


def _digits_all():
    return _digits("all")


def _load(target: str) -> Callable:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def open_dataset(name: str) -> Source:
    """A built-in dataset of [`DATASETS`][tgsample.eval.runs.DATASETS]."""
    if name not in DATASETS:
        raise RunError(f"unknown dataset {name!r}; built-in datasets: {', '.join(sorted(DATASETS))} "
                       "(or give a run directory, an image folder or a .npz statistics file)")
    ids, pixels, prompts = _load(DATASETS[name])()
    version = hashlib.sha256(pixels.tobytes()).hexdigest()[:16]
    items = [Item(i, p, path=None, fingerprint=version) for i, p in zip(ids, prompts)]
    return Source(name, "dataset", name, items, {"dataset": name, "pixels_sha256": version}, pixels)


def open_source(spec: Union[str, Path, Source], name: Optional[str] = None) -> Source:
    """A [`Source`][tgsample.eval.runs.Source] from a dataset name, a run directory (has `manifest.jsonl`) or an image
    folder."""
    if isinstance(spec, Source):
        return spec
    if isinstance(spec, str) and spec in DATASETS:
        return open_dataset(spec)
    path = Path(spec).expanduser()
    if not path.exists():
        raise RunError(f"{str(spec)!r} is neither a directory nor a built-in dataset ({', '.join(sorted(DATASETS))})")
    if (path / MANIFEST).is_file() or (path / "manifest").is_dir() or (path / RUN_FILE).is_file():
        return open_run(path, name)
    return open_folder(path, name)


# ----------------------------------------------------------------------------- pairing


def prompt_key(item: Item) -> str:
    """What groups images of the same prompt (prompt and negative, as canonical JSON)."""
    return json.dumps([item.prompt, item.negative], sort_keys=True, default=str)


def paired_ids(sources: Sequence[Source]) -> list[str]:
    """The ids every source has, in the first source's order; [`PairingError`][tgsample.eval.errors.PairingError] if
    there are none or if a
    shared id has another prompt or seed in some source (then the images are not paired)."""
    maps = [s.by_id() for s in sources]
    shared = [i for i in (it.id for it in sources[0].items) if all(i in m for m in maps[1:])]
    if not shared:
        raise PairingError(f"runs {', '.join(repr(s.name) for s in sources)} share no image ids; a paired comparison "
                           "needs runs generated from the same prompts and seeds (the same ids)")
    for s, m in zip(sources[1:], maps[1:]):
        for i in shared:
            a, b = maps[0][i], m[i]
            if (a.prompt, a.seed, a.negative) != (b.prompt, b.seed, b.negative):
                raise PairingError(
                    f"id {i!r} is not the same record in {sources[0].name!r} (prompt {a.prompt!r}, seed {a.seed}) and "
                    f"{s.name!r} (prompt {b.prompt!r}, seed {b.seed}); paired runs must share ids, prompts and seeds")
    return shared
