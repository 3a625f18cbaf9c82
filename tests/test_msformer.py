"""MS-Former model (MS-Former Sec. 2.2, 3.1, Eq. 3)."""

import pytest
import torch

from mslib.configs import get_config
from mslib.losses.scale_consistency import joint_loss
from mslib.models.msformer import MSFormer, PatchEmbed
from mslib.recipes.msformer import build_model


@pytest.mark.parametrize("size", [(16, 16), (17, 13)])
def test_output_shapes(size):
    torch.manual_seed(0)
    m = MSFormer(in_channels=3, n_clusters=7, dim=8, depth=2, heads=2, intra_dim=8, intra_grid=2, intra_cell=2)
    out = m(torch.rand(2, 3, *size))
    assert out.logits.shape == (2, 7, *size)
    assert len(out.contexts_small) == len(out.contexts_large) == 2
    assert out.contexts_small[0].shape == out.contexts_large[0].shape == (2, 2, 4, 4)
    assert len(out.tokens) == 2 and out.tokens[0][0].shape == (2, 4, 8)
    assert m(torch.rand(1, 3, *size), with_tokens=False).tokens is None


@pytest.mark.parametrize("mode", ["conv3x3", "patch"])
def test_patch_embed_token_counts(mode):
    for p, (h, w), expect in [(1, (9, 8), (9, 8)), (2, (9, 8), (5, 4))]:
        t, hw = PatchEmbed(3, 4, p, mode)(torch.rand(1, 3, h, w))
        assert hw == expect and t.shape == (1, expect[0] * expect[1], 4)


def test_patch_embed_patch_mode_is_non_overlapping():
    """'patch' mode: token (0, 0) of patch size 2 depends only on pixels [0:2, 0:2]."""
    torch.manual_seed(0)
    pe = PatchEmbed(1, 3, 2, "patch").eval()
    x = torch.rand(1, 1, 6, 6)
    x2 = x.clone()
    x2[..., 2, 2] += 5.0
    t1, _ = pe(x)
    t2, _ = pe(x2)
    assert torch.equal(t1[0, 0], t2[0, 0]) and not torch.equal(t1[0, 4], t2[0, 4])


def test_fusion_is_eq3():
    """logits = Linear([f_s(z_s) || UP(f_l(z_l))]) -- recompute from the branch outputs."""
    torch.manual_seed(0)
    m = MSFormer(in_channels=3, n_clusters=5, dim=4, intra_dim=4, intra_grid=1, intra_cell=2, out_norm=False)
    x = torch.rand(1, 3, 10, 10)
    out = m(x, with_tokens=False)
    zs, hws = m.embed_small(x)
    zl, hwl = m.embed_large(x)
    zs, _ = m.branch_small(zs, hws)
    zl, _ = m.branch_large(zl, hwl)
    ms = zs.transpose(1, 2).reshape(1, 4, 10, 10)
    ml = zl.transpose(1, 2).reshape(1, 4, 5, 5)
    ml = torch.nn.functional.interpolate(ml, size=(10, 10), mode="bilinear", align_corners=False)
    ref = torch.einsum("kc,bchw->bkhw", m.fuse.weight, torch.cat([ms, ml], 1)) + m.fuse.bias.view(1, 5, 1, 1)
    torch.testing.assert_close(out.logits, ref, atol=1e-5, rtol=1e-5)


def test_batchnorm_after_each_block():
    m = MSFormer(n_clusters=4, dim=8, depth=2, intra_dim=8, intra_grid=1, intra_cell=1)
    assert len(m.branch_small.norms) == 2 and all(isinstance(n, torch.nn.BatchNorm1d) for n in m.branch_small.norms)
    m.train()
    zs, hw = m.embed_small(torch.rand(2, 3, 6, 6))
    y, _ = m.branch_small(zs, hw)
    # training-mode BN: each channel has zero mean over all tokens of the batch
    torch.testing.assert_close(y.mean(dim=(0, 1)), torch.zeros(8), atol=1e-5, rtol=0)


def test_bad_inputs():
    m = MSFormer(n_clusters=4, dim=8, intra_dim=8, intra_grid=1, intra_cell=1)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="patch_size"):
        PatchEmbed(3, 4, 4)
    with pytest.raises(ValueError, match="patch_embed"):
        PatchEmbed(3, 4, 1, "vit")


@pytest.mark.parametrize("profile", ["quick", "paper"])
def test_config_profiles_build_and_step(profile):
    cfg = get_config("msformer", profile)
    torch.manual_seed(0)
    m = build_model(cfg)
    x = torch.rand(1, 3, 40, 40)
    out = m(x)
    loss, parts = joint_loss(out, cfg.lambdas, cfg.inter_mode, cfg.inter_blocks, cfg.intra_reduction)
    loss.backward()
    assert all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert out.logits.shape == (1, cfg.n_clusters, 40, 40)


def test_out_norm_is_bn_of_the_score_map():
    """out_norm=True: the logits are BN(z) (Eq. 7's BN on the output): per-channel zero mean, unit variance."""
    torch.manual_seed(0)
    m = MSFormer(3, n_clusters=6, dim=8, intra_dim=8, intra_grid=2, intra_cell=2, out_norm=True).train()
    logits = m(torch.randn(2, 3, 12, 12), with_tokens=False).logits
    torch.testing.assert_close(logits.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.var(dim=(0, 2, 3), unbiased=False), torch.ones(6), atol=1e-3, rtol=0)
    assert MSFormer(3, n_clusters=6, dim=8, intra_dim=8, intra_grid=2, intra_cell=2, out_norm=False).out_norm is None


def test_config_defaults_and_published_setting():
    import dataclasses

    from mslib.configs import MSFormerConfig

    cfg = MSFormerConfig.quick()
    assert cfg.out_norm is True and tuple(cfg.lambdas) == (1.0, 2.0, 0.6) and cfg.image_size == 128
    assert (cfg.n_clusters, cfg.mlp_ratio, cfg.lr, cfg.min_clusters, cfg.standardize) == (10, 2.0, 0.3, 2, False)
    pub = dataclasses.replace(cfg, **MSFormerConfig.PUBLISHED)
    assert pub.out_norm is False and tuple(pub.lambdas) == (1.0, 2.0, 1.2)
    assert (pub.n_clusters, pub.mlp_ratio) == (100, 4.0)  # the official code's K and Mix-FFN width
    assert (pub.lr, pub.min_clusters, pub.standardize) == (0.1, 3, False)  # paper's rate, official stop and input
    # the paper's other loss values stay reachable and every lambda is within the (0, 2) grid of Appendix A
    assert all(0 <= v <= 2 for v in cfg.lambdas)
    assert "PUBLISHED" not in {f.name for f in dataclasses.fields(MSFormerConfig)}


def test_class_defaults_are_the_config_defaults():
    import inspect

    from mslib.configs import MSFormerConfig

    cfg, sig = MSFormerConfig(), inspect.signature(MSFormer).parameters
    for name, field in (
        ("n_clusters", "n_clusters"),
        ("mlp_ratio", "mlp_ratio"),
        ("out_norm", "out_norm"),
        ("dim", "dim"),
        ("depth", "depth"),
        ("heads", "heads"),
        ("intra_dim", "intra_dim"),
        ("intra_grid", "intra_grid"),
        ("intra_cell", "intra_cell"),
        ("shift", "shift"),
        ("shift_mode", "shift_mode"),
        ("patch_embed", "patch_embed"),
    ):
        assert sig[name].default == getattr(cfg, field), name
