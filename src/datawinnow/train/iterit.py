"""IterIT: iterative selection during training (SPEC section 4).

Epoch 0 scores IFD (``ppl_ratio``: exp(L(y|x)) / exp(L(y)), the empty prompt being the chat template
with only the assistant turn, or the start token alone for a model without a chat template; both
losses over the same response tokens, see :mod:`datawinnow.scores.ifd`) on every sample with the
model being trained. Each epoch trains on
k = int(ratio x n) samples (at least 1). After each epoch but the last, ``update_strategy=iterative``
rescores the first int(ratio x n x update_ratio) positions of the current ordering (every sample
when update_ratio <= 1) with the model as trained so far; ``baseline`` never rescores (static IFD).

Selection from the current scores (:func:`select_order`):

- candidates are samples with IFD < 1;
- ``score_type=IFD``: the k candidates of highest IFD (ties: lower index first);
- ``score_type=BOTH``: greedy over the TF-IDF matrix (1-3-grams) of the responses: pick
  argmax_i IFD_i x sum_w weight_w x tfidf[i, w], multiply the weight of every n-gram column present
  in the pick by ``diversity_weight_decay`` (0.1 general data, 0.0 domain data), remove the pick;
  weights start at 1 for each epoch's selection;
- the new ordering is: the selected block, then the non-candidates (IFD >= 1, lowest IFD first, so
  the ones closest to becoming candidates fall inside the next rescoring window), then the
  remaining candidates by the same criterion as the selection (IFD descending);
- when fewer than k candidates exist, the block is filled from the non-candidates in that order,
  so every epoch has the same length (the trainer's schedule needs a fixed epoch size).

The schedule (:class:`IterITSchedule`) is pure Python over a ``score_fn(indices) -> scores`` so it
can be tested with a stub scorer; :class:`IterITCallback` drives it from transformers' callback
events and :class:`IterITSampler` feeds each epoch's selection to the trainer.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError

ScoreFn = Callable[[list[int]], np.ndarray]
LOG_FILE = "iterit_log.jsonl"


def tfidf_matrix(texts: Sequence[str]):
    """TF-IDF over word 1-3-grams of the responses (scikit-learn defaults otherwise: smooth idf, l2 rows)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        return TfidfVectorizer(ngram_range=(1, 3)).fit_transform(list(texts)).tocsr()
    except ValueError as e:  # e.g. every response empty or only stop characters
        raise ConfigError(f"iterit: cannot build the TF-IDF matrix of the responses ({e})") from None


def tfidf_greedy(ifd: np.ndarray, candidates: Sequence[int], k: int, tfidf, decay: float) -> list[int]:
    """IterIT's diversity-aware greedy: up to k picks from ``candidates`` (see the module docstring)."""
    import scipy.sparse as sp

    mat = sp.csr_matrix(tfidf)
    weights = np.ones(mat.shape[1], dtype=np.float64)
    remaining = list(candidates)
    picked: list[int] = []
    while remaining and len(picked) < k:
        sub = mat[remaining]
        values = np.asarray(ifd[remaining], dtype=np.float64) * np.asarray(sub @ weights).ravel()
        best = int(np.argmax(values))  # first maximum: the earliest candidate wins ties
        pick = remaining.pop(best)
        picked.append(pick)
        row = mat.getrow(pick)
        weights[row.indices[row.data != 0]] *= decay
    return picked


def select_order(scores: np.ndarray, k: int, *, score_type: str = "IFD", tfidf=None,
                 decay: float = 0.1) -> tuple[list[int], list[int]]:
    """(selected block of size min(k, n), full new ordering) from the current IFD scores."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    idx = np.arange(n)
    cand_mask = scores < 1.0  # NaN is not a candidate
    by_ifd_desc = sorted(idx[cand_mask].tolist(), key=lambda i: (-scores[i], i))
    non_cand = sorted(idx[~cand_mask].tolist(), key=lambda i: (math.inf if np.isnan(scores[i]) else scores[i], i))
    if score_type == "IFD":
        selected = by_ifd_desc[:k]
    elif score_type == "BOTH":
        if tfidf is None:
            raise ConfigError("iterit: score_type BOTH needs the TF-IDF matrix of the responses")
        selected = tfidf_greedy(scores, by_ifd_desc, k, tfidf, decay)
    else:
        raise ConfigError(f"iterit: score_type must be IFD or BOTH, got '{score_type}'")
    if len(selected) < k:
        selected = selected + non_cand[:k - len(selected)]
    chosen = set(selected)
    order = selected + [i for i in non_cand if i not in chosen] + [i for i in by_ifd_desc if i not in chosen]
    return selected, order


class IterITSchedule:
    """Which samples each epoch trains on, and what is rescored between epochs."""

    def __init__(self, n: int, score_fn: ScoreFn, *, ratio: float = 0.05, update_ratio: float = 3.0,
                 update_strategy: str = "iterative", score_type: str = "IFD", tfidf=None, decay: float = 0.1,
                 ids: Sequence[str] | None = None):
        if n < 1:
            raise ConfigError("iterit: the pool is empty")
        if update_strategy not in ("iterative", "baseline"):
            raise ConfigError(f"iterit: update_strategy must be iterative or baseline, got '{update_strategy}'")
        if score_type == "BOTH" and tfidf is None:
            raise ConfigError("iterit: score_type BOTH needs the TF-IDF matrix of the responses")
        self.n, self.score_fn = n, score_fn
        self.k = max(1, int(ratio * n))
        self.window = n if update_ratio <= 1 else min(n, max(1, int(ratio * n * update_ratio)))
        self.update_strategy, self.score_type, self.tfidf, self.decay = update_strategy, score_type, tfidf, decay
        self.ids = list(ids) if ids is not None else [str(i) for i in range(n)]
        self.scores = np.full(n, np.nan, dtype=np.float64)
        self.order: list[int] = []
        self.selected: list[int] = []
        self.history: list[dict[str, Any]] = []

    def _score(self, indices: list[int]) -> None:
        values = np.asarray(self.score_fn(list(indices)), dtype=np.float64)
        if values.shape != (len(indices),):
            raise ValueError(f"score_fn returned {values.shape} scores for {len(indices)} samples")
        self.scores[indices] = values

    def _select(self, epoch: int, rescored: list[int]) -> list[int]:
        self.selected, self.order = select_order(self.scores, self.k, score_type=self.score_type,
                                                 tfidf=self.tfidf, decay=self.decay)
        self.history.append({
            "epoch": epoch,
            "selected": list(self.selected),
            "ids": [self.ids[i] for i in self.selected],
            "scores": [float(np.float32(self.scores[i])) for i in self.selected],
            "rescored": len(rescored),
            "rescored_ids": [self.ids[i] for i in rescored],
        })
        return self.selected

    def start(self) -> list[int]:
        """Epoch 0: score every sample and select."""
        everything = list(range(self.n))
        self._score(everything)
        return self._select(0, everything)

    def next_epoch(self, epoch: int) -> list[int]:
        """Before ``epoch`` (>= 1): rescore the head of the current ordering (iterative) and reselect."""
        rescored: list[int] = []
        if self.update_strategy == "iterative":
            rescored = self.order[:self.window]
            self._score(rescored)
        return self._select(epoch, rescored)

    def seen(self) -> list[int]:
        """Every sample trained on, in order of first use."""
        out: dict[int, None] = {}
        for h in self.history:
            out.update(dict.fromkeys(h["selected"]))
        return list(out)


class IterITSampler:
    """A torch sampler of fixed length k that yields the schedule's current selection (shuffled per epoch)."""

    def __init__(self, schedule: IterITSchedule, seed: int = 0):
        self.schedule, self.seed, self.epoch = schedule, seed, 0
        self.served: list[list[int]] = []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.schedule.k

    def __iter__(self):
        sel = list(self.schedule.selected)
        if len(sel) != self.schedule.k:
            raise RuntimeError("iterit: the schedule has no selection yet (the callback did not start it)")
        rng = np.random.default_rng(self.seed + 1000003 * self.epoch)
        sel = [sel[i] for i in rng.permutation(len(sel))]
        self.served.append(sel)
        return iter(sel)


def _callback_base():
    from transformers import TrainerCallback

    return TrainerCallback


def make_callback(schedule: IterITSchedule, *, log_path: str | Path | None = None,
                  model_mode: Callable[[bool], None] | None = None):
    """A TrainerCallback that scores at train begin and rescores/reselects at each epoch end."""
    base = _callback_base()

    class IterITCallback(base):
        def __init__(self):
            self.schedule = schedule

        def _log(self, entry: dict[str, Any]) -> None:
            if log_path is not None:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(entry) + "\n")

        def on_train_begin(self, args, state, control, **kwargs):
            self.schedule.start()
            self._log(self.schedule.history[-1])

        def on_epoch_end(self, args, state, control, **kwargs):
            done = len(self.schedule.history)  # epochs selected so far
            if done >= math.ceil(args.num_train_epochs):
                return
            self.schedule.next_epoch(done)
            self._log(self.schedule.history[-1])

    return IterITCallback()


def ifd_score_fn(lm, records, *, batch_size: int = 8, progress: bool = True) -> ScoreFn:
    """``score_fn`` for the schedule: IFD ``ppl_ratio`` with the model being trained (eval mode, no grad; the
    aligned response span and the start-token rule of :func:`~datawinnow.scores.ifd.ifd_losses`; never cached,
    the weights change between calls)."""
    from ..runtime.context import Context
    from ..scores.ifd import ifd_losses

    def score(indices: list[int]) -> np.ndarray:
        model = lm.model
        was_training = model.training
        model.eval()
        try:
            sub = records.subset([records[i].id for i in indices])
            ctx = Context(model=lm, batch_size=batch_size, use_cache=False, progress=progress)
            lc, lu, _, _ = ifd_losses(sub, ctx, "template")
        finally:
            model.train(was_training)
        return np.exp(lc - lu)

    return score
