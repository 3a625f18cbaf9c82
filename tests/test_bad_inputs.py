"""Every bad input of the table in ``mslib/data/folder.py``: the error type, and a message that
names the offending file or argument and the fix; or the repair, applied and reported."""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from mslib.data import DataRepairWarning, DatasetError, PreparedWriter, SegmentationFolder


def _error(exc_type, root, *fragments, **kw):
    """Build the dataset, expect ``exc_type``, and check that the message holds every fragment."""
    with pytest.raises(exc_type) as err:
        SegmentationFolder(root, **kw)
    msg = str(err.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


def _repaired(root, **kw):
    """Build the dataset, expect exactly one DataRepairWarning, return (dataset, warning text)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ds = SegmentationFolder(root, **kw)
    ours = [w for w in rec if issubclass(w.category, DataRepairWarning)]
    assert len(ours) == 1, [str(w.message) for w in rec]
    return ds, str(ours[0].message)


def _truncated(arr: np.ndarray, fmt: str, cut: int = 40) -> bytes:
    """The encoded file without its last ``cut`` bytes (the header stays readable)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    data = buf.getvalue()
    return data[:-cut]


@pytest.fixture
def ds_root(make_dataset):
    return make_dataset()  # binary RGB, s00..s05, 12x16; train = s00..s03, test = s04, s05


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def _mask(root, name="s00"):
    return _read(root / "masks" / f"{name}.png")


def _image(root, name="s00"):
    return _read(root / "images" / f"{name}.png")


# --------------------------------------------------------------------------------------
# errors: pairing and layout
# --------------------------------------------------------------------------------------
def test_01_image_without_mask(ds_root):
    (ds_root / "masks" / "s01.png").unlink()
    _error(DatasetError, ds_root, "s01.png", "without a mask", "masks/s01.png", "add the masks")


def test_02_mask_without_image(ds_root):
    Image.fromarray(_mask(ds_root)).save(ds_root / "masks" / "extra.png")
    _error(DatasetError, ds_root, "extra.png", "without an image", "add the images or delete", split=None)


def test_03_size_mismatch(ds_root):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(ds_root / "masks" / "s02.png")
    _error(DatasetError, ds_root, "s02.png", "16x12", "10x10", "resize the mask")


def test_04_non_image_file(ds_root):
    (ds_root / "images" / "notes.txt").write_text("to do")
    _error(DatasetError, ds_root, "notes.txt", "not an image file", "move or delete it")


def test_05_renamed_non_image(ds_root):
    (ds_root / "images" / "s02.png").write_text("this is not a PNG")
    _error(DatasetError, ds_root, "s02.png", "not a readable image", "replace it with the original")


def test_06_truncated_png_image(ds_root):
    (ds_root / "images" / "s01.png").write_bytes(_truncated(_image(ds_root, "s01"), "PNG"))
    _error(DatasetError, ds_root, "s01.png", "truncated or corrupt", "replace it")
    # without validation the header is fine, and loading the item names the file
    ds = SegmentationFolder(ds_root, validate=False)
    with pytest.raises(DatasetError, match="s01.png.*truncated"):
        ds[1]


def test_07_truncated_jpeg_image(ds_root):
    (ds_root / "images" / "s01.png").unlink()
    (ds_root / "images" / "s01.jpg").write_bytes(_truncated(_image(ds_root, "s02"), "JPEG"))
    _error(DatasetError, ds_root, "s01.jpg", "truncated or corrupt", "replace it")
    ds = SegmentationFolder(ds_root, validate=False)
    with pytest.raises(DatasetError, match="s01.jpg.*truncated"):
        ds[1]


def test_08_truncated_mask(ds_root):
    (ds_root / "masks" / "s03.png").write_bytes(_truncated(_mask(ds_root, "s03") * 255, "PNG"))
    _error(DatasetError, ds_root, "s03.png", "truncated or corrupt")


def test_09_duplicate_stems(ds_root):
    Image.fromarray(_image(ds_root)).save(ds_root / "images" / "s00.jpg")
    _error(DatasetError, ds_root, "duplicate sample name 's00'", "s00.jpg", "s00.png", "keep only one")


def test_10_empty_dataset(ds_root):
    for sub in ("images", "masks"):
        for p in (ds_root / sub).iterdir():
            p.unlink()
    _error(DatasetError, ds_root, "images", "no image files", "empty")


def test_11_root_does_not_exist(tmp_path):
    _error(FileNotFoundError, tmp_path / "nowhere", "nowhere", "does not exist", "data_scripts")


def test_12_no_masks_folder(ds_root):
    for p in (ds_root / "masks").iterdir():
        p.unlink()
    (ds_root / "masks").rmdir()
    _error(FileNotFoundError, ds_root, "masks", "is missing")


# --------------------------------------------------------------------------------------
# errors: dataset.json
# --------------------------------------------------------------------------------------
def test_13_missing_dataset_json(ds_root):
    (ds_root / "dataset.json").unlink()
    _error(FileNotFoundError, ds_root, "dataset.json", "is missing", '"classes"', "data_scripts")


def test_14_invalid_dataset_json(ds_root):
    (ds_root / "dataset.json").write_text('{"name": "x", "classes": [')
    _error(DatasetError, ds_root, "dataset.json", "not valid JSON")


def test_15_dataset_json_without_classes(ds_root):
    (ds_root / "dataset.json").write_text(json.dumps({"name": "x"}))
    _error(DatasetError, ds_root, "dataset.json", "'classes'", '"classes": ["background"')


def test_16_one_class_only(ds_root):
    (ds_root / "dataset.json").write_text(json.dumps({"name": "x", "classes": ["lesion"]}))
    _error(DatasetError, ds_root, "dataset.json", "'classes' must be a list of at least two names")


def test_17_bad_channels_entry(ds_root):
    (ds_root / "dataset.json").write_text(json.dumps({"name": "x", "classes": ["bg", "fg"], "channels": 2}))
    _error(DatasetError, ds_root, "dataset.json", "'channels' must be 1 (grayscale) or 3 (RGB), got 2")


# --------------------------------------------------------------------------------------
# errors: splits
# --------------------------------------------------------------------------------------
def test_18_unknown_split_lists_available(ds_root):
    _error(FileNotFoundError, ds_root, "'valid'", "available splits: test, train", "split=None", split="valid")


def test_19_empty_split_file(ds_root):
    (ds_root / "splits" / "train.txt").write_text("\n# nothing yet\n")
    _error(DatasetError, ds_root, "train.txt", "is empty", "one sample name")


def test_20_split_names_missing_file(ds_root):
    (ds_root / "splits" / "train.txt").write_text("s00\nghost\ns01\n")
    _error(DatasetError, ds_root, "train.txt", "ghost", "no image", "fix the split file")


def test_21_split_lists_a_name_twice(ds_root):
    (ds_root / "splits" / "train.txt").write_text("s00\ns01\ns00\n")
    _error(DatasetError, ds_root, "train.txt", "s00", "more than once")


def test_22_no_splits_folder(ds_root):
    for p in (ds_root / "splits").iterdir():
        p.unlink()
    (ds_root / "splits").rmdir()
    _error(FileNotFoundError, ds_root, "no split files", "split=None", "train.txt")
    assert len(SegmentationFolder(ds_root, split=None)) == 6


def test_23_bad_arguments(ds_root):
    _error(TypeError, ds_root, "transform", "callable", transform="flip")
    _error(TypeError, ds_root, "split", split=0)


# --------------------------------------------------------------------------------------
# errors: pixel content
# --------------------------------------------------------------------------------------
def test_24_multiclass_values_outside_classes(make_dataset):
    root = make_dataset(classes=("bg", "rv", "lv"))
    m = _mask(root, "s02")
    m[0, 0] = 5
    Image.fromarray(m).save(root / "masks" / "s02.png")
    _error(DatasetError, root, "s02.png", "5", "outside the 3 classes 0..2", "lookup table")


def test_25_binary_mask_with_grey_levels(ds_root):
    grey = np.tile(np.arange(16, dtype=np.uint8) * 17, (12, 1))  # 0, 17, ..., 255
    Image.fromarray(grey).save(ds_root / "masks" / "s01.png")
    _error(DatasetError, ds_root, "s01.png", "outside the 2 classes", "threshold")


def test_26_colour_coded_rgb_mask(ds_root):
    rgb = np.zeros((12, 16, 3), np.uint8)
    rgb[2:6, 2:6] = (255, 0, 0)
    Image.fromarray(rgb).save(ds_root / "masks" / "s00.png")
    _error(DatasetError, ds_root, "s00.png", "colour-coded", "palette")


def test_27_jpeg_mask_in_multiclass_dataset(make_dataset):
    root = make_dataset(classes=("bg", "a", "b"))
    (root / "masks" / "s01.png").unlink()
    Image.fromarray(np.zeros((12, 16), np.uint8)).save(root / "masks" / "s01.jpg")
    _error(DatasetError, root, "s01.jpg", "JPEG", "class indices", "PNG")
    _error(DatasetError, root, "s01.jpg", "JPEG", validate=False)


def test_27b_jpeg_mask_with_0_1_values(ds_root):
    (ds_root / "masks" / "s02.png").unlink()
    Image.fromarray(_mask(ds_root, "s01")).save(ds_root / "masks" / "s02.jpg")  # 0/1 values: thresholding would wipe it
    _error(DatasetError, ds_root, "s02.jpg", "below 128", "PNG")


def test_28_two_channel_la_image(ds_root):
    Image.frombytes("LA", (16, 12), bytes(12 * 16 * 2)).save(ds_root / "images" / "s03.png")
    _error(DatasetError, ds_root, "s03.png", "'LA'", "2 channel", "convert it")


def test_29_cmyk_image(ds_root):
    (ds_root / "images" / "s03.png").unlink()
    Image.fromarray(_image(ds_root, "s02")).convert("CMYK").save(ds_root / "images" / "s03.jpg")
    _error(DatasetError, ds_root, "s03.jpg", "'CMYK'", "convert")


def test_30_colour_image_in_grayscale_dataset(make_dataset):
    root = make_dataset(channels=1)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
        root / "images" / "s00.png"
    )
    _error(DatasetError, root, "s00.png", "colour RGB image", '"channels": 3')


def test_31_float_mask(ds_root):
    (ds_root / "masks" / "s00.png").unlink()
    Image.fromarray(np.zeros((12, 16), np.float32)).save(ds_root / "masks" / "s00.tif")
    _error(DatasetError, ds_root, "s00.tif", "'F'", "cannot hold class indices", "'L'")


def test_32_values_checked_on_load_without_validation(make_dataset):
    root = make_dataset(classes=("bg", "rv", "lv"))
    m = _mask(root, "s01")
    m[3, 3] = 9
    Image.fromarray(m).save(root / "masks" / "s01.png")
    ds = SegmentationFolder(root, validate=False)  # headers only: builds
    ds[0]
    with pytest.raises(DatasetError, match="s01.png.*9.*outside"):
        ds[1]


# --------------------------------------------------------------------------------------
# repairs: applied and reported (self.repairs and one warning naming the files)
# --------------------------------------------------------------------------------------
def test_r1_jpeg_mask_thresholded(ds_root):
    original = _mask(ds_root, "s01")
    (ds_root / "masks" / "s01.png").unlink()
    Image.fromarray(original * 255).save(ds_root / "masks" / "s01.jpg", quality=75)
    ds, msg = _repaired(ds_root)
    assert "s01.jpg" in msg and "thresholded at 128" in msg
    assert {
        "name": "s01",
        "file": "masks/s01.jpg",
        "repair": "JPEG mask thresholded at 128 (value >= 128 -> 1)",
    } in ds.repairs
    got = ds[1][1].numpy()
    assert set(np.unique(got)) <= {0, 1}
    assert (got == original).mean() > 0.9  # JPEG blurs a random mask's edges; most pixels survive


def test_r2_rgb_mask_with_equal_channels(ds_root):
    original = _mask(ds_root, "s02")
    Image.fromarray(np.repeat(original[:, :, None], 3, axis=2)).save(ds_root / "masks" / "s02.png")
    ds, msg = _repaired(ds_root)
    assert "s02.png" in msg and "RGB mask with equal channels reduced to one channel" in msg
    assert np.array_equal(ds[2][1].numpy(), original)


def test_r3_0_255_mask_mapped(ds_root):
    original = _mask(ds_root, "s00")
    Image.fromarray(original * 255).save(ds_root / "masks" / "s00.png")
    ds, msg = _repaired(ds_root)
    assert "masks/s00.png" in msg and "0/255 mask mapped to 0/1" in msg
    assert np.array_equal(ds[0][1].numpy(), original)


def test_r4_grayscale_image_in_rgb_dataset(ds_root):
    grey = _image(ds_root, "s03")[:, :, 1]
    Image.fromarray(grey).save(ds_root / "images" / "s03.png")
    ds, msg = _repaired(ds_root)
    assert "images/s03.png" in msg and "replicated to 3 channels" in msg
    image = ds[3][0]
    assert image.shape == (3, 12, 16)
    for c in range(3):
        torch.testing.assert_close(image[c], torch.from_numpy(grey).float() / 255)


def test_r5_rgb_image_with_equal_channels_in_grayscale_dataset(make_dataset):
    root = make_dataset(channels=1)
    grey = _image(root, "s01")
    Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2)).save(root / "images" / "s01.png")
    ds, msg = _repaired(root)
    assert "images/s01.png" in msg and "converted to grayscale" in msg
    torch.testing.assert_close(ds[1][0][0], torch.from_numpy(grey).float() / 255)
    assert ds[1][0].shape == (1, 12, 16)


def test_r6_rgba_image_alpha_dropped(ds_root):
    rgb = _image(ds_root, "s00")
    rgba = np.concatenate([rgb, np.full((12, 16, 1), 7, np.uint8)], axis=2)
    Image.fromarray(rgba).save(ds_root / "images" / "s00.png")
    ds, msg = _repaired(ds_root)
    assert "images/s00.png" in msg and "alpha channel dropped" in msg
    torch.testing.assert_close(ds[0][0], torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_r7_16bit_image_scaled(make_dataset):
    root = make_dataset(channels=1)
    v = np.tile(np.array([0, 257, 257 * 128, 65535], np.uint16), (12, 4))
    Image.fromarray(v).save(root / "images" / "s02.png")
    ds, msg = _repaired(root)
    assert "images/s02.png" in msg and "16-bit image scaled" in msg
    torch.testing.assert_close(ds[2][0][0, 0, :4], torch.tensor([0.0, 1 / 255, 128 / 255, 1.0]))


def test_r8_palette_mask_indices_used(make_dataset):
    root = make_dataset(classes=("bg", "rv", "myo", "lv"))
    original = _mask(root, "s01")
    pal = Image.frombytes("P", (16, 12), original.tobytes())
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    pal.save(root / "masks" / "s01.png")
    with Image.open(root / "masks" / "s01.png") as im:
        assert im.mode == "P"
    ds, msg = _repaired(root)
    assert "masks/s01.png" in msg and "palette indices used as class indices" in msg
    assert np.array_equal(ds[1][1].numpy(), original)


def test_r9_several_repairs_one_warning_and_validate_false_note(ds_root):
    original = _mask(ds_root, "s00")
    Image.fromarray(original * 255).save(ds_root / "masks" / "s00.png")
    Image.fromarray(_image(ds_root, "s01")[:, :, 0]).save(ds_root / "images" / "s01.png")
    ds, msg = _repaired(ds_root)
    assert len(ds.repairs) == 2 and "2 repair(s)" in msg and "s00.png" in msg and "s01.png" in msg
    # without validation the 0/255 repair is still applied on load, and the warning says it is not listed
    fast, msg = _repaired(ds_root, validate=False)
    assert "validate=False" in msg and np.array_equal(fast[0][1].numpy(), original)


def test_r10_clean_dataset_warns_nothing(ds_root):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SegmentationFolder(ds_root).repairs == []


def test_r11_repairs_written_by_preparation_are_not_repeated(tmp_path):
    with PreparedWriter(tmp_path / "p", name="p", classes=["bg", "fg"]) as w:
        w.add("a", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
        w.report_repair("a", "JPEG mask thresholded at 128")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = SegmentationFolder(tmp_path / "p", split=None)
    assert ds.repairs == [] and ds.meta["repairs"] == [{"name": "a", "repair": "JPEG mask thresholded at 128"}]


# ------------------------------------------------------------------------- issue 11: losses on bad targets
@pytest.mark.parametrize("bad, msg", [(255, "divide by 255"), (-1, r"\[-1, 1\]")])
def test_binary_losses_refuse_targets_outside_0_1(bad, msg):
    import torch

    from mslib.losses import dice_bce, soft_dice_loss

    logits = torch.zeros(2, 1, 4, 4)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    target[0, 0, 0] = bad
    target[1, 0, 0] = 1
    for fn in (dice_bce, soft_dice_loss):
        with pytest.raises(ValueError, match=msg):
            fn(logits, target)
    soft = torch.full((2, 4, 4), 0.3)
    assert torch.isfinite(dice_bce(logits, soft))  # soft targets in [0, 1] stay allowed
