"""No import cycle among the modules of ``datakit`` and ``train``, found from the source with the stdlib's ast.

Every import counts: at module level, inside functions, under ``if TYPE_CHECKING:`` (a cycle there is
one refactoring away from a real one); relative imports are resolved. ``from pkg import name`` is an
edge to ``pkg.name`` when that is a module, else to ``pkg`` (its ``__init__``). Importing a module also
runs its parent packages' ``__init__``: those implicit edges are left out, as every cycle finder does.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("datakit", "train")


def modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``packages``."""
    out = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imported_modules(tree: ast.AST, module: str, is_package: bool, known: set[str] | dict[str, Path]) -> set[str]:
    """The modules of ``known`` that the import statements anywhere in ``tree`` load (relative ones resolved)."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    out.add(sub)  # from pkg import module
                elif base in known:
                    out.add(base)  # from module import name
    out.discard(module)
    return out


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ``mods`` it imports."""
    return {name: imported_modules(ast.parse(path.read_text(encoding="utf-8"), str(path)), name,
                                   path.name == "__init__.py", mods)
            for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, set(c)) for c in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), closed: [a, ..., a]."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")  # a strongly connected component always has one


def found_cycles() -> list[list[str]]:
    return cycles(import_graph(modules()))


def _shown(found: list[list[str]]) -> str:
    return "\n".join(" -> ".join(c) for c in found)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The finder itself: function-level, TYPE_CHECKING and relative imports all make edges."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import X\n")
    (pkg / "c.py").write_text("from . import a\n")
    (pkg / "d.py").write_text("import pkg.c\n")
    graph = import_graph(modules(tmp_path, ("pkg",)))
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    (pkg / "c.py").write_text("import os\n")
    assert cycles(import_graph(modules(tmp_path, ("pkg",)))) == []


def test_datakit_has_no_import_cycle() -> None:
    found = [c for c in found_cycles() if any(m.split(".")[0] == "datakit" for m in c)]
    assert not found, "import cycles:\n" + _shown(found)


def test_datakit_never_imports_train() -> None:
    graph = import_graph(modules())
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m.startswith("datakit")
                    for t in targets if t.startswith("train"))
    assert not upward, upward


def test_train_has_no_import_cycle() -> None:
    found = [c for c in found_cycles() if all(m.split(".")[0] == "train" for m in c)]
    assert not found, "import cycles:\n" + _shown(found)
