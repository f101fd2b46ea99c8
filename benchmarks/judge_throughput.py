"""Judge and DEITA-filter throughput, each against a baseline measured in the same run.

1. Remote judge: requests/s with ``--concurrency`` requests in flight vs one at a time, against an
   in-process OpenAI-compatible server on 127.0.0.1 that answers after ``--latency`` seconds.
2. Local judge: ratings/s of the digit read-out (one forward pass, ``readout=expected``) vs text
   generation (``readout=text``, ``--max-tokens`` new tokens) on the embedded SmolLM2.
3. DEITA representation filter: candidates/s of the chunked walk vs the one-by-one walk (chunk 1),
   on random embeddings with near-duplicate groups.

    .venv/bin/python benchmarks/judge_throughput.py            # a few minutes on a 2-core CPU
    .venv/bin/python benchmarks/judge_throughput.py --quick    # seconds
    .venv/bin/python benchmarks/judge_throughput.py --model DIR   # the local judge: any local model folder

The local-judge part prints achieved FLOP/s and the fraction of the peak measured in the same run
(benchmarks/_common.py); the remote judge and the filter run no model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from _common import FlopCounter, add_model_options, describe_model, describe_peak, flops_line  # noqa: E402


def serve(latency: float) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(latency)
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "4"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/v1"


def bench_remote(n: int, latency: float, concurrency: int) -> None:
    from datawinnow.backends.judge import load_judge

    httpd, url = serve(latency)
    convs = [[{"role": "user", "content": f"rate {i}"}] for i in range(n)]
    rates = {}
    for c in (1, concurrency):
        judge = load_judge("remote", model="bench", base_url=url, concurrency=c)
        t0 = time.perf_counter()
        judge.chat(convs, max_tokens=4)
        rates[c] = n / (time.perf_counter() - t0)
    httpd.shutdown()
    print(f"remote judge ({n} requests, {latency * 1000:.0f} ms latency): concurrency 1: {rates[1]:.1f} req/s; "
          f"concurrency {concurrency}: {rates[concurrency]:.1f} req/s; ratio {rates[concurrency] / rates[1]:.2f}x")


def bench_local(n: int, max_tokens: int, model: str | None) -> None:
    from datawinnow.backends import CausalLM
    from datawinnow.data import load
    from datawinnow.registry import SCORERS
    from datawinnow.runtime.context import Context

    ds = load("bundled:alpaca_en_demo")
    short = sorted(ds[:200], key=lambda r: (len(r.prompt) + len(r.output), r.id))[:n]
    pool = ds.subset([r.id for r in short])
    lm = CausalLM.load(model, device="cpu", max_length=512)
    print(f"local judge: {describe_model(lm)}")
    peak = describe_peak(lm)
    ctx = Context(model=lm, batch_size=8, use_cache=False, progress=False)
    rates = {}
    for readout in ("expected", "text"):
        params = {"readout": readout, "on_unparsable": "drop", "max_tokens": max_tokens}
        with FlopCounter(lm) as flops:
            t0 = time.perf_counter()
            table = SCORERS.get("alpagasus")(**params).score(pool, ctx)
            secs = time.perf_counter() - t0
        rates[readout] = n / secs
        unscored = int(np.isnan(table.score).sum())
        print(f"  alpagasus readout={readout}: {rates[readout]:.2f} ratings/s ({unscored} of {n} replies had no score; "
              f"{flops_line(flops.flops, secs, peak)})")
    print(f"local judge ({lm.identity.split('@')[0]}, {n} samples): digit read-out {rates['expected']:.2f}/s vs "
          f"generation of {max_tokens} tokens {rates['text']:.2f}/s; ratio {rates['expected'] / rates['text']:.2f}x")


def bench_filter(n: int, dim: int, budget: int) -> None:
    from datawinnow.select.repr_filter import representation_filter

    rng = np.random.default_rng(0)
    groups = rng.normal(size=(n // 4, dim)).astype(np.float32)
    emb = np.repeat(groups, 4, axis=0) + 0.3 * rng.normal(size=(n // 4 * 4, dim)).astype(np.float32)
    order = list(rng.permutation(len(emb)))
    times, results = {}, {}
    for chunk in (1, 512):
        t0 = time.perf_counter()
        results[chunk] = representation_filter(emb, order, budget, 0.9, chunk=chunk)
        times[chunk] = time.perf_counter() - t0
    assert results[1].kept == results[512].kept
    ex = results[512].examined
    print(f"DEITA filter (n={len(emb)}, d={dim}, budget {budget}, {ex} candidates examined, "
          f"{len(results[512].rejected)} rejected): one by one {ex / times[1]:.0f} cand/s; chunked "
          f"{ex / times[512]:.0f} cand/s; ratio {times[1] / times[512]:.2f}x (identical kept sets)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes (4 local ratings): well under a minute")
    add_model_options(p, tiny=False)
    p.add_argument("--skip-local", action="store_true", help="skip the local-judge comparison")
    args = p.parse_args()
    if args.quick:
        bench_remote(n=16, latency=0.05, concurrency=8)
        bench_filter(n=4000, dim=128, budget=400)
        if not args.skip_local:
            bench_local(n=4, max_tokens=16, model=args.model)
    else:
        bench_remote(n=64, latency=0.1, concurrency=8)
        bench_filter(n=20000, dim=384, budget=2000)
        if not args.skip_local:
            bench_local(n=16, max_tokens=32, model=args.model)


if __name__ == "__main__":
    main()
