"""Property tests (hypothesis): whatever a user feeds the readers or the command line, the outcome is a
result or one ``datawinnow: error:`` line with exit code 2 naming the problem, never a traceback.

Inputs: malformed JSON, wrong types, missing and extra fields, empty files, non-UTF-8 bytes, BOMs,
very long lines, duplicate ids, broken gzip/CSV/Parquet; out-of-range budgets, unknown methods and
parameters, bad paths and bad devices. The CLI runs in-process (``cli.main``) for speed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from datawinnow.cli import main
from datawinnow.data import Dataset, load
from datawinnow.errors import DataError
from datawinnow.registry import METHODS

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = ["id", "instruction", "input", "output", "target", "messages", "conversations", "system", "history",
          "meta", "source", "task", "extra"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c,
                                                                                       max_size=3), max_leaves=6)
turns = st.lists(st.dictionaries(st.sampled_from(["role", "content", "from", "value"]),
                                 st.sampled_from(["user", "assistant", "system", "human", "gpt", "bot"]) | json_values,
                                 max_size=4), max_size=4)
good_rows = st.builds(lambda i, o, rid: {"id": rid, "instruction": i, "output": o},
                      st.text(min_size=1, max_size=20), st.text(max_size=20), st.sampled_from(["a", "b", "c", None]))
rows = st.one_of(good_rows, good_rows, st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=12) | json_values | turns,
                                                       max_size=6), json_values)


def cli(*argv: str) -> tuple[int, str, str]:
    """``datawinnow ARGV`` in-process: (exit code, stdout, stderr); argparse's SystemExit counts as an exit code."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(code: int, err: str, *must: str) -> str:
    """Exit code 2, no traceback, the last stderr line is the error (warnings and usage may come before)."""
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("datawinnow: error: "), err
    for m in must:
        assert m in last, (m, last)
    return last


def check_outcome(path: Path, text_lines: int | None = None) -> Dataset | None:
    """``load(path)``: a Dataset, or a DataError that names the file (and a plausible line)."""
    try:
        ds = load(str(path))
    except DataError as e:
        assert str(e).startswith(str(path)), str(e)
        if e.line is not None and text_lines is not None:
            assert 1 <= e.line <= text_lines + 1
            assert f"line {e.line}" in str(e) or f"row {e.line}" in str(e)
        return None
    assert len(ds) >= 1 and len(set(ds.ids)) == len(ds)  # repeated ids are made unique
    for r in ds:
        assert isinstance(r.instruction, str) and isinstance(r.output, str) and isinstance(r.input, str)
    return ds


def corrupt(data: bytes, how: list[str], pos: int) -> bytes:
    if "bom" in how:
        data = b"\xef\xbb\xbf" + data
    if "bad_byte" in how and data:
        p = pos % len(data)
        data = data[:p] + b"\xff\xfe" + data[p:]
    if "truncate" in how and data:
        data = data[: pos % len(data)]
    return data


corruptions = st.lists(st.sampled_from(["bom", "bad_byte", "truncate"]), max_size=3, unique=True)


def _tmp(suffix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix="dw-prop-"))
    return d / f"pool{suffix}"


# ------------------------------------------------------------------------------------------- readers
@SETTINGS
@given(st.lists(rows | st.text(max_size=30), max_size=8), corruptions, st.integers(0, 10**6),
       st.sampled_from([".jsonl", ".json", ".jsonl.gz"]), st.booleans())
@example([{"instruction": "q", "output": "x" * 300_000}], [], 0, ".jsonl", False)  # a very long line
@example([{"instruction": "q", "output": 42}], [], 0, ".jsonl", False)  # a number where text belongs
@example([], [], 0, ".jsonl", False)  # an empty file
@example([{"id": "a", "instruction": "q", "output": "r"}] * 3, ["bom"], 0, ".jsonl", True)  # BOM, array, dup ids
def test_json_readers_never_crash(items, how, pos, suffix, as_array):
    if as_array:
        payload = json.dumps(items, ensure_ascii=False)
    else:
        payload = "\n".join(i if isinstance(i, str) else json.dumps(i, ensure_ascii=False) for i in items)
    data = corrupt(payload.encode("utf-8"), how, pos)
    path = _tmp(suffix)
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    ds = check_outcome(path, data.count(b"\n") + 1)
    if ds is not None and not how and not as_array and suffix == ".jsonl":
        assert len(ds) == sum(1 for i in items if not (isinstance(i, str) and not i.strip()))


@SETTINGS
@given(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=5),
       st.lists(st.lists(st.text(max_size=15), max_size=6), max_size=6), corruptions, st.integers(0, 10**6))
@example(["instruction", "output"], [["q", "x" * 200_000]], [], 0)  # longer than csv's default field limit
def test_csv_reader_never_crashes(header, body, how, pos):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(body)
    data = corrupt(buf.getvalue().encode("utf-8"), how, pos)
    path = _tmp(".csv")
    path.write_bytes(data)
    check_outcome(path, data.count(b"\n") + 1)


@SETTINGS
@given(st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(["str", "int", "none", "list"]), min_size=1, max_size=4),
       st.integers(0, 5), st.booleans(), st.integers(0, 10**6))
def test_parquet_reader_never_crashes(columns, n, garbage, pos):
    import pyarrow as pa
    import pyarrow.parquet as pq

    make = {"str": lambda k: f"text {k}", "int": lambda k: k, "none": lambda k: None, "list": lambda k: [k, k + 1]}
    table = pa.table({c: [make[t](k) for k in range(n)] for c, t in columns.items()})
    path = _tmp(".parquet")
    pq.write_table(table, path)
    if garbage:
        data = path.read_bytes()
        path.write_bytes(data[: pos % max(len(data), 1)])
    check_outcome(path)


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([".jsonl.gz", ".csv.gz", ".json.gz"]))
def test_gzip_garbage(raw, suffix):
    path = _tmp(suffix)
    path.write_bytes(raw if raw[:2] != b"\x1f\x8b" else raw[2:])  # never a valid gzip stream by chance
    check_outcome(path)


@SETTINGS
@given(st.lists(rows, max_size=6))
def test_in_memory_rows_never_crash(items):
    try:
        ds = load(items)
    except DataError as e:
        assert str(e).startswith("<list>")
        return
    assert len(ds) == len(items) and len(set(ds.ids)) == len(ds)


# ------------------------------------------------------------------------------------------- the CLI on files
@SETTINGS
@given(st.lists(rows | st.text(max_size=20), max_size=6), corruptions, st.integers(0, 10**6),
       st.sampled_from(["show", "select", "convert"]))
def test_cli_on_any_file(items, how, pos, command):
    payload = "\n".join(i if isinstance(i, str) else json.dumps(i, ensure_ascii=False) for i in items)
    path = _tmp(".jsonl")
    path.write_bytes(corrupt(payload.encode("utf-8"), how, pos))
    out = path.parent / "out.jsonl"
    argv = {"show": ["data", "show", str(path)],
            "select": ["select", str(path), "--method", "longest", "--budget", "1", "--out", str(out), "--quiet"],
            "convert": ["data", "convert", str(path), "--to", "sharegpt", "--out", str(out)]}[command]
    code, _, err = cli(*argv)
    if code != 0:
        last = assert_one_line_error(code, err)
        assert str(path) in last  # a data problem names the file


# ------------------------------------------------------------------------------------------- the CLI's options
POOL = "bundled:self_instruct_seed_tasks"  # 175 records


@SETTINGS
@given(st.one_of(st.integers(-10**4, 10**4), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8)))
@example(0)
@example(176)
@example("150%")
@example(-0.5)
def test_budgets(budget):
    out = _tmp(".jsonl")
    code, _, err = cli("select", POOL, "--method", "random", f"--budget={budget}", "--out", str(out))
    if code == 0:
        assert 1 <= len(out.read_text(encoding="utf-8").splitlines()) <= 175
    else:
        assert_one_line_error(code, err, "budget")


@SETTINGS
@given(st.text(min_size=1, max_size=15).filter(lambda m: m.strip() and m not in METHODS.names()))
def test_unknown_methods(method):
    code, _, err = cli("select", POOL, f"--method={method}", "--budget", "1", "--out", str(_tmp(".jsonl")))
    assert_one_line_error(code, err, "unknown method")


@SETTINGS
@given(st.text(max_size=10), st.text(max_size=10))
@example("seed", "abc")
@example("seed", "3")
@example("sed", "3")
def test_params(key, value):
    code, _, err = cli("select", POOL, "--method", "random", "--budget", "1", f"--param={key}={value}",
                       "--out", str(_tmp(".jsonl")))
    if code == 0:
        assert key.strip() == "seed" and float(value) == int(float(value))  # only an integer seed is accepted
    else:
        last = assert_one_line_error(code, err)
        if key.strip() == "seed":
            assert "parameter 'seed' expects an integer" in last
        elif "=" not in key:
            assert "has no parameter" in last or "--param expects key=value" in last


@SETTINGS
@given(st.text(max_size=12))
@example("cuda:")
@example("tpu")
@example("")
def test_bad_devices(device):
    code, _, err = cli("select", POOL, "--method", "random", "--budget", "1", f"--device={device}",
                       "--out", str(_tmp(".jsonl")))
    if device in ("auto", "cpu", "mps", "cuda") or re.fullmatch(r"cuda:[0-9]+", device):
        assert code == 0, err  # random loads no model: a device that is not there is never touched
    else:
        assert_one_line_error(code, err, "device")


@SETTINGS
@given(st.text(min_size=1, max_size=20).filter(lambda s: not os.path.exists(s) and "\x00" not in s))
@example("./no/such.jsonl")
@example("bundled:nope")
@example("org/name")
def test_missing_sources(src):
    code, _, err = cli("data", "show", src)
    assert_one_line_error(code, err)


@pytest.mark.parametrize("bad", ["dir", "/proc/nope.jsonl", "file/inside.jsonl", ""])
def test_bad_out_paths(tmp_path, bad):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    out = bad if bad.startswith("/") or not bad else str(tmp_path / bad)
    for argv in (["select", POOL, "--method", "random", "--budget", "1", "--out", out],
                 ["data", "convert", POOL, "--out", out]):
        code, _, err = cli(*argv)
        assert_one_line_error(code, err)
