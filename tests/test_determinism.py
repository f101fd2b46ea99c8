"""Determinism: the same inputs and seed give byte-identical subset files (and the same manifest, timings
aside) across two runs that share nothing, not even the cache, for every registered method."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import datawinnow
from datawinnow.data import write
from datawinnow.registry import METHODS
from datawinnow.select.manifest import manifest_path

from test_input_properties import cli

MODEL = ["--device", "cpu", "--dtype", "fp32", "--max-length", "128", "--seed", "3", "--quiet"]
K = ["--param", "k=3"]
# per method: what it needs to run on the tiny model in seconds (sources: target/existing data)
ARGS: dict[str, list[str]] = {
    "random": [],
    "longest": [],
    "ifd": [],
    "cherry": ["--param", "lr=0.05", "--param", "per_cluster=2", "--param", "n_clusters=2",
               "--param", "target_modules=all-linear"],
    "alpagasus": ["--param", "readout=expected"],
    "deita": ["--param", "embedding=model"],
    "selectit": [],
    "less": ["TARGET", "--param", "epochs=2", "--param", "lr=0.01", "--param", "warmup_size=4", "--param", "dim=256"],
    "delift": K,
    "delift-task": ["TARGET", *K],
    "delift-continual": ["EXISTING", *K],
    "delift-se": K,
    "delift-se-task": ["TARGET", *K],
    "delift-se-continual": ["EXISTING", *K],
    "rds": ["TARGET"],
}


def _volatile(key: str) -> bool:
    """Keys that differ between identical runs: wall-clock times, the creation date, the (separate) cache folders."""
    return key in ("created", "cache_dir") or key.startswith("seconds") or key.endswith("_per_s")


def _stable(obj):
    """A manifest without what differs between identical runs."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if not _volatile(k)}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("determinism")
    seed = datawinnow.load("bundled:self_instruct_seed_tasks")
    paths = {}
    for name, part in (("pool", seed[:24]), ("target", seed[24:28]), ("existing", seed[28:32])):
        paths[name] = str(folder / f"{name}.jsonl")
        write(part, paths[name])
    return paths


def test_every_method_has_tiny_model_arguments():
    assert set(METHODS.names()) == set(ARGS), "add the new method's tiny-model arguments to ARGS"


@pytest.mark.parametrize("method", [pytest.param(m, marks=pytest.mark.slow) if m.startswith("delift") else m
                                    for m in sorted(ARGS)])  # the DELIFT kernels take 5-15 s a method here
def test_two_runs_write_identical_subsets(method, data, tiny_model_dir, tmp_path):
    if method not in METHODS.names():
        pytest.skip(f"{method} is not registered")
    extra = []
    for a in ARGS[method]:
        extra += {"TARGET": ["--target", data["target"]], "EXISTING": ["--existing", data["existing"]]}.get(a, [a])
    outs = []
    for run in ("first", "second"):
        out = tmp_path / run / "subset.jsonl"
        code, _, err = cli("select", data["pool"], "--method", method, "--budget", "5", "--model", tiny_model_dir,
                           *MODEL, "--cache-dir", str(tmp_path / run / "cache"), "--out", str(out), *extra)
        assert code == 0, err
        outs.append(out)
    first, second = (o.read_bytes() for o in outs)
    assert len(first.splitlines()) == 5
    assert first == second
    manifests = [_stable(json.loads(manifest_path(o).read_text(encoding="utf-8"))) for o in outs]
    assert manifests[0] == manifests[1]
