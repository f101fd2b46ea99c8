"""A synthetic RUN_DIR/results.json that follows the results schema (notes: RESULTS_SCHEMA), for the
statistics and report tests: per-item scores drawn from an additive model with known differences."""

from __future__ import annotations

from typing import Any

import numpy as np

SUITES = {
    "arc_easy": {"suite": "arc_easy", "metric": "acc", "higher_is_better": True, "kind": "binary"},
    "generation": {"suite": "generation", "metric": "rougeL", "higher_is_better": True, "kind": "continuous"},
}


def _cost(seconds: float, tokens: int, n_params: int, train: bool = False) -> dict[str, Any]:
    fwd = 2.0 * n_params * tokens
    return {"seconds": seconds, "fwd_tokens": tokens, "bwd_tokens": tokens if train else 0,
            "flops": fwd * (3.0 if train else 1.0)}


def make_results(*, effects: dict[str, float] | None = None, budgets=(0.1, 0.3), random_seeds=(0, 1, 2),
                 method_seeds: dict[str, list[int]] | None = None, n_items: int = 120, pool_ids: list[str] | None = None,
                 seed_sd: float = 0.01, noise_sd: float = 0.15, seed: int = 0, suites: dict | None = None
                 ) -> dict[str, Any]:
    """``effects``: method label -> true difference to random (in score units, every suite and budget)."""
    effects = {"good": 0.08, "same": 0.0} if effects is None else effects
    method_seeds = method_seeds or {}
    suites = suites or SUITES
    rng = np.random.default_rng(seed)
    pool_ids = pool_ids or [f"p{i:03d}" for i in range(60)]
    n_params = 1_000_000
    base = {s: rng.uniform(0.3, 0.7, n_items) for s in suites}  # item difficulty (a_i)

    def scores(suite: str, shift: float, seed_effect: float) -> list[dict[str, Any]]:
        p = np.clip(base[suite] + shift + seed_effect + rng.normal(0, noise_sd, n_items), 0, 1)
        vals = (rng.random(n_items) < p).astype(float) if suites[suite]["kind"] == "binary" else p
        return [{"id": f"{suite}-{j}", "score": float(v)} for j, v in enumerate(vals)]

    cells = []

    def add(kind: str, method: str, budget: float, s: int, shift: float, sel_flops: float = 0.0):
        n_sel = int(round(budget * len(pool_ids)))
        pick = np.random.default_rng([seed, s, len(cells)]).permutation(len(pool_ids))[:n_sel]
        seed_eff = float(rng.normal(0, seed_sd))
        suite_blocks = {}
        for su, spec in suites.items():
            items = scores(su, shift, seed_eff)
            vals = [it["score"] for it in items]
            suite_blocks[su] = {"summary": {spec["metric"]: float(np.mean(vals)), "n": len(vals)}, "items": items}
        cost = {"selection": {**_cost(0.5, 0, n_params), "flops": sel_flops},
                "training": _cost(2.0 * n_sel, 100 * n_sel, n_params, train=True) if n_sel else _cost(0, 0, n_params),
                "evaluation": _cost(3.0, 5000, n_params)}
        cells.append({"key": f"{method}/b={budget:g}/s={s}", "kind": kind, "method": method, "params": {},
                      "budget": budget, "budget_n": n_sel, "seed": s,
                      "selected_ids": [pool_ids[i] for i in pick], "cost": cost, "suites": suite_blocks})

    for b in budgets:
        for s in random_seeds:
            add("random", "random", b, s, 0.0)
        for m, eff in effects.items():
            for s in method_seeds.get(m, [0]):
                add("method", m, b, s, eff, sel_flops=1e12 * (1 + list(effects).index(m)))
    add("zero_shot", "zero_shot", 0.0, 0, -0.1)
    add("full", "full", 1.0, 0, 0.05)
    return {
        "schema": 1, "datawinnow_version": "0.1.0", "created": "2025-01-01T00:00:00+00:00",
        "command": "datawinnow run-experiment synthetic.yaml --out run",
        "machine": {"cpu": "synthetic CPU", "cores": 2, "device": "cpu", "dtype": "fp32", "gpu": None},
        "config": {"name": "synthetic"},
        "model": {"name": "tiny", "identity": "tiny@0|fp32", "n_params": n_params},
        "pool": {"source": "pool.jsonl", "n": len(pool_ids), "fingerprint": "0" * 16},
        "mode": "finetune",
        "suites": {k: {kk: vv for kk, vv in v.items() if kk != "kind"} for k, v in suites.items()},
        "cells": cells,
    }
