"""The book builds offline with warnings as errors (execution off: stored outputs are shown),
and a cheap static look at the HTML (no browser): every figure of each chapter's notebook is
an ``<img>`` of its page, MathJax comes from the build itself, no test plumbing is left.
tests/test_browser.py opens the same pages in Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.book import MATHJAX_PATH, ROOT, toc_files

IMAGE_MIMES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")


def build_book(tmp_path_factory) -> tuple[Path, dict]:
    """Build the book once per test session (per xdist worker; the tests that use it share the
    ``book_html`` group): ``jupyter-book build -W -n --keep-going``, execution off. Returns the
    HTML folder and ``{"rc": ..., "log": ...}``; with --keep-going the HTML exists even when
    a warning made the build fail, so the browser test still looks at it."""
    out = tmp_path_factory.getbasetemp() / "book-strict"
    result = out / "result.json"
    if not result.exists():
        out.mkdir(parents=True, exist_ok=True)
        jb = Path(sys.executable).parent / "jupyter-book"
        exe = str(jb) if jb.exists() else shutil.which("jupyter-book")
        assert exe, "jupyter-book is not installed: pip install -e '.[book]'"
        proc = subprocess.run(
            [exe, "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        result.write_text(json.dumps({"rc": proc.returncode, "log": proc.stdout[-8000:] + proc.stderr[-4000:]}))
    return out / "_build" / "html", json.loads(result.read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    html, result = build_book(tmp_path_factory)
    assert result["rc"] == 0, result["log"]
    return html


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("book_html")
def test_book_builds_strict(built):
    assert (built / "index.html").exists()
    for rel in toc_files():
        assert (built / f"{rel}.html").exists(), f"{rel} is in _toc.yml but was not built"


def _notebook_images(nb_path: Path) -> int:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    return sum(
        1
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if any(m in o.get("data", {}) for m in IMAGE_MIMES)
    )


def _output_images(html: str) -> int:
    """<img> inside cell outputs (figures), not the Colab badge or the logo."""
    return len(re.findall(r'<img[^>]+src="[^"]*_images/(?!colab-badge)[^"]+"', html))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.xdist_group("book_html")
def test_static_html(built):
    mathjax = built / "_static" / MATHJAX_PATH
    assert mathjax.exists(), f"{mathjax} is missing: MathJax must be served from the build (sphinx-mathjax-offline)"
    problems = []
    for rel in toc_files():
        html = (built / f"{rel}.html").read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', html, re.I)
        if any(s.startswith(("http:", "https:", "//")) for s in scripts):
            problems.append(f"{rel}: MathJax from the network: {scripts}")
        if ('class="math' in html) and not any(s.endswith(MATHJAX_PATH) for s in scripts):
            problems.append(f"{rel}: has math but no local MathJax script")
        nb = ROOT / f"{rel}.ipynb"
        if nb.exists():
            want, got = _notebook_images(nb), _output_images(html)
            if got < want:
                problems.append(f"{rel}: {got} figures in the HTML, {want} in the notebook")
        text = re.sub(r"<[^>]+>", "", html)
        for pattern, what in (
            (r"NBVAL_", "# NBVAL marker"),
            (r"^\s*recorded \w+ = ", "recorded ... box"),
            (r"tag_injected-parameters", "papermill's parameters cell"),
        ):
            if re.search(pattern, html if "tag_" in pattern else text, re.M):
                problems.append(f"{rel}: {what} on the page")
        if "application/vnd.jupyter.widget-view+json" in html:
            problems.append(f"{rel}: a widget view in the static page")
    assert not problems, "\n".join(problems)
