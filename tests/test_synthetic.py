"""Tests of the synthetic task generators (mslib.data.synthetic)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from mslib.data import synthetic as S
from mslib.data.layout import read_metadata, read_split

SMALL = 64  # most checks run at 64 px: same geometry (everything scales with the size), 4x faster


@pytest.fixture(scope="module")
def batches():
    """A few batches shared by the statistical tests (generated once)."""
    return {
        "polyp": S.make_batch("polyp", 100, SMALL, seed=0),
        "skin": S.make_batch("skin", 100, SMALL, seed=0),
        "breast": S.make_batch("breast", 200, SMALL, seed=0),
        "cardiac": S.make_batch("cardiac", 80, SMALL, seed=0),
    }


# --------------------------------------------------------------------------- constants, shapes
def test_constants():
    assert S.TASKS == ("polyp", "skin", "breast", "cardiac")
    assert set(S.CLASSES) == set(S.TASKS) == set(S.CHANNELS)
    assert S.CLASSES["cardiac"] == ["background", "right ventricle", "myocardium", "left ventricle"]
    assert all(S.CLASSES[t][0] == "background" for t in S.TASKS)
    assert S.CHANNELS == {"polyp": 3, "skin": 3, "breast": 1, "cardiac": 1}


@pytest.mark.parametrize("task", S.TASKS)
@pytest.mark.parametrize("size", [SMALL, 97])
def test_shapes_dtypes_classes(task, size):
    image, mask = S.make_sample(task, size, rng=3)
    want = (size, size, 3) if S.CHANNELS[task] == 3 else (size, size)
    assert image.shape == want and image.dtype == np.uint8
    assert mask.shape == (size, size) and mask.dtype == np.uint8
    assert mask.max() < len(S.CLASSES[task])
    assert image.std() > 10  # an image, not a constant


@pytest.mark.parametrize("task", S.TASKS)
def test_determinism(task):
    a = S.make_sample(task, SMALL, rng=11)
    b = S.make_sample(task, SMALL, rng=11)
    c = S.make_sample(task, SMALL, rng=np.random.default_rng(11))
    d = S.make_sample(task, SMALL, rng=12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], d[0])


def test_make_batch_depends_only_on_seed_and_index():
    imgs5, masks5 = S.make_batch("skin", 5, SMALL, seed=4)
    imgs3, masks3 = S.make_batch("skin", 3, SMALL, seed=4)
    assert imgs5.shape == (5, SMALL, SMALL, 3) and masks5.shape == (5, SMALL, SMALL)
    np.testing.assert_array_equal(imgs5[:3], imgs3)
    np.testing.assert_array_equal(masks5[:3], masks3)
    one = S.make_sample("skin", SMALL, S.sample_rng("skin", 4, 2))
    np.testing.assert_array_equal(imgs5[2], one[0])
    other = S.make_batch("skin", 3, SMALL, seed=5)[0]
    assert not np.array_equal(imgs3, other)
    assert len({im.tobytes() for im in imgs5}) == 5  # samples of one batch differ


# --------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("sigma", [3.0, 10.0])  # pixel-filter branch and Gaussian-basis branch
def test_fields_have_gaussian_autocorrelation(sigma):
    """Gaussian-filtered white noise of std sigma has correlation exp(-d^2 / (4 sigma^2)) at lag d.

    (256 px, so that removing each field's own mean biases the estimate by only ~4 pi sigma^2 / 256^2.)
    """
    f = S._fields(np.random.default_rng(0), [sigma] * 16, 256)
    np.testing.assert_allclose(f.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(f.std(axis=(1, 2)), 1, atol=1e-4)
    for lag in (int(sigma), int(2 * sigma)):
        corr = np.mean([(x[:, :-lag] * x[:, lag:]).mean() for x in f] + [(x[:-lag] * x[lag:]).mean() for x in f])
        assert corr == pytest.approx(math.exp(-(lag**2) / (4 * sigma**2)), abs=0.08)


def test_blob_circle_and_area():
    rng = np.random.default_rng(0)
    sd = S._blob(64, 30.5, 33.0, 10.0, rng, rough=0.0)
    yy, xx = np.mgrid[:64, :64] + 0.5
    np.testing.assert_allclose(sd, 10.0 - np.hypot(yy - 30.5, xx - 33.0), atol=1e-4)
    sd = S._blob_with_area(128, 2000.0, 64, 64, rng, aspect=1.3, rough=0.15)
    assert (sd > 0).sum() == pytest.approx(2000, rel=0.03)


# --------------------------------------------------------------------------- task properties
def test_polyp_sizes_and_counts(batches):
    _, masks = batches["polyp"]
    frac = masks.mean(axis=(1, 2))
    assert frac.min() <= 0.03 and frac.max() >= 0.30
    assert set(np.unique(masks)) == {0, 1}
    n_components = [ndi.label(m)[1] for m in masks]
    assert min(n_components) >= 1
    assert 0.05 <= np.mean([n >= 2 for n in n_components]) <= 0.4  # sometimes two polyps


def test_polyp_has_specular_highlights(batches):
    images, _ = batches["polyp"]
    saturated = (images.min(axis=-1) > 235).mean(axis=(1, 2))
    assert np.mean(saturated > 0) > 0.5  # most frames have white glints
    assert np.median(saturated) < 0.05  # but they are small


def test_skin_sizes(batches):
    frac = batches["skin"][1].mean(axis=(1, 2))
    assert frac.min() <= 0.06 and frac.max() >= 0.35
    assert (frac > 0).all()


def test_breast_empty_fraction_and_sizes(batches):
    images, masks = batches["breast"]
    frac = masks.mean(axis=(1, 2))
    empty = frac == 0
    assert 0.04 <= empty.mean() <= 0.2  # about S.NORMAL_FRACTION = 10 %
    assert frac[~empty].min() <= 0.03 and frac.max() >= 0.2
    # hypoechoic: the mass is darker than the tissue around it
    for im, m in zip(images[~empty][:20], masks[~empty][:20]):
        ring = ndi.binary_dilation(m, iterations=4) & ~ndi.binary_dilation(m, iterations=1)
        assert im[m > 0].mean() < im[ring].mean()


def test_cardiac_topology(batches):
    _, masks = batches["cardiac"]
    for m in masks:
        lv = m == 3
        assert lv.any() and (m == 2).any()
        padded = np.pad(m, 1, mode="edge")
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            neigh = padded[1 + dy : 1 + dy + m.shape[0], 1 + dx : 1 + dx + m.shape[1]]
            assert np.isin(neigh[lv], (2, 3)).all(), "LV touches something other than myocardium"
    has_rv = (masks == 1).any(axis=(1, 2))
    assert 0.7 <= has_rv.mean() < 1.0  # RV in most slices, not in the most apical ones
    lv_area = (masks == 3).sum(axis=(1, 2))
    assert lv_area.max() >= 4 * lv_area.min()  # basal and apical slices
    assert lv_area[~has_rv].mean() < lv_area[has_rv].mean()  # slices without RV are apical (small)


def _best_global_threshold_dice(images: np.ndarray, fg: np.ndarray) -> float:
    """Mean Dice of the best single intensity threshold (one for all images, either polarity).

    Images with an empty foreground are left out. Computed exactly from per-image histograms.
    """
    keep = fg.reshape(len(fg), -1).any(axis=1)
    images, fg = images[keep], fg[keep]
    hf = np.stack([np.bincount(im[m], minlength=256) for im, m in zip(images, fg)]).astype(float)
    hb = np.stack([np.bincount(im[~m], minlength=256) for im, m in zip(images, fg)]).astype(float)
    pos = hf.sum(axis=1, keepdims=True)
    best = 0.0
    for f, b in ((hf, hb), (hf[:, ::-1], hb[:, ::-1])):  # "x >= t" and "x <= t"
        tp = np.cumsum(f[:, ::-1], axis=1)[:, ::-1]
        fp = np.cumsum(b[:, ::-1], axis=1)[:, ::-1]
        dice = 2 * tp / (tp + fp + pos)
        best = max(best, float(dice.mean(axis=0).max()))
    return best


def test_threshold_helper_can_succeed():
    m = np.zeros((4, 16, 16), bool)
    m[:, 4:9, 3:12] = True
    images = np.where(m, 180, 60).astype(np.uint8)
    assert _best_global_threshold_dice(images, m) == pytest.approx(1.0)
    assert _best_global_threshold_dice(255 - images, m) == pytest.approx(1.0)


@pytest.mark.parametrize("task", S.TASKS)
def test_not_trivially_separable(task, batches):
    images, masks = batches[task]
    images, masks = images[:60], masks[:60]
    gray = images if images.ndim == 3 else images.mean(axis=-1).round().astype(np.uint8)
    fg = masks == (3 if task == "cardiac" else 1)  # cardiac: the LV blood pool
    assert _best_global_threshold_dice(gray, fg) < 0.9


# --------------------------------------------------------------------------- generate()
def test_generate_layout(tmp_path):
    root = S.generate("cardiac", tmp_path / "syn", n=20, size=48, seed=3)
    meta = read_metadata(root)
    assert meta["classes"] == S.CLASSES["cardiac"] and meta["channels"] == 1
    assert meta["source"] == "synthetic (mslib.data.synthetic)"
    assert meta["licence"] == "CC0 (generated)"
    gen = meta["generator"]
    assert (gen["task"], gen["n"], gen["size"], gen["seed"]) == ("cardiac", 20, 48, 3)
    assert gen["mslib_version"] == S.__version__
    splits = {k: read_split(root, k) for k in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [14, 3, 3]
    names = [f"cardiac_{i:04d}" for i in range(20)]
    union = [n for v in splits.values() for n in v]
    assert sorted(union) == names  # disjoint and covering
    assert meta["splits"] == {"train": 14, "val": 3, "test": 3}
    images, masks = S.make_batch("cardiac", 20, 48, seed=3)
    for i in (0, 7, 19):
        im = Image.open(root / "images" / f"cardiac_{i:04d}.png")
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), images[i])
        np.testing.assert_array_equal(np.asarray(Image.open(root / "masks" / f"cardiac_{i:04d}.png")), masks[i])
    again = S.generate("cardiac", tmp_path / "syn2", n=20, size=48, seed=3)
    assert all(read_split(again, k) == v for k, v in splits.items())
    other = S.generate("cardiac", tmp_path / "syn3", n=20, size=48, seed=4)
    assert read_split(other, "train") != splits["train"]


def test_generate_rgb_and_overwrite(tmp_path):
    root = tmp_path / "polyp"
    S.generate("polyp", root, n=4, size=40, seed=0, splits=(0.5, 0.0, 0.5))
    assert Image.open(root / "images" / "polyp_0000.png").mode == "RGB"
    assert sorted(p.stem for p in (root / "splits").glob("*.txt")) == ["test", "train"]
    assert json.loads((root / "dataset.json").read_text())["num_samples"] == 4
    with pytest.raises(FileExistsError):
        S.generate("polyp", root, n=4, size=40, overwrite=False)
    S.generate("polyp", root, n=3, size=40, seed=1)  # overwrite=True replaces it
    assert read_metadata(root)["num_samples"] == 3


def test_generate_is_atomic(tmp_path, monkeypatch):
    real = S.make_sample
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "make_sample", failing)
    with pytest.raises(RuntimeError, match="boom"):
        S.generate("skin", tmp_path / "skin", n=10, size=40)
    assert list(tmp_path.iterdir()) == []  # no folder, no partial temporary folder
    # an existing dataset survives a failed regeneration
    monkeypatch.setattr(S, "make_sample", real)
    root = S.generate("skin", tmp_path / "skin", n=3, size=40)
    calls["n"] = 0
    monkeypatch.setattr(S, "make_sample", failing)
    with pytest.raises(RuntimeError):
        S.generate("skin", root, n=10, size=40)
    assert read_metadata(root)["num_samples"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["skin"]


def test_split_names_counts():
    names = [f"x{i}" for i in range(10)]
    sp = S.split_names(names, (0.7, 0.15, 0.15), seed=0)
    assert {k: len(v) for k, v in sp.items()} == {"train": 7, "val": 2, "test": 1}  # largest remainder, ties in order
    assert sorted(sum(sp.values(), [])) == sorted(names)
    tiny = S.split_names(names[:3], (0.7, 0.15, 0.15), seed=0)
    assert [len(v) for v in tiny.values()] == [1, 1, 1]
    assert "val" not in S.split_names(names, (0.8, 0.0, 0.2))
    assert S.split_names(names, seed=1) != S.split_names(names, seed=2)


# --------------------------------------------------------------------------- errors
def test_errors(tmp_path):
    with pytest.raises(ValueError, match="polyp.*skin.*breast.*cardiac"):
        S.make_sample("liver")
    with pytest.raises(ValueError, match="unknown synthetic task"):
        S.generate("liver", tmp_path / "x")
    with pytest.raises(ValueError, match="size"):
        S.make_sample("polyp", size=8)
    with pytest.raises(ValueError, match="size"):
        S.make_sample("polyp", size=64.0)
    with pytest.raises(ValueError, match="rng"):
        S.make_sample("polyp", rng=-1)
    with pytest.raises(ValueError, match="n must"):
        S.generate("polyp", tmp_path / "x", n=0)
    with pytest.raises(ValueError, match="n must"):
        S.make_batch("polyp", n=-2)
    with pytest.raises(ValueError, match="seed"):
        S.make_batch("polyp", n=2, seed=-1)
    with pytest.raises(ValueError, match="summing to 1"):
        S.generate("polyp", tmp_path / "x", n=5, splits=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="n=2"):
        S.generate("polyp", tmp_path / "x", n=2)
    assert not (tmp_path / "x").exists()


def test_describe():
    for task in S.TASKS:
        text = S.describe(task)
        assert len(text) > 200 and "\n" not in text
        for cls in S.CLASSES[task]:
            assert cls in text
    with pytest.raises(ValueError):
        S.describe("liver")
