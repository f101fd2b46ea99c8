"""The on-disk cache: atomic writes, and per-sample score stores that survive kill -9.

Layout under the cache root (:func:`cache_root`: the folder of the innermost :func:`use_cache_root`
block, else ``$DATAWINNOW_CACHE``, else ``~/.cache/datawinnow``)::

    models/                       dense copies of embedded models
    scores/<scorer>-<key>/        one store per (scorer, parameters, model identity)
        meta.json                 what the key stands for
        scores.jsonl              compacted rows
        part-*.jsonl              one file per finished batch (or several merged), each written atomically
        .lock                     taken by whoever compacts the folder

A batch's rows become visible only when its part file is renamed into place, so a run killed at
any point loses at most the batch in flight; the next run reads every part and computes only what
is missing. Each row carries the record's content key too, so an edited record is rescored even
when its id stays the same. A file damaged some other way (a disk that filled up, a copy cut
short) is never taken for complete: an unterminated or unreadable line is skipped, and its
records are computed again.

A process reads a store's folder once (:class:`ScoreStore` instances on one folder share its rows)
and then only what changed: part files it has not seen, or everything again when another process
replaced ``scores.jsonl``. Compaction is geometric (:meth:`ScoreStore.compact`), so a pool scored in
many small runs (the chunks of streamed scoring) costs O(n) reads and writes in all.

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
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import numpy as np

try:
    import fcntl
except ImportError:  # not on Windows
    fcntl = None


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


# ------------------------------------------------------------------------------------------- score stores
SCORES_FILE = "scores.jsonl"
LOCK_FILE = ".lock"
MAX_PARTS = 256  # compact() leaves at most about this many part files beside scores.jsonl
KEEP_BYTES = 32 * 2**20  # JSON bytes of score stores kept loaded after their last ScoreStore goes
_ATTEMPTS = 8  # reads of a folder that another process compacts meanwhile, before taking what was read


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """What tells one version of a file from another (device, inode, size, mtime); None when it is missing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _part_names(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries if e.name.startswith("part-") and e.name.endswith(".jsonl")}
    except FileNotFoundError:
        return set()


def _new_part_name() -> str:
    """Part files sort by the time they were written (later rows win); the pid keeps processes apart."""
    return f"part-{time.time_ns():020d}-{os.getpid()}.jsonl"


def _jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows)


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on a store folder (its ``.lock`` file) for the length of the block: compactions take
    it, so two processes never merge the same folder at once (writers of part files need none)."""
    if fcntl is None:  # no flock on this platform: compactions are not serialised between processes
        yield
        return
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class _LoadedStore:
    """One store folder's rows as this process knows them; every :class:`ScoreStore` on the folder shares it.

    ``rows``: the newest row per id of ``scores.jsonl`` (read when its signature was ``base``; ``base_rows``
    lines) and of the part files in ``parts`` (name -> rows), applied in name order, and of the batches this
    process put. ``nbytes``: about the JSON size of it all (what the index's memory budget counts). Every
    method is called with ``lock`` held.
    """

    def __init__(self, folder: Path):
        self.dir = folder
        self.lock = threading.RLock()
        self.rows: dict[str, dict[str, Any]] = {}
        self.parts: dict[str, int] = {}
        self.base: tuple[int, int, int, int] | None = None
        self.base_rows = 0
        self.nbytes = 0
        self.loaded = False

    def refresh(self) -> None:
        """Read what changed in the folder since the last look: the part files not read yet (batches of other
        processes, parts another process merged); everything again when ``scores.jsonl`` is another file (a
        compaction elsewhere) or parts went with nothing in their place (the folder was deleted)."""
        scores = self.dir / SCORES_FILE
        for attempt in range(_ATTEMPTS):
            sig = _signature(scores)
            names = _part_names(self.dir)
            new = sorted(names.difference(self.parts))
            gone = len(self.parts) - (len(names) - len(new))
            if not self.loaded or sig != self.base or (gone and not new):
                base = read_rows(scores) if sig is not None else []
                rows = {r["id"]: r for r in base}
                parts, base_rows, nbytes, new = {}, len(base), sig[2] if sig else 0, sorted(names)
            else:
                rows, base_rows, nbytes = self.rows, self.base_rows, self.nbytes
                parts = {name: n for name, n in self.parts.items() if name in names}
            complete = True
            for name in new:
                path = self.dir / name
                size = _signature(path)
                got = read_rows(path) if size is not None else []
                if size is None or (not got and not path.exists()):
                    complete = False  # merged away meanwhile: its rows are in scores.jsonl or a newer part
                    break
                for r in got:
                    rows[r["id"]] = r
                parts[name], nbytes = len(got), nbytes + size[2]
            if (complete and _signature(scores) == sig) or attempt == _ATTEMPTS - 1:
                self.rows, self.parts, self.base, self.base_rows = rows, parts, sig, base_rows
                self.nbytes, self.loaded = nbytes, True
                return

    def add(self, name: str, rows: list[dict[str, Any]], nbytes: int) -> None:
        """The rows of a part file this process wrote."""
        for r in rows:
            self.rows[r["id"]] = r
        self.parts[name] = len(rows)
        self.nbytes += nbytes

    def compact(self, force: bool) -> int:
        """See :meth:`ScoreStore.compact`."""
        with _folder_lock(self.dir):
            self.refresh()
            if not self.parts:
                return 0
            if force or sum(self.parts.values()) >= self.base_rows:
                return self._merge_all()
            small = sorted(name for name, n in self.parts.items() if n * MAX_PARTS < self.base_rows)
            return self._merge_parts(small) if len(small) > 1 else 0

    def _merge_all(self) -> int:
        merged = list(self.parts)
        with atomic_open(self.dir / SCORES_FILE, "w", encoding="utf-8", newline="\n") as fh:
            rows = list(self.rows.values())
            for k in range(0, len(rows), 4096):
                fh.write(_jsonl(rows[k:k + 4096]))
        for name in merged:  # only the parts read: a part written meanwhile stays for the next reader
            (self.dir / name).unlink(missing_ok=True)
        self.base = _signature(self.dir / SCORES_FILE)  # no other compaction can run: the folder lock is held
        self.parts, self.base_rows, self.nbytes = {}, len(rows), self.base[2] if self.base else 0
        return len(rows)

    def _merge_parts(self, names: list[str]) -> int:
        """One part file in place of ``names``, holding the newest row of every id they hold."""
        ids: dict[str, None] = {}
        for name in names:
            got = read_rows(self.dir / name)
            if len(got) != self.parts[name]:
                return 0  # not the file that was read (damaged or unreadable now): leave the parts as they are
            ids.update(dict.fromkeys(r["id"] for r in got))
        rows = [self.rows[i] for i in ids]
        name = _new_part_name()
        if rows:
            atomic_write_text(self.dir / name, _jsonl(rows))
            self.parts[name] = len(rows)
        for old in names:
            (self.dir / old).unlink(missing_ok=True)
            del self.parts[old]
        return len(rows)


class _StoreIndex:
    """The loaded score stores of this process, by folder (resolved path).

    A store stays loaded while a :class:`ScoreStore` uses it, while a :func:`keep_stores_loaded` block that
    loaded it runs, and afterwards as one of the most recently used stores that fit in ``KEEP_BYTES``
    together (a large store is freed with its last user, as before there was an index)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.live: weakref.WeakValueDictionary[str, _LoadedStore] = weakref.WeakValueDictionary()
        self.recent: OrderedDict[str, _LoadedStore] = OrderedDict()
        self.pins: list[set[_LoadedStore]] = []

    def get(self, folder: Path) -> _LoadedStore:
        key = os.path.realpath(folder)
        with self.lock:
            store = self.live.get(key)
            if store is None:
                store = self.live[key] = _LoadedStore(Path(key))
            self.recent[key] = store
            self.recent.move_to_end(key)
            for pinned in self.pins:
                pinned.add(store)
        return store

    def trim(self) -> None:
        """Forget the least recently used stores until the rest fit in ``KEEP_BYTES``."""
        with self.lock:
            total = sum(s.nbytes for s in self.recent.values())
            while total > KEEP_BYTES:
                total -= self.recent.popitem(last=False)[1].nbytes

    def clear(self) -> None:
        with self.lock:
            self.live.clear()
            self.recent.clear()
            for pinned in self.pins:
                pinned.clear()


_INDEX = _StoreIndex()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_INDEX.reset)  # a lock held by another thread at fork would never be freed


def clear_store_index() -> None:
    """Forget every loaded score store: the next :class:`ScoreStore` reads its folder afresh, as a new process
    would (stores already opened keep what they read)."""
    _INDEX.clear()


@contextlib.contextmanager
def keep_stores_loaded() -> Iterator[None]:
    """Keep every score store loaded during the block in memory until it ends, whatever its size.

    Streamed scoring runs its chunks inside one: each chunk opens the scorer's store again and finds its
    rows loaded, so the run reads the store once and its new batches only, instead of once per chunk."""
    pinned: set[_LoadedStore] = set()
    with _INDEX.lock:
        _INDEX.pins.append(pinned)
    try:
        yield
    finally:
        with _INDEX.lock:
            if pinned in _INDEX.pins:  # (not after a fork reset the index)
                _INDEX.pins.remove(pinned)
        _INDEX.trim()


class ScoreStore:
    """Per-record results of one scorer configuration on one model.

    ``key_parts`` (scorer name, parameters, model identity) decides the folder; rows are dicts with
    at least ``id``; ``lookup`` returns the cached row for a record or None. Rows handed out are shared
    with every other store on the folder in this process: read them, never change them.

    The rows are loaded once per process: a store opened on a folder that is already loaded (another
    store on it is in use, a :func:`keep_stores_loaded` block holds it, or it was used lately and is
    small) reads only the part files it has not seen (batches of other processes or Ray actors), or the
    whole folder again when ``scores.jsonl`` was replaced (another process compacted it).
    """

    def __init__(self, scorer: str, params: dict[str, Any], model_identity: str | None, root: Path | None = None):
        self.meta = {"scorer": scorer, "params": params, "model": model_identity, "format": 1}
        self.dir = (root or cache_root()) / "scores" / f"{scorer}-{stable_hash(self.meta)}"
        self._loaded: _LoadedStore | None = None

    def _state(self) -> _LoadedStore:
        """The folder's shared rows, brought up to date when this store first needs them."""
        if self._loaded is None:
            loaded = _INDEX.get(self.dir)
            with loaded.lock:
                loaded.refresh()
            self._loaded = loaded
            _INDEX.trim()
        return self._loaded

    def __len__(self) -> int:
        return len(self._state().rows)

    def lookup(self, record_id: str, content_key: str) -> dict[str, Any] | None:
        row = self._state().rows.get(record_id)
        if row is None or row.get("_key") != content_key:
            return None
        return row

    def put(self, rows: Iterable[dict[str, Any]]) -> None:
        """Store one finished batch atomically (rows need ``id`` and ``_key``)."""
        rows = list(rows)
        if not rows:
            return
        loaded = self._state()
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "meta.json"
        if not meta_path.exists():
            atomic_write_json(meta_path, self.meta)
        text = _jsonl(rows)
        name = _new_part_name()
        atomic_write_text(self.dir / name, text)
        with loaded.lock:
            loaded.add(name, rows, len(text))

    def compact(self, force: bool = False) -> int:
        """Merge part files; returns the rows written (0: nothing merged).

        Geometric, so that a folder compacted after every one of many small runs (the chunks of a streamed
        run) is written O(n) rows in all, not O(n) per run: everything goes into ``scores.jsonl`` when the
        parts hold at least as many rows as it (or it does not exist), or when ``force``; otherwise only the
        small parts (fewer than 1/``MAX_PARTS`` of its rows each: single batches) are merged into one part,
        so that fewer than about ``MAX_PARTS`` part files remain. A new ``scores.jsonl`` or part is written
        atomically before the parts it replaces are removed, and only parts whose rows it holds are
        removed: a batch another process stores meanwhile stays. Compactions of one folder take turns
        (a lock file, ``.lock``).
        """
        if not self.dir.exists():
            return 0
        loaded = self._state()
        with loaded.lock:
            written = loaded.compact(force)
        _INDEX.trim()
        return written
