"""Run folders that are never shared by accident and never resumed by mistake.

A training run writes into one folder (``--out``): ``last.pt`` (the checkpoint), ``history.csv``
and plots. This module holds what keeps that folder honest; it imports only the standard
library, so the CLI can use it before torch has built anything.

- :class:`RunLock`: one writer per folder. ``OUT/.lock`` is created with ``O_EXCL`` and holds
  the owner's pid, host, start time and command; on POSIX the open file is also locked with
  ``fcntl.flock``, which the kernel releases when the process dies (even by ``SIGKILL``). A
  second writer gets :class:`RunFolderBusy` naming the owner (``pid@host since ...``) and the
  fix. A lock left behind by a process that no longer runs on this host (stale) is reported
  with a :class:`StaleLockWarning` and taken over. The lock is released on exit, also on an
  exception or ``Ctrl-C``.
- :func:`check_out_dir`: the folder is not a file, can be created and written, and the files
  the run writes (``last.pt``, ``history.csv``, ``.lock``) are not folders; each problem is a
  :class:`RunFolderError` naming the path and the fix.
- :func:`run_identity` / :func:`identity_differences` / :func:`check_resume`: a run's identity
  (model, data, profile and a hash of every field that defines the run) is stored in the
  checkpoint; resuming with a different identity is refused, naming the differences
  (``data: synthetic-polyp -> kvasir-seg``). Fields in :data:`RESUMABLE_FIELDS` (``epochs``,
  ``device``, ``workers`` ...) may change on resume: the change is reported, not refused.
- Errors for the command line: :class:`CLIError` and its subclasses carry the message and an
  exit code (:class:`UsageError`: 2), so ``python -m mslib`` prints ``error: MESSAGE`` on one
  line without a traceback (:func:`format_error`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import hashlib
import json
import math
import os
import shlex
import socket
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

try:  # POSIX; on Windows the O_EXCL file and the pid check do the job alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CLIError",
    "UsageError",
    "RunFolderError",
    "RunFolderBusy",
    "RunIdentityMismatch",
    "StaleLockWarning",
    "RunLock",
    "check_out_dir",
    "run_identity",
    "identity_differences",
    "allowed_changes",
    "check_resume",
    "format_error",
    "exit_code",
    "LOCK_NAME",
    "RUN_FILES",
    "RESUMABLE_FIELDS",
    "IDENTITY_VERSION",
]

LOCK_NAME = ".lock"
#: Files a run writes into its folder: each must be a file (or absent), never a folder.
RUN_FILES = ("last.pt", "history.csv", LOCK_NAME)
#: Fields that may change when a run is resumed (reported, not refused): they change how long or
#: where the run goes on, not what it is.
RESUMABLE_FIELDS = frozenset(
    {
        "epochs",
        "device",
        "workers",
        "num_workers",
        "out",
        "resume",
        "no_resume",
        "debug",
        "progress",
        "log_every",
        "eval_every",
        "save_every",
        "amp_dtype",
    }
)
IDENTITY_VERSION = 1
#: A lock file that is empty or unreadable is taken for one being written for this long (seconds).
_YOUNG_LOCK_S = 10.0


# --------------------------------------------------------------------------------------
# errors the CLI prints as one line
# --------------------------------------------------------------------------------------
class CLIError(Exception):
    """An error the command line reports as one line, ``error: MESSAGE``, with :attr:`exit_code`
    (1), no traceback (unless ``--debug``). The message names the argument or file and the fix."""

    exit_code = 1


class UsageError(CLIError):
    """A bad argument or input the user can fix (exit code 2, as argparse uses)."""

    exit_code = 2


class RunFolderError(UsageError):
    """The run folder (``--out``) cannot be used as it is: a file, read-only, a folder in place of a file."""


class RunFolderBusy(RunFolderError):
    """Another run holds the folder's lock. Attributes: ``owner`` (the lock's contents), ``lock`` (its path)."""

    def __init__(self, message: str, owner: Mapping[str, Any] | None = None, lock: Path | None = None):
        super().__init__(message)
        self.owner = dict(owner or {})
        self.lock = lock


class RunIdentityMismatch(UsageError):
    """Resuming would continue a different run. Attribute ``differences``: list of ``"key: old -> new"``."""

    def __init__(self, message: str, differences: Sequence[str] = ()):
        super().__init__(message)
        self.differences = list(differences)


class StaleLockWarning(UserWarning):
    """A lock left by a process that no longer runs was taken over (the message names it)."""


def exit_code(exc: BaseException) -> int:
    """The process exit code for ``exc``: its ``exit_code`` for a :class:`CLIError`, 130 for
    ``KeyboardInterrupt``, 1 otherwise."""
    if isinstance(exc, CLIError):
        return int(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return 1


def format_error(exc: BaseException) -> str:
    """One line for the terminal: ``error: MESSAGE`` (newlines folded; the exception type is
    added for errors that are not :class:`CLIError`, ``ValueError`` or ``OSError``)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    msg = (
        str(exc)
        if not isinstance(exc, OSError) or exc.filename is None or str(exc.filename) in str(exc)
        else f"{exc.filename}: {exc.strerror or exc}"
    )
    msg = " ".join(msg.split()) or type(exc).__name__
    if not isinstance(exc, (CLIError, ValueError, OSError, LookupError)):
        msg = f"{type(exc).__name__}: {msg}"
    return f"error: {msg}"


# --------------------------------------------------------------------------------------
# the output folder
# --------------------------------------------------------------------------------------
def check_out_dir(
    path: str | os.PathLike, create: bool = True, files: Iterable[str] = RUN_FILES, need_bytes: int = 0
) -> Path:
    """Check (and by default create) the run folder; return it.

    Raises :class:`RunFolderError`, naming the path and the fix, when: ``path`` or a folder
    above it is a file (or a broken link); it cannot be created; it cannot be written (read-only
    folder or file system: a probe file is created and removed); one of ``files`` (``last.pt``,
    ``history.csv``, ``.lock``) is a folder; fewer than ``need_bytes`` are free on its disk.
    """
    out = Path(path).expanduser()
    arg = f"--out {path}"
    if out.is_symlink() and not out.exists():
        raise RunFolderError(
            f"{arg} is a broken symbolic link (to {os.readlink(out)}); remove the link or pass another --out"
        )
    if out.exists() and not out.is_dir():
        raise RunFolderError(
            f"{arg} is a file, not a folder; a run writes several files into its folder: pass a "
            f"folder path (e.g. --out {out.with_name(out.name + '-run')}), or move the file away"
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunFolderError(f"{arg}: {parent} is a file, not a folder; pass an --out under a folder")
            break
    if not out.exists():
        if not create:
            raise RunFolderError(f"{arg} does not exist; check the path (a run creates it when it starts)")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(
                f"{arg} cannot be created ({exc.strerror or exc}); choose an --out in a folder you can write to"
            ) from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = "the file system is read-only" if exc.errno == errno.EROFS else (exc.strerror or str(exc))
        raise RunFolderError(
            f"{arg} is not writable ({why}); make it writable (chmod u+w {out}) or pass another --out"
        ) from exc
    for name in files:
        f = out / name
        if f.is_dir():
            raise RunFolderError(
                f"{f} is a folder, but the run writes its file {name!r} there; move the folder "
                "away, or pass another --out"
            )
        if f.exists() and not os.access(f, os.R_OK):
            raise RunFolderError(f"{f} cannot be read (permissions); fix them (chmod u+rw {f}) or pass another --out")
    if need_bytes:
        import shutil

        free = shutil.disk_usage(out).free
        if free < need_bytes:
            raise RunFolderError(
                f"{arg}: only {free / 2**20:.0f} MiB free on its disk, the run needs about "
                f"{need_bytes / 2**20:.0f} MiB; free space or pass an --out on another disk"
            )
    return out


# --------------------------------------------------------------------------------------
# the lock
# --------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would terminate the process on Windows
        return True  # the safe answer: never take over a lock we cannot check
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:  # pragma: no cover - unusual platforms: assume alive (the safe answer)
        return True
    return True


def _describe(owner: Mapping[str, Any]) -> str:
    pid, host = owner.get("pid", "?"), owner.get("host", "?")
    since = owner.get("started")
    cmd = owner.get("command")
    return f"pid {pid}@{host}" + (f" since {since}" if since else "") + (f" ({cmd})" if cmd else "")


class RunLock:
    """Hold ``OUT/.lock`` for the duration of a ``with`` block (see the module docstring).

    ``command`` is recorded in the lock (default: the process's command line). After entering,
    ``taken_over`` holds the previous owner's record when a stale lock was taken over (else
    ``None``). Entering twice, in this or another process, raises :class:`RunFolderBusy`.
    """

    def __init__(self, out_dir: str | os.PathLike, command: str | None = None):
        self.out_dir = Path(out_dir).expanduser()
        self.path = self.out_dir / LOCK_NAME
        self.command = command if command is not None else " ".join(shlex.quote(a) for a in sys.argv)
        self.host = socket.gethostname()
        self.taken_over: dict | None = None
        self._fd: int | None = None

    # public ---------------------------------------------------------------------------
    @property
    def held(self) -> bool:
        return self._fd is not None

    def info(self) -> dict:
        return {
            "pid": os.getpid(),
            "host": self.host,
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": self.command,
        }

    def __enter__(self) -> RunLock:
        if self._fd is not None:
            raise RunFolderBusy(f"{self.path} is already held by this RunLock; do not enter it twice", lock=self.path)
        check_out_dir(self.out_dir)
        for _ in range(20):  # retried only when the file vanished or was replaced under us
            if self._try_create() or self._try_take_over():
                return self
        raise RunFolderBusy(
            f"could not lock {self.path}: it keeps changing; another run is starting in "
            f"{self.out_dir}? Pass another --out",
            lock=self.path,
        )  # pragma: no cover

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        """Remove the lock file (when it is still ours) and drop the ``flock``; idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            st = os.fstat(fd)
            cur = os.stat(self.path)
            if (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock

    # internals ------------------------------------------------------------------------
    def _write(self, fd: int) -> None:
        data = (json.dumps(self.info()) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)

    def _flock(self, fd: int) -> bool | None:
        """True: locked; False: another open file holds it; None: no flock here (use the pid)."""
        if fcntl is None:  # pragma: no cover - Windows
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (BlockingIOError, PermissionError):
            return False
        except OSError as exc:  # e.g. a file system without flock (some NFS): rely on the file and pid
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return None
            raise

    def _same_file(self, fd: int) -> bool:
        try:
            st, cur = os.fstat(fd), os.stat(self.path)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino)

    def _try_create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise RunFolderError(
                f"cannot create the lock file {self.path} ({exc.strerror or exc}); make "
                f"{self.out_dir} writable or pass another --out"
            ) from exc
        for _ in range(100):  # another process may be inspecting our fresh (still empty) file for a moment
            if self._flock(fd) is not False:
                break
            time.sleep(0.01)
        else:
            os.close(fd)
            return False
        self._fd = fd
        self._write(fd)
        return True

    def _read_owner(self) -> tuple[dict | None, float]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None, 0.0
        try:
            owner = json.loads(text)
        except ValueError:
            owner = None
        return (owner if isinstance(owner, dict) else {}), age

    def _busy(self, owner: Mapping[str, Any], why: str = "") -> RunFolderBusy:
        return RunFolderBusy(
            f"{self.out_dir} is in use by another run ({_describe(owner) if owner else 'owner unknown'}){why}; "
            f"wait for it to finish or pass another --out. If you are sure no run uses it, delete {self.path}",
            owner=owner,
            lock=self.path,
        )

    def _try_take_over(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False  # released meanwhile: try to create it again
        except OSError as exc:
            raise RunFolderError(
                f"cannot open the lock file {self.path} ({exc.strerror or exc}); fix its "
                f"permissions or pass another --out"
            ) from exc
        try:
            owner, age = self._read_owner()
            if owner is None:
                return False
            locked = self._flock(fd)
            if locked is False:
                raise self._busy(owner)
            if not self._same_file(fd):  # the holder released (unlinked) it while we opened it
                return False
            pid = owner.get("pid")
            host = owner.get("host")
            if not owner:  # empty or damaged: being written right now, or left by a crash
                if age < _YOUNG_LOCK_S:
                    raise self._busy(owner, " (its lock file is being written)")
            elif host != self.host:
                # flock is not reliable across hosts (network file systems): never guess
                raise self._busy(owner, f" (on another host; this is {self.host})")
            elif not isinstance(pid, int) or (locked is None and _pid_alive(pid)):
                raise self._busy(owner)
            elif pid == os.getpid():
                raise self._busy(owner, " (this very process: a RunLock on this folder is already held)")
            # stale: our flock succeeded, so the recorded owner no longer holds it (dead, or pid reused)
            self._write(fd)
            self._fd, fd = fd, None
            self.taken_over = dict(owner)
            warnings.warn(
                f"{self.path}: took over a stale lock left by "
                f"{_describe(owner) if owner else 'an unknown process'}, which no longer runs",
                StaleLockWarning,
                stacklevel=3,
            )
            return True
        finally:
            if fd is not None:
                os.close(fd)


# --------------------------------------------------------------------------------------
# the run's identity
# --------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-able, order-stable form of a field value (dataclasses, paths, tuples, devices ...)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _resumable(key: str) -> bool:
    return key.split(".")[-1] in RESUMABLE_FIELDS


def run_identity(**fields: Any) -> dict:
    """The identity of a run, to store in its checkpoint.

    ``fields`` are whatever defines the run: ``model``, ``data``, ``profile`` and any others
    (``seed``, ``lr``, ``size``, ``batch_size``, a nested ``config`` dict or dataclass ...).
    Returns ``{"version", "model", "data", "profile", "config_hash", "fields"}`` where
    ``config_hash`` is the sha256 (16 hex digits) of every field except those in
    :data:`RESUMABLE_FIELDS` (``epochs`` ...), and ``fields`` keeps them all (flattened,
    ``config.lr``) so that :func:`identity_differences` can name what changed.
    """
    flat = _flatten(_plain(dict(fields)))
    defining = {k: v for k, v in flat.items() if not _resumable(k)}
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "version": IDENTITY_VERSION,
        "model": flat.get("model"),
        "data": flat.get("data"),
        "profile": flat.get("profile"),
        "config_hash": digest,
        "fields": flat,
    }


def _short(v: Any) -> str:
    s = "(not set)" if v is _MISSING else json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


_MISSING = object()


def _changes(saved: Mapping[str, Any], current: Mapping[str, Any], resumable: bool) -> list[str]:
    a = dict(saved.get("fields") or {})
    b = dict(current.get("fields") or {})
    order = ["model", "data", "profile"]
    keys = order + sorted((set(a) | set(b)) - set(order))
    out = []
    for k in keys:
        va, vb = a.get(k, _MISSING), b.get(k, _MISSING)
        if va == vb or _resumable(k) != resumable:
            continue
        out.append(f"{k}: {_short(va)} -> {_short(vb)}")
    return out


def identity_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences that make ``current`` a different run than ``saved``
    (``"data: synthetic-polyp -> kvasir-seg"``); fields in :data:`RESUMABLE_FIELDS` are left out
    (see :func:`allowed_changes`). Empty when the run can be resumed."""
    diffs = _changes(saved, current, resumable=False)
    if not diffs and saved.get("config_hash") != current.get("config_hash") and saved.get("fields") is None:
        diffs.append(f"config_hash: {saved.get('config_hash')} -> {current.get('config_hash')}")
    return diffs


def allowed_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Changes that may go on with the same run (``"epochs: 10 -> 20"``): report them."""
    return _changes(saved, current, resumable=True)


def check_resume(
    saved: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    done_epochs: int | None = None,
    out: str | os.PathLike | None = None,
) -> list[str]:
    """Decide whether a checkpoint with identity ``saved`` may be resumed by ``current``.

    Returns the lines to report (allowed changes; a note when the checkpoint has no identity).
    Raises :class:`RunIdentityMismatch` naming the differences, with ``--no-resume`` or a new
    ``--out`` as the fix; raises :class:`UsageError` when the current ``epochs`` field (top level,
    else a nested one such as ``config.epochs``) is not more than ``done_epochs`` (the run would
    train nothing).
    """
    where = f" in {out}" if out is not None else ""
    if not saved:
        notes = [
            f"the checkpoint{where} has no run identity (written by an older mslib): it cannot be checked "
            "against this run; pass --no-resume to start a new one"
        ]
    else:
        if not isinstance(saved, Mapping):
            raise RunIdentityMismatch(
                f"the checkpoint{where} holds a damaged run identity ({type(saved).__name__}); "
                "pass --no-resume to start over, or another --out"
            )
        diffs = identity_differences(saved, current)
        if diffs:
            raise RunIdentityMismatch(
                f"the checkpoint{where} belongs to a different run ({'; '.join(diffs)}); resuming would continue "
                "that run. Pass --no-resume to start a new run there (the old checkpoint is replaced), or "
                "another --out",
                diffs,
            )
        notes = [f"resuming with a change: {c}" for c in allowed_changes(saved, current)]
    fields = current.get("fields") or {}
    epochs = fields.get("epochs", next((v for k, v in sorted(fields.items()) if k.split(".")[-1] == "epochs"), None))
    if done_epochs is not None and isinstance(epochs, int) and epochs <= done_epochs:
        raise UsageError(
            f"--epochs {epochs}: the checkpoint{where} has already trained {done_epochs} epoch(s), so "
            f"this run would train nothing; pass --epochs larger than {done_epochs} to continue, or "
            "--no-resume to start over"
        )
    return notes
