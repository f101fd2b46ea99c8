"""RDS+: max-cosine and round-robin golden values computed by hand, position-weighted pooling against a
plain transformers forward pass, the method end to end on the tiny model (cached, deterministic)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.data.record import Dataset, Record
from datawinnow.registry import METHODS, SCORERS
from datawinnow.runtime.context import Context
from datawinnow.scores.rds import (POOL_MEAN, position_weighted_mean, rds_embeddings, rds_select, round_robin,
                                   sample_ids, task_scores)

# five unit vectors at known angles, ids a..e
POOL = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
IDS = ["a", "b", "c", "d", "e"]
# task x: one target (1, 0); task y: two targets (0, 1) and (-0.6, -0.8)
TARGETS = np.array([[1.0, 0.0], [0.0, 1.0], [-0.6, -0.8]], dtype=np.float32)
TASKS = ["x", "y", "y"]


def test_max_cosine_by_hand():
    names, s = task_scores(POOL, TARGETS, TASKS)
    assert names == ["x", "y"]
    # x: the dot product with (1, 0) is the first coordinate
    assert s[:, 0] == pytest.approx([1.0, 0.8, 0.6, 0.0, -1.0])
    # y: max(second coordinate, -0.6 x first - 0.8 x second); e = (-1, 0) takes 0.6 from the second target
    assert s[:, 1] == pytest.approx([0.0, 0.6, 0.8, 1.0, 0.6])


def test_round_robin_by_hand():
    picks, by, best, names = rds_select(POOL, IDS, 4, TARGETS, TASKS)
    # x takes a (1.0), y takes d (1.0), x takes b (0.8), y takes c (0.8)
    assert [IDS[i] for i in picks] == ["a", "d", "b", "c"]
    assert by == ["x", "y", "x", "y"]
    assert best == pytest.approx([1.0, 0.8, 0.8, 1.0, 0.6])
    # the fifth pick is x's turn: only e is left (-1.0)
    picks, by, _, _ = rds_select(POOL, IDS, 5, TARGETS, TASKS)
    assert [IDS[i] for i in picks][-1] == "e" and by[-1] == "x"


def test_round_robin_ties_by_id_and_exhausted_tasks():
    # one task y: d 1.0, c 0.8, then b and e tie at 0.6 -> b first (id order)
    picks, by, _, _ = rds_select(POOL, IDS, 4, TARGETS[1:], ["y", "y"])
    assert [IDS[i] for i in picks] == ["d", "c", "b", "e"]
    # a task whose candidates are all taken passes its turn
    scores = np.array([[1.0, 0.9], [0.5, 0.1], [0.2, 0.0]])
    picks, by = round_robin(scores, ["p", "q", "r"], 3)
    assert picks == [0, 1, 2] and by == [0, 1, 0]


def test_without_target_the_pool_mean_is_the_target():
    # mean = (1.4, 2.4) / 5, normalised (0.50387, 0.86378): cosines a .504, b .921, c .993, d .864, e -.504
    mean = np.array([1.4, 2.4]) / math.hypot(1.4, 2.4)
    picks, by, best, names = rds_select(POOL, IDS, 3)
    assert [IDS[i] for i in picks] == ["c", "b", "d"]
    assert names == [POOL_MEAN] and by == [POOL_MEAN] * 3
    assert best == pytest.approx(POOL @ mean, abs=1e-6)


def test_position_weighted_pooling_by_hand():
    # one row of 3 real tokens and one padding position: weights 1/6, 2/6, 3/6
    hidden = torch.tensor([[[6.0, 0.0], [0.0, 3.0], [2.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 1, 0]])
    pooled = (1 * np.array([6.0, 0.0]) + 2 * np.array([0.0, 3.0]) + 3 * np.array([2.0, 2.0])) / 6
    out = position_weighted_mean(hidden, mask)
    assert out[0].numpy() == pytest.approx(pooled / np.linalg.norm(pooled), abs=1e-6)


def _records(n: int = 7) -> Dataset:
    pool = datawinnow.load("bundled:alpaca_en_demo")
    return Dataset([pool[i] for i in range(0, 7 * n, 7)])


def test_embeddings_match_a_plain_transformers_forward(tiny_model_dir, tiny_lm):
    from transformers import AutoModelForCausalLM

    ds = _records(7)
    ctx = Context(model=tiny_lm, batch_size=3, progress=False, use_cache=False)  # padded batches
    got, _ = rds_embeddings(ds, ctx)
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ref_model.eval()
    lengths = set()
    for k, r in enumerate(ds):
        ids = sample_ids(tiny_lm, r)  # the same rendering; the forward pass and pooling are independent
        lengths.add(len(ids))
        with torch.no_grad():
            h = ref_model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
        w = torch.arange(1, len(ids) + 1, dtype=torch.float32)
        e = (h * w[:, None]).sum(0) / w.sum()
        e = (e / e.norm()).numpy()
        assert got[k] == pytest.approx(e, abs=2e-5)
    assert len(lengths) > 3  # batches really were padded


def test_method_with_target_tasks_cached_and_deterministic(tiny_lm):
    pool = _records(10)
    target = Dataset([Record(id=f"t{i}", instruction=r.instruction, input=r.input, output=r.output,
                             task="even" if i % 2 == 0 else "odd") for i, r in enumerate(_records(14)[10:])])
    ctx = Context(model=tiny_lm, batch_size=4, progress=False, sources={"target": target})
    method = METHODS.get("rds")()
    assert METHODS.get("rds").stochastic is False
    sel = method.run(pool, 6, ctx)
    emb, info = rds_embeddings(pool, ctx)
    assert info["computed"] == 0 and info["cached"] == len(pool)  # the selection cached every embedding
    t_emb, _ = rds_embeddings(target, ctx)
    picks, by, best, _ = rds_select(emb, pool.ids, 6, t_emb, [r.task for r in target])
    assert sel.selected == [pool.ids[i] for i in picks]
    assert sel.info["picked_by_task"] == {"even": 3, "odd": 3}
    assert sel.scores == {rid: pytest.approx(float(s)) for rid, s in zip(pool.ids, best)}
    assert method.run(pool, 6, ctx).selected == sel.selected
    # the scorer writes each candidate's best score over the tasks
    table = SCORERS.get("rds")().score(pool, ctx)
    assert table.score == pytest.approx(best)


def test_method_without_target_favours_central_samples(tiny_lm):
    pool = _records(8)
    ctx = Context(model=tiny_lm, batch_size=4, progress=False)
    sel = METHODS.get("rds")().run(pool, 0.5, ctx)
    emb, _ = rds_embeddings(pool, ctx)
    centre = emb.mean(axis=0)
    cos = emb @ (centre / np.linalg.norm(centre))
    assert sel.selected == [pool.ids[i] for i in np.argsort(-cos, kind="stable")[:4]]
    assert sel.info["target"] == POOL_MEAN
