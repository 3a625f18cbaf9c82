"""UAFR (PDCR/UAFR paper Eq. 13-15): values, parameter count, extremes."""

from __future__ import annotations

import math

import pytest
import torch

from mslib.blocks.uafr import UAFR, normalized_entropy, uafr_num_parameters


@pytest.mark.parametrize("c", [1, 16, 64, 304])
def test_parameter_count_is_144c_plus_66(c):
    block = UAFR(c)
    assert sum(p.numel() for p in block.parameters()) == 144 * c + 66 == uafr_num_parameters(c)


def test_entropy_by_hand():
    # p = (0.8, 0.2): H = -(0.8 log2 0.8 + 0.2 log2 0.2) = 0.721928
    logits = torch.log(torch.tensor([0.8, 0.2])).view(1, 2, 1, 1)
    assert normalized_entropy(logits).item() == pytest.approx(0.7219280948873623, abs=1e-6)
    # M = 4, p = (0.5, 0.25, 0.125, 0.125): H = 1.75 bits, / log2 4 = 0.875
    logits = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125])).view(1, 4, 1, 1)
    assert normalized_entropy(logits).item() == pytest.approx(0.875, abs=1e-6)
    # extreme logits stay finite (no 0 * log 0)
    assert torch.isfinite(normalized_entropy(torch.tensor([[1e4, -1e4]]).view(1, 2, 1, 1))).all()


def _set_last_conv(block: UAFR, weight: float, bias: tuple[float, float]) -> None:
    last = block.head[-1]
    torch.nn.init.constant_(last.weight, weight)
    with torch.no_grad():
        last.bias.copy_(torch.tensor(bias))


def test_uniform_logits_leave_q_unchanged():
    block = UAFR(8).eval()
    _set_last_conv(block, 0.0, (0.3, 0.3))  # equal logits: U = 1, Q_hat = Q (1 + 0)
    q = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(block(q), q)


def test_confident_head_doubles_q():
    block = UAFR(8).eval()
    _set_last_conv(block, 0.0, (60.0, -60.0))  # p = (1, 0): U = 0, Q_hat = 2 Q
    q = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(block(q), 2 * q)


def test_forward_matches_eq_13_to_15_written_out():
    torch.manual_seed(0)
    block = UAFR(6, num_states=3).eval()
    q = torch.randn(2, 6, 4, 4)
    a = torch.softmax(block.head(q), dim=1)  # Eq. 13
    u = -(a * torch.log2(a)).sum(1) / math.log2(3)  # Eq. 14
    torch.testing.assert_close(block(q), q * (1 + (1 - u))[:, None])  # Eq. 15
    assert ((u >= 0) & (u <= 1)).all()


def test_m1_is_defined_and_bad_args_are_named():
    q = torch.randn(1, 4, 3, 3)
    torch.testing.assert_close(UAFR(4, num_states=1).eval()(q), 2 * q)
    with pytest.raises(ValueError, match="channels"):
        UAFR(0)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        UAFR(4)(torch.randn(1, 3, 2, 2))


def test_gradients_reach_the_head():
    block = UAFR(4)
    q = torch.randn(2, 4, 6, 6, requires_grad=True)
    block(q).square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())
