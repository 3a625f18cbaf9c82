"""Learning-rate schedules (mslib.train.schedule) against hand-computed factors."""

import math

import pytest
import torch

from mslib.train.schedule import build_scheduler, lr_factor


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "poly"])
def test_warmup_is_linear_then_starts_at_one(schedule):
    # W = 4: factors 1/4, 2/4, 3/4, 4/4, then the decay starts at u = 0 (factor 1)
    got = [lr_factor(s, 20, schedule, warmup_steps=4) for s in range(5)]
    assert got == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_decay_values_hand_computed():
    # T = 10, W = 2: u = (t - 2) / 8
    assert lr_factor(6, 10, "linear", 2) == pytest.approx(0.5)  # u = 0.5
    assert lr_factor(6, 10, "linear", 2, min_lr_ratio=0.1) == pytest.approx(0.55)  # 0.1 + 0.9 * 0.5
    assert lr_factor(4, 10, "cosine", 2) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # 0.853553
    assert lr_factor(4, 10, "cosine", 2) == pytest.approx(0.8535534)
    assert lr_factor(6, 10, "poly", 2, poly_power=0.9) == pytest.approx(0.5**0.9)  # 0.535887
    assert lr_factor(6, 10, "poly", 2, poly_power=2.0, min_lr_ratio=0.2) == pytest.approx(0.2 + 0.8 * 0.25)
    assert lr_factor(7, 10, "constant", 2) == 1.0
    # past the end the factor stays at the floor
    assert lr_factor(100, 10, "linear", 2, min_lr_ratio=0.05) == pytest.approx(0.05)
    assert lr_factor(100, 10, "cosine", 0) == pytest.approx(0.0, abs=1e-12)


def test_m2snet_warmup_and_linear_decay_is_a_triangle():
    # M2SNet Sec. IV-B "warm-up and linear decay": rises to 1 at the middle, then falls linearly
    f = [lr_factor(s, 100, "linear", warmup_steps=50) for s in range(100)]
    assert f[49] == 1.0 and f[0] == pytest.approx(0.02) and f[75] == pytest.approx(0.5)
    assert max(f) == 1.0


def test_lambdalr_scales_each_groups_own_base_lr():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 0.005}, {"params": [b], "lr": 0.05}], lr=1.0)
    sched = build_scheduler(opt, total_steps=10, schedule="cosine", warmup_steps=3, min_lr_ratio=0.1)
    for step in range(10):
        f = lr_factor(step, 10, "cosine", 3, min_lr_ratio=0.1)
        assert opt.param_groups[0]["lr"] == pytest.approx(0.005 * f)
        assert opt.param_groups[1]["lr"] == pytest.approx(0.05 * f)
        opt.step()
        sched.step()
    # its state dict holds only plain values (loadable with weights_only=True)
    sd = sched.state_dict()
    assert sd["base_lrs"] == [0.005, 0.05] and sd["last_epoch"] == 10


def test_bad_arguments():
    with pytest.raises(ValueError, match="valid schedules are 'constant', 'linear', 'cosine', 'poly'"):
        lr_factor(0, 10, "step")
    with pytest.raises(ValueError, match="total_steps"):
        lr_factor(0, 0, "linear")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        lr_factor(0, 10, "linear", min_lr_ratio=2.0)
