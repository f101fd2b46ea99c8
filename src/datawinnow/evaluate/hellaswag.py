"""HellaSwag (validation, 10,042 items, bundled) scored as lm-evaluation-harness scores ``hellaswag``.

Preprocessing (the harness's ``preprocess``, applied to the query and to every ending): strip; replace
``" [title]"`` with ``". "``; delete every bracketed artefact ``[...]`` (shortest match: ``[header]``,
``[step]``, ``[substeps]``, the WikiHow markup); replace each double space with one.

- query = preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()) (``str.capitalize``:
  first character upper case, the rest lower case);
- request per ending: (query, " " + preprocess(ending)), zero-shot, no chat template;
- ``acc``: the ending with the highest summed log-likelihood; ``acc_norm``: the highest log-likelihood per
  character of the preprocessed ending (the harness's ``len(choice)``, without the leading space).

Items are the rows in file order (ids ``hellaswag-K``, K the 0-based row, the harness's ``doc_id``); the
file holds the 3,243 ActivityNet rows first, then the 6,799 WikiHow rows, so ``--limit N`` (the first N,
as ``lm_eval --limit N``) below 3,244 evaluates ActivityNet items only.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..data.record import Dataset, Record
from ..registry import SUITES
from .loglikelihood import Request, load_bundled_items, score_requests, summarize_accuracy
from .multiple_choice import mc_record
from .suites import Suite

BUNDLED = "hellaswag_validation"
_BRACKETED = re.compile(r"\[.*?\]")


def preprocess(text: str) -> str:
    """The harness's HellaSwag text clean-up (see the module docstring)."""
    text = text.strip().replace(" [title]", ". ")
    return _BRACKETED.sub("", text).replace("  ", " ")


def query(row: dict[str, Any]) -> str:
    return preprocess(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")


def item_from_row(row: dict[str, Any], k: int) -> Record:
    """One raw row as a multiple-choice record: the query, the preprocessed endings, the gold index."""
    endings = [preprocess(e) for e in row["endings"]]
    answer = int(row["label"])
    if len(endings) != 4 or not 0 <= answer < 4:
        raise ValueError("expected 4 endings and a label 0-3")
    return mc_record(query(row), endings, answer, id=f"hellaswag-{k}",
                     source=row["source_id"].split("~", 1)[0], split_type=row["split_type"])


def load_items() -> Dataset:
    return load_bundled_items(BUNDLED, item_from_row, "HellaSwag")


def requests(record: Record) -> list[Request]:
    return [(record.prompt, " " + ending) for ending in record.meta["choices"]]


def score(lm, items: Dataset, *, ctx) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per item: every ending's log-likelihood, token and character count, and both predictions."""
    rows, info = score_requests(lm, items, requests, task="hellaswag", ctx=ctx, params={"version": 1})
    out = []
    for r, row in zip(items, rows):
        answer = r.meta["answer"]
        ll = np.array(row["loglik"], dtype=np.float64)
        chars = np.array([len(e) for e in r.meta["choices"]], dtype=np.float64)
        pred, pred_norm = int(np.argmax(ll)), int(np.argmax(ll / chars))
        out.append({"id": r.id, "answer": answer, "pred": pred, "pred_norm": pred_norm, "correct": pred == answer,
                    "correct_norm": pred_norm == answer, "loglik": row["loglik"], "tokens": row["tokens"],
                    "chars": chars.astype(int).tolist(), "source": r.meta["source"],
                    "split_type": r.meta["split_type"]})
    return out, info


def summarize(rows) -> dict[str, Any]:
    out = summarize_accuracy(rows, {"acc": "correct", "acc_norm": "correct_norm"}, by="source")
    out["by_split_type"] = summarize_accuracy(rows, {"acc": "correct", "acc_norm": "correct_norm"},
                                              by="split_type")["by_split_type"]
    return out


@SUITES.register
class HellaSwagSuite(Suite):
    name = "hellaswag"
    description = ("HellaSwag validation (10,042): lm-eval preprocessing, log-likelihood of the 4 endings; "
                   "acc and acc_norm (per character)")

    def items(self, session):
        return load_items()

    def run(self, items, session):
        rows, info = score(session.lm, items, ctx=session.ctx)
        info = {**info, "template": "plain (lm-evaluation-harness hellaswag, zero-shot, no chat template)"}
        if session.icl is not None:
            info["icl"] = "not applied: multiple choice scores the model alone"
        return {"summary": summarize(rows), "items": rows, "info": info}
