"""LESS: gradient-based influence of each pool sample on a set of target (validation) samples.

1. Warm up LoRA on a seeded random ``warmup_size`` of the pool (5%), one checkpoint per epoch
   (:mod:`.lora_warmup`). The paper trains 4 epochs; the default is 2 because every checkpoint costs
   one gradient pass over pool and targets (``epochs=4`` reproduces the paper).
2. At each checkpoint c, per-example LoRA gradients, each of the sample's own loss as at batch size 1
   but computed for a whole batch in one forward and backward pass (batches: the ``batch_tokens``
   parameter, else the run's ``--batch-tokens``/``--batch-size``; ``auto`` sized for a backward pass)
   (:mod:`.gradients`): for pool samples Adam's update direction Gamma from the checkpoint's moments
   (no bias correction), for target samples the plain gradient; on the model's device.
3. A seeded Rademacher projection to ``dim`` dimensions (:mod:`.projection`), then unit norm.
4. score(z) = max over target subtasks s of  sum_c lr_c * mean_{z' in s} <Gamma_c(z), g_c(z')>,
   with lr_c the mean learning rate of epoch c, scaled so the lr_c sum to 1 (the same ranking as
   LESS; a score is then a weighted mean cosine in [-1, 1] instead of a number of order 1e-4). Subtasks come from the targets' ``task`` field
   (records without one form a single subtask).

Projected gradients are cached per record (one store per checkpoint and kind), so interrupted
runs resume and a second target set reuses the pool's gradients.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np
import torch

from ..backends.batching import parse_batch_tokens
from ..backends.causal_lm import Pair
from ..data.record import Dataset, Record
from ..errors import BudgetError, ConfigError
from ..registry import SCORERS
from ..budget import resolve_budget
from .base import Scorer, ScoreTable
from ..runtime.context import Context
from ..runtime.runner import Recipe, run_cached
from .gradients import adam_direction, example_gradients, flat_state
from .lora_warmup import WarmupConfig, WarmupResult, describe, load_warmup, lora_warmup, training_pair
from .projection import RademacherProjector
from .vectors import pack, unit_rows, unpack_rows

NO_TASK = "all"
BUFFER_BYTES = 512 * 2**20  # at most this many bytes of gradient rows (and 64 rows) per projection pass


def warmup_sample(n: int, size: float | int | str, seed: int) -> list[int]:
    """Seeded random indices for the warm-up set (a fraction of the pool or a count), in pool order."""
    try:
        k = resolve_budget(size, n)
    except BudgetError as e:
        raise ConfigError(f"less: warmup_size: {e}") from None
    return sorted(np.random.default_rng([int(seed), 5]).permutation(n)[:k].tolist())


def parse_checkpoints(value: Any, epochs: int) -> list[int]:
    """'all', an epoch number, '2,4' or [2, 4] -> 0-based checkpoint indices."""
    if value in (None, "all"):
        return list(range(epochs))
    if isinstance(value, (int, float)):
        items = [value]
    elif isinstance(value, str):
        items = [v for v in value.replace(" ", "").split(",") if v]
    else:
        items = list(value)
    try:
        epochs_chosen = sorted({int(v) for v in items})
    except (TypeError, ValueError):
        raise ConfigError(f"less: checkpoints must be 'all' or epoch numbers like '2,4', got {value!r}") from None
    bad = [e for e in epochs_chosen if not 1 <= e <= epochs]
    if bad or not epochs_chosen:
        raise ConfigError(f"less: checkpoints {value!r} outside the warm-up's epochs 1..{epochs}")
    return [e - 1 for e in epochs_chosen]


def subtasks(records: Sequence[Record]) -> tuple[list[str], np.ndarray]:
    """The subtask names (first-seen order) and each record's subtask index."""
    names: list[str] = []
    index = []
    for r in records:
        t = r.task if r.task else NO_TASK
        if t not in names:
            names.append(t)
        index.append(names.index(t))
    return names, np.array(index, dtype=np.int64)


def less_influence(pool: Sequence[np.ndarray], target: Sequence[np.ndarray], task_of: np.ndarray,
                   n_tasks: int, lrs: Sequence[float]) -> np.ndarray:
    """Influence per (pool sample, subtask): sum_c lr_c * mean_{j in s} <pool_c[i], target_c[j]>.

    ``pool[c]`` is [n, d] and ``target[c]`` [m, d] for checkpoint c; returns [n, n_tasks] float64.
    """
    n = pool[0].shape[0]
    out = np.zeros((n, n_tasks), dtype=np.float64)
    for p, t, lr in zip(pool, target, lrs):
        for s in range(n_tasks):
            members = t[task_of == s].astype(np.float64)
            out[:, s] += float(lr) * (p.astype(np.float64) @ members.mean(axis=0))
    return out


def gradient_features(warm: WarmupResult, index: int, records: Sequence[Record], kind: str,
                      projector: RademacherProjector, *, vectorized: bool = True, batch_tokens: int | None = None,
                      batch_size: int | None = None, moments: tuple[torch.Tensor, torch.Tensor] | None = None,
                      pairs: Sequence[Pair] | None = None) -> np.ndarray:
    """Unit-normalised projected features [n, d] of ``records`` at checkpoint ``index`` (loaded into the model).

    kind 'adam': Adam's update direction (pool samples), 'sgd': the plain gradient (targets).
    ``vectorized``: per-example gradients of a whole batch at once, preconditioning and projection on
    the model's device (:func:`~.gradients.example_gradients`, batches by ``batch_size`` sequences or
    ``batch_tokens`` padded tokens, default auto); False: the reference loop, one sample at a time.
    ``moments``: the checkpoint's flat (exp_avg, exp_avg_sq), to reuse across calls; ``pairs``: the
    records' training pairs, when the caller has them already.
    """
    ck = warm.load_checkpoint(index)
    grads = example_gradients(warm, records, vectorized=vectorized, batch_tokens=batch_tokens, batch_size=batch_size,
                              pairs=pairs)
    if kind == "adam":
        m, v = moments or (flat_state(ck, warm.names, "exp_avg"), flat_state(ck, warm.names, "exp_avg_sq"))
        grads = adam_direction(grads, m.to(grads.device), v.to(grads.device), ck.betas, ck.eps)
    elif kind != "sgd":
        raise ValueError(f"kind must be 'adam' or 'sgd', got {kind!r}")
    return unit_rows(projector.project(grads))


class LessGradients:
    """The batch computation of :func:`projected_gradients`: unit-normalised projected gradients of a batch at
    one checkpoint (the checkpoint's Adam moments kept on the device; training pairs memoised, the plan
    reads their lengths)."""

    def __init__(self, warm: WarmupResult, index: int, kind: str, projector: RademacherProjector, *,
                 batch_tokens: int | None = None, batch_size: int | None = None):
        self.warm, self.index, self.kind, self.projector = warm, index, kind, projector
        self.batching = {"batch_tokens": batch_tokens, "batch_size": batch_size}
        self.moments = None
        if kind == "adam":
            ck, dev = warm.checkpoints[index], warm.base.device
            self.moments = (flat_state(ck, warm.names, "exp_avg").to(dev), flat_state(ck, warm.names, "exp_avg_sq").to(dev))
        self._pairs: dict[str, Pair] = {}

    def pair_of(self, r: Record) -> Pair:
        if r.id not in self._pairs:
            self._pairs[r.id] = training_pair(self.warm.base, r)
        return self._pairs[r.id]

    def __call__(self, batch: list[Record]) -> list[dict]:
        pairs = [self.pair_of(r) for r in batch]
        for r in batch:
            self._pairs.pop(r.id, None)
        feats = gradient_features(self.warm, self.index, batch, self.kind, self.projector, moments=self.moments,
                                  pairs=pairs, **self.batching)
        return [{"g": pack(f)} for f in feats]


def make_less_gradients(ctx: Context, warmup_key: str, warmup_config: dict[str, Any], index: int, kind: str,
                        dim: int, proj_seed: int, batch_tokens: int | None = None,
                        batch_size: int | None = None) -> LessGradients:
    """:class:`LessGradients` on ``ctx.model``'s warm-up ``warmup_key``, read back from the cache (the recipe a
    Ray worker rebuilds it from)."""
    warm = load_warmup(ctx.model, warmup_key, WarmupConfig(**warmup_config))
    projector = RademacherProjector(sum(t.numel() for t in warm.checkpoints[0].lora.values()), dim, seed=proj_seed)
    return LessGradients(warm, index, kind, projector, batch_tokens=batch_tokens, batch_size=batch_size)


def projected_gradients(dataset: Dataset, warm: WarmupResult, index: int, kind: str, projector: RademacherProjector,
                        ctx: Context, *, batch_tokens: int | None = None, batch_size: int | None = None,
                        config: WarmupConfig | None = None) -> tuple[np.ndarray, dict]:
    """Unit-normalised projected gradients [n, d] at checkpoint ``index``: kind 'adam' (pool) or 'sgd' (targets).

    ``config``: the warm-up's settings; with them (and the warm-up in the cache), Ray workers can load the
    warm-up and compute batches too."""
    ck = warm.checkpoints[index]
    rows_per_pass = int(min(64, max(8, BUFFER_BYTES // (4 * projector.dim_in))))
    compute = LessGradients(warm, index, kind, projector, batch_tokens=batch_tokens, batch_size=batch_size)

    def plan(todo: list[Record]):
        # similar lengths in one pass: less padding in its forward/backward batches
        lengths = [len(compute.pair_of(r)) for r in todo]
        order = sorted(range(len(todo)), key=lambda i: (-lengths[i], i))
        return [order[k:k + rows_per_pass] for k in range(0, len(order), rows_per_pass)]

    recipe = None
    if config is not None and ctx.use_cache and ctx.model_loaded and ctx.model is warm.base:
        recipe = Recipe("datawinnow.scores.less:make_less_gradients",
                        {"warmup_key": warm.key, "warmup_config": asdict(config), "index": index, "kind": kind,
                         "dim": projector.d, "proj_seed": projector.seed, "batch_tokens": batch_tokens,
                         "batch_size": batch_size})
    params = {"kind": kind, "warmup": warm.key, "epoch": ck.epoch, "dim": projector.d, "proj_seed": projector.seed}
    rows, info = run_cached(dataset, scorer=f"less-grad-{kind}", params=params, identity=warm.base.identity,
                            compute=compute, plan=plan, ctx=ctx, recipe=recipe)
    return unpack_rows(rows, "g"), info


@SCORERS.register
class LessScorer(Scorer):
    name = "less"
    # Not per record: the influence on the target is per record, but the LoRA warm-up that makes the
    # gradients trains on a sample of the pool, so a record's score depends on the rest of the pool.
    per_record = False
    description = ("LESS gradient influence on --target samples: LoRA warm-up on 5% of the pool, Adam-preconditioned "
                   "projected gradients, lr-weighted over checkpoints, max over target subtasks.")
    defaults = {"warmup_size": 0.05, "epochs": 2, "lr": 2e-4, "warmup_batch_size": 4, "lora_r": 8, "lora_alpha": 32,
                "target_modules": "q_proj,k_proj,v_proj,o_proj", "dim": 1024, "checkpoints": "all",
                "batch_tokens": "auto"}

    def gradient_batching(self, ctx: Context) -> dict[str, int | None]:
        """How gradient passes are batched: the ``batch_tokens`` parameter when a number; else the run's
        ``--batch-tokens`` when a number, ``--batch-size`` sequences when the run asks for a fixed count, and
        otherwise ``auto`` (:func:`~.gradients.auto_gradient_tokens`: a backward keeps every layer's
        activations, so a forward pass's budget would be too large)."""
        own = parse_batch_tokens(self.params["batch_tokens"])
        if isinstance(own, int):
            return {"batch_tokens": own}
        run = ctx.batch_tokens
        if run is None:
            return {"batch_size": int(ctx.batch_size)}
        return {"batch_tokens": run if isinstance(run, int) else None}

    def warmup_config(self, seed: int) -> WarmupConfig:
        p = self.params
        return WarmupConfig(epochs=int(p["epochs"]), lr=float(p["lr"]), batch_size=int(p["warmup_batch_size"]),
                            lora_r=int(p["lora_r"]), lora_alpha=int(p["lora_alpha"]),
                            target_modules=str(p["target_modules"]), schedule="linear", seed=int(seed))

    def score(self, dataset: Dataset, ctx: Context) -> ScoreTable:
        target = ctx.sources.get("target")
        if target is None or len(target) == 0:
            raise ConfigError("less needs target samples: pass --target SRC (validation examples of the tasks you "
                              "tune for; their 'task' field names the subtasks)")
        cfg = self.warmup_config(ctx.seed)
        cfg.check()
        which = parse_checkpoints(self.params["checkpoints"], cfg.epochs)
        batching = self.gradient_batching(ctx)
        lm = ctx.model
        warm_idx = warmup_sample(len(dataset), self.params["warmup_size"], ctx.seed)
        warm = lora_warmup(lm, [dataset[i] for i in warm_idx], cfg, use_cache=ctx.use_cache, progress=ctx.progress,
                           desc="less warm-up")
        projector = RademacherProjector(sum(t.numel() for t in warm.checkpoints[0].lora.values()),
                                        int(self.params["dim"]), seed=ctx.seed)
        names, task_of = subtasks(list(target))
        pool_feats, target_feats, infos = [], [], {}
        for c in which:
            for source, kind, feats in ((dataset, "adam", pool_feats), (target, "sgd", target_feats)):
                feats.append(projected_gradients(source, warm, c, kind, projector, ctx, config=cfg, **batching)[0])
        lrs = [warm.checkpoints[c].lr for c in which]
        if not sum(lrs) > 0:
            raise ConfigError("less: the warm-up's checkpoints have zero learning rate (more steps or a lower warmup_ratio)")
        # lr weights scaled to sum 1: the ranking is LESS's, and a score is a weighted mean cosine in [-1, 1]
        weights = [lr / sum(lrs) for lr in lrs]
        per_task = less_influence(pool_feats, target_feats, task_of, len(names), weights)
        score = per_task.max(axis=1)
        in_warmup = np.zeros(len(dataset), dtype=np.int64)
        in_warmup[warm_idx] = 1
        parts: dict[str, np.ndarray] = {"best_task": per_task.argmax(axis=1), "warmup": in_warmup}
        if len(names) > 1:
            parts.update({f"task:{n}": per_task[:, s] for s, n in enumerate(names)})
        infos.update({"warmup": describe(warm), "warmup_samples": len(warm_idx), "checkpoints":
                      [warm.checkpoints[c].epoch for c in which], "checkpoint_lrs": lrs, "checkpoint_weights": weights, "subtasks": names,
                      "targets": len(target), "dim": projector.d, "lora_dim": projector.dim_in})
        return ScoreTable(dataset.ids, score, parts, info=infos)
