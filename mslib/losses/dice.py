"""Soft Dice loss and its usual combinations with (binary) cross-entropy.

Soft Dice (Milletari, Navab and Ahmadi, "V-Net", 3DV 2016, Eq. 1, here with a smooth
term ``s`` and, by default, a non-squared denominator):

    D_c = (2 sum_i p_ic g_ic + s) / (sum_i p_ic + sum_i g_ic + s),     L_Dice = 1 - mean_c D_c

where ``p_ic`` is the predicted probability of class ``c`` at pixel ``i`` (sigmoid of the
single logit for a binary model, softmax over classes for K > 1) and ``g_ic`` the one-hot
target. With ``squared=True`` the denominator is ``sum p^2 + sum g^2 + s`` (V-Net's form).
Sums run over the pixels of each image (``batch_dice=False``, the default: D is computed
per image and averaged) or over the whole batch (``batch_dice=True``).

Empty masks: with ``s > 0`` an empty target and an empty prediction give D = 1 (loss 0),
and the loss and its gradient are finite for every input; ``s`` must therefore be > 0.

Targets: for a binary model (logits (B, 1, H, W)) a mask (B, H, W) or (B, 1, H, W) of 0/1
(int or float; soft float targets in [0, 1] are allowed); for K > 1 class indices (B, H, W)
(int64) or a one-hot / probability map (B, K, H, W). Values outside [0, 1] (a 0/255 mask, a -1
label) or class indices outside [0, K-1] are an error naming the range found and the fix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_dice_loss", "dice_bce", "dice_ce"]


def _check_unit_range(target: torch.Tensor, what: str) -> None:
    """Binary / one-hot targets must lie in [0, 1]: a 0/255 mask or a -1 label would give a plausible but
    meaningless loss (e.g. soft Dice below 0)."""
    if target.numel() and target.dtype != torch.bool and bool(((target < 0) | (target > 1)).any()):
        lo, hi = float(target.min()), float(target.max())
        hint = " (a 0/255 mask: divide by 255 or use target > 0)" if hi > 1 else ""
        raise ValueError(f"{what} must hold values in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")


def _probs_and_target(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, K, H, W), got shape {tuple(logits.shape)}")
    b, k, h, w = logits.shape
    logits = logits.float()
    if k == 1:
        if target.ndim == 3:
            target = target.unsqueeze(1)
        if target.shape != logits.shape:
            raise ValueError(
                f"binary target must be (B, H, W) or (B, 1, H, W) matching logits {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        _check_unit_range(target, "a binary target")
        return torch.sigmoid(logits), target.to(logits.dtype)
    probs = torch.softmax(logits, dim=1)
    if target.ndim == 3:
        if target.dtype.is_floating_point:
            raise ValueError(
                "multi-class target (B, H, W) must hold integer class indices (int64), got "
                f"{target.dtype}; use target.long()"
            )
        if target.shape != (b, h, w):
            raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
        if target.numel() and (target.min() < 0 or target.max() >= k):
            raise ValueError(
                f"target class indices must be in [0, {k - 1}] for {k} logit channels, "
                f"got values in [{int(target.min())}, {int(target.max())}]"
            )
        onehot = F.one_hot(target.long(), k).permute(0, 3, 1, 2).to(probs.dtype)
        return probs, onehot
    if target.shape != logits.shape:
        raise ValueError(
            f"target must be (B, H, W) class indices or (B, K, H, W) one-hot matching logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    _check_unit_range(target, "a one-hot / probability target")
    return probs, target.to(probs.dtype)


def soft_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth: float = 1.0,
    squared: bool = False,
    batch_dice: bool = False,
    include_background: bool = True,
) -> torch.Tensor:
    """Soft Dice loss ``1 - mean D`` (V-Net Eq. 1 with a smooth term; see the module docstring).

    Args:
        logits: (B, K, H, W) raw scores; K = 1 is binary (sigmoid), K > 1 multi-class (softmax).
        target: see the module docstring.
        smooth: the ``s`` added to numerator and denominator (> 0 keeps empty masks finite).
        squared: square the terms of the denominator (V-Net's original form).
        batch_dice: sum over the whole batch instead of per image.
        include_background: for K > 1, whether class 0 takes part in the mean.
    """
    if not smooth > 0:
        raise ValueError(f"smooth must be > 0 so that empty masks give a finite Dice, got {smooth!r}")
    probs, onehot = _probs_and_target(logits, target)
    if probs.shape[1] > 1 and not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    dims = (0, 2, 3) if batch_dice else (2, 3)
    inter = (probs * onehot).sum(dims)
    if squared:
        denom = (probs * probs).sum(dims) + (onehot * onehot).sum(dims)
    else:
        denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + smooth) / (denom + smooth)
    return 1 - dice.mean()


def dice_bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    bce_weight: float = 1.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """``bce_weight * BCE(logits, target) + dice_weight * soft Dice`` for a binary model (K = 1)."""
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ValueError(
            f"dice_bce is for binary logits (B, 1, H, W), got {tuple(logits.shape)}; use dice_ce for K > 1"
        )
    t = target.unsqueeze(1) if target.ndim == 3 else target
    if t.shape != logits.shape:
        raise ValueError(f"target {tuple(target.shape)} does not match logits {tuple(logits.shape)}")
    dice = soft_dice_loss(logits, target, smooth=smooth)  # checks that the target lies in [0, 1]
    bce = F.binary_cross_entropy_with_logits(logits.float(), t.float())
    return bce_weight * bce + dice_weight * dice


def dice_ce(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
    smooth: float = 1.0,
    include_background: bool = True,
) -> torch.Tensor:
    """``ce_weight * CE(logits, target) + dice_weight * soft Dice`` for K > 1 classes (target: class indices)."""
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(
            f"dice_ce is for multi-class logits (B, K>1, H, W), got {tuple(logits.shape)}; use dice_bce for K = 1"
        )
    if target.ndim != 3 or target.dtype.is_floating_point:
        raise ValueError(f"dice_ce needs class indices (B, H, W) int64, got {tuple(target.shape)} {target.dtype}")
    dice = soft_dice_loss(logits, target, smooth=smooth, include_background=include_background)  # checks the range
    return ce_weight * F.cross_entropy(logits.float(), target.long()) + dice_weight * dice
