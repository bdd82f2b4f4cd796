"""The package's layers as docs/architecture.md draws them, held against its `import` lines (at any depth of a
file, lazy imports included): no import runs back up or sideways between layers, and no two files import each
other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import mambast

PACKAGE = Path(mambast.__file__).parent

# a unit (a sub-package or a top-level module of mambast) -> its layer; a unit imports only from lower layers
LAYERS = {
    "ops": 0, "losses": 0, "signals": 0, "errors": 0,
    "images": 1, "fs": 1, "config": 1, "device": 1,
    "model": 2, "flow": 2, "torchrun": 2,
    "io": 3,
    "inference": 4, "nets": 4, "baselines": 4,
    "weights": 4.5,
    "video": 5, "ui": 5, "train": 5, "metrics": 5,  # the runners: none imports another
    "__init__": 6,  # the package's face: mambast.load, mambast.stylize
    "cli": 7,
    "__main__": 8,
}


def _module(path: Path) -> str:
    """mambast/inference/jobs.py -> "mambast.inference.jobs"; a package's __init__.py -> the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The mambast modules `path` imports (absolute or relative, at any depth), as dotted names: `from X import
    y` is X.y where that is a module, else X."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" and len(here) > 1 else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names}
    return found & modules


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, set(files)) - {m} for m, p in files.items()}


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in _graph()} <= set(LAYERS)


def test_no_import_runs_back_up_or_sideways():
    """Before: metrics/warping.py imported video/flow.py (a runner importing a runner)."""
    wrong = sorted(f"{m} -> {i}" for m, targets in _graph().items() for i in targets
                   if _unit(i) != _unit(m) and LAYERS[_unit(i)] >= LAYERS[_unit(m)])
    assert wrong == []


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


# none open: the train loop <-> distill circle of fe33c9e was closed (the objective below the loop in
# train/distill_objective.py, earlier-layout distillation folders read by io/run.py)
KNOWN_CIRCLES: list[list[str]] = []


def test_no_import_circle():
    """Before: ops/backends.py and ops/cross_scan.py imported each other; train/loop.py, objective.py and
    distill.py (fe33c9e)."""
    assert [c for c in _circles(_graph()) if c not in KNOWN_CIRCLES] == []
