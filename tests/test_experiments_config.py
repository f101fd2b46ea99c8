"""Experiment configs: every error names the file and the key; the example configs validate; the grid."""

from __future__ import annotations

import glob
import os

import pytest
import yaml

from datawinnow.cli import main
from datawinnow.errors import ConfigError
from datawinnow.experiments.config import read_config, validate
from datawinnow.experiments.plan import build_cells

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml")))

BASE = {
    "model": "smollm2",
    "pool": {"source": "bundled:alpaca_en_demo", "limit": 20},
    "budgets": [0.1, "30%"],
    "methods": ["longest", {"name": "ifd"}],
    "suites": [{"name": "arc_easy", "limit": 4}],
    "max_train_tokens": 1000,
}


def _err(raw, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        validate(raw, path="exp.yaml", **kw)
    return str(e.value)


def _with(**over):
    return {**BASE, **over}


def test_valid_config_normalised():
    cfg = validate(BASE, path="exp.yaml")
    assert cfg.budgets == [0.1, 0.3]
    assert cfg.random_seeds == [0, 1, 2]
    assert [(m.name, m.seeds) for m in cfg.methods] == [("longest", [0]), ("ifd", [0])]
    assert cfg.mode == "finetune" and cfg.executor == "local" and cfg.full == "auto"
    assert cfg.pool.slice == (0, 20)


def test_unknown_method_names_the_key():
    msg = _err(_with(methods=["longest", "ifd", {"name": "ifdd"}]))
    assert msg.startswith("exp.yaml: methods[2].name: unknown method 'ifdd' (known: ")
    assert "ifd," in msg and "random" in msg


@pytest.mark.parametrize("budget, text", [(0, "budgets[0]: budget 0 is out of range"),
                                          (1.0, "budgets[0]: budget 1.0 is out of range"),
                                          ("150%", "budgets[0]: budget '150%' is out of range"),
                                          ("lots", "budgets[0]: expected a fraction")])
def test_budget_out_of_range(budget, text):
    assert text in _err(_with(budgets=[budget]))


def test_missing_and_unknown_sources():
    raw = dict(BASE)
    del raw["pool"]
    assert _err(raw).startswith("exp.yaml: pool: missing")
    assert _err(_with(pool={"limit": 3})).startswith("exp.yaml: pool.source: missing source")
    assert "pool.source: source not found: /no/such/file.jsonl" in _err(_with(pool="/no/such/file.jsonl"))
    assert "pool.source: " in _err(_with(pool="bundled:nope")) and "unknown bundled data set" in _err(_with(pool="bundled:nope"))
    assert "methods[0].name: method 'delift-task' needs a 'target:' source" in _err(_with(methods=["delift-task"]))


def test_unknown_suite_and_suite_rules():
    msg = _err(_with(suites=[{"name": "arc_easy"}, {"name": "arc_eazy"}]))
    assert msg.startswith("exp.yaml: suites[1].name: unknown suite 'arc_eazy' (known: ")
    assert "suites[0].name: suite 'lm_eval' has no per-item scores" in _err(_with(suites=["lm_eval"]))
    assert "suites[0].name: suite 'arc_easy' scores the model alone" in _err(_with(mode="icl"))
    assert "suites[0].data: suite 'arc_easy' has its own items" in _err(
        _with(suites=[{"name": "arc_easy", "data": "bundled:alpaca_en_demo"}]))


def test_other_fields():
    assert "random_seeds: random needs at least 3 seeds, got 2" in _err(_with(random_seeds=2))
    assert "executor: unknown executor 'slurm' (known: local)" in _err(_with(executor="slurm"))
    assert "mode: must be one of finetune, icl" in _err(_with(mode="rl"))
    assert _err(_with(budgetz=[0.1])).startswith("exp.yaml: budgetz: unknown key")
    assert "methods[0].params: method 'ifd' has no parameter(s) colour" in _err(
        _with(methods=[{"name": "ifd", "params": {"colour": 1}}]))
    assert "methods[0].seeds: method 'longest' is deterministic" in _err(_with(methods=[{"name": "longest", "seeds": 3}]))
    assert "max_train_tokens: full: auto needs max_train_tokens" in _err({k: v for k, v in BASE.items()
                                                                        if k != "max_train_tokens"})
    assert "train: train: learning rate must be > 0" in _err(_with(train={"learning_rate": 0}))
    assert "train.model: unknown key" in _err(_with(train={"model": "x"}))
    assert "tiny: --tiny needs a 'tiny:' section" in _err(BASE, tiny=True)
    assert "methods[0].name: 'pool' (the whole pool" in _err(_with(methods=["pool"]))


def test_tiny_overrides_merge():
    raw = _with(tiny={"pool": {"limit": 8}, "budgets": [0.5]})
    cfg = validate(raw, path="exp.yaml", tiny=True)
    assert cfg.pool.source == "bundled:alpaca_en_demo" and cfg.pool.slice == (0, 8)
    assert cfg.budgets == [0.5] and cfg.tiny


def test_stochastic_methods_get_the_seeds():
    cfg = validate(_with(methods=["random", {"name": "delift-se", "label": "se-stochastic",
                                             "params": {"optimizer": "stochastic"}},
                                  "delift-se", {"name": "cherry", "seeds": [4, 5]}]), path="exp.yaml")
    assert {m.label: m.seeds for m in cfg.methods} == {"random": [0, 1, 2], "se-stochastic": [0, 1, 2],
                                                        "delift-se": [0], "cherry": [4, 5]}
    assert "methods[1].label: 'delift-se' is used twice" in _err(_with(methods=["delift-se", "delift-se"]))


def test_grid_has_random_zero_shot_and_full():
    cfg = validate(_with(methods=["longest", {"name": "delift-se", "label": "se-stoch",
                                              "params": {"optimizer": "stochastic"}, "seeds": 2}]), path="exp.yaml")
    cells = build_cells(cfg, 20, full_fits=True)
    keys = [c.key for c in cells]
    assert keys[0] == "zero_shot" and keys[-1] == "full"
    for b in ("0.1", "0.3"):
        assert [k for k in keys if k.startswith("random/") and f"b={b}/" in k] == [f"random/b={b}/s={s}" for s in range(3)]
        assert f"longest/b={b}/s=0" in keys
        assert [k for k in keys if k.startswith(f"se-stoch/b={b}")] == [f"se-stoch/b={b}/s=0", f"se-stoch/b={b}/s=1"]
    assert len(keys) == 1 + 2 * (3 + 1 + 2) + 1
    assert {c.budget_n for c in cells if c.kind != "zero_shot"} == {2, 6, 20}
    assert len(build_cells(cfg, 20, full_fits=False)) == len(keys) - 1


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_configs_validate(path):
    raw = yaml.safe_load(open(path, encoding="utf-8"))
    assert "tiny" in raw, "every example needs a tiny: section for --tiny"
    for tiny in (False, True):
        cfg = read_config(path, tiny=tiny)
        assert cfg.budgets and cfg.suites
    head = open(path, encoding="utf-8").read().splitlines()[:12]
    text = " ".join(head)
    assert "Time:" in text and " min" in text, "the header comment states the time it takes"


def test_examples_cover_the_issue():
    names = {os.path.basename(p) for p in EXAMPLES}
    assert {"chasing_random.yaml", "delift_stage1_instruction.yaml", "delift_stage2_task.yaml",
            "delift_stage3_continual.yaml", "iterit.yaml", "delia.yaml"} <= names
    cr = yaml.safe_load(open(os.path.join(ROOT, "examples", "chasing_random.yaml"), encoding="utf-8"))
    methods = {m if isinstance(m, str) else m["name"] for m in cr["methods"]}
    assert methods == {"longest", "alpagasus", "ifd", "deita", "rds", "delift-se", "delift"}
    assert cr["budgets"] == ["5%", "10%", "30%"]
    assert [s["name"] for s in cr["suites"]] == ["rubric", "generation", "winrate", "ifeval", "arc_easy"]


def test_cli_error_is_one_line_exit_2(tmp_path, capsys):
    p = tmp_path / "exp.yaml"
    p.write_text(yaml.safe_dump(_with(methods=[{"name": "ifdd"}])), encoding="utf-8")
    assert main(["run-experiment", str(p), "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"datawinnow: error: {p}: methods[0].name: unknown method 'ifdd'") and "\n" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("pool: [\n", encoding="utf-8")
    assert main(["run-experiment", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
