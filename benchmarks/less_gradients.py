"""LESS feature cost, each against a baseline measured in the same run.

1. Features (per-example LoRA gradient, Adam preconditioning, projection to d, unit norm) at a warmed-up
   checkpoint: the vectorised path (a whole batch of per-example gradients from one forward and one
   backward pass, preconditioning and projection on the model's device) against the per-example loop
   (forward + backward at batch size 1 per sample: the reference path). Prints both rates, the ratio,
   achieved FLOP/s against the peak measured in the same run, and the largest relative difference of
   the features (target: 1e-4 in fp32).
2. Gradients against a forward-only loss at batch size 1 on the same samples (what IFD costs per
   pass): how many forward passes one gradient costs, per sample and batched.
3. Projection: the chunked, seeded projection (P regenerated block by block for every pass, memory
   one 16384 x d block) against a dense baseline (P materialised once, one matmul); same numbers.

Regimes (issue 13): ``--tiny`` is overhead-bound (a random Llama with hidden size 64 and 2 layers, as a
135M-1B model is on a GPU; target >= 10x); the embedded SmolLM2 on a CPU is compute-bound (target
>= 0.95x, features equal to 1e-4 relative with ``--dtype fp32``).

    python benchmarks/less_gradients.py --dtype fp32     # SmolLM2, 32 samples, d = 1024
    python benchmarks/less_gradients.py --tiny           # overhead-bound regime, 64 samples
    python benchmarks/less_gradients.py --model DIR      # any local model folder
    python benchmarks/less_gradients.py --quick          # 8 samples
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import FlopCounter, add_model_options, describe_model, describe_peak, flops_line, load_lm


def timed(fn, counter: FlopCounter | None = None):
    if counter is None:
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0
    with counter:
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(ap)
    ap.add_argument("--dtype", default="auto", help="model dtype: auto (bf16 on CUDA and AMX/AVX512-BF16 CPUs), fp32, bf16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="8 samples")
    ap.add_argument("--n", type=int, default=None, help="samples from bundled:self_instruct_seed_tasks "
                                                        "(default 32; 64 with --tiny)")
    ap.add_argument("--dim", type=int, default=1024, help="projection dimension")
    ap.add_argument("--max-length", type=int, default=None, help="tokens per sample (default 256; 64 with --tiny)")
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each feature path, alternated (best kept)")
    ap.add_argument("--batch-tokens", type=int, default=None, help="padded tokens per batch of the vectorised path "
                                                                    "(default: the scorer's auto)")
    args = ap.parse_args()
    n = 8 if args.quick else args.n or (64 if args.tiny else 32)
    max_length = args.max_length or (64 if args.tiny else 256)

    import datawinnow
    from datawinnow.scores.gradients import auto_gradient_tokens, example_gradient, example_gradients
    from datawinnow.scores.less import gradient_features
    from datawinnow.scores.lora_warmup import WarmupConfig, lora_warmup, training_pair
    from datawinnow.scores.projection import CHUNK_ROWS, RademacherProjector

    lm = load_lm(args, device=args.device, dtype=args.dtype, max_length=max_length)
    peak = describe_peak(lm)
    recs = datawinnow.load("bundled:self_instruct_seed_tasks")[:n]
    warm = lora_warmup(lm, datawinnow.load("bundled:alpaca_en_demo")[:4],
                       WarmupConfig(epochs=1, lr=1e-2, batch_size=2, lora_r=args.lora_r), use_cache=False,
                       progress=False)  # two steps: non-zero LoRA B and Adam moments
    batch_tokens = args.batch_tokens or auto_gradient_tokens(warm)
    pairs, t_tok = timed(lambda: [training_pair(lm, r) for r in recs])
    tokens = sum(len(p) for p in pairs)
    dim_in = sum(p.numel() for p in warm.parameters())
    print(f"model: {describe_model(lm)}; LoRA r = {args.lora_r} on q/k/v/o, D = {dim_in:,}")
    print(f"{n} samples of bundled:self_instruct_seed_tasks, max length {max_length}: {tokens / n:.0f} tokens "
          f"each on average (tokenized in {t_tok:.2f} s, shared by both paths)")

    # 1. features: vectorised vs the per-example loop
    proj = RademacherProjector(dim_in, args.dim, seed=0)
    feats = {}
    for vectorized in (False, True):  # warm-up of kernels and the projection's block cache, outside the timings
        gradient_features(warm, 0, recs[:2], "adam", proj, vectorized=vectorized, pairs=pairs[:2])
    best = {False: float("inf"), True: float("inf")}
    flops = {}
    for _ in range(args.repeats):  # alternated, best of each: a busy shared machine slows whole stretches of a run
        for vectorized in (False, True):
            counter = FlopCounter(warm.model, backward=1)  # the warm-up's LoRA copy of the model
            feats[vectorized], secs = timed(lambda: gradient_features(
                warm, 0, recs, "adam", proj, vectorized=vectorized, batch_tokens=batch_tokens, pairs=pairs), counter)
            best[vectorized], flops[vectorized] = min(best[vectorized], secs), counter.flops
    rates = {v: n / best[v] for v in best}
    for vectorized in (False, True):
        name = f"vectorised (batches of <= {batch_tokens} tokens)" if vectorized else "per-example loop (reference)"
        print(f"features, {name:<42} {rates[vectorized]:8.2f} samples/s (best of {args.repeats}: "
              f"{best[vectorized]:.2f} s; {flops_line(flops[vectorized], best[vectorized], peak)})")
    ref = feats[False]
    rel = float(np.abs(feats[True] - ref).max() / np.abs(ref).max())
    row_rel = float((np.linalg.norm(feats[True] - ref, axis=1) / np.linalg.norm(ref, axis=1)).max())
    print(f"ratio: {rates[True] / rates[False]:.2f}x   (targets: >= 10x with --tiny, >= 0.95x on SmolLM2 on a CPU)")
    print(f"features: max |difference| / max |feature| = {rel:.1e}; largest per-row relative L2 difference "
          f"{row_rel:.1e} (target 1e-4 in fp32; model dtype {lm.dtype})")

    # 2. gradients vs forward-only loss at batch 1
    _, t_grad = timed(lambda: [example_gradient(warm, r, p) for r, p in zip(recs, pairs)])
    grads, t_vec = timed(lambda: example_gradients(warm, recs, batch_tokens=batch_tokens, pairs=pairs))
    counter = FlopCounter(lm)
    with torch.no_grad():
        _, t_fwd = timed(lambda: [lm.response_loss([p]) for p in pairs], counter)
    print(f"gradients, batch 1: {n / t_grad:8.2f} samples/s; batched: {n / t_vec:8.2f} samples/s")
    print(f"forward-only loss (batch 1): {n / t_fwd:8.2f} samples/s (baseline; {flops_line(counter.flops, t_fwd, peak)})")
    print(f"ratio: one gradient costs {t_grad / t_fwd:.2f} forward passes at batch 1, {t_vec / t_fwd:.2f} batched")

    # 3. chunked projection vs dense P
    grads = grads.float().cpu()
    chunked_proj = RademacherProjector(dim_in, args.dim, seed=0, cache_bytes=0)
    chunked, t_chunk = timed(lambda: chunked_proj.project(grads))
    dense_bytes = dim_in * args.dim * 4
    block_bytes = min(CHUNK_ROWS, dim_in) * args.dim * 4
    print(f"projection to d = {args.dim}: chunked P (memory {block_bytes / 2**20:.0f} MiB per block): "
          f"{n / t_chunk:8.1f} rows/s")
    if dense_bytes <= 6 * 2**30:
        p, t_make = timed(chunked_proj.matrix)
        dense, t_dense = timed(lambda: (grads @ p / np.sqrt(args.dim)).numpy())
        err = float(np.abs(dense - chunked).max() / np.abs(dense).max())
        print(f"  dense P in memory ({dense_bytes / 2**20:.0f} MiB, built once in {t_make:.2f} s): "
              f"{n / t_dense:8.1f} rows/s for the matmul alone (baseline); same result (max rel. diff {err:.1e})")
        print(f"  ratio chunked / dense-matmul time: {t_chunk / t_dense:.1f}x; "
              f"chunked / (build + matmul): {t_chunk / (t_make + t_dense):.2f}x; memory {dense_bytes / block_bytes:.0f}x less")
    else:
        print(f"  dense P would need {dense_bytes / 2**30:.1f} GiB: baseline skipped")
    print(f"LESS feature per sample per checkpoint: {1 / rates[True]:.4f} s vectorised, {1 / rates[False]:.4f} s "
          f"per-example ({n} rows per pass)")


if __name__ == "__main__":
    main()
