r"""S-JKO: the JKO step as source-fixed unbalanced optimal transport, solved in the semi-dual.

One JKO step of an f-divergence to the data distribution :math:`\nu`,

.. math::

    \rho_{k+1} = \operatorname*{arg\,min}_\rho\ \frac{W_2^2(\rho, \rho_k)}{2\tau}
    + D_\Psi(\rho \,\|\, \nu),

is an unbalanced OT problem whose first marginal is fixed to :math:`\rho_k` (cost
:math:`c_\tau(x, y) = |x - y|^2 / (2\tau)`, soft second marginal penalised by :math:`D_\Psi`). Its
semi-dual is a max-min over a potential :math:`v` and a map :math:`T`:

.. math::

    \sup_v \inf_T\ J(v, T), \qquad
    J(v, T) = \mathbb E_{x \sim \rho_k}\big[c_\tau(x, T(x)) - v(T(x))\big]
    - \mathbb E_{y \sim \nu}\big[\Psi^*(-v(y))\big],

(:math:`\inf_T` computes the c-transform :math:`v^c(x) = \inf_y c_\tau(x, y) - v(y)`). At the saddle
point :math:`T_\# \rho_k = \rho_{k+1}`, :math:`v = -\Psi'(\mathrm d\rho_{k+1} / \mathrm d\nu)` and
:math:`J` equals the primal JKO objective. The two losses minimised alternately are

.. math::

    L_v = \mathbb E\, v(T(x)) + \mathbb E_{\nu}\, \Psi^*(-v(\tilde y))
    + \tfrac{\lambda}{2} \mathbb E\, |\nabla v(\tilde y)|^2, \qquad
    L_T = \mathbb E\big[c_\tau(x, T(x)) - v(T(x))\big].

Reparameterization (O(K) training): :math:`\rho_k = (T_{k-1})_\# \mu_0` is sampled with one forward
pass of the frozen previous map; the new map :math:`T_k` (initialised as a copy of :math:`T_{k-1}`)
is trained from the latent :math:`\mu_0` directly, with cost
:math:`c_\tau(T_{k-1}(x_0), T_k(x_0))`. The composed alternative keeps a chain of step maps,
:math:`\rho_k = (T_{k-1} \circ \dots \circ T_0)_\# \mu_0`, whose sampling cost grows with k (O(K^2)
training).

Units of the step. The official code writes the map loss as ``0.5 * c / h - v`` with the cost
averaged over the d coordinates, ``c = mean_d |x - y|^2``, i.e. :math:`|x - y|^2 / (2 h d)`; its
README states the same as :math:`1/\tau_{\mathrm{README}} = 2 d h` for the cost weight of
:math:`\tau_{\mathrm{README}} |x - y|^2`. With the library's summed cost :math:`|x - y|^2 / (2\tau)`
the same step is

.. math::

    \tau = h\, d \qquad (\text{or } \tau = h \text{ with } \texttt{per\_dim\_average=True}),

see :func:`tau_from_h`: the official toy command (``--h 1``, d = 2) is :math:`\tau = 2`, its CIFAR-10
command (``--h 0.1``, d = 3072) is :math:`\tau = 307.2`.

Nothing here is image specific: maps and potentials are any ``torch.nn.Module`` (2-D toys with
:class:`gwf_tutorial.nets.ResidualMLP`, images with the generators / critics of
:mod:`gwf_tutorial.nets`); samples of any shape ``(n, ...)`` are flattened for the cost only.

Used in: chapter 7 (S-JKO), chapters 10 and 11 (CIFAR-10, benchmark).

References
----------
Choi, J., Choi, J., Kang, M. (2024). Scalable Wasserstein gradient flow for generative modeling
through unbalanced optimal transport. ICML. arXiv:2402.05443. Official code
``Jae-Moo/Scalable-JKO`` (losses in ``train.py``, :math:`\Psi^*` in ``utils.py``).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gwf_tutorial._validation import (
    as_tensor,
    check_betas,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
)
from gwf_tutorial.critics import value_and_input_grad
from gwf_tutorial.fdiv import PSI_F, PSI_STAR, psi_star
from gwf_tutorial.jko import proximal_cost, resolve_initial_map
from gwf_tutorial.train import make_generator, save_checkpoint
from gwf_tutorial.trainer import Trainer, TrainerPreset, frozen_copy

# PSI_STAR, PSI_F and psi_star live in gwf_tutorial.fdiv (the one catalogue of divergences); they are
# re-exported here because chapter 7 reads them as sjko.PSI_STAR / sjko.psi_star.
__all__ = [
    "PSI_STAR",
    "PSI_F",
    "psi_star",
    "transport_cost",
    "tau_from_h",
    "potential_loss",
    "map_loss",
    "semi_dual_objective",
    "add_instance_noise",
    "QuadraticPotential",
    "LatentMap",
    "PhaseResult",
    "SemiDualJKO",
    "toy_trainer",
    "affine_trainer",
]


# ---------------------------------------------------------------------------------------------
# Losses (free functions, checked in the tests)
# ---------------------------------------------------------------------------------------------


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _as_values(v, name: str) -> Tensor:
    """Potential values ``(n,)`` or ``(n, 1)`` -> ``(n,)``."""
    v = as_tensor(v, name)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1), got {tuple(v.shape)}")
    if v.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one value")
    return v


def _weighted_mean(values: Tensor, weights, name: str) -> Tensor:
    if weights is None:
        return values.mean()
    w = as_tensor(weights, name).to(values)
    if w.shape != values.shape:
        raise ValueError(f"{name} must have shape {tuple(values.shape)}, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"{name} must be finite and non-negative")
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum")
    return (w * values).sum() / total


#: The per-sample cost :math:`c_\tau(x, y) = |x - y|^2 / (2\tau)` (or :math:`/(2\tau d)` with
#: ``per_dim_average=True``): the one proximal cost of the library, :func:`gwf_tutorial.jko.proximal_cost`,
#: under the name chapter 7 uses.
transport_cost = proximal_cost


def tau_from_h(h: float, dim: int, *, per_dim_average: bool = False) -> float:
    r"""The library's JKO step :math:`\tau` for the official code's step ``h`` in dimension d.

    The official S-JKO code minimises ``0.5 * c / h - v`` with ``c`` the squared distance averaged
    over the d coordinates, i.e. the cost :math:`|x - y|^2 / (2 h d)`. The library's cost is
    :math:`|x - y|^2 / (2\tau)` (summed), or :math:`|x - y|^2 / (2\tau d)` with
    ``per_dim_average=True`` (see :func:`~gwf_tutorial.jko.proximal_cost`), so

    .. math::

        \tau = h\, d \quad\text{(summed cost)}, \qquad \tau = h \quad\text{(per-dimension average)},

    equivalently :math:`1/\tau_{\mathrm{README}} = 2 d h = 2\tau` for the cost weight
    :math:`\tau_{\mathrm{README}}` of the official README (cost :math:`\tau_{\mathrm{README}}|x - y|^2`).

    Parameters
    ----------
    h : float
        Official step (``--h`` / ``--init_h``), ``> 0``.
    dim : int
        Data dimension d (2 for the toys, 3 * 32 * 32 = 3072 for CIFAR-10).
    per_dim_average : bool, default False
        Return the step for the per-dimension-averaged cost instead of the summed one.

    Returns
    -------
    float

    Used in: chapter 7 (units of the step), chapter 10 (the CIFAR-10 recipe).

    References
    ----------
    Official ``Jae-Moo/Scalable-JKO``: ``train.py`` (``cost``, ``err = 0.5 * c / h - D_fake``) and
    ``README.md`` (CIFAR-10 section).
    """
    h = check_positive(h, "h")
    dim = check_int(dim, "dim")
    return h if _check_flag(per_dim_average, "per_dim_average") else h * dim


def potential_loss(
    v_fake,
    v_real,
    divergence: str | Callable[[Tensor], Tensor] = "kl",
    *,
    grad_real: Tensor | None = None,
    r1: float = 0.0,
    source_weights=None,
    data_weights=None,
) -> Tensor:
    r"""Loss of the potential :math:`v` (minimised): minus the semi-dual up to terms free of v.

    .. math::

        L_v = \mathbb E_{x \sim \rho_k}\, v(T(x)) + \mathbb E_{y \sim \nu}\, \Psi^*(-v(y))
        + \frac{\lambda}{2}\, \mathbb E_{y \sim \nu} |\nabla v(y)|^2 .

    Parameters
    ----------
    v_fake : Tensor, shape (n,) or (n, 1)
        :math:`v(T(x_i))` at the map's outputs.
    v_real : Tensor, shape (m,) or (m, 1)
        :math:`v(y_j)` at data points (possibly with instance noise).
    divergence : str or callable, default "kl"
        See :func:`psi_star`.
    grad_real : Tensor, shape (m, ...), optional
        :math:`\nabla v(y_j)`, needed when ``r1 > 0`` (see
        :func:`gwf_tutorial.critics.value_and_input_grad`).
    r1 : float, default 0
        R1 weight :math:`\lambda \ge 0` (official code: 0.2).
    source_weights : Tensor, shape (n,), optional
        Quadrature weights of the :math:`x_i` (uniform by default; normalised).
    data_weights : Tensor, shape (m,), optional
        Weights of the :math:`y_j` (uniform by default; normalised).

    Returns
    -------
    Tensor, shape ()
        Differentiable scalar.

    Used in: chapter 7.

    References
    ----------
    Choi et al. (2024), Algorithm 1; official ``train.py`` (``errD_real + errD_fake + R1``).
    """
    psi = psi_star(divergence)
    v_fake = _as_values(v_fake, "v_fake")
    v_real = _as_values(v_real, "v_real")
    r1 = check_nonnegative(r1, "r1")
    loss = _weighted_mean(v_fake, source_weights, "source_weights") + _weighted_mean(
        psi(-v_real), data_weights, "data_weights"
    )
    if r1 > 0:
        if grad_real is None:
            raise ValueError("grad_real is required when r1 > 0")
        if grad_real.shape[0] != v_real.shape[0]:
            raise ValueError(
                f"grad_real must have {v_real.shape[0]} rows, got shape {tuple(grad_real.shape)}"
            )
        sq = _flat(grad_real).pow(2).sum(dim=1)
        loss = loss + 0.5 * r1 * _weighted_mean(sq, data_weights, "data_weights")
    return loss


def map_loss(
    t_new: Tensor,
    t_old: Tensor,
    v_new,
    tau: float,
    *,
    per_dim_average: bool = False,
    source_weights=None,
) -> Tensor:
    r"""Loss of the map :math:`T` (minimised): the c-transform objective.

    .. math::

        L_T = \mathbb E\big[c_\tau(T_{\mathrm{old}}(x), T(x)) - v(T(x))\big],

    with :math:`T_{\mathrm{old}}(x)` the point of :math:`\rho_k` (the source itself in the composed
    parametrization) and :math:`c_\tau` of :func:`~gwf_tutorial.jko.proximal_cost`.

    Parameters
    ----------
    t_new : Tensor, shape (n, ...)
        :math:`T(x_i)` (differentiable).
    t_old : Tensor, shape (n, ...)
        Source points of :math:`\rho_k` paired with ``t_new``.
    v_new : Tensor, shape (n,) or (n, 1)
        :math:`v(T(x_i))`.
    tau : float
        JKO step ``> 0``.
    per_dim_average : bool, default False
        Cost divided by d, as in the official code.
    source_weights : Tensor, shape (n,), optional
        Weights of the source points (uniform by default; normalised).

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 7.

    References
    ----------
    Choi et al. (2024), Algorithm 1; official ``train.py`` (``0.5 * c / h - D_fake``).
    """
    for t, nm in ((t_new, "t_new"), (t_old, "t_old")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 2 or t.shape[0] < 1:
            raise ValueError(f"{nm} must have shape (n, ...) with n >= 1, got {tuple(t.shape)}")
    v_new = _as_values(v_new, "v_new")
    cost = proximal_cost(t_new, t_old, tau, per_dim_average=per_dim_average)
    if cost.shape != v_new.shape:
        raise ValueError(f"v_new must have one value per map output ({cost.shape[0]}), got {v_new.shape[0]}")
    return _weighted_mean(cost - v_new, source_weights, "source_weights")


def semi_dual_objective(
    cost,
    v_fake,
    v_real,
    divergence: str | Callable[[Tensor], Tensor] = "kl",
    *,
    source_weights=None,
    data_weights=None,
) -> Tensor:
    r"""Value of the semi-dual objective for a potential and a map.

    .. math::

        J(v, T) = \mathbb E_{x\sim\rho_k}\big[c_\tau(x, T(x)) - v(T(x))\big]
        - \mathbb E_{y\sim\nu}\, \Psi^*(-v(y)).

    At the saddle point it equals the primal JKO objective
    :math:`\mathbb E\, c_\tau(x, T(x)) + D_\Psi(T_\#\rho_k \| \nu)`.

    Parameters
    ----------
    cost : Tensor, shape (n,)
        :math:`c_\tau(x_i, T(x_i))` (see :func:`~gwf_tutorial.jko.proximal_cost`).
    v_fake : Tensor, shape (n,) or (n, 1)
        :math:`v(T(x_i))`.
    v_real : Tensor, shape (m,) or (m, 1)
        :math:`v(y_j)`.
    divergence : str or callable, default "kl"
    source_weights, data_weights : Tensor, shapes (n,) and (m,), optional
        Quadrature weights (uniform by default).

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 7 (semi-dual = primal at the optimum).
    """
    psi = psi_star(divergence)
    cost = _as_values(cost, "cost")
    v_fake = _as_values(v_fake, "v_fake")
    v_real = _as_values(v_real, "v_real")
    if cost.shape != v_fake.shape:
        raise ValueError(
            f"cost and v_fake must have the same length, got {cost.shape[0]} and {v_fake.shape[0]}"
        )
    return _weighted_mean(cost - v_fake, source_weights, "source_weights") - _weighted_mean(
        psi(-v_real), data_weights, "data_weights"
    )


def add_instance_noise(y: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
    r"""The official code's shrinking instance noise on data at phase k (0-based).

    .. math::

        \tilde y = y + \frac{\varepsilon}{32 (k + 1)}, \qquad \varepsilon \sim \mathcal N(0, I).

    Undocumented in the paper; off by default in :class:`SemiDualJKO`.

    Parameters
    ----------
    y : Tensor, shape (m, ...)
    k : int
        Phase index ``>= 0``.
    generator : torch.Generator, optional
        On ``y``'s device.

    Returns
    -------
    Tensor, shape (m, ...)

    Used in: chapter 7 (deviations of the official code).

    References
    ----------
    Official ``Jae-Moo/Scalable-JKO`` ``train.py``: ``netD(real_data + (1/(32*(phase+1)))*noise)``.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim < 2 or y.shape[0] < 1:
        raise ValueError(f"y must have shape (n, ...) with n >= 1, got {tuple(y.shape)}")
    k = check_int(k, "k", min_value=0)
    eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + eps / (32.0 * (k + 1))


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------


class QuadraticPotential(nn.Module):
    r"""Quadratic potential, the exact family of log density ratios between Gaussians.

    .. math::

        v(y) = y^\top C y + e^\top y + g, \qquad C = C^\top \text{ (the symmetric part is used)},

    initialised at :math:`v \equiv 0`. For Gaussians :math:`\rho_{k+1}` and :math:`\nu`, the
    optimal KL potential :math:`v^* = -\log(\mathrm d\rho_{k+1} / \mathrm d\nu)` is of this form,
    so with :class:`gwf_tutorial.nets.AffineMap` as the map the semi-dual JKO step is exact on
    Gaussians (tests and chapter 7).

    Parameters
    ----------
    dim : int
        Dimension d.
    dtype : torch.dtype, optional
        Parameter dtype.

    Notes
    -----
    ``forward(y)`` maps ``(n, d)`` to ``(n,)``. Parameters ``C`` ``(d, d)``, ``e`` ``(d,)``, ``g``
    ``()``.

    Used in: chapter 7 (S-JKO on Gaussians, checked against the exact JKO step).
    """

    def __init__(self, dim: int, *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.C = nn.Parameter(torch.zeros(self.dim, self.dim, dtype=dtype))
        self.e = nn.Parameter(torch.zeros(self.dim, dtype=dtype))
        self.g = nn.Parameter(torch.zeros((), dtype=dtype))

    def forward(self, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"y must be a tensor of shape (n, {self.dim}), got {getattr(y, 'shape', y)}")
        C = 0.5 * (self.C + self.C.T)
        return ((y @ C) * y).sum(1) + y @ self.e + self.g


class LatentMap(nn.Module):
    r"""Adapter giving a single-input network the S-JKO map signature :math:`T(x, z)`.

    .. math::

        T(x, z) = N([x, z]) \quad\text{or, with ``residual``,}\quad T(x, z) = x + N([x, z]).

    Parameters
    ----------
    net : torch.nn.Module
        Maps ``(n, d + noise_dim)`` to ``(n, d)`` (e.g. ``nets.ResidualMLP(d, in_dim=d + nz,
        zero_init_last=True)``; with ``residual=True`` the pair starts at the identity).
    residual : bool, default True
        Add the input point.

    Notes
    -----
    ``forward(x, z)``: ``x`` of shape ``(n, d)``, ``z`` of shape ``(n, noise_dim)``, returns
    ``(n, d)``.

    Used in: chapter 7 (toy maps with an extra latent, as in the official code).
    """

    def __init__(self, net: nn.Module, *, residual: bool = True) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net
        self.residual = bool(residual)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        if x.ndim != 2 or z.ndim != 2 or x.shape[0] != z.shape[0]:
            raise ValueError(
                f"x and z must have shapes (n, d) and (n, nz), got {tuple(x.shape)}, {tuple(z.shape)}"
            )
        out = self.net(torch.cat([x, z], dim=1))
        return x + out if self.residual else out


@dataclass
class PhaseResult:
    """Record of one S-JKO phase (one JKO step).

    Attributes
    ----------
    phase : int
        Phase index k (0-based): the step from :math:`\\rho_k` to :math:`\\rho_{k+1}`.
    tau : float
        JKO step used.
    n_iters : int
        Alternating iterations.
    potential_loss : Tensor, shape (n_iters,)
        :math:`L_v` per iteration (with the R1 term).
    map_loss : Tensor, shape (n_iters,)
        :math:`L_T` per iteration.
    semi_dual : Tensor, shape (n_iters,)
        Mini-batch estimate of :math:`J(v, T)` per iteration (map-step cost and potential terms,
        without R1).
    seconds : float
        Wall-clock time of the phase.
    parametrization : str
        ``"reparameterized"`` or ``"composed"``.
    """

    phase: int
    tau: float
    n_iters: int
    potential_loss: Tensor
    map_loss: Tensor
    semi_dual: Tensor
    seconds: float
    parametrization: str


def _identity(x: Tensor, z: Tensor | None = None) -> Tensor:
    return x


_PARAMETRIZATIONS = ("reparameterized", "composed")


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class _PhaseLoss:
    """One S-JKO iteration as a :class:`~gwf_tutorial.trainer.Trainer` problem (the official draw order)."""

    def __init__(self, tr: SemiDualJKO, source, data, k: int) -> None:
        self.tr, self.source, self.data, self.k = tr, source, data, k
        self.psi_term = None

    def batch(self) -> None:
        return None

    def critic_loss(self, _) -> tuple[Tensor, Tensor]:
        tr, b = self.tr, self.tr.batch_size
        y = tr._draw(self.data, b, "data")
        if tr.instance_noise:
            y = add_instance_noise(y, self.k, generator=tr._noise_generator)
        if tr.r1 > 0:
            v_real, grad = value_and_input_grad(tr._potential_values, y)
        else:
            v_real, grad = tr._potential_values(y), None
        x0 = tr._draw(self.source, b, "source")
        inputs = tr._push_chain(x0, tr.chain) if tr.parametrization == "composed" else x0
        with torch.no_grad():
            fake = tr._call(tr.map, inputs, tr._latent(inputs.shape[0]))
        if fake.shape[1:] != y.shape[1:]:
            raise ValueError(
                f"data points have shape {tuple(y.shape[1:])} but map_net outputs shape "
                f"{tuple(fake.shape[1:])}"
            )
        loss_v = potential_loss(tr._potential_values(fake), v_real, tr._psi, grad_real=grad, r1=tr.r1)
        self.psi_term = tr._psi(-v_real.detach()).mean()
        return loss_v, loss_v.detach()

    def map_loss(self, _) -> tuple[Tensor, list[Tensor]]:
        tr = self.tr
        x0 = tr._draw(self.source, tr.batch_size, "source")
        inputs, old, z = tr.source_and_old(x0)
        new = tr._call(tr.map, inputs, z)
        if new.shape != old.shape:
            raise ValueError(
                f"map_net output shape {tuple(new.shape)} differs from the source points' shape "
                f"{tuple(old.shape)}"
            )
        loss_t = map_loss(new, old, tr._potential_values(new), tr.tau, per_dim_average=tr.per_dim_average)
        return loss_t, [loss_t.detach(), loss_t.detach() - self.psi_term]


_KIND = "sjko.SemiDualJKO"


class SemiDualJKO(TrainerPreset):
    r"""S-JKO trainer: a potential and a map per JKO phase, reparameterized (O(K)) or composed.

    Phase k solves the semi-dual of the JKO step from :math:`\rho_k` (see the module docstring)

    .. math::

        \sup_v \inf_T\ \mathbb E_{x_0\sim\mu_0,\,z}\Big[
        \frac{|T(x_0, z) - T_{k-1}(x_0, z')|^2}{2\tau} - v(T(x_0, z))\Big]
        - \mathbb E_{y\sim\nu}\,\Psi^*(-v(y)),

    by alternating one Adam step on :func:`potential_loss` and one on :func:`map_loss` (as in the
    official code). Faithful defaults are ``z' = z`` (the same latent for the old and new map
    outputs, so the proximal term is a per-sample displacement), no instance noise, and the cost
    :math:`|x-y|^2/(2\tau)`; the official code's choices are flags.

    Parameters
    ----------
    map_net : torch.nn.Module
        The map. Called ``map_net(x)`` when ``noise_dim == 0`` and ``map_net(x, z)`` otherwise
        (see :class:`LatentMap`). Reparameterized: ``x`` is a latent point of :math:`\mu_0`;
        composed: ``x`` is a point of :math:`\rho_k` and the map is one step. A map starting at
        the identity (``ResidualMLP(..., zero_init_last=True)``, ``AffineMap``) makes phase 0
        start at :math:`\rho_0`.
    potential_net : torch.nn.Module
        The potential :math:`v`, ``(n, ...) -> (n,)`` or ``(n, 1)``. Kept (warm-started) across
        phases, as in the official code.
    divergence : str or callable, default "kl"
        :math:`\Psi^*`, see :func:`psi_star` (``"kl"``, ``"chi2"``, ``"js"``).
    tau : float, default 1.0
        JKO step of the summed cost :math:`|x - y|^2/(2\tau)`. The official step ``h`` averages the
        cost over the d coordinates: :math:`\tau = h d` (:func:`tau_from_h`), so the paper's toy
        ``h = 1`` is :math:`\tau = 2` in 2-D and its CIFAR-10 ``h = 0.1`` is :math:`\tau = 307.2`
        (or ``tau=0.1`` with ``per_dim_average=True``).
    lr, lr_critic : float, defaults 1e-4 and 2e-5
        Adam learning rates of the map and of the potential (official toy defaults).
    betas : tuple of two floats, default (0.5, 0.9)
        Adam betas (official).
    r1 : float, default 0.2
        R1 weight :math:`\lambda` on data points (official ``train.py`` default ``--lmbda 0.2``, used
        by its CIFAR-10 command; its toy command turns R1 off, ``--reg_name none``).
    ema_decay : float, optional
        Exponential moving average of the map's weights (official CIFAR-10: 0.9999); used by
        :meth:`sample` / :meth:`push`, not as the frozen previous map (as in the official code).
    per_dim_average : bool, default False
        Divide the cost by d (official code) instead of the math's :math:`|x-y|^2/(2\tau)`.
    independent_latents : bool, default False
        Official-code deviation: draw independent latents ``z, z'`` for the new and the frozen
        old map outputs (reparameterized only; with ``noise_dim == 0`` it changes nothing).
    instance_noise : bool, default False
        Official-code deviation: the potential sees ``y + eps / (32 (k + 1))`` (see
        :func:`add_instance_noise`).
    n_iters : int, default 5000
        Alternating iterations per phase (official toy default).
    batch_size : int, default 400
        Mini-batch size for the source and the data (official toy default). A data / source
        tensor with at most ``batch_size`` rows is used whole at every iteration (deterministic
        full-batch training).
    noise_dim : int, default 0
        Dimension of the map's extra latent ``z ~ N(0, I)``; 0 means ``T(x)``.
    parametrization : {"reparameterized", "composed"}
        O(K) reparameterization (default) or the chain of step maps.
    initial_map : callable or "copy", optional
        :math:`T_{-1}`, defining :math:`\rho_0 = (T_{-1})_\#\mu_0`: the identity by default (the
        official code), ``"copy"`` for a frozen copy of ``map_net`` at construction (use when
        latent and data spaces differ), or a callable ``x -> y``.
    lr_schedule : {"constant", "cosine"}, default "constant"
        Learning rates constant or cosine-annealed to 0 within each phase. (The official
        ``--lr_scheduler`` is one ``CosineAnnealingLR`` over all the run's iterations down to
        ``eta_min = 5e-5``; :mod:`gwf_tutorial.cifar10` implements that one.)
    seed : int, optional
        Seed of the trainer's generators (mini-batches, latents, instance noise). Each phase runs
        :meth:`gwf_tutorial.trainer.Trainer.fit` (the potential is the trainer's critic).

    Attributes
    ----------
    map : torch.nn.Module
        The current (last trained) map.
    potential : torch.nn.Module
    history : list of PhaseResult
    n_phases : int
        Phases done; :meth:`sample` draws from :math:`\rho_{K}`.

    Notes
    -----
    Samplers (``source``, ``data``) are tensors of shape ``(N, ...)`` (mini-batches drawn from the
    rows), callables ``f(n, generator=g)`` or objects with ``.sample(n, generator=g)``, where
    ``g`` is a CPU ``torch.Generator``. Nothing is image specific.

    Checkpoints are taken at phase boundaries: :meth:`save` / :meth:`load` (or
    ``run(K, ..., checkpoint=path)``, which saves after every phase and resumes from the file), so an
    interrupted run loses only the phase in progress; resumed training is bit-identical to an
    uninterrupted one.

    Used in: chapter 7 (S-JKO on toys, O(K) vs O(K^2) measured), chapter 10 (CIFAR-10).

    References
    ----------
    Choi, J., Choi, J., Kang, M. (2024). Scalable Wasserstein gradient flow for generative
    modeling through unbalanced optimal transport. ICML. arXiv:2402.05443.
    """

    def __init__(
        self,
        map_net: nn.Module,
        potential_net: nn.Module,
        divergence: str | Callable[[Tensor], Tensor] = "kl",
        tau: float = 1.0,
        *,
        lr: float = 1e-4,
        lr_critic: float = 2e-5,
        betas: tuple[float, float] = (0.5, 0.9),
        r1: float = 0.2,
        ema_decay: float | None = None,
        per_dim_average: bool = False,
        independent_latents: bool = False,
        instance_noise: bool = False,
        n_iters: int = 5000,
        batch_size: int = 400,
        noise_dim: int = 0,
        parametrization: str = "reparameterized",
        initial_map: Callable | str | None = None,
        lr_schedule: str = "constant",
        seed: int | None = None,
    ) -> None:
        if not isinstance(map_net, nn.Module):
            raise TypeError(f"map_net must be a torch.nn.Module, got {type(map_net).__name__}")
        if not isinstance(potential_net, nn.Module):
            raise TypeError(f"potential_net must be a torch.nn.Module, got {type(potential_net).__name__}")
        params = list(map_net.parameters())
        if not params:
            raise ValueError("map_net has no parameters to train")
        if not list(potential_net.parameters()):
            raise ValueError("potential_net has no parameters to train")
        self.divergence = divergence
        self._psi = psi_star(divergence)
        self.tau = check_positive(tau, "tau")
        lr = check_positive(lr, "lr")
        lr_critic = check_positive(lr_critic, "lr_critic")
        betas = check_betas(betas)
        self.r1 = check_nonnegative(r1, "r1")
        if ema_decay is not None:
            ema_decay = check_positive(ema_decay, "ema_decay")
            if not ema_decay < 1:
                raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        self.ema_decay = ema_decay
        self.per_dim_average = _check_flag(per_dim_average, "per_dim_average")
        self.independent_latents = _check_flag(independent_latents, "independent_latents")
        self.instance_noise = _check_flag(instance_noise, "instance_noise")
        self.n_iters = check_int(n_iters, "n_iters")
        self.batch_size = check_int(batch_size, "batch_size")
        self.noise_dim = check_int(noise_dim, "noise_dim", min_value=0)
        if parametrization not in _PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {_PARAMETRIZATIONS}, got {parametrization!r}")
        self.parametrization = parametrization

        self.device = params[0].device
        self.dtype = params[0].dtype
        self.initial_map = _identity if initial_map is None else resolve_initial_map(initial_map, map_net)

        seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed
        self.seed = check_int(seed, "seed", min_value=0)
        self.generator = make_generator(self.seed)  # CPU: samplers, mini-batch indices
        self._noise_generator = (
            self.generator if self.device.type == "cpu" else make_generator(self.seed + 1, device=self.device)
        )
        self.trainer = Trainer(
            map_net, potential_net, lr=lr, lr_critic=lr_critic, betas=betas, lr_schedule=lr_schedule,
            ema_decay=ema_decay, generator=self.generator,
        )  # fmt: skip
        # composed: frozen step maps T_0, ..., T_{k-1} (and their EMA copies for sampling)
        self.chain: list[nn.Module] = []
        self.chain_ema: list[nn.Module] = []
        self.history: list[PhaseResult] = []
        self.n_phases = 0
        self._source = None
        self._old: Callable | None = None

    map = property(lambda self: self.trainer.map, doc="The current (last trained) map.")
    potential = property(lambda self: self.trainer.critic, doc="The potential v.")
    ema = property(lambda self: self.trainer.ema, doc="EMA copy of the map (None without ema_decay).")
    opt_potential = property(lambda self: self.trainer.opt_critic, doc="The potential's Adam optimiser.")

    # -- helpers ---------------------------------------------------------------------------

    _frozen_copy = staticmethod(frozen_copy)

    def _call(self, net: Callable, x: Tensor, z: Tensor | None) -> Tensor:
        if self.noise_dim == 0 or net is _identity:
            return net(x)
        return net(x, z)

    def _latent(self, n: int) -> Tensor | None:
        if self.noise_dim == 0:
            return None
        return torch.randn(
            n,
            self.noise_dim,
            generator=self._noise_generator,
            device=self.device,
            dtype=self.dtype,
        )

    def _draw(self, sampler, n: int, name: str, check: bool = False) -> Tensor:
        if isinstance(sampler, Tensor):
            if sampler.shape[0] <= n:
                x = sampler
            else:
                idx = torch.randint(0, sampler.shape[0], (n,), generator=self.generator)
                x = sampler[idx.to(sampler.device)]
        else:
            if hasattr(sampler, "sample"):
                x = sampler.sample(n, generator=self.generator)
            else:
                x = sampler(n, generator=self.generator)
            if not isinstance(x, Tensor):
                raise TypeError(f"{name} must return a torch.Tensor, got {type(x).__name__}")
            if check:
                if x.ndim < 2 or x.shape[0] != n:
                    raise ValueError(f"{name}(n) must return shape ({n}, ...), got {tuple(x.shape)}")
                check_finite(x, f"{name}(n)")
        return x.to(device=self.device, dtype=self.dtype)

    @staticmethod
    def _check_sampler(sampler, name: str):
        if isinstance(sampler, Tensor):
            if sampler.ndim < 2 or sampler.shape[0] < 1:
                raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {tuple(sampler.shape)}")
            if not sampler.is_floating_point():
                raise TypeError(f"{name} must be a floating tensor, got dtype {sampler.dtype}")
            check_finite(sampler, name)
        elif not (callable(sampler) or hasattr(sampler, "sample")):
            raise TypeError(
                f"{name} must be a tensor, a callable f(n, generator=) or have .sample(n, "
                f"generator=), got {type(sampler).__name__}"
            )
        return sampler

    def _potential_values(self, y: Tensor) -> Tensor:
        v = self.potential(y)
        if v.numel() != y.shape[0]:
            raise ValueError(
                f"potential_net must return one value per point, got shape {tuple(v.shape)} for "
                f"{y.shape[0]} points"
            )
        return v.reshape(y.shape[0])

    # -- the pushes ------------------------------------------------------------------------

    @torch.no_grad()
    def _push_chain(self, x0: Tensor, maps: list[nn.Module]) -> Tensor:
        x = self._call(self.initial_map, x0, self._latent(x0.shape[0]))
        for m in maps:
            x = self._call(m, x, self._latent(x.shape[0]))
        return x

    @torch.no_grad()
    def push(self, x0: Tensor, *, use_ema: bool = True) -> Tensor:
        r"""Push latent points to the current distribution :math:`\rho_{K}`.

        .. math::

            \text{reparameterized: } x = T_{K-1}(x_0, z), \qquad
            \text{composed: } x = T_{K-1}(\cdots T_0(T_{-1}(x_0), z_0) \cdots, z_{K-1}),

        with fresh latents :math:`z \sim \mathcal N(0, I)` and :math:`T_{-1}` the initial map (the
        only map applied before any phase).

        Parameters
        ----------
        x0 : Tensor, shape (n, ...)
            Points of :math:`\mu_0`.
        use_ema : bool, default True
            Use the EMA weights when ``ema_decay`` was given.

        Returns
        -------
        Tensor, shape (n, ...)
            One forward pass (reparameterized) or K passes (composed).

        Used in: chapter 7.
        """
        if not isinstance(x0, Tensor) or x0.ndim < 2:
            raise ValueError("x0 must be a tensor of shape (n, ...)")
        x0 = x0.to(device=self.device, dtype=self.dtype)
        use_ema = use_ema and self.ema is not None
        if self.parametrization == "composed":
            return self._push_chain(x0, self.chain_ema if use_ema else self.chain)
        net = self.initial_map if self.n_phases == 0 else (self.ema if use_ema else self.map)
        return self._call(net, x0, self._latent(x0.shape[0]))

    @torch.no_grad()
    def sample(self, n: int, source=None) -> Tensor:
        r"""Draw n samples of :math:`\rho_{K}`: :func:`push` of fresh :math:`\mu_0`
        samples.

        .. math::

            x = T_{K-1}(x_0, z), \quad x_0 \sim \mu_0 \quad (\text{composed: through the chain}).

        Parameters
        ----------
        n : int
            Number of samples.
        source : sampler, optional
            :math:`\mu_0`; default the one of the last phase.

        Returns
        -------
        Tensor, shape (n, ...)

        Used in: chapter 7.
        """
        n = check_int(n, "n")
        source = self._source if source is None else self._check_sampler(source, "source")
        if source is None:
            raise ValueError("no source given and no phase has run yet: pass source=")
        if isinstance(source, Tensor):
            idx = torch.randint(0, source.shape[0], (n,), generator=self.generator)
            x0 = source[idx.to(source.device)].to(device=self.device, dtype=self.dtype)
        else:
            x0 = self._draw(source, n, "source", check=True)
        return self.push(x0)

    # -- one phase -------------------------------------------------------------------------

    def start_phase(self) -> None:
        r"""Prepare phase k = ``n_phases``: freeze the previous map, initialise the new one from it.

        .. math::

            \text{reparameterized: } T_{\mathrm{old}} = \mathrm{sg}(T_{k-1}),\ T_k \leftarrow
            T_{k-1}; \qquad \text{composed: } T_k \leftarrow \mathrm{copy}(T_{k-1}) \text{ applied
            after the chain}.

        Returns
        -------
        None

        Used in: chapter 7 (called by :meth:`phase`).
        """
        k = self.n_phases
        if self.parametrization == "reparameterized":
            self._old = self.initial_map if k == 0 else self._frozen_copy(self.map)
        else:
            self._old = None
            if k > 0:  # a new trainable step map, initialised from the previous step map
                new = copy.deepcopy(self.chain[-1])
                for p in new.parameters():
                    p.requires_grad_(True)
                self.trainer.set_map(new.train())

    def source_and_old(self, x0: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        r"""For latent points, the map inputs, the frozen source points of :math:`\rho_k` and the
        latents of the new map.

        .. math::

            \text{reparameterized: } (x_0,\ T_{k-1}(x_0, z'),\ z), \quad z' = z \text{ (or independent)};
            \qquad \text{composed: } (x, x, z),\ x = \text{chain}(x_0).

        Parameters
        ----------
        x0 : Tensor, shape (n, ...)
            Points of :math:`\mu_0` (on the trainer's device).

        Returns
        -------
        inputs : Tensor, shape (n, ...)
            What the trainable map receives.
        old : Tensor, shape (n, ...)
            Points of :math:`\rho_k` paired with the new map's outputs (no graph).
        z : Tensor, shape (n, noise_dim) or None
            Latents of the new map.

        Used in: chapter 7 (the proximal term; tests of the latent deviation).
        """
        if self.parametrization == "composed":
            x = self._push_chain(x0, self.chain)
            return x, x, self._latent(x.shape[0])
        if self._old is None:
            raise RuntimeError("call start_phase() first")
        z = self._latent(x0.shape[0])
        z_old = self._latent(x0.shape[0]) if self.independent_latents else z
        with torch.no_grad():
            old = self._call(self._old, x0, z_old)
        return x0, old, z

    def train_step(self, source, data, k: int) -> tuple[Tensor, Tensor, Tensor]:
        r"""One alternating iteration: an Adam step on :math:`L_v`, then one on :math:`L_T`.

        .. math::

            v \leftarrow v - \eta_v \nabla L_v, \qquad T \leftarrow T - \eta_T \nabla L_T.

        Parameters
        ----------
        source, data : samplers
            :math:`\mu_0` and :math:`\nu` (see the class Notes).
        k : int
            Phase index (instance noise scale).

        Returns
        -------
        potential_loss, map_loss, semi_dual : Tensor, shape ()
            Detached values of this iteration.

        Used in: chapter 7 (what :meth:`phase` runs, through :meth:`Trainer.iteration`).
        """
        return tuple(self.trainer.iteration(_PhaseLoss(self, source, data, k)))

    def phase(
        self,
        source,
        data,
        *,
        n_iters: int | None = None,
        tau: float | None = None,
        progress: bool | None = None,
        callback: Callable[[int, Tensor, Tensor], None] | None = None,
    ) -> PhaseResult:
        r"""Run one S-JKO phase k = ``n_phases``: one JKO step :math:`\rho_k \to \rho_{k+1}`.

        .. math::

            \max_v \min_T\ \mathbb E\big[c_\tau(T_{\mathrm{old}}, T) - v(T)\big]
            - \mathbb E_\nu \Psi^*(-v).

        Parameters
        ----------
        source : Tensor (N, ...), callable or sampler object
            The latent :math:`\mu_0` (reparameterized and composed alike).
        data : Tensor (M, ...), callable or sampler object
            The data :math:`\nu`.
        n_iters : int, optional
            Iterations of this phase (default ``self.n_iters``; the official code allows a
            longer first phase).
        tau : float, optional
            JKO step of this phase (default ``self.tau``).
        progress : bool, optional
            Show a tqdm bar (default: on unless ``GWF_PROGRESS=0``).
        callback : callable, optional
            Called after every iteration as ``callback(iteration, potential_loss, map_loss)``
            (detached scalars), e.g. to log or to time iterations.

        Returns
        -------
        PhaseResult
            Losses per iteration and timing; also appended to :attr:`history`.

        Used in: chapter 7.
        """
        source = self._check_sampler(source, "source")
        data = self._check_sampler(data, "data")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        n_iters = self.n_iters if n_iters is None else check_int(n_iters, "n_iters")
        tau_saved = self.tau
        if tau is not None:
            self.tau = check_positive(tau, "tau")
        for sampler, name in ((source, "source"), (data, "data")):
            if not isinstance(sampler, Tensor):
                self._draw(sampler, 2, name, check=True)
        self._source, k = source, self.n_phases
        self.start_phase()
        t0 = time.perf_counter()
        hook = None if callback is None else (lambda it, r: callback(it, r[0], r[1]))
        names = ("potential_loss", "map_loss", "semi_dual")
        try:
            logs = self.trainer.fit(
                _PhaseLoss(self, source, data, k), n_iters, desc=f"S-JKO phase {k}", callback=hook,
                names=names, progress=progress, hint=f" or a smaller tau (tau={self.tau})",
            ).to(self.dtype).cpu()  # fmt: skip
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            result = PhaseResult(
                phase=k, tau=self.tau, n_iters=n_iters, potential_loss=logs[0], map_loss=logs[1],
                semi_dual=logs[2], seconds=time.perf_counter() - t0, parametrization=self.parametrization,
            )  # fmt: skip
        finally:
            self.tau = tau_saved
        if self.parametrization == "composed":
            self.chain.append(self._frozen_copy(self.map))
            if self.ema is not None:
                self.chain_ema.append(self._frozen_copy(self.ema))
        self._old = None
        self.n_phases += 1
        self.history.append(result)
        return result

    def run(
        self,
        K: int,
        source,
        data,
        *,
        n_iters_first: int | None = None,
        tau_first: float | None = None,
        checkpoint: str | os.PathLike | None = None,
        progress: bool | None = None,
        on_phase: Callable[[SemiDualJKO], None] | None = None,
    ) -> list[PhaseResult]:
        r"""Run phases (JKO steps) up to K in total, continuing from the current state; optionally
        checkpointed.

        .. math::

            \rho_{k+1} = \operatorname*{arg\,min}_\rho \frac{W_2^2(\rho, \rho_k)}{2\tau}
            + D_\Psi(\rho\|\nu), \quad k = n\_phases, \dots, K - 1.

        With ``checkpoint``, the state is saved to that file after every phase (:meth:`save`,
        atomically), and a fresh trainer (no phase done yet) whose checkpoint file already exists
        first loads it and runs only the phases still missing. Re-running the same call after an
        interruption therefore completes the run, losing only the phase that was interrupted. A damaged
        file, or one saved with other hyperparameters (the seed aside: the random states come from the
        file), is refused with a ValueError naming it.

        Parameters
        ----------
        K : int
            Total number of phases wanted (``>= 1``); nothing is done if ``n_phases >= K``.
        source, data : samplers
            See :meth:`phase`.
        n_iters_first, tau_first : optional
            Iterations and step of the very first phase (official ``init_num_iterations``,
            ``init_h``).
        checkpoint : str or path-like, optional
            File to save to after every phase and to resume from.
        progress : bool, optional
            See :meth:`phase`.
        on_phase : callable, optional
            Called as ``on_phase(self)`` after every phase run by this call (e.g. to record
            ``self.push(z)`` for an animation of :math:`\rho_k`).

        Returns
        -------
        list of PhaseResult
            The phases run by this call (``K - n_phases``; empty if there are already K).

        Used in: chapter 7, chapter 10 (long runs that resume).
        """
        K = check_int(K, "K")
        if on_phase is not None and not callable(on_phase):
            raise TypeError(f"on_phase must be callable or None, got {type(on_phase).__name__}")
        n_iters_first = None if n_iters_first is None else check_int(n_iters_first, "n_iters_first")
        tau_first = None if tau_first is None else check_positive(tau_first, "tau_first")
        target = K
        if checkpoint is not None:
            checkpoint = os.fspath(checkpoint)
            if self.n_phases == 0 and os.path.exists(checkpoint):
                self.load(checkpoint, max_phases=K)
        out = []
        while self.n_phases < target:
            first = self.n_phases == 0
            out.append(
                self.phase(
                    source,
                    data,
                    n_iters=n_iters_first if first else None,
                    tau=tau_first if first else None,
                    progress=progress,
                )
            )
            if checkpoint is not None:
                self.save(checkpoint)
            if on_phase is not None:
                on_phase(self)
        return out

    def _checkpoint_config(self) -> dict:
        # the hyperparameters a resume must share (the seed is not one: the file holds the random state)
        keys = (
            "divergence tau lr lr_critic betas r1 ema_decay per_dim_average independent_latents "
            "instance_noise n_iters batch_size noise_dim parametrization lr_schedule"
        ).split()
        initial = "identity" if self.initial_map is _identity else type(self.initial_map).__name__
        return {**{k: getattr(self, k) for k in keys}, "initial_map": initial}

    def save(self, path: str | os.PathLike) -> None:
        r"""Save :meth:`state_dict` and the hyperparameters to a file (:func:`train.save_checkpoint`).

        .. math::

            \text{file} \leftarrow \text{state after phase } K - 1 \text{ (atomically, with its SHA-256)}.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        None

        Used in: chapter 10 (checkpoint / resume), :meth:`run`.
        """
        save_checkpoint(path, self.state_dict(), kind=_KIND, config=self._checkpoint_config())

    def load(self, path: str | os.PathLike, *, max_phases: int | None = None) -> None:
        r"""Load a file written by :meth:`save` into this trainer (built with the same networks and
        options).

        .. math::

            \text{state} \leftarrow \text{file}.

        Parameters
        ----------
        path : str or path-like
        max_phases : int, optional
            Refuse a checkpoint holding more phases (what :meth:`run` asks for).

        Returns
        -------
        None

        Raises
        ------
        ValueError
            Naming the file: damaged, not a ``SemiDualJKO`` checkpoint, saved with other hyperparameters
            (listed), for other networks, or past ``max_phases``.

        Used in: chapter 10 (resume), :meth:`run`.
        """

        def restore(state: dict) -> None:
            if max_phases is not None and int(state["n_phases"]) > max_phases:
                n = int(state["n_phases"])
                raise ValueError(f"checkpoint {os.fspath(path)!r} holds {n} phases, more than K={max_phases}")
            self._restore(state)

        self.trainer.load(path, kind=_KIND, config=self._checkpoint_config(), restore=restore, what="trainer")

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume at a phase boundary (networks, optimizers, EMA, chain,
        generators, history).

        .. math::

            \\text{state} = (T, v, \\text{Adam states}, \\bar T_{\\mathrm{EMA}},
            (T_0, \\dots, T_{K-1}), K).

        Returns
        -------
        dict
            Serialisable with ``torch.save``.

        Used in: chapter 10 (checkpoint / resume).
        """
        return {
            "trainer": self.trainer.state_dict(),
            "chain": [m.state_dict() for m in self.chain],
            "chain_ema": [m.state_dict() for m in self.chain_ema],
            "initial_map": (
                self.initial_map.state_dict() if isinstance(self.initial_map, nn.Module) else None
            ),
            "n_phases": self.n_phases,
            "noise_generator": self._noise_generator.get_state(),
            "history": [vars(r).copy() for r in self.history],
            "parametrization": self.parametrization,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a trainer built with the same networks and options.

        .. math::

            \\text{state} \\mapsto (T, v, \\text{Adam states}, \\dots).

        Parameters
        ----------
        state : dict
            From :meth:`state_dict`.

        Returns
        -------
        None

        Used in: chapter 10 (resume).
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("parametrization") != self.parametrization:
            raise ValueError(
                f"state is for parametrization {state.get('parametrization')!r}, this trainer "
                f"uses {self.parametrization!r}"
            )
        self.trainer.load_state_dict(state["trainer"])
        self._restore(state)

    def _restore(self, state: dict) -> None:
        if state["initial_map"] is not None and isinstance(self.initial_map, nn.Module):
            self.initial_map.load_state_dict(state["initial_map"])
        self.chain = []
        for sd in state["chain"]:
            m = self._frozen_copy(self.map)
            m.load_state_dict(sd)
            self.chain.append(m)
        self.chain_ema = []
        for sd in state["chain_ema"]:
            m = self._frozen_copy(self.map)
            m.load_state_dict(sd)
            self.chain_ema.append(m)
        self.n_phases = int(state["n_phases"])
        if self._noise_generator is not self.generator:
            self._noise_generator.set_state(state["noise_generator"])
        self.history = [PhaseResult(**r) for r in state["history"]]
        self._old = None


# ---------------------------------------------------------------------------------------------
# Presets: the settings the book uses in 2-D and for the exact Gaussian family
# ---------------------------------------------------------------------------------------------


def toy_trainer(
    dim: int = 2,
    *,
    hidden: int = 64,
    noise_dim: int = 2,
    seed: int = 0,
    dtype: torch.dtype | None = torch.float64,
    device: str | torch.device | None = None,
    **options,
) -> SemiDualJKO:
    r"""S-JKO with the book's low-dimensional networks and settings (chapter 7's toy runs).

    .. math::

        T(x, z) = x + \mathrm{ResMLP}([x, z]), \quad v = \mathrm{MLP}(y), \quad
        \Psi = \mathrm{KL},\ \tau = 1,

    a :class:`LatentMap` over a :class:`~gwf_tutorial.nets.ResidualMLP` (width ``hidden``, 2 blocks,
    started at the identity) with ``noise_dim`` latent inputs, an MLP potential (width ``hidden``,
    depth 3), Adam learning rates 1e-3 for both, R1 weight 0.2, 150 iterations per phase, batch 256
    and a cosine schedule per phase. Any keyword of :class:`SemiDualJKO` overrides these.

    Against the official toy command (``--h 1 --reg_name none --lr_g 1e-4 --lr_d 2e-5
    --batch_size 400``, 10 phases of 5000 iterations, 128-wide nets, constant learning rates):

    - the step: :math:`\tau = 1` with the summed cost is the official ``h = 0.5``
      (:func:`tau_from_h`: ``h = 1`` in d = 2 is :math:`\tau = 2`), half the official step;
    - R1: kept at 0.2, the official ``train.py`` default and its CIFAR-10 setting, so that the toy
      and the image runs share one potential loss; the official toy command turns it off (pass
      ``r1=0`` to follow it);
    - the budget: about 2% of the official iterations, larger learning rates with a per-phase cosine,
      64-wide nets (the CPU budget of the book).

    Chapter 7's numbers are for these settings.

    Parameters
    ----------
    dim : int
        Data dimension.
    hidden : int
    noise_dim : int
    seed : int
        Seeds the network initialisation and the trainer.
    dtype : torch.dtype, optional
    device : str or torch.device, optional
        Where the networks are put, hence where the trainer computes (e.g. ``train.device()``); they
        are initialised on the CPU first, so the initial weights are the same on every machine.
        Default: the CPU.
    **options
        Passed to :class:`SemiDualJKO` (e.g. ``tau``, ``n_iters``, ``divergence``,
        ``parametrization``).

    Returns
    -------
    SemiDualJKO

    Used in: chapter 7 (two circles, 25 Gaussians), chapter 11 (benchmark).
    """
    from gwf_tutorial.nets import MLP, ResidualMLP

    dim = check_int(dim, "dim")
    seed = check_int(seed, "seed", min_value=0)
    noise_dim = check_int(noise_dim, "noise_dim", min_value=0)
    torch.manual_seed(seed)
    map_net = LatentMap(
        ResidualMLP(dim, hidden=hidden, n_blocks=2, in_dim=dim + noise_dim, zero_init_last=True, dtype=dtype)
    )
    potential = MLP(dim, 1, hidden=hidden, depth=3, dtype=dtype)
    if device is not None:
        map_net, potential = map_net.to(device), potential.to(device)
    settings = dict(
        divergence="kl",
        tau=1.0,
        lr=1e-3,
        lr_critic=1e-3,
        noise_dim=noise_dim,
        n_iters=150,
        batch_size=256,
        lr_schedule="cosine",
        seed=seed,
    )
    settings.update(options)
    return SemiDualJKO(map_net, potential, **settings)


def affine_trainer(dim: int, tau: float, *, dtype: torch.dtype = torch.float64, **options) -> SemiDualJKO:
    r"""S-JKO over the exact family for Gaussians: affine maps and quadratic potentials.

    .. math::

        T(x) = A x + b, \qquad v(y) = y^\top C y + e^\top y + g,

    which contain the exact JKO step of KL between Gaussians and its potential
    :math:`v^* = -\log(\rho_{k+1}/\nu)`, so a trained phase can be compared with
    :func:`gwf_tutorial.gaussian.jko_step_kl`. Defaults: KL, Adam 0.05 for both, no R1, 600
    iterations, full batches of 500, cosine schedule, seed 0; keywords of :class:`SemiDualJKO`
    override them.

    Parameters
    ----------
    dim : int
    tau : float
        JKO step ``> 0``.
    dtype : torch.dtype, default float64
    **options
        Passed to :class:`SemiDualJKO`.

    Returns
    -------
    SemiDualJKO

    Used in: chapter 7 (one phase against the closed form; reparameterized vs composed).
    """
    from gwf_tutorial.nets import AffineMap

    dim = check_int(dim, "dim")
    settings = dict(
        divergence="kl",
        tau=tau,
        lr=0.05,
        lr_critic=0.05,
        r1=0.0,
        n_iters=600,
        batch_size=500,
        lr_schedule="cosine",
        seed=0,
    )
    settings.update(options)
    return SemiDualJKO(AffineMap(dim, dtype=dtype), QuadraticPotential(dim, dtype=dtype), **settings)
