r"""Drifting models (Deng et al. 2026): drift fields, the stop-gradient loss and the training loop.

A one-step generator :math:`G_\theta` is regressed onto a shifted copy of its own samples,

.. math::

    \mathcal L(\theta) = \mathbb E_z|G_\theta(z) - \mathrm{sg}(G_\theta(z) + V(G_\theta(z)))|^2
    = \mathbb E|V|^2, \qquad \nabla_\theta\mathcal L = -2\,\mathbb E[J_\theta^\top V],

a gradient step in which the samples move along the *drift field* :math:`V` smoothed by the network's
tangent kernel (chapter 8). Shared arguments: ``x`` ``(n, d)`` the generated samples where a field is
evaluated, ``y_pos`` ``(m, d)`` data, ``y_neg`` ``(k, d)`` negatives (``None``: ``x`` itself without the
pair :math:`(x_i, x_i)`), ``temperature`` :math:`\kappa > 0`, ``attraction`` and ``repulsion`` the
weights :math:`\lambda_+, \lambda_- \ge 0` of the two halves. Fields are detached. The official 2-D toy
demo (Algorithm 2 notebook): latent dimension 32, ``nets.MLP(32, 2, 256, 3, "silu")``, Adam at 1e-3 for
2000 steps, batches of 2048 samples and 2048 data, temperature 0.05, data in [-1, 1]. References: Deng et
al. 2026, arXiv:2602.04770 (code ``lambertae/drifting``); Gretton et al. 2026, arXiv:2605.05118.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from gwf_tutorial._validation import (
    as_tensor,
    check_bool,
    check_callable,
    check_choice,
    check_generator,
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_samples,
)
from gwf_tutorial.critics import logistic_ratio
from gwf_tutorial.fflows import value_and_grad
from gwf_tutorial.flows import _rms
from gwf_tutorial.kernels import check_pair, check_positive_seq
from gwf_tutorial.nets import MLP
from gwf_tutorial.train import rng_state, set_rng_state
from gwf_tutorial.trainer import Trainer

__all__ = ["KERNELS", "paper_field", "algorithm2_field", "algorithm2_affinities", "gaussian_population_field",
           "drift_rms", "drifting_loss", "jacobian_asymmetry", "DriftField", "PaperDrift", "Algorithm2Drift",
           "MultiTemperatureDrift", "ObjectiveDrift", "CriticDrift", "DriftingHistory",
           "train_drifting"]  # fmt: skip

#: Kernels of :func:`paper_field`.
KERNELS = ("laplace", "gaussian")

# Added, in units of the temperature, to the distance of the pair (x_i, x_i) when the negatives are x:
# relative to T, so the fields are scale equivariant; exp(-1e6) is exactly 0.
_SELF_MASK = 1e6


def _check_triplet(x, y_pos, y_neg) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Checked ``x``, ``y_pos``, ``y_neg`` (``x`` when None) and whether the negatives are ``x``."""
    x, y_pos = check_pair(x, y_pos, "x", "y_pos")
    if y_neg is None:
        if x.shape[0] < 2:
            raise ValueError("x must hold at least 2 samples when y_neg is None (the negatives are x without "
                             f"the sample itself), got {x.shape[0]}")  # fmt: skip
        return x, y_pos, x, True
    return x, y_pos, check_pair(x, y_neg, "x", "y_neg")[1], False


def _check_field(temperature, kernel=None, attraction=1.0, repulsion=1.0) -> tuple:
    """``(T, kernel, a, r)`` checked (``kernel`` None: a field without one)."""
    kernel = kernel if kernel is None else check_choice(kernel, "kernel", KERNELS)
    return (check_positive(temperature, "temperature"), kernel, check_nonnegative(attraction, "attraction"),
            check_nonnegative(repulsion, "repulsion"))  # fmt: skip


def _check_multi(temperatures, normalize, affinity_floor) -> tuple[tuple[float, ...], bool, float]:
    temperatures = temperatures.flatten() if isinstance(temperatures, Tensor) else temperatures
    temps = check_positive_seq(temperatures, "temperatures")
    return temps, check_bool(normalize, "normalize"), check_nonnegative(affinity_floor, "affinity_floor")


def _check_velocity(v, x: Tensor, who: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{who} must return a torch.Tensor, got {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"{who} must return shape {tuple(x.shape)} like x, got {tuple(v.shape)}")
    return v.detach()


def _check_state(state) -> dict:
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    return state


def _mean_shift(x: Tensor, y: Tensor, temperature: float, kernel: str, exclude_self: bool) -> Tensor:
    with torch.no_grad():
        if kernel == "laplace":
            logits = -torch.cdist(x, y) / temperature
        else:
            sq = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2.0 * x @ y.T).clamp_min(0.0)
            logits = -sq / (2.0 * temperature**2)
        if exclude_self:
            logits.diagonal().fill_(-math.inf)
        return torch.softmax(logits, dim=1) @ y - x


def _paper(x, y_pos, y_neg, self_neg, temperature, kernel, attraction, repulsion) -> Tensor:
    v_pos = _mean_shift(x, y_pos, temperature, kernel, False)
    return attraction * v_pos - repulsion * _mean_shift(x, y_neg, temperature, kernel, self_neg)


def _affinities(logits: Tensor, affinity_floor: float = 0.0) -> Tensor:
    """``sqrt(softmax_row * softmax_col)`` of the logits, optionally clamped before the root."""
    prod = torch.softmax(logits, dim=1) * torch.softmax(logits, dim=0)
    return (prod.clamp_min(affinity_floor) if affinity_floor > 0 else prod).sqrt()


def _coupled_force(logits, m, x, y_pos, y_neg, attraction, repulsion, affinity_floor=0.0) -> Tensor:
    """The Algorithm-2 force from logits ``(n, m + k)`` over ``[y_pos | y_neg]``."""
    a = _affinities(logits, affinity_floor)
    a_pos, a_neg = a[:, :m], a[:, m:]
    s_pos, s_neg = a_pos.sum(1, keepdim=True), a_neg.sum(1, keepdim=True)
    force = attraction * (a_pos * s_neg) @ y_pos - repulsion * (a_neg * s_pos) @ y_neg
    if attraction != repulsion:
        force = force - (attraction - repulsion) * (s_pos * s_neg) * x
    return force


def _algorithm2_logits(x, y_pos, y_neg, self_neg, temperature) -> Tensor:
    dist = torch.cdist(x, torch.cat([y_pos, y_neg], 0))
    if self_neg:
        dist[:, y_pos.shape[0] :].diagonal().add_(_SELF_MASK * temperature)
    return -dist / temperature


def _algorithm2(x, y_pos, y_neg, self_neg, temperature, attraction, repulsion) -> Tensor:
    with torch.no_grad():
        logits = _algorithm2_logits(x, y_pos, y_neg, self_neg, temperature)
        return _coupled_force(logits, y_pos.shape[0], x, y_pos, y_neg, attraction, repulsion)


def _multi_temperature(x, y_pos, y_neg, self_neg, temps, normalize, attraction, repulsion, floor, with_raw):
    """``(V, raw RMS as a tensor or None)`` of :class:`MultiTemperatureDrift`: no host read."""
    m, d = y_pos.shape[0], x.shape[1]
    with torch.no_grad():
        dist = torch.cdist(x, torch.cat([y_pos, y_neg], 0))
        if normalize:  # the mean accumulated in float64: the same for any thread count
            scale = dist.mean(dtype=torch.float64).to(dist.dtype).clamp_min(1e-3)
            c = (scale / math.sqrt(d)).clamp_min(1e-3)
        else:
            scale = c = torch.ones((), dtype=x.dtype, device=x.device)
        if self_neg:
            dist[:, m:].diagonal().add_(_SELF_MASK * (scale if normalize else max(temps)))
        xs, ps, ns = x / c, y_pos / c, y_neg / c
        total, raw = torch.zeros_like(x), torch.zeros_like(x)
        for R in temps:
            f = _coupled_force(-dist / (scale * R), m, xs, ps, ns, attraction, repulsion, floor)
            rms = f.pow(2).mean().clamp_min(1e-8).sqrt()
            if with_raw:
                raw = raw + f
            total = total + (f / rms if normalize else f)
        return c * total, _rms(c * raw) if with_raw else None


def paper_field(x, y_pos, y_neg=None, temperature: float = 0.05, kernel: str = "laplace", *,
                attraction: float = 1.0, repulsion: float = 1.0) -> Tensor:  # fmt: skip
    r"""The paper's drift field ``(n, d)``: attraction to the data minus repulsion from the samples,
    :math:`V_{p,q}(x) = a\,V^+_p(x) - r\,V^-_q(x)` with :math:`V^\pm(x) = \mathbb E[k(x, y)(y - x)] / \mathbb
    E[k(x, y)]`, two kernel mean shifts (:math:`p`: ``y_pos``, :math:`q`: ``y_neg``), :math:`k(x, y) =
    e^{-|x-y|/\kappa}` (``"laplace"``) or :math:`e^{-|x-y|^2/(2\kappa^2)}` (``"gaussian"``: :math:`V^+_p =
    \kappa^2\nabla\log(p * \mathcal N(0, \kappa^2 I))`); :math:`V_{p,q} = -V_{q,p}` when :math:`a = r`.

    Used in: chapter 8.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    return _paper(x, y_pos, y_neg, self_neg, *_check_field(temperature, kernel, attraction, repulsion))


def algorithm2_field(x, y_pos, y_neg=None, temperature: float = 0.05, *, attraction: float = 1.0,
                     repulsion: float = 1.0) -> Tensor:  # fmt: skip
    r"""The drift field as implemented (Algorithm 2 of the paper): logits :math:`-|x_i -
    t_j|/\kappa` over :math:`t = [y^+ \mid y^-]` (self-pairs pushed off by :math:`10^6 \kappa`), :math:`A =
    \sqrt{\mathrm{softmax}_j\,\mathrm{softmax}_i}`, :math:`Z^\pm_i = \sum_j A^\pm_{ij}`,
    :math:`B^\pm_i = \sum_j A^\pm_{ij} y^\pm_j / Z^\pm_i`, field ``(n, d)`` :math:`V_i = Z^+_i
    Z^-_i[\lambda_+(B^+_i - x_i) - \lambda_-(B^-_i - x_i)]`, :math:`\lambda_\pm` = ``attraction``,
    ``repulsion``.

    Used in: chapter 8.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    temperature, _, a, r = _check_field(temperature, None, attraction, repulsion)
    return _algorithm2(x, y_pos, y_neg, self_neg, temperature, a, r)


def algorithm2_affinities(x, y_pos, y_neg=None, temperature: float = 0.05) -> tuple[Tensor, Tensor]:
    r"""The affinities of Algorithm 2, :math:`A^+` ``(n, m)`` and :math:`A^-` ``(n, k)``: one symmetric
    Sinkhorn step :math:`A = D_r^{-1/2} K D_c^{-1/2}`, :math:`K_{ij} = e^{-|x_i - t_j|/\kappa}`,
    :math:`r = K\mathbf 1`, :math:`c = K^\top\mathbf 1` (marginals not prescribed): the "Sinkhorn proxy"
    reading of :func:`algorithm2_field`.

    Used in: chapter 8.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    temperature = check_positive(temperature, "temperature")
    with torch.no_grad():
        a = _affinities(_algorithm2_logits(x, y_pos, y_neg, self_neg, temperature))
    return a[:, : y_pos.shape[0]], a[:, y_pos.shape[0] :]


def gaussian_population_field(x, mp, Sp, mq, Sq, bandwidth: float, *, attraction: float = 1.0,
                              repulsion: float = 1.0) -> Tensor:  # fmt: skip
    r"""Population drift field of the Gaussian kernel between two Gaussians (closed form), :math:`V(x) =
    \sigma^2[\lambda_-(\sigma^2 I + \Sigma_\rho)^{-1}(x - \bar x) - \lambda_+(\sigma^2 I + \Sigma_\nu)^{-1}(x
    - \bar y)]`, data :math:`\nu = \mathcal N(\bar y, \Sigma_\nu)` (``mp`` ``(d,)``, ``Sp`` ``(d, d)``), model
    :math:`\rho = \mathcal N(\bar x, \Sigma_\rho)` (``mq``, ``Sq``), bandwidth :math:`\sigma`,
    :math:`\lambda_\pm` = ``attraction``, ``repulsion``; :math:`V^+ = \sigma^2\nabla\log(\nu * \mathcal N(0,
    \sigma^2 I))`. Covariances may be singular (a degenerate law: :math:`\sigma^2 I + \Sigma` stays
    invertible). Returns ``(n, d)`` in the promoted dtype.

    Used in: chapter 8.
    """
    x = check_samples(x, "x")
    mp, Sp = check_mean_cov(mp, Sp, "mp", "Sp", semidefinite=True)
    mq, Sq = check_mean_cov(mq, Sq, "mq", "Sq", semidefinite=True)
    for name, mean in (("mp", mp), ("mq", mq)):
        if mean.ndim != 1 or mean.shape[0] != x.shape[1]:
            raise ValueError(f"{name} must have shape (d,), d={x.shape[1]} like x, got {tuple(mean.shape)}")
    s = check_positive(bandwidth, "bandwidth")
    attraction, repulsion = _check_field(1.0, None, attraction, repulsion)[2:]
    dtype = torch.promote_types(torch.promote_types(x.dtype, mp.dtype), mq.dtype)
    x, mp, Sp, mq, Sq = (t.to(dtype=dtype, device=x.device) for t in (x, mp, Sp, mq, Sq))
    eye = torch.eye(x.shape[1], dtype=dtype, device=x.device)
    grad_q = torch.linalg.solve(s**2 * eye + Sq, (x - mq).T).T
    grad_p = torch.linalg.solve(s**2 * eye + Sp, (x - mp).T).T
    return s**2 * (repulsion * grad_q - attraction * grad_p)


def drift_rms(V) -> float:
    r"""Root mean square norm of a drift field ``(n, d)``, :math:`\big(\frac1n\sum_i |V_i|^2\big)^{1/2}`.

    Used in: chapter 8.
    """
    return float(_rms(check_samples(V, "V")))


def drifting_loss(fx: Tensor, V) -> Tensor:
    r"""Stop-gradient drifting loss (0-d) of the outputs ``fx`` ``(n, d)`` (attached) and the drift ``V``:
    :math:`\mathcal L` of the module docstring, :math:`\frac1n\sum_i |V_i|^2` in value, of gradient
    :math:`-\frac2n\sum_i J_\theta(e_i)^\top V_i`; shapes only are checked (a per-step primitive).

    Used in: chapter 8, ``cifar10.Trainer``.
    """
    if not isinstance(fx, Tensor):
        raise TypeError(f"fx must be a torch.Tensor, got {type(fx).__name__}")
    if fx.ndim != 2:
        raise ValueError(f"fx must have shape (n, d), got shape {tuple(fx.shape)}")
    V = as_tensor(V, "V")
    if V.shape != fx.shape:
        raise ValueError(f"V must have the shape of fx {tuple(fx.shape)}, got {tuple(V.shape)}")
    target = (fx + V.to(fx.dtype)).detach()
    return (fx - target).pow(2).sum(1).mean()


def jacobian_asymmetry(drift, x, y_pos, *, eps: float = 1e-5) -> float:
    r"""How far a drift on particles is from a gradient system,
    :math:`\|\tfrac12(J - J^\top)\|_F / \|J\|_F \in [0, 1]` (0 when :math:`J = 0`), with
    :math:`J = \partial\mathcal V/\partial X` of :math:`\mathcal V(X) = (V(x_1), \dots, V(x_n))` by central
    differences of step ``eps`` (:math:`2nd` calls of a deterministic ``drift``; use float64): 0 for a
    Wasserstein gradient flow on particles (a Hessian: MMD, Sinkhorn), 1 for a rotation.

    Used in: chapter 8.
    """
    check_callable(drift, "drift")  # drift(x, y_pos) -> V
    x, y_pos = (t.detach() for t in check_pair(x, y_pos, "x", "y_pos"))
    eps = check_positive(eps, "eps")
    n, d = x.shape
    cols = []
    for e in eps * torch.eye(n * d, dtype=x.dtype, device=x.device).reshape(n * d, n, d):  # one entry moved
        v_plus, v_minus = (_check_velocity(drift(x + s * e, y_pos), x, "drift") for s in (1.0, -1.0))
        cols.append((v_plus - v_minus).reshape(-1) / (2.0 * eps))
    J = torch.stack(cols, dim=1)  # J[a, b] = d V_a / d X_b
    norm = float(J.norm())
    return 0.0 if norm == 0.0 else float((0.5 * (J - J.T)).norm()) / norm


@runtime_checkable
class DriftField(Protocol):
    r"""A drift field from samples, ``drift(x, y_pos) -> V`` of shape ``(n, d)``; optionally with
    ``state_dict()`` / ``load_state_dict(state)``, saved in the checkpoints of :func:`train_drifting`.

    Used in: :func:`~gwf_tutorial.drifting.train_drifting`, ``methods.drifting``.
    """

    def __call__(self, x: Tensor, y_pos: Tensor) -> Tensor: ...


class _SampleDrift:
    """Shared plumbing: the public calls check ``x`` and ``y_pos``; ``_velocity`` (unchecked) returns ``V``
    and its raw RMS as a tensor, for the training loops, whose inputs are checked once."""

    _self_negatives = True  # the negatives are x itself: two samples at least

    def _check(self, x, y_pos) -> tuple[Tensor, Tensor]:
        self_neg = self._self_negatives
        return _check_triplet(x, y_pos, None)[:2] if self_neg else check_pair(x, y_pos, "x", "y_pos")

    def _velocity(self, x: Tensor, y_pos: Tensor) -> tuple[Tensor, Tensor]:
        v = self._field(x, y_pos)
        return v, _rms(v)

    def __call__(self, x, y_pos) -> Tensor:
        return self._velocity(*self._check(x, y_pos))[0]

    def state_dict(self) -> dict:
        """The internal state (random generators, critic) for checkpoints; empty for a stateless field."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` of the same kind of drift."""
        if _check_state(state):
            raise ValueError(f"{type(self).__name__} is stateless, got a state with keys {sorted(state)}")


class PaperDrift(_SampleDrift):
    r"""The paper's field :func:`paper_field` with the samples themselves as negatives (:math:`l \ne i`).

    Used in: chapter 8.
    """

    def __init__(self, temperature: float = 0.05, kernel: str = "laplace", *, attraction: float = 1.0,
                 repulsion: float = 1.0) -> None:  # fmt: skip
        self.temperature, self.kernel, self.attraction, self.repulsion = _check_field(
            temperature, kernel, attraction, repulsion)

    def _field(self, x, y_pos) -> Tensor:
        return _paper(x, y_pos, x, True, self.temperature, self.kernel, self.attraction, self.repulsion)


class Algorithm2Drift(_SampleDrift):
    r"""The implemented field :func:`algorithm2_field` with the samples themselves as negatives.

    Used in: chapters 8 and 9.
    """

    def __init__(self, temperature: float = 0.05, *, attraction: float = 1.0, repulsion: float = 1.0) -> None:
        self.temperature, _, self.attraction, self.repulsion = _check_field(temperature, None, attraction,
                                                                            repulsion)  # fmt: skip

    def _field(self, x, y_pos) -> Tensor:
        return _algorithm2(x, y_pos, x, True, self.temperature, self.attraction, self.repulsion)


class MultiTemperatureDrift(_SampleDrift):
    r"""The multi-temperature, RMS-normalised drift of the official ImageNet code (``drift_loss.py``), the
    samples themselves as negatives. With :math:`\bar D \ge 10^{-3}` the mean distance to
    :math:`[y^+ \mid x]`, :math:`c = \max(\bar D/\sqrt d, 10^{-3})` and :math:`F_R` the Algorithm-2 force on
    the inputs divided by :math:`c` (logits :math:`-|x_i - t_j|/(\bar D R)`, affinities
    :math:`\sqrt{\max(\text{row}\cdot\text{col}, \epsilon_A)}`),

    .. math::

        V = c \sum_{R} \frac{F_R}{\sqrt{\max(\overline{F_R^2}, 10^{-8})}}, \qquad
        \overline{F_R^2} = \frac{1}{nd}\sum_{i,k} (F_R)_{ik}^2,

    scale and translation equivariant (one temperature: :math:`\overline{(V/c)^2} = 1`: the loss stays flat
    while the raw drift RMS, of :math:`c\sum_R F_R`, decreases). ``temperatures``: the :math:`R` (relative
    to :math:`\bar D` when ``normalize``); ``normalize=False``: :math:`V = \sum_R F_R`, :math:`\bar D = c = 1`
    (one temperature and ``affinity_floor=0``: :class:`Algorithm2Drift`); ``affinity_floor``
    :math:`\epsilon_A` (official 1e-6; use 0 for batches of hundreds).

    Used in: chapter 8, ``cifar10.Trainer``.
    """

    def __init__(self, temperatures: Sequence[float] = (0.02, 0.05, 0.2), normalize: bool = True, *,
                 attraction: float = 1.0, repulsion: float = 1.0, affinity_floor: float = 1e-6) -> None:
        checked = _check_multi(temperatures, normalize, affinity_floor)
        self.temperatures, self.normalize, self.affinity_floor = checked
        self.attraction, self.repulsion = _check_field(1.0, None, attraction, repulsion)[2:]

    def _velocity(self, x: Tensor, y_pos: Tensor, with_raw: bool = True) -> tuple[Tensor, Tensor | None]:
        """``(V, raw RMS or None)``: no input checks, no host read (``cifar10`` calls it every step)."""
        return _multi_temperature(x, y_pos, x, True, self.temperatures, self.normalize, self.attraction,
                                  self.repulsion, self.affinity_floor, with_raw)  # fmt: skip


class ObjectiveDrift(_SampleDrift):
    r"""Drift from an objective's Wasserstein velocity :math:`v_\rho = -\nabla_x \frac{\delta F}{\delta\rho}`
    (``objective.velocity(x, y, at=None)``, e.g. a :class:`~gwf_tutorial.functionals.Objective`: the MMD
    witness, Sinkhorn's barycentric projection, the sliced-W drift), optionally with noise injection:
    :math:`V(x_i) = \lambda\,v_{\rho_n}(x_i + \beta \xi_i)`, :math:`\xi_i \sim \mathcal N(0, I)`, ``scale``
    :math:`\lambda > 0`, ``noise_level`` :math:`\beta \ge 0` (0: an explicit flow step; > 0: the noise
    injection of Arbel et al., NeurIPS 2019), ``generator`` drawing :math:`u` (saved by :meth:`state_dict`).

    Used in: chapter 8.
    """

    _self_negatives = False

    def __init__(self, objective, scale: float = 1.0, *, noise_level: float = 0.0, generator=None) -> None:
        if not callable(getattr(objective, "velocity", None)):
            raise TypeError("objective must have a callable velocity(x, y) method (a functionals.Objective), "
                            f"got {type(objective).__name__}")  # fmt: skip
        self.objective, self.scale = objective, check_positive(scale, "scale")
        self.noise_level = check_nonnegative(noise_level, "noise_level")
        self.generator = check_generator(generator)

    def _field(self, x, y_pos) -> Tensor:
        if self.noise_level > 0:
            gen_device = self.generator.device if self.generator is not None else x.device
            u = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=gen_device)
            v = self.objective.velocity(x, y_pos, at=x + self.noise_level * u.to(x.device))
        else:
            v = self.objective.velocity(x, y_pos)
        return self.scale * _check_velocity(v, x, "objective.velocity")

    def _generators(self) -> dict:
        gens = {"noise": self.generator, "objective": getattr(self.objective, "generator", None)}
        return {k: g for k, g in gens.items() if isinstance(g, torch.Generator)}

    def state_dict(self) -> dict:
        """The states of the generators held, under ``"noise"`` and ``"objective"``."""
        return {k: g.get_state() for k, g in self._generators().items()}

    def load_state_dict(self, state: dict) -> None:
        """Restore the generator states of :meth:`state_dict`."""
        gens, _ = self._generators(), _check_state(state)
        if set(state) != set(gens):
            raise ValueError(f"state holds generators {sorted(state)}, this drift has {sorted(gens)}")
        for k, g in gens.items():
            g.set_state(state[k])


class CriticDrift(_SampleDrift):
    r"""KL-flow drift :math:`V(x) = \lambda\,\nabla D(x)` (``scale`` :math:`\lambda > 0`) from a logistic
    critic :math:`D \approx \log(\nu/\rho) + \mathrm{const}`, refitted at every call (warm-started,
    ``n_iters`` full-batch Adam steps of :func:`gwf_tutorial.critics.logistic_ratio` at rate ``lr``).
    ``critic``: ``(n, d) -> (n, 1)`` or ``(n,)``; default ``nets.MLP(d, 1, hidden, depth, "silu")``, built at
    the first call from torch's global RNG.

    Used in: chapter 8.
    """

    _self_negatives = False

    def __init__(self, critic: nn.Module | None = None, *, n_iters: int = 20, lr: float = 1e-3,
                 hidden: int = 64, depth: int = 2, scale: float = 1.0) -> None:  # fmt: skip
        if critic is not None and not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
        self.n_iters, self.lr = check_int(n_iters, "n_iters"), check_positive(lr, "lr")
        self.hidden, self.depth = check_int(hidden, "hidden"), check_int(depth, "depth", min_value=0)
        self.scale, self.last_loss = check_positive(scale, "scale"), math.nan
        self.critic = critic
        self._optimizer = None if critic is None else torch.optim.Adam(critic.parameters(), lr=self.lr)

    def _build(self, in_dim: int, dtype: torch.dtype, device=None) -> None:
        self.critic = MLP(in_dim, 1, self.hidden, self.depth, "silu", dtype=dtype).to(device)
        self._optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.lr)

    def _field(self, x, y_pos) -> Tensor:
        """Refit (``n_iters`` Adam steps, ``y_pos`` labelled 1, ``x`` 0; ``last_loss``: the loss before the
        last step), then the field."""
        if self.critic is None:
            self._build(x.shape[1], x.dtype, x.device)
        with torch.enable_grad():
            fit = logistic_ratio(x.detach(), y_pos.detach(), self.critic, self.n_iters,
                                 optimizer=self._optimizer, progress=False)  # fmt: skip
        self.last_loss = fit.history.loss[-1]
        return self.scale * value_and_grad(self.critic, x)[1]

    def state_dict(self) -> dict:
        """Critic weights, Adam state, ``in_dim``, ``dtype``, ``last_loss``; ``{}`` before the first call."""
        if self.critic is None:
            return {}
        p = next(self.critic.parameters(), None)
        return {"critic": self.critic.state_dict(), "optimizer": self._optimizer.state_dict(),
                "in_dim": None if p is None else int(getattr(self.critic, "in_dim", -1)),
                "dtype": None if p is None else str(p.dtype).removeprefix("torch."),
                "last_loss": self.last_loss}  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` (building the default critic if needed)."""
        if not _check_state(state):
            return
        if self.critic is None:
            in_dim, dtype = state.get("in_dim"), state.get("dtype")
            if not isinstance(in_dim, int) or in_dim < 1 or not isinstance(dtype, str):
                raise ValueError("state has no in_dim/dtype to rebuild the default critic")
            first = next(iter(state["critic"].values()), None)
            self._build(in_dim, getattr(torch, dtype), first.device if isinstance(first, Tensor) else None)
        self.critic.load_state_dict(state["critic"])
        if state.get("optimizer") is not None:
            self._optimizer.load_state_dict(state["optimizer"])
        self.last_loss = float(state.get("last_loss", math.nan))


@dataclass
class DriftingHistory:
    r"""Result of :func:`train_drifting`: the per-step ``loss`` :math:`\frac1n\sum_i|V_i|^2` and raw drift
    RMS ``drift_rms`` (all steps, also those before a resume), the trained ``net``, ``latent_dim`` and
    ``resumed_from`` (the step this call resumed at; 0 for a fresh run).

    Used in: :func:`~gwf_tutorial.drifting.train_drifting`, ``methods.drifting``.
    """

    loss: list[float] = field(default_factory=list)
    drift_rms: list[float] = field(default_factory=list)
    net: nn.Module | None = None
    latent_dim: int = 0
    resumed_from: int = 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""``n`` samples :math:`G_\theta(z)`, :math:`z \sim \mathcal N(0, I)`: ``(n, d)``, detached."""
        n, p = check_int(n, "n"), next(self.net.parameters())
        e = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype)
        with torch.no_grad():
            return self.net(e.to(p.device))


def _data_sampler(data, n: int, generator, dtype, device) -> Callable[[], Tensor]:
    if isinstance(data, Tensor) or (not callable(data) and not hasattr(data, "sample")):
        pool = check_samples(data, "data").to(dtype=dtype, device=device)
        return lambda: pool[torch.randint(0, pool.shape[0], (n,), generator=generator).to(device)]
    if callable(getattr(data, "sample", None)):
        name, draw = "data.sample(n)", lambda: data.sample(n, generator=generator)
    else:
        name, draw = "data(n)", lambda: data(n)
    return lambda: check_samples(draw(), name).to(dtype=dtype, device=device)


def _check_checkpoint_args(checkpoint, checkpoint_every, n_iters: int) -> tuple[Path | None, int]:
    if checkpoint is None:
        if checkpoint_every is not None:
            raise ValueError("checkpoint_every was given without checkpoint (a file path)")
        return None, 0
    if not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(f"checkpoint must be a file path (str, os.PathLike), got {type(checkpoint).__name__}")
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"checkpoint must be a file path, got the directory {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"checkpoint's folder {str(path.parent)!r} does not exist")
    every = max(1, min(100, n_iters)) if checkpoint_every is None else checkpoint_every
    return path, check_int(every, "checkpoint_every")


def _check_train_args(net, drift, n_iters, batch_size, n_data, latent_dim, lr, generator) -> dict:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    check_callable(drift, "drift")  # drift(x, y_pos) -> V
    n_iters, batch_size = check_int(n_iters, "n_iters"), check_int(batch_size, "batch_size")
    latent_dim = getattr(net, "in_dim", None) if latent_dim is None else latent_dim
    if latent_dim is None:
        raise ValueError("latent_dim must be given when net has no in_dim attribute")
    check_generator(generator)
    if not any(p.requires_grad for p in net.parameters()):
        raise ValueError("net has no trainable parameters")
    n_data = batch_size if n_data is None else check_int(n_data, "n_data")
    return {"n_iters": n_iters, "batch_size": batch_size, "n_data": n_data,
            "latent_dim": check_int(latent_dim, "latent_dim"), "lr": check_positive(lr, "lr")}  # fmt: skip


def _drift_settings(drift) -> dict:
    """The drift's kind and public numeric / string settings (compared when a run resumes)."""
    plain = (bool, int, float, str)
    settings = {
        k: v for k, v in getattr(drift, "__dict__", {}).items()
        if not k.startswith(("_", "last_"))
        and (isinstance(v, plain) or (isinstance(v, tuple) and all(isinstance(u, plain) for u in v)))
    }  # fmt: skip
    return {"type": type(drift).__qualname__, **settings}


def _is_stateful(drift) -> bool:
    return callable(getattr(drift, "state_dict", None)) and callable(getattr(drift, "load_state_dict", None))


class _DriftLoss:
    """One drifting step as a :class:`~gwf_tutorial.trainer.Trainer` problem (no critic); the drift's
    inputs are checked at the first step only (no host reads after it)."""

    def __init__(self, net, drift, draw, batch_size: int, latent_dim: int, generator) -> None:
        self.net, self.drift, self.draw, self.generator = net, drift, draw, generator
        self.batch_size, self.latent_dim, self.checked = batch_size, latent_dim, False

    def batch(self) -> None:
        return None

    def _velocity(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        drift, raw = self.drift, None
        if isinstance(drift, _SampleDrift):
            V, raw = drift._velocity(*((x, y) if self.checked else drift._check(x, y)))
        else:
            V = drift(x, y)
        self.checked = True
        V = _check_velocity(V, x, "drift")
        return V, _rms(V) if raw is None else raw

    def map_loss(self, _) -> tuple[Tensor, list[Tensor]]:
        p = next(self.net.parameters())
        e = torch.randn(self.batch_size, self.latent_dim, generator=self.generator, dtype=p.dtype)
        y, x = self.draw(), self.net(e.to(p.device))
        if x.ndim != 2 or x.shape[0] != self.batch_size:
            raise ValueError(f"net must map (n, latent_dim) to (n, d), got {tuple(x.shape)}")
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"data must have dimension d={x.shape[1]} like net's output, got {y.shape[1]}")
        V, raw = self._velocity(x.detach(), y)
        loss = drifting_loss(x, V)
        return loss, [loss.detach(), torch.as_tensor(raw, dtype=torch.float64, device=x.device)]


_KIND = "drifting.train_drifting"


def train_drifting(net: nn.Module, data, drift: DriftField, *, n_iters: int = 2000, batch_size: int = 2048,
                   n_data: int | None = None, latent_dim: int | None = None, lr: float = 1e-3,
                   generator: torch.Generator | None = None, progress: bool = True,
                   checkpoint: str | os.PathLike | None = None,
                   checkpoint_every: int | None = None) -> DriftingHistory:  # fmt: skip
    r"""Train a one-step generator with the drifting loss and any drift field (resumable); its history.

    Each step draws :math:`z_i \sim \mathcal N(0, I)`, :math:`x_i = G_\theta(z_i)`, fresh data :math:`y_j \sim
    \nu`, and takes an Adam step (torch's defaults) on :func:`drifting_loss` with :math:`V = \mathrm{drift}(x,
    y)`. ``net``: ``(n, latent_dim) -> (n, d)``, trained in place (``latent_dim`` defaults to ``net.in_dim``).
    ``data``: a tensor ``(N, d)`` (``n_data`` rows per step, default ``batch_size``, with replacement), an
    object with ``sample(n, generator=)`` or a callable ``n -> (n, d)``. ``n_iters``: total steps (a resumed
    run continues up to it). ``generator`` draws the noise and the data. ``checkpoint``: saved every
    ``checkpoint_every`` steps (default ``min(100, n_iters)``) and at the end, resumed from when it exists
    (net, Adam, history, random states, the drift's ``state_dict``: the same result as an uninterrupted run);
    a damaged file, another run, other settings or a step past ``n_iters`` are refused (``ValueError``). The
    progress bar shows the loss and the raw drift RMS.

    Used in: chapters 8 and 9.
    """
    args = _check_train_args(net, drift, n_iters, batch_size, n_data, latent_dim, lr, generator)
    n_iters = args.pop("n_iters")
    ckpt_path, every = _check_checkpoint_args(checkpoint, checkpoint_every, n_iters)
    p = next(p for p in net.parameters() if p.requires_grad)
    draw = _data_sampler(data, args["n_data"], generator, p.dtype, p.device)
    trainer = Trainer(net, lr=args["lr"], betas=(0.9, 0.999), generator=generator)  # torch's Adam defaults
    hist = DriftingHistory(net=net, latent_dim=args["latent_dim"])
    config = {**args, "drift": _drift_settings(drift)}

    def restore(ck: dict) -> None:  # the drift's state, the random states and the history
        if ck["step"] > n_iters:
            raise ValueError(f"checkpoint {str(ckpt_path)!r} is at step {ck['step']}, past n_iters={n_iters}")
        if _is_stateful(drift):
            drift.load_state_dict(ck["drift"])
        elif ck["drift"]:
            raise ValueError("checkpoint holds a drift state but drift has no load_state_dict")
        set_rng_state(ck["rng"], generator)
        hist.loss, hist.drift_rms = list(ck["loss"]), list(ck["drift_rms"])
        hist.resumed_from = int(ck["step"])

    if ckpt_path is not None and ckpt_path.exists():
        trainer.load(ckpt_path, kind=_KIND, config=config, restore=restore, what="net/optimizer")

    def record(step: int, records: list[Tensor]) -> None:
        hist.loss.append(float(records[0]))
        hist.drift_rms.append(float(records[1]))
        if ckpt_path is not None and ((step + 1) % every == 0 or step + 1 == n_iters):
            extra = {"step": step + 1, "drift": drift.state_dict() if _is_stateful(drift) else {}}
            extra.update(rng=rng_state(generator), loss=list(hist.loss), drift_rms=list(hist.drift_rms))
            trainer.save(ckpt_path, kind=_KIND, config=config, extra=extra)

    problem = _DriftLoss(net, drift, draw, args["batch_size"], args["latent_dim"], generator)
    kw = {"desc": "drifting", "names": ("loss", "drift_rms"), "progress": progress, "callback": record}
    trainer.fit(problem, n_iters, start=hist.resumed_from, **kw)
    return hist
