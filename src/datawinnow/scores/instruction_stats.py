"""Instruction embeddings and instruction perplexity from a causal LM, in one forward pass.

For each record the instruction text is tokenized (``bare``: the instruction and input as plain text;
``template``: the rendered chat/Alpaca prompt; both after the model's start token, by the backend's
start-token rule), and one pass of the model gives

- the embedding: the mean over the sequence's tokens of the last hidden state (after the final norm);
- the perplexity: exp of the mean cross-entropy of every token after the first (LM head and
  log-softmax in float32, whatever the model's dtype).

``bare`` is the default because template tokens (and SmolLM2's default system persona) are the same
for every sample and would dominate a mean embedding. Rows are cached per record (embeddings packed
as float32 base64), so a second run, or another method on the same model, reads them back.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..backends.causal_lm import CausalLM, to_numpy
from ..data.record import Dataset, Record
from ..errors import ConfigError, DataError
from ..runtime.context import Context
from ..runtime.runner import Recipe, run_cached
from .vectors import pack, unpack_rows

TEXTS = ("bare", "template")


def instruction_ids(lm: CausalLM, record: Record, text: str) -> list[int]:
    if not record.prompt.strip():
        raise DataError(f"record '{record.id}' has an empty instruction", field="instruction")
    if text == "bare":
        ids = lm.prompt_ids(record.prompt)
    elif text == "template":
        ids = lm.prompt_ids(lm.renderer.prompt(record))
    else:
        raise ConfigError(f"instruction text must be one of {', '.join(TEXTS)}, got '{text}'")
    return ids[:lm.max_length]


@torch.inference_mode()
def embed_and_perplexity(lm: CausalLM, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(mean last hidden state [b, H] float32, perplexity [b]) for one batch of token-id lists."""
    head = lm.fp32_head()
    hidden, mask = lm.hidden_states(sequences)
    hidden = hidden.float()
    m = mask.unsqueeze(-1).float()
    emb = (hidden * m).sum(1) / m.sum(1)
    ppl = np.full(len(sequences), np.nan)
    for b, s in enumerate(sequences):
        if len(s) < 2:
            continue
        logits = head.logits(hidden[b, :len(s) - 1])
        nll = torch.nn.functional.cross_entropy(logits, torch.tensor(s[1:], device=hidden.device))
        ppl[b] = math.exp(nll.item())
    return to_numpy(emb), ppl


class InstructionStats:
    """The batch computation of :func:`instruction_stats` (its token ids are memoised: the plan reads them too)."""

    def __init__(self, lm: CausalLM, text: str):
        self.lm, self.text = lm, text
        self._ids: dict[str, list[int]] = {}

    def ids_of(self, r: Record) -> list[int]:
        if r.id not in self._ids:
            self._ids[r.id] = instruction_ids(self.lm, r, self.text)
        return self._ids[r.id]

    def __call__(self, batch: list[Record]) -> list[dict]:
        emb, ppl = embed_and_perplexity(self.lm, [self.ids_of(r) for r in batch])
        return [{"emb": pack(e), "ppl": float(p)} for e, p in zip(emb, ppl)]


def make_instruction_stats(ctx: Context, text: str) -> InstructionStats:
    """:class:`InstructionStats` on ``ctx.model`` (the recipe a Ray worker rebuilds it from)."""
    return InstructionStats(ctx.model, text)


def instruction_stats(dataset: Dataset, ctx: Context, text: str = "bare", lm: CausalLM | None = None
                      ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(embeddings [n, H] float32, instruction perplexity [n] float64, run info), cached per record.

    ``lm``: another model than the context's (computed in this process then)."""
    own = lm is None
    lm = lm or ctx.model
    compute = InstructionStats(lm, text)

    def plan(todo: list[Record]):
        return ctx.batches([len(compute.ids_of(r)) for r in todo], lm=lm)

    params = {"text": text, "max_length": lm.max_length, "system": lm.renderer.system}
    recipe = Recipe("datawinnow.scores.instruction_stats:make_instruction_stats", {"text": text}) if own else None
    rows, info = run_cached(dataset, scorer="instruction-stats", params=params, identity=lm.identity,
                            compute=compute, plan=plan, ctx=ctx, recipe=recipe)
    return unpack_rows(rows, "emb"), np.array([r["ppl"] if r["ppl"] is not None else np.nan for r in rows],
                                              dtype=np.float64), info
