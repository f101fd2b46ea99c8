"""Reading a source as a stream of records, for pools too large to hold as Python objects at once.

:func:`iter_chunks` yields the records of any source :func:`~datawinnow.data.load` accepts as
:class:`Dataset` chunks of at most ``chunk_size`` records, read as they are needed: the same
validation, errors naming file/line/field, ids and warnings as ``load`` (a chunk's records are equal
to the same records of ``load``'s dataset), but only one chunk's records exist at a time.
:func:`iter_records` yields them one by one; :func:`convert` streams a source into a file.

What is read lazily: JSON lines (plain or ``.gz``) and CSV line by line, Parquet a batch of rows at a
time, Hugging Face datasets row by row (they are Arrow-backed on disk). What is not: a ``.json`` file
(or a ``.jsonl`` holding one JSON array) is parsed whole, and a :class:`Dataset` or list already in
memory is only cut into chunks. Per record the stream keeps its id (to make later repeats unique,
as ``load`` does): about 100 bytes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .readers import Meter, _all_records, copy_records, open_rows
from .record import Dataset, Record
from .writers import write_chunks

CHUNK_SIZE = 1024


class RecordStream:
    """The records of one source, read lazily; ``meter`` says how far the read has got."""

    def __init__(self, source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train",
                 chunk_size: int = CHUNK_SIZE):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size = chunk_size
        if isinstance(source, Dataset) or _all_records(source):
            self._dataset = source if isinstance(source, Dataset) else copy_records(source)
            self._rows = None
            self.meter = Meter(len(self._dataset), "record")
        else:
            self._dataset = None
            self._rows = open_rows(source, schema=schema, column_map=column_map, split=split)
            self.meter = self._rows.meter
        self._used = False

    def chunks(self) -> Iterator[Dataset]:
        """Datasets of at most ``chunk_size`` records, in order (a stream is read once)."""
        if self._used:
            raise RuntimeError("a RecordStream is read once; open another for a second pass")
        self._used = True
        if self._dataset is not None:
            yield from self._slices(self._dataset)
            return
        src = self._rows
        build = src.builder()
        path = src.path if src.path is not None else src.where
        records: list[Record] = []
        for lineno, row in src.rows:
            records.append(build.record(lineno, row))
            if len(records) == self.chunk_size:
                yield Dataset(records, format=build.format, path=path)
                records = []
        build.finish()  # an empty source raises here; the warnings come once the whole source is read
        if records:
            yield Dataset(records, format=build.format, path=path)

    def _slices(self, ds: Dataset) -> Iterator[Dataset]:
        for s in range(0, len(ds), self.chunk_size):
            self.meter.advance(min(self.chunk_size, len(ds) - s))
            yield ds[s:s + self.chunk_size]

    def __iter__(self) -> Iterator[Record]:
        for chunk in self.chunks():
            yield from chunk


def iter_chunks(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train",
                chunk_size: int = CHUNK_SIZE) -> Iterator[Dataset]:
    """The records of ``source`` as :class:`Dataset` chunks of at most ``chunk_size``, read as they are needed."""
    return RecordStream(source, schema=schema, column_map=column_map, split=split, chunk_size=chunk_size).chunks()


def iter_records(source: Any, *, schema: str | None = None, column_map: Any = None, split: str = "train",
                 chunk_size: int = CHUNK_SIZE) -> Iterator[Record]:
    """The records of ``source`` one by one (read ``chunk_size`` at a time)."""
    return iter(RecordStream(source, schema=schema, column_map=column_map, split=split, chunk_size=chunk_size))


def convert(source: Any, out: str, format: str | None = None, *, column_map: Any = None,
            chunk_size: int = CHUNK_SIZE, on_progress: Callable[[Meter], None] | None = None) -> tuple[int, str]:
    """Stream ``source`` into ``out`` in another format (see :func:`~datawinnow.data.writers.write_chunks`);
    returns (records written, ``SCHEMA:CONTAINER``). ``on_progress(meter)`` is called after every chunk.

    ``out`` appears only when complete; an error in the input (or an empty input) leaves it untouched.
    """
    stream = RecordStream(source, column_map=column_map, chunk_size=chunk_size)

    def chunks() -> Iterator[Dataset]:
        for chunk in stream.chunks():
            yield chunk
            if on_progress is not None:
                on_progress(stream.meter)

    return write_chunks(chunks(), out, format)
