r"""Critics: networks whose optimum is a function of the density ratio :math:`r = \rho/\nu`.

The variational critic of an f-divergence maximises :math:`\mathbb E_\rho h - \mathbb E_\nu f^*(h)`
(or Donsker--Varadhan), with optimum :math:`h^* = f'(r)`; the logistic classifier (data 1, model 0) has
optimum :math:`D^* = \log(\nu/\rho)`, so :math:`r = e^{-D^*}`; a learned kernel is the critic of MMD GANs.
The penalties are written once (:func:`add_penalties`):

.. math::

    \frac{\gamma}{2} \mathbb E_{y\sim\nu} |\nabla h(y)|^2
    + \lambda\, \mathbb E\big(|\nabla h(\hat x)| - 1\big)^2,
    \qquad \hat x = t x + (1 - t) y,\ t \sim U[0, 1].

Shared arguments: model samples ``x`` ``(n, d)`` (:math:`\rho`), data ``y`` ``(m, d)`` (:math:`\nu`);
critic values ``h_x`` ``(n,)``, ``h_y`` ``(m,)``; ``generator`` draws minibatches and interpolates;
``optimizer`` (default Adam at ``lr``) keeps its state across calls; ``progress`` shows a bar.
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
    check_samples,
)
from gwf_tutorial.fdiv import FDivergence, _bound, dv_bound, get_fdivergence, variational_bound
from gwf_tutorial.functionals import mmd2_estimate
from gwf_tutorial.kernels import _median_distance, _sqdist, check_pair, check_positive_seq
from gwf_tutorial.nets import MLP
from gwf_tutorial.train import progress as _progress

__all__ = ["Critic", "critic_loss", "dv_loss", "logistic_loss", "r1_penalty", "gradient_penalty",
           "value_and_input_grad", "add_penalties", "CriticHistory", "fit_critic", "LogisticRatio",
           "logistic_ratio", "LearnedKernel", "ExactLogRatio"]  # fmt: skip


def _check_rows(x, name: str, in_dim: int) -> Tensor:
    """Shape check of a per-step input ``(n, in_dim)`` (no values: no host synchronisation)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{name} must have shape (n, {in_dim}), got {tuple(x.shape)}")
    return x


class Critic(nn.Module):
    r"""Scalar critic :math:`h(x) = g_f(N_\phi(x))`: a network and the divergence's output activation
    :math:`g_f` (f-GAN), so that :math:`f^*(h)` is finite; the raw :math:`N_\phi(x)` when ``fdiv`` is None.

    ``net`` (any module ``(n, d) -> (n, 1)`` or ``(n,)``) replaces the default
    :class:`~gwf_tutorial.nets.MLP` of ``hidden``, ``depth``, ``activation`` and ``dtype``. ``forward``
    maps ``(n, d)`` to ``(n,)``; ``raw(x)`` is :math:`N_\phi(x)`.

    Used in: chapters 4, 5 and 9.
    """

    def __init__(self, in_dim: int, fdiv: FDivergence | str | None = None, hidden: int = 128, depth: int = 3,
                 activation: str = "silu", *, net: nn.Module | None = None,
                 dtype: torch.dtype | None = None) -> None:  # fmt: skip
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
        out = _column(self.net(_check_rows(x, "x", self.in_dim)))
        if out.shape != (x.shape[0],):
            raise ValueError(f"the critic network must return shape (n, 1) or (n,), got {out.shape}")
        return out

    def forward(self, x: Tensor) -> Tensor:
        v = self.raw(x)
        return v if self.fdiv is None else self.fdiv.output_activation(v)


def critic_loss(fdiv: FDivergence | str, h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Loss of a variational critic, minus the bound (Donsker--Varadhan for ``KL_DV``), shape ``()``.

    .. math::

        \mathcal L(h) = -\Big(\mathbb E_\rho h - \mathbb E_\nu f^*(h)\Big) \ge -D_f(\rho\|\nu).

    Used in: :func:`~gwf_tutorial.critics.fit_critic` (unchecked, at every step).
    """
    return -variational_bound(fdiv, h_x, h_y)


def dv_loss(h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Loss of a Donsker--Varadhan KL critic, minimised at :math:`h = \log r + c`, shape ``()``.

    .. math::

        \mathcal L(h) = -\Big(\mathbb E_\rho h - \log \mathbb E_\nu e^{h}\Big).

    Used in: no chapter and no library function (:func:`critic_loss` with ``"kl_dv"`` is the same loss).
    """
    return -dv_bound(h_x, h_y)


def logistic_loss(d_x: Tensor, d_y: Tensor) -> Tensor:
    r"""Class-balanced logistic loss, data labelled 1, model samples 0, shape ``()``.

    .. math::

        \mathcal L(D) = \mathbb E_\rho\, \log(1 + e^{D}) + \mathbb E_\nu\, \log(1 + e^{-D}),

    minimised by :math:`D^* = \log(\nu/\rho)` whatever the sample sizes. ``d_x`` ``(n,)``, ``d_y`` ``(m,)``.

    Used in: :func:`~gwf_tutorial.critics.logistic_ratio` (unchecked, at every step).
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
    """:func:`logistic_loss` unchecked (the training loop's per-step form)."""
    return F.softplus(d_x).mean() + F.softplus(-d_y).mean()


def _value_and_grad(critic: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    z = z.detach().requires_grad_(True)
    out = critic(z)
    (g,) = torch.autograd.grad(out.sum(), z, create_graph=True)
    return out, g


def value_and_input_grad(critic: Callable[[Tensor], Tensor], y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Critic values :math:`h(y_j)` and input gradients :math:`\nabla h(y_j)` from one forward pass.

    A per-step primitive: shapes and dtype are checked, values are not. ``y`` ``(m, ...)``.

    Returns
    -------
    values : Tensor, shape of ``critic(y)``
    grad : Tensor, shape (m, ...)
        With a graph (``create_graph=True``), so that a penalty on it trains the critic.

    Used in: :mod:`gwf_tutorial.sjko` and :mod:`gwf_tutorial.cifar10` (S-JKO's potential with R1).
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
    r"""R1 penalty :math:`R_1(h) = \mathbb E_{y \sim \nu} |\nabla h(y)|^2` on data, shape ``()``,
    differentiable in the critic's parameters.

    Used in: :func:`~gwf_tutorial.critics.add_penalties` (the same term, unchecked).
    """
    return _r1(critic, check_samples(y, "y"))


def gradient_penalty(critic: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *,
                     generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    r"""WGAN-GP penalty on interpolates of the pairs :math:`(x_i, y_i)`, :math:`i < \min(n, m)`, shape ``()``.

    .. math::

        GP(h) = \mathbb E\big(|\nabla h(\hat x)| - 1\big)^2, \qquad \hat x = t x + (1 - t) y,\ t \sim U[0, 1].

    Used in: :func:`~gwf_tutorial.critics.add_penalties` (the same term, unchecked).
    """
    return _gp(critic, *check_pair(x, y), generator)


def add_penalties(loss: Tensor, critic: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, r1: float = 0.0,
                  gp: float = 0.0, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    r"""``loss`` plus :math:`\tfrac{r_1}{2} R_1` (:func:`r1_penalty`) and ``gp`` times
    :func:`gradient_penalty`, a zero weight skipping its term: the one place the penalties are added.

    Called at every critic step: shapes only are checked (no device synchronisation).

    Used in: :func:`~gwf_tutorial.critics.fit_critic` and :func:`~gwf_tutorial.critics.logistic_ratio`
    (through their loop), :class:`~gwf_tutorial.jko.CriticObjective`.
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
    r"""Per-iteration record of a critic's training: ``loss`` (total), ``bound`` (minibatch bound; minus
    the loss for the logistic loss) and ``penalty``, lists of length ``n_iters``.

    Used in: :func:`~gwf_tutorial.critics.fit_critic`, :class:`~gwf_tutorial.critics.LogisticRatio`.
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


@dataclass
class _Fit:
    """The checked training settings shared by :func:`fit_critic` and :func:`logistic_ratio`."""

    n_iters: int
    lr: float
    batch_size: int | None
    r1: float
    gp: float
    generator: torch.Generator | None
    optimizer: torch.optim.Optimizer | None
    progress: bool

    @classmethod
    def check(cls, n_iters, lr, batch_size, r1, gp, generator, optimizer, progress) -> _Fit:
        batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        return cls(check_int(n_iters, "n_iters"), check_positive(lr, "lr"), batch_size,
                   check_nonnegative(r1, "r1"), check_nonnegative(gp, "gp"), generator, optimizer,
                   progress)  # fmt: skip


def _train(net: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, fit: _Fit,
           desc: str) -> CriticHistory:  # fmt: skip
    optimizer = fit.optimizer if fit.optimizer is not None else torch.optim.Adam(net.parameters(), lr=fit.lr)
    hist, g = CriticHistory(), fit.generator
    for it in _progress(range(fit.n_iters), desc=desc, disable=None if fit.progress else True):
        xb, yb = _batch(x, fit.batch_size, g), _batch(y, fit.batch_size, g)
        base = loss_fn(_column(net(xb)), _column(net(yb)))
        pen = add_penalties(xb.new_zeros(()), net, xb, yb, r1=fit.r1, gp=fit.gp, generator=g)
        loss = base + pen
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise FlowDivergedError(
                f"{desc}: the loss became {loss_value} at iteration {it} (lr={fit.lr:g}). The empirical "
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


def fit_critic(critic: Critic, x: Tensor, y: Tensor, fdiv: FDivergence | str | None = None,
               n_iters: int = 500, lr: float = 1e-3, *, batch_size: int | None = None, r1: float = 0.0,
               gp: float = 0.0, generator: torch.Generator | None = None,
               optimizer: torch.optim.Optimizer | None = None,
               progress: bool = True) -> CriticHistory:  # fmt: skip
    r"""Train ``critic`` in place on fixed samples: Adam on :func:`critic_loss` plus :func:`add_penalties`.

    .. math::

        \max_\phi\ \mathbb E_\rho h_\phi - \mathbb E_\nu f^*(h_\phi)
        - \tfrac{r_1}{2} \mathbb E_\nu |\nabla h_\phi|^2
        - \mathrm{gp}\, \mathbb E (|\nabla h_\phi(\hat x)| - 1)^2,

    optimum :math:`h = f'(\rho/\nu)`. ``fdiv`` defaults to ``critic.fdiv``; ``batch_size`` (default the
    full samples) draws minibatches with replacement. Raises :class:`~gwf_tutorial._validation.
    FlowDivergedError` (naming ``lr``) when the loss becomes non-finite.

    Used in: chapter 4.
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    fdiv = getattr(critic, "fdiv", None) if fdiv is None else fdiv
    if fdiv is None:
        raise ValueError("fdiv must be given when the critic has no divergence")
    fdiv = get_fdivergence(fdiv)
    x, y = check_pair(x, y)
    fit = _Fit.check(n_iters, lr, batch_size, r1, gp, generator, optimizer, progress)

    def loss_fn(h_x: Tensor, h_y: Tensor) -> Tensor:  # critic_loss, unchecked at every step
        return -_bound(fdiv, h_x, h_y, check_nan=False)

    return _train(critic, loss_fn, x, y, fit, f"critic ({fdiv.name})")


@dataclass
class LogisticRatio:
    r"""A trained logistic classifier ``net`` with logit :math:`D \approx \log(\nu/\rho)` (so
    :math:`r = \rho/\nu \approx e^{-D}`) and its training ``history``; methods map ``(k, d)`` to ``(k,)``.

    Used in: :func:`~gwf_tutorial.critics.logistic_ratio`.
    """

    net: Critic
    history: CriticHistory

    def logit(self, z: Tensor) -> Tensor:
        r""":math:`D(z) \approx \log \nu(z) - \log \rho(z)`."""
        return self.net(z)

    def log_ratio(self, z: Tensor) -> Tensor:
        r""":math:`\log r(z) = -D(z)`."""
        return -self.net(z)

    def ratio(self, z: Tensor) -> Tensor:
        r""":math:`r(z) = \rho(z)/\nu(z) = e^{-D(z)}`."""
        return torch.exp(-self.net(z))


def logistic_ratio(x: Tensor, y: Tensor, net: Critic | None = None, n_iters: int = 500, lr: float = 1e-3, *,
                   hidden: int = 128, depth: int = 3, activation: str = "silu", batch_size: int | None = None,
                   r1: float = 0.0, generator: torch.Generator | None = None,
                   optimizer: torch.optim.Optimizer | None = None,
                   progress: bool = True) -> LogisticRatio:  # fmt: skip
    r"""Estimate the density ratio with a logistic classifier (data label 1, model label 0).

    .. math::

        D^* = \arg\min_D\ \mathbb E_\rho \log(1 + e^{D}) + \mathbb E_\nu \log(1 + e^{-D})
        = \log\frac{\nu}{\rho}, \qquad r = \frac{\rho}{\nu} = e^{-D^*}.

    Adam on :func:`logistic_loss` plus the R1 term of :func:`add_penalties`. ``net`` (trained in place: a
    warm start) defaults to ``Critic(d, None, hidden, depth, activation)`` in
    the dtype of ``x``; ``batch_size`` and ``r1`` as in :func:`fit_critic`.

    Used in: chapter 4; :mod:`gwf_tutorial.drifting` and :mod:`gwf_tutorial.fflows`.
    """
    x, y = check_pair(x, y)
    fit = _Fit.check(n_iters, lr, batch_size, r1, 0.0, generator, optimizer, progress)
    if net is None:
        net = Critic(x.shape[1], None, hidden, depth, activation, dtype=x.dtype).to(x.device)
    elif not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    return LogisticRatio(net, _train(net, _logistic, x, y, fit, "logistic ratio"))


class LearnedKernel(nn.Module):
    r"""A Gaussian-kernel mixture on a learned embedding: the critic of an MMD GAN.

    .. math::

        k_\psi(x, y) = \sum_{l=1}^{L} w_l\, \exp\Big(-\frac{|\phi_\psi(x) - \phi_\psi(y)|^2}
        {2\sigma_l^2}\Big), \qquad \phi_\psi(x) = \big(x,\ g_\psi(x)\big), \qquad w = \mathrm{softmax}(a).

    :math:`g_\psi` (``feature_dim`` outputs) is an MLP of ``hidden``, ``depth``, ``activation`` whose last
    layer starts at zero, or ``embedding``; keeping :math:`x` in :math:`\phi_\psi` keeps the kernel
    characteristic, and at initialisation it is the fixed multi-bandwidth kernel. :math:`\sigma_l` are
    ``bandwidths``, or ``factors`` times the median distance of the pooled embedded sample (detached).
    ``forward(x, y)`` is the Gram matrix ``(n, m)``.

    Used in: chapter 5; :mod:`gwf_tutorial.jko`, :mod:`gwf_tutorial.cifar10`.
    """

    def __init__(self, in_dim: int, feature_dim: int = 8, hidden: int = 64, depth: int = 2,
                 activation: str = "silu", bandwidths=None, *, factors=(0.125, 0.25, 0.5, 1.0, 2.0),
                 dtype: torch.dtype | None = None, embedding: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.feature_dim = check_int(feature_dim, "feature_dim")
        if embedding is not None:
            if not isinstance(embedding, nn.Module):
                raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
            self.net = embedding
        else:
            self.net = MLP(self.in_dim, self.feature_dim, hidden=hidden, depth=depth, activation=activation,
                           dtype=dtype)  # fmt: skip
            nn.init.zeros_(self.net.net[-1].weight)
            nn.init.zeros_(self.net.net[-1].bias)
        self.bandwidths = None if bandwidths is None else check_positive_seq(bandwidths, "bandwidths")
        self.factors = check_positive_seq(factors, "factors")
        n_mix = len(self.bandwidths) if self.bandwidths is not None else len(self.factors)
        self.logits = nn.Parameter(torch.zeros(n_mix, dtype=dtype))

    def features(self, x: Tensor) -> Tensor:
        r"""The embedding :math:`\phi_\psi(x) = (x, g_\psi(x))`, shape ``(n, d + feature_dim)``.

        Used in: chapter 5.
        """
        x = _check_rows(x, "x", self.in_dim)
        return torch.cat([x, self.net(x)], dim=1)

    def weights(self) -> Tensor:
        r"""Mixture weights :math:`w = \mathrm{softmax}(a)`, shape ``(L,)``.

        Used in: chapter 5.
        """
        return torch.softmax(self.logits, dim=0)

    def _sigmas(self, fx: Tensor, fy: Tensor) -> list[float]:
        if self.bandwidths is not None:
            return list(self.bandwidths)
        med = _median_distance(torch.cat([fx.detach(), fy.detach()], dim=0))
        return [f * med for f in self.factors]

    def _gram(self, fa: Tensor, fb: Tensor, sigmas: list[float]) -> Tensor:
        q = _sqdist(fa, fb)
        w = self.weights().to(q.dtype)
        return sum(w[l] * torch.exp(-q / (2.0 * s * s)) for l, s in enumerate(sigmas))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx, fy = self.features(x), self.features(_check_rows(y, "y", self.in_dim))
        return self._gram(fx, fy, self._sigmas(fx, fy))

    def mmd2(self, x: Tensor, y: Tensor, *, unbiased: bool = True) -> Tensor:
        r""":func:`~gwf_tutorial.functionals.mmd2_estimate` (U- or V-statistic) of :math:`k_\psi`, one set
        of bandwidths for the three Gram matrices; shape ``()``, differentiable in ``x``, ``y`` and
        :math:`\psi`.

        Used in: chapter 5.
        """
        fx, fy = self.features(x), self.features(_check_rows(y, "y", self.in_dim))
        sig = self._sigmas(fx, fy)
        gram = lambda a, b: self._gram(a, b, sig)  # noqa: E731
        return mmd2_estimate(gram, fx, fy, unbiased=unbiased, chunk_size=0)  # whole matrices

    def witness(self, x: Tensor, y: Tensor, at: Tensor) -> Tensor:
        r"""MMD witness :math:`w(z) = \frac1n \sum_i k_\psi(z, x_i) - \frac1m \sum_j k_\psi(z, y_j)`, shape
        ``(k,)``, differentiable in ``at`` and :math:`\psi`.

        Used in: chapter 5.
        """
        x, y, at = (_check_rows(t, nm, self.in_dim) for t, nm in ((x, "x"), (y, "y"), (at, "at")))
        fx, fy, fz = self.features(x), self.features(y), self.features(at)
        sig = self._sigmas(fx, fy)
        return self._gram(fz, fx, sig).mean(1) - self._gram(fz, fy, sig).mean(1)


class ExactLogRatio:
    r"""The log density ratio :math:`D(x) = \log p(x) - \log q(x)` of two distributions with
    ``log_prob``: the ideal logistic critic, ``(n, d) -> (n,)``, differentiable in ``x``.

    Used in: chapter 4.
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
