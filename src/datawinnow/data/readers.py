"""Reading any supported source into a :class:`Dataset`.

Sources: a file (``.json``, ``.jsonl``, ``.csv``, ``.parquet``, each optionally ``.gz``), a folder
written by ``datasets.Dataset.save_to_disk``, ``bundled:NAME``, a Hugging Face hub id (``org/name``,
or ``hf:org/name``) read through a column map, or data already in memory: a ``datasets.Dataset``
(or ``DatasetDict``), a list of dicts (rows of any schema) or a list of :class:`Record`.

Text files are UTF-8 (a byte-order mark is skipped); ``.jsonl`` files may also hold one JSON
array, as Hugging Face ``load_dataset("json")`` accepts. Every problem is a :class:`DataError`
naming the file, the line (a row number for tabular sources) and the field.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import DataError
from .record import Dataset, Record, assign_ids
from .rows import SCHEMAS, ColumnMap, RowContext, detect_schema

TEXT_SUFFIXES = (".json", ".jsonl", ".csv")
BOM = "\ufeff"
CSV_FIELD_LIMIT = 2**31 - 1  # csv's default (128 KiB) rejects long responses

log = logging.getLogger(__name__)


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"not a valid gzip file ({e})", path=str(path)) from None
    except EOFError:
        raise DataError("truncated gzip file (it ends before the compressed stream does)", path=str(path)) from None


def read_text(path: Path) -> str:
    """A text file's content as one string: UTF-8, a leading byte-order mark dropped, ``.gz`` decompressed."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); re-encode the file "
                        "as UTF-8", path=str(path), line=line) from None
    return text[1:] if text.startswith(BOM) else text


def _inner_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix == ".gz" else path.suffix.lower()


def _jsonl_lines(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=str(path), line=lineno) from None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON-lines file with their line numbers (a file holding one JSON array is read as that array)."""
    text = read_text(Path(path))
    if text.lstrip().startswith("["):
        yield from _json_array(text, Path(path))
    else:
        yield from _jsonl_lines(text, Path(path))


def _json_array(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    """Items of a top-level JSON array, each with the line it starts on."""
    decoder = json.JSONDecoder()
    n = len(text)

    def skip_ws(p: int) -> int:
        while p < n and text[p] in " \t\r\n":
            p += 1
        return p

    def line_at(p: int) -> int:
        return text.count("\n", 0, p) + 1

    pos = skip_ws(skip_ws(0) + 1)  # past '['
    if pos < n and text[pos] == "]":
        return
    while True:
        if pos >= n:
            raise DataError("invalid JSON: the array is not closed (truncated file?)", path=str(path), line=line_at(n))
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
            if skip_ws(pos + 1) < n:
                raise DataError("invalid JSON: extra data after the array", path=str(path), line=line_at(skip_ws(pos + 1)))
            return
        raise DataError("invalid JSON: expected ',' or ']' between records", path=str(path), line=line_at(pos))


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """Rows of a ``.json`` file: a JSON array, an object with a ``data`` list, or JSON lines saved as ``.json``."""
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("["):
        yield from _json_array(text, path)
        return
    if not text.strip():
        return
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        yield from _jsonl_lines(text, path)  # JSON lines saved as .json
        return
    if isinstance(obj, dict) and isinstance(obj.get("data"), list):
        for k, item in enumerate(obj["data"]):
            yield k + 1, item
        return
    if isinstance(obj, dict):  # a single record
        yield 1, obj
        return
    raise DataError(f"expected a JSON array of records, got {type(obj).__name__}", path=str(path), line=1)


def iter_csv(path: Path) -> Iterator[tuple[int, Any]]:
    path = Path(path)
    lines = read_text(path).splitlines(keepends=True)
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(lines)
    try:
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:
                raise DataError("more cells than header columns", path=str(path), line=reader.line_num)
            yield reader.line_num, {k: v for k, v in row.items()}
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", path=str(path), line=reader.line_num) from None


def iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
        raise DataError(f"cannot read Parquet: {e}", path=str(path)) from None
    for k, row in enumerate(table.to_pylist()):
        yield k + 1, row


def _rows_to_dataset(rows: Iterable[tuple[int, Any]], where: str, *, unit: str = "line",
                     schema: str | None = None, column_map: ColumnMap | None = None,
                     container: str = "jsonl", warn: bool = False) -> Dataset:
    """Records from ``(line, row)`` pairs; ``warn``: report empty outputs and repeated ids (user data)."""
    records: list[Record] = []
    lines: list[int] = []
    for lineno, row in rows:
        ctx = RowContext(where, lineno, unit)
        if not isinstance(row, dict):
            raise ctx.error(f"expected a JSON object, got {type(row).__name__}")
        if column_map is not None:
            records.append(column_map.row(row, ctx))
        else:
            if schema is None:
                schema = detect_schema(row, ctx)
            records.append(SCHEMAS[schema](row, ctx))
        lines.append(lineno)
    if not records:
        raise DataError("no records (the pool is empty)", path=where)
    if warn:
        _warn_about(records, lines, where, unit)
    fmt = "columns" if column_map is not None else schema
    return Dataset(assign_ids(records), format=f"{fmt}:{container}", path=where)


def _where(where: str, unit: str, lines: list[int]) -> str:
    shown = ", ".join(map(str, lines[:5])) + (", ..." if len(lines) > 5 else "")
    return f"{where} ({unit}{'s' if len(lines) > 1 else ''} {shown})"


def _warn_about(records: list[Record], lines: list[int], where: str, unit: str) -> None:
    """Warnings for data that reads fine but is probably not what the user meant."""
    empty = [ln for r, ln in zip(records, lines) if not r.output.strip()]
    if empty:
        log.warning(f"{_where(where, unit, empty)}: the output is empty in {len(empty)} of {len(records)} records "
                    "(training on them teaches the model to answer nothing)")
    seen: set[str] = set()
    repeated: list[int] = []
    for r, ln in zip(records, lines):
        if r.id:
            if r.id in seen:
                repeated.append(ln)
            seen.add(r.id)
    if repeated:
        log.warning(f"{_where(where, unit, repeated)}: {len(repeated)} record(s) repeat an id used earlier; "
                    "they are kept as distinct records, renamed ID~2, ID~3, ...")


def load_column_map(spec: str | dict | None, dataset_name: str | None = None) -> ColumnMap | None:
    """A column map from a dict, a JSON string or a JSON file (optionally keyed by dataset name, as DELIFT's is)."""
    if spec is None or isinstance(spec, ColumnMap):
        return spec
    where = "column map"
    if isinstance(spec, str):
        if os.path.isfile(spec):
            where = spec
            try:
                spec = json.loads(read_text(Path(spec)))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg}", path=where, line=e.lineno) from None
        else:
            try:
                spec = json.loads(spec)
            except json.JSONDecodeError:
                raise DataError("neither a file nor valid JSON", path=spec if os.path.exists(spec) else where) from None
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
    try:
        if suffix == ".jsonl":
            return _rows_to_dataset(iter_jsonl(p), where, schema=schema, column_map=cmap, container="jsonl", warn=True)
        if suffix == ".json":
            return _rows_to_dataset(iter_json_array(p), where, schema=schema, column_map=cmap, container="json",
                                    warn=True)
        if suffix == ".csv":
            return _rows_to_dataset(iter_csv(p), where, unit="line", schema=schema, column_map=cmap, container="csv",
                                    warn=True)
        if suffix == ".parquet":
            return _rows_to_dataset(iter_parquet(p), where, unit="row", schema=schema, column_map=cmap,
                                    container="parquet", warn=True)
    except PermissionError:
        raise DataError("permission denied", path=where) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a data file", path=where) from None
    raise DataError(f"unknown file type '{suffix or p.name}' (expected .json, .jsonl, .csv or .parquet, "
                    "optionally .gz)", path=where)


def _import_datasets():
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        from ..errors import MissingDependencyError
        raise MissingDependencyError("datasets", "all", "reading Hugging Face datasets") from None
    return datasets


def _pick_split(ds: Any, cmap: ColumnMap | None, split: str, where: str) -> Any:
    datasets = _import_datasets()
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        want = cmap.split(split) if cmap else split
        if want not in ds:
            raise DataError(f"no split '{want}' (has: {', '.join(ds)})", path=where)
        ds = ds[want]
    return ds


def read_hf(name_or_dir: str, *, column_map: Any = None, split: str = "train") -> Dataset:
    """A Hugging Face dataset by hub id or ``save_to_disk`` folder, read through a column map.

    Without a column map, rows must already have one of the known schemas' fields.
    """
    datasets = _import_datasets()
    cmap = load_column_map(column_map, dataset_name=name_or_dir)
    if os.path.isdir(name_or_dir):
        try:
            ds = datasets.load_from_disk(name_or_dir)
        except Exception as e:  # noqa: BLE001 - datasets raises several types for foreign folders
            raise DataError(f"not a datasets folder written by save_to_disk: {e}", path=name_or_dir) from None
        ds = _pick_split(ds, cmap, split, name_or_dir)
    else:
        from ..backends.hub import require_hub

        require_hub(name_or_dir, "data set", repo_type="dataset")
        want = cmap.split(split) if cmap else split
        try:
            ds = datasets.load_dataset(name_or_dir, cmap.subset if cmap else None, split=want)
        except Exception as e:  # noqa: BLE001 - the hub client raises many types
            raise DataError(f"cannot load from the Hugging Face hub ({type(e).__name__}: {e}); offline, "
                            "save the dataset with save_to_disk and pass the folder", path=name_or_dir) from None
    rows = ((k + 1, row) for k, row in enumerate(ds))
    return _rows_to_dataset(rows, name_or_dir, unit="row", column_map=cmap, container="hf", warn=True)


def from_memory(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train") -> Dataset:
    """A :class:`Dataset` from rows already in memory: a ``datasets.Dataset``/``DatasetDict``, a list of
    dicts, or a list of :class:`Record` (ids are given to records without one, as for files)."""
    cmap = load_column_map(column_map)
    if isinstance(source, (list, tuple)):
        if source and all(isinstance(r, Record) for r in source):
            return Dataset(assign_ids([Record(**{**r.__dict__, "meta": dict(r.meta)}) for r in source]),
                           format="alpaca:jsonl", path=None)
        rows = ((k + 1, row) for k, row in enumerate(source))
        return _rows_to_dataset(rows, "<list>", unit="item", schema=schema, column_map=cmap, container="memory",
                                warn=True)
    ds = _pick_split(source, cmap, split, f"<{type(source).__name__}>")
    rows = ((k + 1, row) for k, row in enumerate(ds))
    return _rows_to_dataset(rows, f"<{type(ds).__name__}>", unit="row", schema=schema, column_map=cmap,
                            container="memory", warn=True)


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets" and hasattr(obj, "__iter__")


def load(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train") -> Dataset:
    """Read any source into a :class:`Dataset` (see the module docstring for what a source can be)."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (list, tuple)) or _is_hf_dataset(source):
        return from_memory(source, schema=schema, column_map=column_map, split=split)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot read a {type(source).__name__}: expected a path, bundled:NAME, a hub id, "
                        "a datasets.Dataset or a list of dicts")
    s = os.fspath(source)
    if s.startswith("bundled:"):
        from .bundled import load_bundled
        return load_bundled(s[len("bundled:"):])
    if s.startswith("hf:"):
        return read_hf(s[3:], column_map=column_map, split=split)
    if os.path.exists(s):
        return read_file(s, schema=schema, column_map=column_map)
    if "/" in s and not s.startswith((".", "/", "~")) and s.count("/") == 1 and not Path(s).suffix:
        return read_hf(s, column_map=column_map, split=split)
    raise DataError("no such file or folder (nor bundled:NAME, nor a hub id org/name)", path=s)
