"""Per-image self-supervised optimisation (MS-Former Sec. 3.1)."""

import dataclasses

import numpy as np
import pytest
import torch

from mslib.configs import MSFormerConfig, get_config
from mslib.recipes.msformer import evaluate_results, prepare_image, segment_image, segment_images

TINY = dataclasses.replace(
    MSFormerConfig.quick(),
    image_size=24,
    n_clusters=12,
    dim=8,
    intra_dim=8,
    intra_grid=2,
    intra_cell=2,
    max_iters=6,
    min_clusters=2,
)


def _image(seed=0, size=24):
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), (200, 160, 140), np.float64)
    img[6:18, 5:17] = (90, 50, 40)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


def test_prepare_image_forms_agree():
    img = _image()
    a = prepare_image(img, 16)
    b = prepare_image(torch.from_numpy(img).permute(2, 0, 1).float() / 255, 16)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert a.shape == (1, 3, 16, 16)
    torch.testing.assert_close(a.mean(dim=(2, 3)), torch.zeros(1, 3), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="image array"):
        prepare_image(np.zeros((2, 2, 2, 2)), 8)


def test_lab_input_against_skimage_and_its_scaling():
    color = pytest.importorskip("skimage.color")
    from mslib.train.selfsup import rgb_to_lab

    rgb = torch.rand(3, 6, 5, dtype=torch.float64)
    ref = color.rgb2lab(rgb.permute(1, 2, 0).numpy())  # CIE Lab, D65
    np.testing.assert_allclose(rgb_to_lab(rgb).permute(1, 2, 0).numpy(), ref, atol=0.05)
    # prepare_image(color_space="lab"): L / 100, (a + 128) / 255, (b + 128) / 255
    img = (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8)
    x = prepare_image(img, None, standardize=False, color_space="lab")[0].permute(1, 2, 0).double().numpy()
    lab = color.rgb2lab(img / 255.0)
    np.testing.assert_allclose(
        x, np.stack([lab[..., 0] / 100, (lab[..., 1] + 128) / 255, (lab[..., 2] + 128) / 255], -1), atol=1e-3
    )
    white = prepare_image(np.ones((2, 2, 3)), None, standardize=False, color_space="lab")[0, :, 0, 0]
    torch.testing.assert_close(white, torch.tensor([1.0, 128 / 255, 128 / 255]), atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match="color_space"):
        prepare_image(img, None, color_space="hsv")
    with pytest.raises(ValueError, match="3-channel"):
        prepare_image(img[..., 0], None, color_space="lab")


def test_early_stop_rule():
    # a map that starts with at most min_clusters clusters stops before any SGD step (out_norm=False:
    # with the BN'd score map a fresh model uses every one of the 12 clusters)
    base = dataclasses.replace(TINY, out_norm=False)
    first = segment_image(_image(), dataclasses.replace(base, max_iters=0), seed=0).history[0]["n_clusters"]
    assert first < base.n_clusters
    r = segment_image(_image(), dataclasses.replace(base, min_clusters=first), seed=0)
    assert r.history[0]["n_clusters"] == first
    assert r.stopped_early and r.iterations == 0 and len(r.history) == 1
    # otherwise: runs until the count falls to min_clusters or max_iters steps are taken
    cfg = dataclasses.replace(TINY, min_clusters=1, max_iters=3)
    r = segment_image(_image(), cfg, seed=0)
    counts = [h["n_clusters"] for h in r.history]
    assert all(c > 1 for c in counts[:-1])
    if r.stopped_early:
        assert counts[-1] <= 1
    else:
        assert r.iterations == 3 and len(r.history) == 4
    # the returned map is the one the rule looked at
    assert r.n_clusters == counts[-1]


def test_stopped_map_has_at_most_min_clusters():
    cfg = dataclasses.replace(TINY, max_iters=30, min_clusters=3)
    r = segment_image(_image(), cfg, seed=1, keep_maps=True)
    if r.stopped_early:
        assert r.n_clusters <= 3
    assert len(r.maps) == len(r.history) and torch.equal(r.maps[-1].long(), r.labels_work)


def test_deterministic_with_seed_and_history():
    seen = []
    r1 = segment_image(
        _image(), TINY, seed=3, keep_correlations=True, callback=lambda info: seen.append(info["iteration"])
    )
    r2 = segment_image(_image(), TINY, seed=3)
    assert torch.equal(r1.labels, r2.labels)
    assert [h["total"] for h in r1.history] == [h["total"] for h in r2.history]
    assert seen == [h["iteration"] for h in r1.history]
    rho = r1.correlations[0]
    assert rho.shape == (4, 4) and rho.abs().max() <= 1 + 1e-5
    r3 = segment_image(_image(), TINY, seed=4)
    assert [h["total"] for h in r3.history] != [h["total"] for h in r1.history]
    # the global RNG is left alone
    torch.manual_seed(0)
    a = torch.rand(1)
    torch.manual_seed(0)
    segment_image(_image(), TINY, seed=3)
    assert torch.equal(torch.rand(1), a)


def test_segment_images_seeds_per_image_and_resizes_back():
    imgs = [_image(0, 32), _image(1, 32)]
    rs = segment_images(imgs, TINY, seed=10, progress=False)
    alone = segment_image(imgs[1], TINY, seed=11)
    assert torch.equal(rs[1].labels, alone.labels)  # independent of the other images
    assert rs[0].labels.shape == (32, 32) and rs[0].labels_work.shape == (24, 24)
    gt = np.zeros((32, 32), np.uint8)
    gt[8:24, 7:23] = 1
    e = evaluate_results(rs, [gt, gt])
    assert e["dsc"].shape == (2,) and ((e["dsc"] >= 0) & (e["dsc"] <= 1)).all()


def test_bad_config():
    with pytest.raises(ValueError, match="min_clusters"):
        segment_image(_image(), dataclasses.replace(TINY, min_clusters=12))


def test_registered_config():
    cfg = get_config("msformer", "paper")
    assert (cfg.lr, cfg.momentum, cfg.max_iters, cfg.min_clusters) == (0.3, 0.9, 50, 2)
    assert cfg.image_size == 257 and cfg.depth == 2


def test_bench_isic_without_the_folder_says_what_to_do(tmp_path):
    from benchmarks.bench_selfsup import load_isic

    with pytest.raises(SystemExit, match="data_scripts"):
        load_isic(tmp_path / "missing")


def test_an_image_with_nan_is_an_error_not_a_one_cluster_map():
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    img[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        segment_image(img)
