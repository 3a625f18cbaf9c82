"""Conversion helpers shared by the dataset modules: reading images and masks, reporting
repairs, deterministic splits, and verification of a prepared dataset before it is committed.

Repairs are never silent. Each helper that changes a mask's values calls
``report(what)`` with a short, stable text, for example

- ``"JPEG mask thresholded at 128"`` (values other than 0/1/255 were present),
- ``"RGB mask reduced to one channel"`` (a 24-bit mask whose channels are equal),
- ``"3 masks merged by union"`` (BUSI ``NAME_mask.png`` + ``NAME_mask_1.png`` ...).

The texts end up in ``dataset.json`` under ``repairs`` and in the printed summary.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mslib.data.layout import IMAGES, MASKS, PreparedWriter, read_text_lines

__all__ = [
    "load_image",
    "load_binary_mask",
    "binarize",
    "union_masks",
    "to_uint8_image",
    "seeded_split",
    "kfold",
    "check_counts",
    "verify_files",
    "summarize_repairs",
    "VerificationError",
    "find_dir",
    "window",
    "Reporter",
    "reporter",
    "load_array",
    "apply_exif_orientation",
    "read_lines",
    "pair_files",
    "IMAGE_EXTS",
    "add_validation",
    "cv_splits",
    "VAL_FRACTION",
]

#: Share of the paper's training set held out as ``val`` where the paper defines no validation set.
VAL_FRACTION = 0.1

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

Reporter = Callable[[str], None]


class VerificationError(ValueError):
    """The prepared data do not match what the dataset must contain."""


def _noop(_: str) -> None:
    return None


def load_image(path: str | Path, channels: int = 3, report: Reporter = _noop) -> np.ndarray:
    """Read an image file as uint8 HxWx3 (``channels=3``) or HxW (``channels=1``).

    16-bit and float images are rescaled min..max to 0..255 and the rescaling is reported. The EXIF
    orientation is applied (:func:`apply_exif_orientation`). Lossy conversions are reported: CMYK
    (and other colour spaces) to RGB, a transparent alpha channel dropped, a colour image made
    grayscale for a 1-channel dataset. A multi-frame file (animated GIF/PNG, multi-page TIFF) is
    an error: only its first frame would be read.
    """
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise VerificationError(
                    f"{path} holds {frames} frames/pages (an animation or a multi-page TIFF), "
                    "but one picture is expected; save the frame you mean as its own file"
                )
            im.load()
            im = apply_exif_orientation(im, report)
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                report(f"{im.mode} image rescaled min..max to uint8")
                arr = to_uint8_image(np.asarray(im))
                return arr if channels == 1 else np.repeat(arr[..., None], 3, axis=2)
            want = "RGB" if channels == 3 else "L"
            if im.mode in ("RGBA", "LA", "PA") and im.getchannel("A").getextrema()[0] < 255:
                report(f"{im.mode} image: transparent alpha channel dropped")
            elif im.mode not in ("1", "L", "P", "RGB", "RGBA", "LA", "PA"):
                report(f"{im.mode} image converted to {want}")
            arr = np.asarray(im.convert(want))
            if channels == 1 and im.mode in ("RGB", "RGBA", "P", "PA"):
                rgb = np.asarray(im.convert("RGB"))
                if not (rgb == rgb[..., :1]).all():
                    report("colour image converted to grayscale (ITU-R 601 luma)")
            return arr
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, VerificationError):
            raise
        raise VerificationError(
            f"cannot read image {path}: {exc}; the file is damaged, re-extract the archive"
        ) from exc


def read_lines(path: str | Path) -> list[str]:
    """Non-blank lines of a raw text file (list files of ACDC, Synapse ...) as UTF-8; an error naming
    the file and the fix when it is not UTF-8."""
    try:
        return read_text_lines(path)
    except ValueError as exc:
        raise VerificationError(str(exc)) from None


def to_uint8_image(arr: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale an array linearly so that ``lo -> 0`` and ``hi -> 255`` (defaults: its min/max), rounding."""
    arr = np.asarray(arr, dtype=np.float64)
    lo = float(arr.min()) if lo is None else lo
    hi = float(arr.max()) if hi is None else hi
    if hi <= lo:
        return np.zeros(arr.shape, np.uint8)
    return np.clip(np.rint((arr - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def window(arr: np.ndarray, level: float, width: float) -> np.ndarray:
    """CT intensity window: ``[level - width/2, level + width/2]`` mapped to 0..255 (clipped)."""
    return to_uint8_image(arr, level - width / 2.0, level + width / 2.0)


def binarize(arr: np.ndarray, report: Reporter = _noop) -> np.ndarray:
    """A foreground/background mask as uint8 0/1, reporting every repair.

    - bool or {0, 1}: kept; {0, 255}: divided by 255 (the usual encoding, not a repair);
    - 3 or 4 channels: reduced to one (alpha dropped; max over RGB), reported;
    - any other values (JPEG ringing, resampling): thresholded at 128 (at half the dtype's
      range for 16-bit masks), reported.
    """
    a = np.asarray(arr)
    if a.dtype == bool:
        return a.astype(np.uint8)
    if a.ndim == 3:
        rgb = a[..., :3]
        same = bool(np.all(rgb == rgb[..., :1]))
        a = rgb[..., 0] if same else rgb.max(axis=2)
        report("RGB mask reduced to one channel" if same else "RGB mask reduced (max over channels)")
    if a.ndim != 2:
        raise VerificationError(f"mask has shape {np.asarray(arr).shape}; expected HxW or HxWx3")
    values = np.unique(a)
    if values.size <= 2 and set(values.tolist()) <= {0, 1}:
        return a.astype(np.uint8)
    if set(values.tolist()) <= {0, 255}:
        return (a == 255).astype(np.uint8)
    thr = (
        128
        if a.dtype == np.uint8 or a.max() <= 255
        else (np.iinfo(a.dtype).max + 1) // 2
        if a.dtype.kind in "ui"
        else 0.5
    )
    report(f"JPEG mask thresholded at {thr}")
    return (a >= thr).astype(np.uint8)


def load_binary_mask(path: str | Path, report: Reporter = _noop) -> np.ndarray:
    """Read a mask file (1-bit, 8-bit, RGB, JPEG) as uint8 0/1 (see :func:`binarize`)."""
    return binarize(load_array(path, report, "mask"), report)


def load_array(path: str | Path, report: Reporter = _noop, what: str = "mask") -> np.ndarray:
    """A file's pixels as they are stored (mode kept), turned upright by its EXIF orientation."""
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise VerificationError(
                    f"{path} holds {frames} frames/pages (an animation or a multi-page TIFF), "
                    f"but one {what} is expected; save the frame you mean as its own file"
                )
            im.load()
            return np.asarray(apply_exif_orientation(im, report))
    except VerificationError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise VerificationError(
            f"cannot read {what} {path}: {exc}; the file is damaged, re-extract the archive"
        ) from exc


def apply_exif_orientation(im: Image.Image, report: Reporter = _noop) -> Image.Image:
    """The one orientation convention of mslib: images *and* masks are turned as image viewers show
    them (:func:`PIL.ImageOps.exif_transpose`), since masks are drawn on the displayed image. A file
    whose EXIF orientation is not 1 is rotated/flipped and the repair is reported
    (``"EXIF orientation 6 applied (turned as viewers show it)"``)."""
    try:
        orientation = int(im.getexif().get(0x0112, 1) or 1)
    except (ValueError, TypeError, OSError, SyntaxError):  # a damaged EXIF block: nothing to apply
        return im
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        out = ImageOps.exif_transpose(im)
        report(f"EXIF orientation {orientation} applied (turned as viewers show it)")
        return out
    return im


def union_masks(paths: Sequence[str | Path], report: Reporter = _noop) -> np.ndarray:
    """Union of several binary masks of the same size (BUSI ``_mask``, ``_mask_1``, ...), reported."""
    masks = [load_binary_mask(p, report) for p in paths]
    shapes = {m.shape for m in masks}
    if len(shapes) != 1:
        raise VerificationError(f"masks {[str(p) for p in paths]} differ in size {sorted(shapes)}")
    if len(masks) > 1:
        report(f"{len(masks)} masks merged by union")
    return np.maximum.reduce(masks)


def seeded_split(names: Sequence[str], sizes: Mapping[str, int | float], seed: int = 0) -> dict[str, list[str]]:
    """Split sorted ``names`` at random (``random.Random(seed)``) into parts of the given sizes.

    Sizes are counts, or fractions of ``len(names)``; the last part takes the remainder so
    that every name is used exactly once. The result depends only on the set of names and
    the seed, never on the file system's listing order.
    """
    pool = sorted(names)
    random.Random(seed).shuffle(pool)
    out: dict[str, list[str]] = {}
    keys = list(sizes)
    start = 0
    for i, k in enumerate(keys):
        n = sizes[k]
        count = len(pool) - start if i == len(keys) - 1 else (round(n * len(pool)) if isinstance(n, float) else int(n))
        count = max(0, min(count, len(pool) - start))
        out[k] = pool[start : start + count]
        start += count
    return out


def kfold(names: Sequence[str], k: int, seed: int = 0, strata: Mapping[str, str] | None = None) -> list[list[str]]:
    """``k`` disjoint folds covering ``names`` (stratified by ``strata[name]`` when given).

    Within each stratum the sorted names are shuffled with ``random.Random(seed)`` and dealt
    round-robin to the folds, so fold sizes differ by at most one per stratum.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    groups: dict[str, list[str]] = {}
    for n in sorted(names):
        groups.setdefault(strata[n] if strata else "", []).append(n)
    folds: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for key in sorted(groups):
        pool = groups[key]
        random.Random(f"{seed}-{key}").shuffle(pool)
        for i, n in enumerate(pool):
            folds[(i + offset) % k].append(n)
        offset += len(pool)
    return [sorted(f) for f in folds]


def add_validation(
    splits: Mapping[str, Sequence[str]],
    frac: float = VAL_FRACTION,
    seed: int = 0,
    group: Callable[[str], str] | None = None,
) -> dict[str, list[str]]:
    """Hold out ``frac`` of ``splits["train"]`` as ``val`` where the paper defines no validation set.

    Every chapter and the command line train on ``train`` and validate on ``val``, so every prepared
    dataset needs both; a validation set must not overlap the images trained on. The held-out part
    is drawn with :func:`seeded_split` (whole groups, e.g. patients or CT cases, when ``group`` maps
    a sample name to its group). ``train_full`` keeps the paper's whole training list (use it to
    reproduce the paper's setting), ``train`` is ``train_full`` minus ``val``; list order is kept.
    With fewer than two groups nothing is held out (no ``val``; the count check reports it).
    """
    train = list(splits["train"])
    key = group or (lambda n: n)
    groups = sorted({key(n) for n in train})
    n_val = max(1, round(frac * len(groups))) if len(groups) >= 2 else 0
    out = {k: list(v) for k, v in splits.items()}
    if n_val == 0:
        return out
    held = set(seeded_split(groups, {"val": n_val, "rest": 0}, seed=seed)["val"])
    out["train_full"] = train
    out["train"] = [n for n in train if key(n) not in held]
    out["val"] = [n for n in train if key(n) in held]
    return out


def cv_splits(
    names: Sequence[str], k: int, seed: int = 0, strata: Mapping[str, str] | None = None, frac: float = VAL_FRACTION
) -> dict[str, list[str]]:
    """``k``-fold cross-validation splits (see :func:`kfold`): ``fold{i}`` (held out) and ``fold{i}_train``
    (the other folds) for every ``i``, plus ``train``/``val``/``test`` for fold 0 (``test`` = ``fold0``,
    ``val`` = ``frac`` of ``fold0_train`` held out by :func:`add_validation`) so that a single run works."""
    folds = kfold(names, k, seed=seed, strata=strata)
    out: dict[str, list[str]] = {}
    for i, f in enumerate(folds):
        out[f"fold{i}"] = f
        out[f"fold{i}_train"] = sorted(n for j, g in enumerate(folds) if j != i for n in g)
    first = add_validation({"train": out["fold0_train"]}, frac, seed)
    first.pop("train_full", None)
    return {**out, **first, "test": list(folds[0])}


def check_counts(dataset: str, got: Mapping[str, int], expected: Mapping[str, int], allow_partial: bool) -> list[str]:
    """Compare counts with the dataset's published numbers.

    Raises :class:`VerificationError` on a mismatch, unless ``allow_partial`` (then a loud
    warning is printed and returned). Keys are ``"total"`` or split names.
    """
    bad = [f"{k}: {got.get(k, 0)} (expected {v})" for k, v in expected.items() if got.get(k, 0) != v]
    if not bad:
        return []
    msg = f"{dataset}: counts differ from the published dataset: " + "; ".join(bad)
    if not allow_partial:
        raise VerificationError(
            msg + ". The raw files are incomplete or a different version: re-download "
            "them, or pass --allow-partial to prepare what is there anyway."
        )
    warn = f"WARNING (--allow-partial): {msg}. This is NOT the full dataset; do not compare with papers."
    print(warn)
    return [warn]


def verify_files(w: PreparedWriter) -> None:
    """Re-read what ``w`` wrote (before it is committed): every image has its mask, sizes match,
    mask values lie in ``0..len(classes)-1``, every split name exists."""
    root = w.tmp_root
    images = {p.stem for p in (root / IMAGES).glob("*.png")}
    masks = {p.stem for p in (root / MASKS).glob("*.png")}
    if images != masks:
        raise VerificationError(
            f"{w.name}: images without masks {sorted(images - masks)[:5]}, "
            f"masks without images {sorted(masks - images)[:5]}"
        )
    if images != set(w.names):
        raise VerificationError(f"{w.name}: written files differ from the added names")
    k = len(w.classes)
    for n in w.names:
        with Image.open(root / MASKS / f"{n}.png") as m, Image.open(root / IMAGES / f"{n}.png") as im:
            if m.size != im.size:
                raise VerificationError(f"{w.name}: {n}: mask size {m.size} differs from image size {im.size}")
            arr = np.asarray(m)
        if arr.max(initial=0) >= k:
            raise VerificationError(f"{w.name}: {n}: mask value {int(arr.max())} outside classes 0..{k - 1}")


def summarize_repairs(name: str, repairs: Iterable[Mapping[str, str]]) -> str:
    """A short printed summary: how many samples got each kind of repair."""
    counts = Counter(r["repair"] for r in repairs)
    if not counts:
        return f"{name}: no repairs were needed"
    lines = [f"{name}: repairs made while converting (also in dataset.json 'repairs'):"]
    lines += [f"  {n:6d} x {what}" for what, n in counts.most_common()]
    return "\n".join(lines)


def find_dir(roots: Sequence[Path], predicate: Callable[[Path], bool], what: str, max_depth: int = 4) -> Path:
    """The first folder under ``roots`` (breadth first, up to ``max_depth``) that satisfies ``predicate``."""
    frontier = [Path(r) for r in roots]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in frontier:
            if d.is_dir():
                if predicate(d):
                    return d
                nxt.extend(sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")))
        frontier = nxt
    raise VerificationError(
        f"could not find {what} under {', '.join(map(str, roots))}: check that --raw points "
        "at the dataset's archive or the folder you extracted it to"
    )


def reporter(w: PreparedWriter, name: str) -> Reporter:
    """A ``report(what)`` callback that records repairs of sample ``name`` in ``w``."""
    return lambda what: w.report_repair(name, what)


def pair_files(
    image_dir: Path,
    mask_dir: Path,
    mask_stem: Callable[[str], str] = lambda s: s,
    exts: Sequence[str] = IMAGE_EXTS,
    mask_exts: Sequence[str] = IMAGE_EXTS,
) -> dict[str, tuple[Path, Path]]:
    """Pair ``image_dir/STEM.ext`` with ``mask_dir/mask_stem(STEM).ext`` (any image extension).

    Raises :class:`VerificationError` naming the unpaired files.
    """

    def listing(d: Path, exts: Sequence[str]) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for p in sorted(d.iterdir()):
            if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."):
                if p.stem in out:
                    raise VerificationError(f"{d}: two files with the stem {p.stem!r} ({out[p.stem].name}, {p.name})")
                out[p.stem] = p
        return out

    images, masks = listing(image_dir, exts), listing(mask_dir, mask_exts)
    pairs, missing = {}, []
    for stem, img in images.items():
        m = masks.pop(mask_stem(stem), None)
        if m is None:
            missing.append(img.name)
        else:
            pairs[stem] = (img, m)
    if missing or masks:
        raise VerificationError(
            f"{image_dir}: images without a mask in {mask_dir}: {missing[:5]}; "
            f"masks without an image: {sorted(p.name for p in masks.values())[:5]}"
        )
    if not pairs:
        raise VerificationError(f"{image_dir}: no images found (extensions {', '.join(exts)})")
    return pairs
