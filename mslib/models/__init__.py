"""Models: plain ``nn.Module``s returning logits (MS-Former returns a named tuple with its logits).

They import only :mod:`mslib.blocks` (and torch/torchvision, ImageNet weights through
:mod:`mslib.weights`); building a model with its loss, transforms and metrics from a config
is a recipe's job (:mod:`mslib.recipes`). Every name is also importable from its module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mslib.utils import lazy_exports

if TYPE_CHECKING:
    from mslib.models.deeplabv3plus import (
        RESNETS,
        DeepLabV3Plus,
    )
    from mslib.models.m2snet import (
        WIRINGS,
        M2SNet,
        MSNet,
    )
    from mslib.models.msformer import (
        Branch,
        MSFormer,
        MSFormerOutput,
        PatchEmbed,
    )
    from mslib.models.plugins import (
        FeatureTap,
        PlugIn,
        attach_uafr,
        layer_channels,
    )
    from mslib.models.res2net import (
        Bottle2neck,
        Res2Net,
        res2net50_v1b_26w_4s,
    )
    from mslib.models.swin_unet import (
        PatchExpand,
        SwinUNet,
        swin_t_weight_spec,
    )
    from mslib.models.unet import (
        DoubleConv,
        UNet,
        unet_num_parameters,
    )
    from mslib.models.unet_ssl4mis import (
        SSL4MIS_CHANNELS,
        SSL4MIS_DROPOUT,
        UNetSSL4MIS,
    )

#: public name -> its module; a model's module (and torchvision, for the ones built on it) loads on first use
#: (PEP 562), so ``import mslib.models.msformer`` stays light
_WHERE = {
    "RESNETS": "deeplabv3plus",
    "DeepLabV3Plus": "deeplabv3plus",
    "WIRINGS": "m2snet",
    "M2SNet": "m2snet",
    "MSNet": "m2snet",
    "Branch": "msformer",
    "MSFormer": "msformer",
    "MSFormerOutput": "msformer",
    "PatchEmbed": "msformer",
    "FeatureTap": "plugins",
    "PlugIn": "plugins",
    "attach_uafr": "plugins",
    "layer_channels": "plugins",
    "Bottle2neck": "res2net",
    "Res2Net": "res2net",
    "res2net50_v1b_26w_4s": "res2net",
    "PatchExpand": "swin_unet",
    "SwinUNet": "swin_unet",
    "swin_t_weight_spec": "swin_unet",
    "DoubleConv": "unet",
    "UNet": "unet",
    "unet_num_parameters": "unet",
    "SSL4MIS_CHANNELS": "unet_ssl4mis",
    "SSL4MIS_DROPOUT": "unet_ssl4mis",
    "UNetSSL4MIS": "unet_ssl4mis",
}


__getattr__ = lazy_exports("mslib.models", _WHERE, globals())

__all__ = [
    # unet
    "UNet",
    "DoubleConv",
    "unet_num_parameters",
    # res2net
    "Bottle2neck",
    "Res2Net",
    "res2net50_v1b_26w_4s",
    # m2snet
    "M2SNet",
    "MSNet",
    "WIRINGS",
    # msformer
    "PatchEmbed",
    "Branch",
    "MSFormer",
    "MSFormerOutput",
    # deeplabv3plus
    "DeepLabV3Plus",
    "RESNETS",
    # swin_unet
    "SwinUNet",
    "PatchExpand",
    "swin_t_weight_spec",
    # unet_ssl4mis
    "UNetSSL4MIS",
    "SSL4MIS_CHANNELS",
    "SSL4MIS_DROPOUT",
    # plugins
    "attach_uafr",
    "FeatureTap",
    "PlugIn",
    "layer_channels",
]
