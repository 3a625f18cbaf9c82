"""MCSC balanced supervised contrastive loss: closed form, balancing, DB, CroLab, sampling, legacy order."""

import math

import pytest
import torch
import torch.nn.functional as F

from mslib.losses.contrastive import (
    CrossProjector,
    MultiScaleContrast,
    balanced_supcon_loss,
    contrast_labels,
    cross_contrastive_loss,
    legacy_label_permutation,
    official_block_coverage,
    official_supcon,
)


def _direct(z, y, tau=0.1, balanced=True, discard_background=True):
    """The poster's equation as a loop over anchors, positives and classes (float64)."""
    z, y = z.double(), y.tolist()
    n = len(y)
    per_anchor = []
    for i in range(n):
        if discard_background and y[i] == 0:
            continue
        pos = [p for p in range(n) if p != i and y[p] == y[i]]
        if not pos:
            continue
        if balanced:
            denom = 0.0
            for c in set(y):
                members = [k for k in range(n) if k != i and y[k] == c]
                if members:
                    denom += sum(math.exp(float(z[i] @ z[k]) / tau) for k in members) / len(members)
        else:
            denom = sum(math.exp(float(z[i] @ z[k]) / tau) for k in range(n) if k != i)
        per_anchor.append(-sum(math.log(math.exp(float(z[i] @ z[p]) / tau) / denom) for p in pos) / len(pos))
    return sum(per_anchor) / len(per_anchor)


def _rand(n, d=8, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1), torch.randint(0, k, (n,), generator=g)


def test_hand_value_two_classes():
    # 2-D features: two of class 1 at angle 0, one of class 2 at 90 deg, one background at 180 deg
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    y = torch.tensor([1, 1, 2, 0])
    tau = 0.5
    # anchor 0 (and 1 by symmetry): positive s=1; classes: {1: e^2}, {2: e^0}, {0: e^-2}
    want = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert float(balanced_supcon_loss(z, y, temperature=tau)) == pytest.approx(want, rel=1e-6)
    assert _direct(z, y, tau) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("db", [True, False])
def test_matches_direct_loop(balanced, db):
    z, y = _rand(40, seed=1)
    got = balanced_supcon_loss(z, y, temperature=0.1, balanced=balanced, discard_background=db, chunk=7)
    assert float(got) == pytest.approx(_direct(z, y, 0.1, balanced, db), rel=1e-5)


def test_balanced_denominator_ignores_class_size():
    # replicating background samples changes the plain SupCon loss but not the balanced one
    z, y = _rand(20, seed=2)
    bg = (y == 0).nonzero().squeeze(1)
    z2, y2 = torch.cat([z, z[bg].repeat(5, 1)]), torch.cat([y, y[bg].repeat(5)])
    b1, b2 = balanced_supcon_loss(z, y), balanced_supcon_loss(z2, y2)
    assert float(b1) == pytest.approx(float(b2), rel=1e-5)
    u1, u2 = balanced_supcon_loss(z, y, balanced=False), balanced_supcon_loss(z2, y2, balanced=False)
    assert abs(float(u1) - float(u2)) > 1e-3


def test_background_anchors_discarded():
    z, y = _rand(30, seed=3)
    with_bg = balanced_supcon_loss(z, y, discard_background=False)
    without = balanced_supcon_loss(z, y, discard_background=True)
    assert float(with_bg) != pytest.approx(float(without))
    # all background: nothing to anchor, zero with a graph
    zz = z.clone().requires_grad_(True)
    out = balanced_supcon_loss(zz, torch.zeros(30, dtype=torch.long))
    assert out.item() == 0.0
    out.backward()


def test_invariant_to_batch_order():
    g = torch.Generator().manual_seed(4)
    zc = F.normalize(torch.randn(3, 8, 6, 6, generator=g), dim=1)
    zt = F.normalize(torch.randn(3, 8, 6, 6, generator=g), dim=1)
    yc, yt = torch.randint(0, 4, (3, 6, 6), generator=g), torch.randint(0, 4, (3, 6, 6), generator=g)
    perm = torch.tensor([2, 0, 1])
    a = cross_contrastive_loss(zc, zt, yc, yt, sampling="all")
    b = cross_contrastive_loss(zc[perm], zt[perm], yc[perm], yt[perm], sampling="all")
    torch.testing.assert_close(a, b)


def test_sampling_bounded_equals_all_when_it_fits_and_blocks_cover():
    g = torch.Generator().manual_seed(5)
    zc = F.normalize(torch.randn(2, 8, 8, 8, generator=g), dim=1)
    zt = F.normalize(torch.randn(2, 8, 8, 8, generator=g), dim=1)
    yc, yt = torch.randint(0, 3, (2, 8, 8), generator=g), torch.randint(0, 3, (2, 8, 8), generator=g)
    full = cross_contrastive_loss(zc, zt, yc, yt, sampling="all")
    same = cross_contrastive_loss(zc, zt, yc, yt, sampling="anchors", max_samples=10_000)
    torch.testing.assert_close(full, same)
    block = cross_contrastive_loss(zc, zt, yc, yt, sampling="blocks", block=8, num_blocks=1)
    torch.testing.assert_close(full, block)
    sub = cross_contrastive_loss(
        zc, zt, yc, yt, sampling="anchors", max_samples=64, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(sub) and float(sub) != pytest.approx(float(full))


def test_cross_labels_from_the_other_network():
    target = torch.full((4, 2, 2), 1)
    pc, pt = torch.full((4, 2, 2), 2), torch.full((4, 2, 2), 3)
    yc, yt = contrast_labels(target, pc, pt, labeled_bs=2)
    assert (yc[:2] == 1).all() and (yt[:2] == 1).all()
    assert (yc[2:] == 3).all() and (yt[2:] == 2).all()  # CNN features <- Transformer argmax
    yc, yt = contrast_labels(target, pc, pt, labeled_bs=2, cross=False)
    assert (yc[2:] == 2).all() and (yt[2:] == 3).all()


def test_legacy_label_order_misaligns_pairs():
    n, h, w = 8, 19, 19
    perm = legacy_label_permutation(n, h, w)
    y = torch.randint(0, 4, (n * h * w,), generator=torch.Generator().manual_seed(0))
    moved = (perm != torch.arange(n * h * w)).double().mean()
    assert moved > 0.98  # almost every pixel gets another pixel's label
    wrong = (y[perm] != y).double().mean()  # ... a different class for about 3/4 of them
    assert 0.70 < wrong < 0.80
    # the official computation equals the aligned one on permuted labels, and differs from it
    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(4, 8, 3, 3, generator=g), dim=1)
    lab = torch.randint(0, 4, (4, 3, 3), generator=g)
    legacy = official_supcon(f, lab, legacy_label_order=True)
    permuted = lab.reshape(-1)[legacy_label_permutation(4, 3, 3)].view(4, 3, 3)
    torch.testing.assert_close(legacy, official_supcon(f, permuted, legacy_label_order=False))
    assert float(legacy) != pytest.approx(float(official_supcon(f, lab, legacy_label_order=False)))


def test_official_supcon_is_balanced_loss_with_background_and_zero_anchors():
    # aligned official form = balanced loss with background anchors, anchors without positives counting 0
    g = torch.Generator().manual_seed(2)
    f = F.normalize(torch.randn(2, 8, 4, 4, generator=g), dim=1)
    lab = torch.randint(0, 4, (2, 4, 4), generator=g)
    z, y = f.permute(0, 2, 3, 1).reshape(-1, 8), lab.reshape(-1)
    has_pos = torch.tensor([(y == c).sum() > 1 for c in y])
    ours = balanced_supcon_loss(z, y, discard_background=False) * has_pos.sum() / len(y)
    torch.testing.assert_close(official_supcon(f, lab, legacy_label_order=False), ours, rtol=1e-4, atol=1e-5)


def test_official_block_coverage():
    assert official_block_coverage(224, 19) == pytest.approx(190**2 / 224**2)
    assert official_block_coverage(28, 14) == pytest.approx(0.25)
    g = torch.Generator().manual_seed(3)
    z = F.normalize(torch.randn(1, 8, 28, 28, generator=g), dim=1)
    y = torch.zeros(1, 28, 28, dtype=torch.long)
    y[:, 14:, 14:] = 1  # foreground only outside the official block: skipped, 0
    assert float(cross_contrastive_loss(z, z, y, y, sampling="official", block=14)) == 0.0
    with pytest.raises(ValueError, match="legacy_label_order"):
        cross_contrastive_loss(z, z, y, y, sampling="all", legacy_label_order=True)


def test_projector_parameter_counts():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(CrossProjector(16, 96)) == 62_080
    assert count(CrossProjector(128, 192, tra_norm=True)) == 115_712
    z1, z2 = CrossProjector(16, 96)(torch.randn(2, 16, 4, 4), torch.randn(2, 96, 4, 4))
    torch.testing.assert_close(z1.norm(dim=1), torch.ones(2, 4, 4))
    assert z2.shape == (2, 128, 4, 4)


def test_multiscale_contrast_labelled_only_before_start():
    torch.manual_seed(0)
    mc = MultiScaleContrast(
        {1: 16, 8: 128}, {1: 96, 8: 192}, scales=(1, 8), sampling="anchors", max_samples=256, start_iteration=100
    )
    fc = [torch.randn(4, 128, 4, 4), torch.randn(4, 16, 32, 32)]
    ft = [torch.randn(4, 192, 4, 4), torch.randn(4, 96, 32, 32)]
    target = torch.randint(0, 4, (4, 32, 32))
    pc, pt = torch.randint(0, 4, (4, 32, 32)), torch.randint(0, 4, (4, 32, 32))
    total, per = mc(fc, ft, target, pc, pt, labeled_bs=2, iteration=0, generator=torch.Generator().manual_seed(0))
    assert set(per) == {1, 8} and torch.isfinite(total)
    # before the start the unlabelled half does not matter
    pc2 = torch.randint(0, 4, (4, 32, 32))
    fc2 = [f.clone() for f in fc]
    fc2[1][2:] = torch.randn(2, 16, 32, 32)
    total2, _ = mc(fc2, ft, target, pc2, pt, labeled_bs=2, iteration=0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(total, total2)
    total3, _ = mc(fc2, ft, target, pc2, pt, labeled_bs=2, iteration=100, generator=torch.Generator().manual_seed(0))
    assert total3.item() != pytest.approx(total2.item())
    total.backward()
    with pytest.raises(ValueError, match="scales"):
        MultiScaleContrast({1: 16}, {1: 96}, scales=(1, 8))


def test_official_sampling_with_legacy_order_matches_official_supcon_per_group():
    g = torch.Generator().manual_seed(6)
    z = F.normalize(torch.randn(1, 8, 8, 8, generator=g), dim=1).requires_grad_(True)
    y = torch.randint(0, 4, (1, 8, 8), generator=g)
    # 8 px with 4-px blocks: div = 1, one group = the top-left 4x4 block of both "networks"
    got = cross_contrastive_loss(z, z, y, y, sampling="official", block=4, legacy_label_order=True)
    f = torch.cat([z, z])[:, :, :4, :4]
    want = official_supcon(f, torch.cat([y, y])[:, :4, :4], legacy_label_order=True)
    torch.testing.assert_close(got, want)
    aligned = cross_contrastive_loss(z, z, y, y, sampling="official", block=4)
    assert aligned.item() != pytest.approx(got.item())
    got.backward()
    assert torch.isfinite(z.grad).all() and z.grad[..., 4:, :].abs().sum() == 0  # outside the tiling: no gradient
