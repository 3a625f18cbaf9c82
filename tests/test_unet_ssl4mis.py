"""SSL4MIS UNet (CTS/MCSC CNN): parameter count, multi-scale features, errors."""

import pytest
import torch

from mslib.models.unet_ssl4mis import UNetSSL4MIS


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts():
    assert _count(UNetSSL4MIS(1, 4)) == 1_813_764  # SSL4MIS / MCSC, as the code runs
    assert _count(UNetSSL4MIS(1, 4, upsampling="transposed")) == 1_944_324
    # the difference is the up-sampling: 4ab + b (2x2 transposed) vs ab + b (1x1 conv), summed over levels
    assert 1_944_324 - 1_813_764 == 3 * (256 * 128 + 128 * 64 + 64 * 32 + 32 * 16)


@pytest.mark.parametrize("up", ["bilinear", "transposed"])
def test_features_and_logits(up):
    m = UNetSSL4MIS(1, 4, upsampling=up).eval()
    x = torch.randn(2, 1, 64, 64)
    logits, feats = m(x, return_features=True)
    assert logits.shape == (2, 4, 64, 64)
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 8, 8), (64, 16, 16), (32, 32, 32), (16, 64, 64)]
    assert m.feature_channels == [128, 64, 32, 16]
    torch.testing.assert_close(m(x), logits)


def test_errors():
    with pytest.raises(ValueError, match="divisible by 16"):
        UNetSSL4MIS()(torch.randn(1, 1, 40, 40))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        UNetSSL4MIS()(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="upsampling"):
        UNetSSL4MIS(upsampling="nearest")
