"""The files of a run directory, checked rather than trusted: atomic writes, self-describing PNGs with a
checksum, manifest rows read as a stream, and an on-disk index that merges them in flat memory.

* Every file is written under a temporary name, then `os.replace`-d: a reader sees the old file or the
  whole new one, never a torn one. A first `run.json` is created with `os.link` (fails if it exists),
  so two jobs started at once cannot both claim a directory.
* A PNG carries its record and config hash in a `tgsample` text chunk, so an image is recognised
  without its manifest row; the row carries the SHA-256 of the PNG's bytes, so a swapped or edited
  file is detected.
* Manifest rows are read line by line (a torn last line from `kill -9` is skipped) and indexed in a
  temporary SQLite file (latest row per id), so merging a million rows costs disk, not memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

__all__ = ["atomic_write", "create_exclusive", "png_bytes", "png_record", "sha256_file", "read_rows", "RowIndex",
           "TEXT_KEY"]

TEXT_KEY = "tgsample"
"""the PNG text chunk that holds `{"record": ..., "config_hash": ...}` (what makes a PNG tgsample's)"""


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and `os.replace` (the temporary is removed on error)."""
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_lines(path: Path, lines: Iterable[str]) -> None:
    """[`atomic_write`][tgsample.lightning.manifest.atomic_write] of a text file from an iterable of lines (streamed,
    each with its newline)."""
    tmp = _tmp(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(lines)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def create_exclusive(path: Path, data: bytes) -> bool:
    """Create `path` with `data` unless it exists (atomically: a temporary file, then `os.link`).
    Returns False when another process created it first."""
    tmp = _tmp(path)
    try:
        tmp.write_bytes(data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        tmp.unlink(missing_ok=True)


def png_bytes(image: Any, meta: dict) -> bytes:
    """A PNG of `uint8 [H, W, C]` (C = 1, 3 or 4) with `meta` as JSON in its
    [`TEXT_KEY`][tgsample.lightning.manifest.TEXT_KEY] chunk."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    arr = image.numpy() if hasattr(image, "numpy") else image
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    info = PngInfo()
    info.add_text(TEXT_KEY, json.dumps(meta, sort_keys=True, default=str))
    buf = io.BytesIO()
    img.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def png_record(path: Path) -> Optional[dict]:
    """The [`TEXT_KEY`][tgsample.lightning.manifest.TEXT_KEY] metadata of a complete, decodable PNG, else `None`
    (missing, torn, foreign)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            if img.format != "PNG":
                return None
            meta = json.loads(img.text.get(TEXT_KEY, "null"))
    except Exception:  # missing, truncated, corrupt, not ours: all mean "not a usable image of this run"
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("record"), dict) and "config_hash" in meta else None


def sha256_file(path: Path) -> Optional[str]:
    """The SHA-256 of a file's bytes, or `None` if it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def _row(line: str) -> Optional[dict]:
    try:
        out = json.loads(line)
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) and isinstance(out.get("id"), str) else None


def read_rows(paths: Iterable[Path]) -> Iterator[tuple[str, dict]]:
    """`(line, row)` for every well-formed manifest row in `paths`, read as a stream (malformed lines,
    such as a last line cut off by `kill -9`, are skipped; a missing file is empty)."""
    for p in paths:
        try:
            f = open(p, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                row = _row(line)
                if row is not None:
                    yield line if line.endswith("\n") else line + "\n", row


class RowIndex:
    """The latest row (largest `finished`) per record id, in a temporary SQLite file (flat memory).

    Use as a context manager; [`add`][tgsample.lightning.manifest.RowIndex.add] rows, then
    [`get`][tgsample.lightning.manifest.RowIndex.get] by id or iterate
    [`rest`][tgsample.lightning.manifest.RowIndex.rest]
    (rows of ids not [`take`][tgsample.lightning.manifest.RowIndex.take]-n yet, in insertion order).
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="tgsample-merge-")
        self.db = sqlite3.connect(os.path.join(self._dir.name, "rows.sqlite"), isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-8000;"
                              "CREATE TABLE rows (id TEXT PRIMARY KEY, seq INTEGER, finished REAL, line TEXT, "
                              "taken INTEGER DEFAULT 0);")
        self.db.execute("BEGIN")
        self._seq = 0

    def __enter__(self) -> "RowIndex":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()
        self._dir.cleanup()

    def add(self, line: str, row: dict, keep: Callable[[dict], bool] = lambda r: True) -> None:
        """Index `row` (its text `line`) if `keep(row)`; a later-finished row of the same id replaces it."""
        if not keep(row):
            return
        finished = row.get("finished")
        finished = float(finished) if isinstance(finished, (int, float)) else -1.0
        self._seq += 1
        self.db.execute("INSERT INTO rows (id, seq, finished, line) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE "
                        "SET finished = excluded.finished, line = excluded.line "
                        "WHERE excluded.finished >= rows.finished", (row["id"], self._seq, finished, line))

    def get(self, record_id: str) -> Optional[tuple[str, dict]]:
        """`(line, row)` of `record_id`, or `None`."""
        hit = self.db.execute("SELECT line FROM rows WHERE id = ?", (record_id,)).fetchone()
        return None if hit is None else (hit[0], json.loads(hit[0]))

    def take(self, record_id: str) -> None:
        """Mark `record_id` as placed (it is then not in [`rest`][tgsample.lightning.manifest.RowIndex.rest])."""
        self.db.execute("UPDATE rows SET taken = 1 WHERE id = ?", (record_id,))

    def rest(self) -> Iterator[tuple[str, dict]]:
        """Rows never [`take`][tgsample.lightning.manifest.RowIndex.take]-n, in the order they were first added."""
        for (line,) in self.db.execute("SELECT line FROM rows WHERE taken = 0 ORDER BY seq"):
            yield line, json.loads(line)
