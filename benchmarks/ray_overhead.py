"""The Ray executor's overhead against the local executor on the same pool.

    .venv/bin/python benchmarks/ray_overhead.py              # IFD on 256 records, the tiny random Llama
    .venv/bin/python benchmarks/ray_overhead.py --quick      # 64 records
    .venv/bin/python benchmarks/ray_overhead.py --model smollm2 --records 128
    .venv/bin/python benchmarks/scale.py --only ray          # the same, as a section of scale.py

Scores IFD (fp32 on the CPU, fixed batches of 8, max_length 256) on the first N records of
``bundled:alpaca_en_demo`` as a user does, ``datawinnow.score(..., executor=...)``, each run into an empty
cache folder (sharing the dense copies of the embedded models). The default model is the tiny random Llama of ``tests/conftest.py`` (hidden 64, 2 layers):
the model costs almost nothing, so what is measured is the executor's own cost; ``--model`` runs a real one.

Printed, all measured in this run:

- ``local``: the local executor (this process), with torch's default threads and with one thread (on a
  tiny model, or a busy machine, one thread can be the faster); the faster one is the baseline;
- ``ray startup``: starting a local Ray (every CPU of the machine, no dashboard), as the first Ray run does;
- ``ray``: the same scoring through Ray once Ray runs: an actor pool (one actor per CPU, one torch thread
  each) starts, every actor imports torch and loads the model, the batches go out as Ray Data rows and
  come back; ``ray / local`` is the ratio, and the seconds beyond local the overhead;
- ``ray (again)``: a second Ray run in the same process (a new pool, Ray already up): the per-run part.

The scores of the Ray runs are checked equal to the local ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time

from _common import machine, tiny_model_dir

RECORDS, QUICK = 256, 64


def ray_section(*, records: int = RECORDS, model: str | None = None) -> dict:
    """Time the local executor, Ray's start, and the Ray executor on ``records`` IFD scores; print and return them."""
    import numpy as np
    import torch

    import datawinnow
    from datawinnow.cache import cache_root
    from datawinnow.runtime import RuntimeOptions
    from datawinnow.runtime.ray_executor import connect, import_ray

    ray = import_ray()
    model_dir = model or tiny_model_dir()
    pool = datawinnow.load("bundled:alpaca_en_demo")[:records]
    opts = dict(model=model_dir, device="cpu", dtype="fp32", batch_size=8, max_length=256, progress=False)
    threads = torch.get_num_threads()
    out: dict = {"records": len(pool), "model": "tiny random Llama" if model is None else model}
    models = cache_root() / "models"  # the dense copies of the embedded models, shared by every run's cache
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dw-bench-ray-") as tmp:
        def timed(name: str, **more):
            folder = os.path.join(tmp, name)
            os.makedirs(folder)
            os.symlink(models, os.path.join(folder, "models"), target_is_directory=True)
            t0 = time.perf_counter()
            table = datawinnow.score(pool, "ifd", cache_dir=folder, **opts, **more)
            return table, time.perf_counter() - t0

        local, out["local_s"] = timed("local")
        torch.set_num_threads(1)
        try:
            local1, out["local_1_thread_s"] = timed("local-1")
        finally:
            torch.set_num_threads(threads)
        base = min(out["local_s"], out["local_1_thread_s"])
        if ray.is_initialized():
            ray.shutdown()
        t0 = time.perf_counter()
        connect(RuntimeOptions(executor="ray", progress=False))
        out["startup_s"] = time.perf_counter() - t0
        out["cpus"] = int(ray.cluster_resources().get("CPU", 0))
        try:
            first, out["ray_s"] = timed("ray", executor="ray")
            again, out["ray_again_s"] = timed("ray-again", executor="ray")
        finally:
            ray.shutdown()
    # one thread per actor, as in the local one-thread run: equal to it exactly
    out["equal"] = bool(np.array_equal(first.score, local1.score) and np.array_equal(again.score, local1.score))
    n = out["records"]
    print(f"Ray executor overhead: IFD on {n} records ({out['model']}, fp32 cpu, batches of 8)")
    for label, key, t in (("local", "local_s", threads), ("local", "local_1_thread_s", 1)):
        print(f"  {label:<15} {out[key]:7.2f} s  ({n / out[key]:8.1f} records/s, {t} torch thread{'s' * (t != 1)})")
    print(f"  ray startup     {out['startup_s']:7.2f} s  (local Ray, {out['cpus']} CPUs)")
    for label, key in (("ray", "ray_s"), ("ray (again)", "ray_again_s")):
        print(f"  {label:<15} {out[key]:7.2f} s  ({n / out[key]:8.1f} records/s, {out['cpus']} actors x 1 thread): "
              f"ray / local = {out[key] / base:.1f}x, +{out[key] - base:.1f} s")
    print(f"  scores equal to local: {out['equal']}")
    if not out["equal"]:
        raise SystemExit("the Ray executor's scores differ from the local executor's")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=None, help=f"pool size (default {RECORDS}; --quick {QUICK})")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK} records")
    ap.add_argument("--model", default=None, help="a model folder, hub id or smollm2 (default: the tiny random Llama)")
    args = ap.parse_args()
    logging.getLogger("datawinnow").setLevel(logging.WARNING)
    print(f"machine: {machine()}")
    ray_section(records=args.records or (QUICK if args.quick else RECORDS), model=args.model)


if __name__ == "__main__":
    sys.exit(main())
