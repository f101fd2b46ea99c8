"""What the benchmarks share: which model runs (``--model``, ``--tiny``), the machine's peak measured in the
same run, and the achieved FLOP/s of a timed section.

- Model: :func:`add_model_options` adds ``--model PATH`` (any local model folder, a hub id, or ``smollm2``,
  the embedded SmolLM2-135M-Instruct, the default) and, where a benchmark has an overhead-bound regime,
  ``--tiny``: a random Llama built from a config (hidden size 64, 2 layers, 4 heads, the byte-level BPE
  tokenizer with 512 tokens of ``tests/conftest.py``) in a temporary folder. On such a model per-call
  overhead dominates, as it does for a 135M-1B model on a GPU. :func:`load_lm` loads either.
- Peak: :func:`measure_peak` times square matmuls in the model's dtype on the model's device (2048 on a
  CPU, 8192 on a GPU; best of a few after a warm-up), 2 n^3 FLOPs each.
- FLOPs: :class:`FlopCounter` counts the real (unpadded) tokens that enter the model's backbone while it
  is active (a forward pre-hook; cached prefixes and generated tokens count once, as computed). A
  forward pass costs 2 x N x tokens, N the non-embedding parameters (input embedding and LM head left
  out, as are attention's length-squared terms: the usual approximation, so achieved figures are a
  lower bound). ``backward=1`` adds a backward pass through frozen weights (activation gradients only:
  LoRA), ``backward=2`` a full one (weight gradients too).

    from _common import FlopCounter, add_model_options, describe_peak, load_lm, measure_peak
"""

from __future__ import annotations

import argparse
import atexit
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = {"hidden": 64, "layers": 2}


# ------------------------------------------------------------------------------------------ models
def add_model_options(ap: argparse.ArgumentParser, *, tiny: bool = True, default: str = "smollm2") -> None:
    ap.add_argument("--model", default=default,
                    help="model to run: a local model folder, a hub id, or smollm2 (the embedded SmolLM2-135M-Instruct)")
    if tiny:
        ap.add_argument("--tiny", action="store_true",
                        help="overhead-bound regime: a random Llama (hidden 64, 2 layers, 512-token BPE) built "
                             "from a config instead of --model")


def tiny_model_dir() -> str:
    """A folder holding a random tiny Llama and its tokenizer (removed at exit)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_model

    folder = tempfile.mkdtemp(prefix="dw-bench-tiny-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    build_tiny_model(folder, hidden=TINY["hidden"], layers=TINY["layers"])
    return folder


def model_name(args: argparse.Namespace) -> str:
    """The model the options name: a tiny model's folder (built on first use) or ``--model``."""
    if getattr(args, "tiny", False):
        if not getattr(args, "_tiny_dir", None):
            args._tiny_dir = tiny_model_dir()
        return args._tiny_dir
    return args.model


def load_lm(args: argparse.Namespace, *, device: str = "auto", dtype: str = "auto", max_length: int = 512):
    """The :class:`~datawinnow.backends.CausalLM` the options name (a tiny model runs in fp32 on the CPU)."""
    from datawinnow.backends import CausalLM

    if getattr(args, "tiny", False):
        device, dtype = "cpu", "fp32"
    return CausalLM.load(model_name(args), device=device, dtype=dtype, max_length=max_length)


def describe_model(lm) -> str:
    name = "tiny random Llama (hidden 64, 2 layers)" if "dw-bench-tiny-" in lm.identity else \
        lm.identity.split("|")[0].split("@")[0]
    return f"{name}, {non_embedding_params(lm.model) / 1e6:.2f}M non-embedding parameters, {lm.dtype} on {lm.device}"


# ------------------------------------------------------------------------------------------- peak
def measure_peak(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", *, size: int | None = None,
                 repeats: int = 5, min_seconds: float = 2.0) -> float:
    """FLOP/s of the fastest square matmul of ``dtype`` on ``device``: after one warm-up, at least ``repeats``
    of them and at least ``min_seconds`` of them (the best one is what the hardware can do when it is
    not shared; on a busy machine later parts of a run can still beat it)."""
    dev = torch.device(device)
    n = size or (8192 if dev.type == "cuda" else 2048)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    best, k, start = float("inf"), 0, time.perf_counter()
    while k <= repeats or time.perf_counter() - start < min_seconds:
        _sync(dev)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(dev)
        if k:
            best = min(best, time.perf_counter() - t0)
        k += 1
    return 2.0 * n ** 3 / best


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    from datawinnow.backends.device import cpu_has_fast_bf16

    out = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, " \
          f"fast bf16: {cpu_has_fast_bf16()}"
    if torch.cuda.is_available():
        out += f"; GPU {torch.cuda.get_device_name()}"
    return out


def describe_peak(lm=None, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                  show_machine: bool = True) -> float:
    """Measure the peak for ``lm``'s dtype and device (or those given), print it (with the machine), return it."""
    dtype = dtype or (lm.dtype if lm is not None else torch.float32)
    device = device or (lm.device if lm is not None else "cpu")
    peak = measure_peak(dtype, device)
    if show_machine:
        print(f"machine: {machine()}")
    print(f"measured peak: {peak / 1e9:,.1f} GFLOP/s ({str(dtype).replace('torch.', '')} matmul on {device})")
    return peak


def time_paths(lm, paths: dict, rounds: int) -> tuple[dict, dict, dict, dict]:
    """Each of ``paths`` (label -> a no-argument callable running one whole pass) timed as the best of
    ``rounds`` alternated rounds, with the FLOPs of that best pass, its last result and the backbone's
    padding counts of its last pass: (best seconds, flops, results, padding), each keyed by label."""
    best: dict = {}
    flops: dict = {}
    results: dict = {}
    padding: dict = {}
    for _ in range(rounds):
        for label, run in paths.items():
            lm.padding.update(real=0, computed=0)
            with FlopCounter(lm) as fc:
                t0 = time.perf_counter()
                out = run()
                s = time.perf_counter() - t0
            if s < best.get(label, float("inf")):
                best[label], flops[label] = s, fc.flops
            results[label], padding[label] = out, dict(lm.padding)
    return best, flops, results, padding


def flops_line(flops: float, seconds: float, peak: float) -> str:
    """'X GFLOP/s, Y% of peak' for ``flops`` done in ``seconds``."""
    rate = flops / seconds if seconds > 0 else 0.0
    return f"{rate / 1e9:,.2f} GFLOP/s, {100 * rate / peak:.2f}% of peak"


# ------------------------------------------------------------------------------------------- flops
def _unwrap(model):
    model = getattr(model, "model", model) if not isinstance(model, torch.nn.Module) else model  # a CausalLM
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def backbone_of(model) -> torch.nn.Module:
    base = _unwrap(model)
    return getattr(base, base.base_model_prefix)


def non_embedding_params(model) -> int:
    """Parameters of the backbone less the input embedding (the LM head is outside the backbone)."""
    base = _unwrap(model)
    body = sum(p.numel() for p in backbone_of(base).parameters())
    return body - base.get_input_embeddings().weight.numel()


class FlopCounter:
    """Counts tokens entering the backbone of ``model`` (a CausalLM or a transformers/peft model) while active.

    ``tokens``: real tokens (attention mask 1, when a 2-D mask is passed); ``positions``: all positions
    computed (padding included). ``flops``: 2 x N x tokens x (1 + backward).
    """

    def __init__(self, model, *, backward: float = 0.0):
        self.module = backbone_of(model)
        self.params = non_embedding_params(model)
        self.backward = float(backward)
        self.tokens = self.positions = 0
        self._handle = None

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs.get("inputs_embeds")
            if ids is None:
                return
            ids = ids[..., 0]
        width = ids.shape[-1]
        self.positions += ids.numel()
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and mask.shape[-1] >= width:
            self.tokens += int(mask[:, -width:].sum())
        else:
            self.tokens += ids.numel()

    def __enter__(self) -> "FlopCounter":
        self.tokens = self.positions = 0
        self._handle = self.module.register_forward_pre_hook(self._count, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def flops(self) -> float:
        return 2.0 * self.params * self.tokens * (1.0 + self.backward)
