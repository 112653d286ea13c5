"""The code's shape a maintainer relies on: no import circle between modules (counting imports
deferred into functions too: a circle there is code in the wrong module), no module of the
package over 450 lines, and no module importing the CLI (a shell over the API, never the reverse)."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "reid_search"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Project modules ``path`` imports anywhere in it (at module level or in a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for child in ast.walk(ast.parse(path.read_text())):
        if isinstance(child, ast.Import):
            found |= {a.name for a in child.names if a.name.startswith("reid_search")}
        elif isinstance(child, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - child.level + 1] if child.level else []
            target = ".".join([*base, *([child.module] if child.module else [])])
            if target.startswith("reid_search"):
                modules = {f"{target}.{a.name}" for a in child.names}
                found |= {m for m in modules if _exists(m)} or {target}
    return {m for m in found if _exists(m)} - {name}


def _exists(module: str) -> bool:
    path = REPO.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_finds_a_circle_when_there_is_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_between_modules():
    assert circles(import_graph()) == []


def test_no_module_imports_the_cli():
    graph = import_graph()
    importers = [m for m, imports in graph.items() if not m.startswith("reid_search.cli")
                 and any(i.startswith("reid_search.cli") for i in imports)]  # fmt: skip
    assert importers == []


def test_no_module_over_450_lines():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}
