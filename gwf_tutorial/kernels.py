r"""Radial kernels :math:`k(x, y) = \phi(|x - y|^2)` for MMD, energy distances and density estimates,
:math:`\nabla_1 k(x, y) = 2\phi'(|x - y|^2)\,(x - y)`.

A kernel gives the Gram matrix ``k(x, y)`` and the mean gradient :math:`\frac1m\sum_j \nabla_1 k(x_i, y_j)`
(from the weights :math:`G_{ij} = 2\phi'(|x_i - y_j|^2)`). Shared arguments: ``x`` ``(n, d)``,
``y`` ``(m, d)``; results keep the dtype of ``x`` and are differentiable in both. ``bandwidth=None`` is the
median heuristic at call time (pooled sample, detached), fixed once for the several Gram matrices of one
estimate (``Kernel._resolve``).

Used in: :mod:`gwf_tutorial.functionals` (MMD flows, chapters 3 and 8) and :mod:`gwf_tutorial.metrics`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gwf_tutorial._validation import check_int, check_interval, check_positive, check_same_dim, check_samples

__all__ = ["Kernel", "GaussianKernel", "IMQKernel", "LaplaceKernel", "EnergyKernel", "MultiBandwidthKernel",
           "get_kernel", "median_bandwidth", "squared_distances"]  # fmt: skip

# Exact differences, one coordinate at a time, up to this dimension and (on a CPU) this many matrix
# entries; beyond, the expansion |x|^2 + |y|^2 - 2 x.y (one matrix product, less accurate far off).
_DIFF_MAX_ELEMENTS = 2**24
_COORD_LOOP_MAX_DIM = 8


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    r"""Squared Euclidean distances :math:`D_{ij} = |x_i - y_j|^2`, shape ``(n, m)``.

    Used in: :func:`~gwf_tutorial.metrics.w2_squared`.
    """
    return _sqdist(*check_pair(x, y))


def check_pair(x, y, name_x: str = "x", name_y: str = "y") -> tuple[Tensor, Tensor]:
    """``x`` and ``y`` checked as sample matrices of the same dimension, dtype and device."""
    x, y = check_samples(x, name_x), check_samples(y, name_y)
    check_same_dim(x, y, name_x, name_y)
    return x, y


def check_positive_seq(values, name: str) -> tuple[float, ...]:
    """A non-empty sequence (or 1-D tensor) of positive numbers, as a tuple of floats."""
    if isinstance(values, str) or not isinstance(values, Sequence | Tensor):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    if len(values) == 0:
        raise ValueError(f"{name} must not be empty")
    return tuple(check_positive(v, f"{name}[{i}]") for i, v in enumerate(values))


def _sqdist(x: Tensor, y: Tensor) -> Tensor:
    """:func:`squared_distances` without input checks (inner loops)."""
    n, d = x.shape
    m = y.shape[0]
    if d <= _COORD_LOOP_MAX_DIM and (n * m <= _DIFF_MAX_ELEMENTS or x.is_cuda):
        out = (x[:, 0, None] - y[None, :, 0]).square()
        for k in range(1, d):
            out = out + (x[:, k, None] - y[None, :, k]).square()
        return out
    xx, yy = x.pow(2).sum(-1, keepdim=True), y.pow(2).sum(-1, keepdim=True)
    return (xx + yy.T - 2.0 * (x @ y.T)).clamp_min(0.0)


def _safe_pow(q: Tensor, p: float) -> Tensor:
    """``q ** p`` for ``q >= 0``, value and gradient 0 where ``q == 0`` (no NaN, ``p > 0``)."""
    pos = q > 0
    return torch.where(pos, torch.where(pos, q, torch.ones_like(q)).pow(p), torch.zeros_like(q))


def median_bandwidth(x, y=None, *, max_points: int = 1000) -> float:
    r"""Median heuristic :math:`s = \operatorname{median}\{|z_i - z_j| : i < j\}` on :math:`z = x \cup y`
    (a float; on ``max_points`` evenly spaced rows of larger samples).

    Used in: chapters 3, 5 and 9.
    """
    x, y = (check_samples(x, "x"), None) if y is None else check_pair(x, y)
    return _median_distance(x, y, check_int(max_points, "max_points", min_value=2))


def _median_distance(x: Tensor, y: Tensor | None = None, max_points: int = 1000) -> float:
    """:func:`median_bandwidth` without input checks (one host sync)."""
    z = (x if y is None else torch.cat([x, y], dim=0)).detach()
    if z.shape[0] < 2:
        raise ValueError("median_bandwidth needs at least 2 points in the pooled sample")
    if z.shape[0] > max_points:
        idx = torch.linspace(0, z.shape[0] - 1, max_points, device=z.device).round().long()
        z = z[idx]
    med = float(torch.quantile(torch.pdist(z), 0.5))
    if not med > 0:
        raise ValueError("median pairwise distance is 0 (all points coincide); pass a bandwidth explicitly")
    return med


class Kernel:
    r"""Base class of radial kernels :math:`k(x, y) = \phi(|x - y|^2)`: subclasses implement ``_phi(q, s)``
    and ``_dphi(q, s)`` (``q`` squared distances, ``s`` the bandwidth).

    Used in: :class:`~gwf_tutorial.functionals.MMD`.
    """

    name = "kernel"
    uses_bandwidth = True
    _fields = ("bandwidth",)

    def __init__(self, bandwidth: float | None = None):
        self.bandwidth = None if bandwidth is None else check_positive(bandwidth, "bandwidth")

    def _resolve(self, x: Tensor, y: Tensor | None = None) -> Kernel:
        """``self`` if the bandwidth is fixed (or unused), else a copy at the median bandwidth of ``x, y``."""
        if not self.uses_bandwidth or self.bandwidth is not None:
            return self
        out = copy.copy(self)
        out.bandwidth = _median_distance(x, y)
        return out

    # for a resolved kernel, without input checks: _gram, _grad_weights (G of the module doc), _mean_grad
    def _gram(self, x: Tensor, y: Tensor) -> Tensor:
        return self._phi(_sqdist(x, y), self.bandwidth)

    def _grad_weights(self, x: Tensor, y: Tensor) -> Tensor:
        return 2.0 * self._dphi(_sqdist(x, y), self.bandwidth)

    def _mean_grad(self, x: Tensor, y: Tensor) -> Tensor:
        G = self._grad_weights(x, y)
        return (G.sum(1, keepdim=True) * x - G @ y) / y.shape[0]

    def __call__(self, x, y) -> Tensor:
        """Gram matrix :math:`K_{ij} = k(x_i, y_j)`, shape ``(n, m)``."""
        x, y = check_pair(x, y)
        return self._resolve(x, y)._gram(x, y)

    def mean_grad(self, x, y) -> Tensor:
        r"""Mean first-argument gradient :math:`\frac1m \sum_j \nabla_1 k(x_i, y_j)`, shape ``(n, d)``."""
        x, y = check_pair(x, y)
        return self._resolve(x, y)._mean_grad(x, y)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields) + ")"


class GaussianKernel(Kernel):
    r"""Gaussian (RBF) kernel :math:`k(x, y) = \exp(-|x - y|^2 / (2 s^2))`.

    Used in: ``kernels._NAMES`` (``"gaussian"``, ``"rbf"``).
    """

    name = "gaussian"

    def _phi(self, q, s):
        return torch.exp(-q / (2.0 * s * s))

    def _dphi(self, q, s):
        return -torch.exp(-q / (2.0 * s * s)) / (2.0 * s * s)


class IMQKernel(Kernel):
    r"""Inverse multiquadric kernel :math:`k(x, y) = (1 + |x - y|^2/s^2)^{\beta}`, ``beta < 0``.

    Used in: ``kernels._BASES`` (``"imq"``).
    """

    name = "imq"
    _fields = ("bandwidth", "beta")

    def __init__(self, bandwidth: float | None = None, beta: float = -0.5):
        super().__init__(bandwidth)
        self.beta = check_interval(beta, "beta", -math.inf, 0.0)

    def _phi(self, q, s):
        return (1.0 + q / (s * s)).pow(self.beta)

    def _dphi(self, q, s):
        return self.beta / (s * s) * (1.0 + q / (s * s)).pow(self.beta - 1.0)


class LaplaceKernel(Kernel):
    r"""Laplace kernel :math:`k(x, y) = \exp(-|x - y| / s)`, gradient 0 at ``x == y``.

    Used in: ``kernels._BASES`` (``"laplace"``).
    """

    name = "laplace"

    def _phi(self, q, s):
        return torch.exp(-_safe_pow(q, 0.5) / s)

    def _dphi(self, q, s):
        r = _safe_pow(q, 0.5)
        pos = r > 0
        r_safe = torch.where(pos, r, torch.ones_like(r))
        return torch.where(pos, -torch.exp(-r / s) / (2.0 * s * r_safe), torch.zeros_like(r))


class EnergyKernel(Kernel):
    r"""Energy-distance (Riesz) kernel :math:`k(x, y) = -|x - y|^{r}`, ``r = exponent`` in (0, 2), no
    bandwidth; gradient 0 at ``x == y``.

    Used in: ``kernels._NAMES`` (``"energy"``, ``"distance"``, ``"riesz"``).
    """

    name = "energy"
    uses_bandwidth = False
    _fields = ("exponent",)

    def __init__(self, exponent: float = 1.0):
        super().__init__(None)
        self.exponent = check_interval(exponent, "exponent", 0.0, 2.0)

    def _phi(self, q, s):
        return -_safe_pow(q, self.exponent / 2.0)

    def _dphi(self, q, s):
        # p - 1 < 0, so inf ** (p - 1) = 0: the weight is 0 at q == 0
        p = self.exponent / 2.0
        return torch.where(q > 0, q, math.inf).pow(p - 1.0) * (-p)


_BASES = {"gaussian": GaussianKernel, "imq": IMQKernel, "laplace": LaplaceKernel}


class MultiBandwidthKernel(Kernel):
    r"""Mean (or sum, ``reduction``) of one ``base`` kernel at ``bandwidths`` :math:`s_l` (default
    ``factors`` times the median heuristic): :math:`k = \frac1c \sum_{l=1}^{L} k_{s_l}`, :math:`c = L` or 1.

    Used in: :func:`~gwf_tutorial.kernels.get_kernel` (``"multi"`` or a sequence of bandwidths).
    """

    name = "multi"
    _fields = ("base", "bandwidths", "reduction")

    def __init__(self, base: str = "gaussian", bandwidths: Sequence[float] | None = None, *,
                 factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), reduction: str = "mean"):  # fmt: skip
        if not isinstance(base, str) or base.lower() not in _BASES:
            raise ValueError(f"base must be one of {sorted(_BASES)}, got {base!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.base, self.reduction = base.lower(), reduction
        self.bandwidths = None if bandwidths is None else check_positive_seq(bandwidths, "bandwidths")
        self.factors, self.bandwidth = check_positive_seq(factors, "factors"), None

    def _resolve(self, x: Tensor, y: Tensor | None = None) -> Kernel:
        if self.bandwidths is not None:
            return self
        med = _median_distance(x, y)
        return MultiBandwidthKernel(self.base, [f * med for f in self.factors], reduction=self.reduction)

    def _combine(self, x: Tensor, y: Tensor, term) -> Tensor:  # on a resolved kernel (bandwidths fixed)
        q, kernels = _sqdist(x, y), [_BASES[self.base](b) for b in self.bandwidths]
        total = torch.stack([term(kk, q) for kk in kernels]).sum(0)
        return total / len(kernels) if self.reduction == "mean" else total

    def _gram(self, x: Tensor, y: Tensor) -> Tensor:
        return self._combine(x, y, lambda kk, q: kk._phi(q, kk.bandwidth))

    def _grad_weights(self, x: Tensor, y: Tensor) -> Tensor:
        return self._combine(x, y, lambda kk, q: 2.0 * kk._dphi(q, kk.bandwidth))


_NAMES = {**_BASES, "rbf": GaussianKernel, "energy": EnergyKernel, "distance": EnergyKernel,
          "riesz": EnergyKernel}  # fmt: skip


def get_kernel(name_or_kernel, bandwidth=None, **kwargs) -> Kernel:
    """A kernel by name (``"gaussian"``/``"rbf"``, ``"imq"``, ``"laplace"``, ``"energy"``/``"distance"``/
    ``"riesz"``, ``"multi"``), or a :class:`Kernel` passed through; a sequence ``bandwidth`` gives a
    :class:`MultiBandwidthKernel`; ``**kwargs`` go to the constructor.

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
    if _NAMES[name] is EnergyKernel:
        if bandwidth is not None:
            raise ValueError("the energy kernel has no bandwidth; pass bandwidth=None")
        return EnergyKernel(**kwargs)
    if bandwidth is not None and not isinstance(bandwidth, int | float | Tensor):
        return MultiBandwidthKernel(base=name, bandwidths=bandwidth, **kwargs)
    return _NAMES[name](bandwidth, **kwargs)
