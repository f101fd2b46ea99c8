"""CausalLM's shared-prefix primitives (prefix_cache, response_logprobs_after) against a plain forward pass of
the transformers model over each whole sequence, computed here by hand in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datawinnow.backends import CausalLM
from datawinnow.backends.causal_lm import Pair


@pytest.fixture()
def lm(tiny_model_dir):
    return CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=256)


def reference(lm: CausalLM, prefix: list[int], pair: Pair) -> np.ndarray:
    """log p(y_t) of the pair's response after prefix + prompt: the whole sequence through the HF model."""
    ids = torch.tensor([prefix + pair.prompt + pair.response])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
    start = len(prefix) + len(pair.prompt)
    pos = torch.arange(start - 1, start - 1 + len(pair.response))
    return logp[pos, torch.tensor(pair.response)].numpy()


def _ids(lm: CausalLM, text: str) -> list[int]:
    return lm.encode(text)


def test_each_row_reads_its_own_prefix(lm):
    prefixes = [lm.prompt_ids("A short example."), lm.prompt_ids("A much longer example prefix, with more words in it.")]
    pairs = [Pair(_ids(lm, " Query one?"), _ids(lm, " Answer one.")),
             Pair(_ids(lm, " Q2"), _ids(lm, " A longer second answer here.")),
             Pair(_ids(lm, " The third query is longest of all"), _ids(lm, " Three."))]
    rows = [1, 0, 1]
    cache = lm.prefix_cache(prefixes)
    assert len(cache) == 2 and cache.width == len(prefixes[1]) and cache.lengths == [len(p) for p in prefixes]
    got = lm.response_logprobs_after(cache, pairs, rows=rows)  # mixed prefixes in one batch: gathered rows
    for g, pair, lp in zip(rows, pairs, got):
        assert lp.dtype == np.float32 and lp.shape == (len(pair.response),)
        np.testing.assert_allclose(lp, reference(lm, prefixes[g], pair), rtol=0, atol=1e-5)
    same = lm.response_logprobs_after(cache, pairs[:2], rows=[0, 0])  # one prefix: expanded view
    for pair, lp in zip(pairs[:2], same):
        np.testing.assert_allclose(lp, reference(lm, prefixes[0], pair), rtol=0, atol=1e-5)


def test_positions_are_counted(lm):
    prefixes = [lm.prompt_ids("one two three"), lm.prompt_ids("one")]
    lm.padding.update(real=0, computed=0)
    cache = lm.prefix_cache(prefixes)
    width = max(map(len, prefixes))
    assert lm.padding == {"real": sum(map(len, prefixes)), "computed": 2 * width}
    pairs = [Pair(_ids(lm, " x"), _ids(lm, " y z")), Pair(_ids(lm, " a b c"), _ids(lm, " d"))]
    lm.padding.update(real=0, computed=0)
    lm.response_logprobs_after(cache, pairs)
    assert lm.padding == {"real": sum(map(len, pairs)), "computed": 2 * max(map(len, pairs))}


def test_bad_calls_are_refused(lm):
    cache = lm.prefix_cache([lm.prompt_ids("prefix")])
    with pytest.raises(ValueError, match="at least one prompt token"):
        lm.response_logprobs_after(cache, [Pair([], _ids(lm, " y"))])
    with pytest.raises(ValueError, match="2 prefix rows for 1 pairs"):
        lm.response_logprobs_after(cache, [Pair(_ids(lm, " x"), _ids(lm, " y"))], rows=[0, 0])
    with pytest.raises(ValueError, match="at least one prefix"):
        lm.prefix_cache([])


def test_out_of_memory_retries_in_halves(lm):
    prefix = lm.prompt_ids("An example that every target shares.")
    pairs = [Pair(_ids(lm, f" Query number {k}?"), _ids(lm, " An answer" + " more" * k)) for k in range(6)]
    cache = lm.prefix_cache([prefix])
    want = lm.response_logprobs_after(cache, pairs)
    backbone = lm.model.model
    real = backbone.forward
    limit = 3 * max(len(p) for p in pairs)

    def forward(*args, **kwargs):
        if kwargs["input_ids"].numel() > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (fake)")
        return real(*args, **kwargs)

    backbone.forward = forward
    got = lm.response_logprobs_after(cache, pairs)
    assert lm.oom.halvings >= 1
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
