"""Patches, foreground ratios and affinity scores of PDCR (Liu et al., TMI 2022, Eq. 3-4, 16).

Every sampled feature vector is linked to a box of the image: its receptive field R_i
(RF-PDCR, Eq. 5-7, see :mod:`mslib.receptive_field`) or a patch series of sizes k = 5, 7, 9
centred on it (H-PDCR, Sec. III-C). The foreground ratio of class m in a box is (Eq. 4)

    phi_i^m = #pixels of class m in the box / area of the box,

with the area the full box, ``r^2`` or ``k^2``, also where the box reaches into the padding
("padding counted"; pixels outside the image belong to no class). All boxes of all vectors
are counted at once from one summed-area table of the one-hot mask (four gathers per box, no
loop over positions, no host sync); this equals an ``avg_pool2d(k, stride=1, padding=k//2,
count_include_pad=True)`` of the one-hot mask read at the centres (tested), for any box.

The affinity of two patches (Eq. 3) is ``w_ij = 1 - mean_m |phi_i^m - phi_j^m|`` in [0, 1],
symmetric, 1 on the diagonal. The variants of Fig. 5 / Table V: a constant w (0.5), the rigid
bipartition (w = 1 for a patch with itself, 0 otherwise), the centre-pixel label (w = 1 when
the centre pixels have the same class) and the Dice affinity of Eq. 16.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "one_hot_mask",
    "summed_area_table",
    "box_counts",
    "foreground_ratios",
    "normalize_ratios",
    "patch_boxes",
    "grid_positions",
    "feature_centres",
    "affinity",
    "center_label_affinity",
    "dice_affinity",
    "patch_contents",
    "position_encoding",
    "AFFINITIES",
    "PHI_NORMS",
]

AFFINITIES = ("ratio", "constant", "rigid", "center", "dice")
PHI_NORMS = ("area", "l1", "l2")


def one_hot_mask(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, H, W) class indices -> (B, M, H, W) one-hot (int32). No host sync: values outside 0..M-1 match no class."""
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 3:
        raise ValueError(f"mask must be (B, H, W) class indices, got shape {tuple(mask.shape)}")
    if mask.is_floating_point():
        raise ValueError("mask must hold integer class indices (e.g. mask.long()), got a float tensor")
    if num_classes < 2:
        raise ValueError(f"num_classes must count the background too (2 for a binary task), got {num_classes}")
    classes = torch.arange(num_classes, device=mask.device)
    return (mask[:, None] == classes[None, :, None, None]).to(torch.int32)  # F.one_hot would sync (range check)


def summed_area_table(onehot: torch.Tensor) -> torch.Tensor:
    """(B, M, H, W) -> (B, M, H + 1, W + 1) table, ``S[y, x] = sum(onehot[:y, :x])``.

    Integer counts (int32: exact for images below 2^31 pixels).
    """
    sat = onehot.to(torch.int32).cumsum(-1, dtype=torch.int32).cumsum(-2, dtype=torch.int32)
    return F.pad(sat, (1, 0, 1, 0))


def box_counts(
    sat: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, c0: torch.Tensor, c1: torch.Tensor
) -> torch.Tensor:
    """Pixels of each class in the boxes rows ``r0..r1``, cols ``c0..c1`` (inclusive, may leave the image).

    ``sat`` from :func:`summed_area_table`; box coordinates are (N,) tensors (the same boxes for
    every image) or (B, N). Returns (B, N, M) float counts; the part outside the image counts 0.
    """
    h, w = sat.shape[-2] - 1, sat.shape[-1] - 1
    y0, x0 = r0.clamp(0, h), c0.clamp(0, w)
    y1, x1 = torch.maximum((r1 + 1).clamp(0, h), y0), torch.maximum((c1 + 1).clamp(0, w), x0)
    flat = sat.flatten(2)  # (B, M, (H+1)(W+1))
    stride = w + 1

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        idx = (y * stride + x).to(sat.device)
        if idx.ndim == 1:
            return flat[:, :, idx]
        return torch.gather(flat, 2, idx[:, None, :].expand(-1, flat.shape[1], -1))

    counts = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)  # (B, M, N)
    return counts.transpose(1, 2).float()


def normalize_ratios(phi: torch.Tensor, norm: str = "area", eps: float = 1e-8) -> torch.Tensor:
    """Table V(a): ``"area"`` (Eq. 4 as is), ``"l1"`` (phi / ||phi||_1) or ``"l2"`` (phi / ||phi||_2) over classes."""
    if norm == "area":
        return phi
    if norm == "l1":
        return phi / phi.sum(-1, keepdim=True).clamp_min(eps)
    if norm == "l2":
        return phi / phi.norm(dim=-1, keepdim=True).clamp_min(eps)
    raise ValueError(f"phi_norm must be one of {PHI_NORMS}, got {norm!r}")


def foreground_ratios(
    sat: torch.Tensor, r0: torch.Tensor, r1: torch.Tensor, c0: torch.Tensor, c1: torch.Tensor, norm: str = "area"
) -> torch.Tensor:
    """Eq. 4: (B, N, M) ratio of each class in each box; the denominator is the full box area (padding counted)."""
    area = ((r1 - r0 + 1) * (c1 - c0 + 1)).to(sat.device).float()
    phi = box_counts(sat, r0, r1, c0, c1) / (area[..., None] if area.ndim == 2 else area[None, :, None])
    return normalize_ratios(phi, norm)


def patch_boxes(rows: torch.Tensor, cols: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """The k x k patch centred on pixel (row, col): ``(r0, r1, c0, c1)`` inclusive (``k // 2`` each side for odd k)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"patch sizes must be positive ints, got {k!r}")
    r0, c0 = rows - k // 2, cols - k // 2
    return r0, r0 + k - 1, c0, c0 + k - 1


def grid_positions(
    h: int, w: int, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid sampling (Sec. III-B): exactly ``n`` distinct in-grid positions (rows, cols) of an h x w map.

    A regular grid of about ``sqrt(n h / w)`` rows by ``n / rows`` columns, each point at the
    centre of its cell (or, with a ``generator``, at one random offset in the cell shared by the
    whole grid: a different grid each step, reproducible under a seed); when the grid has more
    than n points, n of them are kept evenly along the flattened order. The positions are built
    on ``device`` from Python numbers (no host-to-device copy, which would wait for the GPU).
    """
    if not all(isinstance(v, int) and v >= 1 for v in (h, w, n)):
        raise ValueError(f"grid_positions needs positive ints h, w, n; got {h!r}, {w!r}, {n!r}")
    if n > h * w:
        raise ValueError(f"cannot sample N={n} vectors from a {h}x{w} feature map; lower num_vectors for this layer")
    if generator is None:
        oy = ox = 0.5
    else:
        oy, ox = torch.rand(2, generator=generator).tolist()
    gh = min(h, max(1, round(math.sqrt(n * h / w))))
    gw = min(w, math.ceil(n / gh))
    gh = min(h, max(gh, math.ceil(n / gw)))
    if gh * gw < n:  # pragma: no cover - cannot happen after the two clamps since n <= h w
        raise AssertionError
    dt = torch.float32 if torch.device(device or "cpu").type == "mps" else torch.float64  # MPS has no float64
    ys = torch.floor((torch.arange(gh, device=device, dtype=dt) + oy) * h / gh).long()
    xs = torch.floor((torch.arange(gw, device=device, dtype=dt) + ox) * w / gw).long()
    rows, cols = ys.repeat_interleave(gw), xs.repeat(gh)
    if gh * gw > n:
        keep = torch.floor((torch.arange(n, device=device, dtype=dt) + 0.5) * (gh * gw) / n).long()
        rows, cols = rows[keep], cols[keep]
    return rows, cols


def feature_centres(
    rows: torch.Tensor, cols: torch.Tensor, feature_hw: Sequence[int], image_hw: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image pixel at the centre of feature position (row, col) (H-PDCR, Sec. III-C-1, hypercolumn correspondence).

    ``floor((p + 0.5) * H / h)``: for a map at stride s (H = s h) that is ``p s + s // 2``.
    """
    (h, w), (H, W) = feature_hw, image_hw
    return (
        torch.floor((rows + 0.5) * (H / h)).long().clamp(0, H - 1),
        torch.floor((cols + 0.5) * (W / w)).long().clamp(0, W - 1),
    )


def affinity(phi_a: torch.Tensor, phi_b: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 3: ``w_ij = 1 - mean_m |phi_i^m - phi_j^m|``; (..., N, M) x (..., N', M) -> (..., N, N')."""
    phi_b = phi_a if phi_b is None else phi_b
    return 1.0 - (phi_a[..., :, None, :] - phi_b[..., None, :, :]).abs().mean(-1)


def center_label_affinity(labels_a: torch.Tensor, labels_b: torch.Tensor | None = None) -> torch.Tensor:
    """Fig. 5 "center-location-based w": 1 when the centre pixels have the same class, else 0. (B, N) -> (B, N, N')."""
    labels_b = labels_a if labels_b is None else labels_b
    return (labels_a[..., :, None] == labels_b[..., None, :]).float()


def patch_contents(onehot: torch.Tensor, r0: torch.Tensor, c0: torch.Tensor, k: int) -> torch.Tensor:
    """The k x k one-hot patches with top-left (r0, c0): (B, N, M, k*k); pixels outside the image are 0."""
    h, w = onehot.shape[-2:]
    off = torch.arange(k, device=r0.device)
    rr, cc = r0[:, None] + off, c0[:, None] + off  # (N, k)
    valid = ((rr >= 0) & (rr < h))[:, :, None] & ((cc >= 0) & (cc < w))[:, None, :]
    dev = onehot.device
    p = onehot[:, :, rr.clamp(0, h - 1).to(dev)[:, :, None], cc.clamp(0, w - 1).to(dev)[:, None, :]]  # (B, M, N, k, k)
    p = p * valid.to(dev)
    return p.permute(0, 2, 1, 3, 4).flatten(3).float()


def dice_affinity(patches_a: torch.Tensor, patches_b: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 16 read as the text describes it: w_ij = mean_m dice(p_i^m, p_j^m), pixel by pixel within the patch.

    (B, N, M, P) x (B, N', M, P) -> (B, N, N'). A class absent from both patches counts as
    dice 1 (the patches agree on it). Eq. 16 as printed, ``1 - mean_m dice``, would give
    identical patches w = 0 and patches with "totally different" foreground locations w = 1,
    the opposite of what Sec. V-C-2 (5) says the variant does; ``1 - dice_affinity(...)`` is
    that literal reading.
    """
    patches_b = patches_a if patches_b is None else patches_b
    inter = torch.einsum("bnmp,bqmp->bnqm", patches_a, patches_b)
    size = patches_a.sum(-1)[:, :, None, :] + patches_b.sum(-1)[:, None, :, :]
    dice = torch.where(size > 0, 2 * inter / size.clamp_min(1e-8), torch.ones_like(size))
    return dice.mean(-1)


def position_encoding(
    r0: torch.Tensor, r1: torch.Tensor, c0: torch.Tensor, c1: torch.Tensor, image_hw: Sequence[int]
) -> torch.Tensor:
    """Table V(c): (min-x, max-x, min-y, max-y) of each patch, divided by the image width/height -> (N, 4)."""
    H, W = image_hw
    return torch.stack([c0 / W, c1 / W, r0 / H, r1 / H], dim=-1).float()
