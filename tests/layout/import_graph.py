"""The import graph of a source tree, read with `ast` (nothing is imported), and the circles in it.

Every `import` and `from ... import` counts, at module level and inside functions alike, and so do
imports under `if TYPE_CHECKING:`: a function-level import that closes a circle only moves the
failure to the first call, and a type-only one still means the two modules are one unit to read.
`from package import name` counts as importing `package.name` where that is a module of the tree,
and `package` otherwise (its `__init__` runs either way, but the parent packages of an imported
module are not edges: Python runs them first and they are done by then).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path


def modules_under(root: Path, package_dirs: Iterable[Path]) -> dict[str, Path]:
    """Dotted name -> file, for every .py file under each folder (names relative to `root`)."""
    found: dict[str, Path] = {}
    for folder in package_dirs:
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imported(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets = set()
        for imported in _imported(tree, name, path.name == "__init__.py"):
            if imported in modules:
                targets.add(imported)
        # `from a import b` names both `a` and `a.b`: where `a.b` is a module, `a` itself is only its parent.
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)
                       or _names_attribute(tree, t, modules)} - {name}
    return graph


def _names_attribute(tree: ast.AST, package: str, modules: dict[str, Path]) -> bool:
    """Whether some `from package import x` takes an x that is not a module (so `package` runs for it)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == package and not node.level:
            if any(f"{package}.{alias.name}" not in modules for alias in node.names):
                return True
        if isinstance(node, ast.Import) and any(alias.name == package for alias in node.names):
            return True
    return False


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of two or more modules, as one circle through it (a -> b -> ... -> a)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan's algorithm, iterative (deep graphs would hit the recursion limit)
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return [_path_through(graph, set(group)) for group in sorted(groups)]


def _path_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest circle from the group's first module back to itself, inside the group (breadth-first)."""
    start = min(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & group):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no circle through {start}")  # a strongly connected group always has one
