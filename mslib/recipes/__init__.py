"""Recipes: each method's model, loss, transforms, parameter groups and metrics, built from its config.

What the CLI (``python -m mslib train --model NAME``), the chapters and the benchmarks call;
models stay plain ``nn.Module``s and losses plain functions. :data:`RECIPES` maps a CLI model
name to ``recipe(config, in_channels, out_channels) -> Recipe``. Semi-supervised methods (MCSC,
CTS, CPS, UNet-LS/FS; several networks, two-stream data) are :mod:`mslib.recipes.mcsc`
(``mcsc.recipe(config)``, ``mcsc.train``, ``mcsc.test``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mslib.utils import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (PEP 562), so that ``import mslib.recipes.msformer``
    # does not import torchvision and the data pipeline through the supervised recipes (~200 MB)
    from mslib.recipes import m2snet, mcsc, msformer, pdcr, unet  # noqa: F401
    from mslib.recipes.base import LOSSES, Recipe, config_transforms, default_loss  # noqa: F401

#: public name -> its module, loaded on first use (a submodule maps to itself)
_WHERE = {
    **{m: m for m in ("m2snet", "mcsc", "msformer", "pdcr", "unet")},
    **{n: "base" for n in ("Recipe", "LOSSES", "config_transforms", "default_loss")},
}
#: CLI model name -> module whose ``recipe(config, in_channels, out_channels) -> Recipe`` builds it
_RECIPE_MODULES = {
    "unet": "unet",
    "m2snet": "m2snet",  # MSNet / M2SNet (chapter 6); binary data only
    "pdcr": "pdcr",  # PDCR + UAFR on UNet / FCN / DeepLabV3+ (chapter 14)
}
_lazy = lazy_exports("mslib.recipes", _WHERE, globals())


def __getattr__(name: str):
    if name == "RECIPES":  # CLI model name -> recipe(config, in_channels, out_channels) -> Recipe
        recipes = {k: _lazy(m).recipe for k, m in _RECIPE_MODULES.items()}
        globals()["RECIPES"] = recipes
        return recipes
    return _lazy(name)


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
