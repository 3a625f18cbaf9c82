"""Recipes: each method's model, loss, transforms, parameter groups and metrics, built from its config.

What the CLI (``python -m mslib train --model NAME``), the chapters and the benchmarks call;
models stay plain ``nn.Module``s and losses plain functions. :data:`RECIPES` maps a CLI model
name to ``recipe(config, in_channels, out_channels) -> Recipe``. Semi-supervised methods (MCSC,
CTS, CPS, UNet-LS/FS; several networks, two-stream data) are :mod:`mslib.recipes.mcsc`
(``mcsc.recipe(config)``, ``mcsc.train``, ``mcsc.test``).
"""

from __future__ import annotations

from mslib.recipes import m2snet, mcsc, msformer, pdcr, unet
from mslib.recipes.base import LOSSES, Recipe, config_transforms, default_loss

#: CLI model name -> recipe(config, in_channels, out_channels) -> Recipe (the name is also its config's name)
RECIPES = {
    "unet": unet.recipe,
    "m2snet": m2snet.recipe,  # MSNet / M2SNet (chapter 6); binary data only
    "pdcr": pdcr.recipe,  # PDCR + UAFR on UNet / FCN / DeepLabV3+ (chapter 14)
}

__all__ = [
    "Recipe",
    "RECIPES",
    "LOSSES",
    "config_transforms",
    "default_loss",
    "m2snet",
    "mcsc",
    "msformer",
    "pdcr",
    "unet",
]
