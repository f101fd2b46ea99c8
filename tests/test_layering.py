"""The import graph runs one way, from the command line down to errors (docs/ARCHITECTURE.md, "Layering").

Every ``import``/``from ... import`` of a datawinnow module anywhere in a source file counts, the lazy ones
inside functions included: a lazy import still ties the layers together, it only defers the cost.
A module may import its own unit (package or top-level module) and any unit in a lower layer; units that
share a layer are peers and do not import each other.
"""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import datawinnow

SRC = Path(datawinnow.__file__).parent

# lowest first; "datawinnow" is the package root (its __init__: the version and the Python API's names)
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("cache", "params", "options", "budget", "preflight", "registry", "logs"),  # leaf helpers
    ("data",),
    ("backends",),
    ("runtime",),
    ("scores", "kernels"),
    ("select",),
    ("train", "evaluate"),
    ("experiments",),
    ("api",),
    ("datawinnow",),
    ("cli_options", "summary"),
    ("commands",),
    ("cli",),
]

# (importing module, imported module): why this one arrow may run up or across
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("datawinnow.data.readers", "datawinnow.backends.hub"):
        "the reader of hub data sets checks hub access with the same helper as model loading; backends.hub "
        "is a leaf (it imports only errors), so no cycle can form through it",
}

# the command-line layer: the only code that builds or reads argparse parsers
ARGPARSE_UNITS = {"cli", "cli_options", "commands"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import of a datawinnow module in ``path``, lazy ones included;
    ``from X import name`` counts as a module import of ``X.name`` when that is a module, else of ``X``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((full if _is_module(full) else base, node.lineno))
    return sorted({(m, line) for m, line in out if m == "datawinnow" or m.startswith("datawinnow.")})


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else "datawinnow"


def _graph() -> list[tuple[str, str, int]]:
    return [(_module_name(p), target, line) for p in sorted(SRC.rglob("*.py")) for target, line in _imports(p)]


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in SRC.rglob("*.py")}
    placed = {u for layer in LAYERS for u in layer}
    assert not units - placed, f"units without a layer (add them to LAYERS and docs/ARCHITECTURE.md): {units - placed}"


def test_imports_run_down_the_layers():
    level = {u: k for k, layer in enumerate(LAYERS) for u in layer}
    bad = []
    for source, target, line in _graph():
        su, tu = _unit(source), _unit(target)
        if su == tu or level[tu] < level[su]:
            continue
        if any(source == s and (target == t or target.startswith(t + ".")) for s, t in EXCEPTIONS):
            continue
        bad.append(f"{source}:{line} imports {target} ({su}, layer {level[su]} -> {tu}, layer {level[tu]})")
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_exceptions_are_still_needed():
    graph = {(s, t) for s, t, _ in _graph()}
    stale = [pair for pair in EXCEPTIONS if not any(s == pair[0] and t.startswith(pair[1]) for s, t in graph)]
    assert not stale, f"exceptions no import needs any more (remove them): {stale}"


def test_only_the_command_line_imports_argparse():
    users = set()
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if "argparse" in names:
                users.add(_module_name(p))
    outside = {m for m in users if _unit(m) not in ARGPARSE_UNITS}
    assert not outside, f"argparse imported below the command line: {sorted(outside)}"
    assert {"datawinnow.cli", "datawinnow.cli_options"} <= users


def test_version_comes_from_the_package_metadata():
    assert datawinnow.__version__ == version("datawinnow")
