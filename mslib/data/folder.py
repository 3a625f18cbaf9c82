"""``SegmentationFolder``: a validated PyTorch dataset over the prepared layout.

The layout (see :mod:`mslib.data.layout`)::

    ROOT/dataset.json       {"name": ..., "classes": ["background", ...], "channels": 1 or 3, ...}
    ROOT/images/NAME.png    the image
    ROOT/masks/NAME.png     class indices, 0 = background
    ROOT/splits/SPLIT.txt   one NAME per line

Images and masks are paired by file stem and may be ``.png .jpg .jpeg .bmp .tif .tiff``
(any case), so a folder a user assembled by hand (JPEG masks included) loads as well as one
written by :class:`~mslib.data.layout.PreparedWriter`. A minimal hand-written
``dataset.json`` is ``{"name": "my-set", "classes": ["background", "lesion"]}``; without
``"channels"`` the channel count is inferred (1 when every image is single-channel, else 3).

Item ``i`` is ``(image, mask)``: ``image`` a :class:`torchvision.tv_tensors.Image`
float32 in [0, 1] of shape (C, H, W), ``mask`` a :class:`torchvision.tv_tensors.Mask`
int64 of shape (H, W). A ``transform`` is called jointly as ``transform(image, mask)``.

Bad inputs and what happens
---------------------------

The dataset is checked when it is built, so a broken file fails at once and by name,
not in the middle of an epoch. ``validate=True`` (default) decodes every mask (value
checks) and checks every image file for truncation; ``validate=False`` only reads file
headers (pairing, sizes, modes), and value problems then surface in ``__getitem__``,
still naming the file. Errors are :class:`DatasetError` (a ``ValueError``) unless noted;
every message names the file or argument and says how to fix it.

Errors:

=============================================================  ============================================
bad input                                                      what happens
=============================================================  ============================================
``root`` does not exist, or has no ``images/`` / ``masks/``    ``FileNotFoundError`` naming the folder
``dataset.json`` missing                                       ``FileNotFoundError`` with a minimal example
``dataset.json`` not valid JSON                                error naming the file and the JSON error
``dataset.json`` without ``classes`` (or ``name``)             error naming the missing key
``classes`` not a list of >= 2 names                           error naming ``classes``
``channels`` not 1 or 3                                        error naming ``channels``
no image files in ``images/`` (empty dataset)                  error naming the folder
a non-image file (``notes.txt``) in ``images/`` or ``masks/``  error naming the file (dotfiles and
                                                               subfolders are skipped)
two files with one stem (``a.png`` and ``a.jpg``)              error naming both files
an image without a mask                                        error naming the image and the expected
                                                               mask path
a mask without an image (``split=None``)                       error naming the mask
unknown split name                                             ``FileNotFoundError`` listing the splits
no ``splits/`` folder but a split is asked for                 ``FileNotFoundError``: use ``split=None``
                                                               or write ``splits/NAME.txt``
empty split file                                               error naming the split file
split names a sample with no image                             error naming the split file and samples
split lists a name twice                                       error naming the split file and names
unreadable file (a text file renamed ``x.png``)                error naming the file
multi-frame file (animated GIF/PNG, multi-page TIFF)           error naming the file and its frame count
truncated or corrupt PNG / JPEG (image or mask)                error naming the file (at construction
                                                               with ``validate=True``, else on load)
image and mask sizes differ                                    error naming both sizes
mixed sizes *across* samples                                   fine: resizing is the transform's job
image mode with other channels (``LA``, ``CMYK``, ``F`` ...)   error naming the file and its mode
colour RGB image in a grayscale dataset                        error: set ``"channels": 3`` or convert
mask values outside ``0..len(classes)-1``                      error listing the values and classes
RGB mask whose channels differ (colour-coded)                  error: convert to class indices (a
                                                               palette "P" PNG or a lookup table)
JPEG mask in a multi-class dataset                             error: JPEG cannot store class indices;
                                                               save PNG
JPEG mask with all values below 128 (a 0/1 mask as JPEG)       error: re-export as PNG
mask mode that cannot hold class indices (``F``)               error naming the file and its mode
split file not UTF-8 (Latin-1, UTF-16)                         error naming the file: save it as UTF-8
``dataset.json`` holding ``null``, a list or a number          error naming the file and the expected object
``dataset.json`` that is a folder                              error naming it
``split`` not a string or ``None``                             ``TypeError`` naming the argument
``transform`` not callable                                     ``TypeError`` naming the argument
=============================================================  ============================================

Repairs (applied on every load, listed in ``self.repairs`` as ``{"name", "file",
"repair"}`` and announced once as a :class:`DataRepairWarning` that names the files):

====================================================  ==========================================
input                                                 repair
====================================================  ==========================================
JPEG-compressed mask in a binary dataset              thresholded at 128 (``value >= 128`` -> 1)
RGB / RGBA / LA mask whose colour channels are equal  reduced to one channel (alpha ignored)
a 0/255 mask in a binary dataset                      mapped to 0/1
palette ("P") mask                                    palette indices used as class indices
grayscale image in an RGB dataset                     replicated to 3 channels
RGB image with equal channels in a grayscale dataset  converted to one channel
image or mask whose EXIF orientation is not 1         turned as image viewers show it
                                                      (``PIL.ImageOps.exif_transpose``; sizes are
                                                      compared after turning)
RGBA image                                            alpha channel dropped
palette ("P") or 1-bit image                          converted to RGB / 8 bits
16-bit image                                          scaled to [0, 1] by 1/65535 (8-bit: 1/255)
====================================================  ==========================================

With ``validate=False`` the repairs that depend on pixel values (0/255 masks, equal
channels) are applied when an item is loaded but are not enumerated beforehand; the
warning says so.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .layout import IMAGES, MASKS, META, SPLITS, read_metadata, read_text_lines

__all__ = ["SegmentationFolder", "DatasetError", "DataRepairWarning", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_META_EXAMPLE = '{"name": "my-set", "classes": ["background", "lesion"], "channels": 3}'
_SHOW = 5  # how many file names an error or warning lists


class DatasetError(ValueError):
    """A dataset breaks the prepared layout's rules; the message names the file and the fix."""


class DataRepairWarning(UserWarning):
    """A dataset was loaded with documented repairs (see ``SegmentationFolder.repairs``)."""


def _few(items, n: int = _SHOW) -> str:
    items = [str(i) for i in items]
    more = f", ... ({len(items)} in all)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# --------------------------------------------------------------------------------------
# reading metadata and listing files
# --------------------------------------------------------------------------------------
def _read_meta(root: Path) -> dict:
    try:
        meta = read_metadata(root)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{root / META} is missing, so {root} is not a prepared dataset. Prepare it with "
            f"`python -m data_scripts.<module> --root {root}`, or for a folder you made yourself write "
            f"{root / META} containing e.g. {_META_EXAMPLE}"
        ) from exc
    except ValueError as exc:
        raise DatasetError(f"{exc} (a hand-written dataset.json needs at least e.g. {_META_EXAMPLE})") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{root / META} must hold a JSON object such as {_META_EXAMPLE}")
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise DatasetError(
            f"{root / META}: 'classes' must be a list of at least two names (background first), "
            f'got {classes!r}; e.g. "classes": ["background", "polyp"]'
        )
    if len(classes) > 256:
        raise DatasetError(f"{root / META}: {len(classes)} classes, but masks are stored as uint8 (at most 256)")
    channels = meta.get("channels")
    if channels is not None and channels not in (1, 3):
        raise DatasetError(f"{root / META}: 'channels' must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    return meta


def _list_files(folder: Path, kind: str) -> dict[str, Path]:
    """Map stem -> path for the image files in ``folder``; reject other files and duplicates."""
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is missing: a prepared dataset keeps its {kind} in "
            f"{folder.parent}/{folder.name}/ (see mslib.data.layout)"
        )
    found: dict[str, Path] = {}
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            continue
        path = Path(entry.path)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DatasetError(
                f"{path} is not an image file (extension {path.suffix or 'none'!r}); {kind}/ may "
                f"only hold {' '.join(IMAGE_EXTENSIONS)} files: move or delete it"
            )
        if path.stem in found:
            raise DatasetError(
                f"duplicate sample name {path.stem!r} in {folder}: {found[path.stem].name} and "
                f"{path.name}; images and masks are paired by file stem, so keep only one"
            )
        found[path.stem] = path
    return found


def _read_split_names(root: Path, split: str) -> list[str]:
    folder = root / SPLITS
    avail = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
    path = folder / f"{split}.txt"
    if not path.is_file():
        if not avail:
            raise FileNotFoundError(
                f"split {split!r} asked for, but {root} has no split files ({folder}/*.txt); "
                "pass split=None to use every sample, or write one NAME per line into "
                f"{path}"
            )
        raise FileNotFoundError(
            f"unknown split {split!r} for {root}: {path} is missing; available splits: "
            f"{', '.join(avail)} (or split=None for every sample)"
        )
    try:
        names = read_text_lines(path)
    except ValueError as exc:
        raise DatasetError(str(exc)) from None
    if not names:
        raise DatasetError(f"split file {path} is empty; list one sample name (file stem) per line")
    seen, dup = set(), []
    for n in names:
        (dup.append(n) if n in seen else seen.add(n))
    if dup:
        raise DatasetError(f"split file {path} lists {_few(sorted(set(dup)))} more than once; list each sample once")
    return names


# --------------------------------------------------------------------------------------
# decoding: one function per file type, used both to validate and to load
# --------------------------------------------------------------------------------------
def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"{path} is not a readable image ({type(exc).__name__}: {exc}); replace it with "
            "the original file or delete it (and its pair)"
        ) from exc


def _load(im: Image.Image, path: Path) -> None:
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); replace it with "
            "the original file or delete it (and its pair)"
        ) from exc


_SWAPS_AXES = (5, 6, 7, 8)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8) from the file's header; 1 when absent or unreadable. PNG: only an
    ``eXIf`` chunk before the pixels is seen (reading a later one would decode the whole file)."""
    try:
        if im.format == "PNG":
            raw = im.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = im.getexif()
        value = int(exif.get(0x0112, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError, KeyError, IndexError):
        return 1
    return value if 1 <= value <= 8 else 1


def _oriented_size(im: Image.Image) -> tuple[int, int]:
    """(W, H) as an image viewer shows the file (after its EXIF orientation)."""
    w, h = im.size
    return (h, w) if _orientation(im) in _SWAPS_AXES else (w, h)


def _upright(im: Image.Image, path: Path) -> Image.Image:
    """Apply the EXIF orientation as viewers do (:func:`PIL.ImageOps.exif_transpose`): the one
    orientation convention of mslib, for images and masks alike."""
    if _orientation(im) == 1:
        return im
    _load(im, path)
    return ImageOps.exif_transpose(im)


def _check_file_complete(path: Path, im: Image.Image) -> None:
    """Cheap integrity check: PNG chunk CRCs, JPEG end-of-image marker, else a full decode."""
    try:
        if im.format == "PNG":
            with Image.open(path) as fresh:
                fresh.verify()
            return
        if im.format == "JPEG":
            with open(path, "rb") as fh:
                fh.seek(max(0, path.stat().st_size - 1024))
                if b"\xff\xd9" not in fh.read():
                    raise OSError("no JPEG end-of-image marker")
            return
    except (OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); replace it with "
            "the original file or delete it (and its pair)"
        ) from exc
    with Image.open(path) as fresh:
        _load(fresh, path)


def _image_repairs(mode: str, channels: int, path: Path) -> list[str]:
    """Repairs implied by an image's mode (header only); raise for layouts we cannot read."""
    rep: list[str] = []
    if mode in _MODES_16BIT:
        rep.append("16-bit image scaled to [0, 1] by 1/65535")
        mode = "L"
    elif mode == "1":
        rep.append("1-bit image converted to 8 bits")
        mode = "L"
    elif mode in ("P", "PA"):
        rep.append("palette image converted to RGB")
        mode = "RGB"
    elif mode == "RGBA":
        rep.append("RGBA image: alpha channel dropped")
        mode = "RGB"
    elif mode not in ("L", "RGB"):
        raise DatasetError(
            f"{path} has mode {mode!r} ({_bands(mode)} channel(s)); images must be grayscale "
            "(1 channel) or RGB (3, or RGBA): convert it, e.g. "
            "PIL `Image.open(p).convert('RGB').save(p)`"
        )
    if channels == 3 and mode == "L":
        rep.append("grayscale image replicated to 3 channels")
    if channels == 1 and mode == "RGB":
        rep.append("RGB image with equal channels converted to grayscale")
    return rep


def _bands(mode: str) -> int:
    try:
        return Image.getmodebands(mode)
    except (KeyError, ValueError):  # pragma: no cover - unknown PIL mode
        return 0


def _decode_image(im: Image.Image, channels: int, path: Path) -> torch.Tensor:
    """PIL image -> float32 (C, H, W) in [0, 1], with the repairs of :func:`_image_repairs`.

    Conversions run in NumPy (single-threaded), so loading stays fast when torch's intra-op
    threads compete with DataLoader workers or other processes.
    """
    mode = im.mode
    _image_repairs(mode, channels, path)  # raises for unsupported modes
    im = _upright(im, path)
    try:
        if mode == "1":
            im = im.convert("L")
        elif mode in ("P", "PA"):
            im = im.convert("RGB")
        arr = np.array(im)
    except (OSError, SyntaxError) as exc:
        raise DatasetError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); replace it with "
            "the original file or delete it (and its pair)"
        ) from exc
    scale = np.float32(255.0)
    if mode in _MODES_16BIT:
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise DatasetError(f"{path}: integer image with values outside 0..65535; save it as 8- or 16-bit")
        scale = np.float32(65535.0)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if channels == 1 and arr.shape[2] == 3:
        if not ((arr[:, :, 0] == arr[:, :, 1]).all() and (arr[:, :, 0] == arr[:, :, 2]).all()):
            raise DatasetError(
                f'{path} is a colour RGB image but the dataset is grayscale ("channels": 1 in '
                "dataset.json); set \"channels\": 3, or convert the image to grayscale ('L')"
            )
        arr = arr[:, :, :1]
    chw = arr.transpose(2, 0, 1)
    if channels == 3 and chw.shape[0] == 1:
        chw = np.broadcast_to(chw, (3, *chw.shape[1:]))
    out = np.empty(chw.shape, np.float32)
    np.divide(chw, scale, out=out, dtype=np.float32)
    return torch.from_numpy(out)


def _decode_mask(im: Image.Image, path: Path, num_classes: int) -> tuple[np.ndarray, list[str]]:
    """PIL mask -> (H, W) integer class indices and the repairs made (see the table above)."""
    jpeg = im.format == "JPEG"
    mode = im.mode
    rep: list[str] = []
    im = _upright(im, path)
    if jpeg and num_classes > 2:
        raise DatasetError(
            f"{path} is a JPEG mask in a dataset with {num_classes} classes; JPEG compression changes "
            "pixel values, so it cannot store class indices: re-export the mask as PNG"
        )
    try:
        if mode in ("L", "P", "1", *_MODES_16BIT):
            arr = np.array(im)
            if mode == "P":
                rep.append("palette mask: palette indices used as class indices")
        elif mode in ("RGB", "RGBA", "LA"):
            arr = np.array(im)
            colour = arr[:, :, :1] if mode == "LA" else arr[:, :, :3]
            if jpeg:
                arr = colour.mean(axis=2)
                rep.append(f"{mode} JPEG mask averaged to one channel")
            else:
                if not (colour == colour[:, :, :1]).all():
                    raise DatasetError(
                        f"{path} is a colour-coded {mode} mask (its channels differ); masks must hold class indices: "
                        "convert it with a palette (a 'P' PNG whose indices are the classes) or a colour -> index "
                        "lookup table, or keep one channel if they encode the same thing"
                    )
                arr = arr[:, :, 0]
                rep.append(f"{mode} mask with equal channels reduced to one channel")
        else:
            raise DatasetError(
                f"{path} has mode {mode!r}, which cannot hold class indices; save masks as 8-bit "
                "grayscale ('L') or palette ('P') PNGs"
            )
    except (OSError, SyntaxError) as exc:
        raise DatasetError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); replace it with "
            "the original file or delete it (and its pair)"
        ) from exc
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if jpeg:
        mx = arr.max() if arr.size else 0
        if 0 < mx < 128:
            raise DatasetError(
                f"{path} is a JPEG mask whose values are all below 128 (max {mx}): a 0/1 mask saved as "
                "JPEG, which compression cannot keep apart from noise; re-export it as PNG (or as "
                "a 0/255 JPEG)"
            )
        arr = (arr >= 128).astype(np.uint8)
        rep.append("JPEG mask thresholded at 128 (value >= 128 -> 1)")
    elif arr.size:
        mx = arr.max()
        if num_classes == 2 and mx == 255 and ((arr == 0) | (arr == 255)).all():
            arr = (arr == 255).astype(np.uint8)
            rep.append("0/255 mask mapped to 0/1")
        elif mx >= num_classes or arr.min() < 0:
            found = np.unique(arr)
            if num_classes == 2:
                fix = (
                    "threshold it (e.g. `mask > 127`) and save 0/1 (or 0/255) values, or re-run the preparation script"
                )
            else:
                fix = f"map the values to 0..{num_classes - 1} (a lookup table), or list all classes in dataset.json"
            raise DatasetError(
                f"{path} has mask values {_few(found.tolist(), 10)} outside the {num_classes} classes "
                f"0..{num_classes - 1}; {fix}"
            )
    return arr, rep


# --------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------
class SegmentationFolder(Dataset):
    """A prepared segmentation dataset (see the module docstring for the layout and checks).

    Args:
        root: the dataset folder (holding ``dataset.json``, ``images/``, ``masks/``, ``splits/``).
        split: a split name (``"train"``, ``"val"``, ``"test"``, ``"fold0"`` ... : the file
            ``splits/SPLIT.txt``) or ``None`` for every sample in ``images/``.
        transform: optional joint transform called as ``transform(image, mask)``, e.g.
            :func:`mslib.data.transforms.build_transforms`.
        validate: decode every mask and check every file for truncation at construction
            (default). ``False`` reads only file headers; value problems then raise when the
            item is loaded.

    Attributes: ``root``, ``split``, ``names`` (sample stems in split order), ``meta``
    (dataset.json), ``classes``, ``num_classes``, ``channels``, ``repairs`` (list of
    ``{"name", "file", "repair"}``), ``image_paths``, ``mask_paths``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str | None = "train",
        transform: Callable | None = None,
        validate: bool = True,
    ):
        if split is not None and not isinstance(split, str):
            raise TypeError(f"split must be a split name such as 'train' or None (all samples), got {split!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable as transform(image, mask) or None, got {transform!r}")
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"dataset folder {self.root} does not exist; check the path, or prepare it with "
                f"`python -m data_scripts.<module> --root {self.root}` (MSLIB_DATA_DIR="
                f"{os.environ.get('MSLIB_DATA_DIR', '<unset>')})"
            )
        self.split = split
        self.transform = transform
        self.validate = bool(validate)
        self.meta = _read_meta(self.root)
        self.classes: list[str] = list(self.meta["classes"])
        self.num_classes = len(self.classes)

        images = _list_files(self.root / IMAGES, "images")
        masks = _list_files(self.root / MASKS, "masks")
        if not images:
            raise DatasetError(
                f"{self.root / IMAGES} holds no image files: the dataset is empty; put the images "
                "there (or re-run the preparation script)"
            )
        if split is None:
            names = list(images)
            orphans = sorted(set(masks) - set(images))
            if orphans:
                raise DatasetError(
                    f"masks without an image in {self.root / IMAGES}: "
                    f"{_few(masks[n].name for n in orphans)}; add the images or delete these masks"
                )
        else:
            names = _read_split_names(self.root, split)
            split_file = self.root / SPLITS / f"{split}.txt"
            absent = [n for n in names if n not in images]
            if absent:
                raise DatasetError(
                    f"split file {split_file} names {len(absent)} sample(s) with no image in "
                    f"{self.root / IMAGES}: {_few(absent)}; fix the split file or add the images "
                    "(names are file stems, without extension)"
                )
        no_mask = [n for n in names if n not in masks]
        if no_mask:
            raise DatasetError(
                f"{len(no_mask)} image(s) without a mask: {_few(images[n].name for n in no_mask)}; "
                f"expected e.g. {self.root / MASKS / (no_mask[0] + '.png')} (same stem); add the masks "
                "or remove the images" + (" from the split file" if split is not None else "")
            )
        self.names: list[str] = names
        self.image_paths: list[Path] = [images[n] for n in names]
        self.mask_paths: list[Path] = [masks[n] for n in names]

        # headers: sizes and modes (cheap: PIL reads only the header)
        img_modes = []
        orient: list[dict] = []
        for name, ip, mp in zip(names, self.image_paths, self.mask_paths):
            with _open(ip) as im, _open(mp) as mk:
                isz, msz = _oriented_size(im), _oriented_size(mk)
                if isz != msz:
                    turned = " (after EXIF orientation)" if (isz, msz) != (im.size, mk.size) else ""
                    raise DatasetError(
                        f"size mismatch for sample {name!r}: image {ip} is {isz[0]}x{isz[1]} "
                        f"but mask {mp} is {msz[0]}x{msz[1]} (WxH){turned}; resize the mask to the "
                        "image with nearest-neighbour interpolation, or re-export the pair"
                    )
                img_modes.append(im.mode)
                for path, f, kind in ((ip, im, IMAGES), (mp, mk, MASKS)):
                    frames = getattr(f, "n_frames", 1)
                    if frames > 1:
                        raise DatasetError(
                            f"{path} holds {frames} frames/pages (an animation or a multi-page TIFF); "
                            "only the first would be used: save the frame you mean as its own file"
                        )
                    o = _orientation(f)
                    if o != 1:
                        orient.append(
                            {
                                "name": name,
                                "file": f"{kind}/{path.name}",
                                "repair": f"EXIF orientation {o} applied (turned as viewers show it)",
                            }
                        )
        channels = self.meta.get("channels")
        if channels is None:  # hand-made folder: infer
            channels = 1 if all(m in ("L", "1", *_MODES_16BIT) for m in img_modes) else 3
        self.channels: int = int(channels)

        self.repairs: list[dict] = list(orient)
        for name, ip, mode in zip(names, self.image_paths, img_modes):
            for r in _image_repairs(mode, self.channels, ip):
                self.repairs.append({"name": name, "file": f"{IMAGES}/{ip.name}", "repair": r})
        if self.validate:
            self._validate_values()
        else:
            for name, mp in zip(names, self.mask_paths):
                with _open(mp) as mk:
                    if mk.format == "JPEG" and self.num_classes > 2:
                        _decode_mask(mk, mp, self.num_classes)  # raises the JPEG multi-class error
                    reps = (["JPEG mask thresholded at 128 (value >= 128 -> 1)"] if mk.format == "JPEG" else []) + (
                        ["palette mask: palette indices used as class indices"] if mk.mode == "P" else []
                    )
                for r in reps:
                    self.repairs.append({"name": name, "file": f"{MASKS}/{mp.name}", "repair": r})
        if self.repairs:
            warnings.warn(self._repair_summary(), DataRepairWarning, stacklevel=2)

    # ----------------------------------------------------------------------------------
    def _validate_values(self) -> None:
        check_rgb = self.channels == 1
        for name, ip, mp in zip(self.names, self.image_paths, self.mask_paths):
            with _open(ip) as im:
                _check_file_complete(ip, im)
                if check_rgb and im.mode in ("RGB", "RGBA", "P", "PA"):
                    _decode_image(im, self.channels, ip)  # raises if the channels differ
            with _open(mp) as mk:
                _load(mk, mp)
                _, reps = _decode_mask(mk, mp, self.num_classes)
            for r in reps:
                self.repairs.append({"name": name, "file": f"{MASKS}/{mp.name}", "repair": r})

    def _repair_summary(self) -> str:
        groups: dict[str, list[str]] = defaultdict(list)
        for r in self.repairs:
            groups[r["repair"]].append(r["file"])
        lines = [
            f"SegmentationFolder({self.root}, split={self.split!r}): {len(self.repairs)} repair(s) applied "
            "on load (listed in .repairs; see mslib.data.folder for the table):"
        ]
        lines += [f"  - {what}: {_few(files)}" for what, files in groups.items()]
        if not self.validate:
            lines.append(
                "  (validate=False: repairs that depend on pixel values, such as 0/255 masks or "
                "equal-channel RGB masks, are applied when loaded but not listed here)"
            )
        return "\n".join(lines)

    # ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def load_image(self, index: int) -> tv_tensors.Image:
        """The image of sample ``index`` as a float32 (C, H, W) tensor in [0, 1] (no transform)."""
        path = self.image_paths[operator.index(index)]
        with _open(path) as im:
            return tv_tensors.Image(_decode_image(im, self.channels, path))

    def load_mask(self, index: int) -> tv_tensors.Mask:
        """The mask of sample ``index`` as int64 (H, W) class indices (no transform)."""
        path = self.mask_paths[operator.index(index)]
        with _open(path) as mk:
            arr, _ = _decode_mask(mk, path, self.num_classes)
        return tv_tensors.Mask(torch.from_numpy(arr.astype(np.int64, copy=False)))

    def __getitem__(self, index: int):
        image, mask = self.load_image(index), self.load_mask(index)
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image, mask

    def __repr__(self) -> str:
        return (
            f"SegmentationFolder(root={str(self.root)!r}, split={self.split!r}, n={len(self)}, "
            f"classes={self.classes}, channels={self.channels}, repairs={len(self.repairs)})"
        )
