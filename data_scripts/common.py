"""What every dataset module shares: its description (:class:`DatasetInfo`), opening the raw
input (archives are checked and unpacked safely, folders used as they are), the writer
context that records provenance and verifies before committing, and the command line.

A dataset module defines ``INFO`` and ``prepare(raw, root=None, *, allow_partial=False, ...)``
and ends with ``if __name__ == "__main__": sys.exit(main())`` where
``main = make_main(INFO, prepare)``. The command line is the same for all of them::

    python -m data_scripts.<module> [--root DIR] [--raw FILE_OR_DIR ...] [--download]
                                    [--cache DIR] [--allow-partial]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

from mslib.data.layout import PreparedWriter
from mslib.utils import data_dir

from .archive import CorruptArchiveError, UnsafeArchiveError, is_archive, safe_extract
from .download import DownloadError, download, sha256_file
from .prepare import VerificationError, check_counts, summarize_repairs, verify_files

__all__ = ["RawFile", "DatasetInfo", "RawInputs", "ManualDownloadRequired", "open_raw", "prepared_writer",
           "fetch", "make_main", "default_cache"]


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
        how = self.manual or (f"run again with --download to fetch them from the official URL(s), or download "
                              f"them yourself")
        return (f"{self.title}: the raw files are not here.\n{how}\nFiles:\n{files or '  (see the homepage)'}\n"
                f"Homepage: {self.homepage}\nTerms: {self.licence}\n"
                f"Then put them in {cache} or pass them with --raw PATH (archives or extracted folders).")


class ManualDownloadRequired(FileNotFoundError):
    """The raw files must be obtained by hand; the message says exactly what and where."""


@dataclass
class RawInputs:
    """Opened raw input: ``paths`` to search (extracted folders, given folders, plain files) and the
    checksums of the archives they came from."""
    paths: list[Path]
    checksums: dict[str, dict] = field(default_factory=dict)

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
            if p.is_file() and is_archive(p):
                digest = sha256_file(p)
                spec = known.get(p.name)
                if spec is not None and spec.sha256 and digest != spec.sha256.lower():
                    raise VerificationError(f"{p}: sha256 is {digest}, the published file has {spec.sha256}; "
                                            "it is corrupt or a different version: download it again")
                out.checksums[p.name] = {"sha256": digest,
                                         "verified_against_published": bool(spec is not None and spec.sha256)}
                try:  # next to the archive (same disk as the downloads); else the system temp folder
                    tmp = Path(tempfile.mkdtemp(prefix=f".extract-{info.name}-", dir=p.parent))
                except OSError:
                    tmp = Path(tempfile.mkdtemp(prefix=f"extract-{info.name}-"))
                tmpdirs.append(tmp)
                out.paths.append(safe_extract(p, tmp / "x"))
            elif p.is_file() and p.name.lower().endswith(".rar"):
                raise CorruptArchiveError(f"{p} is a RAR archive, which Python cannot unpack: extract it with "
                                          "`unrar x` or 7-Zip and pass the extracted folder with --raw")
            else:
                if p.is_file():
                    out.checksums[p.name] = {"sha256": sha256_file(p), "verified_against_published": False}
                out.paths.append(p)
        yield out
    finally:
        for t in tmpdirs:
            shutil.rmtree(t, ignore_errors=True)


def fetch(info: DatasetInfo, cache: Path | None = None, timeout: float = 20.0, progress: bool = True,
          names: Sequence[str] | None = None) -> list[Path]:
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
def prepared_writer(info: DatasetInfo, root: str | Path | None, classes: list[str], channels: int,
                    raw: RawInputs, expected: Mapping[str, int] | None = None,
                    allow_partial: bool = False, **meta) -> Iterator[PreparedWriter]:
    """A :class:`~mslib.data.layout.PreparedWriter` whose metadata record the source, terms, citation
    and raw checksums. After the body: counts are checked against ``expected`` (``"total"`` and split
    names), the written files are re-verified, and only then is the folder committed; the repair
    summary is printed."""
    root = Path(root) if root is not None else data_dir() / info.name
    w = PreparedWriter(root, name=info.name, classes=classes, channels=channels)
    with w:
        w.meta.update(title=info.title, source=info.homepage, licence=info.licence, citation=info.citation,
                      used_by=info.used_by, checksum=raw.checksums,
                      raw_files=[{"filename": f.filename, "urls": list(f.urls), "published_sha256": f.sha256}
                                 for f in info.files])
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
    print(f"{info.name}: {len(w.names)} samples, splits "
          + ", ".join(f"{k}={len(v)}" for k, v in getattr(w, "_splits", {}).items()) + f" -> {root}")


def make_main(info: DatasetInfo, prepare: Callable[..., Path],
              add_arguments: Callable[[argparse.ArgumentParser], None] | None = None) -> Callable[..., int]:
    """Build the module's ``main(argv=None) -> exit code``; extra options go to ``prepare`` as keywords."""

    def main(argv: Sequence[str] | None = None) -> int:
        mod = getattr(prepare, "__module__", "data_scripts.<name>")
        spec = getattr(sys.modules.get(mod), "__spec__", None)  # run with -m, the module is "__main__"
        mod = spec.name if spec is not None and spec.name else mod
        parser = argparse.ArgumentParser(prog=f"python -m {mod}", description=f"Prepare {info.title} ({info.used_by}).")
        parser.add_argument("--root", type=Path, default=None,
                            help=f"where to write the prepared dataset (default: $MSLIB_DATA_DIR/{info.name})")
        parser.add_argument("--raw", type=Path, nargs="+", default=None,
                            help="the downloaded archive(s) or extracted folder(s)")
        parser.add_argument("--download", action="store_true", help="download the raw files from the official URL(s)")
        parser.add_argument("--cache", type=Path, default=None,
                            help="where downloads are kept (default: $MSLIB_DATA_DIR/downloads)")
        parser.add_argument("--allow-partial", action="store_true",
                            help="prepare even when counts differ from the published dataset (prints a warning)")
        parser.add_argument("--timeout", type=float, default=20.0, help="network timeout in seconds")
        if add_arguments is not None:
            add_arguments(parser)
        args = parser.parse_args(argv)
        extra = {k: v for k, v in vars(args).items()
                 if k not in ("root", "raw", "download", "cache", "allow_partial", "timeout")}
        cache = args.cache or default_cache()
        try:
            raw = args.raw
            if raw is None:
                raw = fetch(info, cache, timeout=args.timeout) if args.download else cached_files(info, cache)
                if not raw:
                    raise ManualDownloadRequired(info.instructions(cache))
            root = prepare(raw, args.root, allow_partial=args.allow_partial, **extra)
        except (ManualDownloadRequired, DownloadError, VerificationError, UnsafeArchiveError,
                CorruptArchiveError, FileNotFoundError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"done: {root}")
        return 0

    return main
