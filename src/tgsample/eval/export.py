"""A run in the folder layouts the field's evaluators read (`tgsample export`; torch-free).

=================  ==========================================================================  =====================
format             layout (as the evaluator parses it)                                          needs
=================  ==========================================================================  =====================
`captions`       `images/<id>.png`, `texts/<id>.txt` (CLIP-score scripts that pair two     —
                   folders by sorted file name, e.g. `python -m clip_score images texts`) and
                   `metadata.jsonl` (`{"file_name": "images/<id>.png", "text": ...}`, the
                   Hugging Face `imagefolder` captions file)
`clean-fid`      `<id>.png`, one flat folder (`cleanfid.fid.compute_fid(folder, ...)`)    —
`geneval`        `<00000>/metadata.jsonl` (that prompt's line of GenEval's metadata, one      GenEval's
                   JSON object) and `<00000>/samples/<0000>.png`; folder = the prompt's line
                   `evaluation_metadata.jsonl`
                   number in the metadata file
`t2i-compbench`  `samples/<prompt>_<000000>.png`, numbered across the folder, a prompt's      (optional) its prompt
                   images consecutive, prompts in the order of the benchmark's prompt file       file, for its order
`hpsv2`          `<style>/<00000>.jpg` for `anime`, `concept-art`, `paintings`,          HPSv2's benchmark
                   `photo`; index = the prompt's position in `<style>.json`; one image a     folder (`<style>.json`)
                   prompt (the lowest seed)
=================  ==========================================================================  =====================

Exports **link or copy** (`mode`: `symlink` (default, absolute targets), `hardlink`, `copy`);
the run is never moved or rewritten, and the export folder may not lie inside the run. A file already
at a target is left alone when it is the same image (a rerun), and is an error otherwise: nothing is
overwritten or deleted. HPSv2's reader opens `.jpg` names with PIL, which reads the PNG bytes by their
content, so its images are linked unchanged too.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from .errors import ExportError
from .runs import Item, Source, open_run

__all__ = ["export", "FORMATS", "MODES", "HPSV2_STYLES", "ExportSummary"]

MODES = ("symlink", "hardlink", "copy")
"""How an export places each image: a symbolic link, a hard link or a copy."""
HPSV2_STYLES = ("anime", "concept-art", "paintings", "photo")
"""HPS v2's benchmark styles (its folder layout has one folder per style)."""
PathLike = Union[str, Path]
"""A path given as a string or a `Path`."""


@dataclass
class ExportSummary:
    """What [`export`][tgsample.eval.export.export] wrote: the format, the folder, the number of images and any
    notes."""

    format: str
    out: Path
    images: int
    files: list[Path] = field(default_factory=list, repr=False)
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"exported {self.images} image(s) as {self.format} to {self.out}"
        return text + "".join(f"\n  note: {n}" for n in self.notes)


class _Writer:
    """Plans links / copies of images and small text files under `out`; `commit` first checks every target
    (a file already there must be the same, else nothing at all is written), then writes."""

    def __init__(self, out: Path, mode: str):
        self.out, self.mode = out, mode
        self.plan: list[tuple[Path, str, Any]] = []  # (target, "image" | "text", source path | content)

    def image(self, src: Optional[str], rel: str) -> None:
        self.plan.append((self.out / rel, "image", Path(src)))

    def text(self, rel: str, content: str) -> None:
        self.plan.append((self.out / rel, "text", content))

    @staticmethod
    def _same(target: Path, kind: str, what: Any) -> bool:
        if kind == "text":
            return target.is_file() and not target.is_symlink() and target.read_text(encoding="utf-8") == what
        if target.is_symlink():
            return Path(os.readlink(target)) == what
        return target.is_file() and (os.path.samefile(target, what) or filecmp.cmp(target, what, shallow=False))

    def commit(self) -> list[Path]:
        targets = [t for t, _, _ in self.plan]
        if len(set(targets)) != len(targets):
            raise ExportError("two images would get the same file name in this layout")  # pragma: no cover
        todo = []
        for target, kind, what in self.plan:
            if target.is_symlink() or target.exists():
                if not self._same(target, kind, what):
                    raise ExportError(f"{str(target)!r} already exists with other content; export into a new "
                                      "folder (nothing is overwritten, nothing was written)")
            else:
                todo.append((target, kind, what))
        for target, kind, what in todo:
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "text":
                tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
                tmp.write_text(what, encoding="utf-8")
                os.replace(tmp, target)
            elif self.mode == "symlink":
                target.symlink_to(what)
            elif self.mode == "hardlink":
                try:
                    os.link(what, target)
                except OSError as exc:
                    raise ExportError(f"cannot hard-link {str(what)!r} to {str(target)!r} ({exc.strerror}); use "
                                      "mode='symlink' or 'copy' (hard links need one filesystem)") from None
            else:
                shutil.copy2(what, target)
        return targets


def _ordered(items: Sequence[Item]) -> list[Item]:
    """Items by seed (then id): a prompt's images in a stable order."""
    return sorted(items, key=lambda it: (it.seed if it.seed is not None else -1, it.id))


def _by_prompt(items: Sequence[Item]) -> dict[str, list[Item]]:
    """Text prompt -> its images, prompts in order of first appearance."""
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(str(it.prompt), []).append(it)
    return {p: _ordered(v) for p, v in groups.items()}


def _captions(run: Source, w: _Writer, metadata: Optional[Path], notes: list) -> int:
    lines = []
    for it in run.items:
        w.image(it.path, f"images/{it.id}.png")
        w.text(f"texts/{it.id}.txt", str(it.prompt))
        lines.append(json.dumps({"file_name": f"images/{it.id}.png", "text": str(it.prompt)}))
    w.text("metadata.jsonl", "\n".join(lines) + "\n")
    return len(run.items)


def _clean_fid(run: Source, w: _Writer, metadata: Optional[Path], notes: list) -> int:
    for it in run.items:
        w.image(it.path, f"{it.id}.png")
    return len(run.items)


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ExportError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return out


def _unmatched(prompts: Sequence[str], where: str) -> ExportError:
    more = f" and {len(prompts) - 3} more" if len(prompts) > 3 else ""
    return ExportError(f"{len(prompts)} prompt(s) of the run are not in {where}: "
                       f"{', '.join(map(repr, prompts[:3]))}{more}; generate from that benchmark's own prompts")


def _geneval(run: Source, w: _Writer, metadata: Optional[Path], notes: list) -> int:
    if metadata is None:
        raise ExportError("the geneval layout needs GenEval's prompts/evaluation_metadata.jsonl (metadata=PATH, "
                          "--metadata PATH): each folder's metadata.jsonl is that prompt's line (tag, include, ...)")
    lines = _read_jsonl(metadata)
    index = {str(m.get("prompt")): (i, m) for i, m in enumerate(lines)}
    groups = _by_prompt(run.items)
    missing = [p for p in groups if p not in index]
    if missing:
        raise _unmatched(missing, str(metadata))
    for prompt, items in groups.items():
        i, meta = index[prompt]
        w.text(f"{i:05d}/metadata.jsonl", json.dumps(meta))
        for k, it in enumerate(items):
            w.image(it.path, f"{i:05d}/samples/{k:05d}.png")
    if len(groups) < len(lines):
        notes.append(f"{len(groups)} of GenEval's {len(lines)} prompts are in this run")
    return len(run.items)


def _t2i_compbench(run: Source, w: _Writer, metadata: Optional[Path], notes: list) -> int:
    groups = _by_prompt(run.items)
    bad = [p for p in groups if "_" in p or "/" in p or "\0" in p or len(f"{p}_000000.png".encode()) > 255]
    if bad:
        raise ExportError(f"T2I-CompBench reads the prompt from the file name up to the first '_'; these prompts "
                          f"contain '_' or '/' or are too long for a file name: {', '.join(map(repr, bad[:3]))}")
    order = list(groups)
    if metadata is not None:
        listed = [line.split("\t")[0].strip() for line in metadata.read_text(encoding="utf-8").splitlines()]
        listed = [p for p in listed if p]
        missing = [p for p in groups if p not in listed]
        if missing:
            raise _unmatched(missing, str(metadata))
        order = [p for p in dict.fromkeys(listed) if p in groups]
    counts = {len(groups[p]) for p in order}
    if len(counts) > 1:
        notes.append(f"prompts have different numbers of images ({sorted(counts)}); T2I-CompBench's 3-in-1 score "
                     "assumes the same number for every prompt")
    k = 0
    for p in order:
        for it in groups[p]:
            w.image(it.path, f"samples/{p}_{k:06d}.png")
            k += 1
    return k


def _hpsv2(run: Source, w: _Writer, metadata: Optional[Path], notes: list) -> int:
    if metadata is None or not metadata.is_dir():
        raise ExportError("the hpsv2 layout needs HPSv2's benchmark prompt folder (metadata=DIR, --metadata DIR) "
                          f"holding {', '.join(s + '.json' for s in HPSV2_STYLES)}")
    where: dict[str, tuple[str, int]] = {}
    sizes = {}
    for style in HPSV2_STYLES:
        f = metadata / f"{style}.json"
        if f.is_file():
            prompts = json.loads(f.read_text(encoding="utf-8"))
            sizes[style] = len(prompts)
            for i, p in enumerate(prompts):
                where.setdefault(str(p), (style, i))
    if not sizes:
        raise ExportError(f"{str(metadata)!r} has none of {', '.join(s + '.json' for s in HPSV2_STYLES)}")
    groups = _by_prompt(run.items)
    missing = [p for p in groups if p not in where]
    if missing:
        raise _unmatched(missing, f"HPSv2's benchmark prompts in {metadata}")
    done: dict[str, int] = {s: 0 for s in sizes}
    extra = 0
    for p, items in groups.items():
        style, i = where[p]
        w.image(items[0].path, f"{style}/{i:05d}.jpg")
        done[style] += 1
        extra += len(items) - 1
    if extra:
        notes.append(f"{extra} image(s) left out: HPSv2's layout holds one image per prompt (the lowest seed is used)")
    for style, n in done.items():
        if 0 < n < sizes[style]:
            notes.append(f"style {style!r}: {n} of {sizes[style]} prompts; HPSv2's benchmark reader substitutes the "
                         "next image for a missing one, so score complete styles only")
    return sum(done.values())


FORMATS: dict[str, Callable[[Source, _Writer, Optional[Path], list], int]] = {
    "captions": _captions,
    "clean-fid": _clean_fid,
    "geneval": _geneval,
    "t2i-compbench": _t2i_compbench,
    "hpsv2": _hpsv2,
}
"""format -> writer; each takes `(run, writer, metadata, notes)` and returns the number of images exported."""


def export(run: Union[PathLike, Source], format: str, out: PathLike, *, mode: str = "symlink",
           metadata: Optional[PathLike] = None) -> ExportSummary:
    """Write `run` (a `tgsample generate` directory) in an evaluator's layout under `out` (see the module docs)."""
    if format not in FORMATS:
        import difflib

        close = difflib.get_close_matches(format, FORMATS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ExportError(f"unknown export format {format!r}{hint}; formats: {', '.join(FORMATS)}")
    if mode not in MODES:
        raise ExportError(f"mode={mode!r} is not one of {list(MODES)}")
    src = run if isinstance(run, Source) else open_run(run)
    if src.kind != "run":
        raise ExportError(f"{src.location!r} is not a run (exports read a run's manifest for prompts and seeds)")
    meta = Path(metadata).expanduser() if metadata is not None else None
    if meta is not None and not meta.exists():
        raise ExportError(f"metadata {str(metadata)!r} does not exist")
    target = Path(out).expanduser().resolve()
    root = Path(src.location)
    if target == root or root in target.parents:
        raise ExportError(f"export folder {str(out)!r} is inside the run {str(root)!r}; runs are only read: "
                          "export somewhere else")
    writer = _Writer(target, mode)
    notes: list[str] = []
    n = FORMATS[format](src, writer, meta, notes)
    return ExportSummary(format, target, n, writer.commit(), notes)
