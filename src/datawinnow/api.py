"""The Python API, mirroring the command line: ``load``, ``score``, ``select``."""

from __future__ import annotations

import os
from typing import Any

from .cache import use_cache_root
from .data import Dataset, load as _load, write
from .errors import ConfigError
from .options import check_options, keyword_names
from .preflight import check_output_file
from .registry import METHODS, SCORERS
from .scores.base import ScoreTable
from .scores.stream import DEFAULT_CHUNK_SIZE, StreamSummary, score_stream as _score_stream
from .runtime.context import Context
from .select.base import Selection
from .select.manifest import build_manifest, manifest_path, write_manifest


def load(source: Any, **kwargs: Any) -> Dataset:
    """Read a source (file, folder, ``bundled:NAME``, hub id) into a :class:`Dataset`."""
    check_options("datawinnow.load()", kwargs, keyword_names(_load)[1:])
    return _load(source, **kwargs)


def _check_options(where: str, given: dict[str, Any], own: tuple[str, ...]) -> None:
    check_options(where, given, own, more=Context.option_names())


def _refuse_overwriting_input(out: Any, dataset: Dataset | str | None) -> None:
    """``out`` must not be the file the pool was read from (a dataset's path, or a source path): writing it would
    destroy the pool."""
    src = dataset.path if isinstance(dataset, Dataset) else dataset
    if not out or not src or not os.path.exists(src):
        return
    same = os.path.realpath(out) == os.path.realpath(src) or (os.path.exists(out) and os.path.samefile(out, src))
    if same:
        raise ConfigError(f"{out}: is the input file {src}; writing there would overwrite the pool "
                          "(give --out another file)")


def _context(ctx: Context | None, kwargs: dict[str, Any]) -> Context:
    if ctx is not None:
        if kwargs:
            raise TypeError("pass either ctx= or context options, not both")
        return ctx
    return Context(**kwargs)


def score(source: Any, scorer: str, *, params: dict[str, Any] | None = None, out: str | None = None,
          ctx: Context | None = None, **ctx_options: Any) -> ScoreTable:
    """Score every record with a registered scorer; optionally write ``out`` as JSONL."""
    _check_options("datawinnow.score()", ctx_options, ("params", "out", "ctx"))
    if out:
        check_output_file(out)  # before the work, not after it
    dataset = load(source)
    _refuse_overwriting_input(out, dataset)
    context = _context(ctx, ctx_options)
    with use_cache_root(context.cache_dir):  # every store (scores, kernels, warm-ups) under cache_dir
        table = SCORERS.get(scorer)(**(params or {})).score(dataset, context)
    if out:
        table.write_jsonl(out)
    return table


def score_stream(source: Any, scorer: str, *, params: dict[str, Any] | None = None, out: str,
                 chunk_size: int = DEFAULT_CHUNK_SIZE, column_map: Any = None, ctx: Context | None = None,
                 **ctx_options: Any) -> StreamSummary:
    """Score ``source`` chunk by chunk with a per-record scorer (``Scorer.per_record``) into ``out`` (JSONL: the
    rows of :func:`score`, in the same order), holding one chunk of records at a time; returns a
    :class:`StreamSummary`.

    ``out`` appears only when complete; the chunks an interrupted run finished are in the score cache.
    A scorer that is not per record is a ConfigError (use :func:`score`).
    """
    _check_options("datawinnow.score_stream()", ctx_options, ("params", "out", "chunk_size", "column_map", "ctx"))
    check_output_file(out)
    if isinstance(source, (str, os.PathLike)):
        _refuse_overwriting_input(out, os.fspath(source))
    instance = SCORERS.get(scorer)(**(params or {}))
    if not instance.per_record:
        raise ConfigError(f"scorer '{scorer}' depends on the whole pool and cannot be streamed (use score())")
    if chunk_size < 1:
        raise ConfigError(f"chunk size must be >= 1, got {chunk_size}")
    context = _context(ctx, ctx_options)
    with use_cache_root(context.cache_dir):
        return _score_stream(source, instance, context, out, chunk_size=chunk_size, column_map=column_map)


def select(source: Any, method: str, budget: float | int | str | None = None, *,
           params: dict[str, Any] | None = None, out: str | None = None, format: str | None = None,
           sources: dict[str, Any] | None = None, ctx: Context | None = None, **ctx_options: Any) -> Selection:
    """Select a subset with a registered method; optionally write it (in the input's format) and its manifest.

    ``sources`` holds extra data sources a method needs (``target``, ``existing``). Unknown keyword
    options are an error; so is an ``out`` that is the input file.
    """
    _check_options("datawinnow.select()", ctx_options, ("budget", "params", "out", "format", "sources", "ctx"))
    if out:
        check_output_file(out)  # before the work, not after it
    dataset = load(source)
    _refuse_overwriting_input(out, dataset)
    context = _context(ctx, ctx_options)
    for key, src in (sources or {}).items():
        if src is not None:
            context.sources[key] = load(src)
    with use_cache_root(context.cache_dir):  # every store (scores, kernels, warm-ups) under cache_dir
        selection = METHODS.get(method)(**(params or {})).run(dataset, budget, context)
    if out:
        written = write(dataset.subset(selection.selected), out, format)
        write_manifest(manifest_path(out), build_manifest(selection, dataset, written_format=written))
    return selection
