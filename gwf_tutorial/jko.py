r"""The parametric JKO step: train a map so that its push-forward makes one JKO step.

One JKO step of an objective :math:`F` from :math:`\rho_k = (T_k)_\#\mu_0` is approximated by
training a map :math:`T_\theta` (an MLP, a residual MLP, or an affine map for tests):

.. math::

    \theta_{k+1} = \operatorname*{arg\,min}_\theta\
    \frac{1}{2\tau}\,\mathbb E_{z\sim\mu_0}\big|T_\theta(z) - T_k(z)\big|^2
    + F\big((T_\theta)_\#\mu_0\big).

The map term bounds :math:`W_2^2((T_\theta)_\#\mu_0, \rho_k)` from above, with equality when
:math:`T_\theta \circ T_k^{-1}` is the optimal map, so the minimum is the JKO value whenever the
family of maps is rich enough. :math:`F` may be

- an **f-divergence** to the data :math:`\nu` (any :class:`~gwf_tutorial.fdiv.FDivergence` or its
  name), estimated through its variational form with a critic :math:`h`; the step is then the
  saddle problem of the GWF paper (:func:`saddle_objective`),

  .. math::

      \min_\theta \max_h\ \mathbb E_{z}\Big[\frac{|T_\theta(z) - T_k(z)|^2}{2\tau}
      + h(T_\theta(z))\Big] - \mathbb E_\nu f^*(h);

- a **sample objective** of :mod:`gwf_tutorial.functionals` (MMD, Sinkhorn divergence, sliced
  Wasserstein, the KDE-based KL), evaluated on the pushed samples;
- an **IPM or a kernel discrepancy beyond f-divergences**: :math:`W_1` through a
  gradient-penalised critic (:class:`WassersteinCritic`), :math:`\mathrm{MMD}^2` with a fixed
  kernel through its U-statistic, no adversary (:class:`UnbiasedMMD`), or with a learned kernel,
  max over the kernel and min over the map (:class:`LearnedKernelMMD`);
- a **sample objective** of :mod:`gwf_tutorial.functionals` (MMD, Sinkhorn divergence, sliced
  Wasserstein, the KDE-based KL), evaluated on the pushed samples;
- a **push-forward objective** computed from the map itself: :class:`PushforwardKL` (KL to a
  target with a known log-density, by change of variables), :class:`GaussianPushforwardKL` and
  :class:`GaussianPushforwardMMD` (exact KL and MMD of the push-forward of a Gaussian by an
  affine map; for tests).

:class:`ParametricJKO` runs a chain of such steps, keeps the history of both terms, checkpoints
at step boundaries and resumes.

**GANs are switches of the same loop** (GWF Section 5): ``tau=None`` drops the transport term,
which leaves the GAN of the chosen divergence (f-GAN, WGAN-GP, MMD GAN);
``symmetric=True`` minimises :math:`D_f(\nu\|\rho)` instead of :math:`D_f(\rho\|\nu)`, the
direction of f-GAN (with ``"gan"`` and ``tau=None``: the original minimax GAN);
``generator_loss="non_saturating"`` replaces the map's loss by the non-saturating one, whose
particle velocity with the optimal critic is that of :math:`\mathrm{KL} - 2\,\mathrm{JS}`, not
of JS (:meth:`ParametricJKO.map_velocity` measures it).

Used in: chapter 4 (the parametric JKO step), chapter 5 (IPMs, MMD and GANs), chapter 6
(step-size study), chapter 11.

References
----------
Jordan, R., Kinderlehrer, D., Otto, F. (1998). The variational formulation of the Fokker--Planck
equation. SIAM J. Math. Anal.
Mokrov, P. et al. (2021). Large-scale Wasserstein gradient flows. NeurIPS (JKO-ICNN).
Fan, J., Zhang, Q., Taghvaei, A., Chen, Y. (2022). Variational Wasserstein gradient flow. ICML.
Korba, A., Bonet, C., Caucheteux, P. (2026). A unifying view of variational generative
Wasserstein flows. arXiv:2605.31369 (official code ``Paulcauch/GWF``: ``loss_D``/``loss_G``,
``loss_D_sym``/``loss_G_sym``, ``--JKO``, and the per-dimension averaged transport cost).
Nowozin, S., Cseke, B., Tomioka, R. (2016). f-GAN. NeurIPS.
Goodfellow, I. et al. (2014). Generative adversarial nets. NeurIPS (minimax and non-saturating
losses).
Arjovsky, M., Bottou, L. (2017). Towards principled methods for training generative adversarial
networks. ICLR (the non-saturating loss follows KL - 2 JS).
Gulrajani, I. et al. (2017). Improved training of Wasserstein GANs. NeurIPS (WGAN-GP).
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gwf_tutorial import gaussian
from gwf_tutorial._validation import (
    as_tensor,
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.critics import Critic, LearnedKernel, add_penalties
from gwf_tutorial.fdiv import FDIVERGENCES, FDivergence, _bound, get_fdivergence
from gwf_tutorial.functionals import Objective, get_objective
from gwf_tutorial.kernels import get_kernel
from gwf_tutorial.train import make_generator, save_checkpoint
from gwf_tutorial.train import progress as _progress
from gwf_tutorial.trainer import Trainer, TrainerPreset, frozen_copy

__all__ = [
    "proximal_cost",
    "saddle_objective",
    "UnbiasedMMD",
    "CriticObjective",
    "VariationalFDivergence",
    "WassersteinCritic",
    "LearnedKernelMMD",
    "get_critic_objective",
    "PushforwardObjective",
    "PushforwardKL",
    "GaussianPushforwardKL",
    "GaussianPushforwardMMD",
    "JKOStepResult",
    "ParametricJKO",
    "VariantRun",
    "train_variants",
]

_PARAMETRIZATIONS = ("reparameterized", "composed")
_GENERATOR_LOSSES = ("minimax", "non_saturating")


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def _check_pair(x_new, x_old) -> tuple[Tensor, Tensor]:
    if not isinstance(x_new, Tensor) or not isinstance(x_old, Tensor):
        raise TypeError("x_new and x_old must be torch tensors")
    if x_new.shape != x_old.shape or x_new.ndim < 2 or x_new.shape[0] < 1:
        raise ValueError(
            f"x_new and x_old must have the same shape (n, ...), got {tuple(x_new.shape)} and "
            f"{tuple(x_old.shape)}"
        )
    return x_new, x_old


def proximal_cost(x_new, x_old, tau, *, per_dim_average: bool = False) -> Tensor:
    r"""Per-sample proximal (transport) cost of a JKO step.

    .. math::

        c_\tau(x_i, x_i') = \frac{|x_i - x_i'|^2}{2\tau}
        \quad\text{or, with per-dimension averaging,}\quad \frac{|x_i - x_i'|^2}{2\tau d}.

    Both official codes (GWF and S-JKO) average over the :math:`d` coordinates, which is the
    math's step with :math:`\tau` replaced by :math:`\tau d`; the default is the math. The one
    proximal cost of the library: S-JKO uses it too (``sjko.transport_cost`` is this function).

    Parameters
    ----------
    x_new : Tensor, shape (n, ...)
        :math:`T_\theta(z_i)` (flattened to ``(n, d)``).
    x_old : Tensor, shape (n, ...)
        :math:`T_k(z_i)`, the paired points of :math:`\rho_k`.
    tau : float
        JKO step :math:`\tau > 0`.
    per_dim_average : bool, default False
        Divide by the dimension :math:`d` as the official codes do.

    Returns
    -------
    Tensor, shape (n,)

    Used in: chapter 4 (the parametric JKO step), chapter 6, chapter 7 (as ``sjko.transport_cost``).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), official code ``losses.transport_cost`` (mean over
    dimensions, weight ``1/lambda2``).
    """
    if isinstance(x_new, Tensor) and isinstance(x_old, Tensor) and x_new.dtype != x_old.dtype:
        raise TypeError(f"x_new and x_old must have the same dtype, got {x_new.dtype} and {x_old.dtype}")
    tau = check_positive(tau, "tau")
    x_new, x_old = _check_pair(x_new, x_old)
    sq = (x_new - x_old).reshape(x_new.shape[0], -1).pow(2)
    sq = sq.mean(dim=1) if per_dim_average else sq.sum(dim=1)
    return sq / (2.0 * tau)


def _values(v, name: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(v).__name__}")
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1 or v.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1) with n >= 1, got {tuple(v.shape)}")
    if bool(torch.isnan(v).any()):
        raise ValueError(f"{name} contains NaN values")
    return v


def _weights(w, like: Tensor, name: str) -> Tensor | None:
    if w is None:
        return None
    w = as_tensor(w, name).to(like)
    if w.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not float(w.sum()) > 0:
        raise ValueError(f"{name} must be finite, non-negative, with a positive sum")
    return w / w.sum()


def _mean(v: Tensor, w: Tensor | None) -> Tensor:
    return v.mean() if w is None else (w * v).sum()


def saddle_objective(
    fdiv: FDivergence | str,
    x_new,
    x_old,
    h_new,
    h_data,
    tau,
    *,
    per_dim_average: bool = False,
    source_weights=None,
    data_weights=None,
) -> Tensor:
    r"""The saddle function of a JKO step on an f-divergence (GWF / VWGF and S-JKO).

    .. math::

        L(T, h) = \mathbb E_{z\sim\mu}\Big[\frac{|T(z) - T_k(z)|^2}{2\tau} + h(T(z))\Big]
        - \mathbb E_{y\sim\nu} f^*(h(y))

    (Donsker--Varadhan: the last term is :math:`\log \mathbb E_\nu e^{h}`). The JKO step is
    :math:`\inf_T \sup_h L` (VWGF, GWF); S-JKO solves :math:`\sup_h \inf_T L` with its potential
    :math:`v = -h` (GWF Prop. 3.1: the two share this :math:`L` and its saddle value). For
    :data:`~gwf_tutorial.fdiv.KL` it equals S-JKO's
    :func:`~gwf_tutorial.sjko.semi_dual_objective` with :math:`v = 1 - h` and
    :math:`\Psi^*(s) = e^s - 1`.

    Parameters
    ----------
    fdiv : FDivergence or str
        The divergence :math:`D_f(\cdot\|\nu)`.
    x_new : Tensor, shape (n, d)
        :math:`T(z_i)`.
    x_old : Tensor, shape (n, d)
        :math:`T_k(z_i)`.
    h_new : Tensor, shape (n,) or (n, 1)
        :math:`h(T(z_i))`.
    h_data : Tensor, shape (m,) or (m, 1)
        :math:`h(y_j)`, :math:`y_j \sim \nu`.
    tau : float
        JKO step :math:`\tau > 0`.
    per_dim_average : bool, default False
        Transport cost divided by :math:`d` (official codes), see :func:`proximal_cost`.
    source_weights : Tensor, shape (n,), optional
        Quadrature weights of the :math:`z_i` (uniform by default; normalised).
    data_weights : Tensor, shape (m,), optional
        Quadrature weights of the :math:`y_j` (uniform by default; normalised).

    Returns
    -------
    Tensor, shape ()
        Differentiable in all tensor arguments.

    Used in: chapter 4 (JKO step on an f-divergence; Prop. 3.1), chapter 7 (S-JKO).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), Eq. (7) and Prop. 3.1; Fan et al. (2022), VWGF;
    Choi, Choi, Kang (2024), S-JKO.
    """
    fdiv = get_fdivergence(fdiv)
    cost = proximal_cost(x_new, x_old, tau, per_dim_average=per_dim_average)
    h_new = _values(h_new, "h_new")
    h_data = _values(h_data, "h_data")
    if h_new.shape != cost.shape:
        raise ValueError(
            f"h_new must have one value per row of x_new ({cost.shape[0]}), got {h_new.shape[0]}"
        )
    ws = _weights(source_weights, cost, "source_weights")
    wd = _weights(data_weights, h_data, "data_weights")
    first = _mean(cost + h_new, ws)
    if fdiv.dv:
        if wd is None:
            last = torch.logsumexp(h_data, 0) - math.log(h_data.shape[0])
        else:
            last = torch.logsumexp(h_data + torch.log(wd), 0)
    else:
        last = _mean(fdiv.conjugate(h_data), wd)
    return first - last


# ---------------------------------------------------------------------------------------------
# MMD^2 with a fixed kernel: the U-statistic, no adversary
# ---------------------------------------------------------------------------------------------


class UnbiasedMMD(Objective):
    r"""Squared MMD with a fixed kernel, estimated by the U-statistic (no critic, no adversary).

    .. math::

        F(\rho) = \mathrm{MMD}_k^2(\rho, \nu), \qquad
        \widehat F = \frac{1}{n(n-1)}\sum_{i \ne i'} k(x_i, x_{i'})
        + \frac{1}{m(m-1)}\sum_{j \ne j'} k(y_j, y_{j'}) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j),

        \frac{\delta F}{\delta\rho}(z) = 2\Big(\mathbb E_\rho k(z, x) - \mathbb E_\nu k(z, y)\Big).

    The U-statistic is an unbiased estimate of :math:`\mathrm{MMD}^2` for i.i.d. samples (it can
    be negative); inside a parametric JKO step it is the map term of GWF's Algorithm 1 with a fixed
    kernel. Note the scale: this is :math:`\mathrm{MMD}^2`, twice
    :class:`~gwf_tutorial.functionals.MMD` (which is :math:`\tfrac12\mathrm{MMD}^2`, V-statistic),
    so its flow runs twice as fast. With ``bandwidth=None`` the median heuristic is applied to each
    pooled batch (detached); pass a bandwidth for a truly fixed kernel.

    Parameters
    ----------
    kernel : str or Kernel, default "gaussian"
        Any name of :func:`~gwf_tutorial.kernels.get_kernel` (``"gaussian"``, ``"imq"``,
        ``"laplace"``, ``"energy"``, ``"multi"``) or a :class:`~gwf_tutorial.kernels.Kernel`.
    bandwidth : float, sequence of float or None
        Bandwidth(s) (a sequence gives a multi-bandwidth kernel, the mean of its terms).
    **kernel_kwargs
        Passed to :func:`~gwf_tutorial.kernels.get_kernel`.

    Used in: chapter 5 (JKO-MMD with a fixed kernel), chapter 6 (step-size study).

    References
    ----------
    Gretton, A. et al. (2012). A kernel two-sample test. JMLR (the U-statistic).
    Korba, Bonet, Caucheteux (2026), GWF, Algorithm 1 and official ``mmd.MMD2(unbiased=True)``.
    """

    name = "mmd_u"

    def __init__(self, kernel="gaussian", bandwidth=None, **kernel_kwargs):
        self.kernel = get_kernel(kernel, bandwidth, **kernel_kwargs)

    def value(self, x, y) -> Tensor:
        r"""The U-statistic of :math:`\mathrm{MMD}_k^2` between particles and target samples.

        .. math::

            \widehat F = \frac{1}{n(n-1)}\sum_{i \ne i'} k(x_i, x_{i'})
            + \frac{1}{m(m-1)}\sum_{j \ne j'} k(y_j, y_{j'}) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j).

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Particles, ``n >= 2``.
        y : Tensor, shape (m, d)
            Target samples, ``m >= 2``.

        Returns
        -------
        Tensor, shape ()
            Differentiable in ``x`` (and ``y``).

        Used in: chapter 5.
        """
        x, y, _ = self._check(x, y)
        if x.shape[0] < 2 or y.shape[0] < 2:
            raise ValueError("the U-statistic needs at least 2 samples in x and in y")
        k = self.kernel.resolve(x, y)
        n, m = x.shape[0], y.shape[0]
        kxx, kyy = k(x, x), k(y, y)
        txx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        tyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        return txx + tyy - 2.0 * k(x, y).mean()

    def first_variation(self, x, y, at) -> Tensor:
        r"""Twice the witness function, shape ``(k,)``.

        .. math::

            \frac{\delta F}{\delta \rho}(z) = \frac2n\sum_j k(z, x_j) - \frac2m\sum_j k(z, y_j).

        Parameters
        ----------
        x : Tensor, shape (n, d)
        y : Tensor, shape (m, d)
        at : Tensor, shape (k, d)

        Returns
        -------
        Tensor, shape (k,)
            Differentiable in ``at``.

        Used in: chapter 5.
        """
        x, y, at = self._check(x, y, at)
        k = self.kernel.resolve(x, y)
        return 2.0 * (k(at, x).mean(1) - k(at, y).mean(1))

    def __repr__(self) -> str:
        return f"UnbiasedMMD(kernel={self.kernel!r})"


# ---------------------------------------------------------------------------------------------
# Objectives estimated by a critic (f-divergences, W1, learned-kernel MMD)
# ---------------------------------------------------------------------------------------------


def _batch_values(v: Tensor, name: str) -> Tensor:
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"the critic must return shape (n,) or (n, 1) on {name}, got {tuple(v.shape)}")
    return v


class CriticObjective:
    r"""An objective estimated adversarially: :math:`F(\rho) = \sup_c B(c;\rho,\nu)`.

    .. math::

        F(\rho) = \sup_{c}\ B(c; \rho, \nu), \qquad
        \text{critic step: } \max_c \widehat B(c; x, y) - \text{penalty}, \qquad
        \text{map step: } \min_T \widehat M(c; T(z), y),

    where the map term :math:`M` has the same gradient in the model samples as :math:`B` (the
    minimax game), or is a different loss (the non-saturating GAN). Subclasses implement
    :meth:`make_critic`, :meth:`bound` and :meth:`map_term`; :class:`ParametricJKO` runs the game.

    Attributes
    ----------
    name : str
    default_gp : float
        WGAN-GP weight used when :class:`ParametricJKO` gets ``gp=None``.
    map_term_is_bound : bool
        True when :meth:`map_term` equals :meth:`bound` (learned-kernel MMD): the chain then
        records the map term's value as the estimate of :math:`F` instead of recomputing it.

    Used in: chapter 4 (f-divergences), chapter 5 (W1, learned-kernel MMD, GANs).
    """

    name = "critic"
    default_gp = 0.0
    map_term_is_bound = False

    def make_critic(self, dim: int, *, hidden: int, depth: int, dtype: torch.dtype) -> nn.Module:
        r"""Default critic network for data of dimension ``dim``.

        .. math::

            c : \mathbb R^d \to \mathbb R \ \text{(or a kernel on } \mathbb R^d\text{)}.

        Parameters
        ----------
        dim : int
        hidden, depth : int
            Size of the network.
        dtype : torch.dtype

        Returns
        -------
        nn.Module

        Used in: chapter 5.
        """
        raise NotImplementedError

    def bound(self, critic: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        r"""The critic's estimate :math:`\widehat B(c; x, y) \le F` (maximised by the critic).

        .. math::

            \widehat B(c; x, y), \qquad x_i \sim \rho,\ y_j \sim \nu.

        Parameters
        ----------
        critic : nn.Module
        x : Tensor, shape (n, d)
            Model samples.
        y : Tensor, shape (m, d)
            Data samples.

        Returns
        -------
        Tensor, shape ()

        Used in: chapter 5.
        """
        raise NotImplementedError

    def map_term(self, critic: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        r"""What the map minimises, with the critic frozen.

        .. math::

            \widehat M(c; x, y), \qquad \nabla_x \widehat M = \nabla_x \widehat B
            \ \text{(minimax)}.

        Parameters
        ----------
        critic : nn.Module
        x : Tensor, shape (n, d)
            :math:`T(z_i)`, with a graph to the map.
        y : Tensor, shape (m, d)

        Returns
        -------
        Tensor, shape ()

        Used in: chapter 5.
        """
        raise NotImplementedError

    def penalty_function(self, critic: nn.Module, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        r"""The scalar function that R1 / WGAN-GP penalties act on (default: the critic itself).

        .. math::

            u : \mathbb R^d \to \mathbb R, \qquad R_1 = \mathbb E_\nu |\nabla u|^2, \quad
            GP = \mathbb E(|\nabla u(\hat x)| - 1)^2.

        Parameters
        ----------
        critic : nn.Module
        x : Tensor, shape (n, d)
        y : Tensor, shape (m, d)

        Returns
        -------
        callable
            ``(k, d) -> (k,)``.

        Used in: chapter 5.
        """
        return critic

    def critic_loss(
        self,
        critic: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        r1: float = 0.0,
        gp: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        r"""The critic's loss: minus its bound, plus R1 / WGAN-GP on :meth:`penalty_function`.

        .. math::

            \mathcal L(c) = -\widehat B(c; x, y) + \frac{\gamma}{2} R_1(u) + \lambda\, GP(u),
            \qquad u = \text{penalty\_function}(c, x, y)

        (the penalties of :func:`gwf_tutorial.critics.add_penalties`).

        Parameters
        ----------
        critic : nn.Module
        x : Tensor, shape (n, d)
            Model samples (no graph to the map).
        y : Tensor, shape (m, d)
            Data samples.
        r1, gp : float, default 0
            Penalty weights :math:`\gamma, \lambda \ge 0`.
        generator : torch.Generator, optional
            Draws the gradient penalty's interpolation weights.

        Returns
        -------
        loss : Tensor, shape ()
            Differentiable in the critic's parameters.
        bound : Tensor, shape ()
            :math:`\widehat B(c; x, y)`, with its graph.

        Used in: chapter 5 (critic steps of :class:`ParametricJKO`), chapter 10.
        """
        bound = self.bound(critic, x, y)
        loss = -bound
        if r1 > 0 or gp > 0:
            fn = self.penalty_function(critic, x, y)
            loss = add_penalties(loss, fn, x, y, r1=r1, gp=gp, generator=generator)
        return loss, bound

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class VariationalFDivergence(CriticObjective):
    r"""An f-divergence through its variational form, in either direction, with a GAN loss switch.

    .. math::

        \text{forward: } D_f(\rho\|\nu) = \sup_h \mathbb E_\rho h - \mathbb E_\nu f^*(h), \qquad
        \text{symmetric: } D_f(\nu\|\rho) = \sup_h \mathbb E_\nu h - \mathbb E_\rho f^*(h)

    (Donsker--Varadhan for :data:`~gwf_tutorial.fdiv.KL_DV`: :math:`\log\mathbb E e^h` in place of
    :math:`\mathbb E f^*(h)`). The map term is the part that depends on the model,

    .. math::

        \text{forward: } \mathbb E_z h(T(z)), \qquad \text{symmetric: } -\mathbb E_z f^*(h(T(z)))
        \ \ (\text{DV: } -\log \mathbb E_z e^{h(T(z))}),

    the minimax game. ``generator_loss="non_saturating"`` (only for ``"gan"`` and ``"js"``, whose
    critic is :math:`\log(1 - D)` forward and :math:`\log D` symmetric, up to :math:`\log 2`)
    replaces it by :math:`-\mathbb E \log D(T(z))`, i.e.
    :math:`\mathbb E f^*(h(T))` forward and :math:`-\mathbb E h(T)` symmetric. With the optimal
    critic the minimax map term moves particles along the JS flow,
    :math:`v = \frac{1}{1 + r}\nabla\log\frac{\nu}{\rho}`, and the non-saturating one along
    :math:`v = \frac{r}{1 + r}\nabla\log\frac{\nu}{\rho}`, the flow of
    :math:`\mathrm{KL} - 2\,\mathrm{JS}` (Arjovsky and Bottou 2017): a different flow.

    Parameters
    ----------
    fdiv : FDivergence or str
    symmetric : bool, default False
        Minimise :math:`D_f(\nu\|\rho)` (the f-GAN direction; GWF's ``--symmetric``).
    generator_loss : {"minimax", "non_saturating"}, default "minimax"

    Used in: chapter 4 (JKO on f-divergences), chapter 5 (f-GANs, minimax vs non-saturating).

    References
    ----------
    Nowozin et al. (2016), f-GAN; Goodfellow et al. (2014); Arjovsky, Bottou (2017), Thm 2.5;
    Korba, Bonet, Caucheteux (2026), official ``losses.loss_D_sym``/``loss_G_sym``.
    """

    def __init__(self, fdiv, *, symmetric: bool = False, generator_loss: str = "minimax"):
        self.fdiv = get_fdivergence(fdiv)
        if not isinstance(symmetric, bool):
            raise TypeError(f"symmetric must be a bool, got {type(symmetric).__name__}")
        if generator_loss not in _GENERATOR_LOSSES:
            raise ValueError(f"generator_loss must be one of {_GENERATOR_LOSSES}, got {generator_loss!r}")
        if generator_loss == "non_saturating" and self.fdiv.name not in ("gan", "js"):
            raise ValueError(
                "generator_loss='non_saturating' is defined for the 'gan' and 'js' divergences "
                f"(critic log D), got {self.fdiv.name!r}"
            )
        self.symmetric = symmetric
        self.generator_loss = generator_loss
        self.name = self.fdiv.name

    def make_critic(self, dim, *, hidden, depth, dtype):
        return Critic(dim, self.fdiv, hidden=hidden, depth=depth, dtype=dtype)

    def bound(self, critic, x, y):
        h_x, h_y = critic(x), critic(y)  # no NaN check per step (a device synchronisation)
        if self.symmetric:
            return _bound(self.fdiv, h_y, h_x, check_nan=False)
        return _bound(self.fdiv, h_x, h_y, check_nan=False)

    def _conjugate_of_critic(self, critic, x, h):
        """f*(h(x)); from the critic's raw output when it is a Critic of this f (stable, see fdiv)."""
        if isinstance(critic, Critic) and critic.fdiv is not None and critic.fdiv.name == self.fdiv.name:
            return self.fdiv._conjugate_activated(_batch_values(critic.raw(x), "x"))
        return self.fdiv._conjugate(h)

    def map_term(self, critic, x, y):
        h = _batch_values(critic(x), "x")
        ns = self.generator_loss == "non_saturating"
        if not self.symmetric:
            return self._conjugate_of_critic(critic, x, h).mean() if ns else h.mean()
        if ns:
            return -h.mean()
        if self.fdiv.dv:
            return -(torch.logsumexp(h, 0) - math.log(h.shape[0]))
        return -self._conjugate_of_critic(critic, x, h).mean()

    def __repr__(self) -> str:
        return (
            f"VariationalFDivergence({self.fdiv.name!r}, symmetric={self.symmetric}, "
            f"generator_loss={self.generator_loss!r})"
        )


class WassersteinCritic(CriticObjective):
    r"""The Wasserstein-1 distance (an IPM) through a gradient-penalised critic (WGAN-GP).

    .. math::

        W_1(\rho, \nu) = \sup_{\mathrm{Lip}(h) \le 1} \mathbb E_\rho h - \mathbb E_\nu h,
        \qquad \text{critic loss } -\big(\mathbb E_\rho h - \mathbb E_\nu h\big)
        + \lambda\,\mathbb E(|\nabla h(\hat x)| - 1)^2,

    map term :math:`\mathbb E_z h(T(z))`; the first variation is the optimal critic, so the
    velocity is :math:`v = -\nabla h^*`. The Lipschitz constraint is the gradient penalty
    (:class:`ParametricJKO` uses ``gp = 10`` unless told otherwise); it makes the critic's
    estimate biased upwards by about :math:`\Delta/(2\lambda)` in the slope.

    Used in: chapter 5 (JKO-W1; WGAN-GP as the no-transport switch), chapter 6.

    References
    ----------
    Arjovsky, M., Chintala, S., Bottou, L. (2017). Wasserstein GAN. ICML.
    Gulrajani, I. et al. (2017). Improved training of Wasserstein GANs. NeurIPS.
    """

    name = "w1"
    default_gp = 10.0

    def make_critic(self, dim, *, hidden, depth, dtype):
        return Critic(dim, None, hidden=hidden, depth=depth, dtype=dtype)

    def bound(self, critic, x, y):
        return _batch_values(critic(x), "x").mean() - _batch_values(critic(y), "y").mean()

    def map_term(self, critic, x, y):
        return _batch_values(critic(x), "x").mean()


class LearnedKernelMMD(CriticObjective):
    r"""Squared MMD with a learned kernel: max over the kernel, min over the map.

    .. math::

        F(\rho) = \sup_\psi \mathrm{MMD}^2_{k_\psi}(\rho, \nu), \qquad
        \min_T \max_\psi\ \frac{1}{2\tau}\mathbb E|T(z) - T_k(z)|^2
        + \widehat{\mathrm{MMD}}{}^2_{k_\psi}(T_\#\mu, \nu),

    with :math:`k_\psi` a :class:`~gwf_tutorial.critics.LearnedKernel` (Gaussian mixture on a
    learned injective embedding, softmax mixture weights) and the U-statistic. Both the critic's
    estimate and the map term are the MMD itself; penalties act on the witness function.

    Parameters
    ----------
    feature_dim : int, default 8
        Learned features of the embedding.
    bandwidths : sequence of float, optional
        Fixed bandwidths of the mixture (default: factors of the median heuristic).
    factors : sequence of float, default (0.125, 0.25, 0.5, 1, 2)
    unbiased : bool, default True
        U-statistic (else V-statistic).

    Used in: chapter 5 (JKO-MMD with a learned kernel; the MMD GAN as the no-transport switch).

    References
    ----------
    Li, C.-L. et al. (2017). MMD GAN. NeurIPS. Binkowski, M. et al. (2018). Demystifying MMD GANs.
    ICLR. Korba, Bonet, Caucheteux (2026), GWF, Eq. (18).
    """

    name = "mmd_learned"
    map_term_is_bound = True

    def __init__(
        self,
        *,
        feature_dim: int = 8,
        bandwidths=None,
        factors=(0.125, 0.25, 0.5, 1.0, 2.0),
        unbiased: bool = True,
    ):
        self.feature_dim = check_int(feature_dim, "feature_dim")
        if not isinstance(unbiased, bool):
            raise TypeError(f"unbiased must be a bool, got {type(unbiased).__name__}")
        self.bandwidths = bandwidths
        self.factors = factors
        self.unbiased = unbiased
        LearnedKernel(1, 1, 1, 0, bandwidths=bandwidths, factors=factors)  # validates the options

    def make_critic(self, dim, *, hidden, depth, dtype):
        return LearnedKernel(
            dim,
            self.feature_dim,
            hidden,
            depth,
            bandwidths=self.bandwidths,
            factors=self.factors,
            dtype=dtype,
        )

    def _mmd(self, critic, x, y):
        if not callable(getattr(critic, "mmd2", None)):
            raise TypeError("LearnedKernelMMD needs a critic with an mmd2 method (a LearnedKernel)")
        return critic.mmd2(x, y, unbiased=self.unbiased)

    def bound(self, critic, x, y):
        return self._mmd(critic, x, y)

    def map_term(self, critic, x, y):
        return self._mmd(critic, x, y)

    def penalty_function(self, critic, x, y):
        xd, yd = x.detach(), y.detach()
        return lambda at: critic.witness(xd, yd, at)

    def __repr__(self) -> str:
        return f"LearnedKernelMMD(feature_dim={self.feature_dim}, unbiased={self.unbiased})"


_CRITIC_OBJECTIVES = {
    "w1": WassersteinCritic,
    "wasserstein1": WassersteinCritic,
    "wasserstein_1": WassersteinCritic,
    "mmd_learned": LearnedKernelMMD,
    "learned_mmd": LearnedKernelMMD,
}


def _is_critic_name(name: str) -> bool:
    key = name.strip().lower().replace("-", "_")
    if key in _CRITIC_OBJECTIVES:
        return True
    try:
        get_fdivergence(key)
    except ValueError:
        return False
    return True


def get_critic_objective(
    name, *, symmetric: bool = False, generator_loss: str = "minimax", **kwargs
) -> CriticObjective:
    r"""Build an adversarial objective by name (a :class:`CriticObjective` passes through).

    .. math::

        \text{f-divergence name} \mapsto \sup_h \mathbb E h - \mathbb E f^*(h), \quad
        \text{"w1"} \mapsto \sup_{\mathrm{Lip}\le 1}, \quad
        \text{"mmd\_learned"} \mapsto \sup_\psi \mathrm{MMD}^2_{k_\psi}.

    Parameters
    ----------
    name : str, FDivergence or CriticObjective
        Any f-divergence of :func:`~gwf_tutorial.fdiv.get_fdivergence`, ``"w1"`` (aliases
        ``"wasserstein1"``, ``"wasserstein_1"``) or ``"mmd_learned"`` (alias ``"learned_mmd"``).
    symmetric : bool, default False
        f-divergences only: :math:`D_f(\nu\|\rho)`.
    generator_loss : {"minimax", "non_saturating"}
        f-divergences ``"gan"`` and ``"js"`` only.
    **kwargs
        Passed to :class:`LearnedKernelMMD`.

    Returns
    -------
    CriticObjective

    Used in: chapter 5, chapter 6 (the step-size study loops over names).
    """
    if isinstance(name, CriticObjective):
        if symmetric or generator_loss != "minimax" or kwargs:
            raise ValueError("symmetric / generator_loss / kwargs cannot be combined with an instance")
        return name
    if isinstance(name, FDivergence):
        return VariationalFDivergence(name, symmetric=symmetric, generator_loss=generator_loss)
    if not isinstance(name, str):
        raise TypeError(
            f"name must be a string, an FDivergence or a CriticObjective, got {type(name).__name__}"
        )
    key = name.strip().lower().replace("-", "_")
    if key in _CRITIC_OBJECTIVES:
        if symmetric or generator_loss != "minimax":
            raise ValueError(
                f"symmetric and generator_loss apply to f-divergences only; {name!r} is symmetric already"
            )
        return _CRITIC_OBJECTIVES[key](**kwargs)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments for an f-divergence: {sorted(kwargs)}")
    try:
        fdiv = get_fdivergence(key)
    except ValueError as err:
        raise ValueError(
            f"unknown critic objective {name!r}; choose an f-divergence ({sorted(FDIVERGENCES)}) or one "
            f"of {sorted(_CRITIC_OBJECTIVES)}"
        ) from err
    return VariationalFDivergence(fdiv, symmetric=symmetric, generator_loss=generator_loss)


# ---------------------------------------------------------------------------------------------
# Objectives computed from the map itself
# ---------------------------------------------------------------------------------------------


class PushforwardObjective:
    r"""An objective :math:`F(T_\#\mu)` computed from the map :math:`T` and source points.

    .. math::

        (T, z_{1:n}) \mapsto \widehat F(T_\#\mu), \qquad z_i \sim \mu.

    Subclasses implement :meth:`pushforward_value`. Unlike a
    :class:`~gwf_tutorial.functionals.Objective` (a function of samples only), these may use the
    map's Jacobian or parameters, e.g. a change of variables.

    Used in: chapter 4 (parametric JKO steps with a known target density).
    """

    name = "pushforward"
    needs_data = False
    needs_reparameterized = False

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        r"""Estimate of :math:`F(T_\#\mu)`.

        .. math::

            \widehat F(T_\#\mu) \text{ from } T \text{ and } z_i \sim \mu.

        Parameters
        ----------
        map_net : nn.Module
            The map :math:`T`.
        z : Tensor, shape (n, d_0)
            Source points.
        x : Tensor, shape (n, d)
            :math:`T(z)` (already computed, with its graph).

        Returns
        -------
        Tensor, shape ()
            Differentiable in the map's parameters.

        Used in: chapter 4 (parametric JKO steps with a known target density).
        """
        raise NotImplementedError


def _log_abs_det_jacobian(map_net: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """``(log|det dT(z)|, T(z))`` with a graph (exact method if the map has one, else autograd)."""
    if callable(getattr(map_net, "log_abs_det_jacobian", None)):
        return map_net.log_abs_det_jacobian(z), map_net(z)
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        x = map_net(zz)
        if x.shape != zz.shape:
            raise ValueError(
                f"PushforwardKL needs a map from R^d to R^d, got {tuple(zz.shape)} -> {tuple(x.shape)}"
            )
        rows = [torch.autograd.grad(x[:, i].sum(), zz, create_graph=True)[0] for i in range(x.shape[1])]
    J = torch.stack(rows, dim=1)  # J[n, i, j] = d x_i / d z_j
    return torch.linalg.slogdet(J).logabsdet, x


class PushforwardKL(PushforwardObjective):
    r"""KL divergence of a push-forward to a target with a known log-density (change of variables).

    .. math::

        \mathrm{KL}(T_\#\mu \,\|\, \pi) = \mathbb E_{z\sim\mu}\Big[\log \mu(z)
        - \log\big|\det \nabla T(z)\big| - \log \pi(T(z))\Big],

    valid for an injective differentiable :math:`T` (JKO-ICNN uses gradients of convex
    functions). :math:`\log\pi` may be unnormalised (a constant shift); without
    ``source_log_prob`` the entropy term :math:`\mathbb E \log\mu` (a constant in the map) is
    dropped. The Jacobian comes from the map's ``log_abs_det_jacobian`` method when it has one
    (:class:`~gwf_tutorial.nets.AffineMap`), else from :math:`d` backward passes (low dimension
    only).

    Parameters
    ----------
    target : callable or object
        :math:`\log\pi`, ``(n, d) -> (n,)``, or an object with a ``log_prob`` method (a
        :mod:`gwf_tutorial.targets` target).
    source_log_prob : callable, optional
        :math:`\log\mu`, ``(n, d_0) -> (n,)``, to report the value of KL itself.

    Used in: chapter 4 (a parametric JKO step that reproduces the exact Gaussian step).

    References
    ----------
    Mokrov, P. et al. (2021). Large-scale Wasserstein gradient flows. NeurIPS.
    """

    name = "pushforward_kl"

    def __init__(self, target, *, source_log_prob: Callable[[Tensor], Tensor] | None = None):
        log_prob = getattr(target, "log_prob", None)
        if callable(log_prob):
            self.log_prob = log_prob
        elif callable(target):
            self.log_prob = target
        else:
            raise TypeError("target must be a log-density callable or an object with log_prob")
        if source_log_prob is not None and not callable(source_log_prob):
            raise TypeError("source_log_prob must be callable")
        self.source_log_prob = source_log_prob

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        logdet, x = _log_abs_det_jacobian(map_net, z)
        lp = self.log_prob(x)
        if not isinstance(lp, Tensor) or lp.shape != (x.shape[0],):
            raise ValueError(f"the target log_prob must return shape ({x.shape[0]},)")
        value = -(logdet + lp).mean()
        if self.source_log_prob is not None:
            value = value + self.source_log_prob(z).mean()
        return value

    def __repr__(self) -> str:
        return "PushforwardKL()"


class GaussianPushforwardKL(PushforwardObjective):
    r"""Exact KL of the push-forward of a Gaussian by an affine map, to a Gaussian target.

    .. math::

        \mathrm{KL}\big((T_{A,b})_\#\mathcal N(m_0, S_0) \,\|\, \mathcal N(m, \Sigma)\big)
        = \mathrm{KL}\big(\mathcal N(A m_0 + b, A S_0 A^\top) \,\|\, \mathcal N(m, \Sigma)\big)

    (:func:`gwf_tutorial.gaussian.kl`). Needs a map with ``push_gaussian`` (e.g.
    :class:`~gwf_tutorial.nets.AffineMap`) and the reparameterized chain (the source is
    :math:`\mu_0 = \mathcal N(m_0, S_0)`); the samples are not used. With it a parametric JKO
    step has no estimation error in :math:`F`, which isolates the optimiser in tests.

    Parameters
    ----------
    source_mean : Tensor, shape (d,)
    source_cov : Tensor, shape (d, d)
    target_mean : Tensor, shape (d,)
    target_cov : Tensor, shape (d, d)

    Used in: chapter 4 (checking the parametric step against the closed-form Gaussian JKO step).
    """

    name = "gaussian_pushforward_kl"
    needs_reparameterized = True

    def __init__(self, source_mean, source_cov, target_mean, target_cov):
        self.source_mean, self.source_cov = check_mean_cov(
            source_mean, source_cov, "source_mean", "source_cov"
        )
        self.target_mean, self.target_cov = check_mean_cov(
            target_mean, target_cov, "target_mean", "target_cov"
        )
        if self.source_mean.ndim != 1 or self.source_mean.shape != self.target_mean.shape:
            raise ValueError(
                "source_mean and target_mean must have the same shape (d,), got "
                f"{tuple(self.source_mean.shape)} and {tuple(self.target_mean.shape)}"
            )

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        push = getattr(map_net, "push_gaussian", None)
        if not callable(push):
            raise TypeError("GaussianPushforwardKL needs a map with push_gaussian (an AffineMap)")
        like = x
        m, S = push(self.source_mean.to(like), self.source_cov.to(like))
        return gaussian.kl(m, S, self.target_mean.to(like), self.target_cov.to(like))

    def __repr__(self) -> str:
        return "GaussianPushforwardKL()"


class GaussianPushforwardMMD(GaussianPushforwardKL):
    r"""Exact squared MMD (Gaussian kernel) of the affine push-forward of a Gaussian, to a Gaussian.

    .. math::

        \mathrm{MMD}_k^2\big(\mathcal N(A m_0 + b, A S_0 A^\top),\ \mathcal N(m, \Sigma)\big),
        \qquad k(x, y) = e^{-|x - y|^2/(2 s^2)}

    (:func:`gwf_tutorial.gaussian.mmd2`): the population value that :class:`UnbiasedMMD`
    estimates without bias. Same use as :class:`GaussianPushforwardKL`: a parametric JKO-MMD step
    with no estimation error, to check the sample-based step against.

    Parameters
    ----------
    source_mean : Tensor, shape (d,)
    source_cov : Tensor, shape (d, d)
    target_mean : Tensor, shape (d,)
    target_cov : Tensor, shape (d, d)
    bandwidth : float
        Kernel bandwidth :math:`s > 0`.

    Used in: chapter 5 (JKO-MMD on Gaussians against the closed form).
    """

    name = "gaussian_pushforward_mmd"

    def __init__(self, source_mean, source_cov, target_mean, target_cov, bandwidth):
        super().__init__(source_mean, source_cov, target_mean, target_cov)
        self.bandwidth = check_positive(bandwidth, "bandwidth")

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        push = getattr(map_net, "push_gaussian", None)
        if not callable(push):
            raise TypeError("GaussianPushforwardMMD needs a map with push_gaussian (an AffineMap)")
        m, S = push(self.source_mean.to(x), self.source_cov.to(x))
        return gaussian.mmd2(m, S, self.target_mean.to(x), self.target_cov.to(x), self.bandwidth)

    def __repr__(self) -> str:
        return f"GaussianPushforwardMMD(bandwidth={self.bandwidth})"


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------


@dataclass
class JKOStepResult:
    r"""Record of one parametric JKO step (per-iteration history of both terms).

    .. math::

        \text{loss}_i = \text{transport}_i + \text{objective}_i, \qquad
        \text{transport}_i = \tfrac{1}{2\tau}\widehat{\mathbb E}|T(z) - T_k(z)|^2, \quad
        \text{objective}_i = \widehat F(T_\#\mu_0)

    (for a critic objective :math:`\widehat F` is the critic's bound on the batch; with
    ``per_dim_average`` the transport term is divided by :math:`d`; with ``tau=None`` it is 0).

    Attributes
    ----------
    k : int
        Step index (0-based): this step produced :math:`\rho_{k+1}`.
    tau : float or None
        JKO step used (None: no transport term, the GAN switch).
    n_iters : int
        Optimiser iterations of the map.
    transport : list of float
        Transport term per iteration (length ``n_iters``).
    objective : list of float
        Objective estimate per iteration.
    loss : list of float
        Their sum.
    critic_bound : list of float
        Critic's bound after its update at each iteration (empty without a critic).
    seconds : float
        Wall-clock time of the step.

    Used in: chapter 4 and 6 (training curves of the two terms).
    """

    k: int
    tau: float | None
    n_iters: int
    transport: list[float] = field(default_factory=list)
    objective: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    critic_bound: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _identity(x: Tensor) -> Tensor:
    return x


def resolve_initial_map(initial_map, map_net: nn.Module) -> Callable:
    """:math:`T_{-1}`: the identity (None), a frozen copy of ``map_net`` ("copy") or a callable."""
    if initial_map is None:
        return _identity
    if isinstance(initial_map, str):
        if initial_map != "copy":
            raise ValueError(f"initial_map must be a callable or 'copy', got {initial_map!r}")
        return frozen_copy(map_net)
    if callable(initial_map):
        return initial_map
    raise TypeError(f"initial_map must be None, 'copy' or a callable, got {type(initial_map).__name__}")


def _resolve_objective(objective, symmetric, generator_loss, parametrization) -> tuple:
    """``(adversary, functional, pushforward)``: exactly one is not None."""
    switches = {"symmetric": symmetric, "generator_loss": generator_loss}
    adversary = functional = pushforward = None
    if isinstance(objective, FDivergence | CriticObjective):
        adversary = get_critic_objective(objective, **switches)
    elif isinstance(objective, str):
        key = objective.strip().lower()
        if _is_critic_name(key):
            adversary = get_critic_objective(key, **switches)
        else:
            try:
                functional = UnbiasedMMD() if key == "mmd_u" else get_objective(key)
            except (ValueError, TypeError) as err:
                raise ValueError(
                    f"objective {objective!r} is neither an f-divergence ({sorted(FDIVERGENCES)}), "
                    "'w1', 'mmd_learned', 'mmd_u' nor a sample objective of "
                    f"gwf_tutorial.functionals ({err})"
                ) from err
    elif isinstance(objective, Objective):
        functional = objective
    elif isinstance(objective, PushforwardObjective):
        pushforward = objective
        if objective.needs_reparameterized and parametrization != "reparameterized":
            raise ValueError(f"{type(objective).__name__} needs parametrization='reparameterized'")
    else:
        raise TypeError(
            "objective must be an FDivergence, a CriticObjective, a name, a functionals.Objective "
            f"or a PushforwardObjective, got {type(objective).__name__}"
        )
    if adversary is None and (symmetric is not False or generator_loss != "minimax"):
        raise ValueError("symmetric and generator_loss apply to f-divergence objectives only")
    return adversary, functional, pushforward


def _make_critic(adversary, critic, map_net: nn.Module, hidden, depth, dtype, device) -> nn.Module | None:
    """The critic of a critic objective: ``critic`` or the objective's default; None without one."""
    if adversary is None:
        if critic is not None:
            raise ValueError(
                "critic is only used with a critic objective (f-divergence, 'w1', 'mmd_learned')"
            )
        return None
    if critic is None:
        d = _infer_dim(map_net)
        if d is None:
            raise ValueError("cannot infer the data dimension from map_net; pass critic=")
        hidden, depth = check_int(hidden, "critic_hidden"), check_int(depth, "critic_depth", min_value=0)
        return adversary.make_critic(d, hidden=hidden, depth=depth, dtype=dtype).to(device)
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    return critic


def _check_sampler(sampler, name: str):
    if isinstance(sampler, Tensor):
        return check_samples(sampler, name)
    if callable(getattr(sampler, "sample", None)) or callable(sampler):
        return sampler
    raise TypeError(
        f"{name} must be a tensor (n, d), a callable f(n, generator=g) or an object with "
        f".sample(n, generator=g); got {type(sampler).__name__}"
    )


def _infer_dim(map_net: nn.Module) -> int | None:
    for attr in ("out_dim", "dim"):
        v = getattr(map_net, attr, None)
        if isinstance(v, int):
            return v
    return None


class _StepLoss:
    """One JKO step as a :class:`~gwf_tutorial.trainer.Trainer` problem (draws in the chain's order)."""

    def __init__(self, chain: ParametricJKO, composed: bool) -> None:
        self.c, self.composed = chain, composed

    def batch(self) -> tuple[Tensor, Tensor, Tensor | None]:
        c = self.c
        z = c._draw(c.source, c.batch_size, "source", c.generator)
        with torch.no_grad():
            src = c._push_chain(z) if self.composed else z
            x_old = src if self.composed else c._old(z)
            x_fake = None if c.critic is None else c.map(src)
        return src, x_old, x_fake

    def critic_loss(self, batch) -> tuple[Tensor, Tensor]:
        c = self.c
        y = c._draw(c.data, c.batch_size, "data", c.generator)
        loss, bound = c.adversary.critic_loss(c.critic, batch[2], y, r1=c.r1, gp=c.gp, generator=c.generator)
        return loss, bound.detach()

    def map_loss(self, batch) -> tuple[Tensor, list[Tensor]]:
        c = self.c
        src, x_old, _ = batch
        x_new = c.map(src)
        if x_new.shape != x_old.shape:
            raise ValueError(
                f"the map's output shape {tuple(x_new.shape)} differs from T_k's {tuple(x_old.shape)}; "
                "use initial_map='copy' when latent and data dimensions differ"
            )
        transport = c._transport(x_new, x_old)
        y = c._draw(c.data, c.batch_size, "data", c.generator) if c._needs_y() else None
        term, value = c._map_terms(x_new, src, y)
        return transport + term, [transport.detach(), value]


_KIND = "jko.ParametricJKO"


class ParametricJKO(TrainerPreset):
    r"""A chain of parametric JKO steps: one trained map per step.

    Step :math:`k` (from :math:`\rho_k`) trains the map by Adam on

    .. math::

        \min_\theta\ \frac{1}{2\tau}\,\mathbb E_{z\sim\mu_0}\big|T_\theta(z) - T_k(z)\big|^2
        + F\big((T_\theta)_\#\mu_0\big),

    with :math:`F` estimated by a critic (a :class:`CriticObjective`: an f-divergence, :math:`W_1`
    or a learned-kernel MMD; the critic is updated by ``critic_steps`` Adam steps on minus its
    bound before each map step, map loss :math:`\frac{1}{2\tau}|T - T_k|^2 + M(c; T)`, e.g.
    :math:`M = h(T)` as in the GWF code's ``loss_D``/``loss_G`` with :math:`d = -h`), a sample
    objective (:class:`UnbiasedMMD`, :class:`~gwf_tutorial.functionals.MMD`,
    :class:`~gwf_tutorial.functionals.SinkhornDivergence`,
    :class:`~gwf_tutorial.functionals.SlicedWasserstein`, ...) or a :class:`PushforwardObjective`.

    GAN switches of the same loop: ``tau=None`` drops the transport term (the GAN of :math:`F`:
    f-GAN, WGAN-GP, MMD GAN, or a generator trained on a fixed-kernel MMD);
    ``symmetric=True`` minimises :math:`D_f(\nu\|\rho)` (the f-GAN direction);
    ``generator_loss="non_saturating"`` swaps the map's loss for the non-saturating one
    (``"gan"``/``"js"``).

    Parametrizations: ``"reparameterized"`` (default, the GWF code) trains one map from the
    latent :math:`\mu_0`, warm-started from :math:`T_k` (and the same Adam state), with
    :math:`T_{-1}` = ``initial_map`` (identity by default); ``"composed"`` trains a fresh step map
    :math:`S_k` (reset to ``map_net``'s initial weights, e.g. the identity of a zero-initialised
    :class:`~gwf_tutorial.nets.ResidualMLP`) on :math:`x \sim \rho_k`, with cost
    :math:`|S_k(x) - x|^2/(2\tau)`, and samples through :math:`S_{K-1}\circ\dots\circ S_0`.

    Parameters
    ----------
    map_net : nn.Module
        The map, ``(n, d_0) -> (n, d)``; trained in place.
    objective : FDivergence, CriticObjective, str, Objective or PushforwardObjective
        :math:`F`. A string is first looked up as a critic objective
        (:func:`get_critic_objective`: the f-divergences ``"kl"``, ``"kl_dv"``, ``"js"``,
        ``"chi2"``, ``"gan"``, ..., then ``"w1"`` and ``"mmd_learned"``), then ``"mmd_u"``
        (:class:`UnbiasedMMD` with the median-heuristic Gaussian kernel), then as a sample
        objective (:func:`~gwf_tutorial.functionals.get_objective`: ``"mmd"``, ``"energy"``,
        ``"sinkhorn"``, ``"sw"``).
    tau : float or None
        JKO step :math:`\tau > 0`; None drops the transport term (the GAN switch).
    source : Tensor (N, d_0), callable or sampler object
        :math:`\mu_0`: a tensor (mini-batches drawn from its rows; used whole when it has at most
        ``batch_size`` rows), a callable ``f(n, generator=g)`` or an object with
        ``.sample(n, generator=g)`` (a :mod:`gwf_tutorial.targets` target).
    data : Tensor (M, d), callable or sampler object, optional
        :math:`\nu`, needed by f-divergences and sample objectives.
    critic : nn.Module, optional
        Critic of a critic objective, ``(n, d) -> (n,)`` (a
        :class:`~gwf_tutorial.critics.LearnedKernel` for ``"mmd_learned"``); default the
        objective's :meth:`CriticObjective.make_critic` with ``critic_hidden``, ``critic_depth``
        (kept across steps).
    n_iters : int, default 500
        Map iterations per step.
    n_iters_first : int, optional
        Iterations of the first step (default ``n_iters``).
    batch_size : int, default 256
        Source and data mini-batch size.
    lr, lr_critic : float, defaults 1e-3
        Adam learning rates of the map and the critic.
    betas : tuple of two floats, default (0.5, 0.9)
        Adam betas (both optimisers).
    critic_steps : int, default 1
        Critic updates per map update.
    critic_hidden, critic_depth : int, defaults 64 and 2
        Size of the default critic.
    r1 : float, default 0
        R1 penalty weight (on data) of the critic (on the witness function for
        ``"mmd_learned"``).
    gp : float, optional
        WGAN-GP penalty weight; default 10 for ``"w1"`` (which requires ``gp > 0``), else 0.
    symmetric : bool, default False
        f-divergences: minimise :math:`D_f(\nu\|\rho)` (see :class:`VariationalFDivergence`).
    generator_loss : {"minimax", "non_saturating"}, default "minimax"
        The map's loss for ``"gan"`` / ``"js"`` (see :class:`VariationalFDivergence`).
    per_dim_average : bool, default False
        Transport cost :math:`|.|^2/(2\tau d)` (both official codes) instead of the math's
        :math:`|.|^2/(2\tau)`.
    parametrization : {"reparameterized", "composed"}
    initial_map : callable or "copy", optional
        :math:`T_{-1}`, with :math:`\rho_0 = (T_{-1})_\#\mu_0`: identity by default; ``"copy"``
        freezes a copy of ``map_net`` at construction (latent and data spaces of different
        dimensions).
    lr_schedule : {"constant", "cosine"}, default "constant"
        Learning rates constant, or cosine-annealed to 0 within each step.
    reset_optimizer : bool, default False
        Fresh Adam state at each step (reparameterized; composed always resets).
    seed : int, optional
        Seed of the chain's generator (mini-batches, sampler draws); default drawn from torch's
        global RNG.
    progress : bool, default True
        Progress bar per step (:func:`gwf_tutorial.train.progress`).

    Attributes
    ----------
    map : nn.Module
    critic : nn.Module or None
    history : list of JKOStepResult
    n_phases : int
        Steps done; :meth:`sample` draws from :math:`\rho_{n\_phases}`.
    chain : list of nn.Module
        Frozen step maps (composed parametrization).
    trainer : gwf_tutorial.trainer.Trainer
        The loop (Adam on the map and the critic, schedule); each step runs :meth:`Trainer.fit`.

    Used in: chapter 4 (parametric JKO on f-divergences, MMD, Sinkhorn, SW), chapter 5 (IPMs,
    MMD, GANs as switches), chapter 6 (step-size study), 11.

    References
    ----------
    Korba, Bonet, Caucheteux (2026), GWF (Algorithm 1 and official ``train.py``); Fan et al.
    (2022), VWGF; Mokrov et al. (2021), JKO-ICNN.

    Examples
    --------
    >>> import torch
    >>> from gwf_tutorial import jko, nets, targets
    >>> t = targets.get_target("eight_gaussians")
    >>> def latent(n, generator=None):
    ...     return torch.randn(n, 2, generator=generator)
    >>> net = nets.ResidualMLP(2, hidden=64, n_blocks=1, zero_init_last=True)
    >>> chain = jko.ParametricJKO(net, "w1", 1.0, latent, t, n_iters=100, progress=False)
    >>> history = chain.run(3)  # 3 JKO steps of W1 (gradient-penalised critic)
    >>> x = chain.sample(1000)
    >>> gan_net = nets.ResidualMLP(2, hidden=64, n_blocks=1, zero_init_last=True)
    >>> gan = jko.ParametricJKO(gan_net, "gan", None, latent, t, symmetric=True, progress=False)
    """

    def __init__(
        self,
        map_net: nn.Module,
        objective,
        tau: float,
        source,
        data=None,
        *,
        critic: nn.Module | None = None,
        n_iters: int = 500,
        n_iters_first: int | None = None,
        batch_size: int = 256,
        lr: float = 1e-3,
        lr_critic: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.9),
        critic_steps: int = 1,
        critic_hidden: int = 64,
        critic_depth: int = 2,
        r1: float = 0.0,
        gp: float | None = None,
        symmetric: bool = False,
        generator_loss: str = "minimax",
        per_dim_average: bool = False,
        parametrization: str = "reparameterized",
        initial_map: Callable | str | None = None,
        lr_schedule: str = "constant",
        reset_optimizer: bool = False,
        seed: int | None = None,
        progress: bool = True,
    ) -> None:
        if not isinstance(map_net, nn.Module):
            raise TypeError(f"map_net must be a torch.nn.Module, got {type(map_net).__name__}")
        params = list(map_net.parameters())
        if not params:
            raise ValueError("map_net has no parameters to train")
        self.map = map_net
        self.device, self.dtype = params[0].device, params[0].dtype
        self.tau = None if tau is None else check_positive(tau, "tau")
        self.n_iters = check_int(n_iters, "n_iters")
        self.n_iters_first = None if n_iters_first is None else check_int(n_iters_first, "n_iters_first")
        self.batch_size = check_int(batch_size, "batch_size")
        self.r1 = check_nonnegative(r1, "r1")
        for flag, nm in ((per_dim_average, "per_dim_average"), (reset_optimizer, "reset_optimizer")):
            if not isinstance(flag, bool):
                raise TypeError(f"{nm} must be a bool, got {type(flag).__name__}")
        self.per_dim_average, self.reset_optimizer = per_dim_average, reset_optimizer
        if parametrization not in _PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {_PARAMETRIZATIONS}, got {parametrization!r}")
        self.parametrization = parametrization
        self.progress = bool(progress)

        self.adversary, self.functional, self.pushforward = _resolve_objective(
            objective, symmetric, generator_loss, parametrization
        )
        self.fdiv: FDivergence | None = getattr(self.adversary, "fdiv", None)
        self.objective = objective
        if gp is None:
            gp = 0.0 if self.adversary is None else self.adversary.default_gp
        self.gp = check_nonnegative(gp, "gp")
        if isinstance(self.adversary, WassersteinCritic) and self.gp == 0:
            raise ValueError(
                "gp must be > 0 for the W1 critic (the gradient penalty is its Lipschitz constraint)"
            )
        self.source, self.data = self._samplers(source, data)

        self.initial_map = resolve_initial_map(initial_map, map_net)
        self._initial_state = copy.deepcopy(map_net.state_dict())
        self._old: Callable = self.initial_map
        self.chain: list[nn.Module] = []
        critic = _make_critic(
            self.adversary, critic, map_net, critic_hidden, critic_depth, self.dtype, self.device
        )
        seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed
        self.seed = check_int(seed, "seed", min_value=0)
        self.generator = make_generator(self.seed)
        self.trainer = Trainer(
            map_net, critic, lr=lr, lr_critic=lr_critic, betas=betas, critic_steps=check_int(critic_steps,
            "critic_steps"), lr_schedule=lr_schedule, generator=self.generator,
        )
        self.history: list[JKOStepResult] = []
        self.n_phases = 0

    def _samplers(self, source, data) -> tuple:
        source = _check_sampler(source, "source")
        needs_data = self.adversary is not None or (
            self.functional is not None and self.functional.needs_target_samples
        )
        if data is None and needs_data:
            raise ValueError(f"data (samples of the target nu) is required for objective {self.objective!r}")
        data = None if data is None else _check_sampler(data, "data")
        for s, nm in ((source, "source"), (data, "data")):
            if isinstance(s, Tensor) and s.dtype != self.dtype:
                raise TypeError(f"{nm} must have the map's dtype {self.dtype}, got {s.dtype}")
        return source, data

    critic = property(lambda self: self.trainer.critic, doc="The critic (None without a critic objective).")

    # -- helpers ---------------------------------------------------------------------------

    def _draw(self, sampler, n: int, name: str, generator: torch.Generator | None) -> Tensor:
        if isinstance(sampler, Tensor):
            if sampler.shape[0] <= n:
                out = sampler
            else:
                idx = torch.randint(0, sampler.shape[0], (n,), generator=generator)
                out = sampler[idx.to(sampler.device)]
        elif callable(getattr(sampler, "sample", None)):
            out = sampler.sample(n, generator=generator)
        else:
            out = sampler(n, generator=generator)
        if not isinstance(out, Tensor) or out.ndim < 2 or out.shape[0] < 1:
            raise ValueError(f"{name} sampler must return a tensor of shape (n, ...), got {out!r:.80}")
        return out.to(device=self.device, dtype=self.dtype)

    def _push_chain(self, z: Tensor) -> Tensor:
        x = self.initial_map(z)
        for m in self.chain:
            x = m(x)
        return x

    def _set_critic_grad(self, flag: bool) -> None:
        for p in self.critic.parameters():
            p.requires_grad_(flag)

    def _map_terms(self, x_new: Tensor, src: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
        """``(map term with graph, detached estimate of F)`` at the pushed samples."""
        if self.adversary is not None:
            self._set_critic_grad(False)
            try:
                term = self.adversary.map_term(self.critic, x_new, y)
                if self.adversary.map_term_is_bound:
                    value = term.detach()
                else:
                    with torch.no_grad():
                        value = self.adversary.bound(self.critic, x_new.detach(), y)
            finally:
                self._set_critic_grad(True)
            return term, value
        if self.functional is not None:
            term = self.functional.value(x_new, y)
            return term, term.detach()
        term = self.pushforward.pushforward_value(self.map, src, x_new)
        return term, term.detach()

    def _transport(self, x_new: Tensor, x_old: Tensor) -> Tensor:
        if self.tau is None:
            return x_new.new_zeros(())
        return proximal_cost(x_new, x_old, self.tau, per_dim_average=self.per_dim_average).mean()

    def _needs_y(self) -> bool:
        return self.adversary is not None or (self.functional is not None and self.data is not None)

    # -- one step ----------------------------------------------------------------------------

    def step(
        self, n_iters: int | None = None, *, progress: bool | None = None
    ) -> JKOStepResult:
        r"""Run one JKO step: train the map (and critic) for ``n_iters`` iterations.

        .. math::

            \rho_{k+1} = (T_{k+1})_\#\mu_0, \quad
            T_{k+1} \approx \operatorname*{arg\,min}_T \frac{1}{2\tau}\mathbb E|T(z) - T_k(z)|^2
            + F(T_\#\mu_0).

        Parameters
        ----------
        n_iters : int, optional
            Default ``n_iters_first`` for the first step, else ``n_iters``.
        progress : bool, optional
            Default the chain's ``progress``.

        Returns
        -------
        JKOStepResult
            Also appended to :attr:`history`.

        Used in: chapter 4.
        """
        k = self.n_phases
        if n_iters is None:
            n_iters = self.n_iters_first if (k == 0 and self.n_iters_first is not None) else self.n_iters
        n_iters = check_int(n_iters, "n_iters")
        show = self.progress if progress is None else bool(progress)
        composed = self.parametrization == "composed"
        if composed:
            self.map.load_state_dict(self._initial_state)
        if composed or self.reset_optimizer:
            self.trainer.set_map(self.map)
        t0 = time.perf_counter()
        names = ("critic_bound",) * (self.critic is not None) + ("transport", "objective")
        hint = f" or a larger tau (tau={self.tau})" if self.tau is not None else ""
        problem = _StepLoss(self, composed)
        logs = self.trainer.fit(
            problem, n_iters, desc=f"JKO step {k + 1}", names=names, progress=show, hint=hint
        ).tolist()
        transport, objective = logs[-2], logs[-1]
        result = JKOStepResult(k=k, tau=self.tau, n_iters=n_iters, transport=transport, objective=objective)
        result.loss = [t + v for t, v in zip(transport, objective)]
        result.critic_bound = logs[0] if len(logs) == 3 else []
        result.seconds = time.perf_counter() - t0
        if composed:
            self.chain.append(frozen_copy(self.map))
        else:
            self._old = frozen_copy(self.map)
        self.n_phases += 1
        self.history.append(result)
        return result

    def run(
        self,
        K: int,
        *,
        checkpoint: str | os.PathLike | None = None,
        resume: bool = True,
        progress: bool | None = None,
    ) -> list[JKOStepResult]:
        r"""Run the chain up to ``K`` JKO steps in total, checkpointing after each step.

        .. math::

            \rho_{k+1} = \mathrm{JKO}_\tau(\rho_k), \qquad k = n\_steps, \dots, K - 1.

        With ``checkpoint`` a path, an existing checkpoint is loaded first (``resume=True``) and
        the state is saved there after every step, so an interrupted run loses at most the step
        in progress; a resumed run continues with the same random stream and gives the same
        result as an uninterrupted one. A damaged file, or one saved with other hyperparameters (the
        seed aside: the random state comes from the file), is refused with a ValueError naming it.

        Parameters
        ----------
        K : int
            Total number of steps wanted (``>= 1``); nothing is done if ``n_phases >= K``.
        checkpoint : str or path, optional
            File for :meth:`save` / :meth:`load`.
        resume : bool, default True
            Load ``checkpoint`` when it exists.
        progress : bool, optional
            See :meth:`step`.

        Returns
        -------
        list of JKOStepResult
            The steps run by this call.

        Used in: chapter 4 (a chain of K steps), chapter 10 (resume long runs).
        """
        K = check_int(K, "K")
        if checkpoint is not None and resume and os.path.exists(checkpoint):
            self.load(checkpoint)
        out = []
        while self.n_phases < K:
            out.append(self.step(progress=progress))
            if checkpoint is not None:
                self.save(checkpoint)
        return out

    # -- the loss and the velocity of the map step, at given batches ------------------------

    def _as_batch(self, t, name: str) -> Tensor:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 2 or t.shape[0] < 1:
            raise ValueError(f"{name} must have shape (n, ...), got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if t.dtype != self.dtype:
            raise TypeError(f"{name} must have the map's dtype {self.dtype}, got {t.dtype}")
        return t.to(self.device)

    def _batch_y(self, y) -> Tensor | None:
        if y is None:
            if self.adversary is not None or (
                self.functional is not None and self.functional.needs_target_samples
            ):
                raise ValueError(f"y (a batch of data samples) is required for objective {self.objective!r}")
            return None
        return self._as_batch(y, "y")

    def _source_pair(self, z) -> tuple[Tensor, Tensor]:
        z = self._as_batch(z, "z")
        with torch.no_grad():
            if self.parametrization == "composed":
                src = self._push_chain(z)
                return src, src
            return z, self._old(z)

    def map_loss(self, z, y=None) -> Tensor:
        r"""The loss the map minimises in the current step, on given batches (critic frozen).

        .. math::

            \ell(T) = \frac{1}{2\tau}\frac1n\sum_i |T(z_i) - T_k(z_i)|^2 + \widehat M(c; T(z), y)

        with :math:`\widehat M` the critic objective's map term (e.g. :math:`\frac1n\sum_i
        h(T(z_i))`; the non-saturating :math:`-\frac1n\sum_i \log D(T(z_i))`), the sample objective
        or the push-forward objective; the transport term is 0 with ``tau=None`` (the generator
        loss of the GAN). Its gradient in the map's parameters is the one :meth:`step` follows.

        Parameters
        ----------
        z : Tensor, shape (n, d_0)
            Source points :math:`z_i \sim \mu_0` (for ``"composed"``: pushed through the chain
            first).
        y : Tensor, shape (m, d), optional
            Data samples (required by critic and data-based objectives).

        Returns
        -------
        Tensor, shape ()
            Differentiable in the map's parameters.

        Used in: chapter 5 (the GAN switch: with ``tau=None`` this is the plain generator loss).
        """
        src, x_old = self._source_pair(z)
        y = self._batch_y(y)
        x_new = self.map(src)
        term, _ = self._map_terms(x_new, src, y)
        return self._transport(x_new, x_old) + term

    def saddle_value(self, z, y=None) -> Tensor:
        r"""The value of the step's saddle function (or objective) on given batches.

        .. math::

            L(T, c) = \frac{1}{2\tau}\frac1n\sum_i |T(z_i) - T_k(z_i)|^2 + \widehat B(c; T(z), y)

        with :math:`\widehat B` the critic's bound (for an f-divergence
        :math:`\frac1n\sum_i h(T(z_i)) - \frac1m\sum_j f^*(h(y_j))`, GWF's Eq. 7), or the sample /
        push-forward objective; no transport term with ``tau=None``, which leaves the GAN's value
        function (e.g. :math:`\mathbb E_\nu \log D + \mathbb E_z \log(1 - D(T(z)))` for ``"gan"``
        with ``symmetric=True``).

        Parameters
        ----------
        z : Tensor, shape (n, d_0)
            Source points.
        y : Tensor, shape (m, d), optional
            Data samples.

        Returns
        -------
        Tensor, shape ()
            Differentiable in the map's and the critic's parameters.

        Used in: chapter 4 (Prop. 3.1), chapter 5 (GAN value functions).
        """
        src, x_old = self._source_pair(z)
        y = self._batch_y(y)
        x_new = self.map(src)
        if self.adversary is not None:
            value = self.adversary.bound(self.critic, x_new, y)
        elif self.functional is not None:
            value = self.functional.value(x_new, y)
        else:
            value = self.pushforward.pushforward_value(self.map, src, x_new)
        return self._transport(x_new, x_old) + value

    def map_velocity(self, x, y=None) -> Tensor:
        r"""The velocity the map's objective term imposes on particles (critic frozen).

        .. math::

            v(x_i) = -n\,\nabla_{x_i} \widehat M(c; x_{1:n}, y),

        the Wasserstein gradient of the map term at the empirical measure of ``x``: for a critic
        term :math:`\frac1n\sum_i \ell(x_i)` it is :math:`-\nabla\ell(x_i)`, e.g.
        :math:`-\nabla h` for the minimax losses and :math:`\nabla \log D` for the non-saturating
        GAN loss. A map step moves :math:`T(z_i)` along this field (plus the transport pull); with
        the optimal critic it is the velocity of the flow the generator follows.

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Particle positions.
        y : Tensor, shape (m, d), optional
            Data samples (required by critic and data-based objectives).

        Returns
        -------
        Tensor, shape (n, d)
            Detached.

        Used in: chapter 5 (minimax vs non-saturating GAN losses as flows).
        """
        if self.pushforward is not None:
            raise TypeError("map_velocity needs a critic or a sample objective, not a PushforwardObjective")
        x = self._as_batch(x, "x")
        y = self._batch_y(y)
        if y is not None:
            check_same_dim(x, y, "x", "y")
        xx = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            term, _ = self._map_terms(xx, xx, y)
            (g,) = torch.autograd.grad(term, xx)
        return -(x.shape[0] * g).detach()

    # -- sampling ---------------------------------------------------------------------------

    @torch.no_grad()
    def push(self, z: Tensor) -> Tensor:
        r"""Push source points through the current chain.

        .. math::

            z \mapsto T_K(z) \ (\text{reparameterized}), \quad
            z \mapsto S_{K-1}\circ\dots\circ S_0(T_{-1}(z)) \ (\text{composed}).

        Parameters
        ----------
        z : Tensor, shape (n, d_0)

        Returns
        -------
        Tensor, shape (n, d)
            Samples of :math:`\rho_K` (``K = n_phases``; :math:`\rho_0` before any step).

        Used in: chapter 4.
        """
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        z = z.to(device=self.device, dtype=self.dtype)
        if self.parametrization == "composed":
            return self._push_chain(z)
        return self._old(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""Draw ``n`` samples of :math:`\rho_K`.

        .. math::

            x_i = T_K(z_i), \qquad z_i \sim \mu_0.

        Parameters
        ----------
        n : int
        generator : torch.Generator, optional
            Used to draw the source points (not the chain's own generator, so sampling does
            not change training). A tensor source with exactly ``n`` rows is used as is, else
            ``n`` rows are drawn with replacement.

        Returns
        -------
        Tensor, shape (n, d)

        Used in: chapter 4.
        """
        n = check_int(n, "n")
        if isinstance(self.source, Tensor) and self.source.shape[0] != n:
            idx = torch.randint(0, self.source.shape[0], (n,), generator=generator)
            z = self.source[idx.to(self.source.device)]
        else:
            z = self._draw(self.source, n, "source", generator)
        return self.push(z)

    # -- checkpoints ------------------------------------------------------------------------

    def state_dict(self) -> dict:
        r"""Everything needed to resume at a step boundary.

        .. math::

            \text{state} = (T, h, \text{Adam states}, (S_0, \dots, S_{K-1}), T_{\text{init}}, K,
            \text{generator}, \text{history}).

        Returns
        -------
        dict
            Serialisable with ``torch.save``.

        Used in: chapter 4 and 10 (checkpoint / resume).
        """
        return {
            "trainer": self.trainer.state_dict(),
            "chain": [m.state_dict() for m in self.chain],
            "initial_map": (
                self.initial_map.state_dict() if isinstance(self.initial_map, nn.Module) else None
            ),
            "initial_state": self._initial_state,
            "n_phases": self.n_phases,
            "history": [vars(r).copy() for r in self.history],
            "parametrization": self.parametrization,
            "tau": self.tau,
        }

    def load_state_dict(self, state: dict) -> None:
        r"""Restore a :meth:`state_dict` into a chain built with the same networks and options.

        .. math::

            \text{state} \mapsto (T, h, \text{Adam states}, \dots).

        Parameters
        ----------
        state : dict

        Returns
        -------
        None

        Used in: chapter 4 and 10 (resume).
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state.get("parametrization") != self.parametrization:
            raise ValueError(
                f"state is for parametrization {state.get('parametrization')!r}, this chain uses "
                f"{self.parametrization!r}"
            )
        self.trainer.load_state_dict(state["trainer"])
        self._restore(state)

    def _restore(self, state: dict) -> None:
        if state["initial_map"] is not None and isinstance(self.initial_map, nn.Module):
            self.initial_map.load_state_dict(state["initial_map"])
        self._initial_state = copy.deepcopy(state["initial_state"])
        self.chain = []
        for sd in state["chain"]:
            m = frozen_copy(self.map)
            m.load_state_dict(sd)
            self.chain.append(m)
        self.n_phases = int(state["n_phases"])
        # at a step boundary of the reparameterized chain, T_k is the current map
        self._old = frozen_copy(self.map) if self.n_phases > 0 else self.initial_map
        self.history = [JKOStepResult(**r) for r in state["history"]]

    def _checkpoint_config(self) -> dict:
        # the hyperparameters a resume must share (the seed is not one: the file holds the random state)
        keys = (
            "tau n_iters n_iters_first batch_size lr lr_critic betas r1 gp critic_steps per_dim_average "
            "reset_optimizer parametrization lr_schedule"
        ).split()
        objective = [o for o in (self.adversary, self.functional, self.pushforward) if o is not None]
        initial = "identity" if self.initial_map is _identity else type(self.initial_map).__name__
        return {**{k: getattr(self, k) for k in keys}, "objective": objective[0], "initial_map": initial}

    def save(self, path: str | os.PathLike) -> None:
        r"""Save :meth:`state_dict` and the hyperparameters to ``path`` (:func:`train.save_checkpoint`).

        .. math::

            \text{state}, \text{hyperparameters} \to \text{file (atomically, with its SHA-256)}.

        Parameters
        ----------
        path : str or path

        Returns
        -------
        None

        Used in: chapter 4 and 10.
        """
        save_checkpoint(path, self.state_dict(), kind=_KIND, config=self._checkpoint_config())

    def load(self, path: str | os.PathLike) -> None:
        r"""Load a checkpoint written by :meth:`save` (:func:`train.load_checkpoint`).

        .. math::

            \text{file} \to \text{state}.

        Parameters
        ----------
        path : str or path

        Returns
        -------
        None

        Raises
        ------
        ValueError
            Naming the file: damaged, not a ``ParametricJKO`` checkpoint, saved with other hyperparameters
            (listed) or for other networks.

        Used in: chapter 4 and 10.
        """
        kw = dict(kind=_KIND, config=self._checkpoint_config(), restore=self._restore, what="chain")
        self.trainer.load(path, **kw)

    def __repr__(self) -> str:
        return (
            f"ParametricJKO(objective={self.objective!r}, tau={self.tau}, n_phases={self.n_phases}, "
            f"parametrization={self.parametrization!r}, per_dim_average={self.per_dim_average})"
        )


# ---------------------------------------------------------------------------------------------
# The same target trained each way: variants of one loop
# ---------------------------------------------------------------------------------------------


@dataclass
class VariantRun:
    r"""One variant of :func:`train_variants`: its chain, its samples and its cost.

    .. math::

        x_i = T_K(z_i), \qquad z_i \sim \mu_0 \ \text{(the same draws for every variant)}.

    Attributes
    ----------
    name : str
    chain : ParametricJKO
        The trained chain (``history`` holds both terms per iteration).
    samples : Tensor or None, shape (n_samples, d)
        Samples of the final law (None if the run diverged).
    cpu_seconds : float
        CPU time of the training (``time.process_time``).
    seconds : float
        Wall-clock time of the training.
    error : str or None
        The message of the :class:`FloatingPointError` of a diverged run.

    Used in: chapter 5 (one target, trained with and without the JKO term).
    """

    name: str
    chain: ParametricJKO
    samples: Tensor | None
    cpu_seconds: float
    seconds: float
    error: str | None = None

    @property
    def diverged(self) -> bool:
        r"""Whether training raised a :class:`FloatingPointError`.

        .. math::

            \text{diverged} \iff \text{a loss term was not finite}.

        Returns
        -------
        bool

        Used in: chapter 5.
        """
        return self.error is not None


def train_variants(
    variants: dict,
    make_map: Callable[[], nn.Module],
    source,
    data=None,
    *,
    n_phases: int,
    n_samples: int = 1000,
    init_seed: int = 0,
    sample_seed: int = 0,
    progress: bool = True,
    **common,
) -> dict[str, VariantRun]:
    r"""Train the same map family on the same data once per variant of the JKO loop.

    .. math::

        \text{for each variant } v:\quad T^{(v)}_{k+1} = \operatorname*{arg\,min}_T
        \frac{1}{2\tau_v}\mathbb E|T(z) - T^{(v)}_k(z)|^2 + F_v(T_\#\mu_0),
        \quad k < K, \qquad x^{(v)}_i = T^{(v)}_K(z_i),

    with :math:`\tau_v = \infty` (``tau=None``) for the GAN of :math:`F_v`. Every variant starts
    from the same initial map (``make_map()`` after ``torch.manual_seed(init_seed)``), uses the
    same keyword arguments ``common`` unless it overrides them, runs :math:`K` = ``n_phases``
    steps and is sampled on the same latent draws (``sample_seed``), so the variants differ only
    in what they name. A run that raises :class:`FloatingPointError` is kept, with
    ``samples=None`` and the error message.

    Parameters
    ----------
    variants : dict {name: dict}
        Each value holds the :class:`ParametricJKO` arguments of one variant: ``"objective"`` and
        ``"tau"`` (required; ``tau=None`` drops the transport term), and any keyword of
        :class:`ParametricJKO` (e.g. ``symmetric``, ``generator_loss``, ``gp``, ``critic_steps``).
    make_map : callable
        ``() -> nn.Module``, a fresh map for each variant.
    source, data
        :math:`\mu_0` and :math:`\nu`, as in :class:`ParametricJKO`.
    n_phases : int
        JKO steps :math:`K` of every variant.
    n_samples : int, default 1000
        Samples drawn from each final law.
    init_seed : int, default 0
        Seed of torch's global RNG before each ``make_map()`` (and the default critic).
    sample_seed : int, default 0
        Seed of the latent draws of the samples.
    progress : bool, default True
        A progress bar over the variants (the chains' own bars stay off).
    **common
        Keyword arguments of :class:`ParametricJKO` shared by all variants (``n_iters``,
        ``batch_size``, ``lr``, ``seed``, ...).

    Returns
    -------
    dict {name: VariantRun}
        In the order of ``variants``.

    Used in: chapter 5 (JKO-MMD, JKO-W1, JKO-KL and their GANs on one target).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), GWF, Section 5 (GANs as the no-JKO switch).
    """
    if not isinstance(variants, dict) or not variants:
        raise TypeError("variants must be a non-empty dict {name: dict of ParametricJKO arguments}")
    if not callable(make_map):
        raise TypeError(f"make_map must be a callable returning an nn.Module, got {type(make_map).__name__}")
    n_phases = check_int(n_phases, "n_phases")
    n_samples = check_int(n_samples, "n_samples")
    init_seed = check_int(init_seed, "init_seed", min_value=0)
    sample_seed = check_int(sample_seed, "sample_seed", min_value=0)
    for name, spec in variants.items():
        if not isinstance(spec, dict):
            raise TypeError(f"variants[{name!r}] must be a dict, got {type(spec).__name__}")
        missing = {"objective", "tau"} - set(spec)
        if missing:
            raise ValueError(f"variants[{name!r}] must name {sorted(missing)} (tau=None for the GAN)")
    common.setdefault("progress", False)
    out: dict[str, VariantRun] = {}
    for name, spec in _progress(variants.items(), desc="variants", disable=not progress):
        kw = {**common, **spec}
        objective, tau = kw.pop("objective"), kw.pop("tau")
        torch.manual_seed(init_seed)
        net = make_map()
        chain = ParametricJKO(net, objective, tau, source, data, **kw)
        c0, t0 = time.process_time(), time.perf_counter()
        error = None
        try:
            chain.run(n_phases)
        except FloatingPointError as err:
            error = str(err)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        samples = None
        if error is None:
            samples = chain.sample(n_samples, generator=make_generator(sample_seed)).detach()
            if not bool(torch.isfinite(samples).all()):
                error, samples = "non-finite samples", None
        out[name] = VariantRun(name, chain, samples, cpu, wall, error)
    return out
