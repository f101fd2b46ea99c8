"""Where a dense kernel lives: in RAM when small, memory-mapped on disk above a size threshold.

A dense kernel of ``n_rows x n_cols`` entries takes ``n_rows * n_cols * itemsize`` bytes (40 GB for a
float32 kernel at n = 100,000). Above the threshold (default 1 GiB; ``$DATAWINNOW_MEMMAP_BYTES``, or
the ``memmap_bytes`` argument of the kernel builders; a number of bytes, optionally with a K/M/G
suffix) it is written into a memory-mapped ``.npy`` file instead, so the operating system pages it
in and out as the optimizer reads it, and the caller gets a read-only :class:`numpy.memmap`.

Kernels built through a :class:`~datawinnow.kernels.store.KernelStore` are always files in the store
(``kernel.npy``, read back memory-mapped). Kernels built without a store (``use_cache=False``, the
embedding kernel) go to a scratch file under ``<cache root>/kernels/scratch/``, removed from the folder
as soon as it is created: the open mapping keeps the data until the array is dropped, and nothing is
left behind even if the process is killed.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from ..cache import cache_root, mkstemp_umask
from ..errors import ConfigError

ENV = "DATAWINNOW_MEMMAP_BYTES"
DEFAULT_BYTES = 1 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

log = logging.getLogger(__name__)


def parse_bytes(text: str | int, what: str = ENV) -> int:
    """``1073741824``, ``512M``, ``1G``, ``1.5GiB`` as a number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), flags=re.IGNORECASE)
        if m is None:
            raise ConfigError(f"{what} must be a number of bytes (e.g. 1073741824, 512M or 1G), got {text!r}")
        value = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    if value < 0:
        raise ConfigError(f"{what} must be >= 0, got {text!r}")
    return value


def threshold(memmap_bytes: int | str | None = None) -> int:
    """The size in bytes above which a dense kernel is memory-mapped (argument, else the environment, else 1 GiB)."""
    if memmap_bytes is not None:
        return parse_bytes(memmap_bytes, "memmap_bytes")
    env = os.environ.get(ENV)
    return parse_bytes(env) if env not in (None, "") else DEFAULT_BYTES


def nbytes(shape: tuple[int, ...], dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def scratch_dir() -> Path:
    folder = cache_root() / "kernels" / "scratch"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.info(f"cannot use {folder} for memory-mapped kernels ({e}); using {tempfile.gettempdir()}")
        return Path(tempfile.gettempdir())
    return folder


def dense_array(shape: tuple[int, int], dtype=np.float32, *, memmap_bytes: int | str | None = None) -> np.ndarray:
    """An uninitialised, writable array for a dense kernel: in RAM up to the threshold, else a memmap on a
    scratch file (already unlinked). Pass the filled array through :func:`finish`."""
    if nbytes(shape, dtype) <= threshold(memmap_bytes):
        return np.empty(shape, dtype=dtype)
    fd, tmp = mkstemp_umask(prefix=".kernel-", suffix=".npy", dir=scratch_dir())
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    finally:
        os.unlink(tmp)  # the mapping keeps the data; no name is left to clean up
    log.info(f"dense kernel {shape[0]} x {shape[1]} ({nbytes(shape, dtype) / 2**30:.2f} GiB) memory-mapped")
    return out


def finish(arr: np.ndarray) -> np.ndarray:
    """A filled kernel from :func:`dense_array`: a memmap is flushed and made read-only, an array in RAM kept."""
    if isinstance(arr, np.memmap):
        arr.flush()
        arr.flags.writeable = False
    return arr
