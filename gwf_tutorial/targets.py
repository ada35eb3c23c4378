r"""Toy target distributions: samplers, and where known, log-densities and scores. Every target is a
:class:`Target` of dimension ``dim`` with ``sample(n, generator=None, dtype=float32, device=None)`` (drawn in
float64 from ``generator`` only, on its device), and where ``has_density`` ``log_prob(x)`` (n,) and
``score(x)`` :math:`= \nabla\log p(x)` (n, d), in the dtype of ``x`` (n, d) (every target but ``moons``,
``swiss_roll``, ``spirals`` and ``gwf_three_rings``). ``stratified=True`` puts exactly :math:`n w_k` points in
mode :math:`k` (the peers' samplers; default i.i.d.); ``name`` is the registry name. The registry
(:func:`get_target`) holds the book's targets and the peers' with their exact constants (GWF 2026, S-JKO 2024,
drifting 2026):

========================== ======================================================================
name                       distribution (source)
========================== ======================================================================
``gaussian``               :math:`N(m, \Sigma)`, ``m = (1, -0.5)``, ``Sigma = [[1, .6], [.6, .8]]``
``eight_gaussians``        = ``gwf_eight_gaussians``: 8 modes on the unit circle, std 0.1 (GWF)
``sjko_8gaussians``        8 modes on the circle of radius 12, covariance 0.4 I (S-JKO)
``twenty_five_gaussians``  = ``sjko_25gaussians``: 5 x 5 grid {-6,-3,0,3,6}^2, cov 0.005 I (S-JKO)
``moons``                  = ``gwf_moons``: two half circles x 3 - 1, noise 0.2 x 3 (GWF)
``swiss_roll``             = ``drifting_swiss_roll``: spiral scaled to [-1, 1], noise 0.03 (drifting)
``checkerboard``           = ``drifting_checkerboard``: 8 cells of [-1, 1]^2, noise 0.05 (drifting)
``sjko_checkerboard``      8 cells of [-2 pi/3, 2 pi/3]^2, no noise (S-JKO)
``two_circles``            = ``sjko_twocircles`` = ``gwf_circles``: radii 4, 8, noise 0.2 (both)
``gwf_three_rings``        3000 fixed points on 3 stacked circles of radius 0.3 (GWF)
``rings``                  4 concentric circles, radii 0.75, 1.5, 2.25, 3, noise 0.08
``spirals``                two spiral arms of 1.5 turns, noise 0.1 (after FFJORD's "2spirals")
``banana``                 twisted Gaussian, scale 2, curvature 0.25, noise 0.5
========================== ======================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from gwf_tutorial._validation import (
    as_tensor,
    check_bool,
    check_dtype,
    check_finite,
    check_generator,
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_samples,
    check_spd,
    check_weights,
)

__all__ = ["Target", "Gaussian", "GaussianMixture", "Banana", "TwoMoons", "SwissRoll", "Checkerboard",
           "Rings", "TwoCircles", "Spirals", "FinitePoints", "gaussian_quantiles", "get_target",
           "list_targets"]  # fmt: skip

_LOG_2PI = math.log(2.0 * math.pi)


def _like(t: Tensor, x: Tensor) -> Tensor:
    """Cast a float64 parameter to the dtype and device of ``x``."""
    return t.to(dtype=x.dtype, device=x.device)


def _as_f64(value, name: str) -> Tensor:
    """Array-like to a finite float64 tensor."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must hold real numbers, got a bool")
    return check_finite(as_tensor(value, name, dtype=torch.float64), name)


def _finite_real(value, name: str) -> float:
    """A finite real number (any sign) as a python float."""
    t = _as_f64(value, name)
    if t.numel() != 1:
        raise ValueError(f"{name} must be a number, got shape {tuple(t.shape)}")
    return float(t)


def _check_weights(weights, k: int) -> Tensor:
    """``weights`` read in float64 (python floats are not rounded through float32), then checked."""
    return check_weights(None if weights is None else _as_f64(weights, "weights"), k)


def _component_indices(weights: Tensor, n: int, stratified: bool, generator, device: torch.device) -> Tensor:
    """Component index of each of ``n`` draws: i.i.d. categorical, or (``stratified``) ``floor(n w_k)``
    draws of component k, the remainder to the largest fractional parts (ties: lower index), shuffled."""
    w = weights.to(device)
    if not stratified:
        return torch.multinomial(w, n, replacement=True, generator=generator)
    exact = n * w
    counts = torch.floor(exact).long()
    rest = n - int(counts.sum())
    if rest > 0:
        order = torch.argsort(exact - counts, descending=True, stable=True)
        counts[order[:rest]] += 1
    idx = torch.repeat_interleave(torch.arange(len(w), device=device), counts)
    return idx[torch.randperm(n, generator=generator, device=device)]


def _show(v) -> str:
    """A parameter as repr shows it: tensors (abridged beyond 8 values) and floats rounded to 4 digits,
    strings quoted."""
    if not isinstance(v, Tensor):
        return repr(v) if isinstance(v, str) else str(round(v, 4) if isinstance(v, float) else v)
    vals = [round(float(u), 4) for u in v.flatten()]
    if v.ndim == 0:
        return repr(vals[0])
    if len(vals) > 8:
        return f"[{', '.join(map(repr, vals[:4]))}, ... ({len(vals)} values)]"
    return repr(torch.tensor(vals, dtype=torch.float64).reshape(v.shape).tolist())


class Target:
    r"""A probability distribution on :math:`\mathbb{R}^d` that can be sampled. Subclasses implement
    ``_sample(n, generator, device)`` (float64) and, with a density, ``_log_prob(x)`` and optionally
    ``_score(x)`` (default: autograd of ``_log_prob``); their scalar parameters, passed to ``__init__`` by
    keyword, are checked by the functions of their table ``_params`` and shown by ``repr``.

    Used in: :class:`~gwf_tutorial.targets.Gaussian` and every other target of this module (their base class).
    """

    name: str = "target"
    dim: int = 2
    _params: dict[str, Callable] = {}  # scalar parameter -> its check (value, name) -> value
    _shown: tuple[str, ...] = ()  # further attributes shown by repr

    def __init__(self, dim: int, name: str, **params):
        self.dim = check_int(dim, "dim")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.name = name
        for key, value in params.items():
            setattr(self, key, self._params[key](value, key))

    def _sample(self, n: int, generator, device: torch.device) -> Tensor:
        raise NotImplementedError

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _score(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            xr = x if x.requires_grad else x.detach().requires_grad_(True)
            lp = self._log_prob(xr).sum()
            (g,) = torch.autograd.grad(lp, xr, create_graph=x.requires_grad)
        return g

    @property
    def has_density(self) -> bool:
        """Whether :meth:`log_prob` and :meth:`score` are available in closed form."""
        return type(self)._log_prob is not Target._log_prob

    def sample(self, n: int, generator: torch.Generator | None = None, *, dtype: torch.dtype = torch.float32,
               device: str | torch.device | None = None) -> Tensor:
        """``n`` i.i.d. samples, shape ``(n, d)``, drawn from ``generator`` only."""
        n, dtype = check_int(n, "n"), check_dtype(dtype)
        gen_device = torch.device("cpu") if check_generator(generator) is None else generator.device
        x = self._sample(n, generator, gen_device)
        return x.to(dtype=dtype, device=device if device is not None else gen_device)

    def _checked(self, x, what: str) -> Tensor:
        if not self.has_density:
            raise NotImplementedError(f"target {self.name!r} ({type(self).__name__}) has no closed-form "
                                      f"density{what}; only sample() is available")  # fmt: skip
        return check_samples(x, "x", dim=self.dim)

    def log_prob(self, x) -> Tensor:
        r""":math:`\log p(x_i)`, shape ``(n,)``; raises ``NotImplementedError`` without a density."""
        return self._log_prob(self._checked(x, ""))

    def score(self, x) -> Tensor:
        r""":math:`\nabla_x \log p(x_i)`, shape ``(n, d)``; ``NotImplementedError`` without a density."""
        return self._score(self._checked(x, ", so no score"))

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}", f"dim={self.dim}"]
        parts += [f"{k}={_show(getattr(self, k))}" for k in (*self._params, *self._shown)]
        return f"{type(self).__name__}({', '.join(parts)})"


class Gaussian(Target):
    r"""Multivariate normal :math:`N(m, \Sigma)`, ``mean`` (d,), ``cov`` (d, d) SPD, sampled as :math:`m + Lz`
    with :math:`LL^\top = \Sigma`; score :math:`\nabla \log p(x) = -\Sigma^{-1}(x - m)`.

    Used in: chapters 1, 2, 4, 5, 7 and 9.
    """

    def __init__(self, mean, cov, name: str = "gaussian"):
        mean, cov = check_mean_cov(_as_f64(mean, "mean"), _as_f64(cov, "cov"))
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (d,), got {tuple(mean.shape)}")
        super().__init__(mean.shape[0], name)
        self.mean, self.cov = mean.to(torch.float64), cov.to(torch.float64)
        self._chol = torch.linalg.cholesky(self.cov)

    def _sample(self, n, generator, device):
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=device)
        return self.mean.to(device) + z @ self._chol.to(device).T

    def _log_prob(self, x):
        L, diff = _like(self._chol, x), (x - _like(self.mean, x)).T
        sol = torch.linalg.solve_triangular(L, diff, upper=False)
        return -0.5 * (sol.pow(2).sum(0) + self.dim * _LOG_2PI + 2.0 * torch.log(torch.diagonal(L)).sum())

    def _score(self, x):
        L = _like(self._chol, x)
        return -torch.cholesky_solve((x - _like(self.mean, x)).T, L, upper=False).T

    _shown = ("mean", "cov")


def _mixture_covs(covs, k: int, d: int) -> Tensor:
    """``covs`` of :class:`GaussianMixture` as (K, d, d) covariances."""
    eye = torch.eye(d, dtype=torch.float64)
    c = _as_f64(covs, "covs")
    if c.ndim == 0:
        s = check_positive(float(c), "covs")
        return (s * s) * eye.expand(k, d, d).clone()
    if c.ndim == 1:
        if c.shape[0] != k:
            raise ValueError(f"covs as stds must have shape ({k},), got {tuple(c.shape)}")
        if not bool((c > 0).all()):
            raise ValueError("covs (per-mode standard deviations) must be positive")
        return c[:, None, None].pow(2) * eye
    if c.ndim == 2:
        return check_spd(c, "covs", dim=d).expand(k, d, d).clone()
    if c.ndim == 3 and c.shape[0] == k:
        return check_spd(c, "covs", dim=d)
    raise ValueError(f"covs must be a number, ({k},), ({d}, {d}) or ({k}, {d}, {d}), got {tuple(c.shape)}")


class GaussianMixture(Target):
    r"""Mixture of Gaussians :math:`p(x) = \sum_k w_k\, N(x; m_k, \Sigma_k)`, score :math:`-\sum_k r_k(x)\,
    \Sigma_k^{-1}(x - m_k)`, :math:`r_k = w_k N(x; m_k, \Sigma_k) / p(x)`. ``means`` (K, d); ``covs``: a
    common standard deviation (:math:`\Sigma_k = s^2 I`), one per mode (K,), one shared covariance (d, d) or
    one per mode (K, d, d); ``weights`` (K,), normalised (uniform by default). ``stds`` is the scale
    :math:`\sqrt{\lambda_{\max}(\Sigma_k)}` of each mode.

    Used in: chapters 4, 8 and 11.
    """

    def __init__(self, means, covs, weights=None, *, stratified: bool = False, name: str = "mixture"):
        means = _as_f64(means, "means")
        if means.ndim != 2 or means.shape[0] < 1:
            raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
        k, d = means.shape
        super().__init__(d, name)
        self.means, self.covs = means, _mixture_covs(covs, k, d)
        self.stratified = check_bool(stratified, "stratified")
        self.weights = _check_weights(weights, k)
        self.stds = torch.linalg.eigvalsh(self.covs)[:, -1].sqrt()
        self._chol = torch.linalg.cholesky(self.covs)

    @property
    def n_modes(self) -> int:
        """Number of mixture components ``K``."""
        return self.means.shape[0]

    def _sample(self, n, generator, device):
        idx = _component_indices(self.weights, n, self.stratified, generator, device)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64, device=device)
        means, chol = self.means.to(device), self._chol.to(device)
        x = torch.empty(n, self.dim, dtype=torch.float64, device=device)
        for k in range(self.n_modes):
            sel = idx == k
            x[sel] = means[k] + z[sel] @ chol[k].T
        return x

    def _components(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``log w_k + log N(x_i; m_k, S_k)`` (n, K), with the Cholesky factors ``L`` and ``x - m_k``."""
        L = _like(self._chol, x)  # (K, d, d)
        diff = (x[None, :, :] - _like(self.means, x)[:, None, :]).mT  # (K, d, n)
        sol = torch.linalg.solve_triangular(L, diff, upper=False)
        logdet = 2.0 * torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(-1)  # (K,)
        comp = -0.5 * (sol.pow(2).sum(1) + self.dim * _LOG_2PI + logdet[:, None])  # (K, n)
        return (comp + torch.log(_like(self.weights, x))[:, None]).T, L, diff

    def _log_prob(self, x):
        return torch.logsumexp(self._components(x)[0], dim=1)

    def _score(self, x):
        comp, L, diff = self._components(x)
        grads = -torch.cholesky_solve(diff, L, upper=False)  # (K, d, n)
        return torch.einsum("nk,kdn->nd", torch.softmax(comp, dim=1), grads)

    _shown = ("n_modes", "means", "stds", "weights", "stratified")


class Banana(Target):
    r"""Twisted ("banana") Gaussian in 2-D (Haario, Saksman, Tamminen 1999): :math:`x_1 \sim N(0, a^2)`,
    :math:`x_2 \mid x_1 \sim N\big(b (x_1^2 - a^2), s^2\big)`, ``a = scale``, ``b = curvature``,
    ``s = noise``; the density is exact (unit Jacobian up to the scales).

    Used in: ``targets._REGISTRY`` (``"banana"``).
    """

    _params = {"scale": check_positive, "curvature": _finite_real, "noise": check_positive}

    def __init__(self, scale: float = 2.0, curvature: float = 0.25, noise: float = 0.5, name: str = "banana"):
        super().__init__(2, name, scale=scale, curvature=curvature, noise=noise)

    def _sample(self, n, generator, device):
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        x1 = self.scale * z[:, 0]
        return torch.stack([x1, self.curvature * (x1.pow(2) - self.scale**2) + self.noise * z[:, 1]], dim=1)

    def _log_prob(self, x):
        a, b, s = self.scale, self.curvature, self.noise
        x1, x2 = x[:, 0], x[:, 1]
        r = x2 - b * (x1.pow(2) - a * a)
        return -0.5 * (x1 / a).pow(2) - 0.5 * (r / s).pow(2) - _LOG_2PI - math.log(a * s)

    def _score(self, x):
        a, b, s = self.scale, self.curvature, self.noise
        x1, x2 = x[:, 0], x[:, 1]
        r = x2 - b * (x1.pow(2) - a * a)
        return torch.stack([-x1 / (a * a) + (r / (s * s)) * 2.0 * b * x1, -r / (s * s)], dim=1)


class TwoMoons(Target):
    r"""Two interleaving half circles (GWF ``Moons``; the geometry of scikit-learn's ``make_moons``):
    :math:`x = c\,(u + \sigma \varepsilon) + o`, :math:`u \in \{(\cos t, \sin t),\ (1 - \cos t, \tfrac12 -
    \sin t)\}`, :math:`t \sim U(0, \pi)`, ``sigma = noise``, ``c = scale``, ``o = shift``.

    Used in: ``targets._REGISTRY`` (``"moons"``, ``"gwf_moons"``).
    """

    _params = {"noise": check_nonnegative, "scale": check_positive, "shift": _finite_real}

    def __init__(self, noise: float = 0.2, scale: float = 3.0, shift: float = -1.0, *,
                 stratified: bool = False, name: str = "moons"):
        super().__init__(2, name, noise=noise, scale=scale, shift=shift)
        self.stratified = bool(stratified)

    def _sample(self, n, generator, device):
        half = torch.tensor([0.5, 0.5], dtype=torch.float64)
        idx = _component_indices(half, n, self.stratified, generator, device)
        t = math.pi * torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        upper = torch.stack([torch.cos(t), torch.sin(t)], dim=1)
        lower = torch.stack([1.0 - torch.cos(t), 0.5 - torch.sin(t)], dim=1)
        u = torch.where((idx == 0)[:, None], upper, lower)
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return self.scale * (u + self.noise * eps) + self.shift


class SwissRoll(Target):
    r"""2-D swiss roll scaled to :math:`[-1, 1]^2` (the drifting toy demo of Deng et al. 2026):
    :math:`x = (t\cos t,\; t \sin t) / c + \sigma \varepsilon`, :math:`t = t_0 + (t_1 - t_0) u`,
    :math:`u \sim U(0, 1)`, with ``c`` the largest absolute coordinate over :math:`[t_0, t_1]`
    (``normalization="population"``) or of the drawn sample (``"sample"``, the demo exactly).

    Used in: ``targets._REGISTRY`` (``"swiss_roll"``, ``"drifting_swiss_roll"``).
    """

    _params = {"noise": check_nonnegative, "t_min": check_nonnegative, "t_max": check_positive}
    _shown = ("normalization",)

    def __init__(self, noise: float = 0.03, t_min: float = 0.5 * math.pi, t_max: float = 4.5 * math.pi,
                 normalization: str = "population", name: str = "swiss_roll"):
        super().__init__(2, name, noise=noise, t_min=t_min, t_max=t_max)
        if not self.t_max > self.t_min:
            raise ValueError(f"t_max must exceed t_min, got t_min={t_min}, t_max={t_max}")
        if normalization not in ("population", "sample"):
            raise ValueError(f"normalization must be 'population' or 'sample', got {normalization!r}")
        self.normalization = normalization
        t = torch.linspace(self.t_min, self.t_max, 200_001, dtype=torch.float64)
        self.curve_scale = float(torch.maximum((t * t.cos()).abs(), (t * t.sin()).abs()).max())

    def _sample(self, n, generator, device):
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        t = self.t_min + (self.t_max - self.t_min) * u
        pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
        c = self.curve_scale if self.normalization == "population" else float(pts.abs().max())
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return pts / c + self.noise * eps


class Spirals(Target):
    r"""``A = n_arms`` rotated Archimedean spiral arms with Gaussian noise (after FFJORD's "2spirals"):
    :math:`x = R_{2\pi a / A}\, \frac{t}{c}\, (-\cos t, \sin t) + \sigma \varepsilon`, :math:`t = t_1
    \sqrt{u}`, :math:`u \sim U(0,1)`, ``t_1 = 2 pi turns``, ``c = scale``, ``sigma = noise``, arm ``a``
    uniform.

    Used in: ``targets._REGISTRY`` (``"spirals"``).
    """

    _params = {"n_arms": check_int, "turns": check_positive, "scale": check_positive,
               "noise": check_nonnegative}  # fmt: skip

    def __init__(self, n_arms: int = 2, turns: float = 1.5, scale: float = 3.0, noise: float = 0.1,
                 name: str = "spirals"):
        super().__init__(2, name, n_arms=n_arms, turns=turns, scale=scale, noise=noise)

    def _sample(self, n, generator, device):
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        t = 2.0 * math.pi * self.turns * u.sqrt()
        arm = torch.randint(0, self.n_arms, (n,), generator=generator, device=device)
        phi = 2.0 * math.pi * arm.to(torch.float64) / self.n_arms
        px, py = -t * torch.cos(t), t * torch.sin(t)
        x = torch.stack([phi.cos() * px - phi.sin() * py, phi.sin() * px + phi.cos() * py], dim=1)
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        return x / self.scale + self.noise * eps


def _log_interval_prob(lo: Tensor, hi: Tensor) -> Tensor:
    """``log(Phi(hi) - Phi(lo))`` for ``lo < hi``, stable in both tails."""
    flip = lo > 0  # upper tail: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
    a, b = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
    lb = torch.special.log_ndtr(b)
    u = torch.special.log_ndtr(a) - lb  # <= 0
    return lb + torch.where(u > -math.log(2.0), torch.log(-torch.expm1(u)), torch.log1p(-torch.exp(u)))


class Checkerboard(Target):
    r"""Uniform law on the black cells (``i + j`` even) of a ``k x k`` board on :math:`[\ell, h]^2`, plus
    noise: :math:`p(x) = \frac{1}{C w^2} \sum_{(i,j) \text{ black}} [\Phi(\tfrac{x_1 - a_i}{\sigma}) -
    \Phi(\tfrac{x_1 - a_i - w}{\sigma})] [\Phi(\tfrac{x_2 - a_j}{\sigma}) - \Phi(\tfrac{x_2 - a_j -
    w}{\sigma})]`, :math:`a_i = \ell + i w`, with ``C`` black cells of width ``w``; for :math:`\sigma = 0`,
    :math:`1/(C w^2)` on the black cells. The defaults are the drifting demo's (S-JKO's board:
    ``"sjko_checkerboard"``).

    Used in: ``targets._REGISTRY`` (``"checkerboard"``, ``"drifting_checkerboard"``).
    """

    _params = {"n_cells": check_int, "low": _finite_real, "high": _finite_real, "noise": check_nonnegative}

    def __init__(self, n_cells: int = 4, low: float = -1.0, high: float = 1.0, noise: float = 0.05,
                 name: str = "checkerboard"):
        super().__init__(2, name, n_cells=n_cells, low=low, high=high, noise=noise)
        if not self.high > self.low:
            raise ValueError(f"high must exceed low, got low={low}, high={high}")
        k = self.n_cells
        ii, jj = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
        black = (ii + jj) % 2 == 0
        self.cells = torch.stack([ii[black], jj[black]], dim=1)  # (C, 2) integer cell indices
        self.width = (self.high - self.low) / k

    def _sample(self, n, generator, device):
        c = torch.randint(0, len(self.cells), (n,), generator=generator, device=device)
        uv = torch.rand(n, 2, generator=generator, dtype=torch.float64, device=device)
        x = self.low + (self.cells.to(device)[c].to(torch.float64) + uv) * self.width
        if self.noise > 0:
            eps = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
            x = x + self.noise * eps
        return x

    def _log_prob(self, x):
        k, w = self.n_cells, self.width
        const = -math.log(len(self.cells) * w * w)
        edges = self.low + w * torch.arange(k, dtype=x.dtype, device=x.device)  # (k,)
        cells = self.cells.to(x.device)
        if self.noise == 0:
            idx = torch.floor((x - self.low) / w)
            inside = ((idx >= 0) & (idx < k)).all(1) & ((idx.sum(1) % 2) == 0)
            return torch.where(inside, const + 0.0 * x.sum(1), torch.full_like(x[:, 0], -math.inf))
        s = self.noise
        # (n, 2, k): log P(noise puts coordinate in cell i)
        lp = _log_interval_prob((x[:, :, None] - edges - w) / s, (x[:, :, None] - edges) / s)
        terms = lp[:, 0, cells[:, 0]] + lp[:, 1, cells[:, 1]]  # (n, C)
        return const + torch.logsumexp(terms, dim=1)

    def _score(self, x):
        if self.noise == 0:
            return torch.where(torch.isfinite(self._log_prob(x))[:, None], torch.zeros_like(x), math.nan)
        return super()._score(x)


class Rings(Target):
    r"""Mixture of noisy circles: :math:`c_k + r_k(\cos\theta, \sin\theta) + \sigma_k\varepsilon`,
    :math:`\theta \sim U(0, 2\pi)`, density :math:`p = \sum_k w_k p_k`, :math:`p_k(x) =
    \frac{1}{2\pi\sigma_k^2} \exp(-\frac{(\rho - r_k)^2}{2\sigma_k^2})\, \mathrm{i0e}(\frac{r_k
    \rho}{\sigma_k^2})`, :math:`\rho = |x - c_k|`, with ``i0e`` :math:`= e^{-z} I_0(z)`; the score uses
    :math:`I_1 / I_0`. ``std`` is one number or one per ring; ``centers`` default to the origin.

    Used in: ``targets._REGISTRY`` (``"rings"``).
    """

    def __init__(self, radii=(0.75, 1.5, 2.25, 3.0), std=0.08, weights=None, centers=None, *,
                 stratified: bool = False, name: str = "rings"):
        super().__init__(2, name)
        r = _as_f64(radii, "radii").reshape(-1)
        if r.numel() < 1 or bool((r < 0).any()):
            raise ValueError("radii must be a non-empty sequence of non-negative numbers")
        k = r.numel()
        s = _as_f64(std, "std").reshape(-1)
        s = s.expand(k).clone() if s.numel() == 1 else s
        if s.numel() != k or not bool((s > 0).all()):
            raise ValueError(f"std must be positive, a number or one per ring ({k},), got {s.numel()} values")
        c = torch.zeros(k, 2, dtype=torch.float64) if centers is None else _as_f64(centers, "centers")
        if c.shape != (k, 2):
            raise ValueError(f"centers must have shape ({k}, 2), got {tuple(c.shape)}")
        self.radii, self.stds, self.centers = r, s, c
        self.weights, self.stratified = _check_weights(weights, k), bool(stratified)

    def _sample(self, n, generator, device):
        idx = _component_indices(self.weights, n, self.stratified, generator, device)
        theta = 2.0 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64, device=device)
        r, s, c = (self.radii.to(device)[idx], self.stds.to(device)[idx], self.centers.to(device)[idx])
        return c + r[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1) + s[:, None] * eps

    def _parts(self, x):
        diff = x[:, None, :] - _like(self.centers, x)[None]  # (n, K, 2)
        rho = diff.pow(2).sum(-1).sqrt()  # (n, K)
        r, s = _like(self.radii, x), _like(self.stds, x)
        z = r * rho / s.pow(2)
        comp = (torch.log(_like(self.weights, x)) - math.log(2.0 * math.pi) - 2.0 * torch.log(s)
                - (rho - r).pow(2) / (2.0 * s.pow(2)) + torch.log(torch.special.i0e(z)))  # fmt: skip
        return diff, z, comp

    def _log_prob(self, x):
        return torch.logsumexp(self._parts(x)[2], dim=1)

    def _score(self, x):
        diff, z, comp = self._parts(x)
        r, s2 = _like(self.radii, x), _like(self.stds, x).pow(2)
        small = z < 1e-4
        z_safe = torch.where(small, torch.ones_like(z), z)
        ratio = torch.special.i1e(z_safe) / (torch.special.i0e(z_safe) * z_safe)
        ratio = torch.where(small, 0.5 - z.pow(2) / 16.0, ratio)  # A(z)/z near 0
        coef = (r.pow(2) / s2 * ratio - 1.0) / s2  # (n, K)
        return ((torch.softmax(comp, dim=1) * coef)[:, :, None] * diff).sum(1)

    _shown = ("radii", "stds", "weights", "centers")


class TwoCircles(Rings):
    """:class:`Rings` with radii 4 and 8, noise 0.2 (S-JKO ``twocircles`` and GWF ``Circles``).

    Used in: ``targets._REGISTRY`` (``"two_circles"``, ``"sjko_twocircles"``, ``"gwf_circles"``).
    """

    def __init__(self, radii=(4.0, 8.0), std: float = 0.2, *, stratified: bool = False,
                 name: str = "two_circles"):
        super().__init__(radii, std, stratified=stratified, name=name)


class FinitePoints(Target):
    r"""Uniform law :math:`\frac1N \sum_j \delta_{z_j}` on ``points`` of shape ``(N, d)``; no density.

    Used in: ``targets._gwf_three_rings`` (``"gwf_three_rings"``).
    """

    def __init__(self, points, name: str = "points"):
        pts = check_samples(_as_f64(points, "points"), "points")
        super().__init__(pts.shape[1], name)
        self.points, self.n_points = pts, len(pts)

    def _sample(self, n, generator, device):
        idx = torch.randint(0, len(self.points), (n,), generator=generator, device=device)
        return self.points.to(device)[idx]

    _shown = ("n_points",)


def _gwf_eight_gaussians(scale=1.0, std=0.1, stratified=False, name="eight_gaussians"):
    h = 1.0 / math.sqrt(2.0)
    centers = [(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)]
    means = check_positive(scale, "scale") * torch.tensor(centers, dtype=torch.float64)
    return GaussianMixture(means, std, stratified=stratified, name=name)


def _sjko_8gaussians(radius=12.0, variance=0.4, stratified=False, name="sjko_8gaussians"):
    ang = 2.0 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    means = check_positive(radius, "radius") * torch.stack([ang.cos(), ang.sin()], dim=1)
    s = math.sqrt(check_positive(variance, "variance"))
    return GaussianMixture(means, s, stratified=stratified, name=name)


def _sjko_25gaussians(spacing=3.0, variance=0.005, stratified=False, name="twenty_five_gaussians"):
    grid = check_positive(spacing, "spacing") * torch.arange(-2, 3, dtype=torch.float64)
    # S-JKO order: x = [-6]*5 + [-3]*5 + ..., y = [-6, -3, 0, 3, 6] * 5
    means = torch.stack([grid.repeat_interleave(5), grid.repeat(5)], dim=1)
    s = math.sqrt(check_positive(variance, "variance"))
    return GaussianMixture(means, s, stratified=stratified, name=name)


def _gwf_three_rings(radius=0.3, delta=0.5, n_per_ring=1000, name="gwf_three_rings"):
    radius, n_per_ring = check_positive(radius, "radius"), check_int(n_per_ring, "n_per_ring")
    ang = 2.0 * math.pi * torch.arange(n_per_ring, dtype=torch.float64) / n_per_ring
    ring = radius * torch.stack([ang.cos(), ang.sin()], dim=1)
    offset = torch.tensor([0.0, (2.0 + delta) * radius], dtype=torch.float64)
    return FinitePoints(torch.cat([ring, ring - offset, ring - 2 * offset]), name=name)


# One line per distribution, its aliases after it (the table of the module docstring).
_REGISTRY: dict[str, Callable[..., Target]] = {
    "gaussian": partial(Gaussian, mean=(1.0, -0.5), cov=((1.0, 0.6), (0.6, 0.8))),
    "eight_gaussians": _gwf_eight_gaussians, "gwf_eight_gaussians": _gwf_eight_gaussians,
    "sjko_8gaussians": _sjko_8gaussians,
    "twenty_five_gaussians": _sjko_25gaussians, "sjko_25gaussians": _sjko_25gaussians,
    "moons": TwoMoons, "gwf_moons": TwoMoons,
    "swiss_roll": SwissRoll, "drifting_swiss_roll": SwissRoll,
    "checkerboard": Checkerboard, "drifting_checkerboard": Checkerboard,
    "sjko_checkerboard": partial(Checkerboard, n_cells=4, low=-2.0 * math.pi / 3.0, high=2.0 * math.pi / 3.0,
                                 noise=0.0),
    "two_circles": TwoCircles, "sjko_twocircles": TwoCircles, "gwf_circles": TwoCircles,
    "gwf_three_rings": _gwf_three_rings,
    "rings": Rings,
    "spirals": Spirals,
    "banana": Banana,
}  # fmt: skip


def list_targets() -> list[str]:
    """Names accepted by :func:`get_target`, sorted.

    Used in: :func:`~gwf_tutorial.targets.get_target` (its error message).
    """
    return sorted(_REGISTRY)


def get_target(name: str, **kwargs) -> Target:
    """Build a target by name (case-insensitive, ``-`` = ``_``); keyword arguments override its constants,
    e.g. ``get_target("sjko_25gaussians", stratified=True)``.

    Used in: chapters 2-8 and 11.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown target {name!r}; choose from {list_targets()}")
    kwargs.setdefault("name", key)
    return _REGISTRY[key](**kwargs)


def gaussian_quantiles(n: int, mean: float, var: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    r"""``n`` deterministic 1-D points :math:`x_i = m + \sqrt{v}\,(u_i - \bar u) / \operatorname{sd}(u)`,
    :math:`u_i = \Phi^{-1}\big(\frac{i + 1/2}{n}\big)`, shape ``(n, 1)``, with exactly this mean and
    variance: a noise-free stand-in for a sample of :math:`N(m, v)`.

    Used in: chapter 7.
    """
    import numpy as np
    from scipy.stats import norm
    n = check_int(n, "n", min_value=2)
    var, mean = check_positive(var, "var"), _finite_real(mean, "mean")
    check_dtype(dtype)
    u = torch.as_tensor(norm.ppf((np.arange(n) + 0.5) / n), dtype=torch.float64)
    u = (u - u.mean()) / u.std(unbiased=False)
    return (mean + math.sqrt(var) * u).to(dtype)[:, None]
