"""The import graph of facepic/ and workers/, read from the source with ``ast``: no cycles, leaves
that stay leaves, and a ``Job`` that does not bring the database with it.

Every import counts wherever it is written: at the top of a module, inside a function (a
command's or a worker's late import runs too, and a cycle through it fails the day it runs in
another order), in a package's ``__init__``. Imports under ``if TYPE_CHECKING:`` do not count:
they never run, and annotations (``from __future__ import annotations``) stay strings.

An edge goes to the module an import names: ``from facepic.pipeline import job`` to
``facepic.pipeline.job`` (a submodule), ``from facepic.context import Context`` to
``facepic.context``, a relative import to the module it resolves to. Loading a submodule runs
its package's ``__init__`` first, but that is no edge here: a package that imports its own
submodules (``facepic.cli`` registers its commands) makes a cycle only with a submodule that
imports names back from it, which is an edge, and fails.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parent.parent
PACKAGES = ("facepic", "workers")
# Modules every other one may stand on: they reach nothing but each other.
LEAVES = {
    "facepic",
    "facepic.settings",
    "facepic.ids",
    "facepic.errors",
    "facepic.documents",
    "facepic.quality",  # a face's quality, stored in its document
    "facepic.datafolder",  # the data folder's layout, a setting's
    "facepic.statuses",  # the ledger's statuses and skip kinds, read by scan, planner, ledger and the CLI
}


def module_files() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) for every module of PACKAGES."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    nodes: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node.test):
            stack.extend(node.orelse)  # the else branch runs
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            nodes.append(node)
        else:
            stack.extend(ast.iter_child_nodes(node))
    return nodes


def imports_of(source: str, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the module ``name`` imports (see the module docstring)."""
    here = name if is_package else name.rpartition(".")[0]
    targets: list[str] = []
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
            continue
        base = node.module or ""
        if node.level:
            parts = here.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
        targets += [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    edges = set()
    for target in targets:
        while target and target not in modules:  # `import facepic.x.y` names facepic.x.y
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {
        name: imports_of(path.read_text(), name, is_package, set(files)) for name, (path, is_package) in files.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's, without recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _describe(graph: dict[str, set[str]], component: list[str]) -> str:
    return "\n".join(f"  {m} -> {', '.join(sorted(graph[m] & set(component)))}" for m in component)


def test_no_module_imports_itself_through_others() -> None:
    graph = import_graph()
    assert len(graph) > 60 and graph["facepic.runner"]  # the walk found the modules and their imports
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n\n".join(_describe(graph, c) for c in found)


def test_the_leaves_reach_nothing_above_them() -> None:
    graph = import_graph()
    for leaf in sorted(LEAVES):
        reached, todo = set(), [leaf]
        while todo:
            for target in graph[todo.pop()] - reached:
                reached.add(target)
                todo.append(target)
        assert reached <= LEAVES, f"{leaf} reaches {sorted(reached - LEAVES)}"


def test_every_import_is_one_the_graph_can_see() -> None:
    """An import by a computed name (``importlib.import_module``, ``__import__``) would hide an
    edge from the walk above."""
    hidden = []
    for name, (path, _) in module_files().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                called = ast.unparse(node.func)
                if called.endswith("import_module") or called == "__import__":
                    hidden.append(f"{name}:{node.lineno} {called}")
    assert not hidden


def test_the_walk_resolves_what_python_would_import() -> None:
    modules = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "other"}
    probe = (
        "from typing import TYPE_CHECKING\n"
        "from . import a\n"  # a submodule, relatively
        "from .b import NAME\n"
        "import other.thing\n"  # not a module of ours: its package
        "if TYPE_CHECKING:\n"
        "    from pkg.sub import c\n"  # never runs
        "else:\n"
        "    import json\n"
        "def late():\n"
        "    from pkg.sub import c, helper\n"  # a submodule and a name of the package
    )
    assert imports_of(probe, "pkg.x", False, modules) == {"pkg.a", "pkg.b", "other", "pkg.sub.c", "pkg.sub"}
    assert imports_of("from . import c\nfrom .. import a\n", "pkg.sub", True, modules) == {"pkg.sub.c", "pkg.a"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_importing_a_job_loads_no_database_nor_any_stage() -> None:
    code = (
        "import sys\n"
        "from facepic.pipeline.job import Job\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('facepic', 'pymongo', 'bson', 'numpy')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == str(["facepic", "facepic.ids", "facepic.pipeline", "facepic.pipeline.job"])
