"""Where a model comes from: a local folder (checked before transformers sees it) or a Hugging Face hub id.

Hub ids fail fast without a network: under ``HF_HUB_OFFLINE=1`` only the local Hugging Face cache
is used, and otherwise one TCP connection to the hub (a few seconds at most) decides whether to
try it at all, instead of the client's retries (about 48 s before the first error).
"""

from __future__ import annotations

import functools
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?")
CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelSource:
    """``path``: what to hand to ``from_pretrained``; ``folder``: a local folder (not a hub id);
    ``local_only``: read nothing from the network (a folder, or a hub id from the local cache)."""

    path: str
    folder: bool
    local_only: bool


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """The user asked for no hub access (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    return _truthy("HF_HUB_OFFLINE") or _truthy("TRANSFORMERS_OFFLINE")


@functools.lru_cache(maxsize=4)
def _reach(host: str, port: int) -> str | None:
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        return None
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"


def hub_unreachable() -> str | None:
    """None when the hub (``HF_ENDPOINT``, or the HTTPS proxy in between) accepts a connection, else why not."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    url = urlparse(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not url.hostname:
        return None
    return _reach(url.hostname, url.port or (443 if url.scheme == "https" else 80))


def _cached(repo_id: str, repo_type: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers and datasets
        return False
    probe = {"model": "config.json", "dataset": "README.md"}.get(repo_type, "config.json")
    return isinstance(try_to_load_from_cache(repo_id, probe, repo_type=repo_type), str)


def _looks_like_path(name: str) -> bool:
    """A name no hub id can be: relative or absolute path syntax, or more than one '/'."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name


def require_hub(repo_id: str, what: str, *, repo_type: str = "model") -> bool:
    """Check that ``repo_id`` can come from the hub now; returns True when only the local cache may be used.

    Raises :class:`ConfigError` at once when the hub is off (offline mode, no connection) and the
    repository is not in the local cache.
    """
    if hub_offline():
        if repo_type == "model" and not _cached(repo_id, repo_type):
            raise ConfigError(f"{what} '{repo_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
                              "(download it where there is a network, or pass a local folder)")
        return True
    why = hub_unreachable()
    if why is None:
        return False
    if _cached(repo_id, repo_type):
        return True
    raise ConfigError(f"{what} '{repo_id}': cannot reach the Hugging Face hub ({why}) and it is not in the local "
                      "cache; pass a local folder (or set HF_HUB_OFFLINE=1 to use only the cache)")


def resolve_model(name: str, what: str = "model", *, marker: str = "config.json") -> ModelSource:
    """A model name checked before loading: an existing folder that holds a model, or a well-formed hub id
    that can be fetched (or is cached). Every problem is one :class:`ConfigError` naming ``name``."""
    expanded = os.path.expanduser(name)
    if os.path.isdir(expanded):
        folder = Path(expanded)
        if (folder / marker).exists() or (folder / "config.json").exists():
            return ModelSource(expanded, folder=True, local_only=True)
        if (folder / "adapter_config.json").exists():
            raise ConfigError(f"{what} '{name}' is a LoRA adapter folder, not a model: pass it as --adapter {name} "
                              f"(or BASE+{name})")
        if not any(folder.iterdir()):
            raise ConfigError(f"{what} '{name}': the folder is empty (expected a model saved with save_pretrained: "
                              f"{marker}, weights and tokenizer files)")
        raise ConfigError(f"{what} '{name}': not a model folder (no {marker})")
    if os.path.exists(expanded):
        raise ConfigError(f"{what} '{name}' is a file; expected a model folder or a hub id (org/name)")
    if _looks_like_path(name) or not HUB_ID.fullmatch(name):
        raise ConfigError(f"{what} '{name}': no such folder" + ("" if _looks_like_path(name)
                                                               else " (and not a hub id of the form org/name)"))
    return ModelSource(name, folder=False, local_only=require_hub(name, what))
