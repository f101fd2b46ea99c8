"""Reading any supported source into a :class:`Dataset`.

Sources: a file (``.json``, ``.jsonl``, ``.csv``, ``.parquet``, each optionally ``.gz``), a folder
written by ``datasets.Dataset.save_to_disk``, ``bundled:NAME``, or a Hugging Face hub id
(``org/name``, or ``hf:org/name``) read through a column map.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError
from .record import Dataset, Record, assign_ids
from .rows import SCHEMAS, ColumnMap, RowContext, detect_schema

TEXT_SUFFIXES = (".json", ".jsonl", ".csv")


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def _inner_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix == ".gz" else path.suffix.lower()


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=str(path), line=lineno) from None


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Items of a top-level JSON array, each with the line it starts on."""
    with _open_text(path) as fh:
        text = fh.read()
    decoder = json.JSONDecoder()
    pos, n = 0, len(text)

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    def line_at(p: int) -> int:
        return text.count("\n", 0, p) + 1

    pos = skip_ws(pos)
    if pos >= n or text[pos] != "[":
        # a single object, or JSON lines saved as .json
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            yield from iter_jsonl(path)
            return
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            for k, item in enumerate(obj["data"]):
                yield k + 1, item
            return
        raise DataError("expected a JSON array of records", path=str(path), line=1)
    pos = skip_ws(pos + 1)
    if pos < n and text[pos] == "]":
        return
    while True:
        start = pos
        try:
            item, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg}", path=str(path), line=line_at(e.pos)) from None
        yield line_at(start), item
        pos = skip_ws(pos)
        if pos < n and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < n and text[pos] == "]":
            return
        raise DataError("invalid JSON: expected ',' or ']' between records", path=str(path), line=line_at(pos))


def iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:
                raise DataError("more cells than header columns", path=str(path), line=reader.line_num)
            yield reader.line_num, {k: v for k, v in row.items()}


def iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"cannot read Parquet: {e}", path=str(path)) from None
    for k, row in enumerate(table.to_pylist()):
        yield k + 1, row


def _rows_to_dataset(rows: Iterator[tuple[int, Any]], where: str, *, unit: str = "line",
                     schema: str | None = None, column_map: ColumnMap | None = None,
                     container: str = "jsonl") -> Dataset:
    records: list[Record] = []
    for lineno, row in rows:
        ctx = RowContext(where, lineno, unit)
        if not isinstance(row, dict):
            raise ctx.error(f"expected a JSON object, got {type(row).__name__}")
        if column_map is not None:
            records.append(column_map.row(row, ctx))
            continue
        if schema is None:
            schema = detect_schema(row, ctx)
        records.append(SCHEMAS[schema](row, ctx))
    if not records:
        raise DataError("no records (the pool is empty)", path=where)
    fmt = "columns" if column_map is not None else schema
    return Dataset(assign_ids(records), format=f"{fmt}:{container}", path=where)


def load_column_map(spec: str | dict | None, dataset_name: str | None = None) -> ColumnMap | None:
    """A column map from a dict, a JSON string or a JSON file (optionally keyed by dataset name, as DELIFT's is)."""
    if spec is None or isinstance(spec, ColumnMap):
        return spec
    where = "column map"
    if isinstance(spec, str):
        if os.path.exists(spec):
            where = spec
            try:
                with open(spec, encoding="utf-8") as fh:
                    spec = json.load(fh)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg}", path=where, line=e.lineno) from None
        else:
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError:
                raise DataError("neither a file nor valid JSON", path=where) from None
    if isinstance(spec, dict) and "input" not in spec and dataset_name is not None and dataset_name in spec:
        spec = spec[dataset_name]
    return ColumnMap(spec, where)


def read_file(path: str | os.PathLike, *, schema: str | None = None, column_map: Any = None) -> Dataset:
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", path=str(p))
    cmap = load_column_map(column_map)
    if p.is_dir():
        return read_hf(str(p), column_map=cmap)
    suffix = _inner_suffix(p)
    where = str(p)
    if suffix == ".jsonl":
        return _rows_to_dataset(iter_jsonl(p), where, schema=schema, column_map=cmap, container="jsonl")
    if suffix == ".json":
        return _rows_to_dataset(iter_json_array(p), where, schema=schema, column_map=cmap, container="json")
    if suffix == ".csv":
        return _rows_to_dataset(iter_csv(p), where, unit="line", schema=schema, column_map=cmap, container="csv")
    if suffix == ".parquet":
        return _rows_to_dataset(iter_parquet(p), where, unit="row", schema=schema, column_map=cmap,
                                container="parquet")
    raise DataError(f"unknown file type '{suffix or p.name}' (expected .json, .jsonl, .csv or .parquet, "
                    "optionally .gz)", path=where)


def read_hf(name_or_dir: str, *, column_map: Any = None, split: str = "train") -> Dataset:
    """A Hugging Face dataset by hub id or ``save_to_disk`` folder, read through a column map.

    Without a column map, rows must already have one of the known schemas' fields.
    """
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        from ..errors import MissingDependencyError
        raise MissingDependencyError("datasets", "all", "reading Hugging Face datasets") from None
    cmap = load_column_map(column_map, dataset_name=name_or_dir)
    if os.path.isdir(name_or_dir):
        try:
            ds = datasets.load_from_disk(name_or_dir)
        except Exception as e:
            raise DataError(f"not a datasets folder written by save_to_disk: {e}", path=name_or_dir) from None
        if isinstance(ds, datasets.DatasetDict):
            want = cmap.split(split) if cmap else split
            if want not in ds:
                raise DataError(f"no split '{want}' (has: {', '.join(ds)})", path=name_or_dir)
            ds = ds[want]
    else:
        want = cmap.split(split) if cmap else split
        try:
            ds = datasets.load_dataset(name_or_dir, cmap.subset if cmap else None, split=want)
        except Exception as e:
            raise DataError(f"cannot load from the Hugging Face hub ({type(e).__name__}: {e}); offline, "
                            "save the dataset with save_to_disk and pass the folder", path=name_or_dir) from None
    rows = ((k + 1, row) for k, row in enumerate(ds))
    return _rows_to_dataset(rows, name_or_dir, unit="row", column_map=cmap, container="hf")


def load(source: str | os.PathLike | Dataset, *, schema: str | None = None, column_map: Any = None,
         split: str = "train") -> Dataset:
    """Read any source into a :class:`Dataset` (see the module docstring for what a source can be)."""
    if isinstance(source, Dataset):
        return source
    s = str(source)
    if s.startswith("bundled:"):
        from .bundled import load_bundled
        return load_bundled(s[len("bundled:"):])
    if s.startswith("hf:"):
        return read_hf(s[3:], column_map=column_map, split=split)
    if os.path.exists(s):
        return read_file(s, schema=schema, column_map=column_map)
    if "/" in s and not s.startswith((".", "/")) and s.count("/") == 1 and not Path(s).suffix:
        return read_hf(s, column_map=column_map, split=split)
    raise DataError("no such file or folder (nor bundled:NAME, nor a hub id org/name)", path=s)
