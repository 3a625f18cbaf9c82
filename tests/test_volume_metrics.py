"""Per-volume Dice/HD95 (MCSC protocol): conventions, units, means over volumes then classes."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from mslib.volume_metrics import evaluate_volumes, predict_volume, summarize_volumes, volume_scores


def _vol():
    gt = np.zeros((3, 12, 12), np.int64)
    gt[:, 2:6, 2:6] = 1
    gt[1, 7:10, 7:10] = 2
    pred = gt.copy()
    pred[:, 2:6, 6] = 1  # class 1: one extra column
    return pred, gt


def test_dice_by_hand_and_absent_class_nan():
    pred, gt = _vol()
    s = volume_scores(pred, gt, 4)
    # class 1: |G| = 48, |A| = 60, overlap 48 -> 96 / 108
    assert s["dice"][0] == pytest.approx(96 / 108)
    assert s["dice"][1] == pytest.approx(1.0) and s["hd95"][1] == 0.0
    assert math.isnan(s["dice"][2]) and math.isnan(s["hd95"][2])  # class 3 absent from both


def test_hd95_against_direct_surface_distances_with_spacing():
    pred, gt = _vol()
    spacing = (10.0, 1.5, 1.5)
    s = volume_scores(pred, gt, 4, spacing=spacing)

    def surface(m):
        return m & ~ndimage.binary_erosion(m, ndimage.generate_binary_structure(3, 1))

    a, g = pred == 1, gt == 1
    d1 = ndimage.distance_transform_edt(~surface(g), sampling=spacing)[surface(a)]
    d2 = ndimage.distance_transform_edt(~surface(a), sampling=spacing)[surface(g)]
    assert s["hd95"][0] == pytest.approx(np.percentile(np.concatenate([d1, d2]), 95), rel=1e-5)
    px = volume_scores(pred, gt, 4)  # voxel units
    assert px["hd95"][0] != pytest.approx(s["hd95"][0])


def test_empty_prediction_conventions():
    _, gt = _vol()
    pred = gt.copy()
    pred[pred == 2] = 0  # class 2 missed
    pred[0, 0, 0] = 3  # class 3 hallucinated
    s = volume_scores(pred, gt, 4)
    diag = math.sqrt(3**2 + 12**2 + 12**2)
    assert s["dice"][1] == 0 and s["hd95"][1] == pytest.approx(diag)
    assert s["dice"][2] == 0 and s["hd95"][2] == pytest.approx(diag)
    inf = volume_scores(pred, gt, 4, empty_hd95=math.inf)
    assert math.isinf(inf["hd95"][1])
    off = volume_scores(pred, gt, 4, legacy_official=True)
    assert off["dice"][1] == 0 and off["hd95"][1] == 0  # official: empty prediction -> HD95 0
    assert off["dice"][2] == 1 and off["hd95"][2] == 0  # prediction without ground truth -> (1, 0)
    both = volume_scores(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), 2, legacy_official=True)
    assert both["dice"][0] == 0 and both["hd95"][0] == 0


def test_summary_mean_over_volumes_then_classes():
    a = {"dice": np.array([0.5, np.nan]), "hd95": np.array([2.0, np.nan])}
    b = {"dice": np.array([1.0, 0.2]), "hd95": np.array([0.0, 4.0])}
    out = summarize_volumes([a, b], ["RV", "Myo"])
    assert out["dice"] == {"RV": 0.75, "Myo": pytest.approx(0.2)}
    assert out["mean_dice"] == pytest.approx((0.75 + 0.2) / 2)
    assert out["mean_hd95"] == pytest.approx((1.0 + 4.0) / 2)


class _Oracle(torch.nn.Module):
    """Returns one-hot logits of a fixed label volume (resized like the inputs)."""

    def __init__(self, labels):
        super().__init__()
        self.labels, self.w = labels, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        y = torch.nn.functional.interpolate(self.labels[:, None].float(), size=x.shape[-2:], mode="nearest")[:, 0]
        return torch.nn.functional.one_hot(y.long(), 4).permute(0, 3, 1, 2).float()


def test_predict_and_evaluate_volumes():
    _, gt = _vol()
    lab = torch.from_numpy(gt)
    model = _Oracle(lab)
    pred = predict_volume(model, torch.zeros(3, 1, 12, 12), size=24)
    assert torch.equal(pred, lab)

    class Vols:
        classes, num_classes, names = ["bg", "a", "b", "c"], 4, ["v0"]
        spacing = {"v0": [10.0, 1.5, 1.5]}

        def __len__(self):
            return 1

        def __getitem__(self, i):
            return torch.zeros(3, 1, 12, 12), lab, "v0"

    out = evaluate_volumes(model, Vols())
    assert out["dice"]["a"] == 1.0 and math.isnan(out["dice"]["c"]) and out["mean_dice"] == 1.0
