"""The three stages of a cell -- select, train (or build the ICL prompt set), evaluate -- each cached
under ``cache_root()/experiments/{selections,adapters,evals}/KEY`` by a content key, and the
extraction of per-item primary-metric scores from each suite's results.

Keys hold everything a stage's result depends on and nothing else, so stages are shared across
cells, grids and run directories: two methods that pick the same subset share one adapter and its
evaluations; a second grid with another budget reuses every selection, adapter and evaluation the
first one finished.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache import atomic_write_json, cache_root, stable_hash
from ..data.record import Dataset
from ..errors import ConfigError
from .config import PRIMARY_METRICS, ExperimentConfig, SuiteSpec
from .cost import Cost, TokenMeter

FORMAT = 1  # bump when a stored stage result changes shape


def experiments_root() -> Path:
    return cache_root() / "experiments"


@dataclass
class CacheStats:
    """Hits and misses per stage, so a test (and the run summary) can tell what was recomputed."""

    counts: dict[str, dict[str, int]] = field(default_factory=lambda: {
        s: {"hits": 0, "misses": 0} for s in ("base", "selection", "training", "evaluation")})

    def hit(self, stage: str) -> None:
        self.counts[stage]["hits"] += 1

    def miss(self, stage: str) -> None:
        self.counts[stage]["misses"] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {k: dict(v) for k, v in self.counts.items()}


# -------------------------------------------------------------------------------------------- store
class StageStore:
    """JSON results of one stage kind, one file per key, written atomically."""

    def __init__(self, kind: str):
        self.dir = experiments_root() / kind

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None  # unreadable: recompute (writes are atomic, so this is another writer's problem)
        return data if data.get("format") == FORMAT else None

    def put(self, key: str, data: dict[str, Any]) -> None:
        atomic_write_json(self.path(key), {**data, "format": FORMAT})


class AdapterStore:
    """Adapter folders, each moved into place in one rename once training finished."""

    MARK = "experiment_stage.json"

    def __init__(self, kind: str = "adapters"):
        self.dir = experiments_root() / kind

    def path(self, key: str) -> Path:
        return self.dir / key

    def get(self, key: str) -> dict[str, Any] | None:
        mark = self.path(key) / self.MARK
        if not mark.exists():
            return None
        try:
            return json.loads(mark.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def staging(self, key: str) -> Path:
        tmp = self.dir / f".{key}.{os.getpid()}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, key: str, tmp: Path, meta: dict[str, Any]) -> Path:
        atomic_write_json(tmp / self.MARK, {**meta, "format": FORMAT})
        final = self.path(key)
        if final.exists():  # another run finished the same adapter meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, final)
        return final


# --------------------------------------------------------------------------------------------- keys
def model_identity(name: str, device: str, dtype: str) -> str:
    """What :attr:`CausalLM.identity` will be, without loading the model (for cache keys and dry runs)."""
    from ..backends.causal_lm import _file_fingerprint
    from ..backends.device import dtype_name, pick_device, pick_dtype
    from ..backends.embedded import LM_ALIASES, smollm2_identity

    dt = dtype_name(pick_dtype(dtype, pick_device(device)))
    if name in LM_ALIASES:
        ident = smollm2_identity()
    elif os.path.isdir(str(name)):
        ident = f"{os.path.abspath(name)}@{_file_fingerprint(Path(name))}"
    else:
        ident = str(name)
    return f"{ident}|{dt}"


def selection_key(cfg: ExperimentConfig, *, method: str, params: dict[str, Any], budget_n: int, seed: int,
                  pool_fp: str, model_id: str, sources_fp: dict[str, str], embedder_id: str | None) -> str:
    return stable_hash({"stage": "selection", "method": method, "params": params, "budget_n": budget_n,
                        "seed": seed, "pool": pool_fp, "model": model_id, "embedder": embedder_id,
                        "judge": cfg.judge, "max_length": cfg.model.max_length, "system": cfg.model.system,
                        "batch_size": cfg.selection["batch_size"], "sources": sources_fp}, 24)


def training_key(*, subset_fp: str, train: dict[str, Any], seed: int, model_id: str, extra: dict[str, Any]) -> str:
    return stable_hash({"stage": "training", "subset": subset_fp, "train": train, "seed": seed, "model": model_id,
                        **extra}, 24)


# a suite whose scoring changed in a way its own cache keys cannot see gets a version here (rubric 3: a judge
# that reads token probabilities scores each dimension by its expected digit, see evaluate/rubric.py)
SUITE_VERSIONS: dict[str, int] = {"rubric": 3}


def evaluation_key(cfg: ExperimentConfig, suite: SuiteSpec, *, subject: dict[str, Any], embedder_id: str | None) -> str:
    """``subject`` names what is evaluated (base model; adapter key; ICL subset and settings)."""
    version = SUITE_VERSIONS.get(suite.name)
    return stable_hash({"stage": "evaluation", **({"suite_version": version} if version else {}),
                        "subject": subject, "suite": suite.name, "limit": suite.limit,
                        "data": suite.data.as_dict() if suite.data else None, "max_new_tokens": suite.max_new_tokens,
                        "generation": cfg.generation, "judge": cfg.judge, "embedder": embedder_id,
                        "system": cfg.model.system, "max_length": cfg.model.max_length}, 24)


# ------------------------------------------------------------------------------------ per-item scores
def primary_metric(suite: str) -> str:
    return PRIMARY_METRICS[suite][0]


def extract_scores(suite: str, result: dict[str, Any]) -> dict[str, Any]:
    """``{"summary": {numeric summary values, "n"}, "items": [{"id", "score"}]}`` for one suite result.

    The per-item score is the suite's primary metric for that item (table ``PRIMARY_METRICS``): ROUGE-L
    F for generation, the rubric mean (1-5), the win probability x 100 for winrate, prompt-level strict
    IFEval (0/1), correctness (0/1) for multiple choice. Items the judge could not score (their row has
    an ``error``) carry no score and are left out; ``summary.n`` counts the scored items.
    """
    metric, item_field, scale = PRIMARY_METRICS[suite]
    items = []
    for row in result.get("items", []):
        if "error" in row or row.get(item_field) is None:
            continue
        items.append({"id": str(row["id"]), "score": float(row[item_field]) * scale})
    summary = {k: v for k, v in result.get("summary", {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    summary["n"] = len(items)
    if items and summary.get(metric) is None:
        summary[metric] = sum(i["score"] for i in items) / len(items)
    return {"summary": summary, "items": items}


def subset_of(pool: Dataset, ids: list[str]) -> Dataset:
    return pool.subset(ids)


def check_disjoint(train_like: dict[str, Dataset], evals: dict[str, Dataset], path: str) -> None:
    """No evaluation item may also be a training (pool, target, existing) record: same id or same content."""
    for ename, eds in evals.items():
        ekeys = {r.content_key() for r in eds}
        eids = set(eds.ids)
        for tname, tds in train_like.items():
            clash = [r.id for r in tds if r.id in eids or r.content_key() in ekeys]
            if clash:
                raise ConfigError(f"{path}: {ename}: {len(clash)} evaluation item(s) are also in {tname} "
                                  f"(first: {clash[0]}); take them from disjoint slices")


def stage_cost(meter: TokenMeter, snap) -> dict[str, Any]:
    return meter.since(snap).as_dict()


ZERO_COST = Cost().as_dict()
