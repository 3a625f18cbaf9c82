"""Synthetic stand-ins for the four task families of the book, generated from a seed.

Each generator draws one image/mask pair that looks enough like the real modality for the
methods' ideas to show, while staying small, fast and licence-free:

* ``polyp`` (Kvasir-SEG / CVC-ClinicDB-like colonoscopy): RGB mucosa with folds, vessels,
  a dark lumen, vignetting, black octagonal corners, specular highlights, and one (sometimes
  two) polyps of 2-36 % of the image with a dome shading and a colour contrast from very low
  to clear; polyp-coloured folds are distractors.
* ``skin`` (ISIC-like dermoscopy): RGB skin, a pigmented lesion of 4-55 % of the image with a
  fuzzy border, non-uniform pigment (network, globules, sometimes a blue-white veil), hairs
  crossing everything, small moles as distractors and the dermoscope's dark circular rim.
* ``breast`` (BUSI-like ultrasound): grayscale tissue layers under Rayleigh speckle, a
  hypoechoic mass (smooth oval or irregular spiculated) with a blurred margin and a
  posterior acoustic shadow (or enhancement); dark fat lobules are distractors; about 10 %
  of the images are normal, with an empty mask.
* ``cardiac`` (ACDC-like short-axis cine MRI): grayscale, classes right ventricle,
  myocardium, left ventricle; the geometry follows a slice position (basal slices large,
  apical small, the most apical without right ventricle) and a cardiac phase, surrounded by
  lungs, liver, aorta and fat, under a bias field and Rician noise.

Every random choice comes from one :class:`numpy.random.Generator`, so a sample is a pure
function of its seed. Image synthesis is vectorised (Gaussian random fields, closed-form
star-shaped blobs, splatted curves); no per-pixel Python loop.
``python -m benchmarks.bench_synthetic`` measures the speed (a few ms of CPU per 128 px image).

>>> image, mask = make_sample("polyp", size=128, rng=0)
>>> images, masks = make_batch("cardiac", n=8, size=96, seed=1)
>>> root = generate("skin", "/tmp/synthetic-skin", n=300)  # doctest: +SKIP
"""
from __future__ import annotations

import functools
import math
import numbers
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from mslib import __version__
from mslib.data.layout import PreparedWriter

__all__ = ["TASKS", "CLASSES", "CHANNELS", "MIN_SIZE", "MAX_SIZE", "make_sample", "make_batch",
           "sample_rng", "split_names", "generate", "describe"]

TASKS = ("polyp", "skin", "breast", "cardiac")
CLASSES: dict[str, list[str]] = {
    "polyp": ["background", "polyp"],
    "skin": ["background", "lesion"],
    "breast": ["background", "mass"],
    "cardiac": ["background", "right ventricle", "myocardium", "left ventricle"],
}
CHANNELS: dict[str, int] = {"polyp": 3, "skin": 3, "breast": 1, "cardiac": 1}
MIN_SIZE, MAX_SIZE = 32, 1024
NORMAL_FRACTION = 0.1  # breast: share of "normal" images (empty mask), as BUSI has
RV_APEX_LIMIT = 0.85   # cardiac: slices with position > this (near the apex) have no RV

_DESCRIPTIONS = {
    "polyp": (
        "Colonoscopy-like RGB frames: reddish-pink mucosa made of low-frequency colour noise and a "
        "fine texture, folds (as a height map, so they are shaded like the polyps), thin vessels, "
        "often a dark lumen, vignetting and the black octagonal corners of the endoscope video. "
        "One polyp (two in about one image out of five) covers 2-36 % of the frame; its outline is "
        "a star-shaped curve r(theta) = R(1 + sum_k a_k cos(k theta + phi_k)), its colour differs "
        "from the mucosa by a contrast drawn from very low to clear, and it is shaded as a dome. "
        "Specular highlights (small saturated white spots) sit on polyps and folds, and a "
        "polyp-coloured elongated fold is added to a third of the images as a distractor. "
        "Classes: background, polyp."),
    "skin": (
        "Dermoscopy-like RGB images: skin of a random tone with low-frequency colour variation, a "
        "pigmented lesion of 4-55 % of the image with an irregular star-shaped outline and a fuzzy "
        "border, non-uniform brown-to-black pigment (a reticular network, dark globules, sometimes "
        "a blue-white veil, sometimes a low overall contrast), dark (and a few light) hairs drawn as "
        "thin random curves over skin and lesion, small moles as distractors and, in half of the "
        "images, the dark circular rim of the dermoscope. The mask is the lesion outline where the "
        "image is not blacked out by the rim. Classes: background, lesion."),
    "breast": (
        "Breast-ultrasound-like grayscale images: skin line, subcutaneous fat, glandular tissue, "
        "retromammary fat and pectoral muscle as wavy layers with bright Cooper ligaments, under "
        "multiplicative Rayleigh speckle (the envelope of a smoothed complex Gaussian field), depth "
        "attenuation and log compression. A hypoechoic mass (a wider-than-tall smooth oval or an "
        "irregular spiculated outline, 1.5-30 % of the image, with a blurred margin and a contrast "
        "from nearly anechoic to subtle) casts a posterior acoustic shadow (sometimes a posterior "
        "enhancement). Dark fat lobules are distractors. About 10 % of the images are normal, with "
        "an empty mask, as in BUSI. Classes: background, mass."),
    "cardiac": (
        "Short-axis cine-MRI-like grayscale slices: a bright, slightly inhomogeneous left-ventricular "
        "blood pool (with dark papillary muscles and trabeculations along the endocardium, labelled "
        "as left ventricle) inside a dark myocardial ring, a crescent of "
        "bright right-ventricular blood attached to the septum, inside a body with dark lungs, "
        "liver, a bright descending aorta and bright epicardial and subcutaneous fat, under a "
        "smooth multiplicative bias field and Rician noise. A slice position from base to apex "
        "scales the rings (basal slices are large, apical ones small, the most apical 15 % have no "
        "right ventricle) and a cardiac phase from end-diastole to end-systole thickens the "
        "myocardium and shrinks the cavities. Classes: background, right ventricle, myocardium, "
        "left ventricle."),
}


# ------------------------------------------------------------------------------------------
# argument checks
# ------------------------------------------------------------------------------------------
def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; valid tasks are {', '.join(map(repr, TASKS))}")
    return task


def _check_int(value, name: str, low: int, high: int | None = None, hint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int, got {value!r}{hint}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {rng}, got {value}{hint}")
    return value


def _check_size(size) -> int:
    return _check_int(size, "size", MIN_SIZE, MAX_SIZE,
                      f" (image side in pixels; the geometry needs at least {MIN_SIZE})")


def _as_rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or not isinstance(rng, numbers.Integral) or rng < 0:
        raise ValueError(f"rng must be a numpy Generator or a non-negative int seed, got {rng!r}")
    return np.random.default_rng(int(rng))


def sample_rng(task: str, seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``task`` for ``seed``: it depends on these three only."""
    _check_task(task)
    seed = _check_int(seed, "seed", 0)
    index = _check_int(index, "index", 0)
    return np.random.default_rng([seed, TASKS.index(task), index])


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(yy, xx)`` in pixels (read-only, cached)."""
    c = np.arange(size, dtype=np.float32) + 0.5
    yy, xx = np.meshgrid(c, c, indexing="ij")
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


@functools.lru_cache(maxsize=64)
def _gauss_basis(size: int, sigma: float) -> np.ndarray:
    """(size, n) matrix of Gaussians of std ``sigma`` centred on a grid of step ``sigma / 1.5``.

    The grid extends ``3 sigma`` past both image borders, so the field has no border effect.
    """
    h = sigma / 1.5
    g = np.arange(-3 * sigma, size + 3 * sigma + h, h)
    c = np.arange(size) + 0.5
    w = np.exp(-0.5 * ((c[:, None] - g[None, :]) / sigma) ** 2).astype(np.float32)
    w.flags.writeable = False
    return w


def _fields(rng: np.random.Generator, sigmas, size: int) -> np.ndarray:
    """Gaussian random fields, one per ``sigma`` (pixels), each with mean 0 and std 1.

    A field is white noise low-pass filtered by a Gaussian of standard deviation ``sigma``.
    Fine fields (``sigma < 8``) filter pixel noise directly; smooth ones sum Gaussian bumps
    with random weights on a grid of step ``sigma / 1.5`` (``W N W^T``, separable, which
    matches the filtered white noise up to a negligible ripple) so that their cost does not
    grow with ``sigma``.
    """
    out = np.empty((len(sigmas), size, size), np.float32)
    for i, sg in enumerate(sigmas):
        sg = float(sg)
        if sg < 8.0:
            out[i] = ndi.gaussian_filter(rng.standard_normal((size, size), dtype=np.float32), sg)
        else:
            w = _gauss_basis(size, round(sg, 4))
            noise = rng.standard_normal((w.shape[1], w.shape[1]), dtype=np.float32)
            # einsum without BLAS: small products, and no thread start-up on a busy machine
            out[i] = np.einsum("ij,jk->ik", np.einsum("ij,jk->ik", w, noise), w.T)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-8
    return out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _blob(size: int, cy: float, cx: float, radius: float, rng: np.random.Generator, *,
          aspect: float = 1.0, angle: float = 0.0, rough: float = 0.08, n_harm: int = 6,
          decay: float = 1.0) -> np.ndarray:
    """Signed distance (pixels, > 0 inside) to a star-shaped blob.

    The outline is ``r(theta) = radius * (1 + sum_{k=2..n_harm} a_k cos(k theta + phi_k))`` with
    ``a_k ~ N(0, rough / k**decay)`` (radial harmonics: few and small give a smooth oval, many
    and slowly decaying give an irregular, spiculated margin), stretched to an ellipse of axis
    ratio ``aspect`` (same area) rotated by ``angle``. The distance is the radial one,
    ``r(theta) - rho``, which equals the Euclidean distance for a circle.
    """
    yy, xx = _grid(size)
    dy, dx = yy - np.float32(cy), xx - np.float32(cx)
    ca, sa = math.cos(angle), math.sin(angle)
    sq = math.sqrt(aspect)
    u = (dx * ca + dy * sa) / sq
    v = (dy * ca - dx * sa) * sq
    rho = np.hypot(u, v)
    theta = np.arctan2(v, u)
    k = np.arange(2, max(n_harm, 2) + 1)
    a = rng.normal(0.0, rough, len(k)) / k ** decay
    phi = rng.uniform(0, 2 * np.pi, len(k))
    t = np.linspace(-np.pi, np.pi, 721)
    table = 1.0 + (a[:, None] * np.cos(k[:, None] * t[None] + phi[:, None])).sum(0)
    table = np.clip(table, 0.35, 1.9)
    r = np.interp(theta, t, table).astype(np.float32)
    return (radius * r - rho).astype(np.float32)


def _blob_with_area(size: int, area: float, cy: float, cx: float, rng: np.random.Generator,
                    **kw) -> np.ndarray:
    """:func:`_blob` whose inside covers about ``area`` pixels (one radius correction)."""
    state = rng.bit_generator.state  # same harmonics for the corrected radius
    radius = math.sqrt(area / math.pi)
    sd = _blob(size, cy, cx, radius, rng, **kw)
    got = float((sd > 0).sum())
    if got > 0:
        rng.bit_generator.state = state
        radius *= math.sqrt(area / got)
        sd = _blob(size, cy, cx, radius, rng, **kw)
    return sd


def _curves(rng: np.random.Generator, size: int, n: int, length: tuple[float, float],
            curl: float, width: np.ndarray | None = None) -> np.ndarray:
    """Anti-aliased map in [0, 1] of ``n`` thin random smooth curves (hairs, vessels).

    Each curve starts anywhere (also just outside the image), turns with a random smooth
    curvature (``curl`` radians per image side) and is splatted bilinearly as points every
    0.35 px; ``width`` (pixels, one per curve) thickens it by parallel offset copies.
    """
    out = np.zeros((size, size), np.float32)
    if n == 0:
        return out
    if width is None:
        width = np.ones(n)
    ys, xs = [], []
    for i in range(n):
        L = rng.uniform(*length) * size
        s = np.arange(0.0, L, 0.35)
        th = (rng.uniform(0, 2 * np.pi) + rng.normal(0, curl) * s / size
              + rng.normal(0, 0.3 * curl) * np.sin(2 * np.pi * s / size * rng.uniform(0.5, 2.0)))
        y = rng.uniform(-0.1, 1.1) * size + np.cumsum(np.sin(th)) * 0.35
        x = rng.uniform(-0.1, 1.1) * size + np.cumsum(np.cos(th)) * 0.35
        offsets = np.arange(int(round(width[i]))) - (int(round(width[i])) - 1) / 2
        for o in offsets:
            ys.append(y + o * np.cos(th))
            xs.append(x - o * np.sin(th))
    # bilinear splat: each point spreads its weight over its four neighbouring pixels
    y = np.concatenate(ys) - 0.5
    x = np.concatenate(xs) - 0.5
    y0, x0 = np.floor(y), np.floor(x)
    wy, wx = y - y0, x - x0
    y0, x0 = y0.astype(np.int64), x0.astype(np.int64)
    for dy, dx, w in ((0, 0, (1 - wy) * (1 - wx)), (0, 1, (1 - wy) * wx), (1, 0, wy * (1 - wx)), (1, 1, wy * wx)):
        yi, xi = y0 + dy, x0 + dx
        keep = (yi >= 0) & (yi < size) & (xi >= 0) & (xi < size)
        out += np.bincount(yi[keep] * size + xi[keep], weights=w[keep], minlength=size * size).reshape(size, size)
    return np.clip(out * 0.35 * 1.3, 0.0, 1.0)  # 0.35 px between points: a line's coverage is about 1


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------
# polyp (colonoscopy)
# ------------------------------------------------------------------------------------------
def _polyp(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 128.0
    yy, xx = _grid(size)
    F = _fields(rng, [size / 5, size / 5, size / 5, size / 9, size / 14, 0.8 * s, 1.3 * s,
                      size / 7, size / 18, 2.5 * s], size)
    # mucosa colour: low-frequency colour noise around a reddish-pink (sometimes orange) base
    base = np.array([rng.uniform(0.74, 0.92), rng.uniform(0.33, 0.48), rng.uniform(0.28, 0.40)], np.float32)
    if rng.random() < 0.15:
        base[1] += 0.07
    img = base * (1.0 + 0.06 * np.moveaxis(F[0:3], 0, -1))
    img *= (1.0 + 0.10 * F[3])[..., None]
    img *= (1.0 + 0.035 * F[5])[..., None]                      # fine texture
    vessels = np.exp(-(F[8] / 0.07) ** 2) * np.clip(F[4] + 0.3, 0, 1.5)
    img *= 1.0 - rng.uniform(0.1, 0.35) * vessels[..., None] * np.array([0.35, 1.0, 0.85], np.float32)

    # height map: folds (ridges of a smooth field) plus micro-relief; polyps add domes
    fold_amp = rng.uniform(1.0, 6.0) * s
    height = fold_amp * np.exp(-(F[7] / 0.35) ** 2) + 0.25 * s * F[9]

    # polyps: one, sometimes two, total area log-uniform in 2..36 % of the image
    area = _log_uniform(rng, 0.02, 0.36) * size * size
    n_polyps = 2 if rng.random() < 0.2 else 1
    if n_polyps == 1:
        parts = [area]
    else:
        u = rng.uniform(0.55, 0.85)
        parts = [area * u, area * (1 - u)]
    sds, centres = [], []
    for a in parts:
        r = math.sqrt(a / math.pi)
        for _ in range(8):  # avoid overlapping polyps
            lo = min(0.5 * size, 0.55 * r + 3 * s)
            cy, cx = rng.uniform(lo, size - lo, 2)
            if all(sd[int(cy), int(cx)] < -0.3 * r for sd in sds):
                break
        centres.append((cy, cx))
        sds.append(_blob_with_area(size, a, cy, cx, rng, aspect=rng.uniform(0.7, 1.4),
                                   angle=rng.uniform(0, np.pi), rough=rng.uniform(0.03, 0.14), n_harm=6))
    sd_all = np.max(sds, axis=0)
    mask = sd_all > 0

    # polyp colour: mucosa shifted by a contrast from very low to clear, paler / redder / darker
    directions = np.array([[0.9, 1.1, 1.1], [0.3, -0.8, -0.6], [-0.9, -0.7, -0.5], [0.7, 0.9, 0.4]], np.float32)
    contrast = _log_uniform(rng, 0.03, 0.3)
    pcol = base + contrast * directions[rng.integers(len(directions))]

    def paint(sd, colour, edge):
        alpha = _sigmoid(sd / edge)[..., None]
        tex = (1.0 + rng.uniform(0.03, 0.10) * F[6] + 0.05 * F[4])[..., None]
        return img * (1 - alpha) + colour * tex * alpha

    # distractor: a polyp-coloured elongated fold, not in the mask
    if rng.random() < 0.35:
        r = size * rng.uniform(0.05, 0.12)
        for _ in range(8):
            cy, cx = rng.uniform(0.1, 0.9, 2) * size
            if sd_all[int(cy), int(cx)] < -1.5 * r:
                break
        sd_d = _blob(size, cy, cx, r, rng, aspect=rng.uniform(3, 6), angle=rng.uniform(0, np.pi), rough=0.05)
        sd_d = np.minimum(sd_d, -sd_all - 2 * s)  # keep it off the polyps
        img = paint(sd_d, pcol * rng.uniform(0.95, 1.05), 1.0 * s)
        height = height + rng.uniform(0.2, 0.5) * r * np.sqrt(np.clip(sd_d / r, 0, 1))
    img = paint(sd_all, pcol, rng.uniform(0.5, 1.5) * s)
    for sd in sds:
        r = math.sqrt(max(float((sd > 0).sum()), 1.0) / math.pi)
        t = np.clip(sd / r, 0, 1)
        height = height + rng.uniform(0.25, 0.7) * r * np.sqrt(t * (2 - t))

    # shading: Lambert with a light near the camera, plus Blinn-Phong specular highlights
    gy, gx = np.gradient(height)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)
    la = rng.uniform(0, 2 * np.pi)
    lxy = rng.uniform(0.2, 0.5)
    light = np.array([lxy * math.cos(la), lxy * math.sin(la), 1.0])
    light /= np.linalg.norm(light)
    ndotl = (-gx * light[0] - gy * light[1] + light[2]) / norm
    img *= (0.35 + 0.7 * np.clip(ndotl, 0, 1))[..., None]
    half = light + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    ndoth = np.clip((-gx * half[0] - gy * half[1] + half[2]) / norm, 0, 1)
    # highlights only where the wet surface faces the half vector closely
    spec = np.clip((ndoth - rng.uniform(0.995, 0.9995)) * 500.0, 0, 1) * (np.abs(gx) + np.abs(gy) > 0.2)
    spots = (F[5] > rng.uniform(3.0, 3.6)).astype(np.float32)   # isolated glints on the mucosa
    spec = np.clip(np.maximum(spec, ndi.gaussian_filter(spots, 0.6 * s) * 3.0), 0, 1)

    # illumination: vignetting around an off-centre light, often a dark lumen far from the polyps
    c = size * (0.5 + rng.normal(0, 0.08, 2))
    d2 = ((yy - c[0]) ** 2 + (xx - c[1]) ** 2) / (0.72 * size) ** 2
    illum = np.clip(1.0 - rng.uniform(0.3, 0.6) * d2, 0.15, 1.0)
    if rng.random() < 0.55:
        cand = rng.uniform(0.1, 0.9, (6, 2)) * size
        dist = [min(math.hypot(p[0] - q[0], p[1] - q[1]) for q in centres) for p in cand]
        ly, lx = cand[int(np.argmax(dist))]
        rl = size * rng.uniform(0.08, 0.22)
        lumen = np.exp(-(((yy - ly) ** 2 + (xx - lx) ** 2) / (rl * rl)) ** 1.5)
        illum = illum * (1.0 - rng.uniform(0.75, 0.95) * lumen)
    img = img * illum[..., None]
    img = img * (1 - spec[..., None]) + np.array([1.0, 1.0, 0.97], np.float32) * spec[..., None]
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)

    # black octagonal corners of the endoscope video (mask is cut there too)
    if rng.random() < 0.6:
        k = rng.uniform(0.78, 0.9) * size
        corner = (np.abs(yy - size / 2) + np.abs(xx - size / 2)) > k
        img[corner] = rng.uniform(0.0, 0.03)
        mask &= ~corner
    return _to_uint8(img), mask.astype(np.uint8)


# ------------------------------------------------------------------------------------------
# skin (dermoscopy)
# ------------------------------------------------------------------------------------------
def _skin(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 128.0
    yy, xx = _grid(size)
    F = _fields(rng, [size / 4, size / 4, size / 4, 0.9 * s, size / 10, size / 28, 2.0 * s, size / 6], size)
    tones = np.array([[0.93, 0.76, 0.74], [0.90, 0.72, 0.62], [0.84, 0.62, 0.50], [0.70, 0.50, 0.38]], np.float32)
    tone = tones[rng.choice(len(tones), p=[0.35, 0.35, 0.2, 0.1])] * rng.uniform(0.94, 1.04)
    img = tone * (1.0 + 0.045 * np.moveaxis(F[0:3], 0, -1)) * (1.0 + 0.03 * F[3])[..., None]

    # lesion: irregular star-shaped outline, fuzzy border, non-uniform pigment
    area = _log_uniform(rng, 0.04, 0.55) * size * size
    cy, cx = size * (0.5 + rng.normal(0, 0.08, 2))
    sd = _blob_with_area(size, area, cy, cx, rng, aspect=rng.uniform(0.7, 1.4), angle=rng.uniform(0, np.pi),
                         rough=rng.uniform(0.04, 0.2), n_harm=9, decay=0.8)
    R = math.sqrt(area / math.pi)
    border = rng.uniform(0.8, 5.0) * s
    alpha = _sigmoid((sd + 0.15 * border * F[4]) / border)
    depth = np.clip(sd / R, 0, 1)
    density = 0.55 + 0.25 * F[4] + rng.uniform(-0.35, 0.35) * (depth - 0.5)
    density += rng.uniform(0.0, 0.3) * np.exp(-(F[5] / 0.3) ** 2)          # pigment network
    density += 0.35 * (F[6] > rng.uniform(1.6, 2.6))                        # dots and globules
    density = np.clip(density * rng.uniform(0.6, 1.3), 0, 1)[..., None]
    light_c = np.array([0.72, 0.50, 0.36], np.float32)
    dark_c = np.array([0.22, 0.13, 0.09], np.float32)
    lesion = light_c * (1 - density) + dark_c * density
    lesion = lesion * (1.0 + 0.04 * F[3])[..., None]
    if rng.random() < 0.15:  # blue-white veil
        veil = _sigmoid((F[7] - 0.6) * 5.0)[..., None] * rng.uniform(0.4, 0.8)
        lesion = lesion * (1 - veil) + np.array([0.45, 0.50, 0.62], np.float32) * veil
    strength = rng.uniform(0.35, 1.0) if rng.random() < 0.4 else 1.0       # low-contrast lesions
    a = alpha[..., None] * strength
    img = img * (1 - a) + lesion * a
    mask = sd > 0

    # moles: small dark spots away from the lesion (distractors)
    if rng.random() < 0.35:
        for _ in range(rng.integers(1, 4)):
            r = rng.uniform(1.5, 4.0) * s
            for _ in range(8):
                my, mx = rng.uniform(0.08, 0.92, 2) * size
                if sd[int(my), int(mx)] < -4 * r:
                    break
            else:
                continue
            m_alpha = _sigmoid(_blob(size, my, mx, r, rng, rough=0.1) / (0.8 * s))[..., None] * rng.uniform(0.5, 0.9)
            img = img * (1 - m_alpha) + dark_c * 1.3 * m_alpha

    # hairs: thin dark (rarely light) curves crossing skin and lesion
    if rng.random() < 0.6:
        n = int(rng.integers(1, 25))
        width = rng.choice([1, 1, 2], n) * max(1.0, s)
        hair = _curves(rng, size, n, (0.3, 1.2), curl=1.5, width=width)
        col = np.array([0.08, 0.06, 0.05], np.float32) if rng.random() < 0.9 else np.array([0.85, 0.8, 0.75], np.float32)
        h = hair[..., None] * rng.uniform(0.6, 0.95)
        img = img * (1 - h) + col * h

    # illumination and the dermoscope's dark circular rim
    d = np.hypot(yy - size / 2, xx - size / 2)
    img *= (1.0 - 0.15 * (d / (0.7 * size)) ** 2)[..., None]
    if rng.random() < 0.5:
        rim = _sigmoid((d - rng.uniform(0.5, 0.72) * size) / (rng.uniform(1.0, 4.0) * s))
        img *= (1.0 - 0.97 * rim)[..., None]
        mask &= rim < 0.5
    img += rng.normal(0, 0.01, img.shape).astype(np.float32)
    return _to_uint8(img), mask.astype(np.uint8)


# ------------------------------------------------------------------------------------------
# breast (ultrasound)
# ------------------------------------------------------------------------------------------
def _breast(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 128.0
    yy, xx = _grid(size)
    F = _fields(rng, [size / 6, size / 6, size / 5, size / 12, size / 30, size / 20, 1.5 * s], size)
    t = yy / size
    # tissue layers with wavy boundaries: skin, fat, gland, retromammary fat, muscle
    b1 = 0.04 + 0.01 * F[0][0][None, :]
    b2 = rng.uniform(0.12, 0.3) + 0.05 * F[0][size // 2][None, :]
    b3 = rng.uniform(0.55, 0.75) + 0.06 * F[1][0][None, :]
    b4 = rng.uniform(0.8, 0.97) + 0.03 * F[1][size // 2][None, :]
    step = lambda b: _sigmoid((t - b) / 0.012)
    fat = 0.2 + 0.06 * F[3]
    gland = np.clip(0.6 + 0.2 * F[3] + 0.15 * F[5], 0.15, 1.0)
    muscle = 0.35 + 0.15 * np.sin(2 * np.pi * (t * rng.uniform(10, 20) + 0.3 * F[2]))
    refl = 0.9 * (1 - step(b1)) + fat * (step(b1) - step(b2)) + gland * (step(b2) - step(b3)) \
        + fat * (step(b3) - step(b4)) + muscle * step(b4)
    lig = ndi.gaussian_filter1d(F[4], 9.0 * s, axis=1)            # Cooper ligaments: curvy, mostly lateral
    lig /= lig.std() + 1e-8
    lig = np.exp(-(lig / 0.45) ** 2) * np.clip(F[2] + 0.5, 0, 1)
    refl = refl + rng.uniform(0.2, 0.6) * lig * step(b1) * (1 - step(b4))

    # dark fat lobules: hypoechoic, smooth, wider than tall (distractors, not in the mask)
    for _ in range(rng.integers(1, 6)):
        r = size * rng.uniform(0.03, 0.1)
        sd_l = _blob(size, rng.uniform(0.1, 0.8) * size, rng.uniform(0, 1) * size, r, rng,
                     aspect=rng.uniform(1.5, 3.0), angle=rng.normal(0, 0.2), rough=0.04)
        refl = refl * (1 - rng.uniform(0.4, 0.75) * _sigmoid(sd_l / (1.2 * s)))
        refl = refl + 0.15 * np.exp(-(sd_l / (1.5 * s)) ** 2)          # thin echogenic capsule

    mask = np.zeros((size, size), bool)
    if rng.random() >= NORMAL_FRACTION:
        area = _log_uniform(rng, 0.015, 0.3) * size * size
        R = math.sqrt(area / math.pi)
        cy = rng.uniform(0.25, 0.6) * size
        cx = rng.uniform(max(0.2 * size, 0.6 * R), min(0.8 * size, size - 0.6 * R))
        if rng.random() < 0.5:   # benign-like: smooth oval, wider than tall
            kw = dict(aspect=rng.uniform(1.2, 1.9), angle=rng.normal(0, 0.15), rough=rng.uniform(0.02, 0.06), n_harm=5)
        else:                    # malignant-like: irregular, spiculated, about as tall as wide
            kw = dict(aspect=rng.uniform(0.8, 1.25), angle=rng.uniform(0, np.pi), rough=rng.uniform(0.08, 0.16),
                      n_harm=12, decay=0.75)
        sd = _blob_with_area(size, area, cy, cx, rng, **kw)
        margin = rng.uniform(0.7, 3.0) * s
        a = _sigmoid((sd + 0.3 * margin * F[5]) / margin)
        echo = _log_uniform(rng, 0.04, 0.5)
        inside = echo * 0.5 * (1.0 + 0.3 * F[5])
        refl = refl * (1 - a) + inside * a
        if kw["n_harm"] > 5 and rng.random() < 0.4:   # echogenic halo
            refl = refl + 0.35 * np.exp(-((sd + 2.5 * s) / (1.5 * s)) ** 2)
        # posterior acoustic shadow (or enhancement) in the columns below the mass
        inside_cols = a > 0.5
        width = ndi.gaussian_filter1d(a.max(axis=0), 2.0 * s)
        has = inside_cols.any(axis=0)
        bottom = np.where(has, size - 1 - np.argmax(inside_cols[::-1], axis=0), size * 2).astype(np.float32)
        bottom = ndi.minimum_filter1d(bottom, int(3 * s) * 2 + 1)
        below = _sigmoid((yy - bottom[None, :]) / (3.0 * s)) * width[None, :]
        u = rng.random()
        k = -rng.uniform(0.35, 0.8) if u < 0.65 else (rng.uniform(0.3, 0.7) if u < 0.85 else 0.0)
        refl = refl * (1 + k * below)
        mask = sd > 0
    # faint shadows under ligaments (distractors)
    for _ in range(rng.integers(0, 3)):
        x0, y0 = rng.uniform(0, 1) * size, rng.uniform(0.1, 0.6) * size
        col = np.exp(-((xx - x0) / (rng.uniform(1.5, 4.0) * s)) ** 2)
        refl = refl * (1 - rng.uniform(0.2, 0.45) * col * _sigmoid((yy - y0) / (2 * s)))

    # depth attenuation with time-gain compensation, Rayleigh speckle, log compression
    refl = np.clip(refl, 0.01, None) * np.exp(-rng.uniform(0.5, 1.5) * t) * (1 + 0.1 * F[2])
    # speckle: the envelope of a smoothed complex Gaussian field (Rayleigh, grains longer
    # laterally), then averaged over about a pixel as when a B-mode frame is resized down
    re, im = rng.standard_normal((2, size, size), dtype=np.float32)
    sig = (rng.uniform(0.5, 0.7) * s, rng.uniform(0.9, 1.4) * s)
    env2 = ndi.gaussian_filter(re, sig) ** 2 + ndi.gaussian_filter(im, sig) ** 2
    env2 = ndi.gaussian_filter(env2 / env2.mean(), rng.uniform(0.6, 0.9) * s)
    amp = refl * np.sqrt(env2)
    dyn = rng.uniform(28.0, 40.0)   # displayed dynamic range in dB
    top = float(np.percentile(amp, 99.5))
    img = 1.0 + 20.0 * np.log10(np.clip(amp / top, 1e-6, None)) / dyn
    img = img * rng.uniform(0.85, 1.0)
    return _to_uint8(img), mask.astype(np.uint8)


# ------------------------------------------------------------------------------------------
# cardiac (short-axis cine MRI)
# ------------------------------------------------------------------------------------------
def _cardiac(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    s = size / 128.0
    yy, xx = _grid(size)
    F = _fields(rng, [size / 3, size / 8, size / 20, 1.2 * s], size)
    pos = rng.uniform(0, 1)    # slice position: 0 base .. 1 apex
    phase = rng.uniform(0, 1)  # 0 end-diastole .. 1 end-systole
    cy, cx = size * (0.5 + rng.normal(0, 0.06, 2))

    # body: soft tissue with lungs, liver, aorta and subcutaneous fat
    body_sd = _blob(size, size * (0.5 + rng.normal(0, 0.05)), size * (0.5 + rng.normal(0, 0.05)),
                    size * rng.uniform(0.55, 0.8), rng, aspect=rng.uniform(1.0, 1.5), rough=0.03)
    img = np.where(body_sd > 0, 0.32 + 0.05 * F[1], 0.02).astype(np.float32)
    img += 0.45 * np.exp(-((body_sd - 3 * s) / (2.5 * s)) ** 2) * (body_sd > 0)           # subcutaneous fat
    rot = rng.uniform(-0.6, 0.6)  # overall orientation of the heart (RV direction around pi)
    for ang, dist, dark in ((rot + np.pi * 0.85, 0.33, True), (rot - np.pi * 0.2, 0.33, True),
                            (rot + np.pi * 0.55, 0.38, False)):
        ly = cy + dist * size * math.sin(ang)
        lx = cx + dist * size * math.cos(ang)
        sd_o = _blob(size, ly, lx, size * rng.uniform(0.12, 0.2), rng, aspect=rng.uniform(0.7, 1.5),
                     angle=rng.uniform(0, np.pi), rough=0.08)
        a = _sigmoid(sd_o / (1.5 * s))
        value = 0.05 + 0.03 * F[2] if dark else 0.45 + 0.06 * F[2]              # lungs / liver
        img = img * (1 - a) + value * a
    ay = cy + 0.2 * size * math.sin(rot + 1.4)
    ax = cx + 0.2 * size * math.cos(rot + 1.4)
    aorta = _sigmoid(_blob(size, ay, ax, size * rng.uniform(0.03, 0.05), rng, rough=0.02) / (0.8 * s))
    img = img * (1 - aorta) + rng.uniform(0.7, 0.95) * aorta                    # bright distractor

    # left ventricle and myocardium
    r_lv = size * rng.uniform(0.10, 0.13) * (1.0 - 0.55 * pos) * (1.0 - 0.3 * phase)
    thick = max(2.5, size * rng.uniform(0.035, 0.05) * (1.0 + 0.45 * phase) * (1.0 - 0.2 * pos))
    sd_lv = _blob(size, cy, cx, r_lv, rng, aspect=rng.uniform(0.85, 1.15), angle=rng.uniform(0, np.pi),
                  rough=0.04, n_harm=5)
    lv = sd_lv > 0
    theta = np.arctan2(yy - cy, xx - cx)
    t_var = thick * (1.0 + 0.15 * np.cos(theta - rng.uniform(0, 2 * np.pi)))
    myo = (sd_lv > -t_var) & ~lv
    myo |= ndi.binary_dilation(lv) & ~lv        # guarantee a closed ring around the LV
    epi = lv | myo

    # right ventricle: crescent of an ellipse outside the epicardium, towards the image left
    rv = np.zeros_like(lv)
    if pos <= RV_APEX_LIMIT:
        r_epi = r_lv + thick
        phi = np.pi + rot
        scale = 1.0 - 0.5 * pos
        d = r_epi * rng.uniform(0.35, 0.6)
        a_par, a_perp = r_epi * rng.uniform(1.0, 1.3) * scale, r_epi * rng.uniform(1.35, 1.8) * max(scale, 0.6)
        a_par = max(a_par, d + 0.6 * r_epi)  # reach past the septum
        sd_rv = _blob(size, cy + (d + 0.3 * a_par) * math.sin(phi), cx + (d + 0.3 * a_par) * math.cos(phi),
                      math.sqrt(a_par * a_perp), rng, aspect=a_par / a_perp, angle=phi, rough=0.03, n_harm=4)
        rv = (sd_rv > 0) & ~epi
        rv_wall = (sd_rv > -max(1.5, 1.5 * s)) & ~rv & ~epi
    else:
        rv_wall = np.zeros_like(lv)

    # epicardial fat: bright partial ring outside the heart (distractor)
    heart = epi | rv | rv_wall
    ring = ndi.binary_dilation(heart, iterations=max(1, int(round(rng.uniform(1, 3) * s)))) & ~heart
    ring &= np.cos(theta - rng.uniform(0, 2 * np.pi)) > rng.uniform(-0.3, 0.6)
    img = np.where(ring, 0.75 + 0.1 * F[2], img)
    blood = rng.uniform(0.6, 0.95)
    wall = rng.uniform(0.15, 0.38)
    slow_flow = 1.0 + rng.uniform(0.0, 0.12) * F[1]          # blood-pool inhomogeneity
    img = np.where(rv_wall | myo, wall, img)
    img = np.where(rv, blood * rng.uniform(0.75, 1.0) * slow_flow, img)
    img = np.where(lv, blood * slow_flow, img)
    # trabeculations: dark specks along the endocardium, inside the cavity (labelled LV)
    trab = lv & (sd_lv < rng.uniform(1.5, 3.5) * s) & (F[3] > rng.uniform(0.2, 1.2))
    img = np.where(trab, wall + 0.3 * (blood - wall), img)
    for _ in range(rng.integers(0, 3)):   # papillary muscles: dark spots in the LV, labelled LV
        ang = rng.uniform(0, 2 * np.pi)
        py, px = cy + 0.6 * r_lv * math.sin(ang), cx + 0.6 * r_lv * math.cos(ang)
        pap = _sigmoid(_blob(size, py, px, max(1.0, 0.22 * r_lv), rng, rough=0.05) / (0.6 * s)) * lv
        img = img * (1 - pap) + wall * pap
    img = ndi.gaussian_filter(img, rng.uniform(0.5, 1.0) * (1.0 + 0.4 * pos) * s)   # partial volume

    # bias field and Rician noise
    bias = np.exp(rng.uniform(0.15, 0.4) * F[0] + rng.uniform(-0.3, 0.3) * (xx / size - 0.5)
                  + rng.uniform(-0.3, 0.3) * (yy / size - 0.5))
    img = img * bias
    sigma = rng.uniform(0.02, 0.09)
    n1, n2 = rng.standard_normal((2, size, size), dtype=np.float32) * sigma
    img = np.hypot(img + n1, n2)
    img = img / float(np.percentile(img, 99.7)) * rng.uniform(0.8, 0.95)

    mask = np.zeros((size, size), np.uint8)
    mask[rv] = 1
    mask[myo] = 2
    mask[lv] = 3
    return _to_uint8(img), mask


_GENERATORS = {"polyp": _polyp, "skin": _skin, "breast": _breast, "cardiac": _cardiac}


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------
def make_sample(task: str, size: int = 128, rng: np.random.Generator | int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic image/mask pair of ``task``.

    Returns ``image`` uint8 of shape (size, size, 3) for the RGB tasks (polyp, skin) or
    (size, size) for the grayscale ones (breast, cardiac), and ``mask`` uint8 (size, size) of
    class indices into ``CLASSES[task]``. ``rng`` is a :class:`numpy.random.Generator` (which
    is advanced) or an int seed (``np.random.default_rng(rng)``).
    """
    _check_task(task)
    size = _check_size(size)
    gen = _as_rng(rng)
    image, mask = _GENERATORS[task](gen, size)
    return image, mask


def make_batch(task: str, n: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples stacked: images (n, size, size[, 3]) uint8 and masks (n, size, size) uint8.

    Sample ``i`` is ``make_sample(task, size, sample_rng(task, seed, i))``: it depends only on
    ``(task, seed, i)``, so ``make_batch(task, 10)[0][:5]`` equals ``make_batch(task, 5)[0]``,
    and sample ``i`` of :func:`generate` with the same seed is the same image.
    """
    _check_task(task)
    n = _check_int(n, "n", 1, hint=" (number of samples)")
    size = _check_size(size)
    seed = _check_int(seed, "seed", 0)
    pairs = [make_sample(task, size, sample_rng(task, seed, i)) for i in range(n)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def split_names(names: list[str], splits: tuple[float, ...] = (0.7, 0.15, 0.15), seed: int = 0,
                labels: tuple[str, ...] = ("train", "val", "test")) -> dict[str, list[str]]:
    """Shuffle ``names`` with ``seed`` and cut them by the fractions ``splits`` (sorted lists).

    Counts use the largest-remainder rule, so they sum to ``len(names)``; every split with a
    positive fraction gets at least one name; a split with fraction 0 is left out.
    """
    if len(splits) != len(labels):
        raise ValueError(f"splits must give {len(labels)} fractions {labels}, got {splits!r}")
    fr = np.asarray(splits, dtype=float)
    if not np.all(np.isfinite(fr)) or np.any(fr < 0) or abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"splits must be non-negative fractions summing to 1 for {labels}, got {splits!r}")
    n = len(names)
    positive = int((fr > 0).sum())
    if n < positive:
        raise ValueError(f"n={n} samples cannot fill {positive} non-empty splits; use n >= {positive}")
    raw = fr * n
    counts = np.floor(raw).astype(int)
    counts[(fr > 0) & (counts == 0)] = 1
    while counts.sum() > n:  # the minimum of one per split overshot: take from the largest
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(raw - np.floor(raw)), kind="stable")
    i = 0
    while counts.sum() < n:
        j = order[i % len(order)]
        if fr[j] > 0:
            counts[j] += 1
        i += 1
    perm = np.random.default_rng([_check_int(seed, "seed", 0), 0x5EED]).permutation(n)
    out, start = {}, 0
    for label, c in zip(labels, counts):
        if c > 0:
            out[label] = sorted(names[k] for k in perm[start:start + c])
        start += c
    return out


def generate(task: str, root: str | os.PathLike, n: int = 300, size: int = 128, seed: int = 0,
             splits: tuple[float, float, float] = (0.7, 0.15, 0.15), overwrite: bool = True) -> Path:
    """Write ``n`` samples of ``task`` in the prepared layout under ``root`` and return it.

    Names are ``{task}_0000`` ...; sample ``i`` equals ``make_batch(task, n, size, seed)``'s
    ``i``-th. Split files ``train/val/test`` come from :func:`split_names` (deterministic in
    ``seed``). Writing goes through :class:`mslib.data.layout.PreparedWriter`: a failure leaves
    no folder behind, and ``dataset.json`` records the generator's parameters.
    """
    _check_task(task)
    n = _check_int(n, "n", 1, hint=" (number of samples)")
    size = _check_size(size)
    seed = _check_int(seed, "seed", 0)
    width = max(4, len(str(n - 1)))
    names = [f"{task}_{i:0{width}d}" for i in range(n)]
    split_map = split_names(names, tuple(splits), seed)
    root = Path(root)
    with PreparedWriter(root, name=f"synthetic-{task}", classes=CLASSES[task], channels=CHANNELS[task],
                        overwrite=overwrite) as writer:
        empty = 0
        for i, name in enumerate(names):
            image, mask = make_sample(task, size, sample_rng(task, seed, i))
            empty += int(not mask.any())
            writer.add(name, image, mask)
        writer.set_splits(split_map)
        writer.meta.update(
            source="synthetic (mslib.data.synthetic)",
            licence="CC0 (generated)",
            checksum=None,
            description=describe(task),
            empty_masks=empty,
            generator={"task": task, "n": n, "size": size, "seed": seed, "splits": list(splits),
                       "mslib_version": __version__},
        )
    return root


def describe(task: str) -> str:
    """A one-paragraph description of the synthetic ``task`` (used in the book)."""
    return _DESCRIPTIONS[_check_task(task)]
