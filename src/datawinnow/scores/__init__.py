"""Per-sample scores behind one interface (:class:`Scorer`) and a registry (``datawinnow.registry.SCORERS``).

The resources a scorer uses (:class:`datawinnow.runtime.Context`) and the cached batch runner
(:func:`datawinnow.runtime.run_cached`) live in the runtime layer below."""

from .base import Scorer, ScoreTable

__all__ = ["ScoreTable", "Scorer"]
