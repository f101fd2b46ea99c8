"""DEITA's representation filter (score-first, diversity-aware): a plain function over embeddings.

Walk the samples in the given order (best score first); keep a sample only if its cosine similarity
to every sample kept so far is <= ``tau``; stop at the budget. Candidates are compared in chunks
against the kept set with one matrix product, then resolved in order within the chunk, so the
result is exactly that of the one-by-one walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import ConfigError

CHUNK = 512


@dataclass
class FilterResult:
    kept: list[int]  # indices into the embedding rows, in pick order
    rejected: dict[int, tuple[int, float]] = field(default_factory=dict)  # index -> (kept index it is too close to, cosine)
    examined: int = 0  # candidates looked at before the budget was met


def representation_filter(embeddings: np.ndarray, order: Sequence[int], budget: int, tau: float = 0.9,
                          chunk: int = CHUNK) -> FilterResult:
    """Indices kept by DEITA's filter. ``embeddings`` [n, d] (normalised here), ``order`` the walk order."""
    if not -1.0 <= tau <= 1.0:
        raise ConfigError(f"deita: tau is a cosine similarity threshold in [-1, 1], got {tau:g}")
    if budget < 0:
        raise ConfigError(f"deita: budget must be >= 0, got {budget}")
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2:
        raise ConfigError(f"deita: embeddings must be a 2-D array, got shape {emb.shape}")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = emb / np.where(norms > 0, norms, 1.0)
    order = list(order)
    kept: list[int] = []
    kept_mat = np.zeros((min(budget, len(order)), emb.shape[1]), dtype=np.float32)
    result = FilterResult(kept=kept)
    pos = 0
    while pos < len(order) and len(kept) < budget:
        cand = order[pos:pos + chunk]
        vecs = emb[cand]
        n_before = len(kept)
        if n_before:
            sims = vecs @ kept_mat[:n_before].T  # [c, kept so far]
            best = sims.argmax(axis=1)
            best_sim = sims[np.arange(len(cand)), best]
        else:
            best = np.zeros(len(cand), dtype=np.int64)
            best_sim = np.full(len(cand), -np.inf, dtype=np.float32)
        for j, idx in enumerate(cand):
            result.examined += 1
            near, near_sim = (kept[best[j]], float(best_sim[j])) if n_before else (-1, -np.inf)
            if len(kept) > n_before:  # samples kept earlier in this chunk
                within = kept_mat[n_before:len(kept)] @ vecs[j]
                w = int(within.argmax())
                if within[w] > near_sim:
                    near, near_sim = kept[n_before + w], float(within[w])
            if near_sim > tau:
                result.rejected[idx] = (near, near_sim)
                continue
            kept_mat[len(kept)] = vecs[j]
            kept.append(idx)
            if len(kept) >= budget:
                break
        pos += len(cand)
    return result
