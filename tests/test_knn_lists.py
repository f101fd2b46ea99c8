"""The numpy k-means lists index (``knn_index=lists``): equal to a from-scratch exact search when every list is
probed, deterministic, its recall on clustered data, queries other than the base, rows whose probed lists
hold too few points, and its k-means against a hand-checkable case."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from datawinnow.errors import ConfigError
from datawinnow.kernels import embedding_kernel, knn, knn_lists
from datawinnow.kernels.knn import IndexPlan, plan_index

from test_knn_ivf import assert_same_neighbours, clustered, reference, uniform


def test_probing_every_list_is_the_exact_search():
    base = uniform(1500, 24, seed=1)
    want = reference(base, base, 11)
    plan = plan_index("lists", 1500, 1500, nprobe=10**6)
    assert plan == IndexPlan("lists", nlist=15, nprobe=15)  # 1,500 / 100 lists, every one probed
    got = knn(base, base, 10, index="lists", nprobe=plan.nlist)
    assert_same_neighbours(got, want)
    assert (got[0][:, 0] == np.arange(1500)).all()  # itself first
    queries = uniform(300, 24, seed=2)  # queries other than the base, more lists than the default
    assert_same_neighbours(knn(queries, base, 7, index="lists", nlist=64, nprobe=64), reference(queries, base, 8))


def test_deterministic_and_numpy_only():
    base = clustered(3000, 16, 30, seed=3)
    a = knn(base, base, 8, index="lists", nprobe=2)
    b = knn(base, base, 8, index="lists", nprobe=2, backend="sklearn")  # no faiss anywhere on this path
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_recall_on_clustered_data():
    base = clustered(5000, 32, 50, seed=4)
    want = reference(base[:300], base, 10)[0]
    idx, sims = knn(base, base, 10, index="lists")  # 50 lists, 16 probed
    recall = np.mean([len(set(idx[r]) & set(want[r])) / 10 for r in range(300)])
    assert recall >= 0.99
    assert (np.diff(np.round(sims, 6), axis=1) <= 0).all()  # best first (ties to 6 decimals by index)
    few, _ = knn(base, base, 10, index="lists", nprobe=1)
    assert np.mean([len(set(few[r]) & set(want[r])) / 10 for r in range(300)]) <= recall


def test_rows_with_too_few_points_in_their_lists_are_searched_exactly(caplog):
    base = uniform(40, 8, seed=5)  # 40 lists of about one point, one probed: fewer than k = 5 found
    with caplog.at_level(logging.INFO, logger="datawinnow.kernels.knn"):
        idx, sims = knn(base, base, 5, index="lists", nlist=40, nprobe=1)
    assert "searched exactly" in caplog.text
    assert (idx >= 0).all() and np.isfinite(sims).all()
    assert_same_neighbours((idx, sims), reference(base, base, 6))


def test_spherical_kmeans_finds_two_obvious_groups():
    # two tight groups around the x and y axes: the centres are the groups' normalised means, by hand
    x = np.array([[1, 0.1], [1, -0.1], [1, 0], [0.1, 1], [-0.1, 1], [0, 1]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    centres = knn_lists.spherical_kmeans(x, 2, np.random.default_rng(0))
    centres = centres[np.argsort(-centres[:, 0])]
    np.testing.assert_allclose(centres, [[1, 0], [0, 1]], atol=1e-6)


def test_train_centres_sizes_and_lists_partition_the_base():
    base = clustered(2000, 16, 20, seed=6)
    centres = knn_lists.train_centres(base, 20)
    assert centres.shape == (20, 16)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=1), 1, atol=1e-5)
    first = knn_lists.nearest_centres(base, centres, 3)
    np.testing.assert_array_equal(first[:, 0], np.argmax(base @ centres.T, axis=1))  # the nearest goes first
    lists = knn_lists.lists_of(centres, first[:, 0])
    assert sorted(lists.order.tolist()) == list(range(2000)) and lists.starts[-1] == 2000
    assert knn_lists.train_centres(base[:5], 20).shape == (5, 16)  # more lists than points: one a point


def test_sparse_kernel_and_bad_options():
    base = clustered(1000, 16, 10, seed=7)
    exact = embedding_kernel(base, base, mode="sparse", k=6, index="exact")
    lists = embedding_kernel(base, base, mode="sparse", k=6, index="lists", nprobe=10)
    assert abs(exact - lists).max() < 1e-6
    with pytest.raises(ConfigError, match="knn index must be one of auto, exact, ivf, lists"):
        knn(base, base, 2, index="hnsw")


def test_threads_do_not_change_the_answer(monkeypatch):
    base = clustered(4000, 16, 40, seed=8)
    monkeypatch.setattr(knn_lists, "SCORE_BLOCK", 512)  # several blocks and chunks to spread over the threads
    monkeypatch.setattr(knn_lists, "QUERY_CHUNK", 100)  # (the 64-query floor applies)
    monkeypatch.setattr(knn_lists, "_workers", lambda: 1)
    one = knn(base, base, 6, index="lists", nprobe=3)
    monkeypatch.setattr(knn_lists, "_workers", lambda: 3)
    three = knn(base, base, 6, index="lists", nprobe=3)
    np.testing.assert_array_equal(one[0], three[0])
    np.testing.assert_array_equal(one[1], three[1])
    # another chunking changes the matrix products' shapes, so a similarity may differ in its last bit only
    monkeypatch.setattr(knn_lists, "QUERY_CHUNK", 65536)
    whole = knn(base, base, 6, index="lists", nprobe=3)
    np.testing.assert_allclose(whole[1], one[1], rtol=0, atol=1e-6)


def test_ties_at_the_cut_go_to_the_smaller_index():
    # every point has 3 exact duplicates: with k = 2 the search must keep the two smallest indices of a group,
    # whichever lists they fell into (the exact search's choice)
    rng = np.random.default_rng(9)
    groups = uniform(300, 12, seed=9)
    base = np.repeat(groups, 4, axis=0)[rng.permutation(1200)]
    got = knn(base, base, 2, index="lists", nprobe=12)
    want = knn(base, base, 2, index="exact")
    np.testing.assert_array_equal(got[0], want[0])
