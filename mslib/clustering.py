"""Unsupervised segmentation by clustering, and the cluster-based evaluation of MS-Former.

* :func:`kmeans_labels` -- the k-means baseline of MS-Former Table 1 (pixel colours;
  K = 3 for skin, 2 for lung), with ``scipy.cluster.vq.kmeans2`` seeded.
* :func:`best_overlap_cluster` -- the paper's protocol (MS-Former Sec. 3.1, following
  SGSCN): the cluster with the largest overlap with the ground truth is the foreground.
  Any cluster id can be chosen, 0 included (the official code skips cluster 0, a bug kept
  only behind ``legacy_exclude_zero=True``).
* :func:`legacy_gt_crop` -- the official evaluation's extra step, the prediction multiplied
  by the ground truth dilated twice by a 7x7 kernel. It removes false positives by looking at
  the ground truth; off by default, named ``legacy_*`` on purpose.
* :func:`evaluate_clusters` -- DSC, HM (Hammoude = 1 - IoU) and XOR = (|A∪G| - |A∩G|)/|G| per
  image, from :mod:`mslib.metrics` (multiply by 100 for Table 1).
"""

from __future__ import annotations

import numpy as np
import torch

from mslib import metrics
from mslib.utils import image_to_tensor

__all__ = ["kmeans_labels", "best_overlap_cluster", "legacy_gt_crop", "evaluate_clusters"]


def _pixels(image) -> tuple[np.ndarray, tuple[int, int]]:
    """``(N, C)`` float64 pixel features of an image (:func:`mslib.utils.image_to_tensor`: uint8 / 255)."""
    x = image_to_tensor(image)
    c, h, w = x.shape
    return x.permute(1, 2, 0).reshape(h * w, c).double().cpu().numpy(), (h, w)


def kmeans_labels(image, k: int = 3, seed: int = 0, iters: int = 20) -> torch.Tensor:
    """k-means on pixel colours (MS-Former Table 1 baseline): an ``(H, W)`` int64 map of cluster ids.

    ``image``: ``(H, W)`` / ``(H, W, C)`` array (uint8 or float) or a ``(C, H, W)`` tensor
    (:func:`mslib.utils.image_to_tensor`). ``scipy.cluster.vq.kmeans2`` with k-means++ initialisation
    and a seeded generator, so
    the same seed gives the same map.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"kmeans_labels: k must be a positive int (3 for skin, 2 for lung), got {k!r}")
    x, (h, w) = _pixels(image)
    if x.shape[0] < k:
        raise ValueError(f"kmeans_labels: k={k} is more than the {x.shape[0]} pixels of the image")
    from scipy.cluster.vq import kmeans2  # scipy loads on first use (~30 MB)

    _, labels = kmeans2(x, k, iter=iters, minit="++", seed=np.random.default_rng(seed))
    return torch.from_numpy(labels.astype(np.int64)).view(h, w)


def best_overlap_cluster(labels, gt, legacy_exclude_zero: bool = False) -> tuple[torch.Tensor, int]:
    """The foreground of the paper's protocol: the cluster with the most pixels inside the ground truth.

    ``labels`` ``(H, W)`` integer cluster ids (any ids >= 0, 0 included), ``gt`` ``(H, W)``
    binary. Returns ``(mask, cluster_id)`` with ``mask`` a bool ``(H, W)`` map. Ties go to the
    smallest id. An empty ``gt`` overlaps no cluster: the prediction is empty and the id -1.
    ``legacy_exclude_zero=True`` reproduces the official code, which can never choose 0.
    """
    lab = torch.as_tensor(labels)
    g = metrics.binarize_target(gt)
    if lab.shape != g.shape or lab.dim() != 2:
        raise ValueError(
            f"best_overlap_cluster: labels {tuple(lab.shape)} and gt {tuple(g.shape)} must be the same (H, W)"
        )
    if lab.dtype.is_floating_point or lab.dtype == torch.bool:
        raise ValueError("best_overlap_cluster: labels must be integer cluster ids (e.g. logits.argmax(0))")
    lab = lab.long()
    if (lab < 0).any():
        raise ValueError("best_overlap_cluster: cluster ids must be >= 0")
    counts = torch.bincount(lab[g.to(lab.device)], minlength=int(lab.max()) + 1)
    if legacy_exclude_zero:
        counts[0] = 0
    if counts.sum() == 0:
        return torch.zeros_like(g, dtype=torch.bool), -1
    cid = int(counts.argmax())
    return lab == cid, cid


def legacy_gt_crop(pred, gt, kernel: int = 7, iterations: int = 2) -> torch.Tensor:
    """LEGACY official evaluation step: ``pred * dilate(gt, ones(kernel x kernel), iterations)``.

    It looks at the ground truth to delete every predicted pixel farther than about
    ``iterations * (kernel // 2)`` pixels from the lesion, so it can only remove false
    positives. Use only to compare with published numbers. ``(H, W)`` masks in, bool out.
    """
    p, g = metrics.binarize_target(pred), metrics.binarize_target(gt)
    if p.shape != g.shape:
        raise ValueError(f"legacy_gt_crop: pred {tuple(p.shape)} and gt {tuple(g.shape)} differ")
    from scipy import ndimage

    dil = ndimage.binary_dilation(g.cpu().numpy(), structure=np.ones((kernel, kernel), bool), iterations=iterations)
    return p & torch.from_numpy(dil).to(p.device)


def evaluate_clusters(
    labels, gt, legacy_gt_crop_eval: bool = False, legacy_exclude_zero: bool = False
) -> dict[str, torch.Tensor]:
    """Paper's protocol on one map or a batch: best-overlap cluster, then DSC, HM, XOR per image.

    ``labels`` ``(H, W)`` or ``(B, H, W)`` cluster ids, ``gt`` the same shape. Returns
    ``{"dsc", "hm", "xor", "cluster"}`` tensors of shape ``(B,)`` (fractions; ×100 for
    MS-Former Table 1). ``legacy_gt_crop_eval=True`` applies :func:`legacy_gt_crop` to the chosen cluster.
    An image with an empty ground truth gets an empty prediction and NaN scores (undefined,
    ``ignore_empty`` of :mod:`mslib.metrics`; :func:`mslib.metrics.summarize` skips them).
    """
    lab, g = torch.as_tensor(labels), metrics.binarize_target(gt)
    if lab.dim() == 2:
        lab, g = lab[None], g[None]
    if lab.shape != g.shape or lab.dim() != 3:
        raise ValueError(
            f"evaluate_clusters: labels {tuple(lab.shape)} and gt {tuple(g.shape)} must both be (H, W) or (B, H, W)"
        )
    preds, ids = [], []
    for li, gi in zip(lab, g):
        m, cid = best_overlap_cluster(li, gi, legacy_exclude_zero)
        if legacy_gt_crop_eval:
            m = legacy_gt_crop(m, gi)
        preds.append(m)
        ids.append(cid)
    pred = torch.stack(preds)
    return {
        "dsc": metrics.dice(pred, g),
        "hm": metrics.hammoude_distance(pred, g),
        "xor": metrics.xor_error(pred, g),
        "cluster": torch.tensor(ids),
    }
