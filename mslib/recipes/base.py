"""What every recipe shares: the :class:`Recipe` record, transforms and the default loss from a config.

A *recipe* turns a method's config into everything a training run needs: the model, the
loss, the joint transforms, parameter groups, the step function and the validation metrics.
The CLI, the chapters and the benchmarks call recipes; models stay plain ``nn.Module``s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import nn

from mslib.data import build_transforms
from mslib.losses.dice import dice_bce, dice_ce
from mslib.weights import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["Recipe", "config_transforms", "default_loss", "LOSSES"]


@dataclass
class Recipe:
    """A model and the keyword arguments :func:`mslib.train.fit` needs for it.

    ``fit_kwargs`` holds ``loss_fn`` and, where the method needs them, ``step_fn``,
    ``param_groups``, ``batch_transform`` and ``metrics``; ``transforms(train)`` returns the
    joint ``(image, mask)`` transform of the method's config; ``size_multiple``: image sides
    must be a multiple of it (the network's total stride), when it has one.
    """

    model: nn.Module
    fit_kwargs: dict[str, Any] = field(default_factory=dict)
    transforms: Callable[[bool], Callable] | None = None
    size_multiple: int | None = None


def config_transforms(config, train: bool):
    """The joint transform a config describes: resize to ``config.image_size``; in training the
    flips/rotation of ``config.hflip``/``vflip``/``rotation`` (when the config has them);
    ``config.normalize``: ``"imagenet"`` (the ImageNet statistics), ``"none"``/None, or ``(mean, std)``."""
    norm = getattr(config, "normalize", None)
    if norm in (None, "none", False):
        normalize = None
    elif norm == "imagenet":
        normalize = (IMAGENET_MEAN, IMAGENET_STD)
    elif isinstance(norm, (tuple, list)) and len(norm) == 2:
        normalize = tuple(norm)
    else:
        raise ValueError(f"config.normalize must be 'imagenet', 'none' or (mean, std), got {norm!r}")
    kw: dict[str, Any] = {"normalize": normalize}
    if train:
        kw.update(
            hflip=getattr(config, "hflip", 0.5),
            vflip=getattr(config, "vflip", 0.0),
            rotation=getattr(config, "rotation", 0.0),
        )
    return build_transforms(train, config.image_size, **kw)


def _bce(logits, masks):
    return F.binary_cross_entropy_with_logits(logits[:, 0].float(), masks.float())


def _ce(logits, masks):
    return F.cross_entropy(logits.float(), masks.long())


#: loss name -> (binary version, multi-class version)
LOSSES: dict[str, tuple[Callable, Callable]] = {
    "dice_bce": (dice_bce, dice_ce),
    "dice_ce": (dice_bce, dice_ce),
    "bce": (_bce, _ce),
    "ce": (_bce, _ce),
}


def default_loss(config, out_channels: int) -> Callable:
    """``config.loss`` for a model with ``out_channels`` outputs.

    ``"dice_bce"``/``"dice_ce"`` are one family (Dice + BCE for a single sigmoid map, Dice + CE
    for several classes); so are ``"bce"``/``"ce"``. Default: the Dice family.
    """
    name = getattr(config, "loss", None) or ("dice_bce" if out_channels == 1 else "dice_ce")
    if name not in LOSSES:
        raise ValueError(f"config.loss={name!r}; valid losses are {', '.join(map(repr, LOSSES))}")
    return LOSSES[name][0 if out_channels == 1 else 1]
