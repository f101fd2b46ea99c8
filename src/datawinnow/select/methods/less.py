"""LESS: the pool samples whose (Adam-preconditioned) gradients align best with the --target samples'."""

from __future__ import annotations

from ...registry import METHODS
from ...scores.less import LessScorer
from ..base import ScoreTopK


@METHODS.register
class LessMethod(ScoreTopK):
    name = "less"
    stochastic = True  # seeded warm-up sample, LoRA init and projection
    description = ("LESS gradient influence on --target samples (LoRA warm-up, projected per-example gradients); "
                   "default budget 5%.")
    defaults = dict(LessScorer.defaults)
    default_budget = 0.05
    scorer = "less"
    scorer_params = tuple(LessScorer.defaults)
