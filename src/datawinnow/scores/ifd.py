"""IFD: instruction-following difficulty (Cherry LLM), in both published variants.

L(y | x) is the mean cross-entropy of the response given the rendered prompt; L(y) the same with
an empty prompt. Two variants, both named:

- ``loss_ratio`` (Cherry's code, data-juicer): IFD = L(y | x) / L(y).
- ``ppl_ratio`` (IterIT, Superfiltering): IFD = exp(L(y | x)) / exp(L(y)).

The empty prompt is ``bare`` (the response after only the start token, as Cherry scores it) or
``template`` (the chat template with only the assistant turn, as IterIT does; a model without a chat
template has no such turn, so there it is the start token alone, the same as ``bare``); ``auto``
picks ``bare`` for ``loss_ratio`` and ``template`` for ``ppl_ratio``. Every pass starts with the
model's start token (see :mod:`datawinnow.backends.causal_lm`), the conditioned one included.

**Truncation.** Both losses average exactly the same response tokens: the span that fits beside the
prompt in the conditioned pass (``max_length`` tokens, the response keeping at least half of them,
the prompt its start token and its end). The unconditioned pass scores that span, not the longer one
that would fit after the short empty prompt, so L(y | x) and L(y) compare like with like.

**Cache.** One store per (model, ``max_length``, system prompt) holds, per record, L(y | x), the
span length and every L(y) computed so far (``bare``, ``template``). Neither the variant nor the
empty prompt is part of the key: switching variant recomputes nothing, and a new empty prompt computes
only its own (short) pass. Losses are stored as float32 or wider, never bf16 (IterIT's bf16 storage
makes many rankings tie).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..backends.causal_lm import Pair
from ..cache import ScoreStore
from ..data.record import Dataset, Record
from ..errors import ConfigError, DataError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.progress import progress_bar
from ..runtime.runner import run_summary


VARIANTS = ("loss_ratio", "ppl_ratio")
EMPTY_PROMPTS = ("auto", "bare", "template")
STORE = "ifd"
RULES = "aligned-span+start-token-1"  # part of the cache key: the truncation and start-token rules


def ifd_value(loss_conditioned: float, loss_unconditioned: float, variant: str) -> float:
    """IFD from the two losses."""
    if variant == "loss_ratio":
        return loss_conditioned / loss_unconditioned if loss_unconditioned > 0 else math.inf
    if variant == "ppl_ratio":
        return math.exp(loss_conditioned - loss_unconditioned)
    raise ConfigError(f"ifd: variant must be one of {', '.join(VARIANTS)}, got '{variant}'")


def resolve_empty_prompt(variant: str, empty_prompt: str) -> str:
    if empty_prompt not in EMPTY_PROMPTS:
        raise ConfigError(f"ifd: empty_prompt must be one of {', '.join(EMPTY_PROMPTS)}, got '{empty_prompt}'")
    if empty_prompt != "auto":
        return empty_prompt
    return "bare" if variant == "loss_ratio" else "template"


def empty_prompt_text(model, empty_prompt: str) -> str:
    """The text of the unconditioned pass's prompt (before the start token is added)."""
    if empty_prompt == "bare":
        return ""
    if empty_prompt == "template":
        return model.renderer.empty_prompt()
    raise ConfigError(f"ifd: empty_prompt must be bare or template here, got '{empty_prompt}'")


def conditioned_pair(model, record: Record) -> Pair:
    """The L(y | x) pair; its response is the span both passes score."""
    if not record.output.strip():
        raise DataError(f"record '{record.id}' has an empty response; IFD needs one", field="output")
    return model.record_pair(record)


def ifd_pairs(model, record: Record, empty_prompt: str) -> tuple[Pair, Pair]:
    """(conditioned, unconditioned) teacher-forced pairs for one record, over the same response tokens."""
    cond = conditioned_pair(model, record)
    return cond, model.span_pair(empty_prompt_text(model, empty_prompt), cond.response)


def ifd_losses(dataset: Dataset, ctx: Context, empty_prompt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(L(y|x), L(y), response token count) per record, cached and resumable.

    Rows hold L(y|x) and each empty prompt's L(y) computed so far; a record is computed only for the
    passes its row lacks (batch by batch, each batch stored atomically before the next starts).
    """
    model = ctx.model
    u_key = f"loss_{empty_prompt}"
    u_text = empty_prompt_text(model, empty_prompt)
    store = ScoreStore(STORE, {"rules": RULES, "max_length": model.max_length, "system": model.renderer.system},
                       model.identity) if ctx.use_cache else None
    rows: dict[str, dict] = {}
    todo: list[Record] = []
    for r in dataset:
        hit = store.lookup(r.id, r.content_key()) if store is not None else None
        if hit is not None:
            rows[r.id] = hit
        if hit is None or u_key not in hit:
            todo.append(r)
    passes = {"conditioned": 0, empty_prompt: 0}
    t0 = time.perf_counter()
    if todo:
        cond: dict[str, Pair] = {r.id: conditioned_pair(model, r) for r in todo if "loss_conditioned" not in
                                 rows.get(r.id, {})}
        spans = {r.id: cond[r.id].response if r.id in cond else None for r in todo}

        def uncond_pair(r: Record) -> Pair:
            span = spans[r.id]
            if span is None:  # L(y|x) cached: rebuild the span (tokenization only, no model pass)
                span = spans[r.id] = conditioned_pair(model, r).response
            return model.span_pair(u_text, span)

        lengths = [len(cond[r.id]) if r.id in cond else len(uncond_pair(r)) for r in todo]
        def losses(pairs: list[Pair]) -> np.ndarray:
            """Mean response NLL per pair; under a token budget the pairs of one planned batch are batched again
            by their own lengths (the unconditioned pass's differ from the conditioned lengths the plan used)."""
            if ctx.batch_tokens is None:
                return model.response_loss(pairs)
            out = np.empty(len(pairs), dtype=np.float32)
            for idx, lps in model.iter_batches(pairs, batch_tokens=ctx.batch_tokens):
                out[idx] = [-lp.mean() if len(lp) else np.nan for lp in lps]
            return out

        bar = progress_bar(len(todo), "ifd", ctx.progress)
        try:
            for idx in ctx.batches(lengths, lm=model):
                batch = [todo[i] for i in idx]
                fresh = [r for r in batch if r.id in cond]
                if fresh:
                    for r, loss in zip(fresh, losses([cond[r.id] for r in fresh])):
                        rows[r.id] = {"loss_conditioned": float(loss), "n_tokens": len(cond[r.id].response)}
                    passes["conditioned"] += len(fresh)
                for r, loss in zip(batch, losses([uncond_pair(r) for r in batch])):
                    rows[r.id] = {**rows[r.id], u_key: float(loss), "id": r.id, "_key": r.content_key()}
                passes[empty_prompt] += len(batch)
                if store is not None:
                    store.put([rows[r.id] for r in batch])
                bar.update(len(batch))
        finally:
            bar.close()
        if store is not None:
            store.compact()
    info = run_summary("ifd", len(dataset), len(todo), t0, extra={"passes": passes},
                       detail="; passes " + ", ".join(f"{k} {v}" for k, v in passes.items()))
    ordered = [rows[r.id] for r in dataset]
    lc = np.array([r["loss_conditioned"] for r in ordered], dtype=np.float64)
    lu = np.array([r[u_key] for r in ordered], dtype=np.float64)
    nt = np.array([r["n_tokens"] for r in ordered], dtype=np.int64)
    return lc, lu, nt, info


@SCORERS.register
class IFDScorer(Scorer):
    name = "ifd"
    description = "Instruction-following difficulty L(y|x)/L(y) (loss_ratio, Cherry) or exp ratio (ppl_ratio, IterIT)."
    defaults = {"variant": "loss_ratio", "empty_prompt": "auto"}

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        variant = self.params["variant"]
        if variant not in VARIANTS:
            raise ConfigError(f"ifd: variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
        empty = resolve_empty_prompt(variant, self.params["empty_prompt"])
        lc, lu, nt, info = ifd_losses(dataset, ctx, empty)
        ifd = np.array([ifd_value(c, u, variant) for c, u in zip(lc, lu)], dtype=np.float64)
        return ScoreTable(dataset.ids, ifd, {"loss_conditioned": lc, "loss_unconditioned": lu, "n_tokens": nt},
                          info={**info, "variant": variant, "empty_prompt": empty})
