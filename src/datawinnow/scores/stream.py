"""Streamed scoring: a per-record scorer (:attr:`Scorer.per_record`) scores a source chunk by chunk.

:func:`score_stream` reads the source with :func:`~datawinnow.data.stream.iter_chunks` (the ids, validation,
errors and warnings of ``load``), scores each chunk with the scorer and appends the chunk's rows to a
temporary file beside ``out``, renamed into place when the whole source is scored. So only one chunk's
records and rows exist at a time; the output has the rows the whole-pool path writes
(:meth:`ScoreTable.write_jsonl`), in the same order: byte for byte when the scores come from the cache or
from the same computations (a model scorer batches a chunk's records with each other, so with padded
batches a fresh fp32 score may differ from the whole-pool one in its last bits). An interrupted or failed
run leaves ``out`` as it was (no partial file), and the chunks it finished are in the score cache, where a
rerun finds them. What the stream keeps per record is the id (``load``'s repeat rule), and a model
scorer's score store holds its cached rows (small numbers per record) in memory for the whole run
(:func:`~datawinnow.cache.keep_stores_loaded`): each chunk finds them loaded, so the store is read once
and written O(n) rows in all (geometric compaction), not once per chunk.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import atomic_open, keep_stores_loaded
from ..data.stream import RecordStream
from ..runtime.context import Context
from ..runtime.progress import progress_bar
from .base import Scorer

DEFAULT_CHUNK_SIZE = 4096


@dataclass(frozen=True)
class StreamSummary:
    """What a streamed run did: ``n`` records scored in ``chunks`` chunks, ``computed`` and ``cached`` of them
    (None when the scorer keeps no cache, e.g. ``length``), in ``seconds``."""

    n: int
    chunks: int
    computed: int | None
    cached: int | None
    seconds: float


def streams(scorer: Scorer | type[Scorer], ctx: Context) -> bool:
    """Whether ``scorer`` (a scorer or its class) is scored chunk by chunk in this context: it is per record,
    and batches run in this process (the Ray executor spreads one pool's batches over actors that each load
    the model, so it is given the whole pool rather than one actor pool per chunk)."""
    return bool(scorer.per_record) and ctx.options.executor == "local"


def score_stream(source: Any, scorer: Scorer, ctx: Context, out: str | os.PathLike, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, column_map: Any = None) -> StreamSummary:
    """Score ``source`` chunk by chunk with a per-record ``scorer`` and write the rows to ``out`` as JSONL.

    Raises ValueError for a scorer that is not per record (its scores would depend on how the pool is
    cut). A progress bar follows the source (MiB of a file read, else records) unless ``ctx.progress``
    is off; the scorer's own per-batch bars are silenced meanwhile.
    """
    if not scorer.per_record:
        raise ValueError(f"scorer '{scorer.name}' is not per record; score the whole pool instead")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    t0 = time.perf_counter()
    stream = RecordStream(source, column_map=column_map, chunk_size=chunk_size)
    path = Path(out)
    n = chunks = 0
    computed: int | None = None
    cached: int | None = None
    bar = None
    show, ctx.progress = ctx.progress, False
    try:
        with atomic_open(path, "w", encoding="utf-8", newline="\n") as fh, keep_stores_loaded():
            for chunk in stream.chunks():
                table = scorer.score(chunk, ctx)
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table.rows()))
                n, chunks = n + len(chunk), chunks + 1
                if "computed" in table.info and "cached" in table.info:
                    computed = (computed or 0) + int(table.info["computed"])
                    cached = (cached or 0) + int(table.info["cached"])
                bar = _advance(bar, stream.meter, scorer.name, show)
    finally:
        ctx.progress = show
        if bar is not None:
            bar.close()
    return StreamSummary(n, chunks, computed, cached, round(time.perf_counter() - t0, 3))


def _advance(bar, meter, desc: str, enabled: bool):
    """Move (or open) the bar to the meter's position: MiB for a file (with an ETA), else records."""
    scale, unit = (2**20, "MiB") if meter.unit == "B" else (1, meter.unit)
    if bar is None:
        total = None if meter.total is None else round(meter.total / scale, 1)
        bar = progress_bar(total, desc, enabled, unit=unit)
    bar.update(round(meter.done / scale, 1) - bar.n)
    return bar
