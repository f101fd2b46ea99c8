"""benchmarks/scale.py: the growth ratio per 10x of n, and a smoke run of its --quick FL and streaming sections
(FL at 1k and 10k on the IVF index, convert 20k) and of its score-store section (20k records; the Ray section has
tests of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scale import per_10x, recall  # noqa: E402


def test_growth_per_10x_of_n():
    assert per_10x([10, 100], [3.0, 30.0]) == pytest.approx(10.0)  # linear
    assert per_10x([1_000, 100_000], [1.0, 10_000.0]) == pytest.approx(100.0)  # quadratic
    assert per_10x([10_000, 50_000, 100_000], [2.0, 9.0, 20.0]) == pytest.approx(10.0)  # first to last only


def test_recall_counts_ties_and_ids():
    import numpy as np

    exact_idx, exact_sims = np.array([[0, 1, 2], [3, 4, 5]]), np.array([[.9, .8, .7], [.6, .5, .4]])
    # query 0: 5 found in place of 2, exactly as similar (a near-duplicate); query 1: 7 (.3) in place of 5 (.4)
    found_idx, found_sims = [np.array([0, 1, 5]), np.array([3, 4, 7])], [np.array([.9, .8, .7]), np.array([.6, .5, .3])]
    with_ties, by_id = recall(found_idx, found_sims, exact_idx, exact_sims)
    assert with_ties == pytest.approx((3 / 3 + 2 / 3) / 2) and by_id == pytest.approx(2 / 3)


def test_quick_run_prints_every_figure(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--quick", "--only", "fl", "--only", "convert",
            "--knn-index", "ivf"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    for line in ("machine:", "measured peak:", "embeddings: clustered", "  10,000 ", " ivf 16/256 ", "recall@10",
                 "growth per 10x of n (1,000 -> 10,000",
                 "lazy greedy time", "peak extra memory", "datawinnow data convert", "load() + write() (whole)",
                 "same output: yes"):
        assert line in out, line


def test_quick_store_section_prints_flat_and_baseline_figures(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--quick", "--only", "store"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    for line in ("20,000 records in 5 chunks of 4,096", "process index, geometric", "whole read + rewrite per chunk",
                 "last/first quarter's chunk time:", "every record found by a new process in both"):
        assert line in run.stdout, line
