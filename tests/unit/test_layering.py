"""``bench`` is the ground floor: no module in it imports, or names by string, a package above it (the
components in ``defenses`` and ``attacks``, ``leaderboard``, ``reproductions``, the ``wmbench`` command line).

A string names an upper package when it is a module path or a file path in one (``"defenses.mea_defender"``,
``"defenses.mea_defender:explain_reproduction"``, ``"defenses/content.py"``), or when it is the bare package
name handed to the import machinery (``importlib.import_module("defenses")``) or listed among others as a
package (``("defenses", "attacks")``). A bare word elsewhere (the results folder ``"reproductions"``, a phase
called ``"attacks"``, the program name ``"wmbench"`` in a message) is not a reference to the package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UPPER = ("defenses", "attacks", "leaderboard", "reproductions", "wmbench")
_PATH = re.compile(rf"^({'|'.join(UPPER)})[.:/]\S*$")  # a module, attribute or file inside an upper package
_IMPORTERS = {"import_module", "__import__", "find_spec", "walk_packages", "iter_modules", "files"}

# (file, enclosing function or "<module>", string): the references bench makes today that this test lets
# through, each for a reason. Remove an entry when its code stops naming the package (the test says so).
EXEMPT = {
    # bench/registry.py's discovery of the components: DEFENSES and ATTACKS import every module of the
    # built-in "defenses" and "attacks" packages, found beside bench (a shadowing package of that name is an
    # error), and read the plugin entry-point groups "wmbench.defenses" and "wmbench.attacks". Discovery is
    # how the ground floor learns what sits above it without importing it.
    ("bench/registry.py", "<module>", "defenses"),
    ("bench/registry.py", "<module>", "attacks"),
    ("bench/registry.py", "<module>", "wmbench.defenses"),
    ("bench/registry.py", "<module>", "wmbench.attacks"),
}


def _is_upper(module: str) -> bool:
    return module.split(".")[0] in UPPER


def _references(path: Path) -> list[tuple[str, int, str]]:
    """(enclosing function or "<module>", line, what) for every import of, or string naming, an upper package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int, str]] = []

    def visit(node: ast.AST, scope: str, parent: ast.AST | None) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = node.name
        if isinstance(node, ast.Import):
            found.extend((scope, node.lineno, a.name) for a in node.names if _is_upper(a.name))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_upper(node.module):
            found.append((scope, node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            s = node.value
            bare = s in UPPER and (
                isinstance(parent, ast.Tuple | ast.List | ast.Set)
                or (isinstance(parent, ast.Call) and node in parent.args
                    and getattr(parent.func, "attr", getattr(parent.func, "id", None)) in _IMPORTERS))
            if _PATH.match(s) or bare:
                found.append((scope, node.lineno, s))
        for child in ast.iter_child_nodes(node):
            visit(child, scope, node)

    visit(tree, "<module>", None)
    return found


def test_the_scanner_sees_every_way_of_naming_an_upper_package(tmp_path):
    src = tmp_path / "probe.py"
    src.write_text("import defenses.content\nfrom attacks import x\nimport importlib\n"
                   "def f():\n    from leaderboard.render import render\n"
                   "    importlib.import_module('reproductions')\n"
                   "    return 'defenses.mea_defender:explain_reproduction', f'wmbench.{f}', ('attacks', 'bench')\n"
                   "OK = ('reproductions is a folder', 'wmbench: warning', 'wmbench[dask]', 'wmbench-x')\n"
                   "out = root / 'reproductions'\n"
                   "print('x', 'attacks')\n", encoding="utf-8")
    assert {(scope, what) for scope, _, what in _references(src)} == {
        ("<module>", "defenses.content"), ("<module>", "attacks"), ("f", "leaderboard.render"),
        ("f", "reproductions"), ("f", "defenses.mea_defender:explain_reproduction"), ("f", "wmbench."),
        ("f", "attacks")}


def test_bench_names_no_package_above_it():
    seen, breaches = set(), []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for scope, line, what in _references(path):
            if (rel, scope, what) in EXEMPT:
                seen.add((rel, scope, what))
            else:
                breaches.append(f"{rel}:{line} ({scope}) names {what!r}")
    assert not breaches, "bench/ is the ground floor; it may not import or name these:\n" + "\n".join(breaches)
    stale = EXEMPT - seen
    assert not stale, f"these exemptions no longer match any code; remove them from EXEMPT: {sorted(stale)}"
