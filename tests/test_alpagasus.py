"""AlpaGasus: first-digit parsing, the threshold-then-cut/fill rule (golden), the expected read-out, errors."""

from __future__ import annotations

import numpy as np
import pytest

from datawinnow.backends.judge import Judge
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.registry import METHODS, SCORERS
from datawinnow.scores.alpagasus import alpagasus_conversation
from datawinnow.runtime.context import Context
from datawinnow.scores.judging import parse_rating
from datawinnow.select.methods.alpagasus import threshold_select


@pytest.mark.parametrize("reply, rating", [
    ("5\nGreat", 5.0),
    ("4.5", 4.5),
    ("4.5/5", 4.5),
    ("Score: 4.5", 4.5),
    ("Rating: 4", 4.0),
    ("5/5", 5.0),
    ("5.0/5 - flawless", 5.0),
    ("Grade: 4.25 (minor slip)", 4.25),
    ("3.", 3.0),                                # end of sentence, not a decimal
    ("I'd say 4 out of 5.", 4.0),
    ("7, no: 3", 3.0),                          # 7 is not on the 0-5 scale
    ("Grade: 45 is a typo; 4.5", 4.5),          # neither is 45 (it is not its first digit, 4)
    ("9/10, so 4.5", 4.5),                      # a fraction on another scale is no 0-5 rating
    ("On a 0-5 scale: 2.5", 2.5),               # the scale itself is no rating
    ("Grade (1 to 5): 3", 3.0),
    ("4-5", 4.0),                               # a range that is not the scale reads its first end
    ("0 - wrong", 0.0),
    ("no digits", None),
    ("9/10", None),
    ("", None),
])
def test_parse_rating(reply, rating):
    assert parse_rating(reply, 0, 5) == rating


class ReplyJudge(Judge):
    """Text replies by task (chat) and digit probabilities by task (choice_probs)."""

    identity = "reply-judge"

    def __init__(self, replies=None, probs=None):
        self.replies, self.probs, self.chats = replies or {}, probs or {}, 0

    def _task(self, conv):
        text = conv[-1]["content"]
        return next(t for t in {**self.replies, **self.probs} if f"=== Task ===\n{t}\n" in text)

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        self.chats += len(conversations)
        return [self.replies[self._task(c)] for c in conversations]

    def choice_probs(self, conversations, choices):
        assert list(choices) == list("012345")
        return np.array([self.probs[self._task(c)] for c in conversations])


# ratings by hand: a 5, b 5, c 4, d 3, e 1, f 4
REPLIES = {"ta": "5", "tb": "5 - flawless", "tc": "4\nminor slip", "td": "3", "te": "1", "tf": "Grade: 4"}


def _pool():
    return Dataset([Record(id=t[1], instruction=t, output=f"out {t}") for t in REPLIES])


def test_threshold_cut_and_fill_golden():
    ctx = Context(judge=ReplyJudge(REPLIES), progress=False)
    run = lambda budget, **p: METHODS.get("alpagasus")(**p).run(_pool(), budget, ctx)  # noqa: E731
    # threshold 4.5: a, b pass. budget 1 -> cut by rating then id: a
    assert run(1).selected == ["a"]
    # budget 4 -> a, b, then filled by rating from below: c (4), f (4) (ties by id)
    sel = run(4)
    assert sel.selected == ["a", "b", "c", "f"] and sel.info["filled"] == 2 and sel.info["above_threshold"] == 2
    assert sel.reasons == {"d": "rating 3 < threshold 4.5", "e": "rating 1 < threshold 4.5"}
    # no fill: only the two that pass, with a warning
    with pytest.warns(UserWarning, match="only 2 records qualify"):
        assert run(4, fill=False).selected == ["a", "b"]
    # no budget: exactly those >= threshold; Chasing Random's threshold 4 -> a, b, c, f
    assert run(None).selected == ["a", "b"]
    sel = run(None, threshold=4)
    assert sel.selected == ["a", "b", "c", "f"] and sel.budget == 4 and sel.info["threshold_only"]
    assert sel.scores == {"a": 5.0, "b": 5.0, "c": 4.0, "d": 3.0, "e": 1.0, "f": 4.0}


def test_decimal_ratings_meet_the_default_threshold():
    # the paper's threshold 4.5 keeps 4.5s, not only 5s
    replies = {"ta": "4.5/5", "tb": "Score: 4.5\nminor slip", "tc": "Rating: 4", "td": "5/5", "te": "4.4"}
    pool = Dataset([Record(id=t[1], instruction=t, output=f"out {t}") for t in replies])
    sel = METHODS.get("alpagasus")().run(pool, None, Context(judge=ReplyJudge(replies), progress=False))
    assert sel.selected == ["d", "a", "b"]
    assert sel.scores == {"a": 4.5, "b": 4.5, "c": 4.0, "d": 5.0, "e": 4.4}


def test_threshold_select_plain_function():
    score = np.array([4.0, np.nan, 5.0, 2.0])
    picked, why = threshold_select(score, ["w", "x", "y", "z"], 4.5, 3, True)
    assert picked == [2, 0, 3]
    assert why == {1: "no rating (the judge's reply had no score)"}


def test_expected_readout():
    # p over 0..5 for task "ta": 0.5 on 4, 0.5 on 5 -> 4.5 (passes 4.5); "tb": 0.2 on 3, 0.8 on 4 -> 3.8
    probs = {"ta": [0, 0, 0, 0, 0.5, 0.5], "tb": [0, 0, 0, 0.2, 0.8, 0]}
    pool = Dataset([Record(id="a", instruction="ta", output="x"), Record(id="b", instruction="tb", output="y")])
    judge = ReplyJudge(probs=probs)
    table = SCORERS.get("alpagasus")(readout="expected").score(pool, Context(judge=judge, progress=False))
    np.testing.assert_allclose(table.score, [4.5, 3.8])
    assert judge.chats == 0
    assert METHODS.get("alpagasus")(readout="expected").run(pool, None, Context(judge=judge, progress=False)
                                                           ).selected == ["a"]


def test_prompt_holds_task_input_and_answer():
    rec = Record(id="r", instruction="Translate.", input="Bonjour", output="Hello")
    conv = alpagasus_conversation(rec)
    assert conv[0]["role"] == "system"
    assert "=== Task ===\nTranslate.\n\nBonjour\n\n=== Answer ===\nHello\n\nGrade (0-5):" in conv[1]["content"]


def test_bad_options():
    ctx = Context(judge=ReplyJudge(REPLIES), progress=False)
    with pytest.raises(ConfigError, match="threshold must be within 0-5"):
        METHODS.get("alpagasus")(threshold=7).run(_pool(), 2, ctx)
    with pytest.raises(ConfigError, match="on_unparsable must be one of error, drop"):
        SCORERS.get("alpagasus")(on_unparsable="zero").score(_pool(), ctx)
    with pytest.raises(ConfigError, match="readout must be one of text, expected"):
        SCORERS.get("alpagasus")(readout="vibes").score(_pool(), ctx)

    class TextOnly(Judge):
        identity = "text-only"

    with pytest.raises(ConfigError, match="readout=expected needs a judge that reads token probabilities"):
        SCORERS.get("alpagasus")(readout="expected").score(_pool(), Context(judge=TextOnly(), progress=False))


def test_local_judge_on_tiny_model(tiny_lm):
    # end to end with the tiny random model: expected ratings lie within 0..5; text mode with drop never invents one
    pool = Dataset([Record(id=f"r{i}", instruction=f"Say {i}.", output=str(i)) for i in range(3)])
    ctx = Context(model=tiny_lm, progress=False)
    table = SCORERS.get("alpagasus")(readout="expected").score(pool, ctx)
    assert ((table.score >= 0) & (table.score <= 5)).all()
    text = SCORERS.get("alpagasus")(max_tokens=4, on_unparsable="drop").score(pool, ctx)
    assert all(np.isnan(s) or s in range(6) for s in text.score)
