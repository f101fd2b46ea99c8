"""The six DELIFT methods: golden selections worked out by hand (embedding kernel from a stub
embedder with exact vectors; utility kernel from a stubbed matrix), the real utility kernel on the
tiny model end to end, errors, the manifest's gains, and the selection map."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datawinnow import api
from datawinnow.backends.embedder import Embedder
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError, MissingDependencyError
from datawinnow.registry import METHODS
from datawinnow.runtime.context import Context

VECTORS = {"alpha": (1.0, 0.0), "alpha again": (1.0, 0.0), "omega": (-1.0, 0.0), "beta": (0.0, 1.0)}


class _StubST:
    """Stands in for a SentenceTransformer: the vector of a text is looked up by its first line."""

    def get_sentence_embedding_dimension(self):
        return 2

    def encode(self, texts, **kw):
        return np.array([VECTORS.get(t.split("\n")[0]) or self._other(t) for t in texts], dtype=np.float32)

    @staticmethod
    def _other(text):  # any other record: a fixed unit vector derived from its text
        import zlib

        v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=2)
        return tuple(v / np.linalg.norm(v))


def stub_embedder() -> Embedder:
    return Embedder(_StubST(), "stub-embedder")


def rec(name: str, out: str = "An answer.") -> Record:
    return Record(id=name.replace(" ", "_"), instruction=name, input="", output=out)


def pool() -> Dataset:
    # embeddings r0 (1,0), r1 (1,0) (a duplicate), r2 (-1,0), r3 (0,1)
    return Dataset([rec("alpha"), rec("alpha again"), rec("omega"), rec("beta")])


def ctx(**kw) -> Context:
    return Context(embedder=stub_embedder(), progress=False, **kw)


def test_registered_with_defaults():
    for name in ("delift", "delift-task", "delift-continual", "delift-se", "delift-se-task", "delift-se-continual"):
        cls = METHODS.get(name)
        assert cls.default_budget == 0.3
        assert cls.defaults["optimizer"] == "lazy" and cls.defaults["kernel"] == "dense" and cls.defaults["k"] == 10
    assert METHODS.get("delift").defaults["similarity"] == "minmax"
    assert METHODS.get("delift-task").defaults["eta"] == 1.0
    assert METHODS.get("delift-se-continual").defaults["nu"] == 1.0


def test_delift_se_golden():
    # s = (cos + 1) / 2 on the pool (rows represented, columns candidates):
    #        r0   r1   r2   r3
    #   r0    1    1    0   .5
    #   r1    1    1    0   .5
    #   r2    0    0    1   .5
    #   r3   .5   .5   .5    1
    # column sums 2.5, 2.5, 1.5, 2.5 -> r0 (ties by index), gain 2.5; coverage [1, 1, 0, .5]
    # then r2: row r2 +1 = 1 (r3: row r2 .5 + row r3 .5 = 1, tie -> r2); coverage [1, 1, 1, .5]
    # then r3: row r3 +.5; the duplicate r1 would add nothing.
    sel = METHODS.get("delift-se")().run(pool(), 3, ctx())
    assert sel.selected == ["alpha", "omega", "beta"]
    assert sel.gains == pytest.approx([2.5, 1.0, 0.5])
    assert sel.info["value"] == pytest.approx(4.0) and sel.model == "stub-embedder"


def test_delift_se_task_golden():
    # Q = {(0, 1)}: s_Q[i, q] = .5, .5, .5, 1 -> caps t = [.5, .5, .5, 1]; capped pool kernel:
    #   r0 [.5 .5 0 .5], r1 [.5 .5 0 .5], r2 [0 0 .5 .5], r3 [.5 .5 .5 1]
    # column sums 1.5, 1.5, 1.0, 2.5 -> r3 (the on-target record), gain 2.5 = sum t: saturated;
    # the second pick gains 0 (r0 by index), and the greedy does not stop.
    c = ctx(sources={"target": Dataset([rec("beta")])})
    sel = METHODS.get("delift-se-task")().run(pool(), 2, c)
    assert sel.selected == ["beta", "alpha"]
    assert sel.gains == pytest.approx([2.5, 0.0])


def test_delift_se_continual_golden():
    # P = {(1, 0)}: floors b = s_P[i, p] = [1, 1, 0, .5]; gain of j = sum_i max(s[i, j] - max(c_i, b_i), 0):
    #   r0 0, r1 0, r2 (row r2 1) = 1, r3 (row r2 .5 + row r3 .5) = 1 -> r2 (tie by index), gain 1
    #   then r3: row r3 1 - .5 = .5.  What the model already knows (alpha) is not picked again.
    c = ctx(sources={"existing": Dataset([rec("alpha")])})
    sel = METHODS.get("delift-se-continual")().run(pool(), 2, c)
    assert sel.selected == ["omega", "beta"]
    assert sel.gains == pytest.approx([1.0, 0.5])


def test_zero_gain_cases_through_the_methods():
    c = ctx(sources={"existing": pool(), "target": Dataset([rec("beta")])})
    for kernel in ("dense", "sparse"):
        sel = METHODS.get("delift-se-continual")(kernel=kernel, k=2).run(pool(), 3, c)
        assert sel.gains == [0.0, 0.0, 0.0]  # P = the whole pool
    sel = METHODS.get("delift-se-task")(eta=0.0).run(pool(), 2, c)
    assert sel.gains == [0.0, 0.0]


# a stubbed raw utility kernel UF[i, j] (target i, example j) over three records
UF = np.array([
    [0.20, -0.20, 0.10],
    [0.20, 0.20, -0.20],
    [-0.20, 0.00, 0.20],
], dtype=np.float32)


def test_delift_golden_on_a_stubbed_utility_kernel(monkeypatch, tiny_lm):
    import datawinnow.kernels.utility as U

    def fake(lm, targets, examples, **kw):
        return U.UtilityKernel(UF.T.copy(), np.zeros(len(targets)), {"kernel": "stub"})  # candidate-major

    monkeypatch.setattr(U, "utility_kernel", fake)
    three = Dataset([rec("alpha"), rec("omega"), rec("beta")])
    # minmax over [-.2, .2]: s = (u + .2) / .4 = [[1, 0, .75], [1, 1, 0], [0, .5, 1]]
    #   column sums 2, 1.5, 1.75 -> example 0 (gain 2); coverage [1, 1, 0]
    #   then example 1 adds .5 (row 2), example 2 adds 1 (row 2) -> example 2 (gain 1)
    sel = METHODS.get("delift")().run(three, 2, Context(model=tiny_lm, progress=False))
    assert sel.selected == ["alpha", "beta"] and sel.gains == pytest.approx([2.0, 1.0])
    assert sel.info["min"] == pytest.approx(-0.2) and sel.info["max"] == pytest.approx(0.2)
    # clip (the paper): s = max(u, 0) = [[.2, 0, .1], [.2, .2, 0], [0, 0, .2]]
    #   column sums .4, .2, .3 -> example 0 (.4); coverage [.2, .2, 0]; then example 2 adds .2
    sel = METHODS.get("delift")(similarity="clip").run(three, 2, Context(model=tiny_lm, progress=False))
    assert sel.selected == ["alpha", "beta"] and sel.gains == pytest.approx([0.4, 0.2])


def _bundled(n: int) -> Dataset:
    from datawinnow.data import load

    ds = load("bundled:alpaca_en_demo")
    return Dataset([r for r in ds if len(r.output) < 200][:n])


def test_utility_methods_end_to_end_on_the_tiny_model(tiny_lm, tmp_path):
    from datawinnow.data import write

    data = _bundled(8)
    write(data, tmp_path / "pool.jsonl")
    write(Dataset(list(data)[:3]), tmp_path / "target.jsonl")
    c = lambda: Context(model=tiny_lm, embedder=stub_embedder(), progress=False, batch_size=4)  # noqa: E731
    for kernel in ("dense", "sparse"):
        sel = api.select(str(tmp_path / "pool.jsonl"), "delift", params={"kernel": kernel, "k": 3},
                         out=str(tmp_path / f"sub-{kernel}.jsonl"), ctx=c())
        assert len(sel.selected) == 2 and len(set(sel.selected)) == 2  # default budget 30% of 8
        assert sel.gains[0] >= sel.gains[1] >= 0
        manifest = json.loads((tmp_path / f".sub-{kernel}.jsonl.manifest.json").read_text())
        kept = [r for r in manifest["records"] if r["keep"]]
        assert sorted(r["gain"] for r in kept) == pytest.approx(sorted(sel.gains))
        task = api.select(str(tmp_path / "pool.jsonl"), "delift-task", 3, params={"kernel": kernel, "k": 3},
                          sources={"target": str(tmp_path / "target.jsonl")}, ctx=c())
        assert len(task.selected) == 3 and task.info["objective"] == "flmi"
        # P = the whole pool: the joint min-max keeps both kernels on one scale, so every gain is 0
        cont = api.select(str(tmp_path / "pool.jsonl"), "delift-continual", 3, params={"kernel": kernel, "k": 3},
                          sources={"existing": str(tmp_path / "pool.jsonl")}, ctx=c())
        assert cont.gains == [0.0, 0.0, 0.0]


def test_errors_name_the_option(tiny_lm):
    with pytest.raises(ConfigError, match="method 'delift-task' needs --target SRC"):
        METHODS.get("delift-task")().run(pool(), 2, ctx())
    with pytest.raises(ConfigError, match="method 'delift-se-continual' needs --existing SRC"):
        METHODS.get("delift-se-continual")().run(pool(), 2, ctx())
    with pytest.raises(ConfigError, match="kernel must be dense or sparse"):
        METHODS.get("delift-se")(kernel="knn").run(pool(), 2, ctx())
    with pytest.raises(ConfigError, match="optimizer must be one of naive, lazy, stochastic"):
        METHODS.get("delift-se")(optimizer="fast").run(pool(), 2, ctx())
    with pytest.raises(ConfigError, match="similarity must be minmax or clip"):
        METHODS.get("delift")(similarity="cos").run(pool(), 2, Context(model=tiny_lm, progress=False))
    with pytest.raises(ConfigError, match="has no parameter"):
        METHODS.get("delift-se")(eta=2)


def test_stochastic_optimizer_through_the_method():
    sel = METHODS.get("delift-se")(optimizer="stochastic", epsilon=0.01).run(pool(), 3, ctx(seed=1))
    assert sel.info["optimizer"] == "stochastic" and len(set(sel.selected)) == 3


def test_plot_selection(tmp_path, monkeypatch):
    from datawinnow.select.plot import plot_selection

    rng = np.random.default_rng(0)
    data = Dataset([rec(f"r{i}") for i in range(30)])
    emb = rng.normal(size=(30, 8)).astype(np.float32)
    used = plot_selection(data, data.ids[:5], str(tmp_path / "map.png"), embeddings=emb)
    assert used in ("umap", "pca") and (tmp_path / "map.png").stat().st_size > 1000
    assert plot_selection(data, data.ids[:5], str(tmp_path / "t.png"), embeddings=emb, reducer="tsne") == "tsne"
    with pytest.raises(ConfigError, match="plot reducer must be one of"):
        plot_selection(data, [], str(tmp_path / "x.png"), embeddings=emb, reducer="mds")
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match="pip install 'datawinnow\\[plot\\]'"):
        plot_selection(data, [], str(tmp_path / "y.png"), embeddings=emb)


def test_cli_select_help_shows_plot(capsys):
    from datawinnow.cli import main

    with pytest.raises(SystemExit):
        main(["select", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "--plot PATH" in out and "UMAP if installed, else PCA" in out
