"""IFD against an independent from-scratch computation on a tiny model: both variants, padding and batching,
a pair that needs truncation (both losses over the same response span), IterIT's rescoring, and the loss
cache shared by the variants.

The reference below uses only the tokenizer and a plain transformers forward pass over full logits; its
start-token rule and truncation are re-implemented here from their documentation, not imported.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import datawinnow
from datawinnow.backends import CausalLM
from datawinnow.backends.causal_lm import truncate_pair
from datawinnow.data import Dataset, Record
from datawinnow.runtime.context import Context
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


def with_start(tok, ids: list[int]) -> list[int]:
    """The documented rule: BOS (else EOS) first, not repeated when the text already starts with it."""
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return ids if ids[:1] == [start] else [start] + ids


def reference_ifd(lm: CausalLM, prompt_text: str, empty_text: str, response_text: str, max_length: int):
    """(L(y|x), L(y), span length): the conditioned pair truncated by hand (the response keeps
    max(L - |prompt|, L // 2) tokens, the prompt its start token and its end), the unconditioned pass
    over exactly the same response tokens."""
    tok = lm.tokenizer
    p = with_start(tok, tok(prompt_text, add_special_tokens=False)["input_ids"])
    r = tok(response_text, add_special_tokens=False)["input_ids"]
    if len(p) + len(r) > max_length:
        n_resp = min(len(r), max(max_length - len(p), max_length // 2))
        n_tail = max_length - n_resp - 1
        p, r = p[:1] + p[len(p) - n_tail:], r[:n_resp]
    u = with_start(tok, tok(empty_text, add_special_tokens=False)["input_ids"])
    return reference_loss(lm, p, r), reference_loss(lm, u, r), len(r)


def chatml_prompt(rec) -> str:
    return f"<|im_start|>user\n{rec.prompt}<|im_end|>\n<|im_start|>assistant\n"


EMPTY_TEXT = {"bare": "", "template": "<|im_start|>assistant\n"}  # the tiny model's ChatML template


@pytest.fixture()
def records():
    # mixed lengths so that batches need padding
    return datawinnow.load("bundled:self_instruct_seed_tasks")[:8]


def long_record() -> Record:
    """A record whose prompt and response both overflow a 96-token window."""
    ds = datawinnow.load("bundled:alpaca_en_demo")
    by_len = sorted(ds, key=lambda r: -len(r.output))
    return Record(id="long", instruction=" ".join(r.instruction for r in by_len[:6]), output=by_len[0].output)


@pytest.mark.parametrize("variant,empty", [("loss_ratio", "bare"), ("ppl_ratio", "template")])
def test_ifd_matches_hand_computation(tiny_lm, records, variant, empty):
    expected = []
    for rec in records:
        lc, lu, _ = reference_ifd(tiny_lm, chatml_prompt(rec), EMPTY_TEXT[empty], rec.output, tiny_lm.max_length)
        expected.append((lc, lu, lc / lu if variant == "loss_ratio" else math.exp(lc) / math.exp(lu)))
    for batch_size in (1, 8):
        table = datawinnow.score(records, "ifd", params={"variant": variant},
                                 ctx=Context(model=tiny_lm, batch_size=batch_size, progress=False, use_cache=False))
        np.testing.assert_allclose(table.parts["loss_conditioned"], [e[0] for e in expected], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(table.parts["loss_unconditioned"], [e[1] for e in expected], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(table.score, [e[2] for e in expected], rtol=1e-5)
    assert table.info["empty_prompt"] == empty


@pytest.mark.parametrize("variant,empty", [("loss_ratio", "bare"), ("ppl_ratio", "template")])
def test_truncated_pair_scores_the_same_span_in_both_passes(tiny_model_dir, variant, empty):
    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=96)
    rec = long_record()
    lc, lu, span = reference_ifd(lm, chatml_prompt(rec), EMPTY_TEXT[empty], rec.output, 96)
    n_response = len(lm.tokenizer(rec.output, add_special_tokens=False)["input_ids"])
    assert span == 48 < n_response  # the prompt is long too: the response keeps half the window
    table = datawinnow.score(Dataset([rec, *datawinnow.load("bundled:self_instruct_seed_tasks")[:3]]), "ifd",
                             params={"variant": variant},
                             ctx=Context(model=lm, batch_size=4, progress=False, use_cache=False))
    assert table.parts["n_tokens"][0] == span
    assert table.parts["loss_conditioned"][0] == pytest.approx(lc, rel=1e-5)
    assert table.parts["loss_unconditioned"][0] == pytest.approx(lu, rel=1e-5)
    assert table.score[0] == pytest.approx(ifd_value(lc, lu, variant), rel=1e-5)
    # what the independent truncation of the unconditioned pass used to score: 95 response tokens, not 48
    u = with_start(lm.tokenizer, lm.tokenizer(EMPTY_TEXT[empty], add_special_tokens=False)["input_ids"])
    r_all = lm.tokenizer(rec.output, add_special_tokens=False)["input_ids"]
    assert abs(reference_loss(lm, u, r_all[:96 - len(u)]) - lu) > 1e-3


def test_iterit_rescoring_uses_the_aligned_span(tiny_model_dir):
    from datawinnow.train.iterit import ifd_score_fn

    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=96)
    recs = Dataset([long_record(), *datawinnow.load("bundled:self_instruct_seed_tasks")[:2]])
    got = ifd_score_fn(lm, recs, batch_size=2, progress=False)([0, 2])
    for k, i in enumerate([0, 2]):
        lc, lu, _ = reference_ifd(lm, chatml_prompt(recs[i]), EMPTY_TEXT["template"], recs[i].output, 96)
        assert got[k] == pytest.approx(math.exp(lc - lu), rel=1e-5)


def test_variants_share_cached_losses(tiny_lm, records, monkeypatch):
    calls = []
    real = CausalLM.response_loss
    monkeypatch.setattr(CausalLM, "response_loss", lambda self, pairs: (calls.append(len(pairs)), real(self, pairs))[1])
    ctx = Context(model=tiny_lm, batch_size=4, progress=False)

    def run(**params):
        calls.clear()
        return datawinnow.score(records, "ifd", params=params, ctx=ctx)

    first = run(variant="loss_ratio")  # auto: bare
    assert first.info["computed"] == 8 and first.info["passes"] == {"conditioned": 8, "bare": 8} and sum(calls) == 16
    same = run(variant="ppl_ratio", empty_prompt="bare")  # another variant, the same two losses
    assert same.info["computed"] == 0 and same.info["cached"] == 8 and calls == []
    np.testing.assert_allclose(same.score, np.exp(first.parts["loss_conditioned"] - first.parts["loss_unconditioned"]))
    iterit = run(variant="ppl_ratio")  # auto: template; L(y|x) is reused, only the template pass runs
    assert iterit.info["passes"] == {"conditioned": 0, "template": 8} and sum(calls) == 8
    np.testing.assert_array_equal(iterit.parts["loss_conditioned"], first.parts["loss_conditioned"])
    for params in ({"variant": "loss_ratio"}, {"variant": "ppl_ratio"}, {"variant": "loss_ratio", "empty_prompt": "template"}):
        again = run(**params)
        assert again.info["computed"] == 0 and calls == []
    np.testing.assert_array_equal(run(variant="loss_ratio").score, first.score)


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
    # keep_head: the start token survives a cut prompt
    head = truncate_pair(p, r, 256, keep_head=1)
    assert head.prompt == [100] + p[-127:] and head.response == r[:128]


def test_ifd_value_formulas():
    assert ifd_value(1.0, 2.0, "loss_ratio") == 0.5
    assert ifd_value(1.0, 2.0, "ppl_ratio") == pytest.approx(math.exp(-1.0))


def test_empty_response_is_a_clear_error(tiny_lm):
    from datawinnow.errors import DataError

    ds = Dataset([Record(id="e1", instruction="Say nothing", output="  ")])
    with pytest.raises(DataError, match="record 'e1' has an empty response"):
        datawinnow.score(ds, "ifd", ctx=Context(model=tiny_lm, progress=False))
