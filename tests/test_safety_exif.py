"""EXIF orientation: one convention, as image viewers do (``PIL.ImageOps.exif_transpose``), in the
loader and in the preparers, reported as a repair. A photo whose EXIF says "rotate 90" and whose
mask was drawn on the displayed picture must line up with its mask (before: 25 % overlap for a
square picture, a "resize the mask" error for a non-square one)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps

from data_scripts import kvasir_seg
from data_scripts.prepare import apply_exif_orientation, load_binary_mask, load_image
from mslib.data import DataRepairWarning, DatasetError, SegmentationFolder


def _stored(h: int, w: int) -> np.ndarray:
    """An image whose bright block sits in the stored top-left corner (so any turn moves it)."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 3] = 255
    a[h // 2 :, w // 3 :, 1] = 90
    return a


def _save_with_orientation(path, arr, orientation: int, fmt: str = "JPEG"):
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    kw = {"quality": 95} if fmt == "JPEG" else {}
    im.save(path, format=fmt, exif=exif.tobytes(), **kw)
    return path


def _displayed(path) -> np.ndarray:
    """What an image viewer shows: the reference (Pillow's exif_transpose)."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im))


def _folder(root, pairs):
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"name": "exif", "classes": ["background", "lesion"]}))
    (root / "splits" / "train.txt").write_text("\n".join(pairs) + "\n")
    return root


def _load(root, **kw):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = SegmentationFolder(root, **kw)
    msgs = [str(w.message) for w in rec if issubclass(w.category, DataRepairWarning)]
    return ds, msgs


@pytest.mark.parametrize("shape", [(16, 16), (12, 20)], ids=["square", "non-square"])
def test_loader_turns_a_rotated_jpeg_to_match_its_mask(tmp_path, shape):
    root = _folder(tmp_path / "d", ["a"])
    img = _save_with_orientation(root / "images" / "a.jpg", _stored(*shape), 6)  # "rotate 90" (clockwise)
    shown = _displayed(img)
    assert shown.shape[:2] == shape[::-1]
    mask = (shown[..., 0] > 128).astype(np.uint8)  # drawn on the displayed picture
    Image.fromarray(mask).save(root / "masks" / "a.png")
    ds, msgs = _load(root)
    image, m = ds[0]
    assert tuple(image.shape[1:]) == shown.shape[:2]
    np.testing.assert_array_equal(m.numpy(), mask)
    assert ((image[0] > 0.5).numpy() == mask.astype(bool)).mean() == 1.0
    assert ds.repairs == [
        {"name": "a", "file": "images/a.jpg", "repair": "EXIF orientation 6 applied (turned as viewers show it)"}
    ]
    assert len(msgs) == 1 and "EXIF orientation 6" in msgs[0] and "images/a.jpg" in msgs[0]


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_every_orientation_matches_pillow(tmp_path, orientation):
    root = _folder(tmp_path / "d", ["a"])
    img = _save_with_orientation(root / "images" / "a.png", _stored(6, 10), orientation, fmt="PNG")
    shown = _displayed(img)
    Image.fromarray(np.zeros(shown.shape[:2], np.uint8)).save(root / "masks" / "a.png")
    ds, _ = _load(root)
    np.testing.assert_array_equal((ds.load_image(0).numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8), shown)


def test_mask_with_exif_orientation_is_turned_too(tmp_path):
    root = _folder(tmp_path / "d", ["a"])
    Image.fromarray(_stored(6, 10)).save(root / "images" / "a.png")
    stored_mask = np.zeros((10, 6), np.uint8)
    stored_mask[0, :] = 1
    _save_with_orientation(root / "masks" / "a.png", stored_mask, 8, fmt="PNG")
    ds, msgs = _load(root)
    m = ds.load_mask(0).numpy()
    np.testing.assert_array_equal(m, np.asarray(ImageOps.exif_transpose(Image.open(root / "masks" / "a.png"))))
    assert m.shape == (6, 10)
    assert any(r["file"] == "masks/a.png" and "EXIF orientation 8" in r["repair"] for r in ds.repairs)


def test_orientation_is_reported_without_validation(tmp_path):
    root = _folder(tmp_path / "d", ["a"])
    shown = _displayed(_save_with_orientation(root / "images" / "a.jpg", _stored(12, 20), 6))
    Image.fromarray(np.zeros(shown.shape[:2], np.uint8)).save(root / "masks" / "a.png")
    ds, msgs = _load(root, validate=False)
    assert ds[0][0].shape[1:] == shown.shape[:2] and "EXIF orientation 6" in msgs[0]


def test_a_real_size_mismatch_still_fails_and_says_after_orientation(tmp_path):
    root = _folder(tmp_path / "d", ["a"])
    _save_with_orientation(root / "images" / "a.jpg", _stored(12, 20), 6)
    Image.fromarray(np.zeros((12, 20), np.uint8)).save(root / "masks" / "a.png")  # drawn on the stored pixels
    with pytest.raises(DatasetError, match="after EXIF orientation.*resize the mask"):
        SegmentationFolder(root)


def test_preparer_helpers_turn_and_report(tmp_path):
    img = _save_with_orientation(tmp_path / "a.jpg", _stored(12, 20), 6)
    seen: list[str] = []
    arr = load_image(img, report=seen.append)
    np.testing.assert_array_equal(arr, _displayed(img))
    assert seen == ["EXIF orientation 6 applied (turned as viewers show it)"]
    m = _save_with_orientation(tmp_path / "m.png", (_stored(12, 20)[..., 0] > 0).astype(np.uint8) * 255, 6, "PNG")
    seen.clear()
    assert load_binary_mask(m, seen.append).shape == (20, 12) and seen[0].startswith("EXIF orientation 6")
    Image.fromarray(_stored(12, 20)).save(tmp_path / "plain.jpg")
    with Image.open(tmp_path / "plain.jpg") as im:  # no orientation: the same object back, nothing reported
        im.load()
        plain = im
    seen.clear()
    assert apply_exif_orientation(plain, seen.append) is plain and seen == []


def test_kvasir_preparer_turns_a_rotated_photo_and_reports_it(tmp_path, capsys):
    src = tmp_path / "src" / "Kvasir-SEG"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    shown = {}
    for i in range(3):
        img = _save_with_orientation(src / "images" / f"c{i}.jpg", _stored(12, 20), 6 if i == 0 else 1)
        shown[f"c{i}"] = _displayed(img)
        Image.fromarray(((shown[f"c{i}"][..., 0] > 128) * 255).astype(np.uint8)).save(src / "masks" / f"c{i}.png")
    root = kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    out = capsys.readouterr().out
    assert "EXIF orientation 6 applied" in out
    meta = json.loads((root / "dataset.json").read_text())
    assert {"name": "c0", "repair": "EXIF orientation 6 applied (turned as viewers show it)"} in meta["repairs"]
    with Image.open(root / "images" / "c0.png") as im, Image.open(root / "masks" / "c0.png") as mk:
        assert im.size == mk.size == (12, 20)
        assert ((np.asarray(im)[..., 0] > 128) == (np.asarray(mk) == 1)).all()
