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

Exit status 1 if any notebook fails; the failing cell and error are reported. When it stores outputs, it
also measures the kernel's CPU time and writes it into the notebook's first markdown cell (the runtime line
under the title, which a reader sees before running the chapter) and into
``benchmarks/results/chapter_runtimes.json`` with the machine it was measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
KERNEL = "python3"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}
RUNTIMES = ROOT / "benchmarks" / "results" / "chapter_runtimes.json"
RUNTIME_LINE = re.compile(r"^\*Running this (?:chapter|page) takes about .*$\n?", re.M)
COLAB_LINE = re.compile(r"^\[Open in Colab\]\(.*\)$", re.M)


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children, the kernels among them."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def set_runtime_line(nb: nbformat.NotebookNode, cpu_seconds: float) -> None:
    """Write (or replace) the runtime line under the Colab link of the first markdown cell."""
    cell = next(c for c in nb.cells if c.cell_type == "markdown")
    rounded = f"{cpu_seconds:.2g}" if cpu_seconds < 100 else f"{round(cpu_seconds, -1):.0f}"
    kind = "chapter" if re.match(r"#\s*\d+\.", cell.source) else "page"
    line = (f"*Running this {kind} takes about {rounded} s of CPU time (measured when its outputs were "
            f"stored by `scripts/execute_notebooks.py`).*\n")
    source = RUNTIME_LINE.sub("", cell.source)
    colab = COLAB_LINE.search(source)
    at = colab.end() + 1 if colab else len(source)
    rest = source[at:].lstrip("\n")
    cell.source = source[:at].rstrip("\n") + "\n\n" + line + ("\n" + rest if rest.strip() else "")


def _record_runtime(path: Path, cpu_seconds: float, wall_seconds: float) -> None:
    data = json.loads(RUNTIMES.read_text()) if RUNTIMES.exists() else {}
    data[path.name] = {"cpu_seconds": round(cpu_seconds, 1), "wall_seconds": round(wall_seconds, 1),
                       "date": date.today().isoformat(), "machine": platform.machine(),
                       "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    RUNTIMES.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


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
    start, cpu_start = time.perf_counter(), _children_cpu()
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
    seconds, cpu_seconds = time.perf_counter() - start, _children_cpu() - cpu_start
    if write:
        set_runtime_line(nb, cpu_seconds)
        _record_runtime(path, cpu_seconds, seconds)
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
