"""Res2Net-50 v1b, 26w x 4s: the backbone of MSNet and M2SNet (M2SNet Sec. III).

Res2Net (Gao et al., TPAMI 2021) replaces the 3x3 convolution of a ResNet bottleneck by
``scale`` groups of ``width`` channels processed hierarchically: group ``i`` is convolved
after adding the output of group ``i-1``, so one block holds receptive fields of 3, 5, 7, ...
The "v1b" variant has a deep stem (three 3x3 convolutions 3->32->32->64 instead of one 7x7)
and an average-pool shortcut (``AvgPool2d(stride)`` before the 1x1 projection instead of a
strided 1x1). The first block of a stage ("stage" type) does not chain the groups and
average-pools the last group.

:class:`Res2Net` returns the five encoder levels of M2SNet Fig. 2 (no classifier is built):

====== ================== ============ ==============
level  module             channels     size at 352
====== ================== ============ ==============
E^1    stem + max-pool    64           88
E^2    layer1             256          88
E^3    layer2             512          44
E^4    layer3             1024         22
E^5    layer4             2048         11
====== ================== ============ ==============

``width_mult`` and ``layers`` make a narrow/shallow version for the CPU ``quick`` profile.
ImageNet weights (only for the default architecture) come through
:mod:`mslib.weights` from the official Res2Net URL into the torch hub cache.
The module names follow the official release so that its state dict loads unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from mslib.weights import Pretrained, load_state_dict_into, load_weights

__all__ = ["Bottle2neck", "Res2Net", "res2net50_v1b_26w_4s"]


class Bottle2neck(nn.Module):
    """A Res2Net bottleneck: 1x1 -> ``scale`` hierarchical 3x3 groups -> 1x1, plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        base_width: int = 26,
        scale: int = 4,
        stype: str = "normal",
    ):
        super().__init__()
        if scale < 2:
            raise ValueError(f"scale must be >= 2, got {scale}")
        width = int(math.floor(planes * (base_width / 64.0)))
        if width < 1:
            raise ValueError(f"planes={planes} with base_width={base_width} leaves no channel per group")
        self.width, self.scale, self.stype = width, scale, stype
        self.nums = scale - 1
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        if stype == "stage":
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, stride, 1, bias=False) for _ in range(self.nums))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(self.nums))
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        groups = torch.split(out, self.width, dim=1)
        ys = []
        sp = groups[0]
        for i in range(self.nums):
            sp = groups[i] if (i == 0 or self.stype == "stage") else sp + groups[i]
            sp = self.relu(self.bns[i](self.convs[i](sp)))
            ys.append(sp)
        last = groups[self.nums]
        ys.append(self.pool(last) if self.stype == "stage" else last)
        out = self.bn3(self.conv3(torch.cat(ys, dim=1)))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Res2Net(nn.Module):
    """Res2Net v1b encoder returning ``[E1, E2, E3, E4, E5]`` (see the module docstring).

    Args:
        layers: blocks per stage, ``(3, 4, 6, 3)`` for Res2Net-50.
        base_width, scale: the "26w x 4s" of the name.
        width_mult: multiplies every stage's width (1.0 = the paper's; e.g. 0.25 for the quick profile).
        in_channels: image channels (3; ImageNet weights need 3).
    """

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        base_width: int = 26,
        scale: int = 4,
        width_mult: float = 1.0,
        in_channels: int = 3,
    ):
        super().__init__()
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"layers must be four positive block counts, got {tuple(layers)}")
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        stem = max(8, int(round(32 * width_mult)))
        self.inplanes = 2 * stem
        self.base_width, self.scale = base_width, scale
        self.conv1 = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, 2 * stem, 3, 1, 1, bias=False),
        )
        self.bn1 = nn.BatchNorm2d(2 * stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        planes = [max(4, int(round(p * width_mult))) for p in (64, 128, 256, 512)]
        self.layer1 = self._make_layer(planes[0], int(layers[0]), 1)
        self.layer2 = self._make_layer(planes[1], int(layers[1]), 2)
        self.layer3 = self._make_layer(planes[2], int(layers[2]), 2)
        self.layer4 = self._make_layer(planes[3], int(layers[3]), 2)
        self.channels = (2 * stem,) + tuple(p * Bottle2neck.expansion for p in planes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottle2neck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(  # v1b: average-pool shortcut, then a stride-1 projection
                nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                nn.Conv2d(self.inplanes, out, 1, 1, bias=False),
                nn.BatchNorm2d(out),
            )
        mods = [Bottle2neck(self.inplanes, planes, stride, downsample, self.base_width, self.scale, "stage")]
        self.inplanes = out
        mods += [Bottle2neck(out, planes, 1, None, self.base_width, self.scale) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"Res2Net expects images of shape (B, C, H, W), got {tuple(x.shape)}")
        e1 = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        e2 = self.layer1(e1)
        e3 = self.layer2(e2)
        e4 = self.layer3(e3)
        e5 = self.layer4(e4)
        return [e1, e2, e3, e4, e5]


def res2net50_v1b_26w_4s(
    pretrained: Pretrained = False, width_mult: float = 1.0, layers: Sequence[int] = (3, 4, 6, 3), in_channels: int = 3
) -> Res2Net:
    """Res2Net-50 v1b 26w x 4s; ``pretrained`` is True / False / "auto" / a path (:mod:`mslib.weights`).

    ImageNet weights need the default ``width_mult``, ``layers`` and ``in_channels``; asking for
    them with another architecture is an error (with ``"auto"``: a warning, random init).
    """
    model = Res2Net(layers, 26, 4, width_mult, in_channels)
    if pretrained is False:
        return model
    default = width_mult == 1.0 and tuple(layers) == (3, 4, 6, 3) and in_channels == 3
    if not default:
        msg = (
            f"ImageNet Res2Net weights only fit width_mult=1.0, layers=(3, 4, 6, 3), in_channels=3 "
            f"(got {width_mult}, {tuple(layers)}, {in_channels})"
        )
        if pretrained == "auto":
            import warnings

            warnings.warn(msg + "; pretrained='auto' continues with random initialisation", stacklevel=2)
            return model
        raise ValueError(msg + "; use pretrained=False or 'auto'")
    state = load_weights("res2net50_v1b_26w_4s", pretrained)
    if state is not None:
        load_state_dict_into(model, state, ignore=("fc.",), source="Res2Net weights")
    return model
