"""Choosing the device and dtype: bf16 where the hardware runs it fast, fp32 elsewhere, overridable.

``auto`` is decided by the hardware (see :func:`pick_dtype`) unless the environment variable
``DATAWINNOW_AUTO_DTYPE`` (fp32, bf16 or fp16) says what ``auto`` means: CI on an AVX2-only machine
sets it to bf16 to exercise the paths users on CUDA and newer CPUs get; it changes only ``auto``,
never an explicit ``--dtype``.
"""

from __future__ import annotations

import functools
import os

import torch

from ..errors import ConfigError

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}
AUTO_DTYPE_ENV = "DATAWINNOW_AUTO_DTYPE"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """AMX-BF16 or AVX512-BF16: bf16 matmuls run natively (about 3x faster than fp32 end to end).

    On CPUs without them (AVX2 only), PyTorch emulates bf16 and it is several times *slower* than fp32.
    """
    flags = cpu_flags()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_device(device: str | None = "auto") -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device '{device}' (expected auto, cpu, cuda or cuda:N)") from None
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS (Apple GPU) is not available here; use --device cpu (or auto)")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device '{device}' (expected auto, cpu, cuda or cuda:N)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise ConfigError(f"--device {device}: {why}; use --device cpu (or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {device}: there are {torch.cuda.device_count()} CUDA device(s) "
                              f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return dev


def auto_dtype_override() -> torch.dtype | None:
    """The dtype ``DATAWINNOW_AUTO_DTYPE`` makes ``auto`` resolve to (None when unset or empty)."""
    value = os.environ.get(AUTO_DTYPE_ENV, "").strip().lower()
    if not value:
        return None
    if value not in DTYPES:
        raise ConfigError(f"{AUTO_DTYPE_ENV}={value!r} is not a dtype (expected fp32, bf16 or fp16)")
    return DTYPES[value]


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA (fp16 on GPUs without bf16) and on CPUs with AMX/AVX512-BF16, else fp32;
    ``DATAWINNOW_AUTO_DTYPE`` overrides that choice."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        forced = auto_dtype_override()
        if forced is not None:
            return forced
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}' (expected auto, fp32, bf16 or fp16)")
    return DTYPES[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))
