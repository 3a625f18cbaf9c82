"""Swin-UNet (swin-tiny, CTS/MCSC Transformer) on torchvision blocks: count, features, ImageNet loading."""

import pytest
import torch
from torchvision.models import swin_t

from mslib.models.pretrained import PretrainedWeightsUnavailable
from mslib.models.swin_unet import SwinUNet


def test_parameter_count():
    assert sum(p.numel() for p in SwinUNet(1, 4).parameters()) == 27_168_420  # SSL4MIS / MCSC


def test_features_and_one_channel_input():
    torch.manual_seed(0)
    m = SwinUNet(1, 4).eval()
    x = torch.randn(1, 1, 64, 64)
    logits, feats = m(x, return_features=True)
    assert logits.shape == (1, 4, 64, 64)
    assert [tuple(f.shape[1:]) for f in feats] == [(384, 4, 4), (192, 8, 8), (96, 16, 16), (96, 64, 64)]
    assert m.feature_channels == [384, 192, 96, 96]
    # a 1-channel image is the 3-channel image with the channel repeated
    m3 = SwinUNet(3, 4).eval()
    m3.load_state_dict(m.state_dict())
    torch.testing.assert_close(m3(x.repeat(1, 3, 1, 1)), logits)
    with pytest.raises(ValueError, match="multiples of 32"):
        m(torch.randn(1, 1, 48, 48))


def test_torchvision_swin_t_weights_mirrored_into_decoder():
    torch.manual_seed(1)
    state = swin_t().state_dict()  # random torchvision swin_t: same keys as the ImageNet file
    m = SwinUNet(1, 4)
    m.load_torchvision_swin_t(state)
    assert m.pretrained_loaded
    torch.testing.assert_close(m.patch_embed[0].weight, state["features.0.0.weight"])
    torch.testing.assert_close(m.layers[2][1].attn.qkv.weight, state["features.5.1.attn.qkv.weight"])
    torch.testing.assert_close(m.layers_up[0][1].mlp[0].weight, state["features.5.1.mlp.0.weight"])
    torch.testing.assert_close(m.layers_up[2][0].norm1.weight, state["features.1.0.norm1.weight"])
    torch.testing.assert_close(m.merges[1].reduction.weight, state["features.4.reduction.weight"])


def test_offline_pretrained_fails_with_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLIB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(PretrainedWeightsUnavailable, match="swin_t"):
        SwinUNet(pretrained=True)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        m = SwinUNet(pretrained="auto")
    assert not m.pretrained_loaded
