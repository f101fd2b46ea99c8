"""Random selection: the baseline every method must beat (seeded, reproducible)."""

from __future__ import annotations

import numpy as np

from ...data.record import Dataset
from ...registry import METHODS
from ...runtime.context import Context
from ..base import Method, Selection


@METHODS.register
class RandomMethod(Method):
    name = "random"
    description = ("A uniformly random subset (numpy's default_rng(seed) permutation; seed defaults to the "
                   "command's --seed).")
    defaults = {"seed": None}
    param_types = {"seed": "int"}  # None: the run's --seed
    stochastic = True

    def select(self, dataset: Dataset, budget: int, ctx: Context) -> Selection:
        if self.params["seed"] is None:  # one seed for the whole run: --seed / Context(seed=...)
            self.params["seed"] = ctx.seed
        rng = np.random.default_rng(int(self.params["seed"]))
        order = rng.permutation(len(dataset))[:budget]
        ids = dataset.ids
        return Selection(method=self.name, params=dict(self.params), budget=budget,
                         selected=[ids[i] for i in order], scores={})
