"""Selection methods: the interface, the result type, and the generic 'top by a score' recipe."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..data.record import Dataset
from ..errors import ConfigError
from ..registry import SCORERS
from ..scores.base import ScoreTable
from ..runtime.context import Context
from ..budget import resolve_budget


@dataclass
class Selection:
    """What a method chose: ids in pick order, plus per-record scores and decisions for the manifest."""

    method: str
    params: dict[str, Any]
    budget: int
    selected: list[str]
    scores: dict[str, float | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # why a record was dropped, when not just its rank
    gains: list[float] | None = None  # marginal gain of each pick (submodular methods)
    info: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # what could change the picks (Context.used_settings)


class Method:
    """A named recipe that turns a pool and a budget into a :class:`Selection`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    param_types: ClassVar[dict[str, str]] = {}  # where a default does not tell the type (params.py)
    default_budget: ClassVar[float | int | None] = None
    stochastic: ClassVar[bool] = False  # the picks depend on the seed (Context.seed); experiments run it per seed

    @classmethod
    def is_stochastic(cls, params: dict[str, Any]) -> bool:
        """Whether a run with these (complete) parameters depends on the seed."""
        return cls.stochastic

    def __init__(self, **params: Any):
        from ..params import check_params  # unknown names and values of the wrong type: one ConfigError

        self.params = check_params(f"method '{self.name}'", self.defaults, params, self.param_types)

    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        raise NotImplementedError

    def run(self, dataset: Dataset, budget: float | int | str | None, ctx: Context) -> Selection:
        if budget is None:
            if self.default_budget is None:
                raise ConfigError(f"method '{self.name}' needs a budget (--budget)")
            budget = self.default_budget
        k = resolve_budget(budget, len(dataset))
        t0 = time.perf_counter()
        with ctx.recording() as used:
            sel = self.select(dataset, k, ctx)
        sel.info.setdefault("seconds", round(time.perf_counter() - t0, 3))
        if sel.model is None:
            sel.model = ctx.model_identity() if "model" in used else None
        sel.settings = ctx.used_settings(used)
        return sel


class ScoreTopK(Method):
    """Score every record with a registered scorer, then keep the top ``budget`` (ties by id).

    Subclasses name the scorer and may filter records first (``eligible``) and map parameters.
    """

    scorer: ClassVar[str] = ""
    scorer_params: ClassVar[tuple[str, ...]] = ()

    def compute_scores(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        cls = SCORERS.get(self.scorer)
        params = {k: self.params[k] for k in self.scorer_params}
        return cls(**params).score(dataset, ctx)

    def eligible(self, table: ScoreTable) -> tuple[np.ndarray, dict[int, str]]:
        """A mask of records that may be selected, and a reason for each one that may not."""
        return np.ones(len(table.ids), dtype=bool), {}

    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        table = self.compute_scores(dataset, ctx)
        mask, why = self.eligible(table)
        order = rank_desc(table.score, table.ids, mask)
        picked = order[:budget]
        if len(picked) < budget:
            warnings.warn(f"{self.name}: only {len(picked)} records are eligible, fewer than the budget of {budget}",
                          stacklevel=2)
        scores = {rid: (None if np.isnan(s) else float(s)) for rid, s in zip(table.ids, table.score)}
        return Selection(method=self.name, params=dict(self.params), budget=budget,
                         selected=[table.ids[i] for i in picked], scores=scores,
                         reasons={table.ids[i]: r for i, r in why.items()},
                         info={"scoring": table.info, "eligible": int(mask.sum())})


def rank_desc(score: np.ndarray, ids: list[str], mask: np.ndarray | None = None) -> list[int]:
    """Indices by score descending, ties broken by id ascending; NaN and masked-out records excluded."""
    keep = [i for i in range(len(ids)) if not np.isnan(score[i]) and (mask is None or mask[i])]
    return sorted(keep, key=lambda i: (-score[i], ids[i]))
