"""The command line: help texts with defaults, data commands, select with manifest, one-line errors."""

from __future__ import annotations

import json

import pytest

from datawinnow.cli import build_parser, main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_shows_defaults(capsys):
    for cmd in (["select"], ["score"], ["data", "convert"], ["data", "show"], ["methods"]):
        with pytest.raises(SystemExit):
            main(cmd + ["--help"])
        text = capsys.readouterr().out
        assert "usage: datawinnow" in text
    with pytest.raises(SystemExit):
        main(["select", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: smollm2)" in text and "(default: auto)" in text and "(default: 512)" in text


def test_methods_lists_registered(capsys):
    code, out, _ = run(capsys, "methods", "-v")
    assert code == 0
    for name in ("random", "longest", "ifd"):
        assert f"  {name} " in out
    assert '"variant": "loss_ratio"' in out


def test_data_show_and_convert(capsys, tmp_path):
    code, out, _ = run(capsys, "data", "show", "bundled:self_instruct_seed_tasks", "--head", "1")
    assert code == 0 and "175 records" in out
    dst = tmp_path / "seed.csv"
    code, out, _ = run(capsys, "data", "convert", "bundled:self_instruct_seed_tasks", "--to", "input-target",
                       "--out", str(dst))
    assert code == 0 and "wrote 175 records" in out and "input-target:csv" in out
    assert dst.read_text(encoding="utf-8").splitlines()[0].startswith("id,input,target")


def test_select_writes_subset_and_manifest(capsys, tmp_path):
    out_path = tmp_path / "sub.jsonl"
    code, out, _ = run(capsys, "select", "bundled:self_instruct_seed_tasks", "--method", "longest", "--budget", "0.1",
                       "--out", str(out_path), "--quiet")
    assert code == 0 and "longest: selected 18 of 175" in out and "score histogram" in out
    rows = [json.loads(l) for l in out_path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 18 and {"instruction", "input", "output", "id"} <= set(rows[0])
    manifest = json.loads((tmp_path / ".sub.jsonl.manifest.json").read_text(encoding="utf-8"))
    assert manifest["method"] == "longest" and manifest["pool"] == 175 and manifest["selected"] == 18
    assert manifest["input"]["fingerprint"] and manifest["datawinnow_version"]
    assert sum(r["keep"] for r in manifest["records"]) == 18 and len(manifest["records"]) == 175
    assert all("score" in r for r in manifest["records"])


def test_select_keeps_input_format(capsys, tmp_path):
    src = tmp_path / "pool.json"
    src.write_text(json.dumps([{"conversations": [{"from": "human", "value": f"q{k}"},
                                                  {"from": "gpt", "value": "a" * k}]} for k in range(1, 6)]),
                   encoding="utf-8")
    out_path = tmp_path / "sub.json"
    code, _, _ = run(capsys, "select", str(src), "--method", "longest", "--budget", "2", "--out", str(out_path), "--quiet")
    rows = json.loads(out_path.read_text(encoding="utf-8"))
    assert code == 0 and [r["conversations"][1]["value"] for r in rows] == ["aaaaa", "aaaa"]


def test_errors_are_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "3"}\n', encoding="utf-8")
    code, _, err = run(capsys, "select", str(bad), "--method", "random", "--budget", "1", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2
    assert err.strip() == f"datawinnow: error: {bad}, line 2, field 'output': missing required field"
    code, _, err = run(capsys, "select", "bundled:self_instruct_seed_tasks", "--method", "random", "--budget", "500",
                       "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "budget 500 is outside (0, 175]" in err
    code, _, err = run(capsys, "select", "bundled:self_instruct_seed_tasks", "--method", "random", "--budget", "5",
                       "--param", "seed", "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "--param expects key=value, got 'seed'" in err


def test_score_command(capsys, tmp_path, tiny_model_dir):
    out_path = tmp_path / "scores.jsonl"
    code, out, _ = run(capsys, "score", "bundled:self_instruct_seed_tasks", "--scorer", "ifd", "--model", tiny_model_dir,
                       "--param", "variant=ppl_ratio", "--out", str(out_path), "--quiet", "--dtype", "fp32")
    rows = [json.loads(l) for l in out_path.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and len(rows) == 175
    assert {"id", "score", "loss_conditioned", "loss_unconditioned", "n_tokens"} <= set(rows[0])


def test_parser_builds():
    assert build_parser().prog == "datawinnow"
