"""Writing a :class:`Dataset` in any supported format, so a subset can go straight to another trainer.

A format is ``SCHEMA:CONTAINER``: schema ``alpaca`` | ``input-target`` | ``sharegpt`` | ``messages``,
container ``jsonl`` | ``json`` | ``csv`` | ``parquet``. Either half may be given alone: the schema
defaults to the dataset's own (alpaca for column-mapped sources), the container to the output
file's suffix. A ``.gz`` suffix compresses JSON, JSONL and CSV.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .record import Dataset, Record

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


def to_row(r: Record, schema: str) -> dict[str, Any]:
    """One record as a row of the given schema (the id and any extra fields ride along)."""
    if schema == "alpaca":
        row = {"id": r.id, "instruction": r.instruction, "input": r.input, "output": r.output}
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


def _open_out(path: Path, binary: bool = False):
    if path.suffix == ".gz":
        raw = gzip.open(path, "wb")
        return raw if binary else io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, "wb") if binary else open(path, "w", encoding="utf-8", newline="")


def write(dataset: Dataset, path: str | os.PathLike, format: str | None = None) -> str:
    """Write ``dataset`` to ``path`` atomically; returns the ``SCHEMA:CONTAINER`` written."""
    schema, container = resolve_format(dataset, path, format)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
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
