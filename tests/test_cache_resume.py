"""The score cache: an interrupted run resumes without recomputing finished batches."""

from __future__ import annotations

import numpy as np
import pytest

import datawinnow
from datawinnow.backends import CausalLM
from datawinnow.cache import ScoreStore
from datawinnow.runtime.context import Context


class Boom(RuntimeError):
    pass


def test_interrupted_run_resumes(tiny_lm, monkeypatch):
    ds = datawinnow.load("bundled:self_instruct_seed_tasks")[:20]
    reference = datawinnow.score(ds, "ifd", ctx=Context(model=tiny_lm, batch_size=4, progress=False, use_cache=False))

    calls = {"n": 0}
    real = CausalLM.response_loss

    def flaky(self, pairs):
        calls["n"] += 1
        if calls["n"] == 5:  # the third batch's first pass: two batches (4 calls) are done
            raise Boom("simulated crash")
        return real(self, pairs)

    monkeypatch.setattr(CausalLM, "response_loss", flaky)
    with pytest.raises(Boom):
        datawinnow.score(ds, "ifd", ctx=Context(model=tiny_lm, batch_size=4, progress=False))

    calls["n"] = 0
    monkeypatch.setattr(CausalLM, "response_loss", lambda self, pairs: (calls.__setitem__("n", calls["n"] + 1),
                                                                        real(self, pairs))[1])
    resumed = datawinnow.score(ds, "ifd", ctx=Context(model=tiny_lm, batch_size=4, progress=False))
    # 20 records in batches of 4: 2 batches were stored, 3 remain, 2 passes each
    assert calls["n"] == 6
    assert resumed.info["cached"] == 8 and resumed.info["computed"] == 12
    np.testing.assert_allclose(resumed.score, reference.score, rtol=1e-6)

    calls["n"] = 0
    again = datawinnow.score(ds, "ifd", ctx=Context(model=tiny_lm, batch_size=4, progress=False))
    assert calls["n"] == 0 and again.info["cached"] == 20
    np.testing.assert_allclose(again.score, reference.score, rtol=1e-6)


def test_store_keys_on_content(tmp_path):
    store = ScoreStore("x", {"a": 1}, "model-1", root=tmp_path)
    store.put([{"id": "r1", "_key": "k1", "v": 1.0}])
    fresh = ScoreStore("x", {"a": 1}, "model-1", root=tmp_path)
    assert fresh.lookup("r1", "k1")["v"] == 1.0
    assert fresh.lookup("r1", "edited") is None  # same id, other content: recompute
    other = ScoreStore("x", {"a": 2}, "model-1", root=tmp_path)
    assert other.lookup("r1", "k1") is None  # other parameters: other store
    assert ScoreStore("x", {"a": 1}, "model-2", root=tmp_path).lookup("r1", "k1") is None


def test_compaction_keeps_rows(tmp_path):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put([{"id": "a", "_key": "1", "v": 1}])
    store.put([{"id": "b", "_key": "2", "v": 2}])
    store.compact()
    assert [p.name for p in sorted(store.dir.iterdir())] == [".lock", "meta.json", "scores.jsonl"]
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert fresh.lookup("a", "1")["v"] == 1 and fresh.lookup("b", "2")["v"] == 2


def test_partial_temp_file_is_ignored(tmp_path):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put([{"id": "a", "_key": "1", "v": 1}])
    # what a kill -9 during a write leaves behind: a temp file that was never renamed
    (store.dir / ".part-999.jsonl.abc.tmp").write_text('{"id": "b", "_key": "2", "v"', encoding="utf-8")
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert len(fresh) == 1 and fresh.lookup("b", "2") is None


KILL_SCRIPT = r"""
import sys, time
import datawinnow
from datawinnow.backends import CausalLM
from datawinnow.runtime.context import Context

real = CausalLM.response_loss
def slow(self, pairs):
    time.sleep(float(sys.argv[2]))
    return real(self, pairs)
CausalLM.response_loss = slow
ds = datawinnow.load("bundled:self_instruct_seed_tasks")[:24]
t = datawinnow.score(ds, "ifd", ctx=Context(model=CausalLM.load(sys.argv[1], dtype="fp32", device="cpu"),
                                            batch_size=4, progress=False))
print("computed", t.info["computed"], "cached", t.info["cached"])
"""


def test_kill_dash_nine_loses_at_most_the_batch_in_flight(tiny_model_dir, tmp_path, _isolated_cache):
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "score.py"
    script.write_text(KILL_SCRIPT, encoding="utf-8")
    env = {**os.environ, "DATAWINNOW_CACHE": str(_isolated_cache)}
    proc = subprocess.Popen([sys.executable, str(script), tiny_model_dir, "0.4"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = []
    deadline = time.time() + 120
    while time.time() < deadline and len(parts) < 2:
        parts = list(_isolated_cache.glob("scores/ifd-*/part-*.jsonl"))
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(parts) >= 2, "the scorer never stored a batch"
    stored = len(list(_isolated_cache.glob("scores/ifd-*/part-*.jsonl")))
    done = subprocess.run([sys.executable, str(script), tiny_model_dir, "0"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    computed = int(done.stdout.split()[1])
    assert computed == 24 - 4 * stored  # only the batches that were not stored are recomputed
