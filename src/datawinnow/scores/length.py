"""Response length (Chasing Random's *Longest*): characters by default, tokens on request."""

from __future__ import annotations

import numpy as np

from ..data.record import Dataset
from ..errors import ConfigError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context


@SCORERS.register
class LengthScorer(Scorer):
    name = "length"
    description = "Response length in characters (unit=chars) or model tokens (unit=tokens)."
    defaults = {"unit": "chars"}
    per_record = True  # the response's own length (tokens: by the run's tokenizer)

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        unit = self.params["unit"]
        if unit == "chars":
            values = [len(r.output) for r in dataset]
        elif unit == "tokens":
            tok = ctx.model.tokenizer
            values = [len(tok(r.output, add_special_tokens=False)["input_ids"]) for r in dataset]
        else:
            raise ConfigError(f"length: unit must be 'chars' or 'tokens', got '{unit}'")
        arr = np.asarray(values, dtype=np.float64)
        return ScoreTable(dataset.ids, arr, {"length": arr.astype(np.int64)})
