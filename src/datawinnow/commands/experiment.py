"""``datawinnow run-experiment``: the command line of the experiment runner (registered by :mod:`datawinnow.cli`)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from ..cli_options import add_runtime_options
from ..experiments.config import EXECUTORS

EPILOG = """The config (YAML) names the pool, the model, the mode (finetune: a LoRA adapter per cell; icl: the
subset as in-context examples), the methods, budgets and seeds, and the evaluation suites; see
docs/experiments.md and examples/*.yaml. Every grid also runs random at every budget (>= 3 seeds), the
zero-shot base model and, when it fits max_train_tokens, the full pool.

Every stage of every cell (selection, adapter, evaluation) is cached under the datawinnow cache by a
content key: a killed run continues where it stopped, and another grid reuses whatever it shares.
RUN_DIR/results.json (every cell's cost and per-item scores) is rewritten after each finished cell.

examples:
  datawinnow run-experiment examples/chasing_random.yaml --out runs/cr --dry-run
  datawinnow run-experiment examples/chasing_random.yaml --out runs/cr-tiny --tiny
  datawinnow run-experiment examples/chasing_random.yaml --out runs/cr
  datawinnow report runs/cr"""


def add_parser(sub, formatter) -> argparse.ArgumentParser:
    p = sub.add_parser("run-experiment", help="run a methods x budgets x seeds grid against random, zero-shot and full",
                       formatter_class=formatter, epilog=EPILOG,
                       description="Does a selection method beat random on this pool, at this budget, for its cost? "
                                   "Runs the config's grid (cached, resumable) and writes RUN_DIR/results.json.")
    p.add_argument("config", help="experiment config (YAML)")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder: results.json, cache_stats.json")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan (cells, what is cached) with an estimated cost; no model work")
    p.add_argument("--tiny", action="store_true", help="apply the config's tiny: overrides (a few-minute CI size)")
    p.add_argument("--executor", default=None, choices=list(EXECUTORS),
                   help="where cells run; overrides the config's executor: (itself local when not given)")
    add_runtime_options(p, include=("cache_dir", "quiet"), helps={"quiet": "no progress bar"}, grouped=False)
    p.set_defaults(func=cmd_run_experiment)
    return p


def cmd_run_experiment(args: argparse.Namespace) -> int:
    from ..experiments.runner import RESULTS_FILE, run_experiment

    command = "datawinnow " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.perf_counter()
    exp, out = run_experiment(args.config, args.out, tiny=args.tiny, dry_run=args.dry_run, quiet=args.quiet,
                              executor=args.executor, command=command)
    if args.dry_run:
        print(out)
        return 0
    stats = exp.stats.as_dict()
    cached = ", ".join(f"{k} {v['hits']} cached/{v['hits'] + v['misses']}" for k, v in stats.items()
                       if v["hits"] + v["misses"])
    print(f"ran {len(out['cells'])} cells in {time.perf_counter() - t0:.1f} s ({cached}) -> "
          f"{os.path.join(args.out, RESULTS_FILE)}")
    return 0
