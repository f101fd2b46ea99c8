"""``datawinnow report RUN_DIR``: the command line of the report writer (registered by :mod:`datawinnow.cli`)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from ..cli_options import add_runtime_options

EPILOG = """Recomputes every statistic from RUN_DIR/results.json (written by 'datawinnow run-experiment') and
writes report.md (figures in figures/ beside it), a self-contained report.html (figures embedded, no
network) and stats.json: per cell the mean and spread over seeds, per method and budget the difference
to random with a bootstrap confidence interval over evaluation items and seeds, whether it beats the
best random seed, a verdict per method, the selection cost next to the training cost, and a 2-D map
of each method's subset over the pool. See docs/experiments.md (Statistics, Reports).

examples:
  datawinnow report runs/cr
  datawinnow report runs/cr --out docs/results/cr --n-boot 5000"""


def add_parser(sub, formatter) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="statistics against random and a report (Markdown + HTML) for an experiment run",
                       formatter_class=formatter, epilog=EPILOG,
                       description="Does each method beat random, at which budget, for what cost? Writes "
                                   "report.md, report.html and stats.json from RUN_DIR/results.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder holding results.json (or the results.json file)")
    p.add_argument("--out", default=None, metavar="DIR", help="where to write the report (default: RUN_DIR)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of the map's projection")
    p.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    p.add_argument("--embedder", default=None,
                   help="sentence embedder for the pool map (default: the run's embedder, else the embedded MiniLM)")
    p.add_argument("--reducer", default="auto", choices=["auto", "umap", "pca", "tsne"],
                   help="2-D projection of the map (auto: UMAP if installed, else PCA)")
    p.add_argument("--device", default="auto", help="device of the embedder: auto, cpu, cuda or cuda:N")
    p.add_argument("--no-map", action="store_true", help="leave out the embedding map (no embedder is loaded)")
    add_runtime_options(p, include=("cache_dir", "quiet"), helps={"quiet": "no progress bar"}, grouped=False)
    p.set_defaults(func=cmd_report)
    return p


def cmd_report(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..experiments.report import build_report

    if args.n_boot < 100:
        raise ConfigError(f"--n-boot must be at least 100, got {args.n_boot}")
    if not 0.5 < args.level < 1:
        raise ConfigError(f"--level must be in (0.5, 1), got {args.level}")
    command = "datawinnow " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.perf_counter()
    rep = build_report(args.run_dir, args.out, n_boot=args.n_boot, seed=args.seed, level=args.level,
                       embedder=args.embedder, reducer=args.reducer, device=args.device, maps=not args.no_map,
                       progress=not args.quiet, command=command)
    for line in rep.summary:
        print(line)
    for note in rep.notes:
        print(f"note: {note}")
    print(f"report in {time.perf_counter() - t0:.1f} s -> {rep.markdown}, {rep.html}")
    return 0
