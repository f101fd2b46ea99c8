"""The local judge on the tiny random Llama: the digit read-out against a hand computation from its logits,
choice-token errors, generation, prompt rendering, and how a judge is chosen (spec, args, context)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from datawinnow.backends.judge import JudgeError, expected_rating, load_judge, reads_probabilities
from datawinnow.backends.judge_local import LocalJudge
from datawinnow.cli_options import add_judge_options, judge_from_args
from datawinnow.errors import ConfigError
from datawinnow.runtime.context import Context

CONVS = [
    [{"role": "system", "content": "You grade answers."}, {"role": "user", "content": "Rate: 2 + 2 = 4. Score 1-6:"}],
    [{"role": "user", "content": "How hard is it to write a sorting function? Answer 1-6."}],
    [{"role": "user", "content": "x"}],
]


def test_digit_readout_equals_hand_expectation(tiny_lm):
    judge = LocalJudge(tiny_lm, batch_size=2)
    digits = ["1", "2", "3", "4", "5", "6"]
    probs = judge.choice_probs(CONVS, digits)
    got = expected_rating(probs, range(1, 7))
    vocab = tiny_lm.tokenizer.get_vocab()
    for conv, p_row, e in zip(CONVS, probs, got):
        # by hand: render with the chat template + generation prompt, one plain forward pass of the HF model,
        # logits at the last position, keep the six digit tokens, softmax over them, sum_k k * p_k
        text = tiny_lm.tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert text.endswith("<|im_start|>assistant\n")
        ids = tiny_lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = tiny_lm.model(input_ids=ids).logits[0, -1].double()
        z = logits[[vocab[d] for d in digits]]
        p = torch.exp(z - z.max())
        p = (p / p.sum()).numpy()
        np.testing.assert_allclose(p_row, p, rtol=1e-5, atol=1e-7)
        assert e == pytest.approx(float((np.arange(1, 7) * p).sum()), rel=1e-6)
        assert p_row.sum() == pytest.approx(1.0)
    assert reads_probabilities(judge)


def test_choice_that_is_not_one_token_is_an_error(tiny_lm):
    judge = LocalJudge(tiny_lm)
    with pytest.raises(JudgeError, match=r"the choice 'definitely not a token' is not a single token"):
        judge.choice_probs(CONVS[:1], ["1", "definitely not a token"])
    with pytest.raises(ConfigError, match="at least one choice"):
        judge.choice_probs(CONVS[:1], [])


def test_long_prompt_keeps_head_and_tail(tiny_lm):
    judge = LocalJudge(tiny_lm, max_length=64)
    conv = [{"role": "user", "content": "HEAD " + "filler text " * 200 + " TAIL"}]
    full = tiny_lm.encode(judge.render(conv))
    ids = judge.prompt_ids(conv)
    assert len(full) > 64 and len(ids) == 64
    assert ids[:32] == full[:32] and ids[32:] == full[-32:]
    assert judge.choice_probs([conv], ["1", "2"]).shape == (1, 2)


def test_raw_template_and_generation(tiny_lm):
    judge = LocalJudge(tiny_lm, template="raw")
    conv = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert judge.render(conv) == "<|im_start|>S\n\nU"
    replies = LocalJudge(tiny_lm).chat(CONVS, max_tokens=3)
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    with pytest.raises(ConfigError, match="judge template must be one of chat, raw"):
        LocalJudge(tiny_lm, template="fancy")


def test_load_judge_and_args(tiny_model_dir, tiny_lm):
    j = load_judge("local", model=tiny_lm)
    assert isinstance(j, LocalJudge) and j.lm is tiny_lm and j.identity.startswith("local:")
    assert load_judge(j) is j
    with pytest.raises(ConfigError, match="takes no --judge-url"):
        load_judge("local", base_url="http://x")
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=tiny_model_dir)
    add_judge_options(p)
    j = judge_from_args(p.parse_args(["--judge", "local", "--judge-template", "raw"]))
    assert isinstance(j, LocalJudge) and j.template == "raw" and tiny_model_dir in j.identity


def test_context_judge_defaults_to_its_own_model(tiny_lm):
    ctx = Context(model=tiny_lm)
    assert isinstance(ctx.judge, LocalJudge) and ctx.judge.lm is tiny_lm
    assert ctx.judge is ctx.judge  # loaded once
    ctx = Context(model=tiny_lm, judge={"kind": "local", "model": None, "template": "raw"})
    assert ctx.judge.lm is tiny_lm and ctx.judge.template == "raw"
