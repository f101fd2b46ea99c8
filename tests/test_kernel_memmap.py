"""Dense kernels above the size threshold are read-only memmaps equal to the in-RAM kernel; nothing is left on disk."""

from __future__ import annotations

import os

import numpy as np
import pytest

from datawinnow.cache import cache_root
from datawinnow.errors import ConfigError
from datawinnow.kernels import KernelStore, build_blocked, embedding_kernel
from datawinnow.kernels.memmap import parse_bytes, threshold
from datawinnow.kernels.similarity import to_similarity
from datawinnow.select.submodular import FacilityLocation, lazy_greedy


def values(n: int = 37, m: int = 23) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, m)).astype(np.float32)


def build(memmap_bytes, store=None):
    ref = values()

    def compute(s, e, advance):
        return ref[s:e] * 2.0, (e - s) * ref.shape[1]

    return build_blocked(store, shape=ref.shape, block_size=5, compute=compute, sparse=False, progress=False,
                         memmap_bytes=memmap_bytes)


def scratch_files() -> list[str]:
    folder = cache_root() / "kernels" / "scratch"
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_threshold_from_argument_environment_and_default(monkeypatch):
    monkeypatch.delenv("DATAWINNOW_MEMMAP_BYTES", raising=False)
    assert threshold() == 1 << 30
    monkeypatch.setenv("DATAWINNOW_MEMMAP_BYTES", "512M")
    assert threshold() == 512 << 20
    assert threshold(1000) == 1000 and threshold("1.5G") == 3 << 29 and parse_bytes("2KiB") == 2048
    monkeypatch.setenv("DATAWINNOW_MEMMAP_BYTES", "lots")
    with pytest.raises(ConfigError, match="DATAWINNOW_MEMMAP_BYTES must be a number of bytes"):
        threshold()


def test_above_the_threshold_a_read_only_memmap_equal_to_ram():
    in_ram = build(None)  # 37 x 23 float32: far below 1 GiB
    assert type(in_ram) is np.ndarray and in_ram.flags.writeable
    mapped = build(0)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(np.asarray(mapped), in_ram)
    np.testing.assert_array_equal(in_ram, values() * 2.0)
    assert scratch_files() == []  # the scratch file is unlinked as soon as it is mapped
    with pytest.raises(ValueError, match="read-only"):
        mapped[0, 0] = 1.0
    size = in_ram.nbytes
    assert isinstance(build(size - 1), np.memmap) and type(build(size)) is np.ndarray  # strictly above


def test_store_kernels_are_memory_mapped_files(tmp_path):
    store = KernelStore("test", {"n": 37}, root=tmp_path)
    kernel = build(None, store)
    assert isinstance(kernel, np.memmap) and not kernel.flags.writeable
    np.testing.assert_array_equal(np.asarray(kernel), values() * 2.0)
    assert (store.dir / "kernel.npy").exists() and not list(store.dir.glob(".kernel.*"))
    again = KernelStore("test", {"n": 37}, root=tmp_path).load()
    assert isinstance(again, np.memmap) and not again.flags.writeable


def test_embedding_kernel_and_similarity_follow_the_environment(monkeypatch):
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((30, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    in_ram = embedding_kernel(emb, emb)
    monkeypatch.setenv("DATAWINNOW_MEMMAP_BYTES", "1K")
    mapped = embedding_kernel(emb, emb)
    assert type(in_ram) is np.ndarray and isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), in_ram)
    (sim_mapped,), _ = to_similarity([values()], "minmax")
    monkeypatch.delenv("DATAWINNOW_MEMMAP_BYTES")
    (sim_ram,), _ = to_similarity([values()], "minmax")
    assert isinstance(sim_mapped, np.memmap) and type(sim_ram) is np.ndarray
    np.testing.assert_array_equal(np.asarray(sim_mapped), sim_ram)
    picks = [lazy_greedy(FacilityLocation(k, transposed=True), 10).picks for k in (mapped, in_ram)]
    assert picks[0] == picks[1]
    assert scratch_files() == []
