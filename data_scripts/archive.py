"""Safe unpacking of zip and tar archives.

:func:`safe_extract` checks *every* member before writing a byte and refuses:

- absolute paths (``/etc/passwd``, ``C:\\x``) and paths with a ``..`` component;
- symbolic or hard links whose target leaves the destination (tar), members whose path goes
  through a symbolic link of the archive (a chain of links can leave the folder even when each
  target looks inside), and symlink members in zip files (the :mod:`zipfile` module would write them as text files);
- device files, FIFOs and other special members;
- duplicate member names (the second would silently overwrite the first);
- member names longer than the file system allows (``NAME_MAX``, usually 255 bytes, per component);
- archives that unpack to more than a size limit, or to more than a multiple of their own size
  (a "zip bomb"), and archives that would not fit on the disk.

Size limits (:func:`current_limits`; checked against the sizes the archive declares, which are
what ``zipfile`` and ``tarfile`` write at most, before a byte is written):

==========================  ===========================  =================================================
limit                       default                      change it with
==========================  ===========================  =================================================
total unpacked size         200 GB                       ``max_bytes=``, ``--max-extract-gb``,
                                                         ``$MSLIB_EXTRACT_MAX_GB``
unpacked / archive size     200 (once over 64 MiB)       ``max_ratio=``, ``--max-ratio``,
                                                         ``$MSLIB_EXTRACT_MAX_RATIO``
free disk space             the unpacked size must fit   (not configurable)
==========================  ===========================  =================================================

The largest dataset here (DigestPath, ISIC 2017) unpacks to tens of GB at a ratio close to 1
(JPEG, PNG and ``.nii.gz`` are already compressed); a deflate bomb reaches ratios near 1000.

Tar archives are then extracted with ``filter="data"`` (PEP 706) as a second line of
defence; zip members are written by :mod:`zipfile`, after our own checks. Everything goes
into a temporary sibling folder that is renamed into place only when the whole archive was
read without error, so a truncated or malicious archive leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

__all__ = [
    "safe_extract",
    "archive_kind",
    "is_archive",
    "UnsafeArchiveError",
    "CorruptArchiveError",
    "ArchiveLimitError",
    "extraction_limits",
    "current_limits",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_RATIO",
]

#: Default bound on the total unpacked size (bytes) and on unpacked size / archive size.
DEFAULT_MAX_BYTES = 200 * 10**9
DEFAULT_MAX_RATIO = 200.0
#: The ratio bound applies once the unpacked total exceeds this (tiny archives of text compress well).
RATIO_FLOOR = 64 << 20
#: Written into every folder :func:`safe_extract` makes; only such a folder (or an empty one) is replaced.
EXTRACTED_MARKER = ".mslib-extracted"
ENV_MAX_GB, ENV_MAX_RATIO = "MSLIB_EXTRACT_MAX_GB", "MSLIB_EXTRACT_MAX_RATIO"
_OVERRIDE: dict[str, float | None] = {"max_bytes": None, "max_ratio": None}

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class UnsafeArchiveError(ValueError):
    """A member would land outside the target folder (or is a link/device file)."""


class CorruptArchiveError(ValueError):
    """The archive is truncated, has CRC errors, or is not an archive at all."""


class ArchiveLimitError(UnsafeArchiveError):
    """The archive would unpack to more than the limits allow (size, ratio, disk space, name length)."""


def _env_number(name: str) -> float | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${name}={raw!r} is not a number; set it to a positive number or unset it") from None
    if not value > 0:
        raise ValueError(f"${name}={raw!r} must be positive; set it to a positive number or unset it")
    return value


def current_limits(max_bytes: int | None = None, max_ratio: float | None = None) -> tuple[int, float]:
    """The limits in force: the arguments, else :func:`extraction_limits`, else the environment
    (``$MSLIB_EXTRACT_MAX_GB``, ``$MSLIB_EXTRACT_MAX_RATIO``), else the defaults."""
    if max_bytes is None:
        max_bytes = _OVERRIDE["max_bytes"]
    if max_bytes is None:
        gb = _env_number(ENV_MAX_GB)
        max_bytes = int(gb * 1e9) if gb is not None else DEFAULT_MAX_BYTES
    if max_ratio is None:
        max_ratio = _OVERRIDE["max_ratio"]
    if max_ratio is None:
        max_ratio = _env_number(ENV_MAX_RATIO) or DEFAULT_MAX_RATIO
    return int(max_bytes), float(max_ratio)


@contextlib.contextmanager
def extraction_limits(max_bytes: int | None = None, max_ratio: float | None = None):
    """Within the block, :func:`safe_extract` uses these limits (``None``: keep the current one)."""
    old = dict(_OVERRIDE)
    if max_bytes is not None:
        _OVERRIDE["max_bytes"] = max_bytes
    if max_ratio is not None:
        _OVERRIDE["max_ratio"] = max_ratio
    try:
        yield
    finally:
        _OVERRIDE.update(old)


def _gb(n: float) -> str:
    """MiB below 1 GiB, else GB (decimal, as ``--max-extract-gb``)."""
    return f"{n / 1e9:.3g} GB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


class _Budget:
    """Running checks over the members: size, ratio, names (length and duplicates)."""

    def __init__(self, archive: Path, dest: Path, max_bytes: int, max_ratio: float):
        self.archive, self.dest = archive, dest
        self.max_bytes, self.max_ratio = max_bytes, max_ratio
        self.archive_size = max(1, archive.stat().st_size)
        self.total = 0
        self.names: set[str] = set()
        try:
            self.name_max = os.pathconf(dest.parent, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            self.name_max = 255
        try:
            self.path_max = os.pathconf(dest.parent, "PC_PATH_MAX")
        except (OSError, ValueError, AttributeError):
            self.path_max = 4096

    def add(self, name: str, size: int) -> None:
        if name in self.names:
            raise UnsafeArchiveError(
                f"{self.archive}: member {name!r} appears twice; the second copy would "
                "silently replace the first. Extract the archive yourself, check which copy "
                "is right, and pass the folder with --raw"
            )
        self.names.add(name)
        for part in name.split("/"):
            if len(os.fsencode(part)) > self.name_max:
                raise ArchiveLimitError(
                    f"{self.archive}: member name {part[:40]!r}... is {len(os.fsencode(part))} bytes long, but the "
                    f"file system at {self.dest.parent} allows {self.name_max}; extract the archive yourself with "
                    "a tool that shortens names (or on another file system) and pass the folder with --raw"
                )
        if len(os.fsencode(str(self.dest / name))) + 64 > self.path_max:
            raise ArchiveLimitError(
                f"{self.archive}: member {name[:60]!r}... would give a path longer than the file "
                f"system allows ({self.path_max} bytes); choose a shorter --cache/--raw location"
            )
        self.total += max(0, int(size))
        if self.total > self.max_bytes:
            raise ArchiveLimitError(
                f"{self.archive} unpacks to more than {_gb(self.max_bytes)} (the limit; {_gb(self.total)} counted "
                f"so far); nothing was written. If this archive is genuine, raise the limit with --max-extract-gb "
                f"or ${ENV_MAX_GB}"
            )
        if self.total > RATIO_FLOOR and self.total > self.max_ratio * self.archive_size:
            raise ArchiveLimitError(
                f"{self.archive} ({_gb(self.archive_size)}) unpacks to at least {_gb(self.total)}, more than "
                f"{self.max_ratio:g} times its size: a decompression bomb or a damaged archive; nothing was "
                f"written. If it is genuine, raise the limit with --max-ratio or ${ENV_MAX_RATIO}"
            )

    def check_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.dest.parent).free
        except OSError:
            return
        if self.total > free:
            raise ArchiveLimitError(
                f"{self.archive} unpacks to {_gb(self.total)} but only {_gb(free)} are free "
                f"at {self.dest.parent}; free space, or put the archive on a larger disk"
            )


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
        raise CorruptArchiveError(
            f"{path}: cannot read it as a tar archive ({exc}); the file is truncated "
            "or corrupt: delete it and download it again"
        ) from exc
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"Rar!"):
        raise CorruptArchiveError(
            f"{path} is a RAR archive, which Python cannot unpack: extract it with "
            "`unrar x` or 7-Zip and pass the extracted folder with --raw"
        )
    if head.startswith(b"PK"):
        raise CorruptArchiveError(
            f"{path} starts like a zip file but has no readable central directory: "
            "it is truncated; delete it and download it again"
        )
    raise CorruptArchiveError(
        f"{path} is neither a zip nor a tar archive (truncated, or a HTML error page?); delete it and download it again"
    )


def _check_name(archive: Path, name: str) -> str:
    """Normalised member name; raises :class:`UnsafeArchiveError` when it leaves the target."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or norm.startswith("//"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(
            f"{archive}: member {name!r} contains '..' and would land outside the target folder; refusing to extract"
        )
    return "/".join(parts)


def _check_link(archive: Path, member: str, target: str, hard: bool) -> None:
    target = target.replace("\\", "/")
    if target.startswith("/"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} points outside the target folder")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchiveError(f"{archive}: link {member!r} -> {target!r} points outside the target folder")


def _check_zip(archive: Path, zf: zipfile.ZipFile, budget: _Budget) -> None:
    for info in zf.infolist():
        name = _check_name(archive, info.filename)
        if name:
            budget.add(name + ("/" if info.is_dir() else ""), info.file_size)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "replace")
            _check_link(archive, name, target, hard=False)
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} is a symbolic link; zip symlinks "
                "are not supported (extract the archive yourself and pass the folder)"
            )
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a special file; refusing to extract")


def _check_tar(archive: Path, tf: tarfile.TarFile, budget: _Budget) -> None:
    links: set[str] = set()
    for m in tf:  # lazily: a bomb is refused as soon as the running total passes a limit
        name = _check_name(archive, m.name)
        if name:
            budget.add(name + ("/" if m.isdir() else ""), m.size if m.isfile() else 0)
        parts = name.split("/")
        through = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in links), None)
        if through is not None:  # a chain of links can leave the folder even when each target looks inside
            raise UnsafeArchiveError(
                f"{archive}: member {m.name!r} goes through the symbolic link {through!r}; refusing to extract"
            )
        if m.issym():
            links.add(name)
        if m.issym() or m.islnk():
            _check_link(archive, name, m.linkname, hard=m.islnk())
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device file or FIFO; refusing to extract")


def safe_extract(
    archive: str | os.PathLike, dest: str | os.PathLike, max_bytes: int | None = None, max_ratio: float | None = None
) -> Path:
    """Unpack a zip or tar archive into ``dest`` (replaced atomically); return ``dest``.

    Raises :class:`UnsafeArchiveError` for a path-traversal, absolute, link, device or duplicate
    member, :class:`ArchiveLimitError` when the archive exceeds ``max_bytes``/``max_ratio`` (see
    :func:`current_limits` for the defaults), does not fit on the disk or has a member name too
    long for the file system, and :class:`CorruptArchiveError` for a truncated or damaged
    archive; in every case ``dest`` is left as it was and no temporary folder remains.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    if dest.is_file():
        raise UnsafeArchiveError(
            f"{dest} is a file; refusing to replace it with the unpacked {archive.name}: choose another destination"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    budget = _Budget(archive, dest, *current_limits(max_bytes, max_ratio))
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        if kind == "zip":
            try:
                with zipfile.ZipFile(archive) as zf:
                    _check_zip(archive, zf, budget)
                    budget.check_disk()
                    zf.extractall(tmp)
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise CorruptArchiveError(
                    f"{archive}: damaged zip archive ({exc}); delete it and download it again"
                ) from exc
        else:
            try:
                with tarfile.open(archive, "r:*") as tf:
                    _check_tar(archive, tf, budget)
                    budget.check_disk()
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, filter="data")
                    else:  # pragma: no cover - Python without PEP 706 backport
                        tf.extractall(tmp)
            except (tarfile.ReadError, tarfile.FilterError, EOFError, zlib.error, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:  # disk full, permissions ...: not corruption
                    raise
                if isinstance(exc, tarfile.FilterError):
                    raise UnsafeArchiveError(f"{archive}: {exc}; refusing to extract") from exc
                raise CorruptArchiveError(
                    f"{archive}: damaged or truncated tar archive ({exc}); delete it and download it again"
                ) from exc
        (tmp / EXTRACTED_MARKER).write_text(f"{archive.name}\n", encoding="utf-8")
        if (
            dest.is_symlink()
            or (dest.exists() and not dest.is_dir())
            or (dest.is_dir() and any(True for _ in dest.iterdir()) and not (dest / EXTRACTED_MARKER).is_file())
        ):
            raise UnsafeArchiveError(
                f"{dest} already exists and was not unpacked here by mslib; refusing to "
                "replace it: choose another destination or delete it yourself"
            )
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
            os.replace(dest, old)  # onto the fresh empty folder: never over something that exists
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
