"""The docs cannot drift from the code.

* Every ```python block of every page under docs/ is executed, page by page, in one namespace
  per page (so a page reads as one session). A block preceded by ``<!-- skip: reason -->`` is
  not run (only for examples that need a GPU or a real hub model); the reason is required.
* Every public module and every public name of ``tgsample`` has an API reference entry, and every
  public name of the API pages' modules (``__all__`` where a module has one) has a docstring, so
  that mkdocstrings shows it.
* Every built-in solver, schedule and guidance name is mentioned in the guides.
* Docstrings and pages are in the docs' dialect (Markdown for mkdocstrings): no Sphinx role, RST
  double backtick or ``::`` literal block (``scripts/docstring_dialect.py`` rewrites them).
* The built site typesets every formula (MathML at build time) and loads nothing from another host.
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


# At 1400 px, with both sidebars, a code block shows about 104 characters of monospace before it
# scrolls sideways (scripts/check_site.py counts the ones that do); 100 leaves a margin.
CODE_LINE_LIMIT = 100
# A fence marked ``{.text .output}`` is verbatim output of a committed command: docs/css/extra.css
# wraps it, and its lines are what the command prints, so they are not held to the limit.
OUTPUT_FENCE = re.compile(r"\{[^}]*\.output\b")


def long_code_lines(text: str, limit: int = CODE_LINE_LIMIT) -> list[tuple[int, int]]:
    """``(line, length)`` of each line of a fenced block (output blocks aside) longer than ``limit``."""
    lines = text.splitlines()
    found = []
    for line, _, code, _ in code_blocks(text):
        if OUTPUT_FENCE.search(lines[line - 2]):  # the fence line, just above the first code line
            continue
        found += [(line + k, len(c)) for k, c in enumerate(code.splitlines()) if len(c) > limit]
    return found


def test_long_code_lines_are_found():
    long = "x" * (CODE_LINE_LIMIT + 1)
    sample = f"```bash\nls\n{long}\n```\n\n```{{.text .output}}\n{long}\n```\n\n    ```python\n    {long}\n    ```\n"
    assert long_code_lines(sample) == [(3, CODE_LINE_LIMIT + 1), (11, CODE_LINE_LIMIT + 1)]
    assert long_code_lines("```\n" + "x" * CODE_LINE_LIMIT + "\n```\n") == []


def test_code_lines_fit_the_page_width():
    pages = sorted([*DOCS.rglob("*.md"), ROOT / "README.md"])
    long = [f"{p.relative_to(ROOT)}:{line} ({n} chars)" for p in pages for line, n in long_code_lines(p.read_text())]
    assert not long, (f"{len(long)} code lines longer than {CODE_LINE_LIMIT} characters scroll sideways on the "
                      f"site at 1400 px: rewrap them (a `\\` continuation, a call broken over lines), or mark "
                      f"verbatim program output ```{{.text .output}} so that it wraps: {long[:20]}")


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


# --- the docs' dialect, documented exports, the built site ------------------------------------


def _dialect():
    """``scripts/docstring_dialect.py``: one definition of what counts as RST markup."""
    import importlib.util

    if "docstring_dialect" not in sys.modules:
        spec = importlib.util.spec_from_file_location("docstring_dialect", ROOT / "scripts" / "docstring_dialect.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclass needs its module registered
        spec.loader.exec_module(module)
    return sys.modules["docstring_dialect"]


def _sources() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "plugins").glob("*/src/**/*.py")])


def test_docstrings_and_pages_have_no_rst_markup():
    import ast

    dialect = _dialect()
    found = []
    for f in _sources():
        for node, _ in dialect.docstring_nodes(ast.parse(f.read_text())):
            found += [f"{f.relative_to(ROOT)}:{node.lineno}: {m}" for m in dialect.literal_markup(node.value)]
    for page in [*DOCS.rglob("*.md"), ROOT / "README.md"]:
        found += [f"{page.relative_to(ROOT)}: {m}" for m in dialect.literal_markup(page.read_text())]
    assert not found, (f"{len(found)} pieces of reStructuredText markup (run scripts/docstring_dialect.py, "
                       f"then fix by hand what remains): {found[:20]}")


def test_literal_markup_is_found():
    dialect = _dialect()
    text = "A :class:`Estimate`, ``x``, [`ok`][a.b], `` a`b ``, `:not a role`, ```\n::\n```\nAn example::\n\n    x = 1\n"
    assert dialect.literal_markup(text) == [":class:`Estimate`", "``x``", "An example::"]


def _api_modules():
    import griffe

    package = griffe.load("tgsample", search_paths=[str(ROOT / "src")], resolve_aliases=True,
                          resolve_external=False)
    for path in sorted(documented()):
        yield path, (package if path == "tgsample" else package[path.removeprefix("tgsample.")])


def test_every_public_name_of_the_api_pages_has_a_docstring():
    missing = []
    for path, module in _api_modules():
        if not module.is_module:
            continue
        for name, member in module.members.items():
            if name.startswith("_") or (module.exports is not None and name not in module.exports):
                continue
            if member.is_alias:
                if module.exports is None:  # an import, documented where it is defined
                    continue
                try:
                    member = member.final_target
                except Exception:  # an alias to another package
                    continue
            if not member.is_module and not member.docstring:
                missing.append(f"{path}.{name}")
    assert not missing, (f"{len(missing)} public names that the API reference cannot show (no docstring; for a "
                         f"constant, a string right after the assignment): {missing}")


def test_top_level_exports_have_docstrings():
    import importlib

    import tgsample

    bare = [n for n, m in tgsample._EXPORTS.items() if not (getattr(importlib.import_module(m), n).__doc__ or "").strip()]
    assert not bare, f"names exported from tgsample without a docstring: {bare}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    import subprocess

    out = tmp_path_factory.mktemp("site")
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(out)], cwd=ROOT,
                          capture_output=True, text=True, env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


RAW_TEX = re.compile(r"\\[(\[]|(?<![\w$])\$[^\s$][^$<>]*?\$(?![\w$])")


def _prose(page_html: str) -> str:
    """A page's text outside code, scripts and formulas."""
    for tag in ("script", "style", "pre", "code", "math"):
        page_html = re.sub(rf"<{tag}\b.*?</{tag}>", " ", page_html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page_html)


def test_built_site_typesets_every_formula(site):
    import html

    pages = sorted(site.rglob("*.html"))
    formulas, raw, untypeset = 0, [], []
    for p in pages:
        text = p.read_text()
        marked = re.findall(r'<(span|div) class="arithmatex">(.*?)</\1>', text, re.S)
        formulas += len(marked)
        untypeset += [f"{p.relative_to(site)}: {m[1][:60]}" for m in marked if not m[1].lstrip().startswith("<math")]
        raw += [f"{p.relative_to(site)}: {m.group()[:60]}" for m in RAW_TEX.finditer(html.unescape(_prose(text)))]
    assert not raw, f"TeX left as text in the built site (math markup that no extension took): {raw[:10]}"
    assert not untypeset, f"formulas left for JavaScript to typeset: {untypeset[:10]}"
    assert formulas >= 20, f"only {formulas} formulas in the built site: is pymdownx.arithmatex on?"


def test_built_site_loads_nothing_from_another_host(site):
    remote = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=["'](?:https?:)?//""", re.I)
    hits = []
    for p in site.rglob("*"):
        if p.suffix in (".html", ".css", ".js") and p.is_file():
            text = p.read_text(errors="replace")
            hits += [f"{p.relative_to(site)}: {m.group()[:80]}" for m in remote.finditer(text)]
            hits += [f"{p.relative_to(site)}: fonts.googleapis" for _ in re.finditer(r"fonts\.(googleapis|gstatic)", text)]
    assert not hits, f"the site would fetch from the network at view time: {hits[:10]}"
