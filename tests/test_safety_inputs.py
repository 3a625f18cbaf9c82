"""Late or raw errors on the data side, turned into one clear error naming the file and the fix (or a
reported repair): text encodings of split and list files, ``dataset.json`` that is not an object,
multi-frame images, raw files a preparer meets (CMYK, transparency, colour in a grayscale set,
AppleDouble files, upper-case extensions, empty files), sample names, download targets, and an
interrupted extraction."""

from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_scripts import kvasir_seg
from data_scripts.archive import safe_extract
from data_scripts.download import DownloadError, download
from data_scripts.prepare import VerificationError, load_image, read_lines
from mslib.data import DatasetError, PreparedWriter, SegmentationFolder, load_dataset, read_metadata, read_split
from tests.conftest import write_dataset
from tests.fixtures_data import kvasir_tree, leftovers, rgb


@pytest.fixture
def root(tmp_path):
    return write_dataset(tmp_path / "d")  # s00..s05; train = s00..s03


def _quiet(root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SegmentationFolder(root, **kw)


# --------------------------------------------------------------------------------------------
# encodings
# --------------------------------------------------------------------------------------------
def test_latin1_split_file(root):
    (root / "splits" / "train.txt").write_bytes("s00\ns01\n# café\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"splits/train.txt is not UTF-8 text \(byte 0xe9.*save it as UTF-8"):
        SegmentationFolder(root)
    with pytest.raises(ValueError, match="train.txt is not UTF-8"):
        read_split(root, "train")


def test_utf16_split_file(root):
    (root / "splits" / "train.txt").write_text("s00\ns01\n", encoding="utf-16")
    with pytest.raises(DatasetError, match="train.txt is UTF-16 text; save it as UTF-8"):
        SegmentationFolder(root)


def test_split_file_with_bom_and_crlf_loads(root):
    (root / "splits" / "train.txt").write_bytes(b"\xef\xbb\xbfs00\r\ns01\r\n")
    assert _quiet(root).names == ["s00", "s01"]
    assert read_split(root, "train") == ["s00", "s01"]


def test_latin1_raw_list_file_of_a_preparer(tmp_path):
    f = tmp_path / "train.txt"
    f.write_bytes("case0005\ncas\xe9\n".encode("latin-1"))
    with pytest.raises(VerificationError, match="train.txt is not UTF-8"):
        read_lines(f)


# --------------------------------------------------------------------------------------------
# dataset.json
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, kind", [("null", "null"), ("[1, 2]", "list"), ("3", "int"), ('"x"', "str")])
def test_dataset_json_that_is_not_an_object(root, content, kind):
    (root / "dataset.json").write_text(content)
    with pytest.raises(DatasetError, match=rf"dataset.json holds {kind}, not a JSON object.*\"classes\""):
        SegmentationFolder(root)
    with pytest.raises(ValueError, match="not a JSON object"):
        read_metadata(root)


def test_dataset_json_that_is_a_folder(root):
    (root / "dataset.json").unlink()
    (root / "dataset.json").mkdir()
    with pytest.raises(DatasetError, match="dataset.json is a folder"):
        SegmentationFolder(root)


def test_dataset_json_with_bom_loads(root):
    data = (root / "dataset.json").read_bytes()
    (root / "dataset.json").write_bytes(b"\xef\xbb\xbf" + data)
    assert _quiet(root).classes == ["background", "lesion"]


def test_dataset_json_in_latin1(root):
    (root / "dataset.json").write_bytes('{"name": "caf\xe9", "classes": ["background", "lesion"]}'.encode("latin-1"))
    with pytest.raises(DatasetError, match="dataset.json is not UTF-8"):
        SegmentationFolder(root)


def test_load_dataset_with_data_dir_pointing_at_a_file(tmp_path, monkeypatch):
    f = tmp_path / "oops"
    f.write_text("")
    monkeypatch.setenv("MSLIB_DATA_DIR", str(f))
    with pytest.raises(NotADirectoryError, match="MSLIB_DATA_DIR=.*point MSLIB_DATA_DIR at a folder"):
        load_dataset("kvasir-seg", "train")


# --------------------------------------------------------------------------------------------
# image files in the loader
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, ext", [("PNG", "png"), ("TIFF", "tif")], ids=["animated-png", "multi-page-tiff"])
def test_multi_frame_image_in_the_loader(root, fmt, ext):
    frames = [Image.fromarray(rgb(12, 16, seed=i)) for i in range(3)]
    for p in (root / "images").glob("s00.*"):
        p.unlink()
    frames[0].save(root / "images" / f"s00.{ext}", format=fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(DatasetError, match="holds 3 frames/pages.*save the frame you mean"):
        SegmentationFolder(root)


# --------------------------------------------------------------------------------------------
# raw files in the preparers
# --------------------------------------------------------------------------------------------
def test_multi_page_tiff_raw_image(tmp_path):
    frames = [Image.fromarray(rgb(seed=i)) for i in range(2)]
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(VerificationError, match="a.tif holds 2 frames/pages"):
        load_image(tmp_path / "a.tif")


def test_cmyk_raw_image_is_converted_and_reported(tmp_path):
    Image.fromarray(rgb()).convert("CMYK").save(tmp_path / "a.jpg")
    seen: list[str] = []
    assert load_image(tmp_path / "a.jpg", report=seen.append).shape == (8, 10, 3)
    assert seen == ["CMYK image converted to RGB"]


def test_transparent_raw_image_is_reported_opaque_is_not(tmp_path):
    a = np.dstack([rgb(), np.full((8, 10), 255, np.uint8)])
    Image.fromarray(a).save(tmp_path / "opaque.png")
    a[0, 0, 3] = 0
    Image.fromarray(a).save(tmp_path / "holes.png")
    seen: list[str] = []
    load_image(tmp_path / "opaque.png", report=seen.append)
    assert seen == []
    load_image(tmp_path / "holes.png", report=seen.append)
    assert seen == ["RGBA image: transparent alpha channel dropped"]


def test_colour_raw_image_in_a_grayscale_dataset_is_reported(tmp_path):
    Image.fromarray(rgb()).save(tmp_path / "c.png")
    Image.fromarray(np.repeat(rgb()[..., :1], 3, axis=2)).save(tmp_path / "g.png")
    seen: list[str] = []
    load_image(tmp_path / "g.png", channels=1, report=seen.append)
    assert seen == []
    assert load_image(tmp_path / "c.png", channels=1, report=seen.append).shape == (8, 10)
    assert seen == ["colour image converted to grayscale (ITU-R 601 luma)"]


def test_empty_raw_image_file_is_named(tmp_path):
    kvasir_tree(tmp_path / "src", n=3)
    (tmp_path / "src" / "Kvasir-SEG" / "images" / "cju0001abc.jpg").write_bytes(b"")
    with pytest.raises(VerificationError, match="cannot read image .*cju0001abc.jpg.*re-extract"):
        kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    assert not (tmp_path / "kv").exists()


def test_appledouble_files_and_upper_case_extensions(tmp_path):
    kvasir_tree(tmp_path / "src", n=3)
    base = tmp_path / "src" / "Kvasir-SEG"
    (base / "images" / "._cju0000abc.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    (base / "masks" / "._cju0000abc.jpg").write_bytes(b"\x00\x05\x16\x07 resource fork")
    for sub in ("images", "masks"):
        (base / sub / "cju0002abc.jpg").rename(base / sub / "cju0002abc.JPG")
    root = kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    assert sorted(p.stem for p in (root / "images").iterdir()) == ["cju0000abc", "cju0001abc", "cju0002abc"]


def test_unicode_and_space_names_survive(tmp_path):
    kvasir_tree(tmp_path / "src", n=3)
    base = tmp_path / "src" / "Kvasir-SEG"
    for sub in ("images", "masks"):
        (base / sub / "cju0001abc.jpg").rename(base / sub / "polype été (1).jpg")
    root = kvasir_seg.prepare(tmp_path / "src", tmp_path / "kv", allow_partial=True)
    ds = _quiet(root, split="all")
    assert "polype été (1)" in ds.names and len(ds) == 3


@pytest.mark.parametrize(
    "name, match",
    [("a\nb", "control characters"), ("x" * 260, "longer than file systems allow"), ("a/b", "without slashes")],
)
def test_sample_names_that_would_break_the_layout(tmp_path, name, match):
    with pytest.raises(ValueError, match=match):
        with PreparedWriter(tmp_path / "p", name="x", classes=["bg", "fg"]) as w:
            w.add(name, np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
    assert not (tmp_path / "p").exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------------------------
# downloads and interruption
# --------------------------------------------------------------------------------------------
def test_download_cache_that_is_a_file(tmp_path):
    (tmp_path / "cache").write_text("not a folder")
    with pytest.raises(DownloadError, match="cache is a file, not a folder; pass --cache FOLDER"):
        download("http://127.0.0.1:9/x.zip", tmp_path / "cache" / "x.zip", timeout=0.5)
    assert (tmp_path / "cache").read_text() == "not a folder"


def test_download_target_that_is_a_folder(tmp_path):
    (tmp_path / "x.zip").mkdir()
    with pytest.raises(DownloadError, match="x.zip is a folder"):
        download("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", timeout=0.5)


def test_preparer_cache_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "cache").write_text("x")
    code = kvasir_seg.main(
        ["--download", "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "kv"), "--timeout", "0.5"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and "Traceback" not in err


def test_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("top/a.txt", "A")

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "extractall", interrupt)
    with pytest.raises(KeyboardInterrupt):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_json_marker_is_readable_by_the_loader(tmp_path):
    root = write_dataset(tmp_path / "d")
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["prepared_by"] == "mslib" and _quiet(root).meta["prepared_by"] == "mslib"
