"""LESS feature cost: per-example LoRA gradients and the chunked Rademacher projection, each against a baseline
measured in the same run.

1. Gradients: datawinnow's per-example LoRA gradient (forward + backward at batch size 1, LoRA
   parameters only) against a forward-only loss at batch size 1 on the same samples (what IFD costs
   per pass). The ratio says how many forward passes one gradient feature costs.
2. Projection: the chunked, seeded projection (P regenerated block by block for every pass, memory
   one 16384 x d block) against a dense baseline (P materialised once in memory, one matmul). Both
   give the same numbers; the script checks that and prints rates, the ratio and the memory of each.

    python benchmarks/less_gradients.py               # SmolLM2, 32 samples, d = 1024
    python benchmarks/less_gradients.py --quick       # a tiny random model, seconds
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

import numpy as np
import torch


def load_model(quick: bool, max_length: int):
    from datawinnow.backends import CausalLM

    if not quick:
        return CausalLM.load("smollm2", max_length=max_length)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_tiny_model

    import atexit
    import shutil

    folder = tempfile.mkdtemp(prefix="dw-bench-tiny-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    build_tiny_model(folder, hidden=64, layers=4)
    return CausalLM.load(folder, device="cpu", dtype="fp32", max_length=max_length)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny random model and 8 samples")
    ap.add_argument("--n", type=int, default=32, help="samples from bundled:self_instruct_seed_tasks")
    ap.add_argument("--dim", type=int, default=1024, help="projection dimension")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lora-r", type=int, default=8)
    args = ap.parse_args()
    n = 8 if args.quick else args.n

    import datawinnow
    from datawinnow.scores.gradients import example_gradient
    from datawinnow.scores.lora_warmup import WarmupConfig, WarmupResult, build_lora_model, training_pair
    from datawinnow.scores.projection import CHUNK_ROWS, RademacherProjector

    lm = load_model(args.quick, args.max_length)
    recs = datawinnow.load("bundled:self_instruct_seed_tasks")[:n]
    model, names = build_lora_model(lm, WarmupConfig(lora_r=args.lora_r))
    model.to(lm.device).eval()
    warm = WarmupResult(model=model, base=lm, checkpoints=[], losses=[], key="bench", names=names)
    pairs = [training_pair(lm, r) for r in recs]
    tokens = sum(len(p) for p in pairs)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"model {lm.identity.split('|')[0]}, {lm.dtype}; {n} samples, {tokens / n:.0f} tokens each on average")

    # 1. gradients vs forward-only loss
    example_gradient(warm, recs[0])  # warm-up of the kernels
    t0 = time.perf_counter()
    grads = torch.stack([example_gradient(warm, r) for r in recs])
    t_grad = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        for p in pairs:
            lm.response_loss([p])
    t_fwd = time.perf_counter() - t0
    print(f"LoRA dimension D = {grads.shape[1]:,}")
    print(f"gradients (fwd+bwd, batch 1): {n / t_grad:8.2f} samples/s")
    print(f"forward-only loss (batch 1):  {n / t_fwd:8.2f} samples/s   (baseline)")
    print(f"ratio: one gradient feature costs {t_grad / t_fwd:.2f} forward passes")

    # 2. chunked projection vs dense P
    proj = RademacherProjector(grads.shape[1], args.dim, seed=0)
    t0 = time.perf_counter()
    chunked = proj.project(grads)
    t_chunk = time.perf_counter() - t0
    dense_bytes = grads.shape[1] * args.dim * 4
    block_bytes = min(CHUNK_ROWS, grads.shape[1]) * args.dim * 4
    print(f"projection to d = {args.dim}: chunked P (memory {block_bytes / 2**20:.0f} MiB per block): "
          f"{n / t_chunk:8.1f} rows/s")
    if dense_bytes <= 6 * 2**30:
        t0 = time.perf_counter()
        p = proj.matrix()
        t_make = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense = (grads @ p / np.sqrt(args.dim)).numpy()
        t_dense = time.perf_counter() - t0
        err = float(np.abs(dense - chunked).max() / np.abs(dense).max())
        print(f"  dense P in memory ({dense_bytes / 2**20:.0f} MiB, built once in {t_make:.2f} s): "
              f"{n / t_dense:8.1f} rows/s for the matmul alone (baseline); same result (max rel. diff {err:.1e})")
        print(f"  ratio chunked / dense-matmul time: {t_chunk / t_dense:.1f}x; "
              f"chunked / (build + matmul): {t_chunk / (t_make + t_dense):.2f}x; memory {dense_bytes / block_bytes:.0f}x less")
    else:
        print(f"  dense P would need {dense_bytes / 2**30:.1f} GiB: baseline skipped")
    per_sample = t_grad / n + t_chunk / n
    print(f"LESS feature per sample per checkpoint: {per_sample:.3f} s (gradient {t_grad / n:.3f} s + "
          f"projection {t_chunk / n:.3f} s at {n} rows per pass)")


if __name__ == "__main__":
    main()
