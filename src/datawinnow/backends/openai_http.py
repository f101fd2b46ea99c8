"""The HTTP client shared by everything that talks to an OpenAI-compatible chat-completions server
(OpenAI, vLLM, SGLang, TGI, llama.cpp server, Ollama ...): the remote judge and remote generation.

Standard library only (``urllib``): ``POST {base_url}/chat/completions`` with a JSON body; the reply is
``choices[0].message.content``.

- Concurrency: :meth:`ChatCompletionsClient.map` runs a function over items on a thread pool with
  ``concurrency`` requests in flight; results keep the input order.
- Retries: timeouts, connection errors, HTTP 408/409/429 and 5xx are retried up to ``max_retries``
  times with exponential back-off (``backoff`` x 2^attempt seconds, capped at 60 s); any other HTTP
  error (401, 404 ...) fails at once. After the last retry the error names the endpoint, the model,
  the attempts and the last error.
- The API key is read from the environment variable named ``api_key_env`` when the request is made,
  sent only in the ``Authorization`` header, and redacted from every message this module produces;
  it is never part of an identity (cache keys, manifests) nor of ``repr``.

Subclasses set :attr:`~ChatCompletionsClient.kind` (how messages name them: "judge", "generation"),
:attr:`~ChatCompletionsClient.error` (the exception they raise) and :attr:`~ChatCompletionsClient.log`.
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
from typing import Any, Callable, Sequence

from ..errors import ConfigError, DatawinnowError

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_BACKOFF = 60.0


class EndpointError(DatawinnowError, RuntimeError):
    """An OpenAI-compatible endpoint failed after its retries, refused a request, or answered nonsense."""


class _Retryable(Exception):
    """A failure worth another attempt (the message is already redacted)."""


def clip(text: str, n: int = 300) -> str:
    """``text`` on one line, cut to ``n`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n] + "..."


class ChatCompletionsClient:
    """Chat completions over HTTP with bounded concurrency and retries; see the module docstring."""

    kind: str = "endpoint"
    error: type[Exception] = EndpointError
    log: logging.Logger = logging.getLogger("datawinnow.http")

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 4,
                 timeout: float = 60.0, max_retries: int = 3, backoff: float = 1.0):
        if not str(base_url).startswith(("http://", "https://")):
            raise ConfigError(f"{self.kind} URL must start with http:// or https://, got '{base_url}'")
        if not model or not isinstance(model, str):
            raise ConfigError(f"{self.kind} endpoint needs a model name (the name the server serves)")
        if concurrency < 1:
            raise ConfigError(f"{self.kind} concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ConfigError(f"{self.kind} retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ConfigError(f"{self.kind} timeout must be > 0 seconds, got {timeout}")
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

    def _where(self) -> str:
        return f"{self.kind} endpoint {self.url} (model {self.model})"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        """One request; raises :class:`_Retryable` for transient failures, :attr:`error` otherwise."""
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
                detail = clip(e.read().decode("utf-8", "replace"))
            except Exception:  # noqa: BLE001 - the body is only a hint
                pass
            msg = self._redact(f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else ""))
            if e.code in RETRY_STATUS:
                raise _Retryable(msg) from None
            hint = f" (check the API key in ${self.api_key_env})" if e.code in (401, 403) else ""
            raise self.error(f"{self._where()} refused the request: {msg}{hint}") from None
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
            raise self.error(self._redact(f"{self._where()} did not answer with a chat completion ({e}): "
                                          f"{clip(raw.decode('utf-8', 'replace'))}")) from None

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """One chat completion (the parsed JSON), with bounded retries and exponential back-off."""
        attempts = self.max_retries + 1
        last = ""
        for attempt in range(attempts):
            try:
                return self._post(body)
            except _Retryable as e:
                last = str(e)
                if attempt + 1 < attempts:
                    wait = min(self.backoff * (2 ** attempt), MAX_BACKOFF)
                    self.log.warning("%s %s: %s; retry %d/%d in %.1f s", self.kind, self.url, last, attempt + 1,
                                     self.max_retries, wait)
                    time.sleep(wait)
        raise self.error(f"{self._where()} failed after {attempts} attempt(s) ({self.max_retries} retries): {last}")

    def content(self, data: dict[str, Any]) -> str:
        """The reply text of a chat completion."""
        msg = data["choices"][0].get("message") or {}
        text = msg.get("content")
        if not isinstance(text, str):
            raise self.error(f"{self.kind} reply has no text content: {clip(json.dumps(data))}")
        return text

    def body(self, messages: Sequence[dict[str, str]], max_tokens: int, temperature: float,
             **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "messages": list(messages), "max_tokens": max_tokens, "temperature": temperature,
                **extra}

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(x) for x in items]`` with up to ``concurrency`` calls in flight; the first error cancels the rest."""
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
