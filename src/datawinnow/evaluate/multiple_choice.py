"""Multiple choice by choice log-likelihood (ARC-Easy, ARC-Challenge, MMLU as bundled).

Each choice text is the response span after the question's prompt; its log-likelihood is the sum of
the per-token log-probabilities from :meth:`CausalLM.response_logprobs` (one batched, length-sorted
forward pass over all (question, choice) pairs; the LM head and log-softmax in float32 whatever the
model's dtype, so close choices are not ranked on bf16-rounded logits; each prompt starts with the
model's start token). Two accuracies, as lm-evaluation-harness reports:

- ``acc``: the choice with the highest summed log-likelihood;
- ``acc_norm``: the highest log-likelihood per character of the choice text (lm-eval's acc_norm,
  which removes the bias towards short choices); the token count is stored per item too.

Prompt templates: ``chat`` (default; the question and its lettered choices as the user turn, the
choice text as the assistant's answer) or ``plain`` (lm-eval's ``Question: ...\\nAnswer:`` followed by
`` choice``, no chat template, for base models).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..data.record import Dataset, Record, assign_ids
from ..errors import ConfigError, DataError
from ..runtime.context import Context
from ..runtime.runner import run_cached

LETTERS = "ABCDEFGHIJ"
TEMPLATES = ("chat", "plain")
TASKS = {"arc_easy": "arc_easy_validation", "arc_challenge": "arc_challenge_validation", "mmlu": "mmlu_validation"}


def mc_record(question: str, choices: Sequence[str], answer: int, *, id: str = "", **meta: Any) -> Record:
    """A multiple-choice item as a record: the question in ``instruction``, the right choice in ``output``,
    the choices and the answer index in ``meta``."""
    return Record(id=id, instruction=question, output=choices[answer],
                  meta={"choices": list(choices), "answer": int(answer), **meta})


def load_task(task: str) -> Dataset:
    """A bundled multiple-choice set as records (``arc_easy``, ``arc_challenge``, ``mmlu``)."""
    from ..data.bundled import bundled_path, iter_raw

    if task not in TASKS:
        raise ConfigError(f"unknown multiple-choice task '{task}' (available: {', '.join(TASKS)})")
    name = TASKS[task]
    records = []
    for k, row in enumerate(iter_raw(name), 1):
        try:
            if task == "mmlu":
                records.append(mc_record(row["question"], row["choices"], row["answer"], subject=row["subject"]))
            else:
                labels, texts = row["choices"]["label"], row["choices"]["text"]
                records.append(mc_record(row["question"], texts, labels.index(row["answerKey"]), id=row["id"],
                                         labels=labels))
        except (KeyError, ValueError, IndexError) as e:
            raise DataError(f"malformed multiple-choice row ({e})", path=str(bundled_path(name)), line=k) from None
    return Dataset(assign_ids(records), format="alpaca", path=f"bundled:{name}")


def _check(record: Record) -> tuple[list[str], int]:
    choices, answer = record.meta.get("choices"), record.meta.get("answer")
    if not isinstance(choices, list) or len(choices) < 2:
        raise ConfigError(f"multiple choice: record {record.id} has no meta['choices'] list of at least two texts")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise ConfigError(f"multiple choice: record {record.id} has no valid meta['answer'] index")
    return choices, answer


def question_text(record: Record, template: str) -> str:
    choices, _ = _check(record)
    labels = record.meta.get("labels") or LETTERS[:len(choices)]
    if template == "plain":
        return f"Question: {record.prompt}\nAnswer:"
    body = "\n".join(f"{lab}. {text}" for lab, text in zip(labels, choices))
    return f"{record.prompt}\n{body}\nAnswer with the text of the correct choice."


def choice_pairs(lm, record: Record, template: str):
    """One teacher-forced pair per choice of ``record``."""
    choices, _ = _check(record)
    if template == "plain":
        prompt = question_text(record, template)
        return [lm.pair(prompt, " " + c) for c in choices]
    prompt = lm.renderer.prompt_for_messages([{"role": "user", "content": question_text(record, template)}])
    return [lm.pair(prompt, c) for c in choices]


def score_choices(lm, items: Dataset, *, template: str = "chat", ctx: Context) -> tuple[list[dict], dict]:
    """Per item: summed log-likelihood, token count and character count of every choice, and the
    raw and length-normalised predictions. Cached per (model, template)."""
    if template not in TEMPLATES:
        raise ConfigError(f"multiple choice: template must be one of {', '.join(TEMPLATES)}, got '{template}'")
    for r in items:
        _check(r)

    def plan(todo: Sequence[Record]):
        if ctx.batch_tokens is None:
            return ctx.batches([sum(len(c) for c in r.meta["choices"]) + len(r.prompt) for r in todo], per_item=4)
        return ctx.batches([sum(len(p) for p in choice_pairs(lm, r, template)) for r in todo], lm=lm)

    def compute(batch: list[Record]) -> list[dict]:
        pairs, owner = [], []
        for b, r in enumerate(batch):
            for p in choice_pairs(lm, r, template):
                pairs.append(p)
                owner.append(b)
        lps: list[np.ndarray | None] = [None] * len(pairs)
        for idx, out in lm.iter_batches(pairs, ctx.batch_size, ctx.batch_tokens):
            for i, lp in zip(idx, out):
                lps[i] = lp
        rows = []
        k = 0
        for b, r in enumerate(batch):
            n = len(r.meta["choices"])
            mine = lps[k:k + n]
            k += n
            rows.append({"loglik": [float(lp.sum()) for lp in mine], "tokens": [int(len(lp)) for lp in mine]})
        return rows

    rows, info = run_cached(items, scorer="multiple_choice", params={"template": template, "system": lm.renderer.system,
                            "max_length": lm.max_length}, identity=lm.identity, compute=compute, plan=plan, ctx=ctx)
    out = []
    for r, row in zip(items, rows):
        choices, answer = _check(r)
        ll = np.array(row["loglik"], dtype=np.float64)
        chars = np.array([max(1, len(c)) for c in choices], dtype=np.float64)
        pred, pred_norm = int(np.argmax(ll)), int(np.argmax(ll / chars))
        out.append({"id": r.id, "answer": answer, "pred": pred, "pred_norm": pred_norm,
                    "correct": pred == answer, "correct_norm": pred_norm == answer,
                    "loglik": row["loglik"], "tokens": row["tokens"], "chars": chars.astype(int).tolist(),
                    **({"subject": r.meta["subject"]} if "subject" in r.meta else {})})
    return out, info


def summarize_mc(rows: Sequence[dict]) -> dict:
    n = len(rows)
    out: dict[str, Any] = {"n": n,
                           "acc": sum(r["correct"] for r in rows) / n if n else None,
                           "acc_norm": sum(r["correct_norm"] for r in rows) / n if n else None}
    if n > 1:
        for key in ("acc", "acc_norm"):
            p = out[key]
            out[f"{key}_stderr"] = float(np.sqrt(p * (1 - p) / (n - 1)))
    subjects = sorted({r["subject"] for r in rows if "subject" in r})
    if subjects:
        out["by_subject"] = {s: sum(r["correct"] for r in rows if r.get("subject") == s)
                             / sum(1 for r in rows if r.get("subject") == s) for s in subjects}
    return out
