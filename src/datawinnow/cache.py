"""The on-disk cache: atomic writes, and per-sample score stores that survive kill -9.

Layout under the cache root (:func:`cache_root`: the folder of the innermost :func:`use_cache_root`
block, else ``$DATAWINNOW_CACHE``, else ``~/.cache/datawinnow``)::

    models/                       dense copies of embedded models
    scores/<scorer>-<key>/        one store per (scorer, parameters, model identity)
        meta.json                 what the key stands for
        scores.jsonl              compacted rows
        part-*.jsonl              one file per finished batch, each written atomically

A batch's rows become visible only when its part file is renamed into place, so a run killed at
any point loses at most the batch in flight; the next run reads every part and computes only what
is missing. Each row carries the record's content key too, so an edited record is rescored even
when its id stays the same. A file damaged some other way (a disk that filled up, a copy cut
short) is never taken for complete: an unterminated or unreadable line is skipped, and its
records are computed again.

Files are created with the permissions the umask gives (``0o666 & ~umask``), like any other
file the user writes, not the 0600 of a bare temporary file.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import numpy as np


_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar("datawinnow_cache_root", default=None)


def cache_root() -> Path:
    """The cache folder: the innermost :func:`use_cache_root` block's, else ``$DATAWINNOW_CACHE``, else
    ``~/.cache/datawinnow``."""
    scoped = _ROOT.get()
    if scoped is not None:
        return scoped
    root = os.environ.get("DATAWINNOW_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "datawinnow")
    return Path(root)


@contextlib.contextmanager
def use_cache_root(path: str | os.PathLike | None) -> Iterator[Path]:
    """Point :func:`cache_root` at ``path`` inside the block (None: leave it as it is); yields the root in force.

    The setting is a context variable, not an environment write: it is undone on leaving the block
    (blocks nest), and it is seen by this thread and by code run in a copy of its context, not by other
    threads or processes (those are given their cache folder explicitly, e.g. ``RuntimeOptions.cache_dir``).
    """
    if path is None:
        yield cache_root()
        return
    token = _ROOT.set(Path(path))
    try:
        yield Path(path)
    finally:
        _ROOT.reset(token)


def stable_hash(obj: Any, length: int = 16) -> str:
    """A hash of a JSON-able object that does not depend on dict order or the Python run."""
    payload = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:length]


def current_umask() -> int:
    """The process umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mkstemp_umask(*, prefix: str, suffix: str, dir: str | os.PathLike) -> tuple[int, str]:
    """``tempfile.mkstemp`` with the permissions an ordinary new file gets (``0o666 & ~umask``), not 0600."""
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    return fd, tmp


def honour_umask(folder: str | os.PathLike) -> None:
    """Give every regular file under ``folder`` the mode a new file gets from the umask.

    For folders written by libraries that create files 0600 (``safetensors`` does, for model and
    adapter weights), so that an adapter or model copy is as readable as any other output.
    """
    mode = 0o666 & ~current_umask()
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, mode)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """A file to write ``path`` through: a temporary file beside it (umask permissions), flushed, synced and
    renamed into place when the block ends; on an error the temporary file goes and ``path`` is untouched.
    Readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = mkstemp_umask(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, default=_json_default) + "\n")


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The complete rows of a score file: a line counts only when it ends with a newline, parses as a JSON
    object and has ``id`` and ``_key``; anything else (a cut-off write, damage) is skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    rows = []
    for line in data.split(b"\n")[:-1]:  # the last piece has no newline: complete files end with one
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict) and isinstance(row.get("id"), str) and "_key" in row:
            rows.append(row)
    return rows


class ScoreStore:
    """Per-record results of one scorer configuration on one model.

    ``key_parts`` (scorer name, parameters, model identity) decides the folder; rows are dicts with
    at least ``id``; ``lookup`` returns the cached row for a record or None.
    """

    def __init__(self, scorer: str, params: dict[str, Any], model_identity: str | None, root: Path | None = None):
        self.meta = {"scorer": scorer, "params": params, "model": model_identity, "format": 1}
        self.dir = (root or cache_root()) / "scores" / f"{scorer}-{stable_hash(self.meta)}"
        self._rows: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._rows is None:
            rows: dict[str, dict[str, Any]] = {}
            if self.dir.exists():
                files = ([self.dir / "scores.jsonl"] if (self.dir / "scores.jsonl").exists() else [])
                files += sorted(self.dir.glob("part-*.jsonl"))
                for f in files:
                    for row in read_rows(f):
                        rows[row["id"]] = row
            self._rows = rows
        return self._rows

    def __len__(self) -> int:
        return len(self._load())

    def lookup(self, record_id: str, content_key: str) -> dict[str, Any] | None:
        row = self._load().get(record_id)
        if row is None or row.get("_key") != content_key:
            return None
        return row

    def put(self, rows: Iterable[dict[str, Any]]) -> None:
        """Store one finished batch atomically (rows need ``id`` and ``_key``)."""
        rows = list(rows)
        if not rows:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            atomic_write_json(meta_path, self.meta)
        text = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows)
        name = f"part-{time.time_ns():020d}-{os.getpid()}.jsonl"
        atomic_write_text(self.dir / name, text)
        loaded = self._load()
        for r in rows:
            loaded[r["id"]] = r

    def compact(self) -> None:
        """Merge the part files into ``scores.jsonl`` (atomically; parts are removed only afterwards)."""
        parts = sorted(self.dir.glob("part-*.jsonl")) if self.dir.exists() else []
        if not parts:
            return
        self._rows = None  # re-read: another process may have added parts since we loaded
        rows = self._load()
        text = "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows.values())
        atomic_write_text(self.dir / "scores.jsonl", text)
        for p in parts:
            p.unlink(missing_ok=True)
