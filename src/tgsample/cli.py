"""``tgsample <command> ...``: a lazy dispatcher (each command's module is imported only when run,
so ``tgsample --help`` answers at once)."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

#: command -> ("module:function", one-line help). Each function takes the remaining argv and returns an exit code.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tgsample.demo:main", "sample the shipped digits student with and without teacher guidance; write a grid"),
    "generate": ("tgsample.lightning.cli:main", "batch generation with Lightning Trainer.predict (multi-GPU, resumable)"),
    "list": ("tgsample.listing:main", "list registered guidances, solvers, schedules, students and teachers"),
    "bench": ("tgsample.cli:bench", "benchmarks: 'tgsample bench quality' (the paper's tables in miniature)"),
    "eval": ("tgsample.eval.cli:main", "FID / KID / CLIP score / preference scores of runs, paired comparisons with intervals"),
    "export": ("tgsample.eval.cli:export_main", "write a run in an evaluator's layout (GenEval, T2I-CompBench, HPSv2, ...)"),
}

BENCHES: dict[str, str] = {"quality": "tgsample.bench.quality:main"}


def _usage() -> str:
    lines = ["usage: tgsample <command> [options]   (tgsample <command> --help for a command's options)", "",
             "commands:"]
    lines += [f"  {name:10s} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def _run(target: str, argv: list[str]) -> int:
    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(argv) or 0)


def bench(argv: list[str]) -> int:
    """``tgsample bench NAME ...``."""
    if not argv or argv[0] not in BENCHES:
        print(f"usage: tgsample bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr if argv else sys.stdout)
        return 2 if argv and argv[0] not in ("-h", "--help") else 0
    return _run(BENCHES[argv[0]], argv[1:])


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, COMMANDS, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        print(f"tgsample: unknown command {command!r}{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return _run(COMMANDS[command][0], rest)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
