"""LossNet (M2SNet Eq. 5-6): frozen VGG-16 cut at relu1_2/2_2/3_3/4_3, and the total loss (Eq. 4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from mslib.losses.lossnet import VGG_CUTS, LossNet, M2SNetLoss
from mslib.losses.structure import structure_loss
from mslib.models import pretrained as P


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MSLIB_OFFLINE", "1")


@pytest.fixture(scope="module")
def lossnet():
    torch.manual_seed(0)
    return LossNet(pretrained=False)


def test_cut_points_are_relu1_2_relu2_2_relu3_3_relu4_3(lossnet):
    assert VGG_CUTS == (3, 8, 15, 22)
    reference = make_layers(cfgs["D"])  # torchvision's vgg16().features
    names, conv, block = [], 0, 1
    for i, layer in enumerate(reference[:23]):
        if isinstance(layer, nn.MaxPool2d):
            block, conv = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            conv += 1
        elif i in VGG_CUTS:
            names.append(f"relu{block}_{conv}")
    assert names == ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]
    assert [len(b) for b in lossnet.blocks] == [4, 5, 7, 7]
    assert all(isinstance(b[-1], nn.ReLU) for b in lossnet.blocks)


def test_features_equal_torchvision_vgg16_at_the_cuts(lossnet):
    reference = make_layers(cfgs["D"]).eval()
    own = [m for b in lossnet.blocks for m in b]
    reference[:23].load_state_dict(nn.Sequential(*own).state_dict())
    x = torch.rand(2, 1, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = (x.repeat(1, 3, 1, 1) - mean) / std
    expected = []
    with torch.no_grad():
        for i, layer in enumerate(reference[:23]):
            h = layer(h)
            if i in VGG_CUTS:
                expected.append(h.clone())
        got = lossnet.features(x)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_value_is_sum_of_level_mse(lossnet):
    torch.manual_seed(1)
    logits = torch.randn(2, 1, 24, 24)
    mask = (torch.rand(2, 24, 24) > 0.5).long()
    with torch.no_grad():
        fp = lossnet.features(torch.sigmoid(logits))
        fg = lossnet.features(mask[:, None].float())
    expected = sum(((a - b) ** 2).mean() for a, b in zip(fp, fg))
    torch.testing.assert_close(lossnet(logits, mask), expected)
    assert len(lossnet.levels(logits, mask)) == 4


def test_identical_inputs_give_zero(lossnet):
    p = torch.rand(2, 1, 20, 20)
    probs = LossNet(pretrained=False, from_logits=False)
    assert probs(p, p).item() == 0.0
    logits = torch.randn(2, 1, 20, 20)
    assert lossnet(logits, torch.sigmoid(logits)).item() == 0.0
    assert lossnet(torch.full((1, 1, 16, 16), 40.0), torch.ones(1, 16, 16)).item() < 1e-10


def test_frozen_but_passes_gradients_to_the_prediction(lossnet):
    assert not any(p.requires_grad for p in lossnet.parameters())
    lossnet.train()
    assert not lossnet.training and not any(m.training for m in lossnet.modules())
    logits = torch.randn(1, 1, 16, 16, requires_grad=True)
    lossnet(logits, torch.ones(1, 16, 16)).backward()
    assert logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in lossnet.parameters())


def test_resize_option_matches_official_224(lossnet):
    ln = LossNet(pretrained=False, resize=24)
    ln.load_state_dict(lossnet.state_dict())
    x, m = torch.randn(1, 1, 16, 16), torch.ones(1, 16, 16)
    up = lambda t: F.interpolate(t, size=(24, 24), mode="bilinear", align_corners=False)  # noqa: E731
    with torch.no_grad():  # sigmoid first, then resize both maps (official order)
        fp, fg = lossnet.features(up(torch.sigmoid(x))), lossnet.features(up(m[:, None]))
    torch.testing.assert_close(ln(x, m), sum(((a - b) ** 2).mean() for a, b in zip(fp, fg)))


def test_weights_offline_auto_warns_true_fails(tmp_path):
    with pytest.warns(UserWarning, match="vgg16.*RANDOMLY INITIALISED"):
        ln = LossNet(pretrained="auto")
    assert not ln.pretrained_loaded
    with pytest.raises(P.PretrainedWeightsUnavailable, match="download.pytorch.org/models/vgg16"):
        LossNet(pretrained=True)


def test_loads_torchvision_file_layout_from_local_path(tmp_path, lossnet):
    state = {f"features.{k}": torch.randn_like(v) for k, v in make_layers(cfgs["D"]).state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored: LossNet keeps only features[:23]
    torch.save(state, tmp_path / "vgg16.pth")
    ln = LossNet(pretrained=tmp_path / "vgg16.pth")
    assert ln.pretrained_loaded
    torch.testing.assert_close(ln.blocks[3][5].weight, state["features.21.weight"])


def test_total_loss_eq4():
    torch.manual_seed(0)
    logits, mask = torch.randn(2, 1, 16, 16), (torch.rand(2, 16, 16) > 0.5).long()
    loss = M2SNetLoss(lossnet_weight=0.1, lossnet_pretrained=False)
    parts = loss.components(logits, mask)
    torch.testing.assert_close(parts["structure"], structure_loss(logits, mask))
    torch.testing.assert_close(parts["lossnet"], loss.lossnet(logits, mask))
    torch.testing.assert_close(loss(logits, mask), parts["structure"] + 0.1 * parts["lossnet"])
    off = M2SNetLoss(lossnet_weight=0.0)
    assert off.lossnet is None
    torch.testing.assert_close(off(logits, mask), structure_loss(logits, mask))
    legacy = M2SNetLoss(lossnet_weight=0.0, legacy_bce=True)
    torch.testing.assert_close(legacy(logits, mask), structure_loss(logits, mask, legacy=True))
    with pytest.raises(ValueError, match="lossnet_weight"):
        M2SNetLoss(lossnet_weight=-1)
