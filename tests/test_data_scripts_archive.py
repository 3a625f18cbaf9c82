"""Safe unpacking: good zip/tar, and every malicious or corrupt case fails clearly and leaves
nothing behind (no destination, no temporary folder)."""

from __future__ import annotations

import tarfile

import pytest

from data_scripts import kvasir_seg
from data_scripts.archive import CorruptArchiveError, UnsafeArchiveError, safe_extract
from data_scripts.prepare import VerificationError
from tests.fixtures_data import kvasir_tree, leftovers, pack, tar_with, zip_with


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_extracts_a_good_archive(tmp_path, kind):
    archive = (zip_with if kind == "zip" else tar_with)(
        tmp_path / f"a.{'zip' if kind == 'zip' else 'tar.gz'}", {"top/a.txt": b"A", "top/sub/b.txt": b"BB"}
    )
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "top" / "a.txt").read_bytes() == b"A" and (out / "top" / "sub" / "b.txt").read_bytes() == b"BB"
    assert leftovers(tmp_path) == []
    # idempotent: extracting again replaces the folder
    safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["top"]


def _assert_clean(tmp_path):
    assert not (tmp_path / "out").exists()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["../evil.txt", "top/../../evil.txt", "/etc/evil.txt", "C:\\evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_refuses_traversal_and_absolute_members(tmp_path, name, kind):
    make = zip_with if kind == "zip" else tar_with
    archive = make(tmp_path / f"bad.{'zip' if kind == 'zip' else 'tar.gz'}", {"ok.txt": b"x", name: b"evil"})
    with pytest.raises(UnsafeArchiveError, match="absolute|'..'"):
        safe_extract(archive, tmp_path / "out")
    _assert_clean(tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists()


@pytest.mark.parametrize(
    "target,typ", [("../../outside", tarfile.SYMTYPE), ("/etc/passwd", tarfile.SYMTYPE), ("../x", tarfile.LNKTYPE)]
)
def test_refuses_tar_links_out_of_the_folder(tmp_path, target, typ):
    archive = tar_with(tmp_path / "bad.tar.gz", {"d/ok.txt": b"x"}, links={"d/link": (target, typ)})
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        safe_extract(archive, tmp_path / "out")
    _assert_clean(tmp_path)


def test_tar_link_inside_the_folder_is_fine(tmp_path):
    archive = tar_with(tmp_path / "ok.tar.gz", {"d/ok.txt": b"x"}, links={"d/link": ("ok.txt", tarfile.SYMTYPE)})
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "d" / "link").read_bytes() == b"x"


def test_refuses_device_files(tmp_path):
    archive = tar_with(tmp_path / "dev.tar.gz", {"a.txt": b"x"}, links={"dev/null": ("", tarfile.CHRTYPE)})
    with pytest.raises(UnsafeArchiveError, match="device"):
        safe_extract(archive, tmp_path / "out")
    _assert_clean(tmp_path)


def test_refuses_zip_symlinks(tmp_path):
    archive = zip_with(tmp_path / "l.zip", {"a.txt": b"x"}, symlinks={"link": "../../etc/passwd"})
    with pytest.raises(UnsafeArchiveError, match="points outside"):
        safe_extract(archive, tmp_path / "out")
    archive = zip_with(tmp_path / "l2.zip", {"a.txt": b"x"}, symlinks={"link": "a.txt"})
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract(archive, tmp_path / "out")
    _assert_clean(tmp_path)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_truncated_archive_fails_clearly(tmp_path, kind):
    big = {f"d/f{i}.bin": bytes([i]) * 5000 for i in range(5)}
    archive = (zip_with if kind == "zip" else tar_with)(tmp_path / f"t.{'zip' if kind == 'zip' else 'tar.gz'}", big)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArchiveError, match="truncated|damaged"):
        safe_extract(archive, tmp_path / "out")
    _assert_clean(tmp_path)


def test_rar_and_html_are_named(tmp_path):
    (tmp_path / "PH2Dataset.rar").write_bytes(b"Rar!\x1a\x07\x00" + b"\0" * 100)
    with pytest.raises(CorruptArchiveError, match="RAR.*unrar"):
        safe_extract(tmp_path / "PH2Dataset.rar", tmp_path / "out")
    (tmp_path / "x.zip").write_bytes(b"<html>Access denied</html>")
    with pytest.raises(CorruptArchiveError, match="neither a zip nor a tar"):
        safe_extract(tmp_path / "x.zip", tmp_path / "out")
    _assert_clean(tmp_path)


def test_preparer_refuses_malicious_archive_and_keeps_old_dataset(tmp_path):
    """A preparation that fails (malicious member) leaves an existing prepared dataset untouched."""
    kvasir_tree(tmp_path / "src", n=3)
    good = pack(tmp_path / "src", tmp_path / "kvasir-seg.zip")
    kvasir_seg.prepare(good, tmp_path / "data" / "kvasir-seg", allow_partial=True)
    before = sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*"))
    (tmp_path / "bad").mkdir()
    bad = zip_with(tmp_path / "bad" / "kvasir-seg.zip", {"Kvasir-SEG/images/a.jpg": b"x", "../../escape.jpg": b"x"})
    with pytest.raises(UnsafeArchiveError):
        kvasir_seg.prepare(bad, tmp_path / "data" / "kvasir-seg", allow_partial=True)
    after = sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*"))
    assert before == after
    assert (
        sorted(p.name for p in (tmp_path / "bad").iterdir()) == ["kvasir-seg.zip"]
        and leftovers(tmp_path / "data") == []
    )


def test_known_checksum_mismatch_is_refused(tmp_path, monkeypatch):
    from data_scripts.common import RawFile

    kvasir_tree(tmp_path / "src", n=2)
    archive = pack(tmp_path / "src", tmp_path / "kvasir-seg.zip")
    info = kvasir_seg.INFO.__class__(
        **{**kvasir_seg.INFO.__dict__, "files": (RawFile("kvasir-seg.zip", (), "ab" * 32),)}
    )
    monkeypatch.setattr(kvasir_seg, "INFO", info)
    with pytest.raises(VerificationError, match="sha256 is .* the published file has abab"):
        kvasir_seg.prepare(archive, tmp_path / "out", allow_partial=True)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_refuses_a_chain_of_links_that_leaves_the_folder(tmp_path):
    """``a -> .`` then ``a/b -> ..``: each target looks inside on its own, but on disk ``b`` points to
    the parent of the folder, and a member written through ``b/`` would land outside."""
    import io

    (tmp_path / "work").mkdir()
    archive = tmp_path / "chain.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, target in (("a", "."), ("a/b", "..")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tf.addfile(link)
        info = tarfile.TarInfo("b/escaped.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(UnsafeArchiveError, match="outside|link"):
        safe_extract(archive, tmp_path / "work" / "out")
    assert not (tmp_path / "work" / "out").exists() and leftovers(tmp_path / "work") == []
    assert not (tmp_path / "work" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
