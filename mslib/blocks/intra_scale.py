"""Intra-scale tokens of MS-Former (Eq. 7) and the helpers they are built from.

* :func:`shifted_pairs` -- a map and its copy shifted by ``s`` pixels (MS-Former Eq. 7).
* :func:`batch_norm_affine` -- BatchNorm as a per-channel ``(scale, offset)`` on token rows,
  used by :class:`IntraScaleTokens` and by the MS-Former branches.
* :func:`integral_image`, :func:`adaptive_bins`, :func:`box_means` -- a summed-area table
  (full or at requested rows/columns only) and ``adaptive_avg_pool2d`` bin means read from it.
* :class:`IntraScaleTokens` -- ``A = MSA(BN(z))`` of the output map and of its shifted copy,
  on a fixed token lattice, at a cost independent of the image size.

The losses that use these tokens (correlation matrix, Eq. 8, and its L1 distance to the
identity, Eq. 9) live in :mod:`mslib.losses.scale_consistency`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "shifted_pairs",
    "batch_norm_affine",
    "integral_image",
    "adaptive_bins",
    "box_means",
    "IntraScaleTokens",
]


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

    ``BN(x) = γ (x - μ) / sqrt(σ² + ε) + β`` (Ioffe & Szegedy 2015, Alg. 1): batch statistics
    in training (biased variance, as BatchNorm normalises), updating ``bn``'s running
    statistics exactly as :class:`torch.nn.BatchNorm1d` does (unbiased running variance;
    ``momentum=None`` is the cumulative average ``1 / num_batches_tracked``); running
    statistics in eval; ``track_running_stats=False`` always uses the batch; ``affine=False``
    means ``γ = 1, β = 0``. The variance is computed on the centred rows (two passes), so
    inputs with a large mean (100, 1000) keep full precision. Written with plain tensor ops
    because on CPU their autograd beats ``native_batch_norm_backward`` on token-major inputs
    (benchmarks/bench_selfsup.py, Benchmarks page).
    """
    if bn.training or bn.running_mean is None:
        # two passes: the mean first (no autograd), then the moments of the centred rows, so no
        # E[x²] - E[x]² cancellation at large means; mean = c + E[x - c] keeps the exact gradient.
        # (torch.var_mean over dim 0 is slow on CPU.)
        c = flat.detach().mean(dim=0)
        centred = flat - c
        shift = centred.mean(dim=0)  # ~0: float rounding of the first pass
        mean = c + shift
        var = (centred * centred).mean(dim=0) - shift * shift  # biased, as BatchNorm normalises
        if bn.training and bn.track_running_stats and bn.running_mean is not None:
            with torch.no_grad():
                n = flat.shape[0]
                bn.num_batches_tracked += 1
                factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
                # in the buffers' dtype: under bfloat16 autocast the batch moments are bfloat16
                bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), factor)
                bn.running_var.lerp_((var.detach() * n / max(n - 1, 1)).to(bn.running_var.dtype), factor)
    else:
        mean, var = bn.running_mean, bn.running_var
    inv = torch.rsqrt(var + bn.eps)
    scale = inv if bn.weight is None else bn.weight * inv
    offset = -mean * scale if bn.bias is None else bn.bias - mean * scale
    return scale, offset


def integral_image(
    zl: torch.Tensor, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
) -> torch.Tensor:
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
    sums = z.new_zeros(shape).index_add(dim, gap, z)  # (..., e + 1, ...): gap sums, last one unused
    return sums.narrow(dim, 0, e).cumsum(dim)


def adaptive_bins(start: int, stop: int, out: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bin edges ``(a, b)`` of ``adaptive_avg_pool`` over ``x[start:stop]`` with ``out`` bins:
    bin ``i`` covers ``[start + floor(i n / out), start + ceil((i+1) n / out))``, ``n = stop - start``."""
    n = stop - start
    if n < 1 or out < 1:
        raise ValueError(f"adaptive_bins: need stop > start and out >= 1, got start={start}, stop={stop}, out={out}")
    i = torch.arange(out, device=device)
    return start + (i * n) // out, start - ((-(i + 1) * n) // out)


def box_means(
    s: torch.Tensor,
    window: tuple[int, int, int, int],
    out: int,
    rows: torch.Tensor | None = None,
    cols: torch.Tensor | None = None,
) -> torch.Tensor:
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
    r = s.index_select(1, rb) - s.index_select(1, ra)  # (B, out, W', K)
    box = r.index_select(2, cb) - r.index_select(2, ca)  # (B, out, out, K)
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
    The shift is applied at full resolution, before pooling (MS-Former Eq. 7, :func:`shifted_pairs` semantics).

    BN and pooling commute (BN is a per-channel affine map with statistics of the full map),
    so the BN affine is applied to the pooled lattice.

    ``forward(z)`` returns a list of ``(A1, A2)`` token pairs, one per shifted pair of
    :func:`shifted_pairs`, each ``(B, grid**2, dim)``.
    """

    def __init__(
        self,
        channels: int,
        dim: int = 64,
        grid: int = 8,
        cell: int = 4,
        heads: int = 1,
        shift: int = 2,
        shift_mode: str = "hv",
    ):
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
        (:func:`integral_image` with ``rows``/``cols``), instead of copying and pooling each crop
        (timings: the MS-Former section of the Benchmarks page, book/benchmarks.md). The map is
        centred on its (detached) per-channel mean first, ``mean(z) = mean(z - c) + c``, which
        keeps the float32 running sums small and leaves values and gradients unchanged.
        """
        c = zl.detach().mean(dim=(0, 1, 2))
        L = self.grid * self.cell
        bins = [(adaptive_bins(r0, r1, L), adaptive_bins(c0, c1, L)) for r0, r1, c0, c1 in windows]
        rows = torch.cat([torch.cat(rb) for rb, _ in bins]).unique().to(zl.device)  # sorted
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
        zl = z.permute(0, 2, 3, 1)  # (B, H, W, K); a view for channels-last z
        scale, offset = self.normalize(zl)
        aff = lambda p: p * scale + offset  # noqa: E731  BN affine on the pooled values
        pairs = self._windows(h, w)
        p = self.pooled(zl, [win for pair in pairs for win in pair])
        return [(self.tokens(aff(p[2 * i])), self.tokens(aff(p[2 * i + 1]))) for i in range(len(pairs))]
