"""In-context evaluation of a subset (DELIFT's first way to test a subset, no training).

Each test query gets its k nearest subset samples (cosine similarity of sentence embeddings of the
prompts, ties broken by subset order) as worked examples in front of the query, in DELIFT's
wording ("Use the following examples as a guide..."), nearest example closest to the query. When the
prompt would exceed ``max_tokens``, the farthest examples are dropped first, down to none.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..cache import stable_hash
from ..data.record import Dataset, Record
from ..errors import ConfigError

GUIDE = "Use the following examples as a guide to answer the query."


def icl_user_text(query: Record, examples: Sequence[Record]) -> str:
    """The user turn: guide, examples (farthest first, so the nearest sits next to the query), query."""
    if not examples:
        return query.prompt
    parts = [GUIDE]
    for k, ex in enumerate(reversed(list(examples)), 1):
        parts.append(f"Example {k}:\n{ex.prompt}\n{ex.output}")
    parts.append(f"Query:\n{query.prompt}")
    return "\n\n\n".join(parts)


class ICLExamples:
    """Nearest-neighbour example retrieval from a subset, and the prompts built from it."""

    def __init__(self, subset: Dataset, embedder, *, k: int = 5, max_tokens: int = 1024):
        if k < 1:
            raise ConfigError(f"icl: k must be >= 1, got {k}")
        if len(subset) == 0:
            raise ConfigError(f"icl: the subset {subset.path or ''} is empty")
        empty = [r.id for r in subset if not r.output.strip()]
        if empty:
            raise ConfigError(f"icl: {len(empty)} subset record(s) have no output to show as an example "
                              f"(first: {empty[0]})")
        self.subset, self.embedder, self.k, self.max_tokens = subset, embedder, k, max_tokens
        self._emb: np.ndarray | None = None

    @property
    def identity(self) -> dict:
        """What ICL prompts depend on (goes into the generation cache key)."""
        return {"prompt": "icl", "subset": self.subset.fingerprint(), "k": self.k, "max_tokens": self.max_tokens,
                "embedder": getattr(self.embedder, "identity", type(self.embedder).__name__)}

    def neighbours(self, queries: Sequence[Record]) -> list[list[int]]:
        """For each query, the indices of its k nearest subset records (nearest first)."""
        if self._emb is None:
            self._emb = np.asarray(self.embedder.encode([r.prompt for r in self.subset]), dtype=np.float32)
        q = np.asarray(self.embedder.encode([r.prompt for r in queries]), dtype=np.float32)
        sims = q @ self._emb.T
        k = min(self.k, len(self.subset))
        out = []
        for row in sims:
            order = np.lexsort((np.arange(len(row)), -row))  # highest similarity, then lowest index
            out.append(order[:k].tolist())
        return out

    def prompts(self, lm, queries: Sequence[Record]) -> list[tuple[str, list[str]]]:
        """(prompt text, ids of the examples used) per query, fitted into ``max_tokens``."""
        return [(text, ids) for text, _, ids in self._fitted(lm, queries)]

    def conversations(self, lm, queries: Sequence[Record]) -> list[tuple[list[dict[str, str]], list[str]]]:
        """(chat messages, ids of the examples used) per query: the same examples as :meth:`prompts`, as the
        user turn to send to a chat endpoint. ``lm`` only counts tokens (a model or a
        :class:`~datawinnow.evaluate.generate.PromptTokenizer`)."""
        return [(msgs, ids) for _, msgs, ids in self._fitted(lm, queries)]

    def _fitted(self, lm, queries: Sequence[Record]) -> list[tuple[str, list[dict[str, str]], list[str]]]:
        out = []
        for query, idx in zip(queries, self.neighbours(queries)):
            examples = [self.subset[i] for i in idx]
            while True:
                msgs = [{"role": "user", "content": icl_user_text(query, examples)}]
                text = lm.renderer.prompt_for_messages(msgs)
                if not examples or len(lm.encode(text)) <= self.max_tokens:
                    break
                examples = examples[:-1]
            out.append((text, msgs, [e.id for e in examples]))
        return out

    def key(self) -> str:
        return stable_hash(self.identity)
