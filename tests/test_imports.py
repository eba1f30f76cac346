"""No import cycle among budget_graph's modules, counting every import statement.

Imports inside functions and under ``TYPE_CHECKING`` count too: they are how a cycle
hides, and a module that needs one names a dependency that points back at it.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import budget_graph

ROOT = Path(budget_graph.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """budget_graph modules ``path`` imports (a ``from pkg import sub`` names the submodule)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:
                    found.add(sub)
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each budget_graph module and the budget_graph modules it imports."""
    paths = sorted(ROOT.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def test_import_graph_sees_the_modules():
    graph = import_graph()
    assert "budget_graph.budgeted" in graph["budget_graph"]
    assert "budget_graph.lifecycle" in graph["budget_graph.budgeted"]
    assert "budget_graph.protocol" in graph["budget_graph.meter"]
    assert len(graph) > 40


def test_no_import_cycles():
    graph = import_graph()
    # A package's __init__ re-exports its modules; a module importing a sibling through
    # the package is an edge to the __init__, so cycles through __init__ count as well.
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_every_module_opens_with_a_docstring():
    # STYLE.md: each module's first line says what it is for.
    missing = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(text))
        opens = text.lstrip("rRuU").startswith(('"""', "'''"))
        if not (opens and doc and doc.splitlines()[0].strip()):
            missing.append(str(path.relative_to(ROOT.parent)))
    assert not missing, f"modules without a first-line docstring: {missing}"


def test_every_module_is_at_most_400_lines():
    # STYLE.md: modules stay small; split by concept when they grow.
    lines = {
        str(p.relative_to(ROOT.parent)): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(ROOT.rglob("*.py"))
    }
    long = {name: n for name, n in lines.items() if n > 400}
    assert not long, f"modules over 400 lines: {long}"
