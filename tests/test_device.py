"""What ``auto`` resolves to on the machine the tests run on, and the DATAWINNOW_AUTO_DTYPE override."""

from __future__ import annotations

import pytest
import torch

from datawinnow.backends import device as dev
from datawinnow.errors import ConfigError


def test_auto_picks_what_this_hardware_should_use(tiny_model_dir, expected_auto):
    from datawinnow.backends import CausalLM

    device_type, dtype = expected_auto
    picked = dev.pick_device("auto")
    assert picked.type == device_type
    assert dev.pick_dtype("auto", picked) == dtype
    lm = CausalLM.load(tiny_model_dir)  # device and dtype auto
    assert lm.device.type == device_type and lm.dtype == dtype
    assert next(lm.model.parameters()).dtype == dtype


def test_override_changes_only_auto(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx2", "fma"}))  # an AVX2-only CPU
    monkeypatch.delenv("DATAWINNOW_AUTO_DTYPE", raising=False)
    assert dev.pick_dtype("auto", cpu) == torch.float32
    for value, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("FP32", torch.float32),
                         ("bfloat16", torch.bfloat16)):
        monkeypatch.setenv("DATAWINNOW_AUTO_DTYPE", value)
        assert dev.pick_dtype("auto", cpu) == dtype
        assert dev.pick_dtype(None, cpu) == dtype
        assert dev.pick_dtype("fp32", cpu) == torch.float32     # an explicit dtype is never overridden
        assert dev.pick_dtype(torch.float16, cpu) == torch.float16
    monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setenv("DATAWINNOW_AUTO_DTYPE", "fp32")
    assert dev.pick_dtype("auto", cpu) == torch.float32
    monkeypatch.setenv("DATAWINNOW_AUTO_DTYPE", "")                # empty: unset
    assert dev.pick_dtype("auto", cpu) == torch.bfloat16


def test_bad_override_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("DATAWINNOW_AUTO_DTYPE", "fp8")
    with pytest.raises(ConfigError, match=r"DATAWINNOW_AUTO_DTYPE='fp8' is not a dtype \(expected fp32, bf16 or fp16\)"):
        dev.pick_dtype("auto", torch.device("cpu"))
    assert dev.pick_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # not consulted for explicit dtypes


def test_cli_reports_a_bad_override_in_one_line(monkeypatch, tmp_path, capsys, tiny_model_dir):
    from datawinnow.cli import main

    src = tmp_path / "pool.jsonl"
    src.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    monkeypatch.setenv("DATAWINNOW_AUTO_DTYPE", "half")
    rc = main(["score", str(src), "--scorer", "ifd", "--model", tiny_model_dir, "--out", str(tmp_path / "s.jsonl"),
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip().splitlines()[-1].startswith("datawinnow: error: DATAWINNOW_AUTO_DTYPE='half'")
