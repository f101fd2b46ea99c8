"""The DELIFT kernel's block path (many examples' prefixes and their targets per forward pass) against the
previous per-example path and the per-pair reference."""

from __future__ import annotations

import numpy as np
import pytest

from datawinnow.data import load
from datawinnow.kernels import utility_kernel
from datawinnow.kernels.utility import UtilityTokens, logprobs_after_prefix, logprobs_after_prefixes, utility_pair_reference

from test_delift_kernels import short_records, warm_lm  # noqa: F401 - fixtures


@pytest.mark.parametrize("budget", [None, 400])  # auto: one group; 400: many groups, mixed-prefix row batches
def test_prefixes_batched_equal_one_prefix_at_a_time(warm_lm, short_records, budget):  # noqa: F811
    tok = UtilityTokens(warm_lm)
    examples, targets = short_records[:5], short_records[:7]
    jobs = [(tok.example(ex), [p for p in tok.parts_after(ex, targets) if p is not None]) for ex in examples]
    got = logprobs_after_prefixes(warm_lm, jobs, batch_tokens=budget)
    for (prefix, parts), lps in zip(jobs, got):
        want = logprobs_after_prefix(warm_lm, prefix, parts, batch_size=2)
        assert len(lps) == len(want) == len(parts)
        for a, b in zip(lps, want):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode", ["dense", "sparse"])
def test_block_kernel_equals_per_example_path(warm_lm, short_records, mode):  # noqa: F811
    ds, n = short_records, len(short_records)
    nb = np.array([[(i + 1) % n, (i + 3) % n] for i in range(n)]) if mode == "sparse" else None
    kw = dict(mode=mode, neighbour_idx=nb, use_cache=False, progress=False, block_size=3)
    old = utility_kernel(warm_lm, ds, ds, per_example=True, batch_size=3, **kw)
    new = utility_kernel(warm_lm, ds, ds, batch_tokens=500, **kw)
    a = old.matrix.toarray() if mode == "sparse" else np.asarray(old.matrix)
    b = new.matrix.toarray() if mode == "sparse" else np.asarray(new.matrix)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    np.testing.assert_allclose(new.base, old.base, rtol=0, atol=1e-6)
    assert new.info["pairs_from_scratch"] == old.info["pairs_from_scratch"]
    i, j = 2, (2 + 3) % n  # a pair both modes score
    assert abs(b[j, i] - utility_pair_reference(warm_lm, ds[i], ds[j])) < 1e-5


def test_block_kernel_with_merged_boundaries(warm_lm):  # noqa: F811
    ds = load("bundled:alpaca_en_demo")[:4]
    from datawinnow.data.record import Record

    ex = [Record(id=f"e{k}", instruction=f"Say {k}", output=f"Answer {k}   ") for k in range(2)]  # trailing spaces
    old = utility_kernel(warm_lm, ds, ex, per_example=True, use_cache=False, progress=False)
    new = utility_kernel(warm_lm, ds, ex, use_cache=False, progress=False)
    np.testing.assert_allclose(np.asarray(new.matrix), np.asarray(old.matrix), rtol=0, atol=1e-5)
    assert new.info["pairs_from_scratch"] == old.info["pairs_from_scratch"]


def test_block_kernel_resumes_by_block(warm_lm, short_records, monkeypatch):  # noqa: F811
    import datawinnow.kernels.utility as U

    calls = []
    real = U.logprobs_after_prefixes

    def counting(lm, jobs, **kw):
        calls.append(len(jobs))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while computing the second block (examples 2-3)
        return real(lm, jobs, **kw)

    monkeypatch.setattr(U, "logprobs_after_prefixes", counting)
    with pytest.raises(KeyboardInterrupt):
        utility_kernel(warm_lm, short_records, short_records, block_size=2, progress=False)
    assert calls == [2, 2]  # one call per block of two examples
    calls.clear()
    monkeypatch.setattr(U, "logprobs_after_prefixes", lambda lm, jobs, **k: (calls.append(len(jobs)), real(lm, jobs, **k))[1])
    full = utility_kernel(warm_lm, short_records, short_records, block_size=2, progress=False)
    assert calls == [2, 1]  # block 0 came from the store
    ref = utility_kernel(warm_lm, short_records, short_records, progress=False, use_cache=False, per_example=True)
    np.testing.assert_allclose(np.asarray(full.matrix), np.asarray(ref.matrix), rtol=0, atol=1e-5)
