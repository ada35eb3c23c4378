"""Objectives benchmark: ``value`` and ``velocity`` of every objective of ``gwf_tutorial.functionals``
against a dense plain-torch reference, and against the objectives of the base commit, in one run.

For each objective and n in (1000, 4000, 16000) (``n`` particles, ``n`` targets, 2-D, float32) the
script times, on the device it runs on (CUDA when available, else one CPU thread):

- ``library``: the objective of this working tree;
- ``baseline``: the same objective from the base commit ``cf7e60e`` (its ``functionals.py``,
  ``kernels.py`` and ``_validation.py``, read with ``git show`` and imported as a package), the code
  before the objectives stopped checking inputs inside their block loops;
- ``reference``: a few lines of plain dense torch computing the same quantity (all ``(n, m)``
  matrices at once), skipped where its matrices do not fit in the memory budget (said in the report).

Each timing is the median of ``repeats`` calls after one warm-up call (CUDA: synchronised); the
three implementations take turns within each repeat, so that they see the same machine load. It
reports library/reference and library/baseline, and checks that library and reference agree
(relative max-norm difference). Sinkhorn runs a fixed 50 iterations in all three (``tol`` out of
reach), so that they do the same work; ``solver="geomloss"`` (eps-scaling, when GeomLoss is
installed) runs its eps-scaling to convergence, so its reference is a converged dense solve
(``CONVERGED_ITERS`` iterations) and its ratio compares two converged answers.

Goals: on CUDA, library within 2x of the reference where the reference fits; on a CPU, library no
slower than the baseline.

Usage (from the repository root)::

    python benchmarks/objectives.py            # full run (CPU: several minutes, one thread)
    python benchmarks/objectives.py --quick    # smoke run (seconds), n = 100 and 200
    python benchmarks/objectives.py --quick --out DIR   # write the results into DIR

Writes ``gwf_tutorial/results/objectives.json`` (shipped with the package) and
``benchmarks/results/objectives.md`` (``_quick`` suffix with ``--quick``).
"""

from __future__ import annotations

import argparse
import importlib
import math
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from _common import ROOT, machine_info, write_results

BASE_COMMIT = "cf7e60e"
SINKHORN_ITERS = 50
CONVERGED_ITERS = 1000  # the reference of the GeomLoss solver (eps-scaling runs to convergence)
GEOMLOSS_SCALING = 0.99  # eps-scaling ratio of the GeomLoss solver (its error grows as eps shrinks)
EPS = 0.1
H_KDE = 0.3
L_SW, L_ENERGY = 200, 64


# ------------------------------------------------------------------------------------------------
# the objectives of the base commit, imported as the package ``gwf_baseline``
# ------------------------------------------------------------------------------------------------
def load_baseline(commit: str = BASE_COMMIT):
    """``functionals`` of ``commit`` with its own ``kernels`` and ``_validation``, or None."""
    folder = Path(tempfile.mkdtemp(prefix="gwf_baseline_"))
    pkg = folder / "gwf_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("functionals", "kernels", "_validation"):
        try:
            src = subprocess.run(
                ["git", "show", f"{commit}:gwf_tutorial/{name}.py"], cwd=ROOT, capture_output=True,
                text=True, check=True,
            ).stdout  # fmt: skip
        except (subprocess.CalledProcessError, FileNotFoundError):
            return None
        (pkg / f"{name}.py").write_text(src.replace("gwf_tutorial.", "gwf_baseline."))
    sys.path.insert(0, str(folder))
    return importlib.import_module("gwf_baseline.functionals")


# ------------------------------------------------------------------------------------------------
# dense plain-torch references
# ------------------------------------------------------------------------------------------------
def sqd(a, b):
    return sum((a[:, k, None] - b[None, :, k]) ** 2 for k in range(a.shape[1]))


def ref_mmd(phi, dphi):
    def value(x, y):
        return 0.5 * (phi(sqd(x, x)).mean() + phi(sqd(y, y)).mean() - 2 * phi(sqd(x, y)).mean())

    def velocity(x, y):
        def mean_grad(a, b):
            w = 2 * dphi(sqd(a, b))
            return (w.sum(1, keepdim=True) * a - w @ b) / b.shape[0]

        return mean_grad(x, y) - mean_grad(x, x)

    return value, velocity


MMD_KERNELS = {  # phi(q), phi'(q) of q = |x - y|^2, bandwidth 1
    "gaussian": (lambda q: torch.exp(-q / 2), lambda q: -torch.exp(-q / 2) / 2),
    "energy": (lambda q: -q.sqrt(), lambda q: torch.where(q > 0, -0.5 * q.rsqrt(), 0.0)),
    "imq": (lambda q: (1 + q).rsqrt(), lambda q: -0.5 * (1 + q).pow(-1.5)),
    "laplace": (
        lambda q: torch.exp(-q.sqrt()),
        lambda q: torch.where(q > 0, -torch.exp(-q.sqrt()) * 0.5 * q.rsqrt(), 0.0),
    ),
}


def ref_kl(target):
    def log_kde(x):
        n, d = x.shape
        return torch.logsumexp(-sqd(x, x) / (2 * H_KDE**2), 1) - math.log(n) - 0.5 * d * math.log(
            2 * math.pi * H_KDE**2
        )

    def value(x, y):
        return log_kde(x).mean() - target.log_prob(x).mean()

    def velocity(x, y):  # blob velocity: weights K (1/s_i + 1/s_j)
        K = torch.exp(-sqd(x, x) / (2 * H_KDE**2))
        s = K.sum(1)
        W = K * (1 / s[:, None] + 1 / s[None, :])
        return target.score(x) - (W @ x - W.sum(1, keepdim=True) * x) / H_KDE**2

    return value, velocity


def ref_sw(theta):
    def value(x, y):
        px, py = torch.sort(x @ theta.T, 0).values, torch.sort(y @ theta.T, 0).values
        return 0.5 * ((px - py) ** 2).mean()

    def velocity(x, y):
        px = x @ theta.T
        order = torch.argsort(px, 0)
        target = torch.empty_like(px).scatter_(0, order, torch.sort(y @ theta.T, 0).values)
        return (target - px) @ theta / theta.shape[0]

    return value, velocity


def ref_sliced_energy(theta, c_d):
    def value(x, y):
        total = 0.0
        for t in theta:
            px, py = x @ t, y @ t
            exy = (px[:, None] - py[None]).abs().mean()
            total = total + exy - 0.5 * (px[:, None] - px[None]).abs().mean()
            total = total - 0.5 * (py[:, None] - py[None]).abs().mean()
        return c_d * total / theta.shape[0]

    def velocity(x, y):
        coef = []
        for t in theta:
            px, py = x @ t, y @ t
            sx, sy = torch.sign(px[:, None] - px[None]), torch.sign(px[:, None] - py[None])
            coef.append(sx.mean(1) - sy.mean(1))
        return c_d * torch.stack(coef, 1) @ theta / theta.shape[0]

    return value, velocity


def ref_sinkhorn(iters: int = SINKHORN_ITERS):
    def solve(a, b):  # log-domain Sinkhorn, v then u, as POT's sinkhorn_log
        cost = 0.5 * sqd(a, b)
        la, lb = -math.log(a.shape[0]), -math.log(b.shape[0])
        lu, lv = a.new_zeros(a.shape[0]), a.new_zeros(b.shape[0])
        for _ in range(iters):
            lv = lb - torch.logsumexp(lu[:, None] - cost / EPS, 0)
            lu = la - torch.logsumexp(lv[None] - cost / EPS, 1)
        return cost, lu, lv

    def ot(a, b):
        cost, lu, lv = solve(a, b)
        log_p = lu[:, None] + lv[None] - cost / EPS
        p = log_p.exp()
        la, lb = -math.log(a.shape[0]), -math.log(b.shape[0])
        return (p * cost).sum() + EPS * (p * (log_p - la - lb - 1)).sum() + EPS

    def value(x, y):
        return ot(x, y) - 0.5 * ot(x, x) - 0.5 * ot(y, y)

    def velocity(x, y):
        cost, _, lv = solve(x, y)
        cost_xx, _, lv_xx = solve(x, x)
        return torch.softmax(lv[None] - cost / EPS, 1) @ y - torch.softmax(lv_xx[None] - cost_xx / EPS, 1) @ x

    return value, velocity


# ------------------------------------------------------------------------------------------------
# cases: (name, build(module) -> objective, reference (value, velocity), kwargs of the calls)
# ------------------------------------------------------------------------------------------------
def cases(device, dtype, geomloss_ok: bool):
    from gwf_tutorial.functionals import slicing_constant
    from gwf_tutorial.targets import Gaussian

    target = Gaussian(torch.tensor([1.0, 1.0], dtype=dtype, device=device), 0.49 * torch.eye(2, dtype=dtype,
                      device=device))  # fmt: skip
    g = torch.Generator().manual_seed(1)
    theta_sw = torch.randn(L_SW, 2, generator=g, dtype=dtype)
    theta_sw = (theta_sw / theta_sw.norm(dim=1, keepdim=True)).to(device)
    alpha = (torch.arange(L_ENERGY, dtype=torch.float64) + 0.5) * (math.pi / L_ENERGY)
    theta_en = torch.stack([alpha.cos(), alpha.sin()], 1).to(dtype=dtype, device=device)
    fixed = dict(max_iter=SINKHORN_ITERS, tol=1e-300)
    out = []
    for name, (phi, dphi) in MMD_KERNELS.items():
        bw = None if name == "energy" else 1.0
        out.append((f"mmd_{name}", lambda F, name=name, bw=bw: F.MMD(name, bw), ref_mmd(phi, dphi), {}))
    out.append(("kl_blob", lambda F: F.KL(target, H_KDE), ref_kl(target), {}))
    out.append(("sliced_wasserstein", lambda F: F.SlicedWasserstein(L_SW), ref_sw(theta_sw),
                dict(projections=theta_sw)))  # fmt: skip
    out.append(("sliced_energy", lambda F: F.SlicedEnergyMMD(L_ENERGY), ref_sliced_energy(theta_en,
                slicing_constant(2)), dict(projections=theta_en)))  # fmt: skip
    solvers = [("dense", fixed), ("lazy", fixed)]
    solvers += [("geomloss", dict(scaling=GEOMLOSS_SCALING))] if geomloss_ok else []
    for solver, kw in solvers:
        build = lambda F, solver=solver, kw=kw: F.SinkhornDivergence(EPS, solver=solver, **kw)  # noqa: E731
        # GeomLoss stops when its eps-scaling reaches eps: its reference is a converged dense solve
        ref = ref_sinkhorn(CONVERGED_ITERS if solver == "geomloss" else SINKHORN_ITERS)
        out.append((f"sinkhorn_{solver}", build, ref, {}))
    return out


# Reference memory: (n, m) matrices alive at once in the references (a few; the sliced-energy
# reference is a loop over directions of (n, n) matrices).
REF_MATRICES = 6


def skip_reason(name: str, n: int, device: torch.device, quick: bool) -> str | None:
    """Why (name, n) is not run at all here, or None."""
    if quick or device.type == "cuda":
        return None
    if n >= 16000 and (name.startswith("sinkhorn") or name in ("mmd_imq", "mmd_laplace")):
        return "CPU run time (minutes per call with three implementations at n = 16000)"
    if name == "sinkhorn_lazy" and n > 1000:
        return "CPU run time: POT's lazy solver recomputes the cost in NumPy, about a minute per call at 4000"
    return None


def repeats_for(name: str, n: int, device: torch.device, quick: bool) -> int:
    """Median of this many calls: fewer for the slow ones on a CPU."""
    if quick:
        return 1
    if device.type == "cuda":
        return 5 if n >= 16000 else 10
    if name.startswith("sinkhorn"):
        return 3 if n <= 1000 else 1
    return {1000: 7, 4000: 3}.get(n, 1)


def reference_fits(n: int, itemsize: int, device: torch.device, budget_cpu_bytes: float) -> bool:
    need = REF_MATRICES * n * n * itemsize
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return need < 0.5 * free
    return need < budget_cpu_bytes


def timed(fns: dict, repeats: int, device) -> tuple[dict, dict]:
    """Median seconds per call of each function and its output; the functions take turns within
    each repeat, so that all see the same load (on a shared machine the load changes by the minute)."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    outs = {}
    for key, fn in fns.items():  # warm-up
        outs[key] = fn()
    sync()
    times = {key: [] for key in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            outs[key] = fn()
            sync()
            times[key].append(time.perf_counter() - t0)
    return {key: sorted(t)[len(t) // 2] for key, t in times.items()}, outs


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


AGREE_RTOL = {"sinkhorn_geomloss": 2e-2}  # eps-scaling (0.99) against a converged solve; others 1e-3


def run_case(name, build, ref, kw, F_lib, F_base, x, y, repeats, device, ref_ok) -> list[dict]:
    lib = build(F_lib)
    base = None
    if F_base is not None:
        try:
            base = build(F_base)
        except (ValueError, TypeError):  # an option the base commit does not have
            base = None
    yy = None if name.startswith("kl") else y
    rows = []
    for op, ref_fn in zip(("value", "velocity"), ref):
        row = dict(objective=name, n=x.shape[0], op=op)
        fns = {"library": lambda op=op: getattr(lib, op)(x, yy, **kw)}
        if base is not None:
            fns["baseline"] = lambda op=op: getattr(base, op)(x, yy, **kw)
        if ref_ok:
            fns["reference"] = lambda f=ref_fn: f(x, y)
        times, outs = timed(fns, repeats, device)  # x does not require grad: no graph is built
        for key in ("library", "baseline", "reference"):
            row[f"{key}_s"] = times.get(key)
        row["rel_diff"] = rel_diff(outs["library"], outs["reference"]) if ref_ok else None
        if ref_ok:
            row["agree"] = row["rel_diff"] < AGREE_RTOL.get(name, 1e-3)
        row["vs_reference"] = None if row["reference_s"] is None else row["library_s"] / row["reference_s"]
        row["vs_baseline"] = None if row["baseline_s"] is None else row["library_s"] / row["baseline_s"]
        rows.append(row)
        print(
            f"{name:20s} n={x.shape[0]:6d} {op:8s} library {fmt(row['library_s'])}s  "
            f"baseline {fmt(row['baseline_s'])}s  reference {fmt(row['reference_s'])}s  "
            f"rel.diff {fmt(row['rel_diff'], '.2g')}",
            flush=True,
        )
    return rows


def fmt(v, spec=".3g"):
    return "–" if v is None else format(v, spec)


def report(res: dict) -> str:
    lines = [
        "# Objectives: library vs dense reference vs base commit",
        "",
        f"Device: {res['device_name']} ({res['device']}), torch {res['machine']['torch']}, "
        f"POT {res['machine']['pot']}, GeomLoss {res['geomloss'] or 'not installed'}, "
        f"pykeops {res['pykeops'] or 'not installed'}, torch threads {res['threads']}, {res['dtype']}; "
        f"base commit {res['base_commit']}. Command: `{res['command']}`.",
        "",
        "Median seconds per call (after a warm-up call); `lib/ref` is library over dense reference, "
        "`lib/base` library over the base commit; `rel.diff` the max-norm difference of library and "
        "reference relative to the reference's max norm (Sinkhorn: 50 iterations in all).",
        "",
        "| objective | n | op | library s | baseline s | reference s | lib/ref | lib/base | rel.diff |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['objective']} | {r['n']} | {r['op']} | {fmt(r['library_s'])} | {fmt(r['baseline_s'])} | "
            f"{fmt(r['reference_s'])} | {fmt(r['vs_reference'], '.2f')} | {fmt(r['vs_baseline'], '.2f')} | "
            f"{fmt(r['rel_diff'], '.1e')} |"
        )
    if res["skipped"]:
        lines += ["", "Not run or reference skipped:", ""]
        lines += [f"- {s['objective']} at n = {s['n']}: {s['why']}" for s in res["skipped"]]
    lines += ["", res["summary"], ""]
    return "\n".join(lines)


def summarize(rows: list[dict], device: torch.device) -> str:
    with_base = [r for r in rows if r["vs_baseline"] is not None]
    with_ref = [r for r in rows if r["vs_reference"] is not None]
    parts = []
    if with_base:
        worst = max(with_base, key=lambda r: r["vs_baseline"])
        median = sorted(r["vs_baseline"] for r in with_base)[len(with_base) // 2]
        parts.append(
            f"library/baseline: median {median:.2f}, "
            f"worst {worst['vs_baseline']:.2f} ({worst['objective']} {worst['op']}, n = {worst['n']})"
        )
    if with_ref:
        worst = max(with_ref, key=lambda r: r["vs_reference"])
        parts.append(
            f"library/reference: worst {worst['vs_reference']:.2f} ({worst['objective']} {worst['op']}, "
            f"n = {worst['n']}); all agree: {all(r['agree'] for r in with_ref)}"
        )
    return f"Summary ({device.type}): " + "; ".join(parts) + "."


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: n = 100, 200, one repeat")
    ap.add_argument("--out", default=None, help="folder for the results (default: the committed places)")
    ap.add_argument("--no-baseline", action="store_true", help="do not time the base commit")
    ap.add_argument("--threads", type=int, default=1, help="torch threads on a CPU (default 1)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", "Sinkhorn did not converge")  # 50 fixed iterations, by design

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = torch.float32
    sizes = (100, 200) if args.quick else (1000, 4000, 16000)
    import gwf_tutorial.functionals as F_lib

    F_base = None if args.no_baseline else load_baseline()
    versions = {}
    for mod in ("geomloss", "pykeops"):
        try:
            versions[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 (not installed, or pykeops without a compiler)
            versions[mod] = None
    rows, skipped = [], []
    t_start = time.perf_counter()
    for n in sizes:
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, 2, generator=g, dtype=dtype).to(device)
        y = (0.7 * torch.randn(n, 2, generator=g, dtype=dtype) + 1.0).to(device)
        ref_ok = reference_fits(n, x.element_size(), device, budget_cpu_bytes=8 * 2**30)
        for name, build, ref, kw in cases(device, dtype, versions["geomloss"] is not None):
            why = skip_reason(name, n, device, args.quick)
            if why is not None:
                skipped.append(dict(objective=name, n=n, why=f"not run ({why})"))
                continue
            ok = ref_ok and not (name == "sliced_energy" and n > 4000 and device.type == "cpu")
            if not ok:
                skipped.append(dict(objective=name, n=n, why="dense reference skipped (memory or CPU time)"))
            reps = repeats_for(name, n, device, args.quick)
            rows += run_case(name, build, ref, kw, F_lib, F_base, x, y, reps, device, ok)
    res = dict(
        machine=machine_info(),
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
        threads=torch.get_num_threads(),
        dtype=str(dtype),
        geomloss=versions["geomloss"],
        pykeops=versions["pykeops"],
        base_commit=BASE_COMMIT if F_base is not None else None,
        command="python benchmarks/objectives.py" + (" --quick" if args.quick else ""),
        sinkhorn_iterations=SINKHORN_ITERS,
        rows=rows,
        skipped=skipped,
        wall_s=time.perf_counter() - t_start,
    )
    res["summary"] = summarize(rows, device)
    stem = "objectives_quick" if args.quick else "objectives"
    write_results(args.out, stem, res, report(res))
    return res


if __name__ == "__main__":
    main()
