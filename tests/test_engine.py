"""The training engine (mslib.train.engine): optimiser groups, schedules, AMP, checkpoints, resume, metrics."""

import copy
import csv
import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mslib import metrics as M
from mslib.configs import TrainConfig
from mslib.train import engine
from mslib.train.engine import History, autocast_settings, build_optimizer, evaluate, fit, load_checkpoint
from mslib.train.schedule import lr_factor


class NoisyShapes(Dataset):
    """Tiny binary task with random augmentation drawing from torch, NumPy and Python RNGs."""

    def __init__(self, n=12, size=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, size, size, generator=g)
        self.y = (self.x[:, 0] > 0.5).long()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x, y = self.x[i].clone(), self.y[i].clone()
        if torch.rand(()) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        x = x + 0.01 * float(np.random.randn()) + 0.01 * random.random()
        return x, y


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))


def bce(logits, masks):
    return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], masks.float())


def cfg(**kw):
    base = dict(epochs=1, lr=0.1, optimizer="sgd", momentum=0.0, weight_decay=0.0, schedule="constant", seed=0)
    base.update(kw)
    return TrainConfig(**base)


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ parameter groups
class TwoPart(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Conv2d(1, 3, 3, padding=1)
        self.head = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        return self.head(torch.relu(self.backbone(x)))


def groups(m):
    return [
        {"params": m.backbone.parameters(), "lr": 0.005, "name": "backbone"},
        {"params": m.head.parameters(), "lr": 0.05, "name": "head"},
    ]


def test_param_groups_move_by_their_own_sgd_step():
    ds = NoisyShapes(n=4)
    x, y = torch.stack([ds.x[i] for i in range(4)]), torch.stack([ds.y[i] for i in range(4)])
    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=False)
    model = TwoPart()
    ref = copy.deepcopy(model)
    bce(ref(x), y).backward()  # the gradient at the starting point
    h = fit(model, loader, loss_fn=bce, config=cfg(), param_groups=groups, progress=False)
    torch.testing.assert_close(model.backbone.weight, ref.backbone.weight - 0.005 * ref.backbone.weight.grad)
    torch.testing.assert_close(model.head.weight, ref.head.weight - 0.05 * ref.head.weight.grad)
    assert h.last["lr_backbone"] == 0.005 and h.last["lr_head"] == 0.05


def test_schedule_scales_each_group_base_lr(tmp_path):
    loader = DataLoader(NoisyShapes(n=8), batch_size=2)  # 4 steps per epoch
    c = cfg(epochs=2, schedule="linear", warmup_epochs=0.5, min_lr_ratio=0.1)
    h = fit(TwoPart(), loader, loss_fn=bce, config=c, param_groups=groups, out_dir=tmp_path, progress=False)
    # recorded lr = lr of the last step of each epoch (0-based steps 3 and 7; 8 total, 2 warm-up)
    for rec, step in zip(h, (3, 7)):
        f = lr_factor(step, 8, "linear", 2, min_lr_ratio=0.1)
        assert rec["lr_backbone"] == pytest.approx(0.005 * f) and rec["lr_head"] == pytest.approx(0.05 * f)
    opt_groups = load_checkpoint(tmp_path / "last.pt")["optimizers"]["model"]["param_groups"]
    f8 = lr_factor(8, 8, "linear", 2, min_lr_ratio=0.1)
    assert [g["lr"] for g in opt_groups] == pytest.approx([0.005 * f8, 0.05 * f8])
    assert [g["name"] for g in opt_groups] == ["backbone", "head"]


def test_param_group_errors():
    m = TwoPart()
    with pytest.raises(
        ValueError, match=r"2 trainable parameter\(s\) are in no param group \(head.weight, head.bias\)"
    ):
        build_optimizer(m, cfg(), [{"params": m.backbone.parameters()}])
    with pytest.raises(ValueError, match="exactly one group"):
        build_optimizer(m, cfg(), [{"params": m.parameters()}, {"params": m.head.parameters()}])
    m.head.requires_grad_(False)  # frozen parameters may stay out
    build_optimizer(m, cfg(), [{"params": m.backbone.parameters()}])


def test_optimizer_options():
    m = TwoPart()
    sgd = build_optimizer(m, cfg(optimizer="sgd", momentum=0.9, nesterov=True, weight_decay=5e-4))
    assert isinstance(sgd, torch.optim.SGD)
    g = sgd.param_groups[0]
    assert (g["momentum"], g["nesterov"], g["weight_decay"], g["lr"]) == (0.9, True, 5e-4, 0.1)
    assert isinstance(build_optimizer(m, cfg(optimizer="adam")), torch.optim.Adam)
    adamw = build_optimizer(m, cfg(optimizer="adamw", weight_decay=0.01))
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.01
    with pytest.raises(ValueError, match="valid optimizers are 'sgd', 'adam', 'adamw'"):
        fit(m, DataLoader(NoisyShapes(4)), loss_fn=bce, config=cfg(optimizer="rmsprop"), progress=False)


# ------------------------------------------------------------------------------ clipping, AMP, hooks
def test_gradient_clipping_bounds_the_step():
    ds = NoisyShapes(n=4)
    loader = DataLoader(ds, batch_size=4)
    model = TwoPart()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    fit(model, loader, loss_fn=lambda lg, m: 1000 * bce(lg, m), config=cfg(lr=0.1, grad_clip=0.01), progress=False)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    # plain SGD: the step is lr * clipped gradient, whose global norm is exactly grad_clip
    assert (after - before).norm().item() == pytest.approx(0.1 * 0.01, rel=1e-4)


def test_autocast_settings():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_settings(cpu, cfg(amp=True)) == (False, None, False)  # off on CPU by default
    assert autocast_settings(cpu, cfg(amp=True, amp_dtype="bfloat16")) == (True, torch.bfloat16, False)
    assert autocast_settings(cuda, cfg(amp=True)) == (True, torch.float16, True)  # fp16 + GradScaler
    assert autocast_settings(cuda, cfg(amp=True, amp_dtype="bfloat16")) == (True, torch.bfloat16, False)
    assert autocast_settings(cuda, cfg(amp=False)) == (False, None, False)


def test_step_fn_batch_transform_and_cpu_bf16_autocast():
    seen = {}

    def batch_transform(images, masks):
        seen["shape"] = tuple(images.shape)
        return images[..., :4, :4], masks[..., :4, :4]

    def step_fn(ctx, batch):
        images, masks = batch
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        seen["crop"] = tuple(images.shape)
        logits = ctx.model(images)
        return ctx.loss_fn(logits, masks), {"aux": torch.tensor(2.0), "other": 1.0}

    h = fit(
        tiny_model(),
        DataLoader(NoisyShapes(4), batch_size=2),
        loss_fn=bce,
        config=cfg(amp=True, amp_dtype="bfloat16"),
        step_fn=step_fn,
        batch_transform=batch_transform,
        progress=False,
    )
    assert seen == {"shape": (2, 1, 8, 8), "crop": (2, 1, 4, 4), "autocast": True}
    assert h.last["train_aux"] == 2.0 and h.last["train_other"] == 1.0


def test_non_finite_loss_is_an_error():
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        fit(
            tiny_model(),
            DataLoader(NoisyShapes(4)),
            loss_fn=lambda lg, m: lg.sum() * float("nan"),
            config=cfg(),
            progress=False,
        )


def test_empty_loader_is_an_error():
    with pytest.raises(ValueError, match="yields no batches"):
        fit(
            tiny_model(),
            DataLoader(NoisyShapes(3), batch_size=4, drop_last=True),
            loss_fn=bce,
            config=cfg(),
            progress=False,
        )


# ------------------------------------------------------------------------------ checkpoints and resume
def run(out_dir, epochs, callbacks=(), resume=True, model_seed=0, generator=False):
    gen = torch.Generator().manual_seed(7) if generator else None  # then the loader, not torch's global RNG, shuffles
    loader = DataLoader(NoisyShapes(n=12), batch_size=4, shuffle=True, generator=gen)
    val = DataLoader(NoisyShapes(n=6, seed=1), batch_size=3)
    model = tiny_model(model_seed)
    c = cfg(epochs=epochs, optimizer="sgd", momentum=0.9, lr=0.05, schedule="cosine", warmup_epochs=1.0, seed=3)
    h = fit(
        model, loader, val, loss_fn=bce, config=c, out_dir=out_dir, resume=resume, callbacks=callbacks, progress=False
    )
    return model, h


@pytest.mark.parametrize("generator", [False, True])
def test_resume_after_interruption_equals_uninterrupted_run(tmp_path, generator):
    full_model, full_hist = run(tmp_path / "full", epochs=4, generator=generator)

    def interrupt(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", epochs=4, callbacks=[interrupt], generator=generator)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 2
    resumed_model, resumed_hist = run(
        tmp_path / "cut", epochs=4, model_seed=123, generator=generator
    )  # init overwritten
    a, b = state(full_model), state(resumed_model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    drop_time = [{k: v for k, v in r.items() if k != "time"} for r in full_hist]
    assert [{k: v for k, v in r.items() if k != "time"} for r in resumed_hist] == drop_time
    # the run differs from one without shuffling/augmentation state restored: check the test can fail
    fresh_model, _ = run(tmp_path / "other", epochs=2, generator=generator)
    assert not all(torch.equal(v, state(fresh_model)[k]) for k, v in a.items())


def test_checkpoint_is_weights_only_and_complete(tmp_path):
    model, h = run(tmp_path, epochs=2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["history.csv", "last.pt"]  # no temporary files left behind
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["global_step"] == 6 and ckpt["total_steps"] == 6
    assert set(ckpt) >= {"models", "optimizers", "schedulers", "scaler", "history", "rng", "config"}
    assert set(ckpt["rng"][0]) >= {"torch", "numpy", "python", "loaders"}
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["models"]["model"][k], v)
    with open(tmp_path / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["val_dice"]) == pytest.approx(h.last["val_dice"])


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    model, h = run(tmp_path, epochs=2)
    again, h2 = run(tmp_path, epochs=2, model_seed=5)
    for k, v in state(model).items():
        assert torch.equal(v, state(again)[k])
    assert h2.records == h.records


def test_no_resume_starts_afresh_and_bad_checkpoint_names_the_file(tmp_path):
    run(tmp_path, epochs=1)
    _, h = run(tmp_path, epochs=1, resume=False)
    assert len(h) == 1
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="last.pt.*resume=False"):
        run(tmp_path, epochs=1)


# ------------------------------------------------------------------------------ evaluate and metrics
class Echo(nn.Module):
    """Predicts channel 0 of its input (binary) or the labels in channel 0 (multi-class)."""

    def __init__(self, k=1):
        super().__init__()
        self.k = k
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        if self.k == 1:
            return (x[:, :1] - 0.5) * 20 + 0 * self.dummy
        return nn.functional.one_hot(x[:, 0].long(), self.k).permute(0, 3, 1, 2).float() * 10


def test_evaluate_binary_hand_computed():
    pred = torch.zeros(2, 1, 4, 4)
    gt = torch.zeros(2, 4, 4, dtype=torch.long)
    pred[0, 0, :2, :2] = 1  # 4 predicted pixels
    gt[0, 0, :2] = 1  # 2 true pixels, both predicted: Dice 4/6, IoU 2/4
    # image 1: both empty -> undefined (NaN, ignore_empty) and left out of the mean, not a perfect 1
    out = evaluate(Echo(), DataLoader(TensorDataset(pred, gt), batch_size=1))
    assert out["dice"] == pytest.approx(2 / 3) and out["iou"] == pytest.approx(0.5)
    torch.testing.assert_close(out["per_image"]["dice"], torch.tensor([2 / 3, float("nan")]), equal_nan=True)


def test_evaluate_multiclass_mean_over_foreground():
    pred = torch.tensor([[0, 1, 1, 2], [0, 0, 2, 2]]).float().view(1, 1, 2, 4)
    gt = torch.tensor([[0, 1, 2, 2], [0, 0, 2, 2]]).view(1, 2, 4)
    # class 1: pred 2 px, gt 1 px, overlap 1 -> Dice 2/3; class 2: pred 3, gt 4, overlap 3 -> Dice 6/7
    out = evaluate(Echo(k=3), DataLoader(TensorDataset(pred, gt), batch_size=1), loss_fn=lambda lg, m: lg.mean())
    assert out["dice"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    assert out["iou"] == pytest.approx((1 / 2 + 3 / 4) / 2)
    assert out["loss"] == pytest.approx(10 / 3)
    ref = M.dice(pred[:, 0].long(), gt, num_classes=3, reduction="mean")
    torch.testing.assert_close(out["per_image"]["dice"], ref)


def test_fit_learns_the_tiny_task_and_records_history(tmp_path):
    loader = DataLoader(NoisyShapes(n=16), batch_size=4, shuffle=True)
    val = DataLoader(NoisyShapes(n=8, seed=1), batch_size=4)
    h = fit(
        tiny_model(),
        loader,
        val,
        loss_fn=bce,
        config=cfg(epochs=6, optimizer="adam", lr=0.05),
        out_dir=tmp_path,
        progress=False,
    )
    assert h.column("epoch") == [1, 2, 3, 4, 5, 6]
    assert h.last["train_loss"] < h[0]["train_loss"]
    assert h.best("val_dice")["val_dice"] > 0.8
    assert h.best("val_loss")["val_loss"] == min(h.column("val_loss"))
    assert set(h.last) >= {"epoch", "step", "train_loss", "val_dice", "val_iou", "val_loss", "lr", "time"}


def test_history_helpers(tmp_path):
    h = History(
        [
            {"epoch": 1, "val_dice": 0.5, "train_loss": 2.0},
            {"epoch": 2, "val_dice": 0.7, "train_loss": 3.0},
            {"epoch": 3, "val_dice": float("nan"), "train_loss": 1.0, "extra": 1},
        ]
    )
    assert h.best("val_dice")["epoch"] == 2 and h.best("train_loss")["epoch"] == 3
    assert h.best("train_loss", mode="max")["epoch"] == 2
    assert h.last["epoch"] == 3 and len(h) == 3
    with pytest.raises(KeyError, match="available keys"):
        h.best("val_iou")
    path = h.to_csv(tmp_path / "h.csv")
    rows = list(csv.DictReader(open(path, newline="")))
    assert list(rows[0]) == ["epoch", "val_dice", "train_loss", "extra"] and rows[2]["extra"] == "1"
    assert math.isnan(float(rows[2]["val_dice"]))


def test_tqdm_disable_env_is_respected(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert engine._tqdm_disabled(progress=True)
    monkeypatch.setenv("TQDM_DISABLE", "")
    assert not engine._tqdm_disabled(progress=True) and engine._tqdm_disabled(progress=False)


# ------------------------------------------------------------------------------ extension points
def test_step_context_counts_steps_and_hooks_run_after_every_step():
    seen = []

    def step_fn(ctx, batch):
        seen.append((ctx.epoch, ctx.step, ctx.total_steps, ctx.steps_per_epoch))
        return ctx.loss_fn(ctx.model(batch[0]), batch[1])

    hooked = []
    fit(
        tiny_model(),
        DataLoader(NoisyShapes(6), batch_size=2),
        loss_fn=bce,
        config=cfg(epochs=2),
        step_fn=step_fn,
        step_hooks=[lambda ctx, logs: hooked.append(ctx.step)],
        progress=False,
    )
    assert seen == [(e, 3 * e + i, 6, 3) for e in range(2) for i in range(3)]
    assert hooked == list(range(6))


def test_steps_per_epoch_cycles_the_loader_and_stop_ends_training():
    n = []

    def step_fn(ctx, batch):
        n.append(batch[0].shape[0])
        if ctx.step == 6:
            ctx.stop()
        return ctx.loss_fn(ctx.model(batch[0]), batch[1])

    h = fit(
        tiny_model(),
        DataLoader(NoisyShapes(4), batch_size=2),
        loss_fn=bce,
        config=cfg(epochs=3, steps_per_epoch=5),
        step_fn=step_fn,
        progress=False,
    )
    assert len(n) == 7 and [r["step"] for r in h] == [5, 7]


def test_step_returning_none_skips_the_update():
    model = tiny_model()
    before = state(model)
    h = fit(
        model,
        DataLoader(NoisyShapes(4), batch_size=2),
        loss_fn=bce,
        config=cfg(),
        step_fn=lambda ctx, b: None,
        progress=False,
    )
    assert all(
        torch.equal(v, state(model)[k]) for k, v in before.items() if "running" not in k and "num_batches" not in k
    )
    assert math.isnan(h.last["train_loss"])


def two_model_run(out_dir, epochs, interrupt_at=None, seed=0):
    """Cross teaching in miniature: two models, two optimisers (own lr), labelled + unlabelled loaders."""
    torch.manual_seed(seed)
    models = {"a": tiny_model(1), "b": tiny_model(2)}
    lab = DataLoader(NoisyShapes(n=8), batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(1))
    unl = DataLoader(NoisyShapes(n=6, seed=5), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(2))

    def step_fn(ctx, batch):
        (xl, yl), (xu, _) = batch["labelled"], batch["unlabelled"]
        a, b = ctx.model["a"], ctx.model["b"]
        sup = bce(a(xl), yl) + bce(b(xl), yl)
        pa, pb = a(xu), b(xu)
        w = ctx.step / ctx.total_steps  # a ramp-up by iteration
        cross = bce(pa, (pb.detach() > 0)[:, 0].long()) + bce(pb, (pa.detach() > 0)[:, 0].long())
        return sup + w * cross, {"cross": cross.detach()}

    def interrupt(epoch, record):
        if epoch == interrupt_at:
            raise KeyboardInterrupt

    c = cfg(epochs=epochs, seed=3, steps_per_epoch=3, optimizer="sgd", momentum=0.9, schedule="cosine")
    h = fit(
        models,
        {"labelled": lab, "unlabelled": unl},
        DataLoader(NoisyShapes(4, seed=9), batch_size=2),
        config=c,
        optim_configs={"b": cfg(lr=0.01, optimizer="adam", schedule="poly")},
        step_fn=step_fn,
        out_dir=out_dir,
        callbacks=[interrupt],
        best_metric="val_a_dice",
        progress=False,
    )
    return models, h


def test_two_models_two_optimisers_two_loaders_resume_exactly(tmp_path):
    full, hist = two_model_run(tmp_path / "full", epochs=4)
    assert {"val_a_dice", "val_b_dice", "lr_a", "lr_b", "train_cross", "best_val_a_dice"} <= set(hist.last)
    assert hist.last["lr_b"] != hist.last["lr_a"]
    with pytest.raises(KeyboardInterrupt):
        two_model_run(tmp_path / "cut", epochs=4, interrupt_at=2)
    resumed, hist2 = two_model_run(tmp_path / "cut", epochs=4, seed=99)
    for name in full:
        a, b = state(full[name]), state(resumed[name])
        assert all(torch.equal(a[k], b[k]) for k in a), name
    best = load_checkpoint(tmp_path / "full" / "best.pt")
    col = hist.column("val_a_dice")
    assert best["best"]["epoch"] == 1 + col.index(max(col)) and set(best["models"]) == {"a", "b"}


def test_several_models_need_a_step_fn():
    with pytest.raises(TypeError, match="step_fn"):
        fit({"a": tiny_model(), "b": tiny_model()}, DataLoader(NoisyShapes(4)), loss_fn=bce, config=cfg())


def test_evaluate_fn_replaces_validation():
    h = fit(
        tiny_model(),
        DataLoader(NoisyShapes(4), batch_size=2),
        DataLoader(NoisyShapes(2)),
        loss_fn=bce,
        config=cfg(),
        evaluate_fn=lambda ctx, loader: {"custom": float(len(loader)) + ctx.epoch},
        progress=False,
    )
    assert h.last["val_custom"] == 2.0 and "val_dice" not in h.last
