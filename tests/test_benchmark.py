"""Tests of gwf_tutorial.benchmark: one entry point for every method, on any target object."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from gwf_tutorial import benchmark
from gwf_tutorial.benchmark import FAMILIES, NotApplicableError, Standardizer


class ShiftedGaussian:
    """A target that is not in the registry: N(m, s^2 I) with a sampler and a score, any dimension."""

    def __init__(self, mean=(3.0, -1.0), std=0.5):
        self.mean = torch.tensor(mean, dtype=torch.float64)
        self.std = std
        self.dim = self.mean.numel()

    def sample(self, n, generator=None):
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self.mean + self.std * z).float()

    def score(self, x):
        return -(x - self.mean.to(x.dtype)) / self.std**2


class NoScore:
    """Samples only: a ring, like the book's targets but defined here."""

    def sample(self, n, generator=None):
        t = 2 * math.pi * torch.rand(n, generator=generator)
        r = 2.0 + 0.1 * torch.randn(n, generator=generator)
        return torch.stack([r * t.cos(), r * t.sin()], dim=1)


def tiny(method: str) -> float:
    """A budget of about one iteration of every loop of the method."""
    return 1e-3 * benchmark.method_info(method).budget_s


# ---------------------------------------------------------------------------------------------
# the catalogue
# ---------------------------------------------------------------------------------------------

EXPECTED = {
    "particle": {"particle_sw", "particle_energy", "particle_mmd", "particle_sinkhorn", "particle_kl",
                 "langevin"},
    "f-flow": {"f_flow", "vgrow", "ept", "monoflow", "dgflow"},
    "jko": {"jko_kl", "jko_kl_dv", "jko_js", "jko_chi2", "jko_hellinger", "jko_mmd", "jko_w1", "jko_sinkhorn",
            "jko_sw"},
    "gan": {"gan", "gan_ns", "fgan_kl", "wgan_gp", "mmd_gan", "gmmn"},
    "s-jko": {"sjko"},
    "drifting": {"drift_paper", "drift_algorithm2", "drift_multi_temperature", "drift_mmd", "drift_sinkhorn",
                 "drift_sw", "drift_critic"},
}  # fmt: skip


def test_list_methods_complete_and_grouped():
    names = benchmark.list_methods()
    assert len(names) == len(set(names))
    assert set(names) == set().union(*EXPECTED.values())
    for fam in FAMILIES:
        assert set(benchmark.list_methods(fam)) == EXPECTED[fam]
        for m in benchmark.list_methods(fam):
            info = benchmark.method_info(m)
            assert info.family == fam and info.budget_s > 0 and info.settings and 2 <= info.chapter <= 8
    # every drift field class of the library is a method; ObjectiveDrift three times (MMD, Sinkhorn, SW)
    from gwf_tutorial import drifting

    fields = {n for n in drifting.__all__ if n.endswith("Drift")}
    assert len(EXPECTED["drifting"]) == len(fields) - 1 + 3


def test_bad_method_name_lists_choices():
    with pytest.raises(ValueError, match="unknown method") as err:
        benchmark.run("no_such_method", ShiftedGaussian(), 10, 0)
    for name in ("particle_sw", "sjko", "drift_critic", "jko_w1"):
        assert name in str(err.value)
    with pytest.raises(TypeError, match="method"):
        benchmark.run(3, ShiftedGaussian(), 10, 0)
    with pytest.raises(ValueError, match="family"):
        benchmark.list_methods("nope")


# ---------------------------------------------------------------------------------------------
# every method on a custom target, tiny budget
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", benchmark.list_methods())
def test_every_method_runs_on_a_custom_target(method):
    target = ShiftedGaussian()
    x = benchmark.run(method, target, 48, seed=1, budget_s=tiny(method))
    assert x.shape == (48, 2) and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())
    # samples live on the target's scale, not the standardised one: the mean is near (3, -1)
    assert float((x.double().mean(0) - target.mean).norm()) < 3.0


def test_methods_in_three_dimensions():
    target = ShiftedGaussian(mean=(1.0, 2.0, 3.0), std=0.3)
    for method in ("particle_sw", "jko_kl", "sjko", "drift_algorithm2", "langevin"):
        x = benchmark.run(method, target, 32, seed=0, budget_s=tiny(method))
        assert x.shape == (32, 3) and bool(torch.isfinite(x).all())


def test_score_methods_not_applicable_without_a_score():
    ok, why = benchmark.applicable("langevin", NoScore())
    assert not ok and "score" in why
    assert benchmark.applicable("particle_sw", NoScore()) == (True, "")
    with pytest.raises(NotApplicableError, match="score"):
        benchmark.run("particle_kl", NoScore(), 20, 0)
    # a registered target without a density (moons) is not applicable either
    assert not benchmark.applicable("langevin", "moons")[0]
    assert benchmark.applicable("langevin", "eight_gaussians")[0]


# ---------------------------------------------------------------------------------------------
# determinism and budget
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["particle_sw", "jko_kl", "drift_critic", "sjko", "langevin", "vgrow"])
def test_same_seed_same_samples_other_seed_other_samples(method):
    target = ShiftedGaussian()
    a = benchmark.run(method, target, 40, seed=3, budget_s=tiny(method))
    b = benchmark.run(method, target, 40, seed=3, budget_s=tiny(method))
    c = benchmark.run(method, target, 40, seed=4, budget_s=tiny(method))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_run_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    benchmark.run("drift_critic", ShiftedGaussian(), 20, seed=0, budget_s=tiny("drift_critic"))
    assert torch.equal(torch.rand(3), before)


def test_default_budget_is_the_nominal_budget():
    info = benchmark.method_info("dgflow")
    a = benchmark.run("dgflow", ShiftedGaussian(), 100, seed=0)
    b = benchmark.run("dgflow", ShiftedGaussian(), 100, seed=0, budget_s=info.budget_s)
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# quality on closed forms
# ---------------------------------------------------------------------------------------------


def test_standardizer_round_trip_and_scale():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([5.0, -2.0]) + torch.randn(4000, 2, generator=g) * torch.tensor([2.0, 1.0])
    st = Standardizer.from_samples(y)
    assert abs(st.scale - math.sqrt(float(y.double().var(0).mean()))) < 1e-9
    assert torch.allclose(st.inverse(st.forward(y)), y, atol=1e-5)
    u = st.forward(y.double())
    assert abs(float(u.var(0).mean()) - 1.0) < 1e-9 and float(u.mean(0).abs().max()) < 1e-9
    with pytest.raises(ValueError, match="spread"):
        Standardizer.from_samples(torch.ones(10, 2))


def test_langevin_reaches_the_gaussian_through_the_whitened_score():
    # N((3, -1), 0.25 I): ULA with step 0.05 d / E|score|^2 = 0.05 s^2 has stationary variance
    # s^2 / (1 - h / (2 s^2)) = 0.25 / (1 - 0.025) = 0.2564 per coordinate
    target = ShiftedGaussian()
    x = benchmark.run("langevin", target, 4000, seed=0).double()
    assert float((x.mean(0) - target.mean).abs().max()) < 0.03
    assert abs(float(x.var(0).mean()) - 0.25 / (1 - 0.025)) < 0.015


def test_sliced_flow_matches_moments_of_a_custom_target():
    target = ShiftedGaussian(mean=(-4.0, 10.0), std=2.0)
    x = benchmark.run("particle_sw", target, 800, seed=0).double()
    assert float((x.mean(0) - target.mean).abs().max()) < 0.2
    assert abs(float(x.std(0).mean()) - 2.0) < 0.15


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------


def test_argument_checks_name_the_argument():
    t = ShiftedGaussian()
    with pytest.raises(ValueError, match="n_samples"):
        benchmark.run("particle_sw", t, 1, 0)
    with pytest.raises(TypeError, match="n_samples"):
        benchmark.run("particle_sw", t, 2.5, 0)
    with pytest.raises(ValueError, match="seed"):
        benchmark.run("particle_sw", t, 10, -1)
    with pytest.raises(ValueError, match="budget_s"):
        benchmark.run("particle_sw", t, 10, 0, budget_s=0.0)
    with pytest.raises(ValueError, match="budget_s"):
        benchmark.run("particle_sw", t, 10, 0, budget_s=float("nan"))
    with pytest.raises(TypeError, match="target"):
        benchmark.run("particle_sw", object(), 10, 0)
    with pytest.raises(TypeError, match="progress"):
        benchmark.run("particle_sw", t, 10, 0, progress="yes")


class BadShape:
    def sample(self, n, generator=None):
        return torch.zeros(n + 1, 2)


class NaNTarget:
    def sample(self, n, generator=None):
        return torch.full((n, 2), float("nan"))


def test_bad_targets_are_reported():
    with pytest.raises(ValueError, match="shape"):
        benchmark.run("particle_sw", BadShape(), 10, 0)
    with pytest.raises(ValueError, match="NaN"):
        benchmark.run("particle_sw", NaNTarget(), 10, 0)


# ---------------------------------------------------------------------------------------------
# the committed results and their summaries (gwf_tutorial.benchmark, used by benchmarks/run_all.py
# and chapter 11), on made-up rows
# ---------------------------------------------------------------------------------------------


def _script(name: str):
    """Load ``benchmarks/NAME.py`` as a module."""
    import importlib.util
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "benchmarks"
    if str(folder) not in sys.path:  # as when it runs as a script: its folder (and _common) importable
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_all():
    return _script("run_all")


def test_load_results_reads_the_shipped_json_and_names_the_choices():
    res = benchmark.load_results("run_all")
    assert {"rows", "floors", "methods", "targets"} <= set(res)
    assert set(res["methods"]) <= set(benchmark.list_methods())
    with pytest.raises(ValueError, match="stem: no committed results named 'nope'.*run_all"):
        benchmark.load_results("nope")
    for bad in ("../pyproject", "", "results/run_all", 3):
        with pytest.raises(ValueError, match="stem"):
            benchmark.load_results(bad)


def test_run_all_script_uses_the_package_summaries():
    ra = _run_all()
    for name in ("summarize", "headline", "goals", "GOAL_2X", "GOAL_BEST"):
        assert getattr(ra, name) is getattr(benchmark, name), f"run_all.{name} is not the package's"
    assert not hasattr(ra, "family_ratios")  # defined once, in the package


def test_method_table_script_wrote_the_shipped_table():
    """Budgets and peers live in benchmarks/method_table.py; the package ships the JSON it writes."""
    mt = _script("method_table")
    shipped = benchmark.load_results("method_table")
    assert shipped["peers"] == mt.PEERS == _run_all().PEERS
    assert {m: (r["budget_s"], r["summary"], r["settings"]) for m, r in shipped["methods"].items()} == {
        m: tuple(v) for m, v in mt.NOMINAL.items()}
    assert benchmark.list_methods() == list(mt.NOMINAL)
    assert not hasattr(benchmark, "PEERS")


def test_summary_and_goals():
    floors = {"moons": {"mixture": False}, "eight_gaussians": {"mixture": True}}

    def row(m, t, s, w2, en, modes=None):
        fam = benchmark.method_info(m).family
        r = dict(method=m, family=fam, target=t, seed=s, budget_s=1.0, status="ok", w2_ratio=w2,
                 energy_ratio=en, sinkhorn_ratio=1.0, cpu_s=1.0)  # fmt: skip
        if modes is not None:
            r.update(modes_hit=modes, n_modes=8, weight_tv=0.05, hq=0.9)
        return r

    rows = [row("particle_sw", "moons", s, w2, 1.0) for s, w2 in enumerate((0.9, 1.1, 1.0))]
    rows += [row("particle_energy", "moons", s, 2.5, 1.0) for s in range(3)]
    rows += [row("particle_sw", "eight_gaussians", s, 1.0, 1.2, modes=8) for s in range(3)]
    rows += [row("particle_energy", "eight_gaussians", s, 1.0, 1.1, modes=7) for s in range(3)]
    rows += [dict(method="langevin", family="particle", target="moons", seed=0, budget_s=1.0, status="n/a",
                  reason="no score")]  # fmt: skip
    summary = benchmark.summarize(rows)
    by = {(s["method"], s["target"]): s for s in summary}
    sw = by[("particle_sw", "moons")]
    assert sw["w2_ratio"] == 1.0 and sw["w2_ratio_max"] == 1.1
    assert by[("langevin", "moons")]["status"] == "n/a"
    methods = ["particle_sw", "particle_energy", "langevin"]
    g = benchmark.goals(summary, floors, methods, ["moons", "eight_gaussians"])
    assert [(m["method"], m["target"]) for m in g["misses_2x"]] == [("particle_energy", "moons")]
    best = {b["target"]: b for b in g["best"]}
    # on the mixture the headline is the energy ratio: particle_energy (1.1) beats particle_sw (1.2),
    # but it covers 7 of 8 modes, so the goal is missed
    assert best["eight_gaussians"]["method"] == "particle_energy" and not best["eight_gaussians"]["ok"]
    assert best["moons"]["method"] == "particle_sw" and best["moons"]["ok"]
    # family ratios: the headline of each applicable method of the family, in the catalogue's order
    assert benchmark.family_ratios(by, floors, "particle", "eight_gaussians") == [1.2, 1.1]
    assert benchmark.family_ratios(by, floors, "particle", "moons") == [1.0, 2.5]  # langevin n/a: left out
    assert benchmark.headline(by[("particle_sw", "eight_gaussians")], True) == 1.2
    assert benchmark.headline(by[("particle_sw", "eight_gaussians")], False) == 1.0


def test_run_all_markdown_budget_study():
    """The report compares an earlier, shorter run of the same methods, then -> now, per target."""
    ra = _run_all()
    fl = dict(median=1.0, q25=1.0, q75=1.0, values=[1.0], n=10, metric="w2")
    floors = {"moons": {"mixture": False, "sigma2": 1.0, "sinkhorn_eps": 0.1, "w2": fl, "energy": fl,
                        "sinkhorn": fl}}  # fmt: skip

    def rows(m, w2, cpu):
        fam = benchmark.method_info(m).family
        return [dict(method=m, family=fam, target="moons", seed=s, budget_s=1.0, status="ok", w2_ratio=w2,
                     energy_ratio=1.0, sinkhorn_ratio=1.0, cpu_s=cpu) for s in range(3)]  # fmt: skip

    machine = dict(cpu_count=2, processor="x86_64", torch="t", pot="p", python="3")
    meta = dict(command="now", machine=machine, budget_scale=1.0, loadavg_start=[1.0])
    res = dict(meta=meta, floors=floors, targets=["moons"], methods=["particle_sw", "sjko"],
               rows=rows("particle_sw", 1.0, 2.0) + rows("sjko", 1.25, 18.0))  # fmt: skip
    side = dict(meta=dict(note="Earlier run."), rows=rows("sjko", 2.5, 4.5))
    md = ra.markdown(res, side)
    assert "## Budget study" in md and "Earlier run." in md
    assert "| `sjko` | 4.5 -> 18.0 | 2.50 -> 1.25 |" in md
    assert "| `particle_sw` | 2.0 ->" not in md  # only the methods of the earlier run
    assert "## Budget study" not in ra.markdown(res, None)


# ------------------------------------------------------------------------------------------------
# benchmarks/particle_flows.py: the grid, its selection, and merging a partial run
# ------------------------------------------------------------------------------------------------
def test_particle_flows_plan_selects_parts_of_the_grid():
    pf = _script("particle_flows")
    full = pf.plan(False)
    cells = {(c["objective"], c["n"]) for c in full}
    assert ("sinkhorn", 16000) not in cells and ("energy", 16000) in cells
    assert ("sinkhorn_lazy", 16000) in cells  # the online solver runs where the dense one does not
    assert len(cells) == len(pf.OBJECTIVES) * len(pf.NS) - len(pf.NOT_RUN)
    kl = next(c for c in full if c["objective"] == "kl")
    assert {r["target"] for r in kl["runs"]} == {"gaussian", "banana", "eight_gaussians"}  # no score: moons
    assert len(next(c for c in full if c["objective"] == "sw")["runs"]) == 4 * 3
    part = pf.plan(False, objectives=["energy", "kl"], ns=[16000], targets=["moons"], seeds=[1])
    assert [(c["objective"], c["n"], c["runs"]) for c in part] == [
        ("energy", 16000, [dict(target="moons", seed=1, steps=pf.STEPS["energy"])])
    ]  # kl has no run on the moons, so no configuration


def test_particle_flows_merge_replaces_remeasured_rows_and_keeps_the_rest():
    pf = _script("particle_flows")

    def q(obj, t, n, seed, ratio):
        return dict(
            objective=obj, target=t, n=n, seed=seed, steps=10, w2_ratio=ratio, energy_ratio=1.0, run=0
        )

    def cost(obj, n, sec):
        return dict(
            objective=obj, n=n, sec_per_step=sec, peak_mem_mb=1.0, rss_growth_mb=1.0, steps_timed=1, run=0
        )

    old = dict(
        runs=[dict(command="first")],
        quality=[q("sw", "moons", 1000, s, 1.0 + s) for s in range(3)]
        + [q("energy", "moons", 16000, 0, 5.0)],
        cost=[cost("sw", 1000, 0.1), cost("energy", 16000, 9.0)],
    )
    new = dict(
        runs=[dict(command="second")],
        quality=[q("energy", "moons", 16000, s, 1.5) for s in range(3)],
        cost=[cost("energy", 16000, 3.0)],
    )
    out = pf.merge(old, new)
    assert [r["command"] for r in out["runs"]] == ["first", "second"]
    energy = [r for r in out["quality"] if r["objective"] == "energy"]
    assert sorted(r["seed"] for r in energy) == [0, 1, 2] and {r["run"] for r in energy} == {1}
    assert {r["w2_ratio"] for r in energy} == {1.5}  # seed 0 re-measured: replaced
    assert len([r for r in out["quality"] if r["objective"] == "sw"]) == 3  # untouched
    assert {(c["objective"], c["sec_per_step"], c["run"]) for c in out["cost"]} == {
        ("sw", 0.1, 0),
        ("energy", 3.0, 1),
    }
    summary = {(s["objective"], s["n"]): s for s in out["summary"]}
    assert summary["energy", 16000]["seeds"] == 3 and summary["sw", 1000]["w2_ratio_median"] == 2.0
    md = pf.markdown(
        out
        | dict(
            machine=dict(cpu_count=2, processor="x86_64", torch="t", pot="p", python="3"),
            settings={},
            floor_pairs=10,
            floors={"moons": {"1000": {"w2": 0.1}, "2000": {"w2": 0.05}}},
            not_run=[["sinkhorn", 16000, "too big"]],
        )
        | dict(
            runs=[
                r
                | dict(
                    date="d", jobs=1, total_seconds=60, cpu_seconds=60, loadavg_start=[1.0], loadavg_end=[1.0]
                )
                for r in out["runs"]
            ]
        )
    )
    assert "1. `first`" in md and "2. `second`" in md and "| sinkhorn | 16000 | not run |" in md


def test_particle_flows_memory_probe_rewrites_only_the_probed_rows():
    pf = _script("particle_flows")
    res = dict(
        runs=[dict(command="flows")],
        cost=[
            dict(objective="sw", n=1000, peak_mem_mb=585.0, mmap_threshold_fixed=True, run=0),
            dict(objective="kl", n=1000, peak_mem_mb=30.0, mmap_threshold_fixed=True, run=0),
        ],
    )
    probes = {("sw", 1000): dict(live_peak_kb=2048, mmap_threshold_fixed=True)}
    out = pf.apply_memory(res, probes, dict(command="memory"))
    sw, kl = out["cost"]
    assert sw["peak_mem_mb"] == 2.0 and sw["mem_run"] == 1 and sw["run"] == 0
    assert kl["peak_mem_mb"] == 30.0 and "mem_run" not in kl
    assert [r["command"] for r in out["runs"]] == ["flows", "memory"]
    assert res["cost"][0]["peak_mem_mb"] == 585.0  # the input is not modified


def test_particle_flows_memory_probe_runs_in_a_fresh_process():
    """One step of the sliced flow at n = 1000: a positive live peak far below the RSS of the process."""
    pf = _script("particle_flows")
    cfg = dict(objective="sw", n=1000, runs=[dict(target="moons", seed=0, steps=1)])
    out = pf.live_memory(cfg)
    assert out["mmap_threshold_fixed"] is True
    assert 0 < out["live_peak_kb"] < 64 * 1024


def test_particle_flows_floors_agree_on_the_common_targets():
    pf = _script("particle_flows")
    old = {"moons": {"1000": {"w2": 0.1}}, "gaussian": {"1000": {"w2": 0.02}}}
    assert pf.floors_agree(old, {"gaussian": {"1000": {"w2": 0.02}}})  # a run without the moons
    assert pf.floors_agree(old, {"banana": {"1000": {"w2": 0.2}}})  # a new target
    assert not pf.floors_agree(old, {"gaussian": {"1000": {"w2": 0.03}}})  # a library change


# ---------------------------------------------------------------------------------------------
# nothing lost: the dispatch through gwf_tutorial.methods gives the samples of the code before it
# ---------------------------------------------------------------------------------------------

# tests/golden/benchmark_run.pt was written by the per-method runners of benchmark.py before they
# became rows of gwf_tutorial.methods.METHODS (commit 00bef43): for every method, run(m, target, 64, 0,
# budget_s=0.02 * nominal) on "moons" ("eight_gaussians" for the methods that need a score).
_GOLDEN = torch.load(Path(__file__).parent / "golden" / "benchmark_run.pt")


# Bit-identical on the CPU kind the file was made on. Another CPU kind dispatches torch to other vector
# kernels (other rounding): there the same code differs from the file by at most 3.6e-5 (measured on all
# 34 methods, samples of size about 5), while a changed computation moves samples by 1e-2 or more.
GOLDEN_ATOL = 1e-4


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("method", sorted(_GOLDEN))
def test_samples_bit_identical_to_the_code_before_the_methods_module(method):
    g = _GOLDEN[method]
    x = benchmark.run(method, g["target"], g["n"], g["seed"], budget_s=g["budget_s"])
    if not torch.equal(x, g["x"]):
        torch.testing.assert_close(x, g["x"], rtol=0, atol=GOLDEN_ATOL)


def test_golden_tolerance_catches_a_changed_computation():
    g = _GOLDEN["particle_mmd"]
    x = benchmark.run("particle_mmd", g["target"], g["n"], g["seed"], budget_s=1.5 * g["budget_s"])
    assert (x - g["x"]).abs().max() > 100 * GOLDEN_ATOL  # 50 % more steps: far outside the tolerance


def test_golden_file_covers_every_method():
    assert set(_GOLDEN) == set(benchmark.list_methods())


def test_run_dispatches_through_the_method_map(monkeypatch):
    import dataclasses

    from gwf_tutorial import methods

    assert set(benchmark.list_methods()) <= set(methods.METHODS)
    seen = {}

    def fake(x0, y, *, n_steps=200, generator=None, progress=False, **kw):
        seen.update(kw, n_steps=n_steps)
        return x0

    quarter = benchmark.method_info("particle_mmd").budget_s / 4
    row = methods.METHODS["particle_mmd"]
    monkeypatch.setitem(methods.METHODS, "particle_mmd", dataclasses.replace(row, function=fake))
    x = benchmark.run("particle_mmd", ShiftedGaussian(), 10, seed=0, budget_s=quarter)
    assert seen == {"n_steps": 50} and x.shape == (10, 2)  # the budget scales the function's default
    row = dataclasses.replace(row, function=fake, options=dict(n_steps=400, noise_level=0.1))
    monkeypatch.setitem(methods.METHODS, "particle_mmd", row)
    benchmark.run("particle_mmd", ShiftedGaussian(), 10, seed=0, budget_s=quarter)
    assert seen == {"n_steps": 100, "noise_level": 0.1}  # ... or the row's option


def test_sjko_scaling_state_bytes_constant_for_reparameterized_linear_for_composed():
    from gwf_tutorial import nets, sjko

    state_bytes = _script("sjko_scaling").state_bytes
    dt = torch.float64
    src = torch.linspace(-1.5, 1.5, 20, dtype=dt)[:, None]
    data = src + 1.0
    map_bytes = (3 * 3 + 3) * 8  # AffineMap(3) in float64
    for par in ("reparameterized", "composed"):
        tr = sjko.SemiDualJKO(nets.AffineMap(3, dtype=dt), sjko.QuadraticPotential(3, dtype=dt), n_iters=2,
                              batch_size=20, ema_decay=0.9, parametrization=par, seed=0)  # fmt: skip
        sizes = []
        for _ in range(4):
            tr.phase(src.expand(-1, 3) * torch.tensor([1.0, 2.0, 3.0], dtype=dt), data.expand(-1, 3),
                     progress=False)  # fmt: skip
            sizes.append(state_bytes(tr))
        steps = [b - a for a, b in zip(sizes, sizes[1:])]
        if par == "reparameterized":
            assert steps == [0, 0, 0]
        else:  # one more step map and its EMA copy per phase
            assert steps == [2 * map_bytes] * 3


def test_compare_runs_seed_distributions_tells_a_shift_from_a_reshuffle():
    seed_distributions = _script("compare_runs").seed_distributions
    g = torch.Generator().manual_seed(0)

    def run(ratios):
        rows = [dict(method="m", target="moons", seed=s, status="ok", w2_ratio=float(v))
                for s, v in enumerate(ratios)]  # fmt: skip
        return dict(rows=rows, floors={"moons": {"mixture": False}})

    base = 1 + torch.rand(10, generator=g, dtype=torch.float64)
    same = base[torch.randperm(10, generator=g)] + 1e-9  # the same draws up to rounding, in another order
    (d,) = seed_distributions(run(same), run(base))
    assert d["n"] == (10, 10) and d["p"] > 0.5 and abs(d["new"][1] - d["old"][1]) < 1e-8
    (d,) = seed_distributions(run(base + 2), run(base))  # every seed worse by 2: the test sees it
    assert d["p"] < 1e-3 and d["new"][1] > d["old"][1] + 1.9
    assert seed_distributions(run(base[:4]), run(base[:4])) == []  # fewer than five seeds: no distribution
