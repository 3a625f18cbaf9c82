"""The PDCR + UAFR recipe: networks, plug-ins, the total loss as a step function of the one engine, the CLI."""

from __future__ import annotations

import csv
import dataclasses
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from mslib import cli
from mslib.blocks.uafr import uafr_num_parameters
from mslib.configs import PDCRConfig, get_config
from mslib.data import AUGMENTATIONS
from mslib.losses.dragsaw import PatchDragsawLoss
from mslib.recipes import RECIPES
from mslib.recipes.pdcr import build_network, default_layers, pdcr_step, pdcr_transforms, recipe
from mslib.train import fit
from tests.ddp_helpers import become_rank, free_port

NETS = ("unet", "fcn", "deeplabv3plus")


def _tiny(network: str, **kw) -> PDCRConfig:
    """Quick-sized config of ``network`` (ResNet-18 for FCN / DeepLabV3+), CE + PDCR + UAFR."""
    base = dict(
        network=network,
        backbone="resnet18",
        pretrained=False,
        base_channels=4,
        depth=3,
        num_vectors=(16, 8),
        decoder_num_vectors=(8, 4),
        epochs=2,
        batch_size=4,
        image_size=32,
        lr=1e-3,
        warmup_epochs=0.5,
        min_lr_ratio=0.01,
        seed=0,
    )
    base.update(kw)
    return get_config("pdcr", "quick", **base)


class _Ctx:
    def __init__(self, model, loss_fn):
        self.model, self.models, self.loss_fn = model, {"model": model}, loss_fn


def test_registered_in_cli_and_recipes():
    assert "pdcr" in cli.MODELS and RECIPES["pdcr"] is recipe
    assert cli._resolve(cli.MODELS["pdcr"]) is recipe


def test_paper_profile_matches_sec_v_a():
    cfg = get_config("pdcr", "paper")
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.schedule) == ("adam", 1e-3, 1e-5, "cosine")
    assert cfg.lr * cfg.min_lr_ratio == pytest.approx(1e-5) and cfg.warmup_epochs > 0  # cosine to 1e-5
    assert cfg.image_size == (384, 512) and cfg.epochs == 300  # Table IV: 512 x 384
    assert (cfg.encoder_weight, cfg.decoder_weight, cfg.cross_weight) == (0.01, 0.01, 0.01)  # Sec. V-A
    assert PDCRConfig.OFFICIAL_WEIGHTS == {"encoder_weight": 0.1, "decoder_weight": 0.01, "cross_weight": 0.01}
    assert cfg.dataset == "isic2016" and cfg.test_dataset == "ph2" and cfg.network == "deeplabv3plus"


@pytest.mark.parametrize("network", NETS)
def test_paper_profile_step_on_cpu(network):
    """The paper's architecture (ResNet-50 / width-64 UNet) takes one step on a small input.

    Batch 1, except DeepLabV3+: its ASPP image-pooling branch has a batch norm on a 1x1 map, which
    PyTorch cannot train on one image (the paper trains at batch 4 per GPU), so it runs at batch 2.
    """
    torch.manual_seed(0)
    cfg = get_config("pdcr", "paper", network=network, pretrained=False)
    r = recipe(cfg, 3, 1)
    b = 2 if network == "deeplabv3plus" else 1
    x, y = torch.randn(b, 3, 64, 96), (torch.rand(b, 64, 96) > 0.6).long()
    r.model.train()
    loss, logs = r.fit_kwargs["step_fn"](_Ctx(r.model, r.fit_kwargs["loss_fn"]), (x, y))
    loss.backward()
    assert torch.isfinite(loss) and set(logs) == {"seg", "pdcr_encoder", "pdcr_cross", "pdcr_decoder"}
    # total = CE + 0.01 x each PDCR term (Sec. V-A)
    expected = logs["seg"] + 0.01 * (logs["pdcr_encoder"] + logs["pdcr_cross"] + logs["pdcr_decoder"])
    torch.testing.assert_close(loss.detach(), expected)
    net = r.model.net.model
    assert all(p.grad is not None for p in net.uafr.parameters())
    assert all(p.grad is not None for p in r.model.pdcr.parameters())  # cross-layer projections train


def test_total_loss_equals_ce_plus_weighted_direct_pdcr():
    """The step's loss is CE + sum of weight x PatchDragsawLoss on the tapped maps, computed independently."""
    torch.manual_seed(0)
    cfg = _tiny("unet", encoder_weight=0.1, decoder_weight=0.02, cross_weight=0.03, uafr=False)
    r = recipe(cfg, 3, 1)
    model = r.model.train()
    x, y = torch.randn(2, 3, 32, 32), (torch.rand(2, 32, 32) > 0.5).long()
    loss, logs = pdcr_step(_Ctx(model, r.fit_kwargs["loss_fn"]), (x, y))
    # independent: hooks of our own on the same layers, the losses built by hand
    feats = {}
    handles = [
        dict(model.net.model.named_modules())[n].register_forward_hook(lambda m, a, o, n=n: feats.__setitem__(n, o))
        for n in ("encoder.1", "encoder.2", "decoder.1", "decoder.2")
    ]
    logits = model(x)
    for h in handles:
        h.remove()
    model.net.tap.clear()
    common = dict(patch_sizes=(5, 7, 9), position_encoding=True)
    enc = PatchDragsawLoss(num_vectors=(16, 8), **common)([feats["encoder.1"], feats["encoder.2"]], y)
    cross = PatchDragsawLoss(
        num_vectors=(16, 8), single_layer=False, cross_layer_pairs=[(0, 1)], in_channels=[8, 16], **common
    )
    cross.load_state_dict(model.pdcr.places["cross"].state_dict())
    crs = cross([feats["encoder.1"], feats["encoder.2"]], y)
    dec = PatchDragsawLoss(num_vectors=(8, 4), **common)([feats["decoder.1"], feats["decoder.2"]], y)
    expected = F.cross_entropy(logits, y) + 0.1 * enc + 0.03 * crs + 0.02 * dec
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["pdcr_encoder"], enc.detach())


def test_dice_weight_adds_soft_dice():
    from mslib.losses.dice import soft_dice_loss

    cfg = _tiny("unet", dice_weight=0.5, pdcr="none", uafr=False)
    fn = recipe(cfg, 3, 1).fit_kwargs["loss_fn"]
    logits, y = torch.randn(2, 2, 8, 8), (torch.rand(2, 8, 8) > 0.5).long()
    torch.testing.assert_close(fn(logits, y), F.cross_entropy(logits, y) + 0.5 * soft_dice_loss(logits, y))


@pytest.mark.parametrize("network", NETS)
def test_hooks_attach_and_train_through_fit(network):
    torch.manual_seed(0)
    cfg = _tiny(network)
    r = recipe(cfg, 3, 1)
    layers = default_layers(cfg)
    bare = build_network(cfg, 3, 2)
    # UAFR adds exactly 144 C + 66 per layer; PDCR only the cross-layer projections (training only)
    added = r.model.inference_parameters() - sum(p.numel() for p in bare.parameters())
    assert added == sum(uafr_num_parameters(c) for c in r.model.net.model.uafr_channels.values())
    assert set(r.model.net.model.uafr_channels) == set(layers["uafr"])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g)
    y = (x.mean(1) > 0.5).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    before = {k: v.clone() for k, v in r.model.state_dict().items()}
    h = fit(
        r.model,
        loader,
        DataLoader(TensorDataset(x[:4], y[:4]), batch_size=4),
        config=cfg,
        progress=False,
        **r.fit_kwargs,
    )
    rec = h.last
    assert {"train_seg", "train_pdcr_encoder", "train_pdcr_cross", "train_pdcr_decoder"} <= set(rec)
    assert all(torch.isfinite(torch.tensor(rec[k])) for k in rec if k.startswith("train_"))
    changed = [k for k, v in r.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("net.model.uafr.") for k in changed) and any(k.startswith("pdcr.") for k in changed)


@pytest.mark.parametrize("network", NETS)
def test_pdcr_costs_nothing_at_inference(network, monkeypatch):
    """In eval mode no PDCR code runs and nothing is kept: the output equals the network + UAFR alone."""
    torch.manual_seed(0)
    cfg = _tiny(network)
    model = recipe(cfg, 3, 1).model
    calls = []
    monkeypatch.setattr(PatchDragsawLoss, "forward", lambda self, *a, **k: calls.append(1))
    no_pdcr = recipe(dataclasses.replace(cfg, pdcr="none"), 3, 1).model
    no_pdcr.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("pdcr.")})
    model.eval(), no_pdcr.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(out, no_pdcr(x))
    assert calls == [] and model.net.tap._store == {}
    assert model.inference_parameters() == sum(p.numel() for p in no_pdcr.parameters())


def test_transforms_use_the_pdcr_augmentation():
    cfg = get_config("pdcr", "paper", pretrained=False)
    t = pdcr_transforms(cfg, True)
    text = repr(t)
    assert "RandomAffine" in text and "RandomVerticalFlip" in text and "Normalize" in text
    assert AUGMENTATIONS["pdcr"]["rotation"] == cfg.rotation and AUGMENTATIONS["pdcr"]["shear"] == cfg.shear
    img, mask = torch.rand(3, 40, 50), torch.zeros(40, 50, dtype=torch.long)
    from torchvision import tv_tensors

    out_img, out_mask = t(tv_tensors.Image(img), tv_tensors.Mask(mask))
    assert out_img.shape == (3, 384, 512) and out_mask.shape == (384, 512)


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="config.network"):
        recipe(_tiny("segformer"), 3, 1)
    with pytest.raises(ValueError, match="receptive_fields"):
        recipe(_tiny("unet", pdcr="rf"), 3, 1)
    with pytest.raises(ValueError, match="no layer named"):
        recipe(_tiny("unet", uafr_layers=("encoder.9",)), 3, 1)


# ------------------------------------------------------------------------------------------ DDP
def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    become_rank(rank, world, port)
    torch.manual_seed(rank)  # different initial weights per rank: DDP broadcasts rank 0's
    cfg = _tiny("unet", epochs=2)
    r = recipe(cfg, 3, 1)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32, generator=g)
    y = (x.mean(1) > 0.5).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    h = fit(
        r.model,
        loader,
        DataLoader(TensorDataset(x[:4], y[:4]), batch_size=4),
        config=cfg,
        progress=False,
        **r.fit_kwargs,
    )
    torch.save({"state": r.model.state_dict(), "records": h.records}, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_uafr_pdcr_model_trains_under_two_process_ddp(tmp_path):
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k  # UAFR blocks and PDCR projections identical on both ranks
    assert any(k.startswith("net.model.uafr.") for k in r0["state"])
    assert "train_pdcr_cross" in r0["records"][-1]


# ------------------------------------------------------------------------------------------ CLI
def test_cli_train_pdcr_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    out = tmp_path / "runs" / "pdcr"
    argv = [
        "train",
        "--model",
        "pdcr",
        "--data",
        "synthetic-skin",
        "--profile",
        "quick",
        "--epochs",
        "1",
        "--num-images",
        "20",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--no-progress",
        "--out",
        str(out),
        "--test",
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "training pdcr (" in text and "test (3 images): dice=" in text
    rows = list(csv.DictReader(open(out / "history.csv", newline="")))
    assert {"train_seg", "train_pdcr_encoder", "train_pdcr_cross", "train_pdcr_decoder"} <= set(rows[0])
    assert 0.0 <= float(rows[0]["val_dice"]) <= 1.0
