"""The approximate k-NN indexes (faiss IVF, numpy k-means lists) on real sentence embeddings: recall, speed and the facility-location
selection it leads to, against the exact search.

    .venv/bin/python benchmarks/knn_recall.py           # the 17,614 records of bundled:natural_instructions_v1
    .venv/bin/python benchmarks/knn_recall.py --quick   # its first 3,000

The records are embedded by the embedded all-MiniLM-L6-v2 (prompt and response, as delift-se does; cached
per record like any run's embeddings, so a second run skips it). Each record's 10 nearest records are
searched exactly (faiss IndexFlatIP), with the IVF index and with the k-means lists (`knn_index=lists`),
each with its default number of lists, at nprobe 4, 8, 16 (the default) and 32. Printed for each: seconds; recall@10 over all queries, the share of the exact
10 nearest neighbours found (a neighbour exactly as similar as the one it replaces, within 1e-6, counts:
the pool holds near-duplicates, whose order at the 10th place float rounding decides in either search;
"by id" counts the very same indices only); the share of queries that found all 10; and what the
selection makes of it: lazy greedy facility location (budget 10%) on the sparse (cos + 1) / 2 kernel from
those neighbours, its picks scored by facility location on the full similarity (every pair, computed in
blocks), over the score of the exact search's picks (1.0000 = as good; random picks are printed for the
scale). The same figures follow for two synthetic sets of the same size and dimension: the clustered
mixture of benchmarks/scale.py and uniformly random unit vectors (the worst case for any approximate
index: real embeddings lie between, nearer the first).
"""

from __future__ import annotations

import argparse
import os
import time

from _common import machine

from scale import BUDGET, DIM, K, TIE, embeddings, recall

NPROBES = (4, 8, 16, 32)
QUICK = 3_000


def real_embeddings(limit: int | None, embedder: str = "minilm"):
    from datawinnow.backends import Embedder
    from datawinnow.data import load
    from datawinnow.data.record import Dataset
    from datawinnow.kernels.embedding import embed_records
    from datawinnow.runtime.context import Context

    ds = load("bundled:natural_instructions_v1")
    if limit is not None:
        ds = Dataset(list(ds)[:limit])
    t0 = time.perf_counter()
    emb = embed_records(ds, Context(embedder=Embedder.load(embedder, device="cpu"), progress=True))
    print(f"embedded {len(ds):,} records with {embedder} (or read them from the cache) in "
          f"{time.perf_counter() - t0:.0f} s")
    return emb


def compare(name: str, emb) -> None:
    import numpy as np
    import scipy.sparse as sp

    from datawinnow.kernels.knn import knn, plan_index
    from datawinnow.kernels.similarity import cosine01
    from datawinnow.select.submodular import FacilityLocation, lazy_greedy

    n = len(emb)
    budget = max(1, int(round(BUDGET * n)))

    def kernel(idx, sims):  # candidate-major, as embedding_kernel builds it
        cols = np.repeat(np.arange(n), idx.shape[1])
        return sp.coo_matrix((cosine01(sims.ravel()).astype(np.float32), (idx.ravel(), cols)), shape=(n, n)).tocsr()

    def full_fl(picks) -> float:  # facility location on (cos + 1) / 2 over every pair, in blocks of rows
        chosen = emb[np.asarray(picks)]
        return sum(float(np.sum(cosine01(emb[s:s + 4096] @ chosen.T).max(axis=1), dtype=np.float64))
                   for s in range(0, n, 4096))

    t0 = time.perf_counter()
    exact_idx, exact_sims = knn(emb, emb, K, index="exact")
    t_exact = time.perf_counter() - t0
    best = full_fl(lazy_greedy(FacilityLocation(kernel(exact_idx, exact_sims), transposed=True), budget).picks)
    random_picks = np.random.default_rng(0).choice(n, budget, replace=False)
    print(f"\n== {name}: n = {n:,}, dim {emb.shape[1]}, k = {K}; FL budget {budget:,}")
    print(f"{'search':>14} {'seconds':>8} {'recall@10':>10} {'by id':>7} {'all 10 found':>13} {'FL value':>9}")
    print(f"{'exact':>14} {t_exact:>8.2f} {1:>10.4f} {1:>7.4f} {1:>13.4f} {1:>9.4f}")
    for index, nprobe in [(i, p) for i in ("ivf", "lists") for p in NPROBES]:
        plan = plan_index(index, n, n, nprobe=nprobe)
        t0 = time.perf_counter()
        idx, sims = knn(emb, emb, K, index=index, nprobe=nprobe)
        seconds = time.perf_counter() - t0
        with_ties, by_id = recall(idx, sims, exact_idx, exact_sims)
        all_found = np.mean(np.sum(sims >= exact_sims[:, [K - 1]] - TIE, axis=1) >= K)
        value = full_fl(lazy_greedy(FacilityLocation(kernel(idx, sims), transposed=True), budget).picks) / best
        label = f"{index} {plan.nprobe}/{plan.nlist}"
        print(f"{label:>14} {seconds:>8.2f} {with_ties:>10.4f} {by_id:>7.4f} {all_found:>13.4f} {value:>9.4f}")
    print(f"{'random picks':>14} {'':>8} {'':>10} {'':>7} {'':>13} {full_fl(random_picks) / best:>9.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"the first {QUICK:,} records only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embedder", default="minilm", help="sentence embedder: a local folder, a hub id, or minilm (the "
                                                          "embedded all-MiniLM-L6-v2)")
    args = ap.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (other jobs share the cores when above 0)")
    emb = real_embeddings(QUICK if args.quick else None, args.embedder)
    compare(f"Natural Instructions v1, {args.embedder} embeddings", emb)
    for data in ("clustered", "uniform"):
        compare(f"synthetic, {data} (dim {DIM})", embeddings(len(emb), data, args.seed))
    print(f"\nivf/lists nprobe/nlist: lists searched per query / lists; recall@10: ties within {TIE:g} count, by id: the "
          "same indices only; FL value: facility location on the full similarity at the picks made on this search's "
          "sparse kernel, over that at the exact search's picks")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
