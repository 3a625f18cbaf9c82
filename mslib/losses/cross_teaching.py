"""Cross teaching between a CNN and a Transformer: supervised loss, cross pseudo supervision, ramp-up.

MCSC (Liu et al., BMVC 2023; poster "Supervision loss functions") trains a CNN and a
Transformer together (the CTS scheme of Luo et al., MIDL 2022):

* supervised, on the labelled images: ``L_sup = 0.5 * (CE(P, Y) + Dice(P, Y))``;
* cross pseudo supervision, on the unlabelled images (MCSC poster, L_cps):
  ``L_cps(cnn) = Dice(P^u_cnn, Y^u_tra)`` and ``L_cps(tra) = Dice(P^u_tra, Y^u_cnn)``, where
  ``Y^u`` is the *other* network's hard prediction (argmax, no gradient);
* weighted by the ramp-up ``w(t) = w_max * exp(-5 (1 - t/T)^2)`` (Laine and Aila's sigmoid
  ramp-up), ``t`` clipped to ``[0, T]``.

**The Dice here is SSL4MIS's** ``DiceLoss`` (what CTS and MCSC train with), which differs from
:func:`mslib.losses.dice.soft_dice_loss`'s defaults on purpose:

* **batch-level**: the sums run over all pixels of the whole batch, not per image;
* **squared denominator**: ``D_c = (2 sum p g + s) / (sum p^2 + sum g^2 + s)`` with ``s = 1e-5``;
* **background included**: ``L = 1 - mean_c D_c`` over all K classes, background too.

It is ``soft_dice_loss(logits, target, smooth=1e-5, squared=True, batch_dice=True,
include_background=True)``; use :func:`ssl4mis_dice_loss` for these methods and
``soft_dice_loss``/``dice_ce`` (per image, plain denominator) elsewhere.

Ramp-up as coded (official): ``t = iteration // 150`` ("epochs" of 150 iterations) and
``T = 200``, ``w_max = 0.1``: ``w = 0.000674`` at iteration 0, ``0.0287`` at 15,000 and ``0.1``
from 30,000 on. ``iters_per_step=1`` makes ``t`` the iteration itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .dice import soft_dice_loss

__all__ = [
    "SSL4MIS_SMOOTH",
    "ssl4mis_dice_loss",
    "supervised_loss",
    "cps_loss",
    "sigmoid_rampup",
    "cps_weight",
    "cross_teaching_losses",
]

#: Smooth term of SSL4MIS's DiceLoss.
SSL4MIS_SMOOTH = 1e-5


def ssl4mis_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSL4MIS Dice loss: batch-level, squared denominator, background included (see module docstring).

    ``logits`` (B, K, H, W) (softmax is applied here); ``target`` (B, H, W) class indices.
    """
    return soft_dice_loss(logits, target, smooth=SSL4MIS_SMOOTH, squared=True, batch_dice=True, include_background=True)


def supervised_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``0.5 * (CE + Dice)`` on labelled images (MCSC poster L_sup; SSL4MIS Dice)."""
    if target.ndim != 3 or target.dtype.is_floating_point:
        raise ValueError(f"target must be class indices (B, H, W) int64, got {tuple(target.shape)} {target.dtype}")
    return 0.5 * (F.cross_entropy(logits.float(), target.long()) + ssl4mis_dice_loss(logits, target))


def cps_loss(logits: torch.Tensor, other_logits: torch.Tensor) -> torch.Tensor:
    """Cross pseudo supervision ``Dice(P, argmax P_other)`` (MCSC poster L_cps); no gradient to the other net."""
    if logits.shape != other_logits.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and other_logits {tuple(other_logits.shape)} must match")
    pseudo = other_logits.detach().argmax(dim=1)
    return ssl4mis_dice_loss(logits, pseudo)


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - t/T)^2)`` with ``t`` clipped to ``[0, T]``; 1 when ``T == 0``."""
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length!r}")
    if length == 0:
        return 1.0
    phase = 1.0 - min(max(float(current), 0.0), float(length)) / length
    return float(math.exp(-5.0 * phase * phase))


def cps_weight(iteration: int, weight: float = 0.1, rampup: float = 200, iters_per_step: int = 150) -> float:
    """``w(t) = weight * exp(-5 (1 - t/T)^2)``, ``t = iteration // iters_per_step``, ``T = rampup``.

    Official CTS/MCSC: ``weight=0.1``, ``rampup=200``, ``iters_per_step=150`` (tested: 0.000674 at
    iteration 0, 0.0287 at 15k, 0.1 from 30k on).
    """
    if iteration < 0 or iters_per_step < 1:
        raise ValueError(f"iteration must be >= 0 and iters_per_step >= 1, got {iteration}, {iters_per_step}")
    return weight * sigmoid_rampup(iteration // iters_per_step, rampup)


def cross_teaching_losses(
    logits_cnn: torch.Tensor, logits_tra: torch.Tensor, target: torch.Tensor, labeled_bs: int, weight: float
) -> dict[str, torch.Tensor]:
    """The two networks' losses on a two-stream batch (first ``labeled_bs`` images labelled).

    Returns ``{"cnn": L_sup(cnn) + w L_cps(cnn), "tra": ..., "sup_cnn", "sup_tra", "cps_cnn", "cps_tra"}``.
    ``target`` holds the labels of the first ``labeled_bs`` images (the rest is ignored).
    """
    b = logits_cnn.shape[0]
    if not 0 < labeled_bs <= b:
        raise ValueError(f"labeled_bs must be in 1..{b} (the batch size), got {labeled_bs}")
    out = {
        "sup_cnn": supervised_loss(logits_cnn[:labeled_bs], target[:labeled_bs]),
        "sup_tra": supervised_loss(logits_tra[:labeled_bs], target[:labeled_bs]),
    }
    if labeled_bs < b:
        out["cps_cnn"] = cps_loss(logits_cnn[labeled_bs:], logits_tra[labeled_bs:])
        out["cps_tra"] = cps_loss(logits_tra[labeled_bs:], logits_cnn[labeled_bs:])
    else:
        out["cps_cnn"] = out["cps_tra"] = logits_cnn.sum() * 0.0
    out["cnn"] = out["sup_cnn"] + weight * out["cps_cnn"]
    out["tra"] = out["sup_tra"] + weight * out["cps_tra"]
    return out
