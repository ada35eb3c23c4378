"""The runtime line that ``scripts/execute_notebooks.py`` writes under a chapter's title."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "scripts" / "execute_notebooks.py")
execute_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(execute_notebooks)


def _notebook(first: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(first), nbformat.v4.new_code_cell("x = 1")]
    return nb


def test_runtime_line_goes_under_the_colab_link_and_is_replaced_not_repeated():
    nb = _notebook("# 3. Particle flows\n\n[Open in Colab](https://colab.example/03.ipynb)\n\nWhy particles.")
    execute_notebooks.set_runtime_line(nb, 42.4)
    first = nb.cells[0].source
    assert first.splitlines()[2:6] == [
        "[Open in Colab](https://colab.example/03.ipynb)", "",
        "*Running this chapter takes about 42 s of CPU time (measured when its outputs were stored by "
        "`scripts/execute_notebooks.py`).*", ""]
    assert first.endswith("Why particles.")
    execute_notebooks.set_runtime_line(nb, 1234.0)
    assert nb.cells[0].source.count("Running this chapter") == 1
    assert "about 1230 s of CPU time" in nb.cells[0].source


def test_a_page_without_a_chapter_number_says_page():
    nb = _notebook("# How the library is built\n\n[Open in Colab](https://colab.example/library.ipynb)")
    execute_notebooks.set_runtime_line(nb, 3.14)
    assert nb.cells[0].source.endswith("*Running this page takes about 3.1 s of CPU time (measured when its "
                                       "outputs were stored by `scripts/execute_notebooks.py`).*\n")
