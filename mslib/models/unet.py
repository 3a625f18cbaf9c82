"""A small configurable UNet: the baseline every multi-scale model is compared with.

Ronneberger, Fischer and Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015 (M2SNet's reference [2], its Fig. 1 (a)). The encoder applies,
at each of ``depth + 1`` levels, two 3x3 convolutions (each followed by a normalisation
and a ReLU) and then a 2x2 max-pooling; the channel width doubles at every level
(``base_channels * 2**level``). The decoder up-samples with a 2x2 transposed convolution
that halves the channels, concatenates the encoder feature of the same level (the skip
connection) and applies two 3x3 convolutions again. A 1x1 convolution maps the last
feature to ``num_classes`` logits.

Differences from the 2015 paper, all common practice today: "same" padding, so the
output has the input's size (the paper used unpadded convolutions and cropped the
skips); a normalisation layer after each convolution (``norm="batch"`` by default; the
2015 net had none); optional dropout.

Input size: H and W must be divisible by ``2**depth`` (every pooling halves them). This
UNet raises a ``ValueError`` otherwise instead of padding silently: padding changes what
the border pixels see, and a user who resizes to a multiple of ``2**depth`` (e.g. 352 for
depth 4 or 5) gets exactly the network they asked for.

Parameter count (``norm`` with an affine scale and shift, i.e. "batch", "instance",
"group"; convolutions before a norm have no bias)::

    block(a, b)  = 9ab + 9b^2 + 4b                 (two convs + two norms)
    encoder      = block(C_in, c_0) + sum_{l=1..D} block(c_{l-1}, c_l)
    up(l)        = 4 c_l c_{l-1} + c_{l-1}          (2x2 transposed conv with bias)
    decoder      = sum_{l=1..D} up(l) + block(2 c_{l-1}, c_{l-1})
    head         = c_0 K + K
    with c_l = base_channels * 2**l, D = depth, K = num_classes.

With ``norm="none"`` every convolution has a bias instead and ``block(a, b) = 9ab + 9b^2 + 2b``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["UNet", "DoubleConv", "unet_num_parameters"]

_NORMS = ("batch", "instance", "group", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "group":
        groups = 8 if channels % 8 == 0 else 1
        return nn.GroupNorm(groups, channels)
    return nn.Identity()


class DoubleConv(nn.Sequential):
    """(3x3 conv -> norm -> ReLU) twice, with optional ``Dropout2d`` between the two convs."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", dropout: float = 0.0):
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers += [
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
        super().__init__(*layers)


class UNet(nn.Module):
    """UNet returning logits of shape (B, num_classes, H, W).

    Args:
        in_channels: image channels (3 for RGB, 1 for grayscale).
        num_classes: output channels; 1 means a binary task (sigmoid), K > 1 a K-class
            task (softmax over classes including the background).
        base_channels: width of the first level; level ``l`` has ``base_channels * 2**l``.
        depth: number of poolings (the network has ``depth + 1`` levels).
        norm: "batch" | "instance" | "group" | "none".
        dropout: a float applied (``Dropout2d``) in every encoder block, or one float per
            encoder level (``depth + 1`` values, e.g. SSL4MIS' ``[0.05, 0.1, 0.2, 0.3, 0.5]``).

    ``decode(x)`` returns the decoder features from coarse to fine (useful for deep
    supervision or feature-level losses); ``forward(x)`` applies the 1x1 head to the finest.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 1,
        base_channels: int = 16,
        depth: int = 4,
        norm: str = "batch",
        dropout: float | Sequence[float] = 0.0,
    ):
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("base_channels", base_channels),
            ("depth", depth),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"UNet: {name} must be a positive int, got {value!r}")
        if norm not in _NORMS:
            raise ValueError(f"UNet: norm must be one of {_NORMS}, got {norm!r}")
        if isinstance(dropout, (int, float)):
            drops = [float(dropout)] * (depth + 1)
        else:
            drops = [float(d) for d in dropout]
            if len(drops) != depth + 1:
                raise ValueError(
                    f"UNet: dropout needs one value per encoder level (depth + 1 = {depth + 1}), got {len(drops)}"
                )
        if any(not 0.0 <= d < 1.0 for d in drops):
            raise ValueError(f"UNet: dropout values must be in [0, 1), got {drops}")
        self.in_channels, self.num_classes, self.depth = in_channels, num_classes, depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.widths = widths
        self.encoder = nn.ModuleList()
        prev = in_channels
        for level, width in enumerate(widths):
            self.encoder.append(DoubleConv(prev, width, norm, drops[level]))
            prev = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in range(depth, 0, -1):
            self.up.append(nn.ConvTranspose2d(widths[level], widths[level - 1], 2, stride=2))
            self.decoder.append(DoubleConv(2 * widths[level - 1], widths[level - 1], norm))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"UNet expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet was built with in_channels={self.in_channels} but the input has "
                f"{x.shape[1]} channels; build it with in_channels={x.shape[1]}"
            )
        m = 2**self.depth
        h, w = x.shape[-2:]
        if h % m or w % m:
            raise ValueError(
                f"UNet(depth={self.depth}) needs H and W divisible by 2**depth = {m}, got {h}x{w}; "
                f"resize the images to e.g. {max(m, round(h / m) * m)}x{max(m, round(w / m) * m)} "
                f"or use a smaller depth"
            )

    def decode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Decoder features, coarse to fine: ``depth`` maps with ``widths[depth-1] .. widths[0]`` channels."""
        self._check_input(x)
        skips = []
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level < self.depth:
                skips.append(x)
                x = self.pool(x)
        features = []
        for up, block in zip(self.up, self.decoder):
            x = block(torch.cat([skips.pop(), up(x)], dim=1))
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decode(x)[-1])


def unet_num_parameters(
    in_channels: int = 3, num_classes: int = 1, base_channels: int = 16, depth: int = 4, norm: str = "batch"
) -> int:
    """Closed-form parameter count of :class:`UNet` (the formula in the module docstring)."""
    c = [base_channels * 2**level for level in range(depth + 1)]
    extra = 2 if norm == "none" else 4

    def block(a: int, b: int) -> int:
        return 9 * a * b + 9 * b * b + extra * b

    enc = block(in_channels, c[0]) + sum(block(c[i - 1], c[i]) for i in range(1, depth + 1))
    dec = sum(4 * c[i] * c[i - 1] + c[i - 1] + block(2 * c[i - 1], c[i - 1]) for i in range(1, depth + 1))
    return enc + dec + c[0] * num_classes + num_classes
