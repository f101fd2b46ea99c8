"""Large pools: facility-location selection on a sparse k-NN kernel, streaming a large file through `data convert`,
and the score store under streamed scoring.

    .venv/bin/python benchmarks/scale.py            # FL at n = 10k, 50k, 100k; convert 1M; store 200k; Ray on 256
    .venv/bin/python benchmarks/scale.py --quick    # FL at n = 1k, 10k; convert 20k records; store 20k; Ray on 64
    .venv/bin/python benchmarks/scale.py --only store   # streamed scoring's score store alone (under a minute)
    .venv/bin/python benchmarks/scale.py --only fl --knn-index ivf --data uniform   # the ANN's worst case

Sparse FL (what delift-se does with --param kernel=sparse --param k=10, from the embeddings on): unit
embeddings of dimension 384 (as all-MiniLM-L6-v2 gives), the candidate-major (cos + 1) / 2 kernel of
each point's k = 10 nearest neighbours (CSR float32), then lazy greedy facility location with a budget
of 10% of n. The neighbours come from the k-NN search that --knn-index names, as the methods' knn_index
param does: auto (the default: exact up to 20,000 points, lists above), exact (faiss IndexFlatIP in
blocks of queries: n^2 d multiply-adds), ivf (approximate: about 4 sqrt(n) lists, --nprobe of them
searched per query: about n^1.5 d) or lists (approximate, numpy: n / 100 k-means lists, --nprobe of them
searched per query list by list with matrix products: n * nprobe * 100 d for the scans, n^2 / 100 d for
the centre scores).

The embeddings (--data): clustered (the default) is a seeded mixture of n / 100 Gaussian clusters around
random unit centres, each point its centre plus noise of norm 0.75-1.75 (drawn per cluster), normalised:
cosine about 0.25-0.65 to the points of its cluster and about 0 to the rest. Real sentence embeddings are
clustered too, less cleanly (benchmarks/knn_recall.py measures the recall on real ones); uniformly random
unit vectors (--data uniform) are the worst case for any approximate index (every point's neighbours are
barely nearer than the rest) and the recall printed for them is the floor, not the typical figure.

Each size runs in a fresh subprocess, which reports the time of the kernel build (the k-NN search and
the CSR matrix) and of the greedy and its peak memory: the resident-set high-water mark (VmHWM, reset
through /proc/self/clear_refs once the embeddings exist; ru_maxrss where that is unavailable) above the
resident set at that point, i.e. what the selection adds on top of its input; the embeddings' own size
is printed beside it. Then, outside the measurement, recall@10: for 1,000 seeded queries (all of them
below 1,000 points), the share of their exact 10 nearest neighbours (an exact search for just those
queries) that the kernel's search found (1 for the exact search); a neighbour found in place of one that
is exactly as similar (within 1e-6: a near-duplicate, as real pools hold) counts, and "by id" is the
share of the very same indices (the two differ only where there are such ties; see recall()). Growth
ratios are per 10x of n (from the smallest to the largest size, as 10 ** slope on log-log axes): 10x is
linear, 31.6x n^1.5, 100x quadratic. An exact search's speed is printed as achieved GFLOP/s against the fp32 matmul peak measured
in the same run.

Streaming: a JSON-lines file of synthetic alpaca records is written to a temporary folder, then
`datawinnow data convert FILE --out OUT.jsonl --to messages` runs as a subprocess; printed: records/s
and the peak RSS of that process (ru_maxrss from wait4), and both again above the command's startup
(the same command on a 100-record file). The baseline, measured in the same run on the same file, is
the whole-file path (`load()` then `write()`: every record in memory at once) against the streamed
`datawinnow.data.convert()`, each in a subprocess with the same imports.

Score store: streamed scoring's cache I/O. The records of such a file, in chunks of 4,096, go through
the cached runner (`run_cached`) one chunk at a time, as `datawinnow score` does for a per-record scorer,
with a cheap computation (character and word counts) in batches of 64 records (one part file each), so
that the store's own costs show: per chunk, opening the store and compacting it. Printed for the store as
it is (the process index in a keep_stores_loaded block, geometric compaction) and, in the same run, for a
baseline in which every chunk reads the store whole and rewrites it whole (what a chunk cost before; the
store then read it twice): seconds, the mean time of a chunk in the first and in the last quarter of the
chunks (flat when the cost per chunk does not grow with what the store holds), rows and MiB the store
read, rows compaction wrote.

Ray: the Ray executor's overhead against the local executor on the same pool (IFD, tiny model; see
benchmarks/ray_overhead.py, which also runs on its own).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, measure_peak

DIM, K, BUDGET = 384, 10, 0.1
FL_SIZES, FL_QUICK = (10_000, 50_000, 100_000), (1_000, 10_000)
POINTS_PER_CLUSTER, SPREAD = 100, (0.75, 1.75)  # --data clustered: n / 100 clusters, noise norm per cluster
RECALL_QUERIES = 1_000
TIE = 1e-6  # recall: similarities this close are a tie (float32 rounding differs between search kernels)
CONVERT_RECORDS, CONVERT_QUICK = 1_000_000, 20_000
STORE_RECORDS, STORE_QUICK, STORE_CHUNK, STORE_BATCH = 200_000, 20_000, 4096, 64


# ------------------------------------------------------------------------------------------- helpers
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


# Peak RSS comes from wait4 in a small launcher process: a child started straight from this process
# (torch loaded, a few hundred MiB) would count this process's resident set as its own peak (Linux
# keeps the pre-exec high-water mark in ru_maxrss); the launcher's own (about 10 MiB) is the bias left.
LAUNCHER = ("import json, os, sys\n"
            "pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)\n"
            "_, status, usage = os.wait4(pid, 0)\n"
            "open(sys.argv[1], 'w').write(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss]))")


def run_measured(argv: list[str]) -> tuple[float, int, str]:
    """Run a command (``argv[0]`` an absolute path); (wall seconds, its peak RSS in bytes, its stdout)."""
    with tempfile.TemporaryDirectory(prefix="dw-bench-run-") as tmp:
        result = os.path.join(tmp, "usage.json")
        with open(os.path.join(tmp, "out"), "w+b") as out, open(os.path.join(tmp, "err"), "w+b") as err:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", LAUNCHER, result, *argv], stdout=out, stderr=err, env=_env())
            seconds = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            text, errors = (f.read().decode("utf-8", "replace") for f in (out, err))
        if not os.path.exists(result):
            raise RuntimeError(f"{' '.join(argv)}: the launcher failed:\n{errors[-2000:]}")
        with open(result, encoding="utf-8") as fh:
            code, maxrss_kib = json.load(fh)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({code}):\n{errors[-2000:]}")
    return seconds, maxrss_kib * 1024, text


def per_10x(sizes, values) -> float:
    """Growth per 10x of n, from the smallest to the largest size: 10 ** (log-log slope)."""
    slope = math.log(values[-1] / values[0]) / math.log(sizes[-1] / sizes[0])
    return 10 ** slope


def mib(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB"


# ------------------------------------------------------------------------------------------- FL (worker)
def _status(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        line = next(line for line in fh if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def reset_peak() -> tuple[int, str]:
    """Start a peak-memory measurement: (the resident set now, how the peak is read).

    On Linux the resident-set high-water mark is reset to the current RSS (``5`` into
    ``/proc/self/clear_refs``) and read back as VmHWM; elsewhere ru_maxrss, which never goes down
    (an earlier, larger peak would hide the measured one).
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return _status("VmRSS"), "VmHWM"
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"


def read_peak(how: str) -> int:
    if how == "VmHWM":
        return _status("VmHWM")
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def embeddings(n: int, data: str, seed: int):
    """float32 ``[n, DIM]`` unit vectors: a seeded mixture of n / 100 Gaussian clusters, or uniformly random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if data == "clustered":
        m = max(1, n // POINTS_PER_CLUSTER)
        centres = rng.standard_normal((m, DIM), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        spread = rng.uniform(*SPREAD, size=m).astype(np.float32) / np.float32(np.sqrt(DIM))
        label = rng.integers(0, m, size=n)
    emb = np.empty((n, DIM), dtype=np.float32)
    for s in range(0, n, 8192):  # float32 throughout: no float64 temporary sets the high-water mark
        block = rng.standard_normal((min(8192, n - s), DIM), dtype=np.float32)
        if data == "clustered":
            lab = label[s:s + len(block)]
            block = centres[lab] + block * spread[lab, None]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        emb[s:s + len(block)] = block
    return emb


def recall(found_idx, found_sims, exact_idx, exact_sims) -> tuple[float, float]:
    """recall@k of one search against the exact one, per query lists of (indices, similarities): (with ties, by id).

    With ties, a query's found neighbours that are at least as similar as its exact k-th (less ``TIE``) count,
    up to k: the found similarities are true ones, so these are among the k nearest but for ties (near-
    duplicates, which an exact search also orders by float rounding). By id: the exact search's indices found.
    """
    import numpy as np

    k = exact_idx.shape[1]
    by_id = [len(set(map(int, f)) & set(map(int, e))) / k for f, e in zip(found_idx, exact_idx)]
    ties = [min(k, int(np.sum(np.asarray(f) >= e[k - 1] - TIE))) / k for f, e in zip(found_sims, exact_sims)]
    return float(np.mean(ties)), float(np.mean(by_id))


def fl_worker(n: int, seed: int, index: str, nprobe: int, data: str) -> dict:
    """Sparse kernel + lazy greedy at one n, in this (fresh) process; then the search's recall@10."""
    import numpy as np

    from datawinnow.kernels.embedding import embedding_kernel
    from datawinnow.kernels.knn import knn, plan_index
    from datawinnow.select.submodular import FacilityLocation, lazy_greedy

    # warm-up outside the measurement: torch's and faiss' first calls
    w = np.eye(16, DIM, dtype=np.float32)
    lazy_greedy(FacilityLocation(embedding_kernel(w, w, mode="sparse", k=4, index=index), transposed=True), 2)
    emb = embeddings(n, data, seed)
    plan = plan_index(index, n, n, nprobe=nprobe)
    base, how = reset_peak()
    t0 = time.perf_counter()
    kernel = embedding_kernel(emb, emb, mode="sparse", k=K, index=index, nprobe=nprobe)
    t_kernel = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = lazy_greedy(FacilityLocation(kernel, transposed=True), max(1, int(round(BUDGET * n))))
    t_greedy = time.perf_counter() - t0
    peak = read_peak(how)
    # recall@10 of the kernel's neighbours (column i of the candidate-major kernel: target i's), outside the timing
    from datawinnow.kernels.similarity import cosine01

    queries = np.sort(np.random.default_rng(seed + 1).choice(n, min(n, RECALL_QUERIES), replace=False))
    exact, exact_sims = knn(emb[queries], emb, K, index="exact")
    found = kernel.T.tocsr()[queries]  # the kernel holds (cos + 1) / 2: compare on that scale
    rows = [slice(found.indptr[r], found.indptr[r + 1]) for r in range(len(queries))]
    with_ties, by_id = recall([found.indices[r] for r in rows], [found.data[r] for r in rows], exact,
                              cosine01(exact_sims).astype(np.float32))
    return {"n": n, "index": plan.as_dict(), "seconds_kernel": t_kernel, "seconds_greedy": t_greedy,
            "peak_extra": peak - base, "peak": peak, "peak_from": how, "embeddings": emb.nbytes,
            "nnz": int(kernel.nnz), "evaluations": res.evaluations, "recall": with_ties,
            "recall_by_id": by_id,
            "kernel_bytes": int(kernel.data.nbytes + kernel.indices.nbytes + kernel.indptr.nbytes)}


def index_name(plan: dict) -> str:
    return "exact" if plan["index"] == "exact" else f"{plan['index']} {plan['nprobe']}/{plan['nlist']}"


def fl_section(args: argparse.Namespace, peak_flops: float) -> None:
    sizes = FL_QUICK if args.quick else FL_SIZES
    print(f"\n== facility location, sparse kernel (k = {K}, dim {DIM}, budget {BUDGET:.0%}, lazy greedy), "
          f"one subprocess per n; k-NN index {args.knn_index} (nprobe {args.nprobe})")
    if args.data == "clustered":
        print(f"embeddings: clustered, n / {POINTS_PER_CLUSTER} Gaussian clusters (noise norm {SPREAD[0]}-{SPREAD[1]}, "
              "normalised): real sentence embeddings are clustered too, less cleanly; --data uniform is the worst case for "
              "an approximate index")
    else:
        print("embeddings: uniformly random unit vectors, the WORST case for an approximate index (real sentence "
              "embeddings are clustered: --data clustered)")
    print(f"{'n':>8} {'index':>13} {'kernel s':>9} {'greedy s':>9} {'total s':>8} {'evals':>9} {'kernel CSR':>11} "
          f"{'embeddings':>11} {'peak extra':>11} {'peak RSS':>10} {'recall@10':>10} {'by id':>7} {'exact GFLOP/s':>14}")
    rows = []
    for n in sizes:
        _, _, out = run_measured([sys.executable, __file__, "--worker", "fl", "--n", str(n), "--seed", str(args.seed),
                                  "--knn-index", args.knn_index, "--nprobe", str(args.nprobe), "--data", args.data])
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        if r["index"]["index"] == "exact":
            gflops = 2.0 * n * n * DIM / r["seconds_kernel"] / 1e9
            speed = f"{gflops:>8.1f} ({100 * gflops * 1e9 / peak_flops:.0f}%)"
        else:
            speed = "-"
        print(f"{n:>8,} {index_name(r['index']):>13} {r['seconds_kernel']:>9.2f} {r['seconds_greedy']:>9.2f} "
              f"{r['seconds_kernel'] + r['seconds_greedy']:>8.2f} {r['evaluations']:>9,} {mib(r['kernel_bytes']):>11} "
              f"{mib(r['embeddings']):>11} {mib(r['peak_extra']):>11} {mib(r['peak']):>10} {r['recall']:>10.4f} {r['recall_by_id']:>7.4f} "
              f"{speed:>14}")
    print(f"index: exact, or ivf/lists nprobe/nlist (lists searched per query / lists); recall@10: of {RECALL_QUERIES:,} "
          f"queries' exact 10 nearest neighbours, the share the kernel holds (ties within {TIE:g} count; by id: "
          "the same indices)")
    print(f"peak extra: the resident set's high-water mark ({rows[-1]['peak_from']}) above its size once the "
          "embeddings exist, i.e. what kernel and greedy add; peak RSS: the whole process (Python, torch, faiss)")
    ns = [r["n"] for r in rows]
    growth = {
        "kernel build time": [r["seconds_kernel"] for r in rows],
        "lazy greedy time": [r["seconds_greedy"] for r in rows],
        "total time": [r["seconds_kernel"] + r["seconds_greedy"] for r in rows],
        "greedy evaluations": [r["evaluations"] for r in rows],
        "peak extra memory": [max(r["peak_extra"], 1) for r in rows],
    }
    print(f"growth per 10x of n ({ns[0]:,} -> {ns[-1]:,}; 10x = linear, 31.6x = n^1.5, 100x = quadratic):")
    for name, values in growth.items():
        print(f"  {name:<20} x{per_10x(ns, values):,.1f}")
    kinds = [index_name(r["index"]).split()[0] for r in rows]
    if len(set(kinds)) > 1:
        print(f"  (the index differs between sizes: {', '.join(f'{n:,} {k}' for n, k in zip(ns, kinds))}; the build "
              "ratio compares one search with another: run --knn-index exact, ivf or lists for one kind's growth)")


# ------------------------------------------------------------------------------------------- streaming
def write_pool(path: Path, n: int, seed: int) -> None:
    """n synthetic alpaca records, about 250 bytes each, a third with an input."""
    import random

    rng = random.Random(seed)
    words = ["data", "model", "token", "answer", "prompt", "select", "pool", "score", "kernel", "budget"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            out = " ".join(rng.choice(words) for _ in range(rng.randint(10, 40)))
            row = {"id": f"r{i}", "instruction": f"Explain step {i} of the procedure in plain words.",
                   "input": f"context {rng.random():.6f}" if i % 3 == 0 else "", "output": out}
            fh.write(json.dumps(row) + "\n")


LIBRARY = ("import sys; from datawinnow.data import convert, load, write\n"
           "if sys.argv[1] == 'stream': convert(sys.argv[2], sys.argv[3], 'messages')\n"
           "else: write(load(sys.argv[2]), sys.argv[3], 'messages')")


def convert_section(args: argparse.Namespace) -> None:
    n = CONVERT_QUICK if args.quick else CONVERT_RECORDS
    with tempfile.TemporaryDirectory(prefix="dw-bench-scale-") as tmp:
        src, small = Path(tmp) / "pool.jsonl", Path(tmp) / "small.jsonl"
        t0 = time.perf_counter()
        write_pool(src, n, args.seed)
        write_pool(small, 100, args.seed)
        print(f"\n== streaming {n:,} records ({src.stat().st_size / 2**20:,.0f} MiB of JSON lines, written in "
              f"{time.perf_counter() - t0:.0f} s) to messages JSON lines; one subprocess each, peak RSS from wait4")
        cli = [sys.executable, "-m", "datawinnow.cli", "data", "convert"]
        lib = [sys.executable, "-c", LIBRARY]
        out = {name: str(Path(tmp) / f"{name}.jsonl") for name in ("small", "cli", "stream", "whole")}
        runs = {
            "cli": ("datawinnow data convert", n, [*cli, str(src), "--out", out["cli"], "--to", "messages", "--quiet"]),
            "small": ("  the same, 100 records", 100,
                      [*cli, str(small), "--out", out["small"], "--to", "messages", "--quiet"]),
            "stream": ("convert() (streamed)", n, [*lib, "stream", str(src), out["stream"]]),
            "whole": ("load() + write() (whole)", n, [*lib, "whole", str(src), out["whole"]]),
        }
        print(f"{'':<26} {'seconds':>8} {'records/s':>10} {'peak RSS':>10}")
        got = {}
        for key, (name, count, argv) in runs.items():
            seconds, rss, _ = run_measured(argv)
            got[key] = (seconds, rss)
            print(f"{name:<26} {seconds:>8.1f} {count / seconds:>10,.0f} {mib(rss):>10}")
        (c_t, c_m), (b_t, b_m) = got["cli"], got["small"]
        print(f"data convert above its startup (the 100-record run): {n / max(c_t - b_t, 1e-9):,.0f} records/s, "
              f"{mib(c_m - b_m)} more peak RSS")
        (s_t, s_m), (w_t, w_m) = got["stream"], got["whole"]
        same = all(Path(out[k]).read_bytes() == Path(out["whole"]).read_bytes() for k in ("cli", "stream"))
        print(f"streamed vs whole-file (same imports): {w_t / s_t:.2f}x the speed, peak RSS {mib(s_m)} vs "
              f"{mib(w_m)} ({s_m / w_m:.2f}x); same output: {'yes' if same else 'NO'}")


# ------------------------------------------------------------------------------------------- score store
def counted_store_reads(cache) -> dict[str, int]:
    """Wrap the store's one reader (``cache.read_rows``; the caller puts it back) to count the rows and bytes
    it reads."""
    seen = {"rows": 0, "bytes": 0}
    real = cache.read_rows

    def counting(path):
        rows = real(path)
        seen["rows"] += len(rows)
        seen["bytes"] += path.stat().st_size if path.exists() else 0
        return rows

    cache.read_rows = counting
    return seen


def stream_through_store(src: Path, cache_dir: Path, *, reread: bool) -> dict:
    """Every chunk of ``src`` through ``run_cached`` with a cheap computation; per-chunk seconds and store I/O.
    ``reread``: the baseline (the index forgotten before every chunk, every compaction forced)."""
    from datawinnow import cache
    from datawinnow.data.stream import RecordStream
    from datawinnow.runtime.context import Context
    from datawinnow.runtime.runner import run_cached, sequential_plan

    def compute(records):
        return [{"chars": len(r.output), "words": len(r.output.split())} for r in records]

    real_read, real_compact = cache.read_rows, cache.ScoreStore.compact
    reads, written = counted_store_reads(cache), []

    def compact(store, force=False):
        written.append(real_compact(store, force or reread))
        return written[-1]

    cache.ScoreStore.compact = compact
    ctx = Context(progress=False, cache_dir=str(cache_dir))
    times = []
    try:
        with cache.keep_stores_loaded():
            for chunk in RecordStream(str(src), chunk_size=STORE_CHUNK).chunks():
                if reread:
                    cache.clear_store_index()
                t0 = time.perf_counter()
                run_cached(chunk, scorer="bench-counts", params={}, identity=None, compute=compute,
                           plan=sequential_plan(STORE_BATCH), ctx=ctx)
                times.append(time.perf_counter() - t0)
        io = dict(reads)
        cache.clear_store_index()  # what a new process finds
        store = cache.ScoreStore("bench-counts", {}, None, root=cache_dir)
        found, parts = len(store), len(list(store.dir.glob("part-*.jsonl")))
    finally:
        cache.read_rows, cache.ScoreStore.compact = real_read, real_compact
    return {"times": times, "reads": io, "written": sum(written), "found": found, "parts": parts}


def store_section(args: argparse.Namespace) -> None:
    n = STORE_QUICK if args.quick else STORE_RECORDS
    with tempfile.TemporaryDirectory(prefix="dw-bench-store-") as tmp:
        src = Path(tmp) / "pool.jsonl"
        write_pool(src, n, args.seed)
        chunks = math.ceil(n / STORE_CHUNK)
        print(f"\n== streamed scoring's score store: {n:,} records in {chunks} chunks of {STORE_CHUNK:,}, batches of "
              f"{STORE_BATCH} (one part file each), a cheap computation per record")
        print(f"{'':<34} {'seconds':>8} {'first q.':>9} {'last q.':>9} {'rows read':>10} {'MiB read':>9} "
              f"{'rows written':>13} {'parts left':>10}")
        got = {}
        for key, name, reread in (("index", "process index, geometric", False),
                                  ("reread", "whole read + rewrite per chunk", True)):
            run = stream_through_store(src, Path(tmp) / key, reread=reread)
            times, q = run["times"], max(1, len(run["times"]) // 4)
            first, last = sum(times[:q]) / q, sum(times[-q:]) / q
            got[key] = (sum(times), first, last)
            assert run["found"] == n, (key, run["found"])
            print(f"{name:<34} {sum(times):>8.2f} {first:>9.3f} {last:>9.3f} {run['reads']['rows']:>10,} "
                  f"{run['reads']['bytes'] / 2**20:>9.1f} {run['written']:>13,} {run['parts']:>10}")
        (t_i, f_i, l_i), (t_r, f_r, l_r) = got["index"], got["reread"]
        print(f"last/first quarter's chunk time: {l_i / f_i:.2f}x with the index, {l_r / f_r:.2f}x re-reading; "
              f"the index at {t_r / t_i:.2f}x the baseline's speed; every record found by a new process in both")


# ------------------------------------------------------------------------------------------- main
SECTIONS = {"fl": "facility location on a sparse kernel", "convert": "streaming data convert",
            "store": "streamed scoring's score store: cost per chunk and I/O",
            "ray": "the Ray executor's overhead against local (benchmarks/ray_overhead.py)"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help=f"FL at n = {', '.join(map(str, FL_QUICK))}; convert {CONVERT_QUICK:,} records; the score "
                         f"store on {STORE_QUICK:,}; Ray overhead on 64 records")
    ap.add_argument("--only", choices=list(SECTIONS), action="append", help="run only these sections (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--knn-index", choices=["auto", "exact", "ivf", "lists"], default="auto",
                    help="the FL section's k-NN search (as the methods' knn_index param): auto (exact up to 20,000 "
                         "points, lists above), exact, ivf or lists (default: auto)")
    ap.add_argument("--nprobe", type=int, default=16, help="ivf/lists: lists searched per query (default: 16)")
    ap.add_argument("--data", choices=["clustered", "uniform"], default="clustered",
                    help="the FL section's embeddings: a mixture of n / 100 Gaussian clusters (default), or uniformly "
                         "random unit vectors (the worst case for an approximate index)")
    ap.add_argument("--worker", choices=["fl"], help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "fl":
        print(json.dumps(fl_worker(args.n, args.seed, args.knn_index, args.nprobe, args.data)))
        return

    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} (other jobs share the cores when above 0)")
    sections = args.only or list(SECTIONS)
    if "fl" in sections:
        import torch

        peak = measure_peak(torch.float32, "cpu")
        print(f"measured peak: {peak / 1e9:,.1f} GFLOP/s (float32 matmul on cpu)")
        fl_section(args, peak)
    if "convert" in sections:
        convert_section(args)
    if "store" in sections:
        store_section(args)
    if "ray" in sections:
        from ray_overhead import QUICK, RECORDS, ray_section

        ray_section(records=QUICK if args.quick else RECORDS)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
