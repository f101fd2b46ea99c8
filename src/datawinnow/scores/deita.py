"""DEITA scores: complexity of the instruction, quality of (instruction, response), and the evol score.

Each score is the expected rating sum_k k * softmax(logits of "1".."6")_k at the first generated
position of a rating prompt (the judge's :meth:`~datawinnow.backends.judge.Judge.choice_probs`);
evol score = complexity x quality, summed over turns for multi-turn records (each turn's query and
answer rated on their own). A tokenizer without the digit tokens is an error (DEITA's code falls
back to 3.0 silently; datawinnow does not).

Scorer models:

- default: the context's judge (``--judge``; local by default, the ``--model`` itself) with
  datawinnow's own rating prompts through the chat template;
- ``complexity_model`` / ``quality_model``: DEITA's released scorers (``hkust-nlp/deita-complexity-scorer``,
  ``hkust-nlp/deita-quality-scorer``) or any folder/hub id, loaded as local judges. Those checkpoints
  were fine-tuned on one fixed plain-text input format, which is their interface: with
  ``prompt=auto`` (the default) they are fed that format (``prompt=deita``), raw, without a chat template.

The representation filter lives in :mod:`datawinnow.select.repr_filter`; :func:`deita_embeddings`
gives its inputs (sentence embeddings, or the causal LM's last-token hidden state as DEITA does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backends.causal_lm import CausalLM
from ..backends.judge import Judge, reads_probabilities
from ..data.record import Dataset, Record
from ..errors import ConfigError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.runner import Recipe, run_cached, sequential_plan
from .judging import expected_scores, judge_plan, judge_recipe, turns
from .vectors import pack, unpack_rows

SCALE = range(1, 7)
PROMPTS = ("auto", "datawinnow", "deita")
EMBEDDINGS = ("embedder", "model")

COMPLEXITY_PROMPT = (
    "How demanding is the request below for an AI assistant? Think about how many steps and constraints it has "
    "and how much knowledge or reasoning it takes to answer well.\n"
    "Rate it from 1 (trivial) to 6 (very demanding). Answer with the digit only.\n\n"
    "Request:\n{query}\n\nDifficulty (1-6):"
)
QUALITY_PROMPT = (
    "How good is the response to the request below? Think about correctness, helpfulness, depth and clarity.\n"
    "Rate it from 1 (very poor) to 6 (excellent). Answer with the digit only.\n\n"
    "Request:\n{query}\n\nResponse:\n{response}\n\nQuality (1-6):"
)
# The input format DEITA's released scorer checkpoints were trained on (their interface, used only with them).
DEITA_COMPLEXITY_INPUT = ("You are a helpful assistant. Please identify the complexity score of the following user "
                          "query. \n##Query: {query}  \n##Complexity: ")
DEITA_QUALITY_INPUT = ("You are a helpful assistant. Please identify the quality score of the Response corresponding "
                       "to the Question. \n #Question#:\n{query}\n#Response#:\n{response} \n##Quality: ")


def complexity_conversation(query: str, style: str) -> list[dict[str, str]]:
    text = (DEITA_COMPLEXITY_INPUT if style == "deita" else COMPLEXITY_PROMPT).format(query=query)
    return [{"role": "user", "content": text}]


def quality_conversation(query: str, response: str, style: str) -> list[dict[str, str]]:
    text = (DEITA_QUALITY_INPUT if style == "deita" else QUALITY_PROMPT).format(query=query, response=response)
    return [{"role": "user", "content": text}]


def evol_score(complexity: list[float], quality: list[float]) -> float:
    """sum_t complexity_t x quality_t over the turns."""
    if len(complexity) != len(quality):
        raise ValueError("one complexity and one quality score per turn")
    return float(sum(c * q for c, q in zip(complexity, quality)))


def _scorer_judge(name: str | None, style: str, ctx: Context, role: str) -> tuple[Judge, str]:
    """(judge, prompt style) for one of the two scores."""
    if name:
        from ..backends.judge_local import LocalJudge

        style = "deita" if style == "auto" else style
        judge = LocalJudge.load(name, template="raw" if style == "deita" else "chat", device=ctx.device,
                                dtype=ctx.dtype, max_length=max(ctx.max_length, 2048), batch_size=ctx.batch_size)
        return judge, style
    judge = ctx.judge
    if not reads_probabilities(judge):
        raise ConfigError(f"deita: the {role} score reads digit probabilities, and the judge {judge.identity} cannot "
                          "(use a local judge, a remote one with --judge-logprobs, or --param "
                          f"{role}_model=HUB_ID_OR_FOLDER)")
    return judge, ("datawinnow" if style == "auto" else style)


def deita_ratings(judge: Judge, style: str, kind: str):
    """The batch computation of one DEITA score: per record, the judge's expected rating (1-6) of each turn."""

    def convs_of(r: Record) -> list:
        if kind == "complexity":
            return [complexity_conversation(q, style) for q, _ in turns(r)]
        return [quality_conversation(q, a, style) for q, a in turns(r)]

    def compute(batch: list[Record]) -> list[dict]:
        per = [convs_of(r) for r in batch]
        flat = [c for cs in per for c in cs]
        values, _ = expected_scores(judge, flat, SCALE)
        rows, k = [], 0
        for cs in per:
            rows.append({kind: [float(v) for v in values[k:k + len(cs)]]})
            k += len(cs)
        return rows

    return compute


def make_deita_ratings(ctx: Context, kind: str, model: str | None, prompt: str):
    """:func:`deita_ratings` with the judge the scorer's parameters name (the recipe a Ray worker rebuilds it from)."""
    judge, style = _scorer_judge(model, prompt, ctx, kind)
    return deita_ratings(judge, style, kind)


def _rate(dataset: Dataset, ctx: Context, judge: Judge, style: str, kind: str, model: str | None, prompt: str
          ) -> tuple[list[list[float]], dict]:
    """Per record, one expected rating (1-6) per turn; cached per record under the judge's identity."""
    recipe = judge_recipe(judge, "datawinnow.scores.deita:make_deita_ratings",
                          {"kind": kind, "model": model, "prompt": prompt})
    rows, info = run_cached(dataset, scorer=f"deita-{kind}", params={"prompt": style, "scale": "1-6"},
                            identity=judge.identity, compute=deita_ratings(judge, style, kind),
                            plan=judge_plan(judge, ctx), ctx=ctx, recipe=recipe)
    return [r[kind] for r in rows], info


@SCORERS.register
class DeitaScorer(Scorer):
    name = "deita"
    description = ("DEITA evol score: complexity x quality (expected 1-6 ratings from digit probabilities), "
                   "summed over turns; parts: complexity, quality.")
    defaults = {"complexity_model": None, "quality_model": None, "prompt": "auto"}
    # Per record: each turn's expected ratings from the judges, multiplied and summed; no pool-level step (the
    # diversity filter belongs to the selection method). A complexity_model/quality_model is loaded per
    # score() call, so a streamed run loads it once per chunk.
    per_record = True

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        style = self.params["prompt"]
        if style not in PROMPTS:
            raise ConfigError(f"deita: prompt must be one of {', '.join(PROMPTS)}, got '{style}'")
        cj, cstyle = _scorer_judge(self.params["complexity_model"], style, ctx, "complexity")
        if self.params["quality_model"] and self.params["quality_model"] == self.params["complexity_model"]:
            qj, qstyle = cj, cstyle  # one checkpoint for both scores: load it once
        else:
            qj, qstyle = _scorer_judge(self.params["quality_model"], style, ctx, "quality")
        complexity, cinfo = _rate(dataset, ctx, cj, cstyle, "complexity", self.params["complexity_model"], style)
        quality, qinfo = _rate(dataset, ctx, qj, qstyle, "quality", self.params["quality_model"], style)
        evol = np.array([evol_score(c, q) for c, q in zip(complexity, quality)], dtype=np.float64)
        parts = {"complexity": np.array([np.mean(c) for c in complexity]),
                 "quality": np.array([np.mean(q) for q in quality]),
                 "turns": np.array([len(c) for c in complexity], dtype=np.int64)}
        info = {"complexity": {**cinfo, "judge": cj.identity, "prompt": cstyle},
                "quality": {**qinfo, "judge": qj.identity, "prompt": qstyle}}
        return ScoreTable(dataset.ids, evol, parts, info=info)


# ---------------------------------------------------------------------------------------------- embeddings
def sample_text(record: Record) -> str:
    """The whole sample as plain text (every turn), for the sentence embedder."""
    return "\n\n".join(f"{q}\n\n{a}" for q, a in turns(record))


def last_token_states(lm: CausalLM, sequences: list[list[int]]) -> np.ndarray:
    """The final layer's hidden state at each sequence's last token, [b, H] float32."""
    return lm.last_token_states(sequences).float().cpu().numpy()


def deita_embeddings(dataset: Dataset, ctx: Context, source: str = "embedder") -> tuple[np.ndarray, dict[str, Any]]:
    """Embeddings of whole samples for the representation filter, cached per record.

    ``embedder``: the sentence embedder (``--embedder``) on the sample's text; ``model``: the causal LM's
    last-layer hidden state at the last token of the rendered conversation (DEITA's choice).
    """
    if source not in EMBEDDINGS:
        raise ConfigError(f"deita: embedding must be one of {', '.join(EMBEDDINGS)}, got '{source}'")
    if source == "embedder":
        rows, info = run_cached(dataset, scorer="deita-embed", params={"source": "embedder"},
                                identity=ctx.embedder.identity, compute=make_sample_embeddings(ctx),
                                plan=sequential_plan(64), ctx=ctx,
                                recipe=Recipe("datawinnow.scores.deita:make_sample_embeddings"))
        return unpack_rows(rows, "emb"), info
    compute = make_last_token_states(ctx)
    lm = compute.lm

    def plan(todo: list[Record]):
        return ctx.batches([len(compute.ids_of(r)) for r in todo], lm=lm)

    rows, info = run_cached(dataset, scorer="deita-embed", params={"source": "model", "max_length": lm.max_length,
                                                                   "system": lm.renderer.system},
                            identity=lm.identity, compute=compute, plan=plan, ctx=ctx,
                            recipe=Recipe("datawinnow.scores.deita:make_last_token_states"))
    return unpack_rows(rows, "emb"), info


def make_sample_embeddings(ctx: Context):
    """The sentence embedder's batch computation for :func:`deita_embeddings` (also its Ray recipe)."""
    emb = ctx.embedder

    def compute(batch: list[Record]) -> list[dict]:
        return [{"emb": pack(v)} for v in emb.encode([sample_text(r) for r in batch])]

    return compute


class LastTokenStates:
    """The causal LM's batch computation for :func:`deita_embeddings` (token ids memoised: the plan reads them)."""

    def __init__(self, lm: CausalLM):
        self.lm = lm
        self._ids: dict[str, list[int]] = {}

    def ids_of(self, r: Record) -> list[int]:
        if r.id not in self._ids:
            self._ids[r.id] = self.lm.encode(self.lm.renderer.prompt(r) + r.output)[:self.lm.max_length]
        return self._ids[r.id]

    def __call__(self, batch: list[Record]) -> list[dict]:
        return [{"emb": pack(v)} for v in last_token_states(self.lm, [self.ids_of(r) for r in batch])]


def make_last_token_states(ctx: Context) -> LastTokenStates:
    """:class:`LastTokenStates` on ``ctx.model`` (the recipe a Ray worker rebuilds it from)."""
    return LastTokenStates(ctx.model)
