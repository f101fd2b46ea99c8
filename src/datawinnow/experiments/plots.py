"""The report's figures, drawn with matplotlib (Agg) from the statistics dict, each returned as PNG bytes.

- :func:`score_vs_budget`: one suite's mean score per method against the budget, with the bootstrap
  CI band of each method, random's min-max band over seeds, and zero-shot / full-pool lines;
- :func:`difference_vs_budget`: the aggregate over suites (standardised difference to random) with
  CI bands, random at 0 with the spread of its seeds;
- :func:`cost_vs_gain`: selection FLOPs against the aggregate gain over random, with the cost of
  training on the full pool marked;
- :func:`selection_maps`: small multiples of a 2-D map of the pool (sentence embeddings), one
  panel per method and budget, the subset highlighted.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from ..errors import MissingDependencyError
from .stats import fmt_budget

RANDOM_COLOUR = "#7f7f7f"
DPI = 100


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "drawing the report's figures") from None
    return plt


def _png(fig) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buf.getvalue()


def colours(labels: Sequence[str]) -> dict[str, str]:
    """A stable colour per method label (tab10, random grey)."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
    out = {"random": RANDOM_COLOUR}
    for k, label in enumerate(x for x in labels if x != "random"):
        out[label] = palette[k % len(palette)]
    return out


def _budget_axis(ax, budgets: Sequence[float]) -> None:
    bs = sorted(b for b in budgets if b > 0)
    if len(bs) > 1 and bs[-1] / bs[0] >= 4:
        ax.set_xscale("log")
    ax.set_xticks(bs)
    ax.set_xticklabels([fmt_budget(b) for b in bs])
    ax.minorticks_off()
    ax.set_xlabel("budget (fraction of the pool)")


def score_vs_budget(stats: dict[str, Any], suite: str) -> bytes:
    plt = _plt()
    rows = [r for r in stats["cells"] if r["suite"] == suite]
    spec = stats["suites"][suite]
    col = colours(stats["methods_order"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    rand = sorted((r for r in rows if r["kind"] == "random"), key=lambda r: r["budget"])
    if rand:
        x = [r["budget"] for r in rand]
        ax.fill_between(x, [r["min"] for r in rand], [r["max"] for r in rand], color=RANDOM_COLOUR, alpha=0.25,
                        lw=0, label="random (min-max over seeds)")
        ax.plot(x, [r["mean"] for r in rand], color=RANDOM_COLOUR, marker="o", lw=1.5, label="random mean")
    for label in stats["methods_order"]:
        mine = sorted((r for r in rows if r["method"] == label and r["kind"] == "method"), key=lambda r: r["budget"])
        if not mine:
            continue
        x = [r["budget"] for r in mine]
        ax.fill_between(x, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine], color=col[label], alpha=0.15,
                        lw=0)
        ax.plot(x, [r["mean"] for r in mine], color=col[label], marker="o", lw=1.8, label=label)
    for kind, style in (("zero_shot", ":"), ("full", "--")):
        ref = [r for r in rows if r["kind"] == kind]
        if ref:
            ax.axhline(ref[0]["mean"], color="black", ls=style, lw=1, label=f"{kind.replace('_', '-')} ({ref[0]['mean']:.3g})")
    _budget_axis(ax, stats["budgets"])
    ax.set_ylabel(f"{spec['metric']} (mean over items)")
    ax.set_title(f"{suite}: score against budget (bands: {int(stats['settings']['level'] * 100)}% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return _png(fig)


def difference_vs_budget(stats: dict[str, Any]) -> bytes:
    plt = _plt()
    col = colours(stats["methods_order"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    bands = sorted(stats.get("random_bands", []), key=lambda r: r["budget"])
    if bands:
        x = [r["budget"] for r in bands]
        ax.fill_between(x, [r["low"] for r in bands], [r["high"] for r in bands], color=RANDOM_COLOUR, alpha=0.25, lw=0,
                        label="random seeds (spread around their mean)")
    ax.axhline(0.0, color=RANDOM_COLOUR, lw=1.5, label="random mean")
    for label in stats["methods_order"]:
        mine = sorted((r for r in stats["aggregate"] if r["method"] == label), key=lambda r: r["budget"])
        if not mine:
            continue
        x = [r["budget"] for r in mine]
        ax.fill_between(x, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine], color=col[label], alpha=0.15,
                        lw=0)
        ax.plot(x, [r["diff"] for r in mine], color=col[label], marker="o", lw=1.8, label=label)
    _budget_axis(ax, stats["budgets"])
    ax.set_ylabel("difference to random (item-score SDs)")
    ax.set_title(f"all suites: standardised difference to random ({int(stats['settings']['level'] * 100)}% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return _png(fig)


def cost_vs_gain(stats: dict[str, Any]) -> bytes:
    plt = _plt()
    col = colours(stats["methods_order"])
    costs = {(r["method"], r["budget"]): r for r in stats["costs"]["groups"]}
    pts = [(a, costs.get((a["method"], a["budget"]))) for a in stats["aggregate"]]
    pts = [(a, c) for a, c in pts if c is not None]
    flops = [c["selection_flops"] for _, c in pts if c["selection_flops"] > 0]
    full = stats["costs"]["full_training"]["flops"]
    floor = min(flops + ([full] if full > 0 else [])) / 10 if flops or full > 0 else None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    seen = set()
    for a, c in pts:
        x = c["selection_flops"] if c["selection_flops"] > 0 or floor is None else floor
        err = [[a["diff"] - a["ci_low"]], [a["ci_high"] - a["diff"]]]
        ax.errorbar([x], [a["diff"]], yerr=err, fmt="o", color=col[a["method"]], capsize=3,
                    label=a["method"] if a["method"] not in seen else None)
        ax.annotate(fmt_budget(a["budget"]), (x, a["diff"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        seen.add(a["method"])
    ax.axhline(0.0, color=RANDOM_COLOUR, lw=1.2, label="random")
    if full > 0:
        ax.axvline(full, color="black", ls="--", lw=1, label="training on the full pool")
    if floor is not None:
        ax.set_xscale("log")
        if not flops or min(c["selection_flops"] for _, c in pts) == 0:
            ax.axvline(floor, color="#cccccc", lw=0.8)
            ax.annotate("no model cost", (floor, ax.get_ylim()[0]), textcoords="offset points", xytext=(3, 3),
                        fontsize=7, color="#666666")
    ax.set_xlabel("selection cost (FLOPs, mean over seeds)")
    ax.set_ylabel("gain over random (standardised)")
    ax.set_title("selection cost against gain")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best", frameon=False)
    fig.tight_layout()
    return _png(fig)


def selection_maps(xy: np.ndarray, ids: Sequence[str], panels: Sequence[tuple[str, float, list[str]]],
                   reducer: str) -> bytes:
    """``panels``: (method label, budget, selected ids); rows are methods, columns budgets."""
    plt = _plt()
    labels = list(dict.fromkeys(p[0] for p in panels))
    budgets = sorted({p[1] for p in panels})
    col = colours(labels)
    index = {rid: k for k, rid in enumerate(ids)}
    fig, axes = plt.subplots(len(labels), len(budgets), figsize=(2.3 * len(budgets) + 0.4, 2.2 * len(labels) + 0.4),
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for label, budget, selected in panels:
        ax = axes[labels.index(label), budgets.index(budget)]
        ax.axis("on")
        mask = np.zeros(len(ids), dtype=bool)
        mask[[index[s] for s in selected if s in index]] = True
        ax.scatter(xy[~mask, 0], xy[~mask, 1], s=3, c="#c8c8c8", lw=0)
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, c=col[label], lw=0)
        ax.set_title(f"{label} @ {fmt_budget(budget)} ({int(mask.sum())})", fontsize=8)
    fig.suptitle(f"selected subsets over the pool ({reducer.upper()} of sentence embeddings)", fontsize=9)
    fig.tight_layout()
    return _png(fig)
