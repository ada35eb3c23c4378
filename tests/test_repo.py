"""Repository-level checks: the book's table of contents, chapter conventions, citations, the API
page, the README's commands, CI and the GitHub Pages workflow (which cannot run here, so its YAML is
validated instead)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (CI runs 3.11)

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))
CHAPTERS = [p for p in NOTEBOOKS if re.match(r"\d\d_", p.name)]
COLAB_MARKER = '"google.colab" in sys.modules'
LOOP_MARKER = "# the loop in the open"


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _markdown(nb: dict) -> str:
    return "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "markdown")


def _code(nb: dict) -> list[str]:
    return [_source(c) for c in nb["cells"] if c["cell_type"] == "code"]


def _repository() -> str:
    """The repository URL: pyproject.toml's [project.urls] Repository, the one source of it."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def _install_command(nb: dict) -> str:
    """The pip command of a notebook's Colab install cell (its first code cell), without the ``%``."""
    pattern = r'^\s*%pip install (-q "gwf-tutorial(?:\[\w+\])? @ git\+[^"]+")\s*$'
    match = re.search(pattern, _code(nb)[0], re.M)
    assert match, "the Colab install cell has no `%pip install -q \"gwf-tutorial[...] @ git+URL\"` line"
    return f"pip install {match.group(1)}"


def _bib_keys() -> set[str]:
    text = (ROOT / "references.bib").read_text()
    return set(re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", text))


# ---------------------------------------------------------------- table of contents


def test_toc_lists_every_page_and_only_existing_ones():
    listed = _toc_files()
    assert len(listed) == len(set(listed)), "a page is listed twice in _toc.yml"
    for entry in listed:
        matches = [p for p in (ROOT / f"{entry}.ipynb", ROOT / f"{entry}.md") if p.exists()]
        assert matches, f"_toc.yml lists {entry!r} but neither .ipynb nor .md exists"
    pages = {str(p.relative_to(ROOT).with_suffix("")) for p in NOTEBOOKS + sorted(BOOK.glob("*.md"))}
    missing = pages - set(listed)
    assert not missing, f"pages in book/ missing from _toc.yml: {sorted(missing)}"


def test_chapters_are_listed_in_reading_order():
    listed = [f for f in _toc_files() if re.match(r"book/\d\d_", f)]
    assert listed == sorted(listed)


# ---------------------------------------------------------------- chapter conventions


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_conventions(path):
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    cells = nb["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    assert cells[0]["cell_type"] == "markdown" and _source(cells[0]).startswith("# ")
    # The first code cell installs the library on Colab only.
    assert COLAB_MARKER in _source(code[0]), "first code cell must be the Colab-only install cell"
    # Executed with outputs stored, in order, without errors.
    counts = [c["execution_count"] for c in code if _source(c).strip()]
    assert all(n is not None for n in counts), "notebook not fully executed"
    assert counts == sorted(counts), "cells were executed out of order"
    for c in code:
        for out in c.get("outputs", []):
            assert out["output_type"] != "error", f"stored error output: {_source(c)[:80]!r}"
    # At least one figure, and key numbers checked by nbval at the end.
    images = [
        o
        for c in code
        for o in c.get("outputs", [])
        if "data" in o and ("image/png" in o["data"] or "text/html" in o["data"])
    ]
    assert images, "no figure in the notebook"
    checked = [c for c in code if "nbval-check-output" in c["metadata"].get("tags", [])]
    assert checked, "no cell tagged nbval-check-output"
    assert checked[-1] is code[-1], "the last code cell must print the checked key numbers"
    assert all(c.get("outputs") for c in checked), "a checked cell has no output"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_structure(path):
    nb = _load(path)
    md = _markdown(nb)
    assert f"colab.research.google.com/github/{_repository().split('github.com/')[1]}/blob/" in md
    assert f"/book/{path.name})" in md, "chapter has no Open in Colab link to itself"
    assert re.search(r"^## Exercises", md, re.M), "chapter has no Exercises section"
    assert re.search(r"^## Summary", md, re.M), "chapter has no Summary section"
    assert re.search(r"\$\$\s*\(eq-[\w-]+\)", md), "chapter has no labelled equation"
    assert "{cite" in md, "chapter cites nothing"
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    assert "gwf_tutorial" in code
    assert re.search(r"^\s*assert ", code, re.M), "chapter checks no number with an assert"
    # Notebooks explain, the library computes: no models or training loops defined here. The one
    # exception is a short didactic loop, in a cell that opens with LOOP_MARKER, which the chapter
    # checks against the library call (torch.allclose) next to it.
    assert not re.search(r"^\s*class \w+", code, re.M), "a class is defined in a chapter"
    library_code = "\n".join(s for s in _code(nb) if not s.lstrip().startswith(LOOP_MARKER))
    assert ".backward(" not in library_code and "optim." not in library_code, "a training loop in a chapter"
    for loop in (s for s in _code(nb) if s.lstrip().startswith(LOOP_MARKER)):
        assert len(loop.strip().splitlines()) <= 40, "a loop in the open is longer than 40 lines"
        assert "torch.allclose" in code, "a loop in the open is not checked against the library"


# The library's training entry points compute on the device of their inputs (train's module docstring), so a
# chapter that calls one must choose that device, in the one place that chooses: ``train.device()``.
TRAINING_CALLS = re.compile(
    r"\b(?:ParametricJKO|SemiDualJKO|train_variants|toy_trainer|train_drifting|particle_flow|langevin|f_flow"
    r"|vgrow|ept|monoflow|dgflow|projected_flow|cifar10\.(?:Trainer|train))\("
)


def _training_chapters() -> list[str]:
    return [p.name for p in CHAPTERS if TRAINING_CALLS.search("\n".join(_code(_load(p))))]


def test_training_calls_pattern_finds_the_training_chapters():
    found = _training_chapters()
    assert {"02_wgf_jko.ipynb", "05_ipm_gans.ipynb", "09_digits.ipynb", "10_cifar10.ipynb"} <= set(found)
    assert "01_optimal_transport.ipynb" not in found  # closed forms and solvers only
    assert TRAINING_CALLS.search("run = fflows.ept(z, y, 'kl')") and not TRAINING_CALLS.search("receipt(x)")


@pytest.mark.parametrize("name", _training_chapters())
def test_training_chapter_chooses_its_device_with_train_device(name):
    code = "\n".join(_code(_load(BOOK / name)))
    assert re.search(r"^\s*dev = train\.device\(\)", code, re.M), (
        f"{name} trains but does not choose its device with `dev = train.device()`"
    )


# Code that reaches outside the installed package: the repository's folders, the import path, the
# notebook's own location, and reading files (chapters read committed data only through the library,
# e.g. ``benchmark.load_results``; files a chapter writes itself are read back by the library).
OUTSIDE = {
    "a relative path to a parent folder": r"\.\./|\.\.\\",
    "an import-path edit": r"\bsys\.path\b|\bPYTHONPATH\b|\bsite\.addsitedir\b",
    "the notebook's own location or a change of folder": r"__file__|\bos\.chdir\(|^\s*%cd\b|\bos\.getcwd\(",
    "reading a file": r"\bopen\(|\.read_(?:text|bytes)\(|\bjson\.load\(|\btorch\.load\(|\bpickle\.load\("
    r"|\b(?:np|numpy)\.(?:load|loadtxt|genfromtxt|fromfile)\(|\bpd\.read_\w+\(|\bimread\(",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_reads_nothing_outside_the_package(path):
    for i, src in enumerate(_code(_load(path))):
        for what, pattern in OUTSIDE.items():
            hit = re.search(pattern, src, re.M)
            line = src[src.rfind("\n", 0, hit.start()) + 1 :].splitlines()[0] if hit else ""
            assert not hit, f"code cell {i} of {path.name} uses {what}: {line.strip()!r}"


def test_outside_patterns_catch_what_they_name():
    caught = [
        'sys.path.insert(0, "../benchmarks")', 'json.loads(Path("../x.json").read_text())', "os.chdir('..')",
        "with open('data.csv') as f:", "torch.load('model.pt')", "np.load('a.npy')", "%cd ..",
        "Path(__file__)",
    ]  # fmt: skip
    for code in caught:
        assert any(re.search(p, code, re.M) for p in OUTSIDE.values()), code
    fine = ['benchmark.load_results("run_all")', "trainer.load(work / 'last.pt')", "np.median(x)"]
    for code in fine:
        assert not any(re.search(p, code, re.M) for p in OUTSIDE.values()), code


def test_repository_url_is_one_value():
    """pyproject's Repository URL is the source; the book config, install cells and Colab links agree."""
    url = _repository()
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url), url
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["repository"]["url"] == url, "_config.yml repository.url differs from pyproject's Repository"
    repo, branch = url.split("github.com/")[1], cfg["repository"]["branch"]
    colab = f"{cfg['launch_buttons']['colab_url']}/github/{repo}/blob/{branch}"
    texts = {p.name: "\n".join(_source(c) for c in _load(p)["cells"]) for p in NOTEBOOKS}
    texts |= {p.name: p.read_text() for p in (ROOT / "README.md", ROOT / "CONTRIBUTING.md")}
    for name, text in texts.items():
        for link in re.findall(r"https?://colab\.research\.google\.com/[^\s)\]\"'>]+", text):
            assert link.startswith(f"{colab}/book/"), f"{name}: Colab link {link} is not under {colab}/book/"
            if name.endswith(".ipynb"):
                assert link == f"{colab}/book/{name}", f"{name}: its Colab link points to {link}"
            else:
                assert (ROOT / link[len(colab) + 1 :]).exists(), f"{name}: Colab link to no file: {link}"
        for target in re.findall(r"git\+(https?://[^\s\"'@#]+)", text):
            assert target == url, f"{name}: installs from {target}, not from {url}"
    for path in NOTEBOOKS:
        assert f"git+{url}\"" in _install_command(_load(path)), path.name


def _chapter_numbers(text: str) -> set[int]:
    """``"chapters 1-8 and 11"`` -> {1, ..., 8, 11}."""
    numbers: set[int] = set()
    for a, b in re.findall(r"(\d+)(?:-(\d+))?", text):
        numbers |= set(range(int(a), int(b or a) + 1))
    return numbers


def test_readme_colab_section_gives_the_install_lines_of_the_cells():
    """Each distinct install line of the chapters, verbatim, with the chapters that use it."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^### On Colab or a GPU machine\n(.*?)(?=^##)", readme, re.S | re.M).group(1)
    listed = {}
    for block in re.findall(r"```bash\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if "pip install" in line:
                command, _, comment = line.partition("#")
                listed[command.strip()] = _chapter_numbers(comment)
    used: dict[str, set[int]] = {}
    for path in NOTEBOOKS:
        number = re.match(r"(\d\d)_", path.name)
        chapters = used.setdefault(_install_command(_load(path)), set())
        chapters |= {int(number.group(1))} if number else set()
    assert listed == used, f"README {listed} != the install cells {used}"
    assert any("[images]" in c for c in used), "no chapter installs the [images] extra"


def test_equation_labels_unique_and_references_resolve():
    labels: dict[str, str] = {}
    refs: list[tuple[str, str]] = []
    for path in NOTEBOOKS:
        md = _markdown(_load(path))
        for label in re.findall(r"\$\$\s*\((eq-[\w-]+)\)", md):
            assert label not in labels, f"equation label {label} in {path.name} and {labels[label]}"
            labels[label] = path.name
        refs += [(r, path.name) for r in re.findall(r"\{eq\}`([^`]+)`", md)]
    for ref, page in refs:
        assert ref in labels, f"{page} references undefined equation {ref}"


def test_citations_exist_in_bibliography():
    keys = _bib_keys()
    for path in NOTEBOOKS:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", _markdown(_load(path))):
            for key in group.split(","):
                assert key.strip() in keys, f"{path.name} cites unknown key {key.strip()!r}"


def test_bibliography_keys_unique():
    text = (ROOT / "references.bib").read_text()
    keys = re.findall(r"@\w+\s*\{\s*([^,\s]+)\s*,", text)
    dupes = {k for k in keys if keys.count(k) > 1}
    assert not dupes, f"duplicate bibtex keys: {sorted(dupes)}"


def _table_math_with_a_bar(text: str) -> list[str]:
    """Inline formulas holding "|" in Markdown table rows: the bar ends the cell and breaks the formula."""
    rows = (line for line in text.splitlines() if line.lstrip().startswith("|"))
    return [m for row in rows for m in re.findall(r"\$[^$]*\$", row) if "|" in m]


def test_table_rows_keep_their_math_whole():
    assert _table_math_with_a_bar("| a | $|x|$ |\n$|y|$") == ["$|x|$"]  # the check can fail
    pages = [(p.name, _markdown(_load(p))) for p in NOTEBOOKS]
    pages += [(p.name, p.read_text()) for p in BOOK.glob("*.md")]
    for name, text in pages:
        broken = _table_math_with_a_bar(text)
        assert not broken, f"{name}: table math holds '|' (use \\lvert): {broken[0][:60]!r}"


def _lines_opening_a_block_inside_math(text: str) -> list[str]:
    """Lines that start with a list or quote marker while an inline $...$ is open: Markdown reads them as a
    new block and the formula breaks in two."""
    found, in_display, open_inline = [], False, False
    for line in text.splitlines():
        if line.strip().startswith("$$"):
            in_display ^= line.strip().count("$$") == 1
            continue
        if in_display or not line.strip():
            open_inline = False if not line.strip() else open_inline
            continue
        if open_inline and re.match(r"\s*([+\-*>]|\d+\.)\s", line):
            found.append(line)
        open_inline ^= len(re.findall(r"(?<!\\)\$", line.replace("$$", ""))) % 2 == 1
    return found


def test_inline_math_is_not_cut_by_a_line_that_opens_a_block():
    assert _lines_opening_a_block_inside_math("a $x\n+ y$ b") == ["+ y$ b"]  # the check can fail
    for path in NOTEBOOKS:
        bad = _lines_opening_a_block_inside_math(_markdown(_load(path)))
        assert not bad, f"{path.name}: a line inside inline math opens a block: {bad[0][:60]!r}"


# ---------------------------------------------------------------- API page


def test_api_page_documents_every_public_module():
    api = (BOOK / "api.md").read_text()
    documented = set(re.findall(r"^\.\. automodule:: gwf_tutorial\.(\w+)", api, re.M))
    modules = {p.stem for p in (ROOT / "gwf_tutorial").glob("*.py") if not p.stem.startswith("_")}
    assert modules - documented == set(), f"modules missing from book/api.md: {modules - documented}"
    assert documented - modules == set(), f"book/api.md documents missing modules: {documented - modules}"


# ---------------------------------------------------------------- README, CI, packaging, workflow


def test_readme_opens_with_the_two_commands_and_ci_runs_the_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"
    assert blocks[0].strip() == f"{setup} && jupyter-book build -W --keep-going ."
    assert blocks[1].strip() == f"{setup} && python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -r requirements.txt" in ci
    assert re.search(r"^python -m pytest$", ci, re.M)
    assert "jupyter-book build -W --keep-going" in ci and "timeout" in ci
    assert "set -euo pipefail" in ci


def test_pytest_configuration_runs_notebooks_and_tests():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    opts = cfg["tool"]["pytest"]["ini_options"]
    # `python -m pytest` runs the notebooks once, each alone in an empty folder
    # (tests/test_chapters_alone.py), not again in place from book/ (no "book" in testpaths);
    # `python -m pytest book/<chapter>.ipynb` runs one in place, with addopts.
    assert opts["testpaths"] == ["tests"]
    assert not any(p.suffix == ".ipynb" for p in (ROOT / "tests").rglob("*"))
    alone = (ROOT / "tests" / "test_chapters_alone.py").read_text()
    assert 'glob("*.ipynb")' in alone and "--nbval-lax" in alone and "nbval_sanitize.cfg" in alone
    assert "--nbval-lax" in opts["addopts"] and "--nbval-sanitize-with nbval_sanitize.cfg" in opts["addopts"]
    assert (ROOT / "nbval_sanitize.cfg").exists()
    assert cfg["project"]["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_pages_workflow_is_valid():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build = wf["jobs"]["build"]["steps"]
    runs = " ".join(s.get("run", "") for s in build)
    assert "pip install -r requirements.txt" in runs
    assert "jupyter-book build -W --keep-going ." in runs
    uses = [s.get("uses", "") for s in build]
    assert any(u.startswith("actions/checkout@") for u in uses)
    upload = next(s for s in build if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["steps"][0]["uses"].startswith("actions/deploy-pages@")


def test_config_builds_offline_and_does_not_execute():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True
    sphinx = cfg["sphinx"]["config"]
    assert not sphinx["mathjax_path"].startswith("http")
    vendored = ROOT / sphinx["html_static_path"][0] / sphinx["mathjax_path"]
    assert vendored.exists(), f"vendored MathJax missing: {vendored}"
    assert {"sphinx.ext.autodoc", "sphinx.ext.napoleon"} <= set(cfg["sphinx"]["extra_extensions"])


def test_the_built_package_ships_every_committed_result(tmp_path):
    """A non-editable install (Colab's ``pip install git+...``) carries ``gwf_tutorial/results/*.json``,
    which the chapters read through ``benchmark.load_results``."""
    import shutil
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(root / "gwf_tutorial", src / "gwf_tutorial", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(tmp_path / "dist")]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("gwf_tutorial-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {Path(n).name for n in names if n.startswith("gwf_tutorial/results/")}
    committed = {p.name for p in (root / "gwf_tutorial" / "results").glob("*.json")}
    assert committed and committed <= shipped, committed - shipped


# ---------------------------------------------------------------- the reader's edition

RECIPE_CARD = re.compile(
    r"```\{admonition\} The recipe in this chapter\n:class: tip\n"
    r"\*\*Objective\*\*.+\n\*\*Discretization\*\*.+\n\*\*Parametrization\*\*.+\n```"
)
RUNTIME_LINE = re.compile(r"^\*Running this (chapter|page) takes about [\d.]+ s of CPU time", re.M)
MAX_FIGURE_PX = 1050  # 10 inches at the inline backend's 100 dpi, plus the tight bounding box's margin


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_opens_with_its_recipe_card(path):
    first = _source(_load(path)["cells"][0])
    assert RECIPE_CARD.search(first), "no recipe card (objective, discretization, parametrization) at the top"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_page_states_its_measured_runtime(path):
    assert RUNTIME_LINE.search(_source(_load(path)["cells"][0])), "no runtime line under the title"
    runtimes = json.loads((ROOT / "benchmarks" / "results" / "chapter_runtimes.json").read_text())
    assert path.name in runtimes, "runtime not in benchmarks/results/chapter_runtimes.json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_fit_the_book_column(path):
    for cell in _load(path)["cells"]:
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                width = int.from_bytes(base64.b64decode(png)[16:20], "big")
                assert width <= MAX_FIGURE_PX, f"a figure {width} px wide (> 10 in): {_source(cell)[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_checks_and_key_numbers_are_hidden_from_the_reader(path):
    nb = _load(path)
    last = [c for c in nb["cells"] if c["cell_type"] == "code"][-1]
    assert "remove-cell" in last["metadata"].get("tags", []), "the key numbers cell is shown in the page"
    assert not re.search(r"^#+\s*Key numbers", _markdown(nb), re.M | re.I), "a 'Key numbers' heading"


# A check that exists for CI sits in a code cell of its own that the page does not show; the few checks the
# text presents to the reader (a loop or a formula written out, against the library) carry VISIBLE_CHECK.
HIDDEN_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
VISIBLE_CHECK = "visible-check"
ASSERT = re.compile(r"^\s*assert\b", re.M)


def test_assert_pattern_finds_assert_statements():
    assert ASSERT.search("x = 1\nassert x == 1") and ASSERT.search("for a in b:\n    assert a, a")
    assert not ASSERT.search("np.testing.assert_allclose(a, b)\n# assert x\nassert_close(a, b)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_asserts_are_hidden_unless_meant_to_be_seen(path):
    shown, stale = [], []
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        tags = set(cell["metadata"].get("tags", []))
        if VISIBLE_CHECK in tags and (tags & HIDDEN_TAGS or not ASSERT.search(_source(cell))):
            stale.append(i)
        elif ASSERT.search(_source(cell)) and not tags & (HIDDEN_TAGS | {VISIBLE_CHECK}):
            shown.append(i)
    assert not shown, (
        f"cells {shown} of {path.name} show an assert: move it to a cell of its own tagged remove-cell, "
        f"or tag the cell {VISIBLE_CHECK} if the text presents the check to the reader"
    )
    assert not stale, f"cells {stale} of {path.name} are tagged {VISIBLE_CHECK} but show no assert"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_reads_in_one_sitting(path):
    words = len(_markdown(_load(path)).split())
    assert words <= 4000, f"{words} words of prose: split the chapter into sections or pages"
