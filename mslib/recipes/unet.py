"""The UNet baseline (chapter 2): model, loss and transforms from a :class:`mslib.configs.UNetConfig`."""

from __future__ import annotations

from mslib.models.unet import UNet
from mslib.recipes.base import Recipe, config_transforms, default_loss

__all__ = ["build_unet", "recipe"]


def build_unet(config, in_channels: int, out_channels: int) -> UNet:
    """The :class:`~mslib.models.unet.UNet` a config describes."""
    return UNet(
        in_channels=in_channels,
        num_classes=out_channels,
        base_channels=config.base_channels,
        depth=config.depth,
        norm=config.norm,
        dropout=config.dropout,
    )


def recipe(config, in_channels: int, out_channels: int) -> Recipe:
    """UNet + ``config.loss`` (Dice + BCE for one sigmoid map, Dice + CE for several classes)."""
    return Recipe(
        build_unet(config, in_channels, out_channels),
        {"loss_fn": default_loss(config, out_channels)},
        lambda train: config_transforms(config, train),
        size_multiple=2**config.depth,
    )
