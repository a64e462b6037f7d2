"""`tgsample list [KIND] [--check] [--json] [--pattern P]`: everything the registry knows.

Without `--check` it reads installed metadata only (no plugin is imported, no torch).
`tgsample list presets` lists the presets derived from the students' recipes (it imports the
torch-free recipe modules, nothing else).
`--check` loads each registration and reports its status (`loaded` or `failed: <reason>`, the same
words in the table and in `--json`) and, for students and teachers, whether their weights are
available without the network (`embedded`, `local`, `missing: <hub id or path>`); the exit
status is then 1 if an active registration fails or a name is ambiguous. A kind may be given
singular or plural (`solver`, `solvers`, `preset`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from typing import Optional, Sequence

from . import registry
from .cli import ArgumentParser

PRESETS = "presets"
"""The kind that `tgsample list presets` lists: the presets derived from the recipes (not a registry kind)."""


def parser() -> argparse.ArgumentParser:
    """The argument parser of `tgsample list`."""
    p = ArgumentParser(
        prog="tgsample list",
        description="List registered guidances, solvers, schedules, students and teachers "
        "(built-ins and installed plugins, from the tgsample.* entry-point groups).",
    )
    p.add_argument("kind", nargs="?", type=kind,
                   help=f"only this kind: {', '.join((*registry.KINDS, PRESETS))} (default: all registry kinds); "
                        "'presets': the presets derived from the recipes")
    p.add_argument("--check", action="store_true",
                   help="import each entry point and report loaded / failed, and whether model weights are local")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    p.add_argument("--pattern", default="*", help="shell-style name filter, e.g. 'k_*' (default: *)")
    return p


def kind(text: str) -> str:
    """A kind from its singular or plural spelling (`solver` -> `solvers`, `guidances` -> `guidance`,
    `preset` -> `presets`); anything else is refused with the kinds and the closest one."""
    forms = {k: k for k in (*registry.KINDS, PRESETS)}
    forms.update({k.rstrip("s"): k for k in (*registry.KINDS, PRESETS)})
    forms.update({k.rstrip("s") + "s": k for k in (*registry.KINDS, PRESETS)})
    if text.lower() in forms:
        return forms[text.lower()]
    import difflib

    close = difflib.get_close_matches(text.lower(), forms, n=1, cutoff=0.6)
    hint = f" (did you mean {forms[close[0]]!r}?)" if close else ""
    raise argparse.ArgumentTypeError(f"{text!r} is not a kind{hint}; kinds: {', '.join((*registry.KINDS, PRESETS))}")


def status_text(e: registry.Entry) -> str:
    """The entry's status as `--json` gives it (`loaded`, `unloaded`), or `failed: <reason>`."""
    return f"failed: {e.error}" if e.status == "failed" else e.status


def weights_text(e: registry.Entry) -> str:
    """Whether a loaded student's / teacher's weights are available offline (its factory's `weights()`:
    `embedded`, `local` or `missing: ...`), else `""`."""
    if e.kind not in ("students", "teachers") or e.status != "loaded" or not e.active:
        return ""
    probe = getattr(registry.get(e.kind, e.name), "weights", None)
    if not callable(probe):
        return "unknown"
    try:
        return str(probe())
    except Exception as exc:  # a plugin's probe failing says so, like a failed load
        return f"unknown ({type(exc).__name__}: {exc})"


def note_text(e: registry.Entry) -> str:
    """The NOTE column of an entry: `inactive` (another registration of the name wins) and its conflict, if any."""
    notes = []
    if not e.active:
        notes.append("inactive")
    if e.conflict:
        notes.append(e.conflict)
    return "; ".join(notes)


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A plain left-aligned text table (the last column is not padded)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for r in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(r, widths)] + [str(r[-1])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render(entries: Sequence[registry.Entry], check: bool) -> str:
    """The table of `tgsample list` (with STATUS and WEIGHTS columns under `--check`)."""
    header = ["NAME", "KIND", "DISTRIBUTION", "VERSION", "VALUE"] + (["STATUS", "WEIGHTS"] if check else []) + ["NOTE"]
    rows = [
        [e.name, e.kind, e.dist, e.version, e.value] + ([status_text(e), weights_text(e) or "-"] if check else [])
        + [note_text(e)]
        for e in entries
    ]
    return table(rows, header)


def preset_entries(pattern: str = "*") -> list[registry.Entry]:
    """The presets as listing records: `value` says which student and recipe; the note is the recipe's."""
    from . import presets

    dists = {e.name: e for e in registry.entries("recipes") if e.active}
    out = []
    for p in presets.table().values():
        if fnmatch.fnmatchcase(p.name, pattern):
            src = dists.get(p.student)
            out.append(registry.Entry(p.name, PRESETS, f"student {p.student}, recipe {p.variant!r}",
                                      src.dist if src else "?", src.version if src else "?", bool(src and src.builtin),
                                      True, "loaded", conflict=None))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of `tgsample list`; returns the exit status."""
    args = parser().parse_args(argv)
    if args.kind == PRESETS:
        found = preset_entries(args.pattern)
        if args.json:
            from . import presets

            table = presets.table()
            print(json.dumps([{**e.as_dict(), **table[e.name].as_dict()} for e in found], indent=2))
        else:
            print(render(found, False) if found else "(no presets)")
        return 0
    if args.check:
        found = registry.check(args.kind, args.pattern)
    else:
        found = [e for e in registry.entries(args.kind) if fnmatch.fnmatchcase(e.name, args.pattern)]
    if args.json:
        extra = (lambda e: {"weights": weights_text(e) or None}) if args.check else (lambda e: {})
        print(json.dumps([{**e.as_dict(), **extra(e)} for e in found], indent=2))
    else:
        if registry.autoload_disabled():
            print(f"note: third-party plugins disabled by {registry.DISABLE_ENV}", file=sys.stderr)
        print(render(found, args.check) if found else "(nothing registered)")
    failed = [e for e in found if e.active and e.status == "failed"]
    ambiguous = [e for e in found if e.ambiguous]
    if failed or ambiguous:
        print(f"{len(failed)} failed, {len({(e.kind, e.name) for e in ambiguous})} ambiguous", file=sys.stderr)
    return 1 if args.check and (failed or ambiguous) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
