"""Answers from any OpenAI-compatible chat-completions server (vLLM, SGLang, TGI, llama.cpp server, OpenAI ...).

Used instead of a local model to generate evaluation answers (``datawinnow evaluate --generate-url``) and
DELIA's self-sampled cache (``datawinnow delia build-cache --generate-url``). Each conversation is one
request (``max_tokens``, ``temperature``, ``top_p``, ``seed``); the server applies the served model's
chat template. The HTTP client (bounded concurrency, retries with back-off on timeouts, connection
errors, 429 and 5xx, the API key from an environment variable, never logged) is
:class:`~datawinnow.backends.openai_http.ChatCompletionsClient`, shared with the remote judge.

The system-prompt policy is the local renderer's (:mod:`datawinnow.data.prompts`): ``system`` None keeps
each conversation as it is (the served template's own default applies), ``""`` sends an empty system
turn, a text sends that text as the system turn (replacing a conversation's own).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from .openai_http import ChatCompletionsClient, EndpointError

Messages = list[dict[str, str]]


def with_system(messages: Sequence[dict[str, str]], system: str | None) -> Messages:
    """``messages`` under the system-prompt policy (see the module docstring)."""
    if system is None:
        return list(messages)
    return [{"role": "system", "content": system}] + [m for m in messages if m["role"] != "system"]


class RemoteGenerator(ChatCompletionsClient):
    """Generates one answer per conversation through an OpenAI-compatible server; failures raise EndpointError."""

    kind = "generation"
    error = EndpointError
    log = logging.getLogger("datawinnow.generate")

    def __init__(self, base_url: str, model: str, *, system: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 300.0, max_retries: int = 3, backoff: float = 1.0):
        super().__init__(base_url, model, api_key_env=api_key_env, concurrency=concurrency, timeout=timeout,
                         max_retries=max_retries, backoff=backoff)
        self.system = system

    def answer(self, conversations: Sequence[Messages], *, max_new_tokens: int = 256, temperature: float = 0.0,
               top_p: float = 1.0, seeds: int | Sequence[int | None] | None = None) -> list[str]:
        """One answer text per conversation (stripped, as a local model's), in order.

        ``seeds``: one seed for every request, one per conversation, or None (the server's choice).
        """
        convs = list(conversations)
        per = list(seeds) if isinstance(seeds, (list, tuple)) else [seeds] * len(convs)
        if len(per) != len(convs):
            raise ValueError(f"{len(per)} seeds for {len(convs)} conversations")

        def one(k: int) -> str:
            extra: dict[str, Any] = {"top_p": top_p}
            if per[k] is not None:
                extra["seed"] = int(per[k])
            body = self.body(with_system(convs[k], self.system), max_new_tokens, temperature, **extra)
            return self.content(self.request(body)).strip()

        return self.map(one, range(len(convs)))
