"""Every public callable of the library says where it is used, and the link is true.

A docstring's "Used in:" paragraph (up to the next blank line) names chapters ("chapter 3", "chapters 4
and 11", "chapters 3-5") and library objects (``module.name`` or :func:`~gwf_tutorial.module.name`).
Each chapter it names, and each appendix page ("the solvers appendix": book/appendix_solvers.ipynb), must
call the object in its code cells (``module.name`` or an import of the name from its module); each library
object it names must exist and contain the name in its source; each file under ``benchmarks/`` it names
must exist and contain the name. At least one link per paragraph.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
PACKAGE = "gwf_tutorial"

# Modules rebuilt by other parts of issue 18 at the same time; their docstrings are checked once the
# rebuild lands (remove a module from this list to check it).
NOT_YET_CHECKED: set[str] = set()
# Public but called by no chapter and no library function (only by the tests): candidates for leaving
# ``__all__``. Their "Used in" says so, and the test below keeps this list true.
UNUSED = {"jko.saddle_objective"}
MODULES = sorted(
    p.stem
    for p in (ROOT / PACKAGE).glob("*.py")
    if not p.stem.startswith("_") and p.stem not in NOT_YET_CHECKED
)

USED_IN = re.compile(r"^[ \t]*Used in:(.*?)(?:\n[ \t]*\n|\Z)", re.S | re.M)
CHAPTERS = re.compile(r"\bchapters?\s+(\d+(?:\s*(?:,|and|-|–)\s*\d+)*)")
ROLE = re.compile(r":(?:func|class|meth|mod|data|attr):`~?([\w.]+)`|``(\w+\.[\w.]+)``")
SCRIPT = re.compile(r"\b(benchmarks/\w+\.py)\b")
APPENDIX = re.compile(r"\bthe (\w+) appendix\b")


def _chapter_code(number: int) -> str:
    paths = sorted(BOOK.glob(f"{number:02d}_*.ipynb"))
    assert len(paths) == 1, f"no chapter {number} in book/"
    nb = json.loads(paths[0].read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def _chapters(text: str) -> set[int]:
    numbers: set[int] = set()
    for group in CHAPTERS.findall(text):
        for part in re.split(r"\s*(?:,|and)\s*", group):
            ends = [int(n) for n in re.split(r"\s*[-–]\s*", part)]
            numbers.update(range(ends[0], ends[-1] + 1))
    return numbers


def _calls(code: str, module: str, name: str) -> bool:
    """Whether ``code`` calls ``module.name``, or the same object through a module that re-exports it."""
    obj = getattr(importlib.import_module(f"{PACKAGE}.{module}"), name)
    for alias in MODULES:
        if getattr(importlib.import_module(f"{PACKAGE}.{alias}"), name, None) is not obj:
            continue
        if re.search(rf"\b{alias}\.{name}\b", code):
            return True
        imported = re.search(
            rf"^\s*from\s+{PACKAGE}\.{alias}\s+import\s+\(?([^)#\n]*(?:\n[^)#]*)*?)\)?$", code, re.M
        )
        if imported and re.search(rf"\b{name}\b", imported.group(1)):
            return True
    return False


def _resolve(ref: str):
    """The library object a reference names (``module.name``, ``gwf_tutorial.module.name.attr``), or None."""
    parts = ref.removeprefix(f"{PACKAGE}.").split(".")
    try:
        obj = importlib.import_module(f"{PACKAGE}.{parts[0]}")
    except ImportError:
        return None
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _source(ref: str, target) -> str:
    """Source of a function, class or module; for a module-level table, its assignment statement."""
    if inspect.ismodule(target) or inspect.isclass(target) or inspect.isroutine(target):
        return inspect.getsource(target)
    module, _, attr = ref.removeprefix(f"{PACKAGE}.").rpartition(".")
    text = (ROOT / PACKAGE / f"{module}.py").read_text()
    for node in ast.parse(text).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == attr for t in targets):
            return ast.get_source_segment(text, node)
    return ""


def _public():
    for module in MODULES:
        mod = importlib.import_module(f"{PACKAGE}.{module}")
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if callable(obj) and getattr(obj, "__module__", None) == mod.__name__:
                yield pytest.param(module, name, obj, id=f"{module}.{name}")


@pytest.mark.parametrize(("module", "name", "obj"), list(_public()))
def test_used_in_links_are_true(module, name, obj):
    doc = inspect.getdoc(obj) or ""
    if f"{module}.{name}" in UNUSED:
        assert "Used in: no chapter and no library function" in doc
        users = [p.name for p in (ROOT / PACKAGE).glob("*.py") if p.stem != module and name in p.read_text()]
        users += [n for n in range(1, 12) if _calls(_chapter_code(n), module, name)]
        assert not users, f"{module}.{name} is used now ({users}): remove it from UNUSED, link the users"
        return
    match = USED_IN.search(doc)
    assert match, f"{module}.{name}: no 'Used in:' line in its docstring"
    text = " ".join(match.group(1).split())
    chapters = _chapters(text)
    refs = [a or b for a, b in ROLE.findall(text)]
    scripts = SCRIPT.findall(text)
    intro = "the introduction" in text  # book/intro.ipynb, the unnumbered opening chapter
    appendices = APPENDIX.findall(text)  # "the solvers appendix" -> book/appendix_solvers.ipynb
    assert chapters or refs or scripts or intro or appendices, (
        f"{module}.{name}: 'Used in:{text}' names no chapter or user"
    )
    for page in appendices:
        path = BOOK / f"appendix_{page}.ipynb"
        assert path.exists(), f"{module}.{name}: 'Used in' names {path.name}, which does not exist"
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                         if c["cell_type"] == "code")  # fmt: skip
        assert _calls(code, module, name), f"{module}.{name}: the {page} appendix never calls it"
    if intro:
        code = "\n".join("".join(c["source"]) for c in json.loads((BOOK / "intro.ipynb").read_text())["cells"]
                         if c["cell_type"] == "code")  # fmt: skip
        assert _calls(code, module, name), f"{module}.{name}: the introduction never calls it"
    for number in sorted(chapters):
        assert _calls(_chapter_code(number), module, name), (
            f"{module}.{name}: chapter {number} never calls it"
        )
    for ref in refs:
        target = _resolve(ref)
        assert target is not None, f"{module}.{name}: 'Used in' names {ref}, which does not exist"
        source = _source(ref, target)
        assert re.search(rf"\b{name}\b", source), f"{module}.{name}: {ref} does not use it"
    for script in scripts:
        path = ROOT / script
        assert path.exists() and re.search(rf"\b{name}\b", path.read_text()), f"{module}.{name}: {script}"


def test_no_reference_to_files_outside_the_repository():
    """The project's notes are not part of the repository: the library, the chapters, the tests, the
    benchmarks and their reports never cite them."""
    globs = ("gwf_tutorial/*.py", "book/*.ipynb", "tests/*.py", "benchmarks/*.py", "benchmarks/results/*.md",
             "scripts/*.py", "*.md")
    for path in sorted(p for g in globs for p in ROOT.glob(g) if p.name != "test_docstrings.py"):
        text = path.read_text()
        assert not re.search(r"\b(?:DESIGN|MATH|SETUP|STYLE)\.md\b", text), f"{path.name} cites a note"
