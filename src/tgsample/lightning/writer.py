"""The prediction writer: what a generation run leaves on disk, and how it resumes.

Output directory layout::

    run.json                       the generation config and its hash (a different config is refused)
    images/<id>.png                one image per record, written atomically (temporary name, then os.replace)
    latents/<id>.safetensors       the final samples x (``latents=True``)
    manifest/part-<run>-r<rank>.jsonl   each rank's entries, appended per batch
    manifest.jsonl                 the merged manifest: one line per record, in record order
    preview.png                    a grid of the first ``preview`` images

A manifest entry: ``id, prompt, negative, seed, overrides, config (the record's effective settings),
config_hash, path, latent, seconds (the batch's time per image), rank, run, finished (unix time)``.

Resume: before any batch, rank 0 reads ``run.json``, every manifest line (a truncated last line
from ``kill -9`` is skipped) and keeps a record as *done* when an entry with the same config hash
and the same record content exists and its PNG decodes. Only the rest is generated. A straggler
rank of a killed run may still be writing: it writes the same bytes to the same names atomically,
and the merge keeps one entry per id, so there are no duplicates and no truncated files.

Stopping: on SIGTERM the writer finishes the batch in flight, writes it, and raises
:class:`GenerationInterrupted` (Lightning alone logs SIGTERM during predict and carries on).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from ..errors import ConfigError, TgsampleError
from .data import Record

__all__ = ["GenerationWriter", "GenerationInterrupted", "write_png", "png_ok", "read_entries"]

RUN_FILE, MANIFEST, PREVIEW = "run.json", "manifest.jsonl", "preview.png"


class GenerationInterrupted(TgsampleError):
    """The run was stopped by a signal (SIGTERM) after finishing and writing its current batch."""

    exit_code = 128 + signal.SIGTERM


def _atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then ``os.replace(tmp, path)``: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_png(path: Path, image: torch.Tensor) -> None:
    """Write ``uint8 [H, W, C]`` (C = 1, 3 or 4) as a PNG, atomically."""
    from PIL import Image

    arr = image.numpy()
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    _atomic(path, lambda tmp: img.save(tmp, format="PNG"))


def png_ok(path: Path) -> bool:
    """True when ``path`` is a complete, decodable PNG."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
        return img.format == "PNG"
    except Exception:  # missing, truncated, corrupt: all mean "generate again"
        return False


def _json_line(line: str) -> Optional[dict]:
    try:
        out = json.loads(line)
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) and "id" in out else None


def read_entries(paths: Sequence[Path]) -> list[dict]:
    """Every well-formed manifest entry in ``paths`` (malformed lines, e.g. a cut-off last line, are skipped)."""
    out: list[dict] = []
    for p in paths:
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        out += [e for e in map(_json_line, text.splitlines()) if e is not None]
    return out


def _same_record(entry: dict, record: Record) -> bool:
    return all(entry.get(k) == v for k, v in (("prompt", record.prompt), ("seed", record.seed),
                                               ("negative", record.negative), ("overrides", record.overrides)))


def _grid(images: list, columns: int = 8):
    """A PIL grid of equally sized PIL images (row-major, 2 px gaps)."""
    from PIL import Image

    w, h = images[0].size
    cols = min(columns, len(images))
    rows = -(-len(images) // cols)
    grid = Image.new(images[0].mode, (cols * (w + 2) - 2, rows * (h + 2) - 2))
    for i, img in enumerate(images):
        grid.paste(img, ((i % cols) * (w + 2), (i // cols) * (h + 2)))
    return grid


class GenerationWriter(BasePredictionWriter):
    """Writes each batch as it comes (``return_predictions=False`` keeps memory flat); see the module docs.

    Args:
        dir: the output directory (created; must be on a filesystem every rank sees).
        overwrite: start again when the directory holds a run with a different config (its files are deleted);
            otherwise that is refused.
        latents: also save the final samples ``x`` as ``latents/<id>.safetensors``.
        preview: how many images the preview grid shows (0: none).
    """

    def __init__(self, dir: str = "outputs", overwrite: bool = False, latents: bool = False, preview: int = 64):
        super().__init__(write_interval="batch")
        self.dir = Path(dir)
        self.overwrite, self.latents, self.preview = bool(overwrite), bool(latents), int(preview)
        self.config: dict = {}
        self.config_hash = ""
        self.run_id = ""
        self.written = 0
        self._part: Optional[Any] = None
        self._stop_signal: Optional[int] = None
        self._old_handler: Any = None
        self._launcher: Any = None
        self.cli_config: Optional[str] = None  # the CLI's full YAML config, saved as config.yaml

    # --- paths -------------------------------------------------------------------------

    def image_path(self, record_id: str) -> Path:
        return self.dir / "images" / f"{record_id}.png"

    def latent_path(self, record_id: str) -> Path:
        return self.dir / "latents" / f"{record_id}.safetensors"

    def _parts(self) -> list[Path]:
        return sorted((self.dir / "manifest").glob("part-*.jsonl"))

    # --- preparing a run (rank 0) ------------------------------------------------------

    def _create_dir(self) -> None:
        try:
            for sub in ("images", "manifest") + (("latents",) if self.latents else ()):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            probe = self.dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(f"output directory {str(self.dir)!r} is not writable: {exc.strerror or exc}; "
                              "choose a directory you can write to") from None

    def _wipe(self) -> None:
        for sub in ("images", "latents", "manifest"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        for name in (MANIFEST, PREVIEW, RUN_FILE, "config.yaml"):
            (self.dir / name).unlink(missing_ok=True)

    def _check_config(self) -> None:
        run = self.dir / RUN_FILE
        if run.exists():
            try:
                old = json.loads(run.read_text())
            except (OSError, json.JSONDecodeError):
                old = {}
            if old.get("config_hash") != self.config_hash:
                if not self.overwrite:
                    diff = _diff(old.get("config", {}), self.config)
                    raise ConfigError(
                        f"output directory {str(self.dir)!r} holds a run with a different config (hash "
                        f"{old.get('config_hash')!r}, this run {self.config_hash!r}; differs in {diff}); use "
                        "another directory, or pass overwrite=True (--output.overwrite true) to delete it and start again")
                self._wipe()
            elif self.overwrite:
                self._wipe()
        self._create_dir()
        if not run.exists():
            from .. import __version__

            info = {"config_hash": self.config_hash, "config": self.config, "tgsample": __version__,
                    "created": time.time()}
            _atomic(run, lambda tmp: tmp.write_text(json.dumps(info, indent=2, sort_keys=True, default=str)))
        if self.cli_config is not None:
            _atomic(self.dir / "config.yaml", lambda tmp: tmp.write_text(self.cli_config))

    def _remove_temporaries(self) -> None:
        for sub in ("images", "latents", "manifest"):
            for tmp in (self.dir / sub).glob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)

    def done_ids(self, records: Sequence[Record]) -> set[str]:
        """Ids with a manifest entry of this config, the same record content and an intact PNG."""
        by_id = {r.id: r for r in records}
        entries = read_entries([self.dir / MANIFEST] + self._parts())
        ok = {e["id"] for e in entries if e.get("config_hash") == self.config_hash and e["id"] in by_id
              and _same_record(e, by_id[e["id"]])}
        if self.latents:
            ok = {i for i in ok if self.latent_path(i).exists()}
        return {i for i in ok if png_ok(self.image_path(i))}

    def prepare(self, records: Sequence[Record]) -> list[str]:
        """Rank 0: check the directory and config, clean up, and return the ids still to generate."""
        self._check_config()
        self._remove_temporaries()
        done = self.done_ids(records)
        pending = [r.id for r in records if r.id not in done]
        if not pending:
            self.merge(records)
        return pending

    # --- hooks -------------------------------------------------------------------------

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        data = trainer.datamodule
        if data is None or not hasattr(data, "records"):
            raise ConfigError("GenerationWriter needs a GenerationData datamodule (trainer.predict(module, datamodule=...))")
        self.config = pl_module.generation_config(trainer.precision)
        from .module import config_hash

        self.config_hash = config_hash(self.config)
        result: Any = None
        if trainer.is_global_zero:
            try:
                result = ("ok", self.prepare(data.records), f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}-{os.getpid()}")
            except TgsampleError as exc:  # every rank must leave the broadcast, then fail the same way
                result = ("error", type(exc).__name__, str(exc))
        result = trainer.strategy.broadcast(result, src=0)
        if result[0] == "error":
            from .. import errors

            raise getattr(errors, result[1], ConfigError)(result[2])
        pending = set(result[1])
        self.run_id = result[2]
        data.pending = [r for r in data.records if r.id in pending]
        self.records = {r.id: r for r in data.records}
        self.written = 0

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        part = self.dir / "manifest" / f"part-{self.run_id}-r{trainer.global_rank:04d}.jsonl"
        self._part = part.open("a", encoding="utf-8")
        self._install_sigterm(trainer)

    def _install_sigterm(self, trainer: Any) -> None:
        self._stop_signal = None
        self._launcher = getattr(trainer.strategy, "launcher", None)
        self._old_handler = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if getattr(trainer, "received_sigterm", False):  # arrived while the models were being built
            self._on_sigterm(signal.SIGTERM, None)

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        """Note the signal (the batch in flight still finishes and is written) and pass it on to the ranks this
        process launched (``strategy="ddp"``). Lightning's own handler is not chained: it broadcasts from inside
        the handler, which can deadlock against a rank waiting in the final barrier. Installed in
        ``on_predict_start``, after Lightning installs its own (restored when the run ends)."""
        first = self._stop_signal is None
        self._stop_signal = signum
        kill = getattr(self._launcher, "kill", None)
        if first and kill is not None:
            kill(signum)

    def write_on_batch_end(self, trainer: Any, pl_module: Any, prediction: Any, batch_indices: Any, batch: Any,
                           batch_idx: int, dataloader_idx: int) -> None:
        records: list[Record] = prediction["records"]
        per_image = prediction["seconds"] / max(1, len(records))
        lines = []
        for record, image, x in zip(records, prediction["images"], prediction["x"]):
            write_png(self.image_path(record.id), image)
            latent = None
            if self.latents:
                from safetensors.torch import save_file

                path = self.latent_path(record.id)
                _atomic(path, lambda tmp: save_file({"x": x.contiguous()}, str(tmp)))
                latent = str(path.relative_to(self.dir))
            lines.append(json.dumps({
                **record.as_dict(), "config": pl_module.record_settings(record), "config_hash": self.config_hash,
                "path": str(self.image_path(record.id).relative_to(self.dir)), "latent": latent,
                "seconds": round(per_image, 6), "rank": trainer.global_rank, "run": self.run_id,
                "finished": time.time()}, default=str))
        if lines:
            self._part.write("\n".join(lines) + "\n")  # one write per batch, after its images are in place
            self._part.flush()
        self.written += len(records)
        if self._stop_signal is not None:
            raise GenerationInterrupted(
                f"stopped by signal {signal.Signals(self._stop_signal).name} after writing {self.written} image(s) "
                f"on rank {trainer.global_rank}; rerun the same command to finish the job")

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self._close()
        trainer.strategy.barrier("tgsample-merge")
        if trainer.is_global_zero:
            self.merge(list(self.records.values()))
        trainer.strategy.barrier("tgsample-merged")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._close()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._close()

    def _close(self) -> None:
        if self._part is not None:
            self._part.close()
            self._part = None
        if self._old_handler is not None:
            signal.signal(signal.SIGTERM, self._old_handler)
            self._old_handler = None

    # --- merging -----------------------------------------------------------------------

    def merge(self, records: Sequence[Record]) -> list[dict]:
        """Write ``manifest.jsonl`` (one entry per finished record, record order) and ``preview.png``;
        the per-rank parts it merged are then removed. Returns the entries."""
        parts = self._parts()
        latest: dict[str, dict] = {}
        for e in read_entries([self.dir / MANIFEST] + parts):
            if e.get("config_hash") == self.config_hash and e.get("finished", 0) >= latest.get(e["id"], {}).get("finished", -1):
                latest[e["id"]] = e
        entries = [latest[r.id] for r in records if r.id in latest and _same_record(latest[r.id], r)
                   and self.image_path(r.id).exists()]
        text = "".join(json.dumps(e, default=str) + "\n" for e in entries)
        _atomic(self.dir / MANIFEST, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        for p in parts:
            p.unlink(missing_ok=True)
        if self.preview > 0 and entries:
            self._write_preview(entries[: self.preview])
        return entries

    def _write_preview(self, entries: list[dict]) -> None:
        from PIL import Image

        images = []
        for e in entries:
            with Image.open(self.dir / e["path"]) as img:
                images.append(img.copy())
        grid = _grid(images)
        _atomic(self.dir / PREVIEW, lambda tmp: grid.save(tmp, format="PNG"))


def _diff(old: Any, new: Any, prefix: str = "") -> str:
    """The first few keys where two configs differ, as ``a.b: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                out.append(_diff(old.get(k), new.get(k), f"{prefix}{k}."))
        return "; ".join(out[:4]) or "(nothing)"
    return f"{prefix.rstrip('.')}: {old!r} -> {new!r}"
