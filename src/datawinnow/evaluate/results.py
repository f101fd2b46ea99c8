"""Evaluation results: the JSON file (summaries plus per-item records for later statistics) and the
terminal summary table."""

from __future__ import annotations

import math
from typing import Any

from ..cache import atomic_write_json

# the headline metrics of each suite, in table order (others stay in the JSON)
HEADLINES: dict[str, list[str]] = {
    "generation": ["rouge1", "rouge2", "rougeL", "similarity"],
    "rubric": ["mean", "instruction_following", "accuracy", "relevance", "completeness", "depth", "clarity",
               "creativity", "helpfulness", "n_failed"],
    "winrate": ["win_rate", "standard_error", "lc_win_rate", "judge_prefers_first", "n_failed"],
    "ifeval": ["prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"],
    "arc_easy": ["acc", "acc_norm"],
    "arc_challenge": ["acc", "acc_norm"],
    "mmlu": ["acc", "acc_norm"],
    "hellaswag": ["acc", "acc_norm"],
    "winogrande": ["acc"],
}


def write_results(path: str, results: dict[str, Any]) -> None:
    atomic_write_json(path, results)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


def summary_table(results: dict[str, Any]) -> str:
    """A plain-text table: suite, metric, value, n; then the contamination line."""
    lines = []
    rows = [("suite", "metric", "value", "n")]
    for suite, res in results.get("suites", {}).items():
        summary = res.get("summary", {})
        keys = [k for k in HEADLINES.get(suite, []) if k in summary]
        keys += [k for k, v in summary.items() if suite not in HEADLINES and isinstance(v, (int, float))
                 and k not in ("n",)]
        n = summary.get("n", len(res.get("items", [])))
        for k in keys:
            rows.append((suite, k, _fmt(summary[k]), _fmt(n)))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    for i, r in enumerate(rows):
        lines.append("  ".join(r[c].ljust(widths[c]) if c < 2 else r[c].rjust(widths[c]) for c in range(4)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    cont = results.get("contamination", {})
    if cont.get("checked"):
        excl = "excluded" if not results.get("allow_contaminated") else "kept (--allow-contaminated) and flagged"
        lines.append(f"\ncontamination: {cont['n_contaminated']} of {cont['n_eval']} evaluation items overlap the "
                     f"{cont['n_train']} training/ICL samples ({cont['by_kind']['ngram']} by {cont['params']['ngram']}-gram, "
                     f"{cont['by_kind']['near']} near-duplicate); {excl}")
    elif cont:
        lines.append(f"\ncontamination: not checked ({cont.get('reason')})")
    return "\n".join(lines)
