"""Patch-dragsaw contrastive regularisation, RF-PDCR and H-PDCR (Liu et al., TMI 2022, Eq. 8-12).

For the N vectors v_i sampled from a layer (grid sampling) with cosine similarities
s_ij (Eq. 8/10/11) and affinities w_ij (Eq. 3, :mod:`mslib.losses.patch_affinity`), Eq. 9 is

    L = sum_i sum_j -log( exp(s_ij w_ij / tau) / sum_n exp(s_in (1 - w_in) / tau) ).

Its gradient with respect to s_ij is ``(-w_ij + N softmax_n(s_in (1 - w_in)/tau)_j (1 - w_ij)) / tau``
(summing over j): negative, i.e. the pair is pulled together, for w_ij = 1, positive (pushed
apart) for w_ij = 0; tugging and repulsing coexist in between ("dragsaw").

* RF-PDCR (Eq. 9): one box per vector, its receptive field (``receptive_fields=[...]``).
* H-PDCR (Eq. 12): a patch series (k = 5, 7, 9 pixels) centred on each vector; the loss of each
  patch size k is computed and averaged (Table V(b), default) or the ratios of the series are
  averaged first (``ratio_first=True``). Cross-layer terms compare the vectors of two layers
  after 1x1 projections to 32 channels (Sec. III-C-2), with the patches of the same size k.

Reduction: the paper sums over layers, i, j and k; by default every term is the *mean* over
images, patch sizes and pairs (i, j) and the terms of the layers and layer pairs are summed, so
the loss weight does not depend on N; ``reduction="sum"`` is Eq. 9/12 literally.

Official 2D behaviours, each behind a switch (tested on hand cases):

* ``legacy_orientation``: numerator s·Δ, denominator sum_n exp(s·(1 - Δ)) with Δ = 1 - w (the
  swapped weights: similar pairs are pushed apart), s = cos / tau minus its global maximum,
  summed over images and pairs, averaged over the patch sizes.
* ``legacy_transposed_ratios``: the ratios of the vector at (r, c) are read around the
  transposed location (c, r) (the official table is filled ``[x, y]`` and read ``[y, x]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mslib.losses.patch_affinity import (
    AFFINITIES,
    PHI_NORMS,
    affinity,
    center_label_affinity,
    dice_affinity,
    feature_centres,
    foreground_ratios,
    grid_positions,
    one_hot_mask,
    patch_boxes,
    patch_contents,
    position_encoding,
    summed_area_table,
)
from mslib.receptive_field import ReceptiveField, receptive_field, rf_boxes

__all__ = ["dragsaw_loss", "cosine_similarity_matrix", "PatchDragsawLoss"]


def cosine_similarity_matrix(a: torch.Tensor, b: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 8/10/11: s_ij = v_i . v_j / (|v_i| |v_j|); (..., N, C) x (..., N', C) -> (..., N, N')."""
    a = F.normalize(a, dim=-1, eps=eps)
    b = a if b is None else F.normalize(b, dim=-1, eps=eps)
    return a @ b.transpose(-1, -2)


def dragsaw_loss(
    sim: torch.Tensor, weight: torch.Tensor, tau: float = 1.0, reduction: str = "mean", legacy_orientation: bool = False
) -> torch.Tensor:
    """Eq. 9 for one layer (or one layer pair, Eq. 12) from similarities and affinities.

    Args:
        sim: cosine similarities (B, N, N') or (B, K, N, N') (one per patch size when the
            position encoding makes the vectors depend on the patch).
        weight: affinities w (B, K, N, N') in [0, 1], K patch sizes (K = 1 for RF-PDCR).
        tau: temperature.
        reduction: ``"mean"`` over images, patch sizes and pairs, or ``"sum"`` (the paper's sums).
        legacy_orientation: the official 2D loss (see the module docstring); ignores ``reduction``.
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    if sim.ndim == 3:
        sim = sim[:, None]
    if weight.ndim != 4:
        raise ValueError(f"weight must be (B, K, N, N'), got shape {tuple(weight.shape)}")
    s = sim / tau
    if legacy_orientation:
        delta = 1.0 - weight
        s = s - s.amax()  # global max, as the official criterion
        terms = torch.logsumexp(s * (1.0 - delta), dim=-1, keepdim=True) - s * delta
        return terms.sum(dim=(0, 2, 3)).mean()  # sum over images and pairs, / number of patch sizes
    terms = torch.logsumexp(s * (1.0 - weight), dim=-1, keepdim=True) - s * weight
    return terms.mean() if reduction == "mean" else terms.sum()


def _as_rf(rf) -> ReceptiveField:
    return rf if isinstance(rf, ReceptiveField) else receptive_field(rf)


class PatchDragsawLoss(nn.Module):
    """PDCR on the features of one or more layers: ``loss = pdcr(features, mask)``.

    Args:
        num_vectors: N per layer (grid sampling); an int for all layers. Official 2D: 64 and 32
            for the two encoder layers (paper, Sec. V-A: 128, 64, 32, 8, ...).
        patch_sizes: H-PDCR patch series in image pixels (P = 3: 5, 7, 9).
        receptive_fields: RF-PDCR instead of H-PDCR: per layer a :class:`ReceptiveField` or its
            (kernel, stride, padding) stack; each vector's box is its receptive field (Eq. 5-7),
            the ratio's denominator r^2 (padding counted).
        single_layer: include the single-layer terms (first line of Eq. 12).
        cross_layer_pairs: layer index pairs (l, l') for the cross-layer terms (second line of Eq. 12).
        in_channels: channels per layer (needed for the cross-layer projections).
        proj_channels: width of the 1x1 projections of the cross-layer terms (32, Sec. III-C-2),
            applied at the sampled positions only (equal to a 1x1 conv read there).
        tau: temperature (official 2D: 1; 3D: 0.5).
        num_classes: M, classes of the mask including the background (2 for a binary task).
        affinity: "ratio" (Eq. 3) | "constant" | "rigid" | "center" | "dice" (Eq. 16), Fig. 5 / Table V(d).
        constant: the w of ``affinity="constant"`` (0.5).
        phi_norm: "area" (Eq. 4) | "l1" | "l2" (Table V(a)).
        ratio_first: H-PDCR implementation 2 of Table V(b): average the ratios of the series first.
        position_encoding: concatenate (min-x, max-x, min-y, max-y) of each patch, divided by the
            image size, to its vector before the similarity (Table V(c)).
        reduction: "mean" (default) or "sum" (Eq. 9/12 literally).
        legacy_orientation, legacy_transposed_ratios: official 2D behaviours (module docstring).
        seed: None samples the centred grid every step; an int draws a random grid offset per
            step from a generator seeded with it (reproducible).

    ``forward(features, mask)`` takes the list of feature maps (B, C_l, h_l, w_l) and the mask
    (B, H, W) of class indices at image resolution; it returns the summed terms and keeps their
    detached values in ``last_terms``.
    """

    def __init__(
        self,
        num_vectors: int | Sequence[int] = (64, 32),
        patch_sizes: Sequence[int] = (5, 7, 9),
        receptive_fields: Sequence | None = None,
        single_layer: bool = True,
        cross_layer_pairs: Sequence[tuple[int, int]] = (),
        in_channels: Sequence[int] | None = None,
        proj_channels: int = 32,
        tau: float = 1.0,
        num_classes: int = 2,
        affinity: str = "ratio",
        constant: float = 0.5,
        phi_norm: str = "area",
        ratio_first: bool = False,
        position_encoding: bool = False,
        reduction: str = "mean",
        legacy_orientation: bool = False,
        legacy_transposed_ratios: bool = False,
        seed: int | None = None,
    ):
        super().__init__()
        if affinity not in AFFINITIES:
            raise ValueError(f"affinity must be one of {AFFINITIES}, got {affinity!r}")
        if phi_norm not in PHI_NORMS:
            raise ValueError(f"phi_norm must be one of {PHI_NORMS}, got {phi_norm!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if not patch_sizes and receptive_fields is None:
            raise ValueError("patch_sizes is empty: give H-PDCR at least one patch size (5, 7, 9) or receptive_fields")
        self.num_vectors = num_vectors
        self.patch_sizes = tuple(int(k) for k in patch_sizes)
        self.receptive_fields = None if receptive_fields is None else [_as_rf(rf) for rf in receptive_fields]
        self.single_layer = single_layer
        self.cross_layer_pairs = [tuple(p) for p in cross_layer_pairs]
        self.tau, self.num_classes, self.affinity, self.constant = tau, num_classes, affinity, constant
        self.phi_norm, self.ratio_first, self.position_encoding = phi_norm, ratio_first, position_encoding
        self.reduction = reduction
        self.legacy_orientation, self.legacy_transposed_ratios = legacy_orientation, legacy_transposed_ratios
        self.seed = seed
        self._generator = None
        if seed is not None:
            self._generator = torch.Generator()
            self._generator.manual_seed(seed)
        self.proj = nn.ModuleDict()
        if self.cross_layer_pairs:
            if in_channels is None:
                raise ValueError(
                    "cross_layer_pairs needs in_channels (the channels of every layer) for the 1x1 projections"
                )
            used = sorted({i for p in self.cross_layer_pairs for i in p})
            for i in used:
                if i >= len(in_channels):
                    raise ValueError(f"cross_layer_pairs uses layer {i} but in_channels has {len(in_channels)} entries")
                self.proj[str(i)] = nn.Linear(in_channels[i], proj_channels)
        self.last_terms: dict[str, torch.Tensor] = {}

    def _n(self, layer: int) -> int:
        if isinstance(self.num_vectors, int):
            return self.num_vectors
        if layer >= len(self.num_vectors):
            raise ValueError(
                f"num_vectors has {len(self.num_vectors)} entries but layer {layer} was given; give one N per layer"
            )
        return int(self.num_vectors[layer])

    def _layer(
        self,
        layer: int,
        feat: torch.Tensor,
        mask: torch.Tensor,
        onehot: torch.Tensor,
        sat: torch.Tensor,
        generator: torch.Generator | None,
    ) -> dict:
        B, C, h, w = feat.shape
        H, W = mask.shape[-2:]
        dev = feat.device
        rows, cols = grid_positions(h, w, self._n(layer), generator, device=dev)
        idx = (rows * w + cols).to(dev)
        vec = feat.flatten(2).index_select(2, idx).transpose(1, 2).float()  # (B, N, C)
        if self.receptive_fields is not None:
            if layer >= len(self.receptive_fields):
                raise ValueError(
                    f"receptive_fields has {len(self.receptive_fields)} entries but layer {layer} was given"
                )
            rf = self.receptive_fields[layer]
            r0, r1 = rf_boxes(rf, rows)
            c0, c1 = rf_boxes(rf, cols)
            boxes = [(r0, r1, c0, c1)]
            cy, cx = (r0 + r1) // 2, (c0 + c1) // 2
        else:
            cy, cx = feature_centres(rows, cols, (h, w), (H, W))
            boxes = [patch_boxes(cy, cx, k) for k in self.patch_sizes]
        if self.legacy_transposed_ratios:
            look = [(b[2], b[3], b[0], b[1]) for b in boxes]
            ly, lx = cx.clamp(0, H - 1), cy.clamp(0, W - 1)
        else:
            look, ly, lx = boxes, cy, cx
        out = {"vec": vec, "boxes": boxes}
        if self.affinity == "ratio":
            phi = torch.stack([foreground_ratios(sat, *b, norm=self.phi_norm) for b in look], dim=1)  # (B, K, N, M)
            out["phi"] = phi.mean(1, keepdim=True) if self.ratio_first else phi
        elif self.affinity == "center":
            out["labels"] = mask[:, ly.to(mask.device), lx.to(mask.device)]
        elif self.affinity == "dice":
            if self.receptive_fields is not None and self.cross_layer_pairs:
                raise ValueError(
                    "affinity='dice' compares patches pixel by pixel: receptive fields of two layers "
                    "differ in size, so RF-PDCR with the Dice affinity has no cross-layer terms"
                )
            out["patches"] = [patch_contents(onehot, b[0], b[2], int(b[1][0] - b[0][0] + 1)) for b in look]
        return out

    def _weights(self, a: dict, b: dict, same: bool) -> torch.Tensor:
        B, N = a["vec"].shape[:2]
        Nb = b["vec"].shape[1]
        dev = a["vec"].device
        if self.affinity == "ratio":
            return affinity(a["phi"], b["phi"])
        if self.affinity == "constant":
            return torch.full((B, 1, N, Nb), float(self.constant), device=dev)
        if self.affinity == "rigid":
            if not same:
                raise ValueError("affinity='rigid' pairs a patch with itself: it has no cross-layer form")
            return torch.eye(N, device=dev).expand(B, 1, N, N)
        if self.affinity == "center":
            return center_label_affinity(a["labels"], b["labels"])[:, None]
        return torch.stack([dice_affinity(pa, pb) for pa, pb in zip(a["patches"], b["patches"])], dim=1)

    def _vectors(self, d: dict, image_hw, proj: nn.Module | None) -> torch.Tensor:
        v = d["vec"] if proj is None else proj(d["vec"])
        if not self.position_encoding:
            return v
        pe = torch.stack([position_encoding(*b, image_hw) for b in d["boxes"]]).to(v.device)  # (K, N, 4)
        return torch.cat([v[:, None].expand(-1, pe.shape[0], -1, -1), pe[None].expand(v.shape[0], -1, -1, -1)], -1)

    def forward(
        self, features: Sequence[torch.Tensor], mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if isinstance(features, torch.Tensor):
            features = [features]
        if mask.ndim == 4 and mask.shape[1] == 1:
            mask = mask[:, 0]
        for i, f in enumerate(features):
            if f.ndim != 4 or f.shape[0] != mask.shape[0]:
                raise ValueError(
                    f"features[{i}] must be (B, C, h, w) with the mask's batch size {mask.shape[0]}, "
                    f"got {tuple(f.shape)}"
                )
        generator = generator if generator is not None else self._generator
        onehot = one_hot_mask(mask, self.num_classes)
        sat = summed_area_table(onehot)
        layers = [self._layer(i, f, mask, onehot, sat, generator) for i, f in enumerate(features)]
        image_hw = tuple(mask.shape[-2:])
        terms: dict[str, torch.Tensor] = {}
        if self.single_layer:
            for i, d in enumerate(layers):
                v = self._vectors(d, image_hw, None)
                terms[f"layer{i}"] = dragsaw_loss(
                    cosine_similarity_matrix(v),
                    self._weights(d, d, True),
                    self.tau,
                    self.reduction,
                    self.legacy_orientation,
                )
        for i, j in self.cross_layer_pairs:
            if max(i, j) >= len(layers):
                raise ValueError(f"cross-layer pair {(i, j)} but only {len(layers)} feature maps were given")
            va = self._vectors(layers[i], image_hw, self.proj[str(i)])
            vb = self._vectors(layers[j], image_hw, self.proj[str(j)])
            terms[f"cross{i}-{j}"] = dragsaw_loss(
                cosine_similarity_matrix(va, vb),
                self._weights(layers[i], layers[j], False),
                self.tau,
                self.reduction,
                self.legacy_orientation,
            )
        if not terms:
            raise ValueError("PDCR has no term: set single_layer=True or give cross_layer_pairs")
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        return torch.stack(list(terms.values())).sum()
