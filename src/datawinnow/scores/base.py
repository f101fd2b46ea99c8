"""The scorer interface, the score table, and the cached, resumable, progress-reporting batch runner."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Sequence

import numpy as np

from ..cache import ScoreStore, atomic_write_text
from ..data.record import Dataset, Record

log = logging.getLogger(__name__)


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


class Context:
    """What a scorer or method may need, loaded lazily so that cheap methods load no model.

    ``model``/``embedder`` are names (None: the embedded defaults) or loaded backends.
    """

    def __init__(self, *, model: Any = None, embedder: Any = None, device: str = "auto", dtype: str = "auto",
                 system: str | None = None, max_length: int = 512, batch_size: int = 8, use_cache: bool = True,
                 progress: bool = True, seed: int = 0, sources: dict[str, Dataset] | None = None, judge: Any = None,
                 **extra: Any):
        self._model, self._embedder = model, embedder
        self._judge = judge  # a Judge, or a spec for backends.judge.load_judge (None: local, with this model)
        self.device, self.dtype, self.system, self.max_length = device, dtype, system, max_length
        self.batch_size, self.use_cache, self.progress, self.seed = batch_size, use_cache, progress, seed
        self.sources = sources or {}
        self.extra = extra

    @property
    def model(self):
        from ..backends.causal_lm import CausalLM

        if not isinstance(self._model, CausalLM):
            self._model = CausalLM.load(self._model, device=self.device, dtype=self.dtype, system=self.system,
                                        max_length=self.max_length)
        return self._model

    @property
    def model_loaded(self) -> bool:
        from ..backends.causal_lm import CausalLM

        return isinstance(self._model, CausalLM)

    @property
    def embedder(self):
        from ..backends.embedder import Embedder

        if not isinstance(self._embedder, Embedder):
            self._embedder = Embedder.load(self._embedder, device=self.device)
        return self._embedder

    @property
    def judge(self):
        """The judge (loaded on first use); a local judge without its own model judges with :attr:`model`."""
        from ..backends.judge import Judge, load_judge

        if not isinstance(self._judge, Judge):
            spec = dict(self._judge) if isinstance(self._judge, dict) else {"kind": self._judge}
            if spec.get("kind") in (None, "local") and spec.get("model") is None and not spec.get("base_url"):
                spec["model"] = self.model
            if spec.get("kind") in (None, "local"):
                spec.setdefault("batch_size", self.batch_size)
            self._judge = load_judge(spec)
        return self._judge

    def model_identity(self) -> str | None:
        return self.model.identity if self.model_loaded else None


class Scorer:
    """A per-sample score. Subclasses set ``name``, ``description``, ``defaults`` and implement ``score``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    param_types: ClassVar[dict[str, str]] = {}  # where a default does not tell the type (params.py)
    higher_is_better: ClassVar[bool] = True

    def __init__(self, **params: Any):
        from ..params import check_params  # unknown names and values of the wrong type: one ConfigError

        self.params = check_params(f"scorer '{self.name}'", self.defaults, params, self.param_types)

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        raise NotImplementedError


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "sample"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                smoothing=0.1)


def run_cached(
    dataset: Dataset,
    *,
    scorer: str,
    params: dict[str, Any],
    identity: str | None,
    compute: Callable[[list[Record]], list[dict[str, Any]]],
    plan: Callable[[list[Record]], Iterable[list[int]]],
    ctx: Context,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for every record: cached ones read back, the rest computed batch by batch and stored.

    ``plan(todo)`` yields batches as index lists into ``todo`` (e.g. length-sorted); ``compute(batch)``
    returns one row per record (a dict of JSON numbers). Each finished batch is stored atomically
    before the next starts, so an interrupted run loses only the batch in flight. A progress bar
    shows rate and ETA; the last line reports samples/s.
    """
    store = ScoreStore(scorer, params, identity) if ctx.use_cache else None
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Record] = []
    for r in dataset:
        hit = store.lookup(r.id, r.content_key()) if store is not None else None
        if hit is not None:
            rows[r.id] = hit
        else:
            todo.append(r)
    t0 = time.perf_counter()
    if todo:
        bar = progress_bar(len(todo), f"{scorer}", ctx.progress)
        try:
            for idx in plan(todo):
                batch = [todo[i] for i in idx]
                out = compute(batch)
                stamped = [{**row, "id": r.id, "_key": r.content_key()} for r, row in zip(batch, out)]
                if store is not None:
                    store.put(stamped)
                for row in stamped:
                    rows[row["id"]] = row
                bar.update(len(batch))
        finally:
            bar.close()
        if store is not None:
            store.compact()
    seconds = time.perf_counter() - t0
    info = {"computed": len(todo), "cached": len(dataset) - len(todo), "seconds": round(seconds, 3),
            "samples_per_s": round(len(todo) / seconds, 3) if todo and seconds > 0 else None}
    if todo:
        log.info(f"{scorer}: scored {len(todo)} samples in {seconds:.1f} s ({len(todo) / seconds:.2f} samples/s); "
                 f"{info['cached']} from cache")
    return [rows[r.id] for r in dataset], info


def sequential_plan(batch_size: int) -> Callable[[list[Record]], Iterable[list[int]]]:
    def plan(todo: Sequence[Record]) -> Iterable[list[int]]:
        return [list(range(k, min(k + batch_size, len(todo)))) for k in range(0, len(todo), batch_size)]

    return plan
