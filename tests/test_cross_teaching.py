"""Cross teaching losses (MCSC poster L_sup, L_cps) and the ramp-up w(t)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mslib.losses.cross_teaching import (
    cps_loss,
    cps_weight,
    cross_teaching_losses,
    sigmoid_rampup,
    ssl4mis_dice_loss,
    supervised_loss,
)


def _ssl4mis_dice_direct(logits, target, k):
    """SSL4MIS DiceLoss written out: per class over the whole batch, squared denominator, mean over all classes."""
    p = torch.softmax(logits.double(), 1)
    total = 0.0
    for c in range(k):
        s, g = p[:, c], (target == c).double()
        inter = (s * g).sum()
        total += 1 - (2 * inter + 1e-5) / ((s * s).sum() + (g * g).sum() + 1e-5)
    return total / k


def test_ramp_up_official_values():
    assert cps_weight(0) == pytest.approx(0.1 * math.exp(-5), rel=1e-12)
    assert round(cps_weight(0), 6) == 0.000674
    assert round(cps_weight(15_000), 4) == 0.0287
    assert cps_weight(30_000) == pytest.approx(0.1)
    assert cps_weight(45_000) == pytest.approx(0.1)
    assert cps_weight(149) == cps_weight(0)  # t = iteration // 150
    assert cps_weight(150) > cps_weight(149)
    assert sigmoid_rampup(5, 0) == 1.0
    assert cps_weight(10, iters_per_step=1, rampup=10) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="iteration"):
        cps_weight(-1)


def test_ssl4mis_dice_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 8, 8, generator=g)
    target = torch.randint(0, 4, (3, 8, 8), generator=g)
    torch.testing.assert_close(
        ssl4mis_dice_loss(logits, target).double(), _ssl4mis_dice_direct(logits, target, 4), rtol=1e-6, atol=1e-6
    )
    # batch-level, not per image: differs from the mean of per-image losses
    per_image = torch.stack([ssl4mis_dice_loss(logits[i : i + 1], target[i : i + 1]) for i in range(3)]).mean()
    assert abs(float(per_image) - float(ssl4mis_dice_loss(logits, target))) > 1e-4


def test_hand_value_perfect_and_absent_class():
    # one-hot-like logits: prediction = target; classes 2 and 3 absent from both -> D = s/s = 1 (background included)
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 0, 0] = 1
    logits = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 100
    assert float(ssl4mis_dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)


def test_supervised_is_half_ce_plus_dice():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    want = 0.5 * (F.cross_entropy(logits, target) + _ssl4mis_dice_direct(logits, target, 4).float())
    torch.testing.assert_close(supervised_loss(logits, target), want, rtol=1e-5, atol=1e-6)


def test_cps_uses_other_argmax_without_gradient():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    b = torch.randn(2, 4, 8, 8, generator=g, requires_grad=True)
    loss = cps_loss(a, b)
    torch.testing.assert_close(loss.double(), _ssl4mis_dice_direct(a.detach(), b.detach().argmax(1), 4))
    loss.backward()
    assert b.grad is None and a.grad is not None


def test_cross_teaching_losses_two_stream():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 4, 8, 8, generator=g), torch.randn(4, 4, 8, 8, generator=g)
    y = torch.randint(0, 4, (4, 8, 8), generator=g)
    out = cross_teaching_losses(a, b, y, labeled_bs=2, weight=0.5)
    torch.testing.assert_close(out["cnn"], supervised_loss(a[:2], y[:2]) + 0.5 * cps_loss(a[2:], b[2:]))
    torch.testing.assert_close(out["tra"], supervised_loss(b[:2], y[:2]) + 0.5 * cps_loss(b[2:], a[2:]))
    with pytest.raises(ValueError, match="labeled_bs"):
        cross_teaching_losses(a, b, y, labeled_bs=0, weight=0.1)
