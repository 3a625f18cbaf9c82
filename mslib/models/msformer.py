"""MS-Former: a dual-branch efficient transformer for self-supervised segmentation (MIDL 2023).

Two branches see the image tokenised with patch size 1 (``z_s``, full resolution) and
patch size 2 (``z_l``, half resolution) (MS-Former Sec. 2.2, 3.1). Each branch is 2
efficient transformer blocks (:class:`~mslib.blocks.attention.EfficientTransformerBlock`),
each followed by BatchNorm (Sec. 3.1). The coarse branch is up-sampled to the fine grid,
the two are concatenated and a linear layer maps them to ``K`` cluster scores (Eq. 3):

    z' = [f_s(z_s) || UP(f_l(z_l))],   z = MLP(z')

(Eq. 3 as printed puts ``UP`` on ``f^s``; only the patch-size-2 branch has fewer tokens, so
it is the one that needs up-sampling.) The soft prediction map is ``S = softmax_K(z)``.

Patch embedding (realisation used): ``patch_embed="conv3x3"`` (default) is a 3x3 convolution
with stride equal to the patch size (1 or 2), padding 1, then BatchNorm -- overlapping
windows, as the official code. ``patch_embed="patch"`` is the paper's literal non-overlapping
``p x p`` windows (a ``p x p`` convolution with stride ``p``; odd sizes are padded by
replication). The 3x3 version is the default because with patch size 1 a non-overlapping
window is a per-pixel colour projection with no neighbourhood at all.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from mslib.blocks.attention import EfficientTransformerBlock
from mslib.blocks.intra_scale import IntraScaleTokens, batch_norm_affine

__all__ = ["PatchEmbed", "Branch", "MSFormer", "MSFormerOutput"]


class MSFormerOutput(NamedTuple):
    """What :class:`MSFormer` returns: logits and what the losses need.

    ``logits`` (B, K, H, W): the cluster scores ``z`` (soft map ``S = softmax(logits, 1)``);
    ``contexts_small``/``contexts_large``: one global context ``G`` per block,
    ``(B, heads, d/heads, d/heads)`` (MS-Former Eq. 5-6);
    ``tokens``: list of ``(A1, A2)`` token pairs of Eq. 7, or ``None`` when not requested.
    """

    logits: torch.Tensor
    contexts_small: list
    contexts_large: list
    tokens: list | None


class PatchEmbed(nn.Module):
    """Patch embedding with patch size ``p`` (MS-Former Sec. 3.1): ``(B, C, H, W) -> (B, N, dim), (h, w)``."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, mode: str = "conv3x3"):
        super().__init__()
        if mode not in ("conv3x3", "patch"):
            raise ValueError(
                f"patch_embed must be 'conv3x3' (official, overlapping) or 'patch' (non-overlapping), got {mode!r}"
            )
        if patch_size not in (1, 2):
            raise ValueError(f"patch_size must be 1 or 2 (MS-Former Sec. 3.1), got {patch_size!r}")
        self.p, self.mode = patch_size, mode
        if mode == "conv3x3":
            self.proj = nn.Conv2d(in_channels, dim, 3, stride=patch_size, padding=1)
        else:
            self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        if self.mode == "patch" and self.p > 1:
            ph, pw = (-x.shape[-2]) % self.p, (-x.shape[-1]) % self.p
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        m = self.norm(self.proj(x.contiguous(memory_format=torch.channels_last)))
        return m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]), (m.shape[-2], m.shape[-1])


class Branch(nn.Module):
    """One branch ``f``: ``depth`` efficient transformer blocks, each followed by BatchNorm (Sec. 3.1)."""

    def __init__(self, dim: int, depth: int = 2, heads: int = 1, mlp_ratio: float = 2.0):
        super().__init__()
        self.blocks = nn.ModuleList(EfficientTransformerBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norms = nn.ModuleList(nn.BatchNorm1d(dim) for _ in range(depth))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        contexts = []
        for block, norm in zip(self.blocks, self.norms):
            x, g = block(x, hw)
            scale, offset = batch_norm_affine(norm, x.reshape(-1, x.shape[-1]))  # BN over all tokens
            x = x * scale + offset
            contexts.append(g)
        return x, contexts


class MSFormer(nn.Module):
    """MS-Former (MS-Former Fig. 1, Eq. 3): two efficient-transformer branches and a linear fusion to K clusters.

    ``forward(x)`` takes ``(B, C, H, W)`` images (any H, W >= 2) and returns an
    :class:`MSFormerOutput`. ``with_tokens=True`` (default) also builds the intra-scale tokens
    of Eq. 7 (:class:`~mslib.blocks.intra_scale.IntraScaleTokens`, whose BN, embedding
    and MSA are trained with the model).

    Defaults are those of ``mslib.configs.MSFormerConfig`` (K = 10 clusters, Mix-FFN x2,
    ``out_norm=True``: the score map is ``softmax(BN(z))``); the published setting is
    ``n_clusters=100, mlp_ratio=4.0, out_norm=False`` (``MSFormerConfig.PUBLISHED``). Why the
    defaults differ from the paper: chapter 8 and the Benchmarks page.
    """

    def __init__(
        self,
        in_channels: int = 3,
        n_clusters: int = 10,
        dim: int = 32,
        depth: int = 2,
        heads: int = 1,
        mlp_ratio: float = 2.0,
        patch_embed: str = "conv3x3",
        up: str = "bilinear",
        intra_dim: int = 64,
        intra_grid: int = 8,
        intra_cell: int = 4,
        shift: int = 2,
        shift_mode: str = "hv",
        out_norm: bool = True,
    ):
        super().__init__()
        for name, val in (("in_channels", in_channels), ("n_clusters", n_clusters), ("dim", dim), ("depth", depth)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"MSFormer: {name} must be a positive int, got {val!r}")
        if n_clusters < 2:
            raise ValueError(f"MSFormer: n_clusters must be >= 2, got {n_clusters}")
        if up not in ("bilinear", "nearest"):
            raise ValueError(f"MSFormer: up must be 'bilinear' or 'nearest', got {up!r}")
        self.in_channels, self.n_clusters, self.up = in_channels, n_clusters, up
        self.embed_small = PatchEmbed(in_channels, dim, 1, patch_embed)
        self.embed_large = PatchEmbed(in_channels, dim, 2, patch_embed)
        self.branch_small = Branch(dim, depth, heads, mlp_ratio)
        self.branch_large = Branch(dim, depth, heads, mlp_ratio)
        self.fuse = nn.Linear(2 * dim, n_clusters)  # the "MLP" of Eq. 3 (linear operations)
        self.out_norm = nn.BatchNorm1d(n_clusters) if out_norm else None
        self.intra = IntraScaleTokens(
            n_clusters, intra_dim, intra_grid, intra_cell, heads=1, shift=shift, shift_mode=shift_mode
        )

    def forward(self, x: torch.Tensor, with_tokens: bool = True) -> MSFormerOutput:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MSFormer expects images (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        b, _, h, w = x.shape
        if min(h, w) < 2:
            raise ValueError(f"MSFormer needs H, W >= 2, got {h}x{w}")
        zs, hw_s = self.embed_small(x)
        zl, hw_l = self.embed_large(x)
        zs, gs = self.branch_small(zs, hw_s)
        zl, gl = self.branch_large(zl, hw_l)
        ms = zs.view(b, *hw_s, -1)  # (B, H, W, d)
        ml = zl.view(b, *hw_l, -1).permute(0, 3, 1, 2)  # (B, d, h, w), channels-last
        kw = {"align_corners": False} if self.up == "bilinear" else {}
        ml = F.interpolate(ml, size=hw_s, mode=self.up, **kw).permute(0, 2, 3, 1)
        z = torch.cat([ms, ml], dim=-1)  # (B, H, W, 2d)
        z = self.fuse(z)  # (B, H, W, K)
        if self.out_norm is not None:  # BN(z) of Eq. 7 as the score map
            scale, offset = batch_norm_affine(self.out_norm, z.reshape(-1, z.shape[-1]))
            z = z * scale + offset
        logits = z.permute(0, 3, 1, 2)  # (B, K, H, W), channels-last strides
        tokens = self.intra(logits) if with_tokens else None
        return MSFormerOutput(logits, gs, gl, tokens)
