"""Check the built docs site in a real headless browser, and screenshot its home page.

    .venv/bin/python scripts/check_site.py [--screenshot docs/img/home.png] [--chromium /usr/bin/chromium]

1. builds the site with ``mkdocs build --strict`` into a temporary folder;
2. serves it on 127.0.0.1 (``http.server``) and opens every page in headless Chromium
   (Playwright driving the system's Chromium: ``pip install playwright``,
   ``apt-get install chromium``): each page must load (HTTP 200) without a JavaScript
   error, show its title and content, and every internal link and image must resolve;
3. the API reference must render every public name of ``tgsample`` (``tgsample._EXPORTS``,
   e.g. ``TeacherGuidance``, ``sample``) and every built-in solver function;
4. search must work: the page ``/?q=teacher`` must list results that include the guidance
   guide, and ``?q=TeacherGuidance`` the API page that documents it;
5. saves a full-page screenshot of the home page (1280 px wide).

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


def check_pages(page, base: str, urls: list[str], c: Checker) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    links: set[str] = set()
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
    broken = sorted(h for h in links if status(h) != 200)
    c.check(not broken, f"{len(links)} internal links resolve" + (f"; broken: {broken}" if broken else ""))


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
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "img" / "home.png")
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
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                check_pages(page, base, urls, c)
                check_api(page, base, urls, c)
                check_search(page, base, c)
                page.goto(base, wait_until="networkidle")
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(args.screenshot), full_page=True)
                print(f"ok   screenshot of the home page -> {args.screenshot}")
                browser.close()
        finally:
            server.shutdown()
    print(f"{len(c.failures)} failure(s)" if c.failures else "all checks passed")
    return 1 if c.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
