"""The executor seam: who computes a runner's pending batches.

- ``local``: this process, batch after batch (the default);
- ``ray``: Ray actors that each hold one model (:mod:`.ray_executor`, the ``ray`` extra).

An executor's :meth:`Executor.run` yields each finished batch's stamped rows after they are stored
(:func:`~.runner.finish_batch`), in any order; the runner assembles them. Work without a
:class:`~.runner.Recipe` cannot leave this process, and every executor runs it locally.
"""

from __future__ import annotations

from typing import Any, Iterator

from ..cache import ScoreStore
from .options import RuntimeOptions
from .runner import BatchWork, finish_batch


class Executor:
    name = ""

    def run(self, work: BatchWork, store: ScoreStore | None) -> Iterator[list[dict[str, Any]]]:
        raise NotImplementedError


class LocalExecutor(Executor):
    """Runs every batch in this process, in the plan's order."""

    name = "local"

    def run(self, work: BatchWork, store: ScoreStore | None) -> Iterator[list[dict[str, Any]]]:
        for idx in work.batches:
            batch = [work.records[i] for i in idx]
            yield finish_batch(batch, work.compute(batch), store)


_LOCAL = LocalExecutor()


def make_executor(options: RuntimeOptions) -> Executor:
    """The executor the options name (Ray is imported only when asked for)."""
    if options.executor == "local":
        return _LOCAL
    from .ray_executor import ray_executor

    return ray_executor(options)
