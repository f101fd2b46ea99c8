"""Statistics against random: spread, paired bootstrap CIs (sign and coverage), verdicts, costs."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from datawinnow.errors import DataError
from datawinnow.experiments.stats import (BETTER, SAME, WORSE, bootstrap_difference, compute_stats, cost_summary,
                                          load_results, lookup, seed_components, validate_results)
from synthetic_results import make_results


def _tiny(items_by_cell: dict[tuple[str, str, float, int], list[float]], *, higher=True) -> dict:
    """A hand-sized results dict: (kind, method, budget, seed) -> per-item scores of suite 's'."""
    cells = []
    for (kind, method, budget, seed), vals in items_by_cell.items():
        cells.append({"key": f"{method}/b={budget}/s={seed}", "kind": kind, "method": method, "params": {},
                      "budget": budget, "budget_n": int(budget * 10), "seed": seed, "selected_ids": [],
                      "cost": {}, "suites": {"s": {"summary": {}, "items": [{"id": f"i{j}", "score": v}
                                                                           for j, v in enumerate(vals)]}}})
    return {"schema": 1, "suites": {"s": {"metric": "acc", "higher_is_better": higher}}, "cells": cells,
            "pool": {"n": 10}}


def test_spread_mean_and_best_random_by_hand():
    res = _tiny({
        ("random", "random", 0.5, 0): [1, 0, 0, 0],    # 0.25
        ("random", "random", 0.5, 1): [1, 1, 0, 0],    # 0.50
        ("random", "random", 0.5, 2): [1, 1, 1, 0],    # 0.75
        ("method", "m", 0.5, 0): [1, 1, 1, 1],         # 1.00
    })
    st = compute_stats(res, n_boot=500)
    r = lookup(st["cells"], method="random", budget=0.5, suite="s")
    assert r["mean"] == pytest.approx(0.5)
    assert r["std"] == pytest.approx(0.25)  # sample sd of 0.25, 0.5, 0.75
    assert (r["min"], r["max"]) == (0.25, 0.75)
    assert r["per_seed"] == [0.25, 0.5, 0.75]
    c = lookup(st["comparisons"], method="m", budget=0.5, suite="s")
    assert c["diff"] == pytest.approx(0.5)
    assert c["best_random"] == 0.75 and c["beats_best_random"] is True


def test_lower_is_better_flips_the_difference():
    vals = {("random", "random", 0.5, s): [0.5, 0.6, 0.4, 0.5] for s in range(3)}
    vals[("method", "m", 0.5, 0)] = [0.2, 0.3, 0.1, 0.2]  # lower error: better
    st = compute_stats(_tiny(vals, higher=False), n_boot=500)
    c = lookup(st["comparisons"], method="m", budget=0.5, suite="s")
    assert c["diff"] == pytest.approx(0.3)
    assert c["best_random"] == pytest.approx(0.5) and c["beats_best_random"] is True


def test_seed_components_by_hand():
    # 2 seeds x 3 items; cell means 2 and 4, item means 2, 3, 4
    X = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    z, tau2 = seed_components(X)
    # r = (-1, 1); MS_seed = 3 * 2 / 1 = 6; residuals all 0 -> MS_resid = 0; tau^2 = 6 / 3 = 2
    assert tau2 == pytest.approx(2.0)
    # z = r / sd(r, ddof=1) * sqrt(k / (k - 1)) = (-1, 1) / sqrt(2) * sqrt(2)
    assert z == pytest.approx([-1.0, 1.0])
    # pure item noise, no seed effect: tau^2 clipped at 0
    assert seed_components(np.array([[1.0, 0.0], [0.0, 1.0]]))[1] == 0.0
    assert seed_components(np.array([[1.0, 2.0]]))[1] == 0.0


def test_constructed_case_signs_and_verdicts():
    res = make_results(effects={"better": 0.12, "equal": 0.0, "worse": -0.12}, n_items=300, seed=3)
    st = compute_stats(res, n_boot=2000, seed=0)
    verdicts = {m["method"]: m["verdict"] for m in st["methods"]}
    assert verdicts == {"better": BETTER, "equal": SAME, "worse": WORSE}
    for c in st["comparisons"]:  # every suite and budget: the right sign; the CI excludes 0 on the less noisy suite
        if c["method"] == "better":
            assert c["diff"] > 0 and (c["ci_low"] > 0 or c["suite"] == "arc_easy")
        if c["method"] == "worse":
            assert c["diff"] < 0 and (c["ci_high"] < 0 or c["suite"] == "arc_easy")
        if c["method"] == "equal":
            assert c["ci_low"] < 0 < c["ci_high"]
    for a in st["aggregate"]:
        assert a["verdict"] == {"better": BETTER, "equal": SAME, "worse": WORSE}[a["method"]]
    agg = lookup(st["aggregate"], method="better", budget=0.1)
    assert agg["verdict"] == BETTER and agg["beats_best_random"] is True
    assert set(agg["suite_verdicts"]) == {"arc_easy", "generation"}


def test_methods_held_together_widen_each_interval_bonferroni():
    from datawinnow.experiments.stats import family_level

    assert family_level(0.95, 7) == pytest.approx(1 - 0.05 / 7)  # 99.29% each: all seven hold at 95%
    assert family_level(0.95, 1) == pytest.approx(0.95)
    res = make_results(effects={"better": 0.12, "equal": 0.0, "worse": -0.12}, n_items=300, seed=3)
    st = compute_stats(res, n_boot=2000, seed=0)
    for m in st["methods"]:
        assert m["family_level"] == pytest.approx(1 - 0.05 / 3)
        assert m["family_ci_low"] <= m["ci_low"] and m["family_ci_high"] >= m["ci_high"]
        assert "held together (Bonferroni" in m["line"]
    # a verdict that survives the wider interval keeps its sign; an 'equal' method never turns better or worse
    fam = {m["method"]: m["family_verdict"] for m in st["methods"]}
    assert fam["equal"] == SAME and fam["better"] in (BETTER, SAME) and fam["worse"] in (WORSE, SAME)


def _simulate(rng, n, km, kr, delta, item_sd=1.0, seed_sd=0.03, noise_sd=1.0):
    a = rng.normal(0, item_sd, n)  # item difficulty, shared by every cell (paired items)
    xm = a + delta + rng.normal(0, seed_sd, (km, 1)) + rng.normal(0, noise_sd, (km, n))
    xr = a + rng.normal(0, seed_sd, (kr, 1)) + rng.normal(0, noise_sd, (kr, n))
    return xm, xr


@pytest.mark.parametrize("km", [1, 3])
def test_bootstrap_ci_covers_the_true_difference_about_95_percent(km):
    rng = np.random.default_rng(2024)
    delta, hits, signs = 0.1, 0, 0
    for rep in range(200):
        xm, xr = _simulate(rng, 100, km, 3, delta)
        point, reps = bootstrap_difference(xm, xr, n_boot=400, seed=rep)
        lo, hi = np.quantile(reps, [0.025, 0.975])
        hits += lo <= delta <= hi
        signs += point > 0
    assert 0.90 <= hits / 200 <= 0.99
    assert signs > 150  # the point estimate has the right sign most of the time


def test_bootstrap_equal_methods_rarely_differ():
    rng = np.random.default_rng(7)
    false = 0
    for rep in range(200):
        xm, xr = _simulate(rng, 100, 3, 3, 0.0)
        _, reps = bootstrap_difference(xm, xr, n_boot=400, seed=rep)
        lo, hi = np.quantile(reps, [0.025, 0.975])
        false += not (lo <= 0 <= hi)
    assert false / 200 <= 0.10


def test_bootstrap_is_paired_over_items():
    # the method is random + 0.1 on every item: item difficulty cancels, the CI is tight around 0.1
    rng = np.random.default_rng(0)
    xr = np.tile(rng.normal(0, 1, 200), (3, 1))
    point, reps = bootstrap_difference(xr[:1] + 0.1, xr, n_boot=500)
    assert point == pytest.approx(0.1)
    assert np.allclose(reps, 0.1)


def test_stats_are_deterministic_and_json_able():
    res = make_results(seed=1)
    a = compute_stats(res, n_boot=300, seed=5)
    b = compute_stats(copy.deepcopy(res), n_boot=300, seed=5)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    c = compute_stats(res, n_boot=300, seed=6)
    assert a["comparisons"][0]["diff"] == c["comparisons"][0]["diff"]
    assert a["comparisons"][0]["ci_low"] != c["comparisons"][0]["ci_low"]


def test_items_are_paired_on_the_common_set():
    res = _tiny({("random", "random", 0.5, s): [0.5, 0.5, 0.5] for s in range(3)})
    res["cells"].append(copy.deepcopy(res["cells"][0]))
    extra = res["cells"][-1]
    extra.update(key="m", kind="method", method="m", seed=0)
    extra["suites"]["s"]["items"] = [{"id": "i0", "score": 1.0}, {"id": "i1", "score": None},
                                     {"id": "i2", "score": 1.0}, {"id": "i9", "score": 1.0}]
    st = compute_stats(res, n_boot=200)
    assert st["suites"]["s"]["n_items"] == 2 and st["suites"]["s"]["items_dropped"] == 2
    assert lookup(st["comparisons"], method="m")["diff"] == pytest.approx(0.5)


def test_few_random_seeds_are_noted():
    res = _tiny({("random", "random", 0.5, 0): [0, 1], ("method", "m", 0.5, 0): [1, 1]})
    st = compute_stats(res, n_boot=200)
    assert any("at least 3" in n for n in st["notes"])


def test_costs_full_cell_and_estimate():
    res = make_results(seed=0)
    costs = cost_summary(res)
    assert costs["full_training"]["source"] == "full cell"
    full_flops = costs["full_training"]["flops"]
    row = lookup(costs["groups"], method="good", budget=0.1)
    assert row["selection_flops"] == 1e12
    assert row["selection_over_full_training"] == pytest.approx(1e12 / full_flops)
    assert row["selection_over_training"] == pytest.approx(1e12 / row["training_flops"])
    res["cells"] = [c for c in res["cells"] if c["kind"] != "full"]
    est = cost_summary(res)["full_training"]
    assert est["source"].startswith("estimated")
    assert est["flops"] == pytest.approx(full_flops)  # the synthetic cost is linear in the examples
    res["pool"]["train_tokens"] = 100 * 60  # 100 tokens a record in the synthetic cells
    est = cost_summary(res)["full_training"]
    assert "per training token" in est["source"] and est["flops"] == pytest.approx(full_flops)


def test_validation_names_the_field(tmp_path):
    res = make_results(seed=0)
    bad = copy.deepcopy(res)
    bad["cells"][2]["suites"]["arc_easy"]["items"][4]["score"] = "high"
    with pytest.raises(DataError, match=r"cells\[2\]\.suites\.arc_easy\.items\[4\]\.score"):
        validate_results(bad)
    bad = copy.deepcopy(res)
    del bad["cells"][0]["seed"]
    with pytest.raises(DataError, match=r"cells\[0\]\.seed"):
        validate_results(bad)
    with pytest.raises(DataError, match="no results.json"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(DataError, match="line 1"):
        load_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps(res))
    assert load_results(tmp_path)["schema"] == 1
