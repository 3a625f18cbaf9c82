"""Archive extraction bounds and the remaining archive faults: a zip bomb (254 KiB -> 256 MiB) is
refused before anything is written; the limits (total size, ratio) are configurable by argument,
environment and command line; duplicate members, names longer than the file system allows, an
archive larger than the free disk, a destination that is not ours, and a disk error while writing."""

from __future__ import annotations

import errno
import io
import tarfile
import zipfile

import pytest

from data_scripts import archive as archive_mod
from data_scripts import kvasir_seg
from data_scripts.archive import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_RATIO,
    ArchiveLimitError,
    UnsafeArchiveError,
    current_limits,
    extraction_limits,
    safe_extract,
)
from tests.fixtures_data import kvasir_tree, leftovers, pack, tar_with, zip_with

MiB = 1 << 20


def _zeros_zip(path, size: int):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open("Kvasir-SEG/images/bomb.bin", "w", force_zip64=True) as fh:
            chunk = bytes(MiB)
            for _ in range(size // MiB):
                fh.write(chunk)
    return path


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory):
    """254 KiB of zip that unpacks to 256 MiB of zeros."""
    return _zeros_zip(tmp_path_factory.mktemp("bomb") / "kvasir-seg.zip", 256 * MiB)


class _Zeros(io.RawIOBase):
    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def _tar_bomb(path, size: int):
    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("top/bomb.bin")
        info.size = size
        tf.addfile(info, io.BufferedReader(_Zeros(size)))
    return path


def test_zip_bomb_is_refused_before_writing(zip_bomb, tmp_path):
    assert zip_bomb.stat().st_size < 300 * 1024
    with pytest.raises(ArchiveLimitError, match=r"unpacks to at least 256 MiB, more than 200 times.*--max-ratio"):
        safe_extract(zip_bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_tar_bomb_is_refused_at_its_first_header(tmp_path, monkeypatch):
    monkeypatch.setattr(archive_mod, "RATIO_FLOOR", MiB)  # a small bomb keeps the test fast
    bomb = _tar_bomb(tmp_path / "b.tar.gz", 8 * MiB)
    with pytest.raises(ArchiveLimitError, match="more than 200 times"):
        safe_extract(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_ratio_limit_can_be_raised(zip_bomb, tmp_path, monkeypatch):
    with pytest.raises(ArchiveLimitError, match="unpacks to more than 100 MiB"):  # the size limit still holds
        safe_extract(zip_bomb, tmp_path / "out", max_bytes=100 * MiB, max_ratio=10_000)
    monkeypatch.setattr(archive_mod, "RATIO_FLOOR", MiB)
    small = _zeros_zip(tmp_path / "small.zip", 4 * MiB)
    with pytest.raises(ArchiveLimitError, match="more than 200 times"):
        safe_extract(small, tmp_path / "out")
    with extraction_limits(max_ratio=10_000):
        out = safe_extract(small, tmp_path / "out")
    assert (out / "Kvasir-SEG" / "images" / "bomb.bin").stat().st_size == 4 * MiB


def test_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("MSLIB_EXTRACT_MAX_GB", raising=False)
    monkeypatch.delenv("MSLIB_EXTRACT_MAX_RATIO", raising=False)
    assert current_limits() == (DEFAULT_MAX_BYTES, DEFAULT_MAX_RATIO) == (200 * 10**9, 200.0)
    monkeypatch.setenv("MSLIB_EXTRACT_MAX_GB", "0.5")
    monkeypatch.setenv("MSLIB_EXTRACT_MAX_RATIO", "50")
    assert current_limits() == (500_000_000, 50.0)
    with extraction_limits(max_bytes=10):
        assert current_limits() == (10, 50.0)
        assert current_limits(max_bytes=7) == (7, 50.0)
    monkeypatch.setenv("MSLIB_EXTRACT_MAX_GB", "lots")
    with pytest.raises(ValueError, match=r"\$MSLIB_EXTRACT_MAX_GB='lots' is not a number"):
        current_limits()
    monkeypatch.setenv("MSLIB_EXTRACT_MAX_GB", "-1")
    with pytest.raises(ValueError, match="must be positive"):
        current_limits()


def test_total_size_limit_from_the_environment(tmp_path, monkeypatch):
    archive = zip_with(tmp_path / "a.zip", {"top/a.bin": bytes(5000)})
    monkeypatch.setenv("MSLIB_EXTRACT_MAX_GB", "0.000001")  # 1000 bytes
    with pytest.raises(ArchiveLimitError, match="MSLIB_EXTRACT_MAX_GB"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_preparer_command_line_limits(tmp_path, capsys):
    kvasir_tree(tmp_path / "tree", n=3)
    archive = pack(tmp_path / "tree", tmp_path / "kvasir-seg.zip")
    argv = ["--raw", str(archive), "--root", str(tmp_path / "kv"), "--allow-partial"]
    assert kvasir_seg.main(argv + ["--max-extract-gb", "0.000001"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--max-extract-gb" in err and "Traceback" not in err
    assert not (tmp_path / "kv").exists() and leftovers(tmp_path) == []
    assert kvasir_seg.main(argv) == 0  # and the defaults let a real archive through


def test_preparer_refuses_the_zip_bomb(zip_bomb, tmp_path, capsys):
    assert kvasir_seg.main(["--raw", str(zip_bomb), "--root", str(tmp_path / "kv")]) == 2
    assert "decompression bomb" in capsys.readouterr().err
    assert not (tmp_path / "kv").exists() and leftovers(zip_bomb.parent) == []


def test_duplicate_member_names_are_refused(tmp_path):
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf, pytest.warns(UserWarning):
        zf.writestr("top/a.png", b"first")
        zf.writestr("top/a.png", b"second")
    with pytest.raises(UnsafeArchiveError, match="'top/a.png' appears twice"):
        safe_extract(archive, tmp_path / "out")
    with tarfile.open(tmp_path / "dup2.tar", "w") as tf:
        for data in (b"first", b"second"):
            info = tarfile.TarInfo("top/a.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match="appears twice"):
        safe_extract(tmp_path / "dup2.tar", tmp_path / "out")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_member_name_longer_than_the_file_system_allows(tmp_path, kind):
    name = "top/" + "x" * 300 + ".png"
    make = zip_with if kind == "zip" else tar_with
    archive = make(tmp_path / f"long.{'zip' if kind == 'zip' else 'tar.gz'}", {name: b"data"})
    with pytest.raises(ArchiveLimitError, match=r"is 304 bytes long, but the file system .* allows 255"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_archive_larger_than_the_free_disk(tmp_path, monkeypatch):
    archive = zip_with(tmp_path / "a.zip", {"top/a.bin": bytes(4096)})
    real = archive_mod.shutil.disk_usage
    monkeypatch.setattr(archive_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(ArchiveLimitError, match="only .* are free"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_destination_that_is_not_ours_is_not_replaced(tmp_path):
    archive = zip_with(tmp_path / "a.zip", {"top/a.txt": b"A"})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    with pytest.raises(UnsafeArchiveError, match="was not unpacked here by mslib"):
        safe_extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep"
    (tmp_path / "file").write_text("keep")
    with pytest.raises(UnsafeArchiveError, match="is a file"):
        safe_extract(archive, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep" and leftovers(tmp_path) == []


def test_disk_full_while_writing_is_not_called_corrupt(tmp_path, monkeypatch):
    archive = tar_with(tmp_path / "a.tar.gz", {"top/a.txt": b"A"})

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(OSError) as err:
        safe_extract(archive, tmp_path / "out")
    assert err.value.errno == errno.ENOSPC and not isinstance(err.value, archive_mod.CorruptArchiveError)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_disk_full_in_the_preparer_is_one_line(tmp_path, monkeypatch, capsys):
    kvasir_tree(tmp_path / "tree", n=3)
    archive = pack(tmp_path / "tree", tmp_path / "kvasir-seg.tar.gz", kind="tar")

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    assert kvasir_seg.main(["--raw", str(archive), "--root", str(tmp_path / "kv"), "--allow-partial"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "the disk is full" in err and "Traceback" not in err
