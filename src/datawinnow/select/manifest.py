"""The manifest written beside every subset: enough to know exactly how it was chosen.

For a subset ``DIR/NAME`` it is the hidden file ``DIR/.NAME.manifest.json``. Hidden, because
Hugging Face ``load_dataset("json", data_dir=DIR)`` reads every other file in the folder as data
(and shell globs such as ``DIR/*.json`` skip it too). Manifests written by datawinnow 0.1.0 as
``DIR/NAME.manifest.json`` are still found by :func:`find_manifest`.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

from ..cache import atomic_write_json
from ..data.record import Dataset
from .base import Selection


def manifest_path(subset_path: str | os.PathLike) -> Path:
    """Where the manifest of the subset written to ``subset_path`` goes."""
    p = Path(subset_path)
    return p.with_name(f".{p.name}.manifest.json")


def legacy_manifest_path(subset_path: str | os.PathLike) -> Path:
    """The name datawinnow 0.1.0 used (``NAME.manifest.json``; ``load_dataset("json", data_dir=...)`` read it as data)."""
    p = Path(subset_path)
    return p.with_name(f"{p.name}.manifest.json")


def find_manifest(subset_path: str | os.PathLike) -> Path | None:
    """The manifest of an existing subset, under the current name or the old one; None if it has none."""
    for candidate in (manifest_path(subset_path), legacy_manifest_path(subset_path)):
        if candidate.is_file():
            return candidate
    return None


def build_manifest(selection: Selection, dataset: Dataset, *, written_format: str | None = None) -> dict[str, Any]:
    from ..runtime.describe import package_version

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
        "settings": selection.settings,
        "datawinnow_version": package_version(),
        "input": {"source": dataset.path, "format": dataset.format, "fingerprint": dataset.fingerprint()},
        "output_format": written_format,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "info": selection.info,
        "records": records,
    }


def write_manifest(path: str | os.PathLike, manifest: dict[str, Any]) -> None:
    atomic_write_json(path, manifest)
