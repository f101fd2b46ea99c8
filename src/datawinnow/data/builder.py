"""Rows to records, one at a time, the way every reader does it.

A :class:`RecordBuilder` takes ``(line, row)`` pairs of one source and returns records: the schema is
detected on the first row (or every row goes through a column map), ids are given and repeats renamed
as :func:`~datawinnow.data.record.assign_ids` does, and :meth:`RecordBuilder.finish` raises on an
empty source and logs the warnings about data that reads fine but is probably not what the user meant
(empty outputs, repeated ids), naming the first lines concerned. Nothing of a row is kept after its
record is built; per record the builder keeps only its id (to make later repeats unique).
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import DataError
from .record import IdAssigner, Record
from .rows import SCHEMAS, ColumnMap, RowContext, detect_schema

log = logging.getLogger(__name__)

SHOWN = 5  # lines named in a warning


class _Lines:
    """A count of rows with a property, and the first few of their line numbers."""

    def __init__(self) -> None:
        self.count = 0
        self.first: list[int] = []

    def add(self, line: int) -> None:
        self.count += 1
        if len(self.first) <= SHOWN:
            self.first.append(line)

    def where(self, where: str, unit: str) -> str:
        shown = ", ".join(map(str, self.first[:SHOWN])) + (", ..." if self.count > SHOWN else "")
        return f"{where} ({unit}{'s' if self.count > 1 else ''} {shown})"


class RecordBuilder:
    """Records of one source from its rows; ``warn``: report empty outputs and repeated ids (user data)."""

    def __init__(self, where: str, *, unit: str = "line", schema: str | None = None,
                 column_map: ColumnMap | None = None, container: str = "jsonl", warn: bool = False):
        self.where, self.unit, self.schema, self.column_map = where, unit, schema, column_map
        self.container, self.warn = container, warn
        self.count = 0
        self._ids = IdAssigner()
        self._empty, self._repeated = _Lines(), _Lines()

    @property
    def format(self) -> str:
        """``SCHEMA:CONTAINER`` of what was read (the schema is known once the first row is)."""
        fmt = "columns" if self.column_map is not None else self.schema
        return f"{fmt}:{self.container}"

    def record(self, lineno: int, row: Any) -> Record:
        ctx = RowContext(self.where, lineno, self.unit)
        if not isinstance(row, dict):
            raise ctx.error(f"expected a JSON object, got {type(row).__name__}")
        if self.column_map is not None:
            rec = self.column_map.row(row, ctx)
        else:
            if self.schema is None:
                self.schema = detect_schema(row, ctx)
            rec = SCHEMAS[self.schema](row, ctx)
        self.count += 1
        if not rec.output.strip():
            self._empty.add(lineno)
        if self._ids(rec):
            self._repeated.add(lineno)
        return rec

    def finish(self) -> None:
        """Raise if no record was read; log the warnings (when ``warn``)."""
        if not self.count:
            raise DataError("no records (the pool is empty)", path=self.where)
        if not self.warn:
            return
        if self._empty.count:
            log.warning(f"{self._empty.where(self.where, self.unit)}: the output is empty in {self._empty.count} of "
                        f"{self.count} records (training on them teaches the model to answer nothing)")
        if self._repeated.count:
            log.warning(f"{self._repeated.where(self.where, self.unit)}: {self._repeated.count} record(s) repeat an "
                        "id used earlier; they are kept as distinct records, renamed ID~2, ID~3, ...")
