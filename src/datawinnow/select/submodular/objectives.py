"""Facility-location objectives on a similarity kernel, as stateful gain oracles.

Orientation (SPEC section 3): ``s[i, j]``, row ``i`` is the point being represented, column ``j`` a
candidate; the selected set ``A`` is a set of columns. Similarities must be non-negative (the
maximum over an empty set is 0).

- :class:`FacilityLocation`: ``f(A) = sum_i max_{j in A} s[i, j]``.
- :class:`FacilityLocationMutualInformation` (submodlib's FL1MI, the form DELIFT's code calls):
  ``I(A; Q) = sum_i min(max_{j in A} s[i, j], eta * max_{q in Q} s_Q[i, q])``.
- :class:`FacilityLocationConditionalGain`:
  ``f(A | P) = sum_i max(max_{j in A} s[i, j] - nu * max_{p in P} s_P[i, p], 0)``.

All three are one computation: with the current coverage ``c_i`` (the best similarity of row ``i``
to the selection so far), a per-row cap ``t_i`` and a per-row floor ``b_i``, the marginal gain of
candidate ``j`` is ``sum_i max(min(s[i, j], t_i) - max(c_i, b_i), 0)``. FL has no cap and floor 0;
FLMI caps row ``i`` at ``eta * max_q s_Q[i, q]``; FLCG starts the coverage at ``nu * max_p s_P[i, p]``.
(Proof for FLMI: ``min(max(c, s), t) - min(c, t) = max(min(s, t) - c, 0)`` when ``c <= t`` and 0
otherwise; for FLCG: ``max(max(c, s) - b, 0) - max(c - b, 0) = max(s - max(c, b), 0)``.)

Internally the kernel is held *candidate-major* (row ``j`` of the stored matrix is column ``j`` of
``s``), so evaluating one candidate reads one contiguous row. Pass ``transposed=True`` when the
array you have is already candidate-major (the kernel store writes it that way; a memory-mapped
``.npy`` is then used in place without a copy). Dense kernels are numpy arrays or memmaps
(float32 recommended; float16 storage is read as float32), sparse ones any ``scipy.sparse`` matrix
where a missing entry means similarity 0 (a k-NN graph).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ...errors import ConfigError

CHUNK_ELEMENTS = 1 << 22  # dense candidates are evaluated in blocks of about this many entries


def _is_sparse(m: Any) -> bool:
    import scipy.sparse as sp

    return sp.issparse(m)


def candidate_major(kernel: Any, transposed: bool) -> Any:
    """The kernel with one row per candidate: CSR for sparse input, a C-ordered float array otherwise."""
    if _is_sparse(kernel):
        m = kernel.tocsr() if transposed else kernel.T.tocsr()
        if m.dtype not in (np.float32, np.float64):
            m = m.astype(np.float32)
        m.sum_duplicates()
        return m
    if isinstance(kernel, np.memmap) and transposed and kernel.flags.c_contiguous:
        return kernel  # used in place
    arr = np.asarray(kernel)
    if arr.ndim != 2:
        raise ConfigError(f"a kernel must be a 2-D matrix, got shape {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return np.ascontiguousarray(arr if transposed else arr.T)


def _work_dtype(cm: Any) -> np.dtype:
    return np.dtype(np.float64) if cm.dtype == np.float64 else np.dtype(np.float32)


def _check_nonnegative(cm: Any, what: str) -> None:
    if _is_sparse(cm):
        low = cm.data.min() if cm.nnz else 0.0
    else:
        step = max(1, CHUNK_ELEMENTS // max(1, cm.shape[1]))
        low = min((float(np.min(cm[s:s + step])) for s in range(0, cm.shape[0], step)), default=0.0)
    if np.isnan(low):
        raise ConfigError(f"the {what} contains NaN")
    if low < 0:
        raise ConfigError(f"the {what} has negative entries (min {low:.4g}); facility location needs similarities "
                          ">= 0 (rescale first, e.g. similarity=minmax or clip)")


def _per_row_max(cm: Any, n_rows: int) -> np.ndarray:
    """max over candidates of a candidate-major matrix, per represented row (0 where a row has no entry)."""
    if cm.shape[0] == 0:
        raise ConfigError("the reference set (target or existing data) is empty")
    if _is_sparse(cm):
        out = np.zeros(n_rows, dtype=np.float64)
        coo = cm.tocoo()
        np.maximum.at(out, coo.col, coo.data)
        return out
    out = np.full(n_rows, -np.inf)
    step = max(1, CHUNK_ELEMENTS // max(1, n_rows))
    for s in range(0, cm.shape[0], step):
        out = np.maximum(out, np.max(cm[s:s + step], axis=0))
    return out


def _check_rows(aux_cm: Any, kernel: Any, transposed: bool, what: str) -> None:
    rows = kernel.shape[1] if transposed else kernel.shape[0]
    if aux_cm.shape[1] != rows:
        raise ConfigError(f"{what} covers {aux_cm.shape[1]} represented rows, the kernel {rows}")


class Objective:
    """A facility-location-type objective with its selection state.

    ``gains(idx)`` returns the marginal gains of candidates ``idx`` (all when None) given the current
    selection, ``add(j)`` adds candidate ``j`` and returns its gain, ``value`` is f(selection),
    ``reset()`` empties the selection. Optimizers use nothing else.
    """

    name = "objective"

    def __init__(self, kernel: Any, *, transposed: bool = False, cap: np.ndarray | None = None,
                 floor: np.ndarray | None = None):
        self.C = candidate_major(kernel, transposed)
        self.sparse = _is_sparse(self.C)
        _check_nonnegative(self.C, "kernel")
        self.n, self.n_rows = int(self.C.shape[0]), int(self.C.shape[1])
        dt = _work_dtype(self.C)
        self.dtype = dt
        self._kernel_tensor = None
        self.cap = None if cap is None else np.asarray(cap, dtype=dt)
        self.floor = np.zeros(self.n_rows, dtype=dt) if floor is None else np.maximum(np.asarray(floor, dtype=dt), 0)
        for name, vec in (("cap", self.cap), ("floor", self.floor)):
            if vec is not None and vec.shape != (self.n_rows,):
                raise ConfigError(f"{name} must have one entry per kernel row ({self.n_rows}), got {vec.shape}")
        self._floor_sum = float(np.sum(self.floor, dtype=np.float64))
        self.reset()

    # --------------------------------------------------------------- state
    def reset(self) -> None:
        import torch

        self.cover = self.floor.copy()
        self.selected: list[int] = []
        self._torch_dtype = torch.float64 if self.dtype == np.float64 else torch.float32
        self._cover_t = torch.from_numpy(self.cover)  # shares memory with self.cover
        self._cap_t = None if self.cap is None else torch.from_numpy(self.cap)

    @property
    def value(self) -> float:
        return float(np.sum(self.cover, dtype=np.float64) - self._floor_sum)

    def evaluate(self, picks) -> float:
        """f(picks) from scratch (does not touch the current state)."""
        saved, saved_sel, saved_t = self.cover, self.selected, self._cover_t
        try:
            self.reset()
            for j in picks:
                self.add(int(j))
            return self.value
        finally:
            self.cover, self.selected, self._cover_t = saved, saved_sel, saved_t

    # --------------------------------------------------------------- gains
    def gains(self, idx: np.ndarray | None = None) -> np.ndarray:
        """Marginal gains (float64) of candidates ``idx`` (an int array; None: all, in order)."""
        if self.sparse:
            return self._sparse_gains(idx)
        import torch

        step = max(1, CHUNK_ELEMENTS // max(1, self.n_rows))
        if idx is None:  # views of the kernel: element-wise work goes to a new tensor
            out = [self._dense_block_gains(self._kernel_t[s:min(s + step, self.n)], owned=False)
                   for s in range(0, self.n, step)]
        else:  # gathered copies: element-wise work in place
            idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64))
            out = [self._dense_block_gains(self._kernel_t.index_select(0, idx_t[s:s + step]), owned=True)
                   for s in range(0, len(idx_t), step)]
        return np.concatenate(out) if out else np.zeros(0)

    @property
    def _kernel_t(self):
        """The dense kernel as a torch tensor sharing its memory (memmaps included)."""
        if self._kernel_tensor is None:
            import torch

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # read-only memmaps: we never write through them
                self._kernel_tensor = torch.from_numpy(np.asarray(self.C))
        return self._kernel_tensor

    def _dense_block_gains(self, t, owned: bool) -> np.ndarray:
        # The element-wise part runs in torch (multi-threaded, in place where the block is a copy);
        # the row sums in numpy, whose per-row pairwise summation does not depend on how many rows a
        # block has, so a candidate's gain is bit-for-bit the same whether it is evaluated alone
        # (lazy) or with all others (naive).
        import torch

        if t.dtype != self._torch_dtype:
            t, owned = t.to(self._torch_dtype), True
        if self.cap is not None:
            t = torch.minimum(t, self._cap_t)
            t.sub_(self._cover_t)
        elif owned:
            t.sub_(self._cover_t)
        else:
            t = t - self._cover_t
        t.clamp_min_(0)
        return t.numpy().sum(axis=1).astype(np.float64)

    def _sparse_gains(self, idx: np.ndarray | None) -> np.ndarray:
        sub = self.C if idx is None else self.C[np.asarray(idx, dtype=np.int64)]
        if sub.shape[0] == 0:
            return np.zeros(0)
        cols = sub.indices
        vals = sub.data.astype(self.dtype, copy=True)
        if self.cap is not None:
            np.minimum(vals, self.cap[cols], out=vals)
        vals -= self.cover[cols]
        np.maximum(vals, 0, out=vals)
        starts = sub.indptr[:-1]
        out = np.zeros(sub.shape[0], dtype=np.float64)
        nonempty = np.diff(sub.indptr) > 0
        if vals.size:
            sums = np.add.reduceat(vals.astype(np.float64), np.minimum(starts, vals.size - 1))
            out[nonempty] = sums[nonempty]
        return out

    def add(self, j: int, gain: float | None = None) -> float:
        """Add candidate ``j`` to the selection; returns its marginal gain (pass it when just computed)."""
        j = int(j)
        if not 0 <= j < self.n:
            raise IndexError(f"candidate {j} outside [0, {self.n})")
        if gain is None:
            gain = float(self.gains(np.array([j]))[0])
        if self.sparse:
            lo, hi = self.C.indptr[j], self.C.indptr[j + 1]
            cols = self.C.indices[lo:hi]
            vals = self.C.data[lo:hi].astype(self.dtype)
            if self.cap is not None:
                vals = np.minimum(vals, self.cap[cols])
            self.cover[cols] = np.maximum(self.cover[cols], vals)
        else:
            row = np.asarray(self.C[j], dtype=self.dtype)
            if self.cap is not None:
                row = np.minimum(row, self.cap)
            np.maximum(self.cover, row, out=self.cover)
        self.selected.append(j)
        return gain


class FacilityLocation(Objective):
    """f(A) = sum_i max_{j in A} s[i, j] (DELIFT stage 1, instruction tuning)."""

    name = "facility_location"

    def __init__(self, kernel: Any, *, transposed: bool = False):
        super().__init__(kernel, transposed=transposed)


class FacilityLocationMutualInformation(Objective):
    """I(A; Q) = sum_i min(max_{j in A} s[i, j], eta * max_{q in Q} s_Q[i, q]) (submodlib's FL1MI; DELIFT stage 2).

    ``query_kernel[i, q]``: similarity of represented row ``i`` to query ``q`` (``[queries, rows]``
    when ``query_transposed``, which defaults to ``transposed``).
    """

    name = "flmi"

    def __init__(self, kernel: Any, query_kernel: Any, *, eta: float = 1.0, transposed: bool = False,
                 query_transposed: bool | None = None):
        if eta < 0:
            raise ConfigError(f"flmi: eta must be >= 0, got {eta}")
        qm = candidate_major(query_kernel, transposed if query_transposed is None else query_transposed)
        _check_rows(qm, kernel, transposed, "flmi: the query kernel")
        _check_nonnegative(qm, "query kernel")
        self.eta = float(eta)
        super().__init__(kernel, transposed=transposed, cap=self.eta * _per_row_max(qm, qm.shape[1]))


class FacilityLocationConditionalGain(Objective):
    """f(A | P) = sum_i max(max_{j in A} s[i, j] - nu * max_{p in P} s_P[i, p], 0) (DELIFT stage 3).

    ``private_kernel[i, p]``: similarity of represented row ``i`` to already-learned sample ``p``
    (``[P, rows]`` when ``private_transposed``, which defaults to ``transposed``).
    """

    name = "flcg"

    def __init__(self, kernel: Any, private_kernel: Any, *, nu: float = 1.0, transposed: bool = False,
                 private_transposed: bool | None = None):
        if nu < 0:
            raise ConfigError(f"flcg: nu must be >= 0, got {nu}")
        pm = candidate_major(private_kernel, transposed if private_transposed is None else private_transposed)
        _check_rows(pm, kernel, transposed, "flcg: the existing-data kernel")
        _check_nonnegative(pm, "existing-data kernel")
        self.nu = float(nu)
        super().__init__(kernel, transposed=transposed, floor=self.nu * _per_row_max(pm, pm.shape[1]))
