"""Shared pieces of the judge-based scorers (alpagasus, deita, selectit): turns, rating parsing, batching."""

from __future__ import annotations

import re
from typing import Any, Iterable

import numpy as np

from ..backends.judge import Judge, JudgeError, expected_rating, reads_probabilities
from ..data.record import Record
from ..errors import ConfigError, DataError
from ..runtime.context import Context
from ..runtime.runner import Recipe, sequential_plan

READOUTS = ("text", "expected")


def turns(record: Record) -> list[tuple[str, str]]:
    """(user query, assistant response) per turn; single-turn records give one pair (prompt, output).

    A user turn without an answer (a conversation ending on the user) is left out.
    """
    if not record.messages:
        return [(record.prompt, record.output)]
    out: list[tuple[str, str]] = []
    pending: str | None = None
    for m in record.messages:
        if m["role"] == "user":
            pending = m["content"] if pending is None else f"{pending}\n\n{m['content']}"
        elif m["role"] == "assistant" and pending is not None:
            out.append((pending, m["content"]))
            pending = None
    if not out:
        raise DataError(f"record '{record.id}' has no user turn followed by an assistant turn", field="messages")
    return out


def transcript(record: Record) -> tuple[str, str]:
    """(everything before the last answer as text, the last answer) for judges that rate the final reply."""
    pairs = turns(record)
    if len(pairs) == 1:
        return pairs[0]
    lines = []
    for q, a in pairs[:-1]:
        lines += [f"User: {q}", f"Assistant: {a}"]
    lines.append(f"User: {pairs[-1][0]}")
    return "\n\n".join(lines), pairs[-1][1]


_NUMBER = re.compile(r"(?<![\d.])\d+(?:\.\d+)?")
_OUT_OF = re.compile(r"\s*/\s*(\d+(?:\.\d+)?)")        # "4.5/5"
_UP_TO = re.compile(r"\s*(?:-|\u2013|to)\s*(\d+(?:\.\d+)?)")  # "0-5", "1 to 5"


def parse_rating(reply: str, low: float = 0, high: float = 5) -> float | None:
    """The first number in ``reply`` that is a rating on the ``low``-``high`` scale, decimals included.

    "4.5", "Score: 4.5", "Rating: 4", "4.5/5" and "5/5" read as written; a number outside the scale
    is passed over ("Grade: 8 is too generous; 4" reads 4), and so is a fraction on another scale
    ("9/10" is no 0-5 rating) and the scale itself ("on a 0-5 scale: 4" reads 4).
    """
    pos = 0
    while (m := _NUMBER.search(reply, pos)) is not None:
        value, pos = float(m.group()), m.end()
        if (frac := _OUT_OF.match(reply, pos)) is not None:
            pos = frac.end()
            if float(frac.group(1)) != high:
                continue
        elif (span := _UP_TO.match(reply, pos)) is not None and value in (low, 1) and float(span.group(1)) == high:
            pos = span.end()
            continue
        if low <= value <= high:
            return value
    return None


def check_readout(readout: str, judge: Judge, scorer: str) -> None:
    if readout not in READOUTS:
        raise ConfigError(f"{scorer}: readout must be one of {', '.join(READOUTS)}, got '{readout}'")
    if readout == "expected" and not reads_probabilities(judge):
        raise ConfigError(f"{scorer}: readout=expected needs a judge that reads token probabilities (a local judge, "
                          f"or --judge-logprobs); {judge.identity} cannot, use readout=text")


def expected_scores(judge: Judge, conversations: list, values: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """(expected rating per conversation, the choice probabilities) over the digit tokens of ``values``."""
    values = list(values)
    probs = judge.choice_probs(conversations, [str(v) for v in values])
    return expected_rating(probs, values), probs


def judge_plan(judge: Judge, ctx: Context, per_record: int = 1):
    """Records per cached batch: enough to keep a remote judge's requests in flight, or one local batch."""
    width = max(ctx.batch_size, 2 * int(getattr(judge, "concurrency", 1)))
    return sequential_plan(max(1, width // max(per_record, 1)))


def judge_recipe(judge: Judge, factory: str, kwargs: dict[str, Any]) -> Recipe | None:
    """The recipe of judge work that Ray workers may take over: a local judge's (a model to run, rebuilt from
    the run's options); a remote judge answers over HTTP with its own requests in flight, so its work stays
    in this process (None)."""
    from ..backends.judge_local import LocalJudge

    return Recipe(factory, kwargs) if isinstance(judge, LocalJudge) else None


def unparsable(scorer: str, record: Record, reply: str) -> JudgeError:
    shown = " ".join(reply.split())[:200]
    return JudgeError(f"{scorer}: the judge's reply for record '{record.id}' has no score: {shown!r} "
                      f"(on_unparsable=drop leaves such records unscored; readout=expected reads digit "
                      f"probabilities instead)")


def finite_or_nan(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
