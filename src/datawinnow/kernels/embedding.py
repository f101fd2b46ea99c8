"""Sentence-embedding kernels (DELIFT (SE)) and the embedding neighbourhoods of the sparse modes.

- :func:`embed_records`: unit-normalised embeddings of records from the embedder backend, cached per
  record like scores (resumable, with a progress bar).
- :func:`neighbours`: each target's ``k`` nearest examples by cosine similarity (faiss or scikit-learn).
- :func:`embedding_kernel`: the candidate-major kernel ``(cos + 1) / 2``, dense (all pairs) or
  sparse (each target against its ``k`` nearest examples).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.record import Dataset, Record
from ..errors import ConfigError
from .knn import knn
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


def embed_records(records: Sequence[Record] | Dataset, ctx: Any, field: str = "prompt_response") -> np.ndarray:
    """float32 ``[len(records), d]`` unit-normalised embeddings, cached per record and embedder."""
    from ..runtime.runner import run_cached, sequential_plan

    if field not in TEXT_FIELDS:
        raise ConfigError(f"embed_text must be one of {', '.join(TEXT_FIELDS)}, got '{field}'")
    records = records if isinstance(records, Dataset) else Dataset(list(records))
    if len(records) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    embedder = ctx.embedder

    def compute(batch: list[Record]) -> list[dict]:
        emb = embedder.encode([record_text(r, field) for r in batch], batch_size=max(len(batch), 1))
        return [{"e": row.tolist()} for row in emb]

    rows, _ = run_cached(records, scorer="embedding", params={"text": field}, identity=embedder.identity,
                         compute=compute, plan=sequential_plan(64), ctx=ctx)
    return np.asarray([r["e"] for r in rows], dtype=np.float32)


def neighbours(target_emb: np.ndarray, example_emb: np.ndarray, k: int, *, backend: str = "auto"
               ) -> tuple[np.ndarray, np.ndarray]:
    """(indices ``[n_targets, k]`` into the examples, cosine similarities), nearest first."""
    return knn(target_emb, example_emb, k, backend=backend)


def embedding_kernel(target_emb: np.ndarray, example_emb: np.ndarray, *, mode: str = "dense", k: int = 10,
                     backend: str = "auto"):
    """Candidate-major ``(cos + 1) / 2``: stored row ``j`` = example ``j``, column ``i`` = target ``i``.

    ``mode="sparse"``: only each target's ``k`` nearest examples are kept (a CSR matrix; a missing
    entry is similarity 0). Dense kernels are float32 arrays computed in blocks.
    """
    import scipy.sparse as sp

    if mode not in MODES:
        raise ConfigError(f"kernel must be one of {', '.join(MODES)}, got '{mode}'")
    n_t, n_e = len(target_emb), len(example_emb)
    if mode == "sparse":
        idx, sims = neighbours(target_emb, example_emb, k, backend=backend)
        rows = idx.ravel()
        cols = np.repeat(np.arange(n_t), idx.shape[1])
        return sp.coo_matrix((cosine01(sims.ravel()).astype(np.float32), (rows, cols)), shape=(n_e, n_t)).tocsr()
    out = np.empty((n_e, n_t), dtype=np.float32)
    step = max(1, (1 << 22) // max(1, n_t))
    for s in range(0, n_e, step):
        out[s:s + step] = cosine01(example_emb[s:s + step] @ target_emb.T)
    return out
