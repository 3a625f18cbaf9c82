"""Plug-ins: UAFR after named layers and PDCR feature taps on UNet, torchvision FCN and DeepLabV3+."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.segmentation import fcn_resnet50

from mslib.blocks.uafr import uafr_num_parameters
from mslib.losses.dragsaw import PatchDragsawLoss
from mslib.models.deeplabv3plus import DeepLabV3Plus
from mslib.models.plugins import FeatureTap, PlugIn, attach_uafr
from mslib.models.unet import UNet

X = torch.randn(2, 3, 32, 32)


def _models():
    return {
        "unet": (lambda: UNet(3, 2, 8, 3), ["encoder.1", "decoder.0"], ["encoder.1", "encoder.2"]),
        "fcn": (
            lambda: fcn_resnet50(weights=None, weights_backbone=None, num_classes=2, aux_loss=False),
            ["backbone.layer1", "backbone.layer2"],
            ["backbone.layer1", "backbone.layer2"],
        ),
        "deeplabv3plus": (
            lambda: DeepLabV3Plus(2, "resnet18"),
            ["backbone.layer1", "backbone.layer2", "decoder"],
            ["backbone.layer1", "backbone.layer2"],
        ),
    }


@pytest.mark.parametrize("name", ["unet", "fcn", "deeplabv3plus"])
def test_plugins_attach_train_and_cost_nothing_at_inference(name):
    build, uafr_layers, pdcr_layers = _models()[name]
    torch.manual_seed(0)
    model = build()
    keys = set(model.state_dict())
    n_before = sum(p.numel() for p in model.parameters())
    net = PlugIn(model, uafr_layers, pdcr_layers, example_input=X)
    # UAFR adds 144 C + 66 parameters per layer; the model's own keys are unchanged
    added = sum(p.numel() for p in net.parameters()) - n_before
    assert added == sum(uafr_num_parameters(c) for c in net.model.uafr_channels.values())
    assert keys <= set(model.state_dict()) and all(k.startswith("uafr.") for k in set(model.state_dict()) - keys)
    # a training step: CE + PDCR on the tapped features; gradients reach the model and the UAFR heads
    net.train()
    mask = (torch.rand(2, 32, 32) > 0.5).long()
    logits = net(X)
    assert logits.shape == (2, 2, 32, 32)
    feats = net.features
    assert [f.shape[1] for f in feats] == net.pdcr_channels
    pdcr = PatchDragsawLoss(num_vectors=(16, 8), cross_layer_pairs=[(0, 1)], in_channels=net.pdcr_channels)
    loss = torch.nn.functional.cross_entropy(logits, mask) + 0.1 * pdcr(feats, mask)
    loss.backward()
    assert all(p.grad is not None for p in net.model.uafr.parameters())
    # inference: no feature is kept
    net.tap.clear()
    net.eval()
    with torch.no_grad():
        net(X)
    with pytest.raises(RuntimeError, match="training mode"):
        _ = net.features


def test_uafr_hook_changes_the_output_exactly_as_the_block():
    torch.manual_seed(0)
    model = UNet(3, 1, 8, 2).eval()
    plain = copy.deepcopy(model)
    blocks = attach_uafr(model, ["encoder.2"], channels=[32])
    with torch.no_grad():
        skips = []
        x = X[:1]
        for level, block in enumerate(plain.encoder):
            x = block(x)
            if level == 2:
                x = blocks["encoder__2"].block(x)
            if level < plain.depth:
                skips.append(x)
                x = plain.pool(x)
        for up, block in zip(plain.up, plain.decoder):
            x = block(torch.cat([skips.pop(), up(x)], 1))
        torch.testing.assert_close(model(X[:1]), plain.head(x))


def test_deepcopy_rebinds_the_hooks():
    model = UNet(3, 2, 8, 2)
    net = PlugIn(model, ["encoder.1"], ["encoder.1"], example_input=X)
    twin = copy.deepcopy(net)
    with torch.no_grad():
        for p in twin.model.uafr.parameters():
            p.add_(1.0)
    twin.train()
    twin(X)
    assert len(twin.tap._store) == 1 and len(net.tap._store) == 0
    net.eval(), twin.eval()
    with torch.no_grad():
        assert not torch.allclose(net(X), twin(X))  # the copy uses its own UAFR blocks


def test_compiles_with_uafr_and_taps():
    torch.manual_seed(0)
    net = PlugIn(UNet(3, 2, 8, 2), ["encoder.1", "decoder.0"], ["encoder.1"], example_input=X).train()
    eager = net(X)
    compiled = torch.compile(net, backend="aot_eager")  # Dynamo + AOTAutograd; inductor codegen is slow on 2 cores
    torch.testing.assert_close(compiled(X), eager)
    assert net.features[0].shape == (2, 16, 16, 16)


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match="no layer named 'encoder.9'"):
        attach_uafr(UNet(3, 1, 8, 2), ["encoder.9"], channels=[8])
    with pytest.raises(ValueError, match="example_input"):
        attach_uafr(UNet(3, 1, 8, 2), ["encoder.1"])
    model = UNet(3, 1, 8, 2)
    FeatureTap(model, ["encoder.0"])
    assert hasattr(model, "pdcr_tap")


def test_deeplabv3plus_shapes_and_errors():
    for backbone, os_ in (("resnet18", 16), ("resnet18", 8), ("resnet50", 16)):
        m = DeepLabV3Plus(3, backbone, os_).eval()
        with torch.no_grad():
            assert m(torch.randn(1, 3, 32, 48)).shape == (1, 3, 32, 48)
            assert m.backbone(torch.randn(1, 3, 32, 48))["out"].shape[-2:] == (32 // os_, 48 // os_)
    with pytest.raises(ValueError, match="backbone"):
        DeepLabV3Plus(backbone="vgg")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        DeepLabV3Plus(backbone="resnet18")(torch.randn(1, 1, 32, 32))
