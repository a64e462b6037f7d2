"""Rewrite docstrings into the docs' dialect: the Markdown that mkdocstrings renders. Idempotent.

    .venv/bin/python scripts/docstring_dialect.py [--check] [PATH ...]    (default: src, plugins/*/src)

Mechanical rewrites of every docstring (module, class, function and attribute docstrings):

1. Sphinx roles become autorefs cross-references: ``:class:`~tgsample.guidance.Estimate``` ->
   ``[`Estimate`][tgsample.guidance.base.Estimate]``. The target is resolved with griffe in the
   docstring's own scope (its class, module, parent packages; lazily exported names by import) to
   the path where the object is defined. A target that the API pages do not render (an external
   name such as ``torch.Generator``, a private helper, an object without a docstring) becomes a
   plain code span, so that ``mkdocs build --strict`` has nothing to refuse.
2. RST double backticks become Markdown code spans (a span that contains a backtick keeps them).
3. RST literal blocks (a paragraph ending in ``::`` and an indented block) become fenced code
   blocks (``python`` where the block parses as Python, ``text`` otherwise).
4. Sphinx ``#:`` comments above a module or class attribute, and the trailing comment of a
   one-line attribute assignment, become the attribute's docstring (the string right after the
   assignment, which griffe and mkdocstrings read).

What it cannot do (formulas as math, one attribute per line in an ``Attributes:`` table,
wording) is done by hand. ``--check`` changes nothing, prints what it would change and exits 1
if anything would; ``tests/test_docs.py`` uses :func:`literal_markup` for its check.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICKS = re.compile(r"`+")
ROLE = re.compile(r"(?<![\w:]):(?:[a-z]+:)?(?:class|func|data|mod|meth|attr|exc|obj|const|type|ref|term):$")
BLANK_LINE = re.compile(r"\n[ \t]*\n")
LITERAL_BLOCK = re.compile(r"(?<!:)::[ \t]*$")
WIDTH = 120  # the source's line length


# --- code spans -------------------------------------------------------------------------------


def code_spans(text: str) -> list[tuple[int, int, int]]:
    """``(start, end, ticks)`` of each Markdown code span (a fence, three or more ticks, counts as
    one span up to its closing fence); a span does not cross a blank line."""
    found, i = [], 0
    while m := TICKS.search(text, i):
        n, k = len(m.group()), m.end()
        while (c := TICKS.search(text, k)) and len(c.group()) != n:
            k = c.end()
        if c is None or (n < 3 and BLANK_LINE.search(text, m.end(), c.start())):
            i = m.end()
            continue
        found.append((m.start(), c.end(), n))
        i = c.end()
    return found


def literal_markup(text: str) -> list[str]:
    """The reStructuredText markup left in a docstring or page: Sphinx roles, double-backtick
    spans (without a backtick inside) and ``::`` literal-block openers, as short excerpts."""
    found = []
    for start, end, n in code_spans(text):
        body = text[start + n:end - n]
        if n == 1 and ROLE.search(text[max(0, start - 20):start]):
            found.append(text[text.rfind(":", 0, start - 1):end])
        elif n == 2 and "`" not in body:
            found.append(text[start:end])
    lines = text.splitlines()
    found += [lines[i].strip()[-40:] for i, line in enumerate(_blank_spans(text).splitlines())
              if LITERAL_BLOCK.search(line)]
    return found


def _blank_spans(text: str) -> str:
    """``text`` with every code span's characters replaced by spaces (lines kept)."""
    chars = list(text)
    for start, end, _ in code_spans(text):
        for j in range(start, end):
            if chars[j] != "\n":
                chars[j] = " "
    return "".join(chars)


# --- resolution -------------------------------------------------------------------------------


@dataclass
class Resolver:
    """Resolves a role's target to the path where the object is defined, if the docs render it."""

    packages: dict = field(default_factory=dict)  # top-level name -> griffe module
    roots: list[str] = field(default_factory=list)  # canonical paths of the API pages' ``::: path``
    _suffixes: dict[str, list[str]] | None = None

    @classmethod
    def load(cls, src_dirs: list[Path]) -> Resolver:
        import griffe

        r = cls()
        for src in src_dirs:
            for pkg in sorted(p.parent for p in src.glob("*/__init__.py")):
                r.packages[pkg.name] = griffe.load(pkg.name, search_paths=[str(src)], resolve_aliases=False)
        raw = set()
        for page in (ROOT / "docs").rglob("*.md"):
            raw |= set(re.findall(r"^:::\s*([\w.]+)", page.read_text(), re.M))
        r.roots = sorted({c for c in (r.canonical(p) for p in raw) if c})
        return r

    def get(self, path: str):
        head, _, rest = path.partition(".")
        pkg = self.packages.get(head)
        if pkg is None:
            return None
        try:
            obj = pkg[rest] if rest else pkg
            return obj.final_target if obj.is_alias else obj
        except Exception:  # not there statically (a lazy export) or an alias to outside
            return None

    def canonical(self, path: str) -> str | None:
        """The path where ``path``'s object is defined, or None if it is not one of ours."""
        obj = self.get(path)
        if obj is not None:
            return obj.path
        head = path.split(".")[0]
        if head not in self.packages:
            return None
        parts = path.split(".")  # a lazily exported name: ask Python where it lives
        for k in range(len(parts) - 1, 0, -1):
            try:
                value = importlib.import_module(".".join(parts[:k]))
                for name in parts[k:]:
                    value = getattr(value, name)
            except Exception:
                continue
            module, qualname = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
            if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
                obj = self.get(f"{module}.{qualname}")
                return obj.path if obj is not None else None
            return None
        return None

    def rendered(self, path: str) -> bool:
        """Whether the API pages render ``path`` (under a ``:::`` root, public, with a docstring)."""
        obj = self.get(path)
        if obj is None:
            return False
        for root in self.roots:
            if path == root or path.startswith(root + "."):
                tail = path[len(root):].split(".")[1:]
                if any(part.startswith("_") for part in tail):
                    continue
                return obj.is_module or bool(obj.has_docstrings)
        return False

    def suffix_match(self, name: str) -> str | None:
        if self._suffixes is None:
            self._suffixes = {}

            def walk(obj) -> None:
                for member in obj.members.values():
                    if member.is_alias:
                        continue
                    self._suffixes.setdefault(member.name, []).append(member.path)
                    if member.is_module or member.is_class:
                        walk(member)

            for pkg in self.packages.values():
                walk(pkg)
        parts = name.split(".")
        hits = sorted({p for p in self._suffixes.get(parts[-1], []) if p.endswith("." + name)})
        return hits[0] if len(hits) == 1 else None

    def resolve(self, target: str, module: str, scope: list[str]) -> tuple[str, str | None]:
        """``(display, path)`` for a role's target; path is None if the docs do not render it."""
        target = target.strip()
        titled = re.fullmatch(r"(.*?)\s*<(.+)>", target)
        title, target = (titled[1], titled[2]) if titled else (None, target)
        tilde = target.startswith("~")
        target = target.lstrip("~")
        relative = target.startswith(".")
        target = target.lstrip(".")
        display = title or (target.rsplit(".", 1)[-1] if tilde else target)
        name = target[:-2] if target.endswith("()") else target
        candidates = [".".join([module, *scope[:k], name]) for k in range(len(scope), -1, -1)]
        parents = module.split(".")
        candidates += [".".join([*parents[:k], name]) for k in range(len(parents) - 1, 0, -1)]
        candidates.append(name)
        for c in candidates:
            path = self.canonical(c)
            if path is not None:
                return display, (path if self.rendered(path) else None)
        if relative or "." not in name:
            path = self.suffix_match(name)
            if path is not None:
                return display, (path if self.rendered(path) else None)
        return display, None


# --- rewriting --------------------------------------------------------------------------------


def convert_text(text: str, resolve, indent: str) -> str:
    """One docstring's source text (quotes included) in the docs' dialect."""
    text = _split_grouped_items(_convert_literal_blocks(text, indent))
    out, last = [], 0
    for start, end, n in code_spans(text):
        body = text[start + n:end - n]
        role = ROLE.search(text[max(last, start - 20):start]) if n == 1 else None
        if role:
            role_start = max(last, start - 20) + role.start()
            display, path = resolve(body)
            out += [text[last:role_start], f"[`{display}`][{path}]" if path else f"`{display}`"]
        elif n == 2 and "`" not in body:
            out += [text[last:start], f"`{body}`"]
        else:
            out.append(text[last:end])
        last = end
    out.append(text[last:])
    return _wrap_long_lines("".join(out), len(indent))


SECTION = re.compile(r"^(\s*)[A-Z][A-Za-z ]*:\s*$")
NAMED_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters|Params|Attributes|Keyword Args|Keyword Arguments|"
                           r"Other Parameters|Other Args):\s*$")
GROUPED_ITEM = re.compile(r"^(?P<indent>\s*)(?P<names>\**\w+(?:, \**\w+)+)(?P<rest>(?: \([^)]*\))?:(?: .*)?)$")


def _split_grouped_items(text: str) -> str:
    """``a, b: text`` in an ``Args:`` / ``Attributes:`` section (which griffe reads as one item named
    ``a, b``) -> one item per name, each with the text."""
    lines, out, section, i = text.split("\n"), [], None, 0
    while i < len(lines):
        line = lines[i]
        if m := NAMED_SECTION.match(line):
            section = len(m[1])
        elif line.strip() and section is not None and len(line) - len(line.lstrip()) <= section:
            section = None
        item = GROUPED_ITEM.match(line) if section is not None else None
        if item is None or len(item["indent"]) != section + 4:
            out.append(line)
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].strip() and len(lines[j]) - len(lines[j].lstrip()) > section + 4:
            j += 1
        for name in item["names"].split(", "):
            out += [f"{item['indent']}{name}{item['rest']}", *lines[i + 1:j]]
        i = j
    return "\n".join(out)


def _wrap_long_lines(text: str, first_col: int, width: int = WIDTH) -> str:
    """Split lines longer than ``width`` at a space outside code spans and cross-references; the
    continuation of an item of a Google-style section (``Args:`` ...) is indented one level more."""
    lines, out, fenced, section, display_math = text.split("\n"), [], False, None, False
    for n, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        if stripped.startswith("$$") and not (len(stripped) > 2 and stripped.endswith("$$")):
            display_math = not display_math
        if (m := SECTION.match(line)) and not fenced:
            section = len(m[1])
        lead = len(line) - len(line.lstrip())
        indent = first_col if n == 0 else lead  # a docstring's first line starts at its quotes
        if stripped and section is not None and indent <= section and not SECTION.match(line):
            section = None
        col = first_col if n == 0 else 0
        if fenced or display_math or stripped.startswith(("|", "$$")) or col + len(line) <= width:
            out.append(line)
            continue
        item = section is not None and indent == section + 4 and re.match(r"\s*\**\w+( \([^)]*\))?:", line)
        more = " " * (indent + (4 if item else 0))
        while col + len(line) > width:
            protected = [(a, b) for a, b, _ in code_spans(line)]
            protected += [(m.start(), m.end()) for m in re.finditer(r"\[`[^`]*`\]\[[^\]]*\]", line)]
            protected += [(m.start(), m.end()) for m in re.finditer(r"\$\$.*?(?:\$\$|$)|\$[^$\n]+\$", line)]
            cut = next((i for i in range(min(width - col, len(line) - 1), lead, -1)
                        if line[i] == " " and not any(a <= i < b for a, b in protected)), None)
            if cut is None:
                break
            out.append(line[:cut].rstrip())
            line, col, lead = more + line[cut:].lstrip(), 0, len(more)
        out.append(line)
    return "\n".join(out)


def _convert_literal_blocks(text: str, first_indent: str) -> str:
    lines = text.split("\n")
    blanked = _blank_spans(text).split("\n")
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        if not LITERAL_BLOCK.search(blanked[i]):
            out.append(line)
            i += 1
            continue
        indent = first_indent if i == 0 else line[:len(line) - len(line.lstrip())]
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        block_start, k = j, j
        while k < len(lines) and (not lines[k].strip() or len(lines[k]) - len(lines[k].lstrip()) > len(indent)):
            k += 1
        while k > block_start and not lines[k - 1].strip():
            k -= 1
        block = lines[block_start:k]
        if not block or any('"""' in b or "'''" in b for b in block):
            out.append(line)
            i += 1
            continue
        code = textwrap.dedent("\n".join(block))
        try:
            ast.parse(code)
            lang = "python"
        except SyntaxError:
            lang = "text"
        head = re.sub(r"\s*::[ \t]*$", ":", line.rstrip()) if line.strip() != "::" else None
        if head is not None and head.strip() != ":":
            out += [head, ""]
        elif out and out[-1].strip():
            out.append("")
        out += [indent + "```" + lang, *[(indent + c if c.strip() else "") for c in code.split("\n")], indent + "```"]
        i = k
    return "\n".join(out)


def _is_str_expr(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def docstring_nodes(tree: ast.Module) -> list[tuple[ast.Constant, list[str]]]:
    """Each docstring's string node with its scope (the enclosing class / function names)."""
    found = []

    def walk(body: list[ast.stmt], scope: list[str], attributes: bool) -> None:
        for k, stmt in enumerate(body):
            if _is_str_expr(stmt) and (k == 0 or (attributes and isinstance(body[k - 1], (ast.Assign, ast.AnnAssign)))):
                found.append((stmt.value, scope))
            if isinstance(stmt, ast.ClassDef):
                walk(stmt.body, [*scope, stmt.name], True)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                walk(stmt.body, [*scope, stmt.name], stmt.name == "__init__")

    walk(tree.body, [], True)
    return found


def _offsets(source: str) -> list[int]:
    starts, pos = [], 0
    for line in source.splitlines(keepends=True):
        starts.append(pos)
        pos += len(line)
    return starts + [pos]


def _at(source_lines: list[str], starts: list[int], lineno: int, col_bytes: int) -> int:
    line = source_lines[lineno - 1]
    return starts[lineno - 1] + len(line.encode()[:col_bytes].decode())


def convert_comments(source: str) -> str:
    """``#:`` comment lines above a module / class attribute -> a docstring after the assignment."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []  # (first comment line index, last comment line index + 1, statement end index, indent, text)

    def walk(body: list[ast.stmt]) -> None:
        for k, stmt in enumerate(body):
            if isinstance(stmt, ast.ClassDef):
                walk(stmt.body)
            if not isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                continue
            if k + 1 < len(body) and _is_str_expr(body[k + 1]):
                continue
            first = stmt.lineno - 1
            j = first
            while j > 0 and lines[j - 1].lstrip().startswith("#:"):
                j -= 1
            if j == first:
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                public = all(isinstance(t, ast.Name) and not t.id.startswith("_") for t in targets)
                trailing = _trailing_comment(lines[stmt.end_lineno - 1]) if public else None
                if trailing is not None and stmt.lineno == stmt.end_lineno:
                    indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
                    edits.append((first, first, stmt.end_lineno, indent, [trailing]))
                continue
            indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
            comment = [ln.strip()[2:].strip() for ln in lines[j:first]]
            edits.append((j, first, stmt.end_lineno, indent, comment))

    walk(tree.body)
    for j, first, end, indent, comment in sorted(edits, reverse=True):
        body = f"\n{indent}".join(comment)
        quote = '"""' if not (body.startswith('"') or body.endswith('"')) else "'''"
        if quote in body:
            continue
        lines.insert(end, f"{indent}{'r' if chr(92) in body else ''}{quote}{body}{quote}\n")
        if j == first:  # a trailing comment: take it off the line
            code = lines[first].rstrip("\n")
            lines[first] = code[:_comment_at(code)].rstrip() + "\n"
        del lines[j:first]
    return "".join(lines)


def _comment_at(line: str) -> int | None:
    """Where ``line``'s trailing ``#`` comment starts (outside strings), or None."""
    import io
    import tokenize

    try:
        for tok in tokenize.generate_tokens(io.StringIO(line + "\n").readline):
            if tok.type == tokenize.COMMENT:
                return tok.start[1]
    except (tokenize.TokenError, SyntaxError):
        return None
    return None


def _trailing_comment(line: str) -> str | None:
    """The text of a one-line assignment's trailing comment, unless it is a tool's pragma."""
    at = _comment_at(line.rstrip("\n"))
    if at is None:
        return None
    text = line.rstrip("\n")[at + 1:].strip()
    if not text or re.match(r"(noqa|type:|pragma|fmt:|pylint|ruff|isort|nosec|mypy)", text):
        return None
    return text


def module_name(path: Path) -> str:
    """``src/tgsample/guidance/base.py`` -> ``tgsample.guidance.base``."""
    parts = list(path.resolve().with_suffix("").parts)
    src = len(parts) - 1 - parts[::-1].index("src")
    name = parts[src + 1:]
    return ".".join(name[:-1] if name[-1] == "__init__" else name)


def convert_source(source: str, module: str, resolver: Resolver) -> str:
    source = convert_comments(source)
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    starts = _offsets(source)
    edits = []
    for node, scope in docstring_nodes(tree):
        a = _at(lines, starts, node.lineno, node.col_offset)
        b = _at(lines, starts, node.end_lineno, node.end_col_offset)
        indent = " " * node.col_offset

        def resolve(target: str, scope=scope) -> tuple[str, str | None]:
            return resolver.resolve(target, module, scope)

        new = convert_text(source[a:b], resolve, indent)
        if new != source[a:b]:
            edits.append((a, b, new))
    for a, b, new in sorted(edits, reverse=True):
        source = source[:a] + new + source[b:]
    return source


def default_paths() -> list[Path]:
    return [ROOT / "src", *sorted(p for p in (ROOT / "plugins").glob("*/src") if p.is_dir())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="*", type=Path, help="files or folders (default: src, plugins/*/src)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything would change")
    args = ap.parse_args(argv)
    srcs = default_paths()
    sys.path[:0] = [str(s) for s in srcs]
    files = sorted({f for p in (args.paths or srcs) for f in ([p] if p.is_file() else p.rglob("*.py"))
                    if "src" in f.resolve().parts})
    old = {f: f.read_text() for f in files}
    if not args.check:  # attribute docstrings first, so that the resolver sees them
        for f in files:
            f.write_text(convert_comments(old[f]))
    resolver = Resolver.load(srcs)
    changed = []
    for f in files:
        new = convert_source(f.read_text(), module_name(f), resolver)
        if new != old[f]:
            changed.append(f)
        if not args.check:
            f.write_text(new)
    verb = "would rewrite" if args.check else "rewrote"
    for f in changed:
        print(f"{verb} {f.relative_to(ROOT) if f.is_relative_to(ROOT) else f}")
    print(f"{verb} {len(changed)} of {len(files)} files")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
