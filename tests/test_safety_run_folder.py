"""Run folders: one writer at a time (two real processes), stale locks taken over and reported,
output-folder checks, the run identity that decides whether a checkpoint may be resumed, and the
one-line errors the CLI prints."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mslib.train import run_folder as rf
from mslib.train.run_folder import (
    RunFolderBusy,
    RunFolderError,
    RunIdentityMismatch,
    RunLock,
    StaleLockWarning,
    UsageError,
    allowed_changes,
    check_out_dir,
    check_resume,
    exit_code,
    format_error,
    identity_differences,
    run_identity,
)

MODULE = Path(rf.__file__)
# the child imports the module by path: it needs only the standard library (fast, no torch)
_CHILD = textwrap.dedent(f"""
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("run_folder", {str(MODULE)!r})
    rf = importlib.util.module_from_spec(spec); spec.loader.exec_module(rf)
    out, hold = sys.argv[1], float(sys.argv[2])
    if len(sys.argv) > 3:  # wait for the starting signal, so that racers really race
        print("ready", flush=True)
        while not __import__("os").path.exists(sys.argv[3]):
            time.sleep(0.005)
    try:
        with rf.RunLock(out, command="child"):
            print("locked", flush=True)
            time.sleep(hold)
    except rf.RunFolderBusy as exc:
        print("busy", flush=True)
""")


def _child(out, hold=30.0, go=None):
    args = [sys.executable, "-c", _CHILD, str(out), str(hold)] + ([str(go)] if go else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _wait_locked(proc):
    line = proc.stdout.readline().strip()
    assert line == "locked", line


# --------------------------------------------------------------------------------------------
# RunLock
# --------------------------------------------------------------------------------------------
def test_lock_file_records_the_owner_and_is_removed_on_exit(tmp_path):
    with RunLock(tmp_path / "run", command="python -m mslib train --model unet") as lock:
        info = json.loads((tmp_path / "run" / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert info["command"] == "python -m mslib train --model unet" and "T" in info["started"]
        assert lock.held and lock.taken_over is None
    assert not (tmp_path / "run" / ".lock").exists() and not lock.held


def test_lock_is_released_on_an_exception(tmp_path):
    with pytest.raises(ZeroDivisionError):
        with RunLock(tmp_path):
            raise ZeroDivisionError
    assert not (tmp_path / ".lock").exists()
    with RunLock(tmp_path):  # and can be taken again
        pass


def test_second_writer_in_another_process_is_refused(tmp_path):
    proc = _child(tmp_path)
    try:
        _wait_locked(proc)
        with pytest.raises(RunFolderBusy) as err:
            with RunLock(tmp_path):
                pass
        msg = str(err.value)
        assert f"pid {proc.pid}@{socket.gethostname()} since" in msg and "(child)" in msg
        assert "pass another --out" in msg and str(tmp_path / ".lock") in msg
        assert err.value.owner["pid"] == proc.pid and err.value.exit_code == 2
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_run_is_stale_reported_and_taken_over(tmp_path):
    proc = _child(tmp_path)
    _wait_locked(proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / ".lock").exists()  # SIGKILL leaves the file; the kernel drops the flock
    with pytest.warns(StaleLockWarning, match=f"stale lock left by pid {proc.pid}@"):
        with RunLock(tmp_path) as lock:
            assert lock.taken_over["pid"] == proc.pid
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert not (tmp_path / ".lock").exists()


def test_racing_writers_exactly_one_wins(tmp_path):
    go = tmp_path / "go"
    procs = [_child(tmp_path / "run", hold=1.0, go=go) for _ in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert sorted(o[0] for o in outs) == ["busy", "busy", "busy", "locked"], outs
    assert not (tmp_path / "run" / ".lock").exists()


def _write_lock(folder, **info):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps(info))


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_hand_written_stale_lock_with_a_dead_pid(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host=socket.gethostname(), started="2026-01-01T00:00:00", command="x")
    with pytest.warns(StaleLockWarning):
        with RunLock(tmp_path):
            pass


def test_lock_from_another_host_is_never_taken_over(tmp_path):
    _write_lock(tmp_path, pid=1, host="gpu-node-7", started="2026-01-01T00:00:00", command="x")
    with pytest.raises(RunFolderBusy, match="pid 1@gpu-node-7 .*on another host.*If you are sure no run uses it"):
        with RunLock(tmp_path):
            pass
    assert json.loads((tmp_path / ".lock").read_text())["host"] == "gpu-node-7"


def test_empty_lock_file_young_is_busy_old_is_stale(tmp_path):
    (tmp_path / ".lock").write_text("")
    with pytest.raises(RunFolderBusy, match="being written"):
        with RunLock(tmp_path):
            pass
    old = time.time() - 3600
    os.utime(tmp_path / ".lock", (old, old))
    with pytest.warns(StaleLockWarning, match="an unknown process"):
        with RunLock(tmp_path):
            pass


def test_same_process_twice_is_busy(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunFolderBusy, match=f"pid {os.getpid()}@"):
            with RunLock(tmp_path):
                pass
        assert (tmp_path / ".lock").exists()  # the inner failure did not release the outer lock
    assert not (tmp_path / ".lock").exists()


# --------------------------------------------------------------------------------------------
# check_out_dir
# --------------------------------------------------------------------------------------------
def test_out_dir_created(tmp_path):
    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    with pytest.raises(RunFolderError, match="does not exist"):
        check_out_dir(tmp_path / "c", create=False)


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "run").write_text("results I typed")
    with pytest.raises(RunFolderError, match=r"--out .*run is a file, not a folder.*--out .*run-run"):
        check_out_dir(tmp_path / "run")
    assert (tmp_path / "run").read_text() == "results I typed"


def test_out_dir_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="f is a file, not a folder"):
        check_out_dir(tmp_path / "f" / "run")


def test_out_dir_broken_link(tmp_path):
    (tmp_path / "run").symlink_to(tmp_path / "gone")
    with pytest.raises(RunFolderError, match="broken symbolic link"):
        check_out_dir(tmp_path / "run")


@pytest.mark.parametrize("name", ["last.pt", "history.csv", ".lock"])
def test_run_file_that_is_a_folder(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(RunFolderError, match=f"{name} is a folder, but the run writes its file"):
        check_out_dir(tmp_path)


def test_read_only_out_dir(tmp_path, monkeypatch):
    def ro(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rf.tempfile, "mkstemp", ro)
    with pytest.raises(RunFolderError, match="is not writable \\(the file system is read-only\\).*another --out"):
        check_out_dir(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_out_dir_for_real(tmp_path):  # pragma: no cover - CI runs as a user
    (tmp_path / "run").mkdir(mode=0o555)
    with pytest.raises(RunFolderError, match="not writable"):
        check_out_dir(tmp_path / "run")


def test_not_enough_disk(tmp_path, monkeypatch):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10 << 20))
    with pytest.raises(RunFolderError, match="only 10 MiB free"):
        check_out_dir(tmp_path, need_bytes=100 << 20)


# --------------------------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Cfg:
    lr: float = 1e-3
    epochs: int = 5
    size: tuple = (128, 128)


def _ident(**kw):
    base = dict(
        model="unet", data="synthetic-polyp", profile="quick", seed=0, epochs=5, config=_Cfg(), root=Path("/data/x")
    )
    base.update(kw)
    return run_identity(**base)


def test_identity_fields_and_hash():
    a = _ident()
    assert (a["model"], a["data"], a["profile"], a["version"]) == ("unet", "synthetic-polyp", "quick", 1)
    assert a["fields"]["config.lr"] == 1e-3 and a["fields"]["config.size"] == [128, 128]
    assert a["fields"]["root"] == "/data/x"
    assert len(a["config_hash"]) == 16
    assert _ident(epochs=50, config=_Cfg(epochs=50))["config_hash"] == a["config_hash"]  # epochs excluded
    assert _ident(seed=1)["config_hash"] != a["config_hash"]
    # order of the keyword arguments does not matter
    assert run_identity(model="m", data="d")["config_hash"] == run_identity(data="d", model="m")["config_hash"]


def test_identity_differences_are_human_readable():
    a = _ident()
    b = _ident(data="kvasir-seg", config=_Cfg(lr=1e-2), epochs=9, extra_flag=True)
    assert identity_differences(a, b) == [
        "data: synthetic-polyp -> kvasir-seg",
        "config.lr: 0.001 -> 0.01",
        "extra_flag: (not set) -> true",
    ]
    assert allowed_changes(a, b) == ["epochs: 5 -> 9"]
    assert identity_differences(a, _ident(epochs=7, device="cuda")) == []


def test_check_resume():
    a = _ident()
    with pytest.raises(RunIdentityMismatch) as err:
        check_resume(a, _ident(data="kvasir-seg"), out="runs/unet-quick")
    assert err.value.differences == ["data: synthetic-polyp -> kvasir-seg"]
    assert "runs/unet-quick" in str(err.value) and "--no-resume" in str(err.value) and err.value.exit_code == 2
    assert check_resume(a, _ident(epochs=10), done_epochs=5) == ["resuming with a change: epochs: 5 -> 10"]
    with pytest.raises(UsageError, match="already trained 5 epoch.*--epochs larger than 5"):
        check_resume(a, _ident(epochs=3), done_epochs=5)
    nested = run_identity(model="unet", config={"epochs": 4, "lr": 0.1})  # as the CLI stores it
    with pytest.raises(UsageError, match="--epochs 4: the checkpoint has already trained 4"):
        check_resume(nested, nested, done_epochs=4)
    notes = check_resume(None, a, done_epochs=1)
    assert "no run identity" in notes[0]
    with pytest.raises(RunIdentityMismatch, match="damaged run identity"):
        check_resume(["x"], a)


# --------------------------------------------------------------------------------------------
# one-line errors
# --------------------------------------------------------------------------------------------
def test_format_error_and_exit_codes(tmp_path):
    assert (
        format_error(UsageError("--lr must be > 0, got 0;\n pass --lr 1e-3"))
        == "error: --lr must be > 0, got 0; pass --lr 1e-3"
    )
    assert exit_code(UsageError("x")) == 2 and exit_code(RunFolderBusy("x")) == 2
    assert exit_code(rf.CLIError("x")) == 1 and exit_code(KeyboardInterrupt()) == 130 and exit_code(ValueError()) == 1
    e = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "last.pt"))
    assert format_error(e) == f"error: [Errno 13] Permission denied: '{tmp_path / 'last.pt'}'"
    assert format_error(RuntimeError("boom")) == "error: RuntimeError: boom"
    assert format_error(KeyboardInterrupt()) == "interrupted"
    assert issubclass(RunIdentityMismatch, UsageError) and issubclass(RunFolderBusy, RunFolderError)


def test_module_imports_only_the_standard_library():
    src = MODULE.read_text()
    imports = {ln.split()[1].split(".")[0] for ln in src.splitlines() if ln.startswith(("import ", "from "))}
    assert imports <= {
        "__future__",
        "dataclasses",
        "datetime",
        "errno",
        "hashlib",
        "json",
        "math",
        "os",
        "shlex",
        "socket",
        "sys",
        "tempfile",
        "time",
        "warnings",
        "pathlib",
        "typing",
        "collections",
    }, imports
