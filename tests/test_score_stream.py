"""Streamed scoring (datawinnow.scores.stream, ``datawinnow score`` on a per-record scorer): the same output
as the whole-pool path, one chunk of records in memory, atomic output, resumable from the cache."""

from __future__ import annotations

import json
import re
import tracemalloc

import numpy as np
import pytest

import datawinnow
from datawinnow.api import score_stream
from datawinnow.cli import build_parser, main
from datawinnow.errors import ConfigError
from datawinnow.registry import SCORERS
from datawinnow.runtime.context import Context
from datawinnow.scores.ifd import IFDScorer


def _write_pool(path, n: int, *, repeat_ids: bool = False) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {"instruction": f"Question {i}: what is {i} plus {i % 7}?", "input": "",
                   "output": f"It is {i + i % 7}." + " Because." * (i % 5)}
            if repeat_ids:
                row["id"] = f"r{i % (n // 2)}"  # the second half repeats the first half's ids
            fh.write(json.dumps(row) + "\n")


def test_length_streamed_equals_whole_pool(tmp_path, caplog):
    src, whole, streamed = tmp_path / "pool.jsonl", tmp_path / "whole.jsonl", tmp_path / "streamed.jsonl"
    _write_pool(src, 23, repeat_ids=True)
    datawinnow.score(str(src), "length", out=str(whole), progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    caplog.clear()
    summary = score_stream(str(src), "length", out=str(streamed), chunk_size=5, progress=False)
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == warned  # load()'s, once
    assert len(warned) == 1 and "12 record(s) repeat an id" in warned[0]
    assert streamed.read_bytes() == whole.read_bytes()
    ids = [json.loads(line)["id"] for line in streamed.read_text(encoding="utf-8").splitlines()]
    assert ids[:2] == ["r0", "r1"] and ids[11] == "r0~2"  # load()'s renaming of repeats, in file order
    assert (summary.n, summary.chunks, summary.computed, summary.cached) == (23, 5, None, None)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_ifd_streamed_equals_whole_pool(tmp_path, tiny_lm, batch_size):
    src, whole, streamed = tmp_path / "pool.jsonl", tmp_path / "whole.jsonl", tmp_path / "streamed.jsonl"
    _write_pool(src, 14)

    def ctx():
        return Context(model=tiny_lm, batch_size=batch_size, progress=False, use_cache=False)

    datawinnow.score(str(src), "ifd", out=str(whole), ctx=ctx())
    summary = score_stream(str(src), "ifd", out=str(streamed), chunk_size=4, ctx=ctx())
    assert (summary.n, summary.chunks, summary.computed, summary.cached) == (14, 4, 14, 0)
    a = [json.loads(line) for line in whole.read_text(encoding="utf-8").splitlines()]
    b = [json.loads(line) for line in streamed.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in b] == [r["id"] for r in a] and [set(r) for r in b] == [set(r) for r in a]
    if batch_size == 1:  # no padding: every record's passes are the same computations, so the same bytes
        assert streamed.read_bytes() == whole.read_bytes()
    else:  # chunks batch records with other neighbours, so padded fp32 passes may differ in the last bits
        for key in ("score", "loss_conditioned", "loss_unconditioned", "n_tokens"):
            np.testing.assert_allclose([r[key] for r in b], [r[key] for r in a], rtol=1e-5)


def test_streamed_memory_is_a_fraction_of_the_whole_pool(tmp_path):
    src = tmp_path / "pool.jsonl"
    _write_pool(src, 20_000)

    def peak(run) -> int:
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole = peak(lambda: datawinnow.score(str(src), "length", out=str(tmp_path / "w.jsonl"), progress=False))
    streamed = peak(lambda: score_stream(str(src), "length", out=str(tmp_path / "s.jsonl"), chunk_size=1000,
                                         progress=False))
    assert (tmp_path / "s.jsonl").read_bytes() == (tmp_path / "w.jsonl").read_bytes()
    # what remains per record in the stream is its id (for load()'s repeat rule)
    assert streamed < whole / 4, (streamed, whole)


class Boom(RuntimeError):
    pass


def test_interrupted_stream_leaves_no_output_and_resumes(tmp_path, tiny_lm, monkeypatch):
    src, out = tmp_path / "pool.jsonl", tmp_path / "scores" / "ifd.jsonl"
    _write_pool(src, 14)
    real, calls = IFDScorer.score, {"n": 0}

    def crash_on_third_chunk(self, dataset, ctx):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom("simulated crash")
        return real(self, dataset, ctx)

    monkeypatch.setattr(IFDScorer, "score", crash_on_third_chunk)
    with pytest.raises(Boom):
        score_stream(str(src), "ifd", out=str(out), chunk_size=4, ctx=Context(model=tiny_lm, progress=False))
    assert not out.exists() and list(out.parent.iterdir()) == []  # no partial output, no temporary file

    monkeypatch.setattr(IFDScorer, "score", real)
    summary = score_stream(str(src), "ifd", out=str(out), chunk_size=4, ctx=Context(model=tiny_lm, progress=False))
    assert (summary.n, summary.cached, summary.computed) == (14, 8, 6)  # two chunks of 4 came from the cache
    reference = tmp_path / "reference.jsonl"
    datawinnow.score(str(src), "ifd", out=str(reference), ctx=Context(model=tiny_lm, progress=False))
    assert out.read_bytes() == reference.read_bytes()  # the whole-pool run reads the same cached rows


def test_cli_streams_per_record_scorers_and_not_the_others(tmp_path, tiny_model_dir, capsys):
    src = tmp_path / "pool.jsonl"
    _write_pool(src, 10)
    assert main(["score", str(src), "--scorer", "length", "--out", str(tmp_path / "a.jsonl"), "--chunk-size", "4",
                 "--quiet"]) == 0
    assert "a.jsonl, streamed in 3 chunks of up to 4 records" in capsys.readouterr().out
    assert main(["score", str(src), "--scorer", "length", "--out", str(tmp_path / "b.jsonl"), "--no-stream",
                 "--quiet"]) == 0
    assert "streamed" not in capsys.readouterr().out
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()

    # rds compares each record with the pool's mean: it is not per record and takes the whole-pool path
    assert main(["score", str(src), "--scorer", "rds", "--model", tiny_model_dir, "--device", "cpu", "--dtype",
                 "fp32", "--out", str(tmp_path / "rds.jsonl"), "--chunk-size", "4", "--quiet"]) == 0
    assert "streamed" not in capsys.readouterr().out
    assert len((tmp_path / "rds.jsonl").read_text(encoding="utf-8").splitlines()) == 10
    with pytest.raises(ConfigError, match="cannot be streamed"):
        score_stream(str(src), "rds", out=str(tmp_path / "x.jsonl"), progress=False)


def test_help_names_the_per_record_scorers():
    sub = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "score")[1]
    text = " ".join(sub.format_help().split())
    named = re.search(r"a per-record scorer \(([^)]*)\)", text).group(1)
    assert sorted(named.replace(" ", "").split(",")) == sorted(n for n, c in SCORERS.items() if c.per_record)
