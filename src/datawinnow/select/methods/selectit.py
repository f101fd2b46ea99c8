"""SelectIT selection: the top 20% (by default) by the model-level self-reflection score."""

from __future__ import annotations

from ...registry import METHODS
from ..base import ScoreTopK


@METHODS.register
class SelectITMethod(ScoreTopK):
    name = "selectit"
    description = ("SelectIT: top by uncertainty-aware self-reflection (token/sentence/model level); "
                   "default budget 20%.")
    defaults = {"k": 5, "alpha": 0.2, "models": None, "weights": "params", "template": "chat"}
    default_budget = 0.2
    scorer = "selectit"
    scorer_params = ("k", "alpha", "models", "weights", "template")
