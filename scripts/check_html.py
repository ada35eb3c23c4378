"""Check that the built book renders offline: math typeset, figures present, widgets drawn.

Each page is opened in headless Chromium with every network request made to fail (no DNS, a dead
proxy), so the check passes only if MathJax, require.js and the widget manager load from the book
itself. The DOM after ``--virtual-time-budget`` milliseconds is read back (``--dump-dom``) and:

* math: every ``.math`` element holds an ``mjx-container`` (MathJax typeset it); no raw TeX
  (``\\(``, ``\\[``, ``$$`` or ``$...\\...$``) is left in the visible text; no MathJax error
  (``mjx-merror``); the MathJax fonts are local files that exist;
* figures (pages built from a notebook): at least one ``<img>`` in a cell
  output, each pointing to a non-empty local image or a ``data:image`` URI;
* widgets: every stored widget view was drawn by the widget manager;
* offline: no ``<script src>`` or stylesheet is loaded from the network; no uncaught JavaScript
  error and no local file that failed to load (Chromium's console log).

Usage (from the repository root, after ``jupyter-book build .``)::

    python scripts/check_html.py                      # index.html + every page of the book
    python scripts/check_html.py book/intro.html      # given pages (relative to _build/html)
    python scripts/check_html.py --screenshots shots  # also save a PNG of each page

Exit status 1 with one message per problem, naming the page.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build" / "html"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Known, harmless console errors from upstream packages (not from this book).
BENIGN_CONSOLE = (
    # sphinx-thebe's config script is emitted twice on pages to which myst-nb adds widget JS
    "Identifier 'THEBE_JS_URL' has already been declared",
)
RAW_TEX = re.compile(r"\\\(|\\\[|\$\$|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")


def find_browser(explicit: str | None) -> str:
    """Path of a Chromium binary: ``--chromium``, ``$CHROMIUM``, or the first one on PATH."""
    for name in (explicit, os.environ.get("CHROMIUM"), *BROWSERS):
        if name and shutil.which(name):
            return shutil.which(name)
    raise SystemExit(
        "check_html: no Chromium found (apt-get install -y chromium, or pass --chromium PATH)"
    )


def default_pages(build: Path) -> list[str]:
    """``index.html`` and the page of every source document the build copied to ``_sources/``."""
    pages = ["index.html"]
    for src in sorted((build / "_sources").rglob("*")):
        if src.suffix in {".ipynb", ".md"}:
            rel = src.relative_to(build / "_sources").with_suffix(".html")
            if (build / rel).is_file():
                pages.append(rel.as_posix())
    return pages


def from_notebook(page: Path, build: Path) -> bool:
    """Whether ``page`` was built from a notebook (its source sits in ``_sources/``)."""
    rel = page.relative_to(build).with_suffix(".ipynb")
    return (build / "_sources" / rel).is_file()


def follow_redirect(page: Path) -> Path:
    """The target of a ``<meta http-equiv="refresh">`` page (Jupyter Book's index.html)."""
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    meta = soup.find("meta", attrs={"http-equiv": re.compile("^refresh$", re.I)})
    if meta and "url=" in meta.get("content", "").lower():
        target = meta["content"].split("=", 1)[1].strip().strip("'\"")
        return (page.parent / target.split("#")[0]).resolve()
    return page


def render(browser: str, page: Path, budget_ms: int, screenshot: Path | None) -> tuple[str, str]:
    """Rendered DOM and console log of ``page`` with all network access failing."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,2000",
            # offline: no name resolves, and anything that still tries goes to a dead proxy
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--proxy-server=127.0.0.1:9",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
        ]
        url = page.as_uri()
        dom = subprocess.run(
            [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=180
        )
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [*flags, f"--screenshot={screenshot}", url], capture_output=True, timeout=180
            )
    if dom.returncode != 0 or not dom.stdout.strip():
        raise RuntimeError(f"chromium exited {dom.returncode}: {dom.stderr[-800:]}")
    return dom.stdout, dom.stderr


def _local_file(src: str, page: Path) -> Path | None:
    url = urlparse(src)
    if url.scheme == "file":
        return Path(unquote(url.path))
    if url.scheme == "":
        return (page.parent / unquote(url.path)).resolve()
    return None


def _visible_text(soup: BeautifulSoup) -> str:
    for tag in soup(["script", "style", "pre", "code", "textarea", "mjx-assistive-mml", "math"]):
        tag.decompose()
    return soup.get_text(" ")


def check_page(
    rel: str, build: Path, browser: str, budget_ms: int, shots: Path | None
) -> tuple[list[str], str]:
    """Problems found on one page, and a one-line summary."""
    problems: list[str] = []
    path = build / rel
    if not path.is_file():
        return [f"{rel}: no such page in {build}"], ""
    page = follow_redirect(path)
    name = rel if page == path else f"{rel} -> {page.relative_to(build.resolve()).as_posix()}"
    if not page.is_file():
        return [f"{name}: redirect target missing"], ""
    shot = shots / (page.stem + ".png") if shots else None
    try:
        dom, log = render(browser, page, budget_ms, shot)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        return [f"{name}: could not render ({err})"], ""

    static = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    soup = BeautifulSoup(dom, "html.parser")

    # offline: no network scripts or stylesheets
    for tag in static.find_all("script", src=True) + static.find_all("link", href=True):
        ref = tag.get("src") or tag.get("href")
        is_css = tag.name == "link" and "stylesheet" in (tag.get("rel") or [])
        if (tag.name == "script" or is_css) and urlparse(ref).scheme in {"http", "https"}:
            problems.append(f"{name}: loads {ref} from the network")

    # math
    maths = soup.select(".math")
    untypeset = [m for m in maths if m.find("mjx-container") is None]
    for m in untypeset[:3]:
        problems.append(f"{name}: math not typeset by MathJax: {m.get_text()[:80]!r}")
    if len(untypeset) > 3:
        problems.append(f"{name}: ... {len(untypeset) - 3} more untypeset math elements")
    for err in soup.find_all("mjx-merror")[:3]:
        problems.append(f"{name}: MathJax error: {err.get('data-mjx-error') or err.get_text()!r}")
    n_typeset = len(soup.find_all("mjx-container"))
    style = soup.find("style", id="MJX-CHTML-styles")
    if n_typeset:
        fonts = re.findall(r"url\(\"?([^\")]+)\"?\)", style.get_text() if style else "")
        for font in sorted(set(fonts)):
            local = _local_file(font, page)
            if local is None:
                problems.append(f"{name}: MathJax font from the network: {font}")
            elif not local.is_file():
                problems.append(f"{name}: MathJax font file missing: {local}")

    # figures on pages built from notebooks
    n_figures = 0
    if from_notebook(page, build):
        for img in soup.select(".cell_output img"):
            src = img.get("src", "")
            if src.startswith("data:image"):
                n_figures += 1
                continue
            local = _local_file(src, page)
            if local is None or not local.is_file() or local.stat().st_size == 0:
                problems.append(f"{name}: figure {src!r} is not a local, non-empty file")
            else:
                n_figures += 1
        if n_figures == 0:
            problems.append(f"{name}: no figure image in any cell output")

    # widgets
    n_views = len(static.find_all("script", attrs={"type": WIDGET_VIEW}))
    n_drawn = len(soup.select(".widget-subarea"))
    if n_views and n_drawn < n_views:
        problems.append(f"{name}: {n_views - n_drawn} of {n_views} widget views were not drawn")

    # console: uncaught errors and local files that failed to load
    for line in log.splitlines():
        if "CONSOLE" not in line and "ERR_FILE_NOT_FOUND" not in line:
            continue
        bad = "Uncaught" in line or "ERR_FILE_NOT_FOUND" in line or "Failed to load" in line
        if bad and not any(b in line for b in BENIGN_CONSOLE):
            message = line.split("] ", 1)[-1]
            problems.append(f"{name}: browser console: {message[:200]}")

    # raw TeX left in the text
    text = _visible_text(soup)
    raw = RAW_TEX.findall(text)
    if raw:
        problems.append(f"{name}: raw TeX in the rendered text, e.g. {raw[0]!r} ({len(raw)} found)")
    # a Markdown table left as text (e.g. a Markdown cell output that was not parsed)
    if re.search(r"\|\s*-{3,}\s*\|", text):
        problems.append(f"{name}: a Markdown table rendered as text (a '|---|' row is visible)")

    summary = (
        f"{name}: {n_typeset} math typeset, {n_figures} figures, {n_drawn}/{n_views} widgets"
    )
    return problems, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "pages", nargs="*", help="pages relative to the build folder (default: index + every page)"
    )
    parser.add_argument("--build", type=Path, default=BUILD, help="built HTML folder")
    parser.add_argument("--budget-ms", type=int, default=20000, help="Chromium virtual time")
    parser.add_argument("--chromium", help="Chromium binary (default: found on PATH)")
    parser.add_argument("--screenshots", type=Path, help="save a PNG of each page in this folder")
    args = parser.parse_args(argv)

    build = args.build.resolve()
    if not (build / "index.html").is_file():
        print(f"check_html: {build}/index.html not found; build the book first", file=sys.stderr)
        return 1
    browser = find_browser(args.chromium)
    pages = args.pages or default_pages(build)
    problems: list[str] = []
    seen: set[Path] = set()
    for rel in pages:
        target = follow_redirect(build / rel) if (build / rel).is_file() else build / rel
        if target in seen:
            continue
        seen.add(target)
        page_problems, summary = check_page(rel, build, browser, args.budget_ms, args.screenshots)
        problems += page_problems
        print(("FAIL " if page_problems else "ok   ") + (summary or rel), flush=True)
    if problems:
        print(f"\ncheck_html: {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"check_html: {len(seen)} page(s) render offline with math, figures and widgets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
