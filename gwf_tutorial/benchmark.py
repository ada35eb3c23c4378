r"""One entry point for every method of the book: ``run(method, target, n_samples, seed)``.

Every method of chapters 2-8 is a composition of an objective, a discretization and a
parametrization (the introduction's method map). This module names each composition once, with
the settings its chapter recommends for 2-D data, and runs it on **any** object with
``sample(n, generator=None)``:

.. math::

    \texttt{run}(m, p, n, s) = x_{1:n} \in \mathbb R^{n \times d},
    \qquad x_i \approx p \text{ after the training budget of method } m,\ \text{seed } s.

Settings never look at the target's name. Instead the data are **standardised** from a pilot
draw :math:`y_{1:N} \sim p` (the training set, :math:`N = 10\,000`):

.. math::

    \bar y = \frac1N\sum_j y_j, \qquad
    \sigma^2 = \frac1d \sum_{c=1}^d \widehat{\operatorname{Var}}(y_{\cdot c}), \qquad
    u = \frac{y - \bar y}{\sigma}, \qquad x = \bar y + \sigma\, u_{\text{method}},

one isotropic scale (so distances, kernels and transport costs keep their geometry), every method
works on unit-scale data with fixed step sizes, bandwidths and temperatures, and its samples are
mapped back. A score is whitened the same way, :math:`\nabla_u \log p_u(u) = \sigma\,\nabla\log
p(\bar y + \sigma u)`. Step sizes that depend on the target's local scale come from the data, not
from a name: the Langevin and KL steps are :math:`h = c\, d / \overline{|\nabla_u\log p_u(u_j)|^2}`
(for :math:`\mathcal N(m, s^2 I)` this is :math:`c\,s^2`).

Every method is a function of :mod:`gwf_tutorial.methods`, named as its paper names it, and a row
of its method map :data:`~gwf_tutorial.methods.METHODS` (function, family, chapter, objective,
discretization, parametrization, keyword options); :func:`run` dispatches through that row. The
benchmark's names are keys of the map. Families, in the book's order (:data:`FAMILIES`): ``particle``
(sliced-W, MMD, Sinkhorn, KL and Langevin particle flows), ``f-flow`` (explicit f-divergence flows:
f-flow, VGrow, EPT, MonoFlow, DGflow), ``jko`` (GWF for each objective), ``gan`` (the GAN switches
``tau=None``: GAN, non-saturating GAN, f-GAN, WGAN-GP, MMD-GAN, GMMN), ``s-jko`` and ``drifting``
(one row per drift field).

``budget_s`` is a *nominal* CPU budget: every iteration count of a method (the keywords of
:data:`SCALED`) is its recommended count times ``budget_s / method_info(m).budget_s`` (at least
one). The nominal budget ``method_info(m).budget_s`` is a **setting**, the unit of this scaling: it
was set once to the CPU seconds the recommended settings took (``benchmarks/run_all.py``, one
thread) and is kept fixed, so that ``run(m, ..., budget_s=b)`` stays the same computation whatever a
later measurement says. It is not a wall-clock timeout: a run is a deterministic function of its
arguments (same seed, same samples on CPU). The CPU seconds actually spent are measured by the
benchmark scripts and stored in their results (``cpu_s`` of ``load_results("run_all")``).

Used in: chapter 11 (benchmark).

References
----------
Korba, Bonet, Caucheteux (2026), GWF; Choi et al. (2024), S-JKO; Deng et al. (2026), drifting
models; Arbel et al. (2019), MMD flows; Liutkus et al. (2019), sliced-Wasserstein flows; Feydy et
al. (2019), Sinkhorn divergences; Gao et al. (2019, 2022), VGrow and EPT; Yi et al. (2023),
MonoFlow; Ansari et al. (2021), DGflow.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gwf_tutorial._validation import check_int, check_positive, check_samples, check_seed
from gwf_tutorial.methods import FAMILIES, METHODS
from gwf_tutorial.train import make_generator

__all__ = [
    "FAMILIES",
    "SCALED",
    "MethodInfo",
    "NotApplicableError",
    "Standardizer",
    "list_methods",
    "method_info",
    "applicable",
    "run",
    "load_results",
    "GOAL_2X",
    "GOAL_BEST",
    "PEERS",
    "summarize",
    "headline",
    "family_ratios",
    "goals",
]

_N_TRAIN = 10_000  # size of the training set (and of the pilot draw that standardises the data)


class NotApplicableError(ValueError):
    """Raised by :func:`run` when a method cannot run on a target (e.g. it needs a score)."""


@dataclass(frozen=True)
class MethodInfo:
    r"""What a method is and the settings :func:`run` uses for it.

    .. math::

        \text{iterations used} = \max\Big(1, \Big\lfloor \text{recommended} \cdot
        \frac{\texttt{budget\_s}}{\texttt{MethodInfo.budget\_s}} \Big\rceil\Big).

    Attributes
    ----------
    name : str
        The name passed to :func:`run`.
    family : str
        One of :data:`FAMILIES`.
    summary : str
        Objective, discretization and parametrization in one line.
    settings : str
        The recommended settings (in standardised units, see the module docstring).
    budget_s : float
        The nominal budget: the ``budget_s`` at which :func:`run` uses the recommended iteration
        counts (its default). A fixed setting in nominal CPU seconds (see the module docstring); the
        seconds a run actually takes are measured by ``benchmarks/run_all.py``.
    needs_score : bool
        True when the method needs :math:`\nabla\log p` (the target must have a ``score``).
    chapter : int
        Where the book derives it.

    Used in: chapter 11.
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
    r"""Isotropic standardisation of data: :math:`u = (x - \bar y) / \sigma`, and back.

    .. math::

        \sigma^2 = \frac1d\sum_c \widehat{\operatorname{Var}}(y_{\cdot c}), \qquad
        u = \frac{x - \bar y}{\sigma}, \qquad x = \bar y + \sigma u .

    Attributes
    ----------
    mean : Tensor, shape (d,)
        :math:`\bar y` (float64).
    scale : float
        :math:`\sigma > 0`.

    Used in: chapter 11 (every method of :func:`run` works on standardised data).
    """

    mean: Tensor
    scale: float

    @classmethod
    def from_samples(cls, y: Tensor) -> Standardizer:
        r"""Fit :math:`\bar y` and :math:`\sigma` to samples ``y`` of shape ``(N, d)``, ``N >= 2``.

        .. math::

            \bar y = \tfrac1N\sum_j y_j, \qquad \sigma = \Big(\tfrac1d \sum_c
            \widehat{\operatorname{Var}}(y_{\cdot c})\Big)^{1/2}.

        Returns
        -------
        Standardizer

        Raises
        ------
        ValueError
            If the samples have zero spread.

        Used in: chapter 11.
        """
        y = check_samples(y, "y", min_n=2).detach().to(torch.float64)
        scale = float(y.var(0).mean().sqrt())
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the target's samples have no spread (scale {scale}); cannot standardise them")
        return cls(mean=y.mean(0), scale=scale)

    def forward(self, x: Tensor) -> Tensor:
        r""":math:`u = (x - \bar y)/\sigma`, in the dtype of ``x``."""
        return (x - self.mean.to(x.dtype)) / self.scale

    def inverse(self, u: Tensor) -> Tensor:
        r""":math:`x = \bar y + \sigma u`, in the dtype of ``u``."""
        return self.mean.to(u.dtype) + self.scale * u


# ---------------------------------------------------------------------------------------------
# the problem a method sees: standardised data, seeds, budget
# ---------------------------------------------------------------------------------------------


def _has_score(target) -> bool:
    if not callable(getattr(target, "score", None)):
        return False
    has_density = getattr(target, "has_density", True)
    return bool(has_density)


class _Whitened:
    """The standardised target: ``sample`` in float32, ``score`` of the standardised density."""

    def __init__(self, target, std: Standardizer, dim: int):
        self.target, self.std, self.dim = target, std, dim

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        y = _draw(self.target, n, generator, self.dim)
        return self.std.forward(y.to(torch.float64)).to(torch.float32)

    def score(self, u: Tensor) -> Tensor:
        x = self.std.inverse(u.to(torch.float64)).to(torch.float32)  # the dtype targets sample in
        s = self.target.score(x)
        if not isinstance(s, Tensor) or s.shape != x.shape:
            raise ValueError(f"target.score(x) must return a tensor of shape {tuple(x.shape)}")
        return (self.std.scale * s.detach().to(torch.float64)).to(u.dtype)


def _draw(target, n: int, generator, dim: int | None) -> Tensor:
    out = target.sample(n, generator=generator)
    if not isinstance(out, Tensor):
        raise TypeError(f"target.sample(n) must return a torch.Tensor, got {type(out).__name__}")
    if out.ndim != 2 or out.shape[0] != n or (dim is not None and out.shape[1] != dim):
        want = f"({n}, {dim if dim is not None else 'd'})"
        raise ValueError(f"target.sample({n}) must return shape {want}, got {tuple(out.shape)}")
    if not out.is_floating_point():
        out = out.to(torch.float64)
    if not bool(torch.isfinite(out).all()):
        raise ValueError("target.sample returned NaN or infinite values")
    return out.detach().cpu()


class _Problem:
    """Everything a method's adapter needs: standardised data and sampler, seeds, budget factor."""

    def __init__(self, target, n: int, seed: int, factor: float, progress: bool):
        self.n, self.seed, self.factor, self.progress = n, seed, factor, progress
        raw = _draw(target, max(_N_TRAIN, n), make_generator(self._seed(0)), None)
        if raw.shape[1] < 1:
            raise ValueError("target samples must have at least one dimension")
        self.d = raw.shape[1]
        self.std = Standardizer.from_samples(raw)
        self.train = self.std.forward(raw.to(torch.float64)).to(torch.float32)  # (N, d), unit scale
        self.sampler = _Whitened(target, self.std, self.d)
        self.has_score = _has_score(target)

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
        """Initial particles / latents: :math:`\\mathcal N(0, I_d)` (the standardised scale)."""
        return torch.randn(self.n if n is None else n, self.d, generator=self.gen(offset))

    def latent_sampler(self, dim: int | None = None) -> Callable:
        dim = self.d if dim is None else dim

        def sample(n, generator=None):
            return torch.randn(n, dim, generator=generator)

        return sample

    def score_step(self, c: float) -> float:
        r""":math:`h = c\, d / \overline{|\nabla\log p_u|^2}` over 2000 standardised training samples."""
        u = self.data(2000)
        s = self.sampler.score(u.to(torch.float64))
        ms = float(s.pow(2).sum(1).mean())
        if not (math.isfinite(ms) and ms > 0):
            raise ValueError("the target's score is zero or not finite on its own samples")
        return c * self.d / ms


# ---------------------------------------------------------------------------------------------
# dispatch: every method is a function of gwf_tutorial.methods; an adapter hands it the problem
# ---------------------------------------------------------------------------------------------

#: Largest ``budget_s / method_info(m).budget_s`` that :func:`run` accepts.
_MAX_BUDGET_FACTOR = 1e6

#: Keyword arguments of a method that count iterations: the budget factor scales them. ``n_phases``
#: (the number of JKO steps) and ``inner_steps`` are not scaled.
SCALED = ("n_steps", "n_iters", "critic_iters", "first_critic_iters", "fit_iters")


def _scaled(p: _Problem, fn: Callable, options: dict) -> dict:
    """The iteration counts of ``fn`` (its defaults, or the row's ``options``) times the budget factor."""
    params = inspect.signature(fn).parameters
    return {k: p.iters(options.get(k, params[k].default)) for k in SCALED if k in params}


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
    "score": lambda p, fn, kw: fn(p.x0(), p.sampler.score, p.score_step(0.05), generator=p.gen(3), **kw),
    "f-flow": _particles(4),
    "vgrow": _vgrow,
    "dgflow": lambda p, fn, kw: fn(p.x0(), p.data(p.n), generator=p.gen(3), critic_generator=p.gen(4), **kw),
    "jko": _trained(sample="sample", seed=6, objective_generator=7),
    "gan": _trained(sample="sample", seed=6),
    "s-jko": _trained(sample="push", seed=6),
    "drifting": _trained(sample="sample", generator=4, field_generator=7),
}


def _dispatch(key: str, p: _Problem) -> Tensor:
    """Standardised samples (n, d) of method ``key``: its :data:`~gwf_tutorial.methods.METHODS` row."""
    row = METHODS[key]
    kw = {**row.options, **_scaled(p, row.function, row.options), "progress": p.progress}
    adapter = _ADAPTERS.get(key) or _ADAPTERS["score" if row.needs_score else row.family]
    return adapter(p, row.function, kw)


# ---------------------------------------------------------------------------------------------
# the benchmark's methods: nominal budget (a setting, see MethodInfo), summary, settings
# ---------------------------------------------------------------------------------------------

_JKO_NET = "ResidualMLP(d, 64, 2 blocks, identity at init) from N(0, I), batch 256, Adam 1e-3"
_DRIFT_NET = "generator MLP(8 -> d, 64 x 3 SiLU), batch 256, Adam 2e-3"
_GAN = "900 updates, Adam 2e-4, R1 0.4"

# fmt: off
_BENCH: dict[str, tuple[float, str, str]] = {
    # particle flows (chapters 2 and 3)
    "particle_sw": (2.0, "sliced-W2 particle flow", "100 fresh directions per step, step 1, 150 steps"),
    "particle_energy": (2.5, "MMD particle flow, energy kernel -|x - y|",
                        "step 3 -> 0.5 (geometric), 200 steps"),
    "particle_mmd": (2.0, "MMD particle flow, Gaussian kernel, noise injection",
                     "median bandwidth, step 3, noise 0.5 -> 0 over the first half, 200 steps"),
    "particle_sinkhorn": (5.5, "Sinkhorn-divergence particle flow",
                          "eps 0.05, 20 warm-started Sinkhorn iterations per step, step 1, 12 steps"),
    "particle_kl": (1.5, "KL particle flow (blob velocity, target score)",
                    "Silverman KDE bandwidth, step 0.05 d / E|score|^2, 80 steps"),
    "langevin": (2.0, "unadjusted Langevin algorithm (target score)", "step 0.05 d / E|score|^2, 2000 steps"),
    # explicit f-divergence flows and their published instances (chapter 4)
    "f_flow": (2.0, "explicit KL flow, logistic critic refit every step",
               "step 0.05, 60 steps; critic 32 x 2, 200 then 10 Adam steps (5e-3) per step, R1 0.1"),
    "vgrow": (2.5, "VGrow: KL flow projected on a generator",
              "100 outer steps of 3 particle steps (0.02) and 5 regression steps (1e-2)"),
    "ept": (1.5, "EPT: least-squares ratio, forward Euler particles",
            "step 0.1, 30 steps, R1 1.0, ratio floor 0.1, 10 critic steps per step"),
    "monoflow": (3.0, "MonoFlow particles along h(D) = log sigmoid(D) (non-saturating GAN)",
                 "step 0.05, 80 steps; critic 32 x 2, 200 then 10 Adam steps per step, R1 0.1"),
    "dgflow": (0.5, "DGflow: refine N(0, I) along a fixed discriminator",
               "discriminator 300 Adam steps; 25 steps of 0.1, gamma 0.01 (official defaults)"),
    # parametric JKO for each objective (chapters 4-6)
    "jko_kl": (16.0, "parametric JKO, KL (critic)", f"tau 1, 6 steps x 600, R1 0.4; {_JKO_NET}"),
    "jko_kl_dv": (16.0, "parametric JKO, KL (Donsker-Varadhan critic)", "tau 1, 6 x 600, R1 0.4"),
    "jko_js": (18.0, "parametric JKO, Jensen-Shannon (critic)", "tau 10, 6 x 600, R1 0.4"),
    "jko_chi2": (16.0, "parametric JKO, Pearson chi^2 (critic)", "tau 1, 6 x 600, R1 0.4"),
    "jko_hellinger": (20.0, "parametric JKO, squared Hellinger (critic)", "tau 1, 6 x 600, R1 0.4"),
    "jko_mmd": (24.0, "parametric JKO, MMD^2 U-statistic (5 Gaussian bandwidths)",
                "bandwidths (1/16 .. 1) x median, tau 100, 6 x 450"),
    "jko_w1": (18.0, "parametric JKO, W1 (gradient-penalised critic)",
               "tau 0.1, 6 x 240, 5 critic steps per map step, GP 10"),
    "jko_sinkhorn": (24.0, "parametric JKO, Sinkhorn divergence",
                     "eps 0.1, at most 30 Sinkhorn iterations, tau 10, 6 x 240"),
    "jko_sw": (18.0, "parametric JKO, sliced W2", "100 directions, tau 10, 6 x 600, lr 2e-3"),
    # the GAN switches of the same loop: no transport term (chapter 5)
    "gan": (5.0, "minimax GAN (tau=None, JS critic)", _GAN),
    "gan_ns": (5.0, "non-saturating GAN (tau=None)", _GAN),
    "fgan_kl": (5.0, "f-GAN, KL(nu || rho) (tau=None, symmetric)", _GAN),
    "wgan_gp": (4.5, "WGAN-GP (tau=None, W1 critic)",
                "360 updates x 5 critic steps, GP 10, Adam 1e-4 (0, 0.9)"),
    "mmd_gan": (22.5, "MMD-GAN, learned kernel (tau=None)", "750 updates"),
    "gmmn": (24.0, "generator on a fixed-kernel MMD^2 (tau=None, no critic)",
             "2700 updates, bandwidths (1/16 .. 1) x median"),
    # S-JKO (chapter 7)
    "sjko": (18.0, "S-JKO: semi-dual KL JKO step, reparameterized map",
             "sjko.toy_trainer: tau 1, 6 phases x 600, Adam 1e-3 (cosine), map with a d-dim latent"),
    # drifting models, one per drift field (chapter 8)
    "drift_paper": (6.0, "drifting, the paper's mean-shift field (Laplace, T 0.15)",
                    f"3200 steps; {_DRIFT_NET}"),
    "drift_algorithm2": (6.0, "drifting, Algorithm 2 field (T 0.1)", f"3200 steps; {_DRIFT_NET}"),
    "drift_multi_temperature": (10.5, "drifting, multi-temperature normalised field",
                                f"2400 steps; {_DRIFT_NET}"),
    "drift_mmd": (12.0, "drifting, MMD witness field (bandwidths 0.05, 0.2, 0.8)",
                  f"2400 steps; {_DRIFT_NET}"),
    "drift_sinkhorn": (30.0, "drifting, Sinkhorn barycentric field (eps 0.1, <= 30 iters)",
                       f"2400 steps; {_DRIFT_NET}"),
    "drift_sw": (8.0, "drifting, sliced-W velocity (50 directions)", f"3200 steps; {_DRIFT_NET}"),
    "drift_critic": (15.0, "drifting, logistic critic (KL velocity)", f"2400 steps; {_DRIFT_NET}"),
}
# fmt: on


def list_methods(family: str | None = None) -> list[str]:
    r"""Names accepted by :func:`run`, in the order of the book (optionally one family).

    .. math::

        \{m : \texttt{run}(m, \cdot) \text{ is defined}\}.

    Parameters
    ----------
    family : str, optional
        One of :data:`FAMILIES`.

    Returns
    -------
    list of str

    Used in: chapter 11.
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    return [name for name in _BENCH if family is None or METHODS[name].family == family]


def _check_method(method) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, got {type(method).__name__}")
    key = method.strip().lower().replace("-", "_")
    if key not in _BENCH:
        raise ValueError(f"unknown method {method!r}; choose from {list_methods()}")
    return key


def method_info(method: str) -> MethodInfo:
    r"""Family, summary, recommended settings and nominal budget of a method.

    .. math::

        m \mapsto (\text{family}, \text{settings}, \text{budget}).

    Parameters
    ----------
    method : str
        One of :func:`list_methods`.

    Returns
    -------
    MethodInfo

    Used in: chapter 11.
    """
    key = _check_method(method)
    row, (budget_s, summary, settings) = METHODS[key], _BENCH[key]
    return MethodInfo(key, row.family, summary, settings, budget_s, row.needs_score, row.chapter)


def _resolve_target(target):
    if isinstance(target, str):
        from gwf_tutorial.targets import get_target

        return get_target(target)
    if not callable(getattr(target, "sample", None)):
        raise TypeError(
            f"target must have a sample(n, generator=None) method (or be a registry name), got "
            f"{type(target).__name__}"
        )
    return target


def applicable(method: str, target) -> tuple[bool, str]:
    r"""Whether :func:`run` can run ``method`` on ``target``, and why not.

    .. math::

        \text{applicable} \iff (\text{the method needs no score}) \lor
        (\text{the target has } \nabla\log p).

    Parameters
    ----------
    method : str
    target : object with ``sample(n, generator=None)``, or a registry name

    Returns
    -------
    (bool, str)
        ``(True, "")`` or ``(False, reason)``.

    Used in: chapter 11 (the benchmark lists the methods that do not apply, with the reason).
    """
    info = method_info(method)
    target = _resolve_target(target)
    if info.needs_score and not _has_score(target):
        return False, f"{info.name} needs the target's score (grad log p); {_target_name(target)} has none"
    return True, ""


def _target_name(target) -> str:
    return str(getattr(target, "name", type(target).__name__))


def run(
    method: str,
    target,
    n_samples: int,
    seed: int,
    budget_s: float | None = None,
    *,
    progress: bool = False,
) -> Tensor:
    r"""Train or run one method of the book on a target and return its samples.

    .. math::

        u_{1:n} = \mathcal A_m\big(\{(y_j - \bar y)/\sigma\}_{j \le N}; s\big), \qquad
        x_i = \bar y + \sigma\, u_i \quad (i \le n),

    with :math:`\mathcal A_m` the method's algorithm at its recommended settings
    (:func:`method_info`) on the standardised training set (see the module docstring).

    Parameters
    ----------
    method : str
        One of :func:`list_methods`.
    target : object or str
        Anything with ``sample(n, generator=None) -> Tensor (n, d)`` (drawing only from the
        generator it is given, so runs are reproducible), and ``score(x)`` for the methods that need
        one; or a name of :func:`gwf_tutorial.targets.list_targets`.
    n_samples : int
        Number of samples returned (the particles of the particle methods, fresh generator samples
        otherwise), ``>= 2``.
    seed : int
        Seed ``>= 0`` of everything random in the run (data, initialisation, mini-batches, noise).
    budget_s : float, optional
        Nominal CPU budget (> 0, at most :math:`10^6` times the method's nominal budget); iteration
        counts scale with ``budget_s / method_info(m).budget_s``.
        Default: the method's own budget.
    progress : bool, default False
        Show the method's progress bars.

    Returns
    -------
    Tensor, shape (n_samples, d)
        float32, on the CPU, detached. The same arguments give the same samples.

    Raises
    ------
    ValueError
        Unknown method (the message lists the choices), bad arguments, a target whose samples have
        the wrong shape or no spread; :class:`NotApplicableError` (a ``ValueError``) when the method
        needs a score the target does not have; :class:`~gwf_tutorial.flows.FlowDivergedError` (a
        ``ValueError``) or ``FloatingPointError`` when the method diverges.
    TypeError
        ``method`` not a string, a target without ``sample``, non-integer ``n_samples``, a ``seed`` that is
        not an integer (floats such as ``2.0`` included).

    Used in: chapter 11 (benchmark).

    Examples
    --------
    >>> from gwf_tutorial import benchmark
    >>> x = benchmark.run("particle_sw", "moons", 500, seed=0, budget_s=1.0)
    >>> tuple(x.shape)
    (500, 2)
    """
    key = _check_method(method)
    target = _resolve_target(target)
    n = check_int(n_samples, "n_samples", min_value=2)
    seed = check_seed(seed, "seed")
    info = method_info(key)
    factor = 1.0 if budget_s is None else check_positive(budget_s, "budget_s") / info.budget_s
    if factor > _MAX_BUDGET_FACTOR:  # iteration counts beyond any run (and beyond int64)
        raise ValueError(
            f"budget_s must be at most {_MAX_BUDGET_FACTOR:g} times the nominal budget of {key} "
            f"({info.budget_s:g} s), got {budget_s:g}"
        )
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, got {type(progress).__name__}")
    ok, reason = applicable(key, target)
    if not ok:
        raise NotApplicableError(reason)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1_000_003 * seed + 12345)
        problem = _Problem(target, n, seed, factor, progress)
        u = _dispatch(key, problem)
    u = u.detach().to(torch.float64)
    if u.shape != (n, problem.d):
        raise RuntimeError(f"{key} returned shape {tuple(u.shape)}, expected {(n, problem.d)}")
    if not bool(torch.isfinite(u).all()):
        raise FloatingPointError(f"{key} produced NaN or infinite samples on {_target_name(target)}")
    return problem.std.inverse(u).to(torch.float32)


def load_results(stem: str) -> dict:
    """The committed results of a benchmark script, shipped with the package.

    ``benchmarks/<script>.py`` writes ``gwf_tutorial/results/<stem>.json`` (and its report,
    ``benchmarks/results/<stem>.md``); chapters read the JSON here, through the installed package,
    so that a chapter opened alone (Colab, a downloaded notebook) finds it.

    Parameters
    ----------
    stem : str
        File name without ``.json``, e.g. ``"run_all"``, ``"sjko_scaling"``.

    Used in: chapters 6, 7 and 11.
    """
    import json
    from importlib import resources

    if not isinstance(stem, str) or not stem or "/" in stem or "\\" in stem:
        raise ValueError(f"stem must be a results file name without '.json', got {stem!r}")
    file = resources.files("gwf_tutorial").joinpath("results", f"{stem}.json")
    if not file.is_file():
        names = sorted(f.name[:-5] for f in resources.files("gwf_tutorial").joinpath("results").iterdir()
                       if f.name.endswith(".json"))
        raise ValueError(f"stem: no committed results named {stem!r}; available: {names}")
    return json.loads(file.read_text())


# ---------------------------------------------------------------------------------------------
# summaries of the committed results (benchmarks/run_all.py writes them; chapter 11 reads them)
# ---------------------------------------------------------------------------------------------

#: Targets on which every method should be within 2x the floor (W2^2).
GOAL_2X = ("moons", "swiss_roll")

#: The best method of each family should be within this ratio of the floor on every target.
GOAL_BEST = 1.3

#: The peers' own code on their own toy settings, as the project measured it on a 2-core CPU machine;
#: not re-run by the benchmark, and their sample sizes and protocols are theirs. ``ours``: the
#: method of :func:`list_methods` that corresponds.
PEERS = [
    dict(peer="GWF code, KL-DV + JKO, 5 steps x 500 iterations", target="eight_gaussians", ours="jko_kl_dv",
         cpu="13-16 s",
         result="W2^2 / floor 4.4-4.9 (modes smeared into a ring)"),
    dict(peer="GWF code, the same without JKO (the GAN)", target="eight_gaussians", ours="fgan_kl",
         cpu="12-14 s",
         result="W2^2 / floor 6.5-12.5"),
    dict(peer="GWF code, MMD + JKO", target="eight_gaussians", ours="jko_mmd", cpu="65-73 s",
         result="W2^2 / floor 14.5-15.3"),
    dict(peer="S-JKO code, KL, README toy command", target="twenty_five_gaussians", ours="sjko", cpu="939 s",
         result="collapsed onto 9 and 7 of 25 modes (2 seeds)"),
    dict(peer="drifting toy demo, 2000 steps", target="checkerboard", ours="drift_algorithm2",
         cpu="about 212 s",
         result="W2^2 / floor 1.20"),
    dict(peer="drifting toy demo, 2000 steps", target="swiss_roll", ours="drift_algorithm2",
         cpu="about 212 s",
         result="W2^2 at the floor"),
]  # fmt: skip


def summarize(rows: list[dict]) -> list[dict]:
    r"""Median over seeds (and min, max) of each metric, for every (method, target) of a results file.

    .. math::

        \bar r_{m,t} = \operatorname{median}_s r_{m,t,s}, \qquad r = +\infty \text{ for a diverged run}.

    Parameters
    ----------
    rows : list of dict
        The ``"rows"`` of ``load_results("run_all")`` (one per method, target, seed).

    Returns
    -------
    list of dict
        One per (method, target): ``status`` (``"ok"``, ``"some diverged"`` or ``"n/a"``),
        ``w2_ratio``, ``energy_ratio``, ``sinkhorn_ratio``, ``cpu_s`` with ``_min``/``_max``, and on
        mixtures ``modes_hit_min``, ``n_modes``, ``weight_tv``, ``hq``.

    Used in: chapter 11.
    """
    import numpy as np

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
            s[key] = float(np.median(v))
            s[key + "_min"] = float(v.min())
            s[key + "_max"] = float(v.max())
        if "n_modes" in rs[0] or any("modes_hit" in r for r in rs):
            s["modes_hit_min"] = int(min(r.get("modes_hit", 0) for r in rs))
            s["n_modes"] = int(max(r.get("n_modes", 0) for r in rs))
            tv = [r["weight_tv"] for r in rs if "weight_tv" in r]
            s["weight_tv"] = float(np.median(tv)) if tv else 1.0
            hq = [r["hq"] for r in rs if "hq" in r]
            s["hq"] = float(np.median(hq)) if hq else 0.0
        out.append(s)
    return out


def headline(s: dict, mixture: bool) -> float:
    """The headline ratio of a summary row: the energy ratio on mixtures, the W2^2 ratio elsewhere.

    Parameters
    ----------
    s : dict
        A row of :func:`summarize`.
    mixture : bool
        Whether the target is a Gaussian mixture (``floors[target]["mixture"]`` of the results).

    Used in: chapter 11.
    """
    return s["energy_ratio"] if mixture else s["w2_ratio"]


def family_ratios(by: dict, floors: dict, family: str, target: str) -> list[float]:
    """Headline ratios of a family's methods on a target, in the order of :func:`list_methods`.

    Parameters
    ----------
    by : dict
        Rows of :func:`summarize` keyed by ``(method, target)``.
    floors : dict
        The ``"floors"`` of the results (``floors[target]["mixture"]`` is used).
    family : str
        One of :data:`FAMILIES`.
    target : str

    Used in: chapter 11.
    """
    mixture = floors[target]["mixture"]
    return [
        headline(by[(m, target)], mixture)
        for m in list_methods(family)
        if (m, target) in by and by[(m, target)]["status"] != "n/a"
    ]


def goals(summary: list[dict], floors: dict, methods: list[str], targets: list[str]) -> dict:
    """Which goals of the benchmark hold.

    Every method within 2x the floor (W2^2) on the targets of :data:`GOAL_2X`; the best method of
    each family within :data:`GOAL_BEST` times the floor (headline ratio) on every target, with all
    modes hit on the mixtures.

    Parameters
    ----------
    summary : list of dict
        Rows of :func:`summarize`.
    floors : dict
        The ``"floors"`` of the results.
    methods, targets : list of str
        The methods and targets considered.

    Returns
    -------
    dict
        ``misses_2x``: ``{method, target, ratio}`` for each miss of the 2x goal; ``best``: for each
        (family, target), ``{family, target, method, ratio, ok, modes}`` of the family's best method.

    Used in: chapter 11.
    """
    by = {(s["method"], s["target"]): s for s in summary}
    misses_2x = []
    for t in GOAL_2X:
        if t not in targets:
            continue
        for m in methods:
            s = by.get((m, t))
            if s is None or s["status"] == "n/a":
                continue
            if not s["w2_ratio"] <= 2.0:
                misses_2x.append(dict(method=m, target=t, ratio=s["w2_ratio"]))
    best = []
    for fam in FAMILIES:
        fam_methods = [m for m in methods if method_info(m).family == fam]
        if not fam_methods:
            continue
        for t in targets:
            mixture = floors[t]["mixture"]
            cands = [by[(m, t)] for m in fam_methods if (m, t) in by and by[(m, t)]["status"] != "n/a"]
            if not cands:
                continue
            b = min(cands, key=lambda s: headline(s, mixture))
            ok = headline(b, mixture) <= GOAL_BEST
            if mixture:
                ok = ok and b.get("modes_hit_min", 0) == b.get("n_modes", -1)
            best.append(
                dict(family=fam, target=t, method=b["method"], ratio=headline(b, mixture), ok=bool(ok),
                     modes=f"{b.get('modes_hit_min', '')}/{b.get('n_modes', '')}" if mixture else "")
            )  # fmt: skip
    return dict(misses_2x=misses_2x, best=best)
