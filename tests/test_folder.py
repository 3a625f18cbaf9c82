"""SegmentationFolder on well-formed data, and load_dataset / list_datasets."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from mslib.data import PreparedWriter, SegmentationFolder, build_transforms, list_datasets, load_dataset, registry


def _pairs(root, names):
    out = []
    for n in names:
        with Image.open(root / "images" / f"{n}.png") as img, Image.open(root / "masks" / f"{n}.png") as mask:
            out.append((np.array(img), np.array(mask)))
    return out


def test_items_types_shapes_and_values(tiny_dataset):
    ds = SegmentationFolder(tiny_dataset, "train")
    assert len(ds) == 4 and ds.names == ["s00", "s01", "s02", "s03"]
    assert ds.classes == ["background", "lesion"] and ds.num_classes == 2 and ds.channels == 3
    assert ds.meta["name"] == "tiny" and ds.repairs == [] and ds.split == "train" and ds.root == tiny_dataset
    for i, (img_np, mask_np) in enumerate(_pairs(tiny_dataset, ds.names)):
        image, mask = ds[i]
        assert isinstance(image, tv_tensors.Image) and isinstance(mask, tv_tensors.Mask)
        assert image.dtype == torch.float32 and image.shape == (3, 12, 16)
        assert mask.dtype == torch.int64 and mask.shape == (12, 16)
        # the exact stored pixels, scaled by 1/255, channel-first
        torch.testing.assert_close(image, torch.from_numpy(img_np).permute(2, 0, 1).float() / 255)
        assert torch.equal(mask, torch.from_numpy(mask_np).long())
        assert 0.0 <= image.min() and image.max() <= 1.0
    # negative indices and numpy integers work like a list
    assert torch.equal(ds[-1][1], ds[3][1]) and torch.equal(ds[np.int64(2)][1], ds[2][1])
    with pytest.raises(IndexError):
        ds[4]


def test_splits_and_all(tiny_dataset):
    assert SegmentationFolder(tiny_dataset, "test").names == ["s04", "s05"]
    everything = SegmentationFolder(tiny_dataset, None)
    assert everything.names == [f"s{i:02d}" for i in range(6)] and everything.split is None


def test_grayscale_dataset(make_dataset):
    root = make_dataset(channels=1, classes=("bg", "a", "b"))
    ds = SegmentationFolder(root, "train")
    image, mask = ds[0]
    assert ds.channels == 1 and image.shape == (1, 12, 16) and ds.num_classes == 3
    assert set(mask.unique().tolist()) <= {0, 1, 2}


def test_transform_is_applied_jointly(tiny_dataset):
    calls = []

    def t(image, mask):
        calls.append((type(image), type(mask)))
        return image * 0 + 0.5, mask + 1

    ds = SegmentationFolder(tiny_dataset, "train", transform=t)
    image, mask = ds[0]
    plain = SegmentationFolder(tiny_dataset, "train")[0][1]
    assert calls == [(tv_tensors.Image, tv_tensors.Mask)]
    assert torch.all(image == 0.5) and torch.equal(mask, plain + 1)


def test_validate_false_loads_the_same(tiny_dataset):
    a, b = SegmentationFolder(tiny_dataset, None), SegmentationFolder(tiny_dataset, None, validate=False)
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])


def test_hand_made_folder_with_jpeg_images_and_no_splits(tmp_path):
    """A user folder: JPEG images, PNG masks, a minimal dataset.json, no splits/ and no channels."""
    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(root / "images" / f"c{i}.JPG")
        Image.fromarray((rng.random((10, 14)) > 0.5).astype(np.uint8)).save(root / "masks" / f"c{i}.png")
    (root / "dataset.json").write_text(json.dumps({"name": "mine", "classes": ["background", "lesion"]}))
    ds = SegmentationFolder(root, split=None)
    assert ds.names == ["c0", "c1", "c2"] and ds.channels == 3 and ds.repairs == []
    assert ds[0][0].shape == (3, 10, 14)


def test_mixed_sizes_are_fine_and_resize_makes_them_batchable(tmp_path):
    rng = np.random.default_rng(0)
    with PreparedWriter(tmp_path / "mixed", name="mixed", classes=["bg", "fg"]) as w:
        for i, (h, wd) in enumerate([(10, 12), (16, 9), (20, 20)]):
            w.add(
                f"m{i}", rng.integers(0, 256, (h, wd, 3), dtype=np.uint8), rng.integers(0, 2, (h, wd), dtype=np.uint8)
            )
        w.set_splits({"train": ["m0", "m1", "m2"]})
    ds = SegmentationFolder(tmp_path / "mixed", "train")
    assert [tuple(ds[i][1].shape) for i in range(3)] == [(10, 12), (16, 9), (20, 20)]
    ds.transform = build_transforms(False, 8)
    images, masks = next(iter(DataLoader(ds, batch_size=3)))
    assert images.shape == (3, 3, 8, 8) and masks.shape == (3, 8, 8) and masks.dtype == torch.int64


def test_picklable_for_dataloader_workers(tiny_dataset):
    ds = SegmentationFolder(tiny_dataset, "train", transform=build_transforms(True, 8))
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.names == ds.names and clone.channels == ds.channels
    torch.manual_seed(0)
    a = ds[1]
    torch.manual_seed(0)
    b = clone[1]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# --------------------------------------------------------------------------------------
# load_dataset / list_datasets
# --------------------------------------------------------------------------------------
def test_load_prepared_by_name_and_root(tmp_path, monkeypatch, make_dataset):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path))
    make_dataset("kvasir-seg")
    ds = load_dataset("kvasir-seg", "test")
    assert isinstance(ds, SegmentationFolder) and ds.root == tmp_path / "kvasir-seg" and len(ds) == 2
    assert "kvasir-seg" in list_datasets() and "synthetic-polyp" in list_datasets()
    other = make_dataset("elsewhere")
    assert load_dataset("whatever", None, root=other).names == SegmentationFolder(other, None).names
    # n / size / seed only concern synthetic data: a notebook can switch DATA without changing the call
    assert len(load_dataset("kvasir-seg", "train", n=5, size=64, seed=3)) == 4


def test_load_missing_lists_what_exists(tmp_path, monkeypatch, make_dataset):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path))
    make_dataset("isic2018")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("kvasir")
    msg = str(err.value)
    assert "'kvasir'" in msg and "isic2018" in msg and "synthetic-cardiac" in msg
    assert "python -m data_scripts." in msg and "Getting the real datasets" in msg


def test_load_dataset_argument_errors():
    with pytest.raises(ValueError, match="synthetic-polyp"):
        load_dataset("synthetic-lungs")
    with pytest.raises(ValueError, match="default_task"):
        load_dataset("synthetic", default_task="lungs")
    with pytest.raises(ValueError, match="size"):
        load_dataset("synthetic-skin", size=0)
    with pytest.raises(TypeError, match="name"):
        load_dataset(3)


def _synthetic_module():
    try:
        from mslib.data import synthetic as mod
    except ImportError:  # written concurrently by another engineer
        pytest.skip("mslib.data.synthetic is not importable yet")
    return mod


def test_synthetic_generated_once_and_cached(session_data_dir):
    mod = _synthetic_module()
    assert tuple(mod.TASKS) == registry.SYNTHETIC_TASKS
    ds = load_dataset("synthetic", "train", n=12, size=32, seed=5)
    assert ds.root == session_data_dir / "synthetic" / "polyp-n12-s32-seed5"
    assert ds.meta["name"] == "synthetic-polyp" and ds[0][0].shape == (3, 32, 32)
    stamp = os.stat(ds.root / "dataset.json").st_mtime_ns
    again = load_dataset("synthetic-polyp", "val", n=12, size=32, seed=5)
    assert again.root == ds.root and os.stat(ds.root / "dataset.json").st_mtime_ns == stamp
    assert sorted(
        ds.names + again.names + load_dataset("synthetic-polyp", "test", n=12, size=32, seed=5).names
    ) == sorted(load_dataset("synthetic-polyp", None, n=12, size=32, seed=5).names)
    # the generator's samples, bit for bit
    index = int(ds.names[0].split("_")[1])
    img, mask = mod.make_sample("polyp", 32, mod.sample_rng("polyp", 5, index))
    assert torch.equal(ds[0][1], torch.from_numpy(mask.astype(np.int64)))
    torch.testing.assert_close(ds[0][0], torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    leftovers = [p.name for p in (session_data_dir / "synthetic").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_synthetic_stale_cache_is_regenerated(session_data_dir):
    _synthetic_module()
    path = registry.synthetic_path("skin", 6, 32, 1)
    ds = load_dataset("synthetic-skin", None, n=6, size=32, seed=1)
    meta = json.loads((path / "dataset.json").read_text())
    meta["generator"]["seed"] = 99  # pretend an older run with other parameters left it there
    (path / "dataset.json").write_text(json.dumps(meta))
    again = load_dataset("synthetic-skin", None, n=6, size=32, seed=1)
    assert json.loads((path / "dataset.json").read_text())["generator"]["seed"] == 1
    assert torch.equal(again[0][1], ds[0][1])


def test_synthetic_root_refuses_to_replace_a_real_dataset(tmp_path, make_dataset):
    _synthetic_module()
    real = make_dataset("real")
    with pytest.raises(FileExistsError, match="refusing"):
        load_dataset("synthetic-breast", root=real, n=4, size=32)
    assert SegmentationFolder(real, None).meta["name"] == "tiny"
