"""Swin-UNet (swin-tiny), the Transformer of CTS and MCSC, on torchvision's Swin Transformer blocks.

Cao et al., "Swin-Unet: Unet-like pure Transformer for medical image segmentation" (ECCV-W
2022), as used by CTS (Luo et al., MIDL 2022) and MCSC (Liu et al., BMVC 2023) through the
SSL4MIS code: a U-shaped network of Swin Transformer blocks (Liu et al., ICCV 2021).

* **Encoder**: 4x4 patch embedding (a stride-4 convolution to 96 channels + LayerNorm), four
  stages of ``depths = (2, 2, 2, 2)`` shifted-window blocks (heads 3-6-12-24, window 7, MLP
  ratio 4, stochastic depth rising linearly to 0.2) with patch merging between them
  (``torchvision.models.swin_transformer.SwinTransformerBlock`` and ``PatchMerging``), then
  LayerNorm: 56 -> 28 -> 14 -> 7 px at a 224 input, 96 -> 768 channels.
* **Decoder** ("patch expanding"): a patch-expanding layer (``Linear(C, 2C)`` then the channels
  rearranged into 2x2 pixels, ``C/2`` each, + LayerNorm) doubles the resolution; at each level
  the encoder feature of the same resolution is concatenated and projected back by a
  ``Linear(2C, C)``, followed by two Swin blocks (the encoder's depths and heads, mirrored);
  a final x4 patch expanding (``Linear(96, 16*96)``) restores the input size, and a 1x1
  convolution without bias gives the logits.
* **Input**: 1-channel images are repeated to 3 channels (as SSL4MIS), so the ImageNet patch
  embedding fits. H and W must be multiples of 32 (224 in the papers).

Parameters with 4 classes: 27,168,420 (SSL4MIS/CTS/MCSC; tested).

With ``return_features=True`` the model returns ``(logits, [f_1/16, f_1/8, f_1/4, f_1])``:
the decoder's outputs at 1/16 (384 channels), 1/8 (192), 1/4 (96) and the x4-expanded full
resolution (96), each as (B, C, H, W), coarse to fine; MCSC contrasts the 1/8 (28 px) and the
full-resolution features.

**ImageNet weights** (``pretrained``): the SSL4MIS Swin-UNet starts from Microsoft's swin-tiny
ImageNet checkpoint, with the encoder weights mirrored into the decoder blocks of the same
width. Here they come through torchvision's weights API (``Swin_T_Weights.IMAGENET1K_V1``,
the same swin-tiny architecture, trained by torchvision): the patch embedding, the first two
blocks of each stage (swin-tiny's third stage has six; Swin-UNet keeps two), the patch merging
layers and the final norm are loaded, and each stage's blocks are copied into the decoder
blocks of its width. ``pretrained`` is ``False``, ``True`` (fails with a message saying how to
get the file when it is neither cached nor downloadable), ``"auto"`` (used when available,
otherwise a warning and random initialisation) or a path to the torchvision ``.pth`` file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock

from .pretrained import Pretrained, WeightSpec, load_weights

__all__ = ["SwinUNet", "PatchExpand", "swin_t_weight_spec"]


def swin_t_weight_spec() -> WeightSpec:
    """torchvision's swin-tiny ImageNet-1k weights (``Swin_T_Weights.IMAGENET1K_V1``)."""
    url = "https://download.pytorch.org/models/swin_t-704ceda3.pth"
    try:
        from torchvision.models import Swin_T_Weights

        url = Swin_T_Weights.IMAGENET1K_V1.url
    except Exception:  # pragma: no cover - very old torchvision
        pass
    name = url.rsplit("/", 1)[-1]
    return WeightSpec(
        "swin_t", url, name, name.rsplit("-", 1)[-1].split(".")[0], "torchvision Swin_T_Weights.IMAGENET1K_V1"
    )


class PatchExpand(nn.Module):
    """Swin-UNet patch expanding: ``Linear(C, scale**2 * C / scale)`` then rearranged into
    ``scale x scale`` pixels (``C / scale`` channels each; ``C`` for the final x4) + LayerNorm.

    Works on channels-last tensors (B, H, W, C) -> (B, scale H, scale W, C_out).
    """

    def __init__(self, dim: int, scale: int = 2):
        super().__init__()
        self.scale = scale
        self.out_dim = dim // 2 if scale == 2 else dim
        self.expand = nn.Linear(dim, scale * scale * self.out_dim, bias=False)
        self.norm = nn.LayerNorm(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        s, c = self.scale, self.out_dim
        x = self.expand(x).view(b, h, w, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, c)
        return self.norm(x)


def _blocks(dim: int, depth: int, heads: int, window: int, drop_path: Sequence[float]) -> nn.Sequential:
    return nn.Sequential(
        *[
            SwinTransformerBlock(
                dim,
                heads,
                window_size=[window, window],
                shift_size=[0 if i % 2 == 0 else window // 2] * 2,
                mlp_ratio=4.0,
                stochastic_depth_prob=float(drop_path[i]),
            )
            for i in range(depth)
        ]
    )


class SwinUNet(nn.Module):
    """Swin-UNet, swin-tiny configuration (CTS/MCSC Transformer); ``forward(x, return_features=False)``.

    Args:
        in_channels: 1 (repeated to 3, as SSL4MIS) or 3.
        num_classes: logit channels (4 for ACDC).
        embed_dim, depths, num_heads, window_size: swin-tiny defaults 96, (2, 2, 2, 2),
            (3, 6, 12, 24), 7.
        drop_path: stochastic depth at the deepest encoder block (linear from 0; 0.2 in SSL4MIS).
        pretrained: ImageNet weights for the encoder (see the module docstring); ``"auto"``
            in the notebooks, ``False`` by default.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        drop_path: float = 0.2,
        pretrained: Pretrained = False,
    ):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (repeated to 3, as SSL4MIS) or 3, got {in_channels}")
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"depths and num_heads need 4 values (one per stage), got {depths} and {num_heads}")
        self.in_channels, self.num_classes, self.embed_dim = in_channels, num_classes, embed_dim
        self.depths, self.window_size = tuple(depths), window_size
        dims = [embed_dim * 2**i for i in range(4)]
        dpr = torch.linspace(0, drop_path, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(4)]
        self.patch_embed = nn.Sequential(nn.Conv2d(3, embed_dim, 4, stride=4), nn.LayerNorm(embed_dim))
        self.layers = nn.ModuleList(
            _blocks(dims[i], depths[i], num_heads[i], window_size, dpr[starts[i] : starts[i] + depths[i]])
            for i in range(4)
        )
        self.merges = nn.ModuleList(PatchMerging(dims[i]) for i in range(3))
        self.norm = nn.LayerNorm(dims[3])
        self.expand0 = PatchExpand(dims[3])  # 1/32 -> 1/16
        self.concat_back = nn.ModuleList(nn.Linear(2 * dims[i], dims[i]) for i in (2, 1, 0))
        self.layers_up = nn.ModuleList(
            _blocks(dims[i], depths[i], num_heads[i], window_size, dpr[starts[i] : starts[i] + depths[i]])
            for i in (2, 1, 0)
        )
        self.expands = nn.ModuleList(PatchExpand(dims[i]) for i in (2, 1))  # 1/16 -> 1/8 -> 1/4
        self.norm_up = nn.LayerNorm(embed_dim)
        self.final_expand = PatchExpand(embed_dim, scale=4)
        self.head = nn.Conv2d(embed_dim, num_classes, 1, bias=False)
        self.apply(self._init)
        self.pretrained_loaded = False
        state = load_weights(swin_t_weight_spec(), pretrained)
        if state is not None:
            self.load_torchvision_swin_t(state)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @property
    def feature_channels(self) -> list[int]:
        """Channels of the features returned with ``return_features=True`` (coarse to fine)."""
        return [self.embed_dim * 4, self.embed_dim * 2, self.embed_dim, self.embed_dim]

    def load_torchvision_swin_t(self, state: dict) -> None:
        """Load a torchvision ``swin_t`` state dict into the encoder and mirror it into the decoder."""
        own = self.state_dict()
        new: dict[str, torch.Tensor] = {}
        stage_key = {1: 0, 3: 1, 5: 2, 7: 3}
        merge_key = {2: 0, 4: 1, 6: 2}
        for k, v in state.items():
            parts = k.split(".")
            if parts[0] == "features" and parts[1] == "0":
                sub = {"0": "0", "2": "1"}.get(parts[2])
                if sub is not None:
                    new[".".join(["patch_embed", sub] + parts[3:])] = v
            elif parts[0] == "features" and int(parts[1]) in stage_key:
                stage, block = stage_key[int(parts[1])], int(parts[2])
                if block < self.depths[stage]:
                    rest = ".".join(parts[2:])
                    new[f"layers.{stage}.{rest}"] = v
                    if stage < 3:  # mirrored into the decoder blocks of the same width
                        new[f"layers_up.{2 - stage}.{rest}"] = v
            elif parts[0] == "features" and int(parts[1]) in merge_key:
                new[".".join(["merges", str(merge_key[int(parts[1])])] + parts[2:])] = v
            elif parts[0] == "norm":
                new[k] = v
        bad = sorted(k for k, v in new.items() if k not in own or own[k].shape != v.shape)
        if bad or not new:
            raise RuntimeError(
                f"the swin_t weights do not fit SwinUNet (keys {bad[:5]}); ImageNet weights only fit "
                "the swin-tiny configuration (embed_dim 96, heads 3-6-12-24, window 7)"
            )
        self.load_state_dict(new, strict=False)
        self.pretrained_loaded = True

    def forward(self, x: torch.Tensor, return_features: bool = False):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"input must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise ValueError(
                f"input H and W must be multiples of 32 (patch 4 and three mergings), got "
                f"{tuple(x.shape[-2:])}; resize to e.g. 224"
            )
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = self.patch_embed[1](self.patch_embed[0](x).permute(0, 2, 3, 1))  # (B, H/4, W/4, 96)
        skips = []
        for i, layer in enumerate(self.layers):
            skips.append(x)
            x = layer(x)
            if i < 3:
                x = self.merges[i](x)
        x = self.expand0(self.norm(x))
        feats = [x]
        for j in range(3):
            x = self.concat_back[j](torch.cat([x, skips[2 - j]], dim=-1))
            x = self.layers_up[j](x)
            if j < 2:
                x = self.expands[j](x)
                feats.append(x)
        x = self.final_expand(self.norm_up(x))
        feats.append(x)
        logits = self.head(x.permute(0, 3, 1, 2))
        if not return_features:
            return logits
        return logits, [f.permute(0, 3, 1, 2).contiguous() for f in feats]
