"""Every mistake a new user made in the try-out of issue 12 ends with one ``datawinnow: error:`` line naming
the problem and exit code 2 (``--debug``: the traceback), in-process and, for a few, as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import datawinnow
from datawinnow.errors import ConfigError, DataError

from test_data_compat import datawinnow_warnings
from test_input_properties import assert_one_line_error, cli

POOL = "bundled:self_instruct_seed_tasks"


@pytest.fixture()
def bad_utf8(tmp_path) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_bytes(b'{"instruction": "q1", "output": "a1"}\n{"instruction": "q2", "output": "caf\xe9"}\n')
    return path


# ------------------------------------------------------------------------------------------- bad bytes
def test_non_utf8_in_every_command(bad_utf8, tmp_path, tiny_model_dir):
    where = f"{bad_utf8}, line 2: not UTF-8 text (byte 0xe9 at column 37)"
    for argv in (["data", "show", str(bad_utf8)],
                 ["select", str(bad_utf8), "--method", "random", "--budget", "1", "--out", str(tmp_path / "s.jsonl")],
                 ["score", str(bad_utf8), "--scorer", "ifd", "--model", tiny_model_dir, "--out", str(tmp_path / "x.jsonl")],
                 ["train", str(bad_utf8), "--model", tiny_model_dir, "--out", str(tmp_path / "adapter")]):
        code, _, err = cli(*argv)
        assert_one_line_error(code, err, where)
    with pytest.raises(DataError) as info:
        datawinnow.load(str(bad_utf8))
    assert (info.value.path, info.value.line) == (str(bad_utf8), 2)


def test_debug_shows_the_traceback(bad_utf8):
    with pytest.raises(DataError, match="not UTF-8 text"):
        cli("data", "show", str(bad_utf8), "--debug")  # accepted anywhere on the line
    with pytest.raises(DataError):
        cli("--debug", "data", "show", str(bad_utf8))


def test_subprocess_one_line_and_debug(bad_utf8):
    run = [sys.executable, "-m", "datawinnow.cli", "data", "show", str(bad_utf8)]
    plain = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [f"datawinnow: error: {bad_utf8}, line 2: not UTF-8 text (byte 0xe9 "
                                                 "at column 37); re-encode the file as UTF-8"]
    debug = subprocess.run(run + ["--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "datawinnow.errors.DataError" in debug.stderr


# ------------------------------------------------------------------------------------------- parameters
def test_params_are_checked_by_declared_type(capsys):
    code, _, err = cli("select", POOL, "--method", "random", "--budget", "5", "--param", "seed=abc", "--out", "x.jsonl")
    assert_one_line_error(code, err, "method 'random': parameter 'seed' expects an integer, got 'abc'")
    code, _, err = cli("select", POOL, "--method", "ifd", "--budget", "5", "--param", "keep_misaligned=maybe",
                       "--out", "x.jsonl")
    assert_one_line_error(code, err, "method 'ifd': parameter 'keep_misaligned' expects a boolean")
    ifd = datawinnow.registry.METHODS.get("ifd")
    for text, value in (("true", True), ("false", False), ("1", True), ("0", False), ("yes", True), ("No", False)):
        assert ifd(**datawinnow.params.parse_params([f"keep_misaligned={text}"])).params["keep_misaligned"] is value
    alpagasus = datawinnow.registry.METHODS.get("alpagasus")
    assert alpagasus(**datawinnow.params.parse_params(["threshold=4"])).params["threshold"] == 4.0
    with pytest.raises(ConfigError, match="parameter 'threshold' expects a number, got 'high'"):
        alpagasus(threshold="high")
    with pytest.raises(ConfigError, match="parameter 'max_tokens' expects an integer, got '2.5'"):
        alpagasus(max_tokens=2.5)
    delift = datawinnow.registry.METHODS.get("delift")
    assert delift(**datawinnow.params.parse_params(["block_size=64"])).params["block_size"] == 64  # 'auto' or a number
    assert delift(**datawinnow.params.parse_params(["block_size=auto"])).params["block_size"] == "auto"


# ------------------------------------------------------------------------------------------- output paths
def test_out_is_a_folder_or_unwritable(tmp_path, tiny_model_dir):
    folder = tmp_path / "existing"
    folder.mkdir()
    for out, why in ((str(folder), "is a folder; give a file name"),
                     ("/proc/nope.jsonl", "/proc/nope.jsonl: cannot write in /proc")):
        for argv in (["select", POOL, "--method", "random", "--budget", "1", "--out", out],
                     ["score", POOL, "--scorer", "length", "--out", out],
                     ["data", "convert", POOL, "--out", out]):
            code, _, err = cli(*argv)
            assert_one_line_error(code, err, why)
    (tmp_path / "file").write_text("x")
    code, _, err = cli("train", POOL, "--model", tiny_model_dir, "--out", str(tmp_path / "file"))
    assert_one_line_error(code, err, "exists and is a file; give a folder")


# ------------------------------------------------------------------------------------------- models and devices
def test_model_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (tmp_path / "weights.bin").write_bytes(b"x")
    cases = {str(empty): "the folder is empty", "./no/such/model": "model './no/such/model': no such folder",
             str(adapter): "is a LoRA adapter folder, not a model", str(tmp_path / "weights.bin"): "is a file",
             "a/b/c": "no such folder"}
    for model, why in cases.items():
        code, _, err = cli("score", POOL, "--scorer", "ifd", "--model", model, "--out", str(tmp_path / "s.jsonl"))
        assert_one_line_error(code, err, why)


def test_offline_hub_id_fails_fast(tmp_path, monkeypatch):
    from datawinnow.backends import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    code, _, err = cli("score", POOL, "--scorer", "ifd", "--model", "nosuchorg/nosuchmodel", "--out", str(tmp_path / "s"))
    assert_one_line_error(code, err, "'nosuchorg/nosuchmodel' is not in the local Hugging Face cache and HF_HUB_OFFLINE")
    # no offline switch, and the hub does not answer (a closed local port): one connection attempt, then the error
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    hub._reach.cache_clear()
    code, _, err = cli("score", POOL, "--scorer", "ifd", "--model", "nosuchorg/nosuchmodel", "--out", str(tmp_path / "s"))
    assert_one_line_error(code, err, "cannot reach the Hugging Face hub (127.0.0.1:9:")
    assert time.perf_counter() - t0 < 30  # model loading code included; the hub client's retries took ~48 s


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda(tmp_path, tiny_model_dir):
    code, _, err = cli("score", POOL, "--scorer", "ifd", "--model", tiny_model_dir, "--device", "cuda",
                       "--out", str(tmp_path / "s.jsonl"))
    assert_one_line_error(code, err, "--device cuda: ", "use --device cpu")


# ------------------------------------------------------------------------------------------- output noise
def test_quiet_prints_nothing_on_stderr(tmp_path, tiny_model_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "datawinnow.cli", "score", POOL, "--scorer", "ifd", "--model",
                          tiny_model_dir, "--device", "cpu", "--dtype", "fp32", "--max-length", "64",
                          "--out", str(tmp_path / "s.jsonl"), "--quiet"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # no loading bars, no FutureWarnings, no summary line
    assert "scored 175 records with ifd" in run.stdout


def test_warnings_go_through_logging(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text('{"id": "a", "instruction": "q", "output": ""}\n{"id": "a", "instruction": "r", "output": "s"}\n',
                    encoding="utf-8")
    with datawinnow_warnings() as seen:
        ds = datawinnow.load(str(path))
    assert ds.ids == ["a", "a~2"]
    text = "\n".join(seen)
    assert f"{path} (line 1): the output is empty in 1 of 2 records" in text
    assert f"{path} (line 2): 1 record(s) repeat an id used earlier" in text
    code, _, err = cli("data", "show", str(path))
    assert code == 0 and err.startswith("datawinnow: warning: ")
