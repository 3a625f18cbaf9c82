"""M2SNet vs MSNet: parameters, FLOPs (torch.utils.flop_counter, functional convs included), time.

    python -m benchmarks.bench_m2snet            # a few minutes on 2 CPU cores
    python -m benchmarks.bench_m2snet --quick    # smaller / fewer repeats

Tables:

1. parameters of every variant against the paper (Table VI / VIII);
2. MACs at 256 and 352 px: MSNet, M2SNet with the box-filter MSU (ours), M2SNet with the literal
   dense all-ones convolutions (what the official code pays), the ASPP / DenseASPP variants;
3. forward and forward+backward time of M2SNet / MSNet at 352 px (goal: <= 1.1x), measured in
   one run, interleaved;
4. one MSU: box filter vs dense all-ones convolution;
5. training steps per second of the quick and paper profiles on this machine.

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
from mslib.models.m2snet import M2SNet, count_parameters

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
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MSLIB_OFFLINE", "1")
    warnings.filterwarnings("ignore", message="pretrained='auto'")
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
    print_table(rows, ["model"] + [f"GMACs @ {s}" for s in sizes] + ["paper"],
                "MACs, every convolution counted (torch.utils.flop_counter)")

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
    t_fb = interleaved({"MSNet": fwd_bwd(ms), "M2SNet": fwd_bwd(m2), "conv": fwd_bwd(m2c)}, max(2, repeat - 2))
    rows = [
        ["forward", t_f["MSNet"], t_f["M2SNet"], t_f["M2SNet"] / t_f["MSNet"], t_f["conv"] / t_f["MSNet"]],
        ["forward + backward", t_fb["MSNet"], t_fb["M2SNet"], t_fb["M2SNet"] / t_fb["MSNet"],
         t_fb["conv"] / t_fb["MSNet"]],
    ]
    print_table(rows, ["pass", "MSNet s", "M2SNet s", "M2SNet / MSNet (goal <= 1.1)", "dense-conv M2SNet / MSNet"],
                f"Time at {size} px, batch 1 (median of interleaved runs)")

    rows = []
    for hw in (88, 44):
        a, b = torch.rand(1, 64, hw, hw), torch.rand(1, 64, hw, hw)
        box = MultiScaleSubtractionUnit(64).eval()
        conv = MultiScaleSubtractionUnit(64, impl="conv").eval()
        t = interleaved({"box": lambda: box.combine(a, b), "conv": lambda: conv.combine(a, b)}, repeat * 4)
        rows.append([f"64 x {hw} x {hw}", t["box"] * 1e3, t["conv"] * 1e3, t["conv"] / t["box"]])
    print_table(rows, ["operands", "box filter ms", "dense all-ones conv ms", "speed-up"],
                "One MSU's fixed filters (Eq. 2), 1x1 + 3x3 + 5x5")

    rows = [_train_rate("quick", 8, 96, repeat)]
    if not args.quick:
        rows.append(_train_rate("paper", 1, 352, 2))
    print_table(rows, ["profile", "batch", "px", "steps / s", "s / step"],
                "Training steps on this CPU (forward, the profile's loss, backward, optimiser step)")


def _train_rate(profile: str, batch: int, px: int, repeat: int) -> list:
    from mslib.configs import get_config
    from mslib.models.m2snet import build_m2snet, m2snet_param_groups, training_kwargs
    from mslib.train.engine import build_optimizer

    cfg = get_config("m2snet", profile, pretrained=False, batch_size=batch)
    model = build_m2snet(cfg).train()
    kw = training_kwargs(cfg)
    opt = build_optimizer(model, cfg, m2snet_param_groups(model, cfg.backbone_lr, cfg.head_lr))
    x, y = torch.rand(batch, 3, px, px), (torch.rand(batch, px, px) > 0.5).long()

    def step():
        loss, _ = kw["step_fn"](model, (x, y), kw["loss_fn"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = interleaved({"s": step}, repeat)["s"]
    return [profile, batch, px, 1 / t, t]


if __name__ == "__main__":
    main()
