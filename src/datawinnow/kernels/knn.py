"""k-nearest-neighbour search by cosine similarity: exact (faiss or scikit-learn) or approximate (faiss IVF, or
numpy k-means lists of a fixed size).

``index="exact"``: every query against every base point (``n_queries * n_base * d`` multiply-adds, done by
BLAS): faiss ``IndexFlatIP`` when installed, scikit-learn's brute-force search otherwise. The base is
indexed once and the queries are searched a block at a time, so besides the inputs and the
``[n_queries, k]`` answer only one block's temporaries exist: a k-NN graph of n = 100,000 points takes
megabytes, not the 40 GB of their dense similarity matrix. Its time grows as ``n^2``.

``index="ivf"`` (faiss only): an inverted-file index (``IndexIVFFlat``, inner product). Spherical k-means
cuts the base into ``nlist`` lists (about ``4 sqrt(n_base)``, trained on a seeded sample of at most
``TRAIN_PER_LIST`` points a list); each query is compared with the ``nlist`` centroids and then, exactly,
with the points of its ``nprobe`` nearest lists. Queries are searched in the order of their nearest list
(queries probing the same lists follow one another, which keeps those lists in cache) and the answers are
put back in query order. The work is about ``n_queries (nlist + nprobe n_base / nlist) d``: ``n^1.5`` for
a pool searched against itself, against ``n^2`` exact. It is approximate: a true neighbour in a list not
probed is missed (recall is high on clustered data, as sentence embeddings are, and lowest on uniformly
random points, the worst case of any such index). With ``nprobe >= nlist`` every list is probed and the
answer is the exact one (up to float32 rounding between near-equal similarities). A query whose probed
lists hold fewer than ``k`` points (faiss then pads with -1) is searched again exactly, against the whole
base, so every row always has ``k`` neighbours. Memory: the index holds a copy of the base (``4 n_base d``
bytes), and each query's probed lists and their scores are kept for the search (``12 nprobe`` bytes a
query).

``index="lists"`` (numpy only, :mod:`.knn_lists`): k-means lists of a fixed size (``nlist = n_base / 100``);
each query's ``nprobe`` nearest lists are found by one matrix product with the centres and searched list
by list with matrix products. A query costs ``nprobe * 100`` point comparisons whatever n is, plus
``nlist`` centre comparisons (a hundredth of the exact search's). Approximate in the same way as ``ivf``.

``index="auto"``: exact while the queries or the base number at most ``AUTO_APPROX_MIN`` (the exact search
takes seconds there, and a small side makes it cheap whatever the other), ``lists`` above, with or without
faiss (at n = 100,000 it built the k-NN graph twice as fast as ``ivf`` and its time grew about linearly
from n = 10,000, against ``n^1.5`` for ``ivf``; its recall@10 on real MiniLM embeddings was 0.996 at
``nprobe=16``, ``ivf``'s 0.991; see docs/large_pools.md).

Either way the answer is (indices, similarities), best first, ties (to 6 decimals) broken by the smaller
base index.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from . import knn_lists

log = logging.getLogger(__name__)

BACKENDS = ("auto", "faiss", "sklearn")
INDEXES = ("auto", "exact", "ivf", "lists")
QUERY_BLOCK = 4096  # queries searched at a time
SKLEARN_WORKING_MIB = 64  # scikit-learn's distance matrix chunks (its default is 1024)
AUTO_APPROX_MIN = 20_000  # index="auto": lists once both the queries and the base number more than this
NPROBE = 16  # IVF lists searched per query
LISTS_PER_ROOT = 4  # nlist = 4 sqrt(n_base) ...
MIN_PER_LIST = 39  # ... with at least 39 base points a list (faiss' k-means wants 39 training points a centroid)
TRAIN_PER_LIST = 40  # the k-means sample: at most 40 points a list (its cost, 10 iterations of sample x nlist x d,
# is then linear in n; 64 a list took 20% more time for the same recall at n = 50,000)
TRAIN_SEED = 0  # the training sample and faiss' k-means initialisation


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


@dataclass(frozen=True)
class IndexPlan:
    """The search :func:`knn` runs: ``exact``, or ``ivf``/``lists`` with its number of lists and lists probed."""

    kind: str
    nlist: int | None = None
    nprobe: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.kind} if self.kind == "exact" else \
            {"index": self.kind, "nlist": self.nlist, "nprobe": self.nprobe}


def default_nlist(n_base: int) -> int:
    """About ``4 sqrt(n_base)`` lists, each holding ``MIN_PER_LIST`` base points or more on average."""
    return max(1, min(round(LISTS_PER_ROOT * math.sqrt(n_base)), n_base // MIN_PER_LIST))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def plan_index(index: str, n_queries: int, n_base: int, *, backend: str = "auto", nprobe: int = NPROBE,
               nlist: int | None = None) -> IndexPlan:
    """What :func:`knn` does for these sizes: ``auto`` resolved (see the module docstring), IVF sizes set."""
    if index not in INDEXES:
        raise ConfigError(f"knn index must be one of {', '.join(INDEXES)}, got '{index}'")
    if backend not in BACKENDS:
        raise ConfigError(f"knn backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    nprobe = _positive_int("nprobe", nprobe)
    if nlist is not None:
        nlist = _positive_int("nlist", nlist)
    if index == "ivf":
        if backend == "sklearn":
            raise ConfigError("knn index ivf needs faiss; backend sklearn searches exactly (use index exact or auto)")
        if _faiss() is None:
            raise MissingDependencyError("faiss-cpu", "knn", "the approximate k-NN search (index=ivf)")
    elif index == "auto":
        index = "lists" if min(n_queries, n_base) > AUTO_APPROX_MIN else "exact"
    if index == "exact":
        return IndexPlan("exact")
    default = default_nlist(n_base) if index == "ivf" else knn_lists.default_nlist(n_base)
    lists = min(nlist if nlist is not None else default, max(1, n_base))
    return IndexPlan(index, nlist=lists, nprobe=min(nprobe, lists))


def knn(queries: np.ndarray, base: np.ndarray, k: int, *, backend: str = "auto", index: str = "auto",
        nprobe: int = NPROBE, nlist: int | None = None, block_size: int = QUERY_BLOCK,
        progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` most cosine-similar rows of ``base``: (indices, similarities), best first.

    Both inputs are unit-normalised embeddings (as the embedder returns them); ``k`` is capped at
    ``len(base)``. Ties are broken by the smaller base index. ``index``: ``exact``, ``ivf`` (approximate,
    ``nprobe`` of ``nlist`` lists searched per query; ``nlist`` None: about ``4 sqrt(len(base))``), ``lists``
    (approximate, numpy only; ``nlist`` None: ``len(base) / 100``) or ``auto`` (:func:`plan_index`). A query
    whose probed lists hold fewer than ``k`` points is searched again exactly. Queries go ``block_size`` at a time (with a progress bar when
    ``progress``).
    """
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    same = queries is base
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = queries if same else np.ascontiguousarray(base, dtype=np.float32)
    plan = plan_index(index, len(queries), len(base), backend=backend, nprobe=nprobe, nlist=nlist)
    k = min(int(k), len(base))
    n_q = len(queries)
    idx = np.zeros((n_q, k), dtype=np.int64)
    sims = np.zeros((n_q, k), dtype=np.float32)
    if n_q == 0 or k == 0:
        return idx, sims
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise MissingDependencyError("faiss-cpu", "knn", "k-NN search with backend=faiss")
    if plan.kind == "ivf":
        blocks = _ivf_blocks(faiss, queries, base, k, plan, block_size, same)
    elif plan.kind == "lists":
        blocks = knn_lists.lists_blocks(queries, base, k, nlist=plan.nlist, nprobe=plan.nprobe, same=same)
    else:
        blocks = _exact_blocks(faiss, queries, base, k, block_size)

    from ..runtime.progress import progress_bar

    desc = "k-NN search" if plan.kind == "exact" else f"k-NN search ({plan.kind}, {plan.nprobe} of {plan.nlist} lists)"
    short = []
    with progress_bar(n_q, desc, progress, unit="query") as bar:
        for rows, i, v, done in blocks:
            missing = (i < 0).any(axis=1)
            if missing.any():  # -1: fewer than k found (faiss pads with its lowest float): searched again below
                short.append(np.asarray(rows)[missing])
                v = np.where(i < 0, -np.inf, v)
            idx[rows], sims[rows] = _ordered(i, v)
            bar.update(done)
    if short:
        # these queries' probed lists held fewer than k points: searched again exactly, against the whole base
        rows = np.concatenate(short)
        log.info("%s: %d of %d queries found fewer than %d neighbours in their %d lists; searched exactly",
                 plan.kind, len(rows), n_q, k, plan.nprobe)
        for part, i, v, _ in _exact_blocks(faiss, queries[rows], base, k, block_size):
            idx[rows[part]], sims[rows[part]] = _ordered(i, v)
    return idx, sims


def _ordered(i: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A stable order: similarity descending, then index ascending (backends differ on exact ties)."""
    i = i.astype(np.int64)
    v = np.asarray(v, dtype=np.float32)
    order = np.lexsort((i, -np.round(v, 6)), axis=1)
    return np.take_along_axis(i, order, axis=1), np.take_along_axis(v, order, axis=1)


# (the query rows, their indices, their similarities, how many queries this block finishes)
Blocks = Iterator[tuple[Any, np.ndarray, np.ndarray, int]]


def _exact_blocks(faiss, queries: np.ndarray, base: np.ndarray, k: int, block_size: int) -> Blocks:
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    if faiss is not None:
        flat = faiss.IndexFlatIP(base.shape[1])
        flat.add(base)

        def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            s, i = flat.search(q, k)
            return i, s
    else:
        import sklearn
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)

        def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with sklearn.config_context(working_memory=SKLEARN_WORKING_MIB):  # its distance chunks
                dist, i = nn.kneighbors(q)
            return i, 1.0 - dist

    for s in range(0, len(queries), block_size):
        e = min(s + block_size, len(queries))
        i, v = search(queries[s:e])
        yield slice(s, e), i, v, e - s


def _ivf_blocks(faiss, queries: np.ndarray, base: np.ndarray, k: int, plan: IndexPlan, block_size: int,
                same: bool) -> Blocks:
    n_b, d = base.shape
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, plan.nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.spherical = True  # unit centroids: a list's score is the cosine to its centre
    ivf.cp.seed = TRAIN_SEED
    ivf.cp.max_points_per_centroid = max(ivf.cp.max_points_per_centroid, TRAIN_PER_LIST)  # no subsampling
    size = min(n_b, TRAIN_PER_LIST * plan.nlist)
    sample = base if size == n_b else base[np.sort(np.random.default_rng(TRAIN_SEED).choice(n_b, size, replace=False))]
    ivf.train(sample)
    del sample
    ivf.nprobe = plan.nprobe
    # every query's nprobe nearest lists, once: they order the queries and are handed to the search
    coarse_sims, coarse = quantizer.search(queries, plan.nprobe)
    if same:  # the base's own lists are the queries' nearest: no second assignment pass
        assign = np.ascontiguousarray(coarse[:, 0])  # kept alive while faiss reads it through the pointer
        ivf.add_core(n_b, faiss.swig_ptr(base), None, faiss.swig_ptr(assign))
    else:
        ivf.add(base)
    order = np.argsort(coarse[:, 0], kind="stable")
    for s in range(0, len(queries), block_size):
        rows = order[s:s + block_size]
        v, i = ivf.search_preassigned(queries[rows], k, coarse[rows], coarse_sims[rows])
        yield rows, i, v, len(rows)
