"""``bench_selfsup --eval folder``: the prepared, raw ISIC and raw PH2 layouts on tiny fixture folders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.bench_selfsup import load_folder, main, score_maps
from mslib.configs import get_config


def _pair(i: int, size=(40, 48)):
    rng = np.random.default_rng(i)
    h, w = size
    mask = np.zeros(size, np.uint8)
    mask[8 + i : 24 + i, 10:30] = 1
    img = np.full((h, w, 3), 200, np.uint8)
    img[mask > 0] = (90, 50, 40)
    img = np.clip(img + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
    return img, mask


def _prepared(root, n=3, splits=True):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img, mask = _pair(i)
        Image.fromarray(img).save(root / "images" / f"case_{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"case_{i}.png")  # class indices 0/1
    if splits:
        (root / "splits").mkdir()
        (root / "splits" / "test.txt").write_text("case_0\ncase_2\n")
    return root


def _ph2(root, n=2):
    base = root / "PH2Dataset" / "PH2 Dataset images"
    for i in range(n):
        img, mask = _pair(i)
        case = base / f"IMD{i + 2:03d}"
        (case / f"IMD{i + 2:03d}_Dermoscopic_Image").mkdir(parents=True)
        (case / f"IMD{i + 2:03d}_lesion").mkdir()
        Image.fromarray(img).save(case / f"IMD{i + 2:03d}_Dermoscopic_Image" / f"IMD{i + 2:03d}.bmp")
        Image.fromarray(mask * 255).save(case / f"IMD{i + 2:03d}_lesion" / f"IMD{i + 2:03d}_lesion.bmp")
    return root


def test_prepared_layout_reads_the_test_split(tmp_path):
    layout, names, images, masks = load_folder(_prepared(tmp_path / "prep"), split="test")
    assert layout == "prepared, split test" and names == ["case_0", "case_2"]
    assert images[0].shape == (40, 48, 3) and images[0].dtype == np.uint8
    np.testing.assert_array_equal(masks[1], _pair(2)[1])


def test_prepared_layout_without_split_file_reads_all(tmp_path):
    _, names, _, _ = load_folder(_prepared(tmp_path / "prep", splits=False), split="test")
    assert names == ["case_0", "case_1", "case_2"]


def test_ph2_layout(tmp_path):
    layout, names, images, masks = load_folder(_ph2(tmp_path / "ph2"))
    assert layout == "PH2" and names == ["IMD002", "IMD003"]
    np.testing.assert_array_equal(masks[0], _pair(0)[1])  # 0/255 bmp -> {0, 1}
    assert images[1].shape == (40, 48, 3)


def test_isic_layout(tmp_path):
    root = tmp_path / "isic"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img, mask = _pair(0)
    Image.fromarray(img).save(root / "images" / "ISIC_0000001.jpg")
    Image.fromarray(mask * 255).save(root / "masks" / "ISIC_0000001_Segmentation.png")
    layout, names, _, masks = load_folder(root)
    assert layout == "ISIC" and names == ["ISIC_0000001"]
    np.testing.assert_array_equal(masks[0], mask)


def test_bad_folders_name_the_problem(tmp_path):
    with pytest.raises(SystemExit, match="no such folder"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="PH2"):
        load_folder(tmp_path / "empty")
    root = _prepared(tmp_path / "prep", splits=False)
    (root / "masks" / "case_1.png").unlink()
    with pytest.raises(SystemExit, match="case_1"):
        load_folder(root)
    with pytest.raises(SystemExit, match="--data"):
        main(["--eval", "folder"])


def test_score_maps_hand_computed():
    # 4x4 labels: cluster 1 covers the left half (8 px); the gt is the top-left 2x3 block plus one pixel
    labels = torch.zeros(4, 4, dtype=torch.long)
    labels[:, :2] = 1
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :3] = 1  # 6 px: 4 in cluster 1, 2 in cluster 0
    sc = score_maps([labels], [gt])
    # chosen cluster 1 (4 of 6 gt pixels): TP 4, FP 4, FN 2
    assert sc["recall"][0] == pytest.approx(4 / 6) and sc["precision"][0] == pytest.approx(4 / 8)
    assert sc["dsc"][0] == pytest.approx(2 * 4 / (8 + 6))
    assert sc["hm"][0] == pytest.approx(1 - 4 / 10) and sc["xor"][0] == pytest.approx((10 - 4) / 6)
    assert sc["legacy_precision"][0] >= sc["precision"][0]  # the GT crop only removes false positives


@pytest.mark.parametrize("layout", ["prepared", "ph2"])
def test_eval_folder_end_to_end(tmp_path, layout, capsys, monkeypatch):
    import benchmarks.bench_selfsup as bench

    root = _prepared(tmp_path / "d") if layout == "prepared" else _ph2(tmp_path / "d")
    quick = dataclasses.replace(
        get_config("msformer", "quick"), image_size=32, max_iters=2, dim=8, intra_dim=8, intra_grid=4, intra_cell=2
    )
    monkeypatch.setattr(bench, "get_config", lambda method, profile: quick)
    out = main(["--eval", "folder", "--data", str(root), "--threads", "1", "--per-image"])
    assert "MS-Former beats k-means on" in out and "recall" in out and "precision" in out
    assert "DSC (legacy GT crop)" in out and "k-means (K=3)" in out
    assert "whole image (1 cluster, no method)" in out and "DSC by lesion area" in out
    assert ("IMD002" in out) if layout == "ph2" else ("case_2" in out and "case_1" not in out)


def test_eval_published_flag_applies_the_published_setting(tmp_path, monkeypatch):
    import benchmarks.bench_selfsup as bench
    from mslib.configs import MSFormerConfig

    seen = {}

    def fake_run_eval(source, cfg, *args):
        seen["cfg"] = cfg
        return ""

    monkeypatch.setattr(bench, "run_eval", fake_run_eval)
    main(["--eval", "synthetic", "--published", "--set", "max_iters=7"])
    cfg = seen["cfg"]
    for key, value in MSFormerConfig.PUBLISHED.items():
        assert getattr(cfg, key) == value, key
    assert cfg.max_iters == 7  # --set applies on top
    main(["--eval", "synthetic"])
    assert seen["cfg"].n_clusters == get_config("msformer", "paper").n_clusters != 100


def test_speed_candidates_smoke():
    """The interleaved speed table runs (tiny size, one step); timings are printed, never asserted."""
    out = main(["--speed-candidates", "--size", "32", "--steps", "1", "--rounds", "1", "--threads", "1"])
    assert "vs defaults" in out and "channels_last" in out and "dim=16" in out
    import torch

    assert ("bfloat16 autocast" in out) == torch.backends.mkldnn.is_available()


def test_subset_by_name_parity():
    from benchmarks.bench_selfsup import select_subset

    names = ["ISIC_0000012", "ISIC_0000013", "IMD003", "case_7_v2"]
    assert select_subset(names, "all") == [0, 1, 2, 3]
    assert select_subset(names, "even") == [0, 3]  # the last number counts: case_7_v2 -> 2
    assert select_subset(names, "odd") == [1, 2]
    with pytest.raises(SystemExit, match="holds no number"):
        select_subset(["lesion"], "odd")


def test_whole_image_row_is_the_lesion_share_baseline():
    """One cluster: the best-overlap protocol calls the whole image lesion, DSC = 2a / (1 + a) for lesion share a."""
    gt = np.zeros((10, 10), np.uint8)
    gt[:, :8] = 1  # a = 0.8
    sc = score_maps([torch.zeros(10, 10, dtype=torch.long)], [gt])
    assert sc["dsc"][0] == pytest.approx(2 * 0.8 / 1.8) and sc["recall"][0] == 1.0
    assert sc["precision"][0] == pytest.approx(0.8)


def test_by_area_bins_hand_computed():
    from benchmarks.bench_selfsup import by_area

    def mask(share):  # a 10x10 mask covering `share` of the image
        m = np.zeros(100, np.uint8)
        m[: round(100 * share)] = 1
        return m.reshape(10, 10)

    masks = [mask(0.1), mask(0.15), mask(0.3), mask(1.0)]  # bins: 2 small, 1 middle, 1 whole frame
    scores = {"A": {"dsc": np.array([0.2, 0.4, 0.9, 0.5])}, "B": {"dsc": np.array([1.0, 0.0, 0.5, 0.25])}}
    rows = by_area(masks, scores)
    assert rows == [["0-20 %", 2, "30.0", "50.0"], ["20-45 %", 1, "90.0", "50.0"], ["45-100 %", 1, "50.0", "25.0"]]
    assert by_area([mask(0.5)], {"A": {"dsc": np.array([0.7])}})[0] == ["0-20 %", 0, "-"]
