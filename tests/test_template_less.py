"""A model without a chat template (GPT-2-style tokenizer: ``<|endoftext|>`` is BOS and EOS, no pad token):
the start-token rule by hand, IFD against a from-scratch reference, then every registered scorer and
selection method, the trainer (SFT, IterIT, DELIA) and every local evaluation suite, run on it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.backends import CausalLM
from datawinnow.data import Dataset, Record
from datawinnow.data.prompts import ALPACA_PROMPT_NO_INPUT
from datawinnow.registry import METHODS, SCORERS, SUITES
from datawinnow.runtime.context import Context
from test_evaluate_runner import KeywordEmbedder

SMALL_LORA = {"epochs": 1, "lr": 0.05, "target_modules": "all-linear"}
SCORER_PARAMS = {  # small settings for a tiny random model; every other scorer runs with its defaults
    "alpagasus": {"readout": "expected"},
    "cherry": {**SMALL_LORA, "n_clusters": 2, "per_cluster": 2, "train_batch_size": 4},
    "less": {"warmup_size": 0.5, "epochs": 1, "warmup_batch_size": 4, "dim": 64, "target_modules": "all-linear"},
    "selectit": {"k": 2},
    "length": {"unit": "tokens"},
}
METHOD_PARAMS = {**SCORER_PARAMS, "delift": {"block_size": 4}, "delift-task": {"block_size": 4},
                 "delift-continual": {"block_size": 4}}
NOT_LOCAL = {"lm_eval"}  # loads lm-evaluation-harness's own tasks from the hub


@pytest.fixture(scope="module")
def base_lm(tiny_base_model_dir):
    return CausalLM.load(tiny_base_model_dir, device="cpu", dtype="fp32", max_length=96)


@pytest.fixture(scope="module")
def pool():
    return datawinnow.load("bundled:self_instruct_seed_tasks")[:8]


@pytest.fixture(scope="module")
def targets():
    ni = datawinnow.load("bundled:natural_instructions_v1")
    names = sorted({r.task for r in ni})[:2]
    return Dataset([r for r in ni if r.task == names[0]][:2] + [r for r in ni if r.task == names[1]][:2])


def test_start_token_rule(base_lm):
    tok = base_lm.tokenizer
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert not base_lm.renderer.has_template and tok.bos_token_id == tok.eos_token_id == eot
    rec = Record(id="a", instruction="Name a colour.", output="Blue.")
    prompt_text = ALPACA_PROMPT_NO_INPUT.format(instruction="Name a colour.")
    pair = base_lm.record_pair(rec)
    assert pair.prompt == [eot] + tok(prompt_text, add_special_tokens=False)["input_ids"]  # BOS, then the Alpaca prompt
    assert base_lm.pair("", "Blue.").prompt == [eot] == base_lm.pair("x", "Blue.", bare=True).prompt
    assert base_lm.renderer.empty_prompt() == "" and base_lm.prompt_ids("") == [eot]
    assert base_lm.prompt_ids("<|endoftext|>Hi") == [eot] + tok("Hi", add_special_tokens=False)["input_ids"]  # once
    # a prompt that does not fit keeps its start token and its end
    long = base_lm.pair("word " * 200, "Blue.")
    assert long.prompt[0] == eot and len(long) <= 96


@pytest.mark.parametrize("variant", ["loss_ratio", "ppl_ratio"])
def test_ifd_both_passes_start_with_bos(base_lm, pool, variant):
    tok = base_lm.tokenizer
    eot = tok.bos_token_id

    def loss(prompt, response):
        with torch.no_grad():
            logits = base_lm.model(input_ids=torch.tensor([prompt + response])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        return -np.mean([lp[len(prompt) - 1 + t, y].item() for t, y in enumerate(response)])

    table = datawinnow.score(pool, "ifd", params={"variant": variant},
                             ctx=Context(model=base_lm, batch_size=4, progress=False, use_cache=False))
    for k, r in enumerate(pool):
        p = [eot] + tok(base_lm.renderer.alpaca_prompt(r), add_special_tokens=False)["input_ids"]
        y = tok(r.output, add_special_tokens=False)["input_ids"]
        if len(p) + len(y) > 96:
            n = min(len(y), max(96 - len(p), 48))
            p, y = p[:1] + p[len(p) - (96 - n - 1):], y[:n]
        lc, lu = loss(p, y), loss([eot], y)  # template-less: both empty prompts are the start token alone
        assert table.parts["loss_conditioned"][k] == pytest.approx(lc, rel=1e-5)
        assert table.parts["loss_unconditioned"][k] == pytest.approx(lu, rel=1e-5)
        expected = lc / lu if variant == "loss_ratio" else math.exp(lc - lu)
        assert table.score[k] == pytest.approx(expected, rel=1e-5)


def _ctx(base_lm, targets, pool, **kw):
    return Context(model=base_lm, embedder=KeywordEmbedder(), batch_size=4, progress=False, use_cache=False,
                   sources={"target": targets, "existing": Dataset(list(pool[:2]))}, **kw)


@pytest.mark.parametrize("name", SCORERS.names())
def test_every_scorer_runs(base_lm, pool, targets, name):
    table = datawinnow.score(pool, name, params=SCORER_PARAMS.get(name, {}), ctx=_ctx(base_lm, targets, pool))
    assert table.ids == pool.ids and np.isfinite(table.score).any()


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_runs(base_lm, pool, targets, name):
    sel = datawinnow.select(pool, name, 3, params=METHOD_PARAMS.get(name, {}), ctx=_ctx(base_lm, targets, pool))
    assert 1 <= len(sel.selected) <= 3 and set(sel.selected) <= set(pool.ids)


@pytest.mark.parametrize("method", ["sft", "iterit", "delia"])
def test_trainer_runs(tiny_base_model_dir, pool, tmp_path, method):
    from datawinnow.train import TrainConfig, train

    extra = {}
    if method == "iterit":
        extra = {"ratio": 0.25, "epochs": 2}
    if method == "delia":
        cache = tmp_path / "cache.jsonl"
        cache.write_text("".join(json.dumps({"id": f"c{i}", "messages": [
            {"role": "user", "content": f"Say {i}"}, {"role": "assistant", "content": f"I say {i}."}]}) + "\n"
            for i in range(4)))
        extra = {"cache": str(cache), "diverse_ratio": 0.5}
    cfg = TrainConfig(method=method, model=tiny_base_model_dir, device="cpu", dtype="fp32", max_length=96,
                      batch_size=2, max_steps=2 if method == "sft" else -1, progress=False, **extra)
    res = train(pool, cfg, str(tmp_path / method))
    assert (tmp_path / method / "adapter_config.json").exists()
    if method == "iterit":
        assert np.isfinite(res.info["schedule"].scores).all()


def test_every_local_suite_runs(base_lm):
    from datawinnow.evaluate import EvalSession, GenerationParams, evaluate

    from test_evaluate_runner import RubricAndPairJudge

    names = [n for n in SUITES.names() if n not in NOT_LOCAL]
    assert {"generation", "ifeval", "arc_easy", "mmlu"} <= set(names)
    session = EvalSession(Context(model=base_lm, embedder=KeywordEmbedder(), batch_size=4, progress=False),
                          gen=GenerationParams(), max_new_tokens=4, judge=RubricAndPairJudge(), limit=2)
    res = evaluate(names, session)
    for name in names:
        assert res["suites"][name]["summary"], name
