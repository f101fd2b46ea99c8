"""Exact k-nearest-neighbour search by cosine similarity: faiss when installed, scikit-learn otherwise."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, MissingDependencyError

BACKENDS = ("auto", "faiss", "sklearn")


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def knn(queries: np.ndarray, base: np.ndarray, k: int, *, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the ``k`` most cosine-similar rows of ``base``: (indices, similarities), best first.

    Both inputs are unit-normalised embeddings (as the embedder returns them); ``k`` is capped at
    ``len(base)``. Ties are broken by the smaller base index.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"knn backend must be one of {', '.join(BACKENDS)}, got '{backend}'")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    base = np.ascontiguousarray(base, dtype=np.float32)
    k = min(int(k), len(base))
    if len(queries) == 0 or k == 0:
        return np.zeros((len(queries), k), dtype=np.int64), np.zeros((len(queries), k), dtype=np.float32)
    faiss = _faiss() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise MissingDependencyError("faiss-cpu", "knn", "k-NN search with backend=faiss")
    if faiss is not None:
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        sims, idx = index.search(queries, k)
        idx = idx.astype(np.int64)
    else:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(base)
        dist, idx = nn.kneighbors(queries)
        sims = 1.0 - dist
    # a stable order: similarity descending, then index ascending (backends differ on exact ties)
    order = np.lexsort((idx, -np.round(sims, 6)), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    sims = np.take_along_axis(np.asarray(sims, dtype=np.float32), order, axis=1)
    return idx, sims
