"""Efficient attention (Shen et al., 2021) and the efficient transformer block of MS-Former.

Softmax attention (MS-Former Eq. 1) forms an ``n x n`` matrix, so time and memory grow
with the square of the number of tokens ``n``. Efficient attention (MS-Former Eq. 2)

    E(Q, K, V) = rho_q(Q) (rho_k(K)^T V)

normalises the keys with a softmax over the *positions* (each key channel becomes a
distribution over the ``n`` tokens) and the queries with a softmax over the *channels*
(each query becomes a distribution over the ``d_k`` key channels). Multiplying right to
left first forms the global context ``G = rho_k(K)^T V`` of shape ``d_k x d_v`` (MS-Former
Sec. 2.3), so the cost is ``O(n d_k d_v)``: linear in ``n``. The module returns ``G`` too,
because the inter-scale consistency loss (MS-Former Eq. 5-6) compares the contexts of the
two branches.

Tokens are ``(B, N, C)`` sequences of an ``H x W`` map (``N = H * W``, row-major), which
is what the Mix-FFN needs to reshape for its depth-wise convolution.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "efficient_attention",
    "softmax_attention",
    "EfficientAttention",
    "MixFFN",
    "EfficientTransformerBlock",
]


def efficient_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Efficient attention, MS-Former Eq. 2, on ``(..., N, d)`` tensors.

    ``rho_k`` is a softmax over positions (dim ``-2`` of ``k``), ``rho_q`` a softmax over
    channels (dim ``-1`` of ``q``). Returns ``(out, G)`` with ``G = rho_k(K)^T V`` of shape
    ``(..., d_k, d_v)`` and ``out = rho_q(Q) G`` of shape ``(..., N, d_v)``.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k need the same channel size, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v need the same number of tokens, got k {tuple(k.shape)} and v {tuple(v.shape)}")
    context = k.softmax(dim=-2).transpose(-2, -1) @ v  # (..., d_k, d_v): global context G
    return q.softmax(dim=-1) @ context, context


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Naive softmax attention, MS-Former Eq. 1: ``softmax(Q K^T / sqrt(d)) V`` (forms the N x N matrix)."""
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return scores.softmax(dim=-1) @ v


class EfficientAttention(nn.Module):
    """Multi-head efficient attention (MS-Former Eq. 2) on ``(B, N, dim)`` tokens.

    Q, K and V are linear projections (a 1x1 convolution on the map); each head of
    ``key_dim // heads`` key and ``value_dim // heads`` value channels attends on its own
    (its own softmax over channels for the queries), and a linear reprojection maps the
    concatenated heads back to ``dim``. ``forward`` returns ``(out, G)`` where ``G`` is the
    per-head global context ``rho_k(K)^T V`` of shape ``(B, heads, key_dim/heads, value_dim/heads)``.
    The residual connection belongs to the block, not to this module.
    """

    def __init__(self, dim: int, heads: int = 1, key_dim: int | None = None, value_dim: int | None = None):
        super().__init__()
        key_dim = dim if key_dim is None else key_dim
        value_dim = dim if value_dim is None else value_dim
        for name, val in (("dim", dim), ("heads", heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"EfficientAttention: {name} must be a positive int, got {val!r}")
        if key_dim % heads or value_dim % heads:
            raise ValueError(
                f"EfficientAttention: key_dim={key_dim} and value_dim={value_dim} must be divisible by heads={heads}"
            )
        self.dim, self.heads, self.key_dim, self.value_dim = dim, heads, key_dim, value_dim
        self.to_q = nn.Linear(dim, key_dim)
        self.to_k = nn.Linear(dim, key_dim)
        self.to_v = nn.Linear(dim, value_dim)
        self.proj = nn.Linear(value_dim, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, h*c) -> (B, h, N, c)
        b, n, hc = x.shape
        return x.view(b, n, self.heads, hc // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"EfficientAttention expects tokens (B, N, {self.dim}), got {tuple(x.shape)}")
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(x)), self._split(self.to_v(x))
        out, context = efficient_attention(q, k, v)  # (B, h, N, dv/h), (B, h, dk/h, dv/h)
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], self.value_dim)
        return self.proj(out), context


class MixFFN(nn.Module):
    """Mix-FFN: ``fc(dim -> hidden) -> depth-wise 3x3 conv on the H x W map -> GELU -> fc(hidden -> dim)``.

    The depth-wise convolution gives the block its positional/local information (Fig. 2(a)
    of MS-Former; Mix-FFN of SegFormer), so no position embedding is needed.
    """

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, n, _ = x.shape
        h, w = hw
        if h * w != n:
            raise ValueError(f"MixFFN: hw={hw} does not match the {n} tokens")
        x = self.fc1(x)
        m = x.view(b, h, w, -1).permute(0, 3, 1, 2)  # channels-last view, no copy
        x = self.dwconv(m).permute(0, 2, 3, 1).reshape(b, n, -1)
        return self.fc2(self.act(x))


class EfficientTransformerBlock(nn.Module):
    """Efficient transformer block (MS-Former Fig. 2(a)), pre-norm with residuals::

        x = x + EfficientAttention(LN(x))
        x = x + MixFFN(LN(x))

    ``forward(x, hw)`` takes ``(B, N, dim)`` tokens of an ``hw = (H, W)`` map and returns
    ``(x, G)`` with ``G`` the attention's global context (for MS-Former Eq. 5-6).
    """

    def __init__(self, dim: int, heads: int = 1, mlp_ratio: float = 4.0):
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"EfficientTransformerBlock: mlp_ratio must be > 0, got {mlp_ratio}")
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, max(1, int(round(dim * mlp_ratio))))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        a, context = self.attn(self.norm1(x))
        x = x + a
        x = x + self.ffn(self.norm2(x), hw)
        return x, context
