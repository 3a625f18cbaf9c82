"""Receptive fields (PDCR Eq. 5-7): hand stacks, torchvision ResNet stages, analytic == probed."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from mslib.receptive_field import ReceptiveField, probe_receptive_field, receptive_field, resnet_conv_stack, rf_boxes


def test_hand_stacks():
    # one 3x3 conv, padding 1: position p sees p-1..p+1
    assert receptive_field([(3, 1, 1)]) == ReceptiveField(3, 1, -1)
    # conv3 -> pool2/2 -> conv3: r = 1 + 2 + 1*1 + 2*2 = 8, jump 2, start -1 - 0 - 1*2 = -3 (Eq. 5, 7)
    assert receptive_field([(3, 1, 1), (2, 2, 0), (3, 1, 1)]) == ReceptiveField(8, 2, -3)
    # VGG-like: two convs, pool, two convs, pool: r = 1 + 2 + 2 + 1 + 2*2 + 2*2 + 1*2 = 16
    assert receptive_field([(3, 1, 1), (3, 1, 1), (2, 2, 0), (3, 1, 1), (3, 1, 1), (2, 2, 0)]).size == 16
    # a dilated 3x3 (d = 2) is a 5-wide kernel
    assert receptive_field([(3, 1, 2, 2)]) == ReceptiveField(5, 1, -2)


def test_eq5_eq6_boxes_by_hand():
    rf = receptive_field([(3, 1, 1), (2, 2, 0), (3, 1, 1)])
    start, end = rf_boxes(rf, torch.tensor([0, 1, 5]))
    # Eq. 5: o = 2 o_l - (1 + 0 * 1 + 1 * 2) = 2 o_l - 3
    # Eq. 6: e = 2 e_l - ((1 + 1 - 3) * 1 + (1 + 0 - 2) * 1 + (1 + 1 - 3) * 2) = 2 e_l + 4
    assert start.tolist() == [-3, -1, 7] and end.tolist() == [4, 6, 14]
    assert ((end - start + 1) == rf.size).all()


def test_bad_layers_are_named():
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        receptive_field([(3, 1, 1), (3, 0, 1)])


def test_probe_matches_analytic_on_a_small_network():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
    )
    rf = receptive_field([(3, 1, 1), (2, 2, 0), (5, 2, 2), (3, 1, 1)])
    for pos in [(0, 0), (3, 5), (7, 7)]:
        (r0, r1), (c0, c1), (h, w) = probe_receptive_field(net, (32, 32), pos, in_channels=1)
        assert (h, w) == (8, 8)
        for (a, b), p in (((r0, r1), pos[0]), ((c0, c1), pos[1])):
            s, e = rf_boxes(rf, torch.tensor(p))
            assert (a, b) == (max(int(s), 0), min(int(e), 31))


@pytest.mark.parametrize(
    "arch,layers,bottleneck,stages,expect",
    [
        ("resnet18", (2, 2, 2, 2), False, ("conv1", "maxpool", "layer1", "layer2"), (7, 11, 43, 99)),
        ("resnet50", (3, 4, 6, 3), True, ("layer1", "layer2"), (35, 91)),
    ],
)
def test_resnet_stages_analytic_equals_probed(arch, layers, bottleneck, stages, expect):
    model = getattr(torchvision.models, arch)(weights=None)
    for stage, size in zip(stages, expect):
        rf = receptive_field(resnet_conv_stack(stage, layers, bottleneck))
        assert rf.size == size
        getter = IntermediateLayerGetter(model, {stage: "out"})
        (r0, r1), (c0, c1), (h, w) = probe_receptive_field(getter, (160, 160), output=lambda o: o["out"])
        s, e = rf_boxes(rf, torch.tensor(h // 2))
        assert (r0, r1) == (c0, c1) == (max(int(s), 0), min(int(e), 159)), stage


def test_probe_swaps_a_pooling_module_used_twice():
    pool = nn.MaxPool2d(2)
    conv = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)]
    net = nn.Sequential(conv[0], pool, conv[1], pool, conv[2])
    (r0, r1), _, (h, _) = probe_receptive_field(net, (64, 64), in_channels=1)
    rf = receptive_field([(3, 1, 1), (2, 2, 0), (3, 1, 1), (2, 2, 0), (3, 1, 1)])
    s, e = rf_boxes(rf, torch.tensor(h // 2))
    assert (r0, r1) == (int(s), int(e)) and rf.size == 18


def test_probe_leaves_the_model_untouched():
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.BatchNorm2d(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probe_receptive_field(net, (8, 8))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net.training
