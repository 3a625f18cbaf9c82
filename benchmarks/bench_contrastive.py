"""MCSC contrastive loss: time and peak memory as the contrast set grows, all pairs vs bounded.

    python -m benchmarks.bench_contrastive            # the table below (about a minute on 2 cores)
    python -m benchmarks.bench_contrastive --threads 2

Official sizes: batch 4, 224 px, 128-d projected features of both networks (2 x 4 x 224^2 =
401,408 pixels at full resolution). Each row runs in its own process (forward + backward of
:func:`mslib.losses.contrastive.cross_contrastive_loss`, median of 3 after a warm-up) and reports
the extra peak resident memory over the inputs (``ru_maxrss``); the official tiling (100 groups of
2,888 pixels, every group's graph kept until the backward pass) is timed once, without warm-up.
``all`` pairs grow as N^2 and are run on small maps only; at 224 px they would need N^2 = 1.6e11 similarities per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

from benchmarks.common import print_table

# (label, sampling, map size, max_samples, block, num_blocks)
ROWS = [
    ("all pairs", "all", 8, 0, 0, 0),
    ("all pairs", "all", 16, 0, 0, 0),
    ("all pairs", "all", 24, 0, 0, 0),
    ("all pairs", "all", 32, 0, 0, 0),
    ("sampled anchors", "anchors", 224, 1024, 0, 0),
    ("sampled anchors", "anchors", 224, 2048, 0, 0),
    ("sampled anchors", "anchors", 224, 4096, 0, 0),
    ("sampled anchors", "anchors", 224, 8192, 0, 0),
    ("random blocks 16 px x 4", "blocks", 224, 0, 16, 4),
    ("official tiling 19 px (10x10)", "official", 224, 0, 19, 0),
]


def _one(sampling: str, size: int, max_samples: int, block: int, num_blocks: int, repeat: int = 3) -> dict:
    import time

    import torch
    import torch.nn.functional as F

    from mslib.losses.contrastive import cross_contrastive_loss

    g = torch.Generator().manual_seed(0)
    zc = F.normalize(torch.randn(4, 128, size, size, generator=g), dim=1).requires_grad_(True)
    zt = F.normalize(torch.randn(4, 128, size, size, generator=g), dim=1).requires_grad_(True)
    y = torch.zeros(4, size, size, dtype=torch.long)  # cardiac-like: mostly background, three classes
    c = size // 2
    for k, r in ((1, size // 4), (2, size // 6), (3, size // 10)):
        y[:, c - r : c + r, c - r : c + r] = k
    kw = dict(sampling=sampling, max_samples=max_samples or 4096, block=block or 16, num_blocks=num_blocks or 4)

    def step():
        loss = cross_contrastive_loss(zc, zt, y, y, generator=torch.Generator().manual_seed(1), **kw)
        loss.backward()
        return loss

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if repeat > 1:
        step()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = 2 * 4 * size * size
    contrast = {
        "all": n,
        "anchors": min(n, max_samples),
        "blocks": 8 * min(block, size) ** 2,
        "official": 8 * block * block,
    }[sampling]
    return {"time": sorted(times)[len(times) // 2], "peak_mb": (peak - base) / 1024, "pixels": n, "set": contrast}


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, nargs="*", help="row indices to run (default: all)")
    p.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.one:
        s, *nums = a.one
        print(json.dumps(_one(s, *map(int, nums), repeat=1 if s == "official" else 3)))
        return ""
    out = []
    for i, (label, sampling, size, ms, block, nb) in enumerate(ROWS):
        if a.rows and i not in a.rows:
            continue
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_contrastive",
                "--one",
                sampling,
                str(size),
                str(ms),
                str(block),
                str(nb),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        if res.returncode:
            out.append([label, size, "-", "-", "failed", res.stderr.strip().splitlines()[-1][:60]])
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        groups = nb if sampling == "blocks" else (size // block - 1) ** 2 if sampling == "official" else 1
        out.append(
            [
                label,
                size,
                f"{r['pixels']:,}",
                f"{r['set']:,} x {groups}",
                round(r["time"] * 1000, 1),
                round(r["peak_mb"], 1),
            ]
        )
    return print_table(
        out,
        ["contrast", "map px", "pixels (2 nets x 4)", "set size x groups", "ms / step (fwd+bwd)", "extra peak MB"],
        title=f"MCSC contrastive loss, batch 4, 128-d, {a.threads} thread(s)",
    )


if __name__ == "__main__":
    main()
