"""Static checks of the book: notebooks vs _toc.yml, required cells, stored outputs, paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from tools.book import ROOT, chapters, colab_url, install_spec, set_repo, toc_files

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
REPO_URL = CONFIG["repository"]["url"].rstrip("/")
BRANCH = CONFIG["repository"]["branch"]
MAX_BYTES = 2_500_000
MAX_TEXT_LINES = 100
CHAPTERS = chapters()
ABSOLUTE = re.compile(r"(?<![\w.])(/work/|/home/|/root/|/Users/|/tmp/|[A-Z]:\\\\)")
CUDA = re.compile(r"""\.cuda\(|\.to\(\s*["']cuda|["']cuda:\d""")


def load(nb: Path) -> dict:
    return json.loads(nb.read_text(encoding="utf-8"))


def test_toc_and_files_agree():
    listed = set(toc_files())
    for f in listed:
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), (
            f"_toc.yml names {f}, which does not exist"
        )
    on_disk = {
        p.relative_to(ROOT).with_suffix("").as_posix()
        for p in (ROOT / "book").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in p.parts
    }
    on_disk |= {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").rglob("*.md")}
    missing = sorted(on_disk - listed)
    assert not missing, f"in book/ but not in _toc.yml: {missing}"
    assert len(CHAPTERS) >= 2


def test_every_chapter_has_expectations():
    from tests.chapter_expectations import EXPECTATIONS

    names = {nb.stem for nb in CHAPTERS}
    assert names <= set(EXPECTATIONS), (
        f"chapters without an entry in tests/chapter_expectations.py: {sorted(names - set(EXPECTATIONS))}"
    )


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_structure(nb_path: Path):
    nb = load(nb_path)
    cells = nb["cells"]
    rel = nb_path.relative_to(ROOT).as_posix()
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    # 1. title + Colab badge pointing at this very file
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and first.lstrip().startswith("# "), "first cell must be the title"
    badge = colab_url(rel)
    assert badge in first, f"Colab badge must link {badge} (python tools/book.py set-repo re-stamps it)"
    # 2. Colab-only setup cell, never reinstalling torch or numpy
    setup = cells[1]
    src = "".join(setup["source"])
    assert setup["cell_type"] == "code" and "colab-setup" in setup["metadata"].get("tags", [])
    assert "google.colab" in src and "pip install" in src and "mslib" in src
    assert not re.search(r"pip install[^\n]*\b(torch|numpy)\b", src), "the setup cell must not reinstall torch or numpy"
    # 3. parameters cell with the four parameters
    params = cells[2]
    assert "parameters" in params["metadata"].get("tags", []), "third cell must be tagged 'parameters'"
    psrc = "".join(params["source"])
    for name in ("PROFILE", "DATA", "DEVICE", "SEED"):
        assert re.search(rf"^{name}\s*=", psrc, re.M), f"parameters cell lacks {name}"
    assert re.search(r'^PROFILE\s*=\s*"quick"', psrc, re.M), "stored default must be the quick profile"
    # 4. stored executed, no errors, small outputs, no widget state
    code = [c for c in cells if c["cell_type"] == "code"]
    unrun = [
        i
        for i, c in enumerate(code)
        if c.get("execution_count") is None and "colab-setup" not in c["metadata"].get("tags", [])
    ]
    assert not unrun, f"code cells {unrun} were not executed: store the chapter executed (make notebooks)"
    for c in code:
        for o in c.get("outputs", []):
            assert o["output_type"] != "error", f"error output stored in {rel}"
            text = o.get("text") or o.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            assert text.count("\n") <= MAX_TEXT_LINES, f"an output of {rel} has more than {MAX_TEXT_LINES} lines"
            assert "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), "strip widget outputs"
    assert "widgets" not in nb["metadata"], "strip the widget state (tools/book.py does)"
    assert nb_path.stat().st_size <= MAX_BYTES, f"{rel} is {nb_path.stat().st_size} bytes: trim its outputs"
    # 5. no CUDA hard-coding, no absolute paths (sources and text outputs)
    for c in cells:
        s = "".join(c["source"])
        assert not CUDA.search(s), f"hard-coded CUDA in {rel}: use DEVICE / mslib.utils.get_device"
        assert not ABSOLUTE.search(s), f"absolute path in a cell of {rel}: {ABSOLUTE.search(s).group(0)}"
        for o in c.get("outputs", []) if c["cell_type"] == "code" else []:
            t = o.get("text") or o.get("data", {}).get("text/plain", "")
            t = "".join(t) if isinstance(t, list) else t
            assert not ABSOLUTE.search(t), f"absolute path in an output of {rel}: {ABSOLUTE.search(t).group(0)}"
    # 6. teaching structure: a summary and exercises at the end
    md = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert re.search(r"^##+\s*Summary", md, re.M), "a chapter ends with a Summary section"
    assert re.search(r"^##+\s*Exercises", md, re.M), "a chapter ends with Exercises"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in readme and "make book" in readme
    assert re.search(r"^make test\s*$", ci, re.M)
    assert "set -e" in ci


def test_config_has_colab_and_no_intersphinx():
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert "intersphinx" not in (ROOT / "_config.yml").read_text(encoding="utf-8")


# --- one source of truth for the repository address (_config.yml) -----------------------

COLAB_LINK = re.compile(r"https://colab\.research\.google\.com/github/[^)\s\"'\]]+")
GIT_INSTALL = re.compile(r"git\+https://github\.com/[^@\s\"']+@[\w./-]+")


def repo_problems(root: Path) -> list[str]:
    """Every Colab link, install spec and repository link that disagrees with _config.yml."""
    from tools.book import repository

    url, _ = repository(root)
    spec = install_spec(root)
    problems = []
    for nb_path in chapters(root):
        rel = nb_path.relative_to(root).as_posix()
        text = "\n".join("".join(c["source"]) for c in load(nb_path)["cells"])
        own = colab_url(rel, root)
        links = COLAB_LINK.findall(text)
        if own not in links:
            problems.append(f"{rel}: no Colab badge linking {own}")
        problems += [f"{rel}: Colab link {h} is not {own}" for h in links if h != own]
        problems += [f"{rel}: install spec {h} is not {spec}" for h in GIT_INSTALL.findall(text) if h != spec]
        if not GIT_INSTALL.findall(text):
            problems.append(f"{rel}: the setup cell installs no {spec}")
    for path in (root / "README.md", root / "tools" / "chapter_template.py"):
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        problems += [f"{path.name}: install spec {h} is not {spec}" for h in GIT_INSTALL.findall(text) if h != spec]
        for h in COLAB_LINK.findall(text):
            if "/github/" + url.split("github.com/")[1] + "/" not in h:
                problems.append(f"{path.name}: Colab link {h} is not in {url}")
        for h in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text):
            owner_name = h.split("github.com/")[1]
            if owner_name.split("/")[1] in ("mslib",) and h != url:
                problems.append(f"{path.name}: repository link {h} is not {url}")
    return problems


def test_repository_address_agrees_everywhere():
    problems = repo_problems(ROOT)
    assert not problems, "run `python tools/book.py set-repo` to re-stamp:\n" + "\n".join(problems)


def test_set_repo_stamps_a_fork(tmp_path):
    """`tools/book.py set-repo URL --branch B` on a copy: one command moves every address."""
    import shutil

    for name in ("_config.yml", "_toc.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "book", tmp_path / "book", ignore=shutil.ignore_patterns("_static", "*.bib"))
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "chapter_template.py", tmp_path / "tools" / "chapter_template.py")
    fork = "https://github.com/a-teacher/mslib-course"
    changed = set_repo(fork, "spring", root=tmp_path)
    assert tmp_path / "_config.yml" in changed and len(changed) >= len(CHAPTERS) + 1
    cfg = yaml.safe_load((tmp_path / "_config.yml").read_text(encoding="utf-8"))
    assert cfg["repository"]["url"] == fork and cfg["repository"]["branch"] == "spring"
    assert cfg["launch_buttons"] == CONFIG["launch_buttons"], "set-repo must not touch anything else"
    assert not repo_problems(tmp_path)
    first = CHAPTERS[0].relative_to(ROOT).as_posix()
    text = (tmp_path / first).read_text(encoding="utf-8")
    assert f"https://colab.research.google.com/github/a-teacher/mslib-course/blob/spring/{first}" in text
    assert "git+https://github.com/a-teacher/mslib-course@spring" in text
    assert "mslib-book/mslib" not in text
    assert set_repo(root=tmp_path) == [], "stamping twice changes nothing"


# --- test plumbing stays out of the reader's way -------------------------------------------


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_no_plumbing_and_every_figure_stored(nb_path: Path):
    from mslib.utils import RECORD_MIME

    nb = load(nb_path)
    rel = nb_path.relative_to(ROOT).as_posix()
    for i, c in enumerate(nb["cells"]):
        tags = c["metadata"].get("tags", [])
        assert "injected-parameters" not in tags, (
            f"{rel}: papermill's injected parameters cell is stored (tools/book.py execute drops it)"
        )
        if c["cell_type"] != "code":
            continue
        images = 0
        for o in c.get("outputs", []):
            data = o.get("data", {})
            text = "".join(data.get("text/plain", "")) + "".join(o.get("text", ""))
            assert not re.search(r"^recorded \w+ = ", text, re.M), f"{rel}: a loud record() output (re-execute it)"
            if RECORD_MIME in data:
                assert "text/plain" not in data, f"{rel}: record() outputs must carry no text/plain"
            images += any(k.startswith("image/") for k in data)
        src = "".join(c["source"])
        if re.search(r"^\s*plt\.show\(\)", src, re.M) and "viz.interactive" not in src:
            assert images, (
                f"{rel}, cell {i}: calls plt.show() but stores no figure "
                "(executed under MPLBACKEND=Agg? tools/book.py unsets it for kernels)"
            )


def test_record_is_quiet(monkeypatch):
    """record() displays its value under its own MIME type with no visible text."""
    import IPython
    import IPython.display

    from mslib.utils import RECORD_MIME, read_records, record

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    record("dice", 0.75)
    assert len(shown) == 1 and shown[0][RECORD_MIME] == {"dice": 0.75}
    assert "text/plain" not in shown[0], "a text/plain fallback would show 'recorded ...' to readers"
    assert "hidden" in shown[0]["text/html"]
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": shown[0]}]}]}
    assert read_records(nb) == {"dice": 0.75}


def test_no_global_agg_backend_in_makefile():
    """`make book`/`make notebooks` must not run kernels under Agg (plt.show() draws nothing)."""
    mk = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert not re.search(r"^export MPLBACKEND", mk, re.M), "MPLBACKEND=Agg only on test/bench targets"
    from tools.book import EXECUTION_ENV

    assert EXECUTION_ENV.get("MPLBACKEND", "unset") is None, "the book's executions must unset MPLBACKEND"
    assert EXECUTION_ENV.get("TQDM_DISABLE") == "1" and EXECUTION_ENV.get("MSLIB_STATIC_WIDGETS") == "1"


# --- widgets in the static book (mslib.viz) --------------------------------------------------


def test_interactive_draws_a_static_picture(monkeypatch, capsys):
    """With MSLIB_STATIC_WIDGETS=1 (the book's executions) no widget is built: the function
    runs once at the values ipywidgets would start from, and the page says so."""
    from mslib import viz

    monkeypatch.setenv("MSLIB_STATIC_WIDGETS", "1")
    assert viz.static_widgets()
    calls = []

    def explore(shift=0, kind="shift", size=4):
        calls.append((shift, kind, size))
        return "drawn"

    assert viz.interactive(explore, shift=(-10, 10, 1), kind=["hole", "blur"], size=(0, 12, 1)) == "drawn"
    assert calls == [(0, "shift", 4)], "the function's defaults win, as in ipywidgets.interact"
    assert "static view: shift=0, kind='shift', size=4" in capsys.readouterr().out

    def no_defaults(a, b, c, d):
        calls.append((a, b, c, d))

    viz.interactive(no_defaults, a=(0, 10, 2), b=["x", "y"], c=(0.0, 1.0), d=True)
    assert calls[-1] == (4, "x", 0.5, True), "middle of a range (on the step), first of a list, a fixed value"
    monkeypatch.setenv("MSLIB_STATIC_WIDGETS", "0")
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        assert viz.static_widgets()
    else:
        assert not viz.static_widgets()


def test_viz_names_the_extra_when_matplotlib_is_missing(monkeypatch):
    import sys

    from mslib import viz

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'mslib\[viz\]'"):
        viz.overlay(np.zeros((4, 4, 3)))
