"""Shared fixtures: a tiny randomly initialised Llama with a small BPE tokenizer (no weights, no network),
an isolated cache folder for every test, and the embedded models for the slow integration tests."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_model(folder, *, vocab_size: int = 512, hidden: int = 32, layers: int = 2, seed: int = 0,
                     chat_template: bool = True):
    """Write a tiny Llama (random weights) and a byte-level BPE tokenizer with a ChatML template to ``folder``.

    ``chat_template=False``: a base model's tokenizer instead, GPT-2 style (``<|endoftext|>`` is BOS and
    EOS, no pad token, no chat template), as Superfiltering's GPT-2 and Llama/Qwen base models have.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from datawinnow.data import load

    texts = [f"{r.prompt}\n{r.output}" for r in load("bundled:alpaca_en_demo")[:300]]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    if chat_template:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                       pad_token="<|endoftext|>", unk_token="<unk>")
        fast.chat_template = CHATML
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                       unk_token="<unk>")
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=2048, tie_word_embeddings=False,
                         bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder holding a tiny random Llama + tokenizer, loadable wherever a model name is accepted."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory):
    """The tiny random Llama with a template-less, GPT-2-style tokenizer (a base model)."""
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-base"), chat_template=False))


@pytest.fixture()
def tiny_lm(tiny_model_dir):
    """The tiny model as a datawinnow CausalLM (fp32, CPU)."""
    from datawinnow.backends import CausalLM

    return CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=256)


@pytest.fixture()
def expected_auto():
    """(device type, torch dtype) that ``auto`` should pick on this machine, read from the hardware and
    DATAWINNOW_AUTO_DTYPE directly (not through datawinnow): tests of ``auto`` assert this."""
    import torch

    forced = os.environ.get("DATAWINNOW_AUTO_DTYPE", "").strip().lower()
    on_cuda = torch.cuda.is_available()
    if forced:
        dtype = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                 "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}[forced]
    elif on_cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        flags: set[str] = set()
        if os.path.exists("/proc/cpuinfo"):
            with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
                flags = next((set(l.split(":", 1)[1].split()) for l in fh if l.startswith("flags")), set())
        dtype = torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & flags else torch.float32
    return ("cuda" if on_cuda else "cpu"), dtype


@pytest.fixture(autouse=True)
def _one_thread(request):
    """Tests on tiny models run one torch thread: several times faster on a small or shared CPU (no
    OpenMP spin-waiting on matrices too small to split). Slow tests on the embedded models keep all."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder; the dense embedded model is shared through a symlink."""
    from pathlib import Path

    shared = Path(os.path.expanduser("~")) / ".cache" / "datawinnow" / "models"
    cache = tmp_path_factory.mktemp("dw-cache")
    shared.mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(shared, target_is_directory=True)
    monkeypatch.setenv("DATAWINNOW_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def smollm2():
    """The embedded SmolLM2-135M-Instruct (for slow integration tests only)."""
    from datawinnow.backends import CausalLM

    return CausalLM.load("smollm2", device="cpu", max_length=256)


@pytest.fixture(scope="session")
def minilm():
    """The embedded all-MiniLM-L6-v2 (for slow integration tests only)."""
    from datawinnow.backends import Embedder

    return Embedder.load("minilm", device="cpu")
