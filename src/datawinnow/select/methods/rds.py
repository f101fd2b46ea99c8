"""RDS+ selection: the candidates closest to the --target samples in the model's own representation,
round-robin over target tasks; without a target, the samples closest to the pool's mean (central ones)."""

from __future__ import annotations

from collections import Counter

from ...data.record import Dataset
from ...registry import METHODS
from ...runtime.context import Context
from ...scores.rds import POOL_MEAN, rds_embeddings, rds_select, target_tasks
from ..base import Method, Selection


@METHODS.register
class RdsMethod(Method):
    name = "rds"
    description = ("RDS+ (Ivison et al. 2025): the model's final hidden states, position-weighted mean-pooled; max "
                   "cosine to --target samples, round-robin over target tasks; without a target, cosine to the "
                   "pool's mean embedding (favours central samples).")
    defaults: dict = {}
    stochastic = False  # no random choice: one run per budget in an experiment grid

    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        emb, info = rds_embeddings(dataset, ctx)
        target = ctx.sources.get("target")
        if target is not None and len(target):
            t_emb, t_info = rds_embeddings(target, ctx)
            tasks = target_tasks(target)
            picks, by, best, names = rds_select(emb, dataset.ids, budget, t_emb, tasks)
            info = {"embedding": info, "target": {"n": len(target), "tasks": names, "embedding": t_info}}
        else:
            picks, by, best, names = rds_select(emb, dataset.ids, budget)
            info = {"embedding": info, "target": POOL_MEAN}
        info["picked_by_task"] = dict(sorted(Counter(by).items()))
        ids = dataset.ids
        return Selection(method=self.name, params=dict(self.params), budget=budget,
                         selected=[ids[i] for i in picks], scores={rid: float(s) for rid, s in zip(ids, best)},
                         info=info)
