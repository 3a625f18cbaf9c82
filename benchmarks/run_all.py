"""Run every benchmark script in this folder and print their tables (`make bench`).

    python -m benchmarks.run_all            # all of them, each in its quick mode where it has one
    python -m benchmarks.run_all engine m2snet

Each ``benchmarks/bench_*.py`` is run as its own process (``python -m benchmarks.bench_x``)
so that one script's memory and threads do not skew another's numbers.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    scripts = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(a in s for a in argv)]
        if not scripts:
            print(f"no benchmark matches {argv}; available: {[p.stem for p in HERE.glob('bench_*.py')]}")
            return 2
    failed = []
    for name in scripts:
        print(f"\n## {name}\n", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=HERE.parent)
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s, exit code {rc})", flush=True)
        if rc:
            failed.append(name)
    if failed:
        print(f"\nfailed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
