"""The command line's run settings: one flag table mapped onto RuntimeOptions and back."""

from __future__ import annotations

import argparse

import pytest

from datawinnow.cli import build_parser
from datawinnow.cli_options import (ALL_FLAGS, EXECUTOR_FLAGS, JUDGE_FLAGS, MODEL_FLAGS, add_runtime_options,
                                    args_from_runtime_options, runtime_options_from_args)
from datawinnow.errors import ConfigError
from datawinnow.runtime.context import Context
from datawinnow.runtime.options import RuntimeOptions
from datawinnow.train.config import TrainConfig


def _score_args(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["score", "pool.jsonl", "--scorer", "length", "--out", "s.jsonl", *flags])


def test_defaults_map_onto_the_cli_defaults():
    o = runtime_options_from_args(_score_args())
    assert (o.model, o.embedder, o.device, o.dtype, o.system) == ("smollm2", "minilm", "auto", "auto", None)
    assert (o.max_length, o.batch_size, o.batch_tokens, o.seed) == (512, 8, "auto", 0)
    assert (o.use_cache, o.cache_dir, o.progress, o.judge) == (True, None, True, None)
    assert (o.executor, o.ray_address, o.workers, o.worker_threads) == ("local", None, None, None)


def test_each_flag_maps_onto_its_option():
    o = runtime_options_from_args(_score_args(
        "--model", "m", "--adapter", "ad", "--embedder", "e", "--device", "cpu", "--dtype", "fp32", "--system", "none",
        "--max-length", "64", "--batch-size", "3", "--seed", "7", "--no-cache", "--cache-dir", "/tmp/c", "--quiet",
        "--executor", "ray", "--ray-address", "auto", "--workers", "2", "--worker-threads", "4",
        "--judge", "remote", "--judge-url", "http://h/v1", "--judge-model", "j", "--judge-retries", "5"))
    assert o.model == "m+ad" and o.embedder == "e" and (o.device, o.dtype) == ("cpu", "fp32")
    assert o.system == "" and (o.max_length, o.seed) == (64, 7)
    assert (o.batch_size, o.batch_tokens) == (3, None)  # --batch-size: fixed batches, no token budget
    assert (o.use_cache, o.cache_dir, o.progress) == (False, "/tmp/c", False)
    assert (o.executor, o.ray_address, o.workers, o.worker_threads) == ("ray", "auto", 2, 4)
    assert o.judge == {"kind": "remote", "model": "j", "base_url": "http://h/v1", "api_key_env": "OPENAI_API_KEY",
                       "concurrency": 4, "timeout": 60.0, "max_retries": 5, "logprobs": False}
    assert runtime_options_from_args(_score_args("--system", "Be brief.")).system == "Be brief."
    assert runtime_options_from_args(_score_args("--batch-tokens", "4096")).batch_tokens == 4096


@pytest.mark.parametrize("flags", [
    [],
    ["--model", "m", "--adapter", "ad", "--device", "cpu", "--dtype", "bf16", "--system", "none", "--quiet"],
    ["--batch-size", "4", "--seed", "3", "--no-cache", "--cache-dir", "c", "--max-length", "100"],
    ["--batch-tokens", "2048", "--embedder", "e", "--system", "Answer briefly."],
    ["--executor", "ray", "--ray-address", "ray://head:10001", "--workers", "3", "--worker-threads", "2"],
    ["--judge", "local", "--judge-template", "raw", "--judge-model", "jm"],
    ["--judge-url", "http://x/v1", "--judge-model", "served", "--judge-logprobs", "--judge-concurrency", "9"],
])
def test_options_round_trip_through_flags(flags):
    options = runtime_options_from_args(_score_args(*flags))
    argv = args_from_runtime_options(options)
    assert runtime_options_from_args(_score_args(*argv)) == options
    assert args_from_runtime_options(runtime_options_from_args(_score_args(*argv))) == argv


def test_back_to_flags_writes_only_what_differs_in_the_include_order():
    o = RuntimeOptions(model="m", device="cpu", seed=3, progress=False, batch_size=4)
    assert args_from_runtime_options(o, include=MODEL_FLAGS) == [
        "--model", "m", "--device", "cpu", "--batch-size", "4", "--seed", "3", "--quiet"]
    assert args_from_runtime_options(RuntimeOptions(batch_tokens="auto")) == []  # the CLI's own defaults
    assert args_from_runtime_options(Context(batch_tokens=None).options) == ["--batch-size", "8"]


def test_settings_the_flags_cannot_express_are_errors():
    with pytest.raises(ConfigError, match="--executor ray is not an option of this command"):
        args_from_runtime_options(RuntimeOptions(executor="ray", batch_tokens="auto"), include=MODEL_FLAGS)
    with pytest.raises(ConfigError, match="--batch-size replaces --batch-tokens"):
        args_from_runtime_options(RuntimeOptions(batch_size=4, batch_tokens=1024))
    with pytest.raises(ConfigError, match="loaded judge"):
        args_from_runtime_options(RuntimeOptions(judge=object(), batch_tokens="auto"))


def test_bad_values_are_config_errors():
    with pytest.raises(ConfigError, match="workers must be a whole number >= 1"):
        runtime_options_from_args(_score_args("--workers", "0"))
    with pytest.raises(ConfigError, match="batch_tokens"):
        runtime_options_from_args(_score_args("--batch-tokens", "lots"))
    with pytest.raises(ConfigError):
        runtime_options_from_args(_score_args("--device", "gpu0"))


def test_context_from_cli_options_keeps_them():
    options = runtime_options_from_args(_score_args("--device", "cpu", "--seed", "5", "--batch-size", "2"))
    assert Context.from_options(options).options == options


def test_commands_declare_the_flags_they_need():
    parser = build_parser()
    for command in (["score", "p", "--scorer", "x", "--out", "o"], ["select", "p", "--method", "x", "--out", "o"],
                    ["evaluate"]):
        args = vars(parser.parse_args(command))
        assert set(MODEL_FLAGS + EXECUTOR_FLAGS) <= set(args), command
        assert set(JUDGE_FLAGS) <= set(args), command
    # train and delia keep their own defaults and flags
    d = TrainConfig()
    t = parser.parse_args(["train", "d.jsonl", "--out", "a"])
    assert (t.batch_size, t.max_length, t.seed, t.quantize, t.model, t.system) == (
        d.batch_size, d.max_length, d.seed, d.quantize, d.model, "default")
    assert not hasattr(t, "executor") and not hasattr(t, "batch_tokens")
    b = parser.parse_args(["delia", "build-cache", "q.jsonl", "--out", "c.jsonl"])
    assert (b.batch_size, b.seed, b.model, b.adapter, b.cache_dir, b.quiet) == (8, 0, "smollm2", None, None, False)
    for command in (["run-experiment", "c.yaml", "--out", "r"], ["report", "r"]):
        args = parser.parse_args(command)
        assert args.cache_dir is None and args.quiet is False


def test_unknown_flag_names_are_refused():
    with pytest.raises(ValueError, match="no runtime flag named modle"):
        add_runtime_options(argparse.ArgumentParser(), include=("modle",))
    assert set(ALL_FLAGS) == set(MODEL_FLAGS) | set(JUDGE_FLAGS) | set(EXECUTOR_FLAGS)
