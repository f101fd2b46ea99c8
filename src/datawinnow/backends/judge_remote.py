"""A judge behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama, TGI ...).

``POST {base_url}/chat/completions`` with ``model``, ``messages``, ``max_tokens`` and ``temperature``;
the reply is ``choices[0].message.content``. The HTTP client (bounded concurrency, retries with
exponential back-off on timeouts, connection errors, 429 and 5xx, the API key read from the
environment variable named ``api_key_env`` and redacted everywhere) is
:class:`~datawinnow.backends.openai_http.ChatCompletionsClient`, shared with remote generation;
failures raise :class:`JudgeError`.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

from .judge import Judge, JudgeError, Messages
from .openai_http import ChatCompletionsClient


class RemoteJudge(ChatCompletionsClient, Judge):
    """Chat completions over HTTP; see :mod:`datawinnow.backends.openai_http` for retries and the key."""

    kind = "judge"
    error = JudgeError
    log = logging.getLogger("datawinnow.judge")

    def chat(self, conversations: Sequence[Messages], *, max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        return self.map(lambda c: self.content(self.request(self.body(c, max_tokens, temperature))),
                        list(conversations))


class RemoteLogprobJudge(RemoteJudge):
    """A remote judge that also reads choice probabilities from ``logprobs``/``top_logprobs`` (20) of the first token.

    Choices absent from the top 20 get probability 0; when none is present the reply is an error.
    """

    TOP = 20

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.identity += "|logprobs"

    def choice_probs(self, conversations: Sequence[Messages], choices: Sequence[str]) -> np.ndarray:
        def one(conv: Messages) -> np.ndarray:
            data = self.request(self.body(conv, 1, 0.0, logprobs=True, top_logprobs=self.TOP))
            try:
                top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            except (KeyError, IndexError, TypeError):
                raise JudgeError(f"judge endpoint {self.url} (model {self.model}) returned no top_logprobs; "
                                 "drop --judge-logprobs to parse the reply text instead") from None
            p = np.zeros(len(choices), dtype=np.float64)
            for entry in top:
                tok = str(entry.get("token", "")).strip()
                if tok in choices:
                    p[list(choices).index(tok)] += float(np.exp(entry["logprob"]))
            if p.sum() <= 0:
                raise JudgeError(f"judge endpoint {self.url} (model {self.model}): none of {list(choices)} is among "
                                 f"the top {self.TOP} first tokens")
            return p / p.sum()

        rows = self.map(one, list(conversations))
        return np.stack(rows) if rows else np.zeros((0, len(choices)))
