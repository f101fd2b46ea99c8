"""Batches formed by a token budget over length-sorted work, and the out-of-memory retry.

- :func:`token_budget_batches`: indices sorted by length (longest first) cut so that every batch costs
  at most ``max_tokens`` *padded* tokens, cost = batch size x its longest sequence. Neighbours in
  length order differ little, so the padding a batch computes stays small, and short sequences come
  in large batches (few calls: what matters when per-call overhead dominates, as for a small model on
  a GPU), long ones in small batches (bounded memory).
- :func:`plan_batches`: the one rule every model-running path uses: a fixed count (``batch_size``)
  when no budget is set, the token budget otherwise (``batch_size`` then caps the count only when
  given as ``max_batch``).
- :func:`auto_batch_tokens`: the ``auto`` budget. On CUDA, from the free device memory
  (``torch.cuda.mem_get_info``) and the model's shape: a quarter of the free memory divided by an
  estimate of the memory one token of a forward pass holds at once (its KV cache in every layer plus
  the widest activations of one layer, in the model's dtype). Elsewhere a fixed
  :data:`CPU_BATCH_TOKENS` (16,384 tokens): on a CPU larger batches add memory traffic, not speed.
- Padding cap: on a CPU a padded position costs as much as a real one and per-call overhead is small
  beside a forward pass, so there budget batches also close when their padding would pass
  :data:`CPU_MAX_PADDING` (2%) of their real tokens; on CUDA only the budget closes them (wide
  batches are what fills the device).
- :class:`OomSplitter`: runs one batch; on a CUDA out-of-memory error it halves the budget (a ceiling
  kept for every later batch of the same model) and retries the batch in halves, down to single
  sequences (an out-of-memory error on one sequence is raised).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ..errors import ConfigError

CPU_BATCH_TOKENS = 16384  # the auto budget off CUDA (tokens per forward pass, padding included)
CPU_MAX_PADDING = 0.02  # padded positions per real token a budget batch may compute on a CPU
AUTO_MEMORY_FRACTION = 0.25  # of the free CUDA memory, for one forward pass's activations and caches
MIN_AUTO_TOKENS = 512


def length_order(lengths: Sequence[int]) -> list[int]:
    """Indices longest first (ties by index), so memory problems show at once."""
    return sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))


def fixed_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of ``batch_size`` similar lengths, longest first."""
    order = length_order(lengths)
    return [order[k:k + batch_size] for k in range(0, len(order), batch_size)]


def token_budget_batches(lengths: Sequence[int], max_tokens: int, max_batch: int | None = None, *,
                         max_padding: float | None = None) -> list[list[int]]:
    """Length-sorted indices (longest first) in batches costing at most ``max_tokens`` padded tokens
    (batch size x longest length; a single sequence longer than the budget forms a batch of its own),
    at most ``max_batch`` sequences when given, and padding at most ``max_padding`` times each batch's
    real tokens when given (where padded positions cost as much as real ones: a compute-bound model)."""
    if max_tokens < 1:
        raise ConfigError(f"batch_tokens must be >= 1, got {max_tokens}")
    out: list[list[int]] = []
    real = 0
    for i in length_order(lengths):
        cur = out[-1] if out else None
        if cur is not None:
            width = max(1, lengths[cur[0]])
            fits = (len(cur) + 1) * width <= max_tokens and (max_batch is None or len(cur) < max_batch)
            if fits and max_padding is not None:
                fits = (len(cur) + 1) * width - (real + lengths[i]) <= max_padding * (real + lengths[i])
            if fits:
                cur.append(i)
                real += lengths[i]
                continue
        out.append([i])
        real = lengths[i]
    return out


def plan_batches(lengths: Sequence[int], *, batch_size: int = 8, batch_tokens: int | None = None,
                 max_batch: int | None = None, max_padding: float | None = None) -> list[list[int]]:
    """Token-budget batches when ``batch_tokens`` is set, fixed-count batches of ``batch_size`` otherwise."""
    if batch_tokens is None:
        return fixed_batches(lengths, max(1, int(batch_size)))
    return token_budget_batches(lengths, int(batch_tokens), max_batch, max_padding=max_padding)


def parse_batch_tokens(value: Any) -> int | str | None:
    """``--batch-tokens``: None, 'auto' or a whole number >= 1."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool):
        raise ConfigError(f"batch_tokens must be 'auto' or a whole number >= 1, got {value!r}")
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"batch_tokens must be 'auto' or a whole number >= 1, got {value!r}") from None
    if n < 1 or (isinstance(value, float) and n != value):
        raise ConfigError(f"batch_tokens must be 'auto' or a whole number >= 1, got {value!r}")
    return n


def token_bytes(config: Any, dtype: torch.dtype) -> int:
    """Estimated bytes one token of a forward pass holds at once: its keys and values in every layer, and
    one layer's widest activations (hidden states, the MLP's intermediate, the attention projections)."""
    hidden = int(getattr(config, "hidden_size", 1024))
    layers = int(getattr(config, "num_hidden_layers", 24))
    heads = int(getattr(config, "num_attention_heads", 16))
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or hidden // max(1, heads))
    inter = int(getattr(config, "intermediate_size", 4 * hidden))
    size = torch.tensor([], dtype=dtype).element_size()
    return size * (2 * layers * kv_heads * head_dim + 4 * hidden + 3 * inter)


def auto_batch_tokens(device: torch.device | str, config: Any = None, dtype: torch.dtype = torch.float32) -> int:
    """The ``auto`` budget: from free memory on CUDA, :data:`CPU_BATCH_TOKENS` elsewhere."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return CPU_BATCH_TOKENS
    free, _ = torch.cuda.mem_get_info(dev)
    per_token = token_bytes(config, dtype) if config is not None else 64 * 1024
    return max(MIN_AUTO_TOKENS, int(free * AUTO_MEMORY_FRACTION) // per_token)


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError)


class OomSplitter:
    """Runs batches under a token ceiling that an out-of-memory error halves (see the module docstring).

    ``ceiling`` None: no ceiling yet. ``halvings`` counts the errors met.
    """

    def __init__(self) -> None:
        self.ceiling: int | None = None
        self.halvings = 0

    def run(self, items: Sequence[Any], lengths: Sequence[int], fn: Callable[[list[Any]], list[Any]]) -> list[Any]:
        """``fn`` over ``items`` (a batch, results one per item, in order), split where the ceiling asks."""
        items = list(items)
        if not items:
            return []
        if self.ceiling is not None and len(items) > 1 and len(items) * max(lengths) > self.ceiling:
            half = len(items) // 2
            return self.run(items[:half], lengths[:half], fn) + self.run(items[half:], lengths[half:], fn)
        try:
            return list(fn(items))
        except Exception as e:  # noqa: BLE001 - only out-of-memory errors are handled
            if not is_oom(e) or len(items) == 1:
                raise
        self.halvings += 1
        self.ceiling = max(1, len(items) * max(lengths) // 2)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(items) // 2
        return self.run(items[:half], lengths[:half], fn) + self.run(items[half:], lengths[half:], fn)
