"""The built HTML book, opened in headless Chromium with the network blocked, page by page.

For every file in _toc.yml: each figure is present and decoded (and a chapter shows at least
as many as its stored notebook holds), math is typeset by the book's own MathJax (no raw TeX
left, no MathJax error), nothing is wider than its column (equations included), no test
plumbing (``recorded ...``, ``NBVAL``, papermill's parameters cell) and no dead widget is
visible, the browser logs no error, and the Colab/launch links point at the repository of
_config.yml and at that chapter's own notebook.

The book is built from the stored notebooks (execution off; the same build as
tests/test_book_build.py, shared within a session), or
``MSLIB_BOOK_HTML=_build/html`` checks an existing build (e.g. what ``make book`` produced).
Needs Debian's ``chromium`` and the ``playwright`` package (never ``playwright install``):
without them the test skips, unless ``MSLIB_REQUIRE_BROWSER=1`` (set by .ci/run) makes that a
failure.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from tools.book import ROOT, colab_url, find_chromium, repository, toc_files

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book_html")]

INSTALL_HINT = (
    "the browser test needs Chromium and Playwright: apt-get install -y chromium && "
    "pip install playwright (never `playwright install`; the test drives /usr/bin/chromium)"
)
REPO_URL, BRANCH = repository()
PAGES = toc_files()
IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
PLUMBING = [
    (re.compile(r"^\s*recorded \w+ = ", re.M), "a `recorded name = value` box (mslib.utils.record must stay quiet)"),
    (re.compile(r"NBVAL_"), "an `# NBVAL_...` marker"),
    (re.compile(r"^\s*# Parameters\s*$", re.M), "papermill's injected `# Parameters` cell"),
]
WIDGET_TEXT = re.compile(r"\b(interactive|HBox|VBox|IntSlider|FloatSlider|FloatProgress|Dropdown)\(|Loading widget")


def _missing_browser(reason: str):
    if os.environ.get("MSLIB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason}; MSLIB_REQUIRE_BROWSER=1 requires it. {INSTALL_HINT}")
    pytest.skip(f"{reason}: {INSTALL_HINT}")


def notebook_images(rel: str) -> int:
    """How many image outputs the stored notebook of ``rel`` (path without suffix) holds."""
    nb_path = ROOT / f"{rel}.ipynb"
    if not nb_path.exists():
        return 0
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return sum(
        1
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if any(m in o.get("data", {}) for m in IMAGE_MIMES)
    )


@pytest.fixture(scope="module")
def html_dir(tmp_path_factory) -> Path:
    given = os.environ.get("MSLIB_BOOK_HTML")
    if given:
        path = Path(given)
        path = path if path.is_absolute() else ROOT / path
        assert (path / "index.html").exists(), f"MSLIB_BOOK_HTML={given}: no index.html there (build the book first)"
        return path
    from tests.test_book_build import build_book

    html, result = build_book(tmp_path_factory)
    assert (html / "index.html").exists(), "the book did not build:\n" + result["log"]
    return html


@pytest.fixture(scope="module")
def browser():
    exe = find_chromium()
    if exe is None:
        _missing_browser("no Chromium found (looked for $MSLIB_CHROMIUM, /usr/bin/chromium, chromium on PATH)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing_browser("the playwright package is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


# Everything measured in the page in one evaluation (elements, sizes, visible text).
PROBE = r"""
() => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
  const col = article.getBoundingClientRect();
  const visibleText = (root) => {
    const clone = root.cloneNode(true);
    clone.querySelectorAll("script, style, mjx-assistive-mml").forEach(e => e.remove());
    return clone.innerText === undefined ? clone.textContent : clone.textContent;
  };
  const proseRoot = article.cloneNode(true);
  proseRoot.querySelectorAll("pre, code, script, style, mjx-container, .highlight").forEach(e => e.remove());
  const imgs = [...article.querySelectorAll("img")].map(i => ({
    src: i.getAttribute("src"), ok: i.complete && i.naturalWidth > 0,
    output: !!i.closest(".cell_output")}));
  const scrollsX = (el) => { for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX; if (o === "auto" || o === "scroll" || o === "hidden") return true; }
    return false; };
  const wide = [];
  for (const el of article.querySelectorAll("*")) {
    if (el.closest("mjx-container") && el.tagName !== "MJX-CONTAINER") continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || getComputedStyle(el).display === "none") continue;
    if ((r.right > col.right + 2 || r.left < col.left - 2) && !scrollsX(el)) {
      wide.push(el.tagName.toLowerCase() + "." + [...el.classList].join(".") + " " + Math.round(r.width) + "px");
    }
  }
  const eqs = [...article.querySelectorAll('mjx-container[display="true"]')].map(m => {
    const inner = m.querySelector("mjx-math");
    return {need: inner ? Math.round(inner.getBoundingClientRect().width) : 0, have: m.clientWidth,
            section: (m.closest("section") || {id: "?"}).id};
  });
  return {
    column: Math.round(col.width),
    pageScrollX: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    imgs, wide: wide.slice(0, 10),
    mathSource: article.querySelectorAll("div.math, span.math").length,
    mjx: article.querySelectorAll("mjx-container").length,
    mjxErrors: article.querySelectorAll("mjx-merror").length,
    eqs,
    prose: proseRoot.textContent,
    text: visibleText(article),
    outputText: [...article.querySelectorAll(".cell_output")].map(e => e.textContent).join("\n"),
    widgets: document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"], .jupyter-widgets, .widget-area').length,
    injected: document.querySelectorAll(".tag_injected-parameters").length,
    colab: [...document.querySelectorAll('a[href*="colab.research.google.com/github/"]')].map(a => a.href),
    repoLinks: [...document.querySelectorAll(
      ".article-header-buttons a[href*='github.com'], .header-article a[href*='github.com']")].map(a => a.href),
    mathjaxScripts: [...document.querySelectorAll("script[src]")].map(s => s.getAttribute("src"))
      .filter(s => /mathjax/i.test(s)),
  };
}
"""


def open_page(browser, path: Path):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:", "blob:", "about:")):
            return r.continue_()
        blocked.append(url)
        return r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    try:  # MathJax (when the page has math) must load from the build and finish typesetting
        page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)", timeout=15_000)
        page.evaluate("() => (window.MathJax && MathJax.startup) ? MathJax.startup.promise : null")
    except Exception as exc:  # noqa: BLE001 - reported with the page's other problems
        errors.append(
            f"MathJax did not load or typeset within 15 s ({type(exc).__name__}); blocked requests: {blocked[:3]}"
        )
    page.wait_for_timeout(200)
    return page, errors, blocked


@pytest.mark.timeout(900)
@pytest.mark.parametrize("rel", PAGES, ids=[Path(p).name for p in PAGES])
def test_page_in_browser(rel, html_dir, browser):
    path = html_dir / f"{rel}.html"
    assert path.exists(), f"{rel} is in _toc.yml but {path} was not built"
    t0 = time.perf_counter()
    page, errors, blocked = open_page(browser, path)
    try:
        info = page.evaluate(PROBE)
    finally:
        page.close()
    problems = []
    # figures: present, decoded, at least as many as the stored notebook holds
    broken = [i["src"] for i in info["imgs"] if not i["ok"]]
    if broken:
        problems.append(f"images not decoded: {broken[:5]}")
    figures = sum(1 for i in info["imgs"] if i["output"] and i["ok"])
    expected = notebook_images(rel)
    if figures < expected:
        problems.append(f"{figures} figures shown, the stored notebook has {expected} (executed under MPLBACKEND=Agg?)")
    # math: typeset by the local MathJax, no raw TeX left
    if any(s.startswith(("http:", "https:", "//")) for s in info["mathjaxScripts"]) or (
        info["mathSource"] and not info["mathjaxScripts"]
    ):
        problems.append(f"MathJax is not served from the book: {info['mathjaxScripts']}")
    if info["mathSource"] and info["mjx"] < info["mathSource"]:
        problems.append(f"{info['mathSource']} math elements but only {info['mjx']} typeset by MathJax")
    raw = re.findall(r"\\\[|\\\(|\$\$|\\begin\{|\\frac\{|\\mathrm\{", info["prose"])
    if raw:
        problems.append(f"raw TeX visible: {raw[:5]}")
    if info["mjxErrors"]:
        problems.append(f"{info['mjxErrors']} MathJax errors")
    # width
    if info["pageScrollX"] > 2:
        problems.append(f"the page scrolls sideways by {info['pageScrollX']} px")
    too_wide = [e for e in info["eqs"] if e["need"] > e["have"] + 2]
    if too_wide:
        problems.append(f"equations wider than the {info['column']} px column: {too_wide[:3]}")
    if info["wide"]:
        problems.append(f"elements wider than the column: {info['wide']}")
    # plumbing and widgets
    for pattern, what in PLUMBING:
        if pattern.search(info["text"]):
            problems.append(f"visible test plumbing: {what}")
    if info["injected"]:
        problems.append("papermill's injected-parameters cell is on the page")
    if info["widgets"] or WIDGET_TEXT.search(info["outputText"]):
        problems.append("a widget (or its text placeholder) is on the page: the static book must show pictures")
    # links: repository of _config.yml, this chapter's notebook
    if (ROOT / f"{rel}.ipynb").exists():
        want = colab_url(f"{rel}.ipynb")
        wrong = sorted({h for h in info["colab"] if h != want})
        if not info["colab"]:
            problems.append(f"no Colab link (expected {want})")
        if wrong:
            problems.append(f"Colab links {wrong} should all be {want}")
    wrong_repo = [h for h in info["repoLinks"] if not h.startswith(REPO_URL)]
    if wrong_repo:
        problems.append(f"repository links {wrong_repo} do not point at {REPO_URL}")
    if errors:
        problems.append(f"browser errors: {errors[:5]}")
    print(
        f"{rel}: {figures} figures (notebook {expected}), {info['mjx']} math elements, "
        f"{len(blocked)} blocked requests, {time.perf_counter() - t0:.1f} s"
    )
    assert not problems, f"{rel}:\n- " + "\n- ".join(problems)
