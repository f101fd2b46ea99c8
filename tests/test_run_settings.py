"""What users could be told wrong: the manifest records every setting that can change a pick (and only
those), misspelt API options are errors, and ``select --out`` never overwrites the pool."""

from __future__ import annotations

import json

import numpy as np
import pytest

import datawinnow
from datawinnow.backends.device import dtype_name
from datawinnow.backends.embedder import Embedder
from datawinnow.backends.judge import Judge
from datawinnow.data.record import Dataset, Record
from datawinnow.errors import ConfigError
from datawinnow.options import UnknownOptionError
from datawinnow.runtime.context import Context
from datawinnow.select.manifest import build_manifest


def _pool(n=6):
    return Dataset([Record(id=f"r{i}", instruction=f"Say the number {i} twice.", output=f"{i} {i} " * (i + 1))
                    for i in range(n)])


def _settings(method, *, params=None, budget=3, **ctx):
    sel = datawinnow.select(_pool(), method, budget, params=params, ctx=Context(progress=False, use_cache=False, **ctx))
    return sel, sel.settings


def _comparable(sel):
    """The manifest without what differs between any two runs (the creation time and timings)."""
    man = build_manifest(sel, _pool())
    man.pop("created")
    man.pop("info")
    return man


# ------------------------------------------------------------------------------------------ manifest
def test_model_free_method_records_only_the_seed():
    sel, settings = _settings("random")
    assert settings == {"seed": 0} and sel.model is None
    # settings nothing reads cannot change the picks, so they leave the manifest alone
    other, _ = _settings("random", max_length=64, dtype="bf16", batch_size=2, system="Be brief.")
    assert _comparable(other) == _comparable(sel)
    reseeded, settings = _settings("random", seed=7)
    assert settings == {"seed": 7} and _comparable(reseeded) != _comparable(sel)
    _, settings = _settings("longest")          # reads nothing at all
    assert settings == {}


def test_model_method_records_model_dtype_device_length_system_batch(tiny_model_dir, expected_auto):
    sel, settings = _settings("ifd", model=tiny_model_dir, max_length=96)
    device, dtype = expected_auto
    import torch
    import transformers

    assert settings["model"] == {"identity": sel.model, "device": settings["device"], "dtype": dtype_name(dtype),
                                 "max_length": 96, "system": "default", "torch": torch.__version__,
                                 "transformers": transformers.__version__}
    assert settings["device"].split(" ")[0] == device and settings["dtype"] == dtype_name(dtype)
    assert settings["max_length"] == 96 and settings["batch_size"] == 8 and settings["system"] == "default"
    assert "seed" not in settings                # IFD draws nothing at random
    manifest = build_manifest(sel, _pool())
    assert manifest["settings"] == settings

    def run(**kw):
        return _comparable(_settings("ifd", model=tiny_model_dir, max_length=96, dtype="fp32", device="cpu", **kw)[0])

    base = run()
    assert run(seed=5) == base                   # cannot change an IFD pick
    for change in ({"max_length": 64}, {"batch_size": 2}, {"system": ""}, {"dtype": "bf16"}):
        kw = {"max_length": 96, **change}
        other = _comparable(_settings("ifd", model=tiny_model_dir, **{"dtype": "fp32", "device": "cpu", **kw})[0])
        assert other["settings"] != base["settings"], change
    none = _settings("ifd", model=tiny_model_dir, system="", dtype="fp32", device="cpu")[1]
    assert none["system"] == "none" and none["model"]["system"] == "none" and none["model"]["dtype"] == "fp32"


def test_preloaded_model_is_described_by_what_it_is(tiny_lm):
    # a loaded model ignores the context's device/dtype options: the manifest says what actually ran
    _, settings = _settings("ifd", model=tiny_lm, dtype="bf16")
    assert settings["model"]["dtype"] == "fp32" and settings["model"]["device"] == "cpu"
    assert "dtype" not in settings               # the context's own dtype was never consulted


class _Judge(Judge):
    identity = "fixed-judge|v1"

    def chat(self, conversations, *, max_tokens=256, temperature=0.0):
        return ["4.5" for _ in conversations]


class _Embedder(Embedder):
    def __init__(self):
        self.identity = "keyword-embedder"

    def encode(self, texts, *, batch_size=32, progress=False):
        v = np.array([[t.count(str(d)) for d in range(10)] + [1.0] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_judge_embedder_and_sources_are_recorded():
    _, settings = _settings("alpagasus", budget=None, judge=_Judge())
    assert settings["judge"] == {"identity": "fixed-judge|v1"} and "model" not in settings
    target = Dataset([Record(id="t0", instruction="Say 3.", output="3")], path="target.jsonl")
    sel = datawinnow.select(_pool(), "delift-se-task", 2, ctx=Context(embedder=_Embedder(), progress=False,
                                                                     sources={"target": target}))
    assert sel.settings["embedder"] == {"identity": "keyword-embedder"}
    assert sel.settings["sources"] == {"target": {"source": "target.jsonl", "fingerprint": target.fingerprint(),
                                                  "n": 1}}


# ------------------------------------------------------------------------------------- API options
def test_misspelt_api_options_are_errors():
    pool = _pool()
    with pytest.raises(UnknownOptionError, match=r"datawinnow\.select\(\) has no option 'sead' \(did you mean "
                                                  r"'seed'\?\); valid options: budget, params, out, format, sources, "
                                                  r"ctx; context options: model, .*seed"):
        datawinnow.select(pool, "random", 5, sead=1)
    with pytest.raises(UnknownOptionError, match=r"datawinnow\.score\(\) has no option 'no_cache' \(in Python: "
                                                  r"use_cache=False\)"):
        datawinnow.score(pool, "length", no_cache=True)
    with pytest.raises(TypeError, match=r"Context\(\) has no option 'max_len' \(did you mean 'max_length'\?\)"):
        Context(max_len=64)
    with pytest.raises(ConfigError, match=r"datawinnow\.load\(\) has no option 'columns' \(in Python: "
                                          r"load\(source, column_map=\.\.\.\) first\); valid options: schema, "
                                          r"column_map, split"):
        datawinnow.load(pool, columns={"a": "b"})
    with pytest.raises(UnknownOptionError, match=r"has no option 'x' \(and 1 more: y\)"):
        datawinnow.select(pool, "random", 5, x=1, y=2)
    # the real names work
    assert len(datawinnow.select(pool, "random", 2, seed=1, progress=False).selected) == 2
    assert len(datawinnow.score(pool, "length", use_cache=False, progress=False).ids) == 6


# --------------------------------------------------------------------------------- out = the input
def test_select_out_equal_to_the_input_is_refused(tmp_path, capsys):
    from datawinnow.cli import main
    from datawinnow.data import write

    src = tmp_path / "pool.jsonl"
    write(_pool(), str(src))
    before = src.read_bytes()
    for out in (str(src), str(tmp_path / "sub" / ".." / "pool.jsonl")):
        (tmp_path / "sub").mkdir(exist_ok=True)
        rc = main(["select", str(src), "--method", "random", "--budget", "2", "--out", out, "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1
        assert err[0].startswith(f"datawinnow: error: {out}: is the input file {src}; writing there would overwrite")
    link = tmp_path / "link.jsonl"
    link.symlink_to(src)
    assert main(["select", str(link), "--method", "random", "--budget", "2", "--out", str(src), "--quiet"]) == 2
    assert src.read_bytes() == before and not list(tmp_path.glob("*manifest*"))
    with pytest.raises(ConfigError, match="is the input file"):
        datawinnow.select(str(src), "random", 2, out=str(src))
    with pytest.raises(ConfigError, match="is the input file"):
        datawinnow.score(str(src), "length", out=str(src))
    # another file is fine
    assert main(["select", str(src), "--method", "random", "--budget", "2", "--out", str(tmp_path / "s.jsonl"),
                 "--quiet"]) == 0
    assert json.loads(next(tmp_path.glob("*s.jsonl.manifest.json")).read_text())["settings"] == {"seed": 0}
