"""Reference-based metrics on generated answers: ROUGE-1/2/L (rouge-score) and embedding cosine similarity."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ConfigError, MissingDependencyError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def rouge_scores(predictions: Sequence[str], references: Sequence[str], *,
                 use_stemmer: bool = True) -> list[dict[str, float]]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures per (prediction, reference) pair, in [0, 1].

    Google's ``rouge-score`` package (the reference implementation): lower-cased, non-alphanumeric
    characters removed, Porter stemming on by default.
    """
    if len(predictions) != len(references):
        raise ConfigError(f"rouge: {len(predictions)} predictions but {len(references)} references")
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise MissingDependencyError("rouge-score", "eval", "ROUGE") from None
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    out = []
    for pred, ref in zip(predictions, references):
        s = scorer.score(ref, pred)  # rouge-score's argument order: (target, prediction)
        out.append({name: float(s[name].fmeasure) for name in ROUGE_TYPES})
    return out


def embedding_similarity(embedder, predictions: Sequence[str], references: Sequence[str], *,
                         batch_size: int = 32) -> np.ndarray:
    """Cosine similarity between each answer's and its reference's sentence embeddings, in [-1, 1].

    An empty answer gets 0 (it carries no meaning to compare), not the embedding of an empty string.
    """
    if len(predictions) != len(references):
        raise ConfigError(f"similarity: {len(predictions)} predictions but {len(references)} references")
    if not predictions:
        return np.zeros(0, dtype=np.float64)
    a = np.asarray(embedder.encode(list(predictions), batch_size=batch_size), dtype=np.float64)
    b = np.asarray(embedder.encode(list(references), batch_size=batch_size), dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    sims = np.einsum("ij,ij->i", a, b) / np.where(norms > 0, norms, 1.0)
    empty = np.array([not p.strip() for p in predictions])
    sims[empty] = 0.0
    return np.clip(sims, -1.0, 1.0)
