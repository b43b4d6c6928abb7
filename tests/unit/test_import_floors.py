"""The pack's modules import like floors of a building: each floor only what lies on it or below it.

    5  __init__.py          the package ComfyUI loads
    4  nodes/               thin V3 nodes
    3  inversion/           DDIM inversion, trajectories, reference-image mode
    2  attention/dispatch/  where controls meet a model: UNet replaces, the DiT override, support table
    1  attention/models/    one adapter per model family      } side by side: neither imports the other
    1  attention/*.py       one module per method (controls)  }
    0  attention/core/      the ground floor: knows no method and no family

Read from the source with ``ast`` (nothing is imported): no import circle, no import from a lower floor
to a higher one (or between the two rooms of floor 1), and no import of the pack's own modules inside a
function (such imports only ever served to dodge a circle).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("attention", "inversion", "nodes")
FLOORS = {"core": 0, "models": 1, "methods": 1, "dispatch": 2, "inversion": 3, "nodes": 4, "root": 5}


def shipped_modules() -> list[Path]:
    files = [ROOT / "__init__.py"]
    for package in SHIPPED:
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def room(path: Path) -> str:
    """The floor's room a shipped module sits in (see the module docstring)."""
    parts = path.relative_to(ROOT).parts
    if len(parts) == 1:
        return "root"
    if parts[0] != "attention":
        return parts[0]
    if len(parts) == 2:
        return "core" if parts[1] == "__init__.py" else "methods"
    return parts[1]


def package_of(path: Path) -> Path:
    return path.parent


def resolve(base: Path, dotted: str) -> Path | None:
    """The module file ``dotted`` (relative to package folder ``base``) names, or None (not the pack's)."""
    target = base.joinpath(*dotted.split(".")) if dotted else base
    if target.with_suffix(".py").is_file():
        return target.with_suffix(".py")
    if (target / "__init__.py").is_file():
        return target / "__init__.py"
    return None


def pack_imports(path: Path, source: str | None = None):
    """(imported module file, line, inside a function) for every import of the pack's own modules in the
    module at ``path`` (its text, or ``source`` read as if it stood there)."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    functions = [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    in_function = {id(inner) for fn in functions for inner in ast.walk(fn) if inner is not fn}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue  # absolute imports are torch, comfy, ... never the pack (it has no fixed package name)
        base = package_of(path)
        for _ in range(node.level - 1):
            base = base.parent
        module = resolve(base, node.module or "")
        targets = [resolve(base, f"{node.module}.{alias.name}" if node.module else alias.name) for alias in node.names]
        for target in [t for t in targets if t is not None] or [module]:
            if target is not None:
                yield target, node.lineno, id(node) in in_function


GRAPH = {path: list(pack_imports(path)) for path in shipped_modules()}


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_every_shipped_module_has_a_floor():
    assert all(room(path) in FLOORS for path in GRAPH)


def test_no_import_runs_upward_or_between_the_rooms_of_a_floor():
    wrong = [f"{name(path)}:{line} imports {name(target)} ({room(path)} -> {room(target)})"
             for path, imports in GRAPH.items() for target, line, _ in imports if target in upward_imports(path, imports)]
    assert not wrong, "imports against the floors:\n" + "\n".join(wrong)


def test_no_import_of_the_pack_inside_a_function():
    inside = [f"{name(path)}:{line} imports {name(target)}" for path, imports in GRAPH.items()
              for target, line, in_function in imports if in_function]
    assert not inside, "imports of the pack's own modules inside functions:\n" + "\n".join(inside)


def test_no_import_circle():
    state: dict = {}  # path -> "open" while on the current path, "done" when finished
    circles = []

    def visit(path, trail):
        state[path] = "open"
        for target, _, _ in GRAPH.get(path, ()):
            if state.get(target) == "open":
                circles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[path] = "done"
    for path in GRAPH:
        if path not in state:
            visit(path, [path])
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(name(p) for p in c) for c in circles)


def upward_imports(path: Path, imports) -> list:
    return [t for t, _, _ in imports if room(t) != room(path) and FLOORS[room(t)] >= FLOORS[room(path)]]


@pytest.mark.parametrize("source, where", [
    ("from ..dispatch import dispatcher\n", "attention/core/probe.py"),    # the ground floor reaching up
    ("from .models import flux\n", "attention/probe.py"),                  # a method naming a family
    ("from .. import regional\n", "attention/models/probe.py"),            # a family naming a method
    ("def f():\n    from .core import rows\n", "attention/probe.py"),     # an import hidden in a function
])
def test_the_checks_catch_what_they_forbid(source, where):
    """The checks above on a module written to break them, read as if it stood at ``where``."""
    path = ROOT / where
    imports = list(pack_imports(path, source))
    assert imports, "the probe's import was not resolved"
    assert upward_imports(path, imports) or any(inside for _, _, inside in imports)
