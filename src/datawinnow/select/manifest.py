"""The manifest written beside every subset: enough to know exactly how it was chosen."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from ..cache import atomic_write_json
from ..data.record import Dataset
from .base import Selection


def build_manifest(selection: Selection, dataset: Dataset, *, written_format: str | None = None) -> dict[str, Any]:
    from .. import __version__

    chosen = {rid: rank for rank, rid in enumerate(selection.selected)}
    gains = selection.gains or []
    records = []
    for rid in dataset.ids:
        entry: dict[str, Any] = {"id": rid, "keep": rid in chosen, "score": selection.scores.get(rid)}
        if rid in chosen:
            entry["rank"] = chosen[rid]
            if gains:
                entry["gain"] = gains[chosen[rid]]
        elif rid in selection.reasons:
            entry["reason"] = selection.reasons[rid]
        records.append(entry)
    return {
        "method": selection.method,
        "params": selection.params,
        "budget": selection.budget,
        "selected": len(selection.selected),
        "pool": len(dataset),
        "model": selection.model,
        "datawinnow_version": __version__,
        "input": {"source": dataset.path, "format": dataset.format, "fingerprint": dataset.fingerprint()},
        "output_format": written_format,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "info": selection.info,
        "records": records,
    }


def write_manifest(path: str, manifest: dict[str, Any]) -> None:
    atomic_write_json(path, manifest)
