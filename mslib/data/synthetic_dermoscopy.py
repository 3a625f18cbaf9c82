"""Harder synthetic dermoscopy: what makes real dermoscopy hard for clustering, generated from a seed.

The ``skin`` task of :mod:`mslib.data.synthetic` draws clean, well-contrasted lesions.
Real dermoscopy (ISIC, PH2) adds what merges a lesion with the skin in an unsupervised
clustering, and this generator draws it on purpose (each with its own probability):

* lesions covering **5-80 %** of the image (the realised mask area, not just the target), often
  cut by the frame when large;
* **pale** lesions (a contrast of 0.2-0.5 of a full pigment) and **multi-coloured** ones (two
  or three of light brown, dark brown, black, blue-grey, red-pink, in smooth regions);
* **dark corners** (the dermoscope's circular aperture) and strong **vignetting**, a colour cast of
  the illumination (pinkish, neutral grey or bluish skin, as in the real crops);
* dense dark **hair**, **ruler marks** (a straight line with ticks, black or blue), **air bubbles**
  (bright rings with a specular spot), small moles and red patches (erythema) as distractors.

The mask is the lesion outline where the image is not blacked out by the aperture.
:func:`image_stats` measures what the book compares with real crops: lesion area, mean colour
of lesion and skin, and their contrast (Michelson contrast of the luminance, and the CIE Lab
distance between the two mean colours).

>>> image, mask = make_sample(size=128, rng=0)
>>> images, masks = make_batch(8, size=128, seed=1)
>>> stats = image_stats(image, mask)      # {"area", "lesion_rgb", "skin_rgb", "contrast", "delta_e"}
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from mslib import __version__
from mslib.data.layout import PreparedWriter
from mslib.data.synthetic import (
    _as_rng,
    _blob,
    _check_int,
    _check_size,
    _curves,
    _fields,
    _grid,
    _sigmoid,
    _to_uint8,
    split_names,
)

__all__ = ["AREA_RANGE", "CLASSES", "make_sample", "make_batch", "generate", "image_stats", "describe"]

#: the realised lesion area, as a fraction of the image (the mask's mean), always lies in this range
AREA_RANGE = (0.05, 0.80)
CLASSES = ["background", "lesion"]
GENERATOR_VERSION = 1
_TASK_ID = 101  # keeps the random streams apart from mslib.data.synthetic's tasks

_SKIN = np.array(
    [
        [0.84, 0.70, 0.68],
        [0.78, 0.66, 0.66],
        [0.72, 0.62, 0.62],
        [0.80, 0.78, 0.80],
        [0.62, 0.66, 0.82],
        [0.70, 0.56, 0.50],
    ],
    np.float32,
)  # pink, rose, dim, grey, bluish, tanned
_SKIN_P = [0.25, 0.25, 0.15, 0.15, 0.1, 0.1]
_PIGMENTS = np.array(
    [[0.52, 0.33, 0.25], [0.34, 0.20, 0.16], [0.16, 0.11, 0.11], [0.36, 0.38, 0.50], [0.64, 0.32, 0.32]], np.float32
)  # light brown, dark brown, black, blue-grey, red


def _lesion_sd(rng, size, area, visible, cy, cx):
    """Signed distance of a lesion whose mask (inside and visible) covers ``area`` of the image (secant steps)."""
    kw = dict(
        aspect=rng.uniform(0.6, 1.6), angle=rng.uniform(0, np.pi), rough=rng.uniform(0.04, 0.22), n_harm=9, decay=0.8
    )
    state = rng.bit_generator.state
    radius = math.sqrt(area * size * size / math.pi)
    sd = None
    for _ in range(6):
        rng.bit_generator.state = state  # the same outline, rescaled
        sd = _blob(size, cy, cx, radius, rng, **kw)
        got = float(((sd > 0) & visible).mean())
        if abs(got - area) < 0.01 or got == 0:
            break
        radius *= min(max(math.sqrt(area / got), 0.6), 1.6)
    return sd


def _dermoscopy(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 128.0
    yy, xx = _grid(size)
    d = np.hypot(yy - size / 2, xx - size / 2)
    F = _fields(rng, [size / 4, size / 4, size / 4, 0.9 * s, size / 8, size / 5, size / 20, 2.0 * s, size / 6], size)

    # illumination: aperture (dark corners) and vignetting
    aperture = np.zeros((size, size), np.float32)
    if rng.random() < 0.55:
        aperture = _sigmoid((d - rng.uniform(0.52, 0.70) * size) / (rng.uniform(1.0, 5.0) * s))
    visible = aperture < 0.5
    vignette = 1.0 - rng.uniform(0.05, 0.45) * (d / (0.71 * size)) ** 2

    # skin
    tone = _SKIN[rng.choice(len(_SKIN), p=_SKIN_P)] * rng.uniform(0.9, 1.08)
    img = tone * (1.0 + 0.05 * np.moveaxis(F[0:3], 0, -1)) * (1.0 + 0.025 * F[3])[..., None]
    if rng.random() < 0.35:  # erythema: red patches of skin (a distractor for colour clustering)
        red = _sigmoid((F[5] - rng.uniform(0.3, 1.2)) * 4.0)[..., None] * rng.uniform(0.3, 0.7)
        img = img * (1 - red) + np.array([0.80, 0.50, 0.52], np.float32) * red

    # lesion: area 5-80 %, multi-coloured or pale
    area = rng.uniform(*AREA_RANGE)
    cy, cx = size * (0.5 + rng.normal(0, 0.1, 2))
    sd = _lesion_sd(rng, size, area, visible, cy, cx)
    mask = (sd > 0) & visible
    if mask.mean() < AREA_RANGE[0] or mask.mean() > AREA_RANGE[1]:  # rare: the aperture ate the lesion
        sd = _lesion_sd(rng, size, area, np.ones_like(visible), size / 2, size / 2)
        aperture[:] = 0.0
        visible[:] = True
        mask = sd > 0
    R = math.sqrt(max(mask.sum(), 1) / math.pi)
    border = rng.uniform(0.8, 6.0) * s
    alpha = _sigmoid((sd + 0.2 * border * F[4]) / border)
    n_col = rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])
    cols = _PIGMENTS[rng.choice(len(_PIGMENTS), n_col, replace=False, p=[0.3, 0.3, 0.15, 0.15, 0.1])]
    lesion = np.broadcast_to(cols[0], img.shape).copy()
    for k in range(1, n_col):  # smooth regions of other pigments, more often in the centre
        region = _sigmoid((F[5 + k] + 0.8 * (np.clip(sd / R, 0, 1) - 0.5) - rng.uniform(-0.3, 0.6)) * 4.0)
        lesion = lesion * (1 - region[..., None]) + cols[k] * region[..., None]
    lesion *= (1.0 + 0.12 * F[4] + 0.06 * F[7] + 0.1 * (F[7] > rng.uniform(1.5, 2.5)))[..., None]  # network, dots
    pale = rng.random() < 0.2
    strength = rng.uniform(0.2, 0.5) if pale else rng.uniform(0.75, 1.0)
    a = (alpha * strength)[..., None]
    img = img * (1 - a) + lesion * a

    # distractors: moles, hair, ruler, bubbles
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            my, mx = rng.uniform(0.05, 0.95, 2) * size
            r = rng.uniform(1.5, 4.0) * s
            m_a = _sigmoid(_blob(size, my, mx, r, rng, rough=0.1) / (0.8 * s))[..., None] * rng.uniform(0.4, 0.9)
            img = img * (1 - m_a) + _PIGMENTS[1] * m_a
    if rng.random() < 0.55:
        n = int(rng.integers(1, 12)) if rng.random() < 0.7 else int(rng.integers(12, 40))  # dense in 30 %
        hair = _curves(rng, size, n, (0.2, 0.9), curl=1.5, width=rng.choice([1, 1, 1, 2], n) * max(1.0, s))
        h = hair[..., None] * rng.uniform(0.7, 0.95)
        img = img * (1 - h) + np.array([0.07, 0.05, 0.05], np.float32) * h
    if rng.random() < 0.25:
        img = _ruler(rng, img, size, s)
    if rng.random() < 0.35:
        img = _bubbles(rng, img, size, s)

    img = img * (vignette * (1.0 - 0.97 * aperture))[..., None]
    img += rng.normal(0, 0.012, img.shape).astype(np.float32)
    return _to_uint8(img), mask.astype(np.uint8)


def _ruler(rng, img, size, s):
    """A straight ruler edge near one side of the image with ticks every few pixels (black or blue ink)."""
    yy, xx = _grid(size)
    ang = rng.uniform(0, np.pi)
    nrm = np.array([math.cos(ang), math.sin(ang)], np.float32)
    off = rng.choice([-1, 1]) * rng.uniform(0.25, 0.42) * size
    u = (xx - size / 2) * nrm[0] + (yy - size / 2) * nrm[1] - off  # across the ruler
    v = -(xx - size / 2) * nrm[1] + (yy - size / 2) * nrm[0]  # along it
    w = max(1.0, s)
    line = np.abs(u) < w
    step = rng.uniform(4.0, 8.0) * s
    ticks = (np.abs(((v / step) % 1.0) - 0.5) > 0.5 - w / (2 * step)) & (np.sign(off) * u > 0) & (np.abs(u) < 5 * s)
    ink = np.array([0.1, 0.1, 0.12], np.float32) if rng.random() < 0.6 else np.array([0.15, 0.2, 0.45], np.float32)
    m = (line | ticks)[..., None] * rng.uniform(0.7, 0.95)
    return img * (1 - m) + ink * m


def _bubbles(rng, img, size, s):
    """Air bubbles of the immersion fluid: a bright thin ring, a slightly lighter inside and a specular spot."""
    yy, xx = _grid(size)
    for _ in range(int(rng.integers(1, 6))):
        r = rng.uniform(0.02, 0.12) * size
        by, bx = rng.uniform(0, 1, 2) * size
        dist = np.hypot(yy - by, xx - bx)
        ring = np.exp(-(((dist - r) / (0.8 * s)) ** 2)) * rng.uniform(0.4, 0.8)
        inside = (dist < r) * 0.08
        spot = np.exp(-((np.hypot(yy - by + 0.4 * r, xx - bx + 0.4 * r) / (0.15 * r + s)) ** 2)) * 0.8
        b = np.clip(ring + inside + spot, 0, 1)[..., None]
        img = img * (1 - b) + np.float32(0.97) * b
    return img


def _sample_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([_check_int(seed, "seed", 0), _TASK_ID, _check_int(index, "index", 0)])


def make_sample(size: int = 128, rng: np.random.Generator | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One harder dermoscopy image (``(size, size, 3)`` uint8) and its lesion mask (``(size, size)`` uint8 in {0, 1}).

    ``rng``: a :class:`numpy.random.Generator` (advanced) or an int seed. The mask's mean lies in
    :data:`AREA_RANGE`.
    """
    return _dermoscopy(_as_rng(rng), _check_size(size))


def make_batch(n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples stacked (images (n, size, size, 3), masks (n, size, size)); sample ``i`` depends only on
    ``(seed, i)``, so a prefix of a larger batch is the smaller batch."""
    n = _check_int(n, "n", 1, hint=" (number of samples)")
    size = _check_size(size)
    pairs = [_dermoscopy(_sample_rng(seed, i), size) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def describe() -> str:
    """What the generator draws (for ``dataset.json`` and the book)."""
    text = " ".join(__doc__.split("\n\n")[1:3])
    for markup in (":mod:", "``", "**", "`"):
        text = text.replace(markup, "")
    return " ".join(text.split()).replace(": * ", ": ").replace("; * ", "; ")


def generate(
    root: str | os.PathLike,
    n: int = 100,
    size: int = 128,
    seed: int = 0,
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
    overwrite: bool = True,
) -> Path:
    """Write ``n`` samples in the prepared layout under ``root`` (names ``derm_0000`` ..., sample ``i`` equals
    ``make_batch(n, size, seed)``'s ``i``-th) through :class:`mslib.data.layout.PreparedWriter`."""
    n = _check_int(n, "n", 1, hint=" (number of samples)")
    size = _check_size(size)
    width = max(4, len(str(n - 1)))
    names = [f"derm_{i:0{width}d}" for i in range(n)]
    root = Path(root)
    with PreparedWriter(root, name="synthetic-dermoscopy", classes=CLASSES, channels=3, overwrite=overwrite) as w:
        for i, name in enumerate(names):
            w.add(name, *_dermoscopy(_sample_rng(seed, i), size))
        w.set_splits(split_names(names, tuple(splits), seed))
        w.meta.update(
            source="synthetic (mslib.data.synthetic_dermoscopy)",
            licence="CC0 (generated)",
            checksum=None,
            description=describe(),
            generator={
                "n": n,
                "size": size,
                "seed": seed,
                "splits": list(splits),
                "mslib_version": __version__,
                "version": GENERATOR_VERSION,
            },
        )
    return root


def _lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (..., 3) -> CIE Lab (D65)."""
    c = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def image_stats(image, mask) -> dict[str, float | np.ndarray]:
    """Lesion statistics of one image: ``area`` (mask mean), ``lesion_rgb`` / ``skin_rgb`` (mean colour in
    [0, 1]), ``contrast`` (Michelson contrast of the mean luminances Y = 0.299 R + 0.587 G + 0.114 B,
    (Y_skin - Y_lesion) / (Y_skin + Y_lesion)) and ``delta_e`` (CIE76 distance of the two mean colours
    in Lab). Skin is the visible non-lesion part (pixels darker than 0.08 in every channel, the dark
    corners, are left out); with no skin pixel the skin values are NaN."""
    im = np.asarray(image, dtype=np.float64)
    im = im / 255.0 if np.asarray(image).dtype == np.uint8 else im
    m = np.asarray(mask) > 0
    if im.ndim != 3 or im.shape[:2] != m.shape:
        raise ValueError(f"image_stats: image {im.shape} must be (H, W, 3) with the mask's (H, W) {m.shape}")
    skin = ~m & (im.max(-1) > 0.08)
    nan = np.full(3, np.nan)
    les = im[m].mean(0) if m.any() else nan
    sk = im[skin].mean(0) if skin.any() else nan
    y = lambda c: 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]  # noqa: E731
    contrast = (y(sk) - y(les)) / (y(sk) + y(les)) if m.any() and skin.any() else float("nan")
    de = float(np.linalg.norm(_lab(sk) - _lab(les))) if m.any() and skin.any() else float("nan")
    return {"area": float(m.mean()), "lesion_rgb": les, "skin_rgb": sk, "contrast": float(contrast), "delta_e": de}
