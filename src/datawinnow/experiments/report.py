"""``datawinnow report RUN_DIR``: report.md and a self-contained report.html from ``results.json``.

Everything is recomputed from ``RUN_DIR/results.json`` with :mod:`.stats` (also written as
``stats.json``). The HTML embeds its figures as base64 PNG and its style inline: no network, no
external files. Every number in its tables carries machine-readable attributes::

    <td data-table="comparisons" data-cell="ifd|0.1|arc_easy" data-metric="diff" data-value="0.0123...">

``data-table`` names the list in the statistics dict (``cells``, ``comparisons``, ``aggregate``,
``methods``, ``costs``), ``data-cell`` is ``method|budget|suite`` (budget as Python writes the
float, empty parts where a row has none), ``data-metric`` the field and ``data-value`` its exact value.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..cache import atomic_write_bytes, atomic_write_json, atomic_write_text
from ..errors import DatawinnowError
from . import plots
from .stats import compute_stats, fmt_budget, load_results

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2rem auto;max-width:1180px;color:#222;
line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.86rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.better{background:#e3f4e1}td.worse{background:#f9e0e0}td.same{background:#f3f3f3}
code{background:#f4f4f4;padding:.05rem .25rem;border-radius:3px;word-break:break-all}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}.facts th{width:11rem}ul.verdicts li{margin:.2rem 0}
.note{color:#555;font-size:.9rem}
"""
VERDICT_CLASS = {"better than random": "better", "worse than random": "worse", "not distinguishable": "same"}


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    out_dir: Path
    markdown: Path
    html: Path
    stats: Path
    figures: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)  # the verdict line of each method
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- tables
@dataclass
class Num:
    """A number in a table: its value, how it is shown, and where it lives in the statistics dict."""

    value: float | None
    fmt: Callable[[float], str]
    table: str
    cell: str
    metric: str

    def text(self) -> str:
        return "-" if self.value is None else self.fmt(self.value)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]  # str or Num; a str "better than random" etc. is coloured in HTML
    caption: str = ""


def _score(v: float) -> str:
    return f"{v:.4g}"


def _signed(v: float) -> str:
    return f"{v:+.4g}"


def _flops(v: float) -> str:
    return f"{v:.3g}"


def _secs(v: float) -> str:
    return f"{v:.1f}"


def _ratio(v: float) -> str:
    return f"{v:.3g}"


def cell_key(method: str, budget: float | None = None, suite: str | None = None) -> str:
    return f"{method}|{'' if budget is None else repr(float(budget))}|{suite or ''}"


def _yes(v: bool | None) -> str:
    return "-" if v is None else ("yes" if v else "no")


def verdict_table(stats: dict[str, Any]) -> Table:
    budgets = stats["budgets"]
    agg = {(a["method"], a["budget"]): a for a in stats["aggregate"]}
    rows = []
    for m in stats["methods"]:
        key = cell_key(m["method"])
        row: list[Any] = [m["method"], m["verdict"], Num(m["diff"], _signed, "methods", key, "diff"),
                          Num(m["ci_low"], _signed, "methods", key, "ci_low"),
                          Num(m["ci_high"], _signed, "methods", key, "ci_high")]
        row.append(m.get("family_verdict", m["verdict"]))
        for b in budgets:
            a = agg.get((m["method"], b))
            row.append("-" if a is None else a["verdict"])
        rows.append(row)
    level = int(round(stats["settings"]["level"] * 100))
    n = len(stats["methods"])
    return Table("Verdict per method", ["method", "verdict (all budgets, all suites)", "difference",
                                        f"{level}% CI low", f"{level}% CI high", f"verdict, {n} methods held together"]
                 + [f"at {fmt_budget(b)}" for b in budgets], rows,
                 "Difference: method minus random, in item-score standard deviations, averaged over suites and "
                 "budgets; better/worse only when the whole confidence interval is above/below 0. Held together: "
                 f"each method's interval at the Bonferroni level for {n} methods, so that all of them hold at "
                 f"{level}% together (with many methods, one {level}% interval clears 0 by chance alone now and then).")


def aggregate_table(stats: dict[str, Any]) -> Table:
    rows = []
    for a in stats["aggregate"]:
        key = cell_key(a["method"], a["budget"])
        per_suite = "; ".join(f"{s}: {v}" for s, v in a["suite_verdicts"].items())
        rows.append([a["method"], fmt_budget(a["budget"]), Num(a["diff"], _signed, "aggregate", key, "diff"),
                     Num(a["ci_low"], _signed, "aggregate", key, "ci_low"),
                     Num(a["ci_high"], _signed, "aggregate", key, "ci_high"), a["verdict"],
                     _yes(a["beats_best_random"]), per_suite])
    level = int(round(stats["settings"]["level"] * 100))
    return Table("Per method and budget, all suites", ["method", "budget", "difference", f"{level}% CI low",
                                                       f"{level}% CI high", "verdict", "beats best random seed",
                                                       "per suite"], rows,
                 "Standardised difference to random (mean over suites of difference / suite scale).")


def suite_table(stats: dict[str, Any], suite: str) -> Table:
    spec = stats["suites"][suite]
    comps = {(c["method"], c["budget"]): c for c in stats["comparisons"] if c["suite"] == suite}
    rows = []
    for r in stats["cells"]:
        if r["suite"] != suite:
            continue
        key = cell_key(r["method"], r["budget"], suite)
        c = comps.get((r["method"], r["budget"]))
        row: list[Any] = [r["method"], fmt_budget(r["budget"]), str(r["n_seeds"])]
        row += [Num(r[m], _score, "cells", key, m) for m in ("mean", "std", "min", "max", "ci_low", "ci_high")]
        if c is None:
            row += ["", "", "", "", ""]
        else:
            row += [Num(c[m], _signed, "comparisons", key, m) for m in ("diff", "ci_low", "ci_high")]
            row += [c["verdict"], _yes(c["beats_best_random"])]
        rows.append(row)
    level = int(round(stats["settings"]["level"] * 100))
    return Table(f"{suite}: {spec['metric']} ({spec['n_items']} items)",
                 ["method", "budget", "seeds", "mean", "std", "min", "max", f"{level}% CI low", f"{level}% CI high",
                  "diff. to random", "diff. CI low", "diff. CI high", "verdict", "beats best random seed"], rows,
                 f"Mean over seeds of the mean {spec['metric']} over the items every cell scored"
                 + ("" if spec["higher_is_better"] else "; lower is better, differences are flipped so + is better")
                 + (f"; {spec['items_dropped']} item(s) left out" if spec["items_dropped"] else "") + ".")


def cost_table(stats: dict[str, Any]) -> Table:
    rows = []
    for r in stats["costs"]["groups"]:
        key = cell_key(r["method"], r["budget"])
        rows.append([r["method"], fmt_budget(r["budget"]),
                     Num(r["selection_seconds"], _secs, "costs", key, "selection_seconds"),
                     Num(r["selection_flops"], _flops, "costs", key, "selection_flops"),
                     Num(r["training_seconds"], _secs, "costs", key, "training_seconds"),
                     Num(r["training_flops"], _flops, "costs", key, "training_flops"),
                     Num(r["selection_over_training"], _ratio, "costs", key, "selection_over_training"),
                     Num(r["selection_over_full_training"], _ratio, "costs", key, "selection_over_full_training")])
    full = stats["costs"]["full_training"]
    return Table("Cost per cell (mean over seeds)",
                 ["method", "budget", "selection s", "selection FLOPs", "training s", "training FLOPs",
                  "selection / training", "selection / full-pool training"], rows,
                 f"Training on the full pool: {full['seconds']:.1f} s, {full['flops']:.3g} FLOPs ({full['source']}). "
                 "FLOPs: 2 x parameters x tokens forward, 4 x backward.")


# ---------------------------------------------------------------------------------------------- rendering
def _html_table(t: Table) -> str:
    out = [f"<h3>{html.escape(t.title)}</h3>", "<table>", "<thead><tr>"]
    out += [f"<th>{html.escape(h)}</th>" for h in t.header]
    out.append("</tr></thead><tbody>")
    for row in t.rows:
        out.append("<tr>")
        for v in row:
            if isinstance(v, Num):
                attrs = (f' data-table="{html.escape(v.table)}" data-cell="{html.escape(v.cell)}"'
                         f' data-metric="{html.escape(v.metric)}"')
                if v.value is not None:
                    attrs += f' data-value="{float(v.value)!r}"'
                out.append(f'<td class="num"{attrs}>{html.escape(v.text())}</td>')
            elif v in VERDICT_CLASS:
                out.append(f'<td class="{VERDICT_CLASS[v]}">{html.escape(v)}</td>')
            else:
                out.append(f"<td>{html.escape(str(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    if t.caption:
        out.append(f'<p class="note">{html.escape(t.caption)}</p>')
    return "\n".join(out)


def _md_table(t: Table) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [f"### {t.title}", "", "| " + " | ".join(esc(h) for h in t.header) + " |",
             "|" + "|".join("---" for _ in t.header) + "|"]
    for row in t.rows:
        lines.append("| " + " | ".join(esc(v.text() if isinstance(v, Num) else str(v)) for v in row) + " |")
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return "\n".join(lines)


def facts(results: dict[str, Any], stats: dict[str, Any], command: str | None) -> list[tuple[str, str]]:
    from ..runtime.describe import package_version

    m = results.get("machine") or {}
    model = results.get("model") or {}
    pool = results.get("pool") or {}
    machine = (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, device {m.get('device', '?')}, dtype "
               f"{m.get('dtype', '?')}" + (f", GPU {m['gpu']}" if m.get("gpu") else ""))
    n_params = model.get("n_params")
    suites = ", ".join(f"{s} ({v['metric']}, {v['n_items']} items)" for s, v in stats["suites"].items())
    st = stats["settings"]
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return [
        ("run date", str(results.get("created", "?"))),
        ("report date", now),
        ("machine", machine),
        ("command", str(results.get("command", "?"))),
        ("report command", command or "datawinnow report"),
        ("package version", f"datawinnow {results.get('datawinnow_version', '?')} (run), {package_version()} (report)"),
        ("model", f"{model.get('name', '?')} ({model.get('identity', '?')}"
                  + (f", {n_params / 1e6:.1f}M parameters" if isinstance(n_params, (int, float)) else "") + ")"),
        ("pool", f"{pool.get('source', '?')} ({pool.get('n', '?')} records, fingerprint {pool.get('fingerprint', '?')})"),
        ("mode", str(results.get("mode", "?"))),
        ("cells", _cells_line(results)),
        ("suites", suites),
        ("statistics", f"{st['n_boot']} bootstrap replicates (items and seeds), seed {st['seed']}, "
                       f"{int(round(st['level'] * 100))}% intervals"),
    ]


def _cells_line(results: dict[str, Any]) -> str:
    """How many cells the report covers, and which planned ones a stopped run has not finished."""
    done = [c["key"] for c in results.get("cells", [])]
    planned = results.get("planned_cells")
    if not planned:
        return f"{len(done)} finished"
    missing = [k for k in planned if k not in set(done)]
    if not missing:
        return f"{len(done)} of {len(planned)} planned, all finished"
    shown = ", ".join(missing[:6]) + (f", ... ({len(missing) - 6} more)" if len(missing) > 6 else "")
    return (f"**{len(done)} of {len(planned)} planned finished: a partial run** (rerun the command to resume); "
            f"not yet run: {shown}")


@dataclass
class Figure:
    name: str
    title: str
    png: bytes
    caption: str = ""


def render_html(title: str, fact_rows, summary: Sequence[str], sections: Sequence[tuple[str, list]], notes) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>", '<table class="facts"><tbody>']
    out += [f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" if k.endswith("command")
            else f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in fact_rows]
    out.append("</tbody></table>")
    out.append('<h2 id="summary">Summary</h2><ul class="verdicts">')
    out += [f"<li>{html.escape(line)}</li>" for line in summary] or ["<li>no method compared with random</li>"]
    out.append("</ul>")
    for heading, parts in sections:
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for p in parts:
            if isinstance(p, Table):
                out.append(_html_table(p))
            elif isinstance(p, Figure):
                data = base64.b64encode(p.png).decode("ascii")
                out.append(f'<figure><img alt="{html.escape(p.title)}" data-figure="{html.escape(p.name)}" '
                           f'src="data:image/png;base64,{data}">'
                           f"<figcaption>{html.escape(p.caption or p.title)}</figcaption></figure>")
            else:
                out.append(f'<p class="note">{html.escape(str(p))}</p>')
    if notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_markdown(title: str, fact_rows, summary, sections, notes) -> str:
    out = [f"# {title}", ""]
    out += [f"- **{k}**: " + (f"`{v}`" if k.endswith("command") else v) for k, v in fact_rows]
    out += ["", "## Summary", ""]
    out += [f"- {line}" for line in summary] or ["- no method compared with random"]
    for heading, parts in sections:
        out += ["", f"## {heading}", ""]
        for p in parts:
            if isinstance(p, Table):
                out += [_md_table(p), ""]
            elif isinstance(p, Figure):
                out += [f"![{p.title}](figures/{p.name}.png)", ""]
                if p.caption:
                    out += [f"*{p.caption}*", ""]
            else:
                out += [str(p), ""]
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------- the map
def load_pool(results: dict[str, Any]):
    """The pool the run selected from (the config's source, task filters and slices), fingerprint-checked."""
    from ..errors import DataError
    from .config import SourceSpec
    from .plan import load_source

    spec = (results.get("config") or {}).get("pool") or {"source": (results.get("pool") or {}).get("source")}
    if not spec.get("source"):
        raise DataError("the results name no pool source", field="pool.source")
    known = {f.name for f in dataclasses.fields(SourceSpec)}
    src = SourceSpec(**{k: (tuple(v) if isinstance(v, list) and k in ("per_task", "slice") else v)
                        for k, v in spec.items() if k in known})
    ds = load_source(src, "pool", "results.json")
    want = (results.get("pool") or {}).get("fingerprint")
    if want and ds.fingerprint() != want:
        raise DataError(f"the pool {spec['source']} changed since the run (fingerprint {ds.fingerprint()}, "
                        f"the run had {want})", field="pool.fingerprint")
    return ds


def selection_map(results: dict[str, Any], *, embedder: Any = None, reducer: str = "auto", device: str = "auto",
                  seed: int = 0, progress: bool = True) -> Figure:
    """Small multiples of the pool's 2-D map: one panel per method (rows, random included) and budget
    (columns), each showing the subset of its lowest seed."""
    from ..kernels.embedding import embed_records
    from ..runtime.context import Context
    from ..select.plot import project_2d

    pool = load_pool(results)
    name = embedder if embedder is not None else (results.get("config") or {}).get("embedder")
    ctx = Context(embedder=name, device=device, progress=progress)
    emb = embed_records(pool, ctx)
    xy, used = project_2d(np.asarray(emb, dtype=np.float32), reducer, seed)
    panels: dict[tuple[str, float], tuple[int, list[str]]] = {}
    for c in results["cells"]:
        if c["kind"] not in ("method", "random") or not c.get("selected_ids"):
            continue
        key = (c["method"], float(c["budget"]))
        if key not in panels or c["seed"] < panels[key][0]:
            panels[key] = (c["seed"], list(c["selected_ids"]))
    order = {label: k for k, label in enumerate(dict.fromkeys(["random"] + [c["method"] for c in results["cells"]]))}
    items = sorted(panels.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
    png = plots.selection_maps(xy, pool.ids, [(m, b, sel) for (m, b), (_, sel) in items], used)
    return Figure("selection_maps", "selected subsets over the pool", png,
                  f"Each panel: the pool ({len(pool)} records, grey) as a 2-D {used.upper()} projection of "
                  f"{ctx.embedder.identity} sentence embeddings, the subset of the lowest seed in colour.")


# ---------------------------------------------------------------------------------------------- main
def build_report(run_dir: str | Path, out_dir: str | Path | None = None, *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95, embedder: Any = None, reducer: str = "auto", device: str = "auto",
                 maps: bool = True, progress: bool = True, command: str | None = None) -> Report:
    """Recompute the statistics from ``RUN_DIR/results.json`` and write the reports to ``out_dir``
    (default: the run folder): report.md (figures beside it in figures/), report.html, stats.json."""
    run = Path(run_dir)
    results = load_results(run)
    out = Path(out_dir) if out_dir is not None else (run if run.is_dir() else run.parent)
    stats = compute_stats(results, n_boot=n_boot, seed=seed, level=level)
    notes = list(stats["notes"])

    figures_score = [Figure("score_vs_budget_all", "all suites: difference to random against budget",
                            plots.difference_vs_budget(stats),
                            "Standardised difference to random (mean over suites), with confidence bands; grey: "
                            "the spread of random's seeds.")]
    for suite in stats["suites"]:
        if stats["suites"][suite]["n_items"]:
            figures_score.append(Figure(f"score_vs_budget_{_slug(suite)}", f"{suite}: score against budget",
                                        plots.score_vs_budget(stats, suite),
                                        f"{suite}: mean {stats['suites'][suite]['metric']} per method with confidence "
                                        "bands; grey: random's min-max over seeds; dotted: zero-shot; dashed: full pool."))
    cost_fig = Figure("cost_vs_gain", "selection cost against gain", plots.cost_vs_gain(stats),
                      "Selection FLOPs (log scale) against the standardised gain over random, with confidence "
                      "intervals; dashed: the cost of training on the full pool.")
    map_parts: list[Any] = []
    if maps:
        try:
            map_parts.append(selection_map(results, embedder=embedder, reducer=reducer, device=device, seed=seed,
                                           progress=progress))
        except DatawinnowError as e:
            msg = f"embedding map left out: {e}"
            notes.append(msg)
            map_parts.append(msg)
            print(f"warning: {msg}", file=sys.stderr)
    else:
        map_parts.append("embedding map left out (--no-map)")

    sections: list[tuple[str, list]] = [
        ("Verdicts", [verdict_table(stats), aggregate_table(stats)]),
        ("Score against budget", figures_score),
        ("Selection cost against gain", [cost_fig, cost_table(stats)]),
        ("Selected subsets over the pool", map_parts),
        ("Per-suite breakdown", [suite_table(stats, s) for s in stats["suites"] if stats["suites"][s]["n_items"]]),
        ("How to read this", [
            "Each suite's score is the mean over its evaluation items of the primary metric. The difference to "
            "random is the method's mean over seeds minus random's at the same budget; its confidence interval "
            "comes from a bootstrap that resamples the evaluation items (the same items for every cell) and the "
            "seeds. 'Better than random' needs the whole interval above 0; 'beats best random seed' compares "
            "with the single best random run. The aggregate divides each suite's difference by the suite's "
            "item-score standard deviation and averages over suites. See docs/experiments.md (Statistics)."]),
    ]
    title = f"datawinnow experiment: {(results.get('config') or {}).get('name') or run.name}"
    fact_rows = facts(results, stats, command)
    summary = [m["line"] for m in stats["methods"]]

    out.mkdir(parents=True, exist_ok=True)
    figs = [p for _, parts in sections for p in parts if isinstance(p, Figure)]
    written = []
    for f in figs:
        path = out / "figures" / f"{f.name}.png"
        atomic_write_bytes(path, f.png)
        written.append(path)
    atomic_write_json(out / "stats.json", stats)
    md = out / "report.md"
    atomic_write_text(md, render_markdown(title, fact_rows, summary, sections, notes))
    page = out / "report.html"
    atomic_write_text(page, render_html(title, fact_rows, summary, sections, notes))
    return Report(out, md, page, out / "stats.json", written, summary, notes)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)
