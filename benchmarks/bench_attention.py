"""Efficient attention (MS-Former Eq. 2) vs naive softmax attention (Eq. 1) vs torch SDPA, on CPU.

    .venv/bin/python -m benchmarks.bench_attention [--dim 32] [--tokens 1024 4096 16384 66049]

Time: median wall time of a forward pass (``benchmarks.common.timeit``). Memory: each
(method, tokens) cell runs in a fresh subprocess; peak memory is the increase of the
process's peak resident set size (``resource.getrusage(...).ru_maxrss``) caused by the call,
measured after the inputs exist and after a warm-up at 256 tokens. It counts every byte the
call touched (outputs and temporaries), at page granularity, so small values (< 1 MB) are
noise. Naive attention is skipped where its N x N matrix would not fit in ``--max-naive-gb``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import torch

from benchmarks.common import print_table, timeit
from mslib.blocks.attention import efficient_attention, softmax_attention

METHODS = {
    "efficient": lambda q, k, v: efficient_attention(q, k, v)[0],
    "naive softmax": softmax_attention,
    "torch SDPA": torch.nn.functional.scaled_dot_product_attention,
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _cell(method: str, n: int, dim: int, repeat: int) -> dict:
    torch.manual_seed(0)
    fn = METHODS[method]
    with torch.no_grad():
        small = [torch.randn(1, 1, 256, dim) for _ in range(3)]
        fn(*small)
        q, k, v = (torch.randn(1, 1, n, dim) for _ in range(3))
        base = _rss_mb()
        t = timeit(lambda: fn(q, k, v), repeat=repeat, warmup=1)
        peak = _rss_mb() - base
    return {"seconds": t, "peak_mb": peak}


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dim", type=int, default=32, help="channels per head (MS-Former default width 32)")
    ap.add_argument("--tokens", type=int, nargs="+", default=[1024, 4096, 16384, 66049])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-naive-gb", type=float, default=4.0)
    ap.add_argument("--cell", nargs=3, metavar=("METHOD", "N", "REPEAT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.cell:
        print(json.dumps(_cell(args.cell[0], int(args.cell[1]), args.dim, int(args.cell[2]))))
        return ""
    rows = []
    for n in args.tokens:
        res = {}
        for method in METHODS:
            if method == "naive softmax" and 2 * 4 * n * n / 2**30 > args.max_naive_gb:
                res[method] = None
                continue
            repeat = 21 if method == "efficient" else (5 if n <= 16384 else 1)
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.bench_attention",
                "--dim",
                str(args.dim),
                "--threads",
                str(args.threads),
                "--cell",
                method,
                str(n),
                str(repeat),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            res[method] = json.loads(out.strip().splitlines()[-1])
        e, s, nv = res["efficient"], res["torch SDPA"], res["naive softmax"]
        rows.append(
            [
                n,
                f"{e['seconds'] * 1e3:.2f}",
                f"{s['seconds'] * 1e3:.1f}",
                f"{nv['seconds'] * 1e3:.1f}" if nv else "skipped (N^2 too big)",
                f"{s['seconds'] / e['seconds']:.0f}x",
                f"{e['peak_mb']:.1f}",
                f"{s['peak_mb']:.1f}",
                f"{nv['peak_mb']:.1f}" if nv else "-",
            ]
        )
    return print_table(
        rows,
        [
            "tokens",
            "efficient ms",
            "SDPA ms",
            "naive ms",
            "SDPA / efficient",
            "efficient peak MB",
            "SDPA peak MB",
            "naive peak MB",
        ],
        title=f"Attention on CPU ({args.threads} threads), 1 head, d={args.dim}, fp32, forward",
    )


if __name__ == "__main__":
    main()
