"""Every chapter in _toc.yml runs with the quick profile and records sensible results.

Each chapter is executed once with papermill (PROFILE="quick", DEVICE="cpu"). The test
then checks (1) the values the chapter recorded with ``mslib.utils.record`` against
tests/chapter_expectations.py and (2) that every cell marked ``# NBVAL_CHECK_OUTPUT``
prints exactly what the stored notebook shows (nbval's rule, without a second run).
A failing chapter's executed copy is kept under ``_build/failed/`` with its traceback.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from mslib.utils import read_records
from tests.chapter_expectations import EXPECTATIONS
from tools.book import ROOT, chapters, execute

CHAPTERS = chapters()
SANITIZE = [
    (re.compile(r"0x[0-9a-f]+"), "0x..."),
    (re.compile(r"\d+\.\d+ ?(s|ms|sec|seconds)\b"), "T s"),
]


def _checked_outputs(nb: dict) -> list[tuple[int, str]]:
    out = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code" or "NBVAL_CHECK_OUTPUT" not in "".join(cell["source"]):
            continue
        texts = []
        for o in cell.get("outputs", []):
            t = o.get("text") if o["output_type"] == "stream" else o.get("data", {}).get("text/plain")
            if t is not None:
                texts.append("".join(t) if isinstance(t, list) else t)
        # a stream is split into outputs where the kernel happened to flush: compare the whole text
        t = "\n".join(line.rstrip() for line in "".join(texts).splitlines() if line.strip())
        for pat, rep in SANITIZE:
            t = pat.sub(rep, t)
        out.append((i, t))
    return out


def _check(name, value, rule):
    if callable(rule):
        assert rule(value), f"recorded {name}={value!r} fails its check"
        return
    lo, hi = rule
    assert isinstance(value, (int, float)), f"recorded {name}={value!r} is not a number"
    assert lo is None or value >= lo, f"recorded {name}={value} is below {lo}"
    assert hi is None or value <= hi, f"recorded {name}={value} is above {hi}"


@pytest.mark.notebook
@pytest.mark.timeout(900)
@pytest.mark.parametrize("nb_path", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_quick_run(nb_path, tmp_path):
    expect = EXPECTATIONS.get(nb_path.stem)
    assert expect is not None, f"add {nb_path.stem} to tests/chapter_expectations.py"
    out = tmp_path / nb_path.name
    try:
        execute(nb_path, out, parameters={"PROFILE": "quick", "DEVICE": "cpu"})
    except Exception:
        keep = ROOT / "_build" / "failed"
        keep.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.copy(out, keep / nb_path.name)
        raise
    records = read_records(out)
    for name, rule in expect["records"].items():
        assert name in records, f"{nb_path.name} did not record {name!r} (recorded: {sorted(records)})"
        _check(name, records[name], rule)
    stored = _checked_outputs(json.loads(nb_path.read_text(encoding="utf-8")))
    fresh = _checked_outputs(json.loads(out.read_text(encoding="utf-8")))
    # papermill inserts an 'injected-parameters' cell, so compare in order, not by index
    assert [t for _, t in fresh] == [t for _, t in stored], (
        "a '# NBVAL_CHECK_OUTPUT' cell printed something else than the stored notebook"
    )
