r"""One entry point for every method of the book: ``run(method, target, n_samples, seed, budget_s)``. Each
method is a row of :data:`~gwf_tutorial.methods.METHODS` run at the settings its chapter recommends on any
object with ``sample(n, generator=None)``. Settings never look at the target's name: the data are
standardised from a pilot draw :math:`y_{1:m}` (the training set, :math:`m = 10^4`), :math:`\sigma^2 =
\frac1d \sum_{l=1}^d \widehat{\operatorname{Var}}(y_{\cdot l})`, :math:`u = (y - \bar y)/\sigma`, :math:`x
= \bar y + \sigma\, u_{\text{method}}`, :math:`\nabla_u \log \nu_u = \sigma\,\nabla\log \nu(\bar y + \sigma
u)`, and score-based step sizes are :math:`\eta_u = c d / \overline{|\nabla_u\log \nu_u|^2}`. ``budget_s``
is a *nominal* CPU budget: each iteration count (:data:`SCALED`) is multiplied by ``budget_s`` over the
method's nominal budget, a fixed setting shipped in ``load_results("method_table")`` (written by
``benchmarks/method_table.py``). A run is a deterministic function of its arguments, not a timeout.

Used in: chapter 11 (benchmark).
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import Tensor

from gwf_tutorial._validation import check_bool, check_int, check_positive, check_samples, check_seed
from gwf_tutorial.methods import FAMILIES, METHODS
from gwf_tutorial.metrics import _resolve_target
from gwf_tutorial.train import make_generator

__all__ = ["FAMILIES", "SCALED", "MethodInfo", "NotApplicableError", "Standardizer", "list_methods",
           "method_info", "applicable", "run", "load_results", "GOAL_2X", "GOAL_BEST", "summarize",
           "headline", "family_ratios", "goals", "GPU_CHECK_SCHEMA", "throughput_table"]  # fmt: skip

_N_TRAIN = 10_000  # size of the training set (and of the pilot draw that standardises the data)


class NotApplicableError(ValueError):
    """Raised by :func:`run` when a method cannot run on a target (e.g. it needs a score).

    Used in: ``benchmark.run``.
    """


@dataclass(frozen=True)
class MethodInfo:
    r"""What a method is and the settings :func:`run` uses for it: ``summary`` and ``settings`` in words,
    ``budget_s`` its nominal budget (the module docstring), ``needs_score`` (it needs :math:`\nabla\log p`)
    and the ``chapter`` that derives it.

    Used in: ``benchmark.method_info``.
    """

    name: str
    family: str
    summary: str
    settings: str
    budget_s: float
    needs_score: bool = False
    chapter: int = 0


@dataclass
class Standardizer:
    r"""Isotropic standardisation :math:`u = (x - \bar y)/\sigma` and back, :math:`x = \bar y + \sigma u`;
    ``mean``: :math:`\bar y`, shape (d,), float64; ``scale``: :math:`\sigma > 0`.

    Used in: chapter 11.
    """

    mean: Tensor
    scale: float

    @classmethod
    def from_samples(cls, y: Tensor) -> Standardizer:
        r"""Fit :math:`\bar y` and :math:`\sigma` to samples ``y`` (N, d), ``N >= 2``, of non-zero spread."""
        y = check_samples(y, "y", min_n=2).detach().to(torch.float64)
        scale = float(y.var(0).mean().sqrt())
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the target's samples have no spread (scale {scale}); cannot standardise them")
        return cls(mean=y.mean(0), scale=scale)

    def forward(self, x: Tensor) -> Tensor:  # in the dtype of x, as inverse in that of u
        return (x - self.mean.to(x.dtype)) / self.scale

    def inverse(self, u: Tensor) -> Tensor:
        return self.mean.to(u.dtype) + self.scale * u


# --- the problem a method sees: standardised data, seeds, budget
class _Problem:
    """Everything a method's adapter needs: standardised data and score, seeds, budget factor."""

    def __init__(self, target, n: int, seed: int, factor: float, progress: bool):
        self.target, self.n, self.seed, self.factor, self.progress = target, n, seed, factor, progress
        m = max(_N_TRAIN, n)
        raw = target.sample(m, generator=make_generator(self._seed(0)))
        if not isinstance(raw, Tensor):
            raise TypeError(f"target.sample(n) must return a torch.Tensor, got {type(raw).__name__}")
        if raw.ndim != 2 or raw.shape[0] != m or raw.shape[1] < 1:
            raise ValueError(f"target.sample({m}) must return shape ({m}, d), d >= 1, got {tuple(raw.shape)}")
        raw = (raw if raw.is_floating_point() else raw.to(torch.float64)).detach().cpu()
        if not bool(torch.isfinite(raw).all()):
            raise ValueError("target.sample returned NaN or infinite values")
        self.d, self.std = raw.shape[1], Standardizer.from_samples(raw)
        self.train = self.std.forward(raw.to(torch.float64)).to(torch.float32)  # (N, d), unit scale

    def _seed(self, offset: int) -> int:
        return 1_000_003 * self.seed + 7919 * offset + 17

    def gen(self, offset: int) -> torch.Generator:
        """An independent seeded CPU generator per use (offset)."""
        return make_generator(self._seed(offset))

    def iters(self, base: int) -> int:
        """The recommended iteration count scaled by the budget factor (at least 1)."""
        return max(1, int(round(base * self.factor)))

    def data(self, m: int | None = None) -> Tensor:
        """The first ``m`` standardised training samples (all of them by default)."""
        return self.train if m is None else self.train[:m]

    def x0(self, n: int | None = None, offset: int = 1) -> Tensor:
        """Initial particles / latents: N(0, I_d) on the standardised scale."""
        return torch.randn(self.n if n is None else n, self.d, generator=self.gen(offset))

    def score(self, u: Tensor) -> Tensor:
        """The score of the standardised target, in the dtype of ``u``."""
        x = self.std.inverse(u.to(torch.float64)).to(torch.float32)  # the dtype targets sample in
        s = self.target.score(x)
        if not isinstance(s, Tensor) or s.shape != x.shape:
            raise ValueError(f"target.score(x) must return a tensor of shape {tuple(x.shape)}")
        return (self.std.scale * s.detach().to(torch.float64)).to(u.dtype)

    def score_step(self, c: float) -> float:
        """The step ``c d / mean |score|^2`` over 2000 standardised training samples."""
        ms = float(self.score(self.data(2000).to(torch.float64)).pow(2).sum(1).mean())
        if not (math.isfinite(ms) and ms > 0):
            raise ValueError("the target's score is zero or not finite on its own samples")
        return c * self.d / ms


# --- dispatch: every method is a function of gwf_tutorial.methods; an adapter hands it the problem
#: Largest ``budget_s / method_info(m).budget_s`` that :func:`run` accepts.
_MAX_BUDGET_FACTOR = 1e6
#: Keyword arguments of a method that count iterations: the budget factor scales them. ``n_phases``
#: (the number of JKO steps) and ``inner_steps`` are not scaled.
SCALED = ("n_steps", "n_iters", "critic_iters", "first_critic_iters", "fit_iters")


def _particles(offset: int) -> Callable:
    """Particles from N(0, I) towards the first n standardised training samples."""
    return lambda p, fn, kw: fn(p.x0(), p.data(p.n), generator=p.gen(offset), **kw)


def _vgrow(p, fn, kw):  # 1000 particles, 2000 data; samples are the generator's outputs
    net = fn(p.x0(1000), p.data(2000), generator=p.gen(4), **kw)
    with torch.no_grad():
        return net(p.x0(offset=5))


def _trained(*, sample: str, **streams) -> Callable:
    """Trained on the whole training set; ``sample``: ``"sample"`` (n, generator) or ``"push"`` (latents)."""

    def adapter(p, fn, kw):
        gens = {name: p.gen(offset) for name, offset in streams.items() if name != "seed"}
        seed = {"seed": p._seed(streams["seed"])} if "seed" in streams else {}
        obj = fn(p.data(), **seed, **gens, **kw)
        with torch.no_grad():
            return obj.sample(p.n, generator=p.gen(5)) if sample == "sample" else obj.push(p.x0(offset=5))

    return adapter


#: How each family (or method) receives the problem: data, initial particles and seeded streams.
_ADAPTERS: dict[str, Callable] = {
    "particle": _particles(3),
    "particle_sw": _particles(2),  # the flow draws nothing; its directions come from stream 2
    "score": lambda p, fn, kw: fn(p.x0(), p.score, p.score_step(0.05), generator=p.gen(3), **kw),
    "f-flow": _particles(4),
    "vgrow": _vgrow,
    "dgflow": lambda p, fn, kw: fn(p.x0(), p.data(p.n), generator=p.gen(3), critic_generator=p.gen(4), **kw),
    "jko": _trained(sample="sample", seed=6, objective_generator=7),
    "gan": _trained(sample="sample", seed=6),
    "s-jko": _trained(sample="push", seed=6),
    "drifting": _trained(sample="sample", generator=4, field_generator=7),
}


# --- the public entry points
def load_results(stem: str) -> dict:
    """The committed results ``gwf_tutorial/results/<stem>.json`` of a ``benchmarks/`` script (``stem``
    e.g. ``"run_all"``), shipped with the package so that a chapter opened alone (Colab) finds them.

    Used in: chapters 6, 7 and 11.
    """
    if not isinstance(stem, str) or not stem or "/" in stem or "\\" in stem:
        raise ValueError(f"stem must be a results file name without '.json', got {stem!r}")
    folder = resources.files("gwf_tutorial").joinpath("results")
    file = folder.joinpath(f"{stem}.json")
    if not file.is_file():
        names = sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".json"))
        raise ValueError(f"stem: no committed results named {stem!r}; available: {names}")
    return json.loads(file.read_text())


@lru_cache(maxsize=1)
def _table() -> dict:
    """Nominal budget, summary and settings of each benchmark method (``benchmarks/method_table.py``)."""
    return load_results("method_table")["methods"]


def list_methods(family: str | None = None) -> list[str]:
    """Names accepted by :func:`run`, in the order of the book (optionally one of :data:`FAMILIES`).

    Used in: chapter 11.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return [name for name in _table() if family is None or METHODS[name].family == family]


def _check_method(method) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    key = method.strip().lower().replace("-", "_")
    if key not in _table():
        raise ValueError(f"unknown method {method!r}; choose from {list_methods()}")
    return key


def method_info(method: str) -> MethodInfo:
    """Family, summary, recommended settings and nominal budget of a method of :func:`list_methods`.

    Used in: chapter 11.
    """
    key = _check_method(method)
    row, t = METHODS[key], _table()[key]
    return MethodInfo(key, row.family, t["summary"], t["settings"], t["budget_s"], row.needs_score,
                      row.chapter)  # fmt: skip


def _target_name(target) -> str:
    return str(getattr(target, "name", type(target).__name__))


def applicable(method: str, target) -> tuple[bool, str]:
    """``(True, "")`` if :func:`run` can run ``method`` on ``target``, else ``(False, reason)``: a method
    applies unless it needs a score :math:`\\nabla\\log p` that the target lacks.

    Used in: ``benchmark.run`` and ``benchmarks/run_all.py`` (the methods that do not apply, and why).
    """
    info, target = method_info(method), _resolve_target(target)
    has_score = callable(getattr(target, "score", None)) and bool(getattr(target, "has_density", True))
    if info.needs_score and not has_score:
        return False, f"{info.name} needs the target's score (grad log p); {_target_name(target)} has none"
    return True, ""


def run(method: str, target, n_samples: int, seed: int, budget_s: float | None = None, *,
        progress: bool = False) -> Tensor:
    r"""Train or run one method of the book on a target and return its samples: :math:`x_i = \bar y +
    \sigma\, u_i`, :math:`u_{1:n} = \mathcal A\big(\{(y_j - \bar y)/\sigma\}_{j \le m}; s\big)` with
    :math:`\mathcal A` the method at its recommended settings (:func:`method_info`).

    ``target``: an object with ``sample(n, generator=None) -> (n, d)`` (drawing only from that generator) and
    ``score(x)`` for the methods that need one, or a registry name; ``seed`` seeds everything random;
    ``budget_s``: at most :math:`10^6` times the method's nominal budget (the default). Returns
    ``n_samples`` float32 samples on the CPU, the same for the same arguments. Raises
    :class:`NotApplicableError` when the method needs a score the target lacks, ``FloatingPointError`` (or
    ``flows.FlowDivergedError``) when it diverges.

    Used in: chapter 11 (benchmark).
    """
    key, target = _check_method(method), _resolve_target(target)
    n = check_int(n_samples, "n_samples", min_value=2)
    seed, nominal = check_seed(seed, "seed"), _table()[key]["budget_s"]
    factor = 1.0 if budget_s is None else check_positive(budget_s, "budget_s") / nominal
    if factor > _MAX_BUDGET_FACTOR:  # iteration counts beyond any run (and beyond int64)
        raise ValueError(f"budget_s must be at most {_MAX_BUDGET_FACTOR:g} times the nominal budget of {key} "
                         f"({nominal:g} s), got {budget_s:g}")  # fmt: skip
    check_bool(progress, "progress")
    ok, reason = applicable(key, target)
    if not ok:
        raise NotApplicableError(reason)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1_000_003 * seed + 12345)
        problem = _Problem(target, n, seed, factor, progress)
        row, params = METHODS[key], inspect.signature(METHODS[key].function).parameters
        # the iteration counts of the method (its defaults, or the row's options) times the budget factor
        scaled = {k: problem.iters(row.options.get(k, params[k].default)) for k in SCALED if k in params}
        adapter = _ADAPTERS.get(key) or _ADAPTERS["score" if row.needs_score else row.family]
        u = adapter(problem, row.function, {**row.options, **scaled, "progress": progress})
        u = u.detach().to(torch.float64)  # standardised samples (n, d)
    if u.shape != (n, problem.d):
        raise RuntimeError(f"{key} returned shape {tuple(u.shape)}, expected {(n, problem.d)}")
    if not bool(torch.isfinite(u).all()):
        raise FloatingPointError(f"{key} produced NaN or infinite samples on {_target_name(target)}")
    return problem.std.inverse(u).to(torch.float32)


# --- summaries of the committed results (benchmarks/run_all.py writes them; chapter 11 reads them)
#: Targets on which every method should be within 2x the floor (W2^2).
GOAL_2X = ("moons", "swiss_roll")
#: The best method of each family should be within this ratio of the floor on every target.
GOAL_BEST = 1.3


def summarize(rows: list[dict]) -> list[dict]:
    """Median over seeds (and min, max) of each metric, for every (method, target) of a results file, a
    diverged run counting as ``+inf``.

    ``rows``: the ``"rows"`` of ``load_results("run_all")``. Returns one dict per (method, target): ``status``
    (``"ok"``, ``"some diverged"`` or ``"n/a"``), ``w2_ratio``, ``energy_ratio``, ``sinkhorn_ratio``,
    ``cpu_s`` with ``_min``/``_max``; on mixtures ``modes_hit_min``, ``n_modes``, ``weight_tv``, ``hq``.

    Used in: chapter 11.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["target"]), []).append(r)
    out = []
    for (m, t), rs in groups.items():
        s = dict(method=m, family=rs[0]["family"], target=t, seeds=len(rs), budget_s=rs[0]["budget_s"])
        if all(r["status"] == "n/a" for r in rs):
            out.append(s | dict(status="n/a", reason=rs[0]["reason"]))
            continue
        s["status"] = "ok" if all(r["status"] == "ok" for r in rs) else "some diverged"
        s["n_diverged"] = sum(r["status"] == "diverged" for r in rs)
        for key in ("w2_ratio", "energy_ratio", "sinkhorn_ratio", "cpu_s"):
            v = np.array([math.inf if r.get(key) is None else float(r[key]) for r in rs], dtype=float)
            s |= {key: float(np.median(v)), key + "_min": float(v.min()), key + "_max": float(v.max())}
        if "n_modes" in rs[0] or any("modes_hit" in r for r in rs):
            s["modes_hit_min"] = int(min(r.get("modes_hit", 0) for r in rs))
            s["n_modes"] = int(max(r.get("n_modes", 0) for r in rs))
            for key, missing in (("weight_tv", 1.0), ("hq", 0.0)):
                v = [r[key] for r in rs if key in r]
                s[key] = float(np.median(v)) if v else missing
        out.append(s)
    return out


def headline(s: dict, mixture: bool) -> float:
    """The headline ratio of a :func:`summarize` row: energy ratio on mixtures, W2^2 ratio elsewhere.

    Used in: chapter 11.
    """
    return s["energy_ratio"] if mixture else s["w2_ratio"]


def family_ratios(by: dict, floors: dict, family: str, target: str) -> list[float]:
    """Headline ratios of a family's methods on a target, in the order of :func:`list_methods`; ``by``: rows
    of :func:`summarize` keyed by ``(method, target)``; ``floors``: the results' ``"floors"``.

    Used in: chapter 11.
    """
    return [headline(by[(m, target)], floors[target]["mixture"]) for m in list_methods(family)
            if (m, target) in by and by[(m, target)]["status"] != "n/a"]  # fmt: skip


def goals(summary: list[dict], floors: dict, methods: list[str], targets: list[str]) -> dict:
    """Which goals hold: every method within 2x (W2^2) on :data:`GOAL_2X`; per family the best method
    within :data:`GOAL_BEST` (headline ratio) on every target, with all modes hit on mixtures: ``misses_2x``
    (``{method, target, ratio}`` per miss) and ``best`` (``{family, target, method, ratio, ok, modes}`` of the
    family's best method on each target).

    Used in: chapter 11.
    """
    by = {(s["method"], s["target"]): s for s in summary}
    misses_2x = [dict(method=m, target=t, ratio=by[(m, t)]["w2_ratio"])
                 for t in GOAL_2X if t in targets for m in methods
                 if (m, t) in by and by[(m, t)]["status"] != "n/a" and not by[(m, t)]["w2_ratio"] <= 2.0]
    best = []
    for fam in FAMILIES:
        fam_methods = [m for m in methods if method_info(m).family == fam]
        for t in targets if fam_methods else []:
            mixture = floors[t]["mixture"]
            cands = [by[(m, t)] for m in fam_methods if (m, t) in by and by[(m, t)]["status"] != "n/a"]
            if not cands:
                continue
            b = min(cands, key=lambda s: headline(s, mixture))
            ok = headline(b, mixture) <= GOAL_BEST
            if mixture:
                ok = ok and b.get("modes_hit_min", 0) == b.get("n_modes", -1)
            modes = f"{b.get('modes_hit_min', '')}/{b.get('n_modes', '')}" if mixture else ""
            best.append(dict(family=fam, target=t, method=b["method"], ratio=headline(b, mixture),
                             ok=bool(ok), modes=modes))
    return dict(misses_2x=misses_2x, best=best)


#: Schema tag of the JSON written by ``scripts/gpu_check.py`` (read by :func:`throughput_table`).
GPU_CHECK_SCHEMA = "gwf_tutorial.gpu_check/1"


def throughput_table(result: dict, *, precision: str = "bf16") -> list[dict]:
    r"""Hours each CIFAR-10 recipe takes at the steady speed :math:`s_m` (iterations per second, synthetic
    data, no FID) that a ``gpu_check`` JSON measured, :math:`(N_0 + (K - 1) N) / (3600\, s_m)`, one row per
    method in ``cifar10.METHODS`` order: ``method``, ``net``, ``batch_size``, ``precision``, ``it_per_s``,
    ``recipe_iters``, ``hours``, ``device``, ``dry_run``. A ValueError for another JSON or precision.

    Used in: chapter 10.
    """
    from gwf_tutorial import cifar10  # late: only this table needs it
    if not isinstance(result, dict) or result.get("schema") != GPU_CHECK_SCHEMA:
        raise ValueError(f"result must be a gpu_check JSON with schema {GPU_CHECK_SCHEMA!r}")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be one of ('bf16', 'fp32'), got {precision!r}")
    s, rows, methods = result["settings"], [], cifar10.METHODS
    for rec in (r for r in result["throughput"] if r["precision"] == precision and r["method"] in methods):
        iters, speed = cifar10.make_config(rec["method"], s["recipe_net"]).total_iters, rec["steady_it_per_s"]
        rows.append({"method": rec["method"], "net": s["net"], "batch_size": s["batch_size"], "precision":
                     precision, "it_per_s": speed, "recipe_iters": iters, "hours": iters / speed / 3600.0,
                     "device": result["device"], "dry_run": bool(result["dry_run"])})  # fmt: skip
    if not rows:
        raise ValueError(f"the result holds no {precision} measurement")
    return sorted(rows, key=lambda r: methods.index(r["method"]))
