"""datawinnow: decide which instruction data an LLM should be fine-tuned on."""

__version__ = "0.1.0"

from .api import load, score, select  # noqa: E402

__all__ = ["__version__", "load", "score", "select"]
