"""The library stays readable in an afternoon: its size, and the size of each function and class.

Sizes are ast line spans (``end_lineno - lineno + 1``, docstrings included, decorators excluded).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gwf_tutorial"
MAX_FUNCTION, MAX_CLASS = 80, 300
FILES = sorted(PACKAGE.glob("*.py"))


def _spans(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_functions_and_classes_are_short(path):
    too_long = [f"{node.name} ({n} lines)" for node, n in _spans(path)
                if n > (MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION)]
    assert not too_long, f"{path.name}: too long (limits {MAX_FUNCTION} / {MAX_CLASS}): {too_long}"


def test_no_import_cycle():
    imports = {}
    for path in FILES:
        tree = ast.parse(path.read_text())
        deps = set()
        for node in tree.body:  # module-level imports only (a function-level import is a deliberate late one)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gwf_tutorial"):
                deps.add(node.module.split(".")[1] if "." in node.module else None)
                if node.module == "gwf_tutorial":
                    deps |= {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gwf_tutorial.")}
        imports[path.stem] = {d for d in deps if d and d != path.stem and (PACKAGE / f"{d}.py").exists()}

    def visit(module, stack):
        assert module not in stack, "import cycle: " + " -> ".join([*stack, module])
        for dep in sorted(imports.get(module, ())):
            visit(dep, [*stack, module])

    for module in imports:
        visit(module, [])


# The library stays within the 10 000 lines a reader can read in an afternoon.
MAX_TOTAL_LINES = 10_000


def test_library_total_size():
    total = sum(len(path.read_text().splitlines()) for path in FILES)
    assert total <= MAX_TOTAL_LINES, f"gwf_tutorial/*.py has {total} lines, over {MAX_TOTAL_LINES}"
