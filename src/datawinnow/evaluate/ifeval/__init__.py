"""IFEval: prompt- and instruction-level accuracy, strict and loose, on the bundled 541 prompts."""

from .score import check_response, load_items, summarize_ifeval

__all__ = ["check_response", "load_items", "summarize_ifeval"]
