"""IFD throughput: token-budget batches against fixed batches of 8 (and, with ``--naive``, Cherry's way).

Two regimes in one run (issue 13):

- **overhead-bound**: a random Llama (hidden 64, 2 layers) built from a config; per-call overhead
  dominates, as it does for a 135M-1B model on a GPU. Token-budget batches run with no padding cap,
  as on CUDA (``lm.max_padding = None``); target >= 3x fixed batches of 8.
- **compute-bound**: ``--model`` (default: the embedded SmolLM2-135M) in fp32 on the CPU, where padded
  positions cost as much as real ones: the CPU default (2% padding cap); target >= 0.95x fixed batches of 8
  and padded tokens <= 2% of real tokens (counted at the backbone).

Both paths are ``datawinnow.score(..., "ifd")`` with the same Context except its batching
(``batch_size=8`` vs ``batch_tokens``). Each is timed as the best of alternated rounds, after a
warm-up; the script checks that IFD values agree to 1e-5 (fp32) and prints samples/s, padded
positions, the ratio and each path's achieved FLOP/s against the peak measured in the same run
(benchmarks/_common.py). Naive reference (``--naive``): batch 1, fp32, full-vocabulary logits, two
separate passes per sample.

    python benchmarks/ifd_throughput.py            # both regimes: 400 tiny samples, 80 SmolLM2 samples
    python benchmarks/ifd_throughput.py --quick    # 200 tiny, 24 SmolLM2
    python benchmarks/ifd_throughput.py --regimes tiny
    python benchmarks/ifd_throughput.py --model DIR --naive
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import (FlopCounter, add_model_options, describe_model, describe_peak, flops_line, load_lm,
                     time_paths)


def naive_ifd(lm, pairs_c, pairs_u) -> tuple[np.ndarray, float]:
    model = lm.model
    model_dtype = next(model.parameters()).dtype
    model.float()
    out = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for pc, pu in zip(pairs_c, pairs_u):
            losses = []
            for p in (pc, pu):  # two separate passes, full logits, batch 1
                ids = torch.tensor([p.prompt + p.response])
                logits = model(input_ids=ids).logits[0].float()
                start = len(p.prompt)
                lp = torch.log_softmax(logits[start - 1:start - 1 + len(p.response)], dim=-1)
                losses.append(-lp.gather(1, torch.tensor(p.response)[:, None]).mean().item())
            out.append(losses[0] / losses[1])
    seconds = time.perf_counter() - t0
    model.to(model_dtype)
    return np.array(out), seconds


def run_regime(name: str, lm, ds, args, peak: float, *, batch_tokens) -> None:
    import datawinnow
    from datawinnow.runtime.context import Context
    from datawinnow.scores.ifd import ifd_pairs

    pairs = [ifd_pairs(lm, r, "bare") for r in ds]
    tokens = sum(len(c) + len(u) for c, u in pairs)
    budget = lm.resolve_batch_tokens(batch_tokens)
    print(f"\n== {name}: {describe_model(lm)}\n{len(ds)} samples, {tokens} tokens scored (both passes), mean pair "
          f"length {np.mean([len(c) for c, _ in pairs]):.0f}; token budget {budget} "
          f"({batch_tokens}), padding cap {lm.max_padding}")
    params = {"variant": "loss_ratio", "empty_prompt": "bare"}
    ctxs = {"fixed batch 8": Context(model=lm, batch_size=8, progress=False, use_cache=False),
            "token budget": Context(model=lm, batch_tokens=batch_tokens, progress=False, use_cache=False)}
    for ctx in ctxs.values():  # warm-up (allocator, kernels), outside the timings
        datawinnow.score(ds[:16], "ifd", params=params, ctx=ctx)
    runs = {label: (lambda ctx=ctx: np.asarray(datawinnow.score(ds, "ifd", params=params, ctx=ctx).score))
            for label, ctx in ctxs.items()}
    best, flops, scores, padding = time_paths(lm, runs, args.rounds)
    for label in ctxs:
        pad = padding[label]
        extra = pad["computed"] - pad["real"]
        print(f"{label:14s} {len(ds) / best[label]:8.2f} samples/s ({best[label]:.2f} s; "
              f"{flops_line(flops[label], best[label], peak)}); padded positions {extra} = "
              f"{100 * extra / pad['real']:.2f}% of {pad['real']} real")
    diff = np.nanmax(np.abs(scores["token budget"] - scores["fixed batch 8"]))
    print(f"ratio token budget / fixed batch 8: {best['fixed batch 8'] / best['token budget']:.2f}x; "
          f"max |IFD difference| {diff:.2e}")
    if args.naive:
        with FlopCounter(lm) as naive_flops:
            ref, naive_s = naive_ifd(lm, [c for c, _ in pairs], [u for _, u in pairs])
        print(f"naive          {len(ds) / naive_s:8.2f} samples/s ({naive_s:.1f} s in fp32; "
              f"{flops_line(naive_flops.flops, naive_s, peak)}); max |IFD difference| "
              f"{np.nanmax(np.abs(scores['token budget'] - ref)):.2e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-tiny", type=int, default=400, help="samples from bundled:alpaca_en_demo, overhead-bound regime")
    ap.add_argument("--n", type=int, default=80, help="samples from bundled:alpaca_en_demo, compute-bound regime")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-tokens", default="auto", help="token budget of the budget path (auto: 16384 on a CPU)")
    ap.add_argument("--dtype", default="fp32", help="compute-bound regime's dtype (fp32: results compared to 1e-5)")
    ap.add_argument("--rounds", type=int, default=2, help="alternated timing rounds (best of)")
    ap.add_argument("--regimes", default="tiny,model", help="comma list of tiny, model")
    ap.add_argument("--tiny-padding-cap", choices=["gpu", "cpu"], default="gpu",
                    help="overhead-bound regime's padding cap: none, as on CUDA (gpu), or this CPU's default 2%% (cpu)")
    ap.add_argument("--naive", action="store_true", help="also time the naive Cherry-style reference")
    ap.add_argument("--quick", action="store_true", help="200 tiny samples, 24 compute-bound samples")
    add_model_options(ap)
    args = ap.parse_args()
    if args.quick:
        args.n_tiny, args.n = 200, 24

    import datawinnow

    pool = datawinnow.load("bundled:alpaca_en_demo")
    regimes = args.regimes.split(",")
    shown = False
    if "tiny" in regimes:
        args.tiny = True
        lm = load_lm(args, max_length=args.max_length)
        if args.tiny_padding_cap == "gpu":
            lm.max_padding = None  # as on CUDA: no padding cap, wide batches
        peak = describe_peak(lm)
        shown = True
        run_regime("overhead-bound (tiny random Llama, as on a GPU)", lm, pool[:args.n_tiny], args, peak,
                   batch_tokens=args.batch_tokens)
    if "model" in regimes:
        args.tiny = False
        lm = load_lm(args, device="cpu", dtype=args.dtype, max_length=args.max_length)
        peak = describe_peak(lm, show_machine=not shown)
        run_regime("compute-bound", lm, pool[:args.n], args, peak, batch_tokens=args.batch_tokens)


if __name__ == "__main__":
    main()
