"""CI checks of issue 12: import-linter contracts (the layers of ARCHITECTURE.md) and ruff.

`make lint` runs the same three commands; these tests put them inside `make test`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = BIN / name
    if exe.is_file():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed: pip install -e '.[test]' (it is in the test extra)")
    return found


def _run(args, cwd=ROOT, **kw):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


def test_import_contracts_hold():
    r = _run([_tool("lint-imports"), "--no-cache"])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "0 broken" in r.stdout


@pytest.mark.parametrize(
    "source, target",
    [
        ("blocks", "mslib.models.unet"),  # bottom layer importing a model
        ("models", "mslib.losses.structure"),  # a model importing a loss
        ("data", "mslib.models.unet"),  # data knowing a model
        ("metrics_probe", "data_scripts"),  # mslib importing data_scripts
    ],
)
def test_import_contracts_catch_a_violation(tmp_path, source, target):
    """The contracts are not vacuous: one forbidden import in a copy of the package breaks them."""
    shutil.copytree(ROOT / "mslib", tmp_path / "mslib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for extra in ("data_scripts", "benchmarks", "tools", "tests"):
        (tmp_path / extra).mkdir(exist_ok=True)
        (tmp_path / extra / "__init__.py").touch()
    where = tmp_path / "mslib" / (source if source != "metrics_probe" else "") / "_violation.py"
    where.write_text(f"import {target}  # noqa: F401\n", encoding="utf-8")
    r = _run([_tool("lint-imports"), "--no-cache"], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert r.returncode != 0, r.stdout[-3000:]
    assert "_violation" in r.stdout


def test_ruff_lint_passes():
    r = _run([_tool("ruff"), "check", "--output-format", "concise", "."])
    assert r.returncode == 0, r.stdout[-4000:]


def test_ruff_format_is_applied():
    r = _run([_tool("ruff"), "format", "--check", "."])
    assert r.returncode == 0, "run `ruff format .` (the lead runs it once):\n" + r.stdout[-3000:]
