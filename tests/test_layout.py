"""The layout's rules, read from the source: no import circles, layers point down, small modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "bot", "offline_botapi", "fleetbot")
# Which top-level packages each may import: the program sits on the bot and the core, the bot on
# the core; the core and the Telegram stand-in stand alone.
ALLOWED = {
    "core": {"core"},
    "offline_botapi": {"offline_botapi"},
    "bot": {"bot", "core"},
    "fleetbot": {"fleetbot", "bot", "core", "offline_botapi"},
}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every project module `path` imports, type-only and function-level imports included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from bot import cards` imports the module bot.cards
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name in MODULES}


GRAPH = {module: _imports(path) - {module} for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            # A package's __init__ re-exporting its own modules is not a circle of design.
            if len(component) > 1:
                found.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    return found


def _package_cycle(component: list[str]) -> bool:
    """True when the only circle is an `__init__` that re-exports the modules importing it."""
    parents = [m for m in component if any(o.startswith(m + ".") for o in component)]
    if len(parents) != 1:
        return False
    parent = parents[0]
    inner = [m for m in component if m != parent]
    # the children must not import each other in a ring; only the parent re-exports
    return all(not (GRAPH[m] & set(inner)) for m in inner)


def test_no_import_circles() -> None:
    cycles = [c for c in _cycles() if not _package_cycle(c)]
    assert cycles == [], f"import circles: {cycles}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layers_point_down(module: str) -> None:
    top = module.split(".")[0]
    wrong = {name for name in GRAPH[module] if name.split(".")[0] not in ALLOWED[top]}
    assert wrong == set(), f"{module} must not import {sorted(wrong)}"


def test_core_never_imports_telegram() -> None:
    offenders = []
    for module, path in MODULES.items():
        if not module.startswith("core"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            if "telegram" in roots:
                offenders.append(module)
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by concept"
