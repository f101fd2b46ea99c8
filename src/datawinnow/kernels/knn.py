"""Exact k-nearest-neighbour search by cosine similarity: faiss when installed, scikit-learn otherwise.

The base is indexed once and the queries are searched a block at a time, so besides the inputs and the
``[n_queries, k]`` answer only one block's temporaries exist: a k-NN graph of n = 100,000 points takes
megabytes, not the 40 GB of their dense similarity matrix. The search itself is exact (every query
against every base point: ``n_queries * n_base * d`` multiply-adds, done by BLAS).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, MissingDependencyError

BACKENDS = ("auto", "faiss", "sklearn")
QUERY_BLOCK = 4096  # queries searched at a time
SKLEARN_WORKING_MIB = 64  # scikit-learn's distance matrix chunks (its default is 1024)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn(queries: np.ndarray, base: np.ndarray, k: int, *, backend: str = "auto", block_size: int = QUERY_BLOCK,
        progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` most cosine-similar rows of ``base``: (indices, similarities), best first.

    Both inputs are unit-normalised embeddings (as the embedder returns them); ``k`` is capped at
    ``len(base)``. Ties are broken by the smaller base index. Queries go ``block_size`` at a time
    (with a progress bar when ``progress``).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"knn backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    if block_size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    k = min(int(k), len(base))
    n_q = len(queries)
    idx = np.zeros((n_q, k), dtype=np.int64)
    sims = np.zeros((n_q, k), dtype=np.float32)
    if n_q == 0 or k == 0:
        return idx, sims
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise MissingDependencyError("faiss-cpu", "knn", "k-NN search with backend=faiss")
    if faiss is not None:
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)

        def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            s, i = index.search(q, k)
            return i, s
    else:
        from sklearn.neighbors import NearestNeighbors

        import sklearn

        nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)

        def search(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            with sklearn.config_context(working_memory=SKLEARN_WORKING_MIB):  # its distance chunks
                dist, i = nn.kneighbors(q)
            return i, 1.0 - dist

    from ..runtime.progress import progress_bar

    with progress_bar(n_q, "k-NN search", progress, unit="query") as bar:
        for s in range(0, n_q, block_size):
            e = min(s + block_size, n_q)
            i, v = search(queries[s:e])
            # a stable order: similarity descending, then index ascending (backends differ on exact ties)
            i = i.astype(np.int64)
            order = np.lexsort((i, -np.round(v, 6)), axis=1)
            idx[s:e] = np.take_along_axis(i, order, axis=1)
            sims[s:e] = np.take_along_axis(np.asarray(v, dtype=np.float32), order, axis=1)
            bar.update(e - s)
    return idx, sims
