"""Selection: methods (registered in ``datawinnow.registry.METHODS``), budgets, manifests."""

from .base import Method, ScoreTopK, Selection, rank_desc
from ..budget import resolve_budget
from .manifest import build_manifest, write_manifest

__all__ = ["Method", "ScoreTopK", "Selection", "build_manifest", "rank_desc", "resolve_budget", "write_manifest"]
