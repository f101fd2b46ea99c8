"""datawinnow: decide which instruction data an LLM should be fine-tuned on."""

from .runtime.describe import package_version

__version__ = package_version()  # from the installed package's metadata (pyproject.toml)

from .api import load, score, score_stream, select  # noqa: E402

__all__ = ["__version__", "load", "score", "score_stream", "select"]
