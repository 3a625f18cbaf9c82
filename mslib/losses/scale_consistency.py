"""MS-Former losses: cross-entropy on the argmax pseudo-label, inter- and intra-scale consistency.

* :func:`pseudo_label_ce` -- MS-Former Eq. 4, cross-entropy between the soft prediction map
  ``S`` and its own argmax ``Y`` (Kim-Kanezaki style self-training).
* :func:`inter_scale_loss` -- MS-Former Eq. 5-6, ``1 - cos(G^s, G^l)`` between the global
  contexts of the small- and large-patch branches, over whole ``d x d`` matrices (paper).
  ``mode="rowwise", blocks="last"`` is the official code (mean of row cosines of the last
  block only).
* :class:`IntraScaleTokens`, :func:`shifted_pairs`, :func:`correlation_matrix`,
  :func:`intra_scale_loss` -- MS-Former Eq. 7-9: tokens ``A = MSA(BN(z))`` of the output map
  and of its shifted copy, their correlation matrix ``rho(A1, A2)`` and its L1 distance to
  the identity.
* :func:`joint_loss` -- MS-Former Eq. 10, ``l1 L_ce + l2 L_inter + l3 L_intra``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DEFAULT_LAMBDAS",
    "pseudo_label_ce",
    "inter_scale_loss",
    "shifted_pairs",
    "batch_norm_affine",
    "integral_image",
    "adaptive_bins",
    "box_means",
    "IntraScaleTokens",
    "correlation_matrix",
    "intra_scale_loss",
    "joint_loss",
]

#: (lambda1, lambda2, lambda3) of MS-Former Eq. 10. The paper gives (1, 2, 1.2) as the result of
#: its grid search (Appendix A) and (1, 5, 1.2) at the end of Appendix A; the official notebook
#: uses (1, 2.0, 1.2) in its demo and (1, 1.5, 1.3) in its evaluation cell. Default: (1, 2, 1.2).
DEFAULT_LAMBDAS = (1.0, 2.0, 1.2)


def pseudo_label_ce(logits: torch.Tensor) -> torch.Tensor:
    """MS-Former Eq. 4: cross-entropy of ``softmax(logits)`` against its own argmax.

    ``logits`` is ``(B, K, H, W)``; the target ``Y = argmax_k S`` is detached (a label, not a
    function of the weights), the mean runs over the ``H x W`` pixels (and the batch).
    """
    if logits.dim() != 4:
        raise ValueError(f"pseudo_label_ce expects logits (B, K, H, W), got {tuple(logits.shape)}")
    target = logits.detach().argmax(dim=1)
    return F.cross_entropy(logits, target)


def _as_list(contexts) -> list[torch.Tensor]:
    if isinstance(contexts, torch.Tensor):
        return [contexts]
    contexts = list(contexts)
    if not contexts:
        raise ValueError("inter_scale_loss: empty list of contexts")
    return contexts


def inter_scale_loss(
    contexts_small: torch.Tensor | Sequence[torch.Tensor],
    contexts_large: torch.Tensor | Sequence[torch.Tensor],
    mode: str = "matrix",
    blocks: str = "all",
    eps: float = 1e-8,
) -> torch.Tensor:
    """Inter-scale consistency, MS-Former Eq. 5-6: ``L_inter = 1 - cos(G^s, G^l)``.

    Each argument is one context ``(..., d_k, d_v)`` or a list with one per block (block ``b``
    of the small branch is paired with block ``b`` of the large branch).

    * ``mode="matrix"`` (paper, Eq. 5): the cosine of the two whole matrices, i.e. the
      Frobenius inner product over the product of Frobenius norms (one cosine per head and
      image; Eq. 5 writes ``G^l_ji`` in its middle line, a transposition typo of the first
      line's inner product).
    * ``mode="rowwise"`` (official code, ``CosineEmbeddingLoss`` with target 1): the mean over
      rows of ``1 - cos(row^s, row^l)``.
    * ``blocks="all"`` averages over the block pairs; ``blocks="last"`` (official) uses the
      last block of each branch only.

    The result is the mean over blocks, heads and images: 0 for identical contexts, 1 for
    orthogonal ones, 2 for opposite ones.
    """
    if mode not in ("matrix", "rowwise"):
        raise ValueError(f"inter_scale_loss: mode must be 'matrix' (paper) or 'rowwise' (official), got {mode!r}")
    if blocks not in ("all", "last"):
        raise ValueError(f"inter_scale_loss: blocks must be 'all' or 'last', got {blocks!r}")
    gs, gl = _as_list(contexts_small), _as_list(contexts_large)
    if len(gs) != len(gl):
        raise ValueError(f"inter_scale_loss: {len(gs)} small-branch contexts but {len(gl)} large-branch ones")
    if blocks == "last":
        gs, gl = gs[-1:], gl[-1:]
    losses = []
    for a, b in zip(gs, gl):
        if a.shape != b.shape:
            raise ValueError(f"inter_scale_loss: context shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
        if mode == "matrix":
            cos = F.cosine_similarity(a.flatten(-2), b.flatten(-2), dim=-1, eps=eps)
        else:
            cos = F.cosine_similarity(a, b, dim=-1, eps=eps)
        losses.append((1 - cos).mean())
    return torch.stack(losses).mean()


def shifted_pairs(z: torch.Tensor, shift: int = 2, mode: str = "hv") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pairs ``(A1 map, A2 map)`` of MS-Former Eq. 7: a map and its shifted copy, on the overlap.

    For a ``(B, C, H, W)`` map and ``s = shift`` pixels:

    * ``mode="hv"`` (paper: "shifted horizontally and vertically", shift 2, Appendix A): two
      pairs, ``(z[..., :, :W-s], z[..., :, s:])`` (horizontal) and ``(z[..., :H-s, :], z[..., s:, :])``
      (vertical), so that ``A2[..., i, j]`` is ``z[..., i, j+s]`` resp. ``z[..., i+s, j]``.
    * ``mode="diagonal"`` (official code, with ``shift=1``): one pair ``(z[..., :H-s, :W-s], z[..., s:, s:])``.
    """
    if not isinstance(shift, int) or shift < 1:
        raise ValueError(f"shift must be a positive int (pixels), got {shift!r}")
    h, w = z.shape[-2:]
    if shift >= min(h, w):
        raise ValueError(f"shift={shift} is too large for a {h}x{w} map")
    s = shift
    if mode == "hv":
        return [(z[..., :, : w - s], z[..., :, s:]), (z[..., : h - s, :], z[..., s:, :])]
    if mode == "diagonal":
        return [(z[..., : h - s, : w - s], z[..., s:, s:])]
    raise ValueError(f"shift mode must be 'hv' (paper) or 'diagonal' (official), got {mode!r}")


def batch_norm_affine(bn: nn.modules.batchnorm._BatchNorm, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(scale, offset)`` with ``BN(x) = x * scale + offset`` for ``(N, C)`` rows ``flat``.

    Batch statistics (biased variance) in training, updating ``bn``'s running statistics exactly
    as :class:`torch.nn.BatchNorm1d` does; running statistics in eval. Written with plain tensor
    ops because on CPU the autograd of these few passes over ``(N, C)`` is several times faster
    than ``native_batch_norm_backward`` on token-major inputs (65k tokens: 135 ms per call).
    """
    if bn.training:
        mean = flat.mean(dim=0)                                     # (torch.var_mean over dim 0 is slow on CPU)
        var = ((flat * flat).mean(dim=0) - mean * mean).clamp_min(0)   # biased, as BatchNorm normalises
        with torch.no_grad():
            n = flat.shape[0]
            bn.num_batches_tracked += 1
            bn.running_mean.lerp_(mean.detach(), bn.momentum)
            bn.running_var.lerp_(var.detach() * n / max(n - 1, 1), bn.momentum)
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = bn.weight * torch.rsqrt(var + bn.eps)
    return scale, bn.bias - mean * scale


def integral_image(zl: torch.Tensor, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> torch.Tensor:
    """Summed-area table of a channels-last ``(B, H, W, K)`` map.

    Without ``rows``/``cols``: the full ``(B, H+1, W+1, K)`` table with
    ``S[:, i, j] = z[:, :i, :j].sum((1, 2))`` (a zero first row and column).

    With sorted, distinct row indices ``rows`` (values in ``0..H``) and column indices ``cols``
    (in ``0..W``): only the entries ``S[:, rows[a], cols[b]]``, as a ``(B, len(rows), len(cols), K)``
    table. Each pixel row is added once into the gap between two consecutive requested rows
    (``index_add``), the gaps are summed cumulatively, and the same is done for columns. So
    the full-resolution work is one scatter-add per axis (its gradient one gather), instead
    of two full-size cumulative sums whose gradients flip and re-sum the whole map.
    """
    if rows is None and cols is None:
        return F.pad(zl, (0, 0, 1, 0, 1, 0)).cumsum(1).cumsum(2)
    h, w = zl.shape[1], zl.shape[2]
    rows = torch.arange(h + 1, device=zl.device) if rows is None else rows
    cols = torch.arange(w + 1, device=zl.device) if cols is None else cols
    return _sparse_prefix(_sparse_prefix(zl, rows, 1), cols, 2)


def _sparse_prefix(z: torch.Tensor, edges: torch.Tensor, dim: int) -> torch.Tensor:
    """``P[a] = z.narrow(dim, 0, edges[a]).sum(dim)`` for sorted distinct ``edges`` (a dim of size ``len(edges)``)."""
    n, e = z.shape[dim], edges.numel()
    if e and (bool((edges[1:] <= edges[:-1]).any()) or int(edges[0]) < 0 or int(edges[-1]) > n):
        raise ValueError(f"integral_image: indices must be sorted, distinct and in 0..{n}, got {edges.tolist()}")
    # pixel i belongs to the gap just before the first edge > i: index = number of edges <= i
    gap = torch.searchsorted(edges, torch.arange(n, device=z.device), right=True)
    shape = list(z.shape)
    shape[dim] = e + 1
    sums = z.new_zeros(shape).index_add(dim, gap, z)                  # (..., e + 1, ...): gap sums, last one unused
    return sums.narrow(dim, 0, e).cumsum(dim)


def adaptive_bins(start: int, stop: int, out: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges ``(a, b)`` of ``adaptive_avg_pool`` over ``x[start:stop]`` with ``out`` bins:
    bin ``i`` covers ``[start + floor(i n / out), start + ceil((i+1) n / out))``, ``n = stop - start``."""
    n = stop - start
    if n < 1 or out < 1:
        raise ValueError(f"adaptive_bins: need stop > start and out >= 1, got start={start}, stop={stop}, out={out}")
    i = torch.arange(out, device=device)
    return start + (i * n) // out, start - ((-(i + 1) * n) // out)


def box_means(s: torch.Tensor, window: tuple[int, int, int, int], out: int, rows: torch.Tensor | None = None,
              cols: torch.Tensor | None = None) -> torch.Tensor:
    """``adaptive_avg_pool2d(z[..., r0:r1, c0:c1], out)`` read from the summed-area table ``s`` of ``z``.

    ``s`` is :func:`integral_image` of a channels-last ``(B, H, W, K)`` map (the full table,
    or the entries at ``rows`` x ``cols`` when those are given: they must then contain every
    bin edge of the window); returns the channels-last ``(B, out, out, K)`` bin means. Four
    gathers of ``out`` rows/columns per window, so several shifted crops of the same map cost
    one table.
    """
    r0, r1, c0, c1 = window
    ra, rb = adaptive_bins(r0, r1, out, s.device)
    ca, cb = adaptive_bins(c0, c1, out, s.device)
    area = ((rb - ra)[:, None] * (cb - ca)[None, :]).to(s.dtype)
    if rows is not None:
        ra, rb = _position(rows, ra), _position(rows, rb)
    if cols is not None:
        ca, cb = _position(cols, ca), _position(cols, cb)
    r = s.index_select(1, rb) - s.index_select(1, ra)                    # (B, out, W', K)
    box = r.index_select(2, cb) - r.index_select(2, ca)                  # (B, out, out, K)
    return box / area[None, :, :, None]


def _position(edges: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    pos = torch.searchsorted(edges, values)
    if bool((pos >= edges.numel()).any()) or not torch.equal(edges[pos.clamp_max(edges.numel() - 1)], values):
        raise ValueError("box_means: the table's rows/cols do not contain every bin edge of the window")
    return pos


class IntraScaleTokens(nn.Module):
    """Tokens of MS-Former Eq. 7, ``A = MSA(BN(z))``, at a cost independent of the image size.

    Token design (why): the official code cuts the 256 x 256 map into 32 x 32 patches and
    flattens each to a 102,400-d vector before a shared linear layer, so the projection
    alone has ``32*32*K*d`` = 10.2 M parameters and grows with the square of the image size.
    Here the BN'd map is area-averaged onto a fixed ``grid*cell x grid*cell`` lattice
    (adaptive average pooling, no parameters); each of the ``grid x grid`` tokens is a patch
    of ``cell x cell`` averaged pixels (so it keeps the layout inside the patch, which the
    shift needs to mean anything), flattened to ``cell*cell*K`` values and projected to
    ``dim`` by a shared linear layer, followed by multi-head self-attention. The number of
    tokens (``grid**2``, 64 by default as in the official code) and of parameters
    (``cell**2*K*dim + 4*dim**2``) do not depend on H and W; the work at full resolution is
    one per-channel mean/variance (BN) and one summed-area table shared by all crops.
    The shift is applied at full resolution, before pooling (:func:`shifted_pairs` semantics).

    BN and pooling commute (BN is a per-channel affine map with statistics of the full map),
    so the BN affine is applied to the pooled lattice.

    ``forward(z)`` returns a list of ``(A1, A2)`` token pairs, one per shifted pair of
    :func:`shifted_pairs`, each ``(B, grid**2, dim)``.
    """

    def __init__(self, channels: int, dim: int = 64, grid: int = 8, cell: int = 4, heads: int = 1,
                 shift: int = 2, shift_mode: str = "hv"):
        super().__init__()
        for name, val in (("channels", channels), ("dim", dim), ("grid", grid), ("cell", cell), ("heads", heads)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"IntraScaleTokens: {name} must be a positive int, got {val!r}")
        if dim % heads:
            raise ValueError(f"IntraScaleTokens: dim={dim} must be divisible by heads={heads}")
        shifted_pairs(torch.zeros(1, 1, shift + 1, shift + 1), shift, shift_mode)  # validates shift and mode
        self.grid, self.cell, self.shift, self.shift_mode = grid, cell, shift, shift_mode
        self.bn = nn.BatchNorm2d(channels)
        self.embed = nn.Linear(cell * cell * channels, dim)
        self.msa = nn.MultiheadAttention(dim, heads, batch_first=True)

    def _windows(self, h: int, w: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
        """Row/column ranges ``(r0, r1, c0, c1)`` of each pair of :func:`shifted_pairs`."""
        s = self.shift
        if self.shift_mode == "hv":
            return [((0, h, 0, w - s), (0, h, s, w)), ((0, h - s, 0, w), (s, h, 0, w))]
        return [((0, h - s, 0, w - s), (s, h, s, w))]

    def normalize(self, zl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel scale and offset of ``BN(z)`` for a channels-last ``(B, H, W, K)`` map
        (batch statistics in training, running ones in eval; :func:`batch_norm_affine`)."""
        return batch_norm_affine(self.bn, zl.reshape(-1, zl.shape[-1]))

    def pooled(self, zl: torch.Tensor, windows) -> list[torch.Tensor]:
        """Area averages of ``z[..., r0:r1, c0:c1]`` on the ``grid*cell`` lattice for each window,
        from a channels-last ``(B, H, W, K)`` map; returns ``(B, L, L, K)`` per window.

        Equal to ``adaptive_avg_pool2d`` of each crop (tested), read from one summed-area table
        (:func:`box_means`) kept only at the rows and columns that are bin edges of some window
        (:func:`integral_image` with ``rows``/``cols``): at 257 px, four crops through
        ``adaptive_avg_pool2d`` copy and pool 26 MB each way and cost about 5x more. The map is
        centred on its (detached) per-channel mean first, ``mean(z) = mean(z - c) + c``, which
        keeps the float32 running sums small and leaves values and gradients unchanged.
        """
        c = zl.detach().mean(dim=(0, 1, 2))
        L = self.grid * self.cell
        bins = [(adaptive_bins(r0, r1, L), adaptive_bins(c0, c1, L)) for r0, r1, c0, c1 in windows]
        rows = torch.cat([torch.cat(rb) for rb, _ in bins]).unique().to(zl.device)   # sorted
        cols = torch.cat([torch.cat(cb) for _, cb in bins]).unique().to(zl.device)
        s = integral_image(zl - c, rows, cols)
        return [box_means(s, w, L, rows, cols) + c for w in windows]

    def tokens(self, p: torch.Tensor) -> torch.Tensor:
        """``(B, L, L, K)`` pooled lattice -> ``(B, grid**2, dim)`` tokens ``MSA(embed(patches))``."""
        g, c = self.grid, self.cell
        b, k = p.shape[0], p.shape[-1]
        p = p.reshape(b, g, c, g, c, k).permute(0, 1, 3, 2, 4, 5).reshape(b, g * g, c * c * k)
        t = self.embed(p)
        return self.msa(t, t, t, need_weights=False)[0]

    def forward(self, z: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if z.dim() != 4:
            raise ValueError(f"IntraScaleTokens expects a map (B, K, H, W), got {tuple(z.shape)}")
        h, w = z.shape[-2:]
        if min(h, w) <= self.shift:
            raise ValueError(f"IntraScaleTokens: shift={self.shift} is too large for a {h}x{w} map")
        zl = z.permute(0, 2, 3, 1)                                  # (B, H, W, K); a view for channels-last z
        scale, offset = self.normalize(zl)
        aff = lambda p: p * scale + offset  # noqa: E731  BN affine on the pooled values
        pairs = self._windows(h, w)
        p = self.pooled(zl, [win for pair in pairs for win in pair])
        return [(self.tokens(aff(p[2 * i])), self.tokens(aff(p[2 * i + 1]))) for i in range(len(pairs))]


def correlation_matrix(a1: torch.Tensor, a2: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """MS-Former Eq. 8: Pearson correlation ``rho_ij`` between token ``i`` of ``A1`` and token ``j`` of ``A2``.

    ``a1``, ``a2`` are ``(..., n, d)``; the expectation runs over the ``d`` features. Returns
    ``(..., n, n)`` with entries in [-1, 1].
    """
    if a1.shape != a2.shape:
        raise ValueError(f"correlation_matrix: A1 {tuple(a1.shape)} and A2 {tuple(a2.shape)} must have the same shape")
    c1 = a1 - a1.mean(dim=-1, keepdim=True)
    c2 = a2 - a2.mean(dim=-1, keepdim=True)
    c1 = c1 / (c1.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()
    c2 = c2 / (c2.pow(2).mean(dim=-1, keepdim=True) + eps).sqrt()
    return c1 @ c2.transpose(-2, -1) / a1.shape[-1]


def intra_scale_loss(rho: torch.Tensor | Sequence[torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """MS-Former Eq. 9: L1 distance between the correlation matrix ``rho`` (``(..., n, n)``) and ``I``.

    ``reduction="sum"`` is Eq. 9 as written (a sum over the ``n x n`` entries, averaged over
    images); ``"mean"`` (default, as the official code) divides by ``n**2`` so that the
    weight lambda3 does not depend on the number of tokens. A list of matrices (one per
    shifted pair) gives the mean of their losses.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"intra_scale_loss: reduction must be 'mean' or 'sum', got {reduction!r}")
    mats = [rho] if isinstance(rho, torch.Tensor) else list(rho)
    losses = []
    for r in mats:
        n = r.shape[-1]
        if r.shape[-2] != n:
            raise ValueError(f"intra_scale_loss: rho must be square, got {tuple(r.shape)}")
        d = (r - torch.eye(n, dtype=r.dtype, device=r.device)).abs()
        d = d.mean(dim=(-2, -1)) if reduction == "mean" else d.sum(dim=(-2, -1))
        losses.append(d.mean())
    return torch.stack(losses).mean()


def joint_loss(out, lambdas: Sequence[float] = DEFAULT_LAMBDAS, inter_mode: str = "matrix",
               inter_blocks: str = "all", intra_reduction: str = "mean") -> tuple[torch.Tensor, dict[str, float]]:
    """MS-Former Eq. 10: ``l1 L_ce + l2 L_inter + l3 L_intra`` on an :class:`~mslib.models.msformer.MSFormerOutput`.

    Returns ``(loss, parts)`` with ``parts`` the detached float value of each term (and the
    correlation matrices are not kept; use :func:`correlation_matrix` on ``out.tokens`` for
    plots). A zero weight skips its term entirely (no cost).
    """
    if len(lambdas) != 3:
        raise ValueError(f"joint_loss: lambdas must be (lambda1, lambda2, lambda3), got {lambdas!r}")
    l1, l2, l3 = (float(v) for v in lambdas)
    zero = out.logits.new_zeros(())
    ce = pseudo_label_ce(out.logits) if l1 else zero
    inter = inter_scale_loss(out.contexts_small, out.contexts_large, inter_mode, inter_blocks) if l2 else zero
    if l3 and out.tokens is None:
        raise ValueError("joint_loss: lambda3 > 0 needs intra-scale tokens; the model returned tokens=None")
    intra = intra_scale_loss([correlation_matrix(a, b) for a, b in out.tokens], intra_reduction) if l3 else zero
    total = l1 * ce + l2 * inter + l3 * intra
    return total, {k: float(v.detach()) for k, v in (("ce", ce), ("inter", inter), ("intra", intra), ("total", total))}
