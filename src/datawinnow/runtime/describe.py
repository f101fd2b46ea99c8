"""How a run's settings are written down in manifests: device, system-prompt policy, library versions."""

from __future__ import annotations

from typing import Any


def system_policy(system: str | None) -> str:
    """The system-prompt policy as ``--system`` spells it: default, none, or the text."""
    return "default" if system is None else ("none" if system == "" else system)


def system_from_text(value: str | None) -> str | None:
    """The inverse of :func:`system_policy`: ``default`` -> None (the template's own), ``none`` -> "" (an
    empty system turn), anything else -> that text."""
    if value is None or value == "default":
        return None
    if value == "none":
        return ""
    return value


def library_versions(*names: str) -> dict[str, str]:
    """``{name: version}`` of the libraries whose kernels computed a score (a new release can move the last digits)."""
    import importlib

    return {name: getattr(importlib.import_module(name), "__version__", "unknown") for name in names}


def device_description(device: Any) -> str:
    """``cpu``, or ``cuda (NVIDIA H100 80GB HBM3)``: the device type, and the GPU model (its kernels differ)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type


def package_version() -> str:
    """datawinnow's version, from the installed package's metadata (one source: pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("datawinnow")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        return "0+unknown"
