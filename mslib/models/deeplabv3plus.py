"""DeepLabV3+ on a torchvision ResNet with torchvision's ASPP (Chen et al., ECCV 2018).

The PDCR/UAFR paper's 2D baseline (Liu et al., TMI 2022, Sec. V-A, Table IV) is DeepLabV3+;
its official code uses an Aligned-Xception encoder, the DESIGN asks for a ResNet one (ImageNet
weights through torchvision's weights API). Built from torchvision parts rather than a new
dependency (segmentation_models_pytorch would add timm and its own encoder zoo for one decoder
of ~30 lines): ``torchvision.models.resnet*`` as the encoder, ``torchvision.models.segmentation.
deeplabv3.ASPP`` (rates 6, 12, 18 at output stride 16; 12, 24, 36 at 8) as the neck, and the
V3+ decoder of the paper:

    low  = ReLU(BN(Conv1x1(layer1 -> 48)))                       (``project``)
    x    = upsample(ASPP(layer4), size of low)                    (stride 16 -> 4)
    x    = [Conv3x3 -> BN -> ReLU] x 2 on concat(x, low), 256 ch   (``decoder``)
    out  = upsample(Conv1x1(x -> num_classes), input size)         (``classifier``)

Output stride 16 dilates layer4 (8 also layer3). BasicBlock ResNets (18/34), which torchvision
refuses to dilate, get the same change by hand (stride 1 and dilation on their 3x3 convs).

Layer names for plug-ins (:mod:`mslib.models.plugins`): ``backbone.layer1`` .. ``backbone.layer4``,
``aspp``, ``project``, ``decoder``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP

from mslib.weights import WeightSpec, load_state_dict_into, load_weights

__all__ = ["DeepLabV3Plus", "RESNETS"]

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
_WEIGHTS = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
}


def _resnet_spec(name: str) -> WeightSpec:
    url = getattr(torchvision.models, _WEIGHTS[name]).IMAGENET1K_V1.url
    file = url.rsplit("/", 1)[-1]
    hash_prefix = file.rsplit("-", 1)[-1].split(".")[0]
    return WeightSpec(name, url, file, hash_prefix, f"torchvision {_WEIGHTS[name]}.IMAGENET1K_V1")


def _dilate_basic_layer(layer: nn.Sequential, dilation: int) -> None:
    for i, block in enumerate(layer):
        for conv in (block.conv1, block.conv2):
            if conv is block.conv1 and i == 0:
                conv.stride = (1, 1)
            d = dilation // 2 if (conv is block.conv1 and i == 0) else dilation
            conv.dilation, conv.padding = (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ returning logits (B, num_classes, H, W).

    Args:
        num_classes: output channels (1 for a binary task with a sigmoid).
        backbone: one of ``RESNETS``.
        output_stride: 16 (default) or 8.
        pretrained: ImageNet weights of the ResNet: True | False | "auto" | path (DESIGN, "Pretrained weights").
        in_channels: image channels (3; other values re-initialise the first conv).
        low_level_channels, decoder_channels, aspp_channels: 48, 256, 256 as in the V3+ paper.
    """

    def __init__(
        self,
        num_classes: int = 1,
        backbone: str = "resnet50",
        output_stride: int = 16,
        pretrained: object = False,
        in_channels: int = 3,
        low_level_channels: int = 48,
        decoder_channels: int = 256,
        aspp_channels: int = 256,
        aspp_rates: Sequence[int] | None = None,
    ):
        super().__init__()
        if backbone not in RESNETS:
            raise ValueError(f"DeepLabV3Plus: backbone must be one of {RESNETS}, got {backbone!r}")
        if output_stride not in (8, 16):
            raise ValueError(f"DeepLabV3Plus: output_stride must be 8 or 16, got {output_stride}")
        bottleneck = backbone in ("resnet50", "resnet101")
        dil = [False, output_stride == 8, True]
        kw = {"replace_stride_with_dilation": dil} if bottleneck else {}
        resnet = getattr(torchvision.models, backbone)(weights=None, **kw)
        state = load_weights(_resnet_spec(backbone), pretrained) if pretrained is not False else None
        if state is not None:
            load_state_dict_into(resnet, state, source=f"ImageNet {backbone} weights")
        if not bottleneck:
            if output_stride == 8:
                _dilate_basic_layer(resnet.layer3, 2)
                _dilate_basic_layer(resnet.layer4, 4)
            else:
                _dilate_basic_layer(resnet.layer4, 2)
        if in_channels != 3:
            resnet.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.backbone = IntermediateLayerGetter(resnet, {"layer1": "low", "layer4": "out"})
        c_low, c_high = (256, 2048) if bottleneck else (64, 512)
        rates = tuple(aspp_rates) if aspp_rates is not None else ((6, 12, 18) if output_stride == 16 else (12, 24, 36))
        self.aspp = ASPP(c_high, rates, aspp_channels)
        self.project = nn.Sequential(
            nn.Conv2d(c_low, low_level_channels, 1, bias=False),
            nn.BatchNorm2d(low_level_channels),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(aspp_channels + low_level_channels, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(decoder_channels, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)
        self.in_channels, self.num_classes = in_channels, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DeepLabV3Plus expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        size = x.shape[-2:]
        feats = self.backbone(x)
        low = self.project(feats["low"])
        high = F.interpolate(self.aspp(feats["out"]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([high, low], dim=1))
        return F.interpolate(self.classifier(x), size=size, mode="bilinear", align_corners=False)
