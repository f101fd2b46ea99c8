"""The runtime layer: what every model-running layer above it (scores, kernels, select, train, evaluate) shares.

- :mod:`.options`: :class:`RuntimeOptions`, the validated settings of a run (model, embedder, judge,
  device, dtype, system prompt, lengths, batch and token budgets, seed, cache, progress, executor);
- :mod:`.context`: :class:`Context`, the lazily loaded resources (model, embedder, judge) built from them;
- :mod:`.runner`: :func:`run_cached`, the cached, resumable batch runner, and the picklable
  :class:`Recipe` that lets another process rebuild a batch computation;
- :mod:`.executor`: the executor seam (``local``, ``ray``) that runs a runner's pending batches;
- :mod:`.progress`: progress bars (library code logs; it does not print).

Nothing here imports argparse or a layer above it; the command line maps its option group onto
:class:`RuntimeOptions` (``datawinnow.cli_options``).
"""

from .context import Context
from .options import RuntimeOptions
from .runner import Recipe, run_cached, run_summary, sequential_plan

__all__ = ["Context", "Recipe", "RuntimeOptions", "run_cached", "run_summary", "sequential_plan"]
