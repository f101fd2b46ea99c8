"""ROUGE and embedding similarity on fixed strings; the judge rubric parser on fixed replies."""

from __future__ import annotations

import numpy as np
import pytest

from datawinnow.evaluate.metrics import embedding_similarity, rouge_scores
from datawinnow.evaluate.rubric import (DIMENSIONS, RubricParseError, judge_rubric, parse_rubric, rubric_messages,
                                        summarize_rubric)
from datawinnow.backends.judge import Judge


def test_rouge_known_values():
    # reference "the cat sat on the mat", prediction "the cat lay on the mat" (6 words each)
    # ROUGE-1: shared unigrams the x2, cat, on, mat = 5 of 6 -> P = R = F = 5/6
    # ROUGE-2: reference bigrams the-cat cat-sat sat-on on-the the-mat; shared the-cat on-the the-mat = 3 of 5 -> 0.6
    # ROUGE-L: LCS "the cat on the mat" = 5 of 6 -> 5/6
    (s,) = rouge_scores(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert s["rouge1"] == pytest.approx(5 / 6)
    assert s["rouge2"] == pytest.approx(0.6)
    assert s["rougeL"] == pytest.approx(5 / 6)


def test_rouge_identical_disjoint_and_stemming():
    same, disjoint, stemmed = rouge_scores(["a b c", "x y", "cats running"], ["a b c", "p q", "cat runs"])
    assert same == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0}
    assert disjoint == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    # Porter stemming: cats -> cat, running/runs -> run: both unigrams and the bigram match
    assert stemmed["rouge1"] == pytest.approx(1.0) and stemmed["rouge2"] == pytest.approx(1.0)


class TableEmbedder:
    """Fixed vectors per text (not normalised, so the cosine is computed, not assumed)."""

    identity = "table"
    vectors = {"a": [1.0, 0.0], "b": [1.0, 1.0], "c": [0.0, 3.0], "d": [-2.0, 0.0], "": [5.0, 5.0]}

    def encode(self, texts, batch_size=32):
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_embedding_similarity_known_values():
    # cos(a, b) = 1/sqrt(2); cos(a, c) = 0; cos(a, d) = -1; cos(b, b) = 1; an empty answer gets 0, not cos("", a)
    sims = embedding_similarity(TableEmbedder(), ["a", "a", "a", "b", ""], ["b", "c", "d", "b", "a"])
    assert sims == pytest.approx([1 / np.sqrt(2), 0.0, -1.0, 1.0, 0.0], abs=1e-6)


def test_rubric_prompt_names_all_dimensions_and_levels():
    msgs = rubric_messages("Say hi.", "Hi!", "Hello.")
    text = msgs[-1]["content"]
    for name in DIMENSIONS:
        assert f"{name}: <1-5>" in text
    assert "fails to meet the criteria across most or all aspects" in text
    assert "excels in all or nearly all aspects" in text
    assert "[Reference answer" in text and "[Reference answer" not in rubric_messages("q", "a")[-1]["content"]


GOOD = """Instruction Following: 5
Accuracy: 4
Relevance: 5
Completeness: 3
Depth: 2
Clarity: 4
Creativity: 1
Helpfulness: 4"""


def test_parse_rubric_lines_json_and_markdown():
    assert parse_rubric(GOOD) == {"Instruction Following": 5, "Accuracy": 4, "Relevance": 5, "Completeness": 3,
                                  "Depth": 2, "Clarity": 4, "Creativity": 1, "Helpfulness": 4}
    markdown = ("Here is my evaluation:\n" + "\n".join(f"{k}. **{line.split(':')[0]}**: {line.split(':')[1].strip()}/5"
                                                      for k, line in enumerate(GOOD.splitlines(), 1)))
    assert parse_rubric(markdown) == parse_rubric(GOOD)
    js = ('Scores: {"instruction_following": 2, "accuracy": 2, "relevance": 2, "completeness": 2, "depth": 2, '
          '"clarity": 2, "creativity": 2, "helpfulness": 3}')
    assert sum(parse_rubric(js).values()) == 17


@pytest.mark.parametrize("reply, message", [
    ("", "the judge reply is empty"),
    ("The response is great, 5 stars.", "no score for 'Instruction Following', 'Accuracy'"),
    (GOOD.replace("Depth: 2\n", ""), "no score for 'Depth'"),
    (GOOD.replace("Depth: 2", "Depth: 7"), "score for 'Depth' must be between 1 and 5, got 7"),
    (GOOD.replace("Depth: 2", "Depth: 0"), "must be between 1 and 5, got 0"),
    (GOOD.replace("Depth: 2", "Depth: 3.5"), "score for 'Depth' must be an integer 1-5, got 3.5"),
    (GOOD + "\nDepth: 4", "two different scores for 'Depth' (2 and 4)"),
])
def test_parse_rubric_malformed_raises_no_default(reply, message):
    with pytest.raises(RubricParseError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        parse_rubric(reply)


class ScriptedJudge(Judge):
    identity = "scripted"

    def __init__(self, replies):
        self.replies = list(replies)

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        return [self.replies.pop(0) for _ in conversations]


def test_judge_rubric_rows_and_summary_skip_failed_items():
    judge = ScriptedJudge([GOOD, "no idea", GOOD.replace("Creativity: 1", "Creativity: 5")])
    rows = judge_rubric(judge, ["q1", "q2", "q3"], ["a1", "a2", "a3"], ["r1", "r2", "r3"])
    assert rows[0]["mean"] == pytest.approx(28 / 8) and rows[0]["creativity"] == 1
    assert "error" in rows[1] and "mean" not in rows[1] and "accuracy" not in rows[1]
    assert rows[2]["mean"] == pytest.approx(32 / 8)
    s = summarize_rubric(rows)
    assert s["n"] == 2 and s["n_failed"] == 1
    assert s["creativity"] == pytest.approx(3.0) and s["mean"] == pytest.approx(30 / 8)


class DigitJudge:
    """Reads probabilities: for the dimension named in the last line, a fixed distribution over 1..5."""
    identity = "digits"

    def __init__(self, table):
        self.table = table
        self.seen = []

    def choice_probs(self, conversations, choices):
        assert list(choices) == ["1", "2", "3", "4", "5"]
        rows = []
        for conv in conversations:
            text = conv[-1]["content"]
            assert "Reply with a single integer from 1 to 5" in text and "eight lines" not in text
            dim = next(d for d in DIMENSIONS if f"Now score only this dimension: {d} (" in text)
            self.seen.append(dim)
            rows.append(self.table.get(dim, [0.0, 0.0, 1.0, 0.0, 0.0]))
        return rows


def test_judge_rubric_expected_reads_digit_probabilities_per_dimension():
    from datawinnow.evaluate.rubric import judge_rubric_expected

    # Accuracy: 0.5 on "4" and 0.5 on "5" -> 4.5 by hand; Depth: all mass on "1" -> 1; the rest -> 3
    judge = DigitJudge({"Accuracy": [0, 0, 0, 0.5, 0.5], "Depth": [1, 0, 0, 0, 0]})
    rows = judge_rubric_expected(judge, ["q1", "q2"], ["a1", "a2"], ["r1", None])
    assert len(judge.seen) == 16 and judge.seen[:8] == list(DIMENSIONS)
    assert rows[0]["accuracy"] == pytest.approx(4.5) and rows[0]["depth"] == pytest.approx(1.0)
    assert rows[0]["clarity"] == pytest.approx(3.0)
    assert rows[0]["mean"] == pytest.approx((4.5 + 1.0 + 6 * 3.0) / 8)
    assert rows[1] == rows[0] | {}
    s = summarize_rubric(rows)
    assert s["n"] == 2 and s["n_failed"] == 0 and s["mean"] == pytest.approx(23.5 / 8)
