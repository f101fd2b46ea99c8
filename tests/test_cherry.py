"""Cherry's pre-experienced-model pipeline: sizes, band sampling, k-means, instruction stats, golden selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.cli import main
from datawinnow.errors import ConfigError
from datawinnow.registry import METHODS
from datawinnow.scores.base import ScoreTable
from datawinnow.runtime.context import Context
from datawinnow.scores.cherry import band_sample, cherry_sizes, kmeans_labels
from datawinnow.scores.instruction_stats import instruction_stats


def test_sizes_scale_down_for_small_pools():
    # k = clamp(n // 50, 1, 100), 10 per cluster: Cherry's 100 x 10 on Alpaca; one cluster per 50 below 5,000
    assert cherry_sizes(52002) == (100, 10)
    assert cherry_sizes(5000) == (100, 10)
    assert cherry_sizes(4999) == (99, 10)
    assert cherry_sizes(175) == (3, 10)
    assert cherry_sizes(40) == (1, 10)
    assert cherry_sizes(40, n_clusters=7, per_cluster=2) == (7, 2)
    assert cherry_sizes(3, n_clusters=7) == (3, 10)  # never more clusters than samples
    with pytest.raises(ConfigError, match="per_cluster must be an integer >= 1, got 0"):
        cherry_sizes(100, per_cluster=0)
    with pytest.raises(ConfigError, match="n_clusters must be 'auto' or an integer >= 1, got 'many'"):
        cherry_sizes(100, n_clusters="many")


def test_band_sample_golden():
    # cluster 0: ppl 5, 1, 4, 2, 3 at indices 0-4 -> 25th pct = 2, 75th = 4 -> band = indices 2 (4), 3 (2), 4 (3)
    # cluster 1: ppl 10..50 at indices 5-9 -> 25th = 20, 75th = 40 -> band = indices 6, 7, 8
    # cluster 2: one member (index 10) -> 25th = 75th = its value -> band = [10]
    # cluster 3: ppl 1 and 3 (indices 11, 12) -> 25th = 1.5, 75th = 2.5 -> empty band -> nearest the median 2:
    #            a tie, the first member (11)
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 3, 3])
    ppl = np.array([5, 1, 4, 2, 3, 10, 20, 30, 40, 50, 7, 1, 3], dtype=float)
    assert band_sample(labels, ppl, per_cluster=3) == [2, 3, 4, 6, 7, 8, 10, 11]
    assert band_sample(labels, ppl, per_cluster=10) == [2, 3, 4, 6, 7, 8, 10, 11]
    two = band_sample(labels, ppl, per_cluster=2, seed=4)
    assert len(two) == 6 and set(two) <= {2, 3, 4, 6, 7, 8, 10, 11} and {10, 11} <= set(two)
    assert two == band_sample(labels, ppl, per_cluster=2, seed=4)  # seeded
    # the whole range: every member of the clusters with a non-empty band
    assert band_sample(labels, ppl, per_cluster=10, low=0, high=100) == list(range(13))
    with pytest.raises(ConfigError, match="percentiles must satisfy"):
        band_sample(labels, ppl, per_cluster=3, low=80, high=20)


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]])
    x = np.concatenate([c + 0.1 * rng.standard_normal((6, 3)) for c in centres])
    labels = kmeans_labels(x, 3, seed=0)
    groups = [set(labels[k * 6:(k + 1) * 6]) for k in range(3)]
    assert all(len(g) == 1 for g in groups) and len(set.union(*groups)) == 3
    assert kmeans_labels(x, 1, seed=0).tolist() == [0] * 18


def test_instruction_stats_match_hand_computation(tiny_lm):
    recs = datawinnow.load("bundled:self_instruct_seed_tasks")[:5]
    emb, ppl, _ = instruction_stats(recs, Context(model=tiny_lm, batch_size=5, progress=False), "bare")
    for k, r in enumerate(recs):
        ids = [tiny_lm.tokenizer.bos_token_id] + tiny_lm.tokenizer(r.prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = tiny_lm.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids]), output_hidden_states=True)
        np.testing.assert_allclose(emb[k], out.hidden_states[-1][0].mean(0).numpy(), rtol=1e-4, atol=1e-5)
        assert ppl[k] == pytest.approx(math.exp(out.loss.item()), rel=1e-4)
    # cached: a second call computes nothing
    _, ppl2, info = instruction_stats(recs, Context(model=tiny_lm, batch_size=2, progress=False), "bare")
    assert info["computed"] == 0 and np.array_equal(ppl, ppl2)


def test_golden_selection_drops_misaligned_then_top_ifd(monkeypatch):
    # IFD a 0.5, b 1.2, c 0.9, d 0.7, e 1.0: IFD >= 1 (b, e) are dropped, then the top 2 by IFD: c, d
    ds = datawinnow.data.Dataset([datawinnow.data.Record(id=i, instruction="q", output="a") for i in "abcde"])
    table = ScoreTable(list("abcde"), np.array([0.5, 1.2, 0.9, 0.7, 1.0]))
    method = METHODS.get("cherry")()
    monkeypatch.setattr(method, "compute_scores", lambda dataset, ctx: table)
    sel = method.run(ds, 2, Context(progress=False))
    assert sel.selected == ["c", "d"]
    assert sel.reasons == {"b": "IFD >= 1 (misaligned)", "e": "IFD >= 1 (misaligned)"}
    assert method.run(ds, None, Context(progress=False)).budget == 1  # default budget 10% of 5 -> 1
    keep_all = METHODS.get("cherry")(keep_misaligned=True)
    monkeypatch.setattr(keep_all, "compute_scores", lambda dataset, ctx: table)
    assert keep_all.run(ds, 2, Context(progress=False)).selected == ["b", "e"]


SMALL = {"epochs": 1, "lr": 0.05, "train_batch_size": 4, "target_modules": "all-linear"}


def test_pipeline_on_tiny_model(tiny_lm):
    pool = datawinnow.load("bundled:self_instruct_seed_tasks")[:16]
    ctx = Context(model=tiny_lm, batch_size=8, progress=False)
    before = {n: p.detach().clone() for n, p in tiny_lm.model.named_parameters()}
    table = datawinnow.score(pool, "cherry", params={**SMALL, "n_clusters": 2, "per_cluster": 3}, ctx=ctx)
    # 2 clusters x up to 3 mid-perplexity samples each
    assert table.info["clusters"] == 2 and 2 <= table.info["experienced"] <= 6
    assert int(table.parts["experienced"].sum()) == table.info["experienced"]
    assert set(table.parts["cluster"].tolist()) == {0, 1}
    # the scores are IFD of the pre-experienced model: recompute it with plain IFD on that model
    from datawinnow.scores.lora_warmup import WarmupConfig, lora_warmup

    picked = [pool[i] for i in np.flatnonzero(table.parts["experienced"])]
    warm = lora_warmup(tiny_lm, picked, WarmupConfig(epochs=1, lr=0.05, batch_size=4, target_modules="all-linear"),
                       progress=False)
    assert warm.from_cache  # the same run, read back from the cache
    expert = datawinnow.score(pool, "ifd", ctx=Context(model=warm.causal_lm(), progress=False, use_cache=False))
    np.testing.assert_allclose(table.score, expert.score, rtol=1e-5)
    base = datawinnow.score(pool, "ifd", ctx=Context(model=tiny_lm, progress=False, use_cache=False))
    assert not np.allclose(table.score, base.score, rtol=1e-4)  # the fine-tune changed the model
    assert all(torch.equal(before[n], p.detach()) for n, p in tiny_lm.model.named_parameters())

    sel = datawinnow.select(pool, "cherry", 3, params={**SMALL, "n_clusters": 2, "per_cluster": 3}, ctx=ctx)
    ifd = dict(zip(table.ids, table.score))
    expected = sorted([i for i in table.ids if ifd[i] < 1], key=lambda i: (-ifd[i], i))[:3]
    assert sel.selected == expected
    assert sel.info["scoring"]["ifd"]["computed"] == 0  # everything came from the cache


def test_cli_select_and_score(tiny_model_dir, tmp_path, capsys):
    src = tmp_path / "pool.jsonl"
    datawinnow.data.write(datawinnow.load("bundled:self_instruct_seed_tasks")[:100], str(src))
    out = tmp_path / "sub.jsonl"
    argv = ["--model", tiny_model_dir, "--quiet", "--max-length", "128", "--param", "lr=0.05",
            "--param", "per_cluster=2"]
    assert main(["select", str(src), "--method", "cherry", "--budget", "3", "--out", str(out), *argv]) == 0
    assert len(out.read_text().splitlines()) == 3
    manifest = json.loads((tmp_path / ".sub.jsonl.manifest.json").read_text())
    assert manifest["method"] == "cherry"
    scores = tmp_path / "scores.jsonl"
    assert main(["score", str(src), "--scorer", "cherry", "--out", str(scores), *argv]) == 0  # from the cache
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 100 and {"score", "cluster", "experienced", "instruction_ppl"} <= set(rows[0])
    assert sum(r["experienced"] for r in rows) == 4  # 100 // 50 = 2 clusters x 2
    assert main(["select", str(src), "--method", "cherry", "--out", str(out),
                 "--param", "per_cluster=0", *argv[:-2]]) == 2
    assert "cherry: per_cluster must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_cherry_on_smollm2(smollm2):
    pool = datawinnow.load("bundled:self_instruct_seed_tasks")[:40]
    sel = datawinnow.select(pool, "cherry", 4, params={"per_cluster": 6},
                            ctx=Context(model=smollm2, batch_size=8, progress=False))
    info = sel.info["scoring"]
    assert info["clusters"] == 1 and info["experienced"] == 6
    assert info["warmup"]["last_loss"] is not None and len(sel.selected) == 4
    assert all(sel.scores[i] < 1 for i in sel.selected)
