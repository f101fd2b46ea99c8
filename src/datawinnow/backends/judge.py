"""The judge interface: a model that reads a prompt and answers with a rating or a verdict.

Two implementations live beside this file (``judge_local.py``: any causal LM from the model
backend; ``judge_remote.py``: any OpenAI-compatible chat-completions endpoint). Callers depend
only on :class:`Judge`, :func:`load_judge`, and for command lines :func:`add_judge_options` and
:func:`judge_from_args`.

A judge never invents a score: a reply without one, an endpoint that keeps failing, or a
tokenizer without the rating digits is a :class:`JudgeError`, never a silent default.
"""

from __future__ import annotations

import argparse
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


def add_judge_options(parser: argparse.ArgumentParser) -> None:
    """The ``--judge*`` options (an argument group) for any command that uses a judge."""
    g = parser.add_argument_group("judge (LLM rating for alpagasus, deita, selectit, and judged evaluations)")
    g.add_argument("--judge", default=None, choices=list(KINDS),
                   help="local: a causal LM from the model backend (default for scorers: the --model itself); "
                        "remote: an OpenAI-compatible chat-completions endpoint (--judge-url, --judge-model)")
    g.add_argument("--judge-model", default=None,
                   help="local: a model name/folder/hub id (default: --model); remote: the served model's name")
    g.add_argument("--judge-url", default=None,
                   help="remote: the endpoint's base URL, e.g. http://localhost:8000/v1 (implies --judge remote)")
    g.add_argument("--judge-key-env", default="OPENAI_API_KEY",
                   help="remote: name of the environment variable holding the API key (the key is never logged)")
    g.add_argument("--judge-concurrency", type=int, default=4, help="remote: requests in flight")
    g.add_argument("--judge-timeout", type=float, default=60.0, help="remote: seconds per request")
    g.add_argument("--judge-retries", type=int, default=3,
                   help="remote: retries on timeouts, connection errors, 429 and 5xx, with exponential back-off")
    g.add_argument("--judge-logprobs", action="store_true",
                   help="remote: read rating probabilities from the endpoint's top_logprobs (if it supports them)")
    g.add_argument("--judge-template", default="chat", choices=["chat", "raw"],
                   help="local: render judge prompts with the model's chat template, or as raw text")


def judge_spec_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The judge spec (a dict for :func:`load_judge`) the ``--judge*`` options describe; None when none is named.

    A local judge without ``--judge-model`` has ``model`` None: a scorer's context then uses its own model.
    """
    kind = getattr(args, "judge", None)
    url = getattr(args, "judge_url", None)
    jmodel = getattr(args, "judge_model", None)
    if kind is None:
        kind = "remote" if url else ("local" if jmodel else None)
    if kind is None:
        return None
    spec: dict[str, Any] = {"kind": kind, "model": jmodel}
    if kind == "remote":
        spec.update(base_url=url, api_key_env=getattr(args, "judge_key_env", "OPENAI_API_KEY"),
                    concurrency=getattr(args, "judge_concurrency", 4), timeout=getattr(args, "judge_timeout", 60.0),
                    max_retries=getattr(args, "judge_retries", 3), logprobs=getattr(args, "judge_logprobs", False))
    else:
        spec.update(template=getattr(args, "judge_template", "chat"), device=getattr(args, "device", "auto"),
                    dtype=getattr(args, "dtype", "auto"), base_url=url)
    return spec


def judge_from_args(args: argparse.Namespace) -> Judge | None:
    """The judge the ``--judge*`` options name, or None when ``--judge`` (or ``--judge-url``/``--judge-model``) is absent.

    A local judge without ``--judge-model`` judges with ``--model`` (the base model, without ``--adapter``).
    """
    spec = judge_spec_from_args(args)
    if spec is None:
        return None
    if spec["kind"] == "local" and spec["model"] is None:
        spec["model"] = getattr(args, "model", None)
    return load_judge(spec)
