"""Formats other tools write and read: Hugging Face's JSON variants, LLaMA-Factory's alpaca system/history,
in-memory datasets, a subset folder load_dataset can read, and files that honour the umask."""

from __future__ import annotations

import json
import logging
import os
import stat
from contextlib import contextmanager

import pytest

import datawinnow
from datawinnow.data import Dataset, Record, write
from datawinnow.select.manifest import find_manifest, legacy_manifest_path, manifest_path

from test_input_properties import cli

ROWS = [{"id": "r1", "instruction": "Name a colour.", "input": "", "output": "Blue."},
        {"id": "r2", "instruction": "Add", "input": "2 and 3", "output": "5"}]

CHAT = [{"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}]


@contextmanager
def datawinnow_warnings():
    """The warnings datawinnow logs inside the block (as messages), whatever logging the CLI set up before."""
    logger = logging.getLogger("datawinnow")
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    saved = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved


def _records(ds: Dataset) -> list[tuple]:
    return [(r.id, r.instruction, r.input, r.output, r.chat()) for r in ds]


def test_json_array_in_jsonl_and_bom_read_like_jsonl(tmp_path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    array = tmp_path / "array.jsonl"
    array.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    bom_csv = tmp_path / "bom.csv"
    bom_csv.write_bytes(b"\xef\xbb\xbfid,instruction,input,output\nr1,Name a colour.,,Blue.\nr2,Add,2 and 3,5\n")
    expected = _records(datawinnow.load(str(plain)))
    for path in (array, bom, bom_csv):
        assert _records(datawinnow.load(str(path))) == expected, path
    broken = tmp_path / "broken.jsonl"
    broken.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": 4}\n]', encoding="utf-8")
    with pytest.raises(datawinnow.errors.DataError, match=r"broken.jsonl, line 3, field 'output': expected a string"):
        datawinnow.load(str(broken))


def test_in_memory_sources():
    import datasets

    hf = datasets.Dataset.from_list(ROWS)
    expected = _records(datawinnow.load(ROWS))
    assert _records(datawinnow.load(hf)) == expected
    assert _records(datawinnow.load(datasets.DatasetDict({"train": hf}))) == expected
    mapped = datawinnow.load(datasets.Dataset.from_list([{"q": "2+2", "label": 4}]),
                             column_map={"input": "q", "output": "label"})
    assert (mapped[0].instruction, mapped[0].output) == ("2+2", "4")  # a numeric column through a column map
    records = [Record(id="", instruction="q", output="a")]
    assert datawinnow.load(records)[0].id == records[0].content_key() and records[0].id == ""  # caller's copy kept
    table = datawinnow.score(hf, "length")
    assert table.ids == ["r1", "r2"]
    sel = datawinnow.select(ROWS, "longest", 1)
    assert sel.selected == ["r1"]


def test_messages_to_alpaca_and_back_is_lossless(tmp_path):
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps({"id": "c1", "messages": CHAT}) + "\n", encoding="utf-8")
    pool = datawinnow.load(str(src))
    alpaca = tmp_path / "chat.alpaca.json"
    write(pool, alpaca, "alpaca")
    row = json.loads(alpaca.read_text(encoding="utf-8"))[0]
    # LLaMA-Factory's alpaca fields: system text, earlier turns as [instruction, response] pairs
    assert row == {"id": "c1", "instruction": "Name a colour.", "input": "", "output": "Blue.",
                   "system": "You are terse.", "history": [["Hi", "Hello."]]}
    again = datawinnow.load(str(alpaca))
    assert again[0].chat() == CHAT
    back = tmp_path / "chat.back.jsonl"
    write(again, back, "messages")
    assert json.loads(back.read_text(encoding="utf-8"))["messages"] == CHAT
    for container in ("csv", "parquet"):  # history survives tabular files too (JSON text in a CSV cell)
        path = tmp_path / f"chat.{container}"
        write(pool, path, "alpaca")
        assert datawinnow.load(str(path))[0].chat() == CHAT, container


def test_alpaca_with_input_and_history_round_trip(tmp_path):
    row = {"id": "h1", "instruction": "Translate", "input": "chat", "output": "cat", "system": "Be brief.",
           "history": [["Hello", "Hi!"], ["Ready?", "Yes."]]}
    src = tmp_path / "a.jsonl"
    src.write_text(json.dumps(row) + "\n", encoding="utf-8")
    pool = datawinnow.load(str(src))
    assert pool[0].chat()[0] == {"role": "system", "content": "Be brief."}
    assert pool[0].chat()[-2:] == [{"role": "user", "content": "Translate\n\nchat"}, {"role": "assistant", "content": "cat"}]
    for fmt in ("sharegpt", "messages"):
        mid = tmp_path / f"mid.{fmt}.jsonl"
        write(pool, mid, fmt)
        out = tmp_path / f"out.{fmt}.jsonl"
        write(datawinnow.load(str(mid)), out, "alpaca")
        got = json.loads(out.read_text(encoding="utf-8"))
        # via a chat format the prompt is one user turn: instruction and input arrive joined
        assert got == {**row, "instruction": "Translate\n\nchat", "input": ""}, fmt
    out = tmp_path / "out.alpaca.jsonl"
    write(pool, out, "alpaca")
    assert json.loads(out.read_text(encoding="utf-8")) == row
    with pytest.raises(datawinnow.errors.DataError, match=r"<list>, item 1, field 'history': turn 0 must be"):
        datawinnow.load([{"instruction": "q", "output": "a", "history": [["only one"]]}])


def test_lossy_conversions_warn_with_a_count(tmp_path):
    irregular = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    src = tmp_path / "chat.jsonl"
    src.write_text(json.dumps({"id": "x", "messages": CHAT}) + "\n" + json.dumps({"id": "y", "messages": irregular})
                   + "\n" + json.dumps({"id": "z", "messages": CHAT[-2:]}) + "\n", encoding="utf-8")
    pool = datawinnow.load(str(src))
    with datawinnow_warnings() as warnings:
        write(pool, tmp_path / "o.jsonl", "input-target")
        write(pool, tmp_path / "o2.jsonl", "alpaca")
        write(pool, tmp_path / "o3.jsonl", "sharegpt")
    assert len(warnings) == 2  # sharegpt holds every turn
    assert "2 of 3 records have a conversation that cannot be written as input-target" in warnings[0]
    assert "1 of 3 records have a conversation that cannot be written as alpaca" in warnings[1]


def test_subset_folder_loads_with_hf_load_dataset(tmp_path):
    import datasets

    out_dir = tmp_path / "subset"
    code, _, err = cli("select", "bundled:self_instruct_seed_tasks", "--method", "longest", "--budget", "7",
                       "--out", str(out_dir / "sub.jsonl"), "--quiet")
    assert code == 0, err
    assert manifest_path(out_dir / "sub.jsonl").is_file()
    assert sorted(os.listdir(out_dir)) == [".sub.jsonl.manifest.json", "sub.jsonl"]
    ds = datasets.load_dataset("json", data_dir=str(out_dir), split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == 7 and {"instruction", "input", "output", "id"} <= set(ds.column_names)
    # a subset written by an older datawinnow: its manifest is still found
    old = tmp_path / "old.jsonl"
    old.write_text("{}\n")
    assert find_manifest(old) is None
    legacy_manifest_path(old).write_text("{}")
    assert find_manifest(old) == tmp_path / "old.jsonl.manifest.json"


def _modes(folder) -> dict[str, int]:
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink() and "models" not in p.parts}


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask, monkeypatch, _isolated_cache):
    old = os.umask(umask)
    try:
        out = tmp_path / "out"
        assert cli("select", "bundled:self_instruct_seed_tasks", "--method", "longest", "--budget", "5",
                   "--out", str(out / "sub.jsonl"), "--quiet")[0] == 0
        assert cli("score", "bundled:self_instruct_seed_tasks", "--scorer", "length",
                   "--out", str(out / "len.jsonl"), "--quiet")[0] == 0
        from datawinnow.cache import ScoreStore, atomic_save_npy
        ScoreStore("x", {}, None).put([{"id": "a", "_key": "k", "v": 1}])
        atomic_save_npy(_isolated_cache / "kernels" / "k" / "block-000000000.npy", __import__("numpy").zeros(3))
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    files = {**_modes(out), **_modes(_isolated_cache)}
    assert {".sub.jsonl.manifest.json", "sub.jsonl", "len.jsonl"} <= set(files)
    assert any(name.startswith("scores/") for name in files) and any(name.startswith("kernels/") for name in files)
    assert {name: mode for name, mode in files.items() if mode != want} == {}


def test_score_columns(tmp_path):
    src = tmp_path / "qa.jsonl"
    src.write_text('{"question": "2+2?", "answer": "four"}\n{"question": "Capital of France?", "answer": "Paris"}\n',
                   encoding="utf-8")
    out = tmp_path / "len.jsonl"
    code, stdout, err = cli("score", str(src), "--scorer", "length", "--columns", '{"input": "question", "output": "answer"}',
                            "--out", str(out))
    assert code == 0, err
    assert [json.loads(line)["score"] for line in out.read_text(encoding="utf-8").splitlines()] == [4.0, 5.0]
