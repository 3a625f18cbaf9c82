"""LossNet (M2SNet Sec. III-B, Eq. 5-6) and the total loss of M2SNet (Eq. 4).

LossNet is a frozen ImageNet VGG-16 used as a feature extractor on masks. The prediction
``P = sigmoid(logits)`` and the ground truth ``G`` are each repeated to 3 channels, ImageNet-
normalised, and passed through the first four VGG-16 blocks, cut after relu1_2, relu2_2,
relu3_3 and relu4_3 (indices 3, 8, 15, 22 of ``torchvision.models.vgg16().features``). Then

    L_f = l_f^1 + l_f^2 + l_f^3 + l_f^4                 (Eq. 5)
    l_f^i = || F_P^i - F_G^i ||_2                      (Eq. 6)

where, as in the official code, the L2 distance is the mean squared error over the feature map
(a plain norm would grow with the image size). Gradients reach the prediction through the frozen
network; the VGG weights never change (``requires_grad=False``, always in eval mode).

ImageNet weights come through :mod:`mslib.weights` (torchvision's VGG-16 URL, torch hub
cache). With ``pretrained="auto"`` and no weights available (offline), LossNet runs with random
VGG weights and warns: it still compares multi-scale filtered versions of the masks, but not the
ImageNet features the paper uses.

:class:`M2SNetLoss` is Eq. 4: ``L_total = L_IoU^w + L_BCE^w + lambda * L_f``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mslib.losses.structure import as_target_map, structure_loss
from mslib.weights import IMAGENET_MEAN, IMAGENET_STD, Pretrained, load_state_dict_into, load_weights

__all__ = ["VGG_CUTS", "VGG_LAYER_NAMES", "LossNet", "M2SNetLoss"]

VGG_CUTS = (3, 8, 15, 22)  # inclusive end indices in vgg16().features: relu1_2, relu2_2, relu3_3, relu4_3
VGG_LAYER_NAMES = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def _vgg16_features(upto: int) -> nn.Sequential:
    """The first ``upto`` layers of torchvision's VGG-16 ``features`` (without the 120 M-parameter classifier)."""
    try:
        from torchvision.models.vgg import cfgs, make_layers

        feats = make_layers(cfgs["D"], batch_norm=False)
    except ImportError:  # pragma: no cover - torchvision moved its helpers
        from torchvision.models import vgg16

        feats = vgg16(weights=None).features
    return nn.Sequential(*list(feats.children())[:upto])


class LossNet(nn.Module):
    """Frozen VGG-16 feature loss of M2SNet Eq. 5-6; call as ``lossnet(logits, target)``.

    Args:
        pretrained: ImageNet VGG-16 weights: True / False / "auto" (default) / path to ``vgg16-397923af.pth``.
        from_logits: apply a sigmoid to the prediction (True) or take probabilities (False).
        resize: resize both maps to ``resize x resize`` first (official code: 224; default: keep the size).
        cuts: inclusive end indices of the blocks (default relu1_2, relu2_2, relu3_3, relu4_3).
        level_weights: weights of ``l_f^i`` (default all 1, Eq. 5).
    """

    def __init__(
        self,
        pretrained: Pretrained = "auto",
        from_logits: bool = True,
        resize: int | None = None,
        cuts: Sequence[int] = VGG_CUTS,
        level_weights: Sequence[float] | None = None,
    ):
        super().__init__()
        cuts = tuple(int(c) for c in cuts)
        if not cuts or list(cuts) != sorted(set(cuts)) or cuts[0] < 0:
            raise ValueError(f"cuts must be increasing layer indices, got {cuts}")
        feats = _vgg16_features(cuts[-1] + 1)
        if len(feats) <= cuts[-1]:
            raise ValueError(f"cuts {cuts} go beyond VGG-16's {len(feats)} feature layers")
        self.pretrained_loaded = False
        state = load_weights("vgg16", pretrained)
        if state is not None:
            state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
            state = {k: v for k, v in state.items() if int(k.split(".")[0]) < len(feats)}
            load_state_dict_into(feats, state, source="VGG-16 weights")
            self.pretrained_loaded = True
        starts = (0,) + tuple(c + 1 for c in cuts[:-1])
        self.blocks = nn.ModuleList(nn.Sequential(*list(feats.children())[s : e + 1]) for s, e in zip(starts, cuts))
        self.cuts = cuts
        self.from_logits, self.resize = bool(from_logits), resize
        w = [1.0] * len(cuts) if level_weights is None else [float(v) for v in level_weights]
        if len(w) != len(cuts):
            raise ValueError(f"level_weights needs {len(cuts)} values, got {len(w)}")
        self.level_weights = tuple(w)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> LossNet:  # the loss network is frozen: always eval mode
        return super().train(False)

    def features(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """VGG features ``F^1..F^4`` of probability maps (B, 1, H, W) in [0, 1]."""
        if maps.ndim != 4 or maps.shape[1] != 1:
            raise ValueError(f"LossNet.features expects (B, 1, H, W) maps, got {tuple(maps.shape)}")
        x = maps.to(self.mean.dtype) if not maps.is_floating_point() else maps
        if self.resize is not None:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        x = (x.expand(-1, 3, -1, -1) - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out

    def levels(self, prediction: torch.Tensor, target: torch.Tensor) -> list[torch.Tensor]:
        """The per-level losses ``l_f^i`` (Eq. 6) as scalars."""
        t = as_target_map(target, prediction)
        p = torch.sigmoid(prediction) if self.from_logits else prediction
        with torch.no_grad():
            fg = self.features(t)
        return [F.mse_loss(a, b) for a, b in zip(self.features(p), fg)]

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``L_f`` (Eq. 5) for logits (or probabilities) (B, 1, H, W) against a mask (B, H, W) / (B, 1, H, W)."""
        return sum(w * lf for w, lf in zip(self.level_weights, self.levels(prediction, target)))


class M2SNetLoss(nn.Module):
    """M2SNet Eq. 4: ``L_BCE^w + L_IoU^w + lambda * L_f``; call as ``loss(logits, target)``.

    Args:
        lossnet_weight: ``lambda`` (paper Eq. 4: 1; official code: 0.1). 0 disables LossNet
            (then no VGG is built).
        lossnet_pretrained: VGG-16 weights for LossNet (True / False / "auto" / path).
        legacy_bce: the official unweighted BCE (:func:`mslib.losses.structure.structure_loss`).
        lossnet_resize: see :class:`LossNet` (official: 224).
    """

    def __init__(
        self,
        lossnet_weight: float = 1.0,
        lossnet_pretrained: Pretrained = "auto",
        legacy_bce: bool = False,
        lossnet_resize: int | None = None,
    ):
        super().__init__()
        if lossnet_weight < 0:
            raise ValueError(f"lossnet_weight must be >= 0, got {lossnet_weight}")
        self.lossnet_weight, self.legacy_bce = float(lossnet_weight), bool(legacy_bce)
        self.lossnet = LossNet(lossnet_pretrained, resize=lossnet_resize) if lossnet_weight > 0 else None

    def components(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"structure": L_BCE^w + L_IoU^w, "lossnet": L_f}`` (``lossnet`` only when enabled)."""
        out = {"structure": structure_loss(logits, target, legacy=self.legacy_bce)}
        if self.lossnet is not None:
            self.lossnet.to(logits.device)
            out["lossnet"] = self.lossnet(logits.float(), target)
        return out

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return parts["structure"] + self.lossnet_weight * parts["lossnet"] if "lossnet" in parts else parts["structure"]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.total(self.components(logits, target))
