"""Round trips through every writer."""

from __future__ import annotations

import pytest

from datawinnow.data import Dataset, Record, load, write
from datawinnow.errors import ConfigError


def sample() -> Dataset:
    recs = [
        Record(id="r1", instruction="Add the numbers", input="1 2", output="3", meta={"topic": "math"}),
        Record(id="r2", instruction="Say hi", output="Hi there!", meta={"topic": "chat"}),
    ]
    return Dataset(recs, format="alpaca:jsonl")


def multi() -> Dataset:
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"}, {"role": "assistant", "content": "ciao"}]
    return Dataset([Record(id="m1", instruction="bye", output="ciao", messages=msgs)], format="messages:jsonl")


@pytest.mark.parametrize("fmt,suffix", [
    ("alpaca", ".jsonl"), ("alpaca", ".json"), ("alpaca", ".csv"), ("alpaca", ".parquet"), ("alpaca", ".jsonl.gz"),
    ("alpaca", ".csv.gz"),
])
def test_alpaca_round_trip(tmp_path, fmt, suffix):
    ds = sample()
    out = tmp_path / f"out{suffix}"
    write(ds, out, fmt)
    back = load(out)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in ds]


@pytest.mark.parametrize("fmt", ["input-target", "messages", "sharegpt:json", "sharegpt:jsonl", "messages:parquet"])
def test_other_schemas_round_trip(tmp_path, fmt):
    ds = sample()
    out = tmp_path / ("out.json" if fmt.endswith(":json") else "out.parquet" if "parquet" in fmt else "out.jsonl")
    write(ds, out, fmt)
    back = load(out)
    assert back.ids == ds.ids
    assert [r.prompt for r in back] == [r.prompt for r in ds]
    assert [r.output for r in back] == [r.output for r in ds]
    assert [r.meta["topic"] for r in back] == ["math", "chat"]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt:json"])
def test_multi_turn_round_trip(tmp_path, fmt):
    out = tmp_path / ("m.json" if fmt.endswith("json") else "m.jsonl")
    write(multi(), out, fmt)
    back = load(out)
    assert back[0].messages == multi()[0].messages and back[0].output == "ciao"


def test_default_format_is_the_inputs(tmp_path):
    src = tmp_path / "in.jsonl"
    write(sample(), src, "input-target")
    ds = load(src)
    out = tmp_path / "copy.jsonl"
    assert write(ds, out) == "input-target:jsonl"


def test_bad_format(tmp_path):
    with pytest.raises(ConfigError, match="unknown format 'yaml'"):
        write(sample(), tmp_path / "x.yaml", "yaml")
    with pytest.raises(ConfigError, match="cannot be written as CSV"):
        write(multi(), tmp_path / "x.csv", "messages:csv")


def test_write_is_atomic_no_temp_left(tmp_path):
    write(sample(), tmp_path / "a.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]
