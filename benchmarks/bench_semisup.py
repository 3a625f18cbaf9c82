"""Semi-supervised comparison (MCSC Tab. R1 style) on any prepared volumetric dataset, under a CPU budget.

    python -m benchmarks.bench_semisup --data acdc --labelled 7 --size 128 --iters 1500
    python -m benchmarks.bench_semisup --data synthetic-cardiac --labelled 1 3 7 --seeds 0 1 2 --iters 300
    python -m benchmarks.bench_semisup --speed          # steps/s of the loop at quick and paper sizes

Each (method, labelled cases, seed) trains through :func:`mslib.recipes.mcsc.train` (the one
engine) on the ``train`` split (the first K cases labelled), keeps the weights of the best
validation Dice of model 1 (validation every ``--val-every`` iterations on the ``val`` volumes)
and is scored per volume on the ``test`` split: Dice and HD95 per class, mean over the test
volumes, then mean +- std over seeds (std over seeds, n = number of seeds). Model 1 (the UNet)
is reported for every method, as MCSC's Tab. R1; ``--both`` adds the Transformer / second UNet.

``--data``: ``acdc`` (or any name under ``$MSLIB_DATA_DIR``, or a prepared folder) or
``synthetic-cardiac`` (synthetic cardiac volumes, the quick profile's data). Everything else
is the ``quick`` profile of each method (AdamW groups, narrow Swin-UNet) unless ``--profile paper``.
HD95 is in mm when ``dataset.json`` gives the voxel spacing (pixels otherwise; ``--pixels``
forces pixels as the official script); a class absent from both prediction and ground truth
of a volume is skipped (NaN), a class missed or hallucinated scores Dice 0 and HD95 = the
volume's diagonal (mslib's convention; ``--legacy-metrics`` for the official one).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import print_table

METHODS = ("unet_ls", "cps", "cts", "mcsc", "unet_fs")
SHORT = {"right ventricle": "RV", "myocardium": "Myo", "left ventricle": "LV"}
LABELS = {"unet_ls": "UNet-LS", "cps": "CPS", "cts": "CTS", "mcsc": "MCSC", "unet_fs": "UNet-FS"}


def _config(method: str, args, labelled: int, seed: int):
    from mslib.configs import get_config

    kw = dict(
        max_iterations=args.iters,
        val_every=min(args.val_every, args.iters),
        val_after=0,
        seed=seed,
        labelled_cases=labelled,
        image_size=args.size,
        dataset=args.root_str,
    )
    if args.pixels:
        kw["hd95_in_mm"] = False
    if args.legacy_metrics:
        kw["legacy_metrics"] = True
    if args.batch:
        kw.update(labeled_bs=args.batch, unlabeled_bs=args.batch)
    if method in ("mcsc", "cts") and args.profile == "paper":
        kw["swin_pretrained"] = "auto"
    cfg = get_config(method, args.profile, **kw)
    return cfg


def _root(data: str, size: int) -> str:
    from mslib.configs import get_config
    from mslib.recipes.mcsc import dataset_root

    if data in ("synthetic-cardiac", "synthetic"):
        q = get_config("mcsc", "quick")
        return str(dataset_root(dataclasses.replace(q, image_size=size, dataset="synthetic")))
    return str(dataset_root(dataclasses.replace(get_config("mcsc", "quick"), dataset=data)))


def run_one(method: str, args, labelled: int, seed: int) -> dict:
    from mslib.recipes import mcsc as R

    cfg = _config(method, args, labelled, seed)
    t0 = time.perf_counter()
    history, rec = R.train(cfg, device=args.device, progress=False)
    seconds = time.perf_counter() - t0
    res = R.test(rec, networks=rec.networks if args.both else rec.networks[:1])
    return {
        "method": method,
        "labelled": labelled,
        "seed": seed,
        "seconds": seconds,
        "results": res,
        "slices": len(rec.data["labelled"]),
        "best_step": rec.validator.best_step,
    }


def _mean_std(values) -> str:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return "n/a"
    return f"{v.mean():.3f} ± {v.std():.3f}" if v.size > 1 else f"{v.mean():.3f}"


def table(runs: list[dict], classes: list[str], units: str, title: str) -> str:
    """One row per (method, network, labelled cases): per-class Dice and HD95, mean ± std over seeds."""
    rows = []
    keys = []
    for r in runs:
        for net in r["results"]:
            k = (r["method"], net, r["labelled"])
            if k not in keys:
                keys.append(k)
    for method, net, lab in keys:
        group = [r for r in runs if r["method"] == method and r["labelled"] == lab]
        res = [r["results"][net] for r in group]
        row = [LABELS.get(method, method) + ("" if net == "cnn" else f" ({net})"), lab, group[0]["slices"], len(group)]
        row += [_mean_std([x["dice"][c] for x in res]) for c in classes]
        row += [_mean_std([x["mean_dice"] for x in res])]
        row += [_mean_std([x["hd95"][c] for x in res]) for c in classes]
        row += [_mean_std([x["mean_hd95"] for x in res]), f"{np.mean([r['seconds'] for r in group]):.0f}"]
        rows.append(row)
    short = [SHORT.get(c, c[:6]) for c in classes]
    headers = (
        ["method", "cases", "slices", "seeds"]
        + [f"Dice {c}" for c in short]
        + ["Dice mean"]
        + [f"HD95 {c}" for c in short]
        + [f"HD95 mean ({units})", "s/run"]
    )
    return print_table(rows, headers, title)


def speed(args) -> str:
    """Steps per second of the loop (one step function + backward + optimiser steps) at quick and paper sizes."""
    from types import SimpleNamespace

    from mslib.configs import get_config
    from mslib.recipes import mcsc as R
    from mslib.train.engine import build_optimizer

    rows = []
    for profile, size, bs in (("quick", 64, 4), ("paper", 224, 2)):
        for method in args.methods:
            over = dict(image_size=size, labeled_bs=bs, unlabeled_bs=bs)
            if method in ("mcsc", "cts"):
                over["swin_pretrained"] = False
            cfg = get_config(method, profile, **over)
            torch.manual_seed(0)
            models = R.build_models(cfg)
            step = R.step_function(cfg)
            opts = {
                n: build_optimizer(m, c)
                for (n, m), c in zip(models.items(), R.optim_configs(cfg, tuple(models)).values())
            }
            x = torch.rand(2 * bs, 1, size, size)
            y = torch.randint(0, 4, (2 * bs, size, size))
            ctx = SimpleNamespace(model=models, models=models, step=10**6)

            def one(step=step, ctx=ctx, x=x, y=y, opts=opts):
                loss, _ = step(ctx, (x, y))
                for o in opts.values():
                    o.zero_grad(set_to_none=True)
                loss.backward()
                for o in opts.values():
                    o.step()

            one()
            t0, n = time.perf_counter(), 0
            while n < args.speed_steps and (n == 0 or time.perf_counter() - t0 < args.speed_seconds):
                one()
                n += 1
            dt = (time.perf_counter() - t0) / n
            params = sum(p.numel() for m in models.values() for p in m.parameters())
            rows.append(
                [profile, LABELS[method], size, f"{bs}+{bs}", f"{params / 1e6:.2f}M", f"{1 / dt:.3f}", f"{dt:.2f}", n]
            )
    return print_table(
        rows,
        ["profile", "method", "size", "batch (lab+unl)", "params", "steps/s", "s/step", "steps timed"],
        f"Semi-supervised loop speed on CPU ({torch.get_num_threads()} threads; contrast after its "
        "start iteration, random data)",
    )


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", default="synthetic-cardiac", help="acdc, a prepared dataset name/folder, or synthetic-cardiac"
    )
    p.add_argument("--labelled", type=int, nargs="+", default=[1, 3, 7], help="labelled cases (the first K)")
    p.add_argument("--size", type=int, default=64, help="training size (multiple of 32)")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--methods", default="unet_ls,cts,mcsc", help=f"comma list of {','.join(METHODS)}")
    p.add_argument("--profile", default="quick", choices=("quick", "paper"))
    p.add_argument("--batch", type=int, default=None, help="labelled (= unlabelled) images per batch")
    p.add_argument("--both", action="store_true", help="also report the second network")
    p.add_argument("--pixels", action="store_true", help="HD95 in pixels (the official script)")
    p.add_argument("--legacy-metrics", action="store_true", help="official empty-mask conventions")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--speed", action="store_true", help="steps/s of the loop at quick and paper sizes instead")
    p.add_argument("--speed-steps", type=int, default=5)
    p.add_argument("--speed-seconds", type=float, default=20.0)
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    if args.speed:
        return speed(args)
    if args.size % 32:
        p.error(f"--size {args.size} must be a multiple of 32")
    args.root_str = _root(args.data, args.size)
    from mslib.data.volumes import VolumeDataset

    test = VolumeDataset(args.root_str, "test")
    classes = list(test.classes[1:])
    spacing = any(v for v in test.spacing.values()) and not args.pixels
    units = "mm" if spacing else "px"
    runs = []
    for lab in args.labelled:
        for method in args.methods:
            for seed in args.seeds:
                r = run_one(method, args, lab, seed)
                print(
                    f"{LABELS[method]:8} cases={lab} seed={seed}: {r['seconds']:.0f} s, "
                    f"test Dice {r['results']['cnn']['mean_dice']:.3f}, HD95 {r['results']['cnn']['mean_hd95']:.2f} "
                    f"{units} (best val at step {r['best_step']})",
                    flush=True,
                )
                runs.append(r)
    conv = (
        "official conventions (empty prediction: HD95 0)"
        if args.legacy_metrics
        else "a class absent from prediction and label is skipped; a missed/extra class: Dice 0, HD95 = volume diagonal"
    )
    title = (
        f"{Path(args.root_str).name}: per-volume Dice / HD95 ({units}) on the test split ({len(test)} volumes), "
        f"mean ± std over seeds {args.seeds}; {args.profile} profile, {args.size} px, {args.iters} iterations; "
        f"{conv}"
    )
    return table(runs, classes, units, title)


if __name__ == "__main__":
    main()
