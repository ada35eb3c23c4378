"""No block of six or more lines of code appears twice in the library.

Docstrings, imports, comments and blank lines aside.

A repeated block is a missing function: the check compares every window of six consecutive code lines
(stripped of indentation) across all modules of ``gwf_tutorial``.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gwf_tutorial"
WINDOW = 6


def _skipped_lines(tree: ast.AST) -> set[int]:
    """Lines of docstrings and import statements (two modules may import the same names)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            lines |= set(range(node.lineno, node.end_lineno + 1))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                lines |= set(range(first.lineno, first.end_lineno + 1))
    return lines


def code_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped code)`` of every code line: no docstring, import, comment or blank line."""
    text = path.read_text()
    skip = _skipped_lines(ast.parse(text))
    comments = {tok.start[0]: tok.start[1] for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT}
    out = []
    for no, line in enumerate(text.splitlines(), 1):
        if no in skip:
            continue
        code = line[: comments[no]] if no in comments else line
        if code.strip():
            out.append((no, code.strip()))
    return out


def repeated_blocks(paths) -> list[str]:
    seen: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in paths:
        lines = code_lines(path)
        for i in range(len(lines) - WINDOW + 1):
            block = tuple(code for _, code in lines[i:i + WINDOW])
            seen[block].append(f"{path.name}:{lines[i][0]}")
    return [" and ".join(places) + ":\n    " + "\n    ".join(block)
            for block, places in seen.items() if len(places) > 1]


def test_no_block_of_six_lines_appears_twice():
    found = repeated_blocks(sorted(PACKAGE.glob("*.py")))
    assert not found, f"{len(found)} repeated blocks of {WINDOW} code lines:\n" + "\n".join(found[:20])


def test_the_check_finds_a_repeated_block(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(WINDOW))
    (tmp_path / "a.py").write_text(f'def f():\n    """Doc."""\n{body}\n')
    (tmp_path / "b.py").write_text(f"def g():  # comment\n{body}\n    return 1\n")
    assert len(repeated_blocks([tmp_path / "a.py", tmp_path / "b.py"])) == 1
