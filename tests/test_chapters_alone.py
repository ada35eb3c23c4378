"""Every chapter runs alone: copied into an empty folder, it executes top to bottom under nbval.

This is how a reader runs a chapter from its "Open in Colab" button or as a downloaded notebook:
nothing of the repository next to it, only the installed library (and the results it ships). Each
``book/*.ipynb`` is copied into an empty temporary folder (pytest's ``tmp_path``, nothing else in
it) and run there by ``python -m pytest --nbval-lax`` in a subprocess, with the repository's output
sanitizers, an empty configuration (so ``pyproject.toml``'s ``addopts`` do not apply) and that
folder as root directory. Under ``--nbval-lax`` every cell must run without error and the cells
tagged ``nbval-check-output`` must reproduce their stored outputs (the key numbers of the chapter).

This is the only place where ``python -m pytest`` executes the notebooks (``testpaths`` is
``["tests"]``), so each runs once; ``python -m pytest book/<chapter>.ipynb`` still runs one chapter
in place, with the same options (``addopts``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))
SANITIZE = ROOT / "nbval_sanitize.cfg"
TAIL = 6000  # characters of the subprocess's output shown when a chapter fails


def run_alone(notebook: Path, folder: Path, ini_dir: Path, timeout: float = 3600):
    """Copy ``notebook`` into the empty ``folder`` and run it there under nbval-lax, in a subprocess.

    ``ini_dir``: a folder (not ``folder``) for the empty pytest configuration file.
    """
    assert folder.is_dir() and not any(folder.iterdir()), f"{folder} is not an empty folder"
    copy = folder / notebook.name
    shutil.copyfile(notebook, copy)
    ini = ini_dir / "pytest.ini"
    ini.write_text("[pytest]\n")  # empty: no addopts, testpaths or conftest of the repository
    cmd = [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-sanitize-with", str(SANITIZE),
        "-p", "no:cacheprovider", "-c", str(ini), "--rootdir", str(folder), "-q", "-rfE", str(copy),
    ]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # as .ci/run: one torch thread per kernel on a small runner
    return subprocess.run(
        cmd, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout
    )


def _tail(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout[-TAIL:]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_runs_alone_in_an_empty_folder(notebook, tmp_path, tmp_path_factory):
    proc = run_alone(notebook, tmp_path, tmp_path_factory.mktemp("ini"))
    assert proc.returncode == 0, (
        f"{notebook.name}, run alone in an empty folder, failed (exit {proc.returncode}):\n{_tail(proc)}"
    )
    assert " passed" in proc.stdout, f"no cell of {notebook.name} was run:\n{_tail(proc)}"


def _tiny_notebook(stored: str) -> dict:
    """Two cells: one unchecked, one tagged nbval-check-output whose stored output is ``stored``."""

    def cell(source, output, tags=()):
        out = [{"name": "stdout", "output_type": "stream", "text": [output]}]
        n = 1 + len(tags)
        return dict(cell_type="code", execution_count=n, id=f"c{n}", metadata={"tags": list(tags)},
                    outputs=out, source=[source])  # fmt: skip

    return dict(
        cells=[cell("print(41)", "not compared\n"), cell("print(6 * 7)", stored, ("nbval-check-output",))],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        nbformat=4, nbformat_minor=5,
    )  # fmt: skip


@pytest.mark.parametrize("stored, ok", [("42\n", True), ("43\n", False)])
def test_the_run_compares_the_checked_outputs(stored, ok, tmp_path, tmp_path_factory):
    """The command above fails when a tagged cell's output differs from the stored one, and only then."""
    src = tmp_path_factory.mktemp("src") / "tiny.ipynb"
    src.write_text(json.dumps(_tiny_notebook(stored)))
    proc = run_alone(src, tmp_path, tmp_path_factory.mktemp("ini"), timeout=300)
    assert (proc.returncode == 0) == ok, _tail(proc)
    if not ok:  # the checked cell differs; the unchecked one (stored output not its own) passes
        assert "1 failed, 1 passed" in proc.stdout, _tail(proc)
        assert "Cell 1: Cell outputs differ" in proc.stdout, _tail(proc)
