"""Name -> class registries for scorers and selection methods, filled lazily.

Adding a method is one module plus one line: the module decorates its class with
``@METHODS.register``, and its dotted name goes into the ``modules`` list below, so it is imported
(with its optional dependencies) only when it is asked for or listed.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry:
    def __init__(self, kind: str, modules: list[str]):
        self.kind = kind
        self.modules = modules
        self._items: dict[str, Any] = {}
        self._loaded = False

    def register(self, cls: T) -> T:
        name = getattr(cls, "name", "")
        if not name:
            raise ValueError(f"{cls!r} needs a 'name' to be registered as a {self.kind}")
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = cls
        return cls

    def _load_all(self) -> None:
        if not self._loaded:
            for mod in self.modules:
                importlib.import_module(mod)
            self._loaded = True

    def get(self, name: str) -> Any:
        self._load_all()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}' (available: {', '.join(sorted(self._items))})")
        return self._items[name]

    def names(self) -> list[str]:
        self._load_all()
        return sorted(self._items)

    def items(self) -> list[tuple[str, Any]]:
        self._load_all()
        return sorted(self._items.items())


# one line per scorer module
SCORERS = Registry("scorer", [
    "datawinnow.scores.length",
    "datawinnow.scores.ifd",
    "datawinnow.scores.cherry",
    "datawinnow.scores.less",
    "datawinnow.scores.alpagasus",
    "datawinnow.scores.deita",
    "datawinnow.scores.selectit",
    "datawinnow.scores.rds",
])

# one line per selection-method module
METHODS = Registry("method", [
    "datawinnow.select.methods.random",
    "datawinnow.select.methods.longest",
    "datawinnow.select.methods.ifd",
    "datawinnow.select.methods.cherry",
    "datawinnow.select.methods.less",
    "datawinnow.select.methods.alpagasus",
    "datawinnow.select.methods.deita",
    "datawinnow.select.methods.selectit",
    "datawinnow.select.methods.delift",
    "datawinnow.select.methods.rds",
])

# one line per evaluation-suite module (datawinnow evaluate --suite NAME)
SUITES = Registry("evaluation suite", [
    "datawinnow.evaluate.suites",
    "datawinnow.evaluate.hellaswag",
    "datawinnow.evaluate.winogrande",
])
