"""AlpaGasus selection: keep samples the judge rates >= threshold, then cut or fill to the budget by rating."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...data.record import Dataset
from ...errors import ConfigError
from ...registry import METHODS
from ...runtime.context import Context
from ..base import Method, Selection, ScoreTopK, rank_desc


def threshold_select(score: np.ndarray, ids: list[str], threshold: float, budget: int | None, fill: bool
                     ) -> tuple[list[int], dict[int, str]]:
    """Indices picked (by score descending, ties by id) and a reason for each record left out.

    Records rated >= ``threshold`` come first; with ``budget`` None all of them are kept; otherwise the
    list is cut to ``budget``, or, when fewer pass and ``fill`` is true, filled with the best of the rest.
    """
    order = rank_desc(score, ids)
    above = [i for i in order if score[i] >= threshold]
    below = [i for i in order if score[i] < threshold]
    if budget is None:
        picked = above
    else:
        picked = above[:budget]
        if fill and len(picked) < budget:
            picked += below[:budget - len(picked)]
    chosen = set(picked)
    why = {}
    for i in range(len(ids)):
        if i in chosen:
            continue
        if np.isnan(score[i]):
            why[i] = "no rating (the judge's reply had no score)"
        elif score[i] < threshold:
            why[i] = f"rating {score[i]:g} < threshold {threshold:g}"
    return picked, why


@METHODS.register
class AlpagasusMethod(ScoreTopK):
    name = "alpagasus"
    description = ("Judge's accuracy rating 0-5 (AlpaGasus): keep rating >= threshold (4.5; Chasing Random used 4), "
                   "then cut/fill to the budget by rating; no --budget keeps exactly those above the threshold.")
    defaults = {"threshold": 4.5, "fill": True, "readout": "text", "max_tokens": 32, "on_unparsable": "error"}
    scorer = "alpagasus"
    scorer_params = ("readout", "max_tokens", "on_unparsable")

    def run(self, dataset: Dataset, budget: Any, ctx: Context) -> Selection:
        if budget is None:  # the paper's own rule: everything at or above the threshold
            self._threshold_only = True
            return Method.run(self, dataset, len(dataset), ctx)
        self._threshold_only = False
        return Method.run(self, dataset, budget, ctx)

    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        threshold = float(self.params["threshold"])
        if not 0 <= threshold <= 5:
            raise ConfigError(f"alpagasus: threshold must be within 0-5, got {threshold:g}")
        table = self.compute_scores(dataset, ctx)
        only = getattr(self, "_threshold_only", False)
        picked, why = threshold_select(table.score, table.ids, threshold, None if only else budget,
                                       bool(self.params["fill"]))
        n_above = int(np.sum(table.score >= threshold))
        if not only and len(picked) < budget:
            import warnings

            warnings.warn(f"{self.name}: only {len(picked)} records qualify, fewer than the budget of {budget}",
                          stacklevel=2)
        scores = {rid: (None if np.isnan(s) else float(s)) for rid, s in zip(table.ids, table.score)}
        return Selection(method=self.name, params=dict(self.params), budget=len(picked) if only else budget,
                         selected=[table.ids[i] for i in picked], scores=scores,
                         reasons={table.ids[i]: r for i, r in why.items()},
                         info={"scoring": table.info, "above_threshold": n_above,
                               "filled": max(0, len(picked) - n_above), "threshold_only": only})
