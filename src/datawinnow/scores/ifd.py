"""IFD: instruction-following difficulty (Cherry LLM), in both published variants.

L(y | x) is the mean cross-entropy of the response given the rendered prompt; L(y) the same with
an empty prompt. Two variants, both named:

- ``loss_ratio`` (Cherry's code, data-juicer): IFD = L(y | x) / L(y).
- ``ppl_ratio`` (IterIT, Superfiltering): IFD = exp(L(y | x)) / exp(L(y)).

The empty prompt is ``bare`` (the response after only the start-of-text token, as Cherry scores
it) or ``template`` (the chat template with only the assistant turn, as IterIT does); ``auto``
picks ``bare`` for ``loss_ratio`` and ``template`` for ``ppl_ratio``.

The two losses are what is cached (float32 or wider, never bf16: IterIT's bf16 storage makes many
rankings tie), so switching variant with the same empty prompt costs nothing.
"""

from __future__ import annotations

import math

import numpy as np

from ..backends.causal_lm import Pair, length_sorted_batches
from ..data.record import Dataset, Record
from ..errors import ConfigError, DataError
from ..registry import SCORERS
from .base import Context, Scorer, ScoreTable, run_cached

VARIANTS = ("loss_ratio", "ppl_ratio")
EMPTY_PROMPTS = ("auto", "bare", "template")


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


def ifd_pairs(model, record: Record, empty_prompt: str) -> tuple[Pair, Pair]:
    """(conditioned, unconditioned) teacher-forced pairs for one record."""
    if not record.output.strip():
        raise DataError(f"record '{record.id}' has an empty response; IFD needs one", field="output")
    cond = model.record_pair(record)
    if empty_prompt == "bare":
        uncond = model.pair("", record.output, bare=True)
    else:
        uncond = model.pair(model.renderer.empty_prompt(), record.output)
    return cond, uncond


def ifd_losses(dataset: Dataset, ctx: Context, empty_prompt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(L(y|x), L(y), response token count) per record, cached and resumable."""
    model = ctx.model
    pairs: dict[str, tuple[Pair, Pair]] = {}

    def pair_of(r: Record) -> tuple[Pair, Pair]:
        if r.id not in pairs:
            pairs[r.id] = ifd_pairs(model, r, empty_prompt)
        return pairs[r.id]

    def plan(todo: list[Record]):
        return length_sorted_batches([len(pair_of(r)[0]) for r in todo], ctx.batch_size)

    def compute(batch: list[Record]) -> list[dict]:
        cond = model.response_loss([pair_of(r)[0] for r in batch])
        uncond = model.response_loss([pair_of(r)[1] for r in batch])
        return [{"loss_conditioned": float(c), "loss_unconditioned": float(u),
                 "n_tokens": len(pair_of(r)[0].response)} for r, c, u in zip(batch, cond, uncond)]

    params = {"empty_prompt": empty_prompt, "max_length": model.max_length, "system": model.renderer.system}
    rows, info = run_cached(dataset, scorer="ifd", params=params, identity=model.identity, compute=compute,
                            plan=plan, ctx=ctx)
    lc = np.array([r["loss_conditioned"] for r in rows], dtype=np.float64)
    lu = np.array([r["loss_unconditioned"] for r in rows], dtype=np.float64)
    nt = np.array([r["n_tokens"] for r in rows], dtype=np.int64)
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
