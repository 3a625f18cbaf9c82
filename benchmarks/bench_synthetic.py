"""Speed of the synthetic generators: images per second per task, and time for a whole set.

    .venv/bin/python -m benchmarks.bench_synthetic                 # 300 images of 128 px
    .venv/bin/python -m benchmarks.bench_synthetic --n 100 --size 256 --write

``make_batch`` times the generation alone (single-threaded numpy/scipy), as wall time and as
this process's CPU time (the latter does not grow when other jobs share the cores); ``--write`` also times
``generate`` (generation plus PNG encoding and the atomic prepared-layout writer).
The last columns describe the sets: mean foreground fraction and share of empty masks.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from benchmarks.common import print_table
from mslib.data import synthetic as S


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="images per task (default 300)")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="also time generate() writing PNGs")
    args = ap.parse_args(argv)

    rows = []
    for task in S.TASKS:
        S.make_batch(task, 3, args.size, seed=args.seed + 1)  # warm-up (caches, imports)
        t0, c0 = time.perf_counter(), time.process_time()
        _, masks = S.make_batch(task, args.n, args.size, seed=args.seed)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        row = [
            task,
            args.size,
            args.n,
            round(dt / args.n * 1e3, 2),
            round(args.n / dt, 1),
            round(dt, 2),
            round(cpu / args.n * 1e3, 2),
            round(args.n / cpu, 1),
        ]
        if args.write:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                S.generate(task, f"{tmp}/{task}", n=args.n, size=args.size, seed=args.seed)
                row.append(round(time.perf_counter() - t0, 2))
        fg = (masks > 0).mean(axis=(1, 2))
        row += [round(float(fg.mean()), 3), round(float((fg == 0).mean()), 3)]
        rows.append(row)
    headers = [
        "task",
        "size",
        "n",
        "ms / image",
        "images / s",
        f"make_batch {args.n} (s)",
        "CPU ms / image",
        "images / CPU s",
    ]
    if args.write:
        headers.append(f"generate {args.n} (s)")
    headers += ["mean fg fraction", "empty masks"]
    return print_table(rows, headers, title=f"Synthetic generators ({args.n} images of {args.size} px, one process)")


if __name__ == "__main__":
    main()
