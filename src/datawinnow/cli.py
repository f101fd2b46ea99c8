"""The ``datawinnow`` command line: a thin layer over :mod:`datawinnow.api`."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any, Sequence


EPILOG = "Data sources: a file (.json/.jsonl/.csv/.parquet, optionally .gz), a save_to_disk folder, bundled:NAME, or a hub id."


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class _Parser(argparse.ArgumentParser):
    """Usage errors end, like every other error, with one ``datawinnow: error: ...`` line (exit code 2).
    Sub-command parsers are made of the same class."""

    def error(self, message: str):  # type: ignore[override]
        from .errors import one_line

        self.print_usage(sys.stderr)
        command = self.prog.partition(" ")[2]
        self.exit(2, f"datawinnow: error: {command + ': ' if command else ''}{one_line(message)}\n")


def _context(args: argparse.Namespace, sources: dict | None = None):
    from .cli_options import runtime_options_from_args
    from .runtime.context import Context

    return Context.from_options(runtime_options_from_args(args), sources=sources)


def _param_help(registry_name: str) -> str:
    return f"method/scorer parameter, repeatable (see 'datawinnow {registry_name}' for each one's parameters and defaults)"


# ---------------------------------------------------------------------------------------------- data
def cmd_data_show(args: argparse.Namespace) -> int:
    from .data import load
    from .summary import describe_dataset

    ds = load(args.src, column_map=args.columns)
    print(describe_dataset(ds, head=args.head))
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from .data.stream import convert
    from .runtime.progress import progress_bar

    bar = None

    def advance(meter) -> None:  # a file's bar counts MiB read (so it has an ETA), other sources' records
        nonlocal bar
        scale, unit = (2**20, "MiB") if meter.unit == "B" else (1, meter.unit)
        if bar is None:
            total = None if meter.total is None else round(meter.total / scale, 1)
            bar = progress_bar(total, "convert", not args.quiet, unit=unit)
        bar.update(round(meter.done / scale, 1) - bar.n)

    try:
        count, written = convert(args.src, args.out, args.to, column_map=args.columns, on_progress=advance)
    finally:
        if bar is not None:
            bar.close()
    print(f"wrote {count} records to {args.out} ({written})")
    return 0


# --------------------------------------------------------------------------------------------- score
def cmd_score(args: argparse.Namespace) -> int:
    """A per-record scorer streams the source chunk by chunk (unless --no-stream); any other scorer, or a run
    on the Ray executor, loads the whole pool. Either way the output has the same rows in the same order."""
    from .api import score, score_stream
    from .data import load
    from .params import parse_params
    from .preflight import check_output_file
    from .registry import SCORERS
    from .scores.stream import streams

    check_output_file(args.out)
    params = parse_params(args.param)
    ctx = _context(args, {"target": load(args.target)} if getattr(args, "target", None) else None)
    t0 = time.perf_counter()
    if not args.no_stream and streams(SCORERS.get(args.scorer), ctx):
        summary = score_stream(args.src, args.scorer, params=params, out=args.out, chunk_size=args.chunk_size,
                               column_map=args.columns, ctx=ctx)
        n, computed, cached = summary.n, summary.computed, summary.cached
        how = f", streamed in {summary.chunks} chunk{'s' * (summary.chunks != 1)} of up to {args.chunk_size} records"
    else:
        table = score(load(args.src, column_map=args.columns), args.scorer, params=params, out=args.out, ctx=ctx)
        n, computed, cached = len(table.ids), table.info.get("computed"), table.info.get("cached")
        how = ""
    counts = f" ({computed} computed, {cached} from cache)" if computed is not None and cached is not None else ""
    print(f"scored {n} records with {args.scorer} in {time.perf_counter() - t0:.1f} s{counts} -> {args.out}{how}")
    return 0


# -------------------------------------------------------------------------------------------- select
def cmd_select(args: argparse.Namespace) -> int:
    from .api import load, select
    from .params import parse_params
    from .preflight import check_output_file
    from .summary import selection_summary

    check_output_file(args.out)
    dataset = load(args.src, column_map=args.columns)
    sources = {k: getattr(args, k) for k in ("target", "existing") if getattr(args, k, None)}
    ctx = _context(args)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        sel = select(dataset, args.method, args.budget, params=parse_params(args.param), out=args.out,
                     format=args.to, sources=sources, ctx=ctx)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    print(selection_summary(sel, dataset, seconds=time.perf_counter() - t0, out=args.out))
    if getattr(args, "plot", None):
        from .select.plot import plot_selection

        used = plot_selection(dataset, sel.selected, args.plot, ctx=ctx, seed=args.seed)
        print(f"  map:      {args.plot} ({used})")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from .registry import METHODS, SCORERS

    print("selection methods (datawinnow select --method NAME):")
    for name, cls in METHODS.items():
        print(f"  {name:<22} {cls.description}")
        if args.verbose and cls.defaults:
            print(f"  {'':<22} params: {json.dumps(cls.defaults)}")
    print("\nscorers (datawinnow score --scorer NAME):")
    for name, cls in SCORERS.items():
        print(f"  {name:<22} {cls.description}")
        if args.verbose and cls.defaults:
            print(f"  {'':<22} params: {json.dumps(cls.defaults)}")
    return 0


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from .cli_options import EXECUTOR_FLAGS, JUDGE_FLAGS, MODEL_FLAGS, add_runtime_options
    from .runtime.describe import package_version

    parser = _Parser(prog="datawinnow", formatter_class=_Formatter,
                     description="Decide which instruction data an LLM should be fine-tuned on.", epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"datawinnow {package_version()}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line (accepted anywhere on the line)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p_data = sub.add_parser("data", help="inspect or convert a data source", formatter_class=_Formatter, epilog=EPILOG)
    data_sub = p_data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p_show = data_sub.add_parser("show", help="counts, fields, lengths and the first records", formatter_class=_Formatter,
                                 epilog=EPILOG)
    p_show.add_argument("src", help="data source")
    p_show.add_argument("--head", type=int, default=3, help="records to print")
    p_show.add_argument("--columns", default=None, help="column map (JSON file or inline JSON) for sources with other column names")
    p_show.set_defaults(func=cmd_data_show)
    p_conv = data_sub.add_parser("convert", help="write a source in another format", formatter_class=_Formatter,
                                 epilog=EPILOG)
    p_conv.add_argument("src", help="data source")
    p_conv.add_argument("--to", default=None,
                        help="SCHEMA (alpaca, input-target, sharegpt, messages), CONTAINER (jsonl, json, csv, parquet) "
                             "or SCHEMA:CONTAINER; default: the input's schema, the container from --out's suffix")
    p_conv.add_argument("--out", required=True, help="output file (.gz compresses)")
    p_conv.add_argument("--columns", default=None, help="column map (JSON file or inline JSON)")
    p_conv.add_argument("--quiet", action="store_true", help="no progress bar (the input is streamed to the output)")
    p_conv.set_defaults(func=cmd_data_convert)

    p_score = sub.add_parser("score", help="score every record with one scorer", formatter_class=_Formatter, epilog=EPILOG)
    p_score.add_argument("src", help="data source")
    p_score.add_argument("--scorer", required=True, help="scorer name (see 'datawinnow methods')")
    p_score.add_argument("--param", action="append", metavar="KEY=VALUE", help=_param_help("methods"))
    p_score.add_argument("--out", required=True, help="scores as JSONL: id, score, and the scorer's parts")
    p_score.add_argument("--target", default=None, help="target-task samples, for task-specific scorers (less, rds)")
    p_score.add_argument("--columns", default=None, help="column map (JSON file or inline JSON) for sources with other column names")
    p_score.add_argument("--chunk-size", type=int, default=4096, metavar="N",
                         help="records per chunk when streaming: a per-record scorer (length, ifd, alpagasus, deita, "
                              "selectit) on the local executor reads and scores the source N records at a time, "
                              "never holding the whole pool; the others (and --executor ray) load the whole pool")
    p_score.add_argument("--no-stream", action="store_true",
                         help="load the whole pool even for a per-record scorer (the same rows, in the same order)")
    add_runtime_options(p_score, include=MODEL_FLAGS + JUDGE_FLAGS + EXECUTOR_FLAGS)
    p_score.set_defaults(func=cmd_score)

    p_sel = sub.add_parser("select", help="select a subset and write it with its manifest", formatter_class=_Formatter,
                           epilog=EPILOG)
    p_sel.add_argument("src", help="data source (the pool)")
    p_sel.add_argument("--method", required=True, help="method name (see 'datawinnow methods')")
    p_sel.add_argument("--budget", default=None,
                       help="a fraction in (0, 1] (0.1, 10%%) or a count (100); default: the method's own, if it has one")
    p_sel.add_argument("--param", action="append", metavar="KEY=VALUE", help=_param_help("methods"))
    p_sel.add_argument("--out", required=True, help="subset file, written in the input's format; its manifest beside it as the hidden file .OUT.manifest.json")
    p_sel.add_argument("--to", default=None, help="write the subset in another format (as in 'data convert')")
    p_sel.add_argument("--columns", default=None, help="column map (JSON file or inline JSON)")
    p_sel.add_argument("--target", default=None, help="target-task samples, for task-specific methods")
    p_sel.add_argument("--existing", default=None, help="data the model was already tuned on, for continual methods")
    p_sel.add_argument("--plot", default=None, metavar="PATH",
                       help="also draw a 2-D map of the pool's sentence embeddings with the selection highlighted "
                            "(UMAP if installed, else PCA; needs matplotlib)")
    add_runtime_options(p_sel, include=MODEL_FLAGS + JUDGE_FLAGS + EXECUTOR_FLAGS)
    p_sel.set_defaults(func=cmd_select)

    p_m = sub.add_parser("methods", help="list selection methods and scorers", formatter_class=_Formatter)
    p_m.add_argument("-v", "--verbose", action="store_true", help="also show each one's parameters and defaults")
    p_m.set_defaults(func=cmd_methods)

    from .commands import evaluate, experiment, report, train  # the commands with a module of their own

    train.add_train_parser(sub, _Formatter)
    train.add_delia_parser(sub, _Formatter)
    evaluate.add_parser(sub, _Formatter)
    experiment.add_parser(sub, _Formatter)
    report.add_parser(sub, _Formatter)
    return parser


def _debug_first(argv: Sequence[str]) -> list[str]:
    """``--debug`` is accepted anywhere on the line (before a ``--``); argparse wants it before the command."""
    argv = list(argv)
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" in argv[:end]:
        argv.remove("--debug")
        argv.insert(0, "--debug")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user's mistake ends with one ``datawinnow: error:`` line and exit code 2
    (``--debug``: the traceback instead); an interruption with 130. The command runs with the cache
    folder of its ``--cache-dir`` (:func:`~datawinnow.cache.use_cache_root`)."""
    from .cache import use_cache_root
    from .errors import user_message
    from .logs import configure

    parser = build_parser()
    args = parser.parse_args(_debug_first(sys.argv[1:] if argv is None else argv))
    configure(quiet=bool(getattr(args, "quiet", False)), debug=args.debug)
    try:
        with use_cache_root(getattr(args, "cache_dir", None)):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("datawinnow: interrupted; finished batches are cached, rerun to resume", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - mapped to one line below, or re-raised
        message = user_message(e)
        if args.debug or message is None:
            raise
        print(f"datawinnow: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
