"""Structure loss: weighted BCE + weighted IoU (M2SNet Eq. 4; the F3Net / PraNet form).

With ``G`` the mask, ``P = sigmoid(logits)`` and the weight map (31 x 31 local average, zero padding
counted, stride 1)

    w = 1 + 5 |avg_pool_31(G) - G|

(large near boundaries, 1 inside flat regions), per image

    L_BCE^w = sum(w * BCE(logits, G)) / sum(w)
    L_IoU^w = 1 - (sum(w P G) + 1) / (sum(w (P + G)) - sum(w P G) + 1)

and the loss is the batch mean of ``L_BCE^w + L_IoU^w``.

``legacy=True`` reproduces the official code, whose BCE is called with the deprecated
``reduce='none'``: the string is truthy, so PyTorch averages, and the "weighted" BCE becomes the
plain mean BCE over the whole batch (the weight is lost). The IoU term is the same in both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["structure_weight", "weighted_bce", "weighted_iou", "structure_loss", "as_target_map"]


def as_target_map(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A mask (B, H, W) or (B, 1, H, W), integer or float in [0, 1], as float (B, 1, H, W) matching ``like``.

    Not a binarisation: soft targets in [0, 1] stay soft (M2SNet Eq. 4 is defined on them);
    to threshold a target use :func:`mslib.metrics.binarize_target`.
    """
    if target.ndim == 3:
        target = target.unsqueeze(1)
    if target.ndim != 4 or target.shape[1] != 1:
        raise ValueError(f"target must be a mask of shape (B, H, W) or (B, 1, H, W), got {tuple(target.shape)}")
    if like.ndim != 4 or like.shape[1] != 1:
        raise ValueError(f"logits must have shape (B, 1, H, W) for a binary loss, got {tuple(like.shape)}")
    if target.shape[0] != like.shape[0] or target.shape[-2:] != like.shape[-2:]:
        raise ValueError(f"target {tuple(target.shape)} and logits {tuple(like.shape)} differ in batch or size")
    return target.to(dtype=like.dtype if like.is_floating_point() else torch.float32)


def structure_weight(mask: torch.Tensor, kernel_size: int = 31, strength: float = 5.0) -> torch.Tensor:
    """The weight map ``1 + strength * |avg_pool_k(G) - G|`` of M2SNet Eq. 4 (F3Net form), same shape as ``mask``."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    local = F.avg_pool2d(mask, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=True)
    return 1.0 + strength * (local - mask).abs()


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-image weighted BCE ``sum(w BCE) / sum(w)``, shape (B,)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (weight * bce).sum(dim=(1, 2, 3)) / weight.sum(dim=(1, 2, 3))


def weighted_iou(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-image weighted soft IoU loss ``1 - (I + 1) / (U - I + 1)``, shape (B,)."""
    p = torch.sigmoid(logits)
    inter = (weight * p * target).sum(dim=(1, 2, 3))
    union = (weight * (p + target)).sum(dim=(1, 2, 3))
    return 1.0 - (inter + smooth) / (union - inter + smooth)


def structure_loss(
    logits: torch.Tensor, target: torch.Tensor, legacy: bool = False, kernel_size: int = 31
) -> torch.Tensor:
    """``L_BCE^w + L_IoU^w`` of M2SNet Eq. 4, averaged over the batch.

    Args:
        logits: (B, 1, H, W) raw scores.
        target: mask (B, H, W) or (B, 1, H, W), 0/1 integers or soft values in [0, 1].
        legacy: reproduce the official code's unweighted mean BCE (see the module docstring).
    """
    t = as_target_map(target, logits)
    w = structure_weight(t, kernel_size)
    iou = weighted_iou(logits, t, w)
    if legacy:
        bce = F.binary_cross_entropy_with_logits(logits, t)  # what reduce='none' silently did
        return bce + iou.mean()
    return (weighted_bce(logits, t, w) + iou).mean()
