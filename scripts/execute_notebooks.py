"""Execute the book's notebooks and store their outputs in the ``.ipynb`` files.

The book is built with ``execute_notebooks: "off"``: what the rendered book shows is what this
script stored. Each notebook runs top to bottom in a fresh ``python3`` kernel (the interpreter
running this script, i.e. the project's venv) with an empty temporary folder as working directory,
as a chapter opened alone (Colab, a downloaded notebook) runs and as CI runs it
(``tests/test_chapters_alone.py``): a chapter reads nothing next to itself, only the installed
library and its shipped data. Widget state (tqdm bars, sliders) is stored so the book renders it.

Usage (from the repository root)::

    python scripts/execute_notebooks.py book/03_particle_flows.ipynb   # run one, store outputs
    python scripts/execute_notebooks.py                                # run every book/*.ipynb
    python scripts/execute_notebooks.py --check                        # run all, write nothing

Exit status 1 if any notebook fails; the failing cell and error are reported.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
KERNEL = "python3"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}


def _clean(nb: nbformat.NotebookNode) -> None:
    """Drop volatile metadata so that re-running a notebook gives a small diff."""
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type == "code":
            cell.metadata.pop("collapsed", None)


def _failed_cell(nb: nbformat.NotebookNode) -> str:
    """Index and first source line of the last code cell that produced an error output."""
    for i, cell in reversed(list(enumerate(nb.cells))):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {i} ({first[:60]!r}): {out.get('ename')}: {out.get('evalue')}"
    return "unknown cell"


def execute(path: Path, *, timeout: int, write: bool) -> tuple[bool, float, str]:
    """Run one notebook in a fresh kernel (cwd: an empty temporary folder); return (ok, seconds, message)."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="gwf-chapter-") as cwd:
            NotebookClient(
                nb,
                timeout=timeout,
                kernel_name=KERNEL,
                resources={"metadata": {"path": cwd}},
                record_timing=False,
                store_widget_state=True,
            ).execute()
    except CellTimeoutError as err:
        return False, time.perf_counter() - start, f"a cell ran longer than {timeout} s: {err}"
    except CellExecutionError:
        return False, time.perf_counter() - start, _failed_cell(nb)
    except DeadKernelError as err:
        return False, time.perf_counter() - start, f"the kernel died: {err}"
    seconds = time.perf_counter() - start
    if write:
        _clean(nb)
        nbformat.validate(nb)
        nbformat.write(nb, path)
    return True, seconds, "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: every book/*.ipynb)"
    )
    parser.add_argument(
        "--timeout", type=int, default=900, help="seconds allowed per cell (default 900)"
    )
    parser.add_argument(
        "--check", action="store_true", help="only execute and report failures; write nothing"
    )
    args = parser.parse_args(argv)

    paths = args.notebooks or sorted(BOOK.glob("*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    failures = []
    for path in paths:
        path = path.resolve()
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"FAIL {path}: not a notebook file", flush=True)
            failures.append(path)
            continue
        ok, seconds, message = execute(path, timeout=args.timeout, write=not args.check)
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        action = "checked" if args.check else "executed and saved"
        if ok:
            print(f"ok   {rel}: {action} in {seconds:.1f} s", flush=True)
        else:
            print(f"FAIL {rel} after {seconds:.1f} s: {message}", flush=True)
            failures.append(path)
    if failures:
        print(f"{len(failures)} of {len(paths)} notebook(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
