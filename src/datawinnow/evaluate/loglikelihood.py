"""Log-likelihood requests ``(context, continuation)``, tokenized the way lm-evaluation-harness does.

The harness's rule for causal LMs (``loglikelihood`` requests of its ``multiple_choice`` tasks):

1. whitespace at the end of the context moves to the start of the continuation;
2. context + continuation is tokenized as one text (with the tokenizer's default special tokens,
   as the harness does), and the context alone likewise;
3. the continuation's tokens are the whole text's tokens after the first ``len(context tokens)``;
   the model reads the context's own tokens followed by them.

An empty context is replaced by the start marker (BOS, else EOS), as the harness does. Scoring is one
batched teacher-forced pass (:meth:`CausalLM.response_logprobs` over length-sorted batches, by token budget
when ``batch_tokens`` is set), cached
per record with :func:`~datawinnow.runtime.runner.run_cached`. No chat template: these are the
harness's plain-text prompts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..backends.causal_lm import Pair, truncate_pair
from ..data.record import Dataset, Record
from ..runtime.context import Context
from ..runtime.runner import run_cached

Request = tuple[str, str]  # (context, continuation)


def _tokens(lm, text: str) -> list[int]:
    return lm.tokenizer(text)["input_ids"]


def request_pair(lm, context: str, continuation: str) -> Pair:
    """The teacher-forced pair the harness builds for one request (truncated to ``lm.max_length``)."""
    stripped = context.rstrip()
    if stripped != context:
        continuation = context[len(stripped):] + continuation
        context = stripped
    if not context:
        return truncate_pair(lm.start_ids(), lm.encode(continuation), lm.max_length)
    context_ids = _tokens(lm, context)
    whole = _tokens(lm, context + continuation)
    return truncate_pair(context_ids, whole[len(context_ids):], lm.max_length)


def score_requests(lm, items: Dataset, requests: Callable[[Record], Sequence[Request]], *, task: str,
                   ctx: Context, params: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per item, for each of its requests: the summed log-likelihood of the continuation (``loglik``) and
    its token count (``tokens``). Cached per (model identity, ``task``, ``params``, max length)."""

    def plan(todo: Sequence[Record]):
        reqs = [requests(r) for r in todo]
        if ctx.batch_tokens is not None:  # items by their tokens; their pairs are batched again in compute
            return ctx.batches([sum(len(request_pair(lm, c, x)) for c, x in rs) for rs in reqs], lm=lm)
        lengths = [sum(len(c) + len(x) for c, x in rs) for rs in reqs]
        per_item = max((len(rs) for rs in reqs), default=1)
        return ctx.batches(lengths, per_item=per_item)

    def compute(batch: list[Record]) -> list[dict[str, Any]]:
        pairs: list[Pair] = []
        counts = []
        for r in batch:
            reqs = requests(r)
            counts.append(len(reqs))
            pairs.extend(request_pair(lm, c, x) for c, x in reqs)
        lps: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(pairs)
        for idx, out in lm.iter_batches(pairs, ctx.batch_size, ctx.batch_tokens):
            for i, lp in zip(idx, out):
                lps[i] = lp
        rows, k = [], 0
        for n in counts:
            mine = lps[k:k + n]
            k += n
            rows.append({"loglik": [float(lp.sum(dtype=np.float64)) for lp in mine],
                         "tokens": [int(len(lp)) for lp in mine]})
        return rows

    return run_cached(items, scorer=f"loglikelihood:{task}",
                      params={**(params or {}), "tokenization": "lm-eval", "max_length": lm.max_length},
                      identity=lm.identity, compute=compute, plan=plan, ctx=ctx)


def summarize_accuracy(rows: Sequence[dict[str, Any]], metrics: dict[str, str],
                       by: str | None = None) -> dict[str, Any]:
    """``n``, each metric (the mean of the boolean per-item field it names) with its sample standard error
    ``sqrt(p (1 - p) / (n - 1))`` as lm-eval reports it, and per value of the field ``by`` (with counts)."""
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    for metric, field in metrics.items():
        p = sum(bool(r[field]) for r in rows) / n if n else None
        out[metric] = p
        if n > 1:
            out[f"{metric}_stderr"] = float(np.sqrt(p * (1 - p) / (n - 1)))
    if by is not None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(str(r[by]), []).append(r)
        out[f"by_{by}"] = {g: {"n": len(rs), **{m: sum(bool(r[f]) for r in rs) / len(rs) for m, f in metrics.items()}}
                           for g, rs in sorted(groups.items())}
    return out


def load_bundled_items(name: str, item_from_row: Callable[[dict, int], Record], what: str) -> Dataset:
    """A bundled evaluation file's rows as records (``item_from_row(row, index)``); a malformed row is one
    DataError naming the file and line."""
    from ..data.bundled import bundled_path
    from ..data.readers import iter_jsonl
    from ..errors import DataError

    path = bundled_path(name)
    records: list[Record] = []
    for line, row in iter_jsonl(path):
        try:
            records.append(item_from_row(row, len(records)))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise DataError(f"malformed {what} row ({e})", path=str(path), line=line) from None
    return Dataset(records, path=f"bundled:{name}")
