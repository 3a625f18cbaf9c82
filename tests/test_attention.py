"""Efficient attention (MS-Former Eq. 2) and the efficient transformer block."""

import math

import pytest
import torch

from mslib.blocks.attention import (
    EfficientAttention,
    EfficientTransformerBlock,
    MixFFN,
    efficient_attention,
    softmax_attention,
)


def _direct_eq2(q, k, v):
    """Eq. 2 written out with explicit sums (independent of the module's matmul order)."""
    n, dk = k.shape
    dv = v.shape[1]
    rk = torch.exp(k) / torch.exp(k).sum(0, keepdim=True)  # softmax over positions
    rq = torch.exp(q) / torch.exp(q).sum(1, keepdim=True)  # softmax over channels
    out = torch.zeros(q.shape[0], dv, dtype=q.dtype)
    for i in range(q.shape[0]):
        for c in range(dv):
            out[i, c] = sum(rq[i, a] * sum(rk[t, a] * v[t, c] for t in range(n)) for a in range(dk))
    return out


def test_efficient_attention_matches_direct_eq2():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(3))
    out, ctx = efficient_attention(q, k, v)
    torch.testing.assert_close(out, _direct_eq2(q, k, v))
    # G = rho_k(K)^T V, shape d_k x d_v
    assert ctx.shape == (3, 3)
    torch.testing.assert_close(ctx, torch.softmax(k, 0).T @ v)


def test_softmax_dimensions():
    """Keys normalised over positions: with V = one-hot positions, rows of G are the key distributions."""
    g = torch.Generator().manual_seed(1)
    n, d = 7, 4
    k = torch.randn(n, d, generator=g, dtype=torch.float64)
    q = torch.randn(n, d, generator=g, dtype=torch.float64)
    _, ctx = efficient_attention(q, k, torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(ctx.sum(1), torch.ones(d, dtype=torch.float64))  # each key channel sums to 1 over n
    # Queries normalised over channels: with G = I the output rows are distributions over channels
    out = torch.softmax(q, -1) @ torch.eye(d, dtype=torch.float64)
    torch.testing.assert_close(out.sum(-1), torch.ones(n, dtype=torch.float64))
    # swapping the softmax dims of k would give a different context: the test can fail
    wrong = torch.softmax(k, 1).T @ torch.eye(n, dtype=torch.float64)
    assert not torch.allclose(wrong.sum(1), torch.ones(d, dtype=torch.float64))


def test_softmax_attention_reference():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 6, 4, generator=g) for _ in range(3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(softmax_attention(q, k, v), ref, atol=1e-5, rtol=1e-5)


def test_module_heads_and_context_shape():
    torch.manual_seed(0)
    att = EfficientAttention(dim=8, heads=2)
    x = torch.randn(3, 10, 8)
    out, ctx = att(x)
    assert out.shape == (3, 10, 8)
    assert ctx.shape == (3, 2, 4, 4)
    # per-head computation equals the functional Eq. 2 on that head's channels
    q, k, v = att.to_q(x), att.to_k(x), att.to_v(x)
    o0, c0 = efficient_attention(q[..., :4], k[..., :4], v[..., :4])
    o1, c1 = efficient_attention(q[..., 4:], k[..., 4:], v[..., 4:])
    torch.testing.assert_close(ctx[:, 0], c0)
    torch.testing.assert_close(ctx[:, 1], c1)
    torch.testing.assert_close(out, att.proj(torch.cat([o0, o1], -1)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="heads"):
        EfficientAttention(dim=6, heads=4)
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        EfficientAttention(8)(torch.randn(2, 8))
    with pytest.raises(ValueError, match="hw"):
        MixFFN(4, 8)(torch.randn(1, 10, 4), (3, 3))


def test_block_residual_and_locality():
    torch.manual_seed(0)
    blk = EfficientTransformerBlock(dim=8, heads=1, mlp_ratio=2)
    x = torch.randn(2, 5 * 6, 8)
    y, ctx = blk(x, (5, 6))
    assert y.shape == x.shape and ctx.shape == (2, 1, 8, 8)
    # with attention and FFN outputs zeroed, the block is the identity (residuals)
    for m in (blk.attn.proj, blk.ffn.fc2):
        torch.nn.init.zeros_(m.weight)
        torch.nn.init.zeros_(m.bias)
    torch.testing.assert_close(blk(x, (5, 6))[0], x)


def test_mixffn_depthwise_conv_is_local():
    """Mix-FFN mixes only 3x3 neighbours: a change at one pixel moves only its 8 neighbours and itself."""
    torch.manual_seed(0)
    ffn = MixFFN(4, 8)
    x = torch.randn(1, 36, 4)
    x2 = x.clone()
    x2[0, 0] += 1.0  # pixel (0, 0) of a 6x6 map
    d = (ffn(x2, (6, 6)) - ffn(x, (6, 6))).abs().sum(-1).view(6, 6)
    assert (d[:2, :2] > 0).all()
    assert d[2:, :].abs().max() == 0 and d[:, 2:].abs().max() == 0


def test_linear_cost_shape_large_n():
    """Efficient attention never forms the N x N matrix: 20k tokens with d=8 run in little memory."""
    q = k = v = torch.randn(1, 20000, 8)
    out, ctx = efficient_attention(q, k, v)
    assert out.shape == (1, 20000, 8) and ctx.shape == (1, 8, 8)
    assert math.isfinite(float(out.sum()))
