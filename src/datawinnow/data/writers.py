"""Writing a :class:`Dataset` in any supported format, so a subset can go straight to another trainer.

A format is ``SCHEMA:CONTAINER``: schema ``alpaca`` | ``input-target`` | ``sharegpt`` | ``messages``,
container ``jsonl`` | ``json`` | ``csv`` | ``parquet``. Either half may be given alone: the schema
defaults to the dataset's own (alpaca for column-mapped sources), the container to the output
file's suffix. A ``.gz`` suffix compresses JSON, JSONL and CSV.

Conversions keep every turn where the target schema can hold it: multi-turn records become alpaca
rows with LLaMA-Factory's ``system`` and ``history`` fields. Where it cannot (``input-target`` holds
one exchange; alpaca needs strictly alternating user/assistant turns), the last exchange is
written and a warning counts the records changed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..preflight import check_output_file
from .record import Dataset, Record

log = logging.getLogger(__name__)

SCHEMA_NAMES = ("alpaca", "input-target", "sharegpt", "messages")
CONTAINERS = ("jsonl", "json", "csv", "parquet")
FORMAT_CHOICES = SCHEMA_NAMES + CONTAINERS + tuple(f"{s}:{c}" for s in SCHEMA_NAMES for c in CONTAINERS)


def _extras(r: Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.source is not None:
        out["source"] = r.source
    if r.task is not None:
        out["task"] = r.task
    out.update(r.meta)
    return out


def alpaca_turns(r: Record) -> tuple[str | None, list[list[str]], bool]:
    """LLaMA-Factory's alpaca ``system`` and ``history`` for a record, and whether they hold its whole conversation.

    A conversation fits when it is an optional system turn, then user/assistant pairs ending with the
    record's own prompt and output. An empty system turn is dropped (alpaca reads an empty ``system``
    as "the template's default"), which counts as a change.
    """
    msgs = r.messages
    if not msgs:
        return None, [], True
    system = msgs[0]["content"] if msgs[0]["role"] == "system" else None
    body = msgs[1:] if system is not None else msgs
    fits = (len(body) >= 2 and len(body) % 2 == 0
            and all(body[i]["role"] == "user" and body[i + 1]["role"] == "assistant" for i in range(0, len(body), 2))
            and body[-2]["content"] == r.prompt and body[-1]["content"] == r.output)
    if not fits:
        return None, [], False
    history = [[body[i]["content"], body[i + 1]["content"]] for i in range(0, len(body) - 2, 2)]
    return system or None, history, system != ""


def is_multi_turn(r: Record) -> bool:
    return bool(r.messages) and (len(r.messages) > 2 or r.messages[0]["role"] == "system")


def to_row(r: Record, schema: str) -> dict[str, Any]:
    """One record as a row of the given schema (the id and any extra fields ride along)."""
    if schema == "alpaca":
        row = {"id": r.id, "instruction": r.instruction, "input": r.input, "output": r.output}
        system, history, _ = alpaca_turns(r)
        if system is not None:
            row["system"] = system
        if history:
            row["history"] = history
    elif schema == "input-target":
        row = {"id": r.id, "input": r.prompt, "target": r.output}
    elif schema == "messages":
        row = {"id": r.id, "messages": r.chat()}
    elif schema == "sharegpt":
        names = {"user": "human", "assistant": "gpt", "system": "system"}
        row = {"id": r.id, "conversations": [{"from": names[m["role"]], "value": m["content"]} for m in r.chat()]}
    else:
        raise ConfigError(f"unknown schema '{schema}' (expected one of {', '.join(SCHEMA_NAMES)})")
    for k, v in _extras(r).items():
        row.setdefault(k, v)
    return row


def resolve_format(dataset: Dataset, path: str | os.PathLike, fmt: str | None) -> tuple[str, str]:
    """(schema, container) for writing ``dataset`` to ``path`` with the requested format."""
    p = Path(path)
    suffix = (Path(p.stem).suffix if p.suffix == ".gz" else p.suffix).lstrip(".").lower()
    own_schema, _, own_container = (dataset.format or "alpaca:jsonl").partition(":")
    schema = own_schema if own_schema in SCHEMA_NAMES else "alpaca"
    container = suffix if suffix in CONTAINERS else (own_container if own_container in CONTAINERS else "jsonl")
    if fmt:
        if fmt not in FORMAT_CHOICES:
            raise ConfigError(f"unknown format '{fmt}' (expected a schema {', '.join(SCHEMA_NAMES)}, a container "
                              f"{', '.join(CONTAINERS)}, or SCHEMA:CONTAINER)")
        a, _, b = fmt.partition(":")
        if a in SCHEMA_NAMES:
            schema = a
            container = b or container
        else:
            container = a
    return schema, container


def _warn_lossy(dataset: Dataset, schema: str, path: Path) -> None:
    if schema == "input-target":
        changed = sum(is_multi_turn(r) for r in dataset)
        why = "input-target holds one exchange"
    elif schema == "alpaca":
        changed = sum(not alpaca_turns(r)[2] for r in dataset)
        why = "alpaca's system/history fields need alternating user/assistant turns and a non-empty system"
    else:
        return
    if changed:
        log.warning(f"{path}: {changed} of {len(dataset)} records have a conversation that cannot be written "
                    f"as {schema} ({why}); their last exchange was written (use --to messages or sharegpt "
                    "to keep every turn)")


def _open_out(path: Path, binary: bool = False):
    if path.suffix == ".gz":
        raw = gzip.open(path, "wb")
        return raw if binary else io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, "wb") if binary else open(path, "w", encoding="utf-8", newline="")


def write(dataset: Dataset, path: str | os.PathLike, format: str | None = None) -> str:
    """Write ``dataset`` to ``path`` atomically; returns the ``SCHEMA:CONTAINER`` written."""
    schema, container = resolve_format(dataset, path, format)
    p = check_output_file(path)
    _warn_lossy(dataset, schema, p)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    if tmp.suffix != p.suffix:  # keep the .gz suffix for _open_out
        tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")
    rows = [to_row(r, schema) for r in dataset]
    try:
        if container == "jsonl":
            with _open_out(tmp) as fh:
                for row in rows:
                    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif container == "json":
            with _open_out(tmp) as fh:
                json.dump(rows, fh, ensure_ascii=False, indent=2)
                fh.write("\n")
        elif container == "csv":
            if schema in ("messages", "sharegpt"):
                raise ConfigError(f"the {schema} schema has nested turns and cannot be written as CSV")
            columns: list[str] = []
            for row in rows:
                columns.extend(k for k in row if k not in columns)
            with _open_out(tmp) as fh:
                w = csv.DictWriter(fh, fieldnames=columns)
                w.writeheader()
                for row in rows:
                    w.writerow({k: (v if isinstance(v, str) or v is None else json.dumps(v, ensure_ascii=False))
                                for k, v in row.items()})
        elif container == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return f"{schema}:{container}"
