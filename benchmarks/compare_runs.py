"""Compare a re-run of ``benchmarks/run_all.py`` with the committed results, cell by cell and row by row.

For every (method, target) in both files: the re-run's median headline ratio (energy distance / floor on
mixtures, W2^2 / floor elsewhere, as :func:`gwf_tutorial.benchmark.headline`) against the committed
seed interval [min, max], classified as ``inside``, ``better`` (below the interval) or ``above``; and
per seed whether the row is bit-identical (W2^2 and energy distance equal as floats), or its largest
relative change. Rows that moved are grouped by family with the largest relative change.

Usage (from the repository root)::

    python benchmarks/compare_runs.py NEW.json [--old gwf_tutorial/results/run_all.json] [--out report.md]

Prints the report and writes it next to ``NEW.json`` (``NEW_compare.md``) unless ``--out`` is given.

Where both files hold five or more seeds of a cell (``run_all.py --seeds 0,...,9`` with two versions of
the code), the report adds the two seed distributions of the headline ratio (quartiles) and the two-sided
Mann-Whitney U test of "same distribution": a computation that changed only in its rounding should not be
told apart from the old one at this number of seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from gwf_tutorial.benchmark import headline, summarize

DEFAULT_OLD = Path(__file__).resolve().parent.parent / "gwf_tutorial" / "results" / "run_all.json"


def _ratio_name(mixture: bool) -> str:
    """The headline ratio's key in a row: the energy distance on mixtures, W2^2 elsewhere."""
    return "energy_ratio" if mixture else "w2_ratio"


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def compare(new: dict, old: dict) -> tuple[list[dict], dict]:
    """One dict per common (method, target): medians, interval, class; and per-family row changes."""
    old_by = {(s["method"], s["target"]): s for s in summarize(old["rows"])}
    new_by = {(s["method"], s["target"]): s for s in summarize(new["rows"])}
    old_rows = {(r["method"], r["target"], r["seed"]): r for r in old["rows"]}
    cells, families = [], {}
    for key, s in new_by.items():
        o = old_by.get(key)
        if o is None or "n/a" in (s["status"], o["status"]):
            continue
        mixture = new["floors"][key[1]]["mixture"]
        name = _ratio_name(mixture)
        med, lo, hi = headline(s, mixture), o[f"{name}_min"], o[f"{name}_max"]
        cls = "better" if med < lo else ("inside" if med <= hi else "above")
        cells.append(dict(method=key[0], target=key[1], family=s["family"], new=med, old=headline(o, mixture),
                          lo=lo, hi=hi, cls=cls))  # fmt: skip
    for r in new["rows"]:
        o = old_rows.get((r["method"], r["target"], r["seed"]))
        if o is None or r["status"] != "ok" or o["status"] != "ok":
            continue
        f = families.setdefault(r["family"], dict(rows=0, identical=0, max_rel=0.0))
        f["rows"] += 1
        if r["w2"] == o["w2"] and r["energy"] == o["energy"]:
            f["identical"] += 1
        f["max_rel"] = max(f["max_rel"], _rel(r["w2"], o["w2"]), _rel(r["energy"], o["energy"]))
    return cells, families


def seed_distributions(new: dict, old: dict, min_seeds: int = 5) -> list[dict]:
    """Per (method, target) with at least ``min_seeds`` ok rows in both files: quartiles and the U test."""

    def ratios(run: dict) -> dict:
        out = {}
        for r in run["rows"]:
            if r["status"] == "ok":
                name = _ratio_name(run["floors"][r["target"]]["mixture"])
                out.setdefault((r["method"], r["target"]), []).append(r[name])
        return out

    a, b = ratios(old), ratios(new)
    rows = []
    for key in sorted(set(a) & set(b)):
        if min(len(a[key]), len(b[key])) >= min_seeds:
            q_old, q_new = np.percentile(a[key], [25, 50, 75]), np.percentile(b[key], [25, 50, 75])
            p = mannwhitneyu(a[key], b[key], alternative="two-sided").pvalue
            n = (len(a[key]), len(b[key]))
            rows.append(dict(method=key[0], target=key[1], n=n, old=q_old, new=q_new, p=p))
    return rows


def report(cells: list[dict], families: dict, new_path: str, old_path: str, dists: list[dict] = ()) -> str:
    counts = {c: sum(x["cls"] == c for x in cells) for c in ("inside", "better", "above")}
    lines = [
        f"# `{new_path}` against `{old_path}`", "",
        f"{len(cells)} (method, target) cells: median headline ratio inside the committed seed interval "
        f"{counts['inside']}, below it (better) {counts['better']}, above it {counts['above']}.", "",
        "## Cells above the committed interval", "",
        "| method | target | re-run median | committed median [min, max] |", "|---|---|---:|---|",
    ]  # fmt: skip
    lines += [
        f"| `{c['method']}` | {c['target']} | {c['new']:.3g} | {c['old']:.3g} [{c['lo']:.3g}, {c['hi']:.3g}] "
        "|"
        for c in cells if c["cls"] == "above"
    ]  # fmt: skip
    lines += [
        "", "## Rows (method, target, seed) by family", "",
        "| family | rows | bit-identical | largest relative change of W2^2 or energy |",
        "|---|---:|---:|---:|",
    ]  # fmt: skip
    lines += [f"| {k} | {f['rows']} | {f['identical']} | {f['max_rel']:.2g} |" for k, f in families.items()]
    if dists:
        q = lambda v: f"{v[1]:.3g} [{v[0]:.3g}, {v[2]:.3g}]"  # noqa: E731
        lines += [
            "", "## Seed distributions (median [quartiles] of the headline ratio)", "",
            "| method | target | seeds (old, new) | old | new | Mann-Whitney p |",
            "|---|---|---|---|---|---:|",
        ]  # fmt: skip
        lines += [
            f"| `{d['method']}` | {d['target']} | {d['n'][0]}, {d['n'][1]} | {q(d['old'])} | {q(d['new'])} | "
            f"{d['p']:.2f} |"
            for d in dists
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("new", help="the re-run's JSON (benchmarks/run_all.py --out)")
    ap.add_argument("--old", default=str(DEFAULT_OLD), help="the committed results (default: the package's)")
    ap.add_argument("--out", help="markdown report path (default: NEW_compare.md)")
    args = ap.parse_args()
    new, old = (json.loads(Path(p).read_text()) for p in (args.new, args.old))
    shown = "gwf_tutorial/results/run_all.json" if Path(args.old) == DEFAULT_OLD else args.old
    text = report(*compare(new, old), args.new, shown, seed_distributions(new, old))
    out = Path(args.out) if args.out else Path(args.new).with_name(Path(args.new).stem + "_compare.md")
    out.write_text(text)
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
