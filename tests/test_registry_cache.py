"""A synthetic dataset cached by an older generator version is regenerated, not reused."""

from __future__ import annotations

import json

from mslib.data import load_dataset
from mslib.data.registry import synthetic_path
from mslib.data.synthetic import GENERATOR_VERSION


def test_stale_synthetic_cache_is_regenerated():
    ds = load_dataset("synthetic-skin", "train", n=6, size=32, seed=3)
    path = synthetic_path("skin", 6, 32, 3)
    meta_file = path / "dataset.json"
    meta = json.loads(meta_file.read_text())
    assert ds.root == path and meta["generator"]["version"] == GENERATOR_VERSION
    meta["generator"]["version"] = GENERATOR_VERSION - 1  # pretend an older mslib wrote it
    meta_file.write_text(json.dumps(meta))
    load_dataset("synthetic-skin", "train", n=6, size=32, seed=3)
    assert json.loads(meta_file.read_text())["generator"]["version"] == GENERATOR_VERSION


def test_preparers_list_matches_every_data_scripts_module():
    """mslib keeps its own name -> module list (it never imports data_scripts); it must stay in sync."""
    import importlib
    import pkgutil

    import data_scripts
    from mslib.data.registry import PREPARERS

    found = {}
    for mod in pkgutil.iter_modules(data_scripts.__path__):
        info = getattr(importlib.import_module(f"data_scripts.{mod.name}"), "INFO", None)
        if info is not None and getattr(info, "name", None):
            found[info.name] = mod.name
    assert found == PREPARERS


def test_missing_prepared_dataset_names_its_preparer(tmp_path, monkeypatch):
    import sys

    import pytest

    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path))
    for name in [m for m in sys.modules if m == "data_scripts" or m.startswith("data_scripts.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(FileNotFoundError, match=r"python -m data_scripts\.kvasir_seg --root"):
        load_dataset("kvasir-seg")
    assert "data_scripts" not in sys.modules  # the message came from mslib's own list
