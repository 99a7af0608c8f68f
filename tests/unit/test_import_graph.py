"""The ground floor has no import circle: every ``bench`` module can be understood before the ones that use it.

Imports under ``if TYPE_CHECKING:`` are for annotations only and do not count; imports inside functions do.
"""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _runtime_imports(tree: ast.AST) -> set[str]:
    """Modules a source imports when it runs (any depth), ``if TYPE_CHECKING:`` blocks left out."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def bench_graph() -> dict[str, set[str]]:
    modules = {f"bench.{p.stem}": p for p in BENCH.glob("*.py") if p.stem != "__init__"}
    return {name: {m for m in _runtime_imports(ast.parse(path.read_text())) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_type_checking_imports_do_not_count():
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import bench.api\ndef f():\n    import bench.data\n"
    assert _runtime_imports(ast.parse(src)) == {"typing", "typing.TYPE_CHECKING", "bench.data"}


def test_bench_has_no_import_circle():
    graph = bench_graph()
    assert "bench.train" in graph["bench.api"]  # the graph sees imports inside functions
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
