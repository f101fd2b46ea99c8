"""The score store's process index and geometric compaction (datawinnow.cache): stores on one folder share
their rows, read only what changed on disk, and a pool scored in many small runs costs O(n) I/O."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

import datawinnow
from datawinnow import cache
from datawinnow.api import score_stream
from datawinnow.backends import CausalLM
from datawinnow.cache import MAX_PARTS, ScoreStore, clear_store_index, keep_stores_loaded
from datawinnow.runtime.context import Context


@pytest.fixture
def reads(monkeypatch):
    """Every file the store reads, and the rows it parses (the store reads through ``cache.read_rows``)."""
    seen = {"rows": 0, "files": []}
    real = cache.read_rows

    def counting(path):
        rows = real(path)
        seen["rows"] += len(rows)
        seen["files"].append(path.name)
        return rows

    monkeypatch.setattr(cache, "read_rows", counting)
    return seen


def rows(ids, tag="v"):
    return [{"id": f"r{i}", "_key": f"k{i}", tag: i} for i in ids]


def parts(store):
    return sorted(p.name for p in store.dir.glob("part-*.jsonl"))


def write_jsonl(path, rows_):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_), encoding="utf-8")


# ------------------------------------------------------------------------------------------- the index
def test_stores_on_one_folder_share_their_rows(tmp_path, reads):
    a = ScoreStore("x", {}, None, root=tmp_path)
    assert len(a) == 0
    b = ScoreStore("x", {}, None, root=tmp_path)
    b.put(rows(range(3)))
    assert a.lookup("r1", "k1")["v"] == 1  # a put through b is in a's rows: one copy, no reread
    a.put(rows([3]))
    assert b.lookup("r3", "k3")["v"] == 3
    c = ScoreStore("x", {}, None, root=tmp_path)
    assert len(c) == 4
    assert reads["rows"] == 0  # nothing was read back: every row came from a put in this process


def test_a_part_from_another_process_is_read_alone(tmp_path, reads):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(5)))
    store.compact(force=True)
    reads["files"].clear()
    write_jsonl(store.dir / "part-99999999999999999999-424242.jsonl", rows([1, 7], tag="w"))  # another process
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert fresh.lookup("r7", "k7")["w"] == 7 and fresh.lookup("r1", "k1")["w"] == 1  # the later part wins
    assert fresh.lookup("r2", "k2")["v"] == 2
    assert reads["files"] == ["part-99999999999999999999-424242.jsonl"]  # not scores.jsonl again
    assert store.lookup("r7", "k7")["w"] == 7  # the older store sees it too: the rows are shared


def test_a_compaction_elsewhere_reloads_the_folder(tmp_path, reads):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(4)))
    store.compact(force=True)
    # another process compacted: scores.jsonl replaced (its own rows merged in), one of our parts gone with it
    replaced = store.dir / "scores.new"
    write_jsonl(replaced, rows(range(4)) + rows([8, 9], tag="w"))
    replaced.replace(store.dir / "scores.jsonl")
    reads["files"].clear()
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert len(fresh) == 6 and fresh.lookup("r9", "k9")["w"] == 9
    assert reads["files"] == ["scores.jsonl"]
    reads["files"].clear()
    assert len(ScoreStore("x", {}, None, root=tmp_path)) == 6 and reads["files"] == []  # read once


def test_a_deleted_folder_is_empty_again(tmp_path):
    # the experiment runner starts a group from an empty cache by deleting the folder in the same process
    for compact in (False, True):
        store = ScoreStore("x", {}, None, root=tmp_path)
        store.put(rows(range(3)))
        if compact:
            store.compact(force=True)
        shutil.rmtree(store.dir)
        assert len(ScoreStore("x", {}, None, root=tmp_path)) == 0


def test_a_cleared_index_reads_the_folder_as_a_new_process(tmp_path, reads):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(3)))
    store.put(rows([3, 4]))
    clear_store_index()
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert len(fresh) == 5 and sorted(reads["files"]) == parts(store)


def test_a_large_store_is_freed_with_its_last_user_unless_kept(tmp_path, reads, monkeypatch):
    monkeypatch.setattr(cache, "KEEP_BYTES", 100)  # less than the store's rows
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(20)))
    store.compact()
    del store
    assert len(ScoreStore("x", {}, None, root=tmp_path)) == 20
    assert reads["files"] == ["scores.jsonl"]  # the index let it go: read again
    reads["files"].clear()
    with keep_stores_loaded():
        for _ in range(3):
            assert len(ScoreStore("x", {}, None, root=tmp_path)) == 20
    assert reads["files"] == ["scores.jsonl"]  # kept for the block: read once
    reads["files"].clear()
    assert len(ScoreStore("x", {}, None, root=tmp_path)) == 20 and reads["files"] == ["scores.jsonl"]


def test_threads_putting_into_one_store(tmp_path):
    store = ScoreStore("x", {}, None, root=tmp_path)

    def work(t):
        for k in range(10):
            ScoreStore("x", {}, None, root=tmp_path).put(rows([100 * t + k]))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store) == 40
    store.compact()
    clear_store_index()
    assert len(ScoreStore("x", {}, None, root=tmp_path)) == 40


# ------------------------------------------------------------------------------------------- compaction
def test_compaction_is_geometric(tmp_path):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(10)))
    assert store.compact() == 10 and parts(store) == []  # no scores.jsonl yet: everything merged
    store.put(rows(range(10, 14)))
    assert store.compact() == 0 and len(parts(store)) == 1  # 4 rows in parts < 10 in scores.jsonl: left
    store.put(rows(range(14, 20)))
    assert store.compact() == 20 and parts(store) == []  # 10 >= 10: merged
    store.put(rows([0], tag="w"))  # a row rewritten counts like a new one
    assert store.compact(force=True) == 20 and parts(store) == []
    clear_store_index()
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert len(fresh) == 20 and fresh.lookup("r0", "k0") == {"id": "r0", "_key": "k0", "w": 0}
    assert len((fresh.dir / "scores.jsonl").read_text(encoding="utf-8").splitlines()) == 20


def test_single_batches_are_merged_into_one_part(tmp_path):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(4 * MAX_PARTS)))
    store.compact()
    # parts of fewer than 4 * MAX_PARTS / MAX_PARTS = 4 rows are small
    for ids in [*(range(k, k + 1) for k in range(2000, 2005)), range(2005, 2007), range(3000, 3004)]:
        store.put(rows(ids))
    store.put(rows([0], tag="w"))
    assert len(parts(store)) == 8
    assert store.compact() == 8 and len(parts(store)) == 2  # the small ones in one part; the 4 rows stay apart
    assert len((store.dir / "scores.jsonl").read_text(encoding="utf-8").splitlines()) == 4 * MAX_PARTS
    assert store.compact() == 0  # one small part left: nothing to merge
    clear_store_index()
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert len(fresh) == 4 * MAX_PARTS + 11 and fresh.lookup("r0", "k0")["w"] == 0
    assert fresh.lookup("r2006", "k2006")["v"] == 2006 and fresh.lookup("r3003", "k3003")["v"] == 3003


def test_compaction_keeps_a_part_written_meanwhile(tmp_path, monkeypatch):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put(rows(range(3)))
    late = store.dir / "part-99999999999999999999-424242.jsonl"
    real = cache._LoadedStore.refresh

    def refresh_then_another_process_writes(self):
        real(self)
        if not late.exists():
            write_jsonl(late, rows([7]))

    monkeypatch.setattr(cache._LoadedStore, "refresh", refresh_then_another_process_writes)
    assert store.compact(force=True) == 3
    assert parts(store) == [late.name]  # not merged, so not removed
    monkeypatch.undo()
    clear_store_index()
    assert len(ScoreStore("x", {}, None, root=tmp_path)) == 4


# ------------------------------------------------------------------------------------------- streamed scoring
def _write_pool(path, n):
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"instruction": f"Add {i} and {i % 5}.", "input": "", "output": f"{i + i % 5}"}) + "\n")


def test_streamed_scoring_reads_and_writes_the_store_o_of_n(tmp_path, tiny_lm, reads, monkeypatch):
    n, chunk = 96, 4
    src = tmp_path / "pool.jsonl"
    _write_pool(src, n)
    written = []
    real_compact = ScoreStore.compact
    monkeypatch.setattr(ScoreStore, "compact", lambda self, force=False: written.append(real_compact(self, force))
                        or written[-1])
    ctx = Context(model=tiny_lm, batch_size=2, progress=False)  # two batches (part files) per chunk
    summary = score_stream(str(src), "ifd", out=str(tmp_path / "a.jsonl"), chunk_size=chunk, ctx=ctx)
    assert (summary.chunks, summary.computed) == (n // chunk, n)
    # a store read and rewritten whole per chunk costs about n^2 / (2 chunk) = 12 n rows of each
    assert reads["rows"] <= n, reads["rows"]  # only single batches, read back to merge them
    assert sum(written) <= 3 * n, written  # scores.jsonl doubles: 4 + 4 + 8 + 16 + 32 + 64 (+ batch merges)

    # a new process (an empty index) finds every row on disk
    clear_store_index()
    reads["rows"] = 0
    again = score_stream(str(src), "ifd", out=str(tmp_path / "b.jsonl"), chunk_size=chunk, ctx=ctx)
    assert (again.computed, again.cached) == (0, n) and n <= reads["rows"] <= 2 * n
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()


class Boom(RuntimeError):
    pass


def test_killed_stream_resumes_in_a_new_process(tmp_path, tiny_lm, monkeypatch):
    n, chunk = 24, 4
    src, out = tmp_path / "pool.jsonl", tmp_path / "out.jsonl"
    _write_pool(src, n)
    real, calls = CausalLM.response_loss, {"n": 0}

    def crash(self, pairs):
        calls["n"] += 1
        if calls["n"] == 11:  # the sixth batch of 2 records' first pass: five batches (10 records) stored
            raise Boom("simulated crash")
        return real(self, pairs)

    monkeypatch.setattr(CausalLM, "response_loss", crash)
    ctx = Context(model=tiny_lm, batch_size=2, progress=False)
    with pytest.raises(Boom):
        score_stream(str(src), "ifd", out=str(out), chunk_size=chunk, ctx=ctx)
    monkeypatch.setattr(CausalLM, "response_loss", real)
    clear_store_index()  # what a kill leaves: the files, no process memory
    summary = score_stream(str(src), "ifd", out=str(out), chunk_size=chunk, ctx=ctx)
    assert (summary.computed, summary.cached) == (n - 10, 10)
    reference = tmp_path / "reference.jsonl"
    datawinnow.score(str(src), "ifd", out=str(reference), ctx=Context(model=tiny_lm, progress=False))
    assert out.read_bytes() == reference.read_bytes()
