"""Per-sample scores behind one interface (:class:`Scorer`) and a registry (``datawinnow.registry.SCORERS``)."""

from .base import Context, Scorer, ScoreTable, run_cached

__all__ = ["Context", "ScoreTable", "Scorer", "run_cached"]
