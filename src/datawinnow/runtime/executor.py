"""The executor seam: who computes a runner's pending batches.

- ``local``: this process, batch after batch (the default);
- ``ray``: Ray actors that each hold one model (:mod:`.ray_executor`, the ``ray`` extra).

An executor's :meth:`Executor.run` yields each finished batch's stamped rows after they are stored
(:func:`~.runner.finish_batch`), in any order; the runner assembles them. :meth:`Executor.run_calls`
runs work that is not rows of records (a kernel's blocks, :class:`CallWork`), yielding each call's
result as it finishes. Work without a :class:`~.runner.Recipe` (or whose resources the options cannot
name) cannot leave this process, and every executor runs it locally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..cache import ScoreStore
from .options import RuntimeOptions
from .runner import BatchWork, Recipe, finish_batch


@dataclass
class CallWork:
    """Calls of one computation whose results are not per-record rows (a kernel's blocks): ``compute(*args)``
    for each ``args`` in ``calls``, in this process; another process builds the same function with
    ``recipe.build(ctx)`` from ``options`` (as for :class:`~.runner.BatchWork`, whose ``options`` and
    ``expect`` these fields mirror). Storing a result is the computation's own business. ``unit`` names a
    call in log lines (``block``)."""

    name: str
    calls: list[tuple]
    compute: Callable[..., Any]
    recipe: Recipe | None = None
    options: RuntimeOptions | None = None
    expect: dict[str, str] = field(default_factory=dict)
    cache_dir: str | None = None
    unit: str = "call"

    @classmethod
    def for_context(cls, ctx, name: str, calls: list[tuple], compute: Callable[..., Any], recipe: Recipe | None,
                    unit: str = "call") -> "CallWork":
        """Work whose workers rebuild ``recipe`` from the options of ``ctx``."""
        return cls(name, calls, compute, recipe, ctx.worker_options() if recipe is not None else None,
                   ctx.loaded_identities(), ctx.cache_dir, unit)


class Executor:
    name = ""
    remote = False  # whether work may leave this process

    def run(self, work: BatchWork, store: ScoreStore | None) -> Iterator[list[dict[str, Any]]]:
        raise NotImplementedError

    def run_calls(self, work: CallWork) -> Iterator[tuple[int, Any]]:
        """``(k, compute(*work.calls[k]))`` for every call, in any order."""
        raise NotImplementedError


class LocalExecutor(Executor):
    """Runs every batch in this process, in the plan's order."""

    name = "local"

    def run(self, work: BatchWork, store: ScoreStore | None) -> Iterator[list[dict[str, Any]]]:
        for idx in work.batches:
            batch = [work.records[i] for i in idx]
            yield finish_batch(batch, work.compute(batch), store)

    def run_calls(self, work: CallWork) -> Iterator[tuple[int, Any]]:
        for k, args in enumerate(work.calls):
            yield k, work.compute(*args)


_LOCAL = LocalExecutor()


def make_executor(options: RuntimeOptions) -> Executor:
    """The executor the options name (Ray is imported only when asked for)."""
    if options.executor == "local":
        return _LOCAL
    from .ray_executor import ray_executor

    return ray_executor(options)
