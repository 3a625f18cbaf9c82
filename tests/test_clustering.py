"""Cluster-based evaluation (MS-Former Sec. 3.1) and the k-means baseline (Table 1)."""

import numpy as np
import pytest
import torch

from mslib.clustering import best_overlap_cluster, evaluate_clusters, kmeans_labels, legacy_gt_crop


def _toy():
    g = torch.zeros(10, 10, dtype=torch.long)
    g[2:8, 2:8] = 1
    a = torch.zeros(10, 10, dtype=torch.long)
    a[3:9, 3:9] = 1
    return a, g


def test_toy_masks_paper_metrics():
    """10x10, G = [2:8, 2:8], A = [3:9, 3:9]: DSC 0.6944, HM 0.4681, XOR 0.6111 (notes §3)."""
    a, g = _toy()
    labels = torch.where(a.bool(), 5, 2)  # prediction is cluster 5
    r = evaluate_clusters(labels, g)
    assert r["cluster"].tolist() == [5]
    assert r["dsc"].item() == pytest.approx(50 / 72, abs=1e-4)  # 0.6944
    assert r["hm"].item() == pytest.approx(1 - 25 / 47, abs=1e-4)  # 0.4681
    assert r["xor"].item() == pytest.approx(22 / 36, abs=1e-4)  # 0.6111
    assert round(r["dsc"].item(), 4) == 0.6944 and round(r["hm"].item(), 4) == 0.4681
    assert round(r["xor"].item(), 4) == 0.6111


def test_hm_dice_identity_random_pairs():
    rng = np.random.default_rng(0)
    for _ in range(20):
        lab = torch.from_numpy(rng.integers(0, 4, (12, 12)))
        gt = torch.from_numpy(rng.random((12, 12)) < 0.4)
        r = evaluate_clusters(lab, gt)
        d = r["dsc"].item()
        assert r["hm"].item() == pytest.approx(2 * (1 - d) / (2 - d), abs=1e-6)


def test_cluster_zero_can_be_chosen_and_legacy_excludes_it():
    a, g = _toy()
    labels = torch.where(a.bool(), 0, 1)  # the lesion-like cluster is id 0
    mask, cid = best_overlap_cluster(labels, g)
    assert cid == 0 and torch.equal(mask, a.bool())
    _, cid_legacy = best_overlap_cluster(labels, g, legacy_exclude_zero=True)
    assert cid_legacy == 1
    assert (
        evaluate_clusters(labels, g)["dsc"].item()
        > evaluate_clusters(labels, g, legacy_exclude_zero=True)["dsc"].item()
    )


def test_best_overlap_counts_pixels_inside_gt():
    g = torch.zeros(6, 6, dtype=torch.bool)
    g[:, :3] = True  # 18 GT pixels
    lab = torch.full((6, 6), 2)
    lab[:4, :3] = 7  # 12 GT pixels in cluster 7, 6 in cluster 2
    assert best_overlap_cluster(lab, g)[1] == 7
    empty_mask, cid = best_overlap_cluster(lab, torch.zeros(6, 6))
    assert cid == -1 and not empty_mask.any()
    with pytest.raises(ValueError, match="integer"):
        best_overlap_cluster(lab.float(), g)


def test_legacy_crop_only_removes_false_positives():
    rng = np.random.default_rng(1)
    g = torch.zeros(60, 60, dtype=torch.bool)
    g[25:35, 25:35] = True
    pred = torch.from_numpy(rng.random((60, 60)) < 0.5) | g
    cropped = legacy_gt_crop(pred, g)
    assert not (cropped & ~pred).any()  # nothing added
    assert torch.equal(cropped & g, pred & g)  # true positives kept
    assert (pred & ~cropped).sum() > 0  # far false positives removed
    # what survives lies within 2 * 3 = 6 px (Chebyshev) of the GT
    ys, xs = torch.nonzero(cropped, as_tuple=True)
    assert ys.min() >= 19 and ys.max() <= 40 and xs.min() >= 19 and xs.max() <= 40
    assert cropped[19, 19] == pred[19, 19]
    r_off = evaluate_clusters(pred.long(), g)
    r_on = evaluate_clusters(pred.long(), g, legacy_gt_crop_eval=True)
    assert r_on["dsc"].item() > r_off["dsc"].item()


def test_kmeans_separates_colours_and_is_seeded():
    rng = np.random.default_rng(0)
    img = np.zeros((20, 20, 3), np.uint8) + np.array([200, 170, 150], np.uint8)
    img[5:15, 5:15] = [80, 50, 30]
    img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    lab = kmeans_labels(img, k=2, seed=0)
    assert lab.shape == (20, 20) and lab.dtype == torch.int64
    gt = torch.zeros(20, 20)
    gt[5:15, 5:15] = 1
    assert evaluate_clusters(lab, gt)["dsc"].item() == pytest.approx(1.0)
    assert torch.equal(kmeans_labels(img, 3, seed=4), kmeans_labels(img, 3, seed=4))
    # channels-first tensor input gives the same clustering
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    assert evaluate_clusters(kmeans_labels(t, 2, seed=0), gt)["dsc"].item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be"):
        kmeans_labels(img, 0)
