"""The prepared on-disk layout every dataset in mslib uses, and a safe writer for it.

::

    ROOT/images/NAME.png    RGB (3 channels) or grayscale (1 channel) uint8
    ROOT/masks/NAME.png     uint8 class indices, 0 = background
    ROOT/splits/train.txt   one NAME per line (also val.txt, test.txt, fold*.txt ...)
    ROOT/dataset.json       name, classes, channels, source, licence, checksum, repairs, counts

:class:`PreparedWriter` writes into a temporary sibling folder and renames it into place
only when everything was written and checked, so an interrupted or failed preparation
never leaves a half-written dataset behind, and re-running is idempotent.

What the writer may replace
---------------------------

``dataset.json`` carries the marker ``"prepared_by": "mslib"`` (:data:`MARKER`). An existing
``root`` is replaced only when it is a folder this project wrote: its ``dataset.json`` holds
the marker (or, for folders written before the marker existed, ``layout_version``) *and* the
folder holds nothing but the layout (``images/*.png``, ``masks/*.png``, ``splits/*.txt``,
``dataset.json``; operating-system litter such as ``.DS_Store`` is tolerated). An empty folder
is filled. Anything else (a regular file, a folder of the user's, a prepared folder into which
someone put their own files) is refused with :class:`UnsafeRootError` naming the path and the
fix, before anything is written; nothing the project did not create is renamed or deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

LAYOUT_VERSION = 1
IMAGES, MASKS, SPLITS, META = "images", "masks", "splits", "dataset.json"
#: The marker written into every ``dataset.json`` by :class:`PreparedWriter` (``{"prepared_by": "mslib"}``).
MARKER = {"prepared_by": "mslib"}
#: Files an operating system drops into folders; tolerated in a folder that is replaced.
_OS_LITTER = (".DS_Store", "Thumbs.db", "desktop.ini")

__all__ = [
    "PreparedWriter",
    "read_metadata",
    "read_split",
    "read_text",
    "read_text_lines",
    "check_replaceable",
    "UnsafeRootError",
    "MARKER",
    "LAYOUT_VERSION",
    "IMAGES",
    "MASKS",
    "SPLITS",
    "META",
]


class UnsafeRootError(ValueError):
    """The output folder is not one this project prepared: replacing it could lose a user's files."""


def _litter(name: str) -> bool:
    return name in _OS_LITTER or name.startswith("._")


def _foreign_entries(root: Path) -> list[str]:
    """Entries of ``root`` that :class:`PreparedWriter` would not have written (relative paths)."""
    allowed = {IMAGES: ".png", MASKS: ".png", SPLITS: ".txt"}
    out: list[str] = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if _litter(entry.name):
            continue
        if entry.name == META and entry.is_file(follow_symlinks=False):
            continue
        if entry.name in allowed and entry.is_dir(follow_symlinks=False):
            for sub in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if _litter(sub.name):
                    continue
                if not (sub.is_file(follow_symlinks=False) and sub.name.endswith(allowed[entry.name])):
                    out.append(f"{entry.name}/{sub.name}")
            continue
        out.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return out


def check_replaceable(root: str | os.PathLike) -> None:
    """Raise :class:`UnsafeRootError` unless ``root`` is absent, an empty folder, or a folder this
    project prepared (see the module docstring). Reads only; changes nothing."""
    root = Path(root)
    if root.is_symlink() and not root.exists():
        raise UnsafeRootError(f"--root {root} is a broken symbolic link; remove the link or choose another --root")
    if not root.exists():
        return
    if not root.is_dir():
        raise UnsafeRootError(
            f"--root {root} is a file, not a folder; the prepared dataset is a folder: choose "
            f"another --root (e.g. {root.with_name(root.name + '-prepared')}); the file was "
            "left as it is"
        )
    try:
        entries = [e for e in os.listdir(root) if not _litter(e)]
    except OSError as exc:
        raise UnsafeRootError(
            f"--root {root} cannot be listed ({exc.strerror}); check its permissions or choose another --root"
        ) from exc
    if not entries:
        return
    meta_path = root / META
    meta = None
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError):
            meta = None
    ours = isinstance(meta, dict) and (meta.get("prepared_by") == MARKER["prepared_by"] or "layout_version" in meta)
    if not ours:
        raise UnsafeRootError(
            f"--root {root} is a folder that this project did not prepare (no {META} with "
            f'"prepared_by": "mslib"; it holds e.g. {", ".join(sorted(entries)[:5])}); refusing to replace it, '
            "nothing was changed. Choose an empty or new folder for --root (e.g. "
            f"{root / 'prepared'}), or delete this folder yourself if you are sure"
        )
    foreign = _foreign_entries(root)
    if foreign:
        raise UnsafeRootError(
            f"--root {root} is a prepared dataset, but it also holds files this project did not write: "
            f"{', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}; refusing to replace it, nothing was "
            "changed. Move those files elsewhere, or choose another --root"
        )


class PreparedWriter:
    """Write a dataset in the prepared layout, atomically.

    Use as a context manager::

        with PreparedWriter(root, name="kvasir-seg", classes=["background", "polyp"]) as w:
            w.add("cju0qkwl35piu0993l0dewei2", image, mask)
            w.set_splits({"train": [...], "test": [...]})
            w.meta.update(source="https://...", licence="...", checksum="sha256:...")
            w.report_repair("cju0...", "JPEG mask thresholded at 128")

    On a clean exit the folder ``root`` is replaced by the new one; on an exception the
    temporary folder is removed and ``root`` is left untouched. An existing ``root`` must be
    one this project prepared (:func:`check_replaceable`), else :class:`UnsafeRootError` is
    raised on entry, before anything is written. A symbolic link ``root`` is followed (the
    link stays, its target is replaced).
    """

    def __init__(
        self, root: str | os.PathLike, name: str, classes: list[str], channels: int = 3, overwrite: bool = True
    ):
        self.root = Path(root)
        if len(classes) < 2:
            raise ValueError(f"classes must name background and at least one class, got {classes!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
        self.name = name
        self.classes = list(classes)
        self.channels = channels
        self.overwrite = overwrite
        self.meta: dict = {}
        self.repairs: list[dict] = []
        self.names: list[str] = []
        self._splits: dict[str, list[str]] = {}
        self._tmp: Path | None = None

    # context management -------------------------------------------------------------
    def __enter__(self) -> PreparedWriter:
        if self.root.is_symlink() and self.root.exists():
            self.root = self.root.resolve()
        if self.root.exists() and not self.overwrite:
            raise FileExistsError(f"{self.root} exists; pass overwrite=True or remove it")
        check_replaceable(self.root)
        for parent in self.root.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UnsafeRootError(
                        f"--root {self.root}: {parent} is a file, not a folder; choose another --root"
                    )
                break
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.root.name}.partial-", dir=self.root.parent))
        for sub in (IMAGES, MASKS, SPLITS):
            (self._tmp / sub).mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._tmp is not None
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        try:
            self._finish()
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        os.chmod(self._tmp, 0o755)  # mkdtemp creates 0700; a dataset is meant to be shared
        try:  # checked again: someone may have put files into root while we were writing
            check_replaceable(self.root)
        except BaseException:
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise
        old = None
        if self.root.exists():
            old = self.root.with_name(f".{self.root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(self.root, old)  # a fresh name: never over something that exists
        os.replace(self._tmp, self.root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    # writing ------------------------------------------------------------------------
    @property
    def tmp_root(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("PreparedWriter must be used as a context manager")
        return self._tmp

    def add(self, name: str, image: np.ndarray, mask: np.ndarray) -> None:
        """Add one pair. ``image``: HxW or HxWx3 uint8; ``mask``: HxW integer class indices."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad sample name {name!r}: use a plain file stem without slashes")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(
                f"bad sample name {name!r}: control characters (newline, tab ...) would break the split "
                "files; remove them from the name"
            )
        if len(os.fsencode(name + ".png")) > 255:
            raise ValueError(
                f"sample name {name[:40]!r}... is {len(os.fsencode(name))} bytes, longer than file "
                "systems allow for a file name (255 with '.png'); shorten it"
            )
        if name in self._name_set():
            raise ValueError(f"duplicate sample name {name!r}")
        image = np.asarray(image)
        mask = np.asarray(mask)
        if image.dtype != np.uint8:
            raise ValueError(f"{name}: image must be uint8, got {image.dtype}")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        want_ndim = 2 if self.channels == 1 else 3
        if image.ndim != want_ndim or (want_ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"{name}: image shape {image.shape} does not match channels={self.channels}")
        if mask.ndim != 2:
            raise ValueError(f"{name}: mask must be HxW class indices, got shape {mask.shape}")
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{name}: mask size {mask.shape} differs from image size {image.shape[:2]}")
        if mask.size and (mask.min() < 0 or mask.max() >= len(self.classes)):
            raise ValueError(
                f"{name}: mask values {sorted(np.unique(mask).tolist())[:10]} outside classes "
                f"0..{len(self.classes) - 1}"
            )
        Image.fromarray(image).save(self.tmp_root / IMAGES / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8)).save(self.tmp_root / MASKS / f"{name}.png")
        self.names.append(name)
        self._names_cache = None

    def _name_set(self) -> set[str]:
        cache = getattr(self, "_names_cache", None)
        if cache is None or len(cache) != len(self.names):
            cache = set(self.names)
            self._names_cache = cache
        return cache

    def set_splits(self, splits: Mapping[str, Iterable[str]]) -> None:
        """Set the split files (``{"train": [...], "val": [...], ...}``)."""
        self._splits = {k: list(v) for k, v in splits.items()}

    @property
    def splits(self) -> dict[str, list[str]]:
        """The split lists set so far (a copy)."""
        return {k: list(v) for k, v in self._splits.items()}

    def report_repair(self, name: str, what: str) -> None:
        """Record a repair made while converting (kept in dataset.json and printed)."""
        self.repairs.append({"name": name, "repair": what})

    def _finish(self) -> None:
        known = self._name_set()
        if not self.names:
            raise ValueError(f"{self.name}: no samples were added; nothing to write")
        for split, names in self._splits.items():
            if not names:
                raise ValueError(f"{self.name}: split {split!r} is empty")
            missing = [n for n in names if n not in known]
            if missing:
                raise ValueError(
                    f"{self.name}: split {split!r} names {len(missing)} unknown samples, e.g. {missing[:3]}"
                )
            (self.tmp_root / SPLITS / f"{split}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        meta = {
            "name": self.name,
            "layout_version": LAYOUT_VERSION,
            "classes": self.classes,
            "channels": self.channels,
            "num_samples": len(self.names),
            "splits": {k: len(v) for k, v in self._splits.items()},
            "repairs": self.repairs,
        }
        meta.update(self.meta)
        meta.update(MARKER)
        (self.tmp_root / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_metadata(root: str | os.PathLike) -> dict:
    """Read ``ROOT/dataset.json`` with a clear error when it is missing or broken."""
    path = Path(root) / META
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder, but it must be the dataset's JSON file; move the folder away and "
            "re-run the preparation script (or write the file by hand)"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {root} is not a prepared dataset "
            "(prepare it with `python -m data_scripts.<name>` or generate a synthetic one)"
        )
    try:
        meta = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); re-run the preparation script") from exc
    if not isinstance(meta, dict):
        raise ValueError(
            f"{path} holds {type(meta).__name__ if meta is not None else 'null'}, not a JSON object; "
            'it must look like {"name": "my-set", "classes": ["background", "lesion"]}: re-run the '
            "preparation script or fix the file"
        )
    for key in ("name", "classes"):
        if key not in meta:
            raise ValueError(f"{path} has no {key!r} entry; re-run the preparation script")
    return meta


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Names listed in ``ROOT/splits/SPLIT.txt`` (blank lines and ``#`` comments ignored)."""
    path = Path(root) / SPLITS / f"{split}.txt"
    if not path.is_file():
        avail = sorted(p.stem for p in (Path(root) / SPLITS).glob("*.txt")) if (Path(root) / SPLITS).is_dir() else []
        raise FileNotFoundError(f"split file {path} is missing; available splits: {avail or 'none'}")
    names = read_text_lines(path)
    if not names:
        raise ValueError(f"split file {path} is empty; list one sample name per line")
    return names


def read_text(path: str | os.PathLike) -> str:
    """A text file as UTF-8 (a byte-order mark is dropped). Raises ``ValueError`` naming the file and
    the fix when it is not UTF-8 (e.g. saved as Latin-1 or UTF-16 by an editor)."""
    path = Path(path)
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(
            f"{path} is UTF-16 text; save it as UTF-8 (in most editors: 'Save with encoding' -> "
            "UTF-8), or `iconv -f UTF-16 -t UTF-8`"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); save it "
            "as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """Non-blank lines of a UTF-8 text file, stripped, ``#`` comments skipped (see :func:`read_text`)."""
    names = [ln.strip() for ln in read_text(path).splitlines()]
    return [n for n in names if n and not n.startswith("#")]
