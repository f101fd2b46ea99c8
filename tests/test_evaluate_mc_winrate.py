"""Multiple choice on a tiny model whose answer is certain by construction; win rate with fake judges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datawinnow.backends import CausalLM
from datawinnow.backends.judge import Judge, JudgeError
from datawinnow.data.record import Dataset
from datawinnow.evaluate.multiple_choice import load_task, mc_record, score_choices, summarize_mc
from datawinnow.evaluate.winrate import judge_pairs, parse_verdict, summarize_winrate
from datawinnow.runtime.context import Context


def _single_token_words(lm, words):
    return [w for w in words if len(lm.encode(w)) == 1]


def _with_head(lm: CausalLM, bias: torch.Tensor) -> CausalLM:
    """Replace the LM head by weight 0 + ``bias``: every position predicts softmax(bias), whatever the input."""
    hidden = lm.model.config.hidden_size
    head = torch.nn.Linear(hidden, bias.numel(), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
    lm.model.set_output_embeddings(head)
    return lm


def _items():
    return Dataset([
        mc_record("Which colour is the sky?", ["red", "The", "and"], 1, id="q1"),
        mc_record("Pick one.", ["The", "red", "and"], 0, id="q2"),
        mc_record("Pick another.", ["red", "and", "The"], 1, id="q3"),
    ])


def test_certain_choice_wins(tiny_lm):
    # the head gives token "The" logit +30 and every other token 0: p("The") ~ 1, any other token ~ e^-30
    # so the choice "The" has log-likelihood ~ 0 and every other single-token choice ~ -30: "The" is predicted
    assert _single_token_words(tiny_lm, ["The", "red", "and"]) == ["The", "red", "and"]
    target = tiny_lm.encode("The")[0]
    bias = torch.zeros(tiny_lm.model.config.vocab_size)
    bias[target] = 30.0
    lm = _with_head(tiny_lm, bias)
    rows, _ = score_choices(lm, _items(), ctx=Context(model=lm, progress=False, batch_size=4))
    assert [r["pred"] for r in rows] == [1, 0, 2] and [r["pred_norm"] for r in rows] == [1, 0, 2]
    # q1 and q2 have "The" as the answer, q3 does not
    assert [r["correct"] for r in rows] == [True, True, False]
    assert rows[0]["loglik"][1] == pytest.approx(0.0, abs=1e-6) and rows[0]["loglik"][0] < -25
    s = summarize_mc(rows)
    assert s["acc"] == pytest.approx(2 / 3) and s["acc_norm"] == pytest.approx(2 / 3) and s["n"] == 3


def test_uniform_model_raw_prefers_fewest_tokens_norm_prefers_chars_per_token(tiny_lm):
    # a zero head: every token has log p = -log V (V = vocabulary size).
    # choice 0 "a": 1 token, 1 character -> raw -log V, per character -log V
    # choice 1 "red and": 2 tokens, 7 characters -> raw -2 log V, per character -2 log V / 7
    # raw accuracy picks choice 0 (fewer tokens), length-normalised picks choice 1
    lm = _with_head(tiny_lm, torch.zeros(tiny_lm.model.config.vocab_size))
    assert len(lm.encode("a")) == 1 and len(lm.encode("red and")) == 2
    item = Dataset([mc_record("Q?", ["a", "red and"], 1, id="u1")])
    (row,), _ = score_choices(lm, item, ctx=Context(model=lm, progress=False))
    V = lm.model.config.vocab_size
    assert row["loglik"] == pytest.approx([-np.log(V), -2 * np.log(V)], rel=1e-5)
    assert row["tokens"] == [1, 2] and row["chars"] == [1, 7]
    assert row["pred"] == 0 and row["pred_norm"] == 1
    assert not row["correct"] and row["correct_norm"]


def test_multiple_choice_results_are_cached(tiny_lm):
    ctx = Context(model=tiny_lm, progress=False)
    _, info1 = score_choices(tiny_lm, _items(), ctx=ctx)
    _, info2 = score_choices(tiny_lm, _items(), ctx=ctx)
    assert info1["computed"] == 3 and info2["computed"] == 0 and info2["cached"] == 3


def test_bundled_tasks_load():
    easy, chal, mmlu = load_task("arc_easy"), load_task("arc_challenge"), load_task("mmlu")
    assert (len(easy), len(chal), len(mmlu)) == (570, 299, 1531)
    first = easy[0]
    assert first.id == "MCAS_2000_4_6" and first.meta["choices"][first.meta["answer"]] == "cellular telephone"
    assert len({r.meta["subject"] for r in mmlu}) == 57


# ------------------------------------------------------------------------------------------ win rate
class AlwaysA(Judge):
    identity = "always-a"

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        return ["A" for _ in conversations]


class PrefersMarker(Judge):
    """Prefers whichever output contains 'GOOD' (answers in varied formats)."""

    identity = "marker"

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        out = []
        for k, c in enumerate(conversations):
            text = c[-1]["content"]
            a = text.split("# Output (A)")[1].split("# Output (B)")[0]
            label = "A" if "GOOD" in a else "B"
            out.append([label, f"Output ({label})", f"{label}."][k % 3])
        return out


class ProbJudge(Judge):
    identity = "probs"

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        raise AssertionError("a probability judge is read through choice_probs")

    def choice_probs(self, conversations, choices):
        assert list(choices) == ["A", "B"]
        return np.tile([0.7, 0.3], (len(conversations), 1))


def test_position_biased_judge_gives_fifty_percent():
    # the model is A in the first order (win) and B in the second (loss): every item scores 0.5 -> 50%, SE 0
    rows = judge_pairs(AlwaysA(), ["q1", "q2", "q3"], ["m1", "m2", "m3"], ["r1", "r2", "r3"])
    assert [r["win"] for r in rows] == [0.5, 0.5, 0.5]
    s = summarize_winrate(rows, [5, 50, 500], [100, 100, 100])
    assert s["win_rate"] == pytest.approx(50.0) and s["standard_error"] == pytest.approx(0.0)
    assert s["judge_prefers_first"] == 1.0 and s["order_agreement"] == 0.0
    assert s["lc_win_rate"] == pytest.approx(50.0, abs=0.01)


def test_consistent_judge_and_standard_error():
    # items 1 and 2: the model's answer holds the marker -> wins in both orders (1.0); item 3: the reference
    # does -> 0.0. win rate = 2/3; SE = std([1, 1, 0], ddof=1) / sqrt(3) = 0.57735 / 1.73205 = 1/3
    rows = judge_pairs(PrefersMarker(), ["q1", "q2", "q3"], ["GOOD 1", "GOOD 2", "meh"], ["ref", "ref", "GOOD ref"])
    assert [r["win"] for r in rows] == [1.0, 1.0, 0.0]
    s = summarize_winrate(rows)
    assert s["win_rate"] == pytest.approx(200 / 3) and s["standard_error"] == pytest.approx(100 / 3)
    assert s["order_agreement"] == 1.0


def test_probability_judge_cancels_position_bias_too():
    rows = judge_pairs(ProbJudge(), ["q"], ["m"], ["r"])
    assert rows[0]["model_first"] == pytest.approx(0.7) and rows[0]["model_second"] == pytest.approx(0.3)
    assert rows[0]["win"] == pytest.approx(0.5)


def test_length_controlled_removes_a_length_effect():
    # the model wins exactly when its answer is longer than the reference: the raw win rate is 75% (3 of 4
    # items longer); the logistic fit puts the whole effect on the length term, intercept ~ 0 -> LC well below
    rows = [{"model_first": w, "model_second": w, "win": w, "verdicts": ["A", "B"] if w else ["B", "A"]}
            for w in (1.0, 1.0, 1.0, 0.0)]
    s = summarize_winrate(rows, [900, 800, 700, 10], [100, 100, 100, 100])
    assert s["win_rate"] == pytest.approx(75.0)
    assert s["lc_win_rate"] < s["win_rate"] - 10


@pytest.mark.parametrize("reply, verdict", [("A", "A"), (" b.", "B"), ("Output (B)", "B"), ("(a)", "A"),
                                            ("I prefer Output (A) here.", "A")])
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


@pytest.mark.parametrize("reply", ["", "Both are fine.", "Output (A) and Output (B) tie"])
def test_parse_verdict_errors(reply):
    with pytest.raises(JudgeError, match="cannot tell which output the judge preferred"):
        parse_verdict(reply)
