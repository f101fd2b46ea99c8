"""RDS+ (Ivison et al. 2025, representation-based data selection): embeddings and scores.

- :func:`rds_embeddings`: each sample embedded with the model being tuned: the final layer's hidden
  states over the sample's tokens (the rendered prompt and the response, truncated like every
  other scorer), mean-pooled with position weights w_t = t / sum(t) (t = 1..L over the real tokens,
  so later tokens weigh more), unit-normalised. Cached per record under the model's identity.
- :func:`task_scores`: a candidate's score for a target task is its maximum cosine similarity to
  that task's target samples.
- :func:`round_robin`: with several target tasks, each task in turn (tasks in name order) takes
  its highest-scoring candidate not yet picked (ties by id) until the budget is filled.
- :func:`rds_select`: both, and the fallback without target samples: the pool's mean embedding is
  the one target, which favours central (typical) samples.

The scorer ``rds`` (``datawinnow score --scorer rds [--target T]``) writes each candidate's best
score over the target tasks; the method lives in :mod:`datawinnow.select.methods.rds`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..backends.causal_lm import CausalLM
from ..data.record import Dataset, Record
from ..registry import SCORERS
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.runner import Recipe, run_cached
from .vectors import pack, unit_rows, unpack_rows

POOLING = "position_weighted_mean"
NO_TASK = "(all)"  # the task name of target samples without a ``task`` field
POOL_MEAN = "(pool mean)"  # the one target task without target samples
_BLOCK = 1 << 22  # candidate x target similarities per block


def position_weighted_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unit-normalised ``[b, H]`` float32: sum_t w_t h_t with w_t = t / sum(t) over each row's real tokens.

    ``mask`` is 1 on real tokens; positions t are counted 1-based among them (right or left padding).
    """
    m = mask.to(hidden.device, torch.float32)
    pos = torch.cumsum(m, dim=1) * m
    w = pos / pos.sum(dim=1, keepdim=True).clamp_min(1.0)
    pooled = torch.einsum("bt,bth->bh", w, hidden.float())
    return torch.nn.functional.normalize(pooled, dim=-1)


def sample_ids(lm: CausalLM, record: Record) -> list[int]:
    """The sample's tokens: the rendered prompt then the response, truncated as every scorer does."""
    pair = lm.record_pair(record)
    return pair.prompt + pair.response


class RdsEmbeddings:
    """The batch computation of :func:`rds_embeddings` (token ids memoised: the plan reads them too)."""

    def __init__(self, lm: CausalLM):
        self.lm = lm
        self._seqs: dict[str, list[int]] = {}

    def ids_of(self, r: Record) -> list[int]:
        if r.id not in self._seqs:
            self._seqs[r.id] = sample_ids(self.lm, r)
        return self._seqs[r.id]

    def __call__(self, batch: list[Record]) -> list[dict]:
        hidden, mask = self.lm.hidden_states([self.ids_of(r) for r in batch])
        emb = position_weighted_mean(hidden, mask).cpu().numpy()
        return [{"emb": pack(v)} for v in emb]


def make_rds_embeddings(ctx: Context) -> RdsEmbeddings:
    """:class:`RdsEmbeddings` on ``ctx.model`` (the recipe a Ray worker rebuilds it from)."""
    return RdsEmbeddings(ctx.model)


def rds_embeddings(dataset: Dataset, ctx: Context) -> tuple[np.ndarray, dict[str, Any]]:
    """float32 ``[len(dataset), H]`` unit-normalised RDS+ embeddings with ``ctx.model``, cached per record."""
    compute = make_rds_embeddings(ctx)
    lm = compute.lm

    def plan(todo: list[Record]):
        return ctx.batches([len(compute.ids_of(r)) for r in todo], lm=lm)

    rows, info = run_cached(dataset, scorer="rds-embed",
                            params={"pooling": POOLING, "max_length": lm.max_length, "system": lm.renderer.system},
                            identity=lm.identity, compute=compute, plan=plan, ctx=ctx,
                            recipe=Recipe("datawinnow.scores.rds:make_rds_embeddings"))
    return unpack_rows(rows, "emb"), info


def target_tasks(records: Sequence[Record]) -> list[str]:
    return [r.task if r.task else NO_TASK for r in records]


def task_scores(candidates: np.ndarray, targets: np.ndarray, tasks: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(task names in order, ``[n_candidates, n_tasks]`` max cosine similarity to each task's targets).

    Rows of both matrices are unit-normalised, so a dot product is the cosine.
    """
    names = sorted(set(tasks))
    cand = np.asarray(candidates, dtype=np.float32)
    out = np.empty((len(cand), len(names)), dtype=np.float64)
    task_arr = np.asarray(tasks)
    for t, name in enumerate(names):
        tgt = np.asarray(targets, dtype=np.float32)[task_arr == name]
        step = max(1, _BLOCK // max(1, len(tgt)))
        for s in range(0, len(cand), step):
            out[s:s + step, t] = (cand[s:s + step] @ tgt.T).max(axis=1)
    return names, out


def round_robin(scores: np.ndarray, ids: Sequence[str], budget: int) -> tuple[list[int], list[int]]:
    """(picked candidate indices in pick order, the task column that picked each).

    Task columns take turns in order; each takes its highest-scoring candidate not yet picked, ties
    broken by id ascending; a task with nothing left passes its turn.
    """
    n, n_tasks = scores.shape
    budget = min(budget, n)
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[np.argsort(np.asarray(ids, dtype=object), kind="stable")] = np.arange(n)
    orders = [np.lexsort((id_rank, -scores[:, t])) for t in range(n_tasks)]
    cursor = [0] * n_tasks
    taken = np.zeros(n, dtype=bool)
    picks: list[int] = []
    by: list[int] = []
    while len(picks) < budget:
        for t in range(n_tasks):
            if len(picks) >= budget:
                break
            order = orders[t]
            while cursor[t] < n and taken[order[cursor[t]]]:
                cursor[t] += 1
            if cursor[t] == n:
                continue
            i = int(order[cursor[t]])
            taken[i] = True
            picks.append(i)
            by.append(t)
    return picks, by


def rds_select(pool_emb: np.ndarray, ids: Sequence[str], budget: int, target_emb: np.ndarray | None = None,
               tasks: Sequence[str] | None = None) -> tuple[list[int], list[str], np.ndarray, list[str]]:
    """(picked indices, the task that picked each, per-candidate best score, task names).

    Without ``target_emb`` the target is the pool's mean embedding (unit-normalised), one task.
    """
    if target_emb is None or len(target_emb) == 0:
        target_emb = unit_rows(np.asarray(pool_emb, dtype=np.float32).mean(axis=0, keepdims=True))
        tasks = [POOL_MEAN]
    tasks = list(tasks) if tasks is not None else [NO_TASK] * len(target_emb)
    if len(tasks) != len(target_emb):
        raise ValueError("one task name per target embedding is required")
    names, scores = task_scores(pool_emb, target_emb, tasks)
    picks, by = round_robin(scores, ids, budget)
    return picks, [names[t] for t in by], scores.max(axis=1), names


@SCORERS.register
class RdsScorer(Scorer):
    name = "rds"
    # Not per record: without --target a record is compared with the pool's mean embedding (with a target
    # the score is per record, but a class attribute cannot depend on the run's sources).
    per_record = False
    description = ("RDS+: max cosine similarity of the model's position-weighted mean-pooled final hidden states "
                   "to the --target samples (best over target tasks; without a target, to the pool's mean).")
    defaults: dict[str, Any] = {}

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        emb, info = rds_embeddings(dataset, ctx)
        target = ctx.sources.get("target")
        if target is not None and len(target):
            t_emb, t_info = rds_embeddings(target, ctx)
            names, scores = task_scores(emb, t_emb, target_tasks(target))
            info = {"pool": info, "target": t_info, "tasks": names}
        else:
            names, scores = task_scores(emb, unit_rows(emb.mean(axis=0, keepdims=True)), [POOL_MEAN])
            info = {"pool": info, "target": POOL_MEAN}
        return ScoreTable(dataset.ids, scores.max(axis=1), info=info)
