"""Semi-supervised step functions on the one engine: cross teaching (CTS, CPS), MCSC, supervised baselines.

Each function returns a ``step_fn(ctx, batch)`` for :func:`mslib.train.engine.fit`; nothing
here loops over data or steps an optimiser (the engine does: one backward of the returned
loss, then every model's optimiser and schedule). Batches are ``(images, masks)`` from a
loader with a :class:`~mslib.data.samplers.TwoStreamBatchSampler`: the first ``labeled_bs``
images are labelled, the rest unlabelled (their masks are never read).

* :func:`cross_teaching_step` (CTS, Luo et al. MIDL 2022; CPS when both models are CNNs):
  ``L = L_sup(a) + w(t) L_cps(a) + L_sup(b) + w(t) L_cps(b)`` (MCSC poster, "Supervision loss
  functions"), ``L_sup = 0.5 (CE + Dice)`` on the labelled images, ``L_cps(a) = Dice(P^u_a,
  argmax P^u_b)`` on the unlabelled ones, ``w(t) = 0.1 exp(-5 (1 - t/T)^2)`` with ``t`` from
  ``ctx.step`` (:func:`mslib.losses.cross_teaching.cps_weight`).
* :func:`mcsc_step`: the same plus ``lambda_cl * L_cl``, the multi-scale balanced cross
  contrastive loss (:class:`mslib.losses.contrastive.MultiScaleContrast`, a third "model" with
  its own optimiser: the projection heads) on both networks' decoder features, labels from the
  ground truth (labelled) and the other network's argmax (unlabelled, "CroLab").
  ``legacy_double_contrast=True``: the official script adds ``L_cl`` to both networks' losses
  and back-propagates their sum, so the term counts twice (``2 lambda_cl``).
* :func:`supervised_step` (UNet-LS / UNet-FS): ``L_sup`` on every image of the batch.

:class:`VolumeValidator` is an ``evaluate_fn``: per-volume Dice and HD95 of each network on a
:class:`~mslib.data.volumes.VolumeDataset` (:func:`mslib.volume_metrics.evaluate_volumes`),
recorded as ``val_<model>_dice`` / ``val_<model>_hd95``; with ``best_metric="val_cnn_dice"`` the
engine keeps the best weights in ``best.pt``, and the validator keeps them in memory too.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from mslib.losses.cross_teaching import cps_weight, cross_teaching_losses, supervised_loss
from mslib.volume_metrics import evaluate_volumes

__all__ = ["cross_teaching_step", "mcsc_step", "supervised_step", "VolumeValidator"]


def _split(batch, labeled_bs: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise TypeError(
            "semi-supervised steps need (images, masks) batches from one loader with a "
            "TwoStreamBatchSampler (labelled images first)"
        )
    images, masks = batch[0], batch[1]
    if not 0 < labeled_bs <= images.shape[0]:
        raise ValueError(
            f"labeled_bs={labeled_bs} does not fit a batch of {images.shape[0]} images; build the "
            "loader with TwoStreamBatchSampler(labeled, unlabeled, labeled_bs, unlabeled_bs)"
        )
    return images, masks[:labeled_bs].long()  # the unlabelled images' masks are never read


def _weight(step: int, weight: float, rampup: float, iters_per_step: int) -> float:
    return cps_weight(step, weight, rampup, iters_per_step)


def cross_teaching_step(
    labeled_bs: int,
    names: Sequence[str] = ("cnn", "tra"),
    *,
    cps_weight: float = 0.1,
    cps_rampup: float = 200.0,
    cps_iters_per_step: int = 150,
):
    """``step_fn`` of cross teaching between ``ctx.model[names[0]]`` and ``ctx.model[names[1]]`` (CTS; CPS).

    Returns ``(L, logs)`` with ``L = sum over the two networks of L_sup + w(t) L_cps``
    (:func:`mslib.losses.cross_teaching.cross_teaching_losses`); logs ``sup_<name>``,
    ``cps_<name>`` and ``w_cps``.
    """
    a, b = names

    def step(ctx, batch):
        images, target = _split(batch, labeled_bs)
        la, lb = ctx.model[a](images), ctx.model[b](images)
        w = _weight(ctx.step, cps_weight, cps_rampup, cps_iters_per_step)
        losses = cross_teaching_losses(la, lb, target, labeled_bs, w)
        logs = {
            f"sup_{a}": losses["sup_cnn"].detach(),
            f"sup_{b}": losses["sup_tra"].detach(),
            f"cps_{a}": losses["cps_cnn"].detach(),
            f"cps_{b}": losses["cps_tra"].detach(),
            "w_cps": w,
        }
        return losses["cnn"] + losses["tra"], logs

    return step


def mcsc_step(
    labeled_bs: int,
    names: Sequence[str] = ("cnn", "tra"),
    contrast: str = "proj",
    *,
    cps_weight: float = 0.1,
    cps_rampup: float = 200.0,
    cps_iters_per_step: int = 150,
    cl_weight: float = 0.001,
    legacy_double_contrast: bool = False,
):
    """``step_fn`` of MCSC: cross teaching plus ``cl_weight * L_cl`` (module docstring).

    ``ctx.model[contrast]`` is a :class:`~mslib.losses.contrastive.MultiScaleContrast` (its
    ``start_iteration`` is compared with ``ctx.step``); the networks are called with
    ``return_features=True``. Logs as :func:`cross_teaching_step` plus ``cl`` and ``cl_<factor>``.
    """
    a, b = names
    factor = 2.0 if legacy_double_contrast else 1.0

    def step(ctx, batch):
        images, target = _split(batch, labeled_bs)
        la, fa = ctx.model[a](images, return_features=True)
        lb, fb = ctx.model[b](images, return_features=True)
        w = _weight(ctx.step, cps_weight, cps_rampup, cps_iters_per_step)
        losses = cross_teaching_losses(la, lb, target, labeled_bs, w)
        l_cl, per_scale = ctx.model[contrast](
            fa, fb, target, la.detach().argmax(1), lb.detach().argmax(1), labeled_bs, iteration=ctx.step
        )
        loss = losses["cnn"] + losses["tra"] + factor * cl_weight * l_cl
        logs = {
            f"sup_{a}": losses["sup_cnn"].detach(),
            f"sup_{b}": losses["sup_tra"].detach(),
            f"cps_{a}": losses["cps_cnn"].detach(),
            f"cps_{b}": losses["cps_tra"].detach(),
            "w_cps": w,
            "cl": l_cl.detach(),
            **{f"cl_{s}": v.detach() for s, v in per_scale.items()},
        }
        return loss, logs

    return step


def supervised_step(name: str = "cnn"):
    """``step_fn`` of a supervised baseline: ``L_sup = 0.5 (CE + Dice)`` on every image of the batch (UNet-LS/FS)."""

    def step(ctx, batch):
        images, target = _split(batch, batch[0].shape[0])
        loss = supervised_loss(ctx.model[name](images), target)
        return loss, {f"sup_{name}": loss.detach()}

    return step


class VolumeValidator:
    """``evaluate_fn(ctx, val_loader)``: per-volume Dice/HD95 of each network (MCSC's validation).

    ``val_loader.dataset`` (or ``val_loader`` itself) is a :class:`~mslib.data.volumes.VolumeDataset`.
    Before ``after_step`` global steps it returns NaN (the engine records no best). ``keep``
    names the network whose best ``val_<keep>_dice`` weights are kept in :attr:`best_state`
    (all networks' state dicts of that epoch) besides the engine's ``best.pt``.

    Args:
        names: the networks to score (keys of ``ctx.models``).
        size: slices resized to ``size`` for the model and back (training size; official test 256).
        use_spacing: HD95 in mm from ``dataset.json`` spacing (False: voxels, as the official script).
        legacy_official: the official empty-mask conventions (:mod:`mslib.volume_metrics`).
    """

    def __init__(
        self,
        names: Sequence[str] = ("cnn", "tra"),
        *,
        size: int | None = None,
        use_spacing: bool = True,
        legacy_official: bool = False,
        after_step: int = 0,
        keep: str | None = "cnn",
    ):
        self.names, self.size, self.use_spacing = tuple(names), size, use_spacing
        self.legacy_official, self.after_step, self.keep = legacy_official, int(after_step), keep
        self.best_value, self.best_state, self.best_step = -math.inf, None, None
        self.last: dict[str, Any] = {}

    def __call__(self, ctx, val_loader) -> dict[str, float]:
        volumes = getattr(val_loader, "dataset", val_loader)
        out: dict[str, float] = {}
        done = ctx.step + 1
        for name in self.names:
            if done < self.after_step:
                out[f"{name}_dice"], out[f"{name}_hd95"] = float("nan"), float("nan")
                continue
            res = evaluate_volumes(
                ctx.models[name],
                volumes,
                size=self.size,
                use_spacing=self.use_spacing,
                legacy_official=self.legacy_official,
            )
            self.last[name] = res
            out[f"{name}_dice"], out[f"{name}_hd95"] = res["mean_dice"], res["mean_hd95"]
        key = f"{self.keep}_dice" if self.keep else None
        if key in out and math.isfinite(out[key]) and out[key] > self.best_value:
            self.best_value, self.best_step = out[key], done
            self.best_state = {
                k: copy.deepcopy({n: t.detach().cpu() for n, t in m.state_dict().items()})
                for k, m in ctx.models.items()
            }
        return out

    def load_best(self, models: Mapping[str, torch.nn.Module]) -> bool:
        """Load the kept best weights into ``models`` (by name); False when none was kept."""
        if self.best_state is None:
            return False
        for k, m in models.items():
            if k in self.best_state:
                m.load_state_dict(self.best_state[k])
        return True
