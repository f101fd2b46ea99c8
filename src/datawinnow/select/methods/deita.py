"""DEITA selection: evol score (complexity x quality), then the representation filter (cosine <= tau) to the budget."""

from __future__ import annotations

import warnings

import numpy as np

from ...data.record import Dataset
from ...registry import METHODS
from ...runtime.context import Context
from ...scores.deita import deita_embeddings
from ..base import ScoreTopK, Selection, rank_desc
from ..repr_filter import representation_filter


@METHODS.register
class DeitaMethod(ScoreTopK):
    name = "deita"
    description = ("DEITA: rank by evol score (complexity x quality), keep a sample only if its cosine similarity to "
                   "every kept one is <= tau (0.9); embedding=embedder|model (last-token hidden state).")
    defaults = {"tau": 0.9, "embedding": "embedder", "complexity_model": None, "quality_model": None,
                "prompt": "auto"}
    scorer = "deita"
    scorer_params = ("complexity_model", "quality_model", "prompt")

    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        tau = float(self.params["tau"])
        table = self.compute_scores(dataset, ctx)
        emb, einfo = deita_embeddings(dataset, ctx, self.params["embedding"])
        order = rank_desc(table.score, table.ids)
        result = representation_filter(emb, order, budget, tau)
        if len(result.kept) < budget:
            warnings.warn(f"{self.name}: only {len(result.kept)} samples pass the representation filter at tau={tau:g}, "
                          f"fewer than the budget of {budget} (raise tau)", stacklevel=2)
        reasons = {table.ids[i]: f"cosine {sim:.3f} > tau {tau:g} to kept '{table.ids[j]}'"
                   for i, (j, sim) in result.rejected.items()}
        scores = {rid: (None if np.isnan(s) else float(s)) for rid, s in zip(table.ids, table.score)}
        return Selection(method=self.name, params=dict(self.params), budget=budget,
                         selected=[table.ids[i] for i in result.kept], scores=scores, reasons=reasons,
                         info={"scoring": table.info, "embedding": einfo, "examined": result.examined,
                               "rejected_as_redundant": len(result.rejected)})
