"""The Ray executor on a local Ray with 2 CPUs: the same scores, kernels and answers as the local executor,
in the same cache (so either resumes the other's run), with errors raised as the same exception.

The reference of every comparison is the local executor run in this process, fp32 on the CPU, one torch
thread (the actors run one thread each): equality is exact.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

import datawinnow
from datawinnow.backends import CausalLM
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import DataError, MissingDependencyError
from datawinnow.runtime import Context, RuntimeOptions
from datawinnow.runtime.ray_executor import ActorPlan, plan_actors

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (2 CPUs, as a small CI runner has), shut down at the end."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pool():
    return datawinnow.load("bundled:alpaca_en_demo")[:24]


def run_options(model_dir: str, **more) -> dict:
    return dict(model=model_dir, device="cpu", dtype="fp32", batch_size=4, max_length=128, progress=False, **more)


# ------------------------------------------------------------------------------------------ actor plans
@pytest.mark.parametrize("given, cpus, gpus, items, expected", [
    ({}, 2, 0, 10, ActorPlan(2, 1.0, 0.0, 1, "auto")),                          # one actor per CPU
    ({"worker_threads": 4}, 16, 0, 10, ActorPlan(4, 4.0, 0.0, 4, "auto")),     # CPU slots of 4 threads
    ({"workers": 3}, 12, 0, 10, ActorPlan(3, 4.0, 0.0, 4, "auto")),            # the CPUs shared by 3 actors
    ({}, 64, 0, 5, ActorPlan(5, 1.0, 0.0, 1, "auto")),                         # never more actors than batches
    ({}, 32, 4, 100, ActorPlan(4, 1.0, 1.0, 1, "auto")),                       # one per GPU
    ({"device": "cuda:3", "workers": 2}, 32, 4, 100, ActorPlan(2, 1.0, 1.0, 1, "cuda")),  # its own GPU is cuda
    ({"device": "cpu"}, 8, 4, 100, ActorPlan(8, 1.0, 0.0, 1, "cpu")),          # --device cpu: no GPUs asked
])
def test_actor_plan(given, cpus, gpus, items, expected):
    assert plan_actors(RuntimeOptions(**given), cpus, gpus, items) == expected


def test_missing_ray_names_the_extra(monkeypatch):
    import sys

    from datawinnow.runtime.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r"datawinnow\[ray\]"):
        import_ray()


def test_a_model_handed_over_without_a_name_stays_in_this_process(tiny_model_dir, pool, caplog):
    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=128)
    lm.source = None  # e.g. a warmed-up model built in memory: no worker could load it
    ctx = Context(model=lm, batch_size=4, progress=False, executor="ray")
    assert ctx.worker_options() is None
    with caplog.at_level(logging.INFO, logger="datawinnow"):
        table = datawinnow.score(pool[:4], "ifd", ctx=ctx)
    assert table.info["computed"] == 4 and "computed in this process, not on Ray" in caplog.text


# ------------------------------------------------------------------------------------------ scores
def test_ifd_under_ray_equals_local_in_one_shared_cache(local_ray, tiny_model_dir, pool):
    local = datawinnow.score(pool, "ifd", use_cache=False, **run_options(tiny_model_dir))
    on_ray = datawinnow.score(pool, "ifd", executor="ray", **run_options(tiny_model_dir))
    assert on_ray.info["computed"] == len(pool) and on_ray.info["passes"] == {"conditioned": 24, "bare": 24}
    np.testing.assert_array_equal(on_ray.score, local.score)
    for name, values in local.parts.items():
        np.testing.assert_array_equal(on_ray.parts[name], values)
    # the actors stored their batches where a local run looks
    again = datawinnow.score(pool, "ifd", **run_options(tiny_model_dir))
    assert again.info["computed"] == 0 and again.info["cached"] == len(pool)
    np.testing.assert_array_equal(again.score, local.score)


def test_a_run_resumes_on_ray_from_what_a_local_run_left(local_ray, tiny_model_dir, pool, tmp_path):
    half = Dataset(pool.records[:12])
    for cache in ("a", "b"):  # the first half, as a stopped run left it, in two caches
        datawinnow.score(half, "ifd", cache_dir=str(tmp_path / cache), **run_options(tiny_model_dir))
    local = datawinnow.score(pool, "ifd", cache_dir=str(tmp_path / "a"), **run_options(tiny_model_dir))
    on_ray = datawinnow.score(pool, "ifd", executor="ray", cache_dir=str(tmp_path / "b"), **run_options(tiny_model_dir))
    assert on_ray.info["computed"] == 12 and on_ray.info["cached"] == 12
    np.testing.assert_array_equal(on_ray.score, local.score)
    # against one uninterrupted run: other batches (padding), so equal to float32 rounding
    reference = datawinnow.score(pool, "ifd", use_cache=False, **run_options(tiny_model_dir))
    np.testing.assert_allclose(on_ray.score, reference.score, rtol=1e-6)


def test_judged_scores_under_ray_equal_local(local_ray, tiny_model_dir, pool):
    scorer = {"readout": "expected"}  # the local judge on the context's model: digit probabilities
    local = datawinnow.score(pool, "alpagasus", params=scorer, use_cache=False, **run_options(tiny_model_dir))
    on_ray = datawinnow.score(pool, "alpagasus", params=scorer, executor="ray", **run_options(tiny_model_dir))
    assert on_ray.info["computed"] == len(pool)
    np.testing.assert_array_equal(on_ray.score, local.score)


def test_a_worker_error_is_raised_here_and_finished_batches_are_kept(local_ray, tiny_model_dir, pool):
    bad = Record(id="no-answer", instruction="", messages=[{"role": "user", "content": "Hello?"}])
    records = Dataset([*pool.records[:12], bad])  # batches of 4: the last one holds the bad record
    with pytest.raises(DataError, match="record 'no-answer' has no user turn followed by an assistant turn"):
        datawinnow.score(records, "alpagasus", params={"readout": "expected"}, executor="ray",
                         **run_options(tiny_model_dir))
    rerun = datawinnow.score(records[:12], "alpagasus", params={"readout": "expected"},
                             **run_options(tiny_model_dir))
    # each actor works through its batches in order, so the bad batch (the fourth) came after another one
    assert rerun.info["cached"] >= 4 and rerun.info["cached"] + rerun.info["computed"] == 12


def test_select_subsets_are_byte_identical(local_ray, tiny_model_dir, pool, tmp_path):
    from datawinnow.cli import main
    from datawinnow.data import write

    src = tmp_path / "pool.jsonl"
    write(pool, str(src))
    common = ["select", str(src), "--method", "ifd", "--budget", "8", "--model", tiny_model_dir, "--device", "cpu",
              "--dtype", "fp32", "--batch-size", "4", "--max-length", "128", "--quiet"]
    assert main([*common, "--out", str(tmp_path / "local.jsonl"), "--cache-dir", str(tmp_path / "c1")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray.jsonl"), "--cache-dir", str(tmp_path / "c2"),
                 "--executor", "ray"]) == 0
    assert any((tmp_path / "c2" / "scores").glob("ifd-*/scores.jsonl"))  # computed there, not read from c1
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()


# ------------------------------------------------------------------------------------------ DELIFT kernel
def test_utility_kernel_under_ray_equals_local(local_ray, tiny_model_dir, pool):
    from datawinnow.kernels.utility import utility_kernel

    data = Dataset(pool.records[:8])
    lctx = Context(**run_options(tiny_model_dir))
    rctx = Context(executor="ray", **run_options(tiny_model_dir))
    local = utility_kernel(lctx.model, data, data, block_size=3, use_cache=False, progress=False)
    on_ray = utility_kernel(rctx.model, data, data, block_size=3, ctx=rctx, progress=False)
    np.testing.assert_array_equal(np.asarray(on_ray.matrix), np.asarray(local.matrix))
    np.testing.assert_array_equal(on_ray.base, local.base)
    # the workers stored the blocks: a local run reads the assembled kernel back
    again = utility_kernel(lctx.model, data, data, block_size=3, ctx=lctx, progress=False)
    np.testing.assert_array_equal(np.asarray(again.matrix), np.asarray(local.matrix))

    # sparse, without a store: the blocks come back from the workers
    nb = np.array([[(i + 1) % 8, (i + 3) % 8] for i in range(8)])
    local = utility_kernel(lctx.model, data, data, mode="sparse", neighbour_idx=nb, block_size=3, use_cache=False,
                           progress=False)
    on_ray = utility_kernel(rctx.model, data, data, mode="sparse", neighbour_idx=nb, block_size=3, use_cache=False,
                            ctx=rctx, progress=False)
    assert on_ray.matrix.nnz == local.matrix.nnz == 16 and (on_ray.matrix != local.matrix).nnz == 0


# ------------------------------------------------------------------------------------------ generation
def test_evaluation_answers_under_ray_equal_local(local_ray, tiny_model_dir, pool):
    from datawinnow.evaluate.generate import GenerationParams, generate_cached

    items = Dataset(pool.records[:6])
    params = GenerationParams(max_new_tokens=6)
    lctx = Context(**run_options(tiny_model_dir, use_cache=False))
    rctx = Context(executor="ray", **run_options(tiny_model_dir))
    local, _ = generate_cached(lctx.model, items, params=params, ctx=lctx)
    on_ray, info = generate_cached(rctx.model, items, params=params, ctx=rctx)
    assert info["computed"] == 6 and on_ray == local
    # ICL-style prompts given by id travel to the workers too
    prompts = {r.id: f"Answer briefly: {r.instruction}" for r in items}
    local, _ = generate_cached(lctx.model, items, params=params, ctx=lctx, prompts=prompts, recipe={"prompt": "brief"})
    on_ray, _ = generate_cached(rctx.model, items, params=params, ctx=rctx, prompts=prompts, recipe={"prompt": "brief"})
    assert on_ray == local
