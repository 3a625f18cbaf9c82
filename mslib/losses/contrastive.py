"""MCSC's multi-scale balanced supervised contrastive loss over CNN and Transformer pixel features.

MCSC (Liu et al., BMVC 2023; poster "Balanced contrastive loss", Fig. M2, Tab. A1-A2) pulls
together pixel features of the same class and pushes apart those of different classes, across
the two networks, images and scales. At one scale, with ``a_i`` the L2-normalised projected
feature of pixel ``i`` and ``A_c`` the pixels of class ``c`` in the contrast set:

    L_bcl = -1/|A| sum_{i in A} 1/(|A_{y_i}| - 1) sum_{p in A_{y_i} \\ {i}}
              log( exp(a_i.a_p / tau) / sum_{c} 1/|A_c| sum_{k in A_c, k != i} exp(a_i.a_k / tau) )

(MCSC poster, balanced contrastive loss after Zhu et al., CVPR 2022; ``|A_c|`` excludes the
anchor itself for its own class.) Here:

* **Balanced** (``balanced=True``): each class's terms in the denominator are *averaged*, so the
  many background pixels do not dominate; ``balanced=False`` is the plain SupCon denominator
  ``sum_{k != i} exp(a_i.a_k / tau)``.
* **DB** (``discard_background=True``): background pixels are not anchors (they stay in the
  contrast set as negatives). Anchors without a positive are skipped.
* **CroLab** (:func:`contrast_labels`): labelled images use the ground truth for both networks'
  features; on unlabelled images the CNN's features take the Transformer's argmax and vice
  versa (``cross=False``: each network's own prediction).
* **MulSca** (:class:`MultiScaleContrast`): ``L_cl = sum_s L_bcl(s)`` over the scales chosen by
  config (default full resolution and 1/8, Tab. A2's best, "256 + 28"; 1/4 = "56" optional),
  each with its own projection heads (1x1 -> 256, ReLU, 1x1 -> 128; the second layer shared by
  the two networks, as the official code); labels resized to each scale by nearest neighbour.
* **temperature** 0.1.
* Before ``start_iteration`` (official 3000) only labelled images are contrasted.

Memory. All pairs of ``N`` pixels cost ``N^2`` (2 x 4 x 224^2 pixels: 4e10 pairs). ``sampling``:

* ``"all"``: every pair (small inputs; the reference the others are checked against);
* ``"anchors"`` (default): a uniform random subset of ``max_samples`` pixels of the pooled set
  (both networks, all images), all pairs within it: ``max_samples^2`` memory;
* ``"blocks"``: ``num_blocks`` groups; each group takes one ``block x block`` window at a random
  position (anywhere in the image) from every image of both networks;
* ``"official"``: the official BlockConLoss tiling: blocks of ``block`` px on a grid of
  ``(size // block - 1)^2`` cells from the top-left corner, shuffled per image; at 224 px with
  block 19 that is 10x10 blocks covering only ``[0, 190)^2`` (72 % of the image), at 28 px with
  block 14 one block covering ``[0, 14)^2`` (25 %). Groups whose labels are all background
  are skipped (:func:`official_block_coverage` gives the covered fraction).

Official-code behaviours behind switches (each tested):

* ``legacy_label_order=True``: the official SupCon reorders each block group's labels with
  ``unbind(dim=1)`` on an (images, h, w) tensor, giving the order (y, image, x) while the
  features are ordered (image, y, x): labels and features are misaligned (about 76 % of pairs
  differ for random labels). :func:`official_supcon` reproduces this computation.
* the official loss also averages over background anchors and over anchors without positives
  (which count 0): ``official_supcon(..., legacy_label_order=False)`` is its aligned form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ProjectionHead",
    "CrossProjector",
    "balanced_supcon_loss",
    "official_supcon",
    "legacy_label_permutation",
    "contrast_labels",
    "cross_contrastive_loss",
    "official_block_coverage",
    "features_by_scale",
    "MultiScaleContrast",
    "SAMPLINGS",
]

SAMPLINGS = ("all", "anchors", "blocks", "official")


# ----------------------------------------------------------------------------- projection heads
class ProjectionHead(nn.Module):
    """``1x1 conv -> hidden, ReLU, 1x1 conv -> out_dim``, L2-normalised over channels (MCSC projector).

    ``out_layer`` lets two heads share their last layer (the official projectors do).
    """

    def __init__(self, in_channels: int, hidden: int = 256, out_dim: int = 128, out_layer: nn.Conv2d | None = None):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, hidden, 1)
        self.out = out_layer if out_layer is not None else nn.Conv2d(hidden, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.out(F.relu(self.inp(x))), dim=1)


class CrossProjector(nn.Module):
    """One :class:`ProjectionHead` per network, the 256 -> 128 layer shared (official ``Projector``).

    ``tra_norm=True`` adds a LayerNorm over the Transformer's channels first. Parameters: 62,080
    for (16, 96) (the full-resolution heads); 115,328 for (128, 192) and 115,712 with
    ``tra_norm`` (the 1/8 heads; the official count 115,712 includes such a LayerNorm).
    """

    def __init__(
        self,
        cnn_channels: int,
        tra_channels: int,
        hidden: int = 256,
        out_dim: int = 128,
        shared: bool = True,
        tra_norm: bool = False,
    ):
        super().__init__()
        self.cnn = ProjectionHead(cnn_channels, hidden, out_dim)
        self.tra = ProjectionHead(tra_channels, hidden, out_dim, self.cnn.out if shared else None)
        self.tra_norm = nn.LayerNorm(tra_channels) if tra_norm else None

    def forward(self, f_cnn: torch.Tensor, f_tra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.tra_norm is not None:
            f_tra = self.tra_norm(f_tra.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.cnn(f_cnn), self.tra(f_tra)


# ----------------------------------------------------------------------------- the loss on a set
def balanced_supcon_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 0.1,
    balanced: bool = True,
    discard_background: bool = True,
    background: int = 0,
    chunk: int = 4096,
) -> torch.Tensor:
    """MCSC balanced supervised contrastive loss (poster Eq. L_bcl) over one contrast set, all pairs.

    Args:
        z: (N, D) L2-normalised features.
        labels: (N,) integer classes.
        temperature: tau (0.1 in MCSC).
        balanced: class-averaged denominator (MCSC "Balanced"); False: plain SupCon sum.
        discard_background: background pixels are not anchors (MCSC "DB").
        chunk: anchors per block of rows (memory ``chunk x N``; the result does not depend on it).

    Returns the mean over valid anchors (non-background if ``discard_background``, with at least
    one positive) of ``-mean_p log(exp(s_ip) / denom_i)``; 0 (with a graph) when there is none.
    """
    if z.ndim != 2 or labels.shape != z.shape[:1]:
        raise ValueError(f"z must be (N, D) and labels (N,), got {tuple(z.shape)} and {tuple(labels.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    labels = labels.long()
    classes, inv = torch.unique(labels, return_inverse=True)
    onehot = F.one_hot(inv, len(classes)).to(z.dtype)  # (N, C)
    counts = onehot.sum(0)  # (C,)
    valid = counts[inv] > 1
    if discard_background:
        valid &= labels != background
    anchors = valid.nonzero().squeeze(1)
    if anchors.numel() == 0:
        return z.sum() * 0.0
    total = z.new_zeros(())
    for start in range(0, anchors.numel(), chunk):
        idx = anchors[start : start + chunk]
        s = z[idx] @ z.T / temperature  # (n, N)
        self_mask = torch.zeros_like(s, dtype=torch.bool)
        self_mask[torch.arange(idx.numel(), device=z.device), idx] = True
        m = s.masked_fill(self_mask, -math.inf).amax(1, keepdim=True).detach()
        e = torch.exp(s - m).masked_fill(self_mask, 0.0)  # exp(s_ik - m_i), k != i
        if balanced:
            per_class = e @ onehot  # (n, C) sums over k in A_c, k != i
            n_c = counts.unsqueeze(0) - onehot[idx]  # |A_c| without the anchor
            denom = (per_class / n_c.clamp_min(1)).sum(1)
        else:
            denom = e.sum(1)
        log_prob = s - m - torch.log(denom).unsqueeze(1)  # log(exp(s_ik) / denom_i)
        pos = (labels[idx].unsqueeze(1) == labels.unsqueeze(0)) & ~self_mask
        total = total + (-(log_prob * pos).sum(1) / pos.sum(1)).sum()
    return total / anchors.numel()


def legacy_label_permutation(n: int, h: int, w: int, device=None) -> torch.Tensor:
    """Index ``perm`` such that ``labels.flatten()[perm]`` is the official order of a (n, h, w) label block.

    Features are flattened in (image, y, x) order; the official code flattens the labels with
    ``cat(unbind(labels, dim=1))``, i.e. in (y, image, x) order, and pairs position ``m`` of one
    with position ``m`` of the other.
    """
    return torch.arange(n * h * w, device=device).view(n, h, w).permute(1, 0, 2).reshape(-1)


def official_supcon(
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 0.1,
    legacy_label_order: bool = True,
    num_classes: int = 4,
) -> torch.Tensor:
    """The official MCSC ``SupConLoss`` on one block group, re-derived (not the paper's loss).

    ``features`` (n, D, h, w) normalised, ``labels`` (n, h, w). Balanced denominator
    ``sum_c mean_{k in c, k != i} exp(s_ik / tau)`` over the classes in the group, background
    anchors included, anchors without positives counting 0 in the mean over all anchors, ``1e-6``
    inside the log and in the positive count. ``legacy_label_order=True`` pairs features with
    the (y, image, x)-ordered labels as the official code does.
    """
    n, d, h, w = features.shape
    if labels.shape != (n, h, w):
        raise ValueError(f"labels must be {(n, h, w)} for features {tuple(features.shape)}, got {tuple(labels.shape)}")
    z = features.permute(0, 2, 3, 1).reshape(-1, d)
    y = labels.reshape(-1).long()
    if legacy_label_order:
        y = y[legacy_label_permutation(n, h, w, labels.device)]
    logits = z @ z.T / temperature
    counts = F.one_hot(y, num_classes).sum(0).to(z.dtype)
    eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
    mask = (y.unsqueeze(0) == y.unsqueeze(1)) & ~eye
    exp_logits = torch.exp(logits).masked_fill(eye, 0.0)
    weight = counts[y].unsqueeze(0) - mask.to(z.dtype)
    denom = (exp_logits / weight).sum(1, keepdim=True)
    log_prob = logits - torch.log(denom + 1e-6)
    mean_pos = (mask * log_prob).sum(1) / (mask.sum(1) + 1e-6)
    return -mean_pos.mean()


# ----------------------------------------------------------------------------- labels and sampling
def contrast_labels(
    target: torch.Tensor, pred_cnn: torch.Tensor, pred_tra: torch.Tensor, labeled_bs: int, cross: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels for the CNN's and the Transformer's features (MCSC "CroLab").

    ``target`` holds the ground truth of the first ``labeled_bs`` images; ``pred_*`` are (B, H, W)
    hard predictions (argmax). Labelled images: ground truth for both. Unlabelled: the CNN's
    features get the Transformer's prediction and vice versa (``cross=False``: their own).
    """
    y_cnn, y_tra = pred_tra.clone() if cross else pred_cnn.clone(), pred_cnn.clone() if cross else pred_tra.clone()
    y_cnn[:labeled_bs] = target[:labeled_bs]
    y_tra[:labeled_bs] = target[:labeled_bs]
    return y_cnn.long(), y_tra.long()


def official_block_coverage(size: int, block: int) -> float:
    """Fraction of a ``size x size`` map the official block tiling reaches: ``((size // block - 1) block / size)^2``."""
    div = size // block - 1
    return max(div, 0) ** 2 * block * block / (size * size)


def _resize_labels(y: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(y.shape[-2:]) == tuple(size):
        return y
    return F.interpolate(y.unsqueeze(1).float(), size=size, mode="nearest").squeeze(1).long()


def cross_contrastive_loss(
    z_cnn: torch.Tensor,
    z_tra: torch.Tensor,
    y_cnn: torch.Tensor,
    y_tra: torch.Tensor,
    *,
    temperature: float = 0.1,
    balanced: bool = True,
    discard_background: bool = True,
    sampling: str = "anchors",
    max_samples: int = 4096,
    block: int = 16,
    num_blocks: int = 4,
    legacy_label_order: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The balanced contrastive loss at one scale over both networks' pixel features.

    ``z_cnn``, ``z_tra``: (B, D, h, w) normalised projections; ``y_cnn``, ``y_tra``: (B, H, W) labels
    (resized to (h, w) by nearest neighbour). The contrast set pools the pixels of both networks
    and all images; ``sampling`` bounds its size (module docstring). ``legacy_label_order`` is
    only meaningful with ``sampling="official"`` (and then also uses :func:`official_supcon`).
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if z_cnn.shape != z_tra.shape:
        raise ValueError(
            f"z_cnn {tuple(z_cnn.shape)} and z_tra {tuple(z_tra.shape)} must have the same shape; "
            "project both networks' features to the same dimension first"
        )
    b, d, h, w = z_cnn.shape
    feats = torch.cat([z_cnn, z_tra], 0)  # (2B, D, h, w)
    labels = torch.cat([_resize_labels(y_cnn, (h, w)), _resize_labels(y_tra, (h, w))], 0)
    kw = dict(temperature=temperature, balanced=balanced, discard_background=discard_background)
    if legacy_label_order and sampling != "official":
        raise ValueError("legacy_label_order=True reproduces the official block loss: use it with sampling='official'")
    if sampling == "all":
        return balanced_supcon_loss(feats.permute(0, 2, 3, 1).reshape(-1, d), labels.reshape(-1), **kw)
    if sampling == "anchors":
        z, y = feats.permute(0, 2, 3, 1).reshape(-1, d), labels.reshape(-1)
        if z.shape[0] > max_samples:
            idx = torch.randperm(z.shape[0], generator=generator, device="cpu")[:max_samples].to(z.device)
            z, y = z[idx], y[idx]
        return balanced_supcon_loss(z, y, **kw)
    # windows: gather every group's pixels with one index (cheap backward), then split by group
    n = feats.shape[0]
    z_flat, y_flat = feats.permute(0, 2, 3, 1).reshape(-1, d), labels.reshape(-1)
    if sampling == "blocks":
        bs = min(block, h, w)
        corners = [
            (
                torch.randint(0, h - bs + 1, (n,), generator=generator),
                torch.randint(0, w - bs + 1, (n,), generator=generator),
            )
            for _ in range(num_blocks)
        ]
    else:  # the official tiling
        bs = block
        div = min(h, w) // block - 1
        if div < 1:
            raise ValueError(f"sampling='official' needs at least 2 blocks of {block} px per side, got a {h}x{w} map")
        cells = torch.tensor([(i * block, j * block) for i in range(div) for j in range(div)])
        order = torch.stack([torch.randperm(len(cells), generator=generator) for _ in range(n)], 1)  # (cells, n)
        corners = [(cells[order[k], 0], cells[order[k], 1]) for k in range(len(cells))]
    r = torch.arange(bs)
    idx = torch.stack(
        [
            (
                torch.arange(n)[:, None, None] * h * w
                + (ys[:, None, None] + r[None, :, None]) * w
                + xs[:, None, None]
                + r[None, None, :]
            ).reshape(-1)
            for ys, xs in corners
        ]
    ).to(z_flat.device)
    groups = z_flat[idx.reshape(-1)].view(len(corners), -1, d).unbind(0)  # (image, y, x) order in a group
    group_labels = y_flat[idx]
    losses = []
    for z_g, y_g in zip(groups, group_labels):
        if sampling == "official" and not bool(y_g.any()):
            continue  # the official code skips all-background groups
        if legacy_label_order:
            losses.append(
                official_supcon(
                    z_g.view(n, bs, bs, d).permute(0, 3, 1, 2),
                    y_g.view(n, bs, bs),
                    temperature=temperature,
                    legacy_label_order=True,
                    num_classes=max(4, int(labels.max()) + 1),
                )
            )
        else:
            losses.append(balanced_supcon_loss(z_g, y_g, **kw))
    return torch.stack(losses).mean() if losses else feats.sum() * 0.0


# ----------------------------------------------------------------------------- several scales
def features_by_scale(features: Sequence[torch.Tensor], input_size: int) -> dict[int, torch.Tensor]:
    """Map each (B, C, h, w) feature to its down-sampling factor ``input_size // h`` (1, 2, 4, 8, 16)."""
    return {input_size // f.shape[-2]: f for f in features}


class MultiScaleContrast(nn.Module):
    """MCSC multi-scale cross contrastive loss ``L_cl = sum_s L_bcl(s)`` with its projection heads.

    Args:
        cnn_channels / tra_channels: ``{factor: channels}`` of each network's feature at each
            scale factor (1 = full resolution, 8 = 1/8), e.g. ``{1: 16, 8: 128}`` (SSL4MIS UNet) and
            ``{1: 96, 8: 192}`` (Swin-UNet).
        scales: the factors contrasted (default ``(1, 8)``: "256 + 28", Tab. A2's best).
        start_iteration: before it only labelled images are contrasted (official 3000).
        cross: CroLab (labels of unlabelled images from the other network).
        tra_norm: a LayerNorm on the Transformer's features before its heads at factors > 1
            (the official 1/8 projector has one).
        other keyword arguments: as :func:`cross_contrastive_loss` (``sampling``, ``max_samples``,
            ``block`` per scale as a dict or one int, ``balanced``, ``discard_background``,
            ``temperature``, ``legacy_label_order``).

    ``forward(feats_cnn, feats_tra, target, pred_cnn, pred_tra, labeled_bs, iteration, generator)``
    takes the feature lists the models return and returns ``(loss, {factor: loss})``.
    """

    def __init__(
        self,
        cnn_channels: Mapping[int, int],
        tra_channels: Mapping[int, int],
        scales: Sequence[int] = (1, 8),
        hidden: int = 256,
        out_dim: int = 128,
        temperature: float = 0.1,
        balanced: bool = True,
        discard_background: bool = True,
        cross: bool = True,
        start_iteration: int = 3000,
        sampling: str = "anchors",
        max_samples: int = 4096,
        block: int | Mapping[int, int] = 16,
        num_blocks: int = 4,
        legacy_label_order: bool = False,
        tra_norm: bool = True,
    ):
        super().__init__()
        missing = [s for s in scales if s not in cnn_channels or s not in tra_channels]
        if missing or not scales:
            raise ValueError(
                f"scales {list(scales)} need channels for both networks; cnn_channels has "
                f"{sorted(cnn_channels)}, tra_channels {sorted(tra_channels)}"
            )
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.scales = tuple(int(s) for s in scales)
        self.heads = nn.ModuleDict(
            {
                str(s): CrossProjector(cnn_channels[s], tra_channels[s], hidden, out_dim, tra_norm=tra_norm and s > 1)
                for s in self.scales
            }
        )
        self.options = dict(
            temperature=temperature,
            balanced=balanced,
            discard_background=discard_background,
            sampling=sampling,
            max_samples=max_samples,
            num_blocks=num_blocks,
            legacy_label_order=legacy_label_order,
        )
        self.block = dict(block) if isinstance(block, Mapping) else {s: int(block) for s in self.scales}
        self.cross, self.start_iteration = cross, start_iteration

    def forward(
        self,
        feats_cnn: Sequence[torch.Tensor],
        feats_tra: Sequence[torch.Tensor],
        target: torch.Tensor,
        pred_cnn: torch.Tensor,
        pred_tra: torch.Tensor,
        labeled_bs: int,
        iteration: int = 10**9,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        size = pred_cnn.shape[-1]
        fc, ft = features_by_scale(feats_cnn, size), features_by_scale(feats_tra, size)
        y_cnn, y_tra = contrast_labels(target, pred_cnn, pred_tra, labeled_bs, cross=self.cross)
        keep = labeled_bs if iteration < self.start_iteration else pred_cnn.shape[0]
        out: dict[int, torch.Tensor] = {}
        for s in self.scales:
            if s not in fc or s not in ft:
                raise ValueError(
                    f"no feature at scale 1/{s} of a {size} px input; the models give "
                    f"cnn {sorted(fc)}, transformer {sorted(ft)}"
                )
            z_cnn, z_tra = self.heads[str(s)](fc[s][:keep], ft[s][:keep])
            out[s] = cross_contrastive_loss(
                z_cnn,
                z_tra,
                y_cnn[:keep],
                y_tra[:keep],
                block=self.block.get(s, 16),
                generator=generator,
                **self.options,
            )
        return torch.stack(list(out.values())).sum(), out
