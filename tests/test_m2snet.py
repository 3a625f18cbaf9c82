"""MSNet / M2SNet: parameter counts, MMSM wiring (Eq. 3, Fig. 2), decoder, variants, param groups, profiles."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from mslib.blocks.subtraction import (
    AdditionUnit,
    AsppSubtractionUnit,
    DenseAsppSubtractionUnit,
    MultiScaleSubtractionUnit,
    SubtractionUnit,
    upsample_to,
)
from mslib.configs import M2SNetConfig, get_config
from mslib.models.m2snet import M2SNet, MSNet
from mslib.recipes.m2snet import (
    build_m2snet,
    learning_rates,
    m2snet_param_groups,
    m2snet_step,
    m2snet_transforms,
    recipe,
    training_kwargs,
)
from mslib.train.engine import StepContext, build_optimizer, fit
from mslib.utils import count_parameters


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MSLIB_OFFLINE", "1")


SMALL = dict(channels=8, backbone_width=0.125, backbone_layers=(1, 1, 1, 1))


def small(**kw):
    torch.manual_seed(0)
    return M2SNet(**{**SMALL, **kw}).eval()


# ----------------------------------------------------------------- parameter counts (Table VI / VIII)
def test_parameter_counts_msnet_and_m2snet_are_identical_and_official():
    msnet, m2snet = MSNet(), M2SNet()
    assert count_parameters(msnet) == 27_692_329  # official MSNet without its unused fc
    assert count_parameters(m2snet) == 27_692_329  # the MSU adds exactly zero parameters
    assert count_parameters(M2SNet(unit="au")) == 27_692_329
    assert set(msnet.state_dict()) == set(m2snet.state_dict())
    # variants: 10 units of extra learnable branches each
    per_aspp = 2 * (64 * 64 + 2 * 64 * 64 * 9)
    per_dense = 64 * 64 + 128 * 64 * 9 + 192 * 64 * 9 + 3 * 128
    assert count_parameters(M2SNet(unit="msu_aspp")) == 27_692_329 + 10 * per_aspp  # paper: 29.2 M
    assert count_parameters(M2SNet(unit="msu_denseaspp")) == 27_692_329 + 10 * per_dense  # paper: 29.6 M
    # eq3 wiring: two more CE convs, no CE-less level, no second 2048 -> 64 reducer
    cbr64 = 64 * 64 * 9 + 64 + 128
    assert count_parameters(M2SNet(wiring="eq3")) == 27_692_329 + 2 * cbr64 - (2048 * 64 * 9 + 64 + 128)


def test_ten_units_four_decoder_blocks_single_output():
    for unit, cls in [
        ("su", SubtractionUnit),
        ("msu", MultiScaleSubtractionUnit),
        ("au", AdditionUnit),
        ("msu_aspp", AsppSubtractionUnit),
        ("msu_denseaspp", DenseAsppSubtractionUnit),
    ]:
        m = small(unit=unit)
        units = [
            u
            for u in m.modules()
            if isinstance(
                u,
                (
                    SubtractionUnit,
                    MultiScaleSubtractionUnit,
                    AdditionUnit,
                    AsppSubtractionUnit,
                    DenseAsppSubtractionUnit,
                ),
            )
        ]
        assert len(units) == 10 and all(type(u) is cls for u in units)
        assert sorted(m.units) == sorted(f"n{n}_i{i}" for n in range(2, 6) for i in range(1, 7 - n))
    m = small()
    assert len(m.decoder) == 4
    y = m(torch.rand(2, 3, 64, 64))
    assert isinstance(y, torch.Tensor) and y.shape == (2, 1, 64, 64)


def test_mmsm_and_decoder_follow_the_equations():
    """Recompute every MS_n^i (Fig. 2), CE^i (Eq. 3), D^i and the head from the returned features."""
    for wiring in ("official", "eq3"):
        m = small(wiring=wiring)
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            logits, f = m(x, return_features=True)
            ms, ce, dec = f["ms"], f["ce"], f["decoder"]
            for i in range(1, 6):
                torch.testing.assert_close(ms[(1, i)], m.reduce[i - 1](f["encoder"][i - 1]))
            for n in range(2, 6):
                for i in range(1, 7 - n):
                    torch.testing.assert_close(ms[(n, i)], m.units[f"n{n}_i{i}"](ms[(n - 1, i + 1)], ms[(n - 1, i)]))
            assert len(ms) == 5 + 10
            if wiring == "official":  # differential features only, CE^4 without conv, separate top reducer
                assert sorted(ce) == [1, 2, 3, 4]
                torch.testing.assert_close(ce[4], ms[(2, 4)])
                for i in (1, 2, 3):
                    torch.testing.assert_close(ce[i], m.ce[f"ce{i}"](sum(ms[(n, i)] for n in range(2, 7 - i))))
                torch.testing.assert_close(f["top"], m.top(f["encoder"][4]))
            else:  # Eq. 3 literally, n = 1 .. 6 - i
                assert sorted(ce) == [1, 2, 3, 4, 5]
                for i in range(1, 6):
                    torch.testing.assert_close(ce[i], m.ce[f"ce{i}"](sum(ms[(n, i)] for n in range(1, 7 - i))))
                torch.testing.assert_close(f["top"], ce[5])
            d = f["top"]
            for i in (4, 3, 2, 1):
                d = m.decoder[f"d{i}"](upsample_to(d, ce[i]) + ce[i])
                torch.testing.assert_close(dec[i], d)
            assert dec[1].shape[-1] == 64 // 4  # head at 1/4 resolution
            torch.testing.assert_close(
                logits, F.interpolate(m.head(d), size=(64, 64), mode="bilinear", align_corners=False)
            )


@pytest.mark.slow
def test_shapes_at_352_as_official():
    m = M2SNet().eval()
    with torch.no_grad():
        y, f = m(torch.rand(1, 3, 352, 352), return_features=True)
    assert y.shape == (1, 1, 352, 352)
    assert [tuple(e.shape[1:]) for e in f["encoder"]] == [
        (64, 88, 88),
        (256, 88, 88),
        (512, 44, 44),
        (1024, 22, 22),
        (2048, 11, 11),
    ]
    assert {i: t.shape[-1] for i, t in f["ce"].items()} == {1: 88, 2: 88, 3: 44, 4: 22}


def test_box_and_literal_conv_msu_give_the_same_network():
    m = small().double()  # float64: the 5x5 box sums are 1600x larger than the inputs
    ref = small(unit_kwargs={"impl": "conv"}).double()
    ref.load_state_dict(m.state_dict())
    x = torch.rand(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref(x))


def test_orders_subsets_for_table_vii():
    base = small(wiring="eq3", orders=(1,))  # FPN baseline: no subtraction unit at all
    assert len(base.units) == 0
    _, f = base(torch.rand(1, 3, 64, 64), return_features=True)
    assert set(f["ms"]) == {(1, i) for i in range(1, 6)}
    assert len(small(wiring="eq3", orders=(1, 2)).units) == 4
    assert len(small(wiring="eq3", orders=(1, 2, 3)).units) == 7
    assert len(small(orders=(2,)).units) == 4
    with pytest.raises(ValueError, match="wiring='eq3'"):
        small(orders=(1,))
    with pytest.raises(ValueError, match="contains 1"):
        small(wiring="eq3", orders=(2, 3))
    with pytest.raises(ValueError, match="unit must be"):
        small(unit="mul")


def test_follows_dtype_and_has_no_hidden_buffers():
    m = small().double()
    assert m(torch.rand(1, 3, 32, 32, dtype=torch.float64)).dtype == torch.float64
    assert all(not k.endswith(("ones", "filter", "kernel")) for k in m.state_dict())


# ----------------------------------------------------------------- optimisation
def test_param_groups_split_backbone_and_rest_and_really_get_their_lrs():
    m = small()
    groups = m2snet_param_groups(m, 0.005, 0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))  # every parameter exactly once
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in m.backbone.parameters()}
    cfg = get_config("m2snet", "paper")
    opt = build_optimizer(m, dataclasses.replace(cfg, momentum=0.0, weight_decay=0.0), groups)
    assert [g["lr"] for g in opt.param_groups] == [0.005, 0.05]
    pb, ph = m.backbone.conv1[0].weight, m.head.weight
    before = pb.detach().clone(), ph.detach().clone()
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.testing.assert_close(pb.detach(), before[0] - 0.005)
    torch.testing.assert_close(ph.detach(), before[1] - 0.05)


def test_step_fn_logs_loss_parts():
    m = small().train()
    cfg = get_config("m2snet", "quick", lossnet_pretrained=False, lossnet_weight=0.5)
    kw = training_kwargs(cfg)
    x, y = torch.rand(2, 3, 32, 32), (torch.rand(2, 32, 32) > 0.5).long()
    ctx = StepContext(0, 0, 1, 1, m, {"model": m}, {}, {}, kw["loss_fn"], cfg, torch.device("cpu"))
    loss, logs = m2snet_step(ctx, (x, y))
    assert set(logs) == {"structure", "lossnet"}
    assert loss.item() == pytest.approx(float(logs["structure"]) + 0.5 * float(logs["lossnet"]), rel=1e-5)


def test_profiles():
    paper, quick = get_config("m2snet", "paper"), get_config("m2snet", "quick")
    assert isinstance(paper, M2SNetConfig) and paper.image_size == 352 and paper.batch_size == 16
    assert (paper.optimizer, paper.momentum, paper.weight_decay) == ("sgd", 0.9, 5e-4)
    assert learning_rates(paper) == (pytest.approx(0.005), 0.05) and paper.epochs == 50
    assert paper.multiscale_sizes == (224, 256, 288, 320, 352) and paper.schedule == "linear"
    assert paper.warmup_epochs > 0
    assert count_parameters(build_m2snet(quick)) < 2_000_000


def test_transforms_resize_and_imagenet_normalise():
    from torchvision import tv_tensors

    cfg = get_config("m2snet", "quick")
    img = tv_tensors.Image(torch.full((3, 50, 60), 0.5))
    mask = tv_tensors.Mask(torch.zeros(50, 60, dtype=torch.int64))
    x, y = m2snet_transforms(cfg, train=False)(img, mask)
    assert x.shape == (3, 96, 96) and y.shape == (96, 96)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[:, 40, 40], (0.5 - mean) / std)
    with pytest.raises(ValueError, match="normalize"):
        m2snet_transforms(dataclasses.replace(cfg, normalize="f3net"), train=True)


@pytest.mark.slow
def test_paper_profile_one_training_step_at_352_on_cpu(tmp_path):
    cfg = get_config("m2snet", "paper", pretrained=False, lossnet_pretrained=False, epochs=1, batch_size=1, amp=False)
    model = build_m2snet(cfg)
    assert count_parameters(model) == 27_692_329
    ds = TensorDataset(torch.rand(1, 3, 352, 352), (torch.rand(1, 352, 352) > 0.5).long())
    kw = training_kwargs(cfg)
    seen = []
    resize = kw["batch_transform"]
    kw["batch_transform"] = lambda x, y: seen.append(resize(x, y)[0].shape) or resize(x, y)
    before = model.head.weight.detach().clone()
    hist = fit(model, DataLoader(ds, batch_size=1), None, config=cfg, progress=False, **kw)
    assert len(hist) == 1 and torch.isfinite(torch.tensor(hist[0]["train_loss"]))
    assert {"train_structure", "train_lossnet", "lr_backbone", "lr_head"} <= set(hist[0])
    assert seen and seen[0][-1] in (224, 256, 288, 320, 352)
    assert not torch.equal(before, model.head.weight)


@pytest.mark.slow
def test_quick_profile_learns_on_synthetic_polyps():
    from mslib.data import load_dataset
    from mslib.train.engine import evaluate

    cfg = get_config("m2snet", "quick", epochs=4)
    train = load_dataset("synthetic-polyp", "train", m2snet_transforms(cfg, train=True))
    val = load_dataset("synthetic-polyp", "val", m2snet_transforms(cfg, train=False))
    torch.manual_seed(cfg.seed)
    model = build_m2snet(cfg)
    g = torch.Generator().manual_seed(0)
    fit(
        model,
        DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=True),
        None,
        config=cfg,
        progress=False,
        **training_kwargs(cfg),
    )
    dice = evaluate(model, DataLoader(val, batch_size=16))["dice"]
    masks = torch.stack([val[i][1] for i in range(len(val))]).float()
    fg = masks.flatten(1).sum(1)
    all_foreground = (2 * fg / (fg + masks[0].numel())).mean().item()  # Dice of predicting "polyp" everywhere
    assert dice > all_foreground + 0.1, (dice, all_foreground)


# ----------------------------------------------------------------- schedule and groups through fit
def test_paper_schedule_at_chosen_steps_for_both_groups():
    """Warm-up then linear decay (Sec. IV-C), applied by fit to each group's own base lr.

    4 epochs of one step, warm-up 2 epochs: factors (t + 1) / 2 for t < 2, then 1 - (t - 2) / 2.
    fit records the lr each group used at the epoch's last step.
    """
    cfg = get_config(
        "m2snet",
        "paper",
        pretrained=False,
        lossnet_weight=0.0,
        multiscale_sizes=None,
        epochs=4,
        warmup_epochs=2.0,
        batch_size=1,
        amp=False,
        **SMALL,
    )
    model = build_m2snet(cfg)
    ds = TensorDataset(torch.rand(1, 3, 64, 64), (torch.rand(1, 64, 64) > 0.5).long())  # level 5: 2 x 2
    hist = fit(model, DataLoader(ds, batch_size=1), None, config=cfg, progress=False, **training_kwargs(cfg))
    factors = [0.5, 1.0, 1.0, 0.5]
    assert hist.column("lr_backbone") == pytest.approx([0.005 * f for f in factors])
    assert hist.column("lr_head") == pytest.approx([0.05 * f for f in factors])


def test_legacy_lr_groups_trains_everything_at_the_head_rate():
    m = small()
    for legacy, expected in ((False, [0.005, 0.05]), (True, [0.05, 0.05])):
        cfg = get_config("m2snet", "paper", lossnet_weight=0.0, legacy_lr_groups=legacy)
        assert [g["lr"] for g in training_kwargs(cfg)["param_groups"](m)] == pytest.approx(expected)


# ----------------------------------------------------------------- metrics of Tables I-IV
def test_table_metrics_go_through_mslib_metrics():
    from mslib import metrics as M
    from mslib.recipes.m2snet import TABLE_METRICS, table_metrics

    torch.manual_seed(0)
    logits = torch.randn(3, 1, 24, 24) * 3
    masks = torch.zeros(3, 24, 24, dtype=torch.long)
    masks[:, 6:18, 4:14] = 1
    p, g = torch.sigmoid(logits[:, 0]), masks.bool()
    polyp = table_metrics("polyp")
    assert tuple(polyp) == ("mdice", "miou", "wfm", "s_alpha", "e_max", "mae")
    torch.testing.assert_close(polyp["mdice"](logits, masks), M.dice(p > 0.5, g))
    torch.testing.assert_close(polyp["miou"](logits, masks), M.iou(p > 0.5, g))
    torch.testing.assert_close(polyp["wfm"](logits, masks), M.weighted_f_measure(p, g))
    torch.testing.assert_close(polyp["s_alpha"](logits, masks), M.s_measure(p, g))
    torch.testing.assert_close(polyp["e_max"](logits, masks), M.e_measure(p, g, mode="max"))
    torch.testing.assert_close(polyp["mae"](logits, masks), M.mae(p, g))
    breast = table_metrics("breast")
    assert tuple(breast) == TABLE_METRICS["breast"]
    torch.testing.assert_close(breast["specificity"](logits, masks), M.specificity(p > 0.5, g))
    assert tuple(table_metrics("covid")) == ("dsc", "precision", "recall", "s_alpha", "mae")
    # the official Dice: soft, per-image min-max normalised, no threshold
    official = table_metrics("polyp", official_dice=True)["mdice"](logits, masks)
    torch.testing.assert_close(official, M.dice(p, g, soft=True, minmax=True))
    assert not torch.allclose(official, polyp["mdice"](logits, masks))
    with pytest.raises(ValueError, match="'polyp', 'covid', 'breast'"):
        table_metrics("oct")


def test_table_metrics_plug_into_evaluate():
    from mslib.recipes.m2snet import table_metrics
    from mslib.train.engine import evaluate

    m = small()
    ds = TensorDataset(torch.rand(4, 3, 32, 32), (torch.rand(4, 32, 32) > 0.7).long())
    res = evaluate(m, DataLoader(ds, batch_size=2), metrics=table_metrics("polyp"))
    assert {"mdice", "miou", "wfm", "s_alpha", "e_max", "mae"} <= set(res)
    assert all(0.0 <= res[k] <= 1.0 for k in ("mdice", "miou", "wfm", "s_alpha", "e_max", "mae"))


def test_lr_is_the_head_rate_and_the_backbone_keeps_its_ratio():
    cfg = get_config("m2snet", "paper", lr=0.5)
    assert learning_rates(cfg) == (pytest.approx(0.05), 0.5)
    assert learning_rates(get_config("m2snet", "paper", lr=0.5, legacy_lr_groups=True)) == (0.5, 0.5)
    with pytest.raises(ValueError, match="backbone_lr_ratio: legacy_lr_groups=True"):
        get_config("m2snet", "paper", legacy_lr_groups=True, backbone_lr_ratio=0.2)
    with pytest.raises(ValueError, match="momentum: only optimizer='sgd'"):
        get_config("m2snet", "quick", momentum=0.5)


def test_recipe_refuses_grey_images_with_imagenet_normalisation():
    cfg = get_config("m2snet", "quick")
    with pytest.raises(ValueError, match="3-channel images"):
        recipe(cfg, 1, 1)
    r = recipe(get_config("m2snet", "quick", normalize="none"), 1, 1)
    assert r.model(torch.rand(1, 1, 64, 64)).shape == (1, 1, 64, 64)
