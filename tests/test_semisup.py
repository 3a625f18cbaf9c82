"""Semi-supervised training on the engine (mslib.train.semisup, mslib.recipes.mcsc): losses wired as the
equations say, the two-stream batches, exact resume of the two-model loop, 2-process gloo DDP, a
paper-profile step on the CPU, the labelled slices of the real ACDC list."""

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from mslib.configs import ABLATIONS, get_config
from mslib.data.labelled import SSL4MIS_ACDC_SLICES, case_of, labelled_split, read_slice_list
from mslib.data.samplers import TwoStreamBatchSampler
from mslib.data.synthetic_volumes import generate_volumes
from mslib.losses.cross_teaching import cps_weight
from mslib.recipes import mcsc as R
from mslib.train.engine import CHECKPOINT
from tests.ddp_helpers import become_rank, free_port

ACDC = Path(__file__).resolve().parents[2] / "shared" / "data" / "acdc" / "ACDC"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_volumes(tmp_path_factory.mktemp("vol") / "v", n_cases=8, slices=4, size=32, seed=0)


def tiny(method="mcsc", root=None, **kw):
    base = dict(
        image_size=32,
        dataset=str(root),
        labelled_cases=1,
        labeled_bs=2,
        unlabeled_bs=2,
        max_iterations=4,
        val_every=2,
        seed=0,
    )
    if method == "mcsc":
        base.update(cl_max_samples=128, cl_start_iteration=2)
    base.update(kw)
    return get_config(method, "quick", **base)


def _dice_by_hand(logits, target, k):
    p = torch.softmax(logits.double(), 1)
    y = F.one_hot(target, k).permute(0, 3, 1, 2).double()
    inter, den = (p * y).sum((0, 2, 3)), (p * p).sum((0, 2, 3)) + (y * y).sum((0, 2, 3))
    return (1 - (2 * inter + 1e-5) / (den + 1e-5)).mean()


def _sup_by_hand(logits, target):
    return 0.5 * (F.cross_entropy(logits.double(), target) + _dice_by_hand(logits, target, logits.shape[1]))


# ------------------------------------------------------------------------------------ configs
def test_method_configs():
    assert get_config("cts", "paper").optimizer == "sgd" and get_config("cts", "paper").lr == 0.01
    assert get_config("cts", "paper").cl_weight == 0 and get_config("mcsc", "paper").cl_weight == 0.001
    assert get_config("unet_ls", "quick").method == "unet_ls"
    for over in ABLATIONS.values():
        get_config("mcsc", "quick", **over)  # every ablation row is a valid config
    with pytest.raises(ValueError, match="no Swin-UNet"):
        get_config("cps", "quick", swin_embed_dim=48)
    oc = R.optim_configs(get_config("mcsc", "paper"))
    assert oc["cnn"].optimizer == "adamw" and oc["cnn"].weight_decay == 5e-4 and oc["cnn"].lr == 5e-4
    assert oc["tra"].lr == pytest.approx(1e-4) and oc["tra"].warmup_epochs * 200 == pytest.approx(1972)
    assert oc["proj"].lr == 5e-4 and {c.schedule for c in oc.values()} == {"poly"}
    assert R.train_config(get_config("mcsc", "paper")).epochs * 200 == 40_000


# ------------------------------------------------------------------------------------ sampler / loaders
def test_shard_splits_every_global_batch():
    s = TwoStreamBatchSampler(range(12), range(12, 40), 2, 3, seed=1)
    shards = [s.shard(r, 2) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 3
    for epoch in range(2):
        for sh in shards:
            sh.set_epoch(epoch)
        b0, b1 = list(shards[0]), list(shards[1])
        for x, y in zip(b0, b1):
            assert set(x[:2]) <= set(range(12)) and set(x[2:]) <= set(range(12, 40))
            assert not set(x) & set(y)  # the ranks' batches are disjoint
        assert sorted(i for b in b0 + b1 for i in b[:2]) == list(range(12))  # one pass over the labelled
    with pytest.raises(ValueError, match="rank"):
        s.shard(2, 2)


def test_every_batch_has_its_labelled_share(root):
    cfg = tiny("cts", root, labelled_cases=2)
    data = R.build_loaders(cfg)
    lab = set(data["labelled"])
    names = data["dataset"].names
    assert len(lab) == 8 and {case_of(n) for n in lab} == {"case000", "case001"}
    sampler = data["train"].batch_sampler
    for _ in range(3):
        for b in sampler:
            assert len(b) == 4 and {names[i] for i in b[:2]} <= lab and not {names[i] for i in b[2:]} & lab
    fs = R.build_loaders(tiny("unet_fs", root))
    assert len(fs["labelled"]) == len(fs["dataset"]) and fs["train"].batch_sampler.unlabeled_bs == 0


# ------------------------------------------------------------------------------------ losses as the equations say
def _ctx(models, step=0):
    return SimpleNamespace(model=models, models=models, step=step)


def test_cross_teaching_and_cps_steps_match_the_equations(root):
    for method in ("cts", "cps"):
        rec = R.recipe(tiny(method, root))
        a, b = rec.networks
        x, y = next(iter(rec.data["train"]))
        for m in rec.models.values():
            m.eval()  # no dropout: same logits twice
        step = 30
        loss, logs = rec.fit_kwargs["step_fn"](_ctx(rec.models, step), (x, y))
        la, lb = rec.models[a](x).double(), rec.models[b](x).double()
        w = cps_weight(step, 0.1, rec.config.cps_rampup, rec.config.cps_iters_per_step)
        assert logs["w_cps"] == pytest.approx(0.1 * torch.exp(torch.tensor(-5 * (1 - 30 / 150) ** 2)).item())
        want = (
            _sup_by_hand(la[:2], y[:2])
            + w * _dice_by_hand(la[2:], lb[2:].argmax(1), 4)
            + _sup_by_hand(lb[:2], y[:2])
            + w * _dice_by_hand(lb[2:], la[2:].argmax(1), 4)
        )
        torch.testing.assert_close(loss.double(), want, rtol=1e-5, atol=1e-6)
    # the unlabelled images' masks are never read
    loss2, _ = rec.fit_kwargs["step_fn"](_ctx(rec.models, step), (x, torch.cat([y[:2], 1 - y[2:].clamp(max=1)])))
    torch.testing.assert_close(loss2, loss)


def test_mcsc_step_adds_the_weighted_contrast(root):
    cfg = tiny("mcsc", root, cl_sampling="all", cl_weight=0.5)
    rec = R.recipe(cfg)
    for m in rec.models.values():
        m.eval()
    x, y = next(iter(rec.data["train"]))
    ctx = _ctx(rec.models, 3)
    loss, logs = rec.fit_kwargs["step_fn"](ctx, (x, y))
    cts, _ = R.step_function(dataclasses.replace(cfg, cl_weight=0.0))(ctx, (x, y))
    la, fa = rec.models["cnn"](x, return_features=True)
    lb, fb = rec.models["tra"](x, return_features=True)
    l_cl, per = rec.models["proj"](fa, fb, y[:2], la.argmax(1), lb.argmax(1), 2, iteration=3)
    assert set(per) == {1, 8} and float(logs["cl"]) == pytest.approx(float(l_cl.detach()), rel=1e-5)
    torch.testing.assert_close(loss, cts + 0.5 * l_cl, rtol=1e-5, atol=1e-6)
    double, _ = R.step_function(dataclasses.replace(cfg, legacy_double_contrast=True))(ctx, (x, y))
    torch.testing.assert_close(double, cts + 1.0 * l_cl, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in rec.models["proj"].parameters())  # the heads are trained


# ------------------------------------------------------------------------------------ resume, best model
def _states(models):
    return {k: {n: t.clone() for n, t in m.state_dict().items()} for k, m in models.items()}


def test_resume_of_the_two_model_loop_equals_an_uninterrupted_run(root, tmp_path):
    cfg = tiny("mcsc", root)
    h_full, full = R.train(cfg, out_dir=tmp_path / "full", device="cpu", progress=False, load_best=False)
    assert len(h_full) == 2 and h_full.last["step"] == 4 and "val_cnn_dice" in h_full.last
    assert (tmp_path / "full" / "best.pt").is_file()

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch, record):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        R.train(cfg, out_dir=tmp_path / "cut", device="cpu", progress=False, callbacks=[stop_after_first])
    assert (tmp_path / "cut" / CHECKPOINT).is_file()
    h_res, res = R.train(cfg, out_dir=tmp_path / "cut", device="cpu", progress=False, load_best=False)
    a, b = _states(full.models), _states(res.models)
    for k in a:
        for n in a[k]:
            assert torch.equal(a[k][n], b[k][n]), f"{k}.{n}"
    assert h_res.last["train_loss"] == h_full.last["train_loss"]


def test_validator_keeps_the_best_and_test_reports_per_class(root):
    cfg = tiny("unet_ls", root, max_iterations=2, val_every=1)
    h, rec = R.train(cfg, device="cpu", progress=False)
    assert rec.validator.best_state is not None and rec.validator.best_step in (1, 2)
    res = R.test(rec)
    assert set(res) == {"cnn"} and set(res["cnn"]["dice"]) == {"right ventricle", "myocardium", "left ventricle"}
    assert res["cnn"]["volumes"] == 2


# ------------------------------------------------------------------------------------ paper profile
def test_paper_profile_step_on_cpu_at_batch_1(root):
    cfg = get_config(
        "mcsc",
        "paper",
        image_size=64,
        dataset=str(root),
        labelled_cases=1,
        labeled_bs=1,
        unlabeled_bs=1,
        swin_pretrained=False,
    )
    rec = R.recipe(cfg)
    assert sum(p.numel() for p in rec.models["cnn"].parameters()) == 1_813_764
    assert rec.models["tra"].embed_dim == 96 and set(rec.models["proj"].scales) == {1, 8}
    x = torch.rand(2, 1, 64, 64)
    y = torch.randint(0, 4, (2, 64, 64))
    loss, logs = rec.fit_kwargs["step_fn"](_ctx(rec.models, 0), (x, y))
    loss.backward()
    assert torch.isfinite(loss) and logs["w_cps"] == pytest.approx(0.000674, abs=1e-6)


# ------------------------------------------------------------------------------------ real ACDC list
@pytest.mark.skipif(not (ACDC / "train_slices.list").is_file(), reason="ACDC sample (../shared/data) not available")
def test_labelled_slices_are_the_first_lines_of_the_acdc_list():
    names = read_slice_list(ACDC / "train_slices.list")
    cases = []
    for n in names:
        if case_of(n) not in cases:
            cases.append(case_of(n))
    for k in range(1, len(cases) + 1):
        lab, unl = labelled_split(names, k)
        assert lab == names[: len(lab)] and len(lab) + len(unl) == len(names)
    # SSL4MIS labels the first 136 lines for 7 cases; the sample holds only the first 2 patients, whose
    # slices are the list's first lines: the 7-case subset starts with them
    assert SSL4MIS_ACDC_SLICES[7] == 136 and len(labelled_split(names, 1)[0]) == SSL4MIS_ACDC_SLICES[1]


# ------------------------------------------------------------------------------------ DDP
def _worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    become_rank(rank, world, port)
    cfg = tiny("cts", root, max_iterations=2, val_every=2)
    h, rec = R.train(cfg, device="cpu", progress=False, load_best=False)
    first = next(iter(rec.data["train"].batch_sampler))
    torch.save(
        {
            "states": _states(rec.models),
            "loss": h.last["train_loss"],
            "dice": h.last["val_cnn_dice"],
            "steps": h.last["step"],
            "batch": first,
        },
        os.path.join(out, f"rank{rank}.pt"),
    )


@pytest.mark.slow
def test_two_process_gloo_ddp(root, tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(root), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    for k in r0["states"]:
        for n, v in r0["states"][k].items():
            assert torch.equal(v, r1["states"][k][n]), f"{k}.{n}"  # identical weights on both ranks
    assert r0["loss"] == r1["loss"] and r0["dice"] == r1["dice"] and r0["steps"] == 2
