"""PDCR (Liu et al., TMI 2022): foreground ratios (Eq. 4), affinities (Eq. 3, 16, Fig. 5), sampling,
RF-/H-PDCR losses (Eq. 8-12) against direct loops, gradient orientation, legacy switches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from benchmarks.bench_pdcr import direct_loop_loss, make_inputs, official_loop_loss
from mslib.losses.dragsaw import PatchDragsawLoss, cosine_similarity_matrix, dragsaw_loss
from mslib.losses.patch_affinity import (
    affinity,
    center_label_affinity,
    dice_affinity,
    feature_centres,
    foreground_ratios,
    grid_positions,
    normalize_ratios,
    one_hot_mask,
    patch_boxes,
    patch_contents,
    summed_area_table,
)
from mslib.receptive_field import receptive_field, rf_boxes


def _ratios(mask, rows, cols, k, m=2):
    sat = summed_area_table(one_hot_mask(mask, m))
    return foreground_ratios(sat, *patch_boxes(rows, cols, k))


# ---- Eq. 4: foreground ratios ---------------------------------------------------------------


def test_ratios_by_hand_binary():
    mask = torch.zeros(1, 10, 10, dtype=torch.long)
    mask[0, 2:5, 2:5] = 1  # a 3x3 square of foreground
    rows, cols = torch.tensor([3, 5, 0, 9]), torch.tensor([3, 5, 0, 9])
    phi = _ratios(mask, rows, cols, 5)  # (1, 4, 2)
    # (3,3): all 9 fg pixels inside the 5x5 box; (5,5): box 3..7 holds rows/cols 3,4 -> 4 px;
    # (0,0): box -2..2 holds pixel (2,2) only and 8 in-image background pixels, area 25 (padding counted)
    assert phi[0, :, 1].tolist() == pytest.approx([9 / 25, 4 / 25, 1 / 25, 0.0])
    assert phi[0, :, 0].tolist() == pytest.approx([16 / 25, 21 / 25, 8 / 25, 9 / 25])


def test_ratios_by_hand_multiclass():
    mask = torch.tensor([[[0, 1, 1], [2, 2, 1], [0, 0, 3]]])
    phi = _ratios(mask, torch.tensor([1]), torch.tensor([1]), 3, m=4)
    assert phi[0, 0].tolist() == pytest.approx([3 / 9, 3 / 9, 2 / 9, 1 / 9])
    phi = _ratios(mask, torch.tensor([0]), torch.tensor([2]), 3, m=4)  # corner: 4 in-image pixels of 9
    assert phi[0, 0].tolist() == pytest.approx([0, 3 / 9, 1 / 9, 0])


@pytest.mark.parametrize("k", [5, 7, 9])
def test_summed_area_table_equals_avg_pool_with_padding_counted(k):
    torch.manual_seed(k)
    mask = torch.randint(0, 3, (2, 23, 17))
    rows, cols = torch.meshgrid(torch.arange(23), torch.arange(17), indexing="ij")
    phi = _ratios(mask, rows.flatten(), cols.flatten(), k, m=3)  # (2, 23*17, 3)
    pooled = F.avg_pool2d(one_hot_mask(mask, 3).float(), k, stride=1, padding=k // 2, count_include_pad=True)
    torch.testing.assert_close(phi, pooled.flatten(2).transpose(1, 2))


def test_all_ones_mask_gives_ratio_one_inside():
    mask = torch.ones(1, 16, 16, dtype=torch.long)
    phi = _ratios(mask, torch.tensor([8]), torch.tensor([8]), 9)
    assert phi[0, 0].tolist() == [0.0, 1.0]


def test_l1_l2_variants():
    phi = torch.tensor([[[0.3, 0.1], [0.0, 0.0]]])
    torch.testing.assert_close(normalize_ratios(phi, "l1")[0, 0], torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(normalize_ratios(phi, "l2")[0, 0], torch.tensor([0.3, 0.1]) / math.sqrt(0.1))
    assert torch.isfinite(normalize_ratios(phi, "l2")).all()


# ---- no transposition -----------------------------------------------------------------------


def test_no_transposition_and_the_legacy_switch():
    """The ratio of the vector at (r, c) is the mask mean around (r, c); the official code reads (c, r)."""
    H = W = 16
    mask = torch.zeros(1, H, W, dtype=torch.long)
    mask[0, 0:4, 8:16] = 1  # top-right band: not symmetric about the diagonal
    feat = torch.randn(1, 4, H, W)  # stride 1: feature (r, c) sits on pixel (r, c)
    rows, cols = grid_positions(H, W, 16)
    for legacy in (False, True):
        loss = PatchDragsawLoss(num_vectors=16, patch_sizes=(5,), legacy_transposed_ratios=legacy)
        d = loss._layer(0, feat, mask, one_hot_mask(mask, 2), summed_area_table(one_hot_mask(mask, 2)), None)
        r_at, c_at = (cols, rows) if legacy else (rows, cols)
        padded = F.pad(mask[0].float(), (2, 2, 2, 2))
        expect = torch.stack([padded[r : r + 5, c : c + 5].mean() for r, c in zip(r_at, c_at)])
        torch.testing.assert_close(d["phi"][0, 0, :, 1], expect)
    oh, sat = one_hot_mask(mask, 2), summed_area_table(one_hot_mask(mask, 2))
    phis = [
        PatchDragsawLoss(16, (5,), legacy_transposed_ratios=t)._layer(0, feat, mask, oh, sat, None)
        for t in (False, True)
    ]
    assert not torch.equal(phis[0]["phi"], phis[1]["phi"])


# ---- Eq. 3 and the affinity variants -----------------------------------------------------------


def test_affinity_by_hand_symmetric_in_unit_interval_one_on_diagonal():
    phi = torch.tensor([[[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]]])
    w = affinity(phi)
    assert w[0, 0, 1].item() == pytest.approx(1 - (0.4 + 0.4) / 2)
    assert w[0, 0, 2].item() == pytest.approx(1 - (0.8 + 0.8) / 2)
    torch.manual_seed(0)
    phi = torch.rand(3, 20, 4)
    w = affinity(phi)
    torch.testing.assert_close(w, w.transpose(-1, -2))
    assert ((w >= 0) & (w <= 1)).all()
    torch.testing.assert_close(torch.diagonal(w, dim1=-2, dim2=-1), torch.ones(3, 20))


def test_center_label_and_dice_affinities_by_hand():
    labels = torch.tensor([[0, 1, 1]])
    assert center_label_affinity(labels)[0].tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    mask = torch.zeros(1, 6, 6, dtype=torch.long)
    mask[0, :, 0:2] = 1  # left two columns foreground
    oh = one_hot_mask(mask, 2)
    p = patch_contents(oh, torch.tensor([0, 0, 0]), torch.tensor([0, 1, 3]), 3)  # patches at cols 0-2, 1-3, 3-5
    d = dice_affinity(p)
    # patch 0 fg = cols 0,1 (6 px); patch 1 fg = col 1 (3 px): fg overlap at aligned positions = col 0 of
    # patch 1 vs col 0 of patch 0 -> 3 px: dice 2*3/9; bg: patch 0 col 2 (3 px), patch 1 cols 2,3 (6 px),
    # aligned overlap 3 px (position col 2): dice 2*3/9
    assert d[0, 0, 1].item() == pytest.approx(2 * 3 / 9)
    # patch 2 has no foreground: fg dice 0 (only patch 0 has some), bg dice 2*3/(3+9)
    assert d[0, 0, 2].item() == pytest.approx((0 + 6 / 12) / 2)
    torch.testing.assert_close(torch.diagonal(d[0]), torch.ones(3))


# ---- sampling -------------------------------------------------------------------------------


@pytest.mark.parametrize("h,w,n", [(8, 8, 4), (8, 8, 64), (16, 16, 64), (32, 24, 32), (5, 40, 7), (64, 64, 64)])
def test_grid_sampling_gives_exactly_n_distinct_in_grid_positions(h, w, n):
    for gen in (None, torch.Generator().manual_seed(3)):
        rows, cols = grid_positions(h, w, n, gen)
        assert len(rows) == n
        assert ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).all()
        assert len(set(zip(rows.tolist(), cols.tolist()))) == n
    rows, cols = grid_positions(8, 8, 4)
    assert len(set(cols.tolist())) == 2  # a 2x2 grid, not four samples in column 0


def test_sampling_is_deterministic_under_a_seed():
    a = [grid_positions(32, 32, 16, torch.Generator().manual_seed(1)) for _ in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(*a))
    feats, mask = make_inputs(2, 32)
    l1 = [PatchDragsawLoss(16, seed=5)(feats, mask) for _ in range(2)]
    l2 = PatchDragsawLoss(16, seed=5)
    assert torch.equal(l1[0], l1[1]) and torch.equal(l2(feats, mask), l1[0])
    assert not torch.equal(l2(feats, mask), l1[0])  # the second step draws a new grid
    with pytest.raises(ValueError, match="N=100"):
        grid_positions(8, 8, 100)


# ---- the loss --------------------------------------------------------------------------------


def test_h_pdcr_equals_the_direct_loop():
    feats, mask = make_inputs(2, 32, seed=1)
    loss = PatchDragsawLoss(num_vectors=(12, 9), patch_sizes=(5, 7, 9), tau=0.5)(feats, mask)
    ref = direct_loop_loss(feats, mask, (12, 9), (5, 7, 9), tau=0.5)
    torch.testing.assert_close(loss.double(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(official_loop_loss(feats, mask, (12, 9), (5, 7, 9), tau=0.5), loss, atol=1e-5, rtol=1e-5)


def _eq12_loop(sim_rows, w, tau):
    """-log(exp(s_ij w_ij / tau) / sum_n exp(s_in (1 - w_in) / tau)) summed over i, j."""
    total = 0.0
    for i in range(len(sim_rows)):
        den = sum(math.exp(sim_rows[i][n] * (1 - w[i][n]) / tau) for n in range(len(sim_rows[i])))
        total += sum(-math.log(math.exp(sim_rows[i][j] * w[i][j] / tau) / den) for j in range(len(sim_rows[i])))
    return total


def test_cross_layer_rf_pdcr_position_encoding_and_sum_against_loops():
    torch.manual_seed(0)
    mask = (torch.rand(1, 16, 16) > 0.5).long()
    feats = [torch.randn(1, 3, 8, 8), torch.randn(1, 5, 4, 4)]
    # cross-layer H-PDCR, one patch size, sum reduction
    loss = PatchDragsawLoss(
        num_vectors=(4, 4),
        patch_sizes=(3,),
        single_layer=False,
        cross_layer_pairs=[(0, 1)],
        in_channels=[3, 5],
        reduction="sum",
        tau=0.7,
    )
    value = loss(feats, mask)
    vs = []
    for layer, f in enumerate(feats):
        rows, cols = grid_positions(f.shape[-2], f.shape[-1], 4)
        cy, cx = feature_centres(rows, cols, f.shape[-2:], (16, 16))
        v = loss.proj[str(layer)](f[0, :, rows, cols].T)
        ratios = [F.pad(mask[0].float(), (1, 1, 1, 1))[r : r + 3, c : c + 3].mean().item() for r, c in zip(cy, cx)]
        vs.append((v, ratios))
    (va, ra), (vb, rb) = vs
    s = [[F.cosine_similarity(va[i], vb[j], dim=0).item() for j in range(4)] for i in range(4)]
    w = [[1 - abs(ra[i] - rb[j]) for j in range(4)] for i in range(4)]  # M = 2: mean_m |d| = |d_fg|
    assert value.item() == pytest.approx(_eq12_loop(s, w, 0.7), rel=1e-5)
    # RF-PDCR: the box is the receptive field, the ratio's denominator r^2
    rf = receptive_field([(3, 1, 1), (3, 2, 1)])
    loss = PatchDragsawLoss(num_vectors=4, receptive_fields=[rf], reduction="sum")
    value = loss(feats[:1], mask)
    rows, cols = grid_positions(8, 8, 4)
    (r0, r1), (c0, c1) = rf_boxes(rf, rows), rf_boxes(rf, cols)
    pad = F.pad(mask[0].float(), (rf.size,) * 4)
    ratios = [
        pad[a + rf.size : b + rf.size + 1, c + rf.size : d + rf.size + 1].sum().item() / rf.size**2
        for a, b, c, d in zip(r0, r1, c0, c1)
    ]
    v = feats[0][0, :, rows, cols].T
    s = [[F.cosine_similarity(v[i], v[j], dim=0).item() for j in range(4)] for i in range(4)]
    w = [[1 - abs(ratios[i] - ratios[j]) for j in range(4)] for i in range(4)]
    assert value.item() == pytest.approx(_eq12_loop(s, w, 1.0), rel=1e-5)


def test_position_encoding_concatenates_the_patch_corners():
    torch.manual_seed(1)
    mask = (torch.rand(1, 16, 16) > 0.5).long()
    f = torch.randn(1, 3, 8, 8)
    value = PatchDragsawLoss(num_vectors=4, patch_sizes=(3,), position_encoding=True, reduction="sum")([f], mask)
    rows, cols = grid_positions(8, 8, 4)
    cy, cx = feature_centres(rows, cols, (8, 8), (16, 16))
    pe = torch.stack([(cx - 1) / 16, (cx + 1) / 16, (cy - 1) / 16, (cy + 1) / 16], 1).float()
    v = torch.cat([f[0, :, rows, cols].T, pe], 1)
    ratios = [F.pad(mask[0].float(), (1, 1, 1, 1))[r : r + 3, c : c + 3].mean().item() for r, c in zip(cy, cx)]
    s = [[F.cosine_similarity(v[i], v[j], dim=0).item() for j in range(4)] for i in range(4)]
    w = [[1 - abs(ratios[i] - ratios[j]) for j in range(4)] for i in range(4)]
    assert value.item() == pytest.approx(_eq12_loop(s, w, 1.0), rel=1e-5)


def test_gradient_orientation_similar_pulled_dissimilar_pushed():
    """dL/ds < 0 (pulled together) for pairs with affinity near 1, > 0 (pushed apart) near 0."""
    torch.manual_seed(0)
    n = 16
    ratios = torch.rand(1, 1, n, 1)
    phi = torch.cat([1 - ratios, ratios], -1)
    w = affinity(phi)
    s = cosine_similarity_matrix(torch.randn(1, n, 8)).requires_grad_()
    dragsaw_loss(s, w).backward()
    similar, dissimilar = (w[0] > 0.8) & ~torch.eye(n, dtype=torch.bool), w[0] < 0.2
    assert similar.any() and dissimilar.any()
    assert (s.grad[0][similar[0]] < 0).all() and (s.grad[0][dissimilar[0]] > 0).all()
    s.grad = None
    dragsaw_loss(s, w, legacy_orientation=True).backward()  # the official 2D loss does the opposite
    assert (s.grad[0][similar[0]] > 0).all() and (s.grad[0][dissimilar[0]] < 0).all()


def test_legacy_orientation_reproduces_the_official_formula_on_a_hand_case():
    # two vectors, cos = 0.6; ratios 0.1 and 0.7 -> delta = 0.6 off the diagonal, 0 on it; tau = 1
    s = torch.tensor([[[1.0, 0.6], [0.6, 1.0]]])
    w = torch.tensor([[[[1.0, 0.4], [0.4, 1.0]]]])
    # official: s <- s - max(s) = [[0, -0.4], [-0.4, 0]];
    # L = -sum_jk [ s_jk d_jk - log sum_n exp(s_jn (1 - d_jn)) ], d = [[0, .6], [.6, 0]]
    # row j: log(exp(0 * 1) + exp(-0.4 * 0.4)) = log(1 + e^-0.16); numerators: 0 and -0.4 * 0.6 = -0.24
    row = math.log(1 + math.exp(-0.16))
    expected = 2 * (2 * row - (0 - 0.24))
    assert dragsaw_loss(s, w, legacy_orientation=True).item() == pytest.approx(expected, rel=1e-6)
    # paper (Eq. 9), mean over the 4 pairs: row i: log(exp(1 * 0) + exp(0.6 * 0.6)); numerators 1 * 1 and 0.6 * 0.4
    row = math.log(1 + math.exp(0.36))
    assert dragsaw_loss(s, w).item() == pytest.approx((4 * row - 2 * (1 + 0.24)) / 4, rel=1e-6)
    assert dragsaw_loss(s, w, reduction="sum").item() == pytest.approx(4 * row - 2 * 1.24, rel=1e-6)


def test_h_pdcr_two_implementations_of_table_vb():
    feats, mask = make_inputs(1, 32, seed=2)
    per_patch = PatchDragsawLoss(num_vectors=(8, 8), patch_sizes=(5, 9))
    first = PatchDragsawLoss(num_vectors=(8, 8), patch_sizes=(5, 9), ratio_first=True)
    d1 = per_patch._layer(0, feats[0], mask, one_hot_mask(mask, 2), summed_area_table(one_hot_mask(mask, 2)), None)
    d2 = first._layer(0, feats[0], mask, one_hot_mask(mask, 2), summed_area_table(one_hot_mask(mask, 2)), None)
    torch.testing.assert_close(d2["phi"][:, 0], d1["phi"].mean(1))
    s = cosine_similarity_matrix(d1["vec"])
    assert per_patch._weights(d1, d1, True).shape[1] == 2
    expect = (dragsaw_loss(s, affinity(d1["phi"][:, :1])) + dragsaw_loss(s, affinity(d1["phi"][:, 1:]))) / 2
    torch.testing.assert_close(dragsaw_loss(s, affinity(d1["phi"])), expect)


@pytest.mark.parametrize(
    "variant",
    [
        dict(),
        dict(affinity="constant"),
        dict(affinity="rigid"),
        dict(affinity="center"),
        dict(affinity="dice"),
        dict(phi_norm="l1"),
        dict(phi_norm="l2"),
        dict(position_encoding=True),
        dict(legacy_orientation=True),
        dict(cross_layer_pairs=[(0, 1)], in_channels=[64, 128]),
    ],
)
def test_finite_on_empty_and_full_masks(variant):
    feats, _ = make_inputs(2, 32)
    for fill in (0, 1):
        mask = torch.full((2, 32, 32), fill, dtype=torch.long)
        loss = PatchDragsawLoss(num_vectors=(16, 8), **variant)(feats, mask)
        grads = torch.autograd.grad(loss, feats)
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)


def test_variant_weights_by_definition():
    feats, mask = make_inputs(1, 32)
    oh, sat = one_hot_mask(mask, 2), summed_area_table(one_hot_mask(mask, 2))
    loss = PatchDragsawLoss(num_vectors=(8, 8), affinity="constant", constant=0.5)
    d = loss._layer(0, feats[0], mask, oh, sat, None)
    assert (loss._weights(d, d, True) == 0.5).all()
    loss = PatchDragsawLoss(num_vectors=(8, 8), affinity="rigid")
    assert torch.equal(loss._weights(d, d, True)[0, 0], torch.eye(8))
    with pytest.raises(ValueError, match="cross-layer"):
        loss._weights(d, d, False)


def test_errors_name_the_argument():
    feats, mask = make_inputs(1, 32)
    with pytest.raises(ValueError, match="affinity"):
        PatchDragsawLoss(affinity="cosine")
    with pytest.raises(ValueError, match="in_channels"):
        PatchDragsawLoss(cross_layer_pairs=[(0, 1)])
    with pytest.raises(ValueError, match="num_vectors"):
        PatchDragsawLoss(num_vectors=(8,))(feats, mask)
    with pytest.raises(ValueError, match="integer class indices"):
        PatchDragsawLoss()(feats, mask.float())
