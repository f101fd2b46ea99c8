"""Backend pieces that need no weights: dtype choice, prompt rendering and the system-prompt policy."""

from __future__ import annotations

import pytest
import torch

from datawinnow.backends import device as dev
from datawinnow.backends.causal_lm import length_sorted_batches
from datawinnow.data import Record
from datawinnow.data.prompts import PromptRenderer, system_from_cli

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
    none = PromptRenderer(smol_tokenizer, system_from_cli("none")).prompt(rec)
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
