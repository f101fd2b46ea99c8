"""A seeded Rademacher random projection that need not hold the whole matrix.

The projection matrix P (dim_in x d, entries +-1) is defined block by block: rows
``[k * CHUNK_ROWS, (k + 1) * CHUNK_ROWS)`` come from ``numpy.random.default_rng([seed, k])``
(random bytes, each byte giving eight signs). Any block can be regenerated on its own, so the
same P is applied to every batch, checkpoint and data set, and memory stays at one block
(CHUNK_ROWS x d float32, 64 MiB at d = 1024) plus the batch being projected (unless the whole P
is small enough to keep, see below).

``project(G)`` returns G @ P / sqrt(d): by Johnson-Lindenstrauss, inner products and norms of
the rows of G are preserved in expectation, with relative error about 1 / sqrt(d). It runs on the
device G lives on: the random bytes are drawn on the CPU (so P is the same on every device), moved
(2 MiB per block at d = 1024) and expanded to +-1 on that device. On the CPU the cost is dominated by
expanding each block to float32, so callers project many rows at once; when the whole P fits in
``cache_bytes`` (small LoRA dimensions) the expanded blocks are kept and later passes are one matmul.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import ConfigError

CHUNK_ROWS = 16384
CACHE_BYTES = 256 * 2**20  # keep the expanded P when it is at most this large

_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)  # most significant bit first, as numpy.unpackbits


class RademacherProjector:
    def __init__(self, dim_in: int, d: int, seed: int = 0, *, cache_bytes: int = CACHE_BYTES):
        if int(d) < 1 or int(d) % 8:
            raise ConfigError(f"projection dimension must be a positive multiple of 8, got {d}")
        if int(dim_in) < 1:
            raise ConfigError(f"projection input dimension must be >= 1, got {dim_in}")
        self.dim_in, self.d, self.seed = int(dim_in), int(d), int(seed)
        self.cache = self.dim_in * self.d * 4 <= int(cache_bytes)
        self._blocks: dict[tuple[str, int], torch.Tensor] = {}

    def _bits(self, k: int) -> np.ndarray:
        rows = min(CHUNK_ROWS, self.dim_in - k * CHUNK_ROWS)
        rng = np.random.default_rng([self.seed, k])
        return rng.integers(0, 256, size=(rows, self.d // 8), dtype=np.uint8)

    def block(self, k: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Rows ``[k * CHUNK_ROWS, ...)`` of P as a float32 tensor of +-1 (on ``device``, default the CPU)."""
        dev = torch.device(device if device is not None else "cpu")
        key = (str(dev), k)
        if key in self._blocks:
            return self._blocks[key]
        bits = self._bits(k)
        if dev.type == "cpu":
            unit = torch.from_numpy(np.unpackbits(bits, axis=1))
        else:
            b = torch.from_numpy(bits).to(dev)
            unit = ((b.unsqueeze(-1) >> _SHIFTS.to(dev)) & 1).reshape(bits.shape[0], self.d)
        out = unit.to(torch.float32).mul_(2).sub_(1)
        if self.cache:
            self._blocks[key] = out
        return out

    def matrix(self) -> torch.Tensor:
        """The whole P (for tests on small inputs)."""
        return torch.cat([self.block(k) for k in range(self.n_blocks)])

    @property
    def n_blocks(self) -> int:
        return (self.dim_in + CHUNK_ROWS - 1) // CHUNK_ROWS

    def project_tensor(self, grads: torch.Tensor) -> torch.Tensor:
        """[b, dim_in] -> [b, d] float32 (G @ P / sqrt(d)) on the device ``grads`` lives on."""
        if grads.dim() != 2 or grads.shape[1] != self.dim_in:
            raise ValueError(f"expected [b, {self.dim_in}] rows, got {tuple(grads.shape)}")
        g = grads.detach().float()
        out = torch.zeros((g.shape[0], self.d), dtype=torch.float32, device=g.device)
        for k in range(self.n_blocks):
            lo = k * CHUNK_ROWS
            out.addmm_(g[:, lo:lo + CHUNK_ROWS], self.block(k, g.device))
        return out.div_(float(np.sqrt(self.d)))

    def project(self, grads: torch.Tensor) -> np.ndarray:
        """[b, dim_in] -> [b, d] float32 numpy array (G @ P / sqrt(d)), computed where ``grads`` lives."""
        return self.project_tensor(grads).cpu().numpy()
