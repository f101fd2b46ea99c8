"""IFD throughput: datawinnow's scoring path against a naive reference, measured in the same run.

datawinnow: length-sorted batches, logits only at response positions, dtype auto (bf16 on CPUs with
AMX/AVX512-BF16 and on CUDA, fp32 elsewhere).
Naive reference (as Cherry's script does): batch 1, fp32, full-vocabulary logits at every position,
two separate forward passes per sample (with and without the instruction).

Both score the same 200 bundled Alpaca samples truncated to the same 256-token pairs, so their IFD
values must agree; the script checks that and prints both rates, the ratio, and each one's achieved
FLOP/s against the machine's peak measured in the same run (benchmarks/_common.py).

    python benchmarks/ifd_throughput.py            # 200 samples, the embedded SmolLM2
    python benchmarks/ifd_throughput.py --quick    # 40 samples
    python benchmarks/ifd_throughput.py --tiny     # overhead-bound regime: a random Llama, hidden 64, 2 layers
    python benchmarks/ifd_throughput.py --model DIR   # any local model folder
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _common import FlopCounter, add_model_options, describe_model, describe_peak, flops_line, load_lm


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="samples from bundled:alpaca_en_demo")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--dtype", default="auto", help="datawinnow's dtype (auto picks per hardware)")
    ap.add_argument("--quick", action="store_true", help="40 samples")
    add_model_options(ap)
    args = ap.parse_args()
    if args.quick:
        args.n = 40

    import datawinnow
    from datawinnow.scores.base import Context
    from datawinnow.scores.ifd import ifd_pairs

    ds = datawinnow.load("bundled:alpaca_en_demo")[: args.n]
    lm = load_lm(args, dtype=args.dtype, max_length=args.max_length)
    peak = describe_peak(lm)
    pairs = [ifd_pairs(lm, r, "bare") for r in ds]
    tokens = sum(len(c) + len(u) for c, u in pairs)
    print(f"datawinnow dtype: {lm.dtype}; {len(ds)} samples, {tokens} tokens scored (both passes), "
          f"mean pair length {np.mean([len(c) for c, _ in pairs]):.0f}; model: {describe_model(lm)}")

    # warm-up (allocator, kernels) on a few samples, outside the timings
    datawinnow.score(ds[:8], "ifd", ctx=Context(model=lm, batch_size=args.batch_size, progress=False, use_cache=False))

    with FlopCounter(lm) as fast_flops:
        t0 = time.perf_counter()
        table = datawinnow.score(ds, "ifd", params={"variant": "loss_ratio", "empty_prompt": "bare"},
                                 ctx=Context(model=lm, batch_size=args.batch_size, progress=True, use_cache=False))
        fast_s = time.perf_counter() - t0

    with FlopCounter(lm) as naive_flops:
        ref, naive_s = naive_ifd(lm, [c for c, _ in pairs], [u for _, u in pairs])

    fast_rate, naive_rate = len(ds) / fast_s, len(ds) / naive_s
    diff = np.abs(table.score - ref).max()
    print(f"datawinnow: {fast_rate:6.2f} samples/s ({fast_s:.1f} s; {flops_line(fast_flops.flops, fast_s, peak)})")
    print(f"naive:      {naive_rate:6.2f} samples/s ({naive_s:.1f} s in fp32; {flops_line(naive_flops.flops, naive_s, peak)}"
          f" of the {str(lm.dtype).replace('torch.', '')} peak)")
    print(f"ratio:      {fast_rate / naive_rate:6.2f}x   (target >= 8x and >= 12 samples/s on the AMX CPU the targets assume)")
    print(f"max |IFD difference|: {diff:.2e} (bf16 vs fp32 when datawinnow runs bf16)")


if __name__ == "__main__":
    main()
