"""The on-disk kernel store: kernels built block by block, each block written atomically.

Kernels are stored *candidate-major*: stored row ``j`` is column ``j`` of the similarity matrix
``s[i, j]`` (row ``i`` represented, column ``j`` candidate), which is also how the DELIFT utility
kernel is computed (one in-context example = one candidate, its KV cache reused for every target).
A "row block" of the store is therefore a block of candidates.

Layout under ``<cache root>/kernels/<kind>-<key>/``::

    meta.json                what the key stands for
    block-<start>.npy        a finished dense block: rows [start, start + len) (float32 or float16)
    block-<start>.npz        a finished sparse block: (row, col, value) triples, rows relative to start
    kernel.npy / kernel.npz  the assembled kernel (dense: memory-mapped when read back, whatever its size)
    <name>.npy               side vectors (e.g. the utility kernel's no-example distances)

A run killed at any point loses at most the block in flight; the next run computes only the
missing blocks (and logs how many came from the store). A block or kernel file that does not read
back whole (cut short by a full disk or a copy) counts as missing. Without a store
(``use_cache=False``) the same builder keeps everything in memory.
"""

from __future__ import annotations

import io
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..cache import atomic_save_npy, atomic_write_bytes, atomic_write_json, cache_root, mkstemp_umask, stable_hash
from ..errors import ConfigError
from .memmap import dense_array, finish

STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}

log = logging.getLogger(__name__)


def readable_whole(path: Path) -> bool:
    """Whether an .npy/.npz file reads back complete (its header's shape fits the bytes; every zip member's CRC)."""
    try:
        if path.suffix == ".npy":
            np.load(path, mmap_mode="r")  # raises when the file is shorter than its header says
        else:
            with zipfile.ZipFile(path) as z:
                return z.testzip() is None
        return True
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def storage_dtype(name: str) -> type:
    if name not in STORAGE_DTYPES:
        raise ConfigError(f"kernel storage must be one of {', '.join(STORAGE_DTYPES)}, got '{name}'")
    return STORAGE_DTYPES[name]


class KernelStore:
    """One kernel configuration: ``meta`` (kind, parameters, model identity, data keys) decides the folder."""

    def __init__(self, kind: str, meta: dict[str, Any], root: Path | None = None):
        self.meta = {"kind": kind, **meta, "format": 1}
        self.dir = (root or cache_root()) / "kernels" / f"{kind}-{stable_hash(self.meta)}"

    # ----------------------------------------------------------------- blocks
    def _ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "meta.json").exists():
            atomic_write_json(self.dir / "meta.json", self.meta)

    def done_blocks(self) -> set[int]:
        if not self.dir.exists():
            return set()
        out = set()
        for p in self.dir.iterdir():
            m = re.fullmatch(r"block-(\d+)\.np[yz]", p.name)
            if m and readable_whole(p):
                out.add(int(m.group(1)))
        return out

    def save_dense_block(self, start: int, block: np.ndarray) -> None:
        self._ensure()
        atomic_save_npy(self.dir / f"block-{start:09d}.npy", block)

    def save_sparse_block(self, start: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        self._ensure()
        buf = io.BytesIO()
        np.savez(buf, rows=rows.astype(np.int64), cols=cols.astype(np.int64), vals=vals)
        atomic_write_bytes(self.dir / f"block-{start:09d}.npz", buf.getvalue())

    def _blocks(self, suffix: str) -> list[tuple[int, Path]]:
        return sorted((int(p.name[6:15]), p) for p in self.dir.glob(f"block-*.{suffix}"))

    # ----------------------------------------------------------------- assembled kernels
    def load(self) -> Any | None:
        """The assembled kernel (dense: a read-only memmap; sparse: CSR), or None if not built yet."""
        if (self.dir / "kernel.npy").exists() and readable_whole(self.dir / "kernel.npy"):
            return np.load(self.dir / "kernel.npy", mmap_mode="r")
        if (self.dir / "kernel.npz").exists() and readable_whole(self.dir / "kernel.npz"):
            import scipy.sparse as sp

            return sp.load_npz(self.dir / "kernel.npz").tocsr()
        return None

    def assemble_dense(self, shape: tuple[int, int], dtype: type) -> np.ndarray:
        """Join the dense blocks into ``kernel.npy`` (written to a temporary file, then renamed)."""
        fd, tmp = mkstemp_umask(prefix=".kernel.", suffix=".npy", dir=self.dir)
        os.close(fd)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
            filled = 0
            for start, path in self._blocks("npy"):
                block = np.load(path)
                out[start:start + len(block)] = block
                filled += len(block)
            if filled != shape[0]:
                raise RuntimeError(f"kernel store {self.dir}: blocks cover {filled} of {shape[0]} rows")
            out.flush()
            del out
            os.replace(tmp, self.dir / "kernel.npy")
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        for _, path in self._blocks("npy"):
            path.unlink(missing_ok=True)
        return self.load()

    def assemble_sparse(self, shape: tuple[int, int], dtype: type):
        import scipy.sparse as sp

        rows, cols, vals = [], [], []
        for start, path in self._blocks("npz"):
            with np.load(path) as z:
                rows.append(z["rows"] + start)
                cols.append(z["cols"])
                vals.append(z["vals"].astype(dtype))
        cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dtype=dt))
        m = sp.coo_matrix((cat(vals, dtype), (cat(rows, np.int64), cat(cols, np.int64))), shape=shape).tocsr()
        buf = io.BytesIO()
        sp.save_npz(buf, m, compressed=False)
        atomic_write_bytes(self.dir / "kernel.npz", buf.getvalue())
        for _, path in self._blocks("npz"):
            path.unlink(missing_ok=True)
        return m

    # ----------------------------------------------------------------- side vectors
    def save_vector(self, name: str, vec: np.ndarray) -> None:
        self._ensure()
        atomic_save_npy(self.dir / f"{name}.npy", vec)

    def load_vector(self, name: str) -> np.ndarray | None:
        p = self.dir / f"{name}.npy"
        return np.load(p) if p.exists() else None


def build_blocked(
    store: KernelStore | None,
    *,
    shape: tuple[int, int],
    block_size: int,
    compute: Callable[[int, int, Callable[[int], None]], tuple[Any, int]],
    sparse: bool,
    dtype: type = np.float32,
    progress: bool = True,
    desc: str = "kernel",
    total_units: int | None = None,
    units_in: Callable[[int, int], int] | None = None,
    memmap_bytes: int | str | None = None,
):
    """A candidate-major kernel of ``shape`` built in blocks of ``block_size`` stored rows.

    ``compute(start, end, advance)`` returns the block (dense: an array ``[end - start, shape[1]]``;
    sparse: ``(rows relative to start, cols, values)``) and how many work units (e.g. pairs) it took;
    it may call ``advance(units)`` as it goes, so the progress bar moves within a long block. Finished
    blocks are skipped on a rerun; the progress bar counts units (``units_in(start, end)`` tells how
    many a block holds, so a resumed run starts the bar where it stopped).

    A dense kernel built without a store is held in RAM up to ``memmap_bytes`` (default: 1 GiB or
    ``$DATAWINNOW_MEMMAP_BYTES``), a read-only memmap on a scratch file above it (:mod:`.memmap`); with a
    store it is always the store's memory-mapped ``kernel.npy``.
    """
    import scipy.sparse as sp

    from ..runtime.progress import progress_bar

    if store is not None:
        hit = store.load()
        if hit is not None:
            return hit
    n = shape[0]
    starts = list(range(0, n, block_size))
    done = store.done_blocks() if store is not None else set()
    dense = None if (sparse or store is not None) else dense_array(shape, dtype, memmap_bytes=memmap_bytes)
    triples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = total_units if total_units is not None else n
    reused = sum(s in done for s in starts)
    if store is not None:
        log.info(f"{desc}: {reused} of {len(starts)} blocks from the store, {len(starts) - reused} to compute")
    bar = progress_bar(total, desc, progress, unit="pair" if units_in else "row")
    try:
        for s in starts:
            e = min(s + block_size, n)
            if s in done:
                bar.update(units_in(s, e) if units_in else e - s)
                continue
            moved = [0]

            def advance(k: int) -> None:
                moved[0] += k
                bar.update(k)

            block, units = compute(s, e, advance)
            if sparse:
                r, c, v = block
                v = np.asarray(v, dtype=dtype)
                if store is not None:
                    store.save_sparse_block(s, r, c, v)
                else:
                    triples.append((np.asarray(r) + s, np.asarray(c), v))
            else:
                block = np.asarray(block, dtype=dtype)
                if store is not None:
                    store.save_dense_block(s, block)
                else:
                    dense[s:e] = block
            bar.update(max(units - moved[0], 0))
    finally:
        bar.close()
    if store is not None:
        return store.assemble_sparse(shape, dtype) if sparse else store.assemble_dense(shape, dtype)
    if sparse:
        if not triples:
            return sp.csr_matrix(shape, dtype=dtype)
        r, c, v = (np.concatenate(x) for x in zip(*triples))
        return sp.coo_matrix((v, (r, c)), shape=shape).tocsr()
    return finish(dense)
