"""Reading any supported source into a :class:`Dataset`.

Sources: a file (``.json``, ``.jsonl``, ``.csv``, ``.parquet``, each optionally ``.gz``), a folder
written by ``datasets.Dataset.save_to_disk``, ``bundled:NAME``, a Hugging Face hub id (``org/name``,
or ``hf:org/name``) read through a column map, or data already in memory: a ``datasets.Dataset``
(or ``DatasetDict``), a list of dicts (rows of any schema) or a list of :class:`Record`.

Text files are UTF-8 (a byte-order mark is skipped); ``.jsonl`` files may also hold one JSON
array, as Hugging Face ``load_dataset("json")`` accepts. Every problem is a :class:`DataError`
naming the file, the line (a row number for tabular sources) and the field.

Every source is first a :class:`RowSource` (:func:`open_rows`): its ``(line, row)`` pairs, read as
they are needed (JSON lines and CSV line by line, ``.gz`` decompressed on the fly, Parquet a batch of
rows at a time, Hugging Face datasets row by row; a ``.json`` file is parsed whole). :func:`load`
turns them into one :class:`Dataset` (a row is dropped as soon as its record is built; the file's
text is never held whole), :mod:`.stream` into chunks of records.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

from ..errors import DataError
from .builder import RecordBuilder
from .record import Dataset, Record, assign_ids
from .rows import ColumnMap

TEXT_SUFFIXES = (".json", ".jsonl", ".csv")
BOM = "\ufeff"
CSV_FIELD_LIMIT = 2**31 - 1  # csv's default (128 KiB) rejects long responses


class Meter:
    """How far a streamed read has got: ``done`` of ``total`` (bytes of a text file, else rows; None: unknown).

    Text files are measured on the file itself (compressed bytes for ``.gz``), so a progress bar can
    show a rate and an ETA without counting the records first.
    """

    def __init__(self, total: float | None = None, unit: str = "row"):
        self.total, self.unit = total, unit
        self._done = 0.0
        self._raw: BinaryIO | None = None

    @property
    def done(self) -> float:
        raw = self._raw
        if raw is not None and not raw.closed:
            return float(raw.tell())
        return self._done

    def advance(self, n: float = 1) -> None:
        self._done += n

    def watch(self, raw: BinaryIO) -> None:
        self._raw = raw

    def finish(self) -> None:
        self._raw = None
        if self.total is not None:
            self._done = self.total


def _gzip_error(e: BaseException, path: Path) -> DataError:
    if isinstance(e, EOFError):
        return DataError("truncated gzip file (it ends before the compressed stream does)", path=str(path))
    return DataError(f"not a valid gzip file ({e})", path=str(path))


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise _gzip_error(e, path) from None


def _not_utf8(data: bytes, e: UnicodeDecodeError, path: Path, line: int) -> DataError:
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    return DataError(f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column}); re-encode the file "
                     "as UTF-8", path=str(path), line=line)


def read_text(path: Path) -> str:
    """A text file's content as one string: UTF-8, a leading byte-order mark dropped, ``.gz`` decompressed."""
    data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(data, e, path, data.count(b"\n", 0, e.start) + 1) from None
    return text[1:] if text.startswith(BOM) else text


def iter_lines(path: Path, meter: Meter | None = None) -> Iterator[tuple[int, str]]:
    """A text file's lines as they are read, numbered from 1, each ending with its ``\\n`` (the last may not).

    UTF-8 (checked line by line, so an error names its line and column), a leading byte-order mark
    dropped, ``.gz`` decompressed on the fly; lines are split at ``\\n`` only, as ``str.split("\\n")``
    splits. ``meter`` follows the position in the file.
    """
    path = Path(path)
    try:
        raw = open(path, "rb")
    except PermissionError:
        raise DataError("permission denied", path=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a data file", path=str(path)) from None
    with raw:
        if meter is not None:
            meter.watch(raw)
        fh: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
        lineno = 0
        try:
            for data in fh:
                lineno += 1
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise _not_utf8(data, e, path, lineno) from None
                if lineno == 1 and text.startswith(BOM):
                    text = text[1:]
                yield lineno, text
        except (gzip.BadGzipFile, zlib.error, EOFError) as e:
            raise _gzip_error(e, path) from None
    if meter is not None:
        meter.finish()


def _inner_suffix(path: Path) -> str:
    return Path(path.stem).suffix.lower() if path.suffix == ".gz" else path.suffix.lower()


def _json_line(line: str, path: Path, lineno: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=str(path), line=lineno) from None


def _jsonl_lines(text: str, path: Path) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield lineno, _json_line(line, path, lineno)


def iter_jsonl(path: Path, meter: Meter | None = None) -> Iterator[tuple[int, Any]]:
    """Rows of a JSON-lines file with their line numbers, read line by line.

    A file holding one JSON array (as Hugging Face ``load_dataset("json")`` accepts) is read whole as that array.
    """
    path = Path(path)
    lines = iter_lines(path, meter)
    first = True
    for lineno, line in lines:
        if not line.strip():
            continue
        if first and line.lstrip().startswith("["):
            lines.close()
            yield from _json_array(read_text(path), path)
            if meter is not None:
                meter.finish()
            return
        first = False
        yield lineno, _json_line(line[:-1] if line.endswith("\n") else line, path, lineno)
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


def iter_csv(path: Path, meter: Meter | None = None) -> Iterator[tuple[int, Any]]:
    """Rows of a CSV file (a header line, then one row a record), read as they are needed."""
    path = Path(path)
    # str.splitlines pieces of each line, as the whole text's splitlines would give (a bare \\r ends a line too)
    pieces = (piece for _, line in iter_lines(path, meter) for piece in line.splitlines(keepends=True))
    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.DictReader(pieces)
    try:
        if reader.fieldnames is None:
            return
        for row in reader:
            if None in row:
                raise DataError("more cells than header columns", path=str(path), line=reader.line_num)
            yield reader.line_num, {k: v for k, v in row.items()}
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", path=str(path), line=reader.line_num) from None


PARQUET_BATCH = 1024  # rows decoded to Python at a time


def iter_parquet(path: Path, meter: Meter | None = None) -> Iterator[tuple[int, Any]]:
    """Rows of a Parquet file, decoded one batch of rows at a time."""
    import pyarrow.parquet as pq

    def broken(e: Exception) -> DataError:
        return DataError(f"cannot read Parquet: {e}", path=str(path))

    try:
        pf = pq.ParquetFile(path)
        if meter is not None:
            meter.total = pf.metadata.num_rows
        k = 0
        for batch in pf.iter_batches(batch_size=PARQUET_BATCH):
            for row in batch.to_pylist():
                k += 1
                if meter is not None:
                    meter.advance()
                yield k, row
    except PermissionError:
        raise DataError("permission denied", path=str(path)) from None
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for broken files
        raise broken(e) from None


@dataclass
class RowSource:
    """The rows of one source, not read yet: ``(line, row)`` pairs, and how to make records of them.

    ``where`` names the source in errors (a file path; ``<list>`` for rows in memory), ``unit`` what a
    row number counts (``line``, ``row`` or ``item``); ``path`` is what the dataset records as its origin.
    """

    rows: Iterable[tuple[int, Any]]
    where: str
    unit: str = "line"
    container: str = "jsonl"
    schema: str | None = None
    column_map: ColumnMap | None = None
    warn: bool = True
    path: str | None = None
    meter: Meter = field(default_factory=Meter)

    def builder(self) -> RecordBuilder:
        return RecordBuilder(self.where, unit=self.unit, schema=self.schema, column_map=self.column_map,
                             container=self.container, warn=self.warn)


def _rows_to_dataset(rows: Iterable[tuple[int, Any]], where: str, *, unit: str = "line",
                     schema: str | None = None, column_map: ColumnMap | None = None,
                     container: str = "jsonl", warn: bool = False) -> Dataset:
    """Records from ``(line, row)`` pairs; ``warn``: report empty outputs and repeated ids (user data)."""
    return to_dataset(RowSource(rows, where, unit, container, schema, column_map, warn))


def to_dataset(src: RowSource) -> Dataset:
    """Every record of a row source, in one :class:`Dataset` (rows are dropped as soon as their record is built)."""
    build = src.builder()
    records = [build.record(lineno, row) for lineno, row in src.rows]
    build.finish()
    return Dataset(records, format=build.format, path=src.path if src.path is not None else src.where)


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


FILE_READERS: dict[str, tuple[Callable[..., Iterator[tuple[int, Any]]], str, str]] = {
    # inner suffix: (rows, row unit, container)
    ".jsonl": (iter_jsonl, "line", "jsonl"),
    ".csv": (iter_csv, "line", "csv"),
    ".parquet": (iter_parquet, "row", "parquet"),
}


def file_rows(path: str | os.PathLike, *, schema: str | None = None, column_map: Any = None) -> RowSource:
    """The rows of a data file or ``save_to_disk`` folder (read lazily, except a ``.json`` array: whole)."""
    p = Path(path)
    if not p.exists():
        raise DataError("no such file or folder", path=str(p))
    cmap = load_column_map(column_map)
    if p.is_dir():
        return hf_rows(str(p), column_map=cmap)
    suffix = _inner_suffix(p)
    where = str(p)
    if suffix == ".json":
        meter = Meter(p.stat().st_size, "B")
        return RowSource(_whole(iter_json_array, p, meter), where, "line", "json", schema, cmap, meter=meter)
    if suffix in FILE_READERS:
        rows, unit, container = FILE_READERS[suffix]
        meter = Meter(p.stat().st_size if unit == "line" else None, "B" if unit == "line" else "row")
        return RowSource(rows(p, meter), where, unit, container, schema, cmap, meter=meter)
    raise DataError(f"unknown file type '{suffix or p.name}' (expected .json, .jsonl, .csv or .parquet, "
                    "optionally .gz)", path=where)


def _whole(rows: Callable[[Path], Iterator[tuple[int, Any]]], path: Path, meter: Meter) -> Iterator[tuple[int, Any]]:
    """Rows of a reader that reads its file whole, with the meter at the end once it has."""
    try:
        it = rows(path)
        first = next(it, None)
    except PermissionError:
        raise DataError("permission denied", path=str(path)) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a data file", path=str(path)) from None
    meter.finish()
    if first is not None:
        yield first
        yield from it


def read_file(path: str | os.PathLike, *, schema: str | None = None, column_map: Any = None) -> Dataset:
    return to_dataset(file_rows(path, schema=schema, column_map=column_map))


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


def _numbered(items: Iterable[Any], meter: Meter) -> Iterator[tuple[int, Any]]:
    for k, row in enumerate(items):
        meter.advance()
        yield k + 1, row


def _counted(items: Any, unit: str) -> Meter:
    try:
        return Meter(len(items), unit)
    except TypeError:  # an iterable dataset
        return Meter(None, unit)


def hf_rows(name_or_dir: str, *, column_map: Any = None, split: str = "train") -> RowSource:
    """The rows of a Hugging Face dataset by hub id or ``save_to_disk`` folder (Arrow-backed: read row by row)."""
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
    meter = _counted(ds, "row")
    return RowSource(_numbered(ds, meter), name_or_dir, "row", "hf", None, cmap, meter=meter)


def read_hf(name_or_dir: str, *, column_map: Any = None, split: str = "train") -> Dataset:
    """A Hugging Face dataset by hub id or ``save_to_disk`` folder, read through a column map.

    Without a column map, rows must already have one of the known schemas' fields.
    """
    return to_dataset(hf_rows(name_or_dir, column_map=column_map, split=split))


def memory_rows(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train"
                ) -> RowSource:
    """The rows of a list of dicts or a ``datasets.Dataset``/``DatasetDict`` already in memory."""
    cmap = load_column_map(column_map)
    if isinstance(source, (list, tuple)):
        meter = Meter(len(source), "item")
        return RowSource(_numbered(source, meter), "<list>", "item", "memory", schema, cmap, meter=meter)
    ds = _pick_split(source, cmap, split, f"<{type(source).__name__}>")
    meter = _counted(ds, "row")
    return RowSource(_numbered(ds, meter), f"<{type(ds).__name__}>", "row", "memory", schema, cmap, meter=meter)


def copy_records(records: Sequence[Record]) -> Dataset:
    """Copies of records already made (ids given to those without one, as for files); the caller's stay as they are."""
    return Dataset(assign_ids([dataclasses.replace(r, meta=dict(r.meta)) for r in records]), format="alpaca:jsonl",
                   path=None)


def from_memory(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train") -> Dataset:
    """A :class:`Dataset` from rows already in memory: a ``datasets.Dataset``/``DatasetDict``, a list of
    dicts, or a list of :class:`Record` (ids are given to records without one, as for files)."""
    if _all_records(source):
        return copy_records(source)
    return to_dataset(memory_rows(source, schema=schema, column_map=column_map, split=split))


def _all_records(source: Any) -> bool:
    return isinstance(source, (list, tuple)) and bool(source) and all(isinstance(r, Record) for r in source)


def _is_hf_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets" and hasattr(obj, "__iter__")


def open_rows(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train") -> RowSource:
    """The rows of any source but a :class:`Dataset` or a list of :class:`Record` (see the module docstring)."""
    if isinstance(source, (list, tuple)) or _is_hf_dataset(source):
        return memory_rows(source, schema=schema, column_map=column_map, split=split)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot read a {type(source).__name__}: expected a path, bundled:NAME, a hub id, "
                        "a datasets.Dataset or a list of dicts")
    s = os.fspath(source)
    if s.startswith("bundled:"):
        from .bundled import bundled_rows
        return bundled_rows(s[len("bundled:"):])
    if s.startswith("hf:"):
        return hf_rows(s[3:], column_map=column_map, split=split)
    if os.path.exists(s):
        return file_rows(s, schema=schema, column_map=column_map)
    if "/" in s and not s.startswith((".", "/", "~")) and s.count("/") == 1 and not Path(s).suffix:
        return hf_rows(s, column_map=column_map, split=split)
    raise DataError("no such file or folder (nor bundled:NAME, nor a hub id org/name)", path=s)


def load(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train") -> Dataset:
    """Read any source into a :class:`Dataset` (see the module docstring for what a source can be)."""
    if isinstance(source, Dataset):
        return source
    if _all_records(source):
        return copy_records(source)
    return to_dataset(open_rows(source, schema=schema, column_map=column_map, split=split))
