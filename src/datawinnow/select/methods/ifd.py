"""IFD selection (Cherry LLM): drop misaligned samples (IFD >= 1), keep the highest IFD."""

from __future__ import annotations

import numpy as np

from ...registry import METHODS
from ...scores.base import ScoreTable
from ..base import ScoreTopK


@METHODS.register
class IFDMethod(ScoreTopK):
    name = "ifd"
    description = "Highest instruction-following difficulty; IFD >= 1 dropped unless keep_misaligned=true."
    defaults = {"variant": "loss_ratio", "empty_prompt": "auto", "keep_misaligned": False}
    scorer = "ifd"
    scorer_params = ("variant", "empty_prompt")

    def eligible(self, table: ScoreTable) -> tuple[np.ndarray, dict[int, str]]:
        if self.params["keep_misaligned"]:
            return np.ones(len(table.ids), dtype=bool), {}
        mask = table.score < 1.0
        return mask, {i: "IFD >= 1 (misaligned)" for i in np.flatnonzero(~mask)}
