"""From raw kernel values to non-negative similarities (what facility location needs).

- ``minmax`` (DELIFT's code, the default): ``(u - min) / (max - min)`` over *all* matrices of one
  objective together (the pool kernel and the target / existing-data kernel share one scale, so
  e.g. FLCG with the existing set equal to the pool gives exactly zero gain). Harmful examples
  (negative utility) still get a positive similarity. A constant kernel maps to all ones.
- ``clip`` (the paper): ``max(u, 0)``.
- ``cosine01`` (DELIFT (SE)): ``(s + 1) / 2`` for cosine similarities in [-1, 1].

Sparse kernels are transformed on their stored entries; a missing entry stays "no similarity" (0).
Dense kernels are transformed in chunks; memory-mapped ones into a new ``.npy`` beside them, others into
an array in RAM or, above the size threshold of :mod:`.memmap`, a scratch memmap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..cache import mkstemp_umask
from ..errors import ConfigError
from .memmap import dense_array, finish

TRANSFORMS = ("minmax", "clip")
CHUNK = 1 << 22


def _is_sparse(m: Any) -> bool:
    import scipy.sparse as sp

    return sp.issparse(m)


def _chunks(m: np.ndarray):
    step = max(1, CHUNK // max(1, m.shape[1] if m.ndim == 2 else 1))
    for s in range(0, m.shape[0], step):
        yield slice(s, min(s + step, m.shape[0]))


def value_range(mats: Sequence[Any]) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for m in mats:
        if _is_sparse(m):
            if m.nnz:
                lo, hi = min(lo, float(m.data.min())), max(hi, float(m.data.max()))
        else:
            for sl in _chunks(m):
                block = np.asarray(m[sl], dtype=np.float32)
                if block.size:
                    lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    if np.isnan(lo) or np.isnan(hi):
        raise ConfigError("the kernel contains NaN")
    return lo, hi


def map_values(m: Any, fn: Callable[[np.ndarray], np.ndarray], out_path: str | os.PathLike | None = None) -> Any:
    """``fn`` applied to every (stored) entry; dense results go to ``out_path`` as a memmap when given."""
    if _is_sparse(m):
        out = m.copy().astype(np.float32)
        out.data = fn(out.data.astype(np.float32)).astype(np.float32)
        return out
    if out_path is None:  # in RAM, or a scratch memmap above the size threshold
        out = dense_array(m.shape, np.float32)
        for sl in _chunks(m):
            out[sl] = fn(np.asarray(m[sl], dtype=np.float32))
        return finish(out)
    out_path = Path(out_path)
    if out_path.exists():
        return np.load(out_path, mmap_mode="r")
    fd, tmp = mkstemp_umask(prefix=f".{out_path.name}.", suffix=".npy", dir=out_path.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=m.shape)
        for sl in _chunks(m):
            out[sl] = fn(np.asarray(m[sl], dtype=np.float32))
        out.flush()
        del out
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return np.load(out_path, mmap_mode="r")


def to_similarity(mats: Sequence[Any], how: str, out_dirs: Sequence[str | os.PathLike | None] | None = None
                  ) -> tuple[list[Any], dict[str, Any]]:
    """Transform raw utility matrices jointly with ``minmax`` or ``clip``; returns (matrices, info).

    ``out_dirs``: for each dense matrix, a folder (its kernel store) where the transformed matrix is
    kept as a memory-mapped ``sim-*.npy`` (named by the transform and, for minmax, the joint range).
    """
    from ..cache import stable_hash

    if how not in TRANSFORMS:
        raise ConfigError(f"similarity must be one of {', '.join(TRANSFORMS)}, got '{how}'")
    dirs = list(out_dirs) if out_dirs is not None else [None] * len(mats)
    if how == "clip":
        paths = [None if d is None else Path(d) / "sim-clip.npy" for d in dirs]
        return [map_values(m, lambda x: np.maximum(x, 0), p) for m, p in zip(mats, paths)], {"similarity": "clip"}
    lo, hi = value_range(mats)
    paths = [None if d is None else Path(d) / f"sim-minmax-{stable_hash([lo, hi], 10)}.npy" for d in dirs]
    if not np.isfinite(lo):  # every matrix empty
        return list(mats), {"similarity": "minmax", "min": None, "max": None}
    span = hi - lo
    if span <= 0:
        fn = (lambda x: np.ones_like(x))
    else:
        fn = (lambda x: (x - np.float32(lo)) / np.float32(span))
    info = {"similarity": "minmax", "min": lo, "max": hi}
    return [map_values(m, fn, p) for m, p in zip(mats, paths)], info


def cosine01(x: np.ndarray) -> np.ndarray:
    """(s + 1) / 2, clipped to [0, 1] against rounding (DELIFT (SE))."""
    return np.clip((x + 1.0) * 0.5, 0.0, 1.0)
