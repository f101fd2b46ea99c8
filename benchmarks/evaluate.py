"""Evaluation throughput on the embedded SmolLM2-135M (CPU), each against a baseline measured in the same run.

1. multiple choice: batched, length-sorted choice log-likelihoods (datawinnow) vs one (question, choice)
   pair per forward pass;
2. generation: batches of --batch-size prompts vs one prompt at a time (greedy, same tokens);
3. contamination: n-gram index + MinHash-LSH (datawinnow) vs brute-force pairwise Jaccard of the prompts,
   all bundled evaluation prompts against alpaca_en_demo.

    .venv/bin/python benchmarks/evaluate.py            # ~10-20 minutes on 2 shared, busy cores
    .venv/bin/python benchmarks/evaluate.py --quick    # ~2-4 minutes
    .venv/bin/python benchmarks/evaluate.py --parts contamination   # one part (mc, generation, contamination)
    .venv/bin/python benchmarks/evaluate.py --model DIR --parts mc,generation   # any local model folder

The model parts print achieved FLOP/s and the fraction of the peak measured in the same run
(benchmarks/_common.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from _common import FlopCounter, add_model_options, describe_model, describe_peak, flops_line, load_lm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small n for a fast sanity run")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--parts", default="mc,generation,contamination",
                    help="comma-separated subset of mc, generation, contamination")
    add_model_options(ap)
    args = ap.parse_args()
    cache = tempfile.mkdtemp(prefix="dw-bench-eval-")
    models = os.path.join(os.path.expanduser("~"), ".cache", "datawinnow", "models")
    os.makedirs(models, exist_ok=True)
    os.symlink(models, os.path.join(cache, "models"))
    os.environ["DATAWINNOW_CACHE"] = cache  # fresh score cache: nothing is read back

    parts = set(args.parts.split(","))
    if parts & {"mc", "generation"}:
        lm = load_lm(args, device="cpu", max_length=512)
        print(f"model {lm.identity}: {describe_model(lm)}, torch threads {__import__('torch').get_num_threads()}")
        args.peak = describe_peak(lm)
    if "mc" in parts:
        multiple_choice(lm, args)
    if "generation" in parts:
        generation(lm, args)
    if "contamination" in parts:
        contamination(args)


def multiple_choice(lm, args) -> None:
    from datawinnow.evaluate.multiple_choice import choice_pairs, load_task, score_choices
    from datawinnow.runtime.context import Context

    n_mc = 8 if args.quick else 48
    items = load_task("arc_easy")[:n_mc]
    ctx = Context(model=lm, progress=False, batch_size=args.batch_size, use_cache=False)
    with FlopCounter(lm) as fast_flops:
        t0 = time.perf_counter()
        rows, _ = score_choices(lm, items, ctx=ctx)
        fast = time.perf_counter() - t0
    with FlopCounter(lm) as slow_flops:
        t0 = time.perf_counter()
        single = []
        for r in items:
            single.append([float(lm.response_logprobs([p])[0].sum()) for p in choice_pairs(lm, r, "chat")])
        slow = time.perf_counter() - t0
    diff = max(abs(a - b) for row, s in zip(rows, single) for a, b in zip(row["loglik"], s))
    n_pairs = sum(len(r.meta["choices"]) for r in items)
    print(f"multiple choice, {n_mc} ARC-Easy items ({n_pairs} choices): batched {n_mc / fast:.2f} items/s, "
          f"one pair per pass {n_mc / slow:.2f} items/s, ratio {slow / fast:.2f}x; max |loglik diff| {diff:.2e}")
    print(f"  batched {flops_line(fast_flops.flops, fast, args.peak)}; one pair per pass "
          f"{flops_line(slow_flops.flops, slow, args.peak)}")



def generation(lm, args) -> None:
    from datawinnow.data import load
    from datawinnow.evaluate.generate import GenerationParams, chat_prompt, generate_cached
    from datawinnow.runtime.context import Context

    ctx = Context(model=lm, progress=False, batch_size=args.batch_size, use_cache=False)
    n_gen = 4 if args.quick else 16
    new = 16 if args.quick else 32
    ds = load("bundled:alpaca_eval_gpt4_baseline")[:n_gen]
    params = GenerationParams(max_new_tokens=new)
    with FlopCounter(lm) as fast_flops:
        t0 = time.perf_counter()
        batched, _ = generate_cached(lm, ds, params=params, ctx=ctx)
        fast = time.perf_counter() - t0
    with FlopCounter(lm) as slow_flops:
        t0 = time.perf_counter()
        one = [lm.generate([chat_prompt(lm, r)], max_new_tokens=new)[0] for r in ds]
        slow = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(batched, one))
    print(f"generation, {n_gen} AlpacaEval prompts x {new} new tokens: batch {args.batch_size} "
          f"{n_gen / fast:.2f} answers/s, one at a time {n_gen / slow:.2f} answers/s, ratio {slow / fast:.2f}x "
          f"({same}/{n_gen} answers identical; padding can flip greedy near-ties)")
    print(f"  batched {flops_line(fast_flops.flops, fast, args.peak)}; one at a time "
          f"{flops_line(slow_flops.flops, slow, args.peak)}")



def contamination(args) -> None:
    from datawinnow.data import load
    from datawinnow.evaluate.contamination import check_contamination, jaccard, shingles
    from datawinnow.evaluate.multiple_choice import load_task

    evals = list(load("bundled:alpaca_eval_gpt4_baseline")) + list(load("bundled:ifeval_input_data")) \
        + list(load_task("arc_easy"))
    train = load("bundled:alpaca_en_demo")
    if args.quick:
        evals, train = evals[:400], train[:300]
    t0 = time.perf_counter()
    report = check_contamination(evals, train)
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    tsh = [shingles(r.prompt, 3) for r in train]
    brute = 0
    for e in evals:
        es = shingles(e.prompt, 3)
        brute += any(jaccard(es, s) >= 0.8 for s in tsh if s)
    slow = time.perf_counter() - t0
    near = sum(any(h["kind"] == "near" for h in hs) for hs in report.hits.values())
    print(f"contamination, {len(evals)} eval items x {len(train)} training samples: datawinnow (13-grams + MinHash "
          f"LSH) {len(evals) / fast:.0f} items/s, brute-force pairwise Jaccard (near duplicates only) "
          f"{len(evals) / slow:.0f} items/s, ratio {slow / fast:.2f}x; near-duplicate items {near} vs brute force "
          f"{brute}; {report.as_dict()['n_contaminated']} contaminated in all")


if __name__ == "__main__":
    main()
