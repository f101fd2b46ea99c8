"""SelectIT: uncertainty-aware self-reflection at three levels (token, sentence, model).

- Token level: for one rating prompt, p = the model's probabilities over "1".."5" at the first
  generated position, renormalised; score = (argmax + 1) x (1 / (N - 1)) sum_k (p_max - p_k), N = 5,
  i.e. the rating weighted by how far the top choice stands above the other four (SelectIT's code
  divides by N - 1; the k = argmax term is zero).
- Sentence level: K (5) differently worded rating prompts; score = mean / (1 + alpha x std) over the
  K token-level scores (population std), alpha = 0.2.
- Model level: a weighted mean of the sentence-level scores of several scorer models, weights
  proportional to parameter count (the paper: theta_i / sum theta). SelectIT's released script
  hard-codes 7/20, 13/20 and 70/90, which do not sum to one; pass ``weights=[...]`` to reproduce it.

The rating prompts are datawinnow's own wording. Probabilities are cached per record and model, so
changing alpha, K (downwards) or the weights costs nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backends.judge import Judge, reads_probabilities
from ..data.record import Dataset, Record
from ..errors import ConfigError
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.runner import run_cached
from .judging import judge_plan, judge_recipe, transcript

PROMPT_VERSION = "selectit-v1"
CHOICES = ("1", "2", "3", "4", "5")
RATING_PROMPTS = (
    "Rate how well the response below fulfils the instruction, from 1 (not at all) to 5 (perfectly).",
    "You are checking training data. Score this instruction-response pair for quality: 1 means it should be "
    "discarded, 5 means it is an excellent example.",
    "Read the instruction and the answer. How correct, complete and helpful is the answer? Give a score between "
    "1 and 5.",
    "Would a careful expert accept this response to the instruction as written? Answer with a score: 1 = reject, "
    "3 = needs work, 5 = accept as is.",
    "On a five-point scale (1 = poor, 5 = outstanding), how good is the following answer to the user's request?",
)
MAX_K = len(RATING_PROMPTS)


def token_level(probs: np.ndarray) -> np.ndarray:
    """Certainty-weighted rating per row of probabilities over the N rating tokens (renormalised here)."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    n = p.shape[-1]
    top = p.argmax(axis=-1)
    pmax = np.take_along_axis(p, top[..., None], axis=-1)
    return (top + 1) * (pmax - p).sum(axis=-1) / (n - 1)


def sentence_level(token_scores: np.ndarray, alpha: float = 0.2) -> np.ndarray:
    """mean / (1 + alpha x std) over the last axis (the K prompts); population std as in SelectIT."""
    s = np.asarray(token_scores, dtype=np.float64)
    return s.mean(axis=-1) / (1.0 + alpha * s.std(axis=-1))


def model_level(sentence_scores: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """Weighted mean over models: sentence_scores [M, n], weights [M] (normalised here)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or len(w) != len(sentence_scores) or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"selectit: need one non-negative weight per model ({len(sentence_scores)}), got {list(w)}")
    return (w[:, None] * np.asarray(sentence_scores, dtype=np.float64)).sum(axis=0) / w.sum()


def rating_conversation(record: Record, prompt: str) -> list[dict[str, str]]:
    task, answer = transcript(record)
    text = (f"{prompt} Reply with the digit only.\n\nInstruction:\n{task}\n\nResponse:\n{answer}\n\n"
            "Score (1-5):")
    return [{"role": "user", "content": text}]


def parameter_count(judge: Judge) -> int | None:
    lm = getattr(judge, "lm", None)
    if lm is None:
        return None
    return int(sum(p.numel() for p in lm.model.parameters()))


def model_names(models: Any) -> list[str]:
    """The scorer models of ``models`` ('A,B' or a list); empty: the context's judge."""
    if models in (None, "", []):
        return []
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else [str(m) for m in models]
    if not all(names):
        raise ConfigError(f"selectit: models must be a comma-separated list of model names, got {models!r}")
    return names


def scorer_judge(ctx: Context, name: str | None, template: str) -> Judge:
    """The judge of one scorer model: ``name`` loaded as a local judge, or (None) the context's judge."""
    if name is None:
        judge = ctx.judge
        if not reads_probabilities(judge):
            raise ConfigError(f"selectit reads rating-token probabilities, and the judge {judge.identity} cannot "
                              "(use a local judge, a remote one with --judge-logprobs, or --param models=A,B)")
        return judge
    from ..backends.judge_local import LocalJudge

    return LocalJudge.load(name, template=template, device=ctx.device, dtype=ctx.dtype,
                           max_length=max(ctx.max_length, 1024), batch_size=ctx.batch_size)


def _judges(ctx: Context, models: Any, template: str) -> list[tuple[str | None, Judge]]:
    """(model name or None, judge) per scorer model."""
    names = model_names(models) or [None]
    return [(n, scorer_judge(ctx, n, template)) for n in names]


def selectit_rating_probs(judge: Judge, k: int):
    """The batch computation of :func:`selectit_probs`: the judge's probabilities over "1".."5" for K prompts."""

    def compute(batch: list[Record]) -> list[dict]:
        convs = [rating_conversation(r, RATING_PROMPTS[j]) for r in batch for j in range(k)]
        probs = judge.choice_probs(convs, list(CHOICES)).reshape(len(batch), k, len(CHOICES))
        return [{"probs": p.round(8).tolist()} for p in probs]

    return compute


def make_selectit_rating_probs(ctx: Context, k: int, model: str | None, template: str):
    """:func:`selectit_rating_probs` with the judge of one scorer model (the recipe a Ray worker rebuilds it from)."""
    return selectit_rating_probs(scorer_judge(ctx, model, template), k)


def selectit_probs(dataset: Dataset, ctx: Context, judge: Judge, k: int, model: str | None = None,
                   template: str = "chat") -> tuple[np.ndarray, dict]:
    """[n, k, 5] rating probabilities for one scorer model (``judge``: the one ``model``/``template`` name),
    cached per record."""
    recipe = judge_recipe(judge, "datawinnow.scores.selectit:make_selectit_rating_probs",
                          {"k": k, "model": model, "template": template})
    rows, info = run_cached(dataset, scorer="selectit", params={"prompts": PROMPT_VERSION, "k": k},
                            identity=judge.identity, compute=selectit_rating_probs(judge, k),
                            plan=judge_plan(judge, ctx, per_record=k), ctx=ctx, recipe=recipe)
    return np.array([r["probs"] for r in rows], dtype=np.float64).reshape(len(rows), k, len(CHOICES)), info


@SCORERS.register
class SelectITScorer(Scorer):
    name = "selectit"
    description = ("SelectIT self-reflection: certainty-weighted 1-5 rating (token), K prompts mean/(1+alpha*std) "
                   "(sentence), weighted mean over models by parameter count (model).")
    defaults = {"k": 5, "alpha": 0.2, "models": None, "weights": "params", "template": "chat"}
    # Per record: token-, sentence- and model-level scores combine one record's own rating probabilities (the
    # model weights come from the judges, not the pool). Scorer models named in ``models`` are loaded per
    # score() call, so a streamed run loads them once per chunk.
    per_record = True

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        k, alpha = int(self.params["k"]), float(self.params["alpha"])
        if not 1 <= k <= MAX_K:
            raise ConfigError(f"selectit: k must be between 1 and {MAX_K} (the rating prompts), got {k}")
        if alpha < 0:
            raise ConfigError(f"selectit: alpha must be >= 0, got {alpha:g}")
        named = _judges(ctx, self.params["models"], self.params["template"])
        judges = [judge for _, judge in named]
        weights = self._weights(judges)
        sentence, parts, infos = [], {}, []
        for m, (name, judge) in enumerate(named):
            probs, info = selectit_probs(dataset, ctx, judge, k, name, self.params["template"])
            s = sentence_level(token_level(probs), alpha)
            sentence.append(s)
            infos.append({**info, "judge": judge.identity, "weight": weights[m]})
            if len(judges) > 1:
                parts[f"sentence_{m}"] = s
        score = model_level(np.stack(sentence), weights)
        return ScoreTable(dataset.ids, score, parts, info={"models": infos, "k": k, "alpha": alpha})

    def _weights(self, judges: list[Judge]) -> list[float]:
        spec = self.params["weights"]
        if isinstance(spec, str) and spec != "params":
            try:
                spec = [float(x) for x in spec.split(",")]
            except ValueError:
                raise ConfigError(f"selectit: weights must be 'params' or a list of numbers, got {spec!r}") from None
        if spec == "params":
            if len(judges) == 1:
                return [1.0]
            counts = [parameter_count(j) for j in judges]
            if any(c is None for c in counts):
                raise ConfigError("selectit: weights=params needs local scorer models; give weights=[...] explicitly")
            return [float(c) for c in counts]
        if not isinstance(spec, (list, tuple)) or len(spec) != len(judges):
            raise ConfigError(f"selectit: need one weight per model ({len(judges)}), got {spec!r}")
        return [float(w) for w in spec]
