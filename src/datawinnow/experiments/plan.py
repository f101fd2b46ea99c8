"""The grid of cells an experiment runs, from a validated config: one cell per (method, budget, seed),
random at every budget with every random seed, the zero-shot base model, and the full pool when it fits
the compute cap. Also loads the config's data sources (tasks, per-task slices, slices)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..data import load
from ..data.record import Dataset
from ..errors import ConfigError
from .config import POOL_METHOD, ExperimentConfig, MethodSpec, SourceSpec


@dataclass
class Cell:
    """One point of the grid. ``key`` is its name in results.json (``ifd/b=0.1/s=0``)."""

    kind: str                 # method | random | zero_shot | full
    method: str               # the registered method ("pool" for training-time selection), zero_shot, full
    label: str                # the name in results (a method entry's label)
    params: dict[str, Any]
    budget: float
    budget_n: int
    seed: int
    train: dict[str, Any] = field(default_factory=dict)  # per-method training overrides

    @property
    def key(self) -> str:
        if self.kind in ("zero_shot", "full"):
            return self.kind
        return f"{self.label}/b={self.budget:g}/s={self.seed}"


def load_source(spec: SourceSpec, what: str, path: str) -> Dataset:
    """The records a source spec stands for: ``tasks``/``exclude_tasks`` filters, then ``per_task``
    (a [start, stop) slice of each task's records in file order), then ``slice`` overall."""
    ds = load(spec.source)
    records = list(ds)
    if spec.tasks is not None or spec.exclude_tasks is not None or spec.per_task is not None:
        have = {r.task for r in records}
        for t in (spec.tasks or []) + (spec.exclude_tasks or []):
            if t not in have:
                raise ConfigError(f"{path}: {what}.tasks: task '{t}' is not in {spec.source}")
        if spec.tasks is not None:
            records = [r for r in records if r.task in set(spec.tasks)]
        if spec.exclude_tasks is not None:
            records = [r for r in records if r.task not in set(spec.exclude_tasks)]
        if spec.per_task is not None:
            a, b = spec.per_task
            seen: dict[Any, int] = {}
            kept = []
            for r in records:
                k = seen.get(r.task, 0)
                seen[r.task] = k + 1
                if a <= k < b:
                    kept.append(r)
            records = kept
    if spec.slice is not None:
        a, b = spec.slice
        records = records[a:b]
    if not records:
        raise ConfigError(f"{path}: {what}: no records left from {spec.source} after tasks/per_task/slice")
    return Dataset(records, format=ds.format, path=spec.source)


def budget_count(budget: float, n: int) -> int:
    from ..budget import resolve_budget

    return resolve_budget(float(budget), n)


def build_cells(cfg: ExperimentConfig, n_pool: int, *, full_fits: bool) -> list[Cell]:
    """Every cell of the grid in run order: zero-shot first (the cheapest reference), then budget by
    budget random and the methods (so a partial run already compares methods at the first budget),
    then the full pool."""
    cells: list[Cell] = []
    if cfg.zero_shot:
        cells.append(Cell("zero_shot", "zero_shot", "zero_shot", {}, 0.0, 0, 0))
    methods: list[MethodSpec] = list(cfg.methods)
    if not any(m.name == "random" and m.label == "random" for m in methods):
        methods.insert(0, MethodSpec(name="random", label="random", params={}, seeds=list(cfg.random_seeds)))
    for b in cfg.budgets:
        k = budget_count(b, n_pool)
        for m in methods:
            kind = "random" if m.label == "random" else "method"
            for s in m.seeds:
                cells.append(Cell(kind, m.name, m.label, dict(m.params), b, k, s, dict(m.train)))
    if full_fits:
        cells.append(Cell("full", "full", "full", {}, 1.0, n_pool, 0))
    return cells


def is_pool_method(cell: Cell) -> bool:
    return cell.method == POOL_METHOD
