"""MSNet and M2SNet (M2SNet Sec. III, Fig. 2): Res2Net encoder, MMSM, 4-block top-down decoder.

Pipeline (input ``H x W``):

1. Encoder: Res2Net-50 v1b levels ``E^1..E^5`` (strides 4, 4, 8, 16, 32), each reduced to ``C = 64``
   channels by a 3x3 Conv + BN + ReLU. ``E^1`` (the stem, already 64 channels) is not reduced, as
   in the official code whose parameter count we reproduce; it is reduced when its width differs
   (narrow backbones).
2. MMSM (multi-scale in multi-scale subtraction module, Fig. 2): ``MS_1^i`` = the level-``i`` feature;
   ``MS_n^i = U(MS_{n-1}^{i+1}, MS_{n-1}^i)`` for ``n = 2..5`` and ``i = 1..6-n``: 4 + 3 + 2 + 1 = 10 units
   ``U`` (SU for MSNet, MSU for M2SNet, AU / ASPP / DenseASPP for the ablations).
3. Complementarity-enhanced features (Eq. 3) ``CE^i = Conv(sum_n MS_n^i)``, then the decoder
   ``D^4 = Conv(up(T) + CE^4)``, ``D^i = Conv(up(D^{i+1}) + CE^i)`` for ``i = 3, 2, 1``.
4. Head: 3x3 conv ``C -> num_classes`` on ``D^1`` (1/4 resolution), bilinear upsampling to ``H x W``. One
   logit map, no deep supervision.

Two wirings of step 3:

* ``wiring="official"`` (default): the authors' code, which gives the paper's 27.7 M parameters
  (Table VI; 27,692,329 without the classifier, identical for MSNet and M2SNet). The sums take
  the differential features only (``n >= 2``): ``CE^4 = MS_2^4`` without a conv,
  ``CE^i = Conv(sum_{n=2}^{6-i} MS_n^i)`` for ``i <= 3``, and the decoder's top input ``T`` is ``E^5``
  reduced by a second 3x3 Conv + BN + ReLU. (The notes on the official code mention one more Conv on
  ``MS_4^2`` before the last unit, issue #6 of the official repository; the measured 27,692,329
  parameters and 16.84 / 8.91 GMACs at 352 / 256 px leave room for exactly 17 Conv-BN-ReLU 64->64
  blocks, 10 units + 3 CE + 4 decoder, which is what we build; both numbers match exactly.)
* ``wiring="eq3"``: Eq. 3 literally: ``CE^i = Conv(sum_{n=1}^{6-i} MS_n^i)`` for ``i = 1..5`` (the
  level-specific feature ``MS_1^i`` included) and ``T = CE^5``. 26,586,601 parameters. This is the
  wiring of the Table VII ablation, whose FPN baseline is ``orders=(1,)``.

``orders`` selects which ``n`` enter the sums (Table VII adds ``SU_2`` ... ``SU_5`` cumulatively);
units are built only up to ``max(orders)``.

``model(x)`` returns logits ``(B, num_classes, H, W)``; ``model(x, return_features=True)`` returns
``(logits, features)`` with ``features["encoder"]`` (list of ``E^i``), ``features["ms"]`` (dict
``(n, i) -> MS_n^i``), ``features["ce"]`` (dict ``i -> CE^i``), ``features["top"]`` and
``features["decoder"]`` (dict ``i -> D^i``): what Fig. 8 visualises.

The training recipe (loss, parameter groups, transforms, metrics) is :mod:`mslib.recipes.m2snet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mslib.blocks.subtraction import UNITS, ConvBNReLU, make_unit, upsample_to
from mslib.models.pretrained import Pretrained
from mslib.models.res2net import res2net50_v1b_26w_4s

__all__ = ["M2SNet", "MSNet", "WIRINGS"]

WIRINGS = ("official", "eq3")
LEVELS = 5


class M2SNet(nn.Module):
    """M2SNet (``unit="msu"``) and its variants; see the module docstring.

    Args:
        unit: ``"msu"`` (M2SNet), ``"su"`` (MSNet), ``"au"`` (Table VII), ``"msu_aspp"``,
            ``"msu_denseaspp"`` (Table VIII).
        orders: the ``n`` of ``MS_n^i`` summed into ``CE^i``; default all available for the wiring.
        wiring: ``"official"`` or ``"eq3"``.
        channels: ``C``, the reduced width (64).
        pretrained: ImageNet Res2Net weights: True / False / "auto" / a path (mslib.models.pretrained).
        backbone_width, backbone_layers: narrow/shallow Res2Net for the quick profile.
        in_channels, num_classes: image channels and output maps.
        unit_kwargs: options of the unit, e.g. ``{"mode": "depthwise"}`` for the MSU.
    """

    def __init__(
        self,
        unit: str = "msu",
        orders: Sequence[int] | None = None,
        wiring: str = "official",
        channels: int = 64,
        pretrained: Pretrained = False,
        backbone_width: float = 1.0,
        backbone_layers: Sequence[int] = (3, 4, 6, 3),
        in_channels: int = 3,
        num_classes: int = 1,
        unit_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__()
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {', '.join(map(repr, UNITS))}, got {unit!r}")
        if wiring not in WIRINGS:
            raise ValueError(f"wiring must be one of {WIRINGS}, got {wiring!r}")
        lowest = 2 if wiring == "official" else 1
        if orders is None:
            orders = tuple(range(lowest, LEVELS + 1))
        orders = tuple(sorted(set(int(n) for n in orders)))
        if not orders or orders[0] < lowest or orders[-1] > LEVELS or lowest not in orders:
            raise ValueError(
                f"orders={orders} is invalid for wiring={wiring!r}: use a subset of {tuple(range(lowest, LEVELS + 1))} "
                f"that contains {lowest}"
                + (" (the FPN baseline orders=(1,) needs wiring='eq3')" if wiring == "official" else "")
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.unit_name, self.orders, self.wiring, self.channels = unit, orders, wiring, channels

        self.backbone = res2net50_v1b_26w_4s(pretrained, backbone_width, backbone_layers, in_channels)
        enc = self.backbone.channels
        self.reduce = nn.ModuleList(
            nn.Identity() if (i == 0 and enc[0] == channels) else ConvBNReLU(enc[i], channels) for i in range(LEVELS)
        )
        if wiring == "official":
            self.top = ConvBNReLU(enc[4], channels)
        kw = dict(unit_kwargs or {})
        self.units = nn.ModuleDict()
        for n in range(2, orders[-1] + 1):
            for i in range(1, LEVELS + 2 - n):
                self.units[f"n{n}_i{i}"] = make_unit(unit, channels, **kw)
        ce_levels = range(1, 4) if wiring == "official" else range(1, LEVELS + 1)
        self.ce = nn.ModuleDict({f"ce{i}": ConvBNReLU(channels, channels) for i in ce_levels})
        self.decoder = nn.ModuleDict({f"d{i}": ConvBNReLU(channels, channels) for i in range(1, 5)})
        self.head = nn.Conv2d(channels, num_classes, 3, padding=1)

    def _ce_terms(self, i: int) -> list[int]:
        lowest = 2 if self.wiring == "official" else 1
        return [n for n in self.orders if lowest <= n <= LEVELS + 1 - i]

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} expects images (B, C, H, W), got {tuple(x.shape)}")
        enc = self.backbone(x)
        ms: dict[tuple[int, int], torch.Tensor] = {(1, i): self.reduce[i - 1](enc[i - 1]) for i in range(1, LEVELS + 1)}
        for n in range(2, self.orders[-1] + 1):
            for i in range(1, LEVELS + 2 - n):  # Fig. 2: deeper MS_{n-1}^{i+1} against shallower MS_{n-1}^i
                ms[(n, i)] = self.units[f"n{n}_i{i}"](ms[(n - 1, i + 1)], ms[(n - 1, i)])
        ce: dict[int, torch.Tensor] = {}
        last = 4 if self.wiring == "official" else LEVELS
        for i in range(1, last + 1):
            s = sum(ms[(n, i)] for n in self._ce_terms(i))  # Eq. 3
            key = f"ce{i}"
            ce[i] = self.ce[key](s) if key in self.ce else s
        top = self.top(enc[4]) if self.wiring == "official" else ce[LEVELS]
        d = top
        dec: dict[int, torch.Tensor] = {}
        for i in range(4, 0, -1):
            d = self.decoder[f"d{i}"](upsample_to(d, ce[i]) + ce[i])
            dec[i] = d
        logits = F.interpolate(self.head(d), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if return_features:
            return logits, {"encoder": enc, "ms": ms, "ce": ce, "top": top, "decoder": dec}
        return logits


class MSNet(M2SNet):
    """MSNet (MICCAI 2021): :class:`M2SNet` with single-scale subtraction units (``unit="su"``)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("unit", "su")
        super().__init__(**kwargs)
