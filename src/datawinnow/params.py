"""Method and scorer parameters: ``--param key=value`` parsing, and checking every value against its type.

A parameter's type is declared by the class (``param_types``) or read from its default: ``bool``,
``int``, ``float`` or ``str`` (a default of ``"auto"`` takes a text or a number, as ``block_size=auto``
and ``block_size=64`` do; the method checks its choices); a default of None takes anything. Values from the command line arrive
as text (:class:`ParamText`) and are parsed by that type; values from Python are checked and
converted where nothing is lost (``"3"`` or ``3.0`` for an int; a number parameter keeps an integer
as one, since some mean "a fraction or a count"). Anything else is a
:class:`ConfigError` naming the parameter, the expected type and the value.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping

from .errors import ConfigError

TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")


class ParamText(str):
    """A parameter value exactly as typed on the command line, to be parsed by the parameter's type."""


def parse_value(text: str) -> Any:
    """A best guess at a value with no declared type: booleans, None, numbers, JSON lists/objects, else the text."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass
    return str(text)


def parse_params(items: Iterable[str] | None) -> dict[str, ParamText]:
    """``["k=v", ...]`` as ``{"k": ParamText("v")}``; the owning method or scorer parses each by its type."""
    out: dict[str, ParamText] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param expects key=value, got '{item}'")
        out[key.strip()] = ParamText(value)
    return out


def declared_type(default: Any) -> str:
    """The type a default stands for: bool, int, float, str, auto (``"auto"`` or a number) or any (None)."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if default == "auto":
        return "auto"
    if isinstance(default, str):
        return "str"
    return "any"


EXPECTED = {"bool": "a boolean (true/false, yes/no, 1/0)", "int": "an integer", "float": "a number",
            "str": "a text", "auto": "a text or a number", "any": "a value"}


def _number(text: str) -> int | float | None:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return None


def coerce(value: Any, kind: str) -> Any:
    """``value`` as type ``kind``; raises ValueError when it is not one."""
    if value is None:
        if kind == "any":
            return None
        raise ValueError
    text = value if isinstance(value, ParamText) else None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
            return value.strip().lower() in TRUE
        raise ValueError
    if kind == "int":
        if isinstance(value, str):
            value = _number(value.strip())
        if isinstance(value, bool) or value is None:
            raise ValueError
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return int(value)
        raise ValueError
    if kind == "float":  # an integer stays one: some numbers are "a fraction or a count" (less's warmup_size)
        if isinstance(value, str):
            value = _number(value.strip())
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError
        return value
    if kind == "auto":
        if text is not None:
            number = _number(text.strip())
            return str(text) if number is None else number
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError
        return value
    if kind == "str":  # from Python a text parameter may also take a number or a list (less's checkpoints=2,
        if isinstance(value, bool):  # selectit's weights=[1, 3]); the method checks its choices
            raise ValueError
        return str(value) if isinstance(value, str) else value
    return parse_value(text) if text is not None else value  # "any"


def check_params(owner: str, defaults: Mapping[str, Any], params: Mapping[str, Any],
                 types: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``defaults`` updated with ``params``, every given value checked and converted by its declared type.

    ``owner`` names the method or scorer in errors (e.g. ``method 'ifd'``); ``types`` overrides the
    type read from a default (needed where the default is None or a text that also takes numbers).
    """
    unknown = set(params) - set(defaults)
    if unknown:
        raise ConfigError(f"{owner} has no parameter(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(defaults)) or 'none'})")
    out = dict(defaults)
    for key, value in params.items():
        if value is None and defaults[key] is None:  # None: "the run's own" (e.g. random's seed = --seed)
            out[key] = None
            continue
        kind = (types or {}).get(key) or declared_type(defaults[key])
        try:
            out[key] = coerce(value, kind)
        except ValueError:
            raise ConfigError(f"{owner}: parameter '{key}' expects {EXPECTED.get(kind, kind)}, got {str(value)!r}"
                              ) from None
    return out
