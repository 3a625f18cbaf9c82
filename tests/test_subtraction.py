"""SU (M2SNet Eq. 1), MSU (Eq. 2) with the box-filter identity, AU and the ASPP / DenseASPP units."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mslib.blocks.subtraction import (
    AdditionUnit,
    AsppSubtractionUnit,
    DenseAsppSubtractionUnit,
    MultiScaleSubtractionUnit,
    SubtractionUnit,
    all_ones_conv2d,
    box_filter,
    make_unit,
)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def pair(c=6, hw=(9, 11), low=(5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, c, *low, generator=g)  # deeper, smaller
    b = torch.rand(2, c, *hw, generator=g)  # shallower
    return a, b


def dense_ones(x, k):
    """Literal all-ones (C, C, k, k) convolution, written independently of the module."""
    c = x.shape[1]
    return F.conv2d(x, torch.ones(c, c, k, k, dtype=x.dtype), padding=k // 2)


# ----------------------------------------------------------------- box-filter identity
def _is(t, value):
    """Every entry equals ``value`` up to float32 rounding of the box mean times k^2."""
    return torch.allclose(t, torch.full_like(t, float(value)), rtol=1e-6, atol=0)


def test_all_ones_3x3_on_ones_map_hand_values():
    x = torch.ones(1, 64, 6, 7)
    for y in (box_filter(x, 3, "dense").expand(-1, 64, -1, -1), all_ones_conv2d(x, 3, "dense"), dense_ones(x, 3)):
        assert y.shape == (1, 64, 6, 7)
        assert _is(y[:, :, 1:-1, 1:-1], 576)  # 9 positions x 64 channels
        assert _is(y[:, :, 0, 1:-1], 384) and _is(y[:, :, -1, 1:-1], 384)  # edges: 6 x 64
        assert _is(y[:, :, 1:-1, 0], 384) and _is(y[:, :, 1:-1, -1], 384)
        for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            assert _is(y[:, :, i, j], 256)  # corners: 4 x 64
    y5 = box_filter(x, 5, "dense")
    assert _is(y5[0, 0, 2:4, 2:5], 1600) and _is(y5[0, 0, 0, 0], 9 * 64) and _is(y5[0, 0, 0, 2:5], 15 * 64)


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_box_identity_equals_dense_conv_including_borders(k):
    x = torch.randn(2, 5, 8, 9, dtype=torch.float64)
    ref = dense_ones(x, k)
    got = box_filter(x, k, "dense")
    assert got.shape == (2, 1, 8, 9)
    torch.testing.assert_close(got.expand_as(ref), ref)
    torch.testing.assert_close(all_ones_conv2d(x, k, "dense"), ref)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_depthwise_reading_is_per_channel_box_sum(k):
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64)
    ref = F.conv2d(x, torch.ones(4, 1, k, k, dtype=x.dtype), padding=k // 2, groups=4)
    torch.testing.assert_close(box_filter(x, k, "depthwise"), ref)
    torch.testing.assert_close(all_ones_conv2d(x, k, "depthwise"), ref)
    if k == 1:
        torch.testing.assert_close(box_filter(x, 1, "depthwise"), x)  # 1x1 all-ones per channel = identity


def test_box_filter_normalize_gives_means():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(box_filter(x, 3, "dense", normalize=True), dense_ones(x, 3)[:, :1] / 27)
    torch.testing.assert_close(box_filter(x, 5, "depthwise", normalize=True), box_filter(x, 5, "depthwise") / 25)


def test_box_filter_bad_arguments():
    x = torch.zeros(1, 2, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        box_filter(x, 2)
    with pytest.raises(ValueError, match="mode"):
        box_filter(x, 3, "grouped")
    with pytest.raises(ValueError, match="B, C, H, W"):
        box_filter(torch.zeros(2, 4, 4), 3)


# ----------------------------------------------------------------- SU, AU (Eq. 1, Table VII)
def test_su_is_conv_of_abs_difference_with_bilinear_upsampling():
    a, b = pair()
    su = SubtractionUnit(6).eval()
    up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(su(a, b), su.conv(torch.abs(up - b)))
    # the order matters only through which operand is resized: |A - B| is symmetric
    torch.testing.assert_close(su(b, b), su.conv(torch.zeros_like(b)))


def test_au_is_conv_of_sum_and_has_su_parameters():
    a, b = pair()
    au = AdditionUnit(6).eval()
    up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
    torch.testing.assert_close(au(a, b), au.conv(up + b))
    assert nparams(au) == nparams(SubtractionUnit(6)) == 6 * 6 * 9 + 6 + 2 * 6


# ----------------------------------------------------------------- MSU (Eq. 2)
@pytest.mark.parametrize("mode", ["dense", "depthwise"])
@pytest.mark.parametrize("identity_1x1", [True, False])
def test_msu_equals_literal_eq2(mode, identity_1x1):
    a, b = pair()
    a, b = a.double(), b.double()
    msu = MultiScaleSubtractionUnit(6, mode=mode, identity_1x1=identity_1x1).double().eval()
    up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)

    def filt(x, k):
        if k == 1 and identity_1x1:
            return x
        if mode == "dense":
            return dense_ones(x, k)
        return F.conv2d(x, torch.ones(6, 1, k, k, dtype=x.dtype), padding=k // 2, groups=6)

    inner = sum(torch.abs(filt(up, k) - filt(b, k)) for k in (1, 3, 5))
    torch.testing.assert_close(msu.combine(up, b), inner)
    torch.testing.assert_close(msu(a, b), msu.conv(inner))
    ref = MultiScaleSubtractionUnit(6, mode=mode, identity_1x1=identity_1x1, impl="conv").double().eval()
    ref.load_state_dict(msu.state_dict())
    torch.testing.assert_close(ref(a, b), msu(a, b))


def test_msu_adds_zero_parameters_and_no_state_over_su():
    su, msu = SubtractionUnit(64), MultiScaleSubtractionUnit(64)
    assert nparams(msu) == nparams(su)
    assert sum(p.numel() for p in msu.parameters() if p.requires_grad) == nparams(su)
    assert set(msu.state_dict()) == set(su.state_dict())  # no filter weights stored at all
    assert [n for n, _ in msu.named_buffers()] == [n for n, _ in su.named_buffers()]


def test_msu_of_identical_operands_is_zero_before_conv():
    _, b = pair()
    msu = MultiScaleSubtractionUnit(6)
    assert torch.count_nonzero(msu.combine(b, b)) == 0


def test_msu_literal_dense_1x1_is_channel_sum_and_all_channels_equal():
    a, b = pair()
    msu = MultiScaleSubtractionUnit(6, mode="dense", identity_1x1=False, kernel_sizes=(1,))
    inner = msu.combine(a[..., :1, :1].expand_as(b), b)
    torch.testing.assert_close(inner, (a[..., :1, :1].sum(1, keepdim=True) - b.sum(1, keepdim=True)).abs().expand_as(b))
    assert torch.all(inner == inner[:, :1])


def test_msu_contains_su_term():
    """With the 1x1 term as identity (default), kernel_sizes=(1,) is exactly the SU."""
    a, b = pair()
    su = SubtractionUnit(6).eval()
    msu = MultiScaleSubtractionUnit(6, kernel_sizes=(1,)).eval()
    msu.load_state_dict(su.state_dict())
    torch.testing.assert_close(msu(a, b), su(a, b))


def test_msu_follows_dtype_and_device_of_inputs():
    a, b = pair()
    msu = MultiScaleSubtractionUnit(6).double()
    assert msu(a.double(), b.double()).dtype == torch.float64


def test_msu_gradients_reach_both_operands():
    a, b = pair()
    a.requires_grad_(True)
    b.requires_grad_(True)
    MultiScaleSubtractionUnit(6)(a, b).sum().backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# ----------------------------------------------------------------- ASPP / DenseASPP (Fig. 7, Table VIII)
def test_aspp_unit_sums_branch_differences():
    a, b = pair(c=4, hw=(16, 16), low=(8, 8))
    u = AsppSubtractionUnit(4).eval()
    up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
    inner = sum(torch.abs(ba(up) - bb(b)) for ba, bb in zip(u.branches_a, u.branches_b))
    torch.testing.assert_close(u(a, b), u.conv(inner))
    assert [(br[0].kernel_size, br[0].dilation) for br in u.branches_a] == [
        ((1, 1), (1, 1)),
        ((3, 3), (1, 1)),
        ((3, 3), (2, 2)),
    ]
    per_operand = 64 * 64 + 2 * 64 * 64 * 9
    assert nparams(AsppSubtractionUnit(64)) - nparams(SubtractionUnit(64)) == 2 * per_operand
    assert nparams(AsppSubtractionUnit(64, shared=True)) - nparams(SubtractionUnit(64)) == per_operand
    shared = AsppSubtractionUnit(4, shared=True)
    assert torch.count_nonzero(shared.combine(b, b)) == 0


def test_dense_aspp_unit_feeds_concatenated_features():
    a, b = pair(c=4, hw=(12, 12), low=(6, 6))
    u = DenseAsppSubtractionUnit(4).eval()
    up = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)

    def branches(x):
        y1 = u.layers[0](x)
        y2 = u.layers[1](torch.cat([x, y1], 1))
        y3 = u.layers[2](torch.cat([x, y1, y2], 1))
        return [y1, y2, y3]

    inner = sum(torch.abs(p - q) for p, q in zip(branches(up), branches(b)))
    torch.testing.assert_close(u(a, b), u.conv(inner))
    assert nparams(DenseAsppSubtractionUnit(64)) - nparams(SubtractionUnit(64)) == (
        64 * 64 + 128 * 64 * 9 + 192 * 64 * 9 + 3 * 128
    )


def test_units_reject_bad_input():
    with pytest.raises(ValueError, match="f_b must be"):
        SubtractionUnit(4)(torch.zeros(1, 4, 3, 3), torch.zeros(1, 5, 6, 6))
    with pytest.raises(ValueError, match="unknown unit"):
        make_unit("mul", 4)
    with pytest.raises(ValueError, match="odd"):
        MultiScaleSubtractionUnit(4, kernel_sizes=(1, 4))
    with pytest.raises(ValueError, match="impl"):
        MultiScaleSubtractionUnit(4, impl="fft")


def test_conv_bn_relu_is_torchvision_conv2d_norm_activation():
    from torchvision.ops import Conv2dNormActivation

    from mslib.blocks.subtraction import ConvBNReLU

    m = ConvBNReLU(4, 8, 3, dilation=2)
    assert isinstance(m, Conv2dNormActivation)
    assert m[0].padding == (2, 2) and m[0].bias is not None  # bias kept, as the official count
    assert sum(p.numel() for p in m.parameters()) == 8 * 4 * 9 + 8 + 2 * 8
    assert list(m.state_dict()) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
    ]
    assert ConvBNReLU(4, 8, bias=False)[0].bias is None
