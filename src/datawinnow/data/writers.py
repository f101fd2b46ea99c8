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
import itertools
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from ..cache import mkstemp_umask
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


def lossy(r: Record, schema: str) -> bool:
    """Whether writing ``r`` as ``schema`` drops turns of its conversation."""
    if schema == "input-target":
        return is_multi_turn(r)
    if schema == "alpaca":
        return not alpaca_turns(r)[2]
    return False


def _warn_lossy(changed: int, total: int, schema: str, path: Path) -> None:
    if not changed:
        return
    why = ("input-target holds one exchange" if schema == "input-target" else
           "alpaca's system/history fields need alternating user/assistant turns and a non-empty system")
    log.warning(f"{path}: {changed} of {total} records have a conversation that cannot be written "
                f"as {schema} ({why}); their last exchange was written (use --to messages or sharegpt "
                "to keep every turn)")


def _open_out(path: Path, binary: bool = False):
    if path.suffix == ".gz":
        raw = gzip.open(path, "wb")
        return raw if binary else io.TextIOWrapper(raw, encoding="utf-8", newline="")
    return open(path, "wb") if binary else open(path, "w", encoding="utf-8", newline="")


class _Sink:
    """Rows written to one (temporary) file as they come: ``add(rows)`` per chunk, ``close()`` once."""

    def __init__(self, path: Path):
        self.path = path

    def add(self, rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        """Release what is open after a failure (the caller removes the file)."""


class _JsonlSink(_Sink):
    def __init__(self, path: Path):
        super().__init__(path)
        self.fh = _open_out(path)

    def add(self, rows):
        self.fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))

    def close(self):
        self.fh.close()

    abort = close


class _JsonSink(_Sink):
    """A JSON array, laid out exactly as ``json.dump(rows, indent=2)`` lays it out."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.fh = _open_out(path)
        self.any = False

    def add(self, rows):
        for row in rows:
            item = json.dumps(row, ensure_ascii=False, indent=2).replace("\n", "\n  ")
            self.fh.write((",\n  " if self.any else "[\n  ") + item)
            self.any = True

    def close(self):
        self.fh.write("\n]\n" if self.any else "[]\n")
        self.fh.close()

    def abort(self):
        self.fh.close()


class _CsvSink(_Sink):
    """CSV needs every column before the first row: rows wait in a JSON-lines spool file beside the output."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.columns: dict[str, None] = {}
        fd, self.spool = mkstemp_umask(prefix=f".{path.name}.", suffix=".spool", dir=path.parent)
        self.fh = os.fdopen(fd, "w", encoding="utf-8", newline="")

    def add(self, rows):
        for row in rows:
            self.columns.update(dict.fromkeys(row))
            self.fh.write(json.dumps(row, ensure_ascii=False) + "\n")

    def close(self):
        self.fh.close()
        try:
            with _open_out(self.path) as out, open(self.spool, encoding="utf-8") as spool:
                w = csv.DictWriter(out, fieldnames=list(self.columns))
                w.writeheader()
                for line in spool:
                    w.writerow({k: (v if isinstance(v, str) or v is None else json.dumps(v, ensure_ascii=False))
                                for k, v in json.loads(line).items()})
        finally:
            os.unlink(self.spool)

    def abort(self):
        self.fh.close()
        if os.path.exists(self.spool):
            os.unlink(self.spool)


class _ParquetSink(_Sink):
    """Each chunk becomes an Arrow table (columnar: about the size of the data, not of Python objects); the
    tables are joined (types promoted, e.g. a column null in one chunk and text in another) and written at
    the end. The columns are those of the first row, as ``pyarrow.Table.from_pylist`` takes them."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.names: list[str] | None = None
        self.tables: list[Any] = []

    def add(self, rows):
        import pyarrow as pa

        if not rows:
            return
        if self.names is None:
            self.names = list(rows[0])
        self.tables.append(pa.Table.from_pydict({k: [row.get(k) for row in rows] for k in self.names}))

    def close(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables(self.tables, promote_options="permissive") if self.tables else pa.table({})
        self.tables = []
        pq.write_table(table, self.path)


SINKS = {"jsonl": _JsonlSink, "json": _JsonSink, "csv": _CsvSink, "parquet": _ParquetSink}


def write_chunks(chunks: Iterable[Dataset], path: str | os.PathLike, format: str | None = None) -> tuple[int, str]:
    """Write the records of ``chunks`` (datasets read one after another from one source) to ``path`` as they
    come, atomically (a temporary file beside ``path``, renamed when complete); returns (records, format).

    The format defaults from the first chunk (its schema) and ``path``'s suffix, as for :func:`write`.
    JSON lines, JSON and CSV hold one chunk's rows in memory at a time (CSV spools them to a temporary
    file, to learn every column before writing the header); Parquet holds them as Arrow tables.
    """
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        first = Dataset([])
    schema, container = resolve_format(first, path, format)
    p = check_output_file(path)
    if container == "csv" and schema in ("messages", "sharegpt"):
        raise ConfigError(f"the {schema} schema has nested turns and cannot be written as CSV")
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    if tmp.suffix != p.suffix:  # keep the .gz suffix for _open_out
        tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")
    total = changed = 0
    sink = SINKS[container](tmp)
    try:
        for chunk in itertools.chain([first], it):
            changed += sum(lossy(r, schema) for r in chunk)
            total += len(chunk)
            sink.add([to_row(r, schema) for r in chunk])
        sink.close()
        os.replace(tmp, p)
    except BaseException:
        sink.abort()
        raise
    finally:
        if tmp.exists():
            tmp.unlink()
    _warn_lossy(changed, total, schema, p)
    return total, f"{schema}:{container}"


def write(dataset: Dataset, path: str | os.PathLike, format: str | None = None) -> str:
    """Write ``dataset`` to ``path`` atomically; returns the ``SCHEMA:CONTAINER`` written."""
    return write_chunks([dataset], path, format)[1]
