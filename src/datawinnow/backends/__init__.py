"""Model backends: the causal LM (transformers), the sentence embedder (sentence-transformers)."""

from .causal_lm import CausalLM, Pair, length_sorted_batches, truncate_pair
from .device import cpu_has_fast_bf16, pick_device, pick_dtype
from .embedder import Embedder

__all__ = ["CausalLM", "Embedder", "Pair", "cpu_has_fast_bf16", "length_sorted_batches", "pick_device",
           "pick_dtype", "truncate_pair"]
