"""LESS: Adam preconditioning by hand, projection vs full-gradient inner products, the influence formula, the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.cli import main
from datawinnow.data import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.runtime.context import Context
from datawinnow.scores.gradients import (adam_direction, example_gradient, example_gradients, flat_state,
                                        gradient_batches, lora_linear_modules)
from datawinnow.scores.less import gradient_features, less_influence, parse_checkpoints, subtasks, warmup_sample
from datawinnow.scores.lora_warmup import (WarmupConfig, WarmupResult, collate, completion_loss, completion_losses,
                                           lora_warmup, training_pair)
from datawinnow.scores.projection import CHUNK_ROWS, RademacherProjector
from datawinnow.select.base import rank_desc


@pytest.fixture()
def pool():
    return datawinnow.load("bundled:self_instruct_seed_tasks")[:24]


@pytest.fixture()
def targets():
    ni = datawinnow.load("bundled:natural_instructions_v1")
    names = sorted({r.task for r in ni})[:2]
    return Dataset([r for r in ni if r.task == names[0]][:3] + [r for r in ni if r.task == names[1]][:3])


def test_adam_preconditioning_matches_hand_computation_on_one_parameter(tiny_lm, pool):
    warm = lora_warmup(tiny_lm, pool[:4], WarmupConfig(epochs=2, lr=1e-2, batch_size=2), use_cache=False,
                       progress=False)
    ck = warm.load_checkpoint(1)
    g = example_gradient(warm, pool[7])
    m, v = flat_state(ck, warm.names, "exp_avg"), flat_state(ck, warm.names, "exp_avg_sq")
    gamma = adam_direction(g, m, v, ck.betas, ck.eps)
    # one LoRA B entry (non-zero gradient) of the first layer's q_proj, by hand in float64
    name = next(n for n in warm.names if "q_proj.lora_B" in n)
    offset = sum(ck.lora[n].numel() for n in warm.names[:warm.names.index(name)])
    j = offset + int(torch.argmax(g[offset:offset + ck.lora[name].numel()].abs()))
    gj, mj, vj = float(g[j]), float(ck.exp_avg[name].reshape(-1)[j - offset]), float(ck.exp_avg_sq[name].reshape(-1)[j - offset])
    assert gj != 0.0 and mj != 0.0 and ck.betas == (0.9, 0.999) and ck.eps == 1e-8
    m1 = 0.9 * mj + 0.1 * gj
    v1 = 0.999 * vj + 0.001 * gj * gj
    assert float(gamma[j]) == pytest.approx(m1 / (v1 + 1e-8) ** 0.5, rel=1e-5)
    # the stored moments are the optimizer's own
    assert float(m[j]) == mj


def test_example_gradient_is_the_completion_only_loss_gradient(tiny_lm, pool):
    warm = lora_warmup(tiny_lm, pool[:2], WarmupConfig(epochs=1, lr=1e-2, batch_size=2), use_cache=False,
                       progress=False)
    rec = min(pool, key=lambda x: len(x.output))  # short enough not to be truncated
    tok = tiny_lm.tokenizer
    prompt = tok.apply_chat_template([{"role": "user", "content": rec.prompt}], tokenize=False,
                                     add_generation_prompt=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(rec.output + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert len(p) + len(r) <= tiny_lm.max_length
    logits = warm.model(input_ids=torch.tensor([p + r])).logits[0]
    # mean cross-entropy over the response tokens only
    loss = torch.nn.functional.cross_entropy(logits[len(p) - 1:len(p) + len(r) - 1], torch.tensor(r))
    expected = torch.cat([x.reshape(-1) for x in torch.autograd.grad(loss, warm.parameters())])
    torch.testing.assert_close(example_gradient(warm, rec), expected, rtol=1e-4, atol=1e-7)


def test_per_example_losses_of_a_padded_batch_are_each_samples_own(tiny_lm, pool):
    warm = lora_warmup(tiny_lm, pool[:2], WarmupConfig(epochs=1, lr=1e-2, batch_size=2), use_cache=False,
                       progress=False)
    pairs = [training_pair(tiny_lm, r) for r in pool[:5]]
    assert len({len(p) for p in pairs}) > 1  # the batch is padded
    with torch.no_grad():
        batched = completion_losses(warm.model, collate(pairs, tiny_lm.tokenizer.pad_token_id))
        alone = [completion_loss(warm.model, collate([p], tiny_lm.tokenizer.pad_token_id)) for p in pairs]
    torch.testing.assert_close(batched, torch.stack(alone), rtol=1e-5, atol=1e-6)


def test_vectorised_gradients_and_features_equal_the_per_example_loop(tiny_lm, pool):
    warm = lora_warmup(tiny_lm, pool[:4], WarmupConfig(epochs=2, lr=1e-2, batch_size=2), use_cache=False,
                       progress=False)
    warm.load_checkpoint(0)
    recs = pool[:12]
    lengths = [len(training_pair(tiny_lm, r)) for r in recs]
    budget = 3 * max(lengths)  # several batches, padded ones among them
    batches = gradient_batches(warm, lengths, batch_size=4)
    assert len(batches) == 3 and any(len({lengths[i] for i in b}) > 1 for b in batches)
    loop = torch.stack([example_gradient(warm, r) for r in recs])
    vec = example_gradients(warm, recs, batch_size=4)
    torch.testing.assert_close(example_gradients(warm, recs, batch_tokens=budget), vec, rtol=1e-4, atol=1e-7)
    assert vec.shape == loop.shape and loop.abs().sum(dim=1).min() > 0
    rel = ((vec.cpu() - loop).norm(dim=1) / loop.norm(dim=1)).max()
    assert rel < 1e-4
    proj = RademacherProjector(loop.shape[1], 256, seed=3)
    for kind in ("adam", "sgd"):
        ref = gradient_features(warm, 1, recs, kind, proj, vectorized=False)
        got = gradient_features(warm, 1, recs, kind, proj, batch_tokens=budget)
        assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-4
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_gradient_batches_auto_budget_and_the_runs_settings(tiny_lm, pool, monkeypatch):
    from datawinnow.scores import gradients
    from datawinnow.scores.less import LessScorer

    warm = WarmupResult(model=tiny_lm.model, base=tiny_lm, checkpoints=[], losses=[], key="", names=[])
    per_token = 24 * 2 * 32 * 4  # activations x layers x hidden x fp32 bytes of the tiny model
    monkeypatch.setattr(gradients, "CPU_ACTIVATION_BYTES", 1000 * per_token + 5)
    assert gradients.auto_gradient_tokens(warm) == 1000
    monkeypatch.setattr(gradients, "CPU_ACTIVATION_BYTES", 2**40)
    assert gradients.auto_gradient_tokens(warm) == 65536
    # 2 x 9 padded tokens; then 5, 5, 4: within 18 tokens but 1 padded per 14 real (> 2% on a CPU); 2 alone
    assert gradient_batches(warm, [5, 9, 2, 9, 4, 5], batch_tokens=18) == [[1, 3], [0, 5], [4], [2]]
    assert gradient_batches(warm, [5, 9, 2, 9, 4], batch_size=2) == [[1, 3], [0, 4], [2]]
    ctx = Context(model=tiny_lm, batch_size=3)  # the library's default: fixed batches of batch_size
    assert LessScorer().gradient_batching(ctx) == {"batch_size": 3}
    assert LessScorer().gradient_batching(Context(model=tiny_lm, batch_tokens="auto")) == {"batch_tokens": None}
    assert LessScorer().gradient_batching(Context(model=tiny_lm, batch_tokens=999)) == {"batch_tokens": 999}
    assert LessScorer(batch_tokens="2048").gradient_batching(ctx) == {"batch_tokens": 2048}
    with pytest.raises(ConfigError, match="batch_tokens must be 'auto' or a whole number >= 1"):
        LessScorer(batch_tokens=0).gradient_batching(ctx)


def test_lora_layers_that_are_not_plain_linear_weights_use_the_loop(tiny_lm, pool):
    import copy

    import peft

    base = copy.deepcopy(tiny_lm.model)
    torch.manual_seed(0)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    warm = WarmupResult(model=model, base=tiny_lm, checkpoints=[], losses=[], key="", names=names)
    assert any("magnitude" in n for n in names) and lora_linear_modules(warm) is None
    torch.testing.assert_close(example_gradients(warm, pool[:2]),
                               torch.stack([example_gradient(warm, r) for r in pool[:2]]))


def test_projection_blocks_are_the_seeded_bytes_bit_by_bit():
    dim = 40
    proj = RademacherProjector(dim, 16, seed=9)
    raw = np.random.default_rng([9, 0]).integers(0, 256, size=(dim, 2), dtype=np.uint8)
    by_hand = [[1.0 if (int(raw[i, j // 8]) >> (7 - j % 8)) & 1 else -1.0 for j in range(16)] for i in range(dim)]
    assert proj.block(0).tolist() == by_hand
    g = torch.tensor(np.random.default_rng(1).standard_normal((3, dim)), dtype=torch.float32)
    uncached = RademacherProjector(dim, 16, seed=9, cache_bytes=0)
    assert proj.cache and not uncached.cache
    out = proj.project_tensor(g)
    assert isinstance(out, torch.Tensor) and out.device == g.device
    np.testing.assert_allclose(out.numpy(), uncached.project(g), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), (g.double() @ torch.tensor(by_hand).double() / 4.0).numpy(), rtol=1e-5,
                               atol=1e-5)


def test_projection_is_chunked_seeded_and_exact():
    rng = np.random.default_rng(0)
    dim = CHUNK_ROWS + 100  # two blocks
    g = torch.tensor(rng.standard_normal((3, dim)), dtype=torch.float32)
    proj = RademacherProjector(dim, 64, seed=5)
    p = proj.matrix()
    assert p.shape == (dim, 64) and set(p.unique().tolist()) == {-1.0, 1.0}
    np.testing.assert_allclose(proj.project(g), (g @ p / 8.0).numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(proj.project(g[1:2]), proj.project(g)[1:2], rtol=1e-5, atol=1e-5)  # batch-independent
    assert not torch.equal(RademacherProjector(dim, 64, seed=6).block(0), p[:CHUNK_ROWS])
    with pytest.raises(ConfigError, match="positive multiple of 8"):
        RademacherProjector(dim, 100)


def test_projected_inner_products_track_full_gradient_ones(tiny_lm, pool):
    warm = lora_warmup(tiny_lm, pool[:4], WarmupConfig(epochs=1, lr=1e-2, batch_size=2), use_cache=False,
                       progress=False)
    grads = torch.stack([example_gradient(warm, r) for r in pool[:20]])
    full = grads / grads.norm(dim=1, keepdim=True)
    proj = RademacherProjector(grads.shape[1], 1024, seed=0).project(grads)
    proj /= np.linalg.norm(proj, axis=1, keepdims=True)
    upper = np.triu_indices(20, 1)
    exact = (full @ full.T).numpy()[upper]
    approx = (proj @ proj.T)[upper]
    assert np.corrcoef(exact, approx)[0, 1] > 0.9
    assert np.abs(exact - approx).max() < 0.15  # JL: error ~ 1/sqrt(1024) per entry


def test_influence_golden():
    # d = 2; checkpoint 1 (lr 2), checkpoint 2 (lr 1)
    # pool      c1: x1 [1, 0], x2 [0, 1], x3 [.6, .8]     c2: x1 [1, 0], x2 [0, 1], x3 [.8, .6]
    # targets   c1: A [1, 0], [.6, .8] (mean [.8, .4]); B [0, 1]     c2: A [1, 0], [1, 0]; B [0, 1]
    # task A: x1 = 2*.8 + 1*1 = 2.6;  x2 = 2*.4 + 0 = 0.8;  x3 = 2*(.48 + .32) + .8 = 2.4
    # task B: x1 = 0;                 x2 = 2*1 + 1 = 3.0;   x3 = 2*.8 + .6 = 2.2
    # max over tasks: x1 2.6, x2 3.0, x3 2.4 -> ranking x2, x1, x3
    pool = [np.array([[1, 0], [0, 1], [.6, .8]]), np.array([[1, 0], [0, 1], [.8, .6]])]
    target = [np.array([[1, 0], [0, 1], [.6, .8]]), np.array([[1, 0], [0, 1], [1, 0]])]
    names, task_of = subtasks([Record(id="t1", instruction="q", task="A"), Record(id="t2", instruction="q", task="B"),
                               Record(id="t3", instruction="q", task="A")])
    assert names == ["A", "B"] and task_of.tolist() == [0, 1, 0]
    per_task = less_influence(pool, target, task_of, 2, [2.0, 1.0])
    np.testing.assert_allclose(per_task, [[2.6, 0.0], [0.8, 3.0], [2.4, 2.2]])
    score = per_task.max(axis=1)
    assert rank_desc(score, ["x1", "x2", "x3"]) == [1, 0, 2]
    assert subtasks([Record(id="a", instruction="q")])[0] == ["all"]


def test_options():
    assert parse_checkpoints("all", 4) == [0, 1, 2, 3]
    assert parse_checkpoints("2,4", 4) == [1, 3]
    assert parse_checkpoints(3, 4) == [2]
    with pytest.raises(ConfigError, match=r"outside the warm-up's epochs 1..4"):
        parse_checkpoints("5", 4)
    assert len(warmup_sample(175, 0.05, 0)) == 9 and warmup_sample(175, 0.05, 0) == warmup_sample(175, 0.05, 0)
    assert len(warmup_sample(175, 20, 0)) == 20
    with pytest.raises(ConfigError, match=r"less: warmup_size: budget fraction 1.5 is outside \(0, 1\]"):
        warmup_sample(175, 1.5, 0)


SMALL = {"epochs": 2, "lr": 0.01, "warmup_size": 4, "dim": 256}


def test_pipeline_on_tiny_model(tiny_lm, pool, targets):
    ctx = Context(model=tiny_lm, progress=False, sources={"target": targets})
    sel = datawinnow.select(pool, "less", None, params=SMALL, ctx=ctx)
    info = sel.info["scoring"]
    assert sel.budget == 1  # default 5% of 24
    assert info["checkpoints"] == [1, 2] and len(info["subtasks"]) == 2 and info["warmup_samples"] == 4
    table = datawinnow.score(pool, "less", params=SMALL, ctx=ctx)
    assert table.info["warmup"]["from_cache"]  # warm-up and gradients all read back
    per_task = np.stack([table.parts[f"task:{n}"] for n in info["subtasks"]], axis=1)
    np.testing.assert_allclose(table.score, per_task.max(axis=1))
    assert sel.selected == [table.ids[int(np.argmax(table.score))]]
    # unit-normalised features and lr weights scaled to sum 1: each score is a weighted mean cosine
    lrs = info["checkpoint_lrs"]
    assert info["checkpoint_weights"] == pytest.approx([lr / sum(lrs) for lr in lrs])
    assert np.all(np.abs(table.score) <= 1 + 1e-6)
    with pytest.raises(ConfigError, match="less needs target samples: pass --target SRC"):
        datawinnow.select(pool, "less", 2, params=SMALL, ctx=Context(model=tiny_lm, progress=False))


def test_cli_select_and_score(tiny_model_dir, tmp_path, targets):
    tfile = tmp_path / "targets.jsonl"
    datawinnow.data.write(targets, str(tfile))
    src = tmp_path / "pool.jsonl"
    datawinnow.data.write(datawinnow.load("bundled:self_instruct_seed_tasks")[:20], str(src))
    argv = ["--model", tiny_model_dir, "--quiet", "--max-length", "128", "--target", str(tfile),
            "--param", "epochs=1", "--param", "dim=128", "--param", "warmup_size=3"]
    out = tmp_path / "sub.jsonl"
    assert main(["select", str(src), "--method", "less", "--out", str(out), *argv]) == 0
    assert len(out.read_text().splitlines()) == 1
    scores = tmp_path / "scores.jsonl"
    assert main(["score", str(src), "--scorer", "less", "--out", str(scores), *argv]) == 0
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 20 and sum(r["warmup"] for r in rows) == 3


@pytest.mark.slow
def test_less_on_smollm2(smollm2, targets):
    pool = datawinnow.load("bundled:self_instruct_seed_tasks")[:12]
    sel = datawinnow.select(pool, "less", 2, params={"epochs": 2, "warmup_size": 4, "dim": 512},
                            ctx=Context(model=smollm2, progress=False, sources={"target": targets}))
    info = sel.info["scoring"]
    assert len(sel.selected) == 2 and info["checkpoints"] == [1, 2] and info["lora_dim"] > 100_000
