"""Per-volume Dice and HD95 per class, averaged over volumes then classes (MCSC Tab. R1-R2 protocol).

MCSC, like SSL4MIS, predicts every slice of a test volume, stacks the predictions into a
volume (S, H, W) and scores each foreground class on the whole volume (Dice and the 95th
percentile Hausdorff distance, medpy conventions), then averages each class over the volumes
and reports the per-class means and their mean over classes (RV, Myo, LV for ACDC; eight
organs for Synapse). This module does that with :func:`mslib.metrics.dice` and
:func:`mslib.metrics.hd95` (``spatial_dims=3``).

Units: HD95 is in millimetres when ``spacing`` (z, y, x) is given (``dataset.json``
``"spacing"``), in voxel units otherwise (each axis 1, the slice axis too) -- the official
script passes no spacing, so its HD95 is in "pixels".

Conventions (per volume and class; ``A`` prediction, ``G`` ground truth):

======================  ============================  ====================================
case                    mslib (default)               official (``legacy_official=True``)
======================  ============================  ====================================
A and G empty           NaN, skipped in the means     Dice 0, HD95 0 (counted)
A empty, G not          Dice 0, HD95 ``empty_hd95``   Dice 0, HD95 0
A not empty, G empty    Dice 0, HD95 ``empty_hd95``   Dice 1, HD95 0
======================  ============================  ====================================

``empty_hd95`` defaults to ``"diagonal"``: the diagonal of the volume (in mm or voxels), the
largest distance there is, a finite penalty for a missed (or hallucinated) structure;
``math.inf`` or a number are accepted. The official convention is SSL4MIS's
``calculate_metric_percase`` (validation; an empty prediction scores HD95 0, which *rewards*
predicting nothing). An absent class is never counted as a perfect 1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mslib.metrics import dice, hd95

__all__ = ["volume_scores", "summarize_volumes", "predict_volume", "evaluate_volumes"]


def _as_long(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, torch.Tensor) else x
    if t.ndim != 3:
        raise ValueError(f"{name} must be a label volume (S, H, W), got shape {tuple(t.shape)}")
    return t.long().cpu()


def volume_scores(
    pred,
    gt,
    num_classes: int,
    *,
    spacing: Sequence[float] | None = None,
    empty_hd95: float | str = "diagonal",
    legacy_official: bool = False,
) -> dict[str, np.ndarray]:
    """Dice and HD95 of classes ``1..num_classes-1`` on one volume: ``{"dice": (K-1,), "hd95": (K-1,)}``.

    ``pred`` and ``gt`` are (S, H, W) class-index volumes; ``spacing`` (z, y, x) in mm or None.
    """
    p, g = _as_long(pred, "pred"), _as_long(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred {tuple(p.shape)} and gt {tuple(g.shape)} must have the same shape")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + classes), got {num_classes}")
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
    if empty_hd95 == "diagonal":
        fill = math.sqrt(sum((n * s) ** 2 for n, s in zip(p.shape, sp)))
    elif isinstance(empty_hd95, (int, float)):
        fill = float(empty_hd95)
    else:
        raise ValueError(f"empty_hd95 must be 'diagonal' or a number (math.inf, 0.0, ...), got {empty_hd95!r}")
    d = dice(p, g, num_classes=num_classes, spatial_dims=3)[0].double().numpy()
    h = hd95(p, g, num_classes=num_classes, spatial_dims=3, spacing=spacing, empty_value=fill)[0].double().numpy()
    has_p = np.array([(p == c).any().item() for c in range(1, num_classes)])
    has_g = np.array([(g == c).any().item() for c in range(1, num_classes)])
    if legacy_official:
        d = np.where(has_p & has_g, d, np.where(has_p, 1.0, 0.0))
        h = np.where(has_p & has_g, h, 0.0)
    else:
        d = np.where(has_p | has_g, np.where(has_p & has_g, d, 0.0), np.nan)
        h = np.where(has_p | has_g, h, np.nan)
    return {"dice": d, "hd95": h}


def summarize_volumes(scores: Iterable[dict[str, np.ndarray]], class_names: Sequence[str] | None = None) -> dict:
    """Mean over volumes per class (NaN skipped), then over classes.

    Returns ``{"dice": {class: mean}, "hd95": {...}, "mean_dice", "mean_hd95", "volumes": n}``.
    """
    scores = list(scores)
    if not scores:
        raise ValueError("no volumes to summarise")
    out: dict = {"volumes": len(scores)}
    for key in ("dice", "hd95"):
        table = np.stack([s[key] for s in scores])  # (volumes, classes)
        with warnings.catch_warnings():  # an all-NaN class (absent everywhere) stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            per_class = np.nanmean(table, axis=0)
            mean = float(np.nanmean(per_class))
        names = list(class_names) if class_names is not None else [str(c + 1) for c in range(table.shape[1])]
        out[key] = dict(zip(names, per_class.tolist()))
        out[f"mean_{key}"] = mean
    return out


@torch.no_grad()
def predict_volume(
    model: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, size: int | None = None, batch_size: int = 16
) -> torch.Tensor:
    """Class-index prediction (S, H, W) of a volume ``image`` (S, C, H, W), slice by slice.

    ``size``: slices are resized to ``size x size`` (nearest, as the official ``zoom(order=0)``)
    before the model and the prediction resized back; the official test uses 256 after training
    at 224. ``model`` returns logits (or ``(logits, features)``).
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (S, C, H, W), got {tuple(image.shape)}")
    h, w = image.shape[-2:]
    device = next(model.parameters()).device if isinstance(model, torch.nn.Module) else image.device
    preds = []
    for start in range(0, image.shape[0], batch_size):
        x = image[start : start + batch_size].float().to(device)
        if size is not None and (h, w) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="nearest")
        out = model(x)
        logits = out[0] if isinstance(out, (tuple, list)) else out
        y = logits.argmax(1, keepdim=True).float()
        if y.shape[-2:] != (h, w):
            y = F.interpolate(y, size=(h, w), mode="nearest")
        preds.append(y[:, 0].long().cpu())
    return torch.cat(preds)


def evaluate_volumes(
    model,
    volumes,
    num_classes: int | None = None,
    *,
    size: int | None = None,
    use_spacing: bool = True,
    empty_hd95: float | str = "diagonal",
    legacy_official: bool = False,
) -> dict:
    """Score ``model`` on a :class:`mslib.data.volumes.VolumeDataset`; :func:`summarize_volumes` plus ``"per_volume"``.

    ``use_spacing=False`` reports HD95 in voxels (the official protocol); ``legacy_official``
    switches to the official empty-mask conventions (see the module docstring).
    """
    k = num_classes or volumes.num_classes
    was_training = getattr(model, "training", False)
    if isinstance(model, torch.nn.Module):
        model.eval()
    per = []
    try:
        for i in range(len(volumes)):
            image, label, name = volumes[i]
            spacing = volumes.spacing.get(name) if use_spacing else None
            s = volume_scores(
                predict_volume(model, image, size),
                label,
                k,
                spacing=spacing,
                empty_hd95=empty_hd95,
                legacy_official=legacy_official,
            )
            per.append({"name": name, **s})
    finally:
        if isinstance(model, torch.nn.Module) and was_training:
            model.train()
    out = summarize_volumes(per, class_names=list(volumes.classes[1:k]) if volumes.classes else None)
    out["per_volume"] = per
    return out
