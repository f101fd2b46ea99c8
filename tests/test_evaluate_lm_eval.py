"""The lm-evaluation-harness adapter: argument building (fast), and a real offline run on a local task (slow)."""

from __future__ import annotations

import json
import os

import pytest

from datawinnow.errors import ConfigError
from datawinnow.evaluate.lm_eval_adapter import model_args, run_lm_eval


def test_model_args(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    args = model_args("HuggingFaceTB/SmolLM2-360M-Instruct", adapter=str(adapter), dtype="bf16", max_length=1024)
    assert args == {"pretrained": "HuggingFaceTB/SmolLM2-360M-Instruct", "peft": str(adapter), "dtype": "bfloat16",
                    "max_length": 1024}
    # NAME+ADAPTER, as everywhere else in datawinnow
    assert model_args(f"some/model+{adapter}")["peft"] == str(adapter)
    # the embedded alias resolves to its local folder
    assert os.path.isdir(model_args("smollm2")["pretrained"])
    with pytest.raises(ConfigError, match="adapter folder not found: .*nope"):
        model_args("m", adapter=str(tmp_path / "nope"))


def test_no_tasks_is_a_clear_error():
    with pytest.raises(ConfigError, match="name at least one task"):
        run_lm_eval("m", [])


@pytest.mark.slow
def test_local_task_runs_offline_and_hub_task_fails_clearly(tiny_model_dir, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "Pick the colour.", "choices": ["red", "The", "and"], "answer": 1},
        {"question": "Pick again.", "choices": ["The", "red", "and"], "answer": 0},
        {"question": "And again.", "choices": ["and", "red", "The"], "answer": 2},
    ]))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny.yaml").write_text(
        "task: dw_tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {data}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n")
    out = run_lm_eval(tiny_model_dir, ["dw_tiny_mc"], include_path=str(tasks), device="cpu", dtype="fp32", limit=2)
    assert out["n"] == {"dw_tiny_mc": 2}
    assert 0.0 <= out["summary"]["dw_tiny_mc"]["acc,none"] <= 1.0
    with pytest.raises(ConfigError, match="unknown task\\(s\\) no_such_task"):
        run_lm_eval(tiny_model_dir, ["no_such_task"], include_path=str(tasks))
    # a hub task offline: one clear line that names the need for network access
    with pytest.raises(ConfigError, match="needs network access"):
        run_lm_eval(tiny_model_dir, ["arc_easy"], device="cpu", dtype="fp32", limit=2)


def test_dtype_auto_means_what_it_means_everywhere(monkeypatch, tiny_model_dir, expected_auto):
    """lm-eval's own "auto" is the checkpoint's dtype; datawinnow's is the hardware's (DATAWINNOW_AUTO_DTYPE)."""
    lm_eval = pytest.importorskip("lm_eval")
    import lm_eval.tasks

    seen = {}

    class Tasks:
        all_tasks = ["t"]

        def __init__(self, include_path=None):
            pass

    def fake_evaluate(*, model_args, device, **kw):
        seen.update(model_args=model_args, device=device)
        return {"results": {"t": {"acc,none": 1.0}}, "n-samples": {"t": {"effective": 1}}}

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", Tasks)
    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
    run_lm_eval(tiny_model_dir, ["t"], device="auto", dtype="auto")
    device, dtype = expected_auto
    assert seen["device"].startswith(device)
    assert seen["model_args"]["dtype"] == str(dtype).removeprefix("torch.")  # float32, bfloat16 or float16
