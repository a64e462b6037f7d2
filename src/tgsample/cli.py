"""`tgsample <command> ...`: a lazy dispatcher (each command's module is imported only when run,
so `tgsample --help` answers at once).

Every command runs through [`guarded`][tgsample.cli.guarded]: a user error (a `TgsampleError`, an `OSError` from the
disk) is one line on stderr and exit status 2, never a traceback; output cut short by a closed pipe
(`tgsample list --json | head -1`) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Callable, Optional

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("tgsample.demo:main", "sample the shipped digits student with and without teacher guidance; write a grid"),
    "generate": ("tgsample.lightning.cli:main", "batch generation with Lightning Trainer.predict (multi-GPU, resumable)"),
    "list": ("tgsample.listing:main", "list registered guidances, solvers, schedules, students and teachers"),
    "bench": ("tgsample.cli:bench", "benchmarks: 'tgsample bench mini' (the paper's tables on the miniature), 'tgsample bench quality' (on the 8x8 digits)"),
    "eval": ("tgsample.eval.cli:main", "FID / KID / CLIP score / preference scores of runs, paired comparisons with intervals"),
    "export": ("tgsample.eval.cli:export_main", "write a run in an evaluator's layout (GenEval, T2I-CompBench, HPSv2, ...)"),
}
"""command -> ("module:function", one-line help). Each function takes the remaining argv and returns an exit code."""

BENCHES: dict[str, str] = {"quality": "tgsample.bench.quality:main", "mini": "tgsample.bench.mini:main"}
"""The `tgsample bench` benchmarks: name -> `"module:function"` (imported only when it runs)."""

EXIT_PIPE = 141
"""exit status after a closed pipe (128 + SIGPIPE, what a shell reports for `yes | head -1`)"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors in one line: `prog: error: <what> (see prog --help)`, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _usage() -> str:
    lines = ["usage: tgsample <command> [options]   (tgsample <command> --help for a command's options)", "",
             "commands:"]
    lines += [f"  {name:10s} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines)


def os_error_text(exc: OSError) -> str:
    """An `OSError` as one line naming the file, with what to do about a full disk."""
    what = exc.strerror or str(exc) or type(exc).__name__
    where = f": {exc.filename!r}" if exc.filename else ""
    hint = ""
    if exc.errno in (28, 122):  # ENOSPC, EDQUOT
        hint = "; free some space and rerun the same command (finished files are kept)"
    return f"{what}{where}{hint}"


def guarded(prog: str, fn: Callable[[list[str]], Optional[int]], argv: list[str]) -> int:
    """`fn(argv)`'s exit status; a user error becomes one line on stderr and status 2 (or the error's own
    `exit_code`, e.g. 143 for a run stopped by SIGTERM)."""
    from .errors import TgsampleError

    try:
        return int(fn(argv) or 0)
    except TgsampleError as exc:
        code = getattr(exc, "exit_code", 2)
        print(f"{prog}: {'error: ' if code == 2 else ''}{exc}", file=sys.stderr)
        return code
    except BrokenPipeError:
        # the reader went away (| head); stop writing, and keep the interpreter's final flush quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except OSError as exc:
        print(f"{prog}: error: {os_error_text(exc)}", file=sys.stderr)
        return 2


def _run(prog: str, target: str, argv: list[str]) -> int:
    module, func = target.split(":")
    return guarded(prog, lambda a: getattr(importlib.import_module(module), func)(a), argv)


def bench(argv: list[str]) -> int:
    """`tgsample bench NAME ...`."""
    if not argv or argv[0] not in BENCHES:
        print(f"usage: tgsample bench {{{','.join(BENCHES)}}} [options]", file=sys.stderr if argv else sys.stdout)
        return 2 if argv and argv[0] not in ("-h", "--help") else 0
    return _run(f"tgsample bench {argv[0]}", BENCHES[argv[0]], argv[1:])


def main(argv: Optional[list[str]] = None) -> int:
    """The `tgsample` command: dispatch `argv` to a subcommand; returns the exit status."""
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
    return _run(f"tgsample {command}", COMMANDS[command][0], rest)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
