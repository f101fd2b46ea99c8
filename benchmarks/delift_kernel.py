"""DELIFT utility kernel: the block path against the previous per-example path and per-pair re-encoding.

Two regimes in one run (issue 13):

- **overhead-bound**: a random Llama (hidden 64, 2 layers) built from a config, as a 135M-1B model on a
  GPU; the block path with no padding cap, as on CUDA; target >= 3x the previous path.
- **compute-bound**: ``--model`` (default: the embedded SmolLM2-135M) in fp32 on the CPU, padding
  capped at 2% of real tokens (the CPU default); target >= 0.95x the previous path, padded tokens
  <= 2% of real, kernels equal to 1e-5.

Paths, each timed end to end without the kernel cache (best of alternated rounds, after a warm-up):

- block (today's default): a block of examples at once, prefixes of similar length encoded together,
  every (example, target) row reading its example's KV cache, token-budget batches (``--batch-tokens``);
- previous (``utility_kernel(per_example=True)``): one example at a time, its prefix encoded once and
  expanded across length-sorted batches of ``--batch-size`` targets;
- reference: for ``--ref-pairs`` random pairs, both sequences re-encoded from scratch with full
  logits, batch size 1.

Prints pairs/s, padded positions counted at the backbone (``CausalLM.padding``), ratios, the largest
differences, and each path's achieved FLOP/s against the peak measured in the same run
(benchmarks/_common.py). ``--sparse`` adds the sparse kernel (k nearest examples by MiniLM embeddings)
and the projection for n = 5,000, k = 10.

    .venv/bin/python benchmarks/delift_kernel.py             # both regimes
    .venv/bin/python benchmarks/delift_kernel.py --quick     # smaller sizes
    .venv/bin/python benchmarks/delift_kernel.py --regimes model --model DIR --sparse
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from _common import (FlopCounter, add_model_options, describe_model, describe_peak, flops_line, load_lm,
                     time_paths)


def run_regime(name: str, lm, ds, args, peak: float) -> None:
    from datawinnow.kernels.utility import UtilityTokens, utility_kernel, utility_pair_reference

    tok = UtilityTokens(lm)
    examples = ds[: args.examples]
    print(f"\n== {name}: {describe_model(lm)}\n{len(ds)} targets x {len(examples)} examples: no-example pair "
          f"{np.mean([len(tok.no_example_pair(r)) for r in ds]):.0f} tokens on average, example prefix "
          f"{np.mean([len(tok.example(r)) for r in examples]):.0f}; token budget "
          f"{lm.resolve_batch_tokens(args.batch_tokens)} ({args.batch_tokens}), padding cap {lm.max_padding}")
    paths = {"block": dict(batch_tokens=args.batch_tokens),
             "previous": dict(per_example=True, batch_size=args.batch_size)}
    for kw in paths.values():  # warm-up, outside the timings
        utility_kernel(lm, ds[:4], examples[:2], use_cache=False, progress=False, **kw)
    runs = {label: (lambda kw=kw: np.asarray(utility_kernel(lm, ds, examples, use_cache=False, progress=False,
                                                             **kw).matrix))
            for label, kw in paths.items()}
    best, flops, mats, pads = time_paths(lm, runs, args.rounds)
    pairs = len(ds) * len(examples)
    for label in paths:
        extra = pads[label]["computed"] - pads[label]["real"]
        print(f"{label:9s} {pairs / best[label]:9.2f} pairs/s ({best[label]:.2f} s incl. d(y|x); "
              f"{flops_line(flops[label], best[label], peak)}); padded positions {extra} = "
              f"{100 * extra / pads[label]['real']:.2f}% of {pads[label]['real']} real")
    print(f"ratio block / previous: {best['previous'] / best['block']:.2f}x; max |difference| "
          f"{np.abs(mats['block'] - mats['previous']).max():.2e}")

    rng = np.random.default_rng(0)
    cells = rng.choice(pairs, size=min(args.ref_pairs, pairs), replace=False)
    chosen = [(int(c) % len(ds), int(c) // len(ds)) for c in cells]
    with FlopCounter(lm) as fc:
        t0 = time.perf_counter()
        ref = [utility_pair_reference(lm, ds[i], examples[j], tok) for i, j in chosen]
        t_ref = time.perf_counter() - t0
    diff = max(abs(r - mats["block"][j, i]) for r, (i, j) in zip(ref, chosen))
    print(f"reference {len(chosen) / t_ref:9.2f} pairs/s ({len(chosen)} pairs, {t_ref:.2f} s; "
          f"{flops_line(fc.flops, t_ref, peak)}); block / reference {pairs / best['block'] / (len(chosen) / t_ref):.2f}x; "
          f"max |block - reference| {diff:.2e}")
    if args.sparse:
        sparse_projection(lm, ds, args, peak)


def sparse_projection(lm, ds, args, peak: float) -> None:
    from datawinnow.backends import Embedder
    from datawinnow.kernels.embedding import neighbours, record_text
    from datawinnow.kernels.utility import utility_kernel

    emb_model = Embedder.load("minilm", device="cpu")
    t0 = time.perf_counter()
    emb = emb_model.encode([record_text(r, "prompt_response") for r in ds])
    nb = neighbours(emb, emb, args.k)[0]
    t_emb = time.perf_counter() - t0
    with FlopCounter(lm) as fc:
        t0 = time.perf_counter()
        sparse = utility_kernel(lm, ds, ds, mode="sparse", neighbour_idx=nb, batch_tokens=args.batch_tokens,
                                use_cache=False, progress=False)
        t_sparse = time.perf_counter() - t0
    rate = sparse.info["pairs"] / t_sparse
    print(f"sparse    {rate:9.2f} pairs/s ({sparse.info['pairs']} pairs, k = {args.k}, {t_sparse:.1f} s; embeddings + "
          f"k-NN {t_emb:.1f} s; {flops_line(fc.flops, t_sparse, peak)})")
    n = args.project_n
    print(f"projected: n = {n}, k = {args.k}, sparse: {(n * args.k / rate + n * t_emb / len(ds)) / 60:.1f} min on this machine")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-tiny", type=int, default=64, help="targets (bundled alpaca samples), overhead-bound regime")
    ap.add_argument("--n", type=int, default=24, help="targets, compute-bound regime")
    ap.add_argument("--examples", type=int, default=8, help="examples: the first EXAMPLES samples")
    ap.add_argument("--ref-pairs", type=int, default=8, help="pairs timed with the per-pair reference")
    ap.add_argument("--batch-size", type=int, default=8, help="targets per forward pass of the previous path")
    ap.add_argument("--batch-tokens", default="auto", help="token budget of the block path (auto: 16384 on a CPU)")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--dtype", default="fp32", help="compute-bound regime's dtype")
    ap.add_argument("--rounds", type=int, default=2, help="alternated timing rounds (best of)")
    ap.add_argument("--regimes", default="tiny,model", help="comma list of tiny, model")
    ap.add_argument("--tiny-padding-cap", choices=["gpu", "cpu"], default="gpu",
                    help="overhead-bound regime's padding cap: none, as on CUDA (gpu), or this CPU's default 2%% (cpu)")
    ap.add_argument("--sparse", action="store_true", help="add the sparse kernel and the n = 5,000 projection")
    ap.add_argument("--k", type=int, default=10, help="sparse: nearest examples per target")
    ap.add_argument("--project-n", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="32 tiny targets, 12 compute-bound targets, 4 examples")
    add_model_options(ap)
    args = ap.parse_args()
    if args.quick:
        args.n_tiny, args.n, args.examples, args.ref_pairs = 32, 12, 4, 4

    from datawinnow.data import load

    pool = load("bundled:alpaca_en_demo")
    regimes = args.regimes.split(",")
    shown = False
    if "tiny" in regimes:
        args.tiny = True
        lm = load_lm(args, max_length=args.max_length)
        if args.tiny_padding_cap == "gpu":
            lm.max_padding = None  # as on CUDA
        peak = describe_peak(lm)
        shown = True
        run_regime("overhead-bound (tiny random Llama, as on a GPU)", lm, pool[:args.n_tiny], args, peak)
    if "model" in regimes:
        args.tiny = False
        lm = load_lm(args, device="cpu", dtype=args.dtype, max_length=args.max_length)
        peak = describe_peak(lm, show_machine=not shown)
        run_regime("compute-bound", lm, pool[:args.n], args, peak)


if __name__ == "__main__":
    main()
