"""Models: plain ``nn.Module``s returning logits (MS-Former returns a named tuple with its logits).

They import only :mod:`mslib.blocks` (and torch/torchvision, ImageNet weights through
:mod:`mslib.weights`); building a model with its loss, transforms and metrics from a config
is a recipe's job (:mod:`mslib.recipes`). Every name is also importable from its module.
"""

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
