"""DELIFT utility kernel: the cached, batched computation against per-pair re-encoding, same run.

    .venv/bin/python benchmarks/delift_kernel.py             # 64 bundled samples, SmolLM2
    .venv/bin/python benchmarks/delift_kernel.py --quick     # 16 samples
    .venv/bin/python benchmarks/delift_kernel.py --no-sparse # the dense ratio only
    .venv/bin/python benchmarks/delift_kernel.py --tiny      # overhead-bound: a random Llama, hidden 64, 2 layers
    .venv/bin/python benchmarks/delift_kernel.py --model DIR # any local model folder

Fast path: ``utility_kernel`` (the example's KV cache computed once and shared by a length-sorted
batch of targets, logits only at response positions, d(y|x) once per target), timed end to end
without the kernel cache. Reference: for each pair, both sequences ([query; response] and
[example; query; response]) re-encoded from scratch with full logits, batch size 1, as a direct
implementation of the formula does. Prints pairs/s of both, the ratio (target >= 4x), the largest
difference between the two on the reference pairs, and the projected time of the sparse kernel
for n = 5,000, k = 10 (target <= 45 min on the development CPU). Each rate comes with its achieved
FLOP/s and fraction of the peak measured in the same run (benchmarks/_common.py).
"""

from __future__ import annotations

import argparse
import time

from _common import FlopCounter, add_model_options, describe_model, describe_peak, flops_line, load_lm

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="bundled alpaca samples (the targets)")
    ap.add_argument("--examples", type=int, default=8,
                    help="dense phase: all n targets against the first EXAMPLES examples (the per-pair cost of the "
                         "dense kernel does not depend on how many examples there are)")
    ap.add_argument("--k", type=int, default=10, help="sparse phase: nearest examples per target")
    ap.add_argument("--ref-pairs", type=int, default=16, help="pairs timed with the per-pair reference")
    ap.add_argument("--batch-size", type=int, default=8, help="targets per forward pass (fast path)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--project-n", type=int, default=5000)
    ap.add_argument("--no-sparse", action="store_true", help="skip the sparse phase (and the projection)")
    ap.add_argument("--quick", action="store_true", help="16 samples, 4 examples, k = 4, 6 reference pairs")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    add_model_options(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.examples, args.k, args.ref_pairs = 16, 4, 4, 6

    import torch

    from datawinnow.backends import Embedder
    from datawinnow.data import load
    from datawinnow.kernels.embedding import neighbours, record_text
    from datawinnow.kernels.utility import UtilityTokens, utility_kernel, utility_pair_reference

    ds = load("bundled:alpaca_en_demo")[: args.n]
    t0 = time.perf_counter()
    lm = load_lm(args, device=args.device, max_length=args.max_length)
    print(f"loaded {describe_model(lm)} in {time.perf_counter() - t0:.1f} s; torch threads {torch.get_num_threads()}")
    peak = describe_peak(lm)
    tok = UtilityTokens(lm)
    lens = [len(tok.no_example_pair(r)) for r in ds]
    ex_lens = [len(tok.example(r)) for r in ds]
    print(f"{len(ds)} samples: no-example pair {np.mean(lens):.0f} tokens on average, example prefix {np.mean(ex_lens):.0f}")

    # 1. dense: every target against each of the first `examples` examples
    examples = ds[: args.examples]
    with FlopCounter(lm) as dense_flops:
        t0 = time.perf_counter()
        dense = utility_kernel(lm, ds, examples, batch_size=args.batch_size, use_cache=False, progress=True)
        t_dense = time.perf_counter() - t0
    dense_rate = dense.info["pairs"] / t_dense
    print(f"fast, dense:  {dense.info['pairs']} pairs in {t_dense:.1f} s = {dense_rate:.2f} pairs/s "
          f"(incl. d(y|x) of {len(ds)} targets: {dense.info['seconds_base']:.1f} s; "
          f"{dense.info['pairs_from_scratch']} pairs without prefix reuse: merged token boundary; "
          f"{flops_line(dense_flops.flops, t_dense, peak)})")

    # 2. the per-pair reference on random pairs of the same block
    rng = np.random.default_rng(0)
    cells = rng.choice(len(ds) * len(examples), size=min(args.ref_pairs, len(ds) * len(examples)), replace=False)
    chosen = [(int(c) % len(ds), int(c) // len(ds)) for c in cells]  # (target i, example j)
    with FlopCounter(lm) as ref_flops:
        t0 = time.perf_counter()
        ref = [utility_pair_reference(lm, ds[i], examples[j], tok) for i, j in chosen]
        t_ref = time.perf_counter() - t0
    ref_rate = len(chosen) / t_ref
    mat = np.asarray(dense.matrix)
    diff = max(abs(r - mat[j, i]) for r, (i, j) in zip(ref, chosen))
    print(f"reference:    {len(chosen)} pairs in {t_ref:.1f} s = {ref_rate:.2f} pairs/s "
          f"(max |fast - reference| = {diff:.2e}; {flops_line(ref_flops.flops, t_ref, peak)})")
    # the full n x n dense kernel pays d(y|x) once for n examples, not for `examples`
    per_example = (t_dense - dense.info["seconds_base"]) / len(examples)
    full_rate = len(ds) ** 2 / (dense.info["seconds_base"] + len(ds) * per_example)
    print(f"ratio, dense: {dense_rate / ref_rate:.2f}x as measured; {full_rate / ref_rate:.2f}x for the full "
          f"{len(ds)} x {len(ds)} kernel ({full_rate:.2f} pairs/s: d(y|x) shared by {len(ds)} examples) "
          f"(target >= 4x)")
    if args.no_sparse:
        return

    # 3. sparse: each target against its k nearest examples by embedding
    emb_model = Embedder.load("minilm", device="cpu")
    t0 = time.perf_counter()
    emb = emb_model.encode([record_text(r, "prompt_response") for r in ds])
    nb = neighbours(emb, emb, args.k)[0]
    t_emb = time.perf_counter() - t0
    with FlopCounter(lm) as sparse_flops:
        t0 = time.perf_counter()
        sparse = utility_kernel(lm, ds, ds, mode="sparse", neighbour_idx=nb, batch_size=args.batch_size,
                                use_cache=False, progress=True)
        t_sparse = time.perf_counter() - t0
    pairs = sparse.info["pairs"]
    sparse_rate = pairs / t_sparse
    print(f"fast, sparse: {pairs} pairs (k = {args.k}) in {t_sparse:.1f} s = {sparse_rate:.2f} pairs/s "
          f"(d(y|x): {sparse.info['seconds_base']:.1f} s; embeddings + k-NN {t_emb:.1f} s; "
          f"{flops_line(sparse_flops.flops, t_sparse, peak)})")
    print(f"ratio, sparse: {sparse_rate / ref_rate:.2f}x")
    # projection: n k pairs at the measured sparse rate (which includes each target's d(y|x) and
    # each example's prefix, both scaling with n like the pairs), plus the embeddings
    n = args.project_n
    proj = n * args.k / sparse_rate + n * t_emb / len(ds)
    print(f"projected:    n = {n}, k = {args.k}, sparse: {proj / 60:.1f} min on this machine (target <= 45 min); "
          f"per-pair reference: {n * args.k / ref_rate / 60:.1f} min")


if __name__ == "__main__":
    main()
