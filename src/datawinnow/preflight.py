"""Checks run before any expensive work: an hour of scoring must not end in "Is a directory".

Output paths are probed by creating a file where the output will go; device names are checked for
their form here (no torch import), for their availability when a model is loaded
(:func:`datawinnow.backends.device.pick_device`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from .errors import ConfigError

DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


def check_device_name(device: str | None) -> str:
    """``device`` if it has the form of one (auto, cpu, cuda, cuda:N, mps), else a ConfigError."""
    if device is None or not DEVICE_NAME.fullmatch(str(device)):
        raise ConfigError(f"unknown device {str(device)!r} (expected auto, cpu, cuda or cuda:N)")
    return str(device)


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
