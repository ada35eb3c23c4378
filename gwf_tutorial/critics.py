r"""Critics: networks whose optimum is a function of the density ratio :math:`r = \rho/\nu`.

The variational critic of an f-divergence maximises :math:`\mathbb E_\rho h - \mathbb E_\nu f^*(h)`
(or Donsker--Varadhan), with optimum :math:`h^* = f'(r)`; the logistic classifier (data 1, model 0) has
optimum :math:`D^* = \log(\nu/\rho)`, so :math:`r = e^{-D^*}`; a learned kernel is the critic of MMD GANs.
A critic objective (:class:`CriticObjective`) turns a critic into an objective :math:`F(\rho) = \sup_h
B(h; \rho, \nu)` for the JKO loops. The penalties are written once (:func:`add_penalties`):

.. math::

    \tfrac{\lambda_1}{2} \mathbb E_\nu |\nabla h(y)|^2 + \lambda_2 \mathbb E(|\nabla h(\hat x)| - 1)^2,
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
    check_bool,
    check_choice,
    check_dtype_like,
    check_int,
    check_nonnegative,
    check_positive,
)
from gwf_tutorial.fdiv import FDIVERGENCES, FDivergence, _bound, get_fdivergence, psi_star
from gwf_tutorial.functionals import mmd2_estimate
from gwf_tutorial.kernels import _median_distance, _sqdist, check_pair, check_positive_seq
from gwf_tutorial.nets import MLP
from gwf_tutorial.train import progress as _progress

__all__ = ["Critic", "value_and_input_grad", "add_penalties", "CriticHistory", "fit_critic",
           "LogisticRatio", "logistic_ratio", "LearnedKernel", "ExactLogRatio", "CriticObjective",
           "VariationalFDivergence", "WassersteinCritic", "LearnedKernelMMD", "SemiDualPotential",
           "get_critic_objective"]  # fmt: skip


def _check_rows(x, name: str, in_dim: int) -> Tensor:
    """Shape check of a per-step input ``(n, in_dim)`` (no values: no host synchronisation)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{name} must have shape (n, {in_dim}), got {tuple(x.shape)}")
    return x


class Critic(nn.Module):
    r"""Scalar critic :math:`h(x) = g_f(N_\psi(x))`: a network and the divergence's output activation
    :math:`g_f` (f-GAN), so that :math:`f^*(h)` is finite; the raw :math:`N_\phi(x)` when ``fdiv`` is None.
    ``net`` (``(n, d) -> (n, 1)`` or ``(n,)``) replaces the default :class:`~gwf_tutorial.nets.MLP` of
    ``hidden``, ``depth``, ``activation``, ``dtype``; ``forward`` maps ``(n, d)`` to ``(n,)``.

    Used in: chapters 4, 5 and 9.
    """

    def __init__(self, in_dim: int, fdiv: FDivergence | str | None = None, hidden: int = 128, depth: int = 3,
                 activation: str = "silu", *, net: nn.Module | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        self.in_dim, self.fdiv = check_int(in_dim, "in_dim"), None if fdiv is None else get_fdivergence(fdiv)
        if net is None:
            net = MLP(self.in_dim, 1, hidden=hidden, depth=depth, activation=activation, dtype=dtype)
        elif not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net = net

    def raw(self, x: Tensor) -> Tensor:
        """Raw network output :math:`N_\\psi(x)`, shape ``(n,)``."""
        out = _column(self.net(_check_rows(x, "x", self.in_dim)))
        if out.shape != (x.shape[0],):
            raise ValueError(f"the critic network must return shape (n, 1) or (n,), got {out.shape}")
        return out

    def forward(self, x: Tensor) -> Tensor:
        v = self.raw(x)
        return v if self.fdiv is None else self.fdiv.output_activation(v)


def _logistic(d_x: Tensor, d_y: Tensor) -> Tensor:
    return F.softplus(d_x).mean() + F.softplus(-d_y).mean()


def _value_and_grad(critic: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    z = z.detach().requires_grad_(True)
    out = critic(z)
    (g,) = torch.autograd.grad(out.sum(), z, create_graph=True)
    return out, g


def value_and_input_grad(critic: Callable[[Tensor], Tensor], y: Tensor) -> tuple[Tensor, Tensor]:
    r"""Critic values :math:`h(y_j)` (shape of ``critic(y)``) and input gradients :math:`\nabla h(y_j)` (shape
    of ``y``) with a graph (a penalty on them trains the critic), from one forward pass on ``y`` ``(m, ...)``;
    shapes and dtype are checked, values are not (a per-step primitive).

    Used in: :class:`~gwf_tutorial.critics.SemiDualPotential`, :mod:`gwf_tutorial.cifar10` (S-JKO with R1).
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


def _sq_norms(g: Tensor) -> Tensor:
    """Per-row squared norms :math:`|g_j|^2` of ``(m, ...)``, shape ``(m,)``: the R1 integrand."""
    return g.reshape(g.shape[0], -1).pow(2).sum(dim=1)


def add_penalties(loss: Tensor, critic: Callable[[Tensor], Tensor], x: Tensor, y: Tensor, *, r1: float = 0.0,
                  gp: float = 0.0, generator: torch.Generator | None = None) -> Tensor:  # fmt: skip
    r"""``loss`` plus the penalties of the module docstring, :math:`\lambda_1` = ``r1`` (R1 on ``y``) and
    :math:`\lambda_2` = ``gp`` (WGAN-GP on the pairs :math:`(x_i, y_i)`, :math:`i < \min(n,m)`), a zero weight
    skipping its term: the one place the penalties are added, at every critic step (shapes only checked).

    Used in: :func:`~gwf_tutorial.critics.fit_critic` and :func:`~gwf_tutorial.critics.logistic_ratio`
    (through their loop), :class:`~gwf_tutorial.critics.CriticObjective` and its subclasses.
    """
    for t, nm in ((x, "x"), (y, "y")):  # shapes only: an empty batch would give a NaN penalty
        if (r1 > 0 or gp > 0) and (not isinstance(t, Tensor) or t.ndim < 2 or t.shape[0] < 1):
            shape = tuple(getattr(t, "shape", ()))
            raise ValueError(f"{nm} must have shape (n, ...) with n >= 1, got {shape}")
    if r1 > 0:
        loss = loss + 0.5 * r1 * _sq_norms(_value_and_grad(critic, y)[1]).mean()
    if gp > 0:
        k = min(x.shape[0], y.shape[0])
        t = torch.rand(k, 1, generator=generator, dtype=x.dtype).to(x.device)
        g = _value_and_grad(critic, t * x[:k].detach() + (1 - t) * y[:k].detach())[1]
        loss = loss + gp * ((g.norm(dim=1) - 1) ** 2).mean()
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


def _column(out: Tensor, name: str | None = None) -> Tensor:
    """A critic's ``(n, 1)`` output as ``(n,)`` (an ``(n,)`` output passes through), checked with ``name``."""
    out = out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out
    if name is not None and out.ndim != 1:
        raise ValueError(f"the critic must return shape (n,) or (n, 1) on {name}, got {tuple(out.shape)}")
    return out


def _train(net: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor, desc: str,
           n_iters, lr, batch_size, r1, gp, g, optimizer, progress) -> CriticHistory:  # fmt: skip
    """The training loop of :func:`fit_critic` and :func:`logistic_ratio`, which check ``x`` and ``y``."""
    batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
    n_iters, lr = check_int(n_iters, "n_iters"), check_positive(lr, "lr")
    r1, gp = check_nonnegative(r1, "r1"), check_nonnegative(gp, "gp")
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(net.parameters(), lr=lr)
    hist = CriticHistory()
    for it in _progress(range(n_iters), desc=desc, disable=None if progress else True):
        xb, yb = _batch(x, batch_size, g), _batch(y, batch_size, g)
        base = loss_fn(_column(net(xb)), _column(net(yb)))
        pen = add_penalties(xb.new_zeros(()), net, xb, yb, r1=r1, gp=gp, generator=g)
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


def fit_critic(critic: Critic, x: Tensor, y: Tensor, fdiv: FDivergence | str | None = None,
               n_iters: int = 500, lr: float = 1e-3, *, batch_size: int | None = None, r1: float = 0.0,
               gp: float = 0.0, generator: torch.Generator | None = None,
               optimizer: torch.optim.Optimizer | None = None, progress: bool = True) -> CriticHistory:
    r"""Train ``critic`` in place on fixed samples: Adam on the loss :math:`-(\mathbb E_\rho h - \mathbb E_\nu
    f^*(h)) \ge -D_f(\rho\|\nu)` (minus :func:`~gwf_tutorial.fdiv.variational_bound`; Donsker--Varadhan for
    ``KL_DV``) plus :func:`add_penalties` (the penalties of the module docstring), optimum :math:`h =
    f'(\rho/\nu)`. ``fdiv`` defaults to ``critic.fdiv``; ``batch_size`` (default the full samples) draws
    minibatches with replacement. Raises :class:`~gwf_tutorial._validation.FlowDivergedError` (naming ``lr``)
    when the loss becomes non-finite.

    Used in: chapter 4.
    """
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    fdiv = getattr(critic, "fdiv", None) if fdiv is None else fdiv
    if fdiv is None:
        raise ValueError("fdiv must be given when the critic has no divergence")
    fdiv = get_fdivergence(fdiv)
    x, y = check_pair(x, y)
    loss_fn = lambda h_x, h_y: -_bound(fdiv, h_x, h_y, check_nan=False)  # noqa: E731 (unchecked per step)
    return _train(critic, loss_fn, x, y, f"critic ({fdiv.name})", n_iters, lr, batch_size, r1, gp, generator,
                  optimizer, progress)


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
                   optimizer: torch.optim.Optimizer | None = None, progress: bool = True) -> LogisticRatio:
    r"""The density ratio :math:`r = e^{-D^*}` of the logistic classifier of the module docstring: Adam on the
    class-balanced loss :math:`\mathbb E_\rho \log(1 + e^{D}) + \mathbb E_\nu \log(1 + e^{-D})` (optimum
    :math:`D^*` for any sample sizes) plus R1 (:func:`add_penalties`; ``batch_size`` as in
    :func:`fit_critic`). ``net`` (trained in place, a warm start) defaults to ``Critic(d, None, hidden, depth,
    activation)`` in x's dtype.

    Used in: chapter 4; :mod:`gwf_tutorial.drifting` and :mod:`gwf_tutorial.fflows`.
    """
    x, y = check_pair(x, y)
    if net is None:
        net = Critic(x.shape[1], None, hidden, depth, activation, dtype=x.dtype).to(x.device)
    elif not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    args = (n_iters, lr, batch_size, r1, 0.0, generator, optimizer, progress)
    return LogisticRatio(net, _train(net, _logistic, x, y, "logistic ratio", *args))


class LearnedKernel(nn.Module):
    r"""A Gaussian-kernel mixture on a learned embedding, the critic of an MMD GAN: :math:`k_\psi(x, y) =
    \sum_{l=1}^{L} \alpha_l \exp(-|\phi_\psi(x) - \phi_\psi(y)|^2 / (2\sigma_l^2))`, :math:`\phi_\psi(x) = (x,
    N_\psi(x))`, :math:`\alpha = \mathrm{softmax}(a)`. :math:`N_\psi` (``feature_dim`` outputs) is an MLP of
    ``hidden``, ``depth``, ``activation`` whose last layer starts at zero, or ``embedding``; keeping :math:`x`
    in :math:`\phi_\psi` keeps the kernel characteristic, and at initialisation it is the fixed
    multi-bandwidth kernel. :math:`\sigma_l` are ``bandwidths``, or ``factors`` times the median distance of
    the pooled embedded sample (detached). ``forward(x, y)`` is the Gram matrix ``(n, m)``.

    Used in: chapter 5; :class:`~gwf_tutorial.critics.LearnedKernelMMD`, :mod:`gwf_tutorial.cifar10`.
    """

    def __init__(self, in_dim: int, feature_dim: int = 8, hidden: int = 64, depth: int = 2,
                 activation: str = "silu", bandwidths=None, *, factors=(0.125, 0.25, 0.5, 1.0, 2.0),
                 dtype: torch.dtype | None = None, embedding: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        self.in_dim, self.feature_dim = check_int(in_dim, "in_dim"), check_int(feature_dim, "feature_dim")
        if embedding is not None:
            if not isinstance(embedding, nn.Module):
                raise TypeError(f"embedding must be an nn.Module, got {type(embedding).__name__}")
            self.net = embedding
        else:
            self.net = MLP(self.in_dim, self.feature_dim, hidden, depth, activation, dtype=dtype)
            nn.init.zeros_(self.net.net[-1].weight)
            nn.init.zeros_(self.net.net[-1].bias)
        self.bandwidths = None if bandwidths is None else check_positive_seq(bandwidths, "bandwidths")
        self.factors = check_positive_seq(factors, "factors")
        n_mix = len(self.bandwidths) if self.bandwidths is not None else len(self.factors)
        self.logits = nn.Parameter(torch.zeros(n_mix, dtype=dtype))

    def features(self, x: Tensor) -> Tensor:
        r"""The embedding :math:`\phi_\psi(x) = (x, g_\psi(x))`, shape ``(n, d + feature_dim)``."""
        x = _check_rows(x, "x", self.in_dim)
        return torch.cat([x, self.net(x)], dim=1)

    def weights(self) -> Tensor:
        r"""Mixture weights :math:`\alpha = \mathrm{softmax}(a)`, shape ``(L,)``."""
        return torch.softmax(self.logits, dim=0)

    def _embed(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, list[float]]:
        r"""The features of ``x`` and ``y`` and the bandwidths :math:`\sigma_l` (class docstring)."""
        fx, fy = self.features(x), self.features(_check_rows(y, "y", self.in_dim))
        if self.bandwidths is not None:
            return fx, fy, list(self.bandwidths)
        med = _median_distance(fx, fy)
        return fx, fy, [f * med for f in self.factors]

    def _gram(self, fa: Tensor, fb: Tensor, sigmas: list[float]) -> Tensor:
        q = _sqdist(fa, fb)
        w = self.weights().to(q.dtype)
        return sum(w[l] * torch.exp(-q / (2.0 * s * s)) for l, s in enumerate(sigmas))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self._gram(*self._embed(x, y))

    def mmd2(self, x: Tensor, y: Tensor, *, unbiased: bool = True) -> Tensor:
        r""":func:`~gwf_tutorial.functionals.mmd2_estimate` (U- or V-statistic) of :math:`k_\psi`, one set of
        bandwidths for the three Gram matrices, differentiable in ``x``, ``y`` and :math:`\psi`."""
        fx, fy, sig = self._embed(x, y)
        gram = lambda a, b: self._gram(a, b, sig)  # noqa: E731
        return mmd2_estimate(gram, fx, fy, unbiased=unbiased, chunk_size=0)  # whole matrices

    def witness(self, x: Tensor, y: Tensor, at: Tensor) -> Tensor:
        r"""MMD witness :math:`w(z) = \frac1n \sum_i k_\psi(z, x_i) - \frac1m \sum_j k_\psi(z, y_j)`, shape
        ``(k,)``, differentiable in ``at`` and :math:`\psi`."""
        fx, fy, sig = self._embed(x, y)
        fz = self.features(_check_rows(at, "at", self.in_dim))
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


def _input_velocity(term: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    xx = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(term(xx), xx)
    return -(x.shape[0] * g).detach()


class CriticObjective:
    r"""An objective estimated adversarially, :math:`F(\rho) = \sup_h B(h; \rho, \nu)`: the one interface of
    the variational f-divergences, :math:`W_1`, the learned-kernel MMD and the S-JKO potential.

    .. math::

        \text{critic: } \max_h \widehat B(h; x, y) - \text{penalties}, \qquad
        \text{map: } \min_T \widehat M(h; T(z), y), \qquad
        v(x_i) = -n\,\nabla_{x_i} \widehat M(h; x_{1:n}, y),

    the map term :math:`M` having the gradient of :math:`B` in the model samples (minimax) or being
    another loss (non-saturating GAN). Subclasses implement ``bound(critic, x, y)`` (:math:`\widehat B \le
    F`, 0-d) and ``map_term(critic, x, y)`` (:math:`\widehat M`, 0-d), and may replace ``make_critic`` (the
    default critic: a raw :class:`Critic`); ``default_gp`` is the WGAN-GP weight for ``gp=None``;
    ``map_term_is_bound`` lets a chain log the map term as :math:`\widehat F`.

    Used in: :func:`~gwf_tutorial.critics.get_critic_objective` (the base of what it returns).
    """

    name = "critic"
    default_gp = 0.0
    map_term_is_bound = False

    def make_critic(self, dim: int, *, hidden: int, depth: int, dtype: torch.dtype | None) -> nn.Module:
        return Critic(dim, None, hidden=hidden, depth=depth, dtype=dtype)

    def penalty_function(self, critic: nn.Module, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        """The scalar function ``(k, d) -> (k,)`` that R1 / WGAN-GP penalise (default: the critic)."""
        return critic

    def critic_loss(self, critic, x, y, *, r1=0.0, gp=0.0, generator=None) -> tuple[Tensor, Tensor]:
        r"""``(loss, bound)``: :math:`-\widehat B` plus :func:`add_penalties` on ``penalty_function``."""
        bound, fn = self.bound(critic, x, y), self.penalty_function(critic, x, y)
        return add_penalties(-bound, fn, x, y, r1=r1, gp=gp, generator=generator), bound

    def velocity(self, critic, x: Tensor, y: Tensor | None = None) -> Tensor:
        r"""The velocity :math:`v` of the map term (class docstring) at the particles ``x``, detached."""
        return _input_velocity(lambda xx: self.map_term(critic, xx, y), x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class VariationalFDivergence(CriticObjective):
    r"""An f-divergence through its variational form, in either direction, with a GAN loss switch:
    :math:`D_f(\rho\|\nu) = \sup_h \mathbb E_\rho h - \mathbb E_\nu f^*(h)` or (``symmetric=True``)
    :math:`D_f(\nu\|\rho) = \sup_h \mathbb E_\nu h - \mathbb E_\rho f^*(h)`, map terms :math:`\mathbb E_z
    h(T(z))` and :math:`-\mathbb E_z f^*(h(T(z)))` (DV: :math:`\log\mathbb E e^h`).
    ``generator_loss="non_saturating"`` (``"gan"``, ``"js"``) uses :math:`-\mathbb E\log D(T(z))`, whose flow
    with the optimal critic is that of :math:`\mathrm{KL} - 2\,\mathrm{JS}`, not of JS.

    Used in: :func:`~gwf_tutorial.critics.get_critic_objective` (what it returns for an f-divergence name).
    """

    def __init__(self, fdiv, *, symmetric: bool = False, generator_loss: str = "minimax"):
        self.fdiv, self.symmetric = get_fdivergence(fdiv), check_bool(symmetric, "symmetric")
        self.generator_loss = check_choice(generator_loss, "generator_loss", ("minimax", "non_saturating"))
        if generator_loss == "non_saturating" and self.fdiv.name not in ("gan", "js"):
            raise ValueError("generator_loss='non_saturating' is defined for the 'gan' and 'js' divergences "
                             f"(critic log D), got {self.fdiv.name!r}")  # fmt: skip
        self.name = self.fdiv.name

    def make_critic(self, dim, *, hidden, depth, dtype):
        return Critic(dim, self.fdiv, hidden=hidden, depth=depth, dtype=dtype)

    def bound(self, critic, x, y):
        h_x, h_y = critic(x), critic(y)  # no NaN check per step (a device synchronisation)
        return _bound(self.fdiv, *((h_y, h_x) if self.symmetric else (h_x, h_y)), check_nan=False)

    def _conjugate_of_critic(self, critic, x, h):
        """f*(h(x)); from the critic's raw output when it is a Critic of this f (stable, see fdiv)."""
        if isinstance(critic, Critic) and critic.fdiv is not None and critic.fdiv.name == self.fdiv.name:
            return self.fdiv._conjugate_activated(_column(critic.raw(x), "x"))
        return self.fdiv._conjugate(h)

    def map_term(self, critic, x, y):
        h, ns = _column(critic(x), "x"), self.generator_loss == "non_saturating"
        if not self.symmetric:
            return self._conjugate_of_critic(critic, x, h).mean() if ns else h.mean()
        if ns:
            return -h.mean()
        if self.fdiv.dv:
            return -(torch.logsumexp(h, 0) - math.log(h.shape[0]))
        return -self._conjugate_of_critic(critic, x, h).mean()

    def __repr__(self) -> str:
        s, g = self.symmetric, self.generator_loss
        return f"VariationalFDivergence({self.fdiv.name!r}, symmetric={s}, generator_loss={g!r})"


class WassersteinCritic(CriticObjective):
    r"""The Wasserstein-1 distance through a gradient-penalised critic (WGAN-GP, default ``gp = 10``):
    :math:`W_1(\rho, \nu) = \sup_{\mathrm{Lip}(h) \le 1} \mathbb E_\rho h - \mathbb E_\nu h`, map term
    :math:`\mathbb E_z h(T(z))`.

    Used in: ``critics._CRITIC_OBJECTIVES`` (the name ``"w1"``).
    """

    name = "w1"
    default_gp = 10.0

    def bound(self, critic, x, y):
        return _column(critic(x), "x").mean() - _column(critic(y), "y").mean()

    def map_term(self, critic, x, y):
        return _column(critic(x), "x").mean()


class LearnedKernelMMD(CriticObjective):
    r"""Squared MMD with a learned kernel (:class:`LearnedKernel`), max over the kernel:
    :math:`F(\rho) = \sup_\psi \mathrm{MMD}^2_{k_\psi}(\rho, \nu)`: the critic's estimate and the map term
    are both the MMD (U-statistic unless ``unbiased=False``); penalties act on the witness function.
    ``feature_dim``, ``bandwidths``, ``factors`` shape the kernel.

    Used in: chapter 5, :mod:`gwf_tutorial.cifar10`.
    """

    name = "mmd_learned"
    map_term_is_bound = True

    def __init__(self, *, feature_dim: int = 8, bandwidths=None, factors=(0.125, 0.25, 0.5, 1.0, 2.0),
                 unbiased: bool = True):  # fmt: skip
        self.feature_dim = check_int(feature_dim, "feature_dim")
        self.bandwidths, self.factors, self.unbiased = bandwidths, factors, check_bool(unbiased, "unbiased")
        LearnedKernel(1, 1, 1, 0, bandwidths=bandwidths, factors=factors)  # validates the options

    def make_critic(self, dim, *, hidden, depth, dtype):
        return LearnedKernel(dim, self.feature_dim, hidden, depth, bandwidths=self.bandwidths,
                             factors=self.factors, dtype=dtype)  # fmt: skip

    def bound(self, critic, x, y):
        if not callable(getattr(critic, "mmd2", None)):
            raise TypeError("LearnedKernelMMD needs a critic with an mmd2 method (a LearnedKernel)")
        return critic.mmd2(x, y, unbiased=self.unbiased)

    map_term = bound

    def penalty_function(self, critic, x, y):
        xd, yd = x.detach(), y.detach()
        return lambda at: critic.witness(xd, yd, at)

    def __repr__(self) -> str:
        return f"LearnedKernelMMD(feature_dim={self.feature_dim}, unbiased={self.unbiased})"


def _values(v, name: str) -> Tensor:
    """Potential values ``(n,)`` or ``(n, 1)`` -> ``(n,)`` (no NaN check: a per-step primitive)."""
    v = _column(as_tensor(v, name))
    if v.ndim != 1 or v.shape[0] < 1:
        raise ValueError(f"{name} must have shape (n,) or (n, 1) with n >= 1, got {tuple(v.shape)}")
    return v


def _weighted_mean(values: Tensor, weights, name: str) -> Tensor:
    if weights is None:
        return values.mean()
    w = as_tensor(weights, name).to(values)
    if w.shape != values.shape or not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not w.sum() > 0:
        raise ValueError(f"{name} must be finite, non-negative, of positive sum, shape {tuple(values.shape)}")
    return (w * values).sum() / w.sum()


class SemiDualPotential(CriticObjective):
    r"""The S-JKO potential :math:`g` (Choi et al., 2024): the critic :math:`h = -g` of :math:`D_\Psi`.

    .. math::

        \widehat B(g; x, y) = -\frac1n \sum_i g(x_i) - \frac1m \sum_j \Psi^*(-g(y_j)) \le D_\Psi(\rho\|\nu),
        \qquad \widehat M(g; x) = -\frac1n \sum_i g(x_i),

    so that the semi-dual is :math:`J(g, T) = \mathbb E\, c_\tau(x, T(x)) + \widehat M(g; T(x)) -
    \mathbb E_\nu \Psi^*(-g)`. ``divergence`` is a name of :data:`~gwf_tutorial.fdiv.PSI_STAR` or a
    callable :math:`\Psi^*`; a potential maps ``(n, ...)`` to ``(n,)`` or ``(n, 1)``. The R1 term
    :math:`\frac{r_1}{2}\mathbb E_\nu |\nabla g|^2` takes the values and input gradients at ``y`` from one
    forward pass.

    Used in: :class:`~gwf_tutorial.sjko.SemiDualJKO`, :func:`~gwf_tutorial.sjko.potential_loss`.
    """

    name = "semi_dual"

    def __init__(self, divergence: str | Callable[[Tensor], Tensor] = "kl"):
        self.divergence, self.psi = divergence, psi_star(divergence)

    def _terms(self, v_fake, v_real, grad_real, r1, source_weights, data_weights) -> tuple[Tensor, ...]:
        """``(loss, loss without R1, data term)``."""
        v_fake, v_real = _values(v_fake, "v_fake"), _values(v_real, "v_real")
        data = _weighted_mean(self.psi(-v_real), data_weights, "data_weights")
        r1 = check_nonnegative(r1, "r1")
        loss = base = _weighted_mean(v_fake, source_weights, "source_weights") + data
        if r1 > 0:
            if grad_real is None or grad_real.shape[0] != v_real.shape[0]:
                got = None if grad_real is None else tuple(grad_real.shape)
                raise ValueError(f"r1 > 0 needs grad_real with {len(v_real)} rows, got {got}")
            loss = loss + 0.5 * r1 * _weighted_mean(_sq_norms(grad_real), data_weights, "data_weights")
        return loss, base, data

    def loss(self, v_fake, v_real, *, grad_real: Tensor | None = None, r1: float = 0.0, source_weights=None,
             data_weights=None) -> Tensor:  # fmt: skip
        r""":math:`-\widehat B + \frac{r_1}{2}\mathbb E_\nu|\nabla g|^2` from the values ``v_fake`` :math:`=
        g(x_i)` ``(n,)``, ``v_real`` :math:`= g(y_j)` ``(m,)``, ``grad_real`` :math:`= \nabla g(y_j)` ``(m,
        ...)`` (when ``r1 > 0``), with optional quadrature weights, shape ``()``."""
        return self._terms(v_fake, v_real, grad_real, r1, source_weights, data_weights)[0]

    def data_term(self, v_real, data_weights=None) -> Tensor:
        r""":math:`\mathbb E_\nu \Psi^*(-g)` from ``v_real`` ``(m,)``, shape ``()``."""
        return _weighted_mean(self.psi(-_values(v_real, "v_real")), data_weights, "data_weights")

    def critic_terms(self, potential, x, y, *, r1: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
        r"""``(loss, bound, data term)`` of :meth:`critic_loss` without GP (the last two detached)."""
        values = lambda z: self.values(potential, z)  # noqa: E731
        v_y, g_y = value_and_input_grad(values, y) if r1 > 0 else (values(y), None)
        loss, base, data = self._terms(values(x), v_y, g_y, r1, None, None)
        return loss, -base.detach(), data.detach()

    def critic_loss(self, critic, x, y, *, r1=0.0, gp=0.0, generator=None) -> tuple[Tensor, Tensor]:
        loss, bound, _ = self.critic_terms(critic, x, y, r1=r1)
        return add_penalties(loss, critic, x, y, gp=gp, generator=generator), bound

    def values(self, potential, x: Tensor) -> Tensor:
        """:math:`g(x_i)`, shape ``(n,)``."""
        v = potential(x)
        if v.numel() != x.shape[0]:
            raise ValueError(f"the potential must give one value per point ({len(x)}), got {tuple(v.shape)}")
        return v.reshape(x.shape[0])

    def bound(self, critic, x, y):
        return -self._terms(self.values(critic, x), self.values(critic, y), None, 0.0, None, None)[1]

    def map_term(self, critic, x, y=None):
        return -self.values(critic, x).mean()

    def __repr__(self) -> str:
        return f"SemiDualPotential({self.divergence!r})"


_CRITIC_OBJECTIVES = {"w1": WassersteinCritic, "wasserstein1": WassersteinCritic,
                      "wasserstein_1": WassersteinCritic, "mmd_learned": LearnedKernelMMD,
                      "learned_mmd": LearnedKernelMMD}  # fmt: skip


def _is_critic_name(key: str) -> bool:
    try:
        return key in _CRITIC_OBJECTIVES or get_fdivergence(key) is not None
    except ValueError:
        return False


def get_critic_objective(name, *, symmetric: bool = False, generator_loss: str = "minimax",
                         **kwargs) -> CriticObjective:  # fmt: skip
    r"""A :class:`CriticObjective` by name: an f-divergence, ``"w1"`` or ``"mmd_learned"`` (instances pass);
    ``symmetric`` and ``generator_loss`` apply to f-divergences, ``kwargs`` go to :class:`LearnedKernelMMD`.

    Used in: :mod:`gwf_tutorial.cifar10`, :func:`~gwf_tutorial.jko._resolve_objective` (the chain's names).
    """
    if isinstance(name, CriticObjective):
        if symmetric or generator_loss != "minimax" or kwargs:
            raise ValueError("symmetric / generator_loss / kwargs cannot be combined with an instance")
        return name
    if isinstance(name, FDivergence):
        return VariationalFDivergence(name, symmetric=symmetric, generator_loss=generator_loss)
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, FDivergence or CriticObjective, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key in _CRITIC_OBJECTIVES:
        if symmetric or generator_loss != "minimax":
            raise ValueError(f"symmetric and generator_loss apply to f-divergences only, not {name!r}")
        return _CRITIC_OBJECTIVES[key](**kwargs)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments for an f-divergence: {sorted(kwargs)}")
    try:
        fdiv = get_fdivergence(key)
    except ValueError as err:
        choices = f"an f-divergence ({sorted(FDIVERGENCES)}) or one of {sorted(_CRITIC_OBJECTIVES)}"
        raise ValueError(f"unknown critic objective {name!r}; choose {choices}") from err
    return VariationalFDivergence(fdiv, symmetric=symmetric, generator_loss=generator_loss)
