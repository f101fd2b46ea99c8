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
from pathlib import Path

import numpy as np

from ..backends.causal_lm import Pair
from ..cache import ScoreStore
from ..data.record import Dataset, Record
from ..errors import ConfigError, DataError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.runner import Recipe, run_cached


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


def ifd_store_params(model) -> dict:
    """The IFD store's parameters (with the model's identity they key the one store of L(y|x) and every L(y))."""
    return {"rules": RULES, "max_length": model.max_length, "system": model.renderer.system}


class IfdLosses:
    """The batch computation of :func:`ifd_losses`: per record, the passes its cached row lacks (L(y|x) and the
    span length, then this empty prompt's L(y)), merged into that row. The same object plans the batches
    (:meth:`length`: the conditioned pair's length, or the unconditioned one's when L(y|x) is cached)."""

    def __init__(self, ctx: Context, empty_prompt: str, store: ScoreStore | None):
        self.ctx, self.model, self.store = ctx, ctx.model, store
        self.u_key = f"loss_{empty_prompt}"
        self.u_text = empty_prompt_text(self.model, empty_prompt)
        self._cond: dict[str, Pair] = {}

    def cached(self, r: Record) -> dict:
        """What the store holds for ``r`` (without its stamp), or an empty row."""
        hit = self.store.lookup(r.id, r.content_key()) if self.store is not None else None
        return {k: v for k, v in hit.items() if k not in ("id", "_key")} if hit is not None else {}

    def _cond_pair(self, r: Record) -> Pair:
        if r.id not in self._cond:
            self._cond[r.id] = conditioned_pair(self.model, r)
        return self._cond[r.id]

    def _uncond_pair(self, r: Record) -> Pair:
        return self.model.span_pair(self.u_text, self._cond_pair(r).response)

    def length(self, r: Record) -> int:
        if "loss_conditioned" in self.cached(r):
            return len(self._uncond_pair(r))  # L(y|x) cached: tokenization only, no model pass
        return len(self._cond_pair(r))

    def _losses(self, pairs: list[Pair]) -> np.ndarray:
        """Mean response NLL per pair; under a token budget the pairs of one planned batch are batched again
        by their own lengths (the unconditioned pass's differ from the conditioned lengths the plan used)."""
        if self.ctx.batch_tokens is None:
            return self.model.response_loss(pairs)
        out = np.empty(len(pairs), dtype=np.float32)
        for idx, lps in self.model.iter_batches(pairs, batch_tokens=self.ctx.batch_tokens):
            out[idx] = [-lp.mean() if len(lp) else np.nan for lp in lps]
        return out

    def __call__(self, batch: list[Record]) -> list[dict]:
        rows = [self.cached(r) for r in batch]
        fresh = [k for k, row in enumerate(rows) if "loss_conditioned" not in row]
        if fresh:
            for k, loss in zip(fresh, self._losses([self._cond_pair(batch[k]) for k in fresh])):
                rows[k].update(loss_conditioned=float(loss), n_tokens=len(self._cond_pair(batch[k]).response))
        for row, loss in zip(rows, self._losses([self._uncond_pair(r) for r in batch])):
            row[self.u_key] = float(loss)
        for r in batch:
            self._cond.pop(r.id, None)
        return rows


def make_ifd_losses(ctx: Context, empty_prompt: str) -> IfdLosses:
    """:class:`IfdLosses` on ``ctx.model`` with its store (the recipe a Ray worker rebuilds it from)."""
    model = ctx.model
    store = ScoreStore(STORE, ifd_store_params(model), model.identity,
                       root=Path(ctx.cache_dir) if ctx.cache_dir else None) if ctx.use_cache else None
    return IfdLosses(ctx, empty_prompt, store)


def ifd_losses(dataset: Dataset, ctx: Context, empty_prompt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(L(y|x), L(y), response token count) per record, cached and resumable.

    Rows hold L(y|x) and each empty prompt's L(y) computed so far; a record is computed only for the
    passes its row lacks (batch by batch, each batch stored atomically before the next starts; through
    the context's executor, so Ray workers can compute them).
    """
    compute = make_ifd_losses(ctx, empty_prompt)
    model, u_key = compute.model, compute.u_key
    passes = {"conditioned": 0, empty_prompt: 0}

    def plan(todo: list[Record]):
        lengths = [compute.length(r) for r in todo]
        passes["conditioned"] = sum("loss_conditioned" not in compute.cached(r) for r in todo)
        passes[empty_prompt] = len(todo)
        return ctx.batches(lengths, lm=model)

    rows, info = run_cached(dataset, scorer=STORE, params=ifd_store_params(model), identity=model.identity,
                            compute=compute, plan=plan, ctx=ctx, complete=lambda row: u_key in row,
                            recipe=Recipe("datawinnow.scores.ifd:make_ifd_losses", {"empty_prompt": empty_prompt}))
    info = {**info, "passes": passes}
    lc = np.array([r["loss_conditioned"] for r in rows], dtype=np.float64)
    lu = np.array([r[u_key] for r in rows], dtype=np.float64)
    nt = np.array([r["n_tokens"] for r in rows], dtype=np.int64)
    return lc, lu, nt, info


@SCORERS.register
class IFDScorer(Scorer):
    name = "ifd"
    description = "Instruction-following difficulty L(y|x)/L(y) (loss_ratio, Cherry) or exp ratio (ppl_ratio, IterIT)."
    defaults = {"variant": "loss_ratio", "empty_prompt": "auto"}
    per_record = True  # the record's two losses under the run's model: nothing from other records

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        variant = self.params["variant"]
        if variant not in VARIANTS:
            raise ConfigError(f"ifd: variant must be one of {', '.join(VARIANTS)}, got '{variant}'")
        empty = resolve_empty_prompt(variant, self.params["empty_prompt"])
        lc, lu, nt, info = ifd_losses(dataset, ctx, empty)
        ifd = np.array([ifd_value(c, u, variant) for c, u in zip(lc, lu)], dtype=np.float64)
        return ScoreTable(dataset.ids, ifd, {"loss_conditioned": lc, "loss_unconditioned": lu, "n_tokens": nt},
                          info={**info, "variant": variant, "empty_prompt": empty})
