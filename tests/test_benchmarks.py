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
    assert "all chapters" in table and table.count("\n|") == 3  # header, rule and the total row


def test_run_all_rejects_an_unknown_benchmark(capsys):
    assert run_all.main(["no-such-benchmark"]) == 2
    assert "available" in capsys.readouterr().out


def test_selfsup_ablation_derives_its_rows_from_the_configured_weights():
    from benchmarks import bench_selfsup

    table = bench_selfsup.main(
        [
            "--ablation",
            "--n",
            "1",
            "--size",
            "32",
            "--profile",
            "quick",
            "--set",
            "max_iters=1",
            "--set",
            "lambdas=1,3,0.7",
        ]
    )
    for row in (
        "CE only (1.0, 0.0, 0.0)",
        "CE + inter (1.0, 3.0, 0.0)",
        "CE + intra (1.0, 0.0, 0.7)",
        "CE + inter + intra (1.0, 3.0, 0.7) (default)",
        "published",
    ):
        assert row in table


def test_selfsup_eval_synthetic_prints_both_methods():
    from benchmarks import bench_selfsup

    table = bench_selfsup.main(
        ["--eval", "synthetic", "--n", "2", "--size", "32", "--profile", "quick", "--set", "max_iters=1"]
    )
    assert "| MS-Former" in table and "| k-means (K=3)" in table and "beats k-means on" in table


def test_m2snet_ablation_table_from_results_gives_mean_std_and_chance():
    from benchmarks import bench_m2snet

    results = [("SU (MSNet)", False, s, d, 1.0) for s, d in ((0, 0.5), (1, 0.7))]
    table = bench_m2snet.ablation_table(results)
    assert "| SU (MSNet)" in table and "0.600 ± 0.141" in table and "0.500 0.700" in table
    assert "all-foreground predictor (chance)" in table


def test_selfsup_time_table_runs_each_size_in_its_own_process_with_both_heaps():
    from benchmarks import bench_selfsup

    table = bench_selfsup.main(["--time", "--sizes", "32", "--n", "1", "--threads", "1", "--set", "max_iters=1"])
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| 32 ")]
    assert [r[:2] for r in rows] == [["32", "glibc default"], ["32", "MALLOC_MMAP_THRESHOLD_=131072"]]
    assert all(float(r[2]) > 0 and float(r[3]) <= 1 for r in rows)  # s / image; at most max_iters=1 SGD step
    assert "vs official 148 s" in table


def test_contrastive_benchmark_prints_bounded_and_all_pairs_rows():
    from benchmarks import bench_contrastive

    table = bench_contrastive.main(["--rows", "0", "8"])
    assert "| all pairs" in table and "| random blocks 16 px x 4" in table and "failed" not in table


def test_pdcr_benchmark_prints_speed_and_memory_tables():
    from benchmarks import bench_pdcr

    table = bench_pdcr.main(["--batch", "1", "--size", "32", "--repeat", "1", "--no-loop", "--memory-n", "16,32"])
    assert "| vectorised (mslib)" in table and "| official loop" in table and "| 32 " in table


def test_semisup_benchmark_prints_per_class_dice_and_hd95(tmp_path):
    from benchmarks import bench_semisup
    from mslib.data.synthetic_volumes import generate_volumes

    root = generate_volumes(tmp_path / "v", n_cases=8, slices=4, size=32, seed=0)
    table = bench_semisup.main(
        [
            "--data",
            str(root),
            "--labelled",
            "1",
            "--size",
            "32",
            "--iters",
            "2",
            "--val-every",
            "1",
            "--methods",
            "unet_ls,mcsc",
            "--batch",
            "2",
            "--threads",
            "1",
        ]
    )
    assert "| UNet-LS" in table and "| MCSC" in table and "Dice Myo" in table and "HD95 mean (mm)" in table
    assert "volume diagonal" in table and "2 volumes" in table
