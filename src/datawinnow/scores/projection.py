"""A seeded Rademacher random projection that never holds the whole matrix.

The projection matrix P (dim_in x d, entries +-1) is defined block by block: rows
``[k * CHUNK_ROWS, (k + 1) * CHUNK_ROWS)`` come from ``numpy.random.default_rng([seed, k])``
(random bytes, each byte giving eight signs). Any block can be regenerated on its own, so the
same P is applied to every batch, checkpoint and data set, and memory stays at one block
(CHUNK_ROWS x d float32, 64 MiB at d = 1024) plus the batch being projected.

``project(G)`` returns G @ P / sqrt(d): by Johnson-Lindenstrauss, inner products and norms of
the rows of G are preserved in expectation, with relative error about 1 / sqrt(d). The cost is
dominated by expanding each block to float32, so callers project many rows at once.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

CHUNK_ROWS = 16384

# byte value -> its eight bits as +-1 (most significant bit first)
_SIGNS = np.array([[1.0 if (v >> (7 - k)) & 1 else -1.0 for k in range(8)] for v in range(256)], dtype=np.float32)


class RademacherProjector:
    def __init__(self, dim_in: int, d: int, seed: int = 0):
        if int(d) < 1 or int(d) % 8:
            raise ConfigError(f"projection dimension must be a positive multiple of 8, got {d}")
        if int(dim_in) < 1:
            raise ConfigError(f"projection input dimension must be >= 1, got {dim_in}")
        self.dim_in, self.d, self.seed = int(dim_in), int(d), int(seed)

    def block(self, k: int) -> torch.Tensor:
        """Rows ``[k * CHUNK_ROWS, ...)`` of P as a float32 tensor of +-1."""
        rows = min(CHUNK_ROWS, self.dim_in - k * CHUNK_ROWS)
        rng = np.random.default_rng([self.seed, k])
        bits = rng.integers(0, 256, size=(rows, self.d // 8), dtype=np.uint8)
        return torch.from_numpy(_SIGNS[bits].reshape(rows, self.d))

    def matrix(self) -> torch.Tensor:
        """The whole P (for tests on small inputs)."""
        return torch.cat([self.block(k) for k in range(self.n_blocks)])

    @property
    def n_blocks(self) -> int:
        return (self.dim_in + CHUNK_ROWS - 1) // CHUNK_ROWS

    def project(self, grads: torch.Tensor) -> np.ndarray:
        """[b, dim_in] -> [b, d] float32 (G @ P / sqrt(d))."""
        if grads.dim() != 2 or grads.shape[1] != self.dim_in:
            raise ValueError(f"expected [b, {self.dim_in}] rows, got {tuple(grads.shape)}")
        g = grads.detach().float().cpu()
        out = torch.zeros((g.shape[0], self.d), dtype=torch.float32)
        for k in range(self.n_blocks):
            lo = k * CHUNK_ROWS
            out.addmm_(g[:, lo:lo + CHUNK_ROWS], self.block(k))
        return (out / np.sqrt(self.d)).numpy()
