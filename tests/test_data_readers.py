"""Readers on good files and on broken ones; the error must name file, line and field."""

from __future__ import annotations

import gzip
import json

import pytest

from datawinnow.data import load, load_column_map
from datawinnow.errors import DataError


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_alpaca_jsonl(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [
        {"instruction": "Add", "input": "1 2", "output": "3"},
        {"instruction": "Greet", "output": "Hi", "extra": 7},
    ])
    ds = load(p)
    assert len(ds) == 2 and ds.format == "alpaca:jsonl"
    assert ds[0].prompt == "Add\n\n1 2" and ds[0].output == "3"
    assert ds[1].input == "" and ds[1].meta == {"extra": 7}


def test_alpaca_json_array(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([{"instruction": "A", "input": "", "output": "B"}] * 2, indent=2), encoding="utf-8")
    ds = load(p)
    assert len(ds) == 2 and ds.format == "alpaca:json"
    # identical content, stable distinct ids
    assert ds[0].id != ds[1].id and ds[1].id == ds[0].id + "~2"


def test_input_target(tmp_path):
    ds = load(write_lines(tmp_path / "cr.jsonl", [{"input": "Q?", "target": "A."}]))
    assert ds.format == "input-target:jsonl" and ds[0].instruction == "Q?" and ds[0].output == "A."


def test_sharegpt(tmp_path):
    conv = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"},
            {"from": "human", "value": "more"}, {"from": "gpt", "value": "sure"}]
    p = tmp_path / "s.json"
    p.write_text(json.dumps([{"id": "x1", "conversations": conv}]), encoding="utf-8")
    ds = load(p)
    r = ds[0]
    assert r.id == "x1" and r.instruction == "more" and r.output == "sure"
    assert [m["role"] for m in r.messages] == ["user", "assistant", "user", "assistant"]


def test_messages_jsonl(tmp_path):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"}]
    ds = load(write_lines(tmp_path / "m.jsonl", [{"messages": msgs}]))
    assert ds.format == "messages:jsonl" and ds[0].output == "a" and ds[0].messages[0]["role"] == "system"


def test_csv_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.csv"
    p.write_text("instruction,input,output\nAdd,1 2,3\nSay hi,,hi\n", encoding="utf-8")
    ds = load(p)
    assert len(ds) == 2 and ds[1].output == "hi"
    q = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "A", "input": "", "output": "B"}]), q)
    assert load(q)[0].output == "B"


def test_gzip_jsonl(tmp_path):
    p = tmp_path / "a.jsonl.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"instruction": "A", "output": "B"}) + "\n")
    assert load(p)[0].output == "B"


def test_bundled_sets_load():
    assert len(load("bundled:alpaca_en_demo")) == 999
    assert len(load("bundled:natural_instructions_v1")) == 17614
    arc = load("bundled:arc_easy_validation")
    assert len(arc) == 570 and arc[0].output.startswith(arc[0].meta["answerKey"] + ". ")
    mmlu = load("bundled:mmlu_validation")
    assert len(mmlu) == 1531 and "\nA. " in mmlu[0].instruction
    assert len(load("bundled:ifeval_input_data")) == 541
    hs = load("bundled:hellaswag_validation")
    assert len(hs) == 10042 and hs[0].output == "D. starts pulling up roofing on a roof."
    wg = load("bundled:winogrande_xl_validation")
    assert len(wg) == 1267 and wg[0].output == "B. Maria" and "_" in wg[0].instruction


def test_ids_are_stable_across_runs():
    a, b = load("bundled:alpaca_en_demo"), load("bundled:alpaca_en_demo")
    assert a.ids == b.ids and len(set(a.ids)) == len(a)
    assert a.fingerprint() == b.fingerprint()


def test_hf_save_to_disk_with_column_map(tmp_path):
    import datasets

    folder = tmp_path / "hfds"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"question": "2+2?", "answer": "4", "ctx": "math"}]),
                          "test": datasets.Dataset.from_list([{"question": "3+3?", "answer": "6", "ctx": "math"}])}
                         ).save_to_disk(str(folder))
    cmap = {"input": "question", "output": "answer", "instruction": "Answer the question.",
            "split_name": {"train": "train", "test": "test"}}
    ds = load(str(folder), column_map=cmap)
    assert ds[0].instruction == "Answer the question." and ds[0].input == "2+2?" and ds[0].output == "4"
    # a DELIFT-style file keyed by dataset name also works
    mapfile = tmp_path / "map.json"
    mapfile.write_text(json.dumps({str(folder): {"input": "question", "output": "answer"}}), encoding="utf-8")
    assert load_column_map(str(mapfile), dataset_name=str(folder)).input == "question"


# ----------------------------------------------------------------------------------- broken input
def test_missing_field_names_file_line_field(tmp_path):
    p = write_lines(tmp_path / "bad.jsonl", [{"instruction": "A", "output": "B"}, {"instruction": "C"}])
    with pytest.raises(DataError) as e:
        load(p)
    assert str(e.value) == f"{p}, line 2, field 'output': missing required field"


def test_wrong_type_names_field(tmp_path):
    p = write_lines(tmp_path / "bad.jsonl", [{"instruction": "A", "output": ["not", "text"]}])
    with pytest.raises(DataError, match=r"bad.jsonl, line 1, field 'output': expected a string, got list"):
        load(p)


def test_invalid_json_line(tmp_path):
    p = write_lines(tmp_path / "bad.jsonl", [{"instruction": "A", "output": "B"}, "", '{"instruction": "C", "output": '])
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: invalid JSON"):
        load(p)


def test_json_array_error_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n  {"instruction": "A", "output": "B"},\n  {"instruction": "C",\n   "output": 5.5, "input": {}}\n]',
                 encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.json, line 3, field 'input': expected a string, got dict"):
        load(p)


def test_sharegpt_bad_speaker(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps([{"conversations": [{"from": "robot", "value": "x"}]}]), encoding="utf-8")
    with pytest.raises(DataError, match=r"s.json, line 1, field 'conversations': turn 0 has unknown speaker 'robot'"):
        load(p)


def test_messages_must_end_with_assistant(tmp_path):
    p = write_lines(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(DataError, match=r"line 1, field 'messages': the last turn must be the assistant's"):
        load(p)


def test_csv_error_names_line(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("instruction,output\nA,B\nC,D,E\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a.csv, line 3: more cells than header columns"):
        load(p)


def test_parquet_error_names_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    q = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([{"instruction": "A", "output": "B"}, {"instruction": "C", "output": None}]), q)
    with pytest.raises(DataError, match=r"a.parquet, row 2, field 'output': missing required field"):
        load(q)


def test_unknown_schema(tmp_path):
    p = write_lines(tmp_path / "x.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"x.jsonl, line 1: cannot tell the format from its fields \(answer, question\)"):
        load(p)


def test_empty_pool_is_an_error(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty.jsonl: no records \(the pool is empty\)"):
        load(p)


def test_missing_file_and_unknown_bundled(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="unknown bundled data set"):
        load("bundled:nope")


def test_column_map_missing_output(tmp_path):
    with pytest.raises(DataError, match=r"column map, field 'output'"):
        load_column_map({"input": "q"})
