"""Greedy maximisers of a monotone submodular objective under a cardinality budget.

- :func:`naive_greedy`: every step evaluates every remaining candidate, picks the best.
- :func:`lazy_greedy` (Minoux): a priority queue of stale upper bounds; a candidate is re-evaluated
  only when it reaches the top (the stale bounds at the top are refreshed in small vectorised
  batches), and picked when its fresh gain is still the top. By submodularity
  gains only shrink, so the picks and gains are *identical* to naive greedy (ties go to the smallest
  candidate index in both).
- :func:`stochastic_greedy` (Mirzasoleiman et al. 2015): each step evaluates a random sample of
  ``ceil((n / k) log(1 / epsilon))`` remaining candidates (seeded); ``1 - 1/e - epsilon`` in expectation.

None stops at zero gain: the budget is always filled (SPEC section 3). Each returns the picks in
order with each pick's marginal gain.
"""

from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import ConfigError
from .objectives import Objective


@dataclass
class GreedyResult:
    picks: list[int]
    gains: list[float]
    value: float
    evaluations: int  # single-candidate gain evaluations
    seconds: float
    optimizer: str
    info: dict = field(default_factory=dict)


def _check_budget(obj: Objective, k: int) -> int:
    k = int(k)
    if not 0 <= k <= obj.n:
        raise ConfigError(f"budget {k} is outside [0, {obj.n}] for {obj.n} candidates")
    return k


def _bar(k: int, desc: str, progress: bool):
    from ...runtime.progress import progress_bar

    return progress_bar(k, desc, progress, unit="pick")


def naive_greedy(obj: Objective, k: int, *, progress: bool = False) -> GreedyResult:
    """Evaluate all remaining candidates at every step (O(k n) evaluations)."""
    k = _check_budget(obj, k)
    t0 = time.perf_counter()
    obj.reset()
    taken = np.zeros(obj.n, dtype=bool)
    picks, gains, evals = [], [], 0
    with _bar(k, "naive greedy", progress) as bar:
        for _ in range(k):
            g = obj.gains()
            evals += obj.n - len(picks)
            g[taken] = -np.inf
            j = int(np.argmax(g))  # first maximum: ties go to the smallest index
            gains.append(float(g[j]))
            obj.add(j, gains[-1])
            taken[j] = True
            picks.append(j)
            bar.update(1)
    return GreedyResult(picks, gains, obj.value, evals, time.perf_counter() - t0, "naive")


def lazy_greedy(obj: Objective, k: int, *, progress: bool = False, batch_size: int = 32) -> GreedyResult:
    """Minoux's accelerated greedy; same picks and gains as :func:`naive_greedy`.

    When the top of the queue is stale, up to ``batch_size`` stale bounds from the top are
    re-evaluated in one call (amortising the per-call cost); a candidate is picked only when its
    bound is fresh and on top, exactly as in the one-at-a-time algorithm.
    """
    k = _check_budget(obj, k)
    t0 = time.perf_counter()
    obj.reset()
    picks: list[int] = []
    gains: list[float] = []
    if k == 0:
        return GreedyResult(picks, gains, obj.value, 0, time.perf_counter() - t0, "lazy")
    first = obj.gains()
    evals = obj.n
    heap = [(-float(g), j) for j, g in enumerate(first)]
    heapq.heapify(heap)
    fresh = np.zeros(obj.n, dtype=np.int64)  # the step at which each bound was last computed
    step = 0
    with _bar(k, "lazy greedy", progress) as bar:
        while len(picks) < k:
            neg, j = heap[0]
            if fresh[j] == step:
                # a fresh gain at the top of the queue: no other bound (>= its true gain) beats it,
                # and an equal bound with a smaller index would sit above it: the naive argmax
                heapq.heappop(heap)
                obj.add(j, -neg)
                picks.append(j)
                gains.append(-neg)
                step += 1
                bar.update(1)
                continue
            # re-evaluate the stale bounds at the top together (one vectorised call); this changes
            # which bounds get refreshed, never which candidate is picked
            batch = []
            while heap and len(batch) < batch_size and fresh[heap[0][1]] != step:
                batch.append(heapq.heappop(heap)[1])
            fresh_gains = obj.gains(np.array(batch, dtype=np.int64))
            evals += len(batch)
            for c, g in zip(batch, fresh_gains):
                fresh[c] = step
                heapq.heappush(heap, (-float(g), c))
    return GreedyResult(picks, gains, obj.value, evals, time.perf_counter() - t0, "lazy",
                        info={"batch_size": batch_size})


def stochastic_greedy(obj: Objective, k: int, *, epsilon: float = 0.1, seed: int = 0,
                      progress: bool = False) -> GreedyResult:
    """Each step: the best of a seeded random sample of the remaining candidates."""
    k = _check_budget(obj, k)
    if not 0 < epsilon < 1:
        raise ConfigError(f"stochastic greedy: epsilon must be in (0, 1), got {epsilon}")
    t0 = time.perf_counter()
    obj.reset()
    rng = np.random.default_rng(seed)
    size = obj.n if k == 0 else max(1, math.ceil(obj.n / k * math.log(1 / epsilon)))
    available = np.ones(obj.n, dtype=bool)
    picks, gains, evals = [], [], 0
    with _bar(k, "stochastic greedy", progress) as bar:
        for _ in range(k):
            remaining = np.flatnonzero(available)
            sample = remaining if size >= len(remaining) else np.sort(rng.choice(remaining, size, replace=False))
            g = obj.gains(sample)
            evals += len(sample)
            best = int(np.argmax(g))
            j = int(sample[best])
            gains.append(float(g[best]))
            obj.add(j, gains[-1])
            available[j] = False
            picks.append(j)
            bar.update(1)
    return GreedyResult(picks, gains, obj.value, evals, time.perf_counter() - t0, "stochastic",
                        info={"sample_size": size, "epsilon": epsilon, "seed": seed})


OPTIMIZERS = {"naive": naive_greedy, "lazy": lazy_greedy, "stochastic": stochastic_greedy}


def maximize(obj: Objective, k: int, *, optimizer: str = "lazy", epsilon: float = 0.1, seed: int = 0,
             progress: bool = False) -> GreedyResult:
    """Run a named optimizer (``naive``, ``lazy`` or ``stochastic``) on an objective."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer '{optimizer}' (choose from {', '.join(OPTIMIZERS)})")
    if optimizer == "stochastic":
        return stochastic_greedy(obj, k, epsilon=epsilon, seed=seed, progress=progress)
    return OPTIMIZERS[optimizer](obj, k, progress=progress)
