"""The JKO step-size study: does the transport term help, and for which step size tau?

One training loop (:class:`gwf_tutorial.jko.ParametricJKO`, reparameterized chain, the GWF code's
algorithm), six objectives (KL, KL-DV, JS, chi^2 through a critic; W1 through a gradient-penalised
critic; MMD^2 with a fixed multi-bandwidth Gaussian kernel, U-statistic, no critic), six step sizes
(no JKO term = the GAN of that objective, then tau = 0.01, 0.1, 1, 10, 100), three seeds, three 2-D
targets, and the same number of generator updates everywhere (``--steps`` JKO steps of ``--iters``
map updates; without the JKO term the same updates, the step boundaries then change nothing). The
data are a fixed set of 20000 target samples per seed (mini-batches of 256 drawn from it).

Budget: the default 6 x 50 = 300 generator updates per run took 15 CPU-minutes for the 324 runs
(about 8 minutes on 2 idle cores, 2 worker processes), well inside the 30-minute budget; the GWF
toy command uses 5 x 500.

Metric: W2^2 (exact, POT) between 1000 generated samples and fresh target samples, median over 3
reference draws, divided by the finite-sample floor (median W2^2 between two independent target
samples of the same size, 10 pairs); on the mixture also the energy-distance ratio and mode coverage.
Reported: medians over seeds with the [min, max] interval; diverged runs count as +inf.

Usage (from the repository root)::

    python benchmarks/jko_regularization.py            # the full study (2 worker processes)
    python benchmarks/jko_regularization.py --quick    # a smoke run: 1 target, 1 seed, 40 updates

Writes ``gwf_tutorial/results/jko_regularization.json`` (shipped with the package) and
``benchmarks/results/jko_regularization.md`` (``_quick`` suffix with ``--quick``). Chapter 6 reads the
committed results; it never recomputes them.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import json_safe, machine_info, write_results

OBJECTIVES = ["kl", "kl_dv", "js", "chi2", "w1", "mmd"]
TAUS = [None, 0.01, 0.1, 1.0, 10.0, 100.0]
TARGETS = ["eight_gaussians", "moons", "swiss_roll"]
MIXTURES = {"eight_gaussians"}
SEEDS = [0, 1, 2]
N_EVAL = 1000
MMD_FACTORS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)  # times the target's median pairwise distance


def tau_label(tau) -> str:
    return "no JKO" if tau is None else f"{tau:g}"


def _latent(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    return torch.randn(n, 2, generator=generator)


def make_chain(objective: str, tau, target, seed: int, cfg: dict):
    """The chain of one run: the same networks, optimiser and budget for every objective."""
    from gwf_tutorial import jko, nets
    from gwf_tutorial.kernels import median_bandwidth

    torch.manual_seed(10_000 + seed)
    net = nets.ResidualMLP(2, hidden=cfg["hidden"], n_blocks=cfg["n_blocks"], zero_init_last=True)
    kw = dict(
        n_iters=cfg["iters"],
        batch_size=cfg["batch_size"],
        lr=cfg["lr"],
        lr_critic=cfg["lr"],
        critic_hidden=cfg["hidden"],
        critic_depth=2,
        seed=seed,
        progress=False,
    )
    if objective == "mmd":
        g = torch.Generator().manual_seed(777)
        med = median_bandwidth(target.sample(1000, generator=g))
        obj = jko.UnbiasedMMD("gaussian", [f * med for f in MMD_FACTORS])
    elif objective == "w1":
        obj = "w1"
        kw["gp"] = cfg["gp"]
    else:
        obj = objective
        kw["r1"] = cfg["r1"]
    data = target.sample(cfg["n_data"], generator=torch.Generator().manual_seed(1000 + seed))
    return jko.ParametricJKO(net, obj, tau, _latent, data, **kw)


def run_one(task: tuple) -> dict:
    """Train one (target, objective, tau, seed) and evaluate it."""
    target_name, objective, tau, seed, cfg, floors = task
    torch.set_num_threads(1)
    from gwf_tutorial import metrics
    from gwf_tutorial.targets import get_target

    target = get_target(target_name)
    row = {"target": target_name, "objective": objective, "tau": tau, "seed": seed}
    t0, c0 = time.perf_counter(), time.process_time()
    chain = make_chain(objective, tau, target, seed, cfg)
    try:
        chain.run(cfg["steps"])
        x = chain.sample(N_EVAL, torch.Generator().manual_seed(99 + seed)).detach()
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError("non-finite samples")
        row["status"] = "ok"
    except FloatingPointError as err:
        row["status"] = "diverged"
        row["error"] = str(err)[:200]
    row["train_seconds"] = time.perf_counter() - t0
    row["generator_updates"] = sum(r.n_iters for r in chain.history)
    if row["status"] == "ok":
        fl = floors[target_name]
        w2 = metrics.score_vs_floor(x.double(), target, "w2", _floor(fl["w2"]), n_refs=3, seed=12345)
        row["w2"] = w2.score
        row["w2_ratio"] = w2.ratio
        if target_name in MIXTURES:
            en = metrics.score_vs_floor(x.double(), target, "energy", _floor(fl["energy"]), n_refs=3)
            row["energy_ratio"] = en.ratio
            cov = metrics.mode_coverage(x, target)
            row["modes_hit"] = cov.modes_hit
            row["n_modes"] = cov.n_modes
            row["high_quality_fraction"] = cov.high_quality_fraction
            row["weight_tv"] = cov.weight_tv
    else:
        row["w2_ratio"] = math.inf
        if target_name in MIXTURES:
            row["energy_ratio"] = math.inf
            row["modes_hit"] = 0
    row["seconds"] = time.perf_counter() - t0
    row["cpu_seconds"] = time.process_time() - c0
    return row


def _floor(d: dict):
    from gwf_tutorial.metrics import Floor

    return Floor(
        median=d["median"],
        q25=d["q25"],
        q75=d["q75"],
        values=torch.tensor(d["values"], dtype=torch.float64),
        n=d["n"],
        metric=d["metric"],
    )


def compute_floors(targets: list[str]) -> dict:
    from gwf_tutorial import metrics
    from gwf_tutorial.targets import get_target

    out = {}
    for name in targets:
        t = get_target(name)
        out[name] = {}
        for metric in ["w2"] + (["energy"] if name in MIXTURES else []):
            f = metrics.floor(t, N_EVAL, metric, n_pairs=10, seed=0, progress=False)
            out[name][metric] = {
                "median": f.median,
                "q25": f.q25,
                "q75": f.q75,
                "values": f.values.tolist(),
                "n": f.n,
                "metric": f.metric,
            }
    return out


def summarise(rows: list[dict], key: str) -> dict:
    """Median and [min, max] over seeds of ``key`` for each (target, objective, tau)."""
    groups: dict = {}
    for r in rows:
        if key not in r:
            continue
        groups.setdefault((r["target"], r["objective"], tau_label(r["tau"])), []).append(r[key])
    out = {}
    for (t, o, tl), vals in groups.items():
        v = np.asarray(vals, dtype=float)
        out.setdefault(t, {}).setdefault(o, {})[tl] = {
            "median": float(np.median(v)),
            "min": float(v.min()),
            "max": float(v.max()),
            "n": int(v.size),
            "n_diverged": int(np.isinf(v).sum()),
        }
    return out


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "div"
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def _cell(s: dict) -> str:
    return f"{_fmt(s['median'])} [{_fmt(s['min'])}, {_fmt(s['max'])}]"


def markdown(result: dict) -> str:
    cfg, info = result["config"], result["machine"]
    taus = [tau_label(t) for t in cfg["taus"]]
    lines = [
        "# JKO step-size study (`benchmarks/jko_regularization.py`)",
        "",
        f"Generated {result['finished']} in {result['wall_seconds'] / 60:.1f} min on {info['cpu_count']} "
        f"CPU cores ({info['processor'] or info['machine']}, {info['workers']} worker processes, 1 thread "
        f"each), torch {info['torch']}, Python {info['python']}. Command: `{result['command']}`.",
        "",
        f"Every run: {cfg['steps']} JKO steps x {cfg['iters']} map updates = "
        f"{cfg['steps'] * cfg['iters']} generator updates (the GWF toy command uses 2500; this study's "
        f"budget is 30 minutes on 2 cores), batch {cfg['batch_size']} from a fixed set of "
        f"{cfg['n_data']} target samples per seed, Adam lr "
        f"{cfg['lr']} (map and critic, betas 0.5/0.9), map ResidualMLP(2, {cfg['hidden']}, "
        f"{cfg['n_blocks']} block, identity at init) from a 2-D standard normal latent, critic MLP "
        f"{cfg['hidden']}x2 (one critic update per map update), R1 {cfg['r1']} (f-divergences), "
        f"gradient penalty {cfg['gp']} (W1); MMD = U-statistic of a Gaussian kernel mixture with "
        f"bandwidths (1/16, 1/8, 1/4, 1/2, 1) x the target's median distance. Transport cost "
        f"|T(z) - T_k(z)|^2 / (2 tau) (no averaging over dimensions). Seeds {cfg['seeds']}.",
        "",
        f"Metric: W2^2 between {N_EVAL} samples and fresh target samples (median of 3 draws) / the "
        "finite-sample floor (median of 10 pairs of target samples). Cells: median over seeds "
        "[min, max]; `div` = the run diverged (counted as +inf).",
        "",
    ]
    floors = result["floors"]
    w2 = result["summary"]["w2_ratio"]
    for t in cfg["targets"]:
        f = floors[t]["w2"]
        lines += [
            f"## {t}: W2^2 / floor (floor {f['median']:.4g}, quartiles {f['q25']:.4g}-{f['q75']:.4g})",
            "",
            "| objective | " + " | ".join(taus) + " |",
            "|---|" + "---|" * len(taus),
        ]
        for o in cfg["objectives"]:
            cells = [_cell(w2[t][o][tl]) if tl in w2[t].get(o, {}) else "-" for tl in taus]
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append("")
    for t in cfg["targets"]:
        if t not in MIXTURES:
            continue
        en, mh = result["summary"]["energy_ratio"], result["summary"]["modes_hit"]
        n_modes = next((r["n_modes"] for r in result["runs"] if r["target"] == t and "n_modes" in r), "?")
        lines += [
            f"## {t}: energy distance / floor, and modes hit (of {n_modes})",
            "",
            "| objective | " + " | ".join(taus) + " |",
            "|---|" + "---|" * len(taus),
        ]
        for o in cfg["objectives"]:
            cells = []
            for tl in taus:
                if tl not in en[t].get(o, {}):
                    cells.append("-")
                    continue
                cells.append(f"{_fmt(en[t][o][tl]['median'])}; {mh[t][o][tl]['median']:.0f} modes")
            lines.append(f"| {o} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Summary: median over targets of the median W2^2 / floor",
        "",
        "| objective | " + " | ".join(taus) + " | best |",
        "|---|" + "---|" * (len(taus) + 1),
    ]
    for o in cfg["objectives"]:
        meds = []
        for tl in taus:
            vals = [w2[t][o][tl]["median"] for t in cfg["targets"] if tl in w2[t].get(o, {})]
            meds.append(float(np.median(vals)) if vals else math.nan)
        best = taus[int(np.nanargmin(meds))] if not all(math.isnan(m) for m in meds) else "-"
        lines.append(f"| {o} | " + " | ".join(_fmt(m) for m in meds) + f" | {best} |")
    n_div = sum(r["status"] != "ok" for r in result["runs"])
    lines += [
        "",
        f"Runs: {len(result['runs'])}, diverged: {n_div}. Per run (training + evaluation): median wall "
        f"{np.median([r['seconds'] for r in result['runs']]):.1f} s, median CPU "
        f"{np.median([r['cpu_seconds'] for r in result['runs']]):.1f} s; all runs together "
        f"{sum(r['cpu_seconds'] for r in result['runs']) / 60:.1f} CPU-minutes (the machine was shared: "
        f"load average {info['load_average_at_start'][0]:.1f} on {info['cpu_count']} cores at the start).",
        "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 target, 1 seed, 2 x 20 updates")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=6, help="JKO steps per run")
    p.add_argument("--iters", type=int, default=50, help="map updates per JKO step")
    p.add_argument("--out", type=Path, default=None, help="folder (default: the committed places)")
    args = p.parse_args(argv)

    cfg = {
        "objectives": OBJECTIVES,
        "taus": TAUS,
        "targets": TARGETS,
        "seeds": SEEDS,
        "steps": args.steps,
        "iters": args.iters,
        "batch_size": 256,
        "n_data": 20_000,
        "lr": 1e-3,
        "hidden": 64,
        "n_blocks": 1,
        "r1": 0.4,
        "gp": 10.0,
        "quick": args.quick,
    }
    if args.quick:
        cfg.update(targets=["eight_gaussians"], seeds=[0], steps=2, iters=20)
    suffix = "_quick" if args.quick else ""
    from gwf_tutorial.train import progress

    t0 = time.perf_counter()
    floors = compute_floors(cfg["targets"])
    tasks = [
        (t, o, tau, s, cfg, floors)
        for t in cfg["targets"]
        for o in cfg["objectives"]
        for tau in cfg["taus"]
        for s in cfg["seeds"]
    ]
    rows = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        for row in progress(
            pool.imap_unordered(run_one, tasks), total=len(tasks), desc="runs", disable=False
        ):
            rows.append(row)
    rows.sort(key=lambda r: (r["target"], r["objective"], -1 if r["tau"] is None else r["tau"], r["seed"]))
    result = {
        "config": cfg,
        "machine": machine_info(workers=args.workers),
        "floors": floors,
        "runs": rows,
        "summary": {k: summarise(rows, k) for k in ("w2_ratio", "energy_ratio", "modes_hit", "weight_tv")},
        "wall_seconds": time.perf_counter() - t0,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python", "benchmarks/jko_regularization.py", *sys.argv[1:]]),
    }
    write_results(args.out, f"jko_regularization{suffix}", json_safe(result), markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
