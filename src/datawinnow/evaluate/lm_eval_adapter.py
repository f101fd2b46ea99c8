"""Hand a model (and a LoRA adapter) to lm-evaluation-harness and run its named tasks.

For users with hub access: lm-eval's tasks download their data sets from the Hugging Face hub, so
the usual tasks (``arc_easy``, ``hellaswag``, ``mmlu``, ``ifeval``, ...) need a network. Custom tasks
in YAML over local files (``include_path``) run offline. The model goes to lm-eval's ``hf`` model
class as a path or hub id (the embedded ``smollm2`` resolves to its local folder), the adapter as
``peft=DIR``, so lm-eval loads and batches it itself, exactly as its own command line would.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any, Sequence

from ..errors import ConfigError, MissingDependencyError


def resolve_model_path(model: str | None) -> str:
    """A path or hub id lm-eval can load (the embedded alias becomes its local folder)."""
    from ..backends.embedded import LM_ALIASES, set_offline, smollm2_dense_dir

    if model in LM_ALIASES:
        set_offline()
        return str(smollm2_dense_dir())
    return str(model)


def model_args(model: str | None, *, adapter: str | None = None, dtype: str = "auto",
               max_length: int | None = None) -> dict[str, Any]:
    """lm-eval's ``model_args`` for its ``hf`` model class."""
    if model and "+" in model and adapter is None:
        model, adapter = model.split("+", 1)
    args: dict[str, Any] = {"pretrained": resolve_model_path(model)}
    if adapter:
        if not os.path.isdir(adapter):
            raise ConfigError(f"adapter folder not found: {adapter}")
        args["peft"] = os.path.abspath(adapter)
    args["dtype"] = {"auto": "auto", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)
    if max_length:
        args["max_length"] = int(max_length)
    return args


def _num(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def run_lm_eval(model: str | None, tasks: Sequence[str], *, adapter: str | None = None, num_fewshot: int | None = None,
                limit: int | None = None, batch_size: int = 8, device: str = "cpu", dtype: str = "auto",
                include_path: str | None = None, apply_chat_template: bool = False, seed: int = 0,
                quiet: bool = True) -> dict[str, Any]:
    """Run lm-eval's ``simple_evaluate``; returns ``{"summary": {task: {metric: value}}, "n": {task: count},
    "config": ...}``."""
    if not tasks:
        raise ConfigError("lm-eval: name at least one task (--lm-eval-task NAME)")
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MissingDependencyError("lm-eval", "eval", "the lm-evaluation-harness adapter") from None
    from ..backends.device import dtype_name, pick_device, pick_dtype

    resolved = pick_device(device)
    # "auto" as everywhere in datawinnow (bf16 only where the hardware runs it fast), not lm-eval's
    # "auto" (the checkpoint's own dtype, bf16 for SmolLM2 even on CPUs that emulate it)
    margs = model_args(model, adapter=adapter, dtype=dtype_name(pick_dtype(dtype, resolved)))
    dev = str(resolved)
    if include_path and not os.path.isdir(include_path):
        raise ConfigError(f"lm-eval: task folder not found: {include_path}")
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    known = set(manager.all_tasks)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ConfigError(f"lm-eval: unknown task(s) {', '.join(unknown)} (see 'lm-eval ls tasks', or pass a "
                          "folder of task YAML files with --lm-eval-include)")
    sink = io.StringIO()
    ctx = contextlib.redirect_stdout(sink) if quiet else contextlib.nullcontext()
    try:
        with ctx:
            out = simple_evaluate(model="hf", model_args=margs, tasks=list(tasks), num_fewshot=num_fewshot,
                                  batch_size=batch_size, device=dev, limit=limit, task_manager=manager,
                                  apply_chat_template=apply_chat_template, log_samples=False,
                                  random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed,
                                  fewshot_random_seed=seed, bootstrap_iters=0)
    except (OSError, ConnectionError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"lm-eval could not run {', '.join(tasks)} on {margs['pretrained']}: {first} "
                          "(its tasks load data from the Hugging Face hub: this needs network access)") from None
    if out is None:
        raise ConfigError("lm-eval returned no results")
    summary = {task: {k: _num(v) for k, v in metrics.items() if k != "alias" and isinstance(v, (int, float))}
               for task, metrics in out.get("results", {}).items()}
    n = {task: int(v.get("effective", v.get("original", 0))) if isinstance(v, dict) else int(v)
         for task, v in out.get("n-samples", {}).items()}
    return {"summary": summary, "n": n, "config": {"model_args": margs, "tasks": list(tasks), "num_fewshot": num_fewshot,
                                                   "limit": limit, "apply_chat_template": apply_chat_template}}
