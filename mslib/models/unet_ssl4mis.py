"""The SSL4MIS-style UNet that MCSC and CTS train as their CNN, with multi-scale decoder features.

Luo et al., "Semi-supervised medical image segmentation via cross teaching between CNN and
Transformer" (CTS, MIDL 2022) and Liu et al., MCSC (BMVC 2023) use the UNet of the SSL4MIS
code base (from PyMIC): five levels of widths ``(16, 32, 64, 128, 256)``; each level is
``Conv3x3 -> BN -> LeakyReLU -> Dropout(p) -> Conv3x3 -> BN -> LeakyReLU`` with encoder dropout
``(0.05, 0.1, 0.2, 0.3, 0.5)`` (none in the decoder), 2x2 max-pooling down, concatenation
skips, and a 3x3 convolution from 16 channels to the class logits.

Up-sampling (``upsampling``):

* ``"bilinear"`` (default): a 1x1 convolution halving the channels, then bilinear x2
  up-sampling with ``align_corners=True``. This is what the SSL4MIS/MCSC code *runs*: its UNet
  sets ``'bilinear': False`` in its parameters, but the decoder never passes that flag to its
  up-blocks, whose own default is ``bilinear=True``. The published parameter count,
  1,813,764 (1 input channel, 4 classes), is this variant's (tested).
* ``"transposed"``: a 2x2 stride-2 transposed convolution, what the parameter dict says;
  1,944,324 parameters (3 * (256*128 + 128*64 + 64*32 + 32*16) = 130,560 more).

MCSC contrasts the decoder's features (MCSC poster Fig. M2, "multi-scale"): the model returns,
with ``return_features=True``, ``(logits, [f_1/8, f_1/4, f_1/2, f_1])``, the outputs of the
four up-blocks (128, 64, 32 and 16 channels; at a 224 input 28, 56, 112 and 224 px), coarse
to fine, as the official MCSC UNet does.

Parameters with 1 input channel and 4 classes: 1,813,764 (SSL4MIS and MCSC, tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["UNetSSL4MIS", "SSL4MIS_CHANNELS", "SSL4MIS_DROPOUT"]

SSL4MIS_CHANNELS = (16, 32, 64, 128, 256)
SSL4MIS_DROPOUT = (0.05, 0.1, 0.2, 0.3, 0.5)


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(cout, cout, 3, padding=1),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(),
        )


class _Up(nn.Module):
    def __init__(self, cin: int, cskip: int, cout: int, upsampling: str):
        super().__init__()
        if upsampling == "bilinear":
            self.up = nn.Sequential(
                nn.Conv2d(cin, cskip, 1), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            )
        else:
            self.up = nn.ConvTranspose2d(cin, cskip, 2, stride=2)
        self.conv = _ConvBlock(2 * cskip, cout, 0.0)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNetSSL4MIS(nn.Module):
    """SSL4MIS UNet (CTS/MCSC CNN branch); ``forward(x, return_features=False)``.

    Args:
        in_channels: image channels (1 for ACDC/Synapse slices).
        num_classes: logit channels (4 for ACDC: background, RV, Myo, LV).
        channels: the five level widths (default 16-256).
        dropout: encoder dropout per level (default 0.05-0.5).
        upsampling: ``"bilinear"`` (1x1 conv + bilinear, what the official code runs, 1,813,764
            parameters) or ``"transposed"`` (2x2 transposed conv, 1,944,324).

    Input H and W must be divisible by 16 (four poolings); a ``ValueError`` says so.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        channels: Sequence[int] = SSL4MIS_CHANNELS,
        dropout: Sequence[float] = SSL4MIS_DROPOUT,
        upsampling: str = "bilinear",
    ):
        super().__init__()
        if upsampling not in ("bilinear", "transposed"):
            raise ValueError(f"upsampling must be 'bilinear' or 'transposed', got {upsampling!r}")
        channels, dropout = tuple(int(c) for c in channels), tuple(float(p) for p in dropout)
        if len(channels) != 5 or len(dropout) != 5:
            raise ValueError(f"channels and dropout need 5 values (one per level), got {channels} and {dropout}")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels} and {num_classes}")
        self.in_channels, self.num_classes, self.channels = in_channels, num_classes, channels
        self.inc = _ConvBlock(in_channels, channels[0], dropout[0])
        self.down = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _ConvBlock(channels[i], channels[i + 1], dropout[i + 1])) for i in range(4)
        )
        self.up = nn.ModuleList(_Up(channels[4 - i], channels[3 - i], channels[3 - i], upsampling) for i in range(4))
        self.head = nn.Conv2d(channels[0], num_classes, 3, padding=1)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the features returned with ``return_features=True`` (coarse to fine)."""
        return [self.channels[3], self.channels[2], self.channels[1], self.channels[0]]

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(
                f"input H and W must be divisible by 16 (four 2x2 poolings), got {tuple(x.shape[-2:])}; "
                "resize to e.g. 224 or 256"
            )
        skips = [self.inc(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        y, feats = skips[-1], []
        for i, up in enumerate(self.up):
            y = up(y, skips[3 - i])
            feats.append(y)
        logits = self.head(y)
        return (logits, feats) if return_features else logits
