"""Check the built docs site in a real headless browser, offline.

    .venv/bin/python scripts/check_site.py [--screenshot /tmp/home.png] [--chromium /usr/bin/chromium]

1. builds the site with `mkdocs build --strict` into a temporary folder;
2. serves it on 127.0.0.1 (`http.server`) and opens every page in headless Chromium at 1400 px
   (Playwright driving the system's Chromium: `pip install playwright`, `apt-get install chromium`),
   with every request to another host refused: each page must load (HTTP 200) without a JavaScript
   error, a console error or a request off the site (fonts, scripts), show its title and content,
   and every internal link and image must resolve;
3. every formula must be typeset: each `.arithmatex` holds a `<math>` element that the browser
   lays out as MathML (`display: math`) with a non-empty box, and no `$` or `\(` is left in the text;
4. no signature and no code block scrolls sideways (its code box is as wide as its content) and no
   page is wider than the window (tests/test_docs.py holds the pages' code lines to a limit);
5. the API reference must render every public name of `tgsample` (`tgsample._EXPORTS`,
   e.g. `TeacherGuidance`, `sample`) and every built-in solver function;
6. search must work: the page `/?q=teacher` must list results that include the guidance
   guide, and `?q=TeacherGuidance` the API page that documents it;
7. with `--screenshot PATH`, saves a full-page screenshot of the home page (not committed).

A script, not a CI test (it needs Chromium). Prints one line per check; exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the report readable
        pass


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # the browser hung up
            super().handle_error(request, client_address)


def build(site: Path) -> None:
    mkdocs = Path(sys.executable).with_name("mkdocs")
    cmd = [str(mkdocs) if mkdocs.exists() else "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"FAIL mkdocs build --strict:\n{done.stdout}\n{done.stderr}")
    print(f"ok   mkdocs build --strict -> {site}")


def serve(site: Path) -> tuple[Server, str]:
    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def pages(site: Path) -> list[str]:
    """Site-relative URLs of every page (``index.html`` folders), home first."""
    found = sorted(p.parent.relative_to(site).as_posix() for p in site.rglob("index.html")
                   if "assets" not in p.parts and "search" not in p.parts)
    return [("" if u == "." else u + "/") for u in found]


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            self.failures.append(what)


WIDTH = 1400  # the window width the layout checks use

MATH = r"""() => {
  const marked = [...document.querySelectorAll('article .arithmatex')];
  const bad = marked.filter(e => { const m = e.querySelector('math'); if (!m) return true;
    const r = m.getBoundingClientRect(); return !getComputedStyle(m).display.includes('math') || r.width < 1 || r.height < 1; });
  const prose = document.querySelector('article').cloneNode(true);
  prose.querySelectorAll('pre, code, math').forEach(e => e.remove());
  const text = prose.textContent;
  return {n: marked.length, bad: bad.map(e => e.textContent.slice(0, 60)),
          raw: (text.match(/\\\(|\\\[|\$[^$\s][^$]*\$/g) || []).slice(0, 3)};
}"""

OVERFLOW = """() => {
  const wide = e => e.scrollWidth > e.clientWidth + 1;
  const sigs = [...document.querySelectorAll('.doc-signature code')];
  const code = [...document.querySelectorAll('article pre > code')];
  return {signatures: sigs.length, wide_signatures: sigs.filter(wide).map(e => e.innerText.split('(')[0].trim()),
          code: code.length, wide_code: code.filter(wide).map(e => e.innerText.split('\\n')
            .reduce((a, b) => b.length > a.length ? b : a, '').slice(0, 70)),
          page_wider: document.documentElement.scrollWidth > window.innerWidth};
}"""


def check_pages(page, base: str, urls: list[str], c: Checker) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    links: set[str] = set()
    formulas = signatures = code = wide_code = 0
    for u in urls:
        errors.clear()
        resp = page.goto(base + u, wait_until="load")
        title = page.locator("article h1").first
        ok = resp is not None and resp.status == 200 and title.count() == 1 and title.is_visible()
        text = page.locator("article").inner_text() if ok else ""
        imgs = page.eval_on_selector_all("article img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0))"
                                         ".map(e => e.getAttribute('src'))")
        c.check(ok and len(text) > 200 and not errors and not imgs,
                f"page /{u} renders: '{title.inner_text().rstrip('¶') if ok else '?'}', {len(text)} chars of content"
                + (f", JS errors {errors}" if errors else "") + (f", broken images {imgs}" if imgs else ""))
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            if href.startswith(base):
                links.add(href.split("#")[0])
        math = page.evaluate(MATH)
        formulas += math["n"]
        if math["bad"] or math["raw"]:
            c.check(False, f"page /{u}: formulas not typeset {math['bad']}, raw TeX in the text {math['raw']}")
        over = page.evaluate(OVERFLOW)
        signatures, code, wide_code = signatures + over["signatures"], code + over["code"], wide_code + len(over["wide_code"])
        if over["wide_signatures"] or over["wide_code"] or over["page_wider"]:
            c.check(False, f"page /{u} at {WIDTH} px: signatures that scroll sideways {over['wide_signatures']}, "
                    f"code blocks that do (longest line) {over['wide_code']}"
                    + (", the page is wider than the window" if over["page_wider"] else ""))
    broken = sorted(h for h in links if status(h) != 200)
    c.check(not broken, f"{len(links)} internal links resolve" + (f"; broken: {broken}" if broken else ""))
    c.check(formulas > 0, f"{formulas} formulas typeset as MathML")
    c.check(signatures > 0 and wide_code == 0, f"{signatures} signatures fit their box at {WIDTH} px; "
            f"{wide_code} of {code} code blocks scroll sideways")


def check_api(page, base: str, urls: list[str], c: Checker) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    import tgsample
    from tgsample import registry

    ids: dict[str, str] = {}
    for u in (u for u in urls if u.startswith("api/")):
        page.goto(base + u, wait_until="load")
        for i in page.eval_on_selector_all("[id^='tgsample.']", "els => els.map(e => e.id)"):
            ids.setdefault(i, u)
    public = sorted(tgsample._EXPORTS)
    missing = [n for n in public if not any(i.endswith("." + n) for i in ids)]
    c.check(not missing, f"API reference renders all {len(public)} public names of tgsample "
            f"({len(ids)} documented objects)" + (f"; missing: {missing}" if missing else ""))
    for name in ("tgsample.guidance.teacher.TeacherGuidance", "tgsample.sampling.sample"):
        c.check(name in ids, f"API reference lists {name} (on /{ids.get(name, '?')})")
    solvers = [e.value.split(":")[1] for e in registry.entries("solvers") if e.builtin]
    missing = [s for s in solvers if not any(i.endswith("." + s) for i in ids)]
    c.check(not missing, f"API reference documents all {len(solvers)} built-in solver functions"
            + (f"; missing: {missing}" if missing else ""))
    page.goto(base + ids.get("tgsample.sampling.sample", "api/sampling/"), wait_until="load")
    sig = page.locator("[id='tgsample.sampling.sample']").locator("xpath=..").inner_text()
    c.check("seeds" in sig and "guidance" in sig, "sample()'s rendered entry shows its signature (seeds, guidance)")


def search(page, base: str, query: str) -> list[str]:
    page.goto(f"{base}?q={query}", wait_until="load")
    page.wait_for_selector(".md-search-result__item", timeout=20000)
    return page.eval_on_selector_all(".md-search-result__item a", "els => els.map(e => e.href)")


def check_search(page, base: str, c: Checker) -> None:
    hits = search(page, base, "teacher")
    meta = page.locator(".md-search-result__meta").inner_text()
    c.check(any("/guidance/" in h and "/api/" not in h for h in hits),
            f"search ?q=teacher: {meta}, including the guidance guide")
    hits = search(page, base, "TeacherGuidance")
    c.check(any("/api/guidance/" in h for h in hits), f"search ?q=TeacherGuidance finds the API page "
            f"({len(hits)} result links)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--screenshot", type=Path, help="save a full-page screenshot of the home page here")
    ap.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = ap.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise SystemExit("this script needs Playwright (pip install playwright) and Chromium (apt-get install chromium)")

    c = Checker()
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        build(site)
        server, base = serve(site)
        urls = pages(site)
        try:
            with sync_playwright() as p:
                with tempfile.TemporaryDirectory() as profile:  # a fresh profile each run
                    context = p.chromium.launch_persistent_context(
                        profile, executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True,
                        viewport={"width": WIDTH, "height": 900})
                    external: list[str] = []

                    def offline(route) -> None:  # the site must not need anything from another host
                        if route.request.url.startswith(base):
                            route.continue_()
                        else:
                            external.append(route.request.url)
                            route.abort()

                    context.route("**/*", offline)
                    page = context.new_page()
                    check_pages(page, base, urls, c)
                    check_api(page, base, urls, c)
                    check_search(page, base, c)
                    c.check(not external, f"no request leaves the site ({len(set(external))} did"
                            + (f": {sorted(set(external))[:5]}" if external else "") + ")")
                    if args.screenshot:
                        page.goto(base, wait_until="networkidle")
                        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(args.screenshot), full_page=True)
                        print(f"ok   screenshot of the home page -> {args.screenshot}")
                    context.close()
        finally:
            server.shutdown()
    print(f"{len(c.failures)} failure(s)" if c.failures else "all checks passed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
