"""Tests of mslib.metrics: hand-computed values, independent computations, reference libraries."""

from __future__ import annotations

import math

import numpy as np
import py_sod_metrics as sod
import pytest
import torch
from scipy.spatial.distance import cdist

import mslib.metrics as M

OVERLAP = [M.dice, M.iou, M.precision, M.recall, M.specificity, M.accuracy, M.hammoude_distance, M.xor_error]


def squares():
    """MS-Former toy pair: G = 1 on [2:8, 2:8], A = 1 on [3:9, 3:9] in a 10x10 image."""
    g = torch.zeros(10, 10)
    g[2:8, 2:8] = 1
    a = torch.zeros(10, 10)
    a[3:9, 3:9] = 1
    return a, g


def random_masks(rng, n, shape, p_lo=0.2, p_hi=0.7):
    """n random binary masks with blob-like and scattered structure, none empty."""
    out = []
    for _ in range(n):
        m = rng.random(shape) < rng.uniform(p_lo, p_hi)
        r0, c0 = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
        m[r0 : r0 + shape[0] // 3, c0 : c0 + shape[1] // 3] = True
        out.append(m)
    return np.stack(out)


# ----------------------------------------------------------------------------- overlap


def test_ms_former_toy_squares_hand_values():
    a, g = squares()
    # |A| = |G| = 36, |A∩G| = 25 (5x5), |A∪G| = 47, N = 100
    torch.testing.assert_close(M.dice(a, g), torch.tensor([50 / 72]))
    assert round(M.dice(a, g).item(), 4) == 0.6944
    assert round(M.hammoude_distance(a, g).item(), 4) == 0.4681
    assert round(M.xor_error(a, g).item(), 4) == 0.6111
    torch.testing.assert_close(M.iou(a, g), torch.tensor([25 / 47]))
    torch.testing.assert_close(M.specificity(a, g), torch.tensor([53 / 64]))
    torch.testing.assert_close(M.accuracy(a, g), torch.tensor([78 / 100]))


def test_precision_recall_specificity_hand_example():
    g = torch.zeros(4, 4, dtype=torch.long)
    g[0:2] = 1  # 8 pixels
    a = torch.zeros(4, 4, dtype=torch.long)
    a[0] = 1
    a[2, 0:2] = 1  # 6 pixels: TP 4, FP 2, FN 4, TN 6
    torch.testing.assert_close(M.precision(a, g), torch.tensor([4 / 6]))
    torch.testing.assert_close(M.recall(a, g), torch.tensor([4 / 8]))
    torch.testing.assert_close(M.sensitivity(a, g), torch.tensor([4 / 8]))
    torch.testing.assert_close(M.specificity(a, g), torch.tensor([6 / 8]))
    torch.testing.assert_close(M.accuracy(a, g), torch.tensor([10 / 16]))
    torch.testing.assert_close(M.dice(a, g), torch.tensor([8 / 14]))
    torch.testing.assert_close(M.jaccard(a, g), torch.tensor([4 / 10]))
    torch.testing.assert_close(M.xor_error(a, g), torch.tensor([6 / 8]))


def test_overlap_identities_on_random_pairs():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(random_masks(rng, 30, (9, 11)))
    g = torch.from_numpy(random_masks(rng, 30, (9, 11)))
    d, j = M.dice(a, g).double(), M.iou(a, g).double()
    hm, xor = M.hammoude_distance(a, g).double(), M.xor_error(a, g).double()
    union = (a | g).flatten(1).sum(1).double()
    inter = (a & g).flatten(1).sum(1).double()
    size_g = g.flatten(1).sum(1).double()
    torch.testing.assert_close(hm, 2 * (1 - d) / (2 - d), atol=1e-6, rtol=0)
    torch.testing.assert_close(hm, 1 - j, atol=1e-6, rtol=0)
    torch.testing.assert_close(d, 2 * j / (1 + j), atol=1e-6, rtol=0)
    torch.testing.assert_close(xor, hm * union / size_g, atol=1e-6, rtol=0)
    torch.testing.assert_close(j, inter / union, atol=1e-6, rtol=0)
    assert (xor > 1).any(), "XOR is unbounded: some random pairs must exceed 1"


def test_batched_equals_per_image_and_numpy_input():
    rng = np.random.default_rng(1)
    p = torch.from_numpy(rng.random((5, 8, 7)).astype(np.float32))
    g = torch.from_numpy(random_masks(rng, 5, (8, 7)).astype(np.uint8))
    for fn in OVERLAP + [M.hd95, M.mae, M.s_measure, M.e_measure, M.weighted_f_measure]:
        batch = fn(p, g)
        assert batch.shape == (5,) and batch.dtype == torch.float32, fn.__name__
        single = torch.cat([fn(p[i], g[i]) for i in range(5)])
        torch.testing.assert_close(batch, single, msg=fn.__name__)
        torch.testing.assert_close(fn(p.numpy(), g.numpy()), batch, msg=fn.__name__)
    assert M.dice(p[0], g[0]).shape == (1,)


def test_threshold_is_strict_and_configurable():
    g = torch.tensor([[1, 1, 0, 0]])
    p = torch.tensor([[0.5, 0.51, 0.3, 0.0]])
    # p > 0.5 -> [0, 1, 0, 0]: TP 1, FP 0, FN 1
    torch.testing.assert_close(M.dice(p, g), torch.tensor([2 / 3]))
    # p > 0.25 -> [1, 1, 1, 0]: TP 2, FP 1
    torch.testing.assert_close(M.dice(p, g, threshold=0.25), torch.tensor([4 / 5]))
    # bool and integer masks are used as given
    torch.testing.assert_close(M.dice(g.bool(), g), torch.tensor([1.0]))


def test_volumes_with_spatial_dims_3():
    rng = np.random.default_rng(2)
    a = torch.from_numpy(random_masks(rng, 4, (5, 6)))  # a (D, H, W) volume
    g = torch.from_numpy(random_masks(rng, 4, (5, 6)))
    per_volume = M.dice(a, g, spatial_dims=3)
    assert per_volume.shape == (1,)
    inter = (a & g).sum().item()
    torch.testing.assert_close(per_volume, torch.tensor([2 * inter / (a.sum() + g.sum()).item()]))
    assert M.dice(a, g).shape == (4,)  # the same tensor read as 4 slices
    assert M.dice(a[None], g[None], spatial_dims=3).shape == (1,)


# ----------------------------------------------------------------------------- empty masks

E = torch.zeros(1, 6, 6)
F_ = torch.ones(1, 6, 6)
HALF = torch.zeros(1, 6, 6)
HALF[:, :3] = 1


@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        (E, E, dict(dice=1, iou=1, precision=1, recall=1, specificity=1, accuracy=1, hammoude_distance=0, xor_error=0)),
        (
            E,
            HALF,
            dict(dice=0, iou=0, precision=0, recall=0, specificity=1, accuracy=0.5, hammoude_distance=1, xor_error=1),
        ),
        (
            HALF,
            E,
            dict(
                dice=0,
                iou=0,
                precision=0,
                recall=0,
                specificity=0.5,
                accuracy=0.5,
                hammoude_distance=1,
                xor_error=math.inf,
            ),
        ),
        (
            F_,
            F_,
            dict(dice=1, iou=1, precision=1, recall=1, specificity=1, accuracy=1, hammoude_distance=0, xor_error=0),
        ),
        (
            HALF,
            F_,
            dict(
                dice=2 / 3,
                iou=0.5,
                precision=1,
                recall=0.5,
                specificity=0,
                accuracy=0.5,
                hammoude_distance=0.5,
                xor_error=0.5,
            ),
        ),
    ],
    ids=["both-empty", "empty-pred", "empty-gt", "both-full", "full-gt"],
)
def test_empty_and_full_mask_conventions(pred, gt, expected):
    for name, value in expected.items():
        got = getattr(M, name)(pred, gt, ignore_empty=False)
        assert not torch.isnan(got).any(), name
        assert got.item() == pytest.approx(value), name


def test_zero_division_override_reproduces_mcsc_empty_prediction():
    assert M.dice(E, E, ignore_empty=False, zero_division=0.0).item() == 0.0
    assert M.iou(E, E, ignore_empty=False, zero_division=0.0).item() == 0.0
    assert math.isnan(M.dice(E, E, zero_division=0.0).item())  # ignore_empty comes first
    assert M.xor_error(HALF, E, zero_division=0.0).item() == 0.0
    assert M.precision(E, HALF, zero_division=0.25).item() == 0.25
    # a non-degenerate pair ignores zero_division
    assert M.dice(HALF, HALF, zero_division=0.0).item() == 1.0


# ----------------------------------------------------------------------------- soft Dice (M2SNet official)


def test_soft_dice_official_evaluation():
    g = torch.zeros(2, 8, 8)
    g[0, 2:6, 2:6] = 1
    g[1, :2] = 1
    n, size_g = 64, g.flatten(1).sum(1)
    torch.testing.assert_close(M.dice(g, g, soft=True, minmax=True), torch.ones(2))
    half = torch.full_like(g, 0.5)
    expected = size_g / (size_g + 0.5 * n)  # smoothing 1e-5 is negligible at this tolerance
    torch.testing.assert_close(M.dice(half, g, soft=True), expected, atol=1e-6, rtol=0)
    # min-max leaves a constant map unchanged
    torch.testing.assert_close(M.dice(half, g, soft=True, minmax=True), expected, atol=1e-6, rtol=0)
    # min-max stretches 0.2 + 0.6 g back to g; without it the soft sums differ
    squeezed = 0.2 + 0.6 * g
    torch.testing.assert_close(M.dice(squeezed, g, soft=True, minmax=True), torch.ones(2))
    raw = (2 * 0.8 * size_g + 1e-5) / (size_g + 0.8 * size_g + 0.2 * (n - size_g) + 1e-5)
    torch.testing.assert_close(M.dice(squeezed, g, soft=True), raw)


def test_soft_dice_matches_direct_numpy_computation():
    rng = np.random.default_rng(3)
    p = rng.random((4, 9, 9)) * 0.7 + 0.1
    g = random_masks(rng, 4, (9, 9))
    for minmax in (False, True):
        expected = []
        for pi, gi in zip(p, g):
            if minmax:
                pi = (pi - pi.min()) / (pi.max() - pi.min())
            expected.append((2 * (pi * gi).sum() + 1e-5) / (gi.sum() + pi.sum() + 1e-5))
        got = M.dice(p, g, soft=True, minmax=minmax)
        torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32))


# ----------------------------------------------------------------------------- multi-class


def test_multiclass_is_per_class_binary():
    rng = np.random.default_rng(4)
    pred = torch.from_numpy(rng.integers(0, 4, (3, 12, 12)))
    gt = torch.from_numpy(rng.integers(0, 4, (3, 12, 12)))
    gt[0][gt[0] == 2] = 0  # class 2 absent from image 0
    pred[0][pred[0] == 2] = 0  # ... and not predicted: per-class both-empty case
    for fn in OVERLAP + [M.hd95]:
        per_class = fn(pred, gt, num_classes=4)
        assert per_class.shape == (3, 3), fn.__name__
        direct = torch.stack([fn(pred == k, gt == k) for k in (1, 2, 3)], dim=1)
        torch.testing.assert_close(per_class, direct, equal_nan=True, msg=fn.__name__)
        with_bg = fn(pred, gt, num_classes=4, include_background=True)
        assert with_bg.shape == (3, 4)
        torch.testing.assert_close(with_bg[:, 0], fn(pred == 0, gt == 0), equal_nan=True, msg=fn.__name__)
        torch.testing.assert_close(fn(pred, gt, num_classes=4, reduction="mean"), direct.nanmean(1), msg=fn.__name__)
    assert math.isnan(M.dice(pred, gt, num_classes=4)[0, 1].item())  # absent from both: undefined
    assert M.dice(pred, gt, num_classes=4, ignore_empty=False)[0, 1].item() == 1.0


def test_multiclass_bad_labels_raise_clear_errors():
    lab = torch.randint(0, 3, (2, 5, 5))
    with pytest.raises(ValueError, match="outside \\[0, 2\\]"):
        M.dice(lab + 1, lab, num_classes=3)
    with pytest.raises(TypeError, match="argmax"):
        M.dice(lab.float(), lab, num_classes=3)
    with pytest.raises(ValueError, match="num_classes must be"):
        M.dice(lab, lab, num_classes=1)
    with pytest.raises(ValueError, match="reduction"):
        M.iou(lab, lab, num_classes=3, reduction="sum")


def test_bad_inputs_raise_clear_errors():
    g = torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="sigmoid"):
        M.dice(torch.randn(2, 4, 4) * 5, g)
    with pytest.raises(ValueError, match="num_classes"):
        M.iou(torch.full((2, 4, 4), 2), g)
    with pytest.raises(ValueError, match="mask > 127"):
        M.dice(g, torch.full((2, 4, 4), 255, dtype=torch.uint8))
    with pytest.raises(ValueError, match="same shape"):
        M.dice(torch.zeros(2, 1, 4, 4), g)
    with pytest.raises(ValueError, match="shape"):
        M.dice(torch.zeros(4), torch.zeros(4))
    with pytest.raises(TypeError, match="pred must be"):
        M.dice([[0, 1]], [[0, 1]])
    with pytest.raises(ValueError, match="soft=True"):
        M.dice(g, g, minmax=True)
    with pytest.raises(ValueError, match="mode"):
        M.e_measure(g, g, mode="median")
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(g, g, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="sigmoid"):
        M.s_measure(torch.full((4, 4), float("nan")), torch.zeros(4, 4))


def test_inputs_are_detached():
    p = torch.rand(2, 6, 6, requires_grad=True)
    g = (torch.rand(2, 6, 6) > 0.5).float()
    for fn in (M.dice, M.hd95, M.mae):
        assert not fn(p, g).requires_grad
    assert not M.dice(p, g, soft=True).requires_grad


# ----------------------------------------------------------------------------- saliency vs pysodmetrics


def _sod_reference(p: np.ndarray, g: np.ndarray, normalize: bool = False) -> dict:
    """pysodmetrics' per-image values; p, g as its normalize flag expects."""
    mae, sm, em, wfm = sod.MAE(), sod.Smeasure(), sod.Emeasure(), sod.WeightedFmeasure()
    for m in (mae, sm, em, wfm):
        m.step(p, g, normalize=normalize)
    e = em.get_results()["em"]
    return dict(
        mae=mae.get_results()["mae"],
        sm=sm.get_results()["sm"],
        em_adp=e["adp"],
        em_curve=e["curve"],
        wfm=wfm.get_results()["wfm"],
    )


def _ours(p, g, minmax=False) -> dict:
    return dict(
        mae=M.mae(p, g, minmax=minmax),
        sm=M.s_measure(p, g, minmax=minmax),
        em_adp=M.e_measure(p, g, mode="adaptive", minmax=minmax),
        em_max=M.e_measure(p, g, mode="max", minmax=minmax),
        em_mean=M.e_measure(p, g, mode="mean", minmax=minmax),
        em_curve=M.e_measure(p, g, mode="curve", minmax=minmax),
        wfm=M.weighted_f_measure(p, g, minmax=minmax),
    )


def _compare(ours: dict, refs: list[dict]):
    for i, ref in enumerate(refs):
        for key in ("mae", "sm", "em_adp", "wfm"):
            assert ours[key][i].item() == pytest.approx(ref[key], abs=1e-6), (i, key)
        curve = ref["em_curve"][::-1]  # pysodmetrics: index 0 is threshold 255
        np.testing.assert_allclose(ours["em_curve"][i].numpy(), curve, atol=1e-6, rtol=0)
        assert ours["em_max"][i].item() == pytest.approx(curve.max(), abs=1e-6)
        assert ours["em_mean"][i].item() == pytest.approx(curve.mean(), abs=1e-6)


def _smooth_pair(rng, shape):
    """A blob-shaped GT and a noisy, blurred prediction of it."""
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    g = field > np.quantile(field, rng.uniform(0.5, 0.9))
    p = np.clip(ndimage.gaussian_filter(g.astype(float), 1.5) + 0.2 * rng.standard_normal(shape), 0, 1)
    return p, g


def test_saliency_metrics_match_pysodmetrics_on_random_maps():
    rng = np.random.default_rng(5)
    for shape in [(24, 31), (17, 17)]:
        pairs = [_smooth_pair(rng, shape) for _ in range(4)]
        pairs.append((rng.random(shape), rng.random(shape) > 0.6))
        p = np.stack([q for q, _ in pairs])
        g = np.stack([h for _, h in pairs])
        _compare(_ours(p, g), [_sod_reference(pi, gi) for pi, gi in zip(p, g)])


def test_saliency_metrics_match_pysodmetrics_uint8_api_with_minmax():
    rng = np.random.default_rng(6)
    p8 = np.stack([(255 * _smooth_pair(rng, (20, 26))[0]).astype(np.uint8) for _ in range(3)])
    p8[2] = (p8[2] // 2) + 40  # a map that does not span 0..255: min-max matters
    g8 = (rng.random((3, 20, 26)) > 0.7).astype(np.uint8) * 255
    refs = [_sod_reference(pi, gi, normalize=True) for pi, gi in zip(p8, g8)]
    _compare(_ours(p8 / 255.0, g8 > 128, minmax=True), refs)
    assert abs(M.mae(p8 / 255.0, g8 > 128)[2].item() - refs[2]["mae"]) > 1e-3  # minmax made a difference


@pytest.mark.parametrize(
    "case",
    [
        "empty-gt",
        "full-gt",
        "const-0",
        "const-0.5",
        "const-1",
        "pred=gt",
        "const-empty-gt",
        "one-pixel-gt",
        "binary-pred",
    ],
)
def test_saliency_edge_cases_match_pysodmetrics(case):
    rng = np.random.default_rng(7)
    shape = (16, 19)
    p, g = rng.random(shape), rng.random(shape) > 0.5
    if case == "empty-gt":
        g[:] = False
    elif case == "full-gt":
        g[:] = True
    elif case.startswith("const-"):
        p[:] = {"const-0": 0.0, "const-0.5": 0.5, "const-1": 1.0, "const-empty-gt": 0.3}[case]
        if case == "const-empty-gt":
            g[:] = False
    elif case == "pred=gt":
        p = g.astype(np.float64)
    elif case == "one-pixel-gt":
        g[:] = False
        g[0, 0] = True
    elif case == "binary-pred":
        p = rng.random(shape) > 0.4
    ours = _ours(p, g)
    for key, v in ours.items():
        assert torch.isfinite(v).all(), (case, key)
    ref_p = p.astype(np.float64)
    _compare(ours, [_sod_reference(ref_p, g)])
    # the min-max path leaves constant maps unchanged, as pysodmetrics does
    if case.startswith("const-"):
        _compare(_ours(p, g, minmax=True), [_sod_reference(ref_p, g)])


def test_s_measure_hand_values_and_perfect_prediction():
    g = np.zeros((8, 8), bool)
    g[2:6, 2:6] = True
    assert M.s_measure(g.astype(float), g).item() == pytest.approx(1.0, abs=1e-6)
    assert M.s_measure(np.full((8, 8), 0.25), np.zeros((8, 8), bool)).item() == pytest.approx(0.75)
    assert M.s_measure(np.full((8, 8), 0.25), np.ones((8, 8), bool)).item() == pytest.approx(0.25)
    assert M.mae(np.full((8, 8), 0.25), g).item() == pytest.approx((16 * 0.75 + 48 * 0.25) / 64)
    # E-measure of a perfect binary map: every pixel aligned, sum N over N - 1
    assert M.e_measure(g.astype(float), g, mode="adaptive").item() == pytest.approx(64 / 63)
    assert M.weighted_f_measure(g.astype(float), g).item() == pytest.approx(1.0, abs=1e-6)
    # empty GT: E_φ counts the predicted background: the adaptive threshold 2·mean = 0.45
    # keeps the 16 pixels of g as foreground, 48 of 64 are background
    empty = np.zeros((8, 8), bool)
    assert M.e_measure(g * 0.9, empty, mode="adaptive").item() == pytest.approx(48 / 63)
    assert M.e_measure(g * 0.9, ~empty, mode="adaptive").item() == pytest.approx(16 / 63)


def test_s_measure_centroid_on_last_column_is_finite_unlike_toolbox():
    rng = np.random.default_rng(8)
    p = rng.random((8, 8))
    g = np.zeros((8, 8), bool)
    g[:, 7] = True  # centroid column 7 -> split at 8: the right quadrants are empty
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        assert math.isnan(_sod_reference(p, g)["sm"])
    ref = sod.Smeasure()
    ssim = ref.ssim
    ref.ssim = lambda a, b: 0.0 if a.size == 0 else ssim(a, b)  # empty quadrant scores 0
    assert M.s_measure(p, g).item() == pytest.approx(ref.cal_sm(p, g), abs=1e-6)


# ----------------------------------------------------------------------------- distances


def _boundary(m: np.ndarray) -> np.ndarray:
    """Pixels of m with a 4-/6-neighbour outside m (outside the image counts as outside)."""
    pad = np.pad(m, 1)
    inner = pad.copy()
    for axis in range(m.ndim):
        for shift in (1, -1):
            inner &= np.roll(pad, shift, axis=axis)
    return m & ~inner[tuple(slice(1, -1) for _ in range(m.ndim))]


def _brute_force(a, g, spacing, q):
    pa = np.argwhere(_boundary(a)) * np.asarray(spacing)
    pg = np.argwhere(_boundary(g)) * np.asarray(spacing)
    d = cdist(pa, pg)
    directed = np.concatenate([d.min(axis=1), d.min(axis=0)])
    return np.percentile(directed, q)


@pytest.mark.parametrize("spacing", [None, (2.0, 0.5)])
def test_hausdorff_and_hd95_match_brute_force(spacing):
    rng = np.random.default_rng(9)
    a = random_masks(rng, 12, (13, 15), 0.05, 0.3)
    g = random_masks(rng, 12, (13, 15), 0.05, 0.3)
    sp = spacing or (1.0, 1.0)
    hd = M.hausdorff(a, g, spacing=spacing)
    h95 = M.hd95(a, g, spacing=spacing)
    h50 = M.hausdorff(a, g, spacing=spacing, percentile=50)
    for i in range(12):
        assert hd[i].item() == pytest.approx(_brute_force(a[i], g[i], sp, 100), abs=1e-5)
        assert h95[i].item() == pytest.approx(_brute_force(a[i], g[i], sp, 95), abs=1e-5)
        assert h50[i].item() == pytest.approx(_brute_force(a[i], g[i], sp, 50), abs=1e-5)
    assert (h95 <= hd).all()


def test_hausdorff_hand_values():
    a = torch.zeros(9, 9, dtype=torch.bool)
    g = torch.zeros(9, 9, dtype=torch.bool)
    a[1, 2] = True
    g[5, 6] = True  # single pixels: the Euclidean distance between them
    assert M.hausdorff(a, g).item() == pytest.approx(math.hypot(4, 4))
    assert M.hd95(a, g).item() == pytest.approx(math.hypot(4, 4))
    assert M.hausdorff(a, g, spacing=(0.5, 3.0)).item() == pytest.approx(math.hypot(2, 12))
    sq_a, sq_g = squares()
    assert M.hausdorff(sq_a, sq_g).item() == pytest.approx(math.sqrt(2))  # corner (8,8) to (7,7)
    assert M.hausdorff(sq_g, sq_g).item() == 0.0


def test_hausdorff_empty_conventions():
    e = torch.zeros(1, 7, 7)
    m = torch.zeros(1, 7, 7)
    m[0, 3, 3] = 1
    assert math.isnan(M.hd95(e, e).item())  # absent from both: undefined (ignore_empty)
    assert M.hd95(e, e, ignore_empty=False).item() == 0.0
    assert M.hd95(e, m).item() == math.inf
    assert M.hd95(m, e).item() == math.inf
    assert M.hd95(e, m, empty_value=0.0).item() == 0.0  # MCSC official test
    assert math.isnan(M.hausdorff(m, e, empty_value=math.nan).item())


def test_hausdorff_3d_volumes_match_brute_force():
    rng = np.random.default_rng(10)
    a = random_masks(rng, 5, (6, 7))[None]  # one (5, 6, 7) volume
    g = random_masks(rng, 5, (6, 7))[None]
    spacing = (3.0, 1.0, 0.5)
    got = M.hd95(a, g, spacing=spacing, spatial_dims=3)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(_brute_force(a[0], g[0], spacing, 95), abs=1e-5)


def test_hausdorff_matches_medpy():
    binary = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(11)
    a = random_masks(rng, 6, (20, 18), 0.05, 0.3)
    g = random_masks(rng, 6, (20, 18), 0.05, 0.3)
    hd, h95 = M.hausdorff(a, g, spacing=(1.5, 0.7)), M.hd95(a, g, spacing=(1.5, 0.7))
    dsc, jc = M.dice(a, g), M.iou(a, g)
    for i in range(6):
        assert dsc[i].item() == pytest.approx(binary.dc(a[i], g[i]), abs=1e-6)
        assert jc[i].item() == pytest.approx(binary.jc(a[i], g[i]), abs=1e-6)
        assert hd[i].item() == pytest.approx(binary.hd(a[i], g[i], voxelspacing=(1.5, 0.7)), abs=1e-5)
        assert h95[i].item() == pytest.approx(binary.hd95(a[i], g[i], voxelspacing=(1.5, 0.7)), abs=1e-5)
    vol_a, vol_g = random_masks(rng, 4, (9, 9), 0.1, 0.3), random_masks(rng, 4, (9, 9), 0.1, 0.3)
    got = M.hd95(vol_a, vol_g, spatial_dims=3, connectivity=2).item()
    assert got == pytest.approx(binary.hd95(vol_a, vol_g, connectivity=2), abs=1e-5)


# ----------------------------------------------------------------------------- summaries


def test_summarize_and_tracker():
    a, g = squares()
    tracker = M.MetricTracker()
    tracker.update(dice=M.dice(a, g), iou=M.iou(a, g))
    tracker.update(dice=M.dice(g, g), iou=M.iou(g, g))
    assert len(tracker) == 2
    out = tracker.compute()
    assert out["dice"] == pytest.approx((50 / 72 + 1) / 2)
    assert out["iou"] == pytest.approx((25 / 47 + 1) / 2)
    assert M.summarize({"pc": torch.tensor([[1.0, 0.0], [0.5, 0.5]])}) == {"pc": 0.5}
    with pytest.warns(UserWarning, match="xor"):
        assert M.summarize({"xor": M.xor_error(torch.ones(1, 3, 3), torch.zeros(1, 3, 3))})["xor"] == math.inf
    tracker.reset()
    assert len(tracker) == 0


# ----------------------------------------------------------------------------- ignore_empty


@pytest.mark.parametrize("fn", OVERLAP, ids=lambda f: f.__name__)
def test_ignore_empty_makes_both_empty_nan_for_every_overlap_metric(fn):
    assert math.isnan(fn(E, E).item())
    assert not math.isnan(fn(E, E, ignore_empty=False).item())
    # defined cases are untouched by ignore_empty
    for a, g in ((E, HALF), (HALF, F_), (F_, F_)):
        torch.testing.assert_close(fn(a, g), fn(a, g, ignore_empty=False), equal_nan=True)


def test_multiclass_dice_skips_a_class_absent_from_both():
    """Issue 12's example: one class scored 2/3, the other two absent from both -> 0.667, not 0.889."""
    gt = torch.zeros(1, 4, 4, dtype=torch.int64)
    pred = torch.zeros(1, 4, 4, dtype=torch.int64)
    gt[0, 0, :2] = 1  # class 1: |G| = 2
    pred[0, 0, :1] = 1  # |A| = 1, |A∩G| = 1 -> Dice 2*1/(1+2) = 2/3; classes 2, 3 absent
    got = M.dice(pred, gt, num_classes=4, reduction="mean")
    assert got.item() == pytest.approx(2 / 3)
    old = M.dice(pred, gt, num_classes=4, reduction="mean", ignore_empty=False)
    assert old.item() == pytest.approx((2 / 3 + 1 + 1) / 3)  # the old, inflated 0.889
    per_class = M.dice(pred, gt, num_classes=4)
    assert per_class[0, 0].item() == pytest.approx(2 / 3) and torch.isnan(per_class[0, 1:]).all()


def test_image_with_no_class_present_is_nan_and_skipped_by_summarize():
    gt = torch.zeros(2, 4, 4, dtype=torch.int64)
    pred = torch.zeros(2, 4, 4, dtype=torch.int64)
    gt[0, :2] = 1
    pred[0, :1] = 1  # image 0: Dice 2*4/(4+8) = 2/3; image 1: all background
    v = M.dice(pred, gt, num_classes=3, reduction="mean")
    assert v[0].item() == pytest.approx(2 / 3) and math.isnan(v[1].item())
    assert M.summarize({"dice": v}) == {"dice": pytest.approx(2 / 3)}
    total, count = M.nan_sum_count(M.dice(pred, gt, num_classes=3))  # (B, C): class mean per image first
    assert (float(total), float(count)) == (pytest.approx(2 / 3), 1.0)
    with pytest.warns(UserWarning, match="every value is NaN"):
        assert math.isnan(M.summarize({"dice": v[1:]})["dice"])


def test_tracker_and_summarize_agree_with_the_engine_rule():
    tracker = M.MetricTracker()
    tracker.update(dice=torch.tensor([[0.5, math.nan], [0.2, 0.4]]))  # per-class values (B, C)
    tracker.update(dice=torch.tensor([[1.0, math.nan], [math.nan, math.nan]]))
    # per image: 0.5, 0.3, 1.0, NaN (skipped)
    assert tracker.compute() == {"dice": pytest.approx((0.5 + 0.3 + 1.0) / 3)}


def test_binarize_target_is_the_one_binarisation():
    m = torch.tensor([[[[0.0, 0.2], [0.7, 1.0]]]])  # (B, 1, H, W) probabilities
    assert M.binarize_target(m).tolist() == [[[False, False], [True, True]]]
    assert M.binarize_target(torch.tensor([[0, 1]])).dtype == torch.bool
    assert M.binarize_target(np.array([[0, 1]], dtype=np.uint8)).tolist() == [[False, True]]
    with pytest.raises(ValueError, match="num_classes"):
        M.binarize_target(torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match="sigmoid"):
        M.binarize_target(torch.tensor([[0.0, 3.0]]))


def test_overlap_metrics_share_one_signature():
    import inspect

    params = [list(inspect.signature(fn).parameters) for fn in OVERLAP if fn is not M.dice]
    assert all(p == params[0] for p in params)
    assert "ignore_empty" in params[0] and all("ignore_empty" in (fn.__doc__ or "") for fn in OVERLAP)
