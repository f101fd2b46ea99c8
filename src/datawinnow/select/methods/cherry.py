"""Cherry LLM with the pre-experienced model: IFD from a briefly LoRA-tuned model; IFD >= 1 dropped, top IFD kept."""

from __future__ import annotations

import numpy as np

from ...registry import METHODS
from ...scores.base import ScoreTable
from ...scores.cherry import CherryScorer
from ..base import ScoreTopK


@METHODS.register
class CherryMethod(ScoreTopK):
    name = "cherry"
    stochastic = True  # seeded k-means, band sample and warm-up
    description = ("Cherry LLM full pipeline: pre-experienced LoRA model (k-means, mid-perplexity samples), then the "
                   "highest IFD < 1; default budget 10%.")
    defaults = {**CherryScorer.defaults, "keep_misaligned": False}
    default_budget = 0.1
    scorer = "cherry"
    scorer_params = tuple(CherryScorer.defaults)

    def eligible(self, table: ScoreTable) -> tuple[np.ndarray, dict[int, str]]:
        if self.params["keep_misaligned"]:
            return np.ones(len(table.ids), dtype=bool), {}
        mask = table.score < 1.0
        return mask, {i: "IFD >= 1 (misaligned)" for i in np.flatnonzero(~mask)}
