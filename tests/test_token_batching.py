"""Token-budget batching: the batch rule, equality with fixed batches, the packed path, the OOM retry, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.backends.batching import CPU_BATCH_TOKENS, OomSplitter, auto_batch_tokens, token_budget_batches
from datawinnow.backends.causal_lm import CausalLM
from datawinnow.errors import ConfigError
from datawinnow.runtime.context import Context


@pytest.fixture()
def lm32(tiny_model_dir):
    return CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=128)


@pytest.fixture()
def records():
    return datawinnow.load("bundled:alpaca_en_demo")[:24]


def test_token_budget_batches_by_hand():
    # longest first: 9 | 5, 3 (2 x 5 = 10) | 2, 2
    assert token_budget_batches([5, 3, 9, 2, 2], 10) == [[2], [0, 1], [3, 4]]
    assert token_budget_batches([5, 3, 9, 2, 2], 10, max_batch=1) == [[2], [0], [1], [3], [4]]
    assert token_budget_batches([4, 4, 4, 4], 1000) == [[0, 1, 2, 3]]
    assert token_budget_batches([], 10) == []
    with pytest.raises(ConfigError):
        token_budget_batches([1], 0)


def test_budget_bounds_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 400, size=500).tolist()
    batches = token_budget_batches(lengths, 4096)
    assert sorted(i for b in batches for i in b) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 4096
    computed = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert computed - sum(lengths) <= 0.05 * sum(lengths)
    capped = token_budget_batches(lengths, 4096, max_padding=0.01)
    for b in capped:  # every batch's padding within 1% of its real tokens
        assert len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) <= 0.01 * sum(lengths[i] for i in b)


def test_auto_budget_on_cpu(lm32):
    assert auto_batch_tokens("cpu") == CPU_BATCH_TOKENS
    assert lm32.resolve_batch_tokens("auto") == CPU_BATCH_TOKENS
    assert lm32.resolve_batch_tokens(None) is None
    with pytest.raises(ConfigError, match="batch_tokens"):
        lm32.resolve_batch_tokens("lots")
    with pytest.raises(ConfigError, match="batch_tokens"):
        Context(batch_tokens=0)


def _ifd(records, ctx):
    return datawinnow.score(records, "ifd", params={"variant": "loss_ratio"}, ctx=ctx)


def test_ifd_token_budget_equals_fixed_batches(lm32, records):
    fixed = _ifd(records, Context(model=lm32, batch_size=8, use_cache=False, progress=False))
    lm32.padding.update(real=0, computed=0)
    budget = _ifd(records, Context(model=lm32, batch_tokens=300, use_cache=False, progress=False))
    np.testing.assert_allclose(budget.score, fixed.score, rtol=0, atol=1e-5)
    assert lm32.padding["computed"] <= 300 * 2 * len(records)  # every pass within the budget
    assert lm32.padding["computed"] >= lm32.padding["real"] > 0


def test_packed_path_equals_padded(lm32, records):
    pairs = [lm32.record_pair(r) for r in records[:10]]
    padded = lm32.response_logprobs(pairs)
    lm32.packing = True  # transformers keeps packed sequences apart with sdpa too (a dense mask: slower on CPU)
    lm32.padding.update(real=0, computed=0)
    packed = lm32.response_logprobs(pairs)
    assert lm32.padding["computed"] == lm32.padding["real"] == sum(len(p) for p in pairs)
    for a, b in zip(packed, padded):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def _fake_oom(lm, limit):
    """Patch the backbone's forward to raise a CUDA out-of-memory error above ``limit`` positions."""
    backbone, _ = lm._backbone_and_head()
    real = backbone.forward
    calls = []

    def forward(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        calls.append(ids.numel())
        if ids.numel() > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return real(*args, **kwargs)

    backbone.forward = forward
    return calls


def test_oom_halves_budget_and_retries(lm32, records):
    pairs = [lm32.record_pair(r) for r in records[:12]]
    expected = lm32.response_logprobs(pairs)
    calls = _fake_oom(lm32, 3 * max(len(p) for p in pairs))
    got = lm32.response_logprobs(pairs)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert lm32.oom.halvings >= 1 and lm32.oom.ceiling is not None
    assert lm32.resolve_batch_tokens(10 ** 6) == lm32.oom.ceiling  # later budgets stay under the ceiling
    n_calls = len(calls)
    lm32.response_logprobs(pairs)  # pre-split under the ceiling: no failed call this time
    assert all(c <= 3 * max(len(p) for p in pairs) for c in calls[n_calls:])


def test_oom_on_one_sequence_is_raised():
    def boom(items):
        raise torch.cuda.OutOfMemoryError("fake")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        OomSplitter().run([1], [10], boom)
    with pytest.raises(ValueError):  # other errors are not retried
        OomSplitter().run([1, 2], [10, 10], lambda items: (_ for _ in ()).throw(ValueError("x")))


def test_next_token_and_generate_under_budget(lm32):
    prompts = [lm32.prompt_ids(t) for t in ("a", "a longer prompt here", "mid prompt")]
    whole = lm32.next_token_logprobs(prompts)
    _fake_oom(lm32, 12)
    split = lm32.next_token_logprobs(prompts)
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-5)


def test_cli_batch_tokens_option(tmp_path, tiny_model_dir):
    from datawinnow.cli import main

    src = tmp_path / "d.jsonl"
    src.write_text('{"instruction": "hi", "output": "there"}\n{"instruction": "a b c", "output": "d e"}\n')
    out = tmp_path / "s.jsonl"
    assert main(["score", str(src), "--scorer", "ifd", "--model", tiny_model_dir, "--device", "cpu",
                 "--dtype", "fp32", "--batch-tokens", "64", "--out", str(out), "--quiet", "--no-cache"]) == 0
    assert main(["score", str(src), "--scorer", "ifd", "--model", tiny_model_dir, "--device", "cpu",
                 "--batch-tokens", "many", "--out", str(tmp_path / "t.jsonl"), "--quiet"]) == 2
