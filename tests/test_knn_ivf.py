"""The approximate k-NN index (faiss IVF): equal to a from-scratch exact search when every list is probed, its
recall on clustered data, rows it finds too few neighbours for, what ``auto`` picks, and the cache key and
manifest of the DELIFT methods that use it."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from datawinnow.backends.embedder import Embedder
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError, MissingDependencyError
from datawinnow.kernels import embedding_kernel, knn, utility_kernel
from datawinnow.kernels.knn import AUTO_APPROX_MIN, IndexPlan, _faiss, default_nlist, plan_index
from datawinnow.params import ParamText
from datawinnow.registry import METHODS
from datawinnow.runtime.context import Context

KNN = sys.modules["datawinnow.kernels.knn"]  # the module (the package exports the function under its name)
needs_faiss = pytest.mark.skipif(_faiss() is None, reason="the IVF index needs faiss")


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def uniform(n: int, d: int, seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, d)))


def clustered(n: int, d: int, clusters: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around ``clusters`` random unit centres (Gaussian noise of norm about ``spread``)."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((clusters, d)))
    return unit(centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, d)) / np.sqrt(d))


def reference(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From scratch, in float64: every cosine, sorted by similarity descending then index ascending."""
    cos = queries.astype(np.float64) @ base.astype(np.float64).T
    idx = np.array([sorted(range(len(base)), key=lambda j: (-cos[r, j], j))[:k] for r in range(len(queries))])
    return idx, np.take_along_axis(cos, idx, axis=1)


def assert_same_neighbours(got: tuple[np.ndarray, np.ndarray], want: tuple[np.ndarray, np.ndarray],
                           tol: float = 1e-5) -> None:
    """``got``'s k neighbours are ``want``'s first k (``want`` has k + 1 columns): equal similarities to float32
    accuracy, and equal indices except among candidates whose similarities tie within ``tol`` (float32 and
    float64 arithmetic may order those either way)."""
    (gi, gs), (wi, ws) = got, want
    k = gi.shape[1]
    np.testing.assert_allclose(gs, ws[:, :k], atol=tol)
    for r in np.flatnonzero((gi != wi[:, :k]).any(axis=1)):
        for c in np.flatnonzero(gi[r] != wi[r, :k]):
            assert np.sum(np.abs(ws[r] - ws[r, c]) < tol) > 1, f"row {r}, rank {c}: {gi[r]} != {wi[r, :k]}"


# ------------------------------------------------------------------------------------------- golden
@needs_faiss
def test_ivf_probing_every_list_is_the_exact_search():
    base = uniform(1500, 24, seed=1)
    want = reference(base, base, 11)
    plan = plan_index("ivf", 1500, 1500, nprobe=10**6)
    assert plan == IndexPlan("ivf", nlist=default_nlist(1500), nprobe=default_nlist(1500)) and plan.nlist == 38
    got = knn(base, base, 10, index="ivf", nprobe=plan.nlist)
    assert_same_neighbours(got, want)
    assert (got[0][:, 0] == np.arange(1500)).all()  # itself first
    assert_same_neighbours(knn(base, base, 10, index="exact"), want)  # IndexFlatIP, for comparison
    # queries other than the base (the base then indexed by its own assignment pass), more lists than the default
    queries = uniform(300, 24, seed=2)
    assert_same_neighbours(knn(queries, base, 7, index="ivf", nlist=64, nprobe=64), reference(queries, base, 8))


@needs_faiss
def test_ivf_is_deterministic_and_blocking_does_not_change_it():
    base = clustered(3000, 16, 30, seed=3)
    a = knn(base, base, 5, index="ivf", nprobe=2)
    b = knn(base.copy(), base, 5, index="ivf", nprobe=2, block_size=97)  # not the same array: index.add
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@needs_faiss
def test_recall_on_clustered_data():
    base = clustered(8000, 32, 80, seed=4)
    want, _ = reference(base[:500], base, 10)
    plan = plan_index("ivf", 8000, 8000)
    assert (plan.nlist, plan.nprobe) == (205, 16)  # min(4 sqrt(8000), 8000 // 39) lists
    got, sims = knn(base, base, 10, index="ivf")
    recall = np.mean([len(set(got[r]) & set(want[r])) / 10 for r in range(500)])
    assert recall >= 0.95, recall
    assert (np.diff(sims, axis=1) <= 0).all()  # best first
    few, _ = knn(base, base, 10, index="ivf", nprobe=1)
    assert np.mean([len(set(few[r]) & set(want[r])) / 10 for r in range(500)]) <= recall  # fewer lists, less found


@needs_faiss
def test_rows_with_too_few_neighbours_in_their_lists_are_searched_exactly(caplog):
    # 40 points in 40 lists, one probed: a query sees about one point, fewer than k = 5 (faiss pads with -1)
    base = uniform(40, 8, seed=5)
    faiss = _faiss()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(8), 8, 40, faiss.METRIC_INNER_PRODUCT)
    ivf.train(base)
    ivf.add(base)
    assert (ivf.search(base, 5)[1] < 0).any()  # the case is real
    with caplog.at_level(logging.INFO, logger="datawinnow.kernels.knn"):
        idx, sims = knn(base, base, 5, index="ivf", nlist=40, nprobe=1)
    assert "searched exactly" in caplog.text
    assert (idx >= 0).all() and np.isfinite(sims).all()
    assert_same_neighbours((idx, sims), reference(base, base, 6))


# ------------------------------------------------------------------------------------------- auto, errors
def test_auto_is_exact_up_to_the_threshold(monkeypatch):
    assert AUTO_APPROX_MIN == 20_000
    assert plan_index("auto", 20_000, 20_000) == IndexPlan("exact")
    assert plan_index("auto", 500, 10**6) == IndexPlan("exact")  # a few queries: the exact search is cheap
    assert plan_index("auto", 10**6, 500) == IndexPlan("exact")
    # above: the numpy k-means lists, n / 100 of them, with or without faiss
    assert plan_index("auto", 20_001, 20_001) == IndexPlan("lists", nlist=200, nprobe=16)
    assert plan_index("auto", 100_000, 100_000, nprobe=8).as_dict() == {"index": "lists", "nlist": 1000, "nprobe": 8}
    assert plan_index("auto", 50_000, 50_000, backend="sklearn") == IndexPlan("lists", nlist=500, nprobe=16)
    monkeypatch.setattr(KNN, "_faiss", lambda: None)
    assert plan_index("auto", 50_000, 50_000) == IndexPlan("lists", nlist=500, nprobe=16)
    with pytest.raises(MissingDependencyError):
        plan_index("ivf", 100, 100)


def test_auto_searches_with_lists_above_the_threshold(monkeypatch):
    calls = []
    real = KNN.knn_lists.lists_blocks
    monkeypatch.setattr(KNN.knn_lists, "lists_blocks", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    base = clustered(400, 8, 8, seed=6)
    small = knn(base, base, 4, index="auto")
    assert calls == []
    np.testing.assert_array_equal(small[0], knn(base, base, 4, index="exact")[0])
    monkeypatch.setattr(KNN, "AUTO_APPROX_MIN", 300)
    knn(base, base, 4, index="auto")
    assert calls == [{"nlist": 4, "nprobe": 4, "same": True}]


def test_bad_index_options():
    x = uniform(10, 4, seed=7)
    with pytest.raises(ConfigError, match="knn index must be one of auto, exact, ivf, lists"):
        knn(x, x, 2, index="hnsw")
    with pytest.raises(ConfigError, match="nprobe must be a positive integer"):
        knn(x, x, 2, index="ivf", nprobe=0)
    with pytest.raises(ConfigError, match="ivf needs faiss"):
        knn(x, x, 2, index="ivf", backend="sklearn")


@needs_faiss
def test_sparse_embedding_kernel_with_ivf():
    base = clustered(2000, 16, 20, seed=8)
    exact = embedding_kernel(base, base, mode="sparse", k=6, index="exact")
    ivf = embedding_kernel(base, base, mode="sparse", k=6, index="ivf", nprobe=default_nlist(2000))
    assert ivf.nnz == exact.nnz == 2000 * 6
    assert abs(ivf - exact).max() < 1e-5


# ------------------------------------------------------------------------------------------- methods
def _records(n: int) -> list[Record]:
    return [Record(id=f"r{i}", instruction=f"Say {w}.", input="", output=f"{w} {w}.")
            for i, w in enumerate(["one", "two", "three", "four"][:n])]


class _StubST:
    """Stands in for a SentenceTransformer: the vector of a text is looked up by its first line."""

    VECTORS = {"Say one.": (1.0, 0.0), "Say two.": (0.8, 0.6), "Say three.": (-1.0, 0.0), "Say four.": (0.0, 1.0)}

    def get_sentence_embedding_dimension(self):
        return 2

    def encode(self, texts, **kw):
        return np.array([self.VECTORS[t.split("\n")[0]] for t in texts], dtype=np.float32)


def ctx() -> Context:
    return Context(embedder=Embedder(_StubST(), "stub-embedder"), progress=False)


def pool() -> Dataset:
    return Dataset(_records(4))


def test_utility_cache_key_takes_an_approximate_search(tiny_lm):
    recs = _records(4)
    nb = np.array([[0, 1], [1, 2], [2, 3], [3, 0]])

    def folder(neighbours_from):
        return utility_kernel(tiny_lm, recs, recs, mode="sparse", neighbour_idx=nb, batch_size=4, progress=False,
                              neighbours_from=neighbours_from).info["cache_dir"]

    plain = folder(None)
    assert folder({"index": "exact"}) == plain  # an exact search keeps the key it always had
    ivf = folder({"index": "ivf", "nlist": 1, "nprobe": 1})
    assert len({plain, ivf, folder({"index": "ivf", "nlist": 1, "nprobe": 2})}) == 3


def test_delift_methods_take_and_record_the_index():
    cls = METHODS.get("delift-se")
    assert cls.defaults["knn_index"] == "auto" and cls.defaults["nprobe"] == 16
    assert METHODS.get("delift").defaults["knn_index"] == "auto"
    exact = cls(kernel="sparse", k=2, knn_index="exact").run(pool(), 3, ctx())
    assert exact.info["kernels"]["pool"]["knn"] == {"index": "exact"}
    auto = cls(kernel="sparse", k=2).run(pool(), 3, ctx())
    assert auto.info["kernels"]["pool"]["knn"] == {"index": "exact"} and auto.params["knn_index"] == "auto"
    if _faiss() is not None:
        ivf = cls(kernel="sparse", k=2, knn_index=ParamText("ivf"), nprobe=ParamText("4")).run(pool(), 3, ctx())
        assert ivf.params["knn_index"] == "ivf" and ivf.params["nprobe"] == 4
        assert ivf.info["kernels"]["pool"]["knn"] == {"index": "ivf", "nlist": 1, "nprobe": 1}  # 4 points: one list
        assert ivf.selected == exact.selected and ivf.gains == pytest.approx(exact.gains)
    with pytest.raises(ConfigError, match="knn_index must be one of auto, exact, ivf"):
        cls(kernel="sparse", knn_index="annoy").run(pool(), 2, ctx())
    with pytest.raises(ConfigError, match="nprobe must be a positive integer"):
        cls(kernel="sparse", nprobe=0).run(pool(), 2, ctx())
    with pytest.raises(ConfigError, match="parameter 'knn_index' expects a text"):
        cls(knn_index=True)
