"""IFEval's verifiable-instruction checkers, from lm-evaluation-harness, made to run offline.

lm-eval (``pip install lm-eval``) ships Google's checkers for all 25 instruction types. Two things
in them reach for NLTK's downloadable punkt model; this module supplies no-download replacements
(:mod:`.sentences`) without touching the global ``nltk`` module:

- at import, ``instructions_util`` calls ``nltk.download("punkt_tab")`` when the data is missing;
  the call is suppressed during our import (no network attempt, no noise);
- ``instructions_util.count_sentences`` loads the pretrained English punkt model: its loader is
  replaced by the untrained punkt tokenizer with an abbreviation list;
- ``instructions.py`` calls ``instructions_util.nltk.word_tokenize``: ``instructions_util.nltk`` is
  replaced by a proxy of the ``nltk`` module whose ``word_tokenize`` uses the same splitter.

``langdetect`` (language and all-caps/lower-case checkers) is seeded so its answers are repeatable.
"""

from __future__ import annotations

import contextlib
import functools
import io
import types

from ...errors import MissingDependencyError
from . import sentences


class _NltkProxy(types.ModuleType):
    """The ``nltk`` module as lm-eval's IFEval utilities see it: everything the same but word_tokenize."""

    def __init__(self, nltk_module):
        super().__init__("nltk")
        self._nltk = nltk_module
        self.word_tokenize = sentences.word_tokenize

    def __getattr__(self, name):
        return getattr(self._nltk, name)


@functools.lru_cache(maxsize=1)
def load_ifeval():
    """lm-eval's ``instructions_registry`` and ``utils`` modules, patched to need no downloads."""
    try:
        import langdetect
        import nltk
    except ImportError as e:
        raise MissingDependencyError(e.name or "nltk", "eval", "IFEval") from None
    real_download = nltk.download
    nltk.download = lambda *a, **k: False  # lm-eval calls it at import when punkt_tab is absent
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from lm_eval.tasks.ifeval import instructions_registry, instructions_util, utils
    except ImportError as e:
        raise MissingDependencyError("lm-eval", "eval", f"IFEval's instruction checkers ({e})") from None
    finally:
        nltk.download = real_download
    instructions_util._get_sentence_tokenizer = sentences.sentence_tokenizer
    if not isinstance(instructions_util.nltk, _NltkProxy):
        instructions_util.nltk = _NltkProxy(nltk)
    langdetect.DetectorFactory.seed = 0
    return instructions_registry, utils


def instruction_types() -> list[str]:
    registry, _ = load_ifeval()
    return sorted(registry.INSTRUCTION_DICT)
