"""k-NN search over k-means lists of a fixed size, searched list by list with matrix products (``index="lists"``).

Lists (:func:`train_centres`, :func:`lists_of`): the base is cut into ``nlist = n / list_size`` lists by spherical k-means,
trained on a seeded sample of ``TRAIN_PER_LIST`` points a list. The centres start from a two-level cut
(about ``sqrt(nlist)`` group centres, then each group's share of the sample cut into its share of the
lists: each sample point meets about ``2 sqrt(nlist)`` centres, not ``nlist``) and are then refined by
``REFINE`` Lloyd iterations over all lists at once, so lists move across the first cut's borders.

Search (:func:`lists_blocks`, :func:`iter_search`): each query's ``nprobe`` most similar centres are found by one matrix product with
all the centres (a block of queries at a time); then every query is compared, exactly, with the points of
those lists. The comparisons go list by list: a chunk of queries (ordered by their nearest list, so
neighbouring queries share lists) is inverted into, for each list, the queries that probe it, and each
list's points meet those queries in one matrix product. A list is read once per chunk rather than once
per query, so the scans run at matrix-product speed instead of the memory speed of a per-query scan,
and each query's best ``k`` of each list it probes are merged at the end. Centre scores and list scans
run one thread per core, each matrix product on one core (numpy releases the GIL).

Work per query: ``nprobe * list_size`` point comparisons (fixed: about 1,600 at the defaults, whatever n is)
and ``nlist`` centre comparisons, ``d`` multiply-adds each. The centre comparisons grow with n, so the
whole search is ``n^2 / list_size`` in the end; at the default list size of 100 they were the smaller part
up to about 250,000 points here (2 cores: 0.9 s against 2.6 s of scans at 100,000, 10.7 s against 9.6 s at
300,000), and they are a hundredth of the exact search's work at any n. Training: ``REFINE`` passes of
``40 nlist`` sample points against ``nlist`` centres.

Approximate, like any partition index: a true neighbour in a list not probed is missed (recall is high on
clustered data, as sentence embeddings are, and lowest on uniformly random points). With ``nprobe >=
nlist`` every list is probed and the answer is the exact one. Deterministic (seeded samples and initial
centres; the rest is matrix products and stable sorts), and numpy only: no faiss needed.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

LIST_SIZE = 100  # base points a list, on average
TRAIN_PER_LIST = 40  # the k-means sample: this many points a list (at most the whole base)
ITERATIONS = 8  # Lloyd iterations of each k-means of the two-level cut
REFINE = 2  # Lloyd iterations over all lists after it
SCORE_BLOCK = 8192  # points scored against all centres at a time ...
SCORE_ENTRIES = 2**24  # ... fewer when their scores would pass this many (64 MiB)
QUERY_CHUNK = 65536  # queries inverted into lists at a time ...
CHUNK_ENTRIES = 2**23  # ... fewer when their candidates (nprobe * k each, 12 bytes) would pass this many
MAX_WORKERS = 8  # threads scanning lists at once (one per core, at most this many)
SEED = 0


@dataclass(frozen=True)
class Lists:
    """Base points ``order[starts[j]:starts[j + 1]]`` form list ``j``; ``centres[j]`` is its unit centre."""

    centres: np.ndarray
    order: np.ndarray
    starts: np.ndarray

    @property
    def nlist(self) -> int:
        return len(self.centres)


def default_nlist(n_base: int, list_size: int = LIST_SIZE) -> int:
    """``n_base / list_size`` lists (at least one)."""
    return max(1, round(n_base / list_size))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1)).astype(np.float32)


def _sums(x: np.ndarray, label: np.ndarray, k: int) -> np.ndarray:
    """Row sums of ``x`` per label, ``[k, d]`` (zero rows for labels no row has): a sparse one-hot product."""
    from scipy import sparse

    onehot = sparse.csr_matrix((np.ones(len(label), dtype=np.float32), (label, np.arange(len(label)))),
                               shape=(k, len(label)))
    return np.asarray(onehot @ x, dtype=np.float32)


def _top(sims: np.ndarray, k: int, ids: np.ndarray | None = None) -> np.ndarray:
    """The columns of each row's ``k`` largest values (``k <= width``), unordered; a value equal to the ``k``-th
    left out goes to the smaller id (``ids``, the column's by default) as in the exact search."""
    if k >= sims.shape[1]:
        return np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
    cols = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(sims, cols, axis=1)
    cut = vals.min(axis=1, keepdims=True)
    tied = np.flatnonzero((sims == cut).sum(axis=1) > (vals == cut).sum(axis=1))
    if len(tied):  # an equal value left out at the cut (duplicates): these rows ordered in full
        order = np.argsort(-sims[tied], axis=1, kind="stable") if ids is None else \
            np.lexsort((ids[tied], -sims[tied]), axis=1)
        cols[tied] = order[:, :k]
    return cols


def nearest_centres(x: np.ndarray, centres: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` most similar centres ``[m, k]`` (unordered but for the first, the most similar): blocks of
    rows scored by one thread per core, each matrix product on one core."""
    from threadpoolctl import threadpool_limits

    k = min(k, len(centres))
    out = np.empty((len(x), k), dtype=np.int64)
    block = max(64, min(SCORE_BLOCK, SCORE_ENTRIES // max(1, len(centres))))

    def score(s: int) -> None:
        sims = x[s:s + block] @ centres.T
        if k == 1:
            out[s:s + len(sims), 0] = np.argmax(sims, axis=1)
            return
        cols = np.array(_top(sims, k))
        first = np.argmax(np.take_along_axis(sims, cols, axis=1), axis=1)  # the nearest goes first: it orders
        rows = np.arange(len(cols))  # the queries and assigns the base
        cols[rows, 0], cols[rows, first] = cols[rows, first], cols[rows, 0]
        out[s:s + len(cols)] = cols

    starts = range(0, len(x), block)
    workers = min(_workers(), len(starts))
    if workers <= 1:
        for s in starts:
            score(s)
        return out
    with ThreadPoolExecutor(workers) as pool, threadpool_limits(1):
        list(pool.map(score, starts))
    return out


def spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iterations: int = ITERATIONS,
                     centres: np.ndarray | None = None) -> np.ndarray:
    """``k`` unit centres of the unit rows ``x`` (``k <= len(x)``): Lloyd iterations on cosine similarity from
    ``centres`` or ``k`` distinct seeded rows; a centre left without points moves to the row least similar to
    its centre."""
    if centres is None:
        centres = x[np.sort(rng.choice(len(x), size=k, replace=False))].copy()
    for _ in range(iterations):
        label = nearest_centres(x, centres, 1)[:, 0]
        sums = _sums(x, label, k)
        empty = np.flatnonzero(np.bincount(label, minlength=k) == 0)
        if len(empty):
            fit = np.einsum("ij,ij->i", x, centres[label])
            sums[empty] = x[np.argsort(fit, kind="stable")[:len(empty)]]
        centres = _unit(sums)
    return centres


def train_centres(base: np.ndarray, nlist: int, *, seed: int = SEED) -> np.ndarray:
    """The ``nlist`` unit list centres of the unit rows ``base`` (capped at ``len(base)``; see the module
    docstring)."""
    n = len(base)
    nlist = max(1, min(int(nlist), n))
    rng = np.random.default_rng([seed, n, nlist])
    size = min(n, TRAIN_PER_LIST * nlist)
    sample = base if size == n else base[np.sort(rng.choice(n, size=size, replace=False))]
    groups = max(1, min(nlist, round(math.sqrt(nlist))))
    tops = spherical_kmeans(sample, groups, rng)
    label = nearest_centres(sample, tops, 1)[:, 0]
    counts = np.bincount(label, minlength=groups)
    # each group's share of the lists: at least one, at most its sample, the remainders to the largest fractions
    share = counts * nlist / len(sample)
    per = np.maximum(1, np.floor(share)).astype(np.int64)
    for g in np.argsort(-(share - np.floor(share)), kind="stable")[:max(0, nlist - int(per.sum()))]:
        per[g] += 1
    per = np.minimum(per, np.maximum(counts, 1))
    parts = [spherical_kmeans(sample[label == g], int(per[g]), rng) if counts[g] else tops[g:g + 1]
             for g in range(groups)]
    centres = np.concatenate(parts)
    return spherical_kmeans(sample, len(centres), rng, iterations=REFINE, centres=centres)


def lists_of(centres: np.ndarray, list_of: np.ndarray) -> Lists:
    """The lists holding each base point ``i`` in list ``list_of[i]``."""
    order = np.argsort(list_of, kind="stable")
    starts = np.zeros(len(centres) + 1, dtype=np.int64)
    np.cumsum(np.bincount(list_of, minlength=len(centres)), out=starts[1:])
    return Lists(centres, order.astype(np.int64), starts)


def _workers() -> int:
    try:
        return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def iter_search(queries: np.ndarray, base: np.ndarray, lists: Lists, probes: np.ndarray, k: int, *,
                chunk: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each query's ``k`` most similar base points among the lists in its row of ``probes``, a chunk of queries
    at a time: yields (query rows, indices ``[r, k]``, similarities), unordered (:func:`~.knn.knn` orders them),
    ties at the cut to the smaller index; ``-1`` and ``-inf`` where the probed lists hold fewer than ``k`` points. The lists of a chunk are
    searched by one thread per core, each matrix product on one core (numpy releases the GIL)."""
    from threadpoolctl import threadpool_limits

    m, p = probes.shape
    chunk = max(64, min(chunk or QUERY_CHUNK, CHUNK_ENTRIES // max(1, p * k)))
    sizes = np.diff(lists.starts)
    by_first = np.argsort(probes[:, 0], kind="stable")  # queries sharing lists follow one another
    workers = _workers()
    with ThreadPoolExecutor(workers) as pool, threadpool_limits(1 if workers > 1 else None):
        for s in range(0, m, chunk):
            rows = by_first[s:s + chunk]
            c = len(rows)
            got_i = np.full((c, p, k), -1, dtype=np.int64)
            got_v = np.full((c, p, k), -np.inf, dtype=np.float32)
            flat = probes[rows].reshape(-1)
            pairs = np.flatnonzero(sizes[flat] > 0)
            pairs = pairs[np.argsort(flat[pairs], kind="stable")]  # (query, slot) pairs, list by list
            heads, first = np.unique(flat[pairs], return_index=True)
            spans = list(zip(heads, first, np.append(first[1:], len(pairs))))

            def scan(part: list[tuple[int, int, int]]) -> None:  # each (query, slot) cell is written once
                for j, a, b in part:
                    members = lists.order[lists.starts[j]:lists.starts[j + 1]]
                    q, slot = np.divmod(pairs[a:b], p)
                    sims = queries[rows[q]] @ base[members].T
                    cols = _top(sims, min(k, len(members)))  # members ascend: ties to the smaller index
                    got_i[q, slot, :cols.shape[1]] = members[cols]
                    got_v[q, slot, :cols.shape[1]] = np.take_along_axis(sims, cols, axis=1)

            if workers == 1:
                scan(spans)
            else:
                list(pool.map(scan, [spans[w::workers] for w in range(workers)]))
            cand_i, cand_v = got_i.reshape(c, p * k), got_v.reshape(c, p * k)
            cols = _top(cand_v, k, cand_i)
            yield rows, np.take_along_axis(cand_i, cols, axis=1), np.take_along_axis(cand_v, cols, axis=1)


def lists_blocks(queries: np.ndarray, base: np.ndarray, k: int, *, nlist: int, nprobe: int,
                 same: bool) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
    """The search of :func:`datawinnow.kernels.knn.knn` with ``index="lists"``: yields (query rows, indices,
    similarities, rows finished); ``same``: the queries are the base (its probes give its lists too)."""
    centres = train_centres(base, nlist)
    base_probes = nearest_centres(base, centres, nprobe if same else 1)
    lists = lists_of(centres, base_probes[:, 0])
    probes = base_probes if same else nearest_centres(queries, centres, nprobe)
    for rows, idx, sims in iter_search(queries, base, lists, probes, k):
        yield rows, idx, sims, len(rows)
