"""Facility-location objectives and greedy optimizers: golden 5x5 cases worked out by hand, and
naive == lazy on random kernels (dense, sparse, memory-mapped)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from datawinnow.errors import ConfigError
from datawinnow.select.submodular import (
    FacilityLocation,
    FacilityLocationConditionalGain,
    FacilityLocationMutualInformation,
    lazy_greedy,
    maximize,
    naive_greedy,
    stochastic_greedy,
)

# s[i, j]: row i is the represented point, column j the candidate (values exact in float32)
K = np.array([
    #  j0    j1    j2    j3    j4
    [1.00, 0.25, 0.00, 0.50, 0.00],  # i0
    [0.25, 1.00, 0.50, 0.00, 0.50],  # i1
    [0.00, 0.50, 1.00, 0.75, 0.00],  # i2
    [0.50, 0.00, 0.25, 1.00, 0.00],  # i3
    [0.00, 0.25, 0.00, 0.00, 1.00],  # i4
], dtype=np.float32)


def run_all(make, k):
    """The same objective under naive and lazy greedy, dense and sparse: all must agree."""
    out = []
    for kernelize in (lambda m: m, sp.csr_matrix):
        for opt in ("naive", "lazy"):
            out.append(maximize(make(kernelize), k, optimizer=opt))
    first = out[0]
    for r in out[1:]:
        assert r.picks == first.picks
        assert r.gains == pytest.approx(first.gains, abs=1e-6)
    return first


def test_facility_location_golden():
    # Step 1, column sums: j0 1.75, j1 2.0, j2 1.75, j3 2.25, j4 1.5 -> pick j3 (gain 2.25);
    #   coverage c = column j3 = [.5, 0, .75, 1, 0].
    # Step 2, sum_i max(s[i, j] - c_i, 0): j0 .5+.25 = .75, j1 1+.25 = 1.25, j2 .5+.25 = .75,
    #   j4 .5+1 = 1.5 -> pick j4 (1.5); c = [.5, .5, .75, 1, 1].
    # Step 3: j0 .5, j1 .5, j2 .25 -> tie j0/j1 goes to the smaller index: j0 (.5); c = [1, .5, .75, 1, 1].
    # Step 4: j1 .5, j2 .25 -> j1 (.5).  Step 5: j2 (.25).  f(all) = 5 = sum of row maxima.
    r = run_all(lambda f: FacilityLocation(f(K)), 5)
    assert r.picks == [3, 4, 0, 1, 2]
    assert r.gains == pytest.approx([2.25, 1.5, 0.5, 0.5, 0.25])
    assert r.value == pytest.approx(5.0)


QUERY = np.array([  # s_Q[i, q]
    [0.50, 0.00],
    [0.00, 0.25],
    [1.00, 0.00],
    [0.25, 0.75],
    [0.00, 0.00],
], dtype=np.float32)


def test_flmi_golden():
    # eta = 1: cap t_i = max_q s_Q[i, q] = [.5, .25, 1, .75, 0]; the gain uses min(s[i, j], t_i):
    #   capped columns: j0 [.5,.25,0,.5,0] = 1.25, j1 [.25,.25,.5,0,0] = 1.0, j2 [0,.25,1,.25,0] = 1.5,
    #   j3 [.5,0,.75,.75,0] = 2.0, j4 [0,.25,0,0,0] = .25 -> pick j3 (2.0); c = [.5, 0, .75, .75, 0].
    # Step 2: j0 .25 (row 1), j1 .25 (row 1), j2 .25 (row 1) + .25 (row 2) = .5, j4 .25 -> j2 (.5);
    #   c = [.5, .25, 1, .75, 0] = t: every row is saturated.
    # Step 3: all gains 0; the greedy does not stop: j0 (index order), gain 0.  I = sum t = 2.5.
    r = run_all(lambda f: FacilityLocationMutualInformation(f(K), f(QUERY), eta=1.0), 3)
    assert r.picks == [3, 2, 0]
    assert r.gains == pytest.approx([2.0, 0.5, 0.0])
    assert r.value == pytest.approx(2.5)


PRIVATE = np.array([[1.0], [0.0], [0.5], [0.5], [0.0]], dtype=np.float32)  # s_P[i, p], one known sample


def test_flcg_golden():
    # nu = 1: floor b_i = max_p s_P[i, p] = [1, 0, .5, .5, 0]; gain of j = sum_i max(s[i, j] - max(c_i, b_i), 0):
    #   j0: row1 .25 = .25; j1: row1 1 + row4 .25 = 1.25; j2: row1 .5 + row2 .5 = 1.0;
    #   j3: row2 .25 + row3 .5 = .75; j4: row1 .5 + row4 1 = 1.5 -> pick j4 (1.5); c = [1, .5, .5, .5, 1].
    # Step 2: j0 0, j1 row1 .5 = .5, j2 row2 .5 = .5, j3 row2 .25 + row3 .5 = .75 -> j3 (.75); c = [1,.5,.75,1,1].
    # Step 3: j0 0, j1 .5, j2 .25 -> j1 (.5).  f(A | P) = 1.5 + .75 + .5 = 2.75.
    r = run_all(lambda f: FacilityLocationConditionalGain(f(K), f(PRIVATE), nu=1.0), 3)
    assert r.picks == [4, 3, 1]
    assert r.gains == pytest.approx([1.5, 0.75, 0.5])
    assert r.value == pytest.approx(2.75)


def test_flcg_with_the_whole_pool_as_p_gains_nothing():
    # P = every candidate: max_p s[i, p] >= max_{j in A} s[i, j] for any A, so f(A | P) = 0.
    rng = np.random.default_rng(3)
    s = rng.random((30, 30)).astype(np.float32)
    for kernel in (s, sp.csr_matrix(np.where(s > 0.7, s, 0))):
        for opt in ("naive", "lazy", "stochastic"):
            r = maximize(FacilityLocationConditionalGain(kernel, kernel), 10, optimizer=opt)
            assert r.gains == [0.0] * 10 and r.value == 0.0
            assert len(set(r.picks)) == 10  # the budget is still filled


def test_flmi_with_eta_zero_gains_nothing():
    rng = np.random.default_rng(4)
    s, q = rng.random((25, 25)).astype(np.float32), rng.random((25, 6)).astype(np.float32)
    r = lazy_greedy(FacilityLocationMutualInformation(s, q, eta=0.0), 8)
    assert r.gains == [0.0] * 8 and r.value == 0.0
    assert r.picks == list(range(8))  # all ties: index order


def _random_kernels(seed: int, n: int = 80, m: int = 70):
    rng = np.random.default_rng(seed)
    dense = rng.random((m, n)).astype(np.float32) ** 3  # m represented rows, n candidates
    sparse = sp.csr_matrix(np.where(rng.random((m, n)) < 0.15, dense, 0))
    aux = rng.random((m, 5)).astype(np.float32) ** 2
    return dense, sparse, aux


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_naive_and_lazy_greedy_are_identical(seed):
    dense, sparse, aux = _random_kernels(seed)
    makers = [
        lambda k: FacilityLocation(k),
        lambda k: FacilityLocationMutualInformation(k, aux, eta=0.8),
        lambda k: FacilityLocationConditionalGain(k, aux, nu=1.0),
    ]
    for kernel in (dense, sparse):
        for make in makers:
            a, b = naive_greedy(make(kernel), 25), lazy_greedy(make(kernel), 25)
            assert a.picks == b.picks
            assert a.gains == b.gains  # bit for bit: the same per-candidate computation
            assert b.evaluations < a.evaluations
            assert a.gains == sorted(a.gains, reverse=True)  # submodular: gains never grow


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stochastic_greedy_reaches_the_bound(seed):
    dense, sparse, _ = _random_kernels(seed, n=200, m=150)
    eps = 0.1
    for kernel in (dense, sparse):
        best = naive_greedy(FacilityLocation(kernel), 20).value
        r = stochastic_greedy(FacilityLocation(kernel), 20, epsilon=eps, seed=seed)
        assert r.value >= (1 - 1 / math.e - eps) * best
        assert r.info["sample_size"] == math.ceil(200 / 20 * math.log(1 / eps))
        again = stochastic_greedy(FacilityLocation(kernel), 20, epsilon=eps, seed=seed)
        assert again.picks == r.picks  # seeded


def test_memory_mapped_candidate_major_kernel(tmp_path):
    dense, _, _ = _random_kernels(7, n=60, m=60)
    path = tmp_path / "k.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(60, 60))
    mm[:] = dense.T  # stored row j = column j (candidate-major)
    mm.flush()
    loaded = np.load(path, mmap_mode="r")
    obj = FacilityLocation(loaded, transposed=True)
    assert obj.C is loaded  # used in place, no copy
    assert lazy_greedy(obj, 15).picks == naive_greedy(FacilityLocation(dense), 15).picks
    half = np.load(path, mmap_mode="r").astype(np.float16)  # float16 storage is read as float32
    assert lazy_greedy(FacilityLocation(half, transposed=True), 5).picks[:1] == naive_greedy(FacilityLocation(dense), 5).picks[:1]


def test_bad_kernels_raise_clear_errors():
    with pytest.raises(ConfigError, match="negative entries"):
        FacilityLocation(K - 0.5)
    with pytest.raises(ConfigError, match="query kernel covers 3 represented rows, the kernel 5"):
        FacilityLocationMutualInformation(K, QUERY[:3])
    with pytest.raises(ConfigError, match="eta must be >= 0"):
        FacilityLocationMutualInformation(K, QUERY, eta=-1)
    with pytest.raises(ConfigError, match="budget 9 is outside"):
        lazy_greedy(FacilityLocation(K), 9)
    with pytest.raises(ConfigError, match="unknown optimizer 'greedy'"):
        maximize(FacilityLocation(K), 2, optimizer="greedy")
    with pytest.raises(ConfigError, match="epsilon must be in"):
        stochastic_greedy(FacilityLocation(K), 2, epsilon=1.5)
