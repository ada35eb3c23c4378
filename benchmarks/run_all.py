"""Every method of the book on the same targets, budget and metrics (chapter 11).

Each (method, target, seed) row calls :func:`gwf_tutorial.benchmark.run` with the method's own
recommended settings (the data are standardised inside ``run``; nothing depends on the target's
name), draws ``N_EVAL = 1000`` samples and measures (the protocol chapter 11
describes):

- W2^2 (exact, POT) against fresh target samples, median of 3 reference draws, divided by the
  finite-sample floor (median W2^2 between two independent target samples of the same size, 10
  pairs): the headline on the non-mixture targets;
- the energy distance (V-statistic) / its floor, same protocol, and mode coverage (modes hit,
  share of samples within 3 std of a mode, total variation between found and true mode weights):
  the headline on the mixtures (targets with ``means``/``weights``/``stds``, detected by attribute);
- the debiased Sinkhorn divergence (eps = 0.1 sigma^2, sigma^2 the target's mean per-coordinate
  variance), on 500 of the samples against 500 fresh target samples (one draw), / its floor (10 pairs
  of 500), float32, at most 300 Sinkhorn iterations to tolerance 1e-3 (the Sinkhorn metric is the
  costly one; this keeps it under half a second per row);
- CPU seconds of the ``run`` call (``time.process_time``, one torch thread).

Methods that need a score (KL particle flow, Langevin) are listed as not applicable on targets
without one. A diverged run is recorded as such (ratio +inf).

The run is resumable: every finished row is appended to the JSON file at once, and rows already
there are skipped. ``--methods``, ``--targets``, ``--seeds`` filter; ``--quick`` is a smoke run
(2 targets, 1 seed, a quarter of each budget) written to ``run_all_quick.json``; ``--report`` only
rewrites the markdown table from the JSON.

Usage (from the repository root)::

    OMP_NUM_THREADS=1 python benchmarks/run_all.py               # the full run, resumable
    OMP_NUM_THREADS=1 python benchmarks/run_all.py --quick       # smoke run
    python benchmarks/run_all.py --methods particle_sw,sjko --targets moons
    python benchmarks/run_all.py --report                        # tables from the JSON only

Two processes can share the work: run the second one on other ``--methods`` with ``--out
other.json``, then ``--merge other.json`` adds its rows to the main file.

Writes ``gwf_tutorial/results/run_all.json`` (shipped with the package) and
``benchmarks/results/run_all.md``. Chapter 11 reads them; it never re-runs the benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import DATA, RESULTS, machine_info
from method_table import PEERS

# the summaries and goal checks of the committed results live in the package (chapter 11 uses them too)
from gwf_tutorial.benchmark import GOAL_2X, GOAL_BEST, goals, headline, summarize
from gwf_tutorial.methods import METHODS

TARGETS = ["eight_gaussians", "twenty_five_gaussians", "moons", "swiss_roll", "checkerboard", "rings"]
SEEDS = [0, 1, 2]
N_EVAL = 1000
N_SINKHORN = 500
FLOOR_PAIRS = 10
WHY = {
    "dgflow": (
        "DGflow refines a given generator along a discriminator trained once; from N(0, I) its 25 official "
        "steps of 0.1 move the samples only part of the way, and the fixed discriminator's field is not the "
        "flow's field once the samples have moved."
    ),
    "particle_mmd": (
        "Gaussian-kernel MMD flow: particles stranded where the kernel's force has vanished (chapter 3); "
        "noise injection helps but does not remove them within the budget."
    ),
    "vgrow": (
        "VGrow and EPT at their chapter-4 settings (VGrow's generator regression, EPT's least-squares ratio "
        "with a strong R1 weight 1.0 and ratio floor 0.1) smooth the velocity; the same KL flow with a "
        "logistic critic refitted 10 steps per step (`f_flow`, `monoflow`) gets within 1.3x on these "
        "targets."
    ),
    "jko_w1": (
        "W1 critics are 1-Lipschitz, so the map term's gradient is at most 1 per sample: with the JKO step "
        "0.1 (jko_w1) or the WGAN-GP paper's Adam 1e-4 (wgan_gp) the map moves slowly within the budget, as "
        "the step-size study of chapter 6 found."
    ),
    "drift_critic": (
        "The critic drift is the GAN reading of a drifting step (chapter 8): a logistic critic refitted by 5 "
        "steps per generator step gives a noisy KL velocity, and the generator partly "
        "collapses."
    ),
    "eight_gaussians": (
        "8 Gaussians, generators: about a quarter of their samples lie between the modes (share within "
        "3 std of a mode 0.65-0.78, against 0.97-0.99 for the particle flows), since a continuous map of a "
        "Gaussian latent stretches across the gaps and a few thousand Adam steps do not make it steep "
        "enough; the energy ratio counts that mass."
    ),
    "twenty_five_gaussians": (
        "25 Gaussians: modes of standard deviation 0.07 on a grid of spacing 3 (0.017 of the data's scale "
        "after standardisation). The generators put their mass around the grid points (energy ratio about "
        "2) but only 2-3% of it within 3 std of a mode, so mode coverage counts no mode as hit."
    ),
    "swiss_roll": (
        "Swiss roll: thin arms (noise 0.03 on a spiral of radius 1): the generators smear them. Part of it "
        "is the budget (see the budget study below: three to four times the iterations brought S-JKO, the "
        "MMD generator and the drifting fields much closer); the JKO steps with a critic stay near 2x."
    ),
    "gan": (
        "GAN switches (no transport term): with the same networks as the JKO loop, the critic GANs stay "
        "further from the floor, and more updates do not help (run_all_budget4.json: the minimax GAN at four "
        "times its updates, seed 0, moved away from the floor on the moons and the swiss roll), so they keep "
        "their budget. The transport term's role is the subject "
        "of chapter 6's step-size study; the fixed-kernel MMD generator (gmmn), which has no critic, is the "
        "best of this family."
    ),
}


# ------------------------------------------------------------------------------------------------
# floors and evaluation
# ------------------------------------------------------------------------------------------------
def _is_mixture(target) -> bool:
    return all(hasattr(target, a) for a in ("means", "weights", "stds"))


def _target_var(target) -> float:
    y = target.sample(20_000, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    return float(y.var(0).mean())


def _sinkhorn_metric(eps: float):
    from gwf_tutorial.metrics import sinkhorn_divergence

    def metric(x, y):
        return sinkhorn_divergence(x.float(), y.float(), eps, max_iter=300, tol=1e-3)

    metric.__name__ = "sinkhorn"
    return metric


def compute_floor(name: str) -> dict:
    """W2^2 and energy floors at N_EVAL, Sinkhorn floor at N_SINKHORN (10 pairs each)."""
    from gwf_tutorial import metrics
    from gwf_tutorial.targets import get_target

    target = get_target(name)
    s2 = _target_var(target)
    out = {"sigma2": s2, "sinkhorn_eps": 0.1 * s2, "mixture": _is_mixture(target)}
    specs = [
        ("w2", "w2", N_EVAL),
        ("energy", "energy", N_EVAL),
        ("sinkhorn", _sinkhorn_metric(0.1 * s2), N_SINKHORN),
    ]
    for key, metric, n in specs:
        f = metrics.floor(target, n, metric, n_pairs=FLOOR_PAIRS, seed=0, progress=False)
        out[key] = dict(
            median=f.median, q25=f.q25, q75=f.q75, values=f.values.tolist(), n=f.n, metric=f.metric
        )
    return out


def _floor_obj(d: dict):
    from gwf_tutorial.metrics import Floor

    return Floor(
        median=d["median"], q25=d["q25"], q75=d["q75"], values=torch.tensor(d["values"], dtype=torch.float64),
        n=d["n"], metric=d["metric"],
    )  # fmt: skip


def evaluate(x: torch.Tensor, name: str, fl: dict) -> dict:
    from gwf_tutorial import metrics
    from gwf_tutorial.targets import get_target

    target = get_target(name)
    x = x.detach().double()
    w2 = metrics.score_vs_floor(x, target, "w2", _floor_obj(fl["w2"]), n_refs=3, seed=12345)
    en = metrics.score_vs_floor(x, target, "energy", _floor_obj(fl["energy"]), n_refs=3, seed=12345)
    sk = metrics.score_vs_floor(
        x[:N_SINKHORN].float(), target, _sinkhorn_metric(fl["sinkhorn_eps"]), _floor_obj(fl["sinkhorn"]),
        n_refs=1, seed=12345,
    )  # fmt: skip
    out = dict(
        w2=w2.score, w2_ratio=w2.ratio, energy=en.score, energy_ratio=en.ratio, sinkhorn=sk.score,
        sinkhorn_ratio=sk.ratio,
    )  # fmt: skip
    if fl["mixture"]:
        mc = metrics.mode_coverage(x, target)
        out.update(
            modes_hit=mc.modes_hit, n_modes=mc.n_modes, hq=mc.high_quality_fraction, weight_tv=mc.weight_tv
        )
    return out


# ------------------------------------------------------------------------------------------------
# one row
# ------------------------------------------------------------------------------------------------
def run_row(method: str, target_name: str, seed: int, budget_scale: float, fl: dict) -> dict:
    from gwf_tutorial import benchmark
    from gwf_tutorial.flows import FlowDivergedError
    from gwf_tutorial.targets import get_target

    target = get_target(target_name)
    info = benchmark.method_info(method)
    budget = info.budget_s * budget_scale
    row = dict(method=method, family=info.family, target=target_name, seed=seed, budget_s=budget)
    ok, reason = benchmark.applicable(method, target)
    if not ok:
        return row | dict(status="n/a", reason=reason)
    w0, c0 = time.perf_counter(), time.process_time()
    try:
        x = benchmark.run(method, target, N_EVAL, seed, budget_s=budget)
        row["status"] = "ok"
    except (FlowDivergedError, FloatingPointError) as err:
        x = None
        row.update(status="diverged", reason=str(err)[:300])
    row["cpu_s"] = time.process_time() - c0
    row["wall_s"] = time.perf_counter() - w0
    if x is not None:
        e0 = time.process_time()
        row.update(evaluate(x, target_name, fl))
        row["eval_cpu_s"] = time.process_time() - e0
    else:
        row.update(w2_ratio=math.inf, energy_ratio=math.inf, sinkhorn_ratio=math.inf)
        if fl["mixture"]:
            row.update(modes_hit=0)
    return row


# ------------------------------------------------------------------------------------------------
# storage (resumable)
# ------------------------------------------------------------------------------------------------
def _load(path: Path) -> dict:
    if path.exists():
        return json.loads(path.read_text())
    return {"rows": [], "floors": {}}


def _save(path: Path, res: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1, default=_json_default))
    os.replace(tmp, path)  # atomic: an interruption never leaves a half-written file


def _json_default(o):
    if isinstance(o, float | np.floating):
        return float(o)
    if isinstance(o, np.integer):
        return int(o)
    raise TypeError(type(o).__name__)


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def _esc(text: str) -> str:
    """Escape the pipes of a markdown table cell."""
    return text.replace("|", "\\|")


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "div"
    return f"{v:.2f}" if v < 10 else f"{v:.3g}" if v < 1000 else f"{v:.0f}"


def _cell(s: dict | None, mixture: bool) -> str:
    if s is None:
        return "-"
    if s["status"] == "n/a":
        return "n/a"
    key = "energy_ratio" if mixture else "w2_ratio"
    txt = f"{_fmt(s[key])} [{_fmt(s[key + '_min'])}, {_fmt(s[key + '_max'])}]"
    if mixture:
        txt += f"; {s['modes_hit_min']}/{s['n_modes']}"
    if s.get("n_diverged"):
        txt += f" ({s['n_diverged']} div)"
    return txt


def markdown(res: dict, side: dict | None = None) -> str:
    """The report; ``side``: an earlier run of some methods at smaller budgets (``run_all_short.json``)."""
    from gwf_tutorial.benchmark import method_info

    rows, floors = res["rows"], res["floors"]
    summary = summarize(rows)
    methods = [m for m in res["methods"] if any(r["method"] == m for r in rows)]
    targets = [t for t in res["targets"] if any(r["target"] == t for r in rows)]
    by = {(s["method"], s["target"]): s for s in summary}
    meta = res["meta"]
    ok_rows = [r for r in rows if r["status"] != "n/a"]
    cpu_train = sum(r.get("cpu_s", 0.0) for r in ok_rows)
    cpu_eval = sum(r.get("eval_cpu_s", 0.0) for r in ok_rows)
    lines = [
        "# Benchmark: every method, every target (`benchmarks/run_all.py`)",
        "",
        f"Command: `{meta['command']}`. Machine: {meta['machine']['cpu_count']} CPUs "
        f"({meta['machine']['processor']}), torch {meta['machine']['torch']}, POT {meta['machine']['pot']}, "
        f"Python {meta['machine']['python']}, 1 torch thread; shared machine (load average "
        f"{meta.get('loadavg_start', [float('nan')])[0]:.1f} at the start), so CPU seconds, not wall "
        "time, are the cost.",
        "",
        f"Rows: {len(rows)} ({len(ok_rows)} runs, {len(rows) - len(ok_rows)} not applicable); "
        f"training {cpu_train / 60:.1f} CPU-minutes, evaluation {cpu_eval / 60:.1f} CPU-minutes; "
        f"seeds {sorted({r['seed'] for r in rows})}; budget scale {meta['budget_scale']} of each method's "
        "nominal budget.",
        "",
        "Protocol: `gwf_tutorial.benchmark.run(method, target, 1000, seed)` with the method's own settings "
        "(data standardised inside `run` from a pilot draw: one mean, one isotropic scale; nothing depends "
        f"on the target's name). Metrics against fresh target samples, median of 3 draws, over the "
        f"finite-sample floor (median of {FLOOR_PAIRS} pairs of independent target samples of the same "
        f"size, n = {N_EVAL}): **W2^2 / floor** on the non-mixtures, **energy distance / floor** and mode "
        "coverage on the mixtures (W2^2 there is dominated by the mode-weight noise of one draw). Cells: "
        "median over seeds [min, max]; on mixtures `; k/K` = fewest modes hit over the seeds. `div` = "
        "diverged, `n/a` = needs a score the target lacks.",
        "",
        "## Headline ratio to the floor",
        "",
        "| method | family | CPU s / run | " + " | ".join(
            f"{t} ({'energy' if floors[t]['mixture'] else 'W2^2'})" for t in targets) + " |",
        "|---|---|---:|" + "---|" * len(targets),
    ]  # fmt: skip
    for m in methods:
        cpu = [by[(m, t)]["cpu_s"] for t in targets if (m, t) in by and "cpu_s" in by[(m, t)]]
        cells = [_cell(by.get((m, t)), floors[t]["mixture"]) for t in targets]
        lines.append(
            f"| `{m}` | {method_info(m).family} | {np.median(cpu) if cpu else float('nan'):.1f} | "
            + " | ".join(cells) + " |"
        )
    lines += ["", "## The other metrics (median over seeds)", ""]
    lines.append("| method | " + " | ".join(f"{t}: W2^2 / Sinkhorn" for t in targets) + " |")
    lines.append("|---|" + "---|" * len(targets))
    for m in methods:
        cells = []
        for t in targets:
            s = by.get((m, t))
            if s is None or s["status"] == "n/a":
                cells.append("n/a" if s else "-")
            else:
                cells.append(f"{_fmt(s['w2_ratio'])} / {_fmt(s['sinkhorn_ratio'])}")
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    lines += ["", "Floors (median [quartiles]):", ""]
    for t in targets:
        f = floors[t]
        lines.append(
            f"- {t}: W2^2 {f['w2']['median']:.4g} [{f['w2']['q25']:.3g}, {f['w2']['q75']:.3g}], energy "
            f"{f['energy']['median']:.3g}, Sinkhorn (eps {f['sinkhorn_eps']:.3g}, n = {N_SINKHORN}) "
            f"{f['sinkhorn']['median']:.3g}"
        )
    g = goals(summary, floors, methods, targets)
    lines += ["", "## Goals", "", f"**Every method <= 2x the floor (W2^2) on {' and '.join(GOAL_2X)}.** "]
    if g["misses_2x"]:
        lines[-1] += f"Not met by {len(g['misses_2x'])} (method, target) pairs:"
        lines.append("")
        for miss in g["misses_2x"]:
            lines.append(f"- `{miss['method']}` on {miss['target']}: {_fmt(miss['ratio'])}")
    else:
        lines[-1] += "Met."
    lines += [
        "",
        f"**The best method of each family <= {GOAL_BEST}x the floor on every target, all modes covered on "
        "the mixtures.**",
        "",
        "| family | " + " | ".join(targets) + " |",
        "|---|" + "---|" * len(targets),
    ]
    fams = []
    for b in g["best"]:
        if b["family"] not in fams:
            fams.append(b["family"])
    for fam in fams:
        cells = []
        for t in targets:
            b = next((b for b in g["best"] if b["family"] == fam and b["target"] == t), None)
            if b is None:
                cells.append("-")
                continue
            mark = "" if b["ok"] else "**"
            modes = f", {b['modes']}" if b["modes"] else ""
            cells.append(f"{mark}`{b['method']}` {_fmt(b['ratio'])}{modes}{mark}")
        lines.append(f"| {fam} | " + " | ".join(cells) + " |")
    n_ok = sum(b["ok"] for b in g["best"])
    lines += ["", f"Met in {n_ok} of {len(g['best'])} (family, target) cells (**bold**: not met).", ""]
    keys = {m["method"] for m in g["misses_2x"]} | {b["target"] for b in g["best"] if not b["ok"]}
    keys |= {m["target"] for m in g["misses_2x"]}
    keys |= {"gan" for m in g["misses_2x"] if method_info(m["method"]).family == "gan"}
    keys |= {"vgrow" for m in g["misses_2x"] if m["method"] == "ept"}
    keys |= {"jko_w1" for m in g["misses_2x"] if m["method"] == "wgan_gp"}
    why = [WHY[k] for k in sorted(keys) if k in WHY]
    if why:
        lines += ["Why, where it is known:", ""] + [f"- {w}" for w in why] + [""]
    if side is not None:
        sb = {(x["method"], x["target"]): x for x in summarize(side["rows"])}
        lines += ["## Budget study: the same generators with fewer iterations", "",
                  f"{side['meta']['note']} Headline ratio (median over seeds), then -> now, and CPU seconds "
                  "per run (median over targets):", "",
                  "| method | CPU s | " + " | ".join(targets) + " |",
                  "|---|---|" + "---|" * len(targets)]  # fmt: skip
        for m in [m for m in methods if any((m, t) in sb for t in targets)]:
            then_cpu = np.median([sb[(m, t)]["cpu_s"] for t in targets if "cpu_s" in sb.get((m, t), {})])
            now_cpu = np.median([by[(m, t)]["cpu_s"] for t in targets if "cpu_s" in by.get((m, t), {})])
            cells = []
            for t in targets:
                a, b = sb.get((m, t)), by.get((m, t))
                ok = a is not None and b is not None and a["status"] != "n/a"
                mix = floors[t]["mixture"]
                cells.append(f"{_fmt(headline(a, mix))} -> {_fmt(headline(b, mix))}" if ok else "-")
            lines.append(f"| `{m}` | {then_cpu:.1f} -> {now_cpu:.1f} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## The peers' own code (measured once on this machine kind; not re-run)", ""]
    for p in PEERS:
        o = by.get((p["ours"], p["target"]))
        mine = "-" if o is None else (
            f"`{p['ours']}` here: {o['cpu_s']:.1f} CPU s, W2^2 / floor {_fmt(o['w2_ratio'])}"
            + (f", energy / floor {_fmt(o['energy_ratio'])}, modes {o['modes_hit_min']}/{o['n_modes']}"
               if floors[p["target"]]["mixture"] else "")
        )  # fmt: skip
        lines.append(f"- {p['peer']}, {p['target']}: {p['cpu']}, {p['result']}. {mine}.")
    lines.append("")
    lines += ["## Settings (standardised units)", "",
              "Each method is the function of `gwf_tutorial.methods` named in the second column, with the "
              "options of its row of `gwf_tutorial.methods.METHODS`.", "",
              "| method | function | what | settings | nominal budget s |",
              "|---|---|---|---|---:|"]  # fmt: skip
    for m in methods:
        i = method_info(m)
        what, settings = _esc(i.summary), _esc(i.settings)
        fn = f"`{METHODS[m].function.__name__}`"
        budget = i.budget_s * meta["budget_scale"]
        lines.append(f"| `{m}` | {fn} | {what} | {settings} | {budget:g} |")
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def main() -> None:
    from gwf_tutorial import benchmark
    from gwf_tutorial.train import progress

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 targets, 1 seed, 1/4 of each budget")
    ap.add_argument("--methods", help="comma-separated method names (default: all)")
    ap.add_argument("--targets", help="comma-separated target names (default: the six of the benchmark)")
    ap.add_argument("--seeds", help="comma-separated seeds (default 0,1,2)")
    ap.add_argument("--budget-scale", type=float, help="multiply every method's nominal budget (default 1)")
    ap.add_argument("--report", action="store_true", help="only rewrite the markdown from the JSON")
    ap.add_argument("--out", help="JSON path (default gwf_tutorial/results/run_all[_quick].json)")
    ap.add_argument("--merge", help="add the rows of another run's JSON (e.g. a second process's --out)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
    stem = "run_all" + ("_quick" if args.quick else "")
    path = Path(args.out) if args.out else DATA / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    res = _load(path)
    methods = args.methods.split(",") if args.methods else benchmark.list_methods()
    for m in methods:
        benchmark.method_info(m)  # validates the names
    default_targets = ["moons", "eight_gaussians"] if args.quick else TARGETS
    targets = args.targets.split(",") if args.targets else default_targets
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else SEEDS)
    scale = args.budget_scale if args.budget_scale else (0.25 if args.quick else 1.0)
    res.setdefault("meta", {})
    if "command" not in res["meta"]:
        res["meta"].update(
            command="python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
            machine=machine_info(torch_threads=torch.get_num_threads()),
            loadavg_start=list(os.getloadavg()), budget_scale=scale, n_eval=N_EVAL,
            started=time.strftime("%Y-%m-%d %H:%M:%S"),
        )  # fmt: skip
    # the union of all methods / targets ever run, in the catalogue's order
    res["methods"] = [m for m in benchmark.list_methods() if m in set(res.get("methods", [])) | set(methods)]
    order = TARGETS + [t for t in targets if t not in TARGETS]
    res["targets"] = [t for t in order if t in set(res.get("targets", [])) | set(targets)]
    if args.merge:
        other = _load(Path(args.merge))
        for t, f in other["floors"].items():
            if t in res["floors"] and res["floors"][t]["w2"]["values"] != f["w2"]["values"]:
                raise SystemExit(f"the floors of {t} differ between the two files; not merging")
            res["floors"].setdefault(t, f)
        have = {(r["method"], r["target"], r["seed"]) for r in res["rows"]}
        new = [r for r in other["rows"] if (r["method"], r["target"], r["seed"]) not in have]
        res["rows"] += new
        both = set(res["methods"]) | set(other["methods"])
        res["methods"] = [m for m in benchmark.list_methods() if m in both]
        res["targets"] = [t for t in order if t in set(res["targets"]) | set(other["targets"])]
        print(f"merged {len(new)} rows from {args.merge}")
        _save(path, res)
    elif not args.report:
        for t in targets:
            if t not in res["floors"]:
                print(f"floor of {t} ...", flush=True)
                res["floors"][t] = compute_floor(t)
                _save(path, res)
        done = {(r["method"], r["target"], r["seed"]) for r in res["rows"]}
        todo = [(m, t, s) for m in methods for t in targets for s in seeds if (m, t, s) not in done]
        bar = progress(todo, desc="benchmark", disable=False)
        for m, t, s in bar:
            bar.set_postfix_str(f"{m} / {t} / seed {s}")
            row = run_row(m, t, s, scale, res["floors"][t])
            res["rows"].append(row)
            res["meta"]["loadavg_end"] = list(os.getloadavg())
            res["meta"]["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
            _save(path, res)
    side_path = DATA / "run_all_short.json"
    side = _load(side_path) if path == DATA / "run_all.json" and side_path.exists() else None
    md = markdown(res, side)
    md_path = RESULTS / f"{path.stem}.md" if path.resolve().parent == DATA else path.with_suffix(".md")
    md_path.write_text(md)
    print(md)
    print(f"wrote {path} and {md_path}")


if __name__ == "__main__":
    main()
