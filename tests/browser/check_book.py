"""Open every page of the built book in headless Chromium and fail on what a reader would see
broken.

Checks per page: missing images, Python tracebacks in outputs, broken internal links and anchors,
local files that fail to load, JavaScript errors, widgets and equations that did not render, and
the Open-in-Colab launch link of every page made from a notebook; a reveal.js slide deck (the
chapters' slides, `slides/NN_name.slides.html`) must start and hold more than one slide, and with
--require-slides every chapter must have one.
Requests that leave 127.0.0.1 are blocked, so the test is the same offline and on-line; the
book bundles the JavaScript it needs (`make book-js`), so a blocked request is only reported.
Usage: python tests/browser/check_book.py _build/html [--screenshots DIR] [--require-slides]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRACEBACK_TEXT = "Traceback (most recent call last)"
# Output areas whose text is searched for tracebacks, and the classes myst-nb gives error outputs.
OUTPUT_SELECTOR = ".cell_output"
ERROR_OUTPUT_SELECTOR = ".cell_output .traceback, .cell_output .output.error"
COLAB = "https://colab.research.google.com/"
WIDGET_VIEW_SELECTOR = 'script[type="application/vnd.jupyter.widget-view+json"]'
SLIDES_DIR = "slides"

PAGE_REPORT_JS = """
([outputSel, errorSel, widgetSel]) => ({
  images: Array.from(document.images, im => ({src: im.currentSrc || im.src,
      ok: im.complete && im.naturalWidth > 0, alt: im.getAttribute('alt')})),
  links: Array.from(document.querySelectorAll('a[href]'), a => a.href),
  outputs: Array.from(document.querySelectorAll(outputSel), el => el.innerText),
  errorOutputs: document.querySelectorAll(errorSel).length,
  widgetViews: document.querySelectorAll(widgetSel).length,
  widgetsRendered: Array.from(document.querySelectorAll('.widget-subarea'))
      .filter(el => el.childElementCount > 0).length,
  mathElements: document.querySelectorAll('div.math, span.math').length,
  mathRendered: document.querySelectorAll('mjx-container').length,
  isDeck: document.querySelector('.reveal .slides') !== null,
  deck: (window.Reveal && Reveal.isReady)
      ? {ready: Reveal.isReady(), slides: Reveal.isReady() ? Reveal.getTotalSlides() : 0} : null,
})
"""
MATHJAX_READY_JS = """
async () => { if (window.MathJax && MathJax.startup && MathJax.startup.promise)
                { await MathJax.startup.promise; } return true; }
"""


@dataclass
class PageResult:
    """What went wrong on one page, and what is only worth reporting."""

    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _AnchorCollector(HTMLParser):
    """Collects the id and name attributes of an HTML file (the targets of #fragments)."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key == "id" or (tag == "a" and key == "name"):
                self.anchors.add(value or "")


@functools.cache
def anchors_of(html_file: Path) -> frozenset[str]:
    """The fragment targets an HTML file defines."""
    collector = _AnchorCollector()
    collector.feed(html_file.read_text(encoding="utf-8", errors="replace"))
    return frozenset(collector.anchors)


def book_pages(root: Path) -> list[Path]:
    """Every HTML page of the built book, skipping Sphinx's folders of static files and sources."""
    return sorted(
        p
        for p in root.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(root).parts[:-1])
    )


def check_link(root: Path, origin: str, href: str) -> str | None:
    """Why a link that stays inside the book is broken, or None when it resolves (or leaves the
    book)."""
    url = urlsplit(href)
    if f"{url.scheme}://{url.netloc}" != origin:
        return None
    target = root / unquote(url.path).lstrip("/")
    if url.path.endswith("/"):
        target = target / "index.html"
    if not target.is_file():
        return f"broken link {href} (no file {target.relative_to(root)})"
    fragment = unquote(url.fragment)
    if fragment.startswith("/"):
        return None  # a route of the page's script (reveal.js's #/2/1), not an element's id
    if fragment and target.suffix == ".html" and fragment not in anchors_of(target):
        return f"broken anchor {href} (no id {fragment!r} in {target.relative_to(root)})"
    return None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the book without logging every request."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(root: Path) -> http.server.ThreadingHTTPServer:
    """An HTTP server for the book on 127.0.0.1 and a free port, running in a daemon thread."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def has_alt_text(image: dict) -> bool:
    """Whether an image has alt text of its own, or alt="" that marks it decorative.

    Sphinx and myst-nb set the alt text of an image without one to its file name.
    """
    alt = image["alt"]
    return alt is not None and alt.strip().rsplit("/", 1)[-1] != image["src"].rsplit("/", 1)[-1]


def judge(
    report: dict, root: Path, origin: str, path: Path, result: PageResult, require_alt: bool
) -> None:
    """Add to `result` what the page's report (PAGE_REPORT_JS) shows broken or worth noting."""
    result.problems += [f"missing image {im['src']}" for im in report["images"] if not im["ok"]]
    unlabelled = sorted(
        {im["src"].rsplit("/", 1)[-1] for im in report["images"] if not has_alt_text(im)}
    )
    if unlabelled:
        (result.problems if require_alt else result.notes).append(
            f"{len(unlabelled)} images without alt text (set it with the cell metadata "
            f"mystnb: {{image: {{alt: ...}}}}): {', '.join(unlabelled)[:200]}"
        )
    if report["errorOutputs"] or any(TRACEBACK_TEXT in text for text in report["outputs"]):
        result.problems.append("a Python traceback or error in an output cell")
    result.problems += filter(
        None, (check_link(root, origin, href) for href in set(report["links"]))
    )
    if report["widgetsRendered"] < report["widgetViews"]:
        result.problems.append(
            f"{report['widgetViews'] - report['widgetsRendered']} of "
            f"{report['widgetViews']} widgets did not render from their saved state"
        )
    if report.get("isDeck"):
        deck = report["deck"]
        if not deck or not deck["ready"]:
            result.problems.append("a slide deck whose reveal.js did not start")
        elif deck["slides"] < 2:
            result.problems.append(f"a slide deck with {deck['slides']} slide(s)")
    if report["mathElements"] and not report["mathRendered"]:
        result.problems.append(f"{report['mathElements']} equations were not typeset by MathJax")
    source = root / "_sources" / path.relative_to(root).with_suffix(".ipynb")
    colab_links = [href for href in report["links"] if href.startswith(COLAB)]
    if source.is_file() and not colab_links:
        result.problems.append(f"no Open-in-Colab launch link (a chapter from {source.name})")
    result.problems += [
        f"Colab link to a file Colab cannot open: {href}"
        for href in colab_links
        if not urlsplit(href).path.endswith(".ipynb")
    ]


def check_page(
    page, root: Path, origin: str, path: Path, screenshot: Path | None, require_alt: bool = False
) -> PageResult:
    """Load one page in the browser tab `page` and report its problems."""
    result = PageResult(str(path.relative_to(root)))
    is_local = lambda url: url.startswith(origin)  # noqa: E731
    blocked: list[str] = []

    def on_console(msg) -> None:
        if msg.type != "error":
            return
        if msg.text.startswith("Failed to load resource"):
            return  # the console's echo of a failed request, reported by the request handlers
        source = msg.location.get("url", "") if msg.location else ""
        result.problems.append(f"console error: {msg.text} ({source})")

    def on_response(response) -> None:
        if is_local(response.url) and response.status >= 400:
            result.problems.append(f"HTTP {response.status} for {response.url}")

    def on_route(route) -> None:
        if is_local(route.request.url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    def on_request_failed(request) -> None:
        if is_local(request.url):
            result.problems.append(f"failed to load {request.url}: {request.failure}")

    handlers = {
        "console": on_console,
        "response": on_response,
        "requestfailed": on_request_failed,
        "pageerror": lambda exc: result.problems.append(f"JavaScript error: {exc}"),
    }
    for event, handler in handlers.items():
        page.on(event, handler)
    page.route("**/*", on_route)
    try:
        url = f"{origin}/{path.relative_to(root).as_posix()}"
        page.goto(url, wait_until="load")
        page.wait_for_load_state("networkidle")
        page.evaluate(MATHJAX_READY_JS)
        report = page.evaluate(
            PAGE_REPORT_JS, [OUTPUT_SELECTOR, ERROR_OUTPUT_SELECTOR, WIDGET_VIEW_SELECTOR]
        )
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        for event, handler in handlers.items():
            page.remove_listener(event, handler)
        page.unroute("**/*")
    judge(report, root, origin, path, result, require_alt)
    if blocked:
        result.notes.append(f"{len(blocked)} external requests blocked: {sorted(set(blocked))[:3]}")
    return result


def chapters_without_slides(root: Path) -> list[PageResult]:
    """A failing result for each chapter (a notebook under _sources) with no
    slides/<chapter>.slides.html."""
    chapters = sorted((root / "_sources").rglob("[0-9][0-9]_*.ipynb"))
    return [
        PageResult(
            f"{SLIDES_DIR}/{c.stem}.slides.html",
            [f"no slides for the chapter {c.stem} (scripts/build_slides.py makes them)"],
        )
        for c in chapters
        if not (root / SLIDES_DIR / f"{c.stem}.slides.html").is_file()
    ]


def check_book(
    root: Path, screenshots: Path | None, require_alt: bool = False, require_slides: bool = False
) -> list[PageResult]:
    """Check every page of the book built in `root`; one result per page (and, with
    require_slides, one per chapter without slides)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise SystemExit(
            f"{CHROMIUM} not found: install Debian's chromium (`make assets` does, "
            "through data/debian-packages.txt) or `apt-get install chromium`."
        )
    pages = book_pages(root)
    if not pages:
        raise SystemExit(f"no HTML pages under {root}: build the book first (`make book-smoke`).")
    if screenshots is not None:
        screenshots.mkdir(parents=True, exist_ok=True)
    results = chapters_without_slides(root) if require_slides else []
    for result in results:
        print(f"FAIL {result.path}\n       {result.problems[0]}", flush=True)
    server = serve(root)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            for path in pages:
                shot = None
                if screenshots is not None:
                    shot = screenshots / (
                        path.relative_to(root).with_suffix(".png").as_posix().replace("/", "__")
                    )
                result = check_page(tab, root, origin, path, shot, require_alt)
                status = "FAIL" if result.problems else "ok"
                print(
                    f"{status:<4} {result.path}"
                    + "".join(f"\n       {p}" for p in result.problems)
                    + "".join(f"\n       note: {n}" for n in result.notes),
                    flush=True,
                )
                results.append(result)
            browser.close()
    finally:
        server.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    """Command line: check the book, print one line per page and a summary; exit 1 on a failure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="the built book, e.g. _build/html")
    parser.add_argument(
        "--screenshots", type=Path, default=None, help="folder for one PNG per page"
    )
    parser.add_argument(
        "--require-alt",
        action="store_true",
        help="fail on images without alt text (otherwise they are only noted)",
    )
    parser.add_argument(
        "--require-slides",
        action="store_true",
        help=f"fail on a chapter without {SLIDES_DIR}/<chapter>.slides.html",
    )
    args = parser.parse_args(argv)
    results = check_book(
        args.html.resolve(), args.screenshots, args.require_alt, args.require_slides
    )
    failed = sum(bool(r.problems) for r in results)
    print(f"browser: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
