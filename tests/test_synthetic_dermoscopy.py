"""The harder synthetic dermoscopy generator and its statistics (mslib.data.synthetic_dermoscopy)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mslib.data import SegmentationFolder
from mslib.data import synthetic_dermoscopy as sd


def test_shapes_types_and_determinism():
    img, mask = sd.make_sample(64, rng=3)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and mask.shape == (64, 64) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    img2, mask2 = sd.make_sample(64, rng=3)
    np.testing.assert_array_equal(img, img2)
    np.testing.assert_array_equal(mask, mask2)
    big, _ = sd.make_batch(5, 64, seed=1)
    small, _ = sd.make_batch(3, 64, seed=1)
    np.testing.assert_array_equal(big[:3], small)
    assert not np.array_equal(sd.make_batch(1, 64, seed=2)[0], small[:1])


def test_lesion_area_stays_in_range_and_spans_it():
    _, masks = sd.make_batch(60, 96, seed=0)
    area = masks.reshape(60, -1).mean(1)
    assert area.min() >= sd.AREA_RANGE[0] - 0.005 and area.max() <= sd.AREA_RANGE[1] + 0.005
    assert area.min() < 0.15 and area.max() > 0.6  # small and large lesions both occur


def test_hard_cases_occur():
    """Dark corners (black pixels outside the mask) and pale lesions (low contrast) both occur in a batch."""
    images, masks = sd.make_batch(40, 96, seed=0)
    dark_corner = [(im[:6, :6].max(-1) < 20).mean() > 0.5 for im in images]
    stats = [sd.image_stats(im, m) for im, m in zip(images, masks)]
    assert 5 <= sum(dark_corner) <= 35
    assert sum(s["contrast"] < 0.08 for s in stats) >= 3  # pale
    assert sum(s["contrast"] > 0.2 for s in stats) >= 5  # and clearly pigmented


def test_image_stats_hand_computed():
    img = np.zeros((4, 4, 3), np.uint8)
    img[...] = (200, 200, 200)
    img[:2, :2] = (100, 100, 100)  # lesion: 4 px
    img[3, 3] = (0, 0, 0)  # a dark-corner pixel: not skin
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1
    st = sd.image_stats(img, mask)
    assert st["area"] == pytest.approx(0.25)
    np.testing.assert_allclose(st["lesion_rgb"], [100 / 255] * 3)
    np.testing.assert_allclose(st["skin_rgb"], [200 / 255] * 3)
    assert st["contrast"] == pytest.approx((200 - 100) / (200 + 100))

    # grey levels: Delta E is the difference of the L* values (a* = b* = 0)
    def lstar(v):
        c = ((v / 255 + 0.055) / 1.055) ** 2.4
        return 116 * c ** (1 / 3) - 16

    assert st["delta_e"] == pytest.approx(lstar(200) - lstar(100), abs=1e-3)


def test_image_stats_lab_against_skimage():
    skimage = pytest.importorskip("skimage.color")
    rgb = np.random.default_rng(0).uniform(0, 1, (10, 3))
    np.testing.assert_allclose(sd._lab(rgb), skimage.rgb2lab(rgb[None])[0], atol=0.05)


def test_image_stats_whole_image_lesion_and_errors():
    img = np.full((8, 8, 3), 90, np.uint8)
    st = sd.image_stats(img, np.ones((8, 8), np.uint8))
    assert st["area"] == 1.0 and np.isnan(st["contrast"]) and np.isnan(st["skin_rgb"]).all()
    with pytest.raises(ValueError, match="image_stats"):
        sd.image_stats(img, np.ones((4, 4)))


def test_generate_writes_a_valid_prepared_folder(tmp_path):
    root = sd.generate(tmp_path / "derm", n=6, size=48, seed=5)
    ds = SegmentationFolder(root, split="train")
    assert ds.num_classes == 2 and len(ds) >= 3
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["generator"]["seed"] == 5 and "dark corners" in meta["description"]
    img, _ = sd.make_batch(6, 48, seed=5)
    name = ds.names[0]
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(root / "images" / f"{name}.png")), img[int(name.split("_")[1])])


def test_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        sd.make_sample(8)
    with pytest.raises(ValueError, match="n must"):
        sd.make_batch(0)
