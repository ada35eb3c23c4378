r"""Radial kernels for MMD, energy distances and kernel density estimates.

Every kernel is radial, :math:`k(x, y) = \phi(|x - y|^2)`, with :math:`\nabla_1 k(x, y) = 2\phi'(|x -
y|^2)\,(x - y)`. A kernel gives the Gram matrix ``k(x, y)``, the gradient weights
:math:`G_{ij} = 2\phi'(|x_i - y_j|^2)` and the mean gradient :math:`\frac1m\sum_j \nabla_1 k(x_i, y_j)`,
all in ``O(n m)`` memory.

Conventions: ``x`` has shape ``(n, d)``, ``y`` shape ``(m, d)``; results keep the dtype of ``x`` and are
differentiable in both. ``bandwidth=None`` means the median heuristic at call time, on the pooled sample
and detached; an objective that evaluates several Gram matrices (MMD needs ``k(x, x)``, ``k(x, y)``,
``k(y, y)``) calls :meth:`Kernel.resolve` once and uses the returned kernel for all of them.

Used in: :mod:`gwf_tutorial.functionals` (MMD flows, chapters 3 and 8) and :mod:`gwf_tutorial.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gwf_tutorial._validation import check_int, check_positive, check_same_dim, check_samples

__all__ = [
    "Kernel",
    "GaussianKernel",
    "IMQKernel",
    "LaplaceKernel",
    "EnergyKernel",
    "MultiBandwidthKernel",
    "get_kernel",
    "median_bandwidth",
    "squared_distances",
]

# Above this many entries of the (n, m, d) difference tensor (or, in low dimension, of the (n, m)
# matrix), squared distances are computed with the expansion |x|^2 + |y|^2 - 2 x.y (O(n m) memory,
# less accurate for far-off points) instead of the exact differences.
_DIFF_MAX_ELEMENTS = 2**24
# Up to this dimension the exact differences are accumulated one coordinate at a time: O(n m)
# memory and about 10x faster than the (n, m, d) broadcast (a reduction over a tiny last axis).
_COORD_LOOP_MAX_DIM = 8


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    r"""Matrix of squared Euclidean distances :math:`D_{ij} = |x_i - y_j|^2`, shape ``(n, m)``.

    Exact differences for ``d <= 8`` (where the expansion's cancellation would show on the toys), else the
    expansion :math:`|x_i|^2 + |y_j|^2 - 2 x_i^\top y_j` clamped at 0 (one matrix product).

    Used in: :func:`~gwf_tutorial.metrics.w2_squared`.
    """
    x = check_samples(x, "x")
    y = check_samples(y, "y")
    check_same_dim(x, y)
    return _sqdist(x, y)


def _sqdist(x: Tensor, y: Tensor) -> Tensor:
    """:func:`squared_distances` without input checks (for inner loops; inputs checked by the caller).

    On CUDA the exact differences are used for ``d <= 8`` at any size (memory-bound element-wise
    passes, as fast as the expansion there, and a whole ``(n, m)`` block is one call).
    """
    n, d = x.shape
    m = y.shape[0]
    if d <= _COORD_LOOP_MAX_DIM and (n * m <= _DIFF_MAX_ELEMENTS or x.is_cuda):
        out = (x[:, 0, None] - y[None, :, 0]).square()
        for k in range(1, d):
            out = out + (x[:, k, None] - y[None, :, k]).square()
        return out
    xx = x.pow(2).sum(-1, keepdim=True)
    yy = y.pow(2).sum(-1, keepdim=True)
    return (xx + yy.T - 2.0 * (x @ y.T)).clamp_min(0.0)


def _safe_pow(q: Tensor, p: float) -> Tensor:
    """``q ** p`` for ``q >= 0``, value and gradient 0 where ``q == 0`` (no NaN, ``p > 0``)."""
    pos = q > 0
    q_safe = torch.where(pos, q, torch.ones_like(q))
    return torch.where(pos, q_safe.pow(p), torch.zeros_like(q))


def median_bandwidth(x, y=None, *, max_points: int = 1000) -> float:
    r"""Median heuristic :math:`s = \operatorname{median}\{|z_i - z_j| : i < j\}` on :math:`z = x \cup y`,
    as a float, without gradient; on an evenly spaced subsample of ``max_points`` rows for larger samples.
    Raises ``ValueError`` when the median distance is 0.

    Used in: chapters 3, 5 and 9.

    References
    ----------
    Gretton et al., "A kernel two-sample test", JMLR 2012 (Section 8).
    """
    x = check_samples(x, "x")
    z = x
    if y is not None:
        y = check_samples(y, "y")
        check_same_dim(x, y)
        z = torch.cat([x, y], dim=0)
    max_points = check_int(max_points, "max_points", min_value=2)
    return _median_distance(z, max_points)


def _median_distance(z: Tensor, max_points: int = 1000) -> float:
    """:func:`median_bandwidth` of the pooled sample ``z`` without input checks (one host sync)."""
    z = z.detach()
    if z.shape[0] < 2:
        raise ValueError("median_bandwidth needs at least 2 points in the pooled sample")
    if z.shape[0] > max_points:
        idx = torch.linspace(0, z.shape[0] - 1, max_points, device=z.device).round().long()
        z = z[idx]
    dist = torch.pdist(z)
    med = float(torch.quantile(dist, 0.5))
    if not med > 0:
        raise ValueError("median pairwise distance is 0 (all points coincide); pass a bandwidth explicitly")
    return med


def _pooled(x: Tensor, y: Tensor | None) -> Tensor:
    return x if y is None else torch.cat([x, y], dim=0)


class Kernel:
    r"""Base class of radial kernels :math:`k(x, y) = \phi(|x - y|^2)`.

    Subclasses implement ``_phi(q, bandwidth)`` and ``_dphi(q, bandwidth)``; ``bandwidth`` is a positive
    length scale or None (median heuristic).

    Used in: :class:`~gwf_tutorial.functionals.MMD`.
    """

    name = "kernel"
    uses_bandwidth = True

    def __init__(self, bandwidth: float | None = None):
        if bandwidth is not None:
            bandwidth = check_positive(bandwidth, "bandwidth")
        self.bandwidth = bandwidth

    # -- subclass hooks ---------------------------------------------------------------------------
    def _phi(self, q: Tensor, bandwidth: float | None) -> Tensor:
        raise NotImplementedError

    def _dphi(self, q: Tensor, bandwidth: float | None) -> Tensor:
        raise NotImplementedError

    def _with_bandwidth(self, bandwidth: float) -> Kernel:
        raise NotImplementedError

    # -- public API -------------------------------------------------------------------------------
    def _check(self, x, y) -> tuple[Tensor, Tensor]:
        x = check_samples(x, "x")
        y = check_samples(y, "y")
        check_same_dim(x, y)
        return x, y

    def resolve(self, x, y=None) -> Kernel:
        """``self`` if the bandwidth is fixed (or unused), else a copy with the median bandwidth of ``x`` and
        ``y``.
        """
        if not self.uses_bandwidth or self.bandwidth is not None:
            return self
        return self._with_bandwidth(median_bandwidth(x, y))

    # -- unchecked inner versions (inputs checked once by the public caller) ----------------------
    def _resolve(self, x: Tensor, y: Tensor | None = None) -> Kernel:
        """:meth:`resolve` without input checks."""
        if not self.uses_bandwidth or self.bandwidth is not None:
            return self
        return self._with_bandwidth(_median_distance(_pooled(x, y)))

    def _gram(self, x: Tensor, y: Tensor) -> Tensor:
        """Gram matrix of a resolved kernel, no checks, shape ``(n, m)``."""
        return self._phi(_sqdist(x, y), self.bandwidth)

    def _grad_weights(self, x: Tensor, y: Tensor) -> Tensor:
        """Gradient weights ``2 phi'`` of a resolved kernel, no checks, shape ``(n, m)``."""
        return 2.0 * self._dphi(_sqdist(x, y), self.bandwidth)

    def _mean_grad(self, x: Tensor, y: Tensor) -> Tensor:
        """:meth:`mean_grad` of a resolved kernel, no checks, shape ``(n, d)``."""
        G = self._grad_weights(x, y)
        return (G.sum(1, keepdim=True) * x - G @ y) / y.shape[0]

    def __call__(self, x, y) -> Tensor:
        """Gram matrix :math:`K_{ij} = k(x_i, y_j)`, shape ``(n, m)``."""
        x, y = self._check(x, y)
        return self._resolve(x, y)._gram(x, y)

    def grad_weights(self, x, y) -> Tensor:
        r"""Gradient weights :math:`G_{ij} = 2\phi'(|x_i - y_j|^2)`, shape ``(n, m)``, so that
        :math:`\nabla_1 k(x_i, y_j) = G_{ij}(x_i - y_j)`; 0 at ``x_i == y_j`` for the non-smooth kernels.
        """
        x, y = self._check(x, y)
        return self._resolve(x, y)._grad_weights(x, y)

    def mean_grad(self, x, y) -> Tensor:
        r"""Mean first-argument gradient :math:`\frac1m \sum_j \nabla_1 k(x_i, y_j)`, shape ``(n, d)``."""
        x, y = self._check(x, y)
        return self._resolve(x, y)._mean_grad(x, y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bandwidth={self.bandwidth!r})"


class GaussianKernel(Kernel):
    r"""Gaussian (RBF) kernel :math:`k(x, y) = \exp(-|x - y|^2 / (2 s^2))`.

    Used in: ``kernels._NAMES`` (``"gaussian"``, ``"rbf"``).

    References
    ----------
    Arbel, Korba, Salim, Gretton, "Maximum Mean Discrepancy Gradient Flow", NeurIPS 2019.
    """

    name = "gaussian"

    def _phi(self, q, s):
        return torch.exp(-q / (2.0 * s * s))

    def _dphi(self, q, s):
        c = -0.5 / (s * s)
        return torch.exp(q * c) * c

    def _with_bandwidth(self, bandwidth):
        return GaussianKernel(bandwidth)


class IMQKernel(Kernel):
    r"""Inverse multiquadric kernel :math:`k(x, y) = (1 + |x - y|^2/s^2)^{\beta}`, ``beta < 0`` (default
    -1/2):
    its gradient decays polynomially with distance.

    Used in: ``kernels._NAMES`` (``"imq"``).

    References
    ----------
    Gorham and Mackey, "Measuring sample quality with kernels", ICML 2017.
    """

    name = "imq"

    def __init__(self, bandwidth: float | None = None, beta: float = -0.5):
        super().__init__(bandwidth)
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not math.isfinite(beta):
            raise TypeError(f"beta must be a finite real number, got {beta!r}")
        if not beta < 0:
            raise ValueError(f"beta must be negative, got {beta}")
        self.beta = float(beta)

    def _phi(self, q, s):
        return (1.0 + q / (s * s)).pow(self.beta)

    def _dphi(self, q, s):
        return self.beta / (s * s) * (1.0 + q / (s * s)).pow(self.beta - 1.0)

    def _with_bandwidth(self, bandwidth):
        return IMQKernel(bandwidth, beta=self.beta)

    def __repr__(self) -> str:
        return f"IMQKernel(bandwidth={self.bandwidth!r}, beta={self.beta!r})"


class LaplaceKernel(Kernel):
    r"""Laplace kernel :math:`k(x, y) = \exp(-|x - y| / s)`, gradient 0 at ``x == y``.

    Used in: ``kernels._NAMES`` (``"laplace"``).

    References
    ----------
    Deng et al., "Generative Modeling via Drifting", 2026 (the drift field's kernel).
    """

    name = "laplace"

    def _phi(self, q, s):
        return torch.exp(-_safe_pow(q, 0.5) / s)

    def _dphi(self, q, s):
        r = _safe_pow(q, 0.5)
        pos = r > 0
        r_safe = torch.where(pos, r, torch.ones_like(r))
        return torch.where(pos, -torch.exp(-r / s) / (2.0 * s * r_safe), torch.zeros_like(r))

    def _with_bandwidth(self, bandwidth):
        return LaplaceKernel(bandwidth)


class EnergyKernel(Kernel):
    r"""Energy-distance (Riesz) kernel, conditionally positive definite, without bandwidth.

    .. math::

        k(x, y) = -|x - y|^{r}, \quad r \in (0, 2),

    gradient 0 at ``x == y``. With ``r = 1`` (``exponent``), :math:`\tfrac12\mathrm{MMD}_k^2` is half the
    energy distance; the gradient does not decay with distance, so MMD flows with it do not stall.

    Used in: ``kernels._NAMES`` (``"energy"``, ``"distance"``, ``"riesz"``).

    References
    ----------
    Székely and Rizzo, "Energy statistics", 2013; Hertrich et al., "Generative sliced MMD flows with Riesz
    kernels", ICLR 2024.
    """

    name = "energy"
    uses_bandwidth = False

    def __init__(self, exponent: float = 1.0):
        super().__init__(None)
        r = check_positive(exponent, "exponent")
        if not r < 2:
            raise ValueError(f"exponent must lie in (0, 2), got {r}")
        self.exponent = r

    def _phi(self, q, s):
        return -_safe_pow(q, self.exponent / 2.0)

    def _dphi(self, q, s):
        # p - 1 < 0, so inf ** (p - 1) = 0: the weight is 0 at q == 0, in three element-wise passes
        p = self.exponent / 2.0
        return torch.where(q > 0, q, math.inf).pow(p - 1.0) * (-p)

    def __repr__(self) -> str:
        return f"EnergyKernel(exponent={self.exponent!r})"


_BASES = {"gaussian": GaussianKernel, "imq": IMQKernel, "laplace": LaplaceKernel}


class MultiBandwidthKernel(Kernel):
    r"""Mean (or sum, ``reduction``) of one ``base`` kernel at several bandwidths.

    .. math::

        k(x, y) = \frac{1}{c} \sum_{l=1}^{L} k_{s_l}(x, y), \qquad c = L \text{ (mean) or } 1 \text{ (sum)},

    with ``bandwidths`` :math:`s_l`, or ``factors`` times the median heuristic when None.

    Used in: :func:`~gwf_tutorial.kernels.get_kernel` (``"multi"`` or a sequence of bandwidths).

    References
    ----------
    Li et al., "MMD GAN: towards deeper understanding of moment matching network", NeurIPS 2017.
    """

    name = "multi"

    def __init__(
        self,
        base: str = "gaussian",
        bandwidths: Sequence[float] | None = None,
        *,
        factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
        reduction: str = "mean",
    ):
        if not isinstance(base, str) or base.lower() not in _BASES:
            raise ValueError(f"base must be one of {sorted(_BASES)}, got {base!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.base = base.lower()
        self.reduction = reduction
        if bandwidths is not None:
            if isinstance(bandwidths, str) or not isinstance(bandwidths, Sequence | Tensor):
                raise TypeError(f"bandwidths must be a sequence of numbers, got {bandwidths!r}")
            if len(bandwidths) == 0:
                raise ValueError("bandwidths must not be empty")
            bandwidths = tuple(check_positive(b, "bandwidths") for b in bandwidths)
        if isinstance(factors, str) or len(factors) == 0:
            raise ValueError(f"factors must be a non-empty sequence of numbers, got {factors!r}")
        self.factors = tuple(check_positive(f, "factors") for f in factors)
        self.bandwidths = bandwidths
        self.bandwidth = None  # several bandwidths: see ``bandwidths``

    @property
    def kernels(self) -> list[Kernel]:
        """The base kernels at each fixed bandwidth (requires fixed bandwidths)."""
        if self.bandwidths is None:
            raise ValueError("bandwidths are not fixed yet; call resolve(x, y) first")
        return [_BASES[self.base](b) for b in self.bandwidths]

    def resolve(self, x, y=None) -> Kernel:
        """A copy with fixed bandwidths (``factors`` x median heuristic if not given)."""
        if self.bandwidths is not None:
            return self
        return self._with_median(median_bandwidth(x, y))

    def _resolve(self, x: Tensor, y: Tensor | None = None) -> Kernel:
        if self.bandwidths is not None:
            return self
        return self._with_median(_median_distance(_pooled(x, y)))

    def _with_median(self, med: float) -> MultiBandwidthKernel:
        return MultiBandwidthKernel(self.base, [f * med for f in self.factors], reduction=self.reduction)

    def _combine(self, parts: list[Tensor]) -> Tensor:
        total = torch.stack(parts).sum(0)
        return total / len(parts) if self.reduction == "mean" else total

    def _gram(self, x: Tensor, y: Tensor) -> Tensor:
        q = _sqdist(x, y)
        return self._combine([kk._phi(q, kk.bandwidth) for kk in self.kernels])

    def _grad_weights(self, x: Tensor, y: Tensor) -> Tensor:
        q = _sqdist(x, y)
        return self._combine([2.0 * kk._dphi(q, kk.bandwidth) for kk in self.kernels])

    def __repr__(self) -> str:
        return (
            f"MultiBandwidthKernel(base={self.base!r}, bandwidths={self.bandwidths!r}, "
            f"reduction={self.reduction!r})"
        )


_NAMES = {
    "gaussian": GaussianKernel,
    "rbf": GaussianKernel,
    "imq": IMQKernel,
    "laplace": LaplaceKernel,
    "energy": EnergyKernel,
    "distance": EnergyKernel,
    "riesz": EnergyKernel,
}


def get_kernel(name_or_kernel, bandwidth=None, **kwargs) -> Kernel:
    """Build a kernel from its name, or pass a :class:`Kernel` through unchanged.

    Names: ``"gaussian"`` (``"rbf"``), ``"imq"``, ``"laplace"``, ``"energy"`` (``"distance"``, ``"riesz"``),
    ``"multi"``. A sequence ``bandwidth`` gives a :class:`MultiBandwidthKernel`; the energy kernel and an
    instance take no bandwidth. ``**kwargs`` go to the constructor (``beta``, ``exponent``, ``reduction``).

    Used in: :class:`~gwf_tutorial.functionals.MMD`, :func:`~gwf_tutorial.metrics.mmd2`.
    """
    if isinstance(name_or_kernel, Kernel):
        if bandwidth is not None or kwargs:
            raise TypeError("bandwidth/kwargs cannot be combined with a Kernel instance")
        return name_or_kernel
    if not isinstance(name_or_kernel, str):
        raise TypeError(f"kernel must be a name or a Kernel, got {type(name_or_kernel).__name__}")
    name = name_or_kernel.lower()
    if name == "multi":
        return MultiBandwidthKernel(bandwidths=bandwidth, **kwargs)
    if name not in _NAMES:
        raise ValueError(f"unknown kernel {name_or_kernel!r}; choose from {sorted(_NAMES)} or 'multi'")
    cls = _NAMES[name]
    if cls is EnergyKernel:
        if bandwidth is not None:
            raise ValueError("the energy kernel has no bandwidth; pass bandwidth=None")
        return EnergyKernel(**kwargs)
    if bandwidth is not None and not isinstance(bandwidth, int | float | Tensor):
        return MultiBandwidthKernel(base=name, bandwidths=bandwidth, **kwargs)
    return cls(bandwidth, **kwargs)
