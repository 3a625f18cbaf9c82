"""Safe unpacking of zip and tar archives.

:func:`safe_extract` checks *every* member before writing a byte and refuses:

- absolute paths (``/etc/passwd``, ``C:\\x``) and paths with a ``..`` component;
- symbolic or hard links whose target leaves the destination (tar), members whose path goes
  through a symbolic link of the archive (a chain of links can leave the folder even when each
  target looks inside), and symlink members in zip files (the :mod:`zipfile` module would write them as text files);
- device files, FIFOs and other special members.

Tar archives are then extracted with ``filter="data"`` (PEP 706) as a second line of
defence; zip members are written by :mod:`zipfile`, after our own checks. Everything goes
into a temporary sibling folder that is renamed into place only when the whole archive was
read without error, so a truncated or malicious archive leaves nothing behind.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

__all__ = ["safe_extract", "archive_kind", "is_archive", "UnsafeArchiveError", "CorruptArchiveError"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class UnsafeArchiveError(ValueError):
    """A member would land outside the target folder (or is a link/device file)."""


class CorruptArchiveError(ValueError):
    """The archive is truncated, has CRC errors, or is not an archive at all."""


def is_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like an archive we can unpack (by its name)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def archive_kind(path: str | os.PathLike) -> str:
    """``"zip"`` or ``"tar"``, from the file's contents (not its name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"archive {path} does not exist")
    if zipfile.is_zipfile(path):
        return "zip"
    try:
        if tarfile.is_tarfile(path):
            return "tar"
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptArchiveError(f"{path}: cannot read it as a tar archive ({exc}); the file is truncated "
                                  "or corrupt: delete it and download it again") from exc
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"Rar!"):
        raise CorruptArchiveError(f"{path} is a RAR archive, which Python cannot unpack: extract it with "
                                  "`unrar x` or 7-Zip and pass the extracted folder with --raw")
    if head.startswith(b"PK"):
        raise CorruptArchiveError(f"{path} starts like a zip file but has no readable central directory: "
                                  "it is truncated; delete it and download it again")
    raise CorruptArchiveError(f"{path} is neither a zip nor a tar archive (truncated, or a HTML error page?); "
                              "delete it and download it again")


def _check_name(archive: Path, name: str) -> str:
    """Normalised member name; raises :class:`UnsafeArchiveError` when it leaves the target."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or norm.startswith("//"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..' and would land outside the "
                                 "target folder; refusing to extract")
    return "/".join(parts)


def _check_link(archive: Path, member: str, target: str, hard: bool) -> None:
    target = target.replace("\\", "/")
    if target.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} points outside the target folder")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} points outside the target folder")


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        name = _check_name(archive, info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "replace")
            _check_link(archive, name, target, hard=False)
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a symbolic link; zip symlinks "
                                     "are not supported (extract the archive yourself and pass the folder)")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a special file; refusing to extract")


def _check_tar(archive: Path, tf: tarfile.TarFile) -> None:
    links: set[str] = set()
    for m in tf.getmembers():
        name = _check_name(archive, m.name)
        parts = name.split("/")
        through = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in links), None)
        if through is not None:  # a chain of links can leave the folder even when each target looks inside
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} goes through the symbolic link {through!r}; "
                                     "refusing to extract")
        if m.issym():
            links.add(name)
        if m.issym() or m.islnk():
            _check_link(archive, name, m.linkname, hard=m.islnk())
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device file or FIFO; refusing to extract")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Unpack a zip or tar archive into ``dest`` (replaced atomically); return ``dest``.

    Raises :class:`UnsafeArchiveError` for a path-traversal, absolute, link or device member
    and :class:`CorruptArchiveError` for a truncated or damaged archive; in both cases
    ``dest`` is left as it was and no temporary folder remains.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        if kind == "zip":
            try:
                with zipfile.ZipFile(archive) as zf:
                    _check_zip(archive, zf)
                    zf.extractall(tmp)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise CorruptArchiveError(f"{archive}: damaged zip archive ({exc}); delete it and download it "
                                          "again") from exc
        else:
            try:
                with tarfile.open(archive, "r:*") as tf:
                    _check_tar(archive, tf)
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, filter="data")
                    else:  # pragma: no cover - Python without PEP 706 backport
                        tf.extractall(tmp)
            except (tarfile.ReadError, tarfile.FilterError, EOFError, zlib.error, OSError) as exc:
                if isinstance(exc, tarfile.FilterError):
                    raise UnsafeArchiveError(f"{archive}: {exc}; refusing to extract") from exc
                raise CorruptArchiveError(f"{archive}: damaged or truncated tar archive ({exc}); delete it and "
                                          "download it again") from exc
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
