r"""Objectives of Wasserstein gradient flows, estimated from samples, and the one MMD estimator.

Every objective :math:`F(\rho)` (a divergence to a target) has ``value(x, y)`` (a 0-d tensor, differentiable
in ``x``), ``first_variation(x, y, at)`` and ``velocity(x, y, at=None)``, the velocity :math:`v = -\nabla
\frac{\delta F}{\delta\rho}` of the flow :math:`\partial_t \rho = -\operatorname{div}(\rho\, v)`.

Shared arguments: particles ``x`` ``(n, d)``, target samples ``y`` ``(m, d)``, evaluation points ``at``
``(k, d)`` (velocities have its shape, first variations ``(k,)``); ``generator`` draws random directions;
``chunk_size`` is the rows per block of kernel sums (default about ``2**20`` entries on a CPU, one block
on a GPU when it fits in a quarter of the free memory).

Used in: :mod:`gwf_tutorial.flows` (chapters 2, 3 and 8) and the parametric methods (chapters 4-8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.util import find_spec

import ot
import torch
from torch import Tensor

from gwf_tutorial._validation import (
    check_choice,
    check_generator,
    check_int,
    check_interval,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.kernels import Kernel, _sqdist, get_kernel

__all__ = ["Objective", "wasserstein_gradient", "mmd2_estimate", "MMD", "KL", "SlicedWasserstein",
           "SlicedEnergyMMD", "SinkhornDivergence", "get_objective", "kde_bandwidth",
           "slicing_constant"]  # fmt: skip

# Block size of the kernel sums: this many entries on a CPU; on a GPU this fraction of the free memory,
# counting this many (rows, cols) temporaries alive at once.
_AUTO_BLOCK_ENTRIES = 2**20
_GPU_MEMORY_FRACTION = 0.25
_GPU_BLOCK_TEMPORARIES = 16


def _free_device_bytes(device: torch.device) -> int | None:
    """Free memory of a CUDA device (driver's free plus the allocator's cached blocks); None on CPU."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _block_rows(n_rows: int, n_cols: int, itemsize: int, free_bytes: int | None) -> int:
    """Rows per block (``free_bytes`` None: a CPU)."""
    if free_bytes is None:
        return max(1, _AUTO_BLOCK_ENTRIES // max(1, n_cols))
    per_row = max(1, n_cols) * itemsize * _GPU_BLOCK_TEMPORARIES
    return max(1, min(n_rows, int(free_bytes * _GPU_MEMORY_FRACTION) // per_row))


def _row_slices(n_rows: int, n_cols: int, chunk_size: int | None, like: Tensor):
    """Slices of at most ``chunk_size`` rows (None: sized for the device of ``like``)."""
    chunk = chunk_size or _block_rows(n_rows, n_cols, like.element_size(), _free_device_bytes(like.device))
    return [slice(start, min(start + chunk, n_rows)) for start in range(0, n_rows, chunk)]


def _gram_mean(gram: Callable, a: Tensor, b: Tensor, chunk_size: int | None, exclude_diagonal: bool):
    """Mean of ``gram(a, b)`` over all pairs (over ``i != j`` when ``exclude_diagonal``, ``a is b``), by
    row blocks (``chunk_size=0``: the whole matrix, no slicing)."""
    total = 0
    for sl in [None] if chunk_size == 0 else _row_slices(a.shape[0], b.shape[0], chunk_size, a):
        block = gram(a, b) if sl is None else gram(a[sl], b)
        total = total + block.sum()
        if exclude_diagonal:
            total = total - torch.diagonal(block if sl is None else block[:, sl]).sum()
    n = a.shape[0]
    return total / (n * (n - 1) if exclude_diagonal else n * b.shape[0])


def mmd2_estimate(gram: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, *, unbiased: bool = False,
                  chunk_size: int | None = None) -> Tensor:  # fmt: skip
    r"""The library's one estimate of :math:`\mathrm{MMD}^2`, shape ``()``, from a Gram function.

    .. math::

        \widehat{\mathrm{MMD}}{}^2 = \frac{1}{n^2}\sum_{i,i'} k(x_i, x_{i'})
          + \frac{1}{m^2}\sum_{j,j'} k(y_j, y_{j'}) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j),

    the U-statistic (``unbiased=True``) summing over :math:`i \ne i'`, :math:`j \ne j'` and dividing by
    :math:`n(n-1)`, :math:`m(m-1)`. ``gram(a, b)`` is the ``(len(a), len(b))`` kernel matrix of checked
    inputs (one bandwidth for the three); ``x``, ``y`` are not checked. Sums by row blocks
    (``chunk_size=0``: whole matrices); differentiable in ``x``, ``y`` and the parameters of ``gram``.

    Used in: :class:`~gwf_tutorial.functionals.MMD`, :func:`~gwf_tutorial.metrics.mmd2`,
    :class:`~gwf_tutorial.critics.LearnedKernel`.
    """
    if unbiased and (x.shape[0] < 2 or y.shape[0] < 2):
        raise ValueError("unbiased=True needs at least 2 samples in x and in y")
    xx, yy = (_gram_mean(gram, z, z, chunk_size, unbiased) for z in (x, y))
    return xx + yy - 2.0 * _gram_mean(gram, x, y, chunk_size, False)


def wasserstein_gradient(value_fn: Callable[[Tensor], Tensor], x) -> Tensor:
    r"""Wasserstein gradient :math:`\nabla_{W_2} F(\rho_n)(x_i) = \nabla \frac{\delta F}{\delta\rho}(x_i)
    = n\, \nabla_{x_i} F\big(\frac1n \sum_j \delta_{x_j}\big)` at ``x`` of a sample estimate ``value_fn``
    (particles to a 0-d tensor) by autograd, detached, shape ``(n, d)``.

    Used in: chapters 2 and 3.
    """
    if not callable(value_fn):
        raise TypeError(f"value_fn must be callable x -> 0-d tensor, got {type(value_fn).__name__}")
    x = check_samples(x, "x")
    z = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        val = value_fn(z)
        if not isinstance(val, Tensor) or val.numel() != 1:
            raise ValueError("value_fn must return a 0-d tensor (one number)")
        if not val.requires_grad:
            raise ValueError("value_fn output does not depend differentiably on the particles")
        (grad,) = torch.autograd.grad(val.reshape(()), z, allow_unused=True)
    if grad is None:
        grad = torch.zeros_like(z)
    return (x.shape[0] * grad).detach()


class Objective:
    r"""An objective :math:`F(\rho)` with a sample estimate ``value`` and its Wasserstein velocity, by default
    minus :func:`wasserstein_gradient` of ``value`` at the particles, or minus the gradient of
    ``first_variation`` at other points.

    Used in: :class:`~gwf_tutorial.functionals.MMD` and every objective of this module (their base class).
    """

    name = "objective"
    needs_target_samples = True
    _fields: tuple[str, ...] = ()

    def _check(self, x, y, at=None, *, detach: bool = False):
        """Checked ``x``, ``y`` and ``at`` (may be None); ``x`` and ``y`` detached when ``detach``."""
        x = check_samples(x, "x")
        if y is None:
            if self.needs_target_samples:
                raise ValueError(f"{type(self).__name__} needs target samples y of shape (m, d)")
        else:
            y = check_samples(y, "y")
            check_same_dim(x, y)
        if at is not None:
            at = check_samples(at, "at")
            check_same_dim(x, at, "x", "at")
        if detach:
            x, y = x.detach(), None if y is None else y.detach()
        return x, y, at

    def _slices(self, n_rows: int, n_cols: int, like: Tensor):
        return _row_slices(n_rows, n_cols, getattr(self, "chunk_size", None), like)

    def value(self, x, y) -> Tensor:
        r"""Sample estimate :math:`F(\frac1n\sum_i \delta_{x_i})`, shape ``()``."""
        raise NotImplementedError

    def first_variation(self, x, y, at) -> Tensor:
        r""":math:`\frac{\delta F}{\delta\rho}(\rho_n)` at ``at``, shape ``(k,)``, up to a constant."""
        raise NotImplementedError(f"{type(self).__name__} has no first_variation")

    def velocity(self, x, y, at=None) -> Tensor:
        r""":math:`v = -\nabla \frac{\delta F}{\delta\rho}` at ``at`` (default: the particles), detached."""
        x, y, at = self._check(x, y, at)
        if at is None:
            return -wasserstein_gradient(lambda z: self.value(z, y), x)
        z = at.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.first_variation(x.detach(), y, z).sum(), z)
        return -grad.detach()

    def __call__(self, x, y) -> Tensor:
        return self.value(x, y)

    __repr__ = Kernel.__repr__  # Name(field=value, ...) of the _fields


class MMD(Objective):
    r"""Half the squared MMD (V-statistic) and its Wasserstein velocity.

    .. math::

        F(\rho) = \tfrac12 \mathrm{MMD}_k^2(\rho, \nu), \qquad
        \frac{\delta F}{\delta\rho}(z) = E_\rho k(z, x) - E_\nu k(z, y), \qquad
        v(z) = E_\nu \nabla_1 k(z, y) - E_\rho \nabla_1 k(z, x).

    ``kernel``, ``bandwidth`` and ``**kernel_kwargs`` go to :func:`~gwf_tutorial.kernels.get_kernel`; the
    median bandwidth is computed once per call.

    Used in: chapters 3 and 8.
    """

    name = "mmd"
    _fields = ("kernel", "chunk_size")

    def __init__(self, kernel="gaussian", bandwidth=None, *, chunk_size: int | None = None, **kernel_kwargs):
        self.kernel: Kernel = get_kernel(kernel, bandwidth, **kernel_kwargs)
        self.chunk_size = None if chunk_size is None else check_int(chunk_size, "chunk_size")

    def value(self, x, y) -> Tensor:
        x, y, _ = self._check(x, y)
        return 0.5 * mmd2_estimate(self.kernel._resolve(x, y)._gram, x, y, chunk_size=self.chunk_size)

    def first_variation(self, x, y, at) -> Tensor:
        x, y, at = self._check(x, y, at)
        k = self.kernel._resolve(x, y)
        return torch.cat([k._gram(at[sl], x).mean(1) - k._gram(at[sl], y).mean(1)
                          for sl in self._slices(at.shape[0], x.shape[0] + y.shape[0], at)])  # fmt: skip

    def velocity(self, x, y, at=None) -> Tensor:
        x, y, at = self._check(x, y, at, detach=True)
        z = x if at is None else at.detach()
        k = self.kernel._resolve(x, y)
        return torch.cat([k._mean_grad(z[sl], y) - k._mean_grad(z[sl], x)
                          for sl in self._slices(z.shape[0], x.shape[0] + y.shape[0], z)])  # fmt: skip


def kde_bandwidth(x) -> float:
    r"""Silverman's bandwidth :math:`h = \big(\frac{4}{d + 2}\big)^{1/(d+4)} n^{-1/(d+4)}\, \bar\sigma`,
    :math:`\bar\sigma = \frac1d\sum_{k=1}^d \operatorname{std}(x_{\cdot k})`, for a Gaussian kernel density
    estimate of ``x`` (a float, no gradient).

    Used in: :class:`~gwf_tutorial.functionals.KL` (its default bandwidth).
    """
    return _silverman(check_samples(x, "x", min_n=2))


def _silverman(x: Tensor) -> float:
    """:func:`kde_bandwidth` of checked samples (one host sync, for the float)."""
    n, d = x.shape
    sigma = float(x.detach().std(0).mean())
    if not sigma > 0:
        raise ValueError("x has zero spread; pass kde_bandwidth explicitly")
    return (4.0 / (d + 2)) ** (1.0 / (d + 4)) * n ** (-1.0 / (d + 4)) * sigma


class KL(Objective):
    r"""KL divergence to a target with a known score, through a Gaussian kernel density estimate.

    .. math::

        F_h(\rho) = \int \rho \log(\rho * K_h) - \int \rho \log \pi, \qquad K_h = \mathcal N(0, h^2 I),

        v_{\text{kde}}(z) = \nabla\log\pi(z) - \nabla \log(\rho * K_h)(z), \qquad
        v_{\text{blob}} = v_{\text{kde}} - \int \nabla_z K_h(z - x') \frac{\rho(x')}{(\rho * K_h)(x')}\, dx'.

    ``velocity_estimator="blob"`` is the exact Wasserstein gradient of ``value`` (Carrillo, Craig,
    Patacchini 2019), ``"kde"`` the plug-in; both have an ``O(h^2)`` bias. ``target``: a score callable
    ``(k, d) -> (k, d)`` or an object with ``score`` (and ``log_prob``, needed by ``value``).
    ``kde_bandwidth=None`` is :func:`kde_bandwidth` per call. ``y`` is not used.

    Used in: chapter 3.
    """

    name = "kl"
    needs_target_samples = False
    _fields = ("kde_bandwidth", "velocity_estimator", "chunk_size")

    def __init__(self, target, kde_bandwidth: float | None = None, *, log_prob=None,
                 velocity_estimator: str = "blob", chunk_size: int | None = None):  # fmt: skip
        if callable(getattr(target, "score", None)):
            score = target.score
            if log_prob is None and callable(getattr(target, "log_prob", None)):
                log_prob = target.log_prob
        elif callable(target):
            score = target
        else:
            raise TypeError("target must be a score callable or an object with a score method")
        if log_prob is not None and not callable(log_prob):
            raise TypeError("log_prob must be callable")
        self.velocity_estimator = check_choice(velocity_estimator, "velocity_estimator", ("blob", "kde"))
        self.kde_bandwidth = None if kde_bandwidth is None else check_positive(kde_bandwidth, "kde_bandwidth")
        self.score, self.log_prob = score, log_prob
        self.chunk_size = None if chunk_size is None else check_int(chunk_size, "chunk_size")

    def _h(self, x: Tensor) -> float:
        if self.kde_bandwidth is not None:
            return self.kde_bandwidth
        return kde_bandwidth(x) if x.shape[0] < 2 else _silverman(x)  # (the former raises the error)

    def _log_prob(self, z: Tensor) -> Tensor:
        if self.log_prob is None:
            raise ValueError("KL.value needs log_prob (log pi up to a constant); pass log_prob= or a target "
                             "with a log_prob method, or track no value (track_value=False)")  # fmt: skip
        lp = self.log_prob(z)
        if not isinstance(lp, Tensor) or lp.shape != (z.shape[0],):
            raise ValueError(f"log_prob must return shape ({z.shape[0]},)")
        return lp

    def _score(self, z: Tensor) -> Tensor:
        s = self.score(z)
        if not isinstance(s, Tensor) or s.shape != z.shape:
            raise ValueError(f"score must return a tensor of shape {tuple(z.shape)}")
        return s.detach()

    def _lse(self, at: Tensor, x: Tensor, h: float) -> Tensor:
        """``log sum_j exp(-|at_i - x_j|^2 / 2h^2)``, shape ``(k,)``, by row blocks."""
        return torch.cat([torch.logsumexp(-_sqdist(at[sl], x) / (2.0 * h * h), dim=1)
                          for sl in self._slices(at.shape[0], x.shape[0], at)])  # fmt: skip

    def _log_kde(self, at: Tensor, x: Tensor, h: float) -> Tensor:
        r""":math:`\log\hat\rho_h(z) = \log \frac1n\sum_j \mathcal N(z; x_j, h^2 I)` at ``at``, ``(k,)``."""
        norm = math.log(x.shape[0]) + 0.5 * x.shape[1] * math.log(2.0 * math.pi * h * h)
        return self._lse(at, x, h) - norm

    def value(self, x, y=None) -> Tensor:
        x, y, _ = self._check(x, y)
        return self._log_kde(x, x, self._h(x)).mean() - self._log_prob(x).mean()

    def first_variation(self, x, y, at) -> Tensor:
        x, y, at = self._check(x, y, at)
        h, x = self._h(x), x.detach()
        lse_x = self._lse(x, x, h)  # (n,)
        # sum_k K_h(z - x_k) / (n rho_h(x_k)) = sum_k exp(-|z - x_k|^2 / 2h^2 - lse_x[k])
        extra = torch.cat([torch.exp(-_sqdist(at[sl], x) / (2.0 * h * h) - lse_x[None, :]).sum(1)
                           for sl in self._slices(at.shape[0], x.shape[0], at)])  # fmt: skip
        return self._log_kde(at, x, h) + extra - self._log_prob(at)

    def velocity(self, x, y=None, at=None) -> Tensor:
        x, y, at = self._check(x, y, at, detach=True)
        h, blob = self._h(x), self.velocity_estimator == "blob"
        if blob and at is None:
            return self._score(x) - self._blob_drift_at_particles(x, h)
        z = x if at is None else at.detach()
        lse_x = self._lse(x, x, h) if blob else None  # (n,)
        parts = []
        for sl in self._slices(z.shape[0], x.shape[0], z):
            zb = z[sl]
            logits = -_sqdist(zb, x) / (2.0 * h * h)  # (chunk, n)
            weights = torch.softmax(logits, dim=1)
            if blob:
                weights = weights + torch.exp(logits - lse_x[None, :])
            parts.append((weights @ x - weights.sum(1, keepdim=True) * zb) / (h * h))
        return self._score(z) - torch.cat(parts)

    def _blob_drift_at_particles(self, x: Tensor, h: float) -> Tensor:
        r"""Kernel part of the blob velocity at the particles, ``(n, d)``, in two passes: with
        :math:`K_{ij} = e^{-|x_i - x_j|^2/2h^2}` and row sums :math:`s_i`, :math:`\sum_j (w_{ij} +
        u_{ij})(x_j - x_i) = (Kx)_i/s_i + (K\tfrac{x}{s})_i - (1 + (K\tfrac1s)_i) x_i`."""
        d, slices = x.shape[1], self._slices(x.shape[0], x.shape[0], x)

        def gram(sl):  # exponents floored at -80: no subnormal results (slow on x86), error < 1e-34
            return torch.exp((_sqdist(x[sl], x) / (-2.0 * h * h)).clamp_(min=-80.0))

        s = torch.cat([gram(sl).sum(1) for sl in slices])  # (n,)
        rhs = torch.cat([x, x / s[:, None], (1.0 / s)[:, None]], dim=1)  # (n, 2d + 1)
        parts = []
        for sl in slices:
            prod = gram(sl) @ rhs  # (chunk, 2d + 1)
            xb, sb = x[sl], s[sl, None]
            parts.append(prod[:, :d] / sb + prod[:, d : 2 * d] - (1.0 + prod[:, 2 * d :]) * xb)
        return torch.cat(parts) / (h * h)


def _quantiles(sorted_vals: Tensor, levels: Tensor) -> Tensor:
    """Piecewise-linear quantile function of sorted columns ``(m, L)`` at ``levels`` ``(k,)`` (every
    column) or ``(k, L)``; sample ``j`` sits at level ``(j + 1/2) / m``, constant beyond the extremes."""
    m = sorted_vals.shape[0]
    pos = (levels * m - 0.5).clamp(0.0, m - 1.0)
    lo = pos.floor().long().clamp(max=m - 1)
    hi = (lo + 1).clamp(max=m - 1)
    w = pos - lo.to(pos.dtype)
    if levels.ndim == 1:
        return (1.0 - w[:, None]) * sorted_vals[lo] + w[:, None] * sorted_vals[hi]
    return (1 - w) * torch.gather(sorted_vals, 0, lo) + w * torch.gather(sorted_vals, 0, hi)


def _cdf_levels(sorted_vals: Tensor, t: Tensor) -> Tensor:
    """Piecewise-linear CDF levels of sorted columns ``(n, L)`` at points ``t`` ``(k, L)``."""
    n = sorted_vals.shape[0]
    xp, tt = sorted_vals.T.contiguous(), t.T.contiguous()  # (L, n), (L, k)
    idx = torch.searchsorted(xp, tt)  # in [0, n]
    lo, hi = (idx - 1).clamp(0, n - 1), idx.clamp(0, n - 1)
    x_lo, x_hi = torch.gather(xp, 1, lo), torch.gather(xp, 1, hi)
    gap = x_hi - x_lo
    frac = torch.where(gap > 0, (tt - x_lo) / torch.where(gap > 0, gap, 1.0), 0.0).clamp(0, 1)
    return ((lo.to(t.dtype) + frac + 0.5) / n).T  # (k, L)


class _SlicedObjective(Objective):
    """Shared by the sliced objectives: ``L`` directions per call, drawn from ``generator`` or given."""

    _fields = ("n_projections",)

    def __init__(self, n_projections: int = 200, generator: torch.Generator | None = None):
        self.n_projections = check_int(n_projections, "n_projections")
        self.generator = check_generator(generator)

    def sample_projections(self, d: int, *, dtype=None, device=None) -> Tensor:
        r"""``n_projections`` directions :math:`g / |g|`, :math:`g \sim \mathcal N(0, I_d)`, ``(L, d)``."""
        d = check_int(d, "d")
        gen_device = self.generator.device if self.generator is not None else device
        g = torch.randn(self.n_projections, d, generator=self.generator, dtype=dtype, device=gen_device)
        return (g / g.norm(dim=1, keepdim=True)).to(device=device)

    def _projections(self, x: Tensor, projections) -> Tensor:
        if projections is None:
            return self.sample_projections(x.shape[1], dtype=x.dtype, device=x.device)
        theta = check_samples(projections, "projections", dim=x.shape[1])
        norms = theta.norm(dim=1)
        if not bool(torch.allclose(norms, torch.ones_like(norms), atol=1e-5)):
            raise ValueError("projections must have unit-norm rows")
        return theta.to(dtype=x.dtype, device=x.device)


class SlicedWasserstein(_SlicedObjective):
    r"""Half the squared sliced-Wasserstein distance and its velocity, by sorting projections: :math:`F(\rho)
    = \tfrac12 \int_{S^{d-1}} W_2^2(\theta_\#\rho, \theta_\#\nu)\, d\sigma(\theta)`, :math:`v(z) =
    E_\theta\big[(T_\theta(\theta^\top z) - \theta^\top z)\,\theta\big]` with :math:`T_\theta =
    Q_{\theta_\#\nu} \circ F_{\theta_\#\rho}`, ``L = n_projections`` directions drawn at each call (or passed
    to ``value`` and ``velocity`` as ``projections``, ``(L, d)``); the target quantiles are interpolated at
    the levels ``(i + 1/2)/n``.

    Used in: chapters 3 and 8.
    """

    name = "sliced_wasserstein"

    def value(self, x, y, projections=None) -> Tensor:
        x, y, _ = self._check(x, y)
        theta, n = self._projections(x, projections), x.shape[0]
        px, py = torch.sort(x @ theta.T, dim=0).values, torch.sort(y @ theta.T, dim=0).values  # (n|m, L)
        levels = (torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n
        return 0.5 * (px - _quantiles(py, levels)).pow(2).mean()

    def velocity(self, x, y, at=None, projections=None) -> Tensor:
        x, y, at = self._check(x, y, at, detach=True)
        theta, n = self._projections(x, projections), x.shape[0]
        px = x @ theta.T  # (n, L)
        py = torch.sort(y @ theta.T, dim=0).values
        if at is None:
            order = torch.sort(px, dim=0).indices
            levels = (torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n
            q_sorted = _quantiles(py, levels)  # (n, L) in sorted order
            disp = torch.empty_like(px).scatter_(0, order, q_sorted) - px
        else:
            pz = at.detach() @ theta.T  # (k, L)
            disp = _quantiles(py, _cdf_levels(torch.sort(px, dim=0).values, pz)) - pz
        return disp @ theta / theta.shape[0]


def slicing_constant(d: int) -> float:
    r"""The constant :math:`c_d = \sqrt\pi\,\Gamma(\frac{d+1}{2}) / \Gamma(\frac d2)` that turns a mean of
    projected distances into the Euclidean distance:
    :math:`|u| = c_d\, E_{\theta\sim U(S^{d-1})}\,|\theta^\top u|`.

    Used in: :class:`~gwf_tutorial.functionals.SlicedEnergyMMD`.
    """
    d = check_int(d, "d")
    return math.exp(0.5 * math.log(math.pi) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2))


def _pair_sum(sorted_vals: Tensor) -> Tensor:
    r"""``sum_{i<j} |s_i - s_j|`` of each sorted column, ``sum_k s_(k) (2k - N + 1)``, shape ``(L,)``."""
    n = sorted_vals.shape[0]
    w = 2.0 * torch.arange(n, dtype=sorted_vals.dtype, device=sorted_vals.device) - (n - 1)
    return w @ sorted_vals


def _sign_sums(sorted_cols: Tensor, points: Tensor) -> Tensor:
    r"""``#{s_j < p} - #{s_j > p}`` over each sorted column ``(N, L)`` at points ``(k, L)``, ``(k, L)``."""
    cols, pts = sorted_cols.T.contiguous(), points.T.contiguous()  # (L, N), (L, k)
    below, not_above = torch.searchsorted(cols, pts, side="left"), torch.searchsorted(cols, pts, side="right")
    return (below + not_above - cols.shape[1]).T.to(points.dtype)


class SlicedEnergyMMD(_SlicedObjective):
    r"""Half the squared MMD with the energy kernel :math:`-|x-y|`, by slicing and sorting: :math:`F(\rho) =
    c_d\, E_\theta\, F_1(\theta_\#\rho, \theta_\#\nu)`, :math:`v(z) = c_d\,
    E_\theta\big[\big(E_\rho\operatorname{sign}(\theta^\top(z - X)) - E_\nu\operatorname{sign}(\theta^\top(z -
    Y))\big)\,\theta\big]`, with :math:`c_d` of :func:`slicing_constant`: the objective of ``MMD("energy")``
    in :math:`O(L (n + m)\log(n + m))` time. ``directions``: ``"grid"`` (2-D: ``L`` angles with one random
    offset), ``"random"``, or ``"auto"`` (grid in 2-D).

    Used in: the solvers appendix; ``benchmarks/particle_flows.py``.
    """

    name = "sliced_energy"
    _fields = ("n_projections", "directions")

    def __init__(self, n_projections: int = 64, generator: torch.Generator | None = None, directions="auto"):
        super().__init__(n_projections, generator)
        self.directions = check_choice(directions, "directions", ("auto", "grid", "random"))

    def sample_projections(self, d: int, *, dtype=None, device=None) -> Tensor:
        r"""Directions ``(L, d)``: :math:`(\cos\alpha_l, \sin\alpha_l)`, :math:`\alpha_l = (l + u)\pi / L`,
        or uniform random directions."""
        d = check_int(d, "d")
        if self.directions == "grid" and d != 2:
            raise ValueError(f"directions='grid' needs d == 2, got d = {d}")
        if d != 2 or self.directions == "random":
            return super().sample_projections(d, dtype=dtype, device=device)
        gen_device = self.generator.device if self.generator is not None else device
        L = self.n_projections
        u = torch.rand((), generator=self.generator, device=gen_device, dtype=torch.float64)
        alpha = (torch.arange(L, dtype=torch.float64, device=gen_device) + u) * (math.pi / L)
        return torch.stack([alpha.cos(), alpha.sin()], dim=1).to(dtype=dtype, device=device)

    def value(self, x, y, projections=None) -> Tensor:
        x, y, _ = self._check(x, y)
        theta = self._projections(x, projections).double()
        n, m = x.shape[0], y.shape[0]
        px, py = x.double() @ theta.T, y.double() @ theta.T  # (n, L), (m, L)
        wx, wy = _pair_sum(torch.sort(px, dim=0).values), _pair_sum(torch.sort(py, dim=0).values)
        wu = _pair_sum(torch.sort(torch.cat([px, py]), dim=0).values)
        per_dir = (wu - wx - wy) / (n * m) - wx / n**2 - wy / m**2
        return (slicing_constant(x.shape[1]) * per_dir.mean()).to(x.dtype)

    def velocity(self, x, y, at=None, projections=None) -> Tensor:
        x, y, at = self._check(x, y, at, detach=True)
        theta = self._projections(x, projections)
        n, m = x.shape[0], y.shape[0]
        if at is None:  # one sort of the union; the counts below each particle are running sums
            u = (torch.cat([x, y]) @ theta.T).T.contiguous()  # (L, n + m)
            order = torch.sort(u, dim=1).indices
            is_x = (order < n).to(x.dtype)
            below_x, below_y = is_x.cumsum(1) - is_x, (1.0 - is_x).cumsum(1) - (1.0 - is_x)
            coef_sorted = (2.0 * below_x - (n - 1)) / n - (2.0 * below_y - m) / m  # at the x entries
            coef = torch.empty_like(coef_sorted).scatter_(1, order, coef_sorted)[:, :n].T  # (n, L)
        else:
            pz = at.detach() @ theta.T  # (k, L)
            px, py = torch.sort(x @ theta.T, dim=0).values, torch.sort(y @ theta.T, dim=0).values
            coef = _sign_sums(px, pz) / n - _sign_sums(py, pz) / m  # (k, L)
        return slicing_constant(x.shape[1]) * (coef @ theta) / theta.shape[0]


_SINKHORN_SOLVERS = ("dense", "lazy", "geomloss", "auto")
# GeomLoss's dense ("tensorized") backend up to this many cost-matrix entries; KeOps above it.
_GEOMLOSS_TENSORIZED_MAX_ENTRIES = 5000**2


def _import_geomloss():
    try:
        import geomloss
    except ImportError as err:
        what = "solver='geomloss' needs the optional package geomloss (and, on a GPU, pykeops)"
        raise ImportError(f"{what}: pip install 'gwf-tutorial[gpu]' or pip install geomloss pykeops") from err
    return geomloss


class SinkhornDivergence(Objective):
    r"""Debiased Sinkhorn divergence with cost :math:`\frac12|x-y|^2` and its velocity.

    .. math::

        S_\varepsilon(\rho, \nu) = \mathrm{OT}_\varepsilon(\rho, \nu)
        - \tfrac12 \mathrm{OT}_\varepsilon(\rho, \rho) - \tfrac12 \mathrm{OT}_\varepsilon(\nu, \nu), \qquad
        v(x_i) = \frac{\sum_j P_{ij} y_j}{\sum_j P_{ij}} - \frac{\sum_j Q_{ij} x_j}{\sum_j Q_{ij}},

    with :math:`\mathrm{OT}_\varepsilon = \min_\pi \int \tfrac12|x - y|^2 d\pi + \varepsilon
    \mathrm{KL}(\pi \| \alpha\otimes\beta)` and :math:`P`, :math:`Q` the plans of :math:`(\rho_n, \nu_m)`
    and :math:`(\rho_n, \rho_n)`; values carry the envelope gradient. ``eps`` is in units of the cost;
    ``max_iter``, ``tol`` (raised to ``10 * finfo(dtype).eps``) are POT's; ``warm_start`` starts from the
    previous call's potentials. ``solver``: ``"dense"`` (POT's log-domain Sinkhorn), ``"lazy"`` (POT's
    online solver, memory linear in the points), ``"geomloss"`` (``SamplesLoss("sinkhorn")`` with
    eps-scaling ratio ``scaling``, extra ``gwf-tutorial[gpu]``) or ``"auto"`` (GeomLoss on CUDA when
    installed and no warm start, else dense). Away from the particles the velocity uses the entropic
    extension :math:`P(j \mid z) \propto v_j e^{-|z-y_j|^2/2\varepsilon}`.

    Used in: chapters 3 and 8; ``benchmarks/particle_flows.py``.
    """

    name = "sinkhorn"
    _fields = ("eps", "debiased", "max_iter", "tol", "warm_start", "solver", "chunk_size", "scaling")

    def __init__(self, eps: float = 0.1, *, debiased: bool = True, max_iter: int = 1000, tol: float = 1e-9,
                 warm_start: bool = False, solver: str = "dense", chunk_size: int | None = None,
                 scaling: float = 0.99):  # fmt: skip
        self.eps, self.max_iter = check_positive(eps, "eps"), check_int(max_iter, "max_iter")
        self.tol = check_positive(tol, "tol")
        self.debiased, self.warm_start = bool(debiased), bool(warm_start)
        self.solver = check_choice(solver, "solver", _SINKHORN_SOLVERS)
        if solver == "geomloss":
            _import_geomloss()  # fail now, with the install hint, not at the first call
            if self.warm_start:
                raise ValueError("warm_start=True is not available with solver='geomloss' (eps-scaling)")
        self.chunk_size = None if chunk_size is None else check_int(chunk_size, "chunk_size")
        self.scaling = check_interval(scaling, "scaling")
        self._potentials: dict[str, tuple[Tensor, Tensor]] = {}

    def _tol(self, like: Tensor) -> float:
        return max(self.tol, 10.0 * torch.finfo(like.dtype).eps)

    @staticmethod
    def _uniform(n: int, like: Tensor) -> Tensor:
        return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)

    def _solver_for(self, like: Tensor) -> str:
        """The solver of this call (``"auto"`` resolved)."""
        if self.solver != "auto":
            return self.solver
        if like.is_cuda and not self.warm_start and find_spec("geomloss") is not None:
            return "geomloss"
        return "dense"

    def _samples_loss(self, a: Tensor, b: Tensor, *, debias: bool, potentials: bool = False):
        r"""GeomLoss's ``SamplesLoss("sinkhorn", p=2, blur=sqrt(eps))`` on ``(a, b)``; KeOps' online backend
        on CUDA for large problems when pykeops is installed."""
        geomloss = _import_geomloss()
        large = a.shape[0] * b.shape[0] > _GEOMLOSS_TENSORIZED_MAX_ENTRIES
        online = a.is_cuda and large and find_spec("pykeops") is not None
        loss = geomloss.SamplesLoss("sinkhorn", p=2, blur=math.sqrt(self.eps), scaling=self.scaling,
                                    debias=debias, potentials=potentials,
                                    backend="online" if online else "tensorized")  # fmt: skip
        return loss(a, b)

    def _ot(self, a: Tensor, b: Tensor) -> Tensor:
        if self._solver_for(a) == "lazy":
            return self._ot_lazy(a, b)
        M = 0.5 * _sqdist(a, b)
        return ot.solve(M, self._uniform(a.shape[0], a), self._uniform(b.shape[0], b), reg=self.eps,
                        reg_type="KL", method="sinkhorn_log", max_iter=self.max_iter, tol=self._tol(M),
                        grad="envelope").value  # fmt: skip

    def _ot_lazy(self, a: Tensor, b: Tensor) -> Tensor:
        r"""Primal entropic cost :math:`\langle P, C\rangle + \varepsilon\,\mathrm{KL}(P \,\|\, a
        \otimes b)` of the lazy solver's plan, by row blocks, with the envelope gradient attached."""
        ad, bd = a.detach(), b.detach()
        log_u, log_v = self._log_scalings(ad, bd)
        n, m = ad.shape[0], bd.shape[0]
        log_ab, total = -math.log(n) - math.log(m), ad.new_zeros((), dtype=torch.float64)
        grad_a, col_mass, pt_a = [], ad.new_zeros(m), ad.new_zeros(bd.shape)
        for sl in self._slices(n, m, ad):
            cost = 0.5 * _sqdist(ad[sl], bd)  # (chunk, m)
            log_p = log_u[sl, None] + log_v[None, :] - cost / self.eps
            p = torch.exp(log_p)
            # P (C + eps (log P - log ab - 1)), plus eps a b (the mass term of the generalised KL)
            total = total + (p * (cost + self.eps * (log_p - log_ab - 1.0))).sum().double()
            grad_a.append(p.sum(1, keepdim=True) * ad[sl] - p @ bd)  # sum_j P_ij (a_i - b_j)
            col_mass, pt_a = col_mass + p.sum(0), pt_a + p.T @ ad[sl]
        value = (total + self.eps).to(ad.dtype)
        grad_b = col_mass[:, None] * bd - pt_a  # sum_i P_ij (b_j - a_i)
        # value + <a - a.detach(), grad_a> + <b - b.detach(), grad_b>: the value, with the gradient
        return value + ((a - ad) * torch.cat(grad_a)).sum() + ((b - bd) * grad_b).sum()

    def _log_scalings(self, a: Tensor, b: Tensor, tag: str | None = None) -> tuple[Tensor, Tensor]:
        """Logs of the Sinkhorn scalings ``(u, v)``, ``(n,)`` and ``(m,)``; warm-started from the previous
        call with ``tag``."""
        init = None
        if self.warm_start and tag in self._potentials:
            lu, lv = self._potentials[tag]
            if lu.shape == (a.shape[0],) and lv.shape == (b.shape[0],) and lu.dtype == a.dtype:
                init = (lu.to(a.device), lv.to(a.device))
        wa, wb = self._uniform(a.shape[0], a), self._uniform(b.shape[0], b)
        tol, solver = self._tol(a), self._solver_for(a)
        if solver == "geomloss":
            # dual potentials f, g of P_ij = a_i b_j exp((f_i + g_j - C_ij) / eps): u = a e^{f/eps}
            f, g = self._samples_loss(a, b, debias=False, potentials=True)
            log_u = f.reshape(-1) / self.eps - math.log(a.shape[0])
            log_v = g.reshape(-1) / self.eps - math.log(b.shape[0])
        elif solver == "lazy":
            rows = self._slices(b.shape[0], a.shape[0], a)[0].stop
            cols = self._slices(a.shape[0], b.shape[0], a)[0].stop
            # The transposed problem (b first): POT's online solver then updates in the dense solver's
            # order (v from u, then u). Metric "sqeuclidean" with reg 2 eps gives |x - y|^2 / 2 eps.
            log_v, log_u = ot.bregman.empirical_sinkhorn(b, a, 2.0 * self.eps, wb, wa, metric="sqeuclidean",
                                                         numIterMax=self.max_iter, stopThr=tol, isLazy=True,
                                                         batchSize=(rows, cols),
                                                         warmstart=None if init is None else init[::-1])
        else:
            _, log = ot.sinkhorn(wa, wb, 0.5 * _sqdist(a, b), self.eps, method="sinkhorn_log",
                                 numItermax=self.max_iter, stopThr=tol, log=True, warmstart=init)  # fmt: skip
            log_u, log_v = log["log_u"], log["log_v"]
        if self.warm_start and tag is not None:
            self._potentials[tag] = (log_u.detach(), log_v.detach())
        return log_u, log_v

    def value(self, x, y) -> Tensor:
        x, y, _ = self._check(x, y)
        if self._solver_for(x) == "geomloss":
            return self._samples_loss(x, y, debias=self.debiased)
        val = self._ot(x, y)
        if self.debiased:
            val = val - 0.5 * self._ot(x, x) - 0.5 * self._ot(y.detach(), y.detach())
        return val

    def _entropic(self, z: Tensor, b: Tensor, log_v: Tensor, *, mean: bool = False) -> Tensor:
        r"""By row blocks of ``z``, with :math:`\ell_j = \log v_j - |z - b_j|^2/2\varepsilon`: the potential
        :math:`-\varepsilon\log\sum_j e^{\ell_j}` ``(k,)``, or (``mean``) the conditional mean
        :math:`\sum_j \mathrm{softmax}_j(\ell)\,b_j` ``(k, d)``."""
        parts = []
        for sl in self._slices(z.shape[0], b.shape[0], z):
            lg = log_v[None, :] - 0.5 * _sqdist(z[sl], b) / self.eps
            parts.append(torch.softmax(lg, dim=1) @ b if mean else -self.eps * torch.logsumexp(lg, dim=1))
        return torch.cat(parts)

    def first_variation(self, x, y, at) -> Tensor:
        x, y, at = self._check(x, y, at, detach=True)
        f = self._entropic(at, y, self._log_scalings(x, y, "xy")[1])
        return f - self._entropic(at, x, self._log_scalings(x, x, "xx")[1]) if self.debiased else f

    def velocity(self, x, y, at=None) -> Tensor:
        x, y, at = self._check(x, y, at, detach=True)
        z = x if at is None else at.detach()
        v = self._entropic(z, y, self._log_scalings(x, y, "xy")[1], mean=True)
        if self.debiased:
            return v - self._entropic(z, x, self._log_scalings(x, x, "xx")[1], mean=True)
        return v - z


_OBJECTIVES = {"mmd": MMD, "kl": KL, "sw": SlicedWasserstein, "sliced": SlicedWasserstein,
               "sliced_wasserstein": SlicedWasserstein, "sliced_energy": SlicedEnergyMMD,
               "sinkhorn": SinkhornDivergence}  # fmt: skip


def get_objective(name, **kwargs) -> Objective:
    """An objective by name (``"mmd"``, ``"energy"``: MMD with the energy kernel, ``"kl"``, ``"sw"``/
    ``"sliced"``/``"sliced_wasserstein"``, ``"sliced_energy"``, ``"sinkhorn"``; ``**kwargs`` go to the
    constructor), or an :class:`Objective` passed through.

    Used in: chapter 3; :func:`~gwf_tutorial.flows.particle_flow`.
    """
    if isinstance(name, Objective):
        if kwargs:
            raise TypeError("kwargs cannot be combined with an Objective instance")
        return name
    if not isinstance(name, str):
        raise TypeError(f"objective must be a name or an Objective, got {type(name).__name__}")
    key = name.lower()
    if key == "energy":
        return MMD(kernel="energy", **kwargs)
    if key not in _OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose from {sorted(_OBJECTIVES)}")
    return _OBJECTIVES[key](**kwargs)
