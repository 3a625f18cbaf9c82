"""Pictures: prediction overlays, image/mask grids, feature-map grids, training curves,
and small ipywidgets explorers for the chapters.

Everything takes tensors or arrays in the library's conventions (images (C,H,W) or (H,W,C)
floats in [0,1] or uint8; masks (H,W) class indices) and returns the matplotlib figure, so a
chapter can show it and a test can inspect it. Widgets degrade to a static picture when
ipywidgets is not installed (the built HTML book shows the static version).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "PALETTE",
    "to_numpy_image",
    "colorize",
    "overlay",
    "show_samples",
    "feature_grid",
    "plot_history",
    "interactive",
    "static_widgets",
]

STATIC_ENV = "MSLIB_STATIC_WIDGETS"


def _pyplot():
    """``matplotlib.pyplot``, or an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "mslib.viz draws with matplotlib, which is not installed: "
            "pip install 'mslib[viz]' (or pip install matplotlib)"
        ) from exc
    return plt


# background transparent; then distinguishable colours (RV, myocardium, LV ... in cardiac)
PALETTE = np.array(
    [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [255, 225, 25],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ],
    dtype=np.uint8,
)


def to_numpy_image(img) -> np.ndarray:
    """(C,H,W) or (H,W,C) or (H,W), tensor or array, float [0,1] or uint8 -> float HxWx3 in [0,1]."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().float().numpy()
    img = np.asarray(img)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"cannot show an image of shape {img.shape}: expected (C,H,W), (H,W,C) or (H,W)")
    return np.clip(img, 0.0, 1.0)


def _np_mask(mask) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (H,W) class indices, got shape {mask.shape}")
    return mask


def colorize(mask) -> np.ndarray:
    """Class-index mask -> RGB uint8 with :data:`PALETTE` (background black)."""
    m = _np_mask(mask).astype(np.int64)
    return PALETTE[np.mod(m, len(PALETTE)) * (m > 0)]


def overlay(image, mask=None, pred=None, alpha: float = 0.45, ax=None, title: str | None = None):
    """Draw ``image`` with the ground-truth ``mask`` filled in colour and the prediction ``pred``
    as a contour (white), so both are visible at once. Returns the axis."""
    plt = _pyplot()

    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    rgb = to_numpy_image(image)
    if mask is not None:
        m = _np_mask(mask)
        col = colorize(m).astype(np.float32) / 255.0
        sel = m > 0
        rgb = rgb.copy()
        rgb[sel] = (1 - alpha) * rgb[sel] + alpha * col[sel]
    ax.imshow(rgb, interpolation="nearest")
    if pred is not None:
        p = _np_mask(pred)
        for k in np.unique(p[p > 0]):
            ax.contour((p == k).astype(float), levels=[0.5], colors=["white"], linewidths=1.0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def show_samples(
    images: Sequence,
    masks: Sequence | None = None,
    preds: Sequence | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 2.4,
):
    """A grid of overlays (one panel per sample). Returns the figure."""
    plt = _pyplot()

    n = len(images)
    if n == 0:
        raise ValueError("show_samples needs at least one image")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_axis_off()
            continue
        overlay(
            images[i],
            None if masks is None else masks[i],
            None if preds is None else preds[i],
            ax=ax,
            title=None if titles is None else titles[i],
        )
    fig.tight_layout()
    return fig


def feature_grid(
    features, n: int = 16, ncols: int = 8, size: float = 1.4, title: str | None = None, cmap: str = "viridis"
):
    """Show the first ``n`` channels of a (C,H,W) (or (1,C,H,W)) feature map, each min-max scaled."""
    plt = _pyplot()

    f = features.detach().cpu().float() if isinstance(features, torch.Tensor) else torch.as_tensor(features).float()
    if f.ndim == 4:
        f = f[0]
    if f.ndim != 3:
        raise ValueError(f"feature_grid expects (C,H,W) or (1,C,H,W), got {tuple(f.shape)}")
    n = min(n, f.shape[0])
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ch = f[i]
            lo, hi = ch.min(), ch.max()
            ax.imshow(((ch - lo) / (hi - lo + 1e-12)).numpy(), cmap=cmap)
            ax.set_title(f"ch {i}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_history(
    records: Sequence[Mapping] | object,
    keys: Sequence[str] | None = None,
    x: str = "epoch",
    ax=None,
    title: str | None = None,
):
    """Training curves from a list of dicts (or an object with ``.records``, e.g. a History)."""
    plt = _pyplot()

    recs = list(getattr(records, "records", records))
    if not recs:
        raise ValueError("plot_history: the history is empty")
    if keys is None:
        keys = [
            k for k, v in recs[0].items() if k != x and isinstance(v, (int, float)) and not k.startswith(("lr", "time"))
        ]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    xs = [r.get(x, i) for i, r in enumerate(recs)]
    for k in keys:
        pts = [(xi, r[k]) for xi, r in zip(xs, recs) if k in r and r[k] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=k)
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def static_widgets() -> bool:
    """True when widgets must be drawn as static pictures: ``$MSLIB_STATIC_WIDGETS`` is set to
    ``1``/``true`` (the book's executions) or ipywidgets is not installed."""
    if os.environ.get(STATIC_ENV, "").strip().lower() in ("1", "true", "yes"):
        return True
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return True
    return False


def _initial(fn: Callable, name: str, control):
    """The value ``ipywidgets.interact`` would start ``name`` at: the function's default when it
    has one, else the first item of a list, the middle of a ``(min, max[, step])`` range, or the
    value itself."""
    try:
        default = inspect.signature(fn).parameters[name].default
    except (KeyError, TypeError, ValueError):
        default = inspect.Parameter.empty
    if default is not inspect.Parameter.empty:
        return default
    if isinstance(control, list):
        return control[0]
    if isinstance(control, tuple) and len(control) in (2, 3):
        lo, hi = control[0], control[1]
        step = control[2] if len(control) == 3 else (1 if isinstance(lo, int) and isinstance(hi, int) else None)
        mid = (lo + hi) / 2
        if step:
            mid = lo + round((mid - lo) / step) * step
        return type(lo)(mid) if isinstance(lo, int) and isinstance(hi, int) else mid
    return control


def interactive(fn: Callable, **controls):
    """``ipywidgets.interact(fn, **controls)`` in a live notebook; otherwise (see
    :func:`static_widgets`) call ``fn`` once at the controls' initial values and say so, so that
    a static page shows a picture instead of a dead widget. Returns what ``interact`` returns,
    or ``fn``'s result in the static case."""
    if not static_widgets():
        import ipywidgets as widgets

        return widgets.interact(fn, **controls)
    values = {k: _initial(fn, k, v) for k, v in controls.items()}
    shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
    print(f"static view: {shown} (live controls in Jupyter or Colab)")
    return fn(**values)
