"""The validated settings of a run, in one place: :class:`RuntimeOptions`.

Every layer that runs a model reads its settings from here (through :class:`~.context.Context`);
the command line maps one option group onto these fields and back (``datawinnow.cli_options``), the
Python API passes them as keywords. The options are plain, picklable data: a Ray worker rebuilds the
same resources from them (a loaded model object is not an option; :class:`~.context.Context` holds
those beside the options).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DTYPES = ("auto", "fp32", "bf16", "fp16")
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class RuntimeOptions:
    """Settings that decide how (and on what) scores, kernels, adapters and answers are computed.

    ``model``/``embedder``: names as ``--model``/``--embedder`` take them (None: the embedded defaults);
    ``judge``: a judge spec for :func:`datawinnow.backends.judge.load_judge` (None: the local judge,
    with ``model``); ``system``: None (the template's own), "" (an empty system turn) or a text;
    ``batch_tokens``: None (fixed batches of ``batch_size``), 'auto' or a token budget;
    ``cache_dir``: None (``$DATAWINNOW_CACHE`` or ``~/.cache/datawinnow``); ``executor``: ``local`` or
    ``ray`` (``ray_address``: an existing cluster; None starts a local Ray; ``workers``: actors, None:
    one per GPU, else per CPU slot of ``worker_threads`` threads).
    """

    model: str | None = None
    embedder: str | None = None
    judge: Any = None
    device: Any = "auto"  # a name, or a torch.device
    dtype: Any = "auto"   # a name, or a torch.dtype
    system: str | None = None
    max_length: int = 512
    batch_size: int = 8
    batch_tokens: int | str | None = None
    seed: int = 0
    use_cache: bool = True
    cache_dir: str | None = None
    progress: bool = True
    executor: str = "local"
    ray_address: str | None = None
    workers: int | None = None
    worker_threads: int | None = None

    def __post_init__(self) -> None:
        from ..backends.batching import parse_batch_tokens

        if isinstance(self.dtype, str) and self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got '{self.dtype}'")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got '{self.executor}'")
        for name in ("max_length", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        for name in ("workers", "worker_threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be a whole number, got {self.seed!r}")
        if isinstance(self.device, str) and not self.device:
            raise ConfigError("device must be auto, cpu, cuda or cuda:N, got an empty name")
        object.__setattr__(self, "batch_tokens", parse_batch_tokens(self.batch_tokens))

    def replace(self, **changes: Any) -> "RuntimeOptions":
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]
