"""Plain-text summaries for the terminal: data sets, selections, score histograms."""

from __future__ import annotations

import json
import textwrap
from typing import Sequence

import numpy as np

from .data.record import Dataset
from .select.base import Selection
from .select.manifest import manifest_path


def histogram(values: Sequence[float], *, bins: int = 10, width: int = 40, marker: float | None = None) -> str:
    """A text histogram; ``marker`` flags the bin holding that value (e.g. the selection threshold)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(arr) == 0:
        return "  (no finite scores)"
    lo, hi = float(arr.min()), float(arr.max())
    if hi == lo:
        hi = lo + 1e-9
    counts, edges = np.histogram(arr, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    lines = []
    for k, c in enumerate(counts):
        bar = "#" * int(round(width * c / top))
        flag = "  <- cut" if marker is not None and edges[k] <= marker <= edges[k + 1] else ""
        lines.append(f"  [{edges[k]:9.4f}, {edges[k + 1]:9.4f}) {int(c):6d} {bar}{flag}")
    return "\n".join(lines)


def describe_dataset(ds: Dataset, head: int = 3) -> str:
    out = [f"{ds.path}: {len(ds)} records, format {ds.format}"]
    multi = sum(1 for r in ds if r.messages)
    with_input = sum(1 for r in ds if r.input)
    tasks = sorted({r.task for r in ds if r.task})
    out.append(f"  with input: {with_input}; multi-turn: {multi}; tasks: {len(tasks)}")
    for name, vals in (("instruction", [len(r.prompt) for r in ds]), ("output", [len(r.output) for r in ds])):
        a = np.asarray(vals)
        out.append(f"  {name} chars: mean {a.mean():.0f}, median {np.median(a):.0f}, max {a.max()}")
    for r in ds[:head]:
        out.append("")
        out.append(json.dumps(r.to_dict(), ensure_ascii=False)[:600])
    return "\n".join(out)


def selection_summary(sel: Selection, ds: Dataset, *, seconds: float, out: str | None) -> str:
    lines = [f"{sel.method}: selected {len(sel.selected)} of {len(ds)} records (budget {sel.budget}) in {seconds:.1f} s"]
    if sel.params:
        lines.append(f"  params: {json.dumps(sel.params)}")
    if sel.model:
        lines.append(f"  model: {sel.model}")
    dropped = len(sel.reasons)
    if dropped:
        reasons: dict[str, int] = {}
        for r in sel.reasons.values():
            reasons[r] = reasons.get(r, 0) + 1
        lines.append("  not eligible: " + "; ".join(f"{n} {r}" for r, n in reasons.items()))
    scoring = sel.info.get("scoring") or {}
    if scoring.get("computed"):
        lines.append(f"  scoring: {scoring['computed']} computed ({scoring.get('samples_per_s')} samples/s), "
                     f"{scoring.get('cached', 0)} from cache")
    elif scoring:
        lines.append(f"  scoring: all {scoring.get('cached', 0)} from cache")
    scored = [v for v in sel.scores.values() if v is not None]
    if scored:
        kept = [sel.scores[i] for i in sel.selected if sel.scores.get(i) is not None]
        cut = min(kept) if kept else None
        lines.append(f"  score histogram (all {len(scored)} scored records; the kept ones are >= {cut if cut is None else round(cut, 4)}):")
        lines.append(histogram(scored, marker=cut))
    if out:
        lines.append(f"  subset:   {out}")
        lines.append(f"  manifest: {manifest_path(out)}")
    return "\n".join(lines)
