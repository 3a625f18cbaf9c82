"""UNet baseline (mslib.models.unet) and its loss (mslib.losses.dice: soft Dice, Dice+BCE, Dice+CE)."""

import math

import pytest
import torch
import torch.nn.functional as F

from mslib.losses.dice import dice_bce, dice_ce, soft_dice_loss
from mslib.models.unet import UNet, unet_num_parameters


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------ UNet
@pytest.mark.parametrize("k,depth,size", [(1, 2, 16), (4, 3, 24), (2, 4, 32)])
def test_output_shape(k, depth, size):
    m = UNet(in_channels=3, num_classes=k, base_channels=4, depth=depth).eval()
    out = m(torch.rand(2, 3, size, 2 * size))
    assert out.shape == (2, k, size, 2 * size)
    feats = m.decode(torch.rand(1, 3, size, size))
    assert [f.shape[1] for f in feats] == [4 * 2**i for i in range(depth - 1, -1, -1)]
    assert [f.shape[-1] for f in feats] == [size // 2**i for i in range(depth - 1, -1, -1)]


def test_parameter_count_hand_computed():
    # in 3, K 2, base 4, depth 2, batch norm: widths 4, 8, 16
    # encoder: block(3,4)=108+144+16=268, block(4,8)=288+576+32=896, block(8,16)=1152+2304+64=3520 -> 4684
    # decoder: up 16->8: 512+8=520, block(16,8)=1152+576+32=1760; up 8->4: 128+4=132, block(8,4)=288+144+16=448 -> 2860
    # head: 4*2+2 = 10                                                                        total 7554
    m = UNet(in_channels=3, num_classes=2, base_channels=4, depth=2)
    assert n_params(m) == 7554
    assert unet_num_parameters(3, 2, 4, 2) == 7554


def test_paper_width_matches_the_commonly_reported_count():
    # the 2015 architecture (widths 64 .. 1024) with batch norm and bias-free convs, RGB in, 2 classes out:
    # 31,037,698 parameters, the figure reported for e.g. milesial/Pytorch-UNet (transposed-conv variant)
    assert unet_num_parameters(3, 2, 64, 4) == 31_037_698
    assert n_params(UNet(3, 2, 64, 4)) == 31_037_698


@pytest.mark.parametrize(
    "cfg",
    [
        dict(in_channels=1, num_classes=4, base_channels=16, depth=4),
        dict(in_channels=3, num_classes=1, base_channels=8, depth=3, norm="none"),
        dict(in_channels=3, num_classes=3, base_channels=8, depth=1, norm="group"),
    ],
)
def test_parameter_formula_matches_module(cfg):
    assert n_params(UNet(**cfg)) == unet_num_parameters(**cfg)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    m = UNet(3, 2, base_channels=4, depth=2, dropout=0.1)
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    loss = F.cross_entropy(m(x), torch.randint(0, 2, (2, 16, 16)))
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_size_not_divisible_is_a_clear_error():
    m = UNet(3, 1, base_channels=4, depth=3)
    with pytest.raises(ValueError, match=r"divisible by 2\*\*depth = 8, got 20x24"):
        m(torch.rand(1, 3, 20, 24))
    with pytest.raises(ValueError, match="in_channels=3 but the input has 1"):
        m(torch.rand(1, 1, 16, 16))


def test_bad_arguments():
    with pytest.raises(ValueError, match="norm"):
        UNet(norm="layer")
    with pytest.raises(ValueError, match="one value per encoder level"):
        UNet(depth=2, dropout=[0.1, 0.2])
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


def test_per_level_dropout_places_dropout_layers():
    m = UNet(3, 1, base_channels=4, depth=2, dropout=[0.0, 0.1, 0.5])
    ps = [[mod.p for mod in block if isinstance(mod, torch.nn.Dropout2d)] for block in m.encoder]
    assert ps == [[], [0.1], [0.5]]


# ------------------------------------------------------------------------------ Dice losses
def logit(p):
    return math.log(p / (1 - p))


def binary_example():
    # p = [0.8, 0.2; 0.5, 0.5], g = [1, 0; 1, 0]
    logits = torch.tensor([[logit(0.8), logit(0.2)], [0.0, 0.0]]).view(1, 1, 2, 2)
    target = torch.tensor([[1, 0], [1, 0]]).view(1, 2, 2)
    return logits, target


def test_binary_soft_dice_hand_computed():
    logits, target = binary_example()
    # inter 1.3, sum p 2, sum g 2: D = (2.6 + 1) / (4 + 1) = 0.72
    torch.testing.assert_close(soft_dice_loss(logits, target), torch.tensor(0.28))
    # squared: denominator 0.64 + 0.04 + 0.25 + 0.25 + 2 = 3.18: D = 3.6 / 4.18
    torch.testing.assert_close(soft_dice_loss(logits, target, squared=True), torch.tensor(1 - 3.6 / 4.18))
    # (B, 1, H, W) float target gives the same
    torch.testing.assert_close(soft_dice_loss(logits, target.float().unsqueeze(1)), torch.tensor(0.28))


def test_batch_dice_vs_per_image():
    logits, target = binary_example()
    logits = torch.cat([logits, torch.zeros(1, 1, 2, 2)])  # image 2: p = 0.5 everywhere, empty mask
    target = torch.cat([target, torch.zeros(1, 2, 2, dtype=torch.long)])
    # per image: D1 = 0.72, D2 = (0 + 1) / (2 + 0 + 1) = 1/3
    torch.testing.assert_close(soft_dice_loss(logits, target), torch.tensor(1 - (0.72 + 1 / 3) / 2))
    # batch: inter 1.3, sum p 4, sum g 2: (2.6 + 1) / 7
    torch.testing.assert_close(soft_dice_loss(logits, target, batch_dice=True), torch.tensor(1 - 3.6 / 7))


def multiclass_example():
    # pixel A: p = [0.2, 0.8], class 1; pixel B: p = [0.5, 0.5], class 0
    logits = torch.tensor([[0.0, 0.0], [logit(0.8), 0.0]]).view(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    return logits, target


def test_multiclass_soft_dice_hand_computed():
    logits, target = multiclass_example()
    d0 = (2 * 0.5 + 1) / (0.7 + 1 + 1)  # class 0: inter 0.5, sum p 0.7, sum g 1
    d1 = (2 * 0.8 + 1) / (1.3 + 1 + 1)  # class 1: inter 0.8, sum p 1.3, sum g 1
    torch.testing.assert_close(soft_dice_loss(logits, target), torch.tensor(1 - (d0 + d1) / 2))
    torch.testing.assert_close(soft_dice_loss(logits, target, include_background=False), torch.tensor(1 - d1))
    onehot = F.one_hot(target, 2).permute(0, 3, 1, 2).float()
    torch.testing.assert_close(soft_dice_loss(logits, onehot), soft_dice_loss(logits, target))


def test_combos_hand_computed():
    logits, target = binary_example()
    bce = -(2 * math.log(0.8) + 2 * math.log(0.5)) / 4
    torch.testing.assert_close(dice_bce(logits, target), torch.tensor(bce + 0.28))
    torch.testing.assert_close(dice_bce(logits, target, dice_weight=0.5, bce_weight=2.0), torch.tensor(2 * bce + 0.14))
    logits, target = multiclass_example()
    ce = -(math.log(0.8) + math.log(0.5)) / 2
    d = 1 - ((2 / 2.7) + (2.6 / 3.3)) / 2
    torch.testing.assert_close(dice_ce(logits, target), torch.tensor(ce + d))


@pytest.mark.parametrize("k", [1, 3])
def test_empty_masks_finite_loss_and_gradients(k):
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    for value in (0.0, 30.0, -30.0):
        logits = torch.full((2, k, 8, 8), value, requires_grad=True)
        loss = dice_bce(logits, target) if k == 1 else dice_ce(logits, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # confident empty prediction on an empty mask: Dice -> 1
    assert soft_dice_loss(torch.full((1, 1, 4, 4), -30.0), torch.zeros(1, 4, 4)) < 1e-6
    # p = 0.5 everywhere on an empty mask of 16 pixels: D = 1 / (8 + 1)
    torch.testing.assert_close(soft_dice_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4)), torch.tensor(1 - 1 / 9))


def test_loss_errors_are_clear():
    with pytest.raises(ValueError, match="smooth must be > 0"):
        soft_dice_loss(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2), smooth=0)
    with pytest.raises(ValueError, match=r"in \[0, 2\]"):
        dice_ce(torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 3))
    with pytest.raises(ValueError, match="use dice_ce"):
        dice_bce(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="int64"):
        soft_dice_loss(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
