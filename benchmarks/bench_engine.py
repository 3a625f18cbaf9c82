"""Training speed of the UNet baseline through the shared engine (``mslib.train.engine.fit``).

Measures steps per second (and images per second) of full training steps (forward, Dice+BCE
loss, backward, optimiser step, scheduler) on random data at the ``quick`` and ``paper``
sizes of :class:`mslib.configs.UNetConfig`, on the device given (default: this CPU). The
first epoch (warm-up: allocator, oneDNN kernel selection) is not timed.

    python -m benchmarks.bench_engine                       # CPU, both profiles
    python -m benchmarks.bench_engine --paper-batch 16 --device cuda

On a CPU the paper profile (base width 64, 352 px) is run at a small batch (``--paper-batch``,
default 2) because batch 16 takes minutes per step; images per second stays comparable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from benchmarks.common import print_table
from mslib.configs import get_config
from mslib.losses.dice import dice_bce
from mslib.models.unet import UNet
from mslib.train.engine import fit
from mslib.utils import get_device


def measure(profile: str, batch: int, steps: int, device: torch.device) -> dict:
    cfg = get_config("unet", profile)
    cfg = dataclasses.replace(cfg, epochs=2, batch_size=batch, warmup_epochs=0.0)
    s = cfg.image_size
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch * steps, 3, s, s, generator=g)
    y = (torch.rand(batch * steps, s, s, generator=g) > 0.7).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True)
    model = UNet(3, 1, cfg.base_channels, cfg.depth, cfg.norm)
    t0 = time.perf_counter()
    hist = fit(model, loader, loss_fn=dice_bce, config=cfg, device=device, progress=False)
    total = time.perf_counter() - t0
    epoch2 = hist[1]["time"]  # the second epoch: steady state
    return {
        "profile": profile,
        "size": s,
        "base": cfg.base_channels,
        "batch": batch,
        "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
        "steps": steps,
        "steps/s": steps / epoch2,
        "images/s": steps * batch / epoch2,
        "wall (s)": total,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick-steps", type=int, default=10)
    p.add_argument("--paper-steps", type=int, default=2)
    p.add_argument("--paper-batch", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    device = get_device(args.device)
    quick = get_config("unet", "quick")
    rows = [
        measure("quick", quick.batch_size, args.quick_steps, device),
        measure("paper", args.paper_batch, args.paper_steps, device),
    ]
    headers = list(rows[0])
    print_table(
        [[r[h] for h in headers] for r in rows],
        headers,
        title=f"UNet baseline through mslib.train.engine.fit on {device} "
        f"({torch.get_num_threads()} threads, torch {torch.__version__})",
    )


if __name__ == "__main__":
    main()
