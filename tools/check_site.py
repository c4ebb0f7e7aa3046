#!/usr/bin/env python3
"""Open every page of the built book in headless Chromium and check it.

Usage::

    python tools/check_site.py [BUILD_DIR] [--screenshots DIR]

BUILD_DIR defaults to ``_build/html``. The folder is served on 127.0.0.1 (a
free port) and every HTML page of the book (all pages except genindex, search,
the redirecting index.html and the ``_*`` asset folders) is checked for:

* console errors, uncaught exceptions, failed or >= 400 requests to the local
  server, and requests to any other host (the site must work offline);
* images that did not load (``naturalWidth == 0``);
* math that MathJax did not typeset (a ``.math`` element without an
  ``mjx-container``, or raw ``$$``, ``\\(``, ``\\[`` left in the prose), and a
  MathJax script that is not served from the book itself;
* on notebook pages, a Colab launch link to the page's own ``.ipynb``, checked
  against ``_config.yml`` when the repository root has one.

Every page in ``_toc.yml`` must have been built. Screenshots of the intro and
of the first chapter are written to ``BUILD_DIR/../screenshots``. The script
prints one line per failure and exits with status 1 if there is any.

Requirements (no browser download: Playwright drives Debian's Chromium)::

    apt-get install -y chromium
    pip install playwright

The browser is ``/usr/bin/chromium``; set ``CHROMIUM`` to use another binary.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_PAGES = {"genindex.html", "search.html", "index.html"}
TIMEOUT_MS = 30_000

# Runs in the page: force-load lazy images, wait for MathJax, report problems.
PAGE_PROBE = """
async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const main = document.querySelector("main") || document.body;
  const prose = main.cloneNode(true);
  prose.querySelectorAll("pre, code, script, style, textarea, mjx-container, .cell_output")
       .forEach(e => e.remove());
  const text = prose.textContent;
  const maths = Array.from(main.querySelectorAll(".math"));
  return {
    brokenImages: imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                      .map(i => i.getAttribute("src")),
    mathElements: maths.length,
    untypeset: maths.filter(m => !m.querySelector("mjx-container"))
                    .map(m => m.textContent.trim().slice(0, 60)),
    mjxContainers: document.querySelectorAll("mjx-container").length,
    rawMath: ["$$", "\\\\(", "\\\\[", "\\\\begin{"].filter(s => text.includes(s)),
    mathjaxLoaded: !!(window.MathJax && MathJax.version),
    mathjaxScripts: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
    colabLinks: Array.from(document.querySelectorAll("a[href*='colab.research.google.com']"))
                     .map(a => a.href),
  };
}
"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the output to failures
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def book_pages(build_dir: Path) -> list[str]:
    """Relative paths of the book's HTML pages."""
    pages = []
    for path in sorted(build_dir.rglob("*.html")):
        rel = path.relative_to(build_dir)
        if any(part.startswith(("_", ".")) for part in rel.parts):
            continue
        if rel.as_posix() in SKIP_PAGES:
            continue
        pages.append(rel.as_posix())
    return pages


def toc_docnames(root: Path = ROOT) -> list[str]:
    toc = root / "_toc.yml"
    if not toc.exists():
        return []
    names = re.findall(r"^\s*-?\s*(?:file|root):\s*(\S+)", toc.read_text(), flags=re.M)
    return [re.sub(r"\.(md|ipynb)$", "", n) for n in names]


def expected_colab_prefix(root: Path = ROOT) -> str | None:
    """``{colab_url}/github/{org}/{repo}/blob/{branch}/{path_to_book}/`` from _config.yml."""
    config = root / "_config.yml"
    if not config.exists():
        return None
    try:
        import yaml
    except ImportError:
        return None
    cfg = yaml.safe_load(config.read_text()) or {}
    repo = cfg.get("repository", {})
    colab = cfg.get("launch_buttons", {}).get("colab_url", "")
    if not (repo.get("url") and colab):
        return None
    _, org, name = repo["url"].strip("/").rsplit("/", 2)
    book = (repo.get("path_to_book") or "").strip("/")
    book = f"{book}/" if book else ""
    return f"{colab.strip('/')}/github/{org}/{name}/blob/{repo.get('branch') or 'main'}/{book}"


def check(build_dir: Path, screenshot_dir: Path) -> tuple[list[str], int]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return ["playwright is not installed: pip install playwright"], 0

    failures: list[str] = []
    pages = book_pages(build_dir)
    built = {p[: -len(".html")] for p in pages}
    for doc in toc_docnames():
        if doc not in built:
            failures.append(f"{doc}.html: listed in _toc.yml but not built")
    if not pages:
        return failures + [f"{build_dir}: no HTML pages"], 0

    toc = toc_docnames()
    intro = f"{toc[0]}.html" if toc and f"{toc[0]}.html" in pages else pages[0]
    notebooks = [p for p in pages if (build_dir / "_sources" / p).with_suffix(".ipynb").exists()]
    screenshots = {intro: "intro.png"}
    if notebooks:
        chapter = next((f"{d}.html" for d in toc if f"{d}.html" in notebooks), notebooks[0])
        screenshots[chapter] = "chapter.png"
    colab_prefix = expected_colab_prefix()

    server, base = serve(build_dir)
    local = urlsplit(base).netloc
    try:
        with sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                return failures + [f"cannot start {CHROMIUM} ({first}); "
                                   "install it with: apt-get install -y chromium"], 0
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            for rel in pages:
                problems: list[str] = []
                page = context.new_page()
                bad_urls: set[str] = set()  # one line per failed local URL

                def on_console(m, p=problems):
                    url = (m.location or {}).get("url", "")
                    if m.type == "error" and url.endswith("/favicon.ico"):
                        return  # Chromium's own request; the book has no favicon
                    if m.type == "error" and not (
                        m.text.startswith("Failed to load resource") and urlsplit(url).netloc == local
                    ):  # failed local loads are reported once, below
                        p.append(f"console error: {m.text}" + (f" ({url})" if url else ""))

                def on_request_failed(r, p=problems, bad=bad_urls):
                    if urlsplit(r.url).netloc == local and r.url not in bad:
                        bad.add(r.url)
                        p.append(f"request failed: {r.url} ({r.failure})")

                def on_response(r, p=problems, bad=bad_urls):
                    if urlsplit(r.url).netloc == local and r.status >= 400 and r.url not in bad:
                        bad.add(r.url)
                        p.append(f"HTTP {r.status}: {r.url}")

                page.on("console", on_console)
                page.on("pageerror", lambda e, p=problems: p.append(f"uncaught exception: {e}"))
                page.on("requestfailed", on_request_failed)
                page.on("response", on_response)
                page.on("request", lambda r, p=problems: urlsplit(r.url).scheme in ("http", "https")
                         and urlsplit(r.url).netloc != local
                         and p.append(f"external request (the site must work offline): {r.url}"))
                try:
                    page.goto(base + rel, wait_until="load", timeout=TIMEOUT_MS)
                    page.set_default_timeout(TIMEOUT_MS)
                    probe = page.evaluate(PAGE_PROBE)
                except Exception as exc:  # noqa: BLE001 - report, go on
                    failures.append(f"{rel}: could not load: {exc}".splitlines()[0])
                    page.close()
                    continue
                for src in probe["brokenImages"]:
                    problems.append(f"image did not load: {src}")
                if probe["mathElements"]:
                    if not probe["mathjaxLoaded"]:
                        problems.append("page has math but MathJax did not load")
                    for src in probe["mathjaxScripts"]:
                        if urlsplit(src).netloc != local:
                            problems.append(f"MathJax is not served by the book: {src}")
                    if probe["untypeset"]:
                        problems.append(f"{len(probe['untypeset'])} of {probe['mathElements']} math "
                                        f"elements not typeset, first: {probe['untypeset'][0]!r}")
                for raw in probe["rawMath"]:
                    problems.append(f"raw math delimiter {raw!r} left in the text")
                if rel in notebooks:
                    ipynb = rel[: -len(".html")] + ".ipynb"
                    links = probe["colabLinks"]
                    want = colab_prefix + ipynb if colab_prefix else None
                    if not links:
                        problems.append("no Colab launch link")
                    elif want and want not in links:
                        problems.append(f"Colab link {links[0]} is not {want}")
                    elif not any(link.endswith("/" + ipynb) for link in links):
                        problems.append(f"Colab link {links[0]} does not point at {ipynb}")
                if rel in screenshots:
                    screenshot_dir.mkdir(parents=True, exist_ok=True)
                    # A viewport as tall as the page, so that sticky sidebars are drawn whole.
                    height = page.evaluate("document.documentElement.scrollHeight")
                    page.set_viewport_size({"width": 1280, "height": min(max(height, 900), 8000)})
                    page.screenshot(path=str(screenshot_dir / screenshots[rel]), full_page=True)
                failures.extend(f"{rel}: {p}" for p in problems)
                page.close()
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return failures, len(pages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", nargs="?", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="screenshot folder (default: BUILD_DIR/../screenshots)")
    args = parser.parse_args(argv)
    build_dir = args.build_dir.resolve()
    if not build_dir.is_dir():
        print(f"FAIL {build_dir}: no such folder (build the book first: make book)")
        return 1
    screenshot_dir = args.screenshots or build_dir.parent / "screenshots"
    failures, n_pages = check(build_dir, screenshot_dir)
    for line in failures:
        print(f"FAIL {line}")
    print(f"checked {n_pages} pages: {len(failures)} failures; screenshots in {screenshot_dir}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
