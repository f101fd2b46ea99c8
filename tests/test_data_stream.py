"""Streaming reads and `data convert`: records in bounded chunks, read as needed, equal to what `load` reads,
errors naming file/line/field, and a convert that writes what the whole-file writer wrote, atomically."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tracemalloc

import pytest

from datawinnow.data import Dataset, RecordStream, convert, iter_chunks, iter_records, load, write
from datawinnow.data.writers import resolve_format, to_row
from datawinnow.errors import DataError

from test_data_compat import datawinnow_warnings
from test_input_properties import cli


def pool_rows(n: int) -> list[dict]:
    return [{"id": f"r{i}", "instruction": f"Explain topic {i}.", "input": "" if i % 3 else f"context {i}",
             "output": f"Topic {i} is " + "simple " * (i % 7)} for i in range(n)]


def write_jsonl(path, rows, *, gz: bool = False) -> str:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def dicts(records) -> list[dict]:
    return [r.to_dict() for r in records]


# ------------------------------------------------------------------------------------------- laziness and memory
def test_chunks_are_read_as_needed(tmp_path):
    rows = pool_rows(5000) + [{"instruction": "late", "output": 7}]
    path = write_jsonl(tmp_path / "pool.jsonl", rows)
    stream = RecordStream(path, chunk_size=100)
    chunks = stream.chunks()
    first = next(chunks)  # the broken last line is not reached yet
    assert isinstance(first, Dataset) and len(first) == 100 and first[0].id == "r0" and first.format == "alpaca:jsonl"
    assert 0 < stream.meter.done < stream.meter.total / 4  # only the start of the file has been read
    with pytest.raises(DataError) as e:
        for _ in chunks:
            pass
    assert str(e.value) == f"{path}, line 5001, field 'output': expected a string, got int (write it as text: \"7\")"


def test_streaming_memory_is_a_fraction_of_load(tmp_path):
    path = write_jsonl(tmp_path / "pool.jsonl", pool_rows(20000))
    tracemalloc.start()
    try:
        n = sum(len(c) for c in iter_chunks(path, chunk_size=256))
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        ds = load(path)
        _, loaded = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == len(ds) == 20000
    assert streamed < 0.3 * (loaded - base)  # measured: about 0.14 (per record only its id is kept)


# ------------------------------------------------------------------------------------------- equal to load
def test_chunks_equal_load_with_ids_and_warnings_across_chunk_borders(tmp_path):
    rows = pool_rows(10)
    rows[3]["id"] = rows[4]["id"] = rows[9]["id"] = "same"  # repeats across chunks of 4
    del rows[5]["id"], rows[6]["id"]
    rows[6] = dict(rows[5])  # the same content twice without an id: a content-hash id, then ID~2
    rows[8]["output"] = ""
    path = write_jsonl(tmp_path / "pool.jsonl", rows)
    with datawinnow_warnings() as loaded_warnings:
        loaded = load(path)
    with datawinnow_warnings() as streamed_warnings:
        chunks = list(iter_chunks(path, chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert dicts(r for c in chunks for r in c) == dicts(loaded)
    assert [r.id for r in loaded][3:5] == ["same", "same~2"] and loaded[9].id == "same~3"
    assert loaded[6].id == loaded[5].id + "~2"
    assert streamed_warnings == loaded_warnings and len(loaded_warnings) == 2
    assert "(lines 5, 10): 2 record(s) repeat an id" in loaded_warnings[1]


@pytest.mark.parametrize("source", ["bundled:self_instruct_seed_tasks", "bundled:mmlu_validation", "gz", "csv",
                                    "parquet", "array", "list", "dataset"])
def test_every_source_streams_the_records_load_reads(tmp_path, source):
    rows = pool_rows(300)
    if source == "gz":
        source = write_jsonl(tmp_path / "p.jsonl.gz", rows, gz=True)
    elif source in ("csv", "parquet"):
        source = str(tmp_path / f"p.{source}")
        write(Dataset(load(rows).records), source)
    elif source == "array":
        source = str(tmp_path / "p.jsonl")
        (tmp_path / "p.jsonl").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    elif source == "list":
        source = rows
    elif source == "dataset":
        source = load(rows)
    assert dicts(iter_records(source, chunk_size=64)) == dicts(load(source))
    chunk = next(iter_chunks(source, chunk_size=64))
    assert chunk.format == load(source).format and chunk.path == load(source).path


@pytest.mark.parametrize("suffix,content,where", [
    (".jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": "c"}\n', "line 2, field 'output': missing"),
    (".jsonl", b'{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "\xff"}\n',
     "line 3: not UTF-8 text (byte 0xff at column 33)"),
    (".jsonl", b'{"instruction": "a", "output": "b"}\n{"instruction": \n', "line 2: invalid JSON"),
    (".csv", b"instruction,output\na,b\nc,d,e\n", "line 3: more cells than header columns"),
    (".jsonl.gz", gzip.compress(b'{"instruction": "a", "output": "b"}\n{"output": "c"}\n'),
     "line 2, field 'instruction': missing"),
    (".jsonl.gz", gzip.compress(b'{"instruction": "a", "output": "b"}\n' * 50)[:-10], "truncated gzip file"),
])
def test_stream_errors_name_file_line_field(tmp_path, suffix, content, where):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(DataError, match="^" + re.escape(f"{path}, {where}" if "line" in where else f"{path}: {where}")):
        list(iter_records(str(path)))
    with pytest.raises(DataError) as loaded:
        load(str(path))
    with pytest.raises(DataError) as streamed:
        list(iter_records(str(path)))
    assert str(streamed.value) == str(loaded.value)


def test_parquet_errors_name_the_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(pool_rows(1500) + [{"instruction": "x", "output": None}]), path,
                   row_group_size=500)
    with pytest.raises(DataError, match=r"p.parquet, row 1501, field 'output': missing required field"):
        list(iter_records(str(path)))


def test_empty_source_and_a_stream_read_once(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty.jsonl: no records"):
        list(iter_chunks(str(empty)))
    stream = RecordStream(pool_rows(3))
    assert len(list(stream)) == 3
    with pytest.raises(RuntimeError, match="read once"):
        list(stream)


# ------------------------------------------------------------------------------------------- convert
def reference_write(ds: Dataset, path, fmt: str | None) -> bytes:
    """The whole-dataset writer `data convert` used before it streamed (rows of every record, then one write)."""
    schema, container = resolve_format(ds, path, fmt)
    rows = [to_row(r, schema) for r in ds]
    if container == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    if container == "json":
        return (json.dumps(rows, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    if container == "csv":
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: (v if isinstance(v, str) or v is None else json.dumps(v, ensure_ascii=False))
                        for k, v in row.items()})
        return buf.getvalue().encode("utf-8")
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    table = pq.read_table(io.BytesIO(buf.getvalue()))
    return (str(table.schema) + json.dumps(table.to_pylist())).encode("utf-8")


def written(path) -> bytes:
    path = str(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return (str(table.schema) + json.dumps(table.to_pylist())).encode("utf-8")
    with open(path, "rb") as fh:
        data = fh.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


MIXED = [{"id": "a", "instruction": "Q1", "input": "", "output": "A1", "topic": "x"},
         {"instruction": "Q2", "input": "in", "output": "", "score": 1.5},
         {"id": "a", "instruction": "Q3", "output": "A3", "system": "be terse", "history": [["h1", "r1"]]},
         {"instruction": "Q4", "output": "A4", "extra": {"k": [1, 2]}}]


@pytest.mark.parametrize("src", ["bundled:self_instruct_seed_tasks", "bundled:mmlu_validation", "mixed"])
@pytest.mark.parametrize("out,fmt", [("o.jsonl", None), ("o.json.gz", None), ("o.csv", None), ("o.parquet", None),
                                     ("o.json", "sharegpt"), ("o.jsonl", "messages"), ("o.csv", "input-target"),
                                     ("o.parquet", "messages")])
def test_convert_writes_what_the_whole_file_writer_wrote(tmp_path, src, out, fmt):
    if src == "mixed":
        src = write_jsonl(tmp_path / "mixed.jsonl", MIXED * 300)  # 1200 records: two chunks
    dst = tmp_path / out
    argv = ["data", "convert", src, "--out", str(dst), "--quiet"] + (["--to", fmt] if fmt else [])
    code, stdout, _ = cli(*argv)
    ds = load(src)
    assert code == 0 and f"wrote {len(ds)} records" in stdout
    assert written(dst) == reference_write(ds, dst, fmt)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


def test_convert_is_atomic_on_a_late_error(tmp_path):
    src = write_jsonl(tmp_path / "pool.jsonl", pool_rows(3000) + [{"instruction": "x"}])
    for name in ("new.jsonl", "new.csv", "new.parquet"):
        with pytest.raises(DataError, match=r"pool.jsonl, line 3001, field 'output'"):
            convert(src, str(tmp_path / name), chunk_size=500)
        assert not (tmp_path / name).exists()
    old = tmp_path / "old.jsonl"
    old.write_text("kept\n", encoding="utf-8")
    code, _, err = cli("data", "convert", src, "--out", str(old), "--quiet")
    assert code == 2 and "line 3001" in err and old.read_text(encoding="utf-8") == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.jsonl", "pool.jsonl"]


def test_convert_reports_progress_by_file_position(tmp_path):
    src = write_jsonl(tmp_path / "pool.jsonl", pool_rows(2500))
    seen: list[tuple[float, float]] = []
    count, fmt = convert(src, str(tmp_path / "o.jsonl"), "input-target", chunk_size=1000,
                         on_progress=lambda m: seen.append((m.done, m.total)))
    assert (count, fmt) == (2500, "input-target:jsonl")
    size = (tmp_path / "pool.jsonl").stat().st_size
    assert len(seen) == 3 and all(total == size for _, total in seen)
    assert seen[0][0] < seen[1][0] <= seen[2][0] == size
