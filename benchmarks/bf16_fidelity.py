"""bf16 fidelity: rankings from a bf16 model against the same model in fp32, measured in the same run.

``dtype auto`` picks bf16 on CUDA and on CPUs with AVX512-BF16/AMX. The backbone then runs in bf16;
the LM head and the log-softmax run in float32 whatever the dtype (``Fp32Head``). This script scores
the same records with one model (`--model`: a local folder; default the embedded SmolLM2-135M-Instruct) loaded in fp32 and in bf16 and prints the Spearman
rank correlation of the bf16 scores against the fp32 ones (target >= 0.995), for

- IFD (``loss_ratio`` with the ``bare`` empty prompt, the default, and ``ppl_ratio`` on the same
  two losses) on 200 bundled Alpaca records;
- DELIFT utilities UF[i, j] of a small dense kernel (every entry of an n x n kernel).

For comparison it also scores in bf16 with the head and log-softmax in bf16 (the path before the
float32 head: logits rounded to bf16, then widened; for IFD from the same backbone passes), so the
gain of the float32 head is measured rather than assumed.

    .venv/bin/python benchmarks/bf16_fidelity.py           # 200 IFD records, 20 x 20 kernel
    .venv/bin/python benchmarks/bf16_fidelity.py --quick   # 48 records, 10 x 10 kernel
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time

import numpy as np
import torch

from _common import add_model_options, describe_model


@contextlib.contextmanager
def bf16_head():
    """The LM head in the model's dtype, its logits widened afterwards (the old path), for comparison only."""
    from datawinnow.backends.causal_lm import Fp32Head

    real = Fp32Head.logits

    def rounded(self, hidden):
        return self.head(hidden.to(self.head.weight.dtype)).float()

    Fp32Head.logits = rounded
    try:
        yield
    finally:
        Fp32Head.logits = real


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel())[0])


def ifd_scores(lm, ds, batch_size: int, *, with_bf16_head: bool = False) -> tuple[dict, dict | None]:
    """IFD of both variants from the scorer's own pairs and log-probabilities (loss_ratio's ``bare`` empty
    prompt); with ``with_bf16_head``, also from the bf16 head on the same backbone passes (no second pass)."""
    from datawinnow.backends.causal_lm import Fp32Head, to_numpy
    from datawinnow.scores.ifd import ifd_pairs

    pairs = [p for r in ds for p in ifd_pairs(lm, r, "bare")]
    loss = {"float32 head": np.zeros(len(pairs))}
    stash: list[np.ndarray] = []
    real = Fp32Head.token_logprobs

    def both(self, hidden, targets, chunk=1024):
        logits = self.head(hidden.to(self.head.weight.dtype)).float()  # rounded to bf16, then widened
        stash.append(to_numpy(torch.log_softmax(logits, -1).gather(1, targets[:, None]).squeeze(1)))
        return real(self, hidden, targets, chunk)

    if with_bf16_head:
        loss["bf16 head"] = np.zeros(len(pairs))
        Fp32Head.token_logprobs = both
    try:
        for idx, lps in lm.iter_batches(pairs, batch_size):
            for i, lp in zip(idx, lps):
                loss["float32 head"][i] = -lp.mean()
            if with_bf16_head:
                old = stash.pop()
                cuts = np.cumsum([0] + [len(pairs[i].response) for i in idx])
                for k, i in enumerate(idx):
                    loss["bf16 head"][i] = -old[cuts[k]:cuts[k + 1]].mean()
    finally:
        Fp32Head.token_logprobs = real
    out = {}
    for head, values in loss.items():
        lc, lu = values[0::2], values[1::2]
        out[head] = {"loss_ratio": lc / lu, "ppl_ratio": np.exp(lc - lu)}
    return out["float32 head"], out.get("bf16 head")


def utilities(lm, recs, batch_size: int) -> np.ndarray:
    from datawinnow.kernels import utility_kernel

    return np.asarray(utility_kernel(lm, recs, recs, batch_size=batch_size, use_cache=False, progress=False).matrix)


def per_target_spearman(k, ref) -> float:
    """Mean over targets (columns) of the Spearman correlation of their examples' utilities."""
    return float(np.mean([spearman(k[:, i], ref[:, i]) for i in range(ref.shape[1])]))


def delift_picks(k, budget: int) -> list[int]:
    """The delift method's picks on a raw kernel: minmax similarity, facility location, lazy greedy."""
    from datawinnow.kernels import to_similarity
    from datawinnow.select.submodular import FacilityLocation, maximize

    (sim,), _ = to_similarity([np.asarray(k, dtype=np.float32)], "minmax")
    return maximize(FacilityLocation(sim, transposed=True), budget, optimizer="lazy").picks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="IFD: records from bundled:alpaca_en_demo")
    ap.add_argument("--kernel-n", type=int, default=20, help="DELIFT: an n x n utility kernel")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--parts", default="ifd,delift,cost",
                    help="comma-separated: ifd, delift, cost (bf16 IFD time with the float32 head against the bf16 head)")
    ap.add_argument("--quick", action="store_true", help="48 records, a 10 x 10 kernel")
    add_model_options(ap, tiny=False)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if args.quick:
        args.n, args.kernel_n = 48, 10

    import datawinnow
    from datawinnow.backends import CausalLM

    ds = datawinnow.load("bundled:alpaca_en_demo")[: args.n]
    recs = list(datawinnow.load("bundled:alpaca_en_demo")[: args.kernel_n])
    fp32 = CausalLM.load(args.model, device="cpu", dtype="fp32", max_length=args.max_length)
    bf16 = CausalLM.load(args.model, device="cpu", dtype="bf16", max_length=args.max_length)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"{describe_model(fp32)}, max length {args.max_length}; IFD on {len(ds)} records, DELIFT on a {len(recs)} x {len(recs)} "
          "kernel", flush=True)

    if "ifd" in parts:
        run_ifd(fp32, bf16, ds, args.batch_size)
    if "delift" in parts:
        run_delift(fp32, bf16, recs, args.batch_size)
    if "cost" in parts:
        run_cost(bf16, ds[:48], args.batch_size)


def run_cost(bf16, ds, batch_size: int) -> None:
    """What the float32 head costs a bf16 model: IFD timed with each head, alternating, best of three."""
    times = {"float32 head": [], "bf16 head": []}
    for _ in range(3):
        for head in times:
            t0 = time.perf_counter()
            with bf16_head() if head == "bf16 head" else contextlib.nullcontext():
                ifd_scores(bf16, ds, batch_size)
            times[head].append(time.perf_counter() - t0)
    new, old = min(times["float32 head"]), min(times["bf16 head"])
    print(f"cost: bf16 IFD on {len(ds)} records: float32 head {new:.1f} s, bf16 head {old:.1f} s "
          f"({new / old:.2f}x the time)", flush=True)


def run_ifd(fp32, bf16, ds, batch_size: int) -> None:
    t0 = time.perf_counter()
    ref, _ = ifd_scores(fp32, ds, batch_size)
    t_fp32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    new, old = ifd_scores(bf16, ds, batch_size, with_bf16_head=True)
    t_bf16 = time.perf_counter() - t0
    print(f"IFD scoring time: fp32 {t_fp32:.1f} s, bf16 {t_bf16:.1f} s (with the bf16-head comparison)")
    for variant in ("loss_ratio", "ppl_ratio"):
        print(f"IFD {variant:10s} Spearman(bf16, fp32) = {spearman(new[variant], ref[variant]):.5f} "
              f"(max |diff| {np.abs(new[variant] - ref[variant]).max():.2e}); "
              f"with a bf16 head: {spearman(old[variant], ref[variant]):.5f} "
              f"(max |diff| {np.abs(old[variant] - ref[variant]).max():.2e})   target >= 0.995", flush=True)



def run_delift(fp32, bf16, recs, batch_size: int) -> None:
    t0 = time.perf_counter()
    k_ref = utilities(fp32, recs, batch_size)
    t_fp32 = time.perf_counter() - t0
    t0 = time.perf_counter()
    k_new = utilities(bf16, recs, batch_size)
    t_bf16 = time.perf_counter() - t0
    with bf16_head():
        k_old = utilities(bf16, recs, batch_size)
    print(f"DELIFT kernel time: fp32 {t_fp32:.1f} s, bf16 {t_bf16:.1f} s; UF range [{k_ref.min():.3f}, "
          f"{k_ref.max():.3f}]", flush=True)
    budget = max(1, len(recs) // 4)
    picks = {name: delift_picks(k, budget) for name, k in (("fp32", k_ref), ("new", k_new), ("old", k_old))}
    for name, label in (("new", "float32 head"), ("old", "bf16 head   ")):
        k = k_new if name == "new" else k_old
        print(f"DELIFT UF, bf16 with a {label}: Spearman(bf16, fp32) over all {k.size} entries "
              f"{spearman(k, k_ref):.5f}, per target {per_target_spearman(k, k_ref):.5f}; max |diff| "
              f"{np.abs(k - k_ref).max():.2e}; delift picks ({budget} of {len(recs)}) shared with fp32: "
              f"{len(set(picks[name]) & set(picks['fp32']))}   target >= 0.995")

if __name__ == "__main__":
    main()
