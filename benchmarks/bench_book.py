"""Quick-profile run time of every chapter in ``_toc.yml`` (what a reader without a GPU waits).

    .venv/bin/python -m benchmarks.bench_book                 # every chapter, one after the other
    .venv/bin/python -m benchmarks.bench_book --only 02_ 06_  # some chapters

Each chapter is executed once with papermill (``PROFILE="quick"``, ``DEVICE="cpu"``) into a
temporary folder, exactly as the notebook tests do; the stored notebooks are not touched.
The time includes the kernel start-up (about 2 s) and, on the first run of a chapter on a
machine, generating its synthetic data set (cached under ``$MSLIB_DATA_DIR`` afterwards).
Set ``OMP_NUM_THREADS`` to match the machine you want to predict (CI: 2 cores).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import print_table
from tools.book import ROOT, chapters, execute


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="substrings of chapter file names to run")
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    todo = chapters()
    if args.only:
        todo = [c for c in todo if any(s in c.name for s in args.only)]
    rows, total = [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for nb in todo:
            t0 = time.perf_counter()
            execute(nb, Path(tmp) / nb.name, parameters={"PROFILE": "quick", "DEVICE": "cpu"})
            secs = time.perf_counter() - t0
            total += secs
            rows.append([nb.relative_to(ROOT).as_posix(), round(secs, 1)])
            print(f"{nb.name}: {secs:.1f} s", flush=True)
    rows.append(["**all chapters**", round(total, 1)])
    threads = os.environ.get("OMP_NUM_THREADS", str(torch.get_num_threads()))
    return print_table(
        rows,
        ["chapter", "quick run (s)"],
        title=f"Chapters, quick profile on CPU ({os.cpu_count()} cores, OMP_NUM_THREADS={threads})",
    )


if __name__ == "__main__":
    main()
