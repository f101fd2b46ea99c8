"""Pairwise win rate against reference outputs (AlpacaEval style), judged in both orders.

For each instruction the judge sees the model's answer and the reference answer twice, once with
the model's answer first and once second, and says which is better. The item's win is the mean of
the two verdicts (1 = model better), so a judge that always prefers one position contributes 0.5
per item: position bias cancels instead of inflating the score. A judge that reads token
probabilities (the local one) gives fractional verdicts p(model's label); a text-only judge gives 0/1.

- ``win_rate`` = 100 x mean item win; ``standard_error`` = 100 x std(item wins, ddof=1) / sqrt(n).
- ``lc_win_rate`` (length-controlled, after AlpacaEval 2.0): a logistic model of each verdict on
  tanh(length difference / its standard deviation), fitted by maximum likelihood; the win rate is
  the model's prediction at zero length difference, 100 x sigmoid(intercept). AlpacaEval's GLM also
  has a per-instruction difficulty term fitted across many models; with one model it is left out.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..backends.judge import Judge, JudgeError

SYSTEM = "You are a careful, impartial judge comparing two answers of AI assistants."
LABELS = ("A", "B")


def pair_messages(instruction: str, first: str, second: str) -> list[dict[str, str]]:
    user = (
        "Which of the two outputs below is the better answer to the instruction? Judge how helpful, correct "
        "and complete each one is. Neither the order in which the outputs appear nor their length should "
        "influence your decision.\n\n"
        f"# Instruction\n{instruction}\n\n# Output (A)\n{first}\n\n# Output (B)\n{second}\n\n"
        "Answer with a single letter, A or B, and nothing else."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


_START = re.compile(r"^\W*(?:output\s*)?[\(\[]?\s*([AB])\s*[\)\]]?(?:[\s.:,;!]|$)", re.I)
_ANY = re.compile(r"output\s*[\(\[]?\s*([AB])\b", re.I)


def parse_verdict(reply: str) -> str:
    """"A" or "B" from a judge reply; :class:`JudgeError` when the reply names neither or both."""
    text = (reply or "").strip()
    named = {x.upper() for x in _ANY.findall(text)}
    m = _START.match(text)
    if m and named <= {m.group(1).upper()}:
        return m.group(1).upper()
    if not m and len(named) == 1:
        return named.pop()
    shown = " ".join(text.split())[:160]
    raise JudgeError(f"winrate: cannot tell which output the judge preferred from its reply {shown!r} "
                     "(expected 'A' or 'B')")


def reads_probabilities(judge: Judge) -> bool:
    return type(judge).choice_probs is not Judge.choice_probs


def judge_pairs(judge: Judge, instructions: Sequence[str], answers: Sequence[str], references: Sequence[str],
                *, use_probs: bool | None = None) -> list[dict]:
    """Per item: ``model_first`` and ``model_second`` (the probability the judge prefers the model in
    each order), ``win`` (their mean), or ``error`` when a verdict cannot be read."""
    probs = reads_probabilities(judge) if use_probs is None else use_probs
    convs = []
    for ins, ans, ref in zip(instructions, answers, references):
        convs.append(pair_messages(ins, ans, ref))   # model is A
        convs.append(pair_messages(ins, ref, ans))   # model is B
    rows: list[dict] = []
    if probs:
        p = np.asarray(judge.choice_probs(convs, list(LABELS)), dtype=np.float64)
        for k in range(len(instructions)):
            first, second = float(p[2 * k, 0]), float(p[2 * k + 1, 1])
            rows.append({"model_first": first, "model_second": second, "win": (first + second) / 2,
                         "verdicts": ["A" if p[2 * k, 0] >= 0.5 else "B", "A" if p[2 * k + 1, 0] >= 0.5 else "B"]})
        return rows
    replies = judge.chat(convs, max_tokens=8, temperature=0.0)
    for k in range(len(instructions)):
        try:
            v1, v2 = parse_verdict(replies[2 * k]), parse_verdict(replies[2 * k + 1])
        except JudgeError as e:
            rows.append({"error": str(e), "replies": replies[2 * k:2 * k + 2]})
            continue
        first, second = float(v1 == "A"), float(v2 == "B")
        rows.append({"model_first": first, "model_second": second, "win": (first + second) / 2,
                     "verdicts": [v1, v2]})
    return rows


def _lc_intercept(y: np.ndarray, x: np.ndarray) -> float:
    """Maximum-likelihood logistic fit of P(win) = sigmoid(a + b x) on fractional outcomes; returns a.

    A tiny L2 penalty keeps the fit finite when every verdict agrees (perfect separation)."""
    from scipy.optimize import minimize

    def nll(theta):
        z = theta[0] + theta[1] * x
        log_p, log_q = -np.logaddexp(0, -z), -np.logaddexp(0, z)
        return -(y * log_p + (1 - y) * log_q).sum() + 1e-4 * (theta ** 2).sum()

    def grad(theta):
        z = theta[0] + theta[1] * x
        r = 1 / (1 + np.exp(-z)) - y
        return np.array([r.sum(), (r * x).sum()]) + 2e-4 * theta

    res = minimize(nll, np.zeros(2), jac=grad, method="L-BFGS-B")
    return float(res.x[0])


def summarize_winrate(rows: Sequence[dict], answer_lengths: Sequence[int] | None = None,
                      reference_lengths: Sequence[int] | None = None) -> dict:
    """Win rate (percent) with its standard error, the length-controlled win rate, and position statistics."""
    ok = [k for k, r in enumerate(rows) if "error" not in r]
    out: dict = {"n": len(ok), "n_failed": len(rows) - len(ok)}
    if not ok:
        return {**out, "win_rate": None, "standard_error": None, "lc_win_rate": None}
    wins = np.array([rows[k]["win"] for k in ok], dtype=np.float64)
    out["win_rate"] = 100.0 * wins.mean()
    out["standard_error"] = 100.0 * wins.std(ddof=1) / np.sqrt(len(wins)) if len(wins) > 1 else None
    verdicts = [v for k in ok for v in rows[k].get("verdicts", [])]
    out["judge_prefers_first"] = sum(v == "A" for v in verdicts) / len(verdicts) if verdicts else None
    out["order_agreement"] = float(np.mean([rows[k]["verdicts"][0] != rows[k]["verdicts"][1] for k in ok
                                            if "verdicts" in rows[k]])) if verdicts else None
    out["lc_win_rate"] = None
    if answer_lengths is not None and reference_lengths is not None and len(ok) >= 2:
        diff = np.array([answer_lengths[k] - reference_lengths[k] for k in ok], dtype=np.float64)
        sd = diff.std()
        x_item = np.tanh(diff / sd) if sd > 0 else np.zeros_like(diff)
        y = np.concatenate([[rows[k]["model_first"] for k in ok], [rows[k]["model_second"] for k in ok]])
        x = np.concatenate([x_item, x_item])
        a = _lc_intercept(np.clip(y, 0.0, 1.0), x)
        out["lc_win_rate"] = 100.0 / (1.0 + np.exp(-a))
    return out
