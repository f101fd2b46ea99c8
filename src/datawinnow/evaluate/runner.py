"""Run evaluation suites: collect their items, check them for contamination against the training
data (and the ICL subset), drop contaminated items unless allowed, run each suite, gather results."""

from __future__ import annotations

import datetime as _dt
import sys
import time
from typing import Any, Sequence

from ..data.record import Dataset
from ..errors import ConfigError
from ..registry import SUITES
from .contamination import check_contamination, combine
from .session import EvalSession


def evaluate(suites: Sequence[str], session: EvalSession, *, train: Sequence[Dataset] = (),
             allow_contaminated: bool = False, ngram: int = 13, jaccard: float = 0.8,
             out: str | None = None, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate with every named suite and return (and optionally write) the results dict.

    ``train``: the data the model saw (adapter manifest, ``--train``, the ICL subset). Every suite's
    items are checked against it before any evaluation runs; contaminated items are left out unless
    ``allow_contaminated``, in which case they stay in and carry ``"contaminated": true``.
    """
    if not suites:
        raise ConfigError("evaluate: name at least one --suite (see 'datawinnow evaluate --list')")
    classes = {name: SUITES.get(name) for name in dict.fromkeys(suites)}
    objs = {name: cls() for name, cls in classes.items()}
    items = {name: (session.limited(s.items(session)) if s.checks_contamination else Dataset([]))
             for name, s in objs.items()}

    results: dict[str, Any] = {
        "datawinnow_version": _version(), "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(meta or {}), "limit": session.limit, "allow_contaminated": allow_contaminated, "suites": {},
    }
    pool = [d for d in train if len(d)]
    flagged: dict[str, set[str]] = {}
    if pool:
        train_all = combine(pool) if len(pool) > 1 else pool[0]
        everything = [r for ds in items.values() for r in ds]
        seen, uniq = set(), []
        for r in everything:
            if (r.id, r.content_key()) not in seen:
                seen.add((r.id, r.content_key()))
                uniq.append(r)
        t0 = time.perf_counter()
        report = check_contamination(uniq, train_all, n=ngram, threshold=jaccard)
        results["contamination"] = {**report.as_dict(), "seconds": round(time.perf_counter() - t0, 3),
                                    "train_sources": [d.path for d in pool]}
        bad = report.contaminated
        for name in items:
            hit = {r.id for r in items[name] if r.id in bad}
            if hit:
                flagged[name] = hit
                if not allow_contaminated:
                    items[name] = Dataset([r for r in items[name] if r.id not in hit], path=items[name].path)
            if session.ctx.progress and hit:
                what = "kept (--allow-contaminated)" if allow_contaminated else "left out"
                print(f"contamination: {len(hit)} {name} item(s) overlap the training data; {what}", file=sys.stderr)
    else:
        results["contamination"] = {"checked": False, "reason": "no training data known: pass --train SRC, or an "
                                    "--adapter folder with its data_manifest.json"}
    for name, suite in objs.items():
        if suite.checks_contamination and not len(items[name]):
            results["suites"][name] = {"summary": {"n": 0}, "items": [],
                                       "info": {"skipped": "no items left after the contamination filter"}}
            continue
        t0 = time.perf_counter()
        res = suite.run(items[name], session)
        res.setdefault("info", {})["seconds"] = round(time.perf_counter() - t0, 3)
        if name in flagged:
            res["info"]["contaminated_items"] = sorted(flagged[name])
            for row in res["items"]:
                if row.get("id") in flagged[name]:
                    row["contaminated"] = True
        results["suites"][name] = res
    if out:
        from .results import write_results

        write_results(out, results)
    return results


def _version() -> str:
    from ..runtime.describe import package_version

    return package_version()
