"""Experiments: a grid of selection methods x budgets x seeds on one pool, each cell selected, trained
(LoRA) or prompted in context, and evaluated, with random, zero-shot and full-pool references, cached
and resumable, with per-cell cost accounting. See docs/experiments.md.

- :mod:`.config`: the YAML config, validated before any work; :mod:`.plan`: the grid;
- :mod:`.cells`: the cached stages and per-item scores; :mod:`.cost`: token/FLOP accounting;
- :mod:`.runner`: running a grid, resuming it, and the dry-run plan.
"""

from .config import ExperimentConfig, read_config

__all__ = ["Experiment", "ExperimentConfig", "read_config", "run_experiment"]


def __getattr__(name: str):  # the runner imports torch: only when asked for
    if name in ("Experiment", "run_experiment"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
