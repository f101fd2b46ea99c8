"""The cache folder: a scoped setting (``use_cache_root``) over $DATAWINNOW_CACHE, never an environment write."""

from __future__ import annotations

import os
from pathlib import Path

from datawinnow.cache import ScoreStore, cache_root, use_cache_root


def test_scoped_root_overrides_the_environment_and_nests(tmp_path, _isolated_cache):
    assert cache_root() == Path(_isolated_cache)  # $DATAWINNOW_CACHE (set by the fixture)
    with use_cache_root(tmp_path / "a") as a:
        assert a == tmp_path / "a" and cache_root() == tmp_path / "a"
        with use_cache_root(tmp_path / "b"):
            assert cache_root() == tmp_path / "b"
        assert cache_root() == tmp_path / "a"
        with use_cache_root(None) as same:  # None leaves the root in force as it is
            assert same == cache_root() == tmp_path / "a"
    assert cache_root() == Path(_isolated_cache)
    assert os.environ["DATAWINNOW_CACHE"] == str(_isolated_cache)


def test_root_is_restored_after_an_error(tmp_path, _isolated_cache):
    try:
        with use_cache_root(tmp_path / "x"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert cache_root() == Path(_isolated_cache)


def test_default_root_without_the_variable(monkeypatch):
    monkeypatch.delenv("DATAWINNOW_CACHE")
    assert cache_root() == Path(os.path.expanduser("~")) / ".cache" / "datawinnow"


def test_stores_follow_the_scoped_root(tmp_path):
    with use_cache_root(tmp_path):
        store = ScoreStore("length", {"p": 1}, None)
    assert store.dir.parent == tmp_path / "scores"


def test_the_cli_runs_a_command_under_its_cache_dir(tmp_path, monkeypatch, _isolated_cache):
    import datawinnow.cli as cli

    seen = []
    monkeypatch.setattr(cli, "cmd_score", lambda args: seen.append(cache_root()) or 0)
    code = cli.main(["score", "pool.jsonl", "--scorer", "length", "--out", str(tmp_path / "s.jsonl"),
                     "--cache-dir", str(tmp_path / "c")])
    assert code == 0 and seen == [tmp_path / "c"]
    assert cache_root() == Path(_isolated_cache)  # nothing left behind
    assert os.environ["DATAWINNOW_CACHE"] == str(_isolated_cache)


def test_the_api_runs_under_the_context_cache_dir(tmp_path, monkeypatch, _isolated_cache):
    import numpy as np

    from datawinnow import api
    from datawinnow.scores.base import ScoreTable

    seen = []

    class Probe:
        def __init__(self, **params):
            pass

        def score(self, dataset, ctx):
            seen.append(cache_root())
            return ScoreTable(dataset.ids, np.zeros(len(dataset)), {})

    monkeypatch.setattr(api.SCORERS, "get", lambda name: Probe)
    api.score("bundled:alpaca_en_demo", "probe", cache_dir=str(tmp_path / "c"))
    api.score("bundled:alpaca_en_demo", "probe")
    assert seen == [tmp_path / "c", Path(_isolated_cache)]
