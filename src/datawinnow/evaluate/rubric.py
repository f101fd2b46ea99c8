"""LLM-as-judge rubric: eight dimensions, each scored 1-5 against anchored level descriptions.

The judge (any :class:`datawinnow.backends.judge.Judge`, local or remote) reads the instruction,
optionally the reference answer, and the response, and replies with one score per dimension. The
reply is parsed strictly: a missing dimension, a score outside 1-5, a non-integer or two different
scores for one dimension raise :class:`RubricParseError`; there is never a default score. The
evaluation loop records such an item as failed (with the reason) and leaves it out of the means.

A judge that reads token probabilities (a local model) can instead be asked one dimension at a time
(:func:`judge_rubric_expected`): the same rubric, the reply primed to a single score, and the
dimension's score is the expected value sum_k k p(k) over the digit tokens "1".."5" (the DEITA /
AlpaGasus read-out). Nothing is parsed, so no item fails; small local judges that cannot write the
eight-line reply still give a graded score.
"""

from __future__ import annotations

import json
import re

import numpy as np
from typing import Sequence

from ..backends.judge import JudgeError

DIMENSIONS: dict[str, str] = {
    "Instruction Following": "Does the response do what the instruction asks, respecting every stated constraint?",
    "Accuracy": "Is the content factually and logically correct, free of errors and fabrications?",
    "Relevance": "Does the response stay on topic and address the actual request?",
    "Completeness": "Does the response cover every part of the request?",
    "Depth": "Does the response show insight and go beyond a superficial answer where that is useful?",
    "Clarity": "Is the response well organised and easy to understand?",
    "Creativity": "Is the response original and thoughtful where the task allows it?",
    "Helpfulness": "Would the response actually help the person who asked?",
}

LEVELS: dict[int, str] = {
    1: "Poor: the response fails to meet the criteria across most or all aspects.",
    2: "Below average: the response has major deficiencies in meeting the criteria.",
    3: "Average: the response meets some criteria but has notable gaps.",
    4: "Good: the response is strong and meets the criteria, with minor improvements possible.",
    5: "Excellent: the response excels in all or nearly all aspects of the criteria.",
}

SYSTEM = "You are a strict, impartial evaluator of AI assistant responses."


class RubricParseError(JudgeError):
    """A judge reply that does not give exactly one 1-5 score for every dimension."""


def rubric_messages(instruction: str, response: str, reference: str | None = None) -> list[dict[str, str]]:
    """The judge conversation for one (instruction, response) pair."""
    dims = "\n".join(f"- {name}: {desc}" for name, desc in DIMENSIONS.items())
    levels = "\n".join(f"{k} - {text}" for k, text in LEVELS.items())
    ref = (f"[Reference answer (one good answer, not the only acceptable one)]\n{reference}\n\n"
           if reference and reference.strip() else "")
    fmt = "\n".join(f"{name}: <1-5>" for name in DIMENSIONS)
    user = (
        "Evaluate the response to the instruction below on each of eight dimensions.\n\n"
        f"Dimensions:\n{dims}\n\n"
        f"Score every dimension from 1 to 5 with these levels:\n{levels}\n\n"
        f"[Instruction]\n{instruction}\n\n{ref}[Response]\n{response}\n\n"
        "Reply with exactly these eight lines, one integer score each, and nothing else:\n"
        f"{fmt}"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def rubric_dimension_messages(instruction: str, response: str, reference: str | None,
                              dimension: str) -> list[dict[str, str]]:
    """The rubric conversation for one dimension only (probability read-out): that dimension's
    question and the five anchored levels, about half the tokens of the eight-dimension prompt."""
    levels = "\n".join(f"{k} - {text}" for k, text in LEVELS.items())
    ref = (f"[Reference answer (one good answer, not the only acceptable one)]\n{reference}\n\n"
           if reference and reference.strip() else "")
    user = (
        f"Evaluate the response to the instruction below on one dimension.\n\n"
        f"Dimension: {dimension}: {DIMENSIONS[dimension]}\n\n"
        f"Score it from 1 to 5 with these levels:\n{levels}\n\n"
        f"[Instruction]\n{instruction}\n\n{ref}[Response]\n{response}\n\n"
        f"Now score only this dimension: {dimension} ({DIMENSIONS[dimension]})\n"
        "Reply with a single integer from 1 to 5 and nothing else."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


_NORMED = {_norm(n): n for n in DIMENSIONS}
# "Instruction Following: 4", "**Accuracy** - 5/5", "Depth = 3", "1. Clarity: 4"
_LINE = re.compile(
    r"^[ \t>*#\-\d.)]*?\**[ \t]*(?P<name>[A-Za-z][A-Za-z _\-]*?)[ \t]*\**[ \t]*[:=\-\u2013][ \t]*\**[ \t]*"
    r"(?P<value>[-+]?\d+(?:\.\d+)?)(?:[ \t]*/[ \t]*5)?\b", re.M)


def _check_value(name: str, raw, reply: str) -> int:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RubricParseError(f"rubric: score for '{name}' is not a number ({raw!r}) in judge reply: "
                               f"{_clip(reply)}") from None
    if value != int(value):
        raise RubricParseError(f"rubric: score for '{name}' must be an integer 1-5, got {raw} in judge reply: "
                               f"{_clip(reply)}")
    if not 1 <= int(value) <= 5:
        raise RubricParseError(f"rubric: score for '{name}' must be between 1 and 5, got {int(value)} in judge "
                               f"reply: {_clip(reply)}")
    return int(value)


def _clip(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= n else text[:n] + "...")


def _from_json(reply: str) -> dict[str, object] | None:
    """The last JSON object in the reply whose keys name rubric dimensions, if there is one."""
    for m in reversed(list(re.finditer(r"\{[^{}]*\}", reply, re.S))):
        try:
            obj = json.loads(m.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and any(_norm(str(k)) in _NORMED for k in obj):
            return {_NORMED[_norm(str(k))]: v for k, v in obj.items() if _norm(str(k)) in _NORMED}
    return None


def parse_rubric(reply: str) -> dict[str, int]:
    """The eight scores from a judge reply (a JSON object or ``Name: score`` lines).

    Raises :class:`RubricParseError` naming what is wrong; never fills in a score.
    """
    if not reply or not reply.strip():
        raise RubricParseError("rubric: the judge reply is empty")
    found = _from_json(reply)
    scores: dict[str, int] = {}
    if found is not None:
        for name, raw in found.items():
            scores[name] = _check_value(name, raw, reply)
    else:
        for m in _LINE.finditer(reply):
            key = _norm(m.group("name"))
            if key not in _NORMED:
                continue
            name = _NORMED[key]
            value = _check_value(name, m.group("value"), reply)
            if name in scores and scores[name] != value:
                raise RubricParseError(f"rubric: two different scores for '{name}' ({scores[name]} and {value}) "
                                       f"in judge reply: {_clip(reply)}")
            scores[name] = value
    missing = [n for n in DIMENSIONS if n not in scores]
    if missing:
        raise RubricParseError(f"rubric: no score for {', '.join(repr(m) for m in missing)} in judge reply: "
                               f"{_clip(reply)}")
    return {n: scores[n] for n in DIMENSIONS}


def judge_rubric(judge, instructions: Sequence[str], responses: Sequence[str],
                 references: Sequence[str | None] | None = None, *, max_tokens: int = 128) -> list[dict]:
    """One row per item: the eight scores and their mean, or ``error`` (the parse failure) and no scores."""
    refs = list(references) if references is not None else [None] * len(instructions)
    convs = [rubric_messages(i, r, ref) for i, r, ref in zip(instructions, responses, refs)]
    replies = judge.chat(convs, max_tokens=max_tokens, temperature=0.0)
    rows = []
    for reply in replies:
        try:
            scores = parse_rubric(reply)
        except RubricParseError as e:
            rows.append({"error": str(e), "reply": reply})
            continue
        rows.append({**{_key(n): v for n, v in scores.items()}, "mean": sum(scores.values()) / len(scores),
                     "reply": reply})
    return rows


def judge_rubric_expected(judge, instructions: Sequence[str], responses: Sequence[str],
                          references: Sequence[str | None] | None = None) -> list[dict]:
    """One row per item: each dimension's expected score sum_k k p(k) over "1".."5", and their mean.

    ``judge`` must read token probabilities (:func:`datawinnow.backends.judge.reads_probabilities`)."""
    from ..backends.judge import expected_rating

    refs = list(references) if references is not None else [None] * len(instructions)
    names = list(DIMENSIONS)
    convs = [rubric_dimension_messages(i, r, ref, name)
             for i, r, ref in zip(instructions, responses, refs) for name in names]
    digits = [str(k) for k in LEVELS]
    probs = np.asarray(judge.choice_probs(convs, digits), dtype=np.float64).reshape(len(instructions), len(names), -1)
    scores = expected_rating(probs.reshape(-1, len(digits)), [float(k) for k in LEVELS]).reshape(len(instructions), -1)
    rows = []
    for row in scores:
        values = {_key(n): float(v) for n, v in zip(names, row)}
        rows.append({**values, "mean": float(np.mean(row)), "readout": "expected"})
    return rows


def _key(name: str) -> str:
    """JSON key for a dimension: ``instruction_following``."""
    return name.lower().replace(" ", "_")


DIMENSION_KEYS = [_key(n) for n in DIMENSIONS]


def summarize_rubric(rows: Sequence[dict]) -> dict[str, float | int | None]:
    """Per-dimension means and the mean of the per-item means, over items the judge scored."""
    ok = [r for r in rows if "error" not in r]
    out: dict[str, float | int | None] = {"n": len(ok), "n_failed": len(rows) - len(ok)}
    for k in DIMENSION_KEYS:
        out[k] = sum(r[k] for r in ok) / len(ok) if ok else None
    out["mean"] = sum(r["mean"] for r in ok) / len(ok) if ok else None
    return out
