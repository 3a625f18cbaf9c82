"""Downloads against a local HTTP server on 127.0.0.1: checksum right/wrong, cut-off transfer and
resume (with and without Range support), mirrors, offline failure, and the CLI's --download."""

from __future__ import annotations

import hashlib
import json
import socket

import pytest

from data_scripts.common import DatasetInfo, ManualDownloadRequired, RawFile, fetch, make_main
from data_scripts.download import (
    ChecksumError,
    DownloadError,
    IncompleteDownloadError,
    OfflineError,
    download,
    sha256_file,
)
from tests.fixtures_data import http_server, kvasir_tree, leftovers, pack

PAYLOAD = bytes(range(256)) * 200  # 51200 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


def test_download_verifies_and_moves_into_place(tmp_path):
    with http_server({"/f.zip": PAYLOAD}) as (url, _):
        out = download(url + "/f.zip", tmp_path / "f.zip", sha256=SHA, md5=MD5, progress=False)
    assert out.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == []


def test_wrong_checksum_fails_and_leaves_nothing(tmp_path):
    with http_server({"/f.zip": PAYLOAD}) as (url, _):
        with pytest.raises(ChecksumError, match="wrong checksum"):
            download(url + "/f.zip", tmp_path / "f.zip", sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_wrong_md5_is_detected(tmp_path):
    with http_server({"/f.zip": PAYLOAD}) as (url, _):
        with pytest.raises(ChecksumError, match="md5"):
            download(url + "/f.zip", tmp_path / "f.zip", md5="f" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cut_transfer_keeps_part_and_resumes_with_range(tmp_path):
    dest = tmp_path / "f.zip"
    with http_server({"/f.zip": PAYLOAD}, cut_after=10000) as (url, handler):
        with pytest.raises(IncompleteDownloadError, match="run the same command again"):
            download(url + "/f.zip", dest, sha256=SHA, progress=False)
        assert not dest.exists()
        part = tmp_path / "f.zip.part"
        assert part.stat().st_size == 10000
        download(url + "/f.zip", dest, sha256=SHA, progress=False)
        assert handler.log[-1]["range"] == "bytes=10000-"
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_resume_restarts_when_server_ignores_range(tmp_path):
    dest = tmp_path / "f.zip"
    with http_server({"/f.zip": PAYLOAD}, cut_after=5000, ranges=False) as (url, handler):
        with pytest.raises(IncompleteDownloadError):
            download(url + "/f.zip", dest, sha256=SHA, progress=False)
        download(url + "/f.zip", dest, sha256=SHA, progress=False)
        assert handler.log[-1]["range"] == "bytes=5000-"  # asked, got a 200, started again
    assert dest.read_bytes() == PAYLOAD


def test_mirrors_are_tried_in_order(tmp_path):
    with http_server({"/mirror/f.zip": PAYLOAD}) as (url, handler):
        download([url + "/missing/f.zip", url + "/mirror/f.zip"], tmp_path / "f.zip", sha256=SHA, progress=False)
        assert [e["path"] for e in handler.log] == ["/missing/f.zip", "/mirror/f.zip"]


def test_http_error_everywhere_names_the_urls(tmp_path):
    with http_server({}) as (url, _):
        with pytest.raises(DownloadError, match="(?s)HTTP 404.*--raw"):
            download(url + "/nope.zip", tmp_path / "nope.zip", progress=False)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offline_fails_fast_with_instructions(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/kvasir-seg.zip"
    with pytest.raises(OfflineError) as exc:
        download(url, tmp_path / "kvasir-seg.zip", timeout=2, progress=False)
    msg = str(exc.value)
    assert url in msg and "no internet" in msg and str(tmp_path / "kvasir-seg.zip") in msg


def test_existing_file_is_verified_not_downloaded_again(tmp_path):
    dest = tmp_path / "f.zip"
    dest.write_bytes(PAYLOAD)
    assert download("http://127.0.0.1:1/unused", dest, sha256=SHA, progress=False) == dest
    dest.write_bytes(b"corrupt")
    with pytest.raises(ChecksumError, match="delete it"):
        download("http://127.0.0.1:1/unused", dest, sha256=SHA, progress=False)


def test_fetch_records_checksum_when_none_is_published(tmp_path, capsys):
    info = DatasetInfo("x", "X", "h", "l", "c", "u", "s", files=(RawFile("f.zip", ("http://127.0.0.1:1/f.zip",)),))
    with http_server({"/f.zip": PAYLOAD}) as (url, _):
        info = DatasetInfo("x", "X", "h", "l", "c", "u", "s", files=(RawFile("f.zip", (url + "/f.zip",)),))
        (path,) = fetch(info, tmp_path, progress=False)
    assert sha256_file(path) == SHA
    assert SHA in capsys.readouterr().out


def test_fetch_manual_dataset_says_what_to_do(tmp_path):
    info = DatasetInfo(
        "x",
        "X",
        "https://home",
        "terms",
        "c",
        "u",
        "s",
        files=(RawFile("x.zip"),),
        manual="Register on the site and download x.zip.",
    )
    with pytest.raises(ManualDownloadRequired, match="(?s)Register on the site.*x.zip.*--raw"):
        fetch(info, tmp_path)


def test_cli_download_then_prepare(tmp_path, capsys):
    """End to end: ``--download`` from a local server, checksum recorded, dataset prepared."""
    from data_scripts import kvasir_seg

    kvasir_tree(tmp_path / "src", n=3)
    archive = pack(tmp_path / "src", tmp_path / "kvasir-seg.zip")
    data = archive.read_bytes()
    with http_server({"/kvasir-seg.zip": data}) as (url, _):
        info = DatasetInfo(
            **{**kvasir_seg.INFO.__dict__, "files": (RawFile("kvasir-seg.zip", (url + "/kvasir-seg.zip",)),)}
        )
        main = make_main(info, kvasir_seg.prepare)
        rc = main(
            ["--download", "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "out"), "--allow-partial"]
        )
    assert rc == 0, capsys.readouterr().err
    import json

    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["checksum"]["kvasir-seg.zip"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta["num_samples"] == 3 and meta["partial"] is True
    # a second run without --download reuses the cached archive
    assert main(["--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "out"), "--allow-partial"]) == 0


def test_cli_without_raw_prints_instructions(tmp_path, capsys):
    from data_scripts import ph2

    rc = ph2.main(["--cache", str(tmp_path), "--root", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "PH2Dataset.rar" in err and "unrar" in err and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# no long hangs: a connection that stalls fails after ``timeout``, never waits forever
# --------------------------------------------------------------------------------------------
def test_server_that_never_answers_fails_within_the_timeout(tmp_path):
    import time

    from tests.fixtures_data import silent_server

    with silent_server() as url:
        t0 = time.monotonic()
        with pytest.raises(OfflineError, match="timed out") as exc:
            download(url + "/f.zip", tmp_path / "f.zip", timeout=0.5, progress=False)
        assert time.monotonic() - t0 < 10
    assert "--raw" in str(exc.value) and list(tmp_path.iterdir()) == []


def test_transfer_that_stalls_midway_keeps_the_part_file_for_resuming(tmp_path):
    import time

    from tests.fixtures_data import silent_server

    head = b"HTTP/1.1 200 OK\r\nContent-Length: 51200\r\n\r\n" + PAYLOAD[:1000]
    dest = tmp_path / "f.zip"
    with silent_server(head) as url:
        t0 = time.monotonic()
        with pytest.raises(IncompleteDownloadError, match="connection lost after 1000 bytes.*resume"):
            download(url + "/f.zip", dest, sha256=SHA, timeout=0.5, progress=False)
        assert time.monotonic() - t0 < 10
    assert (tmp_path / "f.zip.part").read_bytes() == PAYLOAD[:1000] and not dest.exists()
    with http_server({"/f.zip": PAYLOAD}) as (url, handler):  # the server is back: resume from byte 1000
        download(url + "/f.zip", dest, sha256=SHA, progress=False)
        assert handler.log[-1]["range"] == "bytes=1000-"
    assert dest.read_bytes() == PAYLOAD and leftovers(tmp_path) == []


def _kvasir_main(monkeypatch, url, sha256=None):
    """kvasir_seg's command line with its official URL replaced by the local server (and a checksum)."""
    from data_scripts import kvasir_seg

    info = DatasetInfo(
        **{**kvasir_seg.INFO.__dict__, "files": (RawFile("kvasir-seg.zip", (url + "/kvasir-seg.zip",), sha256),)}
    )
    monkeypatch.setattr(kvasir_seg, "INFO", info)
    return make_main(info, kvasir_seg.prepare)


def test_cli_resumes_an_interrupted_download(tmp_path, capsys, monkeypatch):
    """``--download`` cut midway exits 2 saying how to resume; the same command resumes (HTTP Range),
    verifies the published checksum and prepares the dataset."""
    kvasir_tree(tmp_path / "src", n=3)
    data = pack(tmp_path / "src", tmp_path / "kvasir-seg.zip").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = ["--download", "--cache", str(cache), "--root", str(out), "--allow-partial"]
    with http_server({"/kvasir-seg.zip": data}, cut_after=len(data) // 2) as (url, handler):
        main = _kvasir_main(monkeypatch, url, sha)
        assert main(args) == 2
        assert "run the same command again" in capsys.readouterr().err and not out.exists()
        assert (cache / "kvasir-seg.zip.part").stat().st_size == len(data) // 2
        assert main(args) == 0
        assert handler.log[-1]["range"] == f"bytes={len(data) // 2}-"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["checksum"]["kvasir-seg.zip"] == {"sha256": sha, "verified_against_published": True}
    assert sorted(p.name for p in cache.iterdir()) == ["kvasir-seg.zip"] and leftovers(tmp_path) == []


def test_cli_wrong_checksum_leaves_nothing(tmp_path, capsys, monkeypatch):
    kvasir_tree(tmp_path / "src", n=2)
    data = pack(tmp_path / "src", tmp_path / "kvasir-seg.zip").read_bytes()
    with http_server({"/kvasir-seg.zip": data}) as (url, _):
        main = _kvasir_main(monkeypatch, url, "0" * 64)
        assert main(["--download", "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "out")]) == 2
    assert "wrong checksum" in capsys.readouterr().err
    assert list((tmp_path / "cache").iterdir()) == [] and not (tmp_path / "out").exists()


def test_cli_download_offline_is_quick_and_clear(tmp_path, capsys, monkeypatch):
    import time

    t0 = time.monotonic()
    main = _kvasir_main(monkeypatch, f"http://127.0.0.1:{_closed_port()}")
    assert (
        main(["--download", "--cache", str(tmp_path / "cache"), "--root", str(tmp_path / "out"), "--timeout", "2"]) == 2
    )
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 10
    assert err.startswith("error: cannot reach") and "no internet" in err and "--raw" in err
    assert str(tmp_path / "cache" / "kvasir-seg.zip") in err and not (tmp_path / "out").exists()
