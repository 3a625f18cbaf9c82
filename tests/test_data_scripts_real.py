"""Preparers on real files in their original layouts (../shared/data; skipped when absent)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from data_scripts import acdc, busi, isic2016, kvasir_seg

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (real samples) is absent")


def meta(root):
    return json.loads((root / "dataset.json").read_text())


def png(root, kind, name):
    return np.asarray(Image.open(root / kind / f"{name}.png"))


def link_subset(src: Path, dst: Path, rel_files) -> Path:
    """Symlink some real files into a raw layout under ``dst`` (keeps the tests fast; nothing is copied)."""
    for rel in rel_files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).symlink_to(src / rel)
    return dst


def test_kvasir_real_jpeg_masks(tmp_path):
    kv = SHARED / "kvasir-seg"
    names = sorted(p.stem for p in (kv / "Kvasir-SEG" / "images").glob("*.jpg"))[:6]
    raw = link_subset(kv, tmp_path / "raw", [f"Kvasir-SEG/{d}/{n}.jpg" for n in names for d in ("images", "masks")])
    root = kvasir_seg.prepare(raw, tmp_path / "kv", allow_partial=True)
    boxes = json.loads((kv / "Kvasir-SEG" / "kavsir_bboxes.json").read_text())
    assert meta(root)["num_samples"] == 6
    assert sum(r["repair"] == "JPEG mask thresholded at 128" for r in meta(root)["repairs"]) == 6
    for name in names:
        m = png(root, "masks", name)
        raw = np.asarray(Image.open(SHARED / f"kvasir-seg/Kvasir-SEG/masks/{name}.jpg").convert("L"))
        assert set(np.unique(m).tolist()) <= {0, 1} and m.shape == raw.shape
        assert np.mean(m != (raw >= 128)) < 0.005  # independent: luminance threshold
        inside = np.zeros_like(m, bool)  # every polyp pixel lies in one of the published boxes
        for b in boxes[name]["bbox"]:
            inside[max(0, b["ymin"] - 2) : b["ymax"] + 3, max(0, b["xmin"] - 2) : b["xmax"] + 3] = True
        assert m[~inside].sum() <= 0.001 * m.sum()  # a stray JPEG-noise pixel at most


def test_busi_real_multi_masks(tmp_path):
    picks = [f"benign/benign ({i}){s}.png" for i in (4, 100, 163) for s in ("", "_mask", "_mask_1")] + [
        f"{c}/{c} ({i}){s}.png" for c in ("malignant", "normal") for i in (1, 2, 3, 4, 5) for s in ("", "_mask")
    ]
    raw = link_subset(SHARED / "busi" / "Dataset_BUSI_with_GT", tmp_path / "raw" / "Dataset_BUSI_with_GT", picks)
    root = busi.prepare(raw.parent, tmp_path / "busi", allow_partial=True)
    src = SHARED / "busi" / "Dataset_BUSI_with_GT" / "benign"
    a = np.asarray(Image.open(src / "benign (100)_mask.png").convert("L")) > 127
    b = np.asarray(Image.open(src / "benign (100)_mask_1.png").convert("L")) > 127
    np.testing.assert_array_equal(png(root, "masks", "benign_100"), (a | b).astype(np.uint8))
    assert a.sum() and b.sum() and (a | b).sum() > max(a.sum(), b.sum())
    assert all(png(root, "masks", f"normal_{i}").max() == 0 for i in range(1, 6))
    assert ("benign_4", "RGB mask reduced to one channel") in {(r["name"], r["repair"]) for r in meta(root)["repairs"]}
    assert {"benign_100", "benign_163", "benign_4"} <= {
        r["name"] for r in meta(root)["repairs"] if r["repair"] == "2 masks merged by union"
    }
    assert sorted(n for i in range(4) for n in (root / f"splits/fold{i}.txt").read_text().split()) == sorted(
        (root / "splits/all.txt").read_text().split()
    )


def test_acdc_real_h5(tmp_path):
    from mslib.data.volumes import VolumeDataset

    root = acdc.prepare(SHARED / "acdc", tmp_path / "acdc", allow_partial=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = VolumeDataset(root, "test")
    assert ds.names == ["patient011_frame01", "patient011_frame02"]
    image, label, name = ds[0]
    with h5py.File(SHARED / "acdc/ACDC/data/patient011_frame01.h5", "r") as f:
        img, lab = f["image"][:], f["label"][:]
    assert image.shape == (img.shape[0], 1, *img.shape[1:])
    torch.testing.assert_close(image[:, 0], torch.from_numpy(np.rint(img * 255) / 255).float())
    assert torch.equal(label, torch.from_numpy(lab.astype(np.int64)))
    listed = (SHARED / "acdc/ACDC/train_slices.list").read_text().split()
    first = listed[0].split("_frame")[0]
    labeled = (root / "splits/train_labeled_1.txt").read_text().split()
    assert {n.split("_frame")[0] for n in labeled} == {first}
    # SSL4MIS/MCSC label "1 case" as the first 32 lines of train_slices.list: the first patient's slices
    assert labeled == listed[: len(labeled)] and (len(labeled) == 32 if first == "patient099" else True)
    assert (root / "splits/train.txt").read_text().split() == listed  # list order kept
    val = VolumeDataset(root, "val")
    assert val.names == [v for v in (SHARED / "acdc/ACDC/val.list").read_text().split()]
    assert all(val[i][0].shape[0] == val[i][1].shape[0] for i in range(len(val)))


def test_isic2016_real_crops_in_official_layout(tmp_path):
    imgs = sorted((SHARED / "isic2016-crops" / "images").glob("*.jpg"))[:8]
    for i, p in enumerate(imgs):
        part = "Training" if i < len(imgs) // 2 else "Test"
        for folder, src in (
            (f"ISBI2016_ISIC_Part1_{part}_Data", p),
            (
                f"ISBI2016_ISIC_Part1_{part}_GroundTruth",
                SHARED / "isic2016-crops" / "masks" / f"{p.stem}_Segmentation.png",
            ),
        ):
            (tmp_path / "raw" / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / "raw" / folder / src.name).symlink_to(src)
    root = isic2016.prepare(tmp_path / "raw", tmp_path / "isic", allow_partial=True)
    name = imgs[-1].stem
    raw = np.asarray(Image.open(SHARED / "isic2016-crops" / "masks" / f"{name}_Segmentation.png"))
    np.testing.assert_array_equal(png(root, "masks", name), (raw == 255).astype(np.uint8))
    assert (root / "splits/test.txt").read_text().split() == [p.stem for p in imgs[len(imgs) // 2 :]]
