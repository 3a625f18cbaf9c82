"""What every dataset module shares: its description (:class:`DatasetInfo`), opening the raw
input (archives are checked and unpacked safely, folders used as they are), the writer
context that records provenance and verifies before committing, and the command line.

A dataset module defines ``INFO`` and ``prepare(raw, root=None, *, allow_partial=False, ...)``
and ends with ``if __name__ == "__main__": sys.exit(main())`` where
``main = make_main(INFO, prepare)``. The command line is the same for all of them::

    python -m data_scripts.<module> [--root DIR] [--raw FILE_OR_DIR ...] [--download]
                                    [--cache DIR] [--allow-partial] [--max-extract-gb GB]
                                    [--max-ratio R]

Safety: ``--root`` is replaced only when it is absent, empty, or a folder this project prepared
(:func:`mslib.data.layout.check_replaceable`); ``--root`` equal to or inside a ``--raw`` folder,
and a ``--raw`` inside ``--root``, are refused (:func:`check_root_and_raw`). Both checks run
before anything is downloaded, unpacked or written. Errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import errno
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mslib.data.layout import PreparedWriter, UnsafeRootError, check_replaceable
from mslib.utils import data_dir

from .archive import CorruptArchiveError, UnsafeArchiveError, extraction_limits, is_archive, safe_extract
from .download import DownloadError, download, sha256_file
from .prepare import VerificationError, check_counts, summarize_repairs, verify_files

__all__ = [
    "RawFile",
    "DatasetInfo",
    "RawInputs",
    "ManualDownloadRequired",
    "open_raw",
    "prepared_writer",
    "fetch",
    "make_main",
    "default_cache",
    "check_root_and_raw",
    "describe_os_error",
]


@dataclass(frozen=True)
class RawFile:
    """One file of the original distribution. ``urls``: official URL first, then mirrors (empty:
    manual download). ``sha256``/``md5``: published or previously verified checksum, else ``None``."""

    filename: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """Provenance of a dataset: where it comes from, its terms, and who uses it."""

    name: str
    title: str
    homepage: str
    licence: str
    citation: str
    used_by: str
    size: str
    files: tuple[RawFile, ...] = ()
    manual: str = ""  # how to obtain the files by hand (registration, licence click, no stable URL)

    @property
    def automated(self) -> bool:
        return bool(self.files) and all(f.urls for f in self.files) and not self.manual

    def instructions(self, cache: Path) -> str:
        files = "\n".join(f"  - {f.filename}" + (f"  ({f.urls[0]})" if f.urls else "") for f in self.files)
        how = self.manual or (
            "run again with --download to fetch them from the official URL(s), or download them yourself"
        )
        return (
            f"{self.title}: the raw files are not here.\n{how}\nFiles:\n{files or '  (see the homepage)'}\n"
            f"Homepage: {self.homepage}\nTerms: {self.licence}\n"
            f"Then put them in {cache} or pass them with --raw PATH (archives or extracted folders)."
        )


class ManualDownloadRequired(FileNotFoundError):
    """The raw files must be obtained by hand; the message says exactly what and where."""


@dataclass
class RawInputs:
    """Opened raw input: ``paths`` to search (extracted folders, given folders, plain files) and the
    checksums of the archives they came from."""

    paths: list[Path]
    checksums: dict[str, dict] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)  # what the user passed as --raw

    @property
    def dirs(self) -> list[Path]:
        return [p for p in self.paths if p.is_dir()]

    @property
    def files(self) -> list[Path]:
        return [p for p in self.paths if p.is_file()]


def default_cache() -> Path:
    return data_dir() / "downloads"


@contextmanager
def open_raw(info: DatasetInfo, raw: str | Path | Sequence[str | Path]) -> Iterator[RawInputs]:
    """Open raw inputs: archives are hashed, checked against a known checksum and unpacked safely
    into a temporary folder (removed afterwards); folders and other files are used as they are."""
    items = [raw] if isinstance(raw, (str, Path)) else list(raw)
    if not items:
        raise ManualDownloadRequired(info.instructions(default_cache()))
    known = {f.filename: f for f in info.files}
    tmpdirs: list[Path] = []
    out = RawInputs(paths=[])
    try:
        for item in items:
            p = Path(item).expanduser()
            if not p.exists():
                raise FileNotFoundError(f"--raw {p} does not exist; pass the dataset's archive or extracted folder")
            out.sources.append(p)
            if not (p.is_file() or p.is_dir()):
                raise ValueError(
                    f"--raw {p} is neither a file nor a folder (a device or FIFO); pass the dataset's "
                    "archive or extracted folder"
                )
            if p.is_file() and is_archive(p):
                digest = sha256_file(p)
                spec = known.get(p.name)
                if spec is not None and spec.sha256 and digest != spec.sha256.lower():
                    raise VerificationError(
                        f"{p}: sha256 is {digest}, the published file has {spec.sha256}; "
                        "it is corrupt or a different version: download it again"
                    )
                out.checksums[p.name] = {
                    "sha256": digest,
                    "verified_against_published": bool(spec is not None and spec.sha256),
                }
                try:  # next to the archive (same disk as the downloads); else the system temp folder
                    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{info.name}-", dir=p.parent))
                except OSError:
                    tmp = Path(tempfile.mkdtemp(prefix=f"extract-{info.name}-"))
                tmpdirs.append(tmp)
                out.paths.append(safe_extract(p, tmp / "x"))
            elif p.is_file() and p.name.lower().endswith(".rar"):
                raise CorruptArchiveError(
                    f"{p} is a RAR archive, which Python cannot unpack: extract it with "
                    "`unrar x` or 7-Zip and pass the extracted folder with --raw"
                )
            else:
                if p.is_file():
                    out.checksums[p.name] = {"sha256": sha256_file(p), "verified_against_published": False}
                out.paths.append(p)
        yield out
    finally:
        for t in tmpdirs:
            shutil.rmtree(t, ignore_errors=True)


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_root_and_raw(root: str | Path, raws: Sequence[str | Path]) -> None:
    """Refuse an output folder that would replace or contain the raw input: ``--root`` equal to or
    inside a ``--raw`` folder, or a ``--raw`` file/folder inside ``--root``; then check that an
    existing ``--root`` may be replaced (:func:`~mslib.data.layout.check_replaceable`). Reads only."""
    r = Path(root).expanduser().resolve()
    for raw in raws:
        s = Path(raw).expanduser().resolve()
        if r == s:
            raise UnsafeRootError(
                f"--root {root} is the --raw input itself; preparing would replace the raw "
                f"download. Choose another --root (e.g. {r.with_name(r.name + '-prepared')})"
            )
        if s.is_dir() and _inside(r, s):
            raise UnsafeRootError(
                f"--root {root} lies inside the --raw folder {raw}; choose a --root outside it "
                f"(e.g. {s.with_name(s.name + '-prepared')}) so the raw files stay untouched"
            )
        if _inside(s, r):
            raise UnsafeRootError(
                f"--raw {raw} lies inside --root {root}, which preparing replaces; move the raw "
                "files out of it, or choose another --root"
            )
    check_replaceable(Path(root).expanduser())


_OS_FIX = {
    errno.EACCES: "check the permissions, or choose another --root/--cache",
    errno.EPERM: "check the permissions, or choose another --root/--cache",
    errno.EROFS: "the file system is read-only: choose a --root/--cache on a writable disk",
    errno.ENOSPC: "the disk is full: free space, or choose a --root/--cache on another disk",
    errno.EDQUOT: "your disk quota is used up: free space, or choose a --root/--cache elsewhere",
    errno.ENAMETOOLONG: "a file name is longer than the file system allows: choose a shorter --root, or "
    "extract the archive yourself with shorter names and pass the folder with --raw",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "a folder stands where a file is expected: move it away or fix the path",
    errno.ELOOP: "too many symbolic links: fix the path",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an :class:`OSError`: what failed, on which path, and the fix."""
    what = exc.strerror or str(exc)
    path = exc.filename if exc.filename is not None else ""
    fix = _OS_FIX.get(exc.errno or -1, "check the path and try again")
    return f"{path}: {what}; {fix}" if path else f"{what}; {fix}"


def fetch(
    info: DatasetInfo,
    cache: Path | None = None,
    timeout: float = 20.0,
    progress: bool = True,
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Download ``info.files`` (or those in ``names``) into ``cache``; return their paths."""
    cache = Path(cache) if cache is not None else default_cache()
    wanted = [f for f in info.files if names is None or f.filename in names]
    manual = [f.filename for f in wanted if not f.urls]
    if manual or not wanted:
        raise ManualDownloadRequired(info.instructions(cache))
    out = []
    for f in wanted:
        path = download(f.urls, cache / f.filename, sha256=f.sha256, md5=f.md5, timeout=timeout, progress=progress)
        if f.sha256 is None:
            print(f"{f.filename}: no published checksum; recorded sha256 {sha256_file(path)} in dataset.json")
        out.append(path)
    return out


def cached_files(info: DatasetInfo, cache: Path) -> list[Path]:
    """Raw files of ``info`` already present in ``cache`` (all of them, or an empty list)."""
    paths = [cache / f.filename for f in info.files]
    return paths if paths and all(p.exists() for p in paths) else []


@contextmanager
def prepared_writer(
    info: DatasetInfo,
    root: str | Path | None,
    classes: list[str],
    channels: int,
    raw: RawInputs,
    expected: Mapping[str, int] | None = None,
    allow_partial: bool = False,
    **meta,
) -> Iterator[PreparedWriter]:
    """A :class:`~mslib.data.layout.PreparedWriter` whose metadata record the source, terms, citation
    and raw checksums. After the body: counts are checked against ``expected`` (``"total"`` and split
    names), the written files are re-verified, and only then is the folder committed; the repair
    summary is printed."""
    root = Path(root).expanduser() if root is not None else data_dir() / info.name
    check_root_and_raw(root, raw.sources)
    w = PreparedWriter(root, name=info.name, classes=classes, channels=channels)
    with w:
        w.meta.update(
            title=info.title,
            source=info.homepage,
            licence=info.licence,
            citation=info.citation,
            used_by=info.used_by,
            checksum=raw.checksums,
            raw_files=[
                {"filename": f.filename, "urls": list(f.urls), "published_sha256": f.sha256} for f in info.files
            ],
        )
        w.meta.update(meta)
        yield w
        splits = w.splits
        got = {"total": len(w.names), **{k: len(v) for k, v in splits.items()}}
        warns = check_counts(info.name, got, expected or {}, allow_partial)
        if warns:
            w.meta.setdefault("warnings", []).extend(warns)
        w.meta["partial"] = bool(w.meta.get("warnings"))
        verify_files(w)
    print(summarize_repairs(info.name, w.repairs))
    print(
        f"{info.name}: {len(w.names)} samples, splits "
        + ", ".join(f"{k}={len(v)}" for k, v in getattr(w, "_splits", {}).items())
        + f" -> {root}"
    )


def make_main(
    info: DatasetInfo,
    prepare: Callable[..., Path],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> Callable[..., int]:
    """Build the module's ``main(argv=None) -> exit code``; extra options go to ``prepare`` as keywords."""

    def main(argv: Sequence[str] | None = None) -> int:
        mod = getattr(prepare, "__module__", "data_scripts.<name>")
        spec = getattr(sys.modules.get(mod), "__spec__", None)  # run with -m, the module is "__main__"
        mod = spec.name if spec is not None and spec.name else mod
        parser = argparse.ArgumentParser(prog=f"python -m {mod}", description=f"Prepare {info.title} ({info.used_by}).")
        parser.add_argument(
            "--root",
            type=Path,
            default=None,
            help=f"where to write the prepared dataset (default: $MSLIB_DATA_DIR/{info.name})",
        )
        parser.add_argument(
            "--raw", type=Path, nargs="+", default=None, help="the downloaded archive(s) or extracted folder(s)"
        )
        parser.add_argument("--download", action="store_true", help="download the raw files from the official URL(s)")
        parser.add_argument(
            "--cache", type=Path, default=None, help="where downloads are kept (default: $MSLIB_DATA_DIR/downloads)"
        )
        parser.add_argument(
            "--allow-partial",
            action="store_true",
            help="prepare even when counts differ from the published dataset (prints a warning)",
        )
        parser.add_argument("--timeout", type=float, default=20.0, help="network timeout in seconds")
        parser.add_argument(
            "--max-extract-gb",
            type=float,
            default=None,
            help="refuse archives that unpack to more than this many GB (default: $MSLIB_EXTRACT_MAX_GB or 200)",
        )
        parser.add_argument(
            "--max-ratio",
            type=float,
            default=None,
            help="refuse archives whose unpacked size exceeds this multiple of the archive's size "
            "(default: $MSLIB_EXTRACT_MAX_RATIO or 200)",
        )
        if add_arguments is not None:
            add_arguments(parser)
        args = parser.parse_args(argv)
        extra = {
            k: v
            for k, v in vars(args).items()
            if k not in ("root", "raw", "download", "cache", "allow_partial", "timeout", "max_extract_gb", "max_ratio")
        }
        root = None
        try:
            for name in ("max_extract_gb", "max_ratio"):
                v = getattr(args, name)
                if v is not None and not v > 0:
                    raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {v}")
            cache = args.cache or default_cache()
            root = args.root.expanduser() if args.root is not None else data_dir() / info.name
            check_root_and_raw(root, args.raw or [])  # before any download, extraction or write
            raw = args.raw
            if raw is None:
                raw = fetch(info, cache, timeout=args.timeout) if args.download else cached_files(info, cache)
                if not raw:
                    raise ManualDownloadRequired(info.instructions(cache))
            max_bytes = None if args.max_extract_gb is None else int(args.max_extract_gb * 1e9)
            with extraction_limits(max_bytes=max_bytes, max_ratio=args.max_ratio):
                root = prepare(raw, args.root, allow_partial=args.allow_partial, **extra)
        except (
            ManualDownloadRequired,
            DownloadError,
            VerificationError,
            UnsafeArchiveError,
            CorruptArchiveError,
            FileNotFoundError,
            UnsafeRootError,
            ValueError,
        ) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"error: {describe_os_error(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(
                f"interrupted: nothing was committed; {root or 'the output folder'} is as it was before "
                "(partial files were removed). Run the same command again to start over.",
                file=sys.stderr,
            )
            return 130
        print(f"done: {root}")
        return 0

    return main
