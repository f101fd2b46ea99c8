"""Vectors in score-cache rows: float32 arrays packed exactly as base64 text (a third the size of JSON lists)."""

from __future__ import annotations

import base64

import numpy as np


def pack(vector: np.ndarray) -> str:
    """A 1-D array as base64 of its little-endian float32 bytes (exact for float32 values)."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float32)


def unpack_rows(rows: list[dict], key: str) -> np.ndarray:
    """Stack ``row[key]`` of every row into a float32 matrix [len(rows), d]."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([unpack(r[key]) for r in rows])


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)
