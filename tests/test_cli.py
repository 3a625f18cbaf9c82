"""``python -m mslib train ...`` end to end on a tiny synthetic dataset, and its errors."""

import csv
import dataclasses
import subprocess
import sys

import pytest
import torch

from mslib import cli
from mslib.configs import get_config

TINY = [
    "--data",
    "synthetic-polyp",
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
]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MSLIB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    return tmp_path / "data"


def test_train_end_to_end_then_resume(tmp_path, data_dir, capsys):
    out = tmp_path / "runs" / "unet"
    assert cli.main(["train", "--model", "unet", "--out", str(out), "--test", *TINY]) == 0
    text = capsys.readouterr().out
    assert f"history:    {out / 'history.csv'}" in text and f"checkpoint: {out / 'last.pt'}" in text
    assert "test (3 images): dice=" in text  # 20 images: 14 train / 3 val / 3 test
    rows = list(csv.DictReader(open(out / "history.csv", newline="")))
    assert [r["epoch"] for r in rows] == ["1"] and 0.0 <= float(rows[0]["val_dice"]) <= 1.0
    ckpt = torch.load(out / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["global_step"] == 4  # ceil(14 / 4) steps
    # a second call with more epochs continues from the checkpoint
    assert cli.main(["train", "--model", "unet", "--out", str(out), *TINY, "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    assert f"resumed from {out / 'last.pt'} after epoch 1" in text
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 2


def test_unknown_model_profile_and_data_are_clear_errors(tmp_path, data_dir, capsys):
    assert cli.main(["train", "--model", "vgg", *TINY]) == 2
    err = capsys.readouterr().err
    assert "--model 'vgg': unknown model; valid models are 'm2snet'" in err and "'unet'" in err
    assert cli.main(["train", "--model", "unet", "--profile", "full", "--out", str(tmp_path)]) == 2
    assert "valid profiles are 'quick', 'paper'" in capsys.readouterr().err
    assert (
        cli.main(["train", "--model", "unet", "--data", "no-such-set", "--out", str(tmp_path / "r"), "--no-progress"])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dataset 'no-such-set' not found" in err and "Traceback" not in err
    with pytest.raises(FileNotFoundError, match="no-such-set"):  # --debug: the exception itself
        cli.main(["train", "--model", "unet", "--data", "no-such-set", "--out", str(tmp_path / "r"), "--debug"])


def test_registry_entries_are_one_line_and_lazy(monkeypatch):
    from mslib.recipes import default_loss, unet

    assert cli._resolve("mslib.recipes.unet:recipe") is unet.recipe
    cfg = get_config("unet", "quick")
    recipe = unet.recipe(cfg, 1, 3)
    assert recipe.model.in_channels == 1 and recipe.model.num_classes == 3
    assert recipe.fit_kwargs["loss_fn"].__name__ == "dice_ce"  # multi-class data gets Dice + CE
    assert unet.recipe(cfg, 3, 1).fit_kwargs["loss_fn"].__name__ == "dice_bce"
    with pytest.raises(ValueError, match="valid losses are"):
        default_loss(dataclasses.replace(cfg, loss="focal"), 1)


def test_train_m2snet_end_to_end(tmp_path, data_dir, capsys):
    out = tmp_path / "runs" / "m2snet"
    assert cli.main(["train", "--model", "m2snet", "--out", str(out), *TINY]) == 0
    text = capsys.readouterr().out
    assert "training m2snet (" in text and f"checkpoint: {out / 'last.pt'}" in text
    rows = list(csv.DictReader(open(out / "history.csv", newline="")))
    assert 0.0 <= float(rows[0]["val_dice"]) <= 1.0
    assert {"lr_backbone", "lr_head", "train_structure"} <= set(rows[0])  # two groups, Eq. 4 parts logged


def test_m2snet_recipe_groups_lr_and_binary_only():
    from mslib.models.m2snet import M2SNet

    cfg = get_config(
        "m2snet",
        "paper",
        pretrained=False,
        lossnet_weight=0.0,
        backbone_layers=(1, 1, 1, 1),
        backbone_width=0.125,
        channels=8,
    )
    recipe = cli._resolve(cli.MODELS["m2snet"])(cfg, 3, 1)
    assert isinstance(recipe.model, M2SNet) and recipe.model.head.out_channels == 1
    groups = recipe.fit_kwargs["param_groups"](recipe.model)
    assert [g["lr"] for g in groups] == pytest.approx([0.005, 0.05])  # paper: backbone 0.005, rest 0.05
    assert recipe.fit_kwargs["batch_transform"] is not None  # multi-scale training
    faster = cli._resolve(cli.MODELS["m2snet"])(dataclasses.replace(cfg, lr=0.1, normalize="none"), 1, 1)  # --lr 0.1
    assert [g["lr"] for g in faster.fit_kwargs["param_groups"](faster.model)] == pytest.approx([0.01, 0.1])
    with pytest.raises(ValueError, match="one foreground class"):
        cli._resolve(cli.MODELS["m2snet"])(cfg, 3, 4)


def test_python_dash_m_entry_point():
    res = subprocess.run(
        [sys.executable, "-m", "mslib", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and "--model" in res.stdout and "--resume" in res.stdout


@pytest.mark.slow
def test_paper_profile_builds_and_takes_one_step_on_cpu():
    from torch.utils.data import DataLoader, TensorDataset

    from mslib.train.engine import fit

    cfg = get_config("unet", "paper", epochs=1, batch_size=1)
    recipe = cli._resolve(cli.MODELS["unet"])(cfg, 3, 1)
    n = sum(p.numel() for p in recipe.model.parameters())
    assert n == 31_037_633  # the 2015 widths 64 .. 1024 with batch norm, one output channel
    s = 2**cfg.depth * 4  # a small input of the right multiple: the step, not the resolution, is checked here
    x, y = torch.rand(1, 3, s, s), (torch.rand(1, s, s) > 0.5).long()
    h = fit(
        recipe.model, DataLoader(TensorDataset(x, y), batch_size=1), config=cfg, progress=False, **recipe.fit_kwargs
    )
    assert h.last["step"] == 1 and torch.isfinite(torch.tensor(h.last["train_loss"]))


# ------------------------------------------------------------------------- issue 11: safe run folders
def _weights(out):
    return torch.load(out / "last.pt", weights_only=True)["models"]["model"]


def test_same_seed_same_weights_bit_for_bit(tmp_path, data_dir, capsys):
    for name in ("a", "b"):
        assert cli.main(["train", "--model", "unet", "--out", str(tmp_path / name), "--seed", "0", *TINY]) == 0
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert cli.main(["train", "--model", "unet", "--out", str(tmp_path / "c"), "--seed", "1", *TINY]) == 0
    c = _weights(tmp_path / "c")
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_resume_refuses_a_different_run_and_reports_allowed_changes(tmp_path, data_dir, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["train", "--model", "unet", "--out", out, *TINY]) == 0
    capsys.readouterr()
    other_data = [a if a != "synthetic-polyp" else "synthetic-skin" for a in TINY]
    assert cli.main(["train", "--model", "unet", "--out", out, *other_data]) == 2
    err = capsys.readouterr().err
    assert "data: synthetic-polyp -> synthetic-skin" in err and "--no-resume" in err
    assert cli.main(["train", "--model", "unet", "--out", out, *TINY, "--lr", "0.5"]) == 2
    assert "config.lr: 0.003 -> 0.5" in capsys.readouterr().err
    assert cli.main(["train", "--model", "unet", "--out", out, *TINY]) == 2  # 1 epoch again: nothing to do
    assert "already trained 1 epoch(s)" in capsys.readouterr().err
    assert cli.main(["train", "--model", "unet", "--out", out, *TINY, "--epochs", "2"]) == 0
    text = capsys.readouterr().out
    assert "resuming with a change: epochs: 1 -> 2" in text and "resumed from" in text
    assert cli.main(["train", "--model", "unet", "--out", out, *other_data, "--no-resume"]) == 0


def test_default_out_names_the_dataset(tmp_path, data_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--model", "unet", *TINY]) == 0
    assert (tmp_path / "runs" / "unet-quick-synthetic-polyp" / "last.pt").is_file()


def test_bad_arguments_fail_in_seconds_before_any_data(tmp_path, data_dir, capsys):
    import time

    cases = {
        ("--lr", "0"): "--lr 0.0: the learning rate must be a positive number",
        ("--epochs", "0"): "--epochs 0: must be > 0",
        ("--image-size", "36"): "must be a multiple of 16",
        ("--batch-size", "-1"): "--batch-size -1",
    }
    for (flag, value), msg in cases.items():
        args = [a for a in TINY]
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
        t0 = time.perf_counter()
        assert cli.main(["train", "--model", "unet", "--out", str(tmp_path / "r"), *args]) == 2, flag
        assert time.perf_counter() - t0 < 20
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (flag, err)
    (tmp_path / "file").write_text("not a folder")
    assert cli.main(["train", "--model", "unet", "--out", str(tmp_path / "file"), *TINY]) == 2
    assert "file" in capsys.readouterr().err


def test_a_locked_run_folder_is_refused(tmp_path, data_dir, capsys):
    import os
    import subprocess as sp

    from mslib.train.run_folder import RunLock

    out = tmp_path / "busy"
    holder = sp.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from mslib.train.run_folder import RunLock; "
            f"l = RunLock({str(out)!r}).__enter__(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=sp.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert cli.main(["train", "--model", "unet", "--out", str(out), *TINY]) == 2
        err = capsys.readouterr().err
        assert f"{holder.pid}@" in err
    finally:
        holder.kill()
        holder.wait()
    assert RunLock is not None


def test_grey_dataset_on_m2snet_is_refused_before_training(tmp_path, make_dataset, capsys):
    root = make_dataset(
        "grey", channels=1, n=6, size=(32, 32), splits={"train": ["s00", "s01", "s02", "s03"], "val": ["s04", "s05"]}
    )
    assert (
        cli.main(
            [
                "train",
                "--model",
                "m2snet",
                "--data",
                str(root),
                "--out",
                str(tmp_path / "r"),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 2
    )
    assert "3-channel images" in capsys.readouterr().err


def test_a_last_batch_of_one_image_is_dropped_and_said(tmp_path, make_dataset, capsys):
    root = make_dataset(
        "odd", n=7, size=(32, 32), splits={"train": [f"s{i:02d}" for i in range(5)], "val": ["s05", "s06"]}
    )
    assert (
        cli.main(
            [
                "train",
                "--model",
                "unet",
                "--data",
                str(root),
                "--out",
                str(tmp_path / "r"),
                "--epochs",
                "1",
                "--batch-size",
                "4",
                "--image-size",
                "32",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "last batch of one image" in capsys.readouterr().out
