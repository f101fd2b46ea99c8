"""Logging: datawinnow's own messages, and the quiet mode that also silences the libraries underneath.

Library code logs through ``logging.getLogger(__name__)`` (names under ``datawinnow``): information
at INFO (what was computed, what came from the cache, a resumed checkpoint), problems the user
should know about at WARNING (empty outputs, renamed duplicate ids, lossy conversions). Without
:func:`configure`, Python shows only the warnings. The command line calls :func:`configure`: INFO
and up on stderr, or warnings only with ``--quiet``, which also turns off the progress bars and
advisory messages of transformers, datasets and huggingface_hub and their Future/Deprecation warnings.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TextIO

ROOT = "datawinnow"

# libraries whose chatter --quiet silences (their loggers, progress bars and Python warnings)
NOISY_LIBRARIES = ("transformers", "datasets", "huggingface_hub", "accelerate", "peft", "trl", "sentence_transformers",
                   "torch", "tokenizers")


class _Format(logging.Formatter):
    """``message`` for information, ``datawinnow: warning: message`` for problems."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.WARNING:
            return f"{ROOT}: {record.levelname.lower()}: {text}"
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (so output capture in tests and notebooks sees it)."""

    def __init__(self, stream: TextIO | None = None):
        super().__init__(stream)
        self._fixed = stream is not None

    def emit(self, record: logging.LogRecord) -> None:
        if not self._fixed:
            self.stream = sys.stderr
        super().emit(record)


def configure(*, quiet: bool = False, debug: bool = False, stream: TextIO | None = None) -> logging.Logger:
    """Show datawinnow's messages on stderr (INFO; WARNING with ``quiet``; DEBUG with ``debug``).

    Idempotent: calling it again replaces the handler and level. ``quiet`` also silences the libraries.
    """
    logger = logging.getLogger(ROOT)
    for h in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(h)
    handler = _StderrHandler(stream)
    handler.setFormatter(_Format())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    if quiet:
        silence_libraries()
    return logger


def silence_libraries() -> None:
    """Turn off the progress bars, INFO/WARNING logs and Future/Deprecation warnings of the ML libraries.

    Environment switches cover libraries not imported yet (they read them at import time); the
    ones already imported are switched through their own APIs.
    """
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TQDM_DISABLE"] = "1"  # libraries that create tqdm bars directly (e.g. sentence-transformers)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in NOISY_LIBRARIES:
        warnings.filterwarnings("ignore", category=UserWarning, module=rf"{name}(\.|$)")
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.utils.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
