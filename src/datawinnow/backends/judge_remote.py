"""A judge behind any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp, Ollama, TGI ...).

Standard library only (``urllib``): ``POST {base_url}/chat/completions`` with ``model``, ``messages``,
``max_tokens`` and ``temperature``; the reply is ``choices[0].message.content``.

- Concurrency: a thread pool with ``concurrency`` requests in flight; replies keep the input order.
- Retries: timeouts, connection errors, HTTP 429 and 5xx are retried up to ``max_retries`` times
  with exponential back-off (``backoff`` x 2^attempt seconds, capped at 60 s); any other HTTP error
  (401, 404 ...) fails at once. After the last retry a :class:`JudgeError` names the endpoint, the
  model, the attempts and the last error.
- The API key is read from the environment variable named ``api_key_env`` when the request is made,
  sent only in the ``Authorization`` header, and redacted from every message this module produces;
  it is never part of :attr:`identity` (cache keys, manifests) nor of ``repr``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .judge import Judge, JudgeError, Messages

log = logging.getLogger("datawinnow.judge")

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF = 60.0


class _Retryable(Exception):
    """A failure worth another attempt (the message is already redacted)."""


def _clip(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


class RemoteJudge(Judge):
    """Chat completions over HTTP; see the module docstring for retries and the key."""

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 1.0):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"judge URL must start with http:// or https://, got '{base_url}'")
        if concurrency < 1:
            raise ConfigError(f"judge concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ConfigError(f"judge retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ConfigError(f"judge timeout must be > 0 seconds, got {timeout}")
        url = base_url.rstrip("/")
        self.url = url if url.endswith("/chat/completions") else url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency, self.timeout, self.max_retries, self.backoff = concurrency, timeout, max_retries, backoff
        self.identity = f"remote:{self.url}|{model}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, model={self.model!r}, key from ${self.api_key_env})"

    # ------------------------------------------------------------------ one request
    def _key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def _redact(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key else text

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request; raises :class:`_Retryable` for transient failures, :class:`JudgeError` otherwise."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = ""
            try:
                detail = _clip(e.read().decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001 - the body is only a hint
                pass
            msg = self._redact(f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else ""))
            if e.code in RETRY_STATUS:
                raise _Retryable(msg) from None
            hint = f" (check the API key in ${self.api_key_env})" if e.code in (401, 403) else ""
            raise JudgeError(f"judge endpoint {self.url} (model {self.model}) refused the request: {msg}{hint}") from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"timed out after {self.timeout:g} s") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"timed out after {self.timeout:g} s") from None
            raise _Retryable(self._redact(f"connection failed: {reason}")) from None
        except (ConnectionError, OSError) as e:
            raise _Retryable(self._redact(f"connection failed: {e}")) from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
                raise ValueError("no 'choices'")
            return data
        except (ValueError, UnicodeDecodeError) as e:
            raise JudgeError(self._redact(f"judge endpoint {self.url} (model {self.model}) did not answer with a "
                                          f"chat completion ({e}): {_clip(raw.decode('utf-8', 'replace'))}")) from None

    def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        """:meth:`_post` with bounded retries and exponential back-off."""
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                return self._post(body)
            except _Retryable as e:
                last = str(e)
                if attempt + 1 < attempts:
                    wait = min(self.backoff * (2 ** attempt), MAX_BACKOFF)
                    log.warning("judge %s: %s; retry %d/%d in %.1f s", self.url, last, attempt + 1,
                                self.max_retries, wait)
                    time.sleep(wait)
        raise JudgeError(f"judge endpoint {self.url} (model {self.model}) failed after {attempts} attempt(s) "
                         f"({self.max_retries} retries): {last}")

    @staticmethod
    def _content(data: dict[str, Any]) -> str:
        msg = data["choices"][0].get("message") or {}
        content = msg.get("content")
        if not isinstance(content, str):
            raise JudgeError(f"judge reply has no text content: {_clip(json.dumps(data))}")
        return content

    def _body(self, conversation: Messages, max_tokens: int, temperature: float) -> dict[str, Any]:
        return {"model": self.model, "messages": list(conversation), "max_tokens": max_tokens,
                "temperature": temperature}

    def _map(self, fn, items: Sequence[Any]) -> list[Any]:
        if len(items) <= 1 or self.concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(fn, x) for x in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    # ------------------------------------------------------------------ the interface
    def chat(self, conversations: Sequence[Messages], *, max_tokens: int = 256, temperature: float = 0.0) -> list[str]:
        return self._map(lambda c: self._content(self._request(self._body(c, max_tokens, temperature))),
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
            body = {**self._body(conv, 1, 0.0), "logprobs": True, "top_logprobs": self.TOP}
            data = self._request(body)
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

        rows = self._map(one, list(conversations))
        return np.stack(rows) if rows else np.zeros((0, len(choices)))
