"""IFD against an independent hand computation on a tiny model, both variants, padding and batching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.backends import CausalLM
from datawinnow.backends.causal_lm import truncate_pair
from datawinnow.scores.base import Context
from datawinnow.scores.ifd import ifd_value


def reference_loss(lm: CausalLM, prompt_ids: list[int], response_ids: list[int]) -> float:
    """Mean -log softmax of the response tokens, from the full logits of one unpadded sequence."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        logits = lm.model(input_ids=ids).logits[0].double()
    logp = torch.log_softmax(logits, dim=-1)
    start = len(prompt_ids)
    picked = [logp[start - 1 + t, tok].item() for t, tok in enumerate(response_ids)]
    return -sum(picked) / len(picked)


@pytest.fixture()
def records():
    # mixed lengths so that batches need padding
    return datawinnow.load("bundled:self_instruct_seed_tasks")[:8]


def hand_losses(lm: CausalLM, rec, empty: str) -> tuple[float, float]:
    tok = lm.tokenizer
    prompt_text = tok.apply_chat_template([{"role": "user", "content": rec.prompt}], tokenize=False,
                                          add_generation_prompt=True)
    p = tok(prompt_text, add_special_tokens=False)["input_ids"]
    r = tok(rec.output, add_special_tokens=False)["input_ids"]
    pair = truncate_pair(p, r, lm.max_length)
    lc = reference_loss(lm, pair.prompt, pair.response)
    if empty == "bare":
        u = [tok.bos_token_id]
    else:  # the template with only the assistant turn; for this ChatML template:
        u = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    upair = truncate_pair(u, r, lm.max_length)
    lu = reference_loss(lm, upair.prompt, upair.response)
    return lc, lu


@pytest.mark.parametrize("variant,empty", [("loss_ratio", "bare"), ("ppl_ratio", "template")])
def test_ifd_matches_hand_computation(tiny_lm, records, variant, empty):
    expected = []
    for rec in records:
        lc, lu = hand_losses(tiny_lm, rec, empty)
        expected.append((lc, lu, lc / lu if variant == "loss_ratio" else math.exp(lc) / math.exp(lu)))
    for batch_size in (1, 8):
        table = datawinnow.score(records, "ifd", params={"variant": variant},
                                 ctx=Context(model=tiny_lm, batch_size=batch_size, progress=False, use_cache=False))
        np.testing.assert_allclose(table.parts["loss_conditioned"], [e[0] for e in expected], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(table.parts["loss_unconditioned"], [e[1] for e in expected], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(table.score, [e[2] for e in expected], rtol=1e-5)
    assert table.info["empty_prompt"] == empty


def test_batch_of_one_equals_batch_of_eight(tiny_lm, records):
    pairs = [tiny_lm.record_pair(r) for r in records]
    one = [tiny_lm.response_logprobs([p])[0] for p in pairs]
    eight = tiny_lm.response_logprobs(pairs)
    for a, b in zip(one, eight):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_truncation_keeps_response_half_and_prompt_tail(tiny_lm):
    p, r = list(range(100, 400)), list(range(1000, 1300))
    pair = truncate_pair(p, r, 256)
    assert len(pair) == 256 and pair.response == r[:128] and pair.prompt == p[-128:]
    short = truncate_pair(p[:10], r, 256)
    assert short.prompt == p[:10] and short.response == r[:246]


def test_ifd_value_formulas():
    assert ifd_value(1.0, 2.0, "loss_ratio") == 0.5
    assert ifd_value(1.0, 2.0, "ppl_ratio") == pytest.approx(math.exp(-1.0))


def test_empty_response_is_a_clear_error(tiny_lm):
    from datawinnow.data import Dataset, Record
    from datawinnow.errors import DataError

    ds = Dataset([Record(id="e1", instruction="Say nothing", output="  ")])
    with pytest.raises(DataError, match="record 'e1' has an empty response"):
        datawinnow.score(ds, "ifd", ctx=Context(model=tiny_lm, progress=False))
