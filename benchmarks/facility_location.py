"""Lazy-greedy facility location: datawinnow against apricot-select, same kernel, same run.

    .venv/bin/python benchmarks/facility_location.py            # n = 2000, 5000, 10000
    .venv/bin/python benchmarks/facility_location.py --quick    # n = 1000, 2000

For each n: a random symmetric dense float32 kernel (uniform entries, the hard case for lazy greedy:
gains stay close together), budget 10%. Times datawinnow's lazy greedy and apricot's
FacilityLocationSelection(metric="precomputed", optimizer="lazy") on the same kernel, prints the
time ratio (target: datawinnow at least 2x faster) and whether both pick the same set. apricot is
an optional benchmark dependency (pip install 'datawinnow[bench]'); without it only datawinnow runs.
Both run once on a small warm-up kernel first (numba compilation, torch threads), outside the timing.

No model runs here, so there is no --model; datawinnow's achieved FLOP/s (3 n FLOPs per gain evaluation:
an element-wise maximum, a difference and a sum over the pool's n rows; memory-bound work) is printed
against the fp32 matmul peak measured in the same run (benchmarks/_common.py), as the model benchmarks are.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import describe_peak, flops_line
from datawinnow.select.submodular import FacilityLocation, lazy_greedy


def kernel(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, n), dtype=np.float32)
    x += x.T
    x *= 0.5
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,5000,10000", help="comma-separated pool sizes")
    ap.add_argument("--budget", type=float, default=0.1, help="fraction of the pool to select")
    ap.add_argument("--quick", action="store_true", help="n = 1000, 2000 only")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sizes = [1000, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]

    try:
        from apricot import FacilityLocationSelection
    except ImportError:
        FacilityLocationSelection = None
        print("apricot-select is not installed (pip install 'datawinnow[bench]'): timing datawinnow only")
    # warm-up outside the timing: apricot's numba compilation, torch's thread pool
    lazy_greedy(FacilityLocation(kernel(200, 1), transposed=True), 10)
    if FacilityLocationSelection is not None:
        FacilityLocationSelection(10, metric="precomputed", optimizer="lazy", verbose=False).fit(kernel(200, 1))

    peak = describe_peak(dtype=torch.float32, device="cpu")
    print(f"{'n':>7} {'k':>6} {'datawinnow s':>13} {'evals':>9} {'apricot s':>10} {'ratio':>7}  same set")
    for n in sizes:
        s = kernel(n, args.seed + n)
        k = max(1, int(round(args.budget * n)))
        t0 = time.perf_counter()
        # the kernel is symmetric, so it is its own candidate-major form: no copy
        res = lazy_greedy(FacilityLocation(s, transposed=True), k)
        t_dw = time.perf_counter() - t0
        achieved = f"        datawinnow: {flops_line(3.0 * n * res.evaluations, t_dw, peak)}"
        if FacilityLocationSelection is None:
            print(f"{n:>7} {k:>6} {t_dw:>13.2f} {res.evaluations:>9} {'-':>10} {'-':>7}  -")
            print(achieved)
            continue
        t0 = time.perf_counter()
        sel = FacilityLocationSelection(k, metric="precomputed", optimizer="lazy", verbose=False).fit(s)
        t_ap = time.perf_counter() - t0
        same = set(res.picks) == set(int(i) for i in sel.ranking)
        order = list(res.picks) == [int(i) for i in sel.ranking]
        print(f"{n:>7} {k:>6} {t_dw:>13.2f} {res.evaluations:>9} {t_ap:>10.2f} {t_ap / t_dw:>6.1f}x  "
              f"{'yes' if same else 'NO'}{' (same order)' if order else ''}")
        print(achieved)
        del s


if __name__ == "__main__":
    main()
