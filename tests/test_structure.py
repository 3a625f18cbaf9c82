"""Static checks of the book: notebooks vs _toc.yml, required cells, stored outputs, paths."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tools.book import ROOT, chapters, toc_files

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
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f"_toc.yml names {f}, which does not exist"
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").rglob("*.ipynb")
               if ".ipynb_checkpoints" not in p.parts}
    on_disk |= {p.relative_to(ROOT).with_suffix("").as_posix() for p in (ROOT / "book").rglob("*.md")}
    missing = sorted(on_disk - listed)
    assert not missing, f"in book/ but not in _toc.yml: {missing}"
    assert len(CHAPTERS) >= 2


def test_every_chapter_has_expectations():
    from tests.chapter_expectations import EXPECTATIONS

    names = {nb.stem for nb in CHAPTERS}
    assert names <= set(EXPECTATIONS), f"chapters without an entry in tests/chapter_expectations.py: {sorted(names - set(EXPECTATIONS))}"


@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_structure(nb_path: Path):
    nb = load(nb_path)
    cells = nb["cells"]
    rel = nb_path.relative_to(ROOT).as_posix()
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    # 1. title + Colab badge pointing at this very file
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and first.lstrip().startswith("# "), "first cell must be the title"
    badge = f"https://colab.research.google.com/github/{REPO_URL.split('github.com/')[1]}/blob/{BRANCH}/{rel}"
    assert badge in first, f"Colab badge must link {badge}"
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
    unrun = [i for i, c in enumerate(code) if c.get("execution_count") is None and "colab-setup" not in c["metadata"].get("tags", [])]
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
