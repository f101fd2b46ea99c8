"""No lost work on a crash: ``datawinnow score``, the DELIFT kernel and ``datawinnow train`` are killed with
SIGKILL mid-run, rerun, and must end where an uninterrupted run ends without redoing finished work.
Partial files (a cut-off cache file, a half-written block or checkpoint) are never taken for complete."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import datawinnow
from datawinnow.cache import ScoreStore, read_rows
from datawinnow.data import write
from datawinnow.kernels.store import KernelStore, build_blocked, readable_whole
from datawinnow.train import checkpoints

MODEL_OPTS = ["--device", "cpu", "--dtype", "fp32", "--max-length", "128"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "DATAWINNOW_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "datawinnow.cli", *argv]


def kill_when(argv: list[str], env: dict[str, str], ready, timeout: float = 300) -> None:
    """Start ``argv``, SIGKILL it as soon as ``ready()`` holds (polled every 10 ms); it must still be running."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                raise AssertionError(f"finished before it could be killed: {proc.stderr.read().decode()[-2000:]}")
            assert time.time() < deadline, "never reached the point to kill it at"
            time.sleep(0.01)
        assert proc.poll() is None, "finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


# ------------------------------------------------------------------------------------------- score
@pytest.mark.slow  # three processes on the tiny model (about a minute here); no embedded model
def test_score_killed_and_rerun(tmp_path, tiny_model_dir):
    pool = tmp_path / "pool.jsonl"
    write(datawinnow.load("bundled:alpaca_en_demo")[:200], pool)
    cache, out = tmp_path / "cache", tmp_path / "scores.jsonl"
    argv = _cli("score", str(pool), "--scorer", "ifd", "--model", tiny_model_dir, *MODEL_OPTS, "--batch-size", "2",
                "--out", str(out), "--quiet")
    parts = lambda: list(cache.glob("scores/*/part-*.jsonl"))  # noqa: E731
    kill_when(argv, _env(cache), lambda: len(parts()) >= 1)
    stored = {row["id"] for p in parts() for row in read_rows(p)}
    assert 2 <= len(stored) < 200 and not out.exists()

    rerun = subprocess.run(argv, env=_env(cache), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    m = re.search(r"scored 200 records with ifd in [\d.]+ s \((\d+) computed, (\d+) from cache\)", rerun.stdout)
    assert m, rerun.stdout
    assert (int(m.group(1)), int(m.group(2))) == (200 - len(stored), len(stored))  # no finished batch recomputed

    from datawinnow.backends import CausalLM
    from datawinnow.runtime.context import Context

    lm = CausalLM.load(tiny_model_dir, device="cpu", dtype="fp32", max_length=128)
    whole = datawinnow.score(str(pool), "ifd", ctx=Context(model=lm, batch_size=2, use_cache=False, progress=False))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == whole.ids
    np.testing.assert_allclose([r["score"] for r in rows], whole.score, rtol=1e-5)


# ------------------------------------------------------------------------------------------- DELIFT kernel
@pytest.mark.slow  # subprocesses on the tiny model; no embedded model
def test_delift_kernel_killed_and_rerun(tmp_path, tiny_model_dir):
    pool = tmp_path / "pool.jsonl"
    write(datawinnow.load("bundled:self_instruct_seed_tasks")[:24], pool)
    cache = tmp_path / "cache"
    argv = lambda out: _cli("select", str(pool), "--method", "delift", "--budget", "5", "--param", "k=3",  # noqa: E731
                            "--param", "block_size=2", "--model", tiny_model_dir, *MODEL_OPTS, "--out", str(out))
    blocks = lambda: [p for p in cache.glob("kernels/*/block-*.np[yz]") if readable_whole(p)]  # noqa: E731
    kill_when(argv(tmp_path / "killed.jsonl"), _env(cache), lambda: len(blocks()) >= 1)
    done = len(blocks())
    assert 1 <= done < 12 and not list(cache.glob("kernels/*/kernel.np[yz]"))

    rerun = subprocess.run(argv(tmp_path / "resumed.jsonl"), env=_env(cache), capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"utility kernel: {done} of 12 blocks from the store, {12 - done} to compute" in rerun.stderr

    fresh = subprocess.run(argv(tmp_path / "fresh.jsonl"), env=_env(tmp_path / "other-cache"), capture_output=True,
                           text=True, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    assert (tmp_path / "resumed.jsonl").read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()


# ------------------------------------------------------------------------------------------- train
def _losses(folder: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (folder / "train_log.jsonl").read_text(encoding="utf-8").splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)), "a step was logged twice: it was redone"
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow  # three training processes on the tiny model; no embedded model
def test_train_killed_and_resumed(tmp_path, tiny_model_dir):
    cache = tmp_path / "cache"
    argv = lambda out: _cli("train", "bundled:self_instruct_seed_tasks", "--model", tiny_model_dir, "--device", "cpu",  # noqa: E731
                            "--dtype", "fp32", "--out", str(out), "--max-steps", "40", "--save-steps", "5",
                            "--batch-size", "2", "--max-length", "96", "--quiet")
    out = tmp_path / "adapter"
    kill_when(argv(out), _env(cache), lambda: (out / "checkpoint-10" / checkpoints.MARKER).is_file())
    complete = [step for step, _, ok in checkpoints.checkpoints(out) if ok]
    before = _losses(out)
    assert complete and max(complete) < 40 and max(before) >= max(complete)

    rerun = subprocess.run(argv(out), env=_env(cache), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    info = json.loads((out / "datawinnow_train.json").read_text(encoding="utf-8"))
    assert info["steps"] == 40 and info["resumed_from_step"] == max(complete)
    after = _losses(out)
    assert sorted(after) == list(range(1, 41))
    assert {s: after[s] for s in after if s <= max(complete)} == {s: before[s] for s in before if s <= max(complete)}
    assert checkpoints.checkpoints(out) == [] and not (out / checkpoints.RESUME_FILE).exists()
    umask = os.umask(0o022)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert {"adapter_model.safetensors", "datawinnow_train.json", "data_manifest.json"} <= set(modes)
    assert {n: m for n, m in modes.items() if m != 0o666 & ~umask} == {}  # the umask, not mkstemp's 0600

    whole = tmp_path / "whole"
    ref = subprocess.run(argv(whole), env=_env(tmp_path / "cache2"), capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    reference = _losses(whole)
    np.testing.assert_allclose([after[s] for s in range(1, 41)], [reference[s] for s in range(1, 41)], rtol=1e-5)
    from safetensors.numpy import load_file

    got, want = load_file(out / "adapter_model.safetensors"), load_file(whole / "adapter_model.safetensors")
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------- partial files
def test_damaged_score_files_are_not_read_as_complete(tmp_path):
    store = ScoreStore("x", {}, None, root=tmp_path)
    store.put([{"id": "a", "_key": "1", "v": 1}, {"id": "b", "_key": "2", "v": 2}])
    store.compact()
    scores = store.dir / "scores.jsonl"
    data = scores.read_bytes()
    scores.write_bytes(data[:-5])  # the last row cut off mid-line (a full disk, a copy cut short)
    (store.dir / "part-0000-1.jsonl").write_bytes(b'{"id": "c", "_key": "3", "v": 3}\n\xff\xfe garbage\n{"id": "d"')
    fresh = ScoreStore("x", {}, None, root=tmp_path)
    assert fresh.lookup("a", "1")["v"] == 1 and fresh.lookup("c", "3")["v"] == 3
    assert fresh.lookup("b", "2") is None and fresh.lookup("d", None) is None  # recomputed, never half-read
    assert len(fresh) == 2


def test_damaged_kernel_blocks_are_recomputed(tmp_path):
    store = KernelStore("t", {"n": 6}, root=tmp_path)
    calls: list[int] = []

    def compute(s, e, advance):
        calls.append(s)
        return np.full((e - s, 3), float(s), dtype=np.float32), (e - s) * 3

    with pytest.raises(RuntimeError):
        def crash(s, e, advance):
            if s == 4:
                raise RuntimeError("killed")
            return compute(s, e, advance)
        build_blocked(store, shape=(6, 3), block_size=2, compute=crash, sparse=False, progress=False)
    block = store.dir / "block-000000002.npy"
    block.write_bytes(block.read_bytes()[:-4])  # cut short: the header promises more than the file holds
    assert not readable_whole(block) and store.done_blocks() == {0}
    calls.clear()
    kernel = build_blocked(store, shape=(6, 3), block_size=2, compute=compute, sparse=False, progress=False)
    assert calls == [2, 4]  # block 0 reused; the damaged block 2 and the missing block 4 computed
    np.testing.assert_array_equal(np.asarray(kernel)[:, 0], [0, 0, 2, 2, 4, 4])
    kpath = store.dir / "kernel.npy"
    kpath.write_bytes(kpath.read_bytes()[:-8])
    assert store.load() is None  # a damaged kernel is not served


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    identity = checkpoints.run_identity({"lr": 1, "progress": True}, fingerprint="f", model="m", n_rows=3)
    for step, complete in ((5, True), (10, True), (15, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / checkpoints.MARKER).write_text("{}")
    (tmp_path / checkpoints.RESUME_FILE).write_text(json.dumps(identity))
    assert checkpoints.prepare(tmp_path, identity, resume=True) == tmp_path / "checkpoint-10"
    assert not (tmp_path / "checkpoint-15").exists()  # written halfway when the run died: removed
    # the same options except progress: still the same run
    same = checkpoints.run_identity({"lr": 1, "progress": False}, fingerprint="f", model="m", n_rows=3)
    assert checkpoints.prepare(tmp_path, same, resume=True) == tmp_path / "checkpoint-10"
    other = checkpoints.run_identity({"lr": 2, "progress": True}, fingerprint="f", model="m", n_rows=3)
    assert checkpoints.prepare(tmp_path, other, resume=True) is None
    assert checkpoints.checkpoints(tmp_path) == []  # another run's checkpoints are discarded
