"""Output paths checked before any expensive work: an hour of scoring must not end in "Is a directory"."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ConfigError


def _probe(folder: Path, name: str, target: Path) -> None:
    """Create and remove a file in ``folder``: the one test that also holds for root, read-only mounts and /proc."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{target}: cannot create the folder {folder} ({e.strerror or e})") from None
    if not folder.is_dir():
        raise ConfigError(f"{target}: {folder} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".probe", dir=folder)
    except OSError as e:
        raise ConfigError(f"{target}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output_file(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` once it is known that a file can be written there (its folder is created)."""
    p = Path(path)
    if not p.name or p.is_dir():
        raise ConfigError(f"{p}: is a folder; give a file name (e.g. {p / 'subset.jsonl'})")
    if p.exists() and not p.is_file():
        raise ConfigError(f"{p}: exists and is not a regular file")
    _probe(p.parent, p.name, p)
    return p


def check_output_dir(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`Path` once it is known to be a folder that can be written (created if missing)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{p}: exists and is a file; give a folder")
    _probe(p, "datawinnow", p)
    return p
