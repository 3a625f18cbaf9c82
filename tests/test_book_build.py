"""The book builds offline with warnings as errors (execution off: stored outputs are shown)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.book import ROOT


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_book_builds_strict(tmp_path):
    jb = Path(sys.executable).parent / "jupyter-book"
    exe = str(jb) if jb.exists() else shutil.which("jupyter-book")
    assert exe, "jupyter-book is not installed: pip install -e '.[book]'"
    proc = subprocess.run([exe, "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-4000:]
    html = tmp_path / "_build" / "html"
    assert (html / "index.html").exists()
    assert (html / "book" / "02_training_loop.html").exists()
