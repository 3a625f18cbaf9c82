"""Uncertainty-aware feature re-weighting, UAFR (Liu et al., TMI 2022, Sec. IV, Eq. 13-15).

For a hidden feature Q (B, C, H, W):

* Eq. 13: ``A = softmax(F(Q))`` over M channels, with F = Conv3x3(C -> 16, no bias) -> BN -> ReLU
  -> Conv1x1(16 -> M) (the "3x3 conv followed by an identity conv" of the paper, widths as the
  official head; M = 2 by default, Table IX(b));
* Eq. 14: ``U = -sum_m A^m log2 A^m / log2 M``, the normalised Shannon entropy in [0, 1];
* Eq. 15: ``Q_hat = Q * (1 + (1 - U))``: a certain position (U = 0) is doubled, a maximally
  uncertain one (U = 1) left as it is.

No loss supervises the head (as in the paper and the official code). Parameters: 144 C + 66 for
M = 2 and 16 hidden channels (9·16·C + 2·16 (BN) + 16·2 + 2). With M = 1 the softmax is 1 and
the entropy 0 everywhere (Table IX(b) lists M = 1): U is defined as 0, Q_hat = 2 Q.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UAFR", "normalized_entropy", "uafr_num_parameters"]


def normalized_entropy(logits: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Eq. 14 from logits: ``-sum softmax * log2 softmax / log2 M`` along ``dim`` (finite for any logits)."""
    m = logits.shape[dim]
    if m == 1:
        return torch.zeros_like(logits).sum(dim)
    logp = F.log_softmax(logits, dim=dim)
    return -(logp.exp() * logp).sum(dim) / math.log(m)  # log2 p / log2 M == ln p / ln M


class UAFR(nn.Module):
    """UAFR block (Eq. 13-15): ``UAFR(C)(Q)`` has Q's shape; ``uncertainty(Q)`` returns U (B, H, W).

    Args:
        channels: C of the feature it re-weights.
        num_states: M, output channels of F (2 default; Table IX(b)).
        hidden: width of F's 3x3 conv (16, the official head).
        kernel_size: of F's first conv (3; Table X).
        dropout: Dropout2d after the ReLU (0; the official decoder heads use 0.1).
    """

    def __init__(
        self, channels: int, num_states: int = 2, hidden: int = 16, kernel_size: int = 3, dropout: float = 0.0
    ):
        super().__init__()
        for name, v in (
            ("channels", channels),
            ("num_states", num_states),
            ("hidden", hidden),
            ("kernel_size", kernel_size),
        ):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"UAFR: {name} must be a positive int, got {v!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"UAFR: kernel_size must be odd (same-size output), got {kernel_size}")
        layers: list[nn.Module] = [
            nn.Conv2d(channels, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        layers.append(nn.Conv2d(hidden, num_states, 1))
        self.head = nn.Sequential(*layers)  # F of Eq. 13
        self.channels, self.num_states = channels, num_states

    def uncertainty(self, q: torch.Tensor) -> torch.Tensor:
        """U of Eq. 14, (B, H, W) in [0, 1]."""
        if q.ndim != 4 or q.shape[1] != self.channels:
            raise ValueError(f"UAFR({self.channels}) expects (B, {self.channels}, H, W), got {tuple(q.shape)}")
        return normalized_entropy(self.head(q).float(), dim=1).to(q.dtype)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        u = self.uncertainty(q)
        return q * (2.0 - u)[:, None]  # Eq. 15: Q (1 + (1 - U))


def uafr_num_parameters(channels: int, num_states: int = 2, hidden: int = 16, kernel_size: int = 3) -> int:
    """Closed-form parameter count of :class:`UAFR` (144 C + 66 for the defaults)."""
    return kernel_size**2 * channels * hidden + 2 * hidden + hidden * num_states + num_states
