"""Keyword options of the Python API checked by name: a misspelt option is an error, never ignored.

``datawinnow.select(pool, "random", 5, sead=1)`` would otherwise run with the default seed and say
nothing. The error names the option, suggests the nearest valid one (and the API spelling of a
command-line flag, ``no_cache`` -> ``use_cache=False``) and lists every valid option.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Iterable

from .errors import ConfigError

# command-line spellings a user may carry over to Python, and what the API calls them
CLI_SPELLINGS = {
    "no_cache": "use_cache=False",
    "quiet": "progress=False",
    "adapter": "model='MODEL+ADAPTER_DIR'",
    "param": "params={...}",
    "to": "format=...",
    "target": "sources={'target': ...}",
    "existing": "sources={'existing': ...}",
    "columns": "load(source, column_map=...) first",
    "judge_url": "judge={'kind': 'remote', 'base_url': ...}",
    "judge_model": "judge={'kind': 'remote', 'model': ...}",
}


class UnknownOptionError(ConfigError, TypeError):
    """A keyword option the function does not have (a TypeError too, as Python's own would be)."""


def keyword_names(func: Callable[..., Any]) -> list[str]:
    """The named keyword parameters of ``func`` (not ``*args``/``**kwargs``, not ``self``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(func).parameters.values() if p.kind in kinds and p.name != "self"]


def check_options(where: str, given: Iterable[str], valid: Iterable[str], *, more: Iterable[str] = ()) -> None:
    """Raise :class:`UnknownOptionError` for the first name in ``given`` not in ``valid`` or ``more``.

    ``where`` names the function (``datawinnow.select()``); ``more`` are further valid names listed
    separately (the :class:`~datawinnow.runtime.context.Context` options the function passes on).
    """
    valid, more = list(valid), list(more)
    allowed = set(valid) | set(more)
    unknown = [name for name in given if name not in allowed]
    if not unknown:
        return
    name = unknown[0]
    if name in CLI_SPELLINGS:
        hint = f" (in Python: {CLI_SPELLINGS[name]})"
    else:
        close = difflib.get_close_matches(name, sorted(allowed), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
    listed = ", ".join(valid)
    if more:
        listed += f"; context options: {', '.join(more)}"
    others = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
    raise UnknownOptionError(f"{where} has no option '{name}'{hint}{others}; valid options: {listed}")
