"""WinoGrande (XL validation, 1,267 items, bundled) scored as lm-evaluation-harness scores ``winogrande``.

Partial scoring (Trinh & Le 2018; the harness's ``winogrande`` task): the sentence has one blank
``_``. For each option the context is the sentence up to the blank with the option in it; the
continuation is the rest after the blank, stripped, after one space. Both options are scored on the same
continuation, ``log p(continuation | context)``, and ``acc`` counts the option with the higher one.

    "Sarah was a better surgeon than Maria so _ always got the harder cases."
    -> ("Sarah was a better surgeon than Maria so Sarah", " always got the harder cases.")
       ("Sarah was a better surgeon than Maria so Maria", " always got the harder cases.")

Items are the rows in file order (ids ``winogrande-K``, K the 0-based row, the harness's ``doc_id``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.record import Dataset, Record
from ..registry import SUITES
from .loglikelihood import Request, load_bundled_items, score_requests, summarize_accuracy
from .multiple_choice import mc_record
from .suites import Suite

BUNDLED = "winogrande_xl_validation"


def partial_request(sentence: str, option: str) -> Request:
    """(the sentence up to the blank with ``option`` in it, " " + the rest after the blank, stripped)."""
    blank = sentence.index("_")
    return sentence[:blank] + option, " " + sentence[blank + 1:].strip()


def item_from_row(row: dict[str, Any], k: int) -> Record:
    sentence = row["sentence"]
    if sentence.count("_") != 1:
        raise ValueError("the sentence needs exactly one blank '_'")
    if row["answer"] not in ("1", "2"):
        raise ValueError(f"answer must be '1' or '2', got {row['answer']!r}")
    return mc_record(sentence, [row["option1"], row["option2"]], int(row["answer"]) - 1, id=f"winogrande-{k}")


def load_items() -> Dataset:
    return load_bundled_items(BUNDLED, item_from_row, "WinoGrande")


def requests(record: Record) -> list[Request]:
    return [partial_request(record.instruction, option) for option in record.meta["choices"]]


def score(lm, items: Dataset, *, ctx) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per item: each option's continuation log-likelihood and token count, and the prediction."""
    rows, info = score_requests(lm, items, requests, task="winogrande", ctx=ctx, params={"version": 1})
    out = []
    for r, row in zip(items, rows):
        answer = r.meta["answer"]
        pred = int(np.argmax(row["loglik"]))
        out.append({"id": r.id, "answer": answer, "pred": pred, "correct": pred == answer,
                    "loglik": row["loglik"], "tokens": row["tokens"]})
    return out, info


def summarize(rows) -> dict[str, Any]:
    return summarize_accuracy(rows, {"acc": "correct"})


@SUITES.register
class WinoGrandeSuite(Suite):
    name = "winogrande"
    description = ("WinoGrande-XL validation (1,267): partial scoring, log-likelihood of the text after the blank "
                   "given each filled-in option; acc")

    def items(self, session):
        return load_items()

    def run(self, items, session):
        rows, info = score(session.lm, items, ctx=session.ctx)
        info = {**info, "template": "plain (lm-evaluation-harness winogrande, partial scoring, zero-shot)"}
        if session.icl is not None:
            info["icl"] = "not applied: multiple choice scores the model alone"
        return {"summary": summarize(rows), "items": rows, "info": info}
