"""Scoring responses against IFEval's verifiable instructions (strict and loose), and the four accuracies.

- strict: the checker runs on the response as given;
- loose: the response also counts as following an instruction when one of seven relaxed variants
  does (markdown ``*`` removed, first line removed, last line removed, and their combinations),
  as in the IFEval paper. An empty response follows nothing.

Prompt-level accuracy: the fraction of prompts whose instructions are *all* followed;
instruction-level accuracy: the fraction of all instructions followed (pooled over prompts).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from ...data.record import Dataset, Record
from ...errors import ConfigError, DataError
from .checkers import load_ifeval


def load_items() -> Dataset:
    """The bundled 541 IFEval prompts as records (``meta``: ``instruction_id_list``, ``kwargs``)."""
    from ...data import load

    ds = load("bundled:ifeval_input_data")
    for r in ds:
        if isinstance(r.meta.get("kwargs"), str):
            r.meta["kwargs"] = json.loads(r.meta["kwargs"])
    return ds


def _spec(record: Record) -> tuple[list[str], list[dict[str, Any]]]:
    ids, kwargs = record.meta.get("instruction_id_list"), record.meta.get("kwargs")
    if isinstance(kwargs, str):
        kwargs = json.loads(kwargs)
    if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
        raise DataError("an IFEval item needs 'instruction_id_list' and one 'kwargs' dict per instruction",
                        path=record.source, field="instruction_id_list")
    return ids, kwargs


def check_response(prompt: str, instruction_ids: Sequence[str], kwargs: Sequence[dict[str, Any]],
                   response: str) -> dict[str, Any]:
    """Strict and loose verdicts for one response: per instruction, and for the whole prompt."""
    registry, utils = load_ifeval()
    unknown = [i for i in instruction_ids if i not in registry.INSTRUCTION_DICT]
    if unknown:
        raise ConfigError(f"ifeval: unknown instruction type(s) {', '.join(unknown)}")
    inp = utils.InputExample(key=0, instruction_id_list=list(instruction_ids), prompt=prompt, kwargs=list(kwargs))
    strict = utils.test_instruction_following_strict(inp, response)
    loose = utils.test_instruction_following_loose(inp, response)
    return {"instruction_ids": list(instruction_ids),
            "strict": [bool(x) for x in strict.follow_instruction_list],
            "loose": [bool(x) for x in loose.follow_instruction_list],
            "prompt_strict": bool(strict.follow_all_instructions),
            "prompt_loose": bool(loose.follow_all_instructions)}


def check_record(record: Record, response: str) -> dict[str, Any]:
    ids, kwargs = _spec(record)
    return check_response(record.prompt, ids, kwargs, response)


def summarize_ifeval(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Prompt-level and instruction-level accuracy, strict and loose, plus per-instruction-type strict accuracy."""
    n = len(rows)
    inst_strict = [x for r in rows for x in r["strict"]]
    inst_loose = [x for r in rows for x in r["loose"]]
    by_type: dict[str, list[bool]] = {}
    for r in rows:
        for iid, ok in zip(r["instruction_ids"], r["strict"]):
            by_type.setdefault(iid, []).append(ok)
    return {
        "n": n,
        "n_instructions": len(inst_strict),
        "prompt_level_strict_acc": sum(r["prompt_strict"] for r in rows) / n if n else None,
        "inst_level_strict_acc": sum(inst_strict) / len(inst_strict) if inst_strict else None,
        "prompt_level_loose_acc": sum(r["prompt_loose"] for r in rows) / n if n else None,
        "inst_level_loose_acc": sum(inst_loose) / len(inst_loose) if inst_loose else None,
        "by_instruction_strict": {k: sum(v) / len(v) for k, v in sorted(by_type.items())},
    }
