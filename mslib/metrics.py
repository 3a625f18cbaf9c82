"""Segmentation metrics used by every chapter: overlap, saliency-style and surface distance.

All metrics take a prediction and a ground truth of the same shape, either one image
``(H, W)`` or a batch ``(B, H, W)`` (``spatial_dims=3`` for volumes ``(D, H, W)`` /
``(B, D, H, W)``), as torch tensors or numpy arrays, and return **one value per image**:
a float32 tensor of shape ``(B,)`` (``(1,)`` for a single image) on the device of
``pred``. They never average over the batch; the caller does (:func:`summarize`,
:class:`MetricTracker`, :func:`nan_sum_count`). Inputs are detached; metrics carry no gradient.

Inputs
------
* Binary (default): ``pred`` is a binary mask (bool or integer 0/1) or a probability map
  (float in [0, 1]; foreground where ``pred > threshold``, ``threshold=0.5``). Logits are
  rejected with an error: pass ``torch.sigmoid(logits)``. ``gt`` is binary (a float ``gt``
  is binarised at ``gt > 0.5``).
* Multi-class (overlap and distance metrics): pass ``num_classes=K`` and integer label
  maps (``pred = logits.argmax(1)``). The result is ``(B, K)`` with
  ``include_background=True`` or ``(B, K - 1)`` for classes ``1..K-1`` (the default);
  ``reduction="mean"`` averages over the classes to ``(B,)``, skipping NaN (absent) classes. Every class is scored
  one-vs-rest.
* Saliency metrics (:func:`mae`, :func:`s_measure`, :func:`e_measure`,
  :func:`weighted_f_measure`) take float probabilities in [0, 1], binary ``gt``, 2-D only.
  They follow the conventions of the MATLAB toolbox of Fan et al. as re-implemented in
  ``pysodmetrics`` (import name ``py_sod_metrics``) and agree with it to 1e-6 (tested on
  random maps and edge cases). The difference in calling convention: ``pysodmetrics``'
  ``step(pred, gt)`` takes uint8 images
  in 0-255, divides ``pred`` by 255, min-max normalises it per image (MATLAB
  ``mapminmax``) and binarises ``gt > 128``. Here ``pred`` is used as given unless
  ``minmax=True`` (which reproduces that normalisation: ``metric(p8 / 255, g8 > 128,
  minmax=True)`` equals ``step(p8, g8)``).

Empty masks (per image, per class). ``A`` = predicted foreground, ``G`` = ground truth.

``ignore_empty=True`` (default, as MONAI): a class absent from *both* ``A`` and ``G`` is
undefined, NaN, for every overlap metric (dice ... accuracy) and for hausdorff/hd95;
``reduction="mean"`` averages the classes with ``nanmean`` and :func:`summarize`,
:class:`MetricTracker` and the training engine skip NaN (:func:`nan_sum_count`). So a
multi-class Dice is the mean over the classes that occur, never inflated by a perfect 1 for
an absent class. ``ignore_empty=False`` restores the rules of the table's last column for
that case. Every other value is finite except the documented ``inf`` cases.

==================  ======================  ========================================
metric              case                    value
==================  ======================  ========================================
all overlap, HD     A and G empty           NaN (``ignore_empty=False``: see below)
dice, iou           A and G empty           1 with ``ignore_empty=False``
hammoude_distance   A and G empty           0 with ``ignore_empty=False``
precision           A empty                 1 if G is empty too (idem), else 0
recall              G empty                 1 if A is empty too (idem), else 0
specificity         G covers the image      1 if A covers it too, else 0
xor_error           G empty                 0 if A is empty too (idem), else ``inf``
accuracy            A and G empty           1 with ``ignore_empty=False``
hausdorff, hd95     A and G empty           0 with ``ignore_empty=False``
hausdorff, hd95     exactly one empty       ``empty_value`` (default ``inf``)
s_measure           G empty / G full        ``1 - mean(pred)`` / ``mean(pred)``
e_measure           G empty / G full        #pred. background / #pred. foreground, / (N-1)
weighted_f_measure  G empty                 0
==================  ======================  ========================================

``zero_division=v`` on the overlap metrics replaces the remaining 0/0 rule by ``v`` (e.g.
``dice(..., ignore_empty=False, zero_division=0.0)`` for protocols that score an empty
prediction 0 even on an empty target). The MCSC official test (SSL4MIS-style, medpy) scores
an empty prediction as HD95 0: ``hd95(..., empty_value=0.0)``. With ``reduction="mean"`` an
``inf`` class value makes the class mean ``inf``.

Binarising a ground truth (``(B, 1, H, W)`` or ``(B, H, W)``, 0/1 or probabilities) is
:func:`binarize_target`, the one helper the engine and recipes use too.

The M2SNet official evaluation scores Dice on the *soft* prediction:
``dice(pred, gt, soft=True, minmax=True)``.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = [
    "dice",
    "iou",
    "jaccard",
    "precision",
    "recall",
    "sensitivity",
    "specificity",
    "accuracy",
    "hammoude_distance",
    "xor_error",
    "mae",
    "s_measure",
    "e_measure",
    "weighted_f_measure",
    "hausdorff",
    "hd95",
    "binarize_target",
    "nan_sum_count",
    "summarize",
    "MetricTracker",
]

#: MATLAB ``eps`` (2.22e-16), the epsilon of the saliency toolbox conventions.
EPS = float(np.spacing(1))
#: Smoothing constant of the M2SNet official soft Dice.
SOFT_DICE_SMOOTH = 1e-5
_REDUCTIONS = ("none", "mean")
_E_MODES = ("max", "mean", "adaptive", "curve")


# ----------------------------------------------------------------------------- inputs


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        return x.detach()
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def _batched(pred, gt, spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors of shape (B, *spatial) on pred's device."""
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 (images) or 3 (volumes), got {spatial_dims!r}")
    pred, gt = _as_tensor(pred, "pred"), _as_tensor(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred and gt must have the same shape, got pred {tuple(pred.shape)} and gt "
            f"{tuple(gt.shape)}. For multi-class pass label maps (pred = logits.argmax(1)) with "
            "num_classes=K; for a binary model squeeze the channel: pred[:, 0]."
        )
    if pred.ndim == spatial_dims:
        pred, gt = pred.unsqueeze(0), gt.unsqueeze(0)
    elif pred.ndim != spatial_dims + 1:
        want = "(H, W) or (B, H, W)" if spatial_dims == 2 else "(D, H, W) or (B, D, H, W)"
        raise ValueError(f"pred must have shape {want} for spatial_dims={spatial_dims}, got {tuple(pred.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"pred and gt are empty (shape {tuple(pred.shape)})")
    return pred, gt.to(pred.device)


def _binarize(x: torch.Tensor, name: str, threshold: float) -> torch.Tensor:
    """Bool mask: bool as is, integer 0/1 as is, float probabilities ``> threshold``."""
    if x.dtype == torch.bool:
        return x
    if x.is_complex():
        raise TypeError(f"{name} must be real, got {x.dtype}")
    lo, hi = (v.item() for v in torch.aminmax(x))
    if x.is_floating_point():
        if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
            raise ValueError(
                f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: pass probabilities "
                "(torch.sigmoid(logits)) or a binary mask; for label maps pass num_classes=K."
            )
        return x > threshold
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{name} is an integer map with values in [{lo}, {hi}], not a binary 0/1 mask: "
            "for a multi-class label map pass num_classes=K; for a 0/255 mask image pass mask > 127."
        )
    return x.bool()


def binarize_target(masks, threshold: float = 0.5) -> torch.Tensor:
    """A binary ground truth as a bool ``(B, H, W)`` (or ``(H, W)``, ``(B, D, H, W)``) mask.

    The one binarisation of targets used by the metrics, the training engine and the recipes:
    a channel axis of size 1 (``(B, 1, H, W)``) is dropped; bool is kept; an integer mask must
    be 0/1; a float mask must lie in [0, 1] and is foreground where ``> threshold``. Other
    values raise an error that names the fix (label maps: pass ``num_classes``).
    """
    x = _as_tensor(masks, "masks")
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    return _binarize(x, "masks", threshold)


def _probabilities(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dtype == torch.bool or not x.is_floating_point():
        x = _binarize(x, name, 0.5).to(torch.float32)
    lo, hi = (v.item() for v in torch.aminmax(x))
    if not (lo >= 0.0 and hi <= 1.0):
        raise ValueError(
            f"{name} has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: pass probabilities (torch.sigmoid(logits))."
        )
    return x


def _check_labels(x: torch.Tensor, name: str, num_classes: int) -> None:
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"{name} must be an integer label map when num_classes is given, got {x.dtype}: "
            "pass logits.argmax(1) rather than probabilities."
        )
    lo, hi = (int(v) for v in torch.aminmax(x.to(torch.int64)))
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{name} holds labels in [{lo}, {hi}], outside [0, {num_classes - 1}] for "
            f"num_classes={num_classes}: check num_classes or the label map."
        )


def _class_masks(pred, gt, threshold, num_classes, include_background, spatial_dims):
    """Bool masks of shape (B, C, *spatial): C = 1 for binary input, else one per scored class."""
    pred, gt = _batched(pred, gt, spatial_dims)
    if num_classes is None:
        return _binarize(pred, "pred", threshold)[:, None], _binarize(gt, "gt", 0.5)[:, None]
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}")
    _check_labels(pred, "pred", num_classes)
    _check_labels(gt, "gt", num_classes)
    classes = torch.arange(0 if include_background else 1, num_classes, device=pred.device)
    classes = classes.view((1, -1) + (1,) * spatial_dims)
    return pred.unsqueeze(1) == classes, gt.unsqueeze(1) == classes


def _check_reduction(reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _finish(values: torch.Tensor, binary: bool, reduction: str) -> torch.Tensor:
    """(B, C) -> (B,) for binary input, (B, C) or its class mean otherwise; float32."""
    if binary:
        values = values[:, 0]
    elif reduction == "mean":
        values = values.nanmean(dim=1)  # NaN (absent class, ignore_empty) skipped; all NaN -> NaN
    return values.to(torch.float32)


def _acc_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


# ----------------------------------------------------------------------------- overlap


def _counts(pred, gt, threshold, num_classes, include_background, spatial_dims, reduction):
    """Confusion counts tp, fp, fn, tn, each (B, C) in float64 (float32 on MPS)."""
    _check_reduction(reduction)
    a, g = _class_masks(pred, gt, threshold, num_classes, include_background, spatial_dims)
    a, g = a.flatten(2), g.flatten(2)
    n = a.shape[2]
    # float32 sums of 0/1 are exact below 2**24 pixels per image and much faster than
    # bool/int reductions on the CPU; larger volumes take the exact integer path.
    work = torch.float32 if n <= 2**24 else torch.int64
    a, g = a.to(work), g.to(work)
    dtype = _acc_dtype(a.device)
    tp = (a * g).sum(2).to(dtype)
    size_a = a.sum(2).to(dtype)
    size_g = g.sum(2).to(dtype)
    fp, fn = size_a - tp, size_g - tp
    tn = n - size_a - fn
    return tp, fp, fn, tn


def _ratio(num: torch.Tensor, den: torch.Tensor, when_zero: torch.Tensor | float) -> torch.Tensor:
    """num / den, and ``when_zero`` where den == 0 (0/0 cases)."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    fill = torch.as_tensor(when_zero, dtype=num.dtype, device=num.device)
    return torch.where(den > 0, num / safe, fill)


def _zero_rule(zero_division: float | None, default):
    return default if zero_division is None else float(zero_division)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation of (B, N); a constant image is left unchanged."""
    lo = x.amin(dim=1, keepdim=True)
    hi = x.amax(dim=1, keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (x - lo) / torch.where(span > 0, span, torch.ones_like(span)), x)


def _xor_when_zero(fp: torch.Tensor, zero_division: float | None):
    if zero_division is not None:
        return float(zero_division)
    return torch.where(fp > 0, torch.full_like(fp, math.inf), torch.zeros_like(fp))


#: name -> (value from the confusion counts ``(tp, fp, fn, tn, zero_division)``, docstring head).
_OVERLAP = {
    "dice": (
        lambda tp, fp, fn, tn, zd: _ratio(2 * tp, 2 * tp + fp + fn, _zero_rule(zd, 1.0)),
        "Dice similarity coefficient (= F1), ``DSC = 2|A∩G| / (|A| + |G|)`` (MS-Former Sec. 4.2).",
        "1",
    ),
    "iou": (
        lambda tp, fp, fn, tn, zd: _ratio(tp, tp + fp + fn, _zero_rule(zd, 1.0)),
        "Intersection over union (Jaccard index) ``|A∩G| / |A∪G|``.",
        "1",
    ),
    "hammoude_distance": (
        lambda tp, fp, fn, tn, zd: _ratio(fp + fn, tp + fp + fn, _zero_rule(zd, 0.0)),
        "Hammoude distance ``HM = (|A∪G| - |A∩G|) / |A∪G| = 1 - IoU`` (MS-Former Sec. 4.2).\n\n"
        "    In [0, 1], lower is better; equals ``2(1 - D)/(2 - D)`` for Dice ``D``.",
        "0",
    ),
    "xor_error": (
        lambda tp, fp, fn, tn, zd: _ratio(fp + fn, tp + fn, _xor_when_zero(fp, zd)),
        "XOR error ``(|A∪G| - |A∩G|) / |G|`` (MS-Former Sec. 4.2), ``G`` the ground truth.\n\n"
        "    Unbounded (> 1 when the prediction is larger than the target), lower is better. With\n"
        "    ``G`` empty and ``A`` not: ``inf`` (``zero_division`` overrides).",
        "0",
    ),
    "precision": (
        lambda tp, fp, fn, tn, zd: _ratio(tp, tp + fp, _zero_rule(zd, (fn == 0).to(tp.dtype))),
        "Precision ``TP / (TP + FP)``; an empty prediction on a non-empty ``G`` scores 0.",
        "1",
    ),
    "recall": (
        lambda tp, fp, fn, tn, zd: _ratio(tp, tp + fn, _zero_rule(zd, (fp == 0).to(tp.dtype))),
        "Recall (sensitivity) ``TP / (TP + FN)``; an empty ``G`` with a non-empty prediction scores 0.",
        "1",
    ),
    "specificity": (
        lambda tp, fp, fn, tn, zd: _ratio(tn, tn + fp, _zero_rule(zd, (fn == 0).to(tp.dtype))),
        "Specificity ``TN / (TN + FP)`` (recall of the background).\n\n"
        "    When ``G`` covers the whole image (no negatives): 1 if ``A`` covers it too, else 0.",
        "1",
    ),
    "accuracy": (
        lambda tp, fp, fn, tn, zd: (tp + tn) / (tp + fp + fn + tn),
        'Pixel accuracy ``(TP + TN) / N`` (PDCR "AC"). Multi-class: per class, one-vs-rest\n'
        "    (never 0/0, so ``zero_division`` has no effect).",
        "1",
    ),
}

_OVERLAP_DOC = """{head}

    ``A = pred > threshold`` (binary) or ``pred == c`` (``num_classes``, one-vs-rest per class
    ``c``; see the module docstring), ``G`` the ground truth.

    Empty masks: with ``ignore_empty=True`` (default, as MONAI) an image (or class) absent
    from both ``A`` and ``G`` is NaN -- undefined, not a perfect score -- and
    ``reduction="mean"`` / :func:`summarize` skip it. ``ignore_empty=False`` scores that case
    {both_empty} (the rule before ``ignore_empty``). ``zero_division=v`` replaces the
    remaining 0/0 rule by ``v`` (with ``ignore_empty=False``, also the both-empty case).

    Returns ``(B,)`` for binary input, ``(B, C)`` (or ``(B,)`` with ``reduction="mean"``,
    the NaN-skipping mean over classes) for multi-class, float32.
    """


def _overlap_metric(name: str):
    """One overlap metric of :data:`_OVERLAP`: the shared signature and body, its own formula."""
    value_fn, head, both_empty = _OVERLAP[name]

    def metric(
        pred,
        gt,
        *,
        threshold: float = 0.5,
        num_classes: int | None = None,
        include_background: bool = False,
        reduction: str = "none",
        zero_division: float | None = None,
        ignore_empty: bool = True,
        spatial_dims: int = 2,
    ) -> torch.Tensor:
        tp, fp, fn, tn = _counts(pred, gt, threshold, num_classes, include_background, spatial_dims, reduction)
        value = value_fn(tp, fp, fn, tn, zero_division)
        if ignore_empty:
            value = torch.where(tp + fp + fn == 0, torch.full_like(value, math.nan), value)
        return _finish(value, num_classes is None, reduction)

    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = _OVERLAP_DOC.format(head=head, both_empty=both_empty)
    return metric


_hard_dice = _overlap_metric("dice")
iou = _overlap_metric("iou")
jaccard = iou
hammoude_distance = _overlap_metric("hammoude_distance")
xor_error = _overlap_metric("xor_error")
precision = _overlap_metric("precision")
recall = _overlap_metric("recall")
sensitivity = recall
specificity = _overlap_metric("specificity")
accuracy = _overlap_metric("accuracy")


def dice(
    pred,
    gt,
    *,
    threshold: float = 0.5,
    num_classes: int | None = None,
    include_background: bool = False,
    reduction: str = "none",
    zero_division: float | None = None,
    ignore_empty: bool = True,
    soft: bool = False,
    minmax: bool = False,
    spatial_dims: int = 2,
) -> torch.Tensor:
    if soft:
        if num_classes is not None:
            raise ValueError("dice(soft=True) is binary only: drop num_classes or soft")
        p, g = _batched(pred, gt, spatial_dims)
        dtype = _acc_dtype(p.device)
        p = _probabilities(p, "pred").flatten(1).to(dtype)
        g = _binarize(g, "gt", 0.5).flatten(1).to(dtype)
        if minmax:
            p = _minmax(p)
        value = (2 * (p * g).sum(1) + SOFT_DICE_SMOOTH) / (p.sum(1) + g.sum(1) + SOFT_DICE_SMOOTH)
        return value.to(torch.float32)
    if minmax:
        raise ValueError("dice(minmax=True) applies to the soft Dice only: also pass soft=True")
    return _hard_dice(
        pred,
        gt,
        threshold=threshold,
        num_classes=num_classes,
        include_background=include_background,
        reduction=reduction,
        zero_division=zero_division,
        ignore_empty=ignore_empty,
        spatial_dims=spatial_dims,
    )


dice.__doc__ = (
    _hard_dice.__doc__.rstrip()
    + """

    ``soft=True`` reproduces the M2SNet official evaluation (M2SNet Tables I-II, "mDice";
    notes: ``test_score.py``): no threshold, ``(2 Σ p g + 1e-5) / (Σ g + Σ p + 1e-5)`` on
    the probabilities ``p``, with ``gt`` binarised at 0.5 (the smoothing makes it defined on
    empty masks, so ``ignore_empty`` does not apply). Add ``minmax=True`` to min-max
    normalise ``p`` per image first, as the official code does; a constant map has no range
    and is left unchanged (as MATLAB/pysodmetrics ``mapminmax``), so a constant 0.5 map
    scores ``|G| / (|G| + 0.5 N)``. ``soft`` is binary only.
    """
)


# ----------------------------------------------------------------------------- saliency


def _saliency_inputs(pred, gt, minmax: bool) -> tuple[np.ndarray, np.ndarray, torch.device]:
    """float64 predictions in [0, 1] and bool gt as numpy (B, H, W)."""
    p, g = _batched(pred, gt, 2)
    device = p.device
    p = _probabilities(p, "pred").to("cpu", torch.float64).numpy()
    g = _binarize(g, "gt", 0.5).cpu().numpy()
    if minmax:
        lo = p.min(axis=(1, 2), keepdims=True)
        hi = p.max(axis=(1, 2), keepdims=True)
        p = np.where(hi > lo, (p - lo) / np.where(hi > lo, hi - lo, 1.0), p)
    return p, g, device


def _per_image(values, device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(device)


def mae(pred, gt, *, minmax: bool = False) -> torch.Tensor:
    """Mean absolute error ``mean |pred - gt|`` between probabilities and the binary GT.

    M2SNet Tables I-III "MAE" (lower is better). Returns ``(B,)``.
    """
    p, g, device = _saliency_inputs(pred, gt, minmax)
    return _per_image(np.abs(p - g).mean(axis=(1, 2)), device)


def _s_object(x: np.ndarray) -> float:
    """Object similarity ``2 x̄ / (x̄² + 1 + σ_x)`` (Fan et al. 2017, Eq. 4 with λ = 0.5)."""
    mean = x.mean()
    std = x.std(ddof=1) if x.size > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + std + EPS)


def _ssim(p: np.ndarray, g: np.ndarray) -> float:
    """SSIM of one quadrant (Fan et al. 2017, Eq. 2-3, single window)."""
    n = p.size
    if n == 0:  # empty quadrant (weight 0); the toolbox returns NaN here
        return 0.0
    x, y = p.mean(), g.mean()
    sx = ((p - x) ** 2).sum() / (n - 1 + EPS)
    sy = ((g - y) ** 2).sum() / (n - 1 + EPS)
    sxy = ((p - x) * (g - y)).sum() / (n - 1 + EPS)
    alpha = 4 * x * y * sxy
    beta = (x**2 + y**2) * (sx + sy)
    if alpha != 0:
        return alpha / (beta + EPS)
    return 1.0 if beta == 0 else 0.0


def _s_region(p: np.ndarray, g: np.ndarray) -> float:
    """Region similarity: SSIM of the 4 quadrants split at the GT centroid, area-weighted."""
    h, w = g.shape
    # Centroid rounded with numpy's half-to-even rounding, plus 1 for MATLAB's 1:X ranges.
    cy, cx = (int(v) + 1 for v in np.round(np.argwhere(g).mean(axis=0)))
    area = h * w
    w_lt, w_rt, w_lb = cx * cy / area, cy * (w - cx) / area, (h - cy) * cx / area
    w_rb = 1 - w_lt - w_rt - w_lb
    return (
        _ssim(p[:cy, :cx], g[:cy, :cx]) * w_lt
        + _ssim(p[:cy, cx:], g[:cy, cx:]) * w_rt
        + _ssim(p[cy:, :cx], g[cy:, :cx]) * w_lb
        + _ssim(p[cy:, cx:], g[cy:, cx:]) * w_rb
    )


def _s_measure_one(p: np.ndarray, g: np.ndarray, alpha: float) -> float:
    y = g.mean()
    if y == 0:
        return 1 - p.mean()
    if y == 1:
        return p.mean()
    gd = g.astype(np.float64)
    s_obj = _s_object(p[g]) * y + _s_object(1 - p[~g]) * (1 - y)
    return max(0.0, alpha * s_obj + (1 - alpha) * _s_region(p, gd))


def s_measure(pred, gt, *, alpha: float = 0.5, minmax: bool = False) -> torch.Tensor:
    """Structure measure ``S_α = α S_o + (1 - α) S_r`` (Fan et al., ICCV 2017; M2SNet "S_α").

    ``S_o``: object similarity of foreground and background, ``S_r``: SSIM of the four
    quadrants split at the GT centroid. Special cases: empty GT gives ``1 - mean(pred)``,
    full GT ``mean(pred)``. Conventions of the released toolbox (``pysodmetrics``): sample
    standard deviations with ``N - 1``, MATLAB ``eps``. One deviation: when the centroid
    falls on the last row/column a quadrant is empty; the toolbox returns NaN there, we
    score that zero-weight quadrant 0. Returns ``(B,)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    p, g, device = _saliency_inputs(pred, gt, minmax)
    return _per_image([_s_measure_one(pi, gi, alpha) for pi, gi in zip(p, g)], device)


def _enhanced_sum(tp, fp, n_gt, n):
    """Σ of the enhanced alignment matrix φ = (1 + ξ)²/4 for binary maps from counts.

    Fan et al., IJCAI 2018, Eq. 3-5: ξ = 2 φ_G ∘ φ_F / (φ_G² + φ_F²) on the bias matrices
    φ = I - mean(I). For binary maps only four (pred, gt) value pairs exist, so the sum is
    a count-weighted sum of four constants. Toolbox special cases: empty GT gives the
    number of predicted-background pixels, full GT the number of predicted-foreground ones.
    """
    n_pred = tp + fp
    n_pred_bg = n - n_pred
    if n_gt == 0:
        return n_pred_bg.astype(np.float64)
    if n_gt == n:
        return n_pred.astype(np.float64)
    fn = n_gt - tp
    tn = n_pred_bg - fn
    mp, mg = n_pred / n, n_gt / n
    total = 0.0
    for count, bp, bg in ((tp, 1 - mp, 1 - mg), (fp, 1 - mp, -mg), (fn, -mp, 1 - mg), (tn, -mp, -mg)):
        xi = 2 * bp * bg / (bp**2 + bg**2 + EPS)
        total = total + count * (xi + 1) ** 2 / 4
    return total


def _e_curve(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """E_φ at thresholds t/255, t = 0..255, on the 8-bit quantised map floor(255 p) >= t."""
    q = (p * 255).astype(np.uint8)
    # counts of pixels with q >= t: reverse cumulative histograms
    tp = np.cumsum(np.bincount(q[g], minlength=256)[::-1])[::-1]
    fp = np.cumsum(np.bincount(q[~g], minlength=256)[::-1])[::-1]
    n = g.size
    return _enhanced_sum(tp, fp, int(g.sum()), n) / (n - 1 + EPS)


def _e_adaptive(p: np.ndarray, g: np.ndarray) -> float:
    binary = p >= min(2 * p.mean(), 1.0)
    tp, fp = np.count_nonzero(binary & g), np.count_nonzero(binary & ~g)
    n = g.size
    return float(_enhanced_sum(np.int64(tp), np.int64(fp), int(g.sum()), n) / (n - 1 + EPS))


def e_measure(pred, gt, *, mode: str = "max", minmax: bool = False) -> torch.Tensor:
    """Enhanced-alignment measure ``E_φ`` (Fan et al., IJCAI 2018; M2SNet "E_φ^max").

    ``E_φ = Σ φ_FM / (W H - 1)`` for a binarised map (the toolbox divides by ``N - 1``).
    ``mode`` says how the probability map is binarised:

    * ``"max"`` (M2SNet tables) / ``"mean"``: maximum / mean over the 256 thresholds
      ``t/255``, ``t = 0..255``, applied as ``floor(255 p) >= t``;
    * ``"adaptive"`` (M2SNet official evaluation): threshold ``min(2 mean(p), 1)``;
    * ``"curve"``: the full curve, shape ``(B, 256)``, index ``t`` = threshold ``t/255``
      (``pysodmetrics`` stores it in the reverse order).

    Returns ``(B,)`` (or ``(B, 256)``).
    """
    if mode not in _E_MODES:
        raise ValueError(f"mode must be one of {_E_MODES}, got {mode!r}")
    p, g, device = _saliency_inputs(pred, gt, minmax)
    if mode == "adaptive":
        return _per_image([_e_adaptive(pi, gi) for pi, gi in zip(p, g)], device)
    curves = np.stack([_e_curve(pi, gi) for pi, gi in zip(p, g)])
    if mode == "curve":
        return _per_image(curves, device)
    return _per_image(curves.max(axis=1) if mode == "max" else curves.mean(axis=1), device)


def _matlab_gaussian(size: int = 7, sigma: float = 5.0) -> np.ndarray:
    """MATLAB ``fspecial('gaussian', size, sigma)``: normalised, tiny values cut."""
    r = (size - 1) / 2
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    k = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    k[k < np.finfo(k.dtype).eps * k.max()] = 0
    return k / k.sum()


_GAUSS_7_5 = _matlab_gaussian(7, 5.0)


def _wfm_one(p: np.ndarray, g: np.ndarray, beta2: float) -> float:
    from scipy import ndimage  # scipy loads on first use (~30 MB)

    if not g.any():
        return 0.0
    bg = ~g
    # distance of every background pixel to its nearest GT pixel, and that pixel's index
    dist, idx = ndimage.distance_transform_edt(bg, return_indices=True)
    err = np.abs(p - g)
    # pixel dependency: background errors take the error at the nearest GT pixel, then
    # a Gaussian blur; inside the GT keep the smaller of the error and its blurred version
    et = err.copy()
    et[bg] = err[tuple(i[bg] for i in idx)]
    ea = ndimage.convolve(et, _GAUSS_7_5, mode="constant", cval=0.0)
    min_e = np.where(g & (ea < err), ea, err)
    # pixel importance: background errors grow with distance to the GT, up to 2
    weight = np.where(g, 1.0, 2 - np.exp(np.log(0.5) / 5 * dist))
    ew = min_e * weight
    tp_w = g.sum() - ew[g].sum()
    fp_w = ew[bg].sum()
    r = 1 - ew[g].mean()
    prec = tp_w / (tp_w + fp_w + EPS)
    return float((1 + beta2) * r * prec / (r + beta2 * prec + EPS))


def weighted_f_measure(pred, gt, *, beta2: float = 1.0, minmax: bool = False) -> torch.Tensor:
    """Weighted F-measure ``F^w_β = (1 + β²) P^w R^w / (β² P^w + R^w)`` (Margolin et al., CVPR 2014).

    M2SNet "F^w_β" with ``β² = 1``. Errors are weighted by pixel dependency (Gaussian
    7×7, σ = 5, errors propagated from the nearest GT pixel) and pixel importance
    (``2 - exp(ln(0.5)/5 · d)`` for a background pixel at distance ``d`` from the GT).
    Empty GT gives 0 (toolbox convention). Returns ``(B,)``.
    """
    if beta2 <= 0:
        raise ValueError(f"beta2 must be > 0, got {beta2!r}")
    p, g, device = _saliency_inputs(pred, gt, minmax)
    return _per_image([_wfm_one(pi, gi, beta2) for pi, gi in zip(p, g)], device)


# ----------------------------------------------------------------------------- distance


def _surface(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Surface pixels: the mask minus its binary erosion (image border counts as outside)."""
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1)


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing, connectivity: int) -> np.ndarray:
    """Distances from every surface pixel of ``a`` to the nearest surface pixel of ``b``."""
    from scipy import ndimage

    dt = ndimage.distance_transform_edt(~_surface(b, connectivity), sampling=spacing)
    return dt[_surface(a, connectivity)]


def _check_spacing(spacing, spatial_dims: int):
    if spacing is None:
        return None
    if np.isscalar(spacing):
        spacing = (float(spacing),) * spatial_dims
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != spatial_dims or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise ValueError(
            f"spacing must be a positive number or {spatial_dims} positive numbers (one per "
            f"spatial axis, in pixel order), got {spacing!r}"
        )
    return spacing


def hausdorff(
    pred,
    gt,
    *,
    percentile: float = 100.0,
    spacing: float | Sequence[float] | None = None,
    connectivity: int = 1,
    empty_value: float = math.inf,
    ignore_empty: bool = True,
    threshold: float = 0.5,
    num_classes: int | None = None,
    include_background: bool = False,
    reduction: str = "none",
    spatial_dims: int = 2,
) -> torch.Tensor:
    """Symmetric Hausdorff distance between the mask *surfaces* (medpy ``hd`` convention).

    Surface pixels are the mask minus its binary erosion with the
    ``generate_binary_structure(ndim, connectivity)`` element (connectivity 1: 4-/6-neighbours);
    distances come from ``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``
    (pixels by default; ``spacing`` is per spatial axis, e.g. mm). With ``percentile=q`` <
    100 the result is the q-th percentile (linear interpolation) of the *union* of both
    directed surface-distance sets (medpy ``hd95``; not the max of two directed
    percentiles). Both masks empty (a class absent from both) is NaN with
    ``ignore_empty=True`` (default, as MONAI; skipped by ``reduction="mean"`` and
    :func:`summarize`) and 0 with ``ignore_empty=False``; exactly one empty gives
    ``empty_value`` (default ``inf``; MCSC's official test uses 0).

    Computed per image with scipy on the CPU. Returns ``(B,)`` or ``(B, C)``.
    """
    _check_reduction(reduction)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    if connectivity not in range(1, spatial_dims + 1):
        raise ValueError(f"connectivity must be in 1..{spatial_dims}, got {connectivity!r}")
    spacing = _check_spacing(spacing, spatial_dims)
    a, g = _class_masks(pred, gt, threshold, num_classes, include_background, spatial_dims)
    device = a.device
    a, g = a.cpu().numpy(), g.cpu().numpy()
    out = np.empty(a.shape[:2], dtype=np.float64)
    for i in np.ndindex(*out.shape):
        ai, gi = a[i], g[i]
        has_a, has_g = ai.any(), gi.any()
        if not has_a and not has_g:
            out[i] = math.nan if ignore_empty else 0.0
        elif not (has_a and has_g):
            out[i] = empty_value
        else:
            d_ag = _surface_distances(ai, gi, spacing, connectivity)
            d_ga = _surface_distances(gi, ai, spacing, connectivity)
            d = np.concatenate([d_ag, d_ga])
            out[i] = d.max() if percentile == 100.0 else np.percentile(d, percentile)
    return _finish(torch.from_numpy(out.astype(np.float32)).to(device), num_classes is None, reduction)


def hd95(
    pred,
    gt,
    *,
    spacing: float | Sequence[float] | None = None,
    connectivity: int = 1,
    empty_value: float = math.inf,
    ignore_empty: bool = True,
    threshold: float = 0.5,
    num_classes: int | None = None,
    include_background: bool = False,
    reduction: str = "none",
    spatial_dims: int = 2,
) -> torch.Tensor:
    """95th-percentile Hausdorff distance (medpy ``hd95``): :func:`hausdorff` with ``percentile=95``.

    MCSC Table 1 ("HD95", pixels, per class RV/Myo/LV); for its official numbers use
    ``empty_value=0.0`` (an empty prediction scores 0). A class absent from both masks is NaN
    with ``ignore_empty=True`` (default; skipped in means), 0 with ``ignore_empty=False``.
    """
    return hausdorff(
        pred,
        gt,
        percentile=95.0,
        spacing=spacing,
        connectivity=connectivity,
        empty_value=empty_value,
        ignore_empty=ignore_empty,
        threshold=threshold,
        num_classes=num_classes,
        include_background=include_background,
        reduction=reduction,
        spatial_dims=spatial_dims,
    )


# ----------------------------------------------------------------------------- summaries


def nan_sum_count(values) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum, count)`` of the defined per-image values of one metric, both float64 0-d tensors.

    The one aggregation rule of mslib, used by :func:`summarize`, :class:`MetricTracker` and
    the training engine's validation (which adds the sums and counts of every batch and, under
    DDP, of every process before dividing): a ``(B, C)`` value is first averaged over its
    classes per image (NaN classes skipped, as ``reduction="mean"``); then NaN images (absent
    from prediction and ground truth, ``ignore_empty``) are left out. ``inf`` is kept, so an
    ``inf`` value makes the mean ``inf``.
    """
    v = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    v = v.detach().to("cpu", torch.float64)
    if v.ndim == 0:
        v = v.reshape(1)
    if v.ndim == 2:
        v = v.nanmean(dim=1)
    elif v.ndim != 1:
        raise ValueError(f"metric values must be per image, (B,) or (B, C), got shape {tuple(v.shape)}")
    ok = ~torch.isnan(v)
    return v[ok].sum(), ok.sum().to(torch.float64)


def summarize(metrics: Mapping[str, torch.Tensor | np.ndarray | Sequence[float]]) -> dict[str, float]:
    """Mean of each metric's per-image values: ``{"dice": tensor(B,), ...} -> {"dice": 0.83, ...}``.

    NaN values (undefined: a class absent from both masks, ``ignore_empty``) are skipped, as
    in the engine (both go through :func:`nan_sum_count`); a ``(B, C)`` value is averaged over
    its classes per image first. ``inf`` values are kept (the mean is then ``inf``) and a
    warning names the metric; a metric with no defined value gives NaN and a warning.
    """
    out = {}
    for name, values in metrics.items():
        v = torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values)
        if v.numel() == 0:
            raise ValueError(f"metric {name!r} has no values to summarize")
        total, count = nan_sum_count(v)
        if bool(torch.isinf(total)):
            warnings.warn(f"metric {name!r}: some values are infinite, so is the mean", stacklevel=2)
        if count == 0:
            warnings.warn(f"metric {name!r}: every value is NaN (undefined), the mean is NaN", stacklevel=2)
            out[name] = math.nan
        else:
            out[name] = float(total / count)
    return out


class MetricTracker:
    """Collects per-image metric values over batches; :meth:`compute` gives the means.

    >>> tracker = MetricTracker()
    >>> tracker.update(dice=dice(p, g), iou=iou(p, g))   # once per batch
    >>> tracker.compute()                                 # {"dice": ..., "iou": ...}
    """

    def __init__(self) -> None:
        self._values: dict[str, list[torch.Tensor]] = defaultdict(list)

    def update(self, **metrics: torch.Tensor) -> None:
        """Append per-image values, each of shape ``(B,)`` or ``(B, C)``."""
        for name, value in metrics.items():
            value = torch.as_tensor(value).detach().to("cpu", torch.float64)
            self._values[name].append(value.reshape(1) if value.ndim == 0 else value)

    def values(self) -> dict[str, torch.Tensor]:
        """All per-image values so far, concatenated over batches."""
        return {name: torch.cat(vs) for name, vs in self._values.items()}

    def compute(self) -> dict[str, float]:
        """Mean of every metric over all images seen (see :func:`summarize`)."""
        return summarize(self.values())

    def reset(self) -> None:
        self._values.clear()

    def __len__(self) -> int:
        """Number of images seen (of the first metric)."""
        return sum(len(v) for v in next(iter(self._values.values()), []))
