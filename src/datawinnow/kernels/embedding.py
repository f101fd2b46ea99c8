"""Sentence-embedding kernels (DELIFT (SE)) and the embedding neighbourhoods of the sparse modes.

- :func:`embed_records`: unit-normalised embeddings of records from the embedder backend, cached per
  record like scores (resumable, with a progress bar).
- :func:`neighbours`: each target's ``k`` nearest examples by cosine similarity (exact: faiss or scikit-learn;
  or approximate: k-means lists or a faiss IVF index, :mod:`.knn`).
- :func:`embedding_kernel`: the candidate-major kernel ``(cos + 1) / 2``, dense (all pairs; memory-mapped
  above a size threshold) or sparse (each target against its ``k`` nearest examples: CSR float32).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.record import Dataset, Record
from ..errors import ConfigError
from .knn import NPROBE, knn
from .memmap import dense_array, finish
from .similarity import cosine01

TEXT_FIELDS = ("prompt_response", "prompt", "response")
MODES = ("dense", "sparse")


def record_text(record: Record, field: str) -> str:
    """The text embedded for a record: prompt and response (default), prompt only, or response only."""
    if field == "prompt_response":
        return f"{record.prompt}\n{record.output}"
    if field == "prompt":
        return record.prompt
    if field == "response":
        return record.output
    raise ConfigError(f"embed_text must be one of {', '.join(TEXT_FIELDS)}, got '{field}'")


def make_record_embeddings(ctx: Any, field: str):
    """The batch computation of :func:`embed_records`: ``ctx.embedder`` on each record's text (also the recipe
    a Ray worker rebuilds it from)."""
    embedder = ctx.embedder

    def compute(batch: list[Record]) -> list[dict]:
        emb = embedder.encode([record_text(r, field) for r in batch], batch_size=max(len(batch), 1))
        return [{"e": row.tolist()} for row in emb]

    return compute


def embed_records(records: Sequence[Record] | Dataset, ctx: Any, field: str = "prompt_response") -> np.ndarray:
    """float32 ``[len(records), d]`` unit-normalised embeddings, cached per record and embedder."""
    from ..runtime.runner import Recipe, run_cached, sequential_plan

    if field not in TEXT_FIELDS:
        raise ConfigError(f"embed_text must be one of {', '.join(TEXT_FIELDS)}, got '{field}'")
    records = records if isinstance(records, Dataset) else Dataset(list(records))
    if len(records) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    rows, _ = run_cached(records, scorer="embedding", params={"text": field}, identity=ctx.embedder.identity,
                         compute=make_record_embeddings(ctx, field), plan=sequential_plan(64), ctx=ctx,
                         recipe=Recipe("datawinnow.kernels.embedding:make_record_embeddings", {"field": field}))
    return np.asarray([r["e"] for r in rows], dtype=np.float32)


def neighbours(target_emb: np.ndarray, example_emb: np.ndarray, k: int, *, backend: str = "auto",
               index: str = "auto", nprobe: int = NPROBE, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(indices ``[n_targets, k]`` into the examples, cosine similarities), nearest first.

    ``index``: ``exact``, ``ivf`` or ``lists`` (approximate, ``nprobe`` lists searched per target) or ``auto``
    (exact up to 20,000 points, lists above); see :func:`.knn.knn`.
    """
    return knn(target_emb, example_emb, k, backend=backend, index=index, nprobe=nprobe, progress=progress)


def embedding_kernel(target_emb: np.ndarray, example_emb: np.ndarray, *, mode: str = "dense", k: int = 10,
                     backend: str = "auto", index: str = "auto", nprobe: int = NPROBE, progress: bool = False,
                     memmap_bytes: int | str | None = None):
    """Candidate-major ``(cos + 1) / 2``: stored row ``j`` = example ``j``, column ``i`` = target ``i``.

    ``mode="sparse"``: only each target's ``k`` nearest examples are kept (a float32 CSR matrix of
    ``n_targets * k`` entries; a missing entry is similarity 0), from a k-NN search done in blocks of
    targets (``index``, ``nprobe``: exact or approximate, as :func:`neighbours`). Dense kernels are float32,
    computed in blocks, in RAM up to ``memmap_bytes`` (default 1 GiB, or ``$DATAWINNOW_MEMMAP_BYTES``) and a
    read-only memmap above it (:mod:`.memmap`).
    """
    import scipy.sparse as sp

    if mode not in MODES:
        raise ConfigError(f"kernel must be one of {', '.join(MODES)}, got '{mode}'")
    n_t, n_e = len(target_emb), len(example_emb)
    if mode == "sparse":
        idx, sims = neighbours(target_emb, example_emb, k, backend=backend, index=index, nprobe=nprobe,
                               progress=progress)
        k_used = idx.shape[1]
        data = cosine01(sims.ravel()).astype(np.float32)
        cols = np.repeat(np.arange(n_t, dtype=np.int64), k_used)
        del sims
        return sp.coo_matrix((data, (idx.ravel(), cols)), shape=(n_e, n_t)).tocsr()
    out = dense_array((n_e, n_t), np.float32, memmap_bytes=memmap_bytes)
    step = max(1, (1 << 22) // max(1, n_t))
    for s in range(0, n_e, step):
        out[s:s + step] = cosine01(example_emb[s:s + step] @ target_emb.T)
    return finish(out)
