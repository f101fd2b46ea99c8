"""The scorer interface and the score table. (The resources a scorer uses and the cached batch runner
live in :mod:`datawinnow.runtime`.)"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..cache import atomic_write_text
from ..data.record import Dataset


if TYPE_CHECKING:
    from ..runtime.context import Context

@dataclass
class ScoreTable:
    """One score per record (float64 for ranking; never stored narrower than float32), plus named parts."""

    ids: list[str]
    score: np.ndarray
    parts: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. timings, cache hits

    def __post_init__(self):
        self.score = np.asarray(self.score, dtype=np.float64)
        if len(self.score) != len(self.ids):
            raise ValueError("one score per id is required")

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.ids, self.score.tolist()))

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for k, rid in enumerate(self.ids):
            row: dict[str, Any] = {"id": rid, "score": _num(self.score[k])}
            for name, values in self.parts.items():
                row[name] = _num(values[k])
            out.append(row)
        return out

    def write_jsonl(self, path: str) -> None:
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows()))


def _num(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        return None if np.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


class Scorer:
    """A per-sample score. Subclasses set ``name``, ``description``, ``defaults`` and implement ``score``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    param_types: ClassVar[dict[str, str]] = {}  # where a default does not tell the type (params.py)
    higher_is_better: ClassVar[bool] = True
    # True when a record's score depends only on that record and the run's settings (model, judge, params,
    # target data), never on the other records of the pool: then scoring the pool chunk by chunk gives the
    # same rows as scoring it whole, and ``datawinnow score`` streams it (datawinnow.scores.stream).
    # Anything that normalises over, clusters, samples from or compares with the pool stays False.
    per_record: ClassVar[bool] = False

    def __init__(self, **params: Any):
        from ..params import check_params  # unknown names and values of the wrong type: one ConfigError

        self.params = check_params(f"scorer '{self.name}'", self.defaults, params, self.param_types)

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        raise NotImplementedError
