r"""Parametric JKO steps: train a map whose push-forward makes one JKO step of an objective :math:`F`.

.. math::

    \theta_{k+1} = \operatorname*{arg\,min}_\theta\ \frac{1}{2\tau}\,\mathbb E_{z\sim\mu_0}
    \big|T_\theta(z) - T_k(z)\big|^2 + F\big((T_\theta)_\#\mu_0\big).

:math:`F` is a critic objective (:class:`~gwf_tutorial.critics.CriticObjective`: a min-max game), a sample
objective (:class:`UnbiasedMMD`, those of :mod:`gwf_tutorial.functionals`) or a push-forward objective
computed from the map itself. GANs are switches of the same loop: ``tau=None`` drops the transport term,
``symmetric=True`` minimises :math:`D_f(\nu\|\rho)` (f-GAN), ``generator_loss="non_saturating"`` swaps the
map's loss. Shared arguments: ``x``, ``x_new``, ``x_old`` particles ``(n, d)``; ``y`` data ``(m, d)``;
``critic`` a network ``(n, d) -> (n,)``; ``tau`` the JKO step; ``per_dim_average`` divides the transport
cost by :math:`d` (both official codes); ``progress`` a progress bar.

References: Jordan, Kinderlehrer, Otto (1998); Mokrov et al. (2021), JKO-ICNN; Fan et al. (2022), VWGF;
Korba, Bonet, Caucheteux (2026), GWF, arXiv:2605.31369 (code ``Paulcauch/GWF``); Nowozin et al. (2016),
f-GAN; Goodfellow et al. (2014); Arjovsky, Bottou (2017); Gulrajani et al. (2017), WGAN-GP.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gwf_tutorial import _validation as _v
from gwf_tutorial import critics as _critics
from gwf_tutorial import gaussian, metrics
from gwf_tutorial._validation import as_tensor, check_finite, check_int, check_nonnegative, check_positive
from gwf_tutorial.critics import (  # noqa: F401 (the chapters call the critic objectives as jko.X)
    CriticObjective,
    LearnedKernelMMD,
    VariationalFDivergence,
    WassersteinCritic,
    get_critic_objective,
)
from gwf_tutorial.fdiv import FDIVERGENCES, FDivergence, get_fdivergence
from gwf_tutorial.functionals import MMD, Objective, get_objective
from gwf_tutorial.kernels import get_kernel
from gwf_tutorial.train import make_generator, save_checkpoint
from gwf_tutorial.train import progress as _progress
from gwf_tutorial.trainer import PhaseRecord, Trainer, TrainerPreset, frozen_copy

__all__ = ["proximal_cost", "saddle_objective", "UnbiasedMMD", "PushforwardObjective", "PushforwardKL",
           "GaussianPushforwardKL", "GaussianPushforwardMMD", "ParametricJKO", "VariantRun", "train_variants"]

_PARAMETRIZATIONS = ("reparameterized", "composed")
_TRAINER_OPTIONS = ("lr", "lr_critic", "betas", "critic_steps", "lr_schedule")
_KIND = "jko.ParametricJKO"


def proximal_cost(x_new, x_old, tau, *, per_dim_average: bool = False) -> Tensor:
    r"""Per-sample transport cost :math:`|x_i - x_i'|^2 / (2\tau)` of a JKO step, ``(n, ...) -> (n,)``.

    Used in: :mod:`gwf_tutorial.sjko` (``sjko.transport_cost``), :func:`~gwf_tutorial.jko.saddle_objective`.
    """
    for t, name in ((x_new, "x_new"), (x_old, "x_old")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch tensor, got {type(t).__name__}")
    if x_new.dtype != x_old.dtype:
        raise TypeError(f"x_new and x_old must have the same dtype, got {x_new.dtype} and {x_old.dtype}")
    tau = check_positive(tau, "tau")
    if x_new.shape != x_old.shape or x_new.ndim < 2 or x_new.shape[0] < 1:
        shapes = f"{tuple(x_new.shape)} and {tuple(x_old.shape)}"
        raise ValueError(f"x_new and x_old must have the same shape (n, ...), got {shapes}")
    sq = (x_new - x_old).reshape(x_new.shape[0], -1).pow(2)
    return (sq.mean(dim=1) if per_dim_average else sq.sum(dim=1)) / (2.0 * tau)


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


def saddle_objective(fdiv: FDivergence | str, x_new, x_old, h_new, h_data, tau, *, per_dim_average=False,
                     source_weights=None, data_weights=None) -> Tensor:  # fmt: skip
    r"""The saddle function of a JKO step on an f-divergence (GWF / VWGF; S-JKO: :math:`v = 1 - h`).

    .. math::

        \ell(T, h) = \mathbb E_{z\sim\mu}\Big[\frac{|T(z) - T_k(z)|^2}{2\tau} + h(T(z))\Big]
        - \mathbb E_{y\sim\nu} f^*(h(y))

    (Donsker--Varadhan: :math:`\log \mathbb E_\nu e^{h}` for the last term); ``h_new`` ``(n,)`` holds
    :math:`h(T(z_i))`, ``h_data`` ``(m,)`` :math:`h(y_j)`, the optional weights are quadrature weights.

    Used in: no chapter and no library function (the tests check it against S-JKO's semi-dual objective).
    """
    fdiv = get_fdivergence(fdiv)
    cost = proximal_cost(x_new, x_old, tau, per_dim_average=per_dim_average)
    h_new, h_data = _critics._values(h_new, "h_new"), _critics._values(h_data, "h_data")
    for h, name in ((h_new, "h_new"), (h_data, "h_data")):
        if bool(torch.isnan(h).any()):
            raise ValueError(f"{name} contains NaN values")
    if h_new.shape != cost.shape:
        raise ValueError(f"h_new must have one value per row of x_new ({cost.shape[0]}), got {len(h_new)}")
    ws = _weights(source_weights, cost, "source_weights")
    wd = _weights(data_weights, h_data, "data_weights")
    if not fdiv.dv:
        last = _mean(fdiv.conjugate(h_data), wd)
    elif wd is None:
        last = torch.logsumexp(h_data, 0) - math.log(h_data.shape[0])
    else:
        last = torch.logsumexp(h_data + torch.log(wd), 0)
    return _mean(cost + h_new, ws) - last


class UnbiasedMMD(Objective):
    r"""Squared MMD with a fixed kernel by its U-statistic (:func:`gwf_tutorial.metrics.mmd2`), no critic.

    .. math::

        F(\rho) = \mathrm{MMD}_k^2(\rho, \nu), \qquad
        \frac{\delta F}{\delta\rho}(z) = 2\big(\mathbb E_\rho k(z, x) - \mathbb E_\nu k(z, y)\big).

    Twice :class:`~gwf_tutorial.functionals.MMD`, unbiased (it can be negative; ``value`` needs 2 samples in
    ``x`` and ``y``). ``kernel``, ``bandwidth`` (None: median heuristic per pooled batch; a sequence: a
    multi-bandwidth kernel) and ``**kernel_kwargs`` go to :func:`~gwf_tutorial.kernels.get_kernel`.

    Used in: chapters 5 and 9, :mod:`gwf_tutorial.methods` (GMMN, JKO-MMD).
    """

    name = "mmd_u"

    def __init__(self, kernel="gaussian", bandwidth=None, **kernel_kwargs):
        self.kernel = get_kernel(kernel, bandwidth, **kernel_kwargs)
        self._half = MMD(self.kernel)

    def value(self, x, y) -> Tensor:
        """The U-statistic of the squared MMD between ``x`` and ``y``, shape ``()``."""
        return metrics.mmd2(x, y, self.kernel, unbiased=True)

    def first_variation(self, x, y, at) -> Tensor:
        """Twice the witness function at ``at``, shape ``(k,)``."""
        return 2.0 * self._half.first_variation(x, y, at)

    def __repr__(self) -> str:
        return f"UnbiasedMMD(kernel={self.kernel!r})"


class PushforwardObjective:
    r"""An objective :math:`F(T_\#\mu)` computed from the map :math:`T` and source points :math:`z_i`:
    ``pushforward_value(map_net, z, x)`` (with :math:`x = T(z)`; 0-d, differentiable in the map) may use
    the map's Jacobian or parameters, unlike a :class:`~gwf_tutorial.functionals.Objective`.

    Used in: :mod:`gwf_tutorial.projected`.
    """

    name = "pushforward"
    needs_reparameterized = False

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _log_abs_det_jacobian(map_net: nn.Module, z: Tensor) -> tuple[Tensor, Tensor]:
    """``(log|det dT(z)|, T(z))`` with a graph (exact method if the map has one, else autograd)."""
    if callable(getattr(map_net, "log_abs_det_jacobian", None)):
        return map_net.log_abs_det_jacobian(z), map_net(z)
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        x = map_net(zz)
        if x.shape != zz.shape:
            shapes = f"{tuple(zz.shape)} -> {tuple(x.shape)}"
            raise ValueError(f"PushforwardKL needs a map from R^d to R^d, got {shapes}")
        rows = [torch.autograd.grad(x[:, i].sum(), zz, create_graph=True)[0] for i in range(x.shape[1])]
    return torch.linalg.slogdet(torch.stack(rows, dim=1)).logabsdet, x


class PushforwardKL(PushforwardObjective):
    r"""KL of a push-forward to a target with a known (unnormalised) log-density, by change of variables.

    .. math::

        \mathrm{KL}(T_\#\mu \,\|\, \pi) = \mathbb E_{z\sim\mu}\Big[\log \mu(z)
        - \log\big|\det \nabla T(z)\big| - \log \pi(T(z))\Big]

    for an injective :math:`T`; ``target`` is :math:`\log\pi` or has ``log_prob``; without
    ``source_log_prob`` the constant :math:`\mathbb E\log\mu` is dropped. The Jacobian comes from the map's
    ``log_abs_det_jacobian`` if it has one, else from :math:`d` backward passes.

    Used in: chapter 4, :mod:`gwf_tutorial.methods` (JKO-ICNN).
    """

    name = "pushforward_kl"

    def __init__(self, target, *, source_log_prob: Callable[[Tensor], Tensor] | None = None):
        log_prob = getattr(target, "log_prob", None)
        self.log_prob = log_prob if callable(log_prob) else target
        if not callable(self.log_prob):
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
        return value if self.source_log_prob is None else value + self.source_log_prob(z).mean()


class GaussianPushforwardKL(PushforwardObjective):
    r"""Exact KL of an affine push-forward of :math:`N(\bar z, S_0)` to :math:`N(\bar y, \Sigma)`.

    :math:`\mathrm{KL}(\mathcal N(A \bar z + b, A S_0 A^\top) \| \mathcal N(\bar y, \Sigma))`, by
    :func:`gwf_tutorial.gaussian.kl`, for a map with ``push_gaussian`` (an
    :class:`~gwf_tutorial.nets.AffineMap`), reparameterized chains only: no estimation error in :math:`F`.

    Used in: chapters 4 and 6.
    """

    name = "gaussian_pushforward_kl"
    needs_reparameterized = True

    def __init__(self, source_mean, source_cov, target_mean, target_cov):
        self.source_mean, self.source_cov = _v.check_mean_cov(source_mean, source_cov, "source_mean",
                                                              "source_cov")  # fmt: skip
        self.target_mean, self.target_cov = _v.check_mean_cov(target_mean, target_cov, "target_mean",
                                                              "target_cov")  # fmt: skip
        if self.source_mean.ndim != 1 or self.source_mean.shape != self.target_mean.shape:
            shapes = f"{tuple(self.source_mean.shape)} and {tuple(self.target_mean.shape)}"
            raise ValueError(f"source_mean and target_mean must have the same shape (d,), got {shapes}")

    def _pushed(self, map_net: nn.Module, like: Tensor) -> tuple[Tensor, ...]:
        push = getattr(map_net, "push_gaussian", None)
        if not callable(push):
            raise TypeError(f"{type(self).__name__} needs a map with push_gaussian (an AffineMap)")
        m, S = push(self.source_mean.to(like), self.source_cov.to(like))
        return m, S, self.target_mean.to(like), self.target_cov.to(like)

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        return gaussian.kl(*self._pushed(map_net, x))


class GaussianPushforwardMMD(GaussianPushforwardKL):
    r"""Exact squared MMD (Gaussian kernel, ``bandwidth`` :math:`s`) of an affine push-forward, to a Gaussian.

    :math:`\mathrm{MMD}_k^2(\mathcal N(A \bar z + b, A S_0 A^\top), \mathcal N(\bar y, \Sigma))` with
    :math:`k(x, y) = e^{-|x - y|^2/(2 s^2)}` (:func:`gwf_tutorial.gaussian.mmd2`).

    Used in: chapter 5.
    """

    name = "gaussian_pushforward_mmd"

    def __init__(self, source_mean, source_cov, target_mean, target_cov, bandwidth):
        super().__init__(source_mean, source_cov, target_mean, target_cov)
        self.bandwidth = check_positive(bandwidth, "bandwidth")

    def pushforward_value(self, map_net: nn.Module, z: Tensor, x: Tensor) -> Tensor:
        return gaussian.mmd2(*self._pushed(map_net, x), self.bandwidth)

    def __repr__(self) -> str:
        return f"GaussianPushforwardMMD(bandwidth={self.bandwidth})"


def _identity(x: Tensor, z: Tensor | None = None) -> Tensor:
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
    adversary = functional = pushforward = None
    if isinstance(objective, FDivergence | CriticObjective) or (
        isinstance(objective, str) and _critics._is_critic_name(objective.strip().lower().replace("-", "_"))
    ):
        adversary = get_critic_objective(objective, symmetric=symmetric, generator_loss=generator_loss)
    elif isinstance(objective, str):
        key = objective.strip().lower()
        try:
            functional = UnbiasedMMD() if key == "mmd_u" else get_objective(key)
        except (ValueError, TypeError) as err:
            raise ValueError(f"objective {objective!r} is neither an f-divergence ({sorted(FDIVERGENCES)}), "
                             "'w1', 'mmd_learned', 'mmd_u' nor a sample objective of "
                             f"gwf_tutorial.functionals ({err})") from err  # fmt: skip
    elif isinstance(objective, Objective):
        functional = objective
    elif isinstance(objective, PushforwardObjective):
        pushforward = objective
        if objective.needs_reparameterized and parametrization != "reparameterized":
            raise ValueError(f"{type(objective).__name__} needs parametrization='reparameterized'")
    else:
        raise TypeError("objective must be an FDivergence, a CriticObjective, a name, a functionals.Objective"
                        f" or a PushforwardObjective, got {type(objective).__name__}")  # fmt: skip
    if adversary is None and (symmetric is not False or generator_loss != "minimax"):
        raise ValueError("symmetric and generator_loss apply to f-divergence objectives only")
    return adversary, functional, pushforward


def _make_critic(adversary, critic, map_net: nn.Module, hidden, depth, dtype, device) -> nn.Module | None:
    """The critic of a critic objective: ``critic`` or the objective's default; None without one."""
    if adversary is None:
        if critic is not None:
            raise ValueError("critic is only used with a critic objective (f-divergence, w1, mmd_learned)")
        return None
    if critic is None:
        dims = [v for v in (getattr(map_net, a, None) for a in ("out_dim", "dim")) if isinstance(v, int)]
        if not dims:
            raise ValueError("cannot infer the data dimension from map_net; pass critic=")
        hidden, depth = check_int(hidden, "critic_hidden"), check_int(depth, "critic_depth", min_value=0)
        return adversary.make_critic(dims[0], hidden=hidden, depth=depth, dtype=dtype).to(device)
    if not isinstance(critic, nn.Module):
        raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
    return critic


def _check_sampler(sampler, name: str, dtype: torch.dtype | None = None):
    """A finite floating tensor ``(N, ...)`` (of ``dtype`` when given), a callable or an object with
    ``.sample``: a sampler of a chain or of ``sjko.SemiDualJKO``."""
    if isinstance(sampler, Tensor):
        if sampler.ndim < 2 or sampler.shape[0] < 1:
            raise ValueError(f"{name} must have shape (N, ...) with N >= 1, got {tuple(sampler.shape)}")
        if not sampler.is_floating_point() or sampler.dtype != (dtype or sampler.dtype):
            raise TypeError(f"{name} must be a floating tensor of the map's dtype, got dtype {sampler.dtype}")
        return check_finite(as_tensor(sampler, name), name)
    if callable(getattr(sampler, "sample", None)) or callable(sampler):
        return sampler
    raise TypeError(f"{name} must be a tensor (n, ...), a callable f(n, generator=g) or an object with "
                    f".sample(n, generator=g); got {type(sampler).__name__}")  # fmt: skip


def _draw(owner, sampler, n: int, name: str, generator, check: bool = False) -> Tensor:
    """``n`` rows of a tensor (all of it when it has at most ``n``) or ``n`` draws of a sampler (exactly ``n``
    finite ones with ``check``), on the owner's (a chain's or ``sjko.SemiDualJKO``'s) device and dtype."""
    if isinstance(sampler, Tensor):
        if sampler.shape[0] <= n:
            out = sampler
        else:
            out = sampler[torch.randint(0, sampler.shape[0], (n,), generator=generator).to(sampler.device)]
    else:
        draw = sampler.sample if callable(getattr(sampler, "sample", None)) else sampler
        out = draw(n, generator=generator)
        if not isinstance(out, Tensor) or out.ndim < 2 or out.shape[0] < 1 or (check and out.shape[0] != n):
            raise ValueError(f"{name} sampler must return a tensor of shape ({n}, ...), got {out!r:.80}")
        if check:
            check_finite(out, f"{name}(n)")
    return out.to(device=owner.device, dtype=owner.dtype)


def _map_terms(chain: ParametricJKO, x_new: Tensor, src: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
    """``(map term with graph, detached estimate of F)`` at the pushed samples (critic frozen)."""
    adversary, critic = chain.adversary, chain.critic
    if adversary is not None:
        critic.requires_grad_(False)
        try:
            term = adversary.map_term(critic, x_new, y)
            if adversary.map_term_is_bound:
                return term, term.detach()
            with torch.no_grad():
                return term, adversary.bound(critic, x_new.detach(), y)
        finally:
            critic.requires_grad_(True)
    if chain.functional is not None:
        term = chain.functional.value(x_new, y)
    else:
        term = chain.pushforward.pushforward_value(chain.map, src, x_new)
    return term, term.detach()


def _transport(chain: ParametricJKO, x_new: Tensor, x_old: Tensor) -> Tensor:
    if chain.tau is None:
        return x_new.new_zeros(())
    return proximal_cost(x_new, x_old, chain.tau, per_dim_average=chain.per_dim_average).mean()


class _StepLoss:
    """One JKO step as a :class:`~gwf_tutorial.trainer.Trainer` problem (draws in the chain's order)."""

    def __init__(self, chain: ParametricJKO) -> None:
        self.c = chain

    def batch(self) -> tuple[Tensor, Tensor, Tensor | None]:
        c = self.c
        src, x_old = _source_and_old(c, _draw(c, c.source, c.batch_size, "source", c.generator))
        with torch.no_grad():
            return src, x_old, None if c.critic is None else c.map(src)

    def critic_loss(self, batch) -> tuple[Tensor, Tensor]:
        c = self.c
        y = _draw(c, c.data, c.batch_size, "data", c.generator)
        loss, bound = c.adversary.critic_loss(c.critic, batch[2], y, r1=c.r1, gp=c.gp, generator=c.generator)
        return loss, bound.detach()

    def map_loss(self, batch) -> tuple[Tensor, list[Tensor]]:
        c, (src, x_old, _) = self.c, batch
        x_new = c.map(src)
        if x_new.shape != x_old.shape:
            raise ValueError(f"the map's output shape {tuple(x_new.shape)} differs from T_k's "
                             f"{tuple(x_old.shape)}; use initial_map='copy' when latent and data dimensions "
                             "differ")  # fmt: skip
        transport = _transport(c, x_new, x_old)
        needs_y = c.adversary is not None or (c.functional is not None and c.data is not None)
        y = _draw(c, c.data, c.batch_size, "data", c.generator) if needs_y else None
        term, value = _map_terms(c, x_new, src, y)
        return transport + term, [transport.detach(), value]


def _check_batch(chain: ParametricJKO, t, name: str) -> Tensor | None:
    """A batch given to the chain's loss functions: finite, of the map's dtype (``y`` may be None)."""
    if t is None and name == "y":
        if chain.adversary is not None or getattr(chain.functional, "needs_target_samples", False):
            raise ValueError(f"y (a batch of data samples) is required for objective {chain.objective!r}")
        return None
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return _check_sampler(t, name, chain.dtype).to(chain.device)


@torch.no_grad()
def _source_and_old(chain: ParametricJKO, z: Tensor) -> tuple[Tensor, Tensor]:
    """``(the step's source points, T_k's points)`` for latent points ``z``."""
    if chain.parametrization == "composed":
        src = chain._push_chain(z)
        return src, src
    return z, chain._old(z)


def _config(owner, keys: list[str]) -> dict:
    """What a resume of a chain or ``sjko.SemiDualJKO`` must share (not the seed: the file holds the RNGs)."""
    initial = "identity" if owner.initial_map is _identity else type(owner.initial_map).__name__
    return {**{k: getattr(owner, k) for k in keys}, "initial_map": initial}


def _checkpoint_config(chain: ParametricJKO) -> dict:
    keys = ("tau n_iters n_iters_first batch_size lr lr_critic betas r1 gp critic_steps per_dim_average "
            "reset_optimizer parametrization lr_schedule").split()  # fmt: skip
    objective = [o for o in (chain.adversary, chain.functional, chain.pushforward) if o is not None]
    return {**_config(chain, keys), "objective": objective[0]}


def _load_copies(net: nn.Module, states: list[dict]) -> list[nn.Module]:
    copies = [frozen_copy(net) for _ in states]
    for m, sd in zip(copies, states):
        m.load_state_dict(sd)
    return copies


def _restore(chain: ParametricJKO, state: dict) -> None:
    """Restore the chain's own part of a checkpoint (the trainer's part is restored before)."""
    if state["initial_map"] is not None and isinstance(chain.initial_map, nn.Module):
        chain.initial_map.load_state_dict(state["initial_map"])
    chain._initial_state = copy.deepcopy(state["initial_state"])
    chain.chain = _load_copies(chain.map, state["chain"])
    chain.n_phases = int(state["n_phases"])
    # at a step boundary of the reparameterized chain, T_k is the current map
    chain._old = frozen_copy(chain.map) if chain.n_phases > 0 else chain.initial_map
    chain.history = [PhaseRecord(**r) for r in state["history"]]


class ParametricJKO(TrainerPreset):
    r"""A chain of parametric JKO steps, one map ``map_net`` trained per step (a preset of the ``Trainer``).

    Step k minimises the objective of the module docstring over :math:`\theta`, with ``critic_steps`` critic
    updates before each map update for a critic objective.
    ``"reparameterized"`` (the GWF code) trains one map from :math:`\mu_0`, warm-started from :math:`T_k`;
    ``"composed"`` trains a fresh step map :math:`M_k` (``map_net``'s initial weights) on
    :math:`x \sim \rho_k` and samples through :math:`M_{K-1}\circ\dots\circ M_0`.

    ``objective``: an FDivergence, CriticObjective, Objective, PushforwardObjective or a name (for
    :func:`~gwf_tutorial.critics.get_critic_objective`, else ``"mmd_u"``, :class:`UnbiasedMMD`, else
    :func:`~gwf_tutorial.functionals.get_objective`). ``source``, ``data``: samplers of :math:`\mu_0`,
    :math:`\nu` (a tensor with at most ``batch_size`` rows is used whole). ``critic``: default the objective's
    ``make_critic`` with ``critic_hidden``, ``critic_depth``. ``r1``, ``gp``: R1 and WGAN-GP weights of the
    critic (``gp=None``: 10 for ``"w1"``, which needs it, else 0). ``initial_map``: :math:`T_{-1}` (identity;
    ``"copy"``: a frozen copy of ``map_net``, when latent and data dimensions differ). ``n_iters_first``:
    map iterations of the first step (default ``n_iters``). ``reset_optimizer``: a fresh Adam state at each
    step (the composed chain always resets). ``seed``: of the chain's generator (default: from torch's RNG).
    ``**trainer_options``: ``lr``, ``lr_critic``, ``betas``, ``critic_steps``, ``lr_schedule`` of the
    :class:`~gwf_tutorial.trainer.Trainer` (defaults 1e-3, 1e-3, (0.5, 0.9), 1, "constant").

    Used in: chapters 4, 5 and 9, :mod:`gwf_tutorial.methods`, :mod:`gwf_tutorial.projected`.
    """

    def __init__(
        self, map_net: nn.Module, objective, tau: float | None, source, data=None, *,
        critic: nn.Module | None = None, n_iters: int = 500, n_iters_first: int | None = None,
        batch_size: int = 256, critic_hidden: int = 64, critic_depth: int = 2, r1: float = 0.0,
        gp: float | None = None, symmetric: bool = False, generator_loss: str = "minimax",
        per_dim_average: bool = False, parametrization: str = "reparameterized",
        initial_map: Callable | str | None = None, reset_optimizer: bool = False, seed: int | None = None,
        progress: bool = True, **trainer_options,
    ) -> None:  # fmt: skip
        if not isinstance(map_net, nn.Module):
            raise TypeError(f"map_net must be a torch.nn.Module, got {type(map_net).__name__}")
        params = list(map_net.parameters())
        if not params:
            raise ValueError("map_net has no parameters to train")
        unknown = sorted(set(trainer_options) - set(_TRAINER_OPTIONS))
        if unknown:
            raise TypeError(f"ParametricJKO got unexpected keyword arguments {unknown}")
        self.map, self.device, self.dtype = map_net, params[0].device, params[0].dtype
        self.tau = None if tau is None else check_positive(tau, "tau")
        self.n_iters = check_int(n_iters, "n_iters")
        self.n_iters_first = None if n_iters_first is None else check_int(n_iters_first, "n_iters_first")
        self.batch_size, self.r1 = check_int(batch_size, "batch_size"), check_nonnegative(r1, "r1")
        self.per_dim_average = _v.check_bool(per_dim_average, "per_dim_average")
        self.reset_optimizer = _v.check_bool(reset_optimizer, "reset_optimizer")
        self.parametrization = _v.check_choice(parametrization, "parametrization", _PARAMETRIZATIONS)
        self.progress, self.objective = bool(progress), objective
        resolved = _resolve_objective(objective, symmetric, generator_loss, parametrization)
        self.adversary, self.functional, self.pushforward = resolved
        self.fdiv: FDivergence | None = getattr(self.adversary, "fdiv", None)
        gp = (0.0 if self.adversary is None else self.adversary.default_gp) if gp is None else gp
        self.gp = check_nonnegative(gp, "gp")
        if isinstance(self.adversary, WassersteinCritic) and self.gp == 0:
            raise ValueError("gp must be > 0 for the W1 critic (the gradient penalty is its Lipschitz bound)")
        self.source = _check_sampler(source, "source", self.dtype)
        needs_data = self.adversary is not None or getattr(self.functional, "needs_target_samples", False)
        if data is None and needs_data:
            raise ValueError(f"data (samples of the target nu) is required for objective {objective!r}")
        self.data = None if data is None else _check_sampler(data, "data", self.dtype)
        self.initial_map = self._old = resolve_initial_map(initial_map, map_net)
        self._initial_state = copy.deepcopy(map_net.state_dict())
        self.chain: list[nn.Module] = []
        critic = _make_critic(self.adversary, critic, map_net, critic_hidden, critic_depth, self.dtype,
                              self.device)  # fmt: skip
        seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed
        self.seed = _v.check_seed(seed)
        self.generator = make_generator(self.seed)
        self.trainer = Trainer(map_net, critic, generator=self.generator, **trainer_options)
        self.history, self.n_phases = [], 0  # the records of the steps run, list[PhaseRecord]

    critic = property(lambda self: self.trainer.critic, doc="The critic (None without a critic objective).")

    def _push_chain(self, z: Tensor) -> Tensor:
        x = self.initial_map(z)
        for m in self.chain:
            x = m(x)
        return x

    def step(self, n_iters: int | None = None, *, progress: bool | None = None) -> PhaseRecord:
        r"""One JKO step, :math:`\rho_{k+1} = (T_{k+1})_\#\mu_0`: ``n_iters`` map (and critic) iterations;
        its record, also appended to ``history``."""
        k = self.n_phases
        if n_iters is None:
            n_iters = self.n_iters_first if (k == 0 and self.n_iters_first is not None) else self.n_iters
        n_iters, composed = check_int(n_iters, "n_iters"), self.parametrization == "composed"
        if composed:
            self.map.load_state_dict(self._initial_state)
        if composed or self.reset_optimizer:
            self.trainer.set_map(self.map)
        t0 = time.perf_counter()
        names = ("critic_bound",) * (self.critic is not None) + ("transport", "objective")
        hint = f" or a larger tau (tau={self.tau})" if self.tau is not None else ""
        show = self.progress if progress is None else bool(progress)
        *bound, transport, objective = self.trainer.fit(_StepLoss(self), n_iters, desc=f"JKO step {k + 1}",
                                                        names=names, progress=show, hint=hint).tolist()
        curves = dict(transport=transport, objective=objective, critic_bound=bound[0] if bound else [],
                      loss=[t + v for t, v in zip(transport, objective)])
        result = PhaseRecord(k, self.tau, n_iters, time.perf_counter() - t0, curves)
        if composed:
            self.chain.append(frozen_copy(self.map))
        else:
            self._old = frozen_copy(self.map)
        self.n_phases += 1
        self.history.append(result)
        return result

    def run(self, K: int, *, checkpoint: str | os.PathLike | None = None, resume: bool = True,
            progress: bool | None = None) -> list[PhaseRecord]:  # fmt: skip
        """Run up to ``K`` steps in total (returns this call's records), saving ``checkpoint`` after each;
        an existing ``checkpoint`` is loaded first when ``resume`` (the run matches an uninterrupted one)."""
        K = check_int(K, "K")
        if checkpoint is not None and resume and os.path.exists(checkpoint):
            self.load(checkpoint)
        out = []
        while self.n_phases < K:
            out.append(self.step(progress=progress))
            if checkpoint is not None:
                self.save(checkpoint)
        return out

    def map_loss(self, z, y=None) -> Tensor:
        r"""The map's loss of the current step on given batches (critic frozen), shape ``()``: the module
        docstring's objective, :math:`F` by its map term on ``y`` (``tau=None``: no transport term)."""
        (src, x_old), y = _source_and_old(self, _check_batch(self, z, "z")), _check_batch(self, y, "y")
        x_new = self.map(src)
        return _transport(self, x_new, x_old) + _map_terms(self, x_new, src, y)[0]

    def map_velocity(self, x, y=None) -> Tensor:
        r"""The velocity :math:`v(x_i) = -n\,\nabla_{x_i} \widehat M(h; x_{1:n}, y)` the map term imposes on
        particles (critic frozen), shape ``(n, d)``, detached."""
        if self.pushforward is not None:
            raise TypeError("map_velocity needs a critic or a sample objective, not a PushforwardObjective")
        x, y = _check_batch(self, x, "x"), _check_batch(self, y, "y")
        if y is not None:
            _v.check_same_dim(x, y, "x", "y")
        return _critics._input_velocity(lambda xx: _map_terms(self, xx, xx, y)[0], x)

    @torch.no_grad()
    def push(self, z: Tensor) -> Tensor:
        r"""Samples of :math:`\rho_K` (``K = n_phases``) from source points ``z``, shape ``(n, d)``."""
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        z = z.to(device=self.device, dtype=self.dtype)
        return self._push_chain(z) if self.parametrization == "composed" else self._old(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""``n`` samples of :math:`\rho_K`; ``generator`` draws the source points (not the chain's own)."""
        n = check_int(n, "n")
        if isinstance(self.source, Tensor) and self.source.shape[0] != n:
            idx = torch.randint(0, self.source.shape[0], (n,), generator=generator)
            z = self.source[idx.to(self.source.device)]
        else:
            z = _draw(self, self.source, n, "source", generator)
        return self.push(z)

    def state_dict(self) -> dict:
        """Everything needed to resume at a step boundary (a dict for ``torch.save``)."""
        initial = self.initial_map.state_dict() if isinstance(self.initial_map, nn.Module) else None
        return {"trainer": self.trainer.state_dict(), "chain": [m.state_dict() for m in self.chain],
                "initial_map": initial, "initial_state": self._initial_state, "n_phases": self.n_phases,
                "history": [vars(r).copy() for r in self.history], "parametrization": self.parametrization,
                "tau": self.tau}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` into a chain built with the same networks and options."""
        if not isinstance(state, dict) or state.get("parametrization") != self.parametrization:
            got = state.get("parametrization") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state must be a state_dict of a {self.parametrization!r} chain, got {got!r}")
        state = copy.deepcopy(state)  # shares no tensor (e.g. Adam's moments) with the chain it came from
        self.trainer.load_state_dict(state["trainer"])
        _restore(self, state)

    def save(self, path: str | os.PathLike) -> None:
        """Save the state and hyperparameters to ``path`` (atomic, hashed: :func:`train.save_checkpoint`)."""
        save_checkpoint(path, self.state_dict(), kind=_KIND, config=_checkpoint_config(self))

    def load(self, path: str | os.PathLike) -> None:
        """Load a :meth:`save` file; a ValueError names it when damaged, of another kind or configuration."""
        self.trainer.load(path, kind=_KIND, config=_checkpoint_config(self),
                          restore=lambda state: _restore(self, state), what="chain")  # fmt: skip

    def __repr__(self) -> str:
        return (f"ParametricJKO(objective={self.objective!r}, tau={self.tau}, n_phases={self.n_phases}, "
                f"parametrization={self.parametrization!r}, per_dim_average={self.per_dim_average})")


@dataclass
class VariantRun:
    """One variant of :func:`train_variants`: its trained ``chain``, ``samples`` ``(n_samples, d)`` (None if
    it diverged, with the message in ``error``), CPU and wall-clock seconds of the training.

    Used in: :func:`~gwf_tutorial.jko.train_variants` (what it returns).
    """

    name: str
    chain: ParametricJKO
    samples: Tensor | None
    cpu_seconds: float
    seconds: float
    error: str | None = None

    @property
    def diverged(self) -> bool:  # training raised a FloatingPointError or gave non-finite samples
        return self.error is not None


def train_variants(variants: dict, make_map: Callable[[], nn.Module], source, data=None, *, n_phases: int,
                   n_samples: int = 1000, init_seed: int = 0, sample_seed: int = 0, progress: bool = True,
                   **common) -> dict[str, VariantRun]:  # fmt: skip
    r"""Train the same map family on the same data once per variant of the JKO loop: ``{name: VariantRun}``.

    Variant v runs the JKO steps of the module docstring with its own :math:`F_v` and :math:`\tau_v`
    (:math:`\tau_v = \infty`, ``tau=None``: the GAN of :math:`F_v`). Each ``variants[name]`` holds
    ``objective``, ``tau`` and any :class:`ParametricJKO` keyword over ``common``; every variant starts from
    ``make_map()`` after ``torch.manual_seed(init_seed)``, runs ``n_phases`` steps and is sampled on the same
    latent draws (``sample_seed``). A run raising :class:`FloatingPointError` is kept with ``samples=None``.

    Used in: chapter 5.
    """
    if not isinstance(variants, dict) or not variants:
        raise TypeError("variants must be a non-empty dict {name: dict of ParametricJKO arguments}")
    if not callable(make_map):
        raise TypeError(f"make_map must be a callable returning an nn.Module, got {type(make_map).__name__}")
    for name, spec in variants.items():
        if not isinstance(spec, dict):
            raise TypeError(f"variants[{name!r}] must be a dict, got {type(spec).__name__}")
        missing = {"objective", "tau"} - set(spec)
        if missing:
            raise ValueError(f"variants[{name!r}] must name {sorted(missing)} (tau=None for the GAN)")
    n_phases, n_samples = check_int(n_phases, "n_phases"), check_int(n_samples, "n_samples")
    init_seed, sample_seed = _v.check_seed(init_seed, "init_seed"), _v.check_seed(sample_seed, "sample_seed")
    common.setdefault("progress", False)
    out: dict[str, VariantRun] = {}
    for name, spec in _progress(variants.items(), desc="variants", disable=not progress):
        kw = {**common, **spec}
        objective, tau = kw.pop("objective"), kw.pop("tau")
        torch.manual_seed(init_seed)
        chain = ParametricJKO(make_map(), objective, tau, source, data, **kw)
        c0, t0, error, samples = time.process_time(), time.perf_counter(), None, None
        try:
            chain.run(n_phases)
        except FloatingPointError as err:
            error = str(err)
        cpu, wall = time.process_time() - c0, time.perf_counter() - t0
        if error is None:
            samples = chain.sample(n_samples, generator=make_generator(sample_seed)).detach()
            if not bool(torch.isfinite(samples).all()):
                error, samples = "non-finite samples", None
        out[name] = VariantRun(name, chain, samples, cpu, wall, error)
    return out
