"""The judge interface: a model that reads a prompt and answers with a rating or a verdict.

Two implementations live beside this file (``judge_local.py``: any causal LM from the model
backend; ``judge_remote.py``: any OpenAI-compatible chat-completions endpoint). Callers depend
only on :class:`Judge` and :func:`load_judge` (a judge from a plain spec; the command line maps its
``--judge*`` flags onto one in :mod:`datawinnow.cli_options`).

A judge never invents a score: a reply without one, an endpoint that keeps failing, or a
tokenizer without the rating digits is a :class:`JudgeError`, never a silent default.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

Messages = list[dict[str, str]]

KINDS = ("local", "remote")


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


def reads_probabilities(judge: Judge) -> bool:
    """Whether ``judge`` implements :meth:`Judge.choice_probs` (a local judge, or a remote one with logprobs)."""
    return type(judge).choice_probs is not Judge.choice_probs


def expected_rating(probs: np.ndarray, values: Sequence[float]) -> np.ndarray:
    """The DEITA read-out: sum_k value_k * p_k per row."""
    return np.asarray(probs, dtype=np.float64) @ np.asarray(values, dtype=np.float64)


def load_judge(spec: Any = None, *, model: Any = None, base_url: str | None = None,
               api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4, timeout: float = 60.0,
               max_retries: int = 3, backoff: float = 1.0, logprobs: bool = False, template: str = "chat",
               device: str = "auto", dtype: str = "auto", max_length: int = 1024, batch_size: int = 8,
               batch_tokens: int | str | None = None) -> Judge:
    """A judge from a spec.

    ``spec``: a :class:`Judge` (returned as is), ``"local"``, ``"remote"``, a dict of these keyword
    arguments with ``kind``, or None (remote when ``base_url`` is given, else local).

    - local: ``model`` is a loaded :class:`~datawinnow.backends.causal_lm.CausalLM` or a model name
      (None: the embedded SmolLM2); ``template`` is ``chat`` (the model's chat template) or ``raw``
      (the messages' text as is, for scorer models trained on a plain prompt such as DEITA's).
    - remote: ``base_url`` (e.g. ``http://localhost:8000/v1``) and ``model`` (the served model's name);
      the API key is read from the environment variable named ``api_key_env`` (none sent when unset);
      ``concurrency`` requests in flight, ``max_retries`` retries with exponential back-off (``backoff``
      seconds, doubling) on timeouts, connection errors, 429 and 5xx; ``logprobs`` reads rating
      probabilities from the endpoint's top log-probabilities.
    """
    from ..errors import ConfigError

    if isinstance(spec, Judge):
        return spec
    if isinstance(spec, dict):
        opts = dict(spec)
        kind = opts.pop("kind", None)
        return load_judge(kind, **{**dict(model=model, base_url=base_url, api_key_env=api_key_env,
                                          concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                                          backoff=backoff, logprobs=logprobs, template=template, device=device,
                                          dtype=dtype, max_length=max_length, batch_size=batch_size,
                                          batch_tokens=batch_tokens), **opts})
    kind = spec if spec is not None else ("remote" if base_url else "local")
    if kind not in KINDS:
        raise ConfigError(f"judge must be one of {', '.join(KINDS)}, got '{kind}'")
    if kind == "local":
        from .judge_local import LocalJudge

        if base_url:
            raise ConfigError("a local judge takes no --judge-url (use --judge remote for an endpoint)")
        return LocalJudge.load(model, template=template, device=device, dtype=dtype, max_length=max_length,
                               batch_size=batch_size, batch_tokens=batch_tokens)
    from .judge_remote import RemoteJudge, RemoteLogprobJudge

    if not base_url:
        raise ConfigError("a remote judge needs --judge-url (an OpenAI-compatible base URL such as "
                          "http://localhost:8000/v1)")
    if not model or not isinstance(model, str):
        raise ConfigError("a remote judge needs --judge-model (the model name the endpoint serves)")
    cls = RemoteLogprobJudge if logprobs else RemoteJudge
    return cls(base_url, model, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout,
               max_retries=max_retries, backoff=backoff)
