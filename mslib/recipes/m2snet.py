"""The M2SNet recipe (M2SNet Sec. IV-C): model, loss (Eq. 4), transforms, two learning-rate groups,
multi-scale training and the metrics of Tables I-IV, all from a :class:`mslib.configs.M2SNetConfig`.

``config.lr`` is the rate of everything but the backbone (the paper's 0.05); the Res2Net
backbone trains at ``config.lr * config.backbone_lr_ratio`` (paper: 0.1, i.e. 0.005).
``legacy_lr_groups=True`` reproduces the official code, whose grouping fails silently and
trains everything at ``config.lr``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from mslib import metrics as M
from mslib.data import RandomBatchResize, build_transforms
from mslib.losses.lossnet import M2SNetLoss
from mslib.models.m2snet import M2SNet
from mslib.recipes.base import Recipe
from mslib.weights import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "build_m2snet",
    "build_m2snet_loss",
    "m2snet_param_groups",
    "m2snet_step",
    "training_kwargs",
    "m2snet_transforms",
    "table_metrics",
    "TABLE_METRICS",
    "recipe",
]


def build_m2snet(cfg) -> M2SNet:
    """The model described by an :class:`mslib.configs.M2SNetConfig` (or any object with its fields)."""
    return M2SNet(
        unit=cfg.unit,
        orders=cfg.orders,
        wiring=cfg.wiring,
        channels=cfg.channels,
        pretrained=cfg.pretrained,
        backbone_width=cfg.backbone_width,
        backbone_layers=tuple(cfg.backbone_layers),
        in_channels=cfg.in_channels,
        num_classes=cfg.num_classes,
        unit_kwargs=dict(cfg.unit_kwargs),
    )


def build_m2snet_loss(cfg) -> M2SNetLoss:
    """The loss of an M2SNet config: M2SNet Eq. 4 with ``cfg.lossnet_weight``."""
    return M2SNetLoss(cfg.lossnet_weight, cfg.lossnet_pretrained, cfg.legacy_bce, cfg.lossnet_resize)


def m2snet_param_groups(model: nn.Module, backbone_lr: float, head_lr: float, **group_options) -> list[dict]:
    """Two optimiser parameter groups: the ``.backbone`` at ``backbone_lr``, everything else at ``head_lr``.

    M2SNet Sec. IV-C: 0.005 for the backbone, 0.05 for the other parts. ``group_options``
    (e.g. ``weight_decay``) are copied into both groups.
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"m2snet_param_groups needs a model with a .backbone module, got {type(model).__name__}")
    ids = {id(p) for p in backbone.parameters()}
    bb = [p for p in backbone.parameters() if p.requires_grad]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [
        {"params": bb, "lr": float(backbone_lr), "name": "backbone", **group_options},
        {"params": rest, "lr": float(head_lr), "name": "head", **group_options},
    ]


def m2snet_step(ctx, batch):
    """``step_fn`` for :func:`mslib.train.fit`: the loss plus its parts as logs.

    With an :class:`~mslib.losses.lossnet.M2SNetLoss` the logs are ``structure`` and ``lossnet``
    (recorded per epoch as ``train_structure`` / ``train_lossnet``); any other
    ``loss_fn(logits, masks)`` works too (no logs).
    """
    images, masks = batch[0], batch[1]
    logits = ctx.model(images)
    loss_fn = ctx.loss_fn
    if hasattr(loss_fn, "components") and hasattr(loss_fn, "total"):
        parts = loss_fn.components(logits, masks)
        return loss_fn.total(parts), {k: v.detach() for k, v in parts.items()}
    return loss_fn(logits, masks)


def learning_rates(cfg) -> tuple[float, float]:
    """``(backbone_lr, head_lr)`` of a config (``legacy_lr_groups``: both at ``cfg.lr``, as the official code)."""
    ratio = 1.0 if cfg.legacy_lr_groups else cfg.backbone_lr_ratio
    return cfg.lr * ratio, cfg.lr


def training_kwargs(cfg) -> dict[str, Any]:
    """Keyword arguments of :func:`mslib.train.fit` for an M2SNet config::

        fit(model, train_loader, val_loader, config=cfg, **training_kwargs(cfg))

    ``loss_fn`` (Eq. 4), ``step_fn`` (:func:`m2snet_step`), ``param_groups`` (backbone at
    ``cfg.lr * cfg.backbone_lr_ratio``, the rest at ``cfg.lr``) and ``batch_transform``
    (multi-scale training: :class:`mslib.data.RandomBatchResize` over ``cfg.multiscale_sizes``).
    """
    backbone_lr, head_lr = learning_rates(cfg)
    return {
        "loss_fn": build_m2snet_loss(cfg),
        "step_fn": m2snet_step,
        "param_groups": lambda m: m2snet_param_groups(m, backbone_lr, head_lr),
        "batch_transform": RandomBatchResize(tuple(cfg.multiscale_sizes)) if cfg.multiscale_sizes else None,
    }


def m2snet_transforms(cfg, train: bool):
    """The joint ``(image, mask)`` transform of an M2SNet config (Sec. IV-C).

    Resize to ``cfg.image_size``; in training a horizontal flip (``cfg.hflip``) and a rotation in
    ``[-cfg.rotation, cfg.rotation]`` degrees; ImageNet normalisation (``cfg.normalize="imagenet"``,
    the backbone's statistics) or none (``"none"``). Multi-scale resizing happens per batch
    (:func:`training_kwargs`).
    """
    if cfg.normalize not in ("imagenet", "none"):
        raise ValueError(f"cfg.normalize must be 'imagenet' or 'none', got {cfg.normalize!r}")
    norm = (IMAGENET_MEAN, IMAGENET_STD) if cfg.normalize == "imagenet" else None
    return build_transforms(train, cfg.image_size, hflip=cfg.hflip, rotation=cfg.rotation, normalize=norm)


def recipe(config, in_channels: int, out_channels: int) -> Recipe:
    """``python -m mslib train --model m2snet``: model, ``fit`` arguments and transforms of an M2SNet config.

    M2SNet predicts one sigmoid map (structure loss + LossNet, Eq. 4), so the dataset must be
    binary. ImageNet normalisation needs 3-channel images: a grey-scale dataset needs
    ``normalize="none"`` and ``pretrained=False`` (the error says so).
    """
    if out_channels != 1:
        raise ValueError(
            f"m2snet segments one foreground class (sigmoid output, M2SNet Eq. 4); the dataset has "
            f"{out_channels} classes: merge them into one foreground or train a multi-class model"
        )
    if in_channels != 3 and (config.normalize == "imagenet" or config.pretrained not in (False, None)):
        raise ValueError(
            f"m2snet with ImageNet normalisation/weights needs 3-channel images; the dataset has "
            f"{in_channels} channel(s): convert it to RGB, or set normalize='none' and pretrained=False"
        )
    cfg = dataclasses.replace(config, in_channels=in_channels, num_classes=1)
    return Recipe(
        build_m2snet(cfg), training_kwargs(cfg), lambda train: m2snet_transforms(cfg, train), size_multiple=None
    )  # any size: the decoder up-samples to the features it adds


# ---------------------------------------------------------------------------- evaluation (Tables I-IV)
#: The metrics of each table: polyps (Tables I-II), COVID-19 CT (Table III), breast ultrasound (Table IV).
TABLE_METRICS = {
    "polyp": ("mdice", "miou", "wfm", "s_alpha", "e_max", "mae"),
    "covid": ("dsc", "precision", "recall", "s_alpha", "mae"),
    "breast": ("jaccard", "precision", "recall", "specificity", "dice"),
}


def table_metrics(table: str = "polyp", official_dice: bool = False) -> dict[str, Any]:
    """Metric functions ``fn(logits, masks) -> (B,)`` for :func:`mslib.train.evaluate`, as in M2SNet Tables I-IV.

    Everything goes through :mod:`mslib.metrics` on ``p = sigmoid(logits)``: Dice / IoU / Jaccard,
    precision, recall, specificity on ``p > 0.5``; ``wfm`` (F^w_beta, beta^2 = 1), ``s_alpha``
    (alpha = 0.5), ``e_max`` (max E-measure over thresholds) and ``mae`` on ``p`` itself. The
    means over images are the tables' "m" (mDice, mIoU).

    Default Dice: the hard Dice at 0.5 (what the paper's text defines and most papers use).
    ``official_dice=True`` computes Dice the way the official evaluation does (soft Dice of the
    per-image min-max normalised ``p``, no threshold: ``dice(p, g, soft=True, minmax=True)``), for
    comparison with released prediction maps; it only applies to the Dice entries.
    """
    if table not in TABLE_METRICS:
        raise ValueError(f"table must be one of {', '.join(map(repr, TABLE_METRICS))}, got {table!r}")

    def prob(logits):
        return torch.sigmoid(logits[:, 0].float())

    gt = M.binarize_target

    def dice(lg, m):
        return M.dice(prob(lg), gt(m), soft=True, minmax=True) if official_dice else M.dice(prob(lg), gt(m))

    fns = {
        "mdice": dice,
        "dsc": dice,
        "dice": dice,
        "miou": lambda lg, m: M.iou(prob(lg), gt(m)),
        "jaccard": lambda lg, m: M.iou(prob(lg), gt(m)),
        "precision": lambda lg, m: M.precision(prob(lg), gt(m)),
        "recall": lambda lg, m: M.recall(prob(lg), gt(m)),
        "specificity": lambda lg, m: M.specificity(prob(lg), gt(m)),
        "wfm": lambda lg, m: M.weighted_f_measure(prob(lg), gt(m)),
        "s_alpha": lambda lg, m: M.s_measure(prob(lg), gt(m)),
        "e_max": lambda lg, m: M.e_measure(prob(lg), gt(m), mode="max"),
        "mae": lambda lg, m: M.mae(prob(lg), gt(m)),
    }
    return {name: fns[name] for name in TABLE_METRICS[table]}
