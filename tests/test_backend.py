"""Backend pieces: dtype choice, prompt rendering, the system-prompt policy, and the float32 LM head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datawinnow.backends import device as dev
from datawinnow.backends.causal_lm import length_sorted_batches
from datawinnow.data import Record
from datawinnow.data.prompts import PromptRenderer
from datawinnow.runtime.describe import system_from_text

# SmolLM2-135M-Instruct's chat template (from its GGUF metadata): it adds a persona when there is no system turn
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture()
def smol_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = SMOLLM2_TEMPLATE
    return tok


def test_dtype_auto(monkeypatch):
    monkeypatch.delenv("DATAWINNOW_AUTO_DTYPE", raising=False)  # the hardware rule itself, not the override
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert dev.pick_dtype("auto", cpu) == torch.float32
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert dev.pick_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert dev.pick_dtype(None, cpu) == torch.bfloat16
    assert dev.pick_dtype("fp32", cpu) == torch.float32


def test_bad_dtype_and_device():
    from datawinnow.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        dev.pick_dtype("fp8", torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown device 'tpu9'"):
        dev.pick_device("tpu9")


def test_length_sorted_batches():
    assert length_sorted_batches([3, 9, 1, 9, 5], 2) == [[1, 3], [4, 0], [2]]


def test_system_prompt_policy(smol_tokenizer):
    rec = Record(id="a", instruction="Hi", output="Hello")
    default = PromptRenderer(smol_tokenizer, None).prompt(rec)
    assert default == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                       "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    none = PromptRenderer(smol_tokenizer, system_from_text("none")).prompt(rec)
    assert none == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    custom = PromptRenderer(smol_tokenizer, "Be terse.").prompt(rec)
    assert custom.startswith("<|im_start|>system\nBe terse.<|im_end|>") and "SmolLM" not in custom
    # IterIT's empty prompt: the template with only the assistant turn (SmolLM2 adds its persona)
    assert PromptRenderer(smol_tokenizer, None).empty_prompt().endswith("<|im_start|>assistant\n")
    assert PromptRenderer(smol_tokenizer, None).end_of_turn() == "<|im_end|>\n"


def test_record_system_turn_is_kept_by_default(smol_tokenizer):
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
    rec = Record(id="m", instruction="U", output="A", messages=msgs)
    assert PromptRenderer(smol_tokenizer, None).prompt(rec).startswith("<|im_start|>system\nS<|im_end|>")


def test_alpaca_template_without_chat_template(smol_tokenizer):
    smol_tokenizer.chat_template = None
    r = PromptRenderer(smol_tokenizer, None)
    assert r.prompt(Record(id="a", instruction="Add", input="1 2", output="3")).endswith(
        "### Instruction:\nAdd\n\n### Input:\n1 2\n\n### Response:\n")
    assert r.prompt(Record(id="b", instruction="Hi", output="x")).endswith("### Instruction:\nHi\n\n### Response:\n")


def test_head_and_log_softmax_run_in_float32_on_a_bf16_model(tiny_model_dir):
    from datawinnow.backends import CausalLM
    from datawinnow.backends.causal_lm import Fp32Head, to_numpy
    from datawinnow.kernels.utility import logprobs_after_prefix

    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="bf16", max_length=128)
    assert lm.dtype == torch.bfloat16
    pair = lm.pair("Name three colours.", "Red, green and blue are three colours.")
    ids = torch.tensor([pair.prompt + pair.response])
    with torch.no_grad():
        hidden = lm.model.model(input_ids=ids).last_hidden_state[0]  # bf16, after the final norm
        w = lm.model.lm_head.weight
        exact = torch.log_softmax(hidden.double() @ w.double().T, -1)  # the head in float64, by hand
        rounded = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), -1)  # the bf16 head's logits
    pos = torch.arange(len(pair.prompt) - 1, len(ids[0]) - 1)
    tgt = torch.tensor(pair.response)
    want = exact[pos, tgt].numpy()
    got = lm.response_logprobs([pair])[0]
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.abs(rounded[pos, tgt].numpy() - want).max() > 10 * np.abs(got - want).max()  # what bf16 logits cost
    # next-token read-outs and the DELIFT kernel's prefix path use the same float32 head
    nxt = lm.next_token_logprobs([pair.prompt])
    assert nxt.dtype == torch.float32
    with torch.no_grad():  # the backbone over the prompt alone (bf16 rounding depends on the sequence length)
        last = lm.model.model(input_ids=torch.tensor([pair.prompt])).last_hidden_state[0, -1]
    np.testing.assert_allclose(nxt[0].numpy(), torch.log_softmax(last.double() @ w.detach().double().T, -1).numpy(),
                               atol=2e-5)
    (via_prefix,) = logprobs_after_prefix(lm, pair.prompt[:5], [(pair.prompt[5:], pair.response)])
    np.testing.assert_allclose(via_prefix, want, atol=0.05)  # bf16 attention over a cached prefix: other rounding
    assert to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32


def test_fp32_head_soft_capping_and_wrapped_heads():
    from types import SimpleNamespace

    from datawinnow.backends.causal_lm import Fp32Head

    torch.manual_seed(0)
    head = torch.nn.Linear(4, 6, bias=True).to(torch.bfloat16)
    h = torch.randn(3, 4, dtype=torch.bfloat16)
    plain = Fp32Head(head).logits(h)
    assert plain.dtype == torch.float32
    torch.testing.assert_close(plain, h.float() @ head.weight.float().T + head.bias.float())
    capped = Fp32Head(head, SimpleNamespace(final_logit_softcapping=2.0)).logits(h)
    torch.testing.assert_close(capped, 2.0 * torch.tanh(plain / 2.0))
    wrapped = torch.nn.Sequential(head)  # not a Linear: run as is, then widened
    assert Fp32Head(wrapped).logits(h).dtype == torch.float32
    lp = Fp32Head(head).token_logprobs(h, torch.tensor([0, 5, 2]), chunk=2)
    torch.testing.assert_close(lp, torch.log_softmax(plain, -1)[torch.arange(3), torch.tensor([0, 5, 2])])
