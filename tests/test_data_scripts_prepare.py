"""Conversion helpers: mask binarisation and its reported repairs, unions, deterministic splits
and folds, count checks."""

from __future__ import annotations

import numpy as np
import pytest

from data_scripts.prepare import (
    VerificationError,
    add_validation,
    binarize,
    check_counts,
    cv_splits,
    kfold,
    seeded_split,
    summarize_repairs,
    union_masks,
    window,
)
from tests.fixtures_data import save, save_mask_1bit, save_mask_jpeg


def test_binarize_encodings_and_reports():
    notes = []
    assert binarize(np.array([[0, 1]], np.uint8), notes.append).tolist() == [[0, 1]] and notes == []
    assert binarize(np.array([[0, 255]], np.uint8), notes.append).tolist() == [[0, 1]] and notes == []
    assert binarize(np.array([[True, False]]), notes.append).tolist() == [[1, 0]]
    assert binarize(np.array([[3, 127, 128, 250]], np.uint8), notes.append).tolist() == [[0, 0, 1, 1]]
    assert notes == ["JPEG mask thresholded at 128"]
    notes.clear()
    rgb = np.zeros((1, 2, 3), np.uint8)
    rgb[0, 1] = 255
    assert binarize(rgb, notes.append).tolist() == [[0, 1]] and notes == ["RGB mask reduced to one channel"]
    notes.clear()
    rgb[0, 0] = (255, 0, 0)
    assert binarize(rgb, notes.append).tolist() == [[1, 1]] and notes == ["RGB mask reduced (max over channels)"]
    with pytest.raises(VerificationError, match="shape"):
        binarize(np.zeros((2, 2, 2, 2)))


def test_union_of_1bit_and_jpeg_masks(tmp_path):
    a, b = np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8)
    a[:3, :3], b[5:, 5:] = 1, 1
    notes = []
    u = union_masks([save_mask_1bit(tmp_path / "a.png", a), save_mask_jpeg(tmp_path / "b.jpg", b)], notes.append)
    np.testing.assert_array_equal(u, a | b)
    assert "2 masks merged by union" in notes and "JPEG mask thresholded at 128" in notes
    save(tmp_path / "c.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(VerificationError, match="differ in size"):
        union_masks([tmp_path / "a.png", tmp_path / "c.png"])


def test_seeded_split_is_deterministic_disjoint_and_order_free():
    names = [f"n{i}" for i in range(20)]
    s1 = seeded_split(names, {"test": 5, "train": 0}, seed=0)
    s2 = seeded_split(list(reversed(names)), {"test": 5, "train": 0}, seed=0)
    assert s1 == s2 and len(s1["test"]) == 5 and len(s1["train"]) == 15
    assert sorted(s1["test"] + s1["train"]) == sorted(names)
    assert seeded_split(names, {"test": 5, "train": 0}, seed=1) != s1
    assert [len(v) for v in seeded_split(names, {"a": 0.1, "b": 0.2, "c": 0}).values()] == [2, 4, 14]


def test_kfold_stratified_balanced():
    strata = {f"b{i}": "benign" for i in range(9)} | {f"m{i}": "malignant" for i in range(5)}
    folds = kfold(list(strata), 4, strata=strata)
    assert sorted(n for f in folds for n in f) == sorted(strata)
    for cls, total in (("benign", 9), ("malignant", 5)):
        per = [sum(strata[n] == cls for n in f) for f in folds]
        assert max(per) - min(per) <= 1 and sum(per) == total
    assert kfold(list(strata), 4, strata=strata) == folds
    with pytest.raises(ValueError, match="k must be"):
        kfold(["a"], 1)


def test_check_counts_and_summary(capsys):
    assert check_counts("d", {"total": 3}, {"total": 3}, False) == []
    with pytest.raises(VerificationError, match="total: 2 \\(expected 3\\)"):
        check_counts("d", {"total": 2}, {"total": 3}, False)
    warns = check_counts("d", {"total": 2}, {"total": 3}, True)
    assert warns and "NOT the full dataset" in capsys.readouterr().out
    text = summarize_repairs("d", [{"name": "a", "repair": "x"}, {"name": "b", "repair": "x"}])
    assert "2 x x" in text.replace("     ", "")
    assert window(np.array([-1350.0, 150.0]), -600, 1500).tolist() == [0, 255]


def test_add_validation_holds_out_part_of_the_papers_training_set():
    names = [f"n{i:02d}" for i in range(30)][::-1]  # list order is kept (ACDC lists are not sorted)
    out = add_validation({"train": names, "test": ["t"]}, frac=0.1, seed=0)
    assert out["train_full"] == names and out["test"] == ["t"] and len(out["val"]) == 3
    assert out["train"] == [n for n in names if n not in out["val"]] and out["val"] == [
        n for n in names if n in out["val"]
    ]
    assert add_validation({"train": list(reversed(names))})["val"] == sorted(out["val"])  # same draw, any order
    # by group: whole patients/cases go to val
    slices = [f"case{c}_slice{s}" for c in range(5) for s in range(3)]
    g = add_validation({"train": slices}, frac=0.2, group=lambda n: n.split("_slice")[0])
    held = {n.split("_slice")[0] for n in g["val"]}
    assert len(held) == 1 and len(g["val"]) == 3 and not held & {n.split("_slice")[0] for n in g["train"]}
    assert "val" not in add_validation({"train": ["only"]})  # nothing to hold out
    assert len(add_validation({"train": ["a", "b"]})["val"]) == 1  # at least one when possible


def test_cv_splits_fold_zero_is_the_single_run():
    strata = {f"b{i}": "b" for i in range(12)} | {f"m{i}": "m" for i in range(8)}
    sp = cv_splits(list(strata), 4, seed=0, strata=strata)
    assert sp["test"] == sp["fold0"] and sorted(sp["train"] + sp["val"]) == sp["fold0_train"]
    assert len(sp["val"]) == 2 and not set(sp["val"]) & set(sp["train"])
    assert sorted(n for i in range(4) for n in sp[f"fold{i}"]) == sorted(strata)
    assert sp == cv_splits(list(reversed(list(strata))), 4, seed=0, strata=strata)
