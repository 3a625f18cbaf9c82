"""The foundation's benchmark scripts run and print their tables (tiny sizes: no timing is asserted)."""
from __future__ import annotations

import pytest

from benchmarks import bench_book, bench_engine, bench_synthetic, run_all


def test_synthetic_benchmark_prints_a_row_per_task(capsys):
    table = bench_synthetic.main(["--n", "4", "--size", "32"])
    for task in ("polyp", "skin", "breast", "cardiac"):
        assert f"| {task}" in table
    assert "images / s" in capsys.readouterr().out


@pytest.mark.slow
def test_engine_benchmark_runs_both_profiles(capsys):
    bench_engine.main(["--quick-steps", "2", "--paper-steps", "1", "--paper-batch", "1"])
    out = capsys.readouterr().out
    assert "| quick" in out and "| paper" in out and "steps/s" in out


def test_book_benchmark_with_no_matching_chapter_prints_only_the_total():
    table = bench_book.main(["--only", "no-such-chapter"])
    assert "all chapters" in table and table.count("\n|") == 3   # header, rule and the total row


def test_run_all_rejects_an_unknown_benchmark(capsys):
    assert run_all.main(["no-such-benchmark"]) == 2
    assert "available" in capsys.readouterr().out
