"""M2SNet vs MSNet: parameters, FLOPs (torch.utils.flop_counter, functional convs included), time.

    python -m benchmarks.bench_m2snet            # a few minutes on 2 CPU cores
    python -m benchmarks.bench_m2snet --quick    # smaller / fewer repeats
    python -m benchmarks.bench_m2snet --ablation --seeds 0 1 2 --jobs 2   # Table VII under the quick budget (~15 min)

Tables:

1. parameters of every variant against the paper (Table VI / VIII);
2. MACs at 256 and 352 px: MSNet, M2SNet with the box-filter MSU (ours), M2SNet with the literal
   dense all-ones convolutions (what the official code pays), the ASPP / DenseASPP variants;
3. forward and forward+backward time of M2SNet / MSNet at 352 px (goal: <= 1.1x), measured in
   one run, interleaved;
4. one MSU: box filter vs dense all-ones convolution;
5. training steps per second of the quick and paper profiles on this machine.

``--ablation`` instead trains the Table VII rows under one quick budget (the ``quick`` profile of
:class:`mslib.configs.M2SNetConfig`, synthetic polyps, several seeds): the FPN-like baseline
(``orders=(1,)``, no unit), AU, SU (MSNet) and MSU (M2SNet), and the MSU with box means instead of
box sums (``normalize=True``, no parameters either), each without and with LossNet, all
with ``wiring="eq3"`` so that the unit is the only difference between rows. It prints the
validation Dice (val + test splits, 90 images) as mean +- std over seeds, every seed's value,
and the Dice of the all-foreground predictor as the chance reference. Chapter 6 shows its table.

flop_counter counts a multiply-add as 2 FLOPs; we print MACs (= FLOPs / 2, the unit of the
paper's "9.0 G"). Pooling is not counted by flop_counter: the box filter costs ~k^2 additions
per pixel on a single channel, negligible next to a 3x3 64->64 convolution (36,864 MACs/pixel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import print_table
from mslib.blocks.subtraction import MultiScaleSubtractionUnit
from mslib.models.m2snet import M2SNet
from mslib.utils import count_parameters

PAPER_PARAMS = {"MSNet": "27.7 M", "M2SNet": "27.7 M", "M2SNet (ASPP)": "29.2 M", "M2SNet (DenseASPP)": "29.6 M"}
PAPER_FLOPS = {"MSNet": "9.0 G", "M2SNet": "9.0 G", "M2SNet (ASPP)": "13.8 G", "M2SNet (DenseASPP)": "17.5 G"}


def variants() -> dict[str, dict]:
    return {
        "MSNet": dict(unit="su"),
        "M2SNet": dict(unit="msu"),
        "M2SNet, literal dense all-ones conv": dict(unit="msu", unit_kwargs={"impl": "conv"}),
        "M2SNet (ASPP)": dict(unit="msu_aspp"),
        "M2SNet (DenseASPP)": dict(unit="msu_denseaspp"),
        "AU (Table VII)": dict(unit="au"),
        "M2SNet, wiring='eq3'": dict(unit="msu", wiring="eq3"),
    }


def macs(model: torch.nn.Module, size: int) -> float:
    x = torch.zeros(1, 3, size, size)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops() / 2


def interleaved(fns: dict[str, callable], repeat: int) -> dict[str, float]:
    """Median time of each fn, run alternately so that machine load hits all alike."""
    for fn in fns.values():  # warm-up
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no paper-profile step")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--ablation", action="store_true", help="train the Table VII rows (quick profile) instead")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="--ablation: seeds per row")
    ap.add_argument("--jobs", type=int, default=1, help="--ablation: runs in parallel (one thread each)")
    ap.add_argument("--epochs", type=int, default=None, help="--ablation: override the quick profile's epochs")
    ap.add_argument("--rows", nargs="+", default=None, help="--ablation: a subset of rows (by name)")
    ap.add_argument(
        "--lossnet",
        choices=["both", "off", "on"],
        default="both",
        help="--ablation: train each row without LossNet, with it, or both (default)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MSLIB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message="pretrained='auto'")
    if args.ablation:
        return ablation(args.seeds, args.jobs, args.epochs, args.rows, args.lossnet)
    repeat = 3 if args.quick else 5
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    models = {name: M2SNet(**kw).eval() for name, kw in variants().items()}

    rows = []
    for name, m in models.items():
        rows.append([name, f"{count_parameters(m):,}", PAPER_PARAMS.get(name, "")])
    print_table(rows, ["model", "params (no classifier)", "paper"], "Parameters (Table VI / VIII)")

    sizes = (256, 352)
    rows = []
    for name, m in models.items():
        g = [macs(m, s) / 1e9 for s in sizes]
        rows.append([name] + [f"{v:.2f}" for v in g] + [PAPER_FLOPS.get(name, "")])
    print_table(
        rows,
        ["model"] + [f"GMACs @ {s}" for s in sizes] + ["paper"],
        "MACs, every convolution counted (torch.utils.flop_counter)",
    )

    size = 352
    x = torch.rand(1, 3, size, size)
    ms, m2, m2c = models["MSNet"], models["M2SNet"], models["M2SNet, literal dense all-ones conv"]

    def fwd(m):
        def run():
            with torch.no_grad():
                m(x)

        return run

    def fwd_bwd(m):
        def run():
            m.zero_grad(set_to_none=True)
            m(x).sum().backward()

        return run

    t_f = interleaved({"MSNet": fwd(ms), "M2SNet": fwd(m2), "conv": fwd(m2c)}, repeat)
    for m in (ms, m2, m2c):
        m.train()
    t_fb = interleaved(
        {"MSNet": fwd_bwd(ms), "M2SNet": fwd_bwd(m2), "conv": fwd_bwd(m2c)}, repeat + 2
    )  # ~1 s each: median of 3 was too noisy
    rows = [
        ["forward", t_f["MSNet"], t_f["M2SNet"], t_f["M2SNet"] / t_f["MSNet"], t_f["conv"] / t_f["MSNet"]],
        [
            "forward + backward",
            t_fb["MSNet"],
            t_fb["M2SNet"],
            t_fb["M2SNet"] / t_fb["MSNet"],
            t_fb["conv"] / t_fb["MSNet"],
        ],
    ]
    print_table(
        rows,
        ["pass", "MSNet s", "M2SNet s", "M2SNet / MSNet (goal <= 1.1)", "dense-conv M2SNet / MSNet"],
        f"Time at {size} px, batch 1 (median of interleaved runs)",
    )

    rows = []
    for hw in (88, 44):
        a, b = torch.rand(1, 64, hw, hw), torch.rand(1, 64, hw, hw)
        box = MultiScaleSubtractionUnit(64).eval()
        conv = MultiScaleSubtractionUnit(64, impl="conv").eval()
        t = interleaved(
            {"box": lambda m=box, a=a, b=b: m.combine(a, b), "conv": lambda m=conv, a=a, b=b: m.combine(a, b)},
            repeat * 4,
        )
        rows.append([f"64 x {hw} x {hw}", t["box"] * 1e3, t["conv"] * 1e3, t["conv"] / t["box"]])
    print_table(
        rows,
        ["operands", "box filter ms", "dense all-ones conv ms", "speed-up"],
        "One MSU's fixed filters (Eq. 2), 1x1 + 3x3 + 5x5",
    )

    rows = [_train_rate("quick", 8, 96, repeat)]
    if not args.quick:
        rows.append(_train_rate("paper", 1, 352, 2))
    print_table(
        rows,
        ["profile", "batch", "px", "steps / s", "s / step"],
        "Training steps on this CPU (forward, the profile's loss, backward, optimiser step)",
    )


def _train_rate(profile: str, batch: int, px: int, repeat: int) -> list:
    """Steps per second of the profile's training step, run by the engine itself (``fit``) on one fixed batch."""
    from mslib.configs import get_config
    from mslib.recipes.m2snet import build_m2snet, training_kwargs
    from mslib.train.engine import fit

    cfg = get_config(
        "m2snet",
        profile,
        pretrained=False,
        batch_size=batch,
        epochs=1,
        steps_per_epoch=repeat + 1,
        multiscale_sizes=None,
    )
    model = build_m2snet(cfg)
    x, y = torch.rand(batch, 3, px, px), (torch.rand(batch, px, px) > 0.5).long()
    stamps = []
    fit(
        model,
        [(x, y)],
        config=cfg,
        progress=False,
        step_hooks=[lambda ctx, logs: stamps.append(time.perf_counter())],
        distributed=False,
        **training_kwargs(cfg),
    )
    steps = [b - a for a, b in zip(stamps, stamps[1:])]  # the first step (warm-up) is not timed
    t = statistics.median(steps)
    return [profile, batch, px, 1 / t, t]


# ---------------------------------------------------------------------------- Table VII ablation
#: Table VII rows: the unit and the orders n of MS_n^i in Eq. 3 (wiring "eq3" for every row).
ABLATION_ROWS = {
    "FPN baseline (orders=(1,))": dict(unit="su", orders=(1,)),
    "AU (addition units)": dict(unit="au"),
    "SU (MSNet)": dict(unit="su"),
    "MSU (M2SNet)": dict(unit="msu"),
    "MSU, box means (normalize=True)": dict(unit="msu", unit_kwargs={"normalize": True}),
    # Table VIII: other multi-scale designs in place of the fixed-filter MSU
    "MSU as ASPP (Table VIII)": dict(unit="msu_aspp"),
    "MSU as DenseASPP (Table VIII)": dict(unit="msu_denseaspp"),
}
#: LossNet in a quick run: lambda = 1 (paper Eq. 4), VGG input 48 px (~1.2x the model's cost).
LOSSNET_ON = dict(lossnet_weight=1.0, lossnet_resize=48)


def ablation_run(job: tuple) -> tuple:
    """Train one (row, lossnet, seed) with the quick profile; returns ``(row, lossnet, seed, dice, seconds)``."""
    row, lossnet, seed, epochs = job
    torch.set_num_threads(1)
    os.environ.setdefault("MSLIB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    from torch.utils.data import ConcatDataset, DataLoader

    from mslib.configs import get_config
    from mslib.data import load_dataset
    from mslib.recipes.m2snet import build_m2snet, m2snet_transforms, training_kwargs
    from mslib.train.engine import evaluate, fit
    from mslib.utils import seed_everything

    over = dict(ABLATION_ROWS[row], wiring="eq3", seed=seed, **(LOSSNET_ON if lossnet else {}))
    if epochs:
        over["epochs"] = epochs
    cfg = get_config("m2snet", "quick", **over)
    train = load_dataset("synthetic-polyp", "train", m2snet_transforms(cfg, train=True))
    held_out = ConcatDataset(
        [load_dataset("synthetic-polyp", s, m2snet_transforms(cfg, train=False)) for s in ("val", "test")]
    )
    gen = seed_everything(seed)
    model = build_m2snet(cfg)
    t0 = time.perf_counter()
    fit(
        model,
        DataLoader(train, batch_size=cfg.batch_size, shuffle=True, generator=gen, drop_last=True),
        None,
        config=cfg,
        progress=False,
        **training_kwargs(cfg),
    )
    dice = evaluate(model, DataLoader(held_out, batch_size=16))["dice"]
    return row, lossnet, seed, dice, time.perf_counter() - t0


def _all_foreground_dice() -> float:
    from mslib.data import load_dataset

    masks = [
        load_dataset("synthetic-polyp", s)[i][1]
        for s in ("val", "test")
        for i in range(len(load_dataset("synthetic-polyp", s)))
    ]
    dices = [2 * float(m.sum()) / (float(m.sum()) + m.numel()) for m in (torch.as_tensor(m) > 0 for m in masks)]
    return statistics.mean(dices)


def ablation(seeds, jobs: int = 1, epochs: int | None = None, rows=None, lossnet: str = "both") -> str:
    import multiprocessing as mp

    rows = rows or list(ABLATION_ROWS)
    unknown = sorted(set(rows) - set(ABLATION_ROWS))
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; rows are {list(ABLATION_ROWS)}")
    modes = {"both": (False, True), "off": (False,), "on": (True,)}[lossnet]
    todo = [(r, ln, s, epochs) for s in seeds for ln in modes for r in rows]  # seed by seed
    print(
        f"torch {torch.__version__}; {len(todo)} runs, {jobs} in parallel, 1 thread each; quick profile, "
        f"wiring='eq3', seeds {list(seeds)}",
        flush=True,
    )
    t0 = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(jobs) if jobs > 1 else _Serial() as pool:
        for r in pool.imap_unordered(ablation_run, todo):
            results.append(r)
            print(f"  {r[0]:28s} lossnet={r[1]!s:5s} seed={r[2]}  dice={r[3]:.4f}  {r[4]:.0f} s", flush=True)
    return ablation_table(results, f"({time.perf_counter() - t0:.0f} s wall)")


class _Serial:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap_unordered(fn, jobs):
        return map(fn, jobs)


def ablation_table(results, note: str = "") -> str:
    """The markdown table of ``(row, lossnet, seed, dice, seconds)`` results (also usable on a partial run)."""
    rows = [r for r in ABLATION_ROWS if any(x[0] == r for x in results)]
    by = {(r[0], r[1]): [x[3] for x in sorted(results) if (x[0], x[1]) == (r[0], r[1])] for r in results}
    seeds = sorted({r[2] for r in results})
    secs = {
        ln: statistics.mean(r[4] for r in results if r[1] == ln)
        for ln in (False, True)
        if any(r[1] == ln for r in results)
    }

    def cell(v):
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    table = []
    for r in rows:
        a, b = by.get((r, False), []), by.get((r, True), [])
        table.append(
            [
                r,
                cell(a) if a else "",
                cell(b) if b else "",
                " ".join(f"{x:.3f}" for x in a),
                " ".join(f"{x:.3f}" for x in b),
            ]
        )
    table.append(["all-foreground predictor (chance)", f"{_all_foreground_dice():.3f}", "", "", ""])
    per_run = ", ".join(f"{v:.0f} s per run {'with' if ln else 'without'} LossNet" for ln, v in secs.items())
    return print_table(
        table,
        ["row (Table VII)", "Dice, no LossNet", "Dice, + LossNet", "per seed", "per seed (+ LossNet)"],
        f"Ablation, quick profile, mean ± std over seeds {seeds} {note} ({per_run})",
    )


if __name__ == "__main__":
    main()
