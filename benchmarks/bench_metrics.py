"""Throughput of mslib.metrics: images per second for each metric on a polyp-sized batch.

Run: ``.venv/bin/python -m benchmarks.bench_metrics [--size 352] [--batch 16] [--device cpu]``.
Overlap metrics are vectorised torch (on the given device); saliency and distance metrics
run per image in numpy/scipy on the CPU.
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.common import print_table, timeit
from mslib import metrics as M


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=352, help="image side (M2SNet tests at 352)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--classes", type=int, default=4, help="classes of the multi-class rows (ACDC: 4)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    g = torch.Generator().manual_seed(0)
    b, s, k = args.batch, args.size, args.classes
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    centre = torch.randint(s // 4, 3 * s // 4, (b, 2), generator=g)
    radius = torch.randint(s // 10, s // 4, (b, 1, 1), generator=g)
    dist = ((yy - centre[:, 0, None, None]) ** 2 + (xx - centre[:, 1, None, None]) ** 2).float().sqrt()
    gt = (dist < radius).float()
    prob = (torch.sigmoid((radius - dist) / 4) + 0.1 * torch.randn(b, s, s, generator=g)).clamp(0, 1)
    labels_gt = torch.randint(0, k, (b, s, s), generator=g)
    noise = torch.randint(0, k, (b, s, s), generator=g)
    labels_pred = torch.where(torch.rand(b, s, s, generator=g) < 0.8, labels_gt, noise)
    dev = torch.device(args.device)
    prob, gt, labels_pred, labels_gt = (t.to(dev) for t in (prob, gt, labels_pred, labels_gt))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    cases = {
        "dice (binary, thresholded)": lambda: M.dice(prob, gt),
        "iou (binary, thresholded)": lambda: M.iou(prob, gt),
        "dice (soft, minmax; M2SNet official)": lambda: M.dice(prob, gt, soft=True, minmax=True),
        f"dice (multi-class, K={k})": lambda: M.dice(labels_pred, labels_gt, num_classes=k),
        "mae": lambda: M.mae(prob, gt),
        "s_measure": lambda: M.s_measure(prob, gt),
        "e_measure (max)": lambda: M.e_measure(prob, gt, mode="max"),
        "e_measure (adaptive)": lambda: M.e_measure(prob, gt, mode="adaptive"),
        "weighted_f_measure": lambda: M.weighted_f_measure(prob, gt),
        "hd95 (binary)": lambda: M.hd95(prob, gt),
    }
    rows = []
    for name, fn in cases.items():

        def run(fn=fn):
            fn()
            sync()

        t = timeit(run, repeat=args.repeat, warmup=1)
        rows.append([name, t * 1e3, b / t])
    print_table(
        rows,
        headers=["metric", f"ms / batch of {b}", "images / s"],
        title=f"mslib.metrics throughput, {b}x{s}x{s}, device={dev}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
    )


if __name__ == "__main__":
    main()
