"""Generated answers keep a token added with --new-token; control tokens (BOS/EOS/PAD, the template's) go."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from datawinnow.backends.decoding import control_token_ids, decode_generated


@pytest.fixture()
def tokenizer(tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.add_tokens(["<sep>"], special_tokens=True)  # as `datawinnow train --new-token <sep>` adds it
    return tok


def test_added_token_survives_and_control_tokens_go(tokenizer):
    tok = tokenizer
    sep = tok.convert_tokens_to_ids("<sep>")
    im_start, im_end, pad = (tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"))
    body = tok.encode("one <sep> two <sep> three", add_special_tokens=False)
    assert body.count(sep) == 2
    row = [im_start] + body + [im_end, pad, pad]  # a finished sequence in a padded batch
    assert decode_generated(tok, [row]) == ["one <sep> two <sep> three"]
    assert tok.decode(row, skip_special_tokens=True).strip() == "one  two  three"  # what skip_special_tokens did
    assert control_token_ids(tok) == {im_start, im_end, pad, tok.unk_token_id}
    # a padded batch as a tensor: one answer ends early
    import torch

    batch = torch.tensor([body + [im_end], [sep, im_end] + [pad] * (len(body) - 1)])
    assert decode_generated(tok, batch) == ["one <sep> two <sep> three", "<sep>"]


def test_template_control_tokens_go_even_when_not_named_special(tokenizer):
    tok = tokenizer
    tok.add_tokens(["<|eot|>"], special_tokens=True)                  # a template's end-of-turn token
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}<|eot|>{% endfor %}"
    eot, sep = tok.convert_tokens_to_ids("<|eot|>"), tok.convert_tokens_to_ids("<sep>")
    assert eot in control_token_ids(tok) and sep not in control_token_ids(tok)
    row = tok.encode("a <sep> b", add_special_tokens=False) + [eot]
    assert decode_generated(tok, [row]) == ["a <sep> b"]


def test_evaluation_answers_keep_the_new_token(tiny_model_dir):
    from datawinnow.backends import CausalLM
    from datawinnow.data.record import Dataset, Record
    from datawinnow.evaluate.generate import GenerationParams, generate_cached
    from datawinnow.runtime.context import Context

    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32")
    lm.tokenizer.add_tokens(["<sep>"], special_tokens=True)
    lm.model.resize_token_embeddings(len(lm.tokenizer), mean_resizing=False)
    sep = lm.tokenizer.convert_tokens_to_ids("<sep>")
    lm.model.generation_config.sequence_bias = [[[sep], 100.0]]  # a model that has learnt to write <sep>
    items = Dataset([Record(id="q", instruction="List three things.", output="one <sep> two")])
    answers, _ = generate_cached(lm, items, params=GenerationParams(max_new_tokens=3),
                                 ctx=Context(model=lm, use_cache=False, progress=False))
    assert answers == ["<sep><sep><sep>"]
