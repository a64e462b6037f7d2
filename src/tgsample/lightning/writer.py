"""The prediction writer: what a generation run leaves on disk, how it resumes, and how it stops.

Output directory layout:

```text
run.json                       the job's identity: config (and its hash) and records (count, digest)
config.yaml                    the full command-line config of the latest run
images/<id>.png                one image per record (its record and config hash in a text chunk)
latents/<id>.safetensors       the final samples x (``latents=True``)
manifest/part-<run>-r<rank>.jsonl   each rank's rows, appended per batch
manifest.jsonl                 the merged manifest: one row per finished record, in record order
preview.png                    a grid of the first ``preview`` images
```

A manifest row: `id, prompt, negative, seed, overrides, config (the record's effective settings),
config_hash, path, sha256 (of the PNG), latent, latent_sha256, seconds (the batch's time per image), rank,
run, finished (unix time)`.

**Identity** ([`identity`][tgsample.lightning.identity]). A run directory holds one job: a config (what decides the
pixels,
weight locations excluded, a fingerprint of the weights included) and a set of records. A different
config or a different set of records is refused before anything is written; `extend=True` lets a
job add records to a run (every finished image must still be one of its records); `overwrite=True`
deletes the old run's files (only the files it wrote) and starts again.

**Order of work.** `setup` (every rank, before the models are built) checks only what it can read:
the directory, `run.json`, files that tgsample did not write. The models are then built; when the
Trainer asks for the data loader, every setting and record is validated
([`GenerationModule.check`][tgsample.lightning.module.GenerationModule.check]), and only then does rank 0 write:
`run.json` (created atomically, so
two jobs started at once cannot both claim the directory), `config.yaml`, the repaired manifest.
A failed load or a bad setting therefore leaves nothing behind.

**Resume** (rank 0, streaming, flat memory). A record is done when its row has this config hash,
the record's content, the expected path `images/<id>.png` and the PNG's checksum; a PNG without a
row (say `manifest.jsonl` was deleted) is adopted when its own text chunk names this record and
config. Only the rest is generated. A straggler rank of a killed run writes the same bytes to the same
names atomically, and the merge keeps one row per id.

**Writing overlaps generation.** A batch's PNG encoding, latent and file writes and its manifest lines
run in one worker thread (zlib releases the GIL), while the next batch is generated; at most
`queue` batches wait for it (bounded memory), and it is drained before the merge, on an error
and at a stop. A batch's manifest lines are written after its images, as before, so a kill loses only
batches not yet in the manifest, which a rerun generates again. `queue=0` writes on the main
thread.

**Stopping.** On SIGTERM a rank finishes and writes the batch in flight; the ranks agree once per batch
(a tiny all-reduce) to stop together, and raise
[`GenerationInterrupted`][tgsample.lightning.writer.GenerationInterrupted] (exit 143). The handler
stays installed until the final merge is done, so a signal during the merge cannot deadlock.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue as queues
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..errors import ConfigError, TgsampleError
from .data import Record
from .identity import config_hash, records_hash
from .manifest import (RowIndex, atomic_write, atomic_write_lines, create_exclusive, png_bytes, png_record,
                       read_rows, sha256_file)

__all__ = ["GenerationWriter", "GenerationInterrupted", "write_png", "png_ok", "preview_grid"]

RUN_FILE, MANIFEST, PREVIEW, CONFIG = "run.json", "manifest.jsonl", "preview.png", "config.yaml"
SUBDIRS = ("images", "latents", "manifest")
"""The folders of a run directory."""
FIX_NEW_DIR = "choose a new or empty --output.dir (nothing there was changed)"
"""what the refusals suggest"""
FIX_OVERWRITE = ("use another --output.dir, or --output.overwrite true to delete that run's files (only the files "
                 "it wrote) and start again")
"""The fix that an error about an existing, different run directory suggests."""
PREVIEW_TILE = (64, 256)
"""preview tiles are scaled to this many pixels on their longer side (at least 8x up, any amount down)"""


class GenerationInterrupted(TgsampleError):
    """The run was stopped by a signal (SIGTERM) after finishing and writing its current batch."""

    exit_code = 128 + signal.SIGTERM


def write_png(path: Path, image: torch.Tensor, meta: Optional[dict] = None) -> str:
    """Write `uint8 [H, W, C]` as a PNG atomically (`meta` in its text chunk); returns its SHA-256."""
    data = png_bytes(image, meta or {})
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def png_ok(path: Path) -> bool:
    """True when `path` is a complete, decodable PNG."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
        return img.format == "PNG"
    except Exception:  # missing, truncated, corrupt: all mean "generate again"
        return False


def _record_meta(record: Record, chash: str) -> dict:
    return {"record": record.as_dict(), "config_hash": chash}


def _same_record(row: dict, record: Record) -> bool:
    return all(row.get(k) == v for k, v in (("prompt", record.prompt), ("seed", record.seed),
                                             ("negative", record.negative), ("overrides", record.overrides)))


def _tile(img: Any) -> Any:
    """`img` scaled to [`PREVIEW_TILE`][tgsample.lightning.writer.PREVIEW_TILE]: up by an integer factor (nearest) or
    down (Lanczos)."""
    from PIL import Image

    lo, hi = PREVIEW_TILE
    side = max(img.size)
    if side < lo:
        k = -(-lo // side)
        return img.resize((img.width * k, img.height * k), Image.NEAREST)
    if side > hi:
        return img.resize((max(1, img.width * hi // side), max(1, img.height * hi // side)), Image.LANCZOS)
    return img


def preview_grid(paths: Sequence[Path], columns: int = 8) -> Any:
    """A PIL grid of the images at `paths` (torchvision's `make_grid`, 2 px white gaps), each tile
    scaled to [`PREVIEW_TILE`][tgsample.lightning.writer.PREVIEW_TILE] pixels, so 64 SDXL images make a ~2000 px grid
    and 8 px digits are visible."""
    import numpy as np
    from PIL import Image
    from torchvision.utils import make_grid

    tiles, size = [], None
    for p in paths:
        with Image.open(p) as img:
            tile = _tile(img.convert("RGB"))
        size = size or tile.size
        tile = tile if tile.size == size else tile.resize(size, Image.LANCZOS)
        tiles.append(torch.from_numpy(np.asarray(tile).copy()).permute(2, 0, 1))
    grid = make_grid(torch.stack(tiles), nrow=min(columns, len(tiles)), padding=2, pad_value=255)
    return Image.fromarray(grid.permute(1, 2, 0).numpy())


class GenerationWriter(BasePredictionWriter):
    """Writes each batch as it comes (`return_predictions=False` keeps memory flat); see the module docs.

    Args:
        dir: the run directory (seen by every rank); default outputs/<preset or student>.
        overwrite: delete another job's files in the directory (only those) and start again.
        extend: let this job add records to the directory's job.
        latents: also save the final samples as latents/<id>.safetensors.
        preview: how many images preview.png shows (0: none).
        queue: PNG writer queue in batches (0: none).
    """

    def __init__(self, dir: Optional[str] = None, overwrite: bool = False, extend: bool = False,
                 latents: bool = False, preview: int = 64, queue: int = 2):
        super().__init__(write_interval="batch")
        self.dir: Optional[Path] = None if dir is None else Path(dir)
        self.overwrite, self.extend, self.latents = bool(overwrite), bool(extend), bool(latents)
        if isinstance(preview, bool) or not isinstance(preview, int) or preview < 0:
            raise ConfigError(f"preview={preview!r} must be an integer >= 0 (the number of images in the grid)")
        self.preview = preview
        if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
            raise ConfigError(f"queue={queue!r} must be an integer >= 0 (batches waiting to be written)")
        self.queue = queue
        self._queue: Optional[queues.Queue] = None
        self._worker: Optional[threading.Thread] = None
        self._failed: Optional[BaseException] = None
        self.config: dict = {}
        self.config_hash = ""
        self.run_id = ""
        self.records: list[Record] = []
        self.written = 0
        self.summary: dict = {}
        self._part: Optional[Any] = None
        self._stop_signal: Optional[int] = None
        self._old_handler: Any = None
        self._launcher: Any = None
        self._t0 = 0.0
        self._summary_text = ""
        self.cli_config: Optional[str] = None  # the CLI's full YAML config, saved as config.yaml

    # --- paths -------------------------------------------------------------------------

    def image_path(self, record_id: str) -> Path:
        return self.dir / "images" / f"{record_id}.png"

    def latent_path(self, record_id: str) -> Path:
        return self.dir / "latents" / f"{record_id}.safetensors"

    def _parts(self) -> list[Path]:
        return sorted((self.dir / "manifest").glob("part-*.jsonl"))

    def _say(self, trainer: Any, text: str) -> None:
        if trainer.is_global_zero:
            print(f"tgsample generate: {text}", flush=True)

    # --- reading what is there (rank 0) ------------------------------------------------

    def _read_run(self) -> tuple[str, Optional[dict], str]:
        """`(state, run.json's content, why)`: state `absent`, `ok`, `garbled` (not readable as
        JSON: possibly a torn or edited run.json) or `foreign` (JSON, but not a tgsample run.json)."""
        path = self.dir / RUN_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return "absent", None, ""
        except (OSError, UnicodeDecodeError) as exc:
            return "garbled", None, f"unreadable ({exc})"
        try:
            info = json.loads(text)
        except json.JSONDecodeError as exc:
            return "garbled", None, f"not valid JSON ({exc.msg} at line {exc.lineno})"
        if not isinstance(info, dict) or not isinstance(info.get("config_hash"), str):
            return "foreign", None, "not a tgsample run.json"
        return "ok", info, ""

    def _foreign(self) -> list[str]:
        """Files in a directory without a tgsample `run.json` that a run would write over and tgsample
        did not write (at most 5)."""
        out = [name for name in (RUN_FILE, CONFIG, PREVIEW, MANIFEST) if (self.dir / name).exists()]
        for sub in SUBDIRS:
            folder = self.dir / sub
            for p in folder.iterdir() if folder.is_dir() else ():
                ours = ((sub == "images" and p.suffix == ".png" and png_record(p) is not None)
                        or (sub == "manifest" and p.name.startswith("part-")) or p.name.startswith("."))
                if not ours:
                    out.append(f"{sub}/{p.name}")
                if len(out) >= 5:
                    return out
        return out

    def _writable(self) -> None:
        path = self.dir
        if path.exists() and not path.is_dir():
            raise ConfigError(f"output directory {str(path)!r} is not writable: it is a file; choose a directory")
        while not path.exists():
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"output directory {str(self.dir)!r} is not writable ({str(path)!r} is "
                              f"{'not a directory' if not path.is_dir() else 'read-only'}); choose a directory "
                              "you can write to")

    def _refuse(self, what: str, fix: str) -> ConfigError:
        return ConfigError(f"output directory {str(self.dir)!r} holds {what}; {fix}")

    def _no_foreign(self) -> None:
        foreign = self._foreign() if self.dir.is_dir() else []
        if foreign:
            raise self._refuse(f"files tgsample did not write ({', '.join(foreign)})",
                               FIX_NEW_DIR)

    def precheck(self, config: dict, records_digest: str) -> None:
        """Before the models are built (rank 0, read-only): the directory is usable, holds no files
        tgsample did not write, and holds no other job (compared without the weights' fingerprint)."""
        self._writable()
        state, info, _ = self._read_run()
        if state in ("absent", "foreign"):
            self._no_foreign()
        if state != "ok" or self.overwrite:
            return
        old = {k: v for k, v in info.get("config", {}).items() if k != "weights"}
        if old != json.loads(json.dumps(config, default=str)):  # as run.json stores it (tuples are lists)
            raise self._different_config(info.get("config", {}), dict(config, weights=info["config"].get("weights")))
        self._check_records(info, records_digest)

    def _different_config(self, old: dict, new: dict) -> ConfigError:
        return self._refuse(f"a run with a different config (differs in {_diff(old, new)})",
                            FIX_OVERWRITE)

    def _check_records(self, info: dict, digest: str) -> None:
        old = info.get("records", {}).get("hash")
        if old not in (None, digest) and not self.extend:
            n_old, n_new = old.split("-")[0], digest.split("-")[0]
            raise self._refuse(f"another job: {n_old} records (digest {old}), this job {n_new} (digest {digest})",
                               "use another --output.dir, or --output.extend true if this job adds records "
                               "to that run (every image it finished must be one of this job's records)")

    # --- preparing the run (rank 0, after the models are built and every setting checked) ---

    def prepare(self, records: Sequence[Record]) -> bytearray:
        """Rank 0: check the identity (weights included), repair what is broken, write `run.json` /
        `config.yaml` / the merged manifest, and return the records still to generate (a 0/1 bytearray)."""
        state, info, why = self._read_run()
        digest = records_hash(r.key() for r in records)
        if state in ("absent", "foreign"):
            self._no_foreign()
        if state == "garbled":
            self._recover(why)
        elif info is not None and (info["config_hash"] != self.config_hash or self.overwrite):
            if not self.overwrite:
                raise self._different_config(info.get("config", {}), self.config)
            self._wipe({info["config_hash"]})
            state, info = "absent", None
        if info is not None:
            self._check_records(info, digest)
        with RowIndex() as index:
            parts = self._parts()
            pending, kept, same = self._decide(index, records, parts, verify=True)
            if info is not None and info.get("records", {}).get("hash") not in (None, digest) and kept:
                raise self._refuse(f"{len(kept)} finished image(s) that are not records of this job (e.g. "
                                   f"{', '.join(kept[:3])})", "--output.extend only adds records: keep every "
                                   "record of the run in this job, or use another --output.dir")
            self._write_start(info, digest, replace=state == "garbled", config=any(pending))
            if not same:
                self._emit(index, records, pending, parts)
            elif self.preview > 0 and not (self.dir / PREVIEW).exists():
                self._write_preview()
        return pending

    def _recover(self, why: str) -> None:
        """A garbled `run.json` is rebuilt from this job when the directory shows a tgsample run of this
        config (manifest rows or images of it); rows of another config are refused (or wiped with
        `overwrite`); without any sign of a tgsample run the file is not ours and is refused."""
        hashes = {row.get("config_hash") for _, row in read_rows([self.dir / MANIFEST, *self._parts()])}
        images = self.dir / "images"
        if not hashes and images.is_dir():
            hashes = {(png_record(p) or {}).get("config_hash") for p in images.glob("*.png")} - {None}
        if not hashes:
            raise self._refuse(f"a {RUN_FILE} that is {why} and no sign of a tgsample run",
                               FIX_NEW_DIR)
        other = hashes - {self.config_hash}
        if other and not self.overwrite:
            raise self._refuse(f"a {RUN_FILE} that is {why} and images of another config (hash "
                               f"{sorted(map(str, other))[0]}, this run {self.config_hash})",
                               FIX_OVERWRITE)
        if other:
            self._wipe(other)
        print(f"tgsample generate: note: {RUN_FILE} was {why}; rebuilding it (the run's images are of this "
              "config)", file=sys.stderr)

    def _wipe(self, hashes: set) -> None:
        """`overwrite`: delete the files of the run(s) with config hash in `hashes`: exactly those it
        wrote (its rows' images and latents, PNGs whose text chunk names that config, its manifest parts and
        top-level files); nothing else. Emptied folders are removed."""
        from .data import _ID

        for _, row in read_rows([self.dir / MANIFEST, *self._parts()]):
            if row.get("config_hash") in hashes and _ID.fullmatch(row["id"]) and \
                    (png_record(self.image_path(row["id"])) or {}).get("config_hash") in hashes:
                self.image_path(row["id"]).unlink(missing_ok=True)
                self.latent_path(row["id"]).unlink(missing_ok=True)
        images = self.dir / "images"
        for p in images.glob("*.png") if images.is_dir() else ():
            if (png_record(p) or {}).get("config_hash") in hashes:
                p.unlink()
                self.latent_path(p.stem).unlink(missing_ok=True)
        for p in self._parts():
            p.unlink()
        for name in (MANIFEST, PREVIEW, CONFIG, RUN_FILE):
            (self.dir / name).unlink(missing_ok=True)
        for sub in SUBDIRS:
            folder = self.dir / sub
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def _valid(self, hit: Optional[tuple[str, dict]], record: Record, verify: bool) -> bool:
        """Whether `hit` is a row of `record` at its own path whose files are there (`verify`: and
        match the row's checksums)."""
        if hit is None:
            return False
        row = hit[1]
        if row.get("path") != f"images/{record.id}.png" or not _same_record(row, record):
            return False
        image = self.image_path(record.id)
        if not verify:
            return image.exists() and (not self.latents or self.latent_path(record.id).exists())
        ok = sha256_file(image) == row["sha256"] if row.get("sha256") else png_ok(image)
        if ok and self.latents:
            latent = self.latent_path(record.id)
            ok = sha256_file(latent) == row["latent_sha256"] if row.get("latent_sha256") else latent.exists()
        return ok

    def _adopt(self, record: Record) -> Optional[str]:
        """The row of a PNG with no valid row whose own text chunk names this record and config, else None.
        A PNG at the record's image path that tgsample did not write is refused (it is never overwritten)."""
        path = self.image_path(record.id)
        if not path.exists():
            return None
        meta = png_record(path)
        if meta is None:
            if png_ok(path):
                raise self._refuse(f"an image tgsample did not write at images/{record.id}.png (the image of "
                                   f"record {record.id!r})", "move it away, or use another --output.dir")
            return None  # torn or corrupt: ours, made again
        if meta.get("config_hash") != self.config_hash or meta.get("record") != record.as_dict():
            return None  # another record's or another config's image (ours): made again
        latent = self.latent_path(record.id)
        if self.latents and not latent.exists():
            return None
        return self._row_line(record, sha256_file(path), f"latents/{record.id}.safetensors" if self.latents else None,
                              sha256_file(latent) if self.latents else None, rank=None, run="adopted")

    def _decide(self, index: RowIndex, records: Sequence[Record], parts: list[Path],
                verify: bool) -> tuple[bytearray, list[str], bool]:
        """Index the rows of this config (`manifest.jsonl` and `parts`) and pick each record's
        (`_valid`; with `verify`, PNGs without a valid row are adopted when their text chunk says
        so). Returns `(pending 0/1 per record, finished ids that are not records, whether manifest.jsonl
        already holds exactly the rows it should)`."""
        for line, row in read_rows([self.dir / MANIFEST, *parts]):
            index.add(line, row, keep=lambda r: r.get("config_hash") == self.config_hash)
        pending = bytearray(b"\x01") * len(records)
        h = hashlib.sha256()
        for i, record in enumerate(records):
            hit = index.get(record.id)
            line = hit[0] if self._valid(hit, record, verify) else self._adopt(record) if verify else None
            if line is not None:
                pending[i] = 0
                h.update(line.encode())
                if hit is None or hit[0] != line:
                    index.add(line, json.loads(line))
            index.take(record.id)  # a record's row is placed by record order (or dropped), never in rest()
        kept = []
        for line, row in index.rest():  # rows of this config for ids that are not records of this job
            if self._other_ok(row):
                kept.append(row["id"])
                h.update(line.encode())
        same = not parts and h.hexdigest() == (sha256_file(self.dir / MANIFEST) or hashlib.sha256().hexdigest())
        return pending, kept, same

    def _other_ok(self, row: dict) -> bool:
        """A row of this config whose id is not a record of this job is kept when its image is where it
        should be (it is never dropped for being someone else's record)."""
        from .data import _ID

        return bool(_ID.fullmatch(row["id"])) and row.get("path") == f"images/{row['id']}.png" \
            and self.image_path(row["id"]).exists()

    def _emit(self, index: RowIndex, records: Sequence[Record], pending: bytearray, parts: list[Path]) -> None:
        """Write `manifest.jsonl` from `index` (each finished record's row in record order, then the other
        rows `_decide` kept), remove the merged `parts`, and redraw `preview.png`."""
        def lines() -> Iterator[str]:
            for i, record in enumerate(records):
                if not pending[i]:
                    yield index.get(record.id)[0]
            for line, row in index.rest():
                if self._other_ok(row):
                    yield line

        atomic_write_lines(self.dir / MANIFEST, lines())
        for p in parts:
            p.unlink(missing_ok=True)
        if self.preview > 0:
            self._write_preview()

    def _write_start(self, info: Optional[dict], digest: str, replace: bool = False, config: bool = True) -> None:
        """`run.json` (created atomically when new; rewritten only when the job's records change or it
        was garbled), `config.yaml` (the config of the latest run that has work to do, written only when
        different), the folders; temporaries of killed writers removed."""
        from .. import __version__

        for sub in ("images", "manifest") + (("latents",) if self.latents else ()):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        run = {"config_hash": self.config_hash, "config": self.config, "tgsample": __version__,
               "records": {"count": int(digest.split("-")[0]), "hash": digest}, "created": time.time()}
        encode = lambda d: json.dumps(d, indent=2, sort_keys=True, default=str).encode()  # noqa: E731
        if replace:
            atomic_write(self.dir / RUN_FILE, encode(run))
        elif info is None:
            if not create_exclusive(self.dir / RUN_FILE, encode(run)):  # another job claimed it since we looked
                state, info, _ = self._read_run()
                if info is None or info["config_hash"] != self.config_hash:
                    raise self._refuse("a run that another job started meanwhile", "use another --output.dir")
                self._check_records(info, digest)
        if info is not None and info.get("records", {}).get("hash") != digest:
            atomic_write(self.dir / RUN_FILE, encode({**info, "records": run["records"]}))
        if self.cli_config is not None:
            text, path = self.cli_config.encode(), self.dir / CONFIG
            if not path.exists() or (config and path.read_bytes() != text):
                atomic_write(path, text)
        self._remove_temporaries()

    def _remove_temporaries(self) -> None:
        """Temporary files of killed writers (`.<name>.tmp-<pid>`: only tgsample names them so)."""
        for folder in (self.dir, *(self.dir / s for s in SUBDIRS)):
            for tmp in folder.glob(".*.tmp-*") if folder.is_dir() else ():
                tmp.unlink(missing_ok=True)

    # --- merging (rank 0) -----------------------------------------------------------------

    def merge(self, records: Sequence[Record]) -> int:
        """Write `manifest.jsonl`: the latest row of each finished record in record order, then any other
        rows of this config (never dropped), streamed through an on-disk index; then `preview.png`; the
        parts it merged are removed. Returns the number of records with a row."""
        with RowIndex() as index:
            parts = self._parts()
            pending, _, _ = self._decide(index, records, parts, verify=False)
            self._emit(index, records, pending, parts)
        return len(records) - sum(pending)

    def _write_preview(self) -> None:
        """`preview.png`: the first `preview` images of the manifest (their own paths, never a row's)."""
        import io

        paths = []
        for _, row in read_rows([self.dir / MANIFEST]):
            if len(paths) >= self.preview:
                break
            if self.image_path(row["id"]).exists():
                paths.append(self.image_path(row["id"]))
        if paths:
            buf = io.BytesIO()
            preview_grid(paths).save(buf, format="PNG")
            atomic_write(self.dir / PREVIEW, buf.getvalue())

    # --- hooks -------------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        data = trainer.datamodule
        if data is None or not hasattr(data, "records"):
            raise ConfigError("GenerationWriter needs a GenerationData datamodule (trainer.predict(module, datamodule=...))")
        if self.dir is None:
            self.dir = Path("outputs") / (getattr(pl_module, "preset", None) or pl_module.settings["student"])
        self._stop_signal = None
        self._install_sigterm(trainer)
        self.records = data.records  # bad records fail here, on every rank
        result: Any = ("ok",)
        if trainer.is_global_zero:
            try:
                self.precheck(pl_module.generation_config(trainer.precision),
                              records_hash(r.key() for r in self.records))
            except TgsampleError as exc:  # every rank must leave the broadcast, then fail the same way
                result = ("error", type(exc).__name__, str(exc))
        result = trainer.strategy.broadcast(result, src=0)
        _raise(result)
        data.planner = lambda records: self._plan(trainer, pl_module, records)
        self.written = 0

    def _plan(self, trainer: Any, pl_module: Any, records: list[Record]) -> list[int]:
        """Every rank, once the models are built: check every setting, then rank 0 prepares the directory;
        returns the positions of the records still to generate."""
        self._install_sigterm(trainer)  # again: a plain Trainer installs Lightning's handler after setup
        pl_module.check_records(records)
        self.config = pl_module.generation_config(trainer.precision)
        self.config_hash = config_hash(self.config)
        result: Any = None
        if trainer.is_global_zero:
            try:
                run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}"
                result = ("ok", self.prepare(records), run_id)
            except TgsampleError as exc:
                result = ("error", type(exc).__name__, str(exc))
        result = trainer.strategy.broadcast(result, src=0)
        _raise(result)
        pending, self.run_id = result[1], result[2]
        todo = [i for i, flag in enumerate(pending) if flag]
        self.summary = {"records": len(records), "skipped": len(records) - len(todo), "written": 0}
        if not todo:
            self._say(trainer, f"{len(records)} of {len(records)} already done in {self.dir}; nothing to do")
            if self._stop_signal is not None:
                raise GenerationInterrupted(f"stopped by signal {signal.Signals(self._stop_signal).name}; the job "
                                            "had already finished")
        self._t0 = time.perf_counter()
        return todo

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._install_sigterm(trainer)

    def _install_sigterm(self, trainer: Any) -> None:
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            return
        self._launcher = getattr(trainer.strategy, "launcher", None)
        if self._old_handler is None:
            self._old_handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if getattr(trainer, "received_sigterm", False):  # arrived while Lightning's handler was installed
            self._on_sigterm(signal.SIGTERM, None)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        """Note the signal (the batch in flight still finishes and is written) and pass it on to the ranks
        this process launched (`strategy="ddp"`). No collective call happens here: the ranks agree to stop
        at the start of the next batch."""
        first = self._stop_signal is None
        self._stop_signal = signum
        kill = getattr(self._launcher, "kill", None)
        if first and kill is not None:
            kill(signum)

    def on_predict_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        """Stop before this batch if any rank received SIGTERM (every rank runs the same number of batches)."""
        stop = self._stop_signal is not None
        if trainer.world_size > 1:
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if stop:
            self.drain()  # the batches already generated are written before the stop
            name = signal.Signals(self._stop_signal or signal.SIGTERM).name
            raise GenerationInterrupted(
                f"stopped by signal {name} after writing {self.written} image(s) on rank {trainer.global_rank}; "
                "rerun the same command to finish the job")

    def _row_line(self, record: Record, sha: Optional[str], latent: Optional[str], latent_sha: Optional[str],
                  rank: Optional[int], run: str, seconds: Optional[float] = None, config: Any = None) -> str:
        return json.dumps({
            **record.as_dict(), "config": config, "config_hash": self.config_hash,
            "path": f"images/{record.id}.png", "sha256": sha, "latent": latent, "latent_sha256": latent_sha,
            "seconds": seconds, "rank": rank, "run": run, "finished": time.time()}, default=str) + "\n"

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int) -> None:
        records: list[Record] = prediction["records"]
        if not records:
            return
        per_image = round(prediction["seconds"] / len(records), 6)
        settings = [pl_module.record_settings(record) for record in records]
        job = (records, prediction["images"], prediction["x"], settings, per_image, trainer.global_rank)
        if not self.queue:
            return self._write_batch(*job)
        self._raise_failure()
        if self._worker is None:
            self._queue = queues.Queue(maxsize=self.queue)
            self._worker = threading.Thread(target=self._work, name="tgsample-writer", daemon=True)
            self._worker.start()
        self._queue.put(job)  # blocks while `queue` batches wait: memory stays bounded

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                if self._failed is None:
                    self._write_batch(*job)
            except BaseException as exc:  # reported on the main thread (next batch or drain)
                self._failed = exc
            finally:
                self._queue.task_done()

    def _raise_failure(self) -> None:
        if self._failed is not None:
            exc, self._failed = self._failed, None
            raise exc

    def drain(self) -> None:
        """Wait until every queued batch is written and stop the writer thread; re-raise its error."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = self._queue = None
        self._raise_failure()

    def _write_batch(self, records: list[Record], images: Sequence[torch.Tensor], xs: Sequence[torch.Tensor],
                     settings: list, per_image: float, rank: int) -> None:
        """One batch: its PNGs (and latents) atomically, then its manifest lines in one write."""
        lines = []
        for record, image, x, config in zip(records, images, xs, settings):
            sha = write_png(self.image_path(record.id), image, _record_meta(record, self.config_hash))
            latent = latent_sha = None
            if self.latents:
                from safetensors.torch import save

                data = save({"x": x.contiguous()})
                atomic_write(self.latent_path(record.id), data)
                latent, latent_sha = f"latents/{record.id}.safetensors", hashlib.sha256(data).hexdigest()
            lines.append(self._row_line(record, sha, latent, latent_sha, rank, self.run_id, per_image, config))
        if self._part is None:
            part = self.dir / "manifest" / f"part-{self.run_id}-r{rank:04d}.jsonl"
            self._part = part.open("a", encoding="utf-8")
        self._part.write("".join(lines))  # one write per batch, after its images are in place
        self._part.flush()
        self.written += len(records)

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.drain()
        self._close_part()
        trainer.strategy.barrier("tgsample-merge")
        if trainer.is_global_zero:
            done = self.merge(self.records)
            seconds = time.perf_counter() - self._t0
            written = sum(1 for _, row in read_rows([self.dir / MANIFEST]) if row.get("run") == self.run_id)
            self.summary.update(written=written, seconds=round(seconds, 3), left=len(self.records) - done)
            preview = f"; preview: {self.dir / PREVIEW}" if self.preview and (self.dir / PREVIEW).exists() else ""
            self._summary_text = (f"wrote {written} image(s) in {seconds:.1f} s ({written / max(seconds, 1e-9):.2f} "
                                  f"images/s); {self.summary['skipped']} already done, {self.summary['left']} left; "
                                  f"manifest: {self.dir / MANIFEST}{preview}")
        trainer.strategy.barrier("tgsample-merged")
        stopped = self._stop_signal
        self._restore_handler()
        if stopped is not None:
            raise GenerationInterrupted(f"stopped by signal {signal.Signals(stopped).name} after the last batch; the "
                                        "manifest is merged (rerun the same command to check)")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        try:
            self.drain()  # what was generated is written (a stop keeps the batches already made)
        except Exception:  # the error being handled is the one to report
            pass
        self._close_part()
        self._restore_handler()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Also after Lightning's own teardown, which may re-install a handler it saved while ours was in place.
        Prints the summary (after the progress bar has closed)."""
        try:
            self.drain()
        finally:
            self._close_part()
        self._restore_handler()
        if self._summary_text:
            self._say(trainer, self._summary_text)
            self._summary_text = ""

    def _close_part(self) -> None:
        if self._part is not None:
            self._part.close()
            self._part = None

    def _restore_handler(self) -> None:
        if signal.getsignal(signal.SIGTERM) == self._on_sigterm:
            signal.signal(signal.SIGTERM, self._old_handler if self._old_handler is not None else signal.SIG_DFL)


def _raise(result: tuple) -> None:
    """Re-raise on every rank the typed error rank 0 reported through a broadcast."""
    if result[0] == "error":
        from .. import errors

        raise getattr(errors, result[1], ConfigError)(result[2])


def _diff(old: Any, new: Any, prefix: str = "") -> str:
    """The first few keys where two configs differ, as `a.b: old -> new`."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                out.append(_diff(old.get(k), new.get(k), f"{prefix}{k}."))
        return "; ".join(out[:4]) or "(nothing)"
    return f"{prefix.rstrip('.')}: {old!r} -> {new!r}"
