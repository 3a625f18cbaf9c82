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
