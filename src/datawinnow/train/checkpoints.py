"""Resumable training: checkpoints in the output folder, and picking up from the last complete one.

``run_sft`` has the trainer save ``checkpoint-<step>/`` every ``save_steps`` optimizer steps (the
adapter, optimizer, scheduler, RNG states and trainer state). A checkpoint counts as complete only
once :class:`CompleteMarker` has written ``datawinnow_complete.json`` into it, which happens after
the trainer finished writing every file, so a run killed while saving never resumes from a half
written folder. ``resume.json`` holds what the checkpoints belong to (training options, data
fingerprint, model identity): a rerun of the same command resumes from the newest complete
checkpoint; a different command discards them and starts over. A finished run removes its
checkpoints (the adapter is written at the top of the folder).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from ..cache import atomic_write_json

RESUME_FILE = "resume.json"
MARKER = "datawinnow_complete.json"
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
# options that change nothing about the trained weights: they may differ between a run and its resumption
NOT_IDENTITY = ("progress", "logging_steps", "save_steps")

log = logging.getLogger(__name__)


def run_identity(config: dict[str, Any], *, fingerprint: str, model: str, n_rows: int) -> dict[str, Any]:
    """What a set of checkpoints belongs to."""
    return {"config": {k: v for k, v in config.items() if k not in NOT_IDENTITY}, "fingerprint": fingerprint,
            "model": model, "rows": n_rows}


def checkpoints(out: Path) -> list[tuple[int, Path, bool]]:
    """``(step, folder, complete)`` for every ``checkpoint-<step>`` in ``out``, oldest first."""
    found = []
    if out.is_dir():
        for p in out.iterdir():
            m = CHECKPOINT.fullmatch(p.name)
            if m and p.is_dir():
                found.append((int(m.group(1)), p, (p / MARKER).is_file()))
    return sorted(found)


def discard(out: Path) -> None:
    for _, folder, _ in checkpoints(out):
        shutil.rmtree(folder, ignore_errors=True)
    (out / RESUME_FILE).unlink(missing_ok=True)


def prepare(out: Path, identity: dict[str, Any], *, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start over), after discarding what cannot be resumed.

    Writes ``resume.json`` for this run. Incomplete checkpoints (no marker) are removed.
    """
    previous = None
    path = out / RESUME_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            previous = None
    found = checkpoints(out)
    for _, folder, complete in found:
        if not complete:
            shutil.rmtree(folder, ignore_errors=True)
    complete = [(step, folder) for step, folder, ok in found if ok]
    start = None
    if complete and resume and previous == identity:
        step, start = complete[-1]
        log.info(f"train: resuming from {start.name} (step {step}); earlier steps are not redone")
    elif complete:
        why = "--no-resume" if not resume else "they belong to a different run (options, data or model changed)"
        log.warning(f"train: discarding {len(complete)} checkpoint(s) in {out}: {why}")
        discard(out)
    atomic_write_json(path, identity)
    return start


def finish(out: Path) -> None:
    """Remove the checkpoints of a run that completed (its adapter is at the top of ``out``)."""
    discard(out)


def marker_callback():
    """A trainer callback that marks each checkpoint complete once the trainer has saved all of it."""
    from transformers import TrainerCallback

    class CompleteMarker(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                atomic_write_json(folder / MARKER, {"step": state.global_step})

    return CompleteMarker()


def truncate_log(path: Path, step: int) -> None:
    """Keep the loss-log lines of steps up to ``step`` (those after it are redone by the resumed run)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except (json.JSONDecodeError, AttributeError):
            continue
    from ..cache import atomic_write_text

    atomic_write_text(path, "".join(k + "\n" for k in kept))
