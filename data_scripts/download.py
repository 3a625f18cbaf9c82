"""Streamed, resumable, checksum-verified downloads (standard library only).

:func:`download` fetches one file:

1. bytes are streamed into ``DEST.part`` with a tqdm progress bar;
2. if ``DEST.part`` already holds bytes from an interrupted run, an HTTP ``Range`` request
   asks for the rest; a server that ignores ``Range`` (status 200) makes it start again;
3. a transfer that ends before ``Content-Length`` keeps the ``.part`` file (the next call
   resumes) and raises :class:`IncompleteDownloadError`;
4. after the last byte the sha256 (or md5) is checked; a mismatch deletes the ``.part``
   file and tries the next mirror;
5. only a verified file is moved into place with :func:`os.replace` (atomic).

Without a network the first connection fails within ``timeout`` seconds with an
:class:`OfflineError` that names the URL and says where to put the file by hand.

Where no checksum is published we store ``None`` and *record* the sha256 of what the
user received (never an invented value): :func:`sha256_file` computes it.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

__all__ = [
    "download",
    "sha256_file",
    "file_digest",
    "verify_checksum",
    "DownloadError",
    "OfflineError",
    "ChecksumError",
    "IncompleteDownloadError",
]

CHUNK = 1 << 20
USER_AGENT = "mslib-data-scripts/0.1 (+https://github.com/)"


class DownloadError(RuntimeError):
    """A download failed (the message says which URL and what to do)."""


class OfflineError(DownloadError):
    """No connection could be made: there is probably no internet here."""


class ChecksumError(DownloadError):
    """The file's checksum differs from the published one."""


class IncompleteDownloadError(DownloadError):
    """The server closed the connection before the announced length; re-run to resume."""


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (``algo`` is any :mod:`hashlib` name)."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file (memoised by path, size and mtime: archives are hashed once)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = file_digest(p, "sha256")
    return _SHA_CACHE[key]


def verify_checksum(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> str:
    """Check ``path`` against the given digests; return its sha256. Raises :class:`ChecksumError`."""
    got = sha256_file(path)
    if sha256 is not None and got.lower() != sha256.lower():
        raise ChecksumError(
            f"{path}: sha256 is {got}, expected {sha256}. The file is corrupt or a "
            "different version: delete it and download it again."
        )
    if md5 is not None:
        got_md5 = file_digest(path, "md5")
        if got_md5.lower() != md5.lower():
            raise ChecksumError(
                f"{path}: md5 is {got_md5}, expected {md5}. The file is corrupt or a "
                "different version: delete it and download it again."
            )
    return got


def _is_offline(exc: BaseException) -> bool:
    """True for errors that mean "no route to the host" rather than "the host said no"."""
    if isinstance(exc, urllib.error.HTTPError):
        return False
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (socket.gaierror, socket.timeout, TimeoutError, ConnectionError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EADDRNOTAVAIL,
        errno.ENETDOWN,
    )


def _fetch_once(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the missing bytes of ``url`` to ``part`` (resuming with Range when possible)."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # range not satisfiable: our .part is complete or bogus
            part.unlink()
            return _fetch_once(url, part, timeout, progress)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    with resp:
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if status == 206 and have:
            crange = resp.headers.get("Content-Range", "")
            if not crange.startswith(f"bytes {have}-"):
                raise DownloadError(f"{url}: server answered Range {have}- with {crange!r}; delete {part} and retry")
            mode, start, total = "ab", have, (have + length if length is not None else None)
        else:  # 200: the server ignores Range (or nothing to resume): start again
            mode, start, total = "wb", 0, length
        got = 0
        opts = {} if progress else {"disable": True}  # else tqdm's own TQDM_DISABLE etc. decide
        bar = tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=Path(part.name[:-5]).name,
            leave=False,
            **opts,
        )
        # read1 returns what has arrived (up to CHUNK): bytes received before a stall are written to
        # the .part file, where read(CHUNK) would lose them when the timeout strikes mid-chunk
        read = getattr(resp, "read1", resp.read)
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = read(CHUNK)
                    except http.client.IncompleteRead as exc:
                        fh.write(exc.partial)
                        got += len(exc.partial)
                        block = b""
                    if not block:
                        break
                    fh.write(block)
                    got += len(block)
                    bar.update(len(block))
        except (TimeoutError, ConnectionError) as exc:
            raise IncompleteDownloadError(
                f"{url}: connection lost after {start + got} bytes ({exc}); run the same command again "
                f"to resume from {part}"
            ) from exc
        finally:
            bar.close()
        if length is not None and got < length:
            raise IncompleteDownloadError(
                f"{url}: transfer cut off after {start + got} of {start + length} bytes; run the same "
                f"command again to resume from {part}"
            )


def download(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    sha256: str | None = None,
    md5: str | None = None,
    timeout: float = 20.0,
    progress: bool = True,
    manual_hint: str = "",
) -> Path:
    """Download ``urls`` (tried in order, mirrors after the official URL) to ``dest``.

    Returns ``dest``. An existing ``dest`` is verified (when a checksum is known) and reused.
    Raises :class:`OfflineError` when no URL can be reached, :class:`ChecksumError` when every
    mirror served a file with the wrong checksum, :class:`IncompleteDownloadError` when the
    transfer was cut (re-run to resume).
    """
    if isinstance(urls, str):
        urls = [urls]
    urls = list(urls)
    if not urls:
        raise ValueError(f"no URL for {dest}: this file must be downloaded by hand")
    dest = Path(dest)
    for parent in dest.parents:
        if parent.exists():
            if not parent.is_dir():
                raise DownloadError(
                    f"cannot download into {dest.parent}: {parent} is a file, not a folder; pass "
                    "--cache FOLDER (or move the file away)"
                )
            break
    if dest.is_dir():
        raise DownloadError(
            f"{dest} is a folder, but the download {dest.name} goes there; move the folder away or pass another --cache"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    hint = manual_hint or (f"download it with a browser from {urls[0]} and put it at {dest} (or pass it with --raw)")
    if dest.exists():
        verify_checksum(dest, sha256, md5)
        return dest
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    offline: list[str] = []
    for url in urls:
        try:
            _fetch_once(url, part, timeout, progress)
        except IncompleteDownloadError:
            raise
        except DownloadError as exc:
            errors.append(str(exc))
            continue
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if _is_offline(exc):
                offline.append(f"{url} ({getattr(exc, 'reason', exc)})")
            else:
                errors.append(f"{url}: {exc}")
            continue
        try:
            verify_checksum(part, sha256, md5)
        except ChecksumError as exc:
            part.unlink(missing_ok=True)
            errors.append(f"{url}: {exc}")
            continue
        os.replace(part, dest)
        return dest
    if offline and not errors:
        raise OfflineError(
            f"cannot reach {', '.join(offline)}: there is no internet connection here (or the host is "
            f"down). To continue offline, {hint}."
        )
    if errors and all("sha256 is" in e or "md5 is" in e for e in errors):
        raise ChecksumError("every mirror served a file with the wrong checksum:\n  " + "\n  ".join(errors))
    raise DownloadError(
        f"could not download {dest.name}:\n  " + "\n  ".join(errors + offline) + f"\nTo continue, {hint}."
    )
