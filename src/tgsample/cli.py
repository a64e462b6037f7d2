"""``tgsample <command> ...``: a lazy dispatcher (each command's module is imported only when run)."""

from __future__ import annotations

import importlib
import sys
from typing import Optional

COMMANDS: dict[str, str] = {
    "list": "tgsample.listing:main",
}


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: tgsample {{{','.join(COMMANDS)}}} ...\n\ncommands: {', '.join(COMMANDS)}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"tgsample: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module, func = COMMANDS[command].split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
