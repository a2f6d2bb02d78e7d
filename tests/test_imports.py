"""The import graph of hybrid_asd: no cycles, and no import inside a function except of a heavy or
optional library (directly, or through a hybrid_asd module that loads one), with a comment saying why.

Imports inside functions count as edges too, so a cycle cannot hide behind one; imports under
``if TYPE_CHECKING:`` never run and are left out.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hybrid_asd"
# Libraries that take long to import (torch ~2 s, timm ~3 s, scikit-learn/scipy ~1 s, matplotlib),
# or are optional, or open network stacks: loading them lazily keeps light commands light.
HEAVY = {"torch", "torchvision", "timm", "faiss", "matplotlib", "sklearn", "scipy", "zuko", "nflows", "umap", "ray",
         "requests", "pooch", "librosa", "pandas"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(path: Path) -> list[tuple[ast.stmt, bool]]:
    """(import statement, inside a function) of a module, TYPE_CHECKING blocks left out."""
    out: list[tuple[ast.stmt, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_block(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append((child, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text()), False)
    return out


def targets(node: ast.stmt) -> list[str]:
    """Imported module names (``from a import b`` is ``a.b`` when that is a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level or not node.module:
        return []
    return [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names]


def graph(*, top_level_only: bool) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        found = set()
        for node, in_function in imports(path):
            if top_level_only and in_function:
                continue
            found.update(targets(node))
        edges[name] = found - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), among hybrid_asd modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v] & set(MODULES):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(MODULES)))
    try:
        for v in sorted(edges):
            if v not in index:
                connect(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def heavy_modules() -> set[str]:
    """hybrid_asd modules whose import (top-level imports, followed through hybrid_asd) loads a heavy library."""
    edges = graph(top_level_only=True)
    heavy = {m for m, out in edges.items() if any(t.split(".")[0] in HEAVY for t in out)}
    changed = True
    while changed:
        changed = False
        for m, out in edges.items():
            if m not in heavy and out & heavy:
                heavy.add(m)
                changed = True
    return heavy


def test_no_import_cycles_inside_the_package():
    assert cycles(graph(top_level_only=False)) == []


def test_the_cycle_finder_finds_a_cycle():
    edges = {name: set() for name in MODULES}
    first, second = sorted(MODULES)[:2]
    edges[first], edges[second] = {second}, {first}
    assert cycles(edges) == [sorted([first, second])]


def test_imports_inside_functions_are_of_heavy_libraries_and_say_why():
    heavy = heavy_modules()
    problems = []
    for name, path in sorted(MODULES.items()):
        lines = path.read_text().splitlines()
        for node, in_function in imports(path):
            if not in_function:
                continue
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            for target in targets(node):
                if target.split(".")[0] not in HEAVY and target not in heavy:
                    problems.append(f"{where}: {target} is light; import it at the top of the module")
            commented = "#" in lines[node.lineno - 1] or lines[node.lineno - 2].strip().startswith("#")
            if not commented:
                problems.append(f"{where}: a lazy import needs a comment saying why")
    assert problems == []


def test_config_loading_and_the_cli_parser_stay_free_of_heavy_libraries():
    heavy = heavy_modules()
    for light in ("hybrid_asd.config", "hybrid_asd.cli", "hybrid_asd.stages", "hybrid_asd.pipeline",
                  "hybrid_asd.experiment"):
        assert light not in heavy, f"importing {light} loads a heavy library"
