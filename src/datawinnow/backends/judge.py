"""The judge interface: a model that reads a prompt and answers with a rating or a verdict.

Two implementations live beside this file (``judge_local.py``: any causal LM from the model
backend; ``judge_remote.py``: any OpenAI-compatible chat-completions endpoint). Callers depend
only on :class:`Judge` and :func:`load_judge`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

Messages = list[dict[str, str]]


class JudgeError(RuntimeError):
    """A judge could not produce an answer (after retries), or gave one that cannot be parsed."""


class Judge:
    """Base class. ``identity`` names the judge for cache keys (never includes secrets)."""

    identity: str = "judge"

    def chat(self, conversations: Sequence[Messages], *, max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        """One reply text per conversation."""
        raise NotImplementedError

    def choice_probs(self, conversations: Sequence[Messages], choices: Sequence[str]) -> np.ndarray:
        """Probabilities (rows sum to 1) over ``choices`` (single-token strings such as "1".."6") at the first
        generated position. Only judges with access to logits implement it (the local one)."""
        raise JudgeError(f"{type(self).__name__} cannot read token probabilities; use a local judge or text parsing")
