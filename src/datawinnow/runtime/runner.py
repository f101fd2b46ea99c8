"""The cached, resumable batch runner: every per-record computation (scores, embeddings, generations,
log-likelihoods) goes through :func:`run_cached`.

Rows already in the score store are read back; the rest are cut into batches by the caller's plan
and handed to the context's executor (:mod:`.executor`), which computes them (in this process, or
in Ray actors that each hold one model) and stores every finished batch atomically before reporting
it. So a run killed at any point loses at most the batches in flight, and local and Ray runs share
one cache: either resumes what the other left.

A computation that may run in another process names a :class:`Recipe`: a module-level factory that
rebuilds the same ``compute`` from a :class:`~.context.Context` made from the run's options (a
closure over a loaded model cannot travel). Without a recipe a batch runs in this process.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..cache import ScoreStore
from ..data.record import Dataset, Record
from .options import RuntimeOptions
from .progress import progress_bar

log = logging.getLogger(__name__)

Compute = Callable[[list[Record]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Recipe:
    """How another process rebuilds a batch computation: ``factory`` (``'package.module:function'``) is
    called as ``factory(ctx, **kwargs)`` with a context made from the run's options and returns
    ``compute(records) -> rows``. ``kwargs`` must be picklable (plain data, or a Dataset)."""

    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, ctx) -> Compute:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)(ctx, **self.kwargs)


@dataclass
class BatchWork:
    """What an executor runs: ``batches`` (index lists into ``records``) of one computation, and where
    its rows are stored (the score store of ``scorer``/``params``/``identity`` under ``cache_dir``).

    ``options``: what a worker rebuilds ``recipe``'s resources from (:meth:`Context.worker_options`; None:
    the work cannot leave this process); ``expect``: the identities of the resources this process loaded,
    which a worker's must match."""

    scorer: str
    params: dict[str, Any]
    identity: str | None
    records: list[Record]
    batches: list[list[int]]
    compute: Compute
    recipe: Recipe | None = None
    use_cache: bool = True
    cache_dir: str | None = None
    options: RuntimeOptions | None = None
    expect: dict[str, str] = field(default_factory=dict)

    def open_store(self) -> ScoreStore | None:
        if not self.use_cache:
            return None
        return ScoreStore(self.scorer, self.params, self.identity,
                          root=Path(self.cache_dir) if self.cache_dir else None)


def finish_batch(records: Sequence[Record], rows: Sequence[dict[str, Any]], store: ScoreStore | None) -> list[dict[str, Any]]:
    """Rows stamped with their record's id and content key, stored (atomically) when there is a store."""
    if len(rows) != len(records):
        raise RuntimeError(f"a batch computation returned {len(rows)} rows for {len(records)} records")
    stamped = [{**row, "id": r.id, "_key": r.content_key()} for r, row in zip(records, rows)]
    if store is not None:
        store.put(stamped)
    return stamped


def run_cached(
    dataset: Dataset | Sequence[Record],
    *,
    scorer: str,
    params: dict[str, Any],
    identity: str | None,
    compute: Compute,
    plan: Callable[[list[Record]], Iterable[list[int]]],
    ctx,
    recipe: Recipe | None = None,
    complete: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for every record: cached ones read back, the rest computed batch by batch and stored.

    ``plan(todo)`` yields batches as index lists into ``todo`` (e.g. length-sorted); ``compute(batch)``
    returns one row per record (a dict of JSON numbers); ``recipe`` rebuilds ``compute`` in another
    process (the Ray executor). Each finished batch is stored atomically before it is reported, so an
    interrupted run loses only the batches in flight. A progress bar shows rate and ETA; the last
    log line reports samples/s.

    ``complete(row)``: whether a cached row holds everything this run needs (default: any row does); a
    record whose row lacks something is computed again, and ``compute`` finds the row in the store (the
    IFD losses keep one row per record and add each empty prompt's loss to it).
    """
    options = ctx.options
    work = BatchWork(scorer, params, identity, [], [], compute, recipe, options.use_cache, options.cache_dir)
    if recipe is not None:
        work.options, work.expect = ctx.worker_options(), ctx.loaded_identities()
    store = work.open_store()
    rows: dict[str, dict[str, Any]] = {}
    for r in dataset:
        hit = store.lookup(r.id, r.content_key()) if store is not None else None
        if hit is not None and (complete is None or complete(hit)):
            rows[r.id] = hit
        else:
            work.records.append(r)
    t0 = time.perf_counter()
    if work.records:
        work.batches = [list(idx) for idx in plan(work.records)]
        bar = progress_bar(len(work.records), f"{scorer}", options.progress)
        try:
            for stamped in ctx.executor.run(work, store):
                for row in stamped:
                    rows[row["id"]] = row
                bar.update(len(stamped))
        finally:
            bar.close()
        if store is not None:
            store.compact()
    return [rows[r.id] for r in dataset], run_summary(scorer, len(dataset), len(work.records), t0)


def run_summary(scorer: str, n_total: int, n_computed: int, t0: float, *, extra: dict[str, Any] | None = None,
                detail: str = "") -> dict[str, Any]:
    """A cached run's info dict (computed, cached, ``extra``, seconds, rate), logged when anything was computed;
    ``detail`` goes inside the log line's parentheses."""
    seconds = time.perf_counter() - t0
    info = {"computed": n_computed, "cached": n_total - n_computed, **(extra or {}), "seconds": round(seconds, 3),
            "samples_per_s": round(n_computed / seconds, 3) if n_computed and seconds > 0 else None}
    if n_computed:
        log.info(f"{scorer}: scored {n_computed} samples in {seconds:.1f} s ({n_computed / seconds:.2f} samples/s"
                 f"{detail}); {info['cached']} from cache")
    return info


def sequential_plan(batch_size: int) -> Callable[[Sequence[Record]], Iterable[list[int]]]:
    def plan(todo: Sequence[Record]) -> Iterable[list[int]]:
        return [list(range(k, min(k + batch_size, len(todo)))) for k in range(0, len(todo), batch_size)]

    return plan
