"""SelectIT: token-, sentence- and model-level formulas on fixed numbers, and a golden selection."""

from __future__ import annotations

import math

import numpy as np
import pytest

from datawinnow.backends.judge import Judge
from datawinnow.backends.judge_local import LocalJudge
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.registry import METHODS, SCORERS
from datawinnow.runtime.context import Context
from datawinnow.scores.selectit import (RATING_PROMPTS, model_level, parameter_count, sentence_level, token_level)


def test_token_level_by_hand():
    # p = (.1, .2, .4, .2, .1): argmax is "3"; sum_k (p_max - p_k) = .3 + .2 + 0 + .2 + .3 = 1.0; / (N-1) = .25
    # score = 3 * .25 = .75; unnormalised input gives the same (renormalised first)
    p = np.array([[0.1, 0.2, 0.4, 0.2, 0.1], [0.2, 0.4, 0.8, 0.4, 0.2]])
    np.testing.assert_allclose(token_level(p), [0.75, 0.75])
    # certain "5": 5 * (4 * 1) / 4 = 5; uniform: argmax "1" and no margin: 0
    np.testing.assert_allclose(token_level(np.array([[0, 0, 0, 0, 1.0], [0.2] * 5])), [5.0, 0.0])


def test_sentence_level_exact_value():
    # token scores over K = 5 prompts (0, 2, 3, 4, 6): mean 3, deviations (-3, -1, 0, 1, 3), sum of squares 20,
    # population std sqrt(20 / 5) = 2; score = 3 / (1 + 0.2 * 2) = 3 / 1.4 = 15 / 7
    assert sentence_level(np.array([0.0, 2, 3, 4, 6]), alpha=0.2) == pytest.approx(15 / 7, rel=1e-12)
    # alpha = 0: the plain mean
    assert sentence_level(np.array([0.0, 2, 3, 4, 6]), alpha=0.0) == pytest.approx(3.0)
    # rows are samples, the last axis the prompts
    np.testing.assert_allclose(sentence_level(np.array([[1.0, 1, 1, 1, 1], [0, 2, 3, 4, 6]])), [1.0, 15 / 7])


def test_model_level_weighted_mean():
    # two models, weights 1 and 3 (e.g. parameter counts): (1 * 2 + 3 * 6) / 4 = 5
    np.testing.assert_allclose(model_level(np.array([[2.0, 0.0], [6.0, 4.0]]), [1, 3]), [5.0, 3.0])
    with pytest.raises(ConfigError, match=r"need one non-negative weight per model \(2\)"):
        model_level(np.array([[2.0], [6.0]]), [1])


class RatingJudge(Judge):
    """One-hot probabilities: record (by its task text) and prompt (by its wording) -> a rating 1..5, or None
    for uniform probabilities."""

    identity = "rating-judge"

    def __init__(self, ratings):
        self.ratings = ratings

    def choice_probs(self, conversations, choices):
        assert list(choices) == ["1", "2", "3", "4", "5"]
        rows = []
        for conv in conversations:
            text = conv[-1]["content"]
            rid = next(r for r in self.ratings if f"Instruction:\ntask {r}\n" in text)
            j = next(j for j, p in enumerate(RATING_PROMPTS) if text.startswith(p))
            k = self.ratings[rid][j]
            rows.append(np.full(5, 0.2) if k is None else np.eye(5)[k - 1])
        return np.array(rows)


RATINGS = {
    "r0": [5, 5, 5, 5, 5],  # token scores 5 x5: mean 5, std 0 -> 5
    "r1": [5, 5, 5, 5, 1],  # mean 4.2, deviations (.8 x4, -3.2), var 12.8/5 = 2.56, std 1.6 -> 4.2 / 1.32 = 3.1818
    "r2": [4, 4, 4, 4, 4],  # -> 4
    "r3": [3, 3, 3, 3, 3],  # -> 3
    "r4": [None] * 5,       # uniform probabilities: token score 0 -> 0
}


def _pool():
    return Dataset([Record(id=r, instruction=f"task {r}", output=f"answer {r}") for r in RATINGS])


def test_selectit_scores_and_golden_selection():
    ctx = Context(judge=RatingJudge(RATINGS), progress=False)
    table = SCORERS.get("selectit")().score(_pool(), ctx)
    np.testing.assert_allclose(table.score, [5.0, 4.2 / 1.32, 4.0, 3.0, 0.0], rtol=1e-9)
    # r1 has the higher mean rating (4.2 > 4) but the prompts disagree: it ranks below r2.
    # 40% of 5 = 2 -> r0, r2; the default budget (20%) -> r0
    assert METHODS.get("selectit")().run(_pool(), 0.4, ctx).selected == ["r0", "r2"]
    assert METHODS.get("selectit")().run(_pool(), None, ctx).selected == ["r0"]
    # fewer prompts: K = 4 drops the disagreeing fifth prompt, r1 scores 5 and ties r0 (ties by id)
    table4 = SCORERS.get("selectit")(k=4).score(_pool(), ctx)
    np.testing.assert_allclose(table4.score, [5.0, 5.0, 4.0, 3.0, 0.0])


def test_selectit_bad_options():
    ctx = Context(judge=RatingJudge(RATINGS), progress=False)
    with pytest.raises(ConfigError, match="k must be between 1 and 5"):
        SCORERS.get("selectit")(k=6).score(_pool(), ctx)
    with pytest.raises(ConfigError, match="alpha must be >= 0"):
        SCORERS.get("selectit")(alpha=-1).score(_pool(), ctx)

    class TextOnly(Judge):
        identity = "text-only"

    with pytest.raises(ConfigError, match="selectit reads rating-token probabilities"):
        SCORERS.get("selectit")().score(_pool(), Context(judge=TextOnly(), progress=False))


def test_model_level_over_two_local_models(tiny_model_dir, tiny_lm):
    # the same tiny model twice: equal parameter-count weights, so the model level equals one model's score
    pool = Dataset([Record(id="a", instruction="Say hi.", output="Hi!"),
                    Record(id="b", instruction="Count to three.", output="1, 2, 3")])
    ctx = Context(model=tiny_lm, device="cpu", dtype="fp32", progress=False)
    one = SCORERS.get("selectit")(k=2).score(pool, ctx)
    two = SCORERS.get("selectit")(k=2, models=f"{tiny_model_dir},{tiny_model_dir}").score(pool, ctx)
    np.testing.assert_allclose(two.score, one.score, rtol=1e-5)
    assert [m["weight"] for m in two.info["models"]] == [float(parameter_count(LocalJudge(tiny_lm)))] * 2
    assert parameter_count(LocalJudge(tiny_lm)) == sum(p.numel() for p in tiny_lm.model.parameters())
    weighted = SCORERS.get("selectit")(k=2, models=[tiny_model_dir, tiny_model_dir], weights=[1, 3]).score(pool, ctx)
    np.testing.assert_allclose(weighted.score, one.score, rtol=1e-5)
    assert math.isfinite(float(one.score.sum()))
