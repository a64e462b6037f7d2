"""mkdocs hook: typeset the formulas at build time, as MathML (no JavaScript, fonts or network at view time).

``pymdownx.arithmatex`` (``generic: true``) marks ``$...$`` and ``$$...$$`` in the pages and in the docstrings
that mkdocstrings renders; this hook replaces each marked formula with the MathML that ``latex2mathml``
makes of it, which browsers render natively. A formula that does not convert fails the build.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

MARKED = re.compile(r'<(?P<tag>span|div) class="arithmatex">\s*\\(?P<open>[(\[])(?P<tex>.*?)\\[)\]]\s*</(?P=tag)>', re.S)


def typeset(page_html: str) -> str:
    """``page_html`` with every arithmatex-marked formula replaced by MathML."""
    def one(m: re.Match) -> str:
        tex = html.unescape(m["tex"]).strip()
        display = "block" if m["open"] == "[" else "inline"
        try:
            mathml = convert(tex, display=display)
        except Exception as exc:  # noqa: BLE001 - name the formula, whatever latex2mathml raised
            raise ValueError(f"formula {tex!r} does not typeset: {exc}") from exc
        mathml = mathml.replace("<math ", f'<math alttext="{html.escape(tex)}" ', 1)
        return f'<{m["tag"]} class="arithmatex">{mathml}</{m["tag"]}>'

    return MARKED.sub(one, page_html)


def on_page_content(html_text: str, page, config, files) -> str:  # noqa: ARG001 - mkdocs' hook signature
    return typeset(html_text)
