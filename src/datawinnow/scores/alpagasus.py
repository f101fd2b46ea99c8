"""AlpaGasus accuracy rating: a judge rates each (instruction, input, response) for accuracy on 0-5.

``readout=text`` (the paper, as Chasing Random re-implemented it): the judge writes a reply and
the first rating 0-5 in it is the score, decimals included ("4.5", "4.5/5", "Score: 4.5"; see
:func:`~datawinnow.scores.judging.parse_rating`). ``readout=expected``: the expected rating sum_k k p_k over
the probabilities of the tokens "0".."5" at the first generated position (a local judge, or a
remote one with ``--judge-logprobs``); no generation, and no integer ties.

A reply without a rating 0-5 is an error by default (``on_unparsable=error``); ``drop`` leaves the
record unscored (NaN, never selected, counted in the table's info). There is no default score.
The prompt wording is datawinnow's own.
"""

from __future__ import annotations

import numpy as np

from ..data.record import Dataset, Record
from ..errors import ConfigError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.runner import run_cached
from .judging import (check_readout, expected_scores, finite_or_nan, judge_plan, judge_recipe, parse_rating,
                      transcript, unparsable)

PROMPT_VERSION = "alpagasus-v1"
PARSER_VERSION = "rating-v2"  # decimals read whole ("4.5" is 4.5; rating-v1 read its first digit, 4)
SYSTEM = "You are a meticulous reviewer of training data for AI assistants. You grade strictly and briefly."
TEMPLATE = (
    "An AI assistant was given the task below and wrote the answer that follows. Judge how accurate the "
    "answer is: is it correct, does it do exactly what the task asks, and is it free of mistakes and "
    "invented facts?\n\n"
    "Grade it with one whole number from 0 to 5: 0 = wrong or unusable, 1 = mostly wrong, 2 = partly "
    "correct with serious problems, 3 = acceptable with clear flaws, 4 = accurate with minor issues, "
    "5 = fully accurate and complete.\n"
    "Put the grade alone on the first line; give a one-sentence reason on the second line.\n\n"
    "=== Task ===\n{task}\n\n"
    "=== Answer ===\n{answer}\n\n"
    "Grade (0-5):"
)
ON_UNPARSABLE = ("error", "drop")


def alpagasus_conversation(record: Record) -> list[dict[str, str]]:
    task, answer = transcript(record)
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": TEMPLATE.format(task=task, answer=answer)}]


def make_alpagasus_ratings(ctx: Context, readout: str, max_tokens: int, on_unparsable: str):
    """The batch computation of the scorer: ``ctx.judge``'s rating per record, from its reply text or the
    expected rating over the digit probabilities (also the recipe a Ray worker rebuilds it from)."""
    judge = ctx.judge

    def compute(batch: list[Record]) -> list[dict]:
        convs = [alpagasus_conversation(r) for r in batch]
        if readout == "expected":
            scores, probs = expected_scores(judge, convs, range(6))
            return [{"rating": float(s), "p_max": float(p.max())} for s, p in zip(scores, probs)]
        rows = []
        for r, reply in zip(batch, judge.chat(convs, max_tokens=max_tokens, temperature=0.0)):
            value = parse_rating(reply, 0, 5)
            if value is None and on_unparsable == "error":
                raise unparsable(AlpagasusScorer.name, r, reply)
            rows.append({"rating": value, "reply": reply[:200]})
        return rows

    return compute


@SCORERS.register
class AlpagasusScorer(Scorer):
    name = "alpagasus"
    description = "Judge's accuracy rating 0-5 of (instruction, input, response) (AlpaGasus); readout=text|expected."
    defaults = {"readout": "text", "max_tokens": 32, "on_unparsable": "error"}
    per_record = True  # the judge rates each record alone; no normalisation over the pool

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        readout, on_bad = self.params["readout"], self.params["on_unparsable"]
        if on_bad not in ON_UNPARSABLE:
            raise ConfigError(f"alpagasus: on_unparsable must be one of {', '.join(ON_UNPARSABLE)}, got '{on_bad}'")
        max_tokens = int(self.params["max_tokens"])
        if max_tokens < 1:
            raise ConfigError(f"alpagasus: max_tokens must be >= 1, got {max_tokens}")
        judge = ctx.judge
        check_readout(readout, judge, self.name)
        given = {"readout": readout, "max_tokens": max_tokens, "on_unparsable": on_bad}
        params = {"prompt": PROMPT_VERSION, "readout": readout,
                  **({"max_tokens": max_tokens, "parser": PARSER_VERSION} if readout == "text" else {})}
        rows, info = run_cached(dataset, scorer=self.name, params=params, identity=judge.identity,
                                compute=make_alpagasus_ratings(ctx, **given), plan=judge_plan(judge, ctx), ctx=ctx,
                                recipe=judge_recipe(judge, "datawinnow.scores.alpagasus:make_alpagasus_ratings", given))
        rating = finite_or_nan([r["rating"] for r in rows])
        if on_bad == "error":
            for rec, row in zip(dataset, rows):  # unscored rows cached by an earlier on_unparsable=drop run
                if row["rating"] is None:
                    raise unparsable(self.name, rec, row.get("reply", ""))
        info = {**info, "readout": readout, "judge": judge.identity, "unscored": int(np.isnan(rating).sum())}
        return ScoreTable(dataset.ids, rating, {}, info=info)
