"""Statistics of an experiment grid against random, recomputable from ``RUN_DIR/results.json`` alone.

Per suite, a cell's score is the mean of its per-item primary-metric values over the evaluation
items that every cell of the run scored (so all comparisons are paired on the same items). A
*group* is one method at one budget, its cells one per seed.

- **Spread**: per group and suite, the mean over seeds, the standard deviation (ddof 1), min and max.
- **Difference to random**: method mean minus random mean at the same budget, oriented so that a
  positive difference is better (suites with ``higher_is_better: false`` are flipped).
- **Bootstrap** (``n_boot`` replicates, seeded): the grid is a crossed design (items x seeds), so a
  replicate adds two independent perturbations to the point estimate:

  * *items*: one multinomial resample of the evaluation items per suite, the **same** resample for
    every cell (paired), applied to each cell's per-item scores;
  * *seeds*: the seed-to-seed effect of each group, drawn with replacement from its cells'
    standardised seed effects and scaled to tau, the seed standard deviation estimated by a two-way
    ANOVA (tau^2 = max(0, (MS_seed - MS_residual) / n_items)), so per-item noise, already in the
    item part, is not counted twice; the effects are rescaled by sqrt(k / (k - 1)) so that the
    resampled mean of k seeds has variance tau^2 / k. A group with one seed (a deterministic method)
    borrows the seed effects of random at its budget (its single training run is one draw of the
    same seed-to-seed noise; in ICL mode this is conservative). The seed draws are shared across
    suites, so a cell's seed effect is the same draw in every suite.

  The CI is the percentile interval of the replicates. With few seeds the seed part of the interval
  rests on few values; when seed-to-seed variation dominates, intervals are too narrow (simulated
  coverage about 85% with 3 seeds per side when the seed effect is twice the item error).
- **Verdict**: "better than random" when the CI lies above 0, "worse than random" below 0,
  "not distinguishable" otherwise.
- **Best random seed**: whether the method's mean beats the best single random seed.
- **Aggregate over suites**: each suite's difference divided by its *scale*, the pooled standard
  deviation of per-item scores in the random cells (an effect size; 1 when it is 0), then the mean
  over suites, per replicate; the verdict reads the CI of that mean. The per-method verdict does the
  same over every budget (the mean of the per-budget aggregates). The random band in these units is
  the spread of random's seeds (each seed's mean standardised score over the suites) around their mean.
- **Costs**: per group, the mean over seeds of the selection, training and evaluation seconds and
  FLOPs, next to the cost of training on the full pool (the ``full`` cell; without one, estimated from
  the trained cells, see :func:`full_training_cost`).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError

BETTER = "better than random"
WORSE = "worse than random"
SAME = "not distinguishable"
KINDS = ("method", "random", "zero_shot", "full")
COST_PARTS = ("selection", "training", "evaluation")
_CHUNK = 1 << 22  # item-weight entries per bootstrap chunk (memory bound: 32 MB of float64)


# ---------------------------------------------------------------------------------------------- input
def load_results(path: str | Path) -> dict[str, Any]:
    """``results.json`` (a file, or a run folder holding one), validated."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise DataError("no results.json here (run 'datawinnow run-experiment' first)", path=str(p))
    try:
        results = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON ({e.msg})", path=str(p), line=e.lineno) from None
    validate_results(results, str(p))
    return results


def validate_results(results: Any, where: str = "results.json") -> None:
    """Raise :class:`DataError` naming the field of the first thing the statistics cannot read."""
    def fail(fieldname: str, msg: str):
        raise DataError(msg, path=where, field=fieldname)

    if not isinstance(results, dict):
        fail("(top level)", "must be a JSON object")
    if results.get("schema") != 1:
        fail("schema", f"unsupported results schema {results.get('schema')!r} (this version reads 1)")
    suites = results.get("suites")
    if not isinstance(suites, dict):
        fail("suites", "must be an object: suite label -> {metric, higher_is_better}")
    for s, spec in suites.items():
        if not isinstance(spec, dict) or "metric" not in spec:
            fail(f"suites.{s}", "needs 'metric'")
    cells = results.get("cells")
    if not isinstance(cells, list):
        fail("cells", "must be a list")
    keys = set()
    for i, c in enumerate(cells):
        at = f"cells[{i}]"
        if not isinstance(c, dict):
            fail(at, "must be an object")
        for k in ("key", "kind", "method", "budget", "seed", "suites"):
            if k not in c:
                fail(f"{at}.{k}", "missing")
        if c["kind"] not in KINDS:
            fail(f"{at}.kind", f"must be one of {', '.join(KINDS)}, got {c['kind']!r}")
        if c["key"] in keys:
            fail(f"{at}.key", f"duplicate cell key {c['key']!r}")
        keys.add(c["key"])
        if not isinstance(c["budget"], (int, float)) or not isinstance(c["seed"], int):
            fail(f"{at}.budget", "budget must be a number and seed an integer")
        if not isinstance(c["suites"], dict):
            fail(f"{at}.suites", "must be an object: suite label -> {summary, items}")
        for s, block in c["suites"].items():
            if s not in suites:
                fail(f"{at}.suites.{s}", f"suite '{s}' is not declared in the top-level 'suites'")
            items = block.get("items") if isinstance(block, dict) else None
            if not isinstance(items, list):
                fail(f"{at}.suites.{s}.items", "must be a list of {id, score}")
            seen = set()
            for j, it in enumerate(items):
                if not isinstance(it, dict) or "id" not in it or "score" not in it:
                    fail(f"{at}.suites.{s}.items[{j}]", "needs 'id' and 'score'")
                if it["id"] in seen:
                    fail(f"{at}.suites.{s}.items[{j}].id", f"duplicate item id {it['id']!r}")
                seen.add(it["id"])
                if it["score"] is not None and not isinstance(it["score"], (int, float)):
                    fail(f"{at}.suites.{s}.items[{j}].score", f"must be a number or null, got {it['score']!r}")


# ---------------------------------------------------------------------------------------------- groups
@dataclass
class Group:
    """One method (label) at one budget: its cells, one per seed, in seed order."""

    label: str
    kind: str
    budget: float
    cells: list[int] = field(default_factory=list)  # indices into results["cells"]
    seeds: list[int] = field(default_factory=list)


def budget_key(b: float) -> float:
    return round(float(b), 10)


def group_cells(results: dict[str, Any]) -> list[Group]:
    """Groups in report order: random, then methods in order of first appearance, zero-shot, full."""
    groups: dict[tuple[str, float], Group] = {}
    for i, c in enumerate(results["cells"]):
        key = (c["method"], budget_key(c["budget"]))
        g = groups.setdefault(key, Group(c["method"], c["kind"], key[1]))
        g.cells.append(i)
        g.seeds.append(int(c["seed"]))
    for g in groups.values():
        order = sorted(range(len(g.cells)), key=lambda k: g.seeds[k])
        g.cells = [g.cells[k] for k in order]
        g.seeds = [g.seeds[k] for k in order]
    rank = {"random": 0, "method": 1, "zero_shot": 2, "full": 3}
    first = {}
    for g in groups.values():
        first.setdefault(g.label, min(g.cells))
    return sorted(groups.values(), key=lambda g: (rank[g.kind], first[g.label], g.budget))


def method_labels(results: dict[str, Any]) -> list[str]:
    """Labels of the selection methods compared with random (kind 'method'), in report order."""
    out: list[str] = []
    for g in group_cells(results):
        if g.kind == "method" and g.label not in out:
            out.append(g.label)
    return out


@dataclass
class SuiteData:
    """One suite's per-item scores of every cell that has it, on the items all of them scored."""

    name: str
    metric: str
    sign: float
    item_ids: list[str]
    rows: dict[int, int]  # cell index -> row of X
    X: np.ndarray  # [n_rows, n_items] float64
    dropped: int  # items left out: missing from some cell, or without a finite score in some cell


def suite_data(results: dict[str, Any], suite: str) -> SuiteData:
    spec = results["suites"][suite]
    cells = [i for i, c in enumerate(results["cells"]) if suite in c["suites"]]
    per_cell = []
    for i in cells:
        per_cell.append({it["id"]: (math.nan if it["score"] is None else float(it["score"]))
                         for it in results["cells"][i]["suites"][suite]["items"]})
    every: list[str] = []
    seen = set()
    for d in per_cell:
        for k in d:
            if k not in seen:
                seen.add(k)
                every.append(k)
    keep = [k for k in every if all(k in d and math.isfinite(d[k]) for d in per_cell)]
    X = np.array([[d[k] for k in keep] for d in per_cell], dtype=np.float64).reshape(len(cells), len(keep))
    sign = 1.0 if spec.get("higher_is_better", True) else -1.0
    return SuiteData(suite, spec["metric"], sign, keep, {c: r for r, c in enumerate(cells)}, X,
                     len(every) - len(keep))


# ---------------------------------------------------------------------------------------------- bootstrap
def item_deviations(X: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_rows, n_boot]``: each row's mean over one shared multinomial resample of the items, minus its mean.

    Every row (cell) sees the same resample in a replicate, so differences between rows are paired.
    """
    n_rows, n = X.shape
    out = np.zeros((n_rows, n_boot), dtype=np.float64)
    if n == 0:
        return out
    means = X.mean(axis=1)
    step = max(1, _CHUNK // n)
    p = np.full(n, 1.0 / n)
    for s in range(0, n_boot, step):
        b = min(step, n_boot - s)
        w = rng.multinomial(n, p, size=b).astype(np.float64)  # [b, n] item counts
        out[:, s:s + b] = (X @ w.T) / n - means[:, None]
    return out


def seed_components(X: np.ndarray) -> tuple[np.ndarray, float]:
    """(standardised seed effects ``z`` [k], tau^2) of one group's cells ``X`` [k seeds, n items].

    tau^2 is the two-way ANOVA estimate of the seed variance (seeds x items, no replication):
    max(0, (MS_seed - MS_residual) / n). ``z`` are the centred cell means scaled to unit standard
    deviation (ddof 1) and by sqrt(k / (k - 1)), so a mean of k draws with replacement from
    ``sqrt(tau^2) * z`` has variance tau^2 / k. One seed (or no spread): zeros and 0.
    """
    k, n = X.shape
    if k < 2 or n == 0:
        return np.zeros(k), 0.0
    m = X.mean(axis=1)
    r = m - m.mean()
    sd = float(r.std(ddof=1))
    if sd == 0.0:
        return np.zeros(k), 0.0
    ms_seed = n * float((r ** 2).sum()) / (k - 1)
    if n > 1:
        resid = X - X.mean(axis=0, keepdims=True) - r[:, None]
        ms_resid = float((resid ** 2).sum()) / ((k - 1) * (n - 1))
    else:
        ms_resid = 0.0
    tau2 = max(0.0, (ms_seed - ms_resid) / n)
    return r / sd * math.sqrt(k / (k - 1)), tau2


def seed_part(z: np.ndarray, tau2: float, u: np.ndarray) -> np.ndarray:
    """``[n_boot]`` seed perturbations: the mean of ``u.shape[1]`` draws from ``sqrt(tau2) * z``.

    ``u`` holds uniform numbers in [0, 1), one per replicate and draw, so the same ``u`` gives the
    same draws in every suite.
    """
    if tau2 <= 0.0 or len(z) == 0:
        return np.zeros(u.shape[0])
    idx = np.minimum((u * len(z)).astype(np.int64), len(z) - 1)
    return math.sqrt(tau2) * z[idx].mean(axis=1)


def bootstrap_difference(method_scores: np.ndarray, random_scores: np.ndarray, *, n_boot: int = 2000,
                         seed: int = 0) -> tuple[float, np.ndarray]:
    """(point difference, ``[n_boot]`` replicates) of method minus random on one suite.

    ``method_scores`` [k_m seeds, n items] and ``random_scores`` [k_r seeds, n items] hold per-item
    scores on the same items in the same order. The same resampling as :func:`compute_stats`.
    """
    rng = np.random.default_rng(seed)
    Xm = np.atleast_2d(np.asarray(method_scores, dtype=np.float64))
    Xr = np.atleast_2d(np.asarray(random_scores, dtype=np.float64))
    if Xm.shape[1] != Xr.shape[1]:
        raise ValueError("method and random scores need the same items")
    dev = item_deviations(np.vstack([Xm, Xr]), n_boot, rng)
    km = len(Xm)
    zr, t2r = seed_components(Xr)
    zm, t2m = seed_components(Xm) if km > 1 else (zr, t2r)
    um = rng.random((n_boot, km))
    ur = rng.random((n_boot, len(Xr)))
    point = float(Xm.mean() - Xr.mean())
    reps = (point + dev[:km].mean(axis=0) - dev[km:].mean(axis=0)
            + seed_part(zm, t2m, um) - seed_part(zr, t2r, ur))
    return point, reps


def verdict(lo: float, hi: float) -> str:
    if lo > 0:
        return BETTER
    if hi < 0:
        return WORSE
    return SAME


def _rng(seed: int, *parts: Any) -> np.random.Generator:
    """A generator for one named stream, so adding a method or suite never changes another's draws."""
    words = [zlib.crc32(str(p).encode("utf-8")) for p in parts]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def _interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [a, 1.0 - a])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------- main
def compute_stats(results: dict[str, Any], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
                  ) -> dict[str, Any]:
    """Every number the report shows, as a JSON-able dict (see the module docstring for the rules)."""
    if n_boot < 100:
        raise ValueError("n_boot must be at least 100")
    if not 0.5 < level < 1.0:
        raise ValueError("level must be in (0.5, 1)")
    cells = results["cells"]
    groups = group_cells(results)
    random_at = {g.budget: g for g in groups if g.kind == "random"}
    notes: list[str] = [] if cells else ["results.json holds no finished cell yet"]
    for b, g in sorted(random_at.items()):
        if len(g.cells) < 3:
            notes.append(f"random has {len(g.cells)} seed(s) at budget {fmt_budget(b)}: the protocol asks for at "
                         "least 3" + ("; its seed-to-seed spread is not estimated" if len(g.cells) == 1 else ""))
    # shared seed draws: one uniform matrix per group, reused in every suite
    uniforms = {id(g): _rng(seed, "seeds", g.label, g.budget).random((n_boot, len(g.cells))) for g in groups}

    suites_out: dict[str, Any] = {}
    cell_rows: list[dict[str, Any]] = []
    comp_rows: list[dict[str, Any]] = []
    reps_std: dict[tuple[str, float], dict[str, np.ndarray]] = {}  # (label, budget) -> suite -> standardised reps
    point_std: dict[tuple[str, float], dict[str, float]] = {}
    cell_std: dict[int, dict[str, float]] = {}  # cell index -> suite -> oriented, standardised cell score

    for suite in results["suites"]:
        sd = suite_data(results, suite)
        n_items = len(sd.item_ids)
        rand_rows = [sd.rows[i] for g in random_at.values() for i in g.cells if i in sd.rows]
        scale_rows = rand_rows or list(range(len(sd.X)))
        scale = _pooled_sd(sd.X[scale_rows]) if n_items > 1 and scale_rows else 0.0
        scale = scale if scale > 0 else 1.0
        suites_out[suite] = {"metric": sd.metric, "higher_is_better": sd.sign > 0, "n_items": n_items,
                             "items_dropped": sd.dropped, "scale": scale,
                             "suite": results["suites"][suite].get("suite", suite)}
        if sd.dropped:
            notes.append(f"{suite}: {sd.dropped} item(s) left out (not scored, or not finite, in every cell)")
        if n_items == 0:
            if cells:
                notes.append(f"{suite}: no item scored by every cell; no statistics")
            continue
        dev = item_deviations(sd.X, n_boot, _rng(seed, "items", suite))
        cell_mean = sd.X.mean(axis=1)
        for i, r in sd.rows.items():
            cell_std.setdefault(i, {})[suite] = sd.sign * cell_mean[r] / scale

        comps: dict[int, tuple[np.ndarray, float]] = {}

        def components(g: Group) -> tuple[np.ndarray, float]:
            if id(g) not in comps:
                comps[id(g)] = seed_components(sd.X[[sd.rows[i] for i in g.cells]])
            return comps[id(g)]

        def replicates(g: Group) -> tuple[float, np.ndarray, str]:
            """(mean, replicates of the mean, where its seed part comes from) for a group on this suite."""
            rows = [sd.rows[i] for i in g.cells]
            mu = float(cell_mean[rows].mean())
            reps = mu + dev[rows].mean(axis=0)
            if len(rows) > 1:
                z, t2 = components(g)
                source = "own seeds"
            elif g.kind == "method" and g.budget in random_at and all(i in sd.rows for i in random_at[g.budget].cells) \
                    and len(random_at[g.budget].cells) > 1:
                z, t2 = components(random_at[g.budget])
                source = "random's seeds"
            else:
                z, t2, source = np.zeros(1), 0.0, "none"
            return mu, reps + seed_part(z, t2, uniforms[id(g)]), source

        group_reps: dict[int, tuple[float, np.ndarray, str]] = {}
        for g in groups:
            if not all(i in sd.rows for i in g.cells):
                continue
            mu, reps, source = replicates(g)
            group_reps[id(g)] = (mu, reps, source)
            vals = cell_mean[[sd.rows[i] for i in g.cells]]
            lo, hi = _interval(reps, level)
            cell_rows.append({
                "method": g.label, "kind": g.kind, "budget": g.budget, "suite": suite, "metric": sd.metric,
                "n_seeds": len(g.cells), "seeds": list(g.seeds), "n_items": n_items,
                "mean": mu, "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "min": float(vals.min()), "max": float(vals.max()), "ci_low": lo, "ci_high": hi,
                "per_seed": [float(v) for v in vals], "seed_spread_from": source,
            })
        for g in groups:
            if g.kind != "method" or id(g) not in group_reps:
                continue
            rg = random_at.get(g.budget)
            if rg is None or id(rg) not in group_reps:
                notes.append(f"{g.label} at budget {fmt_budget(g.budget)} on {suite}: no random cells to compare with")
                continue
            mu_m, rep_m, source = group_reps[id(g)]
            mu_r, rep_r, _ = group_reps[id(rg)]
            diff_reps = sd.sign * (rep_m - rep_r)
            diff = sd.sign * (mu_m - mu_r)
            lo, hi = _interval(diff_reps, level)
            rand_vals = sd.sign * cell_mean[[sd.rows[i] for i in rg.cells]]
            best = float(rand_vals.max())
            comp_rows.append({
                "method": g.label, "budget": g.budget, "suite": suite, "metric": sd.metric,
                "method_mean": mu_m, "random_mean": mu_r, "diff": diff, "ci_low": lo, "ci_high": hi,
                "verdict": verdict(lo, hi), "best_random": sd.sign * best,
                "beats_best_random": bool(sd.sign * mu_m > best), "n_items": n_items,
                "n_seeds": len(g.cells), "n_random_seeds": len(rg.cells), "seed_spread_from": source,
            })
            reps_std.setdefault((g.label, g.budget), {})[suite] = diff_reps / scale
            point_std.setdefault((g.label, g.budget), {})[suite] = diff / scale

    aggregate, methods = _aggregate(groups, random_at, comp_rows, reps_std, point_std, cell_std, level)
    random_bands = []
    for b, g in sorted(random_at.items()):
        per_cell = [cell_std.get(i, {}) for i in g.cells]
        suites = sorted(set.intersection(*(set(d) for d in per_cell))) if per_cell else []
        if suites:
            agg = np.array([np.mean([d[s] for s in suites]) for d in per_cell])
            random_bands.append({"budget": b, "low": float(agg.min() - agg.mean()),
                                 "high": float(agg.max() - agg.mean()), "n_seeds": len(agg)})
    return {
        "settings": {"n_boot": n_boot, "seed": seed, "level": level},
        "suites": suites_out,
        "budgets": sorted({g.budget for g in groups if g.kind in ("method", "random")}),
        "methods_order": method_labels(results),
        "cells": cell_rows,
        "comparisons": comp_rows,
        "aggregate": aggregate,
        "methods": methods,
        "random_bands": random_bands,
        "costs": cost_summary(results),
        "notes": notes,
    }


def _pooled_sd(X: np.ndarray) -> float:
    """sqrt of the mean over rows of each row's item variance (ddof 1)."""
    if X.shape[1] < 2:
        return 0.0
    return float(math.sqrt(float(X.var(axis=1, ddof=1).mean())))


def _aggregate(groups, random_at, comp_rows, reps_std, point_std, cell_std, level):
    aggregate: list[dict[str, Any]] = []
    per_method: dict[str, list[tuple[float, float, np.ndarray, str]]] = {}
    for g in groups:
        key = (g.label, g.budget)
        if g.kind != "method" or key not in reps_std:
            continue
        suites = sorted(reps_std[key])
        reps = np.mean([reps_std[key][s] for s in suites], axis=0)
        point = float(np.mean([point_std[key][s] for s in suites]))
        lo, hi = _interval(reps, level)

        def agg_score(i: int) -> float | None:
            have = cell_std.get(i, {})
            return float(np.mean([have[s] for s in suites])) if all(s in have for s in suites) else None

        m_scores = [agg_score(i) for i in g.cells]
        r_scores = [agg_score(i) for i in random_at[g.budget].cells]
        beats = None
        if None not in m_scores and None not in r_scores and r_scores:
            beats = bool(np.mean(m_scores) > max(r_scores))
        v = verdict(lo, hi)
        aggregate.append({
            "method": g.label, "budget": g.budget, "suites": suites, "diff": point, "ci_low": lo, "ci_high": hi,
            "verdict": v, "beats_best_random": beats,
            "suite_verdicts": {r["suite"]: r["verdict"] for r in comp_rows
                               if r["method"] == g.label and r["budget"] == g.budget},
        })
        per_method.setdefault(g.label, []).append((g.budget, point, reps, v))
    methods = []
    family = family_level(level, len(per_method))
    for label, rows in per_method.items():
        reps = np.mean([r[2] for r in rows], axis=0)
        point = float(np.mean([r[1] for r in rows]))
        lo, hi = _interval(reps, level)
        v = verdict(lo, hi)
        fw_lo, fw_hi = _interval(reps, family)
        fw = verdict(fw_lo, fw_hi)
        by_budget = {fmt_budget(b): vb for b, _, _, vb in rows}
        parts = ", ".join(f"{_short(vb)} at {b}" for b, vb in by_budget.items())
        adjusted = (f"; {fw} with all {len(per_method)} methods' intervals held together (Bonferroni, "
                    f"{100 * family:.1f}% CI [{fw_lo:+.3f}, {fw_hi:+.3f}])" if len(per_method) > 1 else "")
        methods.append({
            "method": label, "diff": point, "ci_low": lo, "ci_high": hi, "verdict": v,
            "family_level": family, "family_ci_low": fw_lo, "family_ci_high": fw_hi, "family_verdict": fw,
            "budgets": {str(b): vb for b, _, _, vb in rows},
            "line": (f"{label}: {v} (standardised difference {point:+.3f}, {int(round(level * 100))}% CI "
                     f"[{lo:+.3f}, {hi:+.3f}], over {len(rows)} budget(s); {parts}){adjusted}"),
        })
    return aggregate, methods


def family_level(level: float, n_methods: int) -> float:
    """The confidence level of each of ``n_methods`` intervals such that all of them hold together with
    probability at least ``level`` (Bonferroni): with seven methods at 95%, 99.29% each. A grid of many
    methods otherwise calls one of them "better than random" by chance alone about once in three runs."""
    return 1.0 - (1.0 - level) / max(1, n_methods)


def _short(v: str) -> str:
    return {BETTER: "better", WORSE: "worse", SAME: "not distinguishable"}[v]


def fmt_budget(b: float) -> str:
    """0.05 -> '5%', 0.125 -> '12.5%', 1.0 -> '100%'."""
    return f"{float(b) * 100:.4g}%"


# ---------------------------------------------------------------------------------------------- costs
def _cost(cell: dict[str, Any], part: str, what: str) -> float:
    v = ((cell.get("cost") or {}).get(part) or {}).get(what)
    return float(v) if isinstance(v, (int, float)) else 0.0


def full_training_cost(results: dict[str, Any]) -> dict[str, Any]:
    """Seconds and FLOPs of training on the whole pool: the ``full`` cells' mean; without one, an
    estimate from the trained cells: their cost per training token times the full pool's training
    tokens when the results give them (``pool.train_tokens``), else their cost per selected example
    times the pool size. Zeros when nothing was trained (ICL mode)."""
    cells = results["cells"]
    full = [c for c in cells if c["kind"] == "full"]
    if full:
        return {"seconds": float(np.mean([_cost(c, "training", "seconds") for c in full])),
                "flops": float(np.mean([_cost(c, "training", "flops") for c in full])), "source": "full cell"}
    trained = [c for c in cells if _cost(c, "training", "flops") > 0 and (c.get("budget_n") or 0) > 0]
    pool = results.get("pool") or {}
    n_pool, pool_tokens = pool.get("n"), pool.get("train_tokens")
    if not trained or not n_pool:
        return {"seconds": 0.0, "flops": 0.0, "source": "none (no training in this run)"}
    tokens = sum(_cost(c, "training", "fwd_tokens") for c in trained)
    if isinstance(pool_tokens, (int, float)) and pool_tokens > 0 and tokens > 0:
        scale = float(pool_tokens) / tokens
        return {"seconds": scale * sum(_cost(c, "training", "seconds") for c in trained),
                "flops": scale * sum(_cost(c, "training", "flops") for c in trained),
                "source": f"estimated: trained cells' cost per training token x the full pool's {int(pool_tokens):,} "
                          "training tokens"}
    per_s = float(np.mean([_cost(c, "training", "seconds") / c["budget_n"] for c in trained]))
    per_f = float(np.mean([_cost(c, "training", "flops") / c["budget_n"] for c in trained]))
    source = f"estimated: trained cells' cost per selected example x {n_pool} pool records"
    if ((results.get("config") or {}).get("train") or {}).get("max_steps", -1) not in (None, -1, 0):
        source += "; unreliable: training was capped by train.max_steps"
    return {"seconds": per_s * n_pool, "flops": per_f * n_pool, "source": source}


def cost_summary(results: dict[str, Any]) -> dict[str, Any]:
    """Per group, the mean over seeds of each cost part, and ratios to training and to full-pool training."""
    cells = results["cells"]
    full = full_training_cost(results)
    rows = []
    for g in group_cells(results):
        cs = [cells[i] for i in g.cells]
        row: dict[str, Any] = {"method": g.label, "kind": g.kind, "budget": g.budget, "n_seeds": len(cs)}
        for part in COST_PARTS:
            for what in ("seconds", "flops"):
                row[f"{part}_{what}"] = float(np.mean([_cost(c, part, what) for c in cs]))
        tr = row["training_flops"]
        row["selection_over_training"] = row["selection_flops"] / tr if tr > 0 else None
        row["selection_over_full_training"] = row["selection_flops"] / full["flops"] if full["flops"] > 0 else None
        row["total_over_full_training"] = ((row["selection_flops"] + tr) / full["flops"]
                                           if full["flops"] > 0 else None)
        rows.append(row)
    return {"full_training": full, "groups": rows}


def lookup(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    """The first row whose fields equal ``match`` (budgets compared rounded)."""
    for r in rows:
        if all((budget_key(r[k]) == budget_key(v)) if k == "budget" else r.get(k) == v for k, v in match.items()):
            return r
    return None
