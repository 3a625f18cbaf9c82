"""Nothing a user owns is lost by a preparer: ``--root`` is replaced only when it is a folder this
project prepared; a user's folder, a regular file, ``--root`` equal to or inside ``--raw`` (and
``--raw`` inside ``--root``) are refused with a message naming the path and the fix, before anything
is written, and every file stays as it was. Also: ``MSLIB_DATA_DIR`` pointing at a file, an
interrupted preparation, special files as ``--raw``, unwritable output folders."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from data_scripts import kvasir_seg
from data_scripts.common import check_root_and_raw
from mslib.data.layout import MARKER, PreparedWriter, UnsafeRootError, check_replaceable
from mslib.utils import data_dir
from tests.fixtures_data import kvasir_tree, leftovers, pack


def _snapshot(folder):
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))
    }


def _user_folder(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("\\section{Results} months of work\n")
    (path / "figures").mkdir()
    (path / "figures" / "fig1.pdf").write_bytes(b"%PDF-1.4 ...")
    return path


def _prepare(tmp_path, root, capsys=None, raw=None):
    if raw is None:
        raw = tmp_path / "src"
        if not raw.exists():
            kvasir_tree(raw, n=3)
    return kvasir_seg.main(["--raw", str(raw), "--root", str(root), "--allow-partial"])


def _err(capsys):
    return capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# the data-loss cases
# --------------------------------------------------------------------------------------------
def test_user_folder_with_thesis_is_refused_and_untouched(tmp_path, capsys):
    mywork = _user_folder(tmp_path / "mywork")
    before = _snapshot(mywork)
    assert _prepare(tmp_path, mywork) == 2
    err = _err(capsys)
    assert str(mywork) in err and "did not prepare" in err and "thesis.tex" in err and "Choose an empty" in err
    assert _snapshot(mywork) == before
    assert leftovers(tmp_path) == []  # no hidden .mywork.old-PID, no partial folder


def test_root_equal_to_raw_is_refused(tmp_path, capsys):
    kvasir_tree(tmp_path / "src", n=3)
    before = _snapshot(tmp_path / "src")
    assert _prepare(tmp_path, tmp_path / "src") == 2
    assert "is the --raw input itself" in _err(capsys)
    assert _snapshot(tmp_path / "src") == before


def test_root_inside_raw_is_refused(tmp_path, capsys):
    kvasir_tree(tmp_path / "src", n=3)
    before = _snapshot(tmp_path / "src")
    assert _prepare(tmp_path, tmp_path / "src" / "prepared") == 2
    assert "lies inside the --raw folder" in _err(capsys)
    assert _snapshot(tmp_path / "src") == before


def test_raw_folder_inside_root_is_refused(tmp_path, capsys):
    kvasir_tree(tmp_path / "work" / "src", n=3)
    before = _snapshot(tmp_path / "work")
    assert _prepare(tmp_path, tmp_path / "work", raw=tmp_path / "work" / "src") == 2
    assert "lies inside --root" in _err(capsys)
    assert _snapshot(tmp_path / "work") == before


def test_raw_archive_inside_root_is_refused(tmp_path, capsys):
    kvasir_tree(tmp_path / "tree", n=3)
    (tmp_path / "work").mkdir()
    archive = pack(tmp_path / "tree", tmp_path / "work" / "kvasir-seg.zip")
    assert _prepare(tmp_path, tmp_path / "work", raw=archive) == 2
    assert "lies inside --root" in _err(capsys) and archive.is_file()


def test_root_that_is_a_regular_file_is_refused_and_not_renamed(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("my notes")
    assert _prepare(tmp_path, target) == 2
    err = _err(capsys)
    assert "is a file, not a folder" in err and str(target) in err and "choose another --root" in err
    assert target.read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "src"]  # no .notes.txt.old-PID


# --------------------------------------------------------------------------------------------
# what may be replaced
# --------------------------------------------------------------------------------------------
def test_marker_written_and_own_folder_is_replaced(tmp_path):
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    meta = json.loads((tmp_path / "kv" / "dataset.json").read_text())
    assert meta["prepared_by"] == MARKER["prepared_by"] == "mslib"
    (tmp_path / "kv" / ".DS_Store").write_bytes(b"\0")  # operating-system litter is tolerated
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    assert leftovers(tmp_path) == []


def test_prepared_folder_holding_a_user_file_is_refused(tmp_path, capsys):
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    (tmp_path / "kv" / "my_notes.txt").write_text("keep me")
    assert _prepare(tmp_path, tmp_path / "kv") == 2
    err = _err(capsys)
    assert "also holds files this project did not write" in err and "my_notes.txt" in err
    assert (tmp_path / "kv" / "my_notes.txt").read_text() == "keep me"


def test_user_file_inside_images_folder_is_refused(tmp_path, capsys):
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    (tmp_path / "kv" / "images" / "holiday.jpg").write_bytes(b"\xff\xd8 not ours")
    assert _prepare(tmp_path, tmp_path / "kv") == 2
    assert "images/holiday.jpg" in _err(capsys)
    assert (tmp_path / "kv" / "images" / "holiday.jpg").exists()


def test_empty_folder_is_filled(tmp_path):
    (tmp_path / "kv").mkdir()
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    assert (tmp_path / "kv" / "dataset.json").is_file()


def test_someone_elses_dataset_json_is_not_a_marker(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "dataset.json").write_text(json.dumps({"name": "theirs", "classes": ["bg", "fg"]}))
    (other / "images").mkdir()
    assert _prepare(tmp_path, other) == 2
    assert "did not prepare" in _err(capsys) and (other / "dataset.json").exists()


def test_folder_written_before_the_marker_is_recognised(tmp_path):
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    meta_path = tmp_path / "kv" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    del meta["prepared_by"]  # as written by the previous version: layout_version only
    meta_path.write_text(json.dumps(meta))
    check_replaceable(tmp_path / "kv")
    assert _prepare(tmp_path, tmp_path / "kv") == 0


def test_symlinked_root_replaces_the_target_and_keeps_the_link(tmp_path):
    assert _prepare(tmp_path, tmp_path / "big-disk" / "kv") == 0
    link = tmp_path / "kv-link"
    link.symlink_to(tmp_path / "big-disk" / "kv")
    assert _prepare(tmp_path, link) == 0
    assert link.is_symlink() and (link / "dataset.json").is_file()
    assert leftovers(tmp_path / "big-disk") == []


def test_broken_symlink_root_is_refused(tmp_path, capsys):
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    assert _prepare(tmp_path, link) == 2
    assert "broken symbolic link" in _err(capsys) and link.is_symlink()


def test_parent_of_root_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert _prepare(tmp_path, tmp_path / "afile" / "kv") == 2
    err = _err(capsys)
    assert "afile" in err and "is a file" in err and "Traceback" not in err


def test_files_put_into_root_during_preparation_stop_the_commit(tmp_path):
    root = tmp_path / "kv"
    with pytest.raises(UnsafeRootError, match="late.txt"):
        with PreparedWriter(root, name="x", classes=["bg", "fg"]) as w:
            w.add("a", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8))
            root.mkdir()
            (root / "late.txt").write_text("the user's")
    assert (root / "late.txt").read_text() == "the user's" and leftovers(tmp_path) == []


def test_check_root_and_raw_reads_only(tmp_path):
    _user_folder(tmp_path / "u")
    before = _snapshot(tmp_path)
    for root, raws in ((tmp_path / "u", []), (tmp_path / "u", [tmp_path / "u"]), (tmp_path, [tmp_path / "u"])):
        with pytest.raises(UnsafeRootError):
            check_root_and_raw(root, raws)
    assert _snapshot(tmp_path) == before


# --------------------------------------------------------------------------------------------
# environment, interruption, special inputs
# --------------------------------------------------------------------------------------------
def test_data_dir_pointing_at_a_file(tmp_path, monkeypatch, capsys):
    f = tmp_path / "data.txt"
    f.write_text("x")
    monkeypatch.setenv("MSLIB_DATA_DIR", str(f))
    with pytest.raises(NotADirectoryError, match="MSLIB_DATA_DIR=.*is a file.*export MSLIB_DATA_DIR"):
        data_dir()
    monkeypatch.setenv("MSLIB_DATA_DIR", str(f / "sub"))  # a folder above it is a file
    with pytest.raises(NotADirectoryError, match="data.txt is a file"):
        data_dir()
    kvasir_tree(tmp_path / "src", n=3)
    assert kvasir_seg.main(["--raw", str(tmp_path / "src"), "--allow-partial"]) == 2  # default --root
    assert "MSLIB_DATA_DIR" in _err(capsys) and f.read_text() == "x"


def test_data_dir_missing_is_fine(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path / "not-yet"))
    assert data_dir() == tmp_path / "not-yet"


def test_interrupted_preparation_keeps_the_old_dataset(tmp_path, monkeypatch, capsys):
    assert _prepare(tmp_path, tmp_path / "kv") == 0
    before = _snapshot(tmp_path / "kv")
    calls = {"n": 0}
    real = kvasir_seg.load_image

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(kvasir_seg, "load_image", interrupt)
    assert _prepare(tmp_path, tmp_path / "kv") == 130
    assert "interrupted" in _err(capsys)
    assert _snapshot(tmp_path / "kv") == before and leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_raw_that_is_a_fifo(tmp_path, capsys):
    fifo = tmp_path / "kvasir-seg.zip"
    os.mkfifo(fifo)
    assert _prepare(tmp_path, tmp_path / "kv", raw=fifo) == 2
    assert "neither a file nor a folder" in _err(capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_unwritable_parent_is_one_clear_line(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert _prepare(tmp_path, ro / "kv") == 2
        err = _err(capsys)
        assert "Permission denied" in err and "check the permissions" in err and "Traceback" not in err
    finally:
        ro.chmod(stat.S_IRWXU)


@pytest.mark.parametrize("flag", ["--max-ratio", "--max-extract-gb"])
def test_nonpositive_limits_are_refused(tmp_path, capsys, flag):
    kvasir_tree(tmp_path / "src", n=3)
    assert kvasir_seg.main(["--raw", str(tmp_path / "src"), "--root", str(tmp_path / "kv"), flag, "0"]) == 2
    assert f"{flag} must be a positive number" in _err(capsys)
