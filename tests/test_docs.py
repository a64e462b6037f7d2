"""The docs cannot drift from the code.

* Every ```python block of every page under docs/ is executed, page by page, in one namespace
  per page (so a page reads as one session). A block preceded by ``<!-- skip: reason -->`` is
  not run (only for examples that need a GPU or a real hub model); the reason is required.
* Every public module and every public name of ``tgsample`` has an API reference entry.
* Every built-in solver, schedule and guidance name is mentioned in the guides.
"""

from __future__ import annotations

import re
import sys
import textwrap
import traceback
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^\n]*)$")
SKIP = re.compile(r"<!--\s*skip(?P<colon>:)?\s*(?P<reason>.*?)\s*-->")


def code_blocks(text: str) -> list[tuple[int, str, str, str | None]]:
    """``(line, language, code, skip_reason)`` of each fenced block; ``line`` is the 1-based line of its code.

    ``skip_reason`` is ``None`` for a block that runs, ``""`` for a skip marker without a reason.
    """
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        lang = re.split(r"[\s{]", info, maxsplit=1)[0].lower() if info else ""
        fence_at, body = i, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        prev = next((lines[j] for j in range(fence_at - 1, -1, -1) if lines[j].strip()), "")
        skip = SKIP.search(prev)
        reason = None if skip is None else skip["reason"]
        blocks.append((fence_at + 2, lang, textwrap.dedent("\n".join(body)), reason))  # 1-based first code line
    return blocks


def pages() -> list[Path]:
    """Pages (and the README) with at least one runnable ```python block."""
    return sorted(p for p in [*DOCS.rglob("*.md"), ROOT / "README.md"]
                  if any(lang in ("python", "py") and reason is None for _, lang, _, reason in code_blocks(p.read_text())))


def test_code_blocks_are_found():
    sample = "text\n\n```python\nx = 1\n```\n\n<!-- skip: needs a GPU -->\n```python\ny = 2\n```\n```bash\nls\n```\n"
    assert code_blocks(sample) == [(4, "python", "x = 1", None), (9, "python", "y = 2", "needs a GPU"),
                                   (12, "bash", "ls", None)]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    torch.set_num_threads(1)
    import types

    module = types.ModuleType(f"docs.{page.stem}")  # a real module, so a page can define dataclasses
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict = module.__dict__
    ran = 0
    for line, lang, code, reason in code_blocks(page.read_text()):
        if lang not in ("python", "py"):
            continue
        if reason is not None:  # test_skipped_examples_say_why checks the reason
            continue
        try:
            # pad so that tracebacks give the line numbers of the page itself
            exec(compile("\n" * (line - 1) + code, str(page.relative_to(ROOT)), "exec"), namespace)
        except Exception as exc:
            where = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(page.relative_to(ROOT))]
            raise AssertionError(f"example at {page.relative_to(ROOT)} line {where[-1] if where else line} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        ran += 1
    assert ran, f"{page.name}: no example ran"


def test_skipped_examples_say_why():
    bad = [f"{p.relative_to(ROOT)}:{line}" for p in DOCS.rglob("*.md")
           for line, lang, _, reason in code_blocks(p.read_text()) if lang in ("python", "py") and reason == ""]
    assert not bad, f"skipped examples without a reason (<!-- skip: reason -->): {bad}"


def documented() -> set[str]:
    """Dotted paths that an API page renders with ``::: path``."""
    found = set()
    for p in (DOCS / "api").glob("*.md"):
        found |= set(re.findall(r"^:::\s*([\w.]+)", p.read_text(), re.M))
    return found


# Public modules beyond ``tgsample._SUBMODULES`` (the lazily exported ones).
MORE_PUBLIC = ("lightning.module", "lightning.data", "lightning.writer", "lightning.identity", "lightning.manifest",
               "lightning.cli", "presets", "cli",
               "models.digits", "models.diffusers")


def test_every_public_module_has_an_api_page():
    import tgsample

    src = ROOT / "src" / "tgsample"
    paths = documented()
    modules = [m for m in (*tgsample._SUBMODULES, *MORE_PUBLIC)
               if (src / f"{m.replace('.', '/')}.py").exists() or (src / m.replace(".", "/") / "__init__.py").exists()]
    assert len(modules) >= len(tgsample._SUBMODULES)
    missing = [f"tgsample.{m}" for m in modules
               if not any(p == f"tgsample.{m}" or p.startswith(f"tgsample.{m}.") for p in paths)]
    assert not missing, f"public modules without a '::: module' API page: {missing}"


def test_every_public_name_is_documented():
    import importlib

    import tgsample

    paths = documented()
    missing = []
    for name, module in tgsample._EXPORTS.items():
        obj = getattr(importlib.import_module(module), name)
        home = getattr(obj, "__module__", module)
        if not any(home == p or home.startswith(p + ".") for p in paths):
            missing.append(f"{name} (defined in {home})")
    assert not missing, f"public names without an API reference entry: {missing}"


def test_guides_mention_every_builtin_component():
    from tgsample import registry

    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    builtin = {kind: [e.name for e in registry.entries(kind) if e.builtin]
               for kind in ("solvers", "schedules", "guidance")}
    missing = [f"{kind} {name!r}" for kind, names in builtin.items() for name in names if f"`{name}`" not in text]
    assert not missing, f"built-in components the guides never mention: {missing}"


def test_nav_lists_each_page_once():
    import yaml

    def targets(items):
        for item in items:
            for value in item.values():
                yield from (targets(value) if isinstance(value, list) else [value])

    nav = list(targets(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))
    dupes = sorted({t for t in nav if nav.count(t) > 1})
    assert not dupes, f"mkdocs.yml nav lists these pages more than once: {dupes}"
    missing = [t for t in nav if not (DOCS / t).exists()]
    assert not missing, f"mkdocs.yml nav names pages that do not exist: {missing}"
