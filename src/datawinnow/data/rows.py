"""Turning raw rows (dicts) of each schema into records, with errors that name file, line and field.

A *schema* is the shape of one row: ``alpaca`` (instruction, input, output, and optionally
LLaMA-Factory's ``system`` text and ``history`` list of earlier [instruction, response] turns),
``input-target`` (Chasing Random: input, target), ``sharegpt`` (conversations[{from, value}]),
``messages`` (chat messages [{role, content}]). Containers (JSON, JSONL, CSV, Parquet, HF datasets)
are in ``readers``.

Text fields must be strings: ``{"output": 42}`` is an error naming the field (a column map may
read numeric columns, e.g. class labels, which are then written as text).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from ..errors import DataError
from .record import ROLES, Record

CANONICAL = ("id", "instruction", "input", "output", "messages", "source", "task", "meta")

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "bard": "assistant", "system": "system"}


class RowContext:
    """Where a row came from, so every error can name it."""

    def __init__(self, path: str, line: int | None, unit: str = "line"):
        self.path, self.line, self.unit = path, line, unit

    def error(self, message: str, field: str | None = None) -> DataError:
        err = DataError(message, path=self.path, line=self.line, field=field)
        if self.unit != "line" and self.line is not None:
            # tabular sources count rows, not text lines
            err.args = (str(err).replace(f"line {self.line}", f"{self.unit} {self.line}"),)
        return err


def _text(row: dict, key: str, ctx: RowContext, *, required: bool, default: str = "", numbers: bool = False) -> str:
    """A text field; ``numbers``: also accept a number and write it as text (column-mapped sources)."""
    if key not in row or row[key] is None:
        if required:
            raise ctx.error("missing required field", key)
        return default
    value = row[key]
    if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        hint = f" (write it as text: \"{value}\")" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        raise ctx.error(f"expected a string, got {type(value).__name__}{hint}", key)
    return value


def _row_id(row: dict, ctx: RowContext) -> str:
    value = row.get("id")
    if value is None or value == "":
        return ""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    raise ctx.error(f"expected a string or integer id, got {type(value).__name__}", "id")


def _extras(row: dict, used: Iterable[str]) -> dict[str, Any]:
    used = set(used)
    meta = dict(row.get("meta") or {}) if isinstance(row.get("meta"), dict) else {}
    for k, v in row.items():
        if k not in used and k not in CANONICAL:
            meta[k] = v
    return meta


def _opt_str(row: dict, key: str, ctx: RowContext) -> str | None:
    value = row.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ctx.error(f"expected a string, got {type(value).__name__}", key)
    return value


def _history(row: dict, ctx: RowContext) -> list[tuple[str, str]]:
    """LLaMA-Factory's alpaca ``history``: earlier turns as [instruction, response] pairs (a JSON string in CSV)."""
    raw = row.get("history")
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise ctx.error("expected a list of [instruction, response] pairs (or that list as JSON text)",
                            "history") from None
    if not isinstance(raw, list):
        raise ctx.error(f"expected a list of [instruction, response] pairs, got {type(raw).__name__}", "history")
    turns = []
    for k, pair in enumerate(raw):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
            raise ctx.error(f"turn {k} must be [instruction, response], two strings", "history")
        turns.append((pair[0], pair[1]))
    return turns


def alpaca_row(row: dict, ctx: RowContext) -> Record:
    instruction = _text(row, "instruction", ctx, required=True)
    inp = _text(row, "input", ctx, required=False)
    output = _text(row, "output", ctx, required=True)
    system = _opt_str(row, "system", ctx) or None
    history = _history(row, ctx)
    messages = None
    if system is not None or history:  # the whole conversation, as LLaMA-Factory builds it
        messages = [{"role": "system", "content": system}] if system is not None else []
        for user, assistant in history:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        prompt = f"{instruction}\n\n{inp}" if inp else instruction
        messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return Record(
        id=_row_id(row, ctx),
        instruction=instruction,
        input=inp,
        output=output,
        messages=messages,
        source=_opt_str(row, "source", ctx),
        task=_opt_str(row, "task", ctx),
        meta=_extras(row, ("instruction", "input", "output", "system", "history")),
    )


def input_target_row(row: dict, ctx: RowContext) -> Record:
    return Record(
        id=_row_id(row, ctx),
        instruction=_text(row, "input", ctx, required=True),
        output=_text(row, "target", ctx, required=True),
        source=_opt_str(row, "source", ctx),
        task=_opt_str(row, "task", ctx),
        meta=_extras(row, ("input", "target")),
    )


def _record_from_messages(messages: list[dict[str, str]], row: dict, ctx: RowContext, field_name: str) -> Record:
    if not messages:
        raise ctx.error("no turns", field_name)
    if messages[-1]["role"] != "assistant":
        raise ctx.error("the last turn must be the assistant's (the response to learn)", field_name)
    users = [m for m in messages if m["role"] == "user"]
    if not users:
        raise ctx.error("no user turn", field_name)
    # the single-turn view: last user turn -> last assistant turn
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    return Record(
        id=_row_id(row, ctx),
        instruction=messages[last_user]["content"],
        output=messages[-1]["content"],
        messages=messages if len(messages) > 2 or messages[0]["role"] == "system" else None,
        source=_opt_str(row, "source", ctx),
        task=_opt_str(row, "task", ctx),
        meta=_extras(row, (field_name,)),
    )


def messages_row(row: dict, ctx: RowContext) -> Record:
    raw = row.get("messages")
    if raw is None:
        raise ctx.error("missing required field", "messages")
    if not isinstance(raw, list):
        raise ctx.error(f"expected a list of {{role, content}}, got {type(raw).__name__}", "messages")
    messages = []
    for k, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ctx.error(f"turn {k} must be an object with 'role' and 'content'", "messages")
        if m["role"] not in ROLES:
            raise ctx.error(f"turn {k} has unknown role {m['role']!r} (expected one of {', '.join(ROLES)})", "messages")
        if not isinstance(m["content"], str):
            raise ctx.error(f"turn {k} content must be a string", "messages")
        messages.append({"role": m["role"], "content": m["content"]})
    return _record_from_messages(messages, row, ctx, "messages")


def sharegpt_row(row: dict, ctx: RowContext) -> Record:
    raw = row.get("conversations")
    if raw is None:
        raise ctx.error("missing required field", "conversations")
    if not isinstance(raw, list):
        raise ctx.error(f"expected a list of {{from, value}}, got {type(raw).__name__}", "conversations")
    messages = []
    for k, m in enumerate(raw):
        if not isinstance(m, dict) or "from" not in m or "value" not in m:
            raise ctx.error(f"turn {k} must be an object with 'from' and 'value'", "conversations")
        role = SHAREGPT_ROLES.get(str(m["from"]).lower())
        if role is None:
            raise ctx.error(f"turn {k} has unknown speaker {m['from']!r}", "conversations")
        if not isinstance(m["value"], str):
            raise ctx.error(f"turn {k} value must be a string", "conversations")
        messages.append({"role": role, "content": m["value"]})
    return _record_from_messages(messages, row, ctx, "conversations")


SCHEMAS: dict[str, Callable[[dict, RowContext], Record]] = {
    "alpaca": alpaca_row,
    "input-target": input_target_row,
    "sharegpt": sharegpt_row,
    "messages": messages_row,
}


def detect_schema(row: Any, ctx: RowContext) -> str:
    """The schema of a row, from its keys."""
    if not isinstance(row, dict):
        raise ctx.error(f"expected a JSON object, got {type(row).__name__}")
    if "conversations" in row:
        return "sharegpt"
    if "messages" in row and "output" not in row:
        return "messages"
    if "target" in row and "input" in row and "output" not in row:
        return "input-target"
    if "instruction" in row or "output" in row:
        return "alpaca"
    raise ctx.error(
        "cannot tell the format from its fields "
        f"({', '.join(sorted(map(str, row))) or 'none'}); expected instruction/input/output (alpaca), "
        "input/target, conversations (sharegpt) or messages"
    )


class ColumnMap:
    """A DELIFT-style column map for datasets with their own column names.

    ``input`` and ``output`` (mandatory) name columns; ``instruction`` names a column, or, when
    no such column exists, is a literal instruction shared by every row; ``split_name`` is one
    split name or a dict ``{"train": ..., "validation": ..., "test": ...}``; ``subset`` is the
    configuration name of a hub dataset.
    """

    def __init__(self, spec: dict[str, Any], where: str = "column map"):
        if not isinstance(spec, dict):
            raise DataError("a column map must be a JSON object", path=where)
        for key in ("input", "output"):
            if not isinstance(spec.get(key), str):
                raise DataError("missing required field (the name of a column)", path=where, field=key)
        self.input: str = spec["input"]
        self.output: str = spec["output"]
        self.instruction: str | None = spec.get("instruction")
        self.split_name: str | dict | None = spec.get("split_name")
        self.subset: str | None = spec.get("subset")
        self.where = where

    def split(self, which: str = "train") -> str:
        if self.split_name is None:
            return which
        if isinstance(self.split_name, str):
            return self.split_name
        return self.split_name.get(which, which)

    def row(self, row: dict, ctx: RowContext) -> Record:
        query = _text(row, self.input, ctx, required=True, numbers=True)
        output = _text(row, self.output, ctx, required=True, numbers=True)
        if self.instruction is None:
            instruction, inp = query, ""
        elif self.instruction in row:
            instruction, inp = _text(row, self.instruction, ctx, required=True, numbers=True), query
        else:
            instruction, inp = self.instruction, query
        used = {self.input, self.output, self.instruction or ""}
        return Record(id=_row_id(row, ctx), instruction=instruction, input=inp, output=output,
                      task=_opt_str(row, "task", ctx), meta=_extras(row, used))
