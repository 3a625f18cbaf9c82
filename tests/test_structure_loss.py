"""Structure loss (M2SNet Eq. 4): weighted BCE + weighted IoU, intended and official (legacy) values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter

from mslib.losses.structure import structure_loss, structure_weight, weighted_bce, weighted_iou


def square_mask():
    m = torch.zeros(1, 1, 64, 64)
    m[..., 16:48, 16:48] = 1
    return m


def shifted_logits():
    z = torch.full((1, 1, 64, 64), -3.0)
    z[..., 20:44, 20:44] = 3.0
    return z


def test_reference_values_intended_and_legacy():
    m = square_mask()
    assert structure_loss(shifted_logits(), m).item() == pytest.approx(1.210525, abs=1e-5)
    assert structure_loss(shifted_logits(), m, legacy=True).item() == pytest.approx(0.937174, abs=1e-5)
    zero = torch.zeros(1, 1, 64, 64)
    assert structure_loss(zero, m).item() == pytest.approx(1.418272, abs=1e-5)
    assert structure_loss(zero, m, legacy=True).item() == pytest.approx(1.418272, abs=1e-5)


def test_weight_map_against_scipy_box_filter():
    rng = np.random.default_rng(0)
    g = (rng.random((40, 50)) > 0.6).astype(np.float64)
    ref = 1 + 5 * np.abs(uniform_filter(g, size=31, mode="constant", cval=0.0) - g)
    got = structure_weight(torch.from_numpy(g)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10)


def test_intended_loss_equals_direct_per_pixel_computation():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 20, 24, dtype=torch.float64)
    g = (torch.rand(2, 1, 20, 24) > 0.5).double()
    w = structure_weight(g)
    p = 1 / (1 + torch.exp(-logits))
    bce = -(g * torch.log(p) + (1 - g) * torch.log(1 - p))
    total = []
    for b in range(2):
        wbce = (w[b] * bce[b]).sum() / w[b].sum()
        inter = (w[b] * p[b] * g[b]).sum()
        union = (w[b] * (p[b] + g[b])).sum()
        total.append(wbce + 1 - (inter + 1) / (union - inter + 1))
    torch.testing.assert_close(structure_loss(logits, g), torch.stack(total).mean())
    torch.testing.assert_close(
        weighted_bce(logits, g, w), torch.stack([(w[b] * bce[b]).sum() / w[b].sum() for b in range(2)])
    )
    assert weighted_iou(logits, g, w).shape == (2,)


def test_weight_really_applies_to_bce():
    """Errors at the boundary cost more than the plain mean BCE; with a flat weight map both agree."""
    m = square_mask()
    z = shifted_logits()
    w = structure_weight(m)
    plain = F.binary_cross_entropy_with_logits(z, m)
    assert weighted_bce(z, m, w).item() > plain.item() + 0.2
    empty = torch.zeros(1, 1, 64, 64)  # no boundary: weight 1 everywhere
    assert torch.all(structure_weight(empty) == 1)
    torch.testing.assert_close(structure_loss(z, empty), structure_loss(z, empty, legacy=True))


def test_mask_formats_agree():
    m = square_mask()
    z = shifted_logits()
    ref = structure_loss(z, m)
    torch.testing.assert_close(structure_loss(z, m[:, 0].long()), ref)
    torch.testing.assert_close(structure_loss(z, m.bool()[:, 0]), ref)


def test_finite_with_gradients_on_empty_and_full_masks():
    for target in (torch.zeros(2, 16, 16), torch.ones(2, 16, 16)):
        for value in (0.0, 30.0, -30.0):
            z = torch.full((2, 1, 16, 16), value, requires_grad=True)
            loss = structure_loss(z, target)
            loss.backward()
            assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_perfect_prediction_is_near_zero_and_better_than_shifted():
    m = square_mask()
    perfect = (m * 2 - 1) * 20
    assert structure_loss(perfect, m).item() < 1e-3
    assert structure_loss(perfect, m) < structure_loss(shifted_logits(), m)


def test_bad_shapes_are_errors():
    with pytest.raises(ValueError, match="target"):
        structure_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="logits"):
        structure_loss(torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="differ"):
        structure_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 9, 8))
    with pytest.raises(ValueError, match="odd"):
        structure_weight(torch.zeros(1, 1, 8, 8), kernel_size=30)
