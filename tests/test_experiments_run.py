"""run-experiment end to end on the tiny random model: finetune and ICL grids, results.json per the
schema, SIGKILL after two cells and resume without recomputing anything finished (cache-hit counts),
reuse across run folders, token/FLOP accounting, and the dry run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from datawinnow.backends.embedder import Embedder
from datawinnow.cli import main
from datawinnow.data import load, write
from datawinnow.experiments.cells import extract_scores
from datawinnow.experiments.cost import TokenMeter, call_tokens
from datawinnow.experiments.runner import RESULTS_FILE, run_experiment

VOCAB = ["water", "color", "list", "write", "explain", "describe"]


class KeywordEmbedder(Embedder):
    """Unit vectors of keyword counts (plus a constant): no model to load."""

    def __init__(self):
        self.identity = "keywords"

    def encode(self, texts, *, batch_size=32, progress=False):
        v = np.array([[t.lower().count(w) for w in VOCAB] + [0.1] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _config(tmp_path, model_dir, **over) -> str:
    pool = tmp_path / "pool.jsonl"
    if not pool.exists():
        write(load("bundled:alpaca_en_demo")[:8], str(pool))
    raw = {
        "model": {"name": model_dir, "device": "cpu", "dtype": "fp32", "max_length": 128, "batch_size": 4},
        "mode": "finetune",
        "pool": {"source": str(pool)},
        "budgets": [0.25, 0.5],
        "random_seeds": 3,
        "methods": ["longest"],
        "suites": [{"name": "arc_easy", "limit": 3}],
        "full": "auto",
        "max_train_tokens": 100_000,
        "train": {"max_steps": 1, "batch_size": 2, "max_length": 96},
        **over,
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


def _check_schema(res, n_cells):
    assert res["schema"] == 1 and res["mode"] in ("finetune", "icl")
    assert set(res["machine"]) == {"cpu", "cores", "device", "dtype", "gpu"}
    assert res["model"]["n_params"] > 0 and res["pool"]["n"] == 8 and len(res["pool"]["fingerprint"]) == 16
    assert len(res["cells"]) == n_cells
    for c in res["cells"]:
        assert set(c) >= {"key", "kind", "method", "params", "budget", "budget_n", "seed", "selected_ids", "cost",
                          "suites"}
        assert set(c["cost"]) == {"selection", "training", "evaluation"}
        for part in c["cost"].values():
            assert set(part) == {"seconds", "fwd_tokens", "bwd_tokens", "flops"}
        for label, s in c["suites"].items():
            assert label in res["suites"] and s["summary"]["n"] == len(s["items"])
            assert all(set(i) == {"id", "score"} and isinstance(i["score"], float) for i in s["items"])


def test_finetune_grid_killed_after_two_cells_resumes_without_recomputing(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir)
    run = tmp_path / "run"
    # a real SIGKILL once the second cell (the first random cell: selection + adapter + evaluation) is in results.json
    script = ("import os, signal, sys\n"
              "from datawinnow.experiments.runner import run_experiment\n"
              "done = []\n"
              "def on_cell(cell, record):\n"
              "    done.append(cell.key)\n"
              "    if len(done) == 2:\n"
              "        os.kill(os.getpid(), signal.SIGKILL)\n"
              f"run_experiment({cfg!r}, {str(run)!r}, quiet=True, on_cell=on_cell)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]
    killed = json.loads((run / RESULTS_FILE).read_text())
    assert [c["key"] for c in killed["cells"]] == ["zero_shot", "random/b=0.25/s=0"]

    exp, res = run_experiment(cfg, str(run), quiet=True)
    # zero_shot, 2 budgets x (3 random + longest), full
    assert len(res["cells"]) == 10
    _check_schema(res, 10)
    st = exp.stats.as_dict()
    # the two finished cells: 1 selection, 1 adapter, 2 evaluations come from the cache, nothing else does
    assert st["selection"] == {"hits": 1, "misses": 7}
    assert st["training"]["hits"] == 1 and st["training"]["misses"] == 8  # 7 selected subsets + full
    assert st["evaluation"] == {"hits": 2, "misses": 8}
    assert res["cells"][:2] == killed["cells"]

    # a second run folder and a grid with one more budget: every shared stage is reused
    cfg2 = _config(tmp_path, tiny_model_dir, budgets=[0.25, 0.5, 0.75])
    exp2, res2 = run_experiment(cfg2, str(tmp_path / "run2"), quiet=True)
    st2 = exp2.stats.as_dict()
    assert st2["selection"] == {"hits": 8, "misses": 4}
    assert st2["evaluation"] == {"hits": 10, "misses": 4}
    same = {c["key"]: c for c in res["cells"]}
    for c in res2["cells"]:
        if c["key"] in same:
            assert c["suites"] == same[c["key"]]["suites"] and c["cost"] == same[c["key"]]["cost"]

    cells = {c["key"]: c for c in res["cells"]}
    z, full, r = cells["zero_shot"], cells["full"], cells["random/b=0.25/s=0"]
    assert z["selected_ids"] == [] and z["cost"]["training"]["fwd_tokens"] == 0
    assert full["budget"] == 1.0 and full["budget_n"] == 8 and len(full["selected_ids"]) == 8
    assert r["budget_n"] == 2 and len(r["selected_ids"]) == 2
    n = res["model"]["n_params"]
    for c in (full, r):
        t = c["cost"]["training"]
        assert t["fwd_tokens"] > 0 and t["bwd_tokens"] == t["fwd_tokens"]
    e = z["cost"]["evaluation"]
    assert e["bwd_tokens"] == 0 and e["fwd_tokens"] > 0
    assert e["flops"] == pytest.approx(2 * n * e["fwd_tokens"], rel=1e-9)
    assert len({tuple(c["selected_ids"]) for c in res["cells"] if c["kind"] == "random" and c["budget"] == 0.5}) == 3


def test_icl_grid_two_methods_two_budgets_two_seeds(tmp_path, tiny_model_dir):
    ev = tmp_path / "eval.jsonl"
    write(load("bundled:alpaca_eval_gpt4_baseline")[:3], str(ev))
    cfg = _config(tmp_path, tiny_model_dir, mode="icl", icl={"k": 2, "max_tokens": 256},
                  methods=["longest", {"name": "delift-se", "params": {"optimizer": "stochastic"}, "seeds": 2}],
                  suites=[{"name": "generation", "data": str(ev), "max_new_tokens": 4}], full=True)
    exp, res = run_experiment(cfg, str(tmp_path / "run"), quiet=True, embedder=KeywordEmbedder())
    keys = [c["key"] for c in res["cells"]]
    assert keys == ["zero_shot"] + [f"{m}/b={b}/s={s}" for b in ("0.25", "0.5")
                                    for m, seeds in (("random", 3), ("longest", 1), ("delift-se", 2))
                                    for s in range(seeds)] + ["full"]
    _check_schema(res, len(keys))
    for c in res["cells"]:
        assert c["cost"]["training"] == {"seconds": 0.0, "fwd_tokens": 0, "bwd_tokens": 0, "flops": 0.0}
        assert [i["id"] for i in c["suites"]["generation"]["items"]] == load(str(ev)).ids
    assert res["suites"]["generation"] == {"suite": "generation", "metric": "rougeL", "higher_is_better": True,
                                           "limit": None}
    assert exp.stats.as_dict()["training"] == {"hits": 0, "misses": 0}
    exp2, _ = run_experiment(cfg, str(tmp_path / "run"), quiet=True, embedder=KeywordEmbedder())
    assert all(v["misses"] == 0 for v in exp2.stats.as_dict().values())


def test_dry_run_prints_plan_and_cache_state(tmp_path, tiny_model_dir, capsys):
    cfg = _config(tmp_path, tiny_model_dir, budgets=[0.5])
    run = str(tmp_path / "run")
    assert main(["run-experiment", cfg, "--out", run, "--dry-run", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    for key in ("zero_shot", "random/b=0.5/s=0", "random/b=0.5/s=2", "longest/b=0.5/s=0", "full"):
        assert key in out
    assert "6 cells, 0 finished, 6 to run" in out and "estimated:" in out and "FLOP" in out
    assert not os.path.exists(os.path.join(run, RESULTS_FILE))
    assert main(["run-experiment", cfg, "--out", run, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run-experiment", cfg, "--out", run, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "6 cells, 6 finished, 0 to run" in out and "measured on this machine" in out


def test_primary_metric_extraction():
    rubric = {"summary": {"mean": 3.0, "n": 1, "n_failed": 1},
              "items": [{"id": "a", "mean": 3.0}, {"id": "b", "error": "no score"}]}
    assert extract_scores("rubric", rubric) == {"summary": {"mean": 3.0, "n": 1, "n_failed": 1},
                                                "items": [{"id": "a", "score": 3.0}]}
    win = {"summary": {"win_rate": 75.0, "n": 2}, "items": [{"id": "a", "win": 1.0}, {"id": "b", "win": 0.5}]}
    assert extract_scores("winrate", win)["items"] == [{"id": "a", "score": 100.0}, {"id": "b", "score": 50.0}]
    mc = {"summary": {"acc": 0.5, "n": 2, "by_subject": {"x": 1.0}},
          "items": [{"id": "q1", "correct": True}, {"id": "q2", "correct": False}]}
    assert extract_scores("arc_easy", mc) == {"summary": {"acc": 0.5, "n": 2},
                                              "items": [{"id": "q1", "score": 1.0}, {"id": "q2", "score": 0.0}]}
    ife = {"summary": {"prompt_level_strict_acc": 1.0, "n": 1}, "items": [{"id": "k", "prompt_strict": True}]}
    assert extract_scores("ifeval", ife)["items"] == [{"id": "k", "score": 1.0}]


def test_token_meter_counts_new_tokens_and_training(tiny_lm):
    import torch

    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert call_tokens((), {"input_ids": ids, "attention_mask": mask}) == 5
    assert call_tokens((ids,), {}) == 8
    # a decoding step (left-padded batch): one new token per row; the mask covers the whole past
    past = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    assert call_tokens((), {"input_ids": ids[:, :1], "attention_mask": past}) == 2
    meter = TokenMeter()
    meter.attach_lm(tiny_lm)
    meter.attach_lm(tiny_lm)  # idempotent
    n = sum(p.numel() for p in tiny_lm.model.parameters())
    pairs = [tiny_lm.pair("Say hi.", "Hi there"), tiny_lm.pair("A longer prompt here.", "Ok")]
    snap = meter.snapshot()
    tiny_lm.response_logprobs(pairs)
    c = meter.since(snap)
    assert c.fwd_tokens == sum(len(p) for p in pairs) and c.bwd_tokens == 0
    assert c.flops == pytest.approx(2 * n * c.fwd_tokens)
    tiny_lm.model.train()
    try:
        snap = meter.snapshot()
        out = tiny_lm.model(input_ids=ids, attention_mask=mask)
        out.logits.sum().backward()
        c = meter.since(snap)
    finally:
        tiny_lm.model.eval()
        tiny_lm.model.zero_grad()
    assert c.fwd_tokens == 5 and c.bwd_tokens == 5 and c.flops == pytest.approx(6 * n * 5)
    meter.detach_all()
    snap = meter.snapshot()
    tiny_lm.response_logprobs(pairs)
    assert meter.since(snap).fwd_tokens == 0


def test_shared_scores_within_a_selection_group(tmp_path, tiny_model_dir):
    ev = tmp_path / "eval.jsonl"
    write(load("bundled:alpaca_eval_gpt4_baseline")[:2], str(ev))
    cfg = _config(tmp_path, tiny_model_dir, mode="icl", methods=["ifd"], full=False, zero_shot=False,
                  selection={"score_cache": True},
                  suites=[{"name": "generation", "data": str(ev), "max_new_tokens": 2}])
    exp, res = run_experiment(cfg, str(tmp_path / "run"), quiet=True, embedder=KeywordEmbedder())
    cells = {c["key"]: c for c in res["cells"]}
    first, second = cells["ifd/b=0.25/s=0"]["cost"]["selection"], cells["ifd/b=0.5/s=0"]["cost"]["selection"]
    assert first["fwd_tokens"] > 0
    # the second budget reuses the first one's scores (measured: no forward pass) and reports the group's cost
    stored = [json.loads(p.read_text()) for p in (exp.selections.dir).glob("*.json")]
    measured = {s["budget_n"]: s["measured"]["fwd_tokens"] for s in stored if s["method"] == "ifd"}
    assert measured == {2: first["fwd_tokens"], 4: 0}
    assert second["fwd_tokens"] == first["fwd_tokens"]
    # the scores live in the group's private cache, not in the shared score store
    from datawinnow.cache import cache_root

    assert not (cache_root() / "scores").exists() or not any((cache_root() / "scores").glob("ifd-*"))
    assert any((cache_root() / "experiments" / "selection-caches").glob("*/scores/ifd-*"))
