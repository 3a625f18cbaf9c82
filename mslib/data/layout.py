"""The prepared on-disk layout every dataset in mslib uses, and a safe writer for it.

::

    ROOT/images/NAME.png    RGB (3 channels) or grayscale (1 channel) uint8
    ROOT/masks/NAME.png     uint8 class indices, 0 = background
    ROOT/splits/train.txt   one NAME per line (also val.txt, test.txt, fold*.txt ...)
    ROOT/dataset.json       name, classes, channels, source, licence, checksum, repairs, counts

:class:`PreparedWriter` writes into a temporary sibling folder and renames it into place
only when everything was written and checked, so an interrupted or failed preparation
never leaves a half-written dataset behind, and re-running is idempotent.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from PIL import Image

LAYOUT_VERSION = 1
IMAGES, MASKS, SPLITS, META = "images", "masks", "splits", "dataset.json"

__all__ = ["PreparedWriter", "read_metadata", "read_split", "LAYOUT_VERSION", "IMAGES", "MASKS", "SPLITS", "META"]


class PreparedWriter:
    """Write a dataset in the prepared layout, atomically.

    Use as a context manager::

        with PreparedWriter(root, name="kvasir-seg", classes=["background", "polyp"]) as w:
            w.add("cju0qkwl35piu0993l0dewei2", image, mask)
            w.set_splits({"train": [...], "test": [...]})
            w.meta.update(source="https://...", licence="...", checksum="sha256:...")
            w.report_repair("cju0...", "JPEG mask thresholded at 128")

    On a clean exit the folder ``root`` is replaced by the new one; on an exception the
    temporary folder is removed and ``root`` is left untouched.
    """

    def __init__(self, root: str | os.PathLike, name: str, classes: list[str], channels: int = 3,
                 overwrite: bool = True):
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
    def __enter__(self) -> "PreparedWriter":
        if self.root.exists() and not self.overwrite:
            raise FileExistsError(f"{self.root} exists; pass overwrite=True or remove it")
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
        old = None
        if self.root.exists():
            old = self.root.with_name(f".{self.root.name}.old-{os.getpid()}")
            os.replace(self.root, old)
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
            raise ValueError(f"{name}: mask values {sorted(np.unique(mask).tolist())[:10]} outside classes 0..{len(self.classes) - 1}")
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
                raise ValueError(f"{self.name}: split {split!r} names {len(missing)} unknown samples, e.g. {missing[:3]}")
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
        (self.tmp_root / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def read_metadata(root: str | os.PathLike) -> dict:
    """Read ``ROOT/dataset.json`` with a clear error when it is missing or broken."""
    path = Path(root) / META
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {root} is not a prepared dataset "
                                "(prepare it with `python -m data_scripts.<name>` or generate a synthetic one)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); re-run the preparation script") from exc
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
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"split file {path} is empty; list one sample name per line")
    return names
