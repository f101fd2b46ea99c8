"""The LoRA warm-up shared by cherry and less: completion-only labels, schedule, Adam state, cache, resume."""

from __future__ import annotations

import pytest
import torch

import datawinnow
from datawinnow.backends.causal_lm import Pair
from datawinnow.errors import ConfigError
from datawinnow.scores.lora_warmup import WarmupConfig, collate, lora_warmup, training_pair


@pytest.fixture()
def records():
    return datawinnow.load("bundled:self_instruct_seed_tasks")[:6]


def test_collate_masks_prompt_and_padding():
    batch = collate([Pair([5, 6, 7], [8, 9]), Pair([5], [10])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 10, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    # labels: -100 on the prompt and on padding, the response ids where they stand
    assert batch["labels"].tolist() == [[-100, -100, -100, 8, 9], [-100, 10, -100, -100, -100]]


def test_training_pair_is_prompt_then_response_and_end_of_turn(tiny_lm, records):
    r = records[0]
    pair = training_pair(tiny_lm, r)
    assert tiny_lm.tokenizer.decode(pair.prompt) == tiny_lm.renderer.prompt(r)
    assert tiny_lm.tokenizer.decode(pair.response) == r.output + "<|im_end|>\n"


def test_schedule_lrs_per_epoch_by_hand(tiny_lm, records):
    # 4 samples, batch 2, 2 epochs: T = 4 steps, no warm-up, linear decay lr_t = lr * (1 - t / 4):
    # epoch 1 uses t = 0, 1 -> (1 + 0.75) / 2 = 0.875 lr; epoch 2 uses t = 2, 3 -> (0.5 + 0.25) / 2 = 0.375 lr
    cfg = WarmupConfig(epochs=2, lr=1e-3, batch_size=2, warmup_ratio=0.0)
    res = lora_warmup(tiny_lm, records[:4], cfg, use_cache=False, progress=False)
    assert [c.epoch for c in res.checkpoints] == [1, 2]
    assert res.checkpoints[0].lr == pytest.approx(0.875e-3)
    assert res.checkpoints[1].lr == pytest.approx(0.375e-3)
    assert [c.step for c in res.checkpoints] == [2, 4]
    assert len(res.losses) == 4


def test_first_step_adam_state_by_hand(tiny_lm, records):
    # one sample, one step: exp_avg = (1 - b1) g0 and exp_avg_sq = (1 - b2) g0^2, g0 the gradient at LoRA init
    from datawinnow.scores.gradients import example_gradient
    from datawinnow.scores.lora_warmup import WarmupResult, build_lora_model

    cfg = WarmupConfig(epochs=1, lr=1e-3, batch_size=1, warmup_ratio=0.0, seed=3)
    res = lora_warmup(tiny_lm, records[:1], cfg, use_cache=False, progress=False)
    fresh, names = build_lora_model(tiny_lm, cfg)
    g0 = example_gradient(WarmupResult(model=fresh, base=tiny_lm, checkpoints=[], losses=[], key="", names=names),
                          records[0])
    ck = res.checkpoints[0]
    m = torch.cat([ck.exp_avg[n].reshape(-1) for n in names])
    v = torch.cat([ck.exp_avg_sq[n].reshape(-1) for n in names])
    torch.testing.assert_close(m, 0.1 * g0, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(v, 0.001 * g0 * g0, rtol=1e-4, atol=1e-12)


def test_training_lowers_the_loss_and_leaves_the_base_model_alone(tiny_lm, records):
    before = {n: p.detach().clone() for n, p in tiny_lm.model.named_parameters()}
    # the tiny random model's logits are near zero (loss ~ log 512), so LoRA moves the loss only a little;
    # seeded, so the run is the same every time
    cfg = WarmupConfig(epochs=6, lr=2e-2, batch_size=2, warmup_ratio=0.0, schedule="constant",
                       target_modules="all-linear")
    res = lora_warmup(tiny_lm, records[:4], cfg, use_cache=False, progress=False)
    first, last = sum(res.losses[:2]) / 2, sum(res.losses[-2:]) / 2
    assert last < first - 0.02
    after = dict(tiny_lm.model.named_parameters())
    assert set(after) == set(before)
    assert all(torch.equal(before[n], after[n].detach()) for n in before)
    assert not any("lora" in n for n, _ in tiny_lm.model.named_parameters())


def test_seeded_cached_and_resumed(tiny_lm, records, _isolated_cache):
    cfg = WarmupConfig(epochs=2, lr=5e-3, batch_size=2, seed=1)
    a = lora_warmup(tiny_lm, records, cfg, use_cache=False, progress=False)
    b = lora_warmup(tiny_lm, records, cfg, use_cache=True, progress=False)
    assert not b.from_cache
    for n in a.names:
        torch.testing.assert_close(a.checkpoints[-1].lora[n], b.checkpoints[-1].lora[n], rtol=0, atol=0)
    c = lora_warmup(tiny_lm, records, cfg, use_cache=True, progress=False)
    assert c.from_cache and c.losses == b.losses
    # an interrupted run: only epoch 1 is on disk; the rerun trains epoch 2 only and ends where b ended
    (_isolated_cache / "warmup" / b.key / "epoch-2.pt").unlink()
    d = lora_warmup(tiny_lm, records, cfg, use_cache=True, progress=False)
    assert not d.from_cache and d.losses[:3] == b.losses[:3]
    for n in b.names:
        torch.testing.assert_close(d.checkpoints[-1].lora[n], b.checkpoints[-1].lora[n], rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(d.checkpoints[-1].exp_avg_sq[n], b.checkpoints[-1].exp_avg_sq[n])
    other = lora_warmup(tiny_lm, records, WarmupConfig(epochs=2, lr=5e-3, batch_size=2, seed=2), use_cache=True,
                        progress=False)
    assert other.key != b.key and not other.from_cache


def test_bad_options_are_config_errors(tiny_lm, records):
    with pytest.raises(ConfigError, match="warm-up epochs must be >= 1"):
        lora_warmup(tiny_lm, records, WarmupConfig(epochs=0), use_cache=False, progress=False)
    with pytest.raises(ConfigError, match="schedule must be one of linear, constant"):
        lora_warmup(tiny_lm, records, WarmupConfig(schedule="cosine"), use_cache=False, progress=False)
    with pytest.raises(ConfigError, match="cannot put LoRA on target_modules='nope'"):
        lora_warmup(tiny_lm, records, WarmupConfig(target_modules="nope"), use_cache=False, progress=False)


def test_completion_loss_equals_the_models_own_loss(tiny_lm, records):
    from datawinnow.scores.lora_warmup import build_lora_model, completion_loss

    model, _ = build_lora_model(tiny_lm, WarmupConfig())
    batch = collate([training_pair(tiny_lm, r) for r in records[:3]], tiny_lm.tokenizer.pad_token_id)
    with torch.no_grad():
        # transformers' loss: full logits, shifted labels, mean over every labelled token of the batch
        torch.testing.assert_close(completion_loss(model, batch), model(**batch).loss, rtol=1e-5, atol=1e-6)
