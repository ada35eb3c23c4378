r"""Critics: networks whose optimum is a function of the density ratio :math:`r = \rho/\nu`.

Two ways to read an f-divergence off samples of the model :math:`\rho` (``x``) and the data
:math:`\nu` (``y``):

- the **variational critic** of an f-divergence, trained to maximise

  .. math::

      \mathbb E_\rho h - \mathbb E_\nu f^*(h) \quad (\text{or Donsker--Varadhan }
      \mathbb E_\rho h - \log \mathbb E_\nu e^{h}),

  whose optimum is :math:`h^* = f'(r)` (:class:`Critic`, :func:`critic_loss`, :func:`dv_loss`,
  :func:`fit_critic`);
- the **logistic density-ratio estimator**: a classifier :math:`D` trained with the logistic loss,
  data labelled 1 and model samples 0, whose optimum is :math:`D^* = \log(\nu/\rho)`, so that
  :math:`r = e^{-D}` and any :math:`f'(r)` follows (:func:`logistic_loss`, :func:`logistic_ratio`);
- a **learned kernel** for MMD (:class:`LearnedKernel`): a Gaussian-kernel mixture on a learned
  embedding, trained to maximise :math:`\mathrm{MMD}^2` (the critic of MMD GANs).

Gradient penalties (R1 on data, WGAN-GP on interpolates) are options of the training loop.

References
----------
Nowozin, S., Cseke, B., Tomioka, R. (2016). f-GAN. NeurIPS.
Mescheder, L., Geiger, A., Nowozin, S. (2018). Which training methods for GANs do actually
converge? ICML (R1).
Gulrajani, I. et al. (2017). Improved training of Wasserstein GANs. NeurIPS (WGAN-GP).
Gao, Y. et al. (2019). Deep generative learning via variational gradient flow. ICML (logistic
ratio in VGrow).
Li, C.-L. et al. (2017). MMD GAN: towards deeper understanding of moment matching network. NeurIPS.
Binkowski, M. et al. (2018). Demystifying MMD GANs. ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gwf_tutorial._validation import (
    FlowDivergedError,
    as_tensor,
    check_dtype_like,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.fdiv import FDivergence, _bound, dv_bound, get_fdivergence, variational_bound
from gwf_tutorial.kernels import _median_distance, _sqdist
from gwf_tutorial.nets import MLP
from gwf_tutorial.train import progress as _progress

__all__ = [
    "Critic",
    "critic_loss",
    "dv_loss",
    "logistic_loss",
    "r1_penalty",
    "gradient_penalty",
    "value_and_input_grad",
    "add_penalties",
    "CriticHistory",
    "fit_critic",
    "LogisticRatio",
    "logistic_ratio",
    "LearnedKernel",
    "ExactLogRatio",
]


class Critic(nn.Module):
    r"""Scalar critic :math:`h = g_f(N(x))`: a network followed by the divergence's activation.

    .. math::

        h(x) = g_f\big(N_\phi(x)\big), \qquad g_f : \mathbb R \to (-\infty, s_{\max})
        \ \text{(f-GAN output activation)},

    so that :math:`f^*(h(x))` is finite for every parameter value. With ``fdiv=None`` the raw
    output :math:`N_\phi(x)` is returned (logistic classifiers, WGAN critics).

    Parameters
    ----------
    in_dim : int
        Input dimension d.
    fdiv : FDivergence or str, optional
        Divergence whose :meth:`~gwf_tutorial.fdiv.FDivergence.output_activation` ends the net.
    hidden : int, default 128
        Width of the default :class:`~gwf_tutorial.nets.MLP`.
    depth : int, default 3
        Number of hidden layers of the default MLP.
    activation : str, default "silu"
        Activation of the default MLP.
    net : nn.Module, optional
        Any network mapping ``(n, d)`` to ``(n, 1)`` or ``(n,)``, used instead of the MLP (e.g. a
        quadratic critic in tests, a convolutional critic for images).
    dtype : torch.dtype, optional
        Parameter dtype of the default MLP.

    Notes
    -----
    ``forward(x)`` maps ``(n, d)`` to shape ``(n,)``; ``raw(x)`` gives :math:`N_\phi(x)`.

    Used in: chapter 4 (critics as density ratios, particle f-flows), 5, 6, 11.

    References
    ----------
    Nowozin, Cseke, Tomioka (2016), f-GAN, Section 3 and Table 2.
    """

    def __init__(
        self,
        in_dim: int,
        fdiv: FDivergence | str | None = None,
        hidden: int = 128,
        depth: int = 3,
        activation: str = "silu",
        *,
        net: nn.Module | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.fdiv = None if fdiv is None else get_fdivergence(fdiv)
        if net is None:
            net = MLP(self.in_dim, 1, hidden=hidden, depth=depth, activation=activation, dtype=dtype)
        elif not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net

    def raw(self, x: Tensor) -> Tensor:
        """Raw network output :math:`N_\\phi(x)`, shape ``(n,)``."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape (n, {self.in_dim}), got {tuple(x.shape)}")
        out = self.net(x)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (x.shape[0],):
            raise ValueError(f"the critic network must return shape (n, 1) or (n,), got {out.shape}")
        return out

    def forward(self, x: Tensor) -> Tensor:
        v = self.raw(x)
        return v if self.fdiv is None else self.fdiv.output_activation(v)


def critic_loss(fdiv: FDivergence | str, h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Loss of a variational critic: the negative variational bound.

    .. math::

        \mathcal L(h) = -\Big(\mathbb E_\rho h - \mathbb E_\nu f^*(h)\Big),

    minimised at :math:`h^* = f'(r)` where it equals :math:`-D_f(\rho\|\nu)`. For
    :data:`~gwf_tutorial.fdiv.KL_DV` the Donsker--Varadhan bound is used (:func:`dv_loss`).

    Parameters
    ----------
    fdiv : FDivergence or str
        The divergence.
    h_x : Tensor, shape (n,)
        Critic on model samples :math:`x \sim \rho`.
    h_y : Tensor, shape (m,)
        Critic on data samples :math:`y \sim \nu`.

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 4 (training critics; the GWF code's ``loss_D`` with :math:`d = -h`).

    References
    ----------
    Nguyen, Wainwright, Jordan (2010); Nowozin et al. (2016), f-GAN.
    """
    return -variational_bound(fdiv, h_x, h_y)


def dv_loss(h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Loss of a Donsker--Varadhan KL critic.

    .. math::

        \mathcal L(h) = -\Big(\mathbb E_\rho h - \log \mathbb E_\nu e^{h}\Big),

    minimised at :math:`h = \log r + c` (any constant :math:`c`), value :math:`-\mathrm{KL}(\rho\|\nu)`.

    Parameters
    ----------
    h_x : Tensor, shape (n,)
        Critic on model samples.
    h_y : Tensor, shape (m,)
        Critic on data samples.

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 4 (KL-DV critics, the GWF toy default).

    References
    ----------
    Donsker, Varadhan (1983); Belghazi et al. (2018), MINE.
    """
    return -dv_bound(h_x, h_y)


def logistic_loss(d_x: Tensor, d_y: Tensor) -> Tensor:
    r"""Class-balanced logistic loss, data labelled 1 and model samples labelled 0.

    .. math::

        \mathcal L(D) = \mathbb E_\rho\, \log(1 + e^{D}) + \mathbb E_\nu\, \log(1 + e^{-D}),

    minimised pointwise by :math:`D^* = \log(\nu/\rho)`, whatever the two sample sizes (each class
    is averaged separately); hence :math:`r = \rho/\nu = e^{-D^*}`.

    Parameters
    ----------
    d_x : Tensor, shape (n,)
        Logits on model samples :math:`x \sim \rho` (label 0).
    d_y : Tensor, shape (m,)
        Logits on data samples :math:`y \sim \nu` (label 1).

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 4 (VGrow/EPT density-ratio estimation).

    References
    ----------
    Gao, Y. et al. (2019). Deep generative learning via variational gradient flow. ICML.
    """
    checked = []
    for t, nm in ((d_x, "d_x"), (d_y, "d_y")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 1 or t.numel() == 0:
            raise ValueError(f"{nm} must have shape (n,) with n >= 1, got {tuple(t.shape)}")
        checked.append(check_finite(as_tensor(t, nm), nm))
    return _logistic(*checked)


def _logistic(d_x: Tensor, d_y: Tensor) -> Tensor:
    """:func:`logistic_loss` unchecked: the training loop's per-step form (no host synchronisation)."""
    return F.softplus(d_x).mean() + F.softplus(-d_y).mean()


def _value_and_grad(critic: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    z = z.detach().requires_grad_(True)
    out = critic(z)
    (g,) = torch.autograd.grad(out.sum(), z, create_graph=True)
    return out, g


def value_and_input_grad(critic: Callable[[Tensor], Tensor], y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Critic values and their input gradients at points, from one forward pass (for R1).

    .. math::

        y_j \mapsto \big(h(y_j),\ \nabla_y h(y_j)\big), \qquad
        R_1(h) = \mathbb E_{y\sim\nu} |\nabla h(y)|^2 .

    S-JKO's potential loss needs both :math:`v(y)` and :math:`\nabla v(y)` at the same data points;
    one pass gives both (:func:`r1_penalty` is the mean squared norm of the second). A per-step
    primitive: shapes are checked, values are not (no device synchronisation).

    Parameters
    ----------
    critic : callable
        :math:`h` (or a potential :math:`v`), mapping ``(m, ...)`` to ``(m,)`` or ``(m, 1)``.
    y : Tensor, shape (m, ...)
        Points (detached from any graph; a leaf copy is made).

    Returns
    -------
    values : Tensor, shape of ``critic(y)``
        Differentiable in the critic's parameters.
    grad : Tensor, shape (m, ...)
        :math:`\nabla h(y_j)`, with a graph (``create_graph=True``) so that a penalty on it trains
        the critic.

    Used in: chapter 7 (the S-JKO potential with R1), chapter 10.

    References
    ----------
    Mescheder, Geiger, Nowozin (2018). Which training methods for GANs do actually converge? ICML.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim < 2 or y.shape[0] < 1:
        raise ValueError(f"y must have shape (m, ...) with m >= 1, got {tuple(y.shape)}")
    y = as_tensor(y, "y")  # integers cast, float16 / bfloat16 refused outside autocast (no host sync)
    weight = next((p for p in getattr(critic, "parameters", tuple)() if p.is_floating_point()), None)
    if weight is not None:
        check_dtype_like(y, weight, "y", "the critic's parameters")
    return _value_and_grad(critic, y)


def _r1(critic: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
    _, g = _value_and_grad(critic, y)
    return (g**2).sum(dim=1).mean()


def _gp(critic: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, generator) -> Tensor:
    k = min(x.shape[0], y.shape[0])
    t = torch.rand(k, 1, generator=generator, dtype=x.dtype).to(x.device)
    xh = t * x[:k].detach() + (1 - t) * y[:k].detach()
    _, g = _value_and_grad(critic, xh)
    return ((g.norm(dim=1) - 1) ** 2).mean()


def r1_penalty(critic: Callable[[Tensor], Tensor], y: Tensor) -> Tensor:
    r"""R1 gradient penalty on data samples.

    .. math::

        R_1(h) = \mathbb E_{y \sim \nu} \|\nabla h(y)\|^2

    (the training loss adds :math:`\tfrac{\gamma}{2} R_1`). Differentiable in the critic's
    parameters (computed with ``create_graph=True``).

    Parameters
    ----------
    critic : callable
        ``(m, d) -> (m,)``, e.g. a :class:`Critic`.
    y : Tensor, shape (m, d)
        Data samples.

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 4 and 7 (S-JKO trains its potential with R1, :math:`\gamma = 0.2`).

    References
    ----------
    Mescheder, Geiger, Nowozin (2018). Which training methods for GANs do actually converge? ICML.
    """
    return _r1(critic, check_samples(y, "y"))


def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""WGAN-GP penalty on random interpolates between model and data samples.

    .. math::

        GP(h) = \mathbb E\big(\|\nabla h(\hat x)\| - 1\big)^2, \qquad
        \hat x = t x + (1 - t) y,\ t \sim U[0, 1]

    (pairs :math:`(x_i, y_i)` for :math:`i < \min(n, m)`).

    Parameters
    ----------
    critic : callable
        ``(k, d) -> (k,)``.
    x : Tensor, shape (n, d)
        Model samples.
    y : Tensor, shape (m, d)
        Data samples.
    generator : torch.Generator, optional
        Draws :math:`t`.

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 5 (W1 / IPM critics).

    References
    ----------
    Gulrajani, I. et al. (2017). Improved training of Wasserstein GANs. NeurIPS.
    """
    x = check_samples(x, "x")
    y = check_samples(y, "y")
    check_same_dim(x, y)
    return _gp(critic, x, y, generator)


def add_penalties(
    loss: Tensor,
    critic: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    r1: float = 0.0,
    gp: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""A critic's loss with its gradient penalties: the one place they are added.

    .. math::

        \mathcal L + \frac{\gamma}{2}\, \mathbb E_{y\sim\nu} |\nabla h(y)|^2
        + \lambda\, \mathbb E\big(|\nabla h(\hat x)| - 1\big)^2

    (:func:`r1_penalty` with weight ``r1`` :math:`= \gamma`, :func:`gradient_penalty` with weight
    ``gp`` :math:`= \lambda`; a zero weight skips its term). Called at every critic step of the
    training loops (:func:`fit_critic`, :func:`logistic_ratio`,
    :meth:`gwf_tutorial.jko.CriticObjective.critic_loss`): the loops check their samples and weights
    once at their entry points, so nothing is checked here (no device synchronisation).

    Parameters
    ----------
    loss : Tensor, shape ()
        The critic's loss without penalties (e.g. minus its bound).
    critic : callable
        The function the penalties act on, ``(k, d) -> (k,)`` or ``(k, 1)``.
    x : Tensor, shape (n, d)
        Model samples (the interpolates of the gradient penalty).
    y : Tensor, shape (m, d)
        Data samples.
    r1, gp : float, default 0
        Weights :math:`\gamma, \lambda \ge 0`.
    generator : torch.Generator, optional
        Draws the interpolation weights.

    Returns
    -------
    Tensor, shape ()

    Used in: chapter 4 (critics with R1), chapter 5 (WGAN-GP), chapter 10.
    """
    for t, nm in ((x, "x"), (y, "y")):  # shapes only: an empty batch would give a NaN penalty
        if (r1 > 0 or gp > 0) and (not isinstance(t, Tensor) or t.ndim < 2 or t.shape[0] < 1):
            shape = tuple(getattr(t, "shape", ()))
            raise ValueError(f"{nm} must have shape (n, ...) with n >= 1, got {shape}")
    if r1 > 0:
        loss = loss + 0.5 * r1 * _r1(critic, y)
    if gp > 0:
        loss = loss + gp * _gp(critic, x, y, generator)
    return loss


@dataclass
class CriticHistory:
    r"""Per-iteration record of a critic's training.

    .. math::

        \text{bound}_i = \mathbb E_\rho h_i - \mathbb E_\nu f^*(h_i)\ \text{(minibatch)}, \quad
        \text{loss}_i = -\text{bound}_i + \text{penalties}_i.

    Attributes
    ----------
    loss : list of float
        Total loss per iteration (length ``n_iters``).
    bound : list of float
        Minibatch estimate of the variational bound (for the logistic loss: minus the loss).
    penalty : list of float
        Weighted penalty term per iteration (0 without penalties).

    Used in: chapter 4 (training curves of critics).
    """

    loss: list[float] = field(default_factory=list)
    bound: list[float] = field(default_factory=list)
    penalty: list[float] = field(default_factory=list)


def _batch(z: Tensor, batch_size: int | None, generator: torch.Generator | None) -> Tensor:
    if batch_size is None or batch_size >= z.shape[0]:
        return z
    idx = torch.randint(0, z.shape[0], (batch_size,), generator=generator)
    return z[idx.to(z.device)]


def _column(out: Tensor) -> Tensor:
    """A critic's ``(n, 1)`` output as ``(n,)`` (an ``(n,)`` output passes through)."""
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def _train(
    net: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    n_iters: int,
    lr: float,
    batch_size: int | None,
    r1: float,
    gp: float,
    generator: torch.Generator | None,
    optimizer: torch.optim.Optimizer | None,
    progress: bool,
    desc: str,
) -> CriticHistory:
    if optimizer is None:
        optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    hist = CriticHistory()
    bar = _progress(range(n_iters), desc=desc, disable=None if progress else True)
    for it in bar:
        xb = _batch(x, batch_size, generator)
        yb = _batch(y, batch_size, generator)
        base = loss_fn(_column(net(xb)), _column(net(yb)))
        pen = add_penalties(xb.new_zeros(()), net, xb, yb, r1=r1, gp=gp, generator=generator)
        loss = base + pen
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FlowDivergedError(
                f"{desc}: the loss became {loss_value} at iteration {it} (lr={lr:g}). The empirical "
                "variational bound can be unbounded (a critic can grow without limit at samples of one "
                "side with no samples of the other nearby, e.g. reverse KL or chi^2), and too large a "
                "learning rate diverges; use a gradient penalty (r1=, gp=), a smaller lr or fewer iterations"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        hist.loss.append(loss_value)
        hist.bound.append(-float(base.detach()))
        hist.penalty.append(float(pen.detach()))
    return hist


def _check_training_args(x, y, n_iters, lr, batch_size, r1, gp):
    x = check_samples(x, "x")
    y = check_samples(y, "y")
    check_same_dim(x, y)
    n_iters = check_int(n_iters, "n_iters")
    lr = check_positive(lr, "lr")
    if batch_size is not None:
        batch_size = check_int(batch_size, "batch_size")
    r1 = check_nonnegative(r1, "r1")
    gp = check_nonnegative(gp, "gp")
    return x, y, n_iters, lr, batch_size, r1, gp


def fit_critic(
    critic: Critic,
    x: Tensor,
    y: Tensor,
    fdiv: FDivergence | str | None = None,
    n_iters: int = 500,
    lr: float = 1e-3,
    *,
    batch_size: int | None = None,
    r1: float = 0.0,
    gp: float = 0.0,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
) -> CriticHistory:
    r"""Train a critic on fixed samples by maximising the variational bound (Adam).

    .. math::

        \max_\phi\ \mathbb E_\rho h_\phi - \mathbb E_\nu f^*(h_\phi)
        - \tfrac{\gamma_{R1}}{2} \mathbb E_\nu \|\nabla h_\phi\|^2
        - \lambda_{GP} \mathbb E (\|\nabla h_\phi(\hat x)\| - 1)^2

    (Donsker--Varadhan bound for :data:`~gwf_tutorial.fdiv.KL_DV`). At the optimum
    :math:`h = f'(\rho/\nu)`.

    Parameters
    ----------
    critic : Critic
        Trained in place.
    x : Tensor, shape (n, d)
        Model samples :math:`x \sim \rho`.
    y : Tensor, shape (m, d)
        Data samples :math:`y \sim \nu`.
    fdiv : FDivergence or str, optional
        Default ``critic.fdiv``.
    n_iters : int, default 500
        Optimiser steps.
    lr : float, default 1e-3
        Adam learning rate (ignored if ``optimizer`` is given).
    batch_size : int, optional
        Minibatch size drawn with replacement from each sample (default: full batch).
    r1 : float, default 0
        Weight :math:`\gamma_{R1}` of the R1 penalty.
    gp : float, default 0
        Weight :math:`\lambda_{GP}` of the WGAN-GP penalty.
    generator : torch.Generator, optional
        Draws minibatches and interpolation weights.
    optimizer : torch.optim.Optimizer, optional
        Use this optimiser (e.g. to keep its state across calls).
    progress : bool, default True
        Show a progress bar (``train.progress``).

    Returns
    -------
    CriticHistory
        Lists of length ``n_iters``.

    Raises
    ------
    FlowDivergedError
        (a ``ValueError``, from :mod:`gwf_tutorial._validation`) when the loss becomes non-finite: the
        empirical bound of e.g. reverse KL or :math:`\chi^2` is unbounded (use ``r1`` / ``gp``), or
        ``lr`` is far too large; the message names ``lr``.

    Used in: chapter 4 (critics as density ratios; particle f-flows refit the critic every step).

    References
    ----------
    Nowozin et al. (2016), f-GAN; Mescheder et al. (2018); Gulrajani et al. (2017).
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    if fdiv is None:
        fdiv = getattr(critic, "fdiv", None)
        if fdiv is None:
            raise ValueError("fdiv must be given when the critic has no divergence")
    fdiv = get_fdivergence(fdiv)
    x, y, n_iters, lr, batch_size, r1, gp = _check_training_args(x, y, n_iters, lr, batch_size, r1, gp)

    def loss_fn(h_x: Tensor, h_y: Tensor) -> Tensor:  # critic_loss, unchecked at every step
        return -_bound(fdiv, h_x, h_y, check_nan=False)

    return _train(
        critic,
        loss_fn,
        x,
        y,
        n_iters=n_iters,
        lr=lr,
        batch_size=batch_size,
        r1=r1,
        gp=gp,
        generator=generator,
        optimizer=optimizer,
        progress=progress,
        desc=f"critic ({fdiv.name})",
    )


@dataclass
class LogisticRatio:
    r"""A trained logistic density-ratio estimator.

    .. math::

        D \approx \log(\nu/\rho), \qquad r = \rho/\nu \approx e^{-D}.

    Attributes
    ----------
    net : Critic
        The classifier logit :math:`D`, ``(n, d) -> (n,)`` (data label 1, model label 0).
    history : CriticHistory
        Training record (``bound`` holds minus the logistic loss).

    Used in: chapter 4 (VGrow/EPT, DGflow density ratios).
    """

    net: Critic
    history: CriticHistory

    def logit(self, z: Tensor) -> Tensor:
        r""":math:`D(z) \approx \log \nu(z) - \log \rho(z)`, shape ``(n,)`` for ``z`` ``(n, d)``."""
        return self.net(z)

    def log_ratio(self, z: Tensor) -> Tensor:
        r""":math:`\log r(z) = -D(z)`, shape ``(n,)``."""
        return -self.net(z)

    def ratio(self, z: Tensor) -> Tensor:
        r""":math:`r(z) = \rho(z)/\nu(z) = e^{-D(z)}`, shape ``(n,)``."""
        return torch.exp(-self.net(z))


def logistic_ratio(
    x: Tensor,
    y: Tensor,
    net: Critic | None = None,
    n_iters: int = 500,
    lr: float = 1e-3,
    *,
    hidden: int = 128,
    depth: int = 3,
    activation: str = "silu",
    batch_size: int | None = None,
    r1: float = 0.0,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
) -> LogisticRatio:
    r"""Estimate the density ratio with a logistic classifier (data label 1, model label 0).

    .. math::

        D^* = \arg\min_D\ \mathbb E_\rho \log(1 + e^{D}) + \mathbb E_\nu \log(1 + e^{-D})
        = \log\frac{\nu}{\rho}, \qquad r = \frac{\rho}{\nu} = e^{-D^*},

    after which the f-flow velocity is :math:`v = r f''(r) \nabla D` (KL: :math:`v = \nabla D`).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Model samples :math:`\rho` (label 0).
    y : Tensor, shape (m, d)
        Data samples :math:`\nu` (label 1).
    net : torch.nn.Module, optional
        Classifier ``(n, d) -> (n,)`` or ``(n, 1)`` to train in place (warm start); default a new
        ``Critic(d, None, hidden, depth, activation)`` in the dtype of ``x``.
    n_iters : int, default 500
    lr : float, default 1e-3
    hidden, depth : int
        Size of the default network.
    activation : str, default "silu"
    batch_size : int, optional
        Minibatch size (default: full batch).
    r1 : float, default 0
        R1 penalty weight on data samples.
    generator : torch.Generator, optional
    optimizer : torch.optim.Optimizer, optional
    progress : bool, default True

    Returns
    -------
    LogisticRatio
        ``.logit(z)``, ``.log_ratio(z)``, ``.ratio(z)``, each ``(k, d) -> (k,)``.

    Used in: chapter 4 (VGrow/EPT and DGflow read the ratio off a classifier), chapter 8
    (:class:`gwf_tutorial.drifting.CriticDrift` refits one at every step).

    References
    ----------
    Gao, Y. et al. (2019), VGrow, ICML; Ansari, A. F. et al. (2021). Refining deep generative
    models via discriminator gradient flow. ICLR.
    """
    x, y, n_iters, lr, batch_size, r1, _ = _check_training_args(x, y, n_iters, lr, batch_size, r1, 0.0)
    if net is None:
        net = Critic(x.shape[1], None, hidden, depth, activation, dtype=x.dtype).to(x.device)
    elif not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    hist = _train(
        net,
        _logistic,
        x,
        y,
        n_iters=n_iters,
        lr=lr,
        batch_size=batch_size,
        r1=r1,
        gp=0.0,
        generator=generator,
        optimizer=optimizer,
        progress=progress,
        desc="logistic ratio",
    )
    return LogisticRatio(net, hist)


# ---------------------------------------------------------------------------------------------
# Learned kernels (MMD GAN critics)
# ---------------------------------------------------------------------------------------------


class LearnedKernel(nn.Module):
    r"""A Gaussian-kernel mixture on a learned embedding: the critic of an MMD GAN.

    .. math::

        k_\psi(x, y) = \sum_{l=1}^{L} w_l\, \exp\Big(-\frac{|\phi_\psi(x) - \phi_\psi(y)|^2}
        {2\sigma_l^2}\Big), \qquad \phi_\psi(x) = \big(x,\ g_\psi(x)\big) \in \mathbb R^{d + p},
        \qquad w = \mathrm{softmax}(a),

    with :math:`g_\psi` an MLP whose last layer starts at zero. Keeping :math:`x` in the embedding
    makes :math:`\phi_\psi` injective, so :math:`k_\psi` stays characteristic whatever
    :math:`\psi` (MMD GAN needs an auto-encoder for this, Li et al. 2017); and at initialisation
    :math:`k_\psi` is the fixed multi-bandwidth Gaussian kernel on the raw inputs. The critic's
    parameters :math:`(\psi, a)` are trained to *maximise* :math:`\mathrm{MMD}^2_{k_\psi}` (max
    over the kernel, min over the generator). The kernel is bounded by 1, so the estimate stays in
    :math:`[-2, 2]` and cannot diverge the way an unconstrained f-divergence critic can.

    Parameters
    ----------
    in_dim : int
        Input dimension d.
    feature_dim : int, default 8
        Learned features :math:`p`.
    hidden : int, default 64
        Width of the MLP :math:`g_\psi`.
    depth : int, default 2
        Hidden layers of :math:`g_\psi`.
    activation : str, default "silu"
    bandwidths : sequence of float, optional
        Fixed :math:`\sigma_l > 0`. Default: ``factors`` times the median distance of the pooled
        embedded sample (detached) at each call.
    factors : sequence of float, default (0.125, 0.25, 0.5, 1, 2)
        Multipliers of the median heuristic when ``bandwidths`` is None.
    dtype : torch.dtype, optional
        Parameter dtype.
    embedding : nn.Module, optional
        A network :math:`g_\psi`, ``(n, d) -> (n, feature_dim)``, used instead of the MLP (e.g. a
        convolutional critic on flattened images, chapter 10); ``hidden``, ``depth`` and
        ``activation`` are then unused. Start its last layer at zero to keep the initial kernel the
        fixed one on the raw inputs.

    Notes
    -----
    ``forward(x, y)`` is the Gram matrix, ``(n, d), (m, d) -> (n, m)``.

    Used in: chapter 5 (JKO-MMD with a learned kernel; MMD GANs as switches of one loop), chapter 10.

    References
    ----------
    Li, C.-L. et al. (2017). MMD GAN. NeurIPS. Binkowski, M. et al. (2018). Demystifying MMD GANs.
    ICLR. Korba, Bonet, Caucheteux (2026), GWF, Eq. (18) and official ``kernels.LearnedKernelGram``
    (a softmax-weighted kernel mixture on a discriminator embedding).
    """

    def __init__(
        self,
        in_dim: int,
        feature_dim: int = 8,
        hidden: int = 64,
        depth: int = 2,
        activation: str = "silu",
        bandwidths=None,
        *,
        factors=(0.125, 0.25, 0.5, 1.0, 2.0),
        dtype: torch.dtype | None = None,
        embedding: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.feature_dim = check_int(feature_dim, "feature_dim")
        if embedding is not None:
            if not isinstance(embedding, nn.Module):
                raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
            self.net = embedding
        else:
            self.net = MLP(
                self.in_dim, self.feature_dim, hidden=hidden, depth=depth, activation=activation, dtype=dtype
            )
            last = self.net.net[-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        if bandwidths is not None:
            if isinstance(bandwidths, str) or not hasattr(bandwidths, "__len__") or len(bandwidths) == 0:
                raise ValueError(f"bandwidths must be a non-empty sequence of numbers, got {bandwidths!r}")
            bandwidths = tuple(check_positive(b, "bandwidths") for b in bandwidths)
        if isinstance(factors, str) or not hasattr(factors, "__len__") or len(factors) == 0:
            raise ValueError(f"factors must be a non-empty sequence of numbers, got {factors!r}")
        self.factors = tuple(check_positive(f, "factors") for f in factors)
        self.bandwidths = bandwidths
        n_mix = len(bandwidths) if bandwidths is not None else len(self.factors)
        self.logits = nn.Parameter(torch.zeros(n_mix, dtype=dtype))

    def _check_x(self, x, name: str) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"{name} must have shape (n, {self.in_dim}), got {tuple(x.shape)}")
        return x

    def features(self, x: Tensor) -> Tensor:
        r"""The embedding :math:`\phi_\psi(x) = (x, g_\psi(x))`.

        .. math::

            \phi_\psi(x) = \big(x,\ g_\psi(x)\big).

        Parameters
        ----------
        x : Tensor, shape (n, d)

        Returns
        -------
        Tensor, shape (n, d + feature_dim)

        Used in: chapter 5.
        """
        x = self._check_x(x, "x")
        return torch.cat([x, self.net(x)], dim=1)

    def weights(self) -> Tensor:
        r"""Mixture weights :math:`w = \mathrm{softmax}(a)`, shape ``(L,)``.

        .. math::

            w_l = e^{a_l} / \textstyle\sum_{l'} e^{a_{l'}}.

        Returns
        -------
        Tensor, shape (L,)

        Used in: chapter 5.
        """
        return torch.softmax(self.logits, dim=0)

    def _sigmas(self, fx: Tensor, fy: Tensor) -> list[float]:
        if self.bandwidths is not None:
            return list(self.bandwidths)
        # features of checked inputs: no input checks here (a training step calls this, see gpu_check)
        med = _median_distance(torch.cat([fx.detach(), fy.detach()], dim=0))
        return [f * med for f in self.factors]

    def _gram(self, fa: Tensor, fb: Tensor, sigmas: list[float]) -> Tensor:
        q = _sqdist(fa, fb)
        w = self.weights().to(q.dtype)
        return sum(w[l] * torch.exp(-q / (2.0 * s * s)) for l, s in enumerate(sigmas))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self.features(x), self.features(self._check_x(y, "y"))
        return self._gram(fx, fy, self._sigmas(fx, fy))

    def mmd2(self, x: Tensor, y: Tensor, *, unbiased: bool = True) -> Tensor:
        r"""Squared MMD of the learned kernel between two samples.

        .. math::

            \widehat{\mathrm{MMD}}{}^2_{k_\psi} = \frac{1}{n(n-1)}\sum_{i \ne i'} k_\psi(x_i, x_{i'})
            + \frac{1}{m(m-1)}\sum_{j \ne j'} k_\psi(y_j, y_{j'})
            - \frac{2}{nm}\sum_{i,j} k_\psi(x_i, y_j)

        (U-statistic; the V-statistic keeps the diagonals and divides by :math:`n^2, m^2`). One
        set of bandwidths is used for the three Gram matrices.

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Model samples.
        y : Tensor, shape (m, d)
            Data samples.
        unbiased : bool, default True

        Returns
        -------
        Tensor, shape ()
            Differentiable in ``x``, ``y`` and the kernel's parameters.

        Used in: chapter 5 (JKO-MMD with a learned kernel).

        References
        ----------
        Gretton, A. et al. (2012). A kernel two-sample test. JMLR.
        """
        x, y = self._check_x(x, "x"), self._check_x(y, "y")
        n, m = x.shape[0], y.shape[0]
        if unbiased and (n < 2 or m < 2):
            raise ValueError("unbiased=True needs at least 2 samples in x and in y")
        fx, fy = self.features(x), self.features(y)
        sig = self._sigmas(fx, fy)
        kxx, kyy, kxy = self._gram(fx, fx, sig), self._gram(fy, fy, sig), self._gram(fx, fy, sig)
        if unbiased:
            txx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
            tyy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        else:
            txx, tyy = kxx.mean(), kyy.mean()
        return txx + tyy - 2.0 * kxy.mean()

    def witness(self, x: Tensor, y: Tensor, at: Tensor) -> Tensor:
        r"""The MMD witness function of the learned kernel.

        .. math::

            w(z) = \frac1n \sum_i k_\psi(z, x_i) - \frac1m \sum_j k_\psi(z, y_j)

        (the first variation of :math:`\tfrac12\mathrm{MMD}^2` in the model; gradient penalties
        act on it, Binkowski et al. 2018).

        Parameters
        ----------
        x : Tensor, shape (n, d)
        y : Tensor, shape (m, d)
        at : Tensor, shape (k, d)

        Returns
        -------
        Tensor, shape (k,)
            Differentiable in ``at`` and the kernel's parameters.

        Used in: chapter 5 (penalised MMD critics).
        """
        x, y, at = self._check_x(x, "x"), self._check_x(y, "y"), self._check_x(at, "at")
        fx, fy, fz = self.features(x), self.features(y), self.features(at)
        sig = self._sigmas(fx, fy)
        return self._gram(fz, fx, sig).mean(1) - self._gram(fz, fy, sig).mean(1)


class ExactLogRatio:
    r"""The log density ratio of two distributions with known densities: the ideal critic.

    .. math::

        D(x) = \log p(x) - \log q(x) = \log\frac{p}{q}(x),

    what a perfect logistic classifier of :math:`p` against :math:`q` outputs as its logit
    (:func:`logistic_ratio` estimates it from samples), and :math:`f'(r)` of it is the optimal
    variational critic. Used to check formulas and velocities against the exact answer.

    Parameters
    ----------
    p, q : objects with ``log_prob(x) -> (n,)``
        E.g. :mod:`gwf_tutorial.targets` distributions.

    Notes
    -----
    ``__call__(x)``: ``(n, d) -> (n,)``, differentiable in ``x``.

    Used in: chapter 4 (the variational bound and the f-flow velocity with the exact ratio).
    """

    def __init__(self, p, q) -> None:
        for name, dist in (("p", p), ("q", q)):
            if not callable(getattr(dist, "log_prob", None)):
                raise TypeError(f"{name} must have a log_prob method, got {type(dist).__name__}")
        self.p, self.q = p, q

    def __call__(self, x: Tensor) -> Tensor:
        return self.p.log_prob(x) - self.q.log_prob(x)

    def __repr__(self) -> str:
        return f"ExactLogRatio({self.p!r}, {self.q!r})"
