r"""Drifting models: the drift field in its forms, the stop-gradient loss and one training loop.

A drifting model (Deng et al. 2026) trains a one-step generator :math:`f_\theta` by regressing its
own output onto a shifted copy of itself,

.. math::

    \mathcal L(\theta) = \mathbb E_{e}\,\big|f_\theta(e)
    - \mathrm{sg}\big(f_\theta(e) + V(f_\theta(e))\big)\big|^2,

where :math:`V` is a *drift field* that pulls generated samples towards the data and pushes them
away from each other. The value of the loss is :math:`\mathbb E|V|^2` and its gradient is
:math:`-2\,\mathbb E[J_\theta^\top V]`: one step of the loss is an explicit parametric step of the
flow with velocity :math:`V` (chapter 8).

This module holds

- the fields as functions of samples: the paper's row-normalised mean-shift field
  (:func:`mean_shift`, :func:`paper_field`), the field of the toy code (:func:`algorithm2_field`,
  with its affinities :func:`algorithm2_affinities`, a one-shot Sinkhorn scaling), the
  multi-temperature, RMS-normalised force of the ImageNet code (:func:`multi_temperature_field`)
  and the closed-form population field of Gaussians with a Gaussian kernel
  (:func:`gaussian_population_field`);
- a test of the Wasserstein-gradient structure of any drift on particles
  (:func:`jacobian_asymmetry`: zero for gradient flows such as MMD or Sinkhorn, not for the
  drifting fields);
- the same fields as callables ``drift(x, y_pos) -> V`` (:class:`DriftField`): :class:`PaperDrift`,
  :class:`Algorithm2Drift`, :class:`MultiTemperatureDrift`, and drifts built from other objectives,
  :class:`ObjectiveDrift` (any :mod:`gwf_tutorial.functionals` objective with a ``velocity``: MMD
  witness, Sinkhorn barycentric projection, sliced-W; optional noise injection) and
  :class:`CriticDrift` (a logistic critic, the KL flow velocity);
- the loss :func:`drifting_loss` and the loop :func:`train_drifting`, which logs the raw drift RMS
  next to the loss (the loss of a normalised field stays flat while the raw drift shrinks), shows
  both in its progress bar, and saves / resumes checkpoints (``checkpoint=path``).

Conventions: ``x`` ``(n, d)`` are generated samples where the field is evaluated, ``y_pos``
``(m, d)`` data samples, ``y_neg`` ``(k, d)`` generated samples (``None``: ``x`` itself, with the
pair :math:`(x_i, x_i)` removed). Fields are computed without gradients and returned detached.

References
----------
Deng et al. 2026, "Generative Modeling via Drifting", arXiv:2602.04770
(code ``lambertae/drifting``).
Gretton et al. 2026, "On the Wasserstein Gradient Flow Interpretation of Drifting Models",
arXiv:2605.05118.
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
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.critics import logistic_ratio
from gwf_tutorial.train import rng_state, set_rng_state
from gwf_tutorial.trainer import Trainer

__all__ = [
    "TOY_DEFAULTS",
    "KERNELS",
    "mean_shift",
    "paper_field",
    "algorithm2_field",
    "algorithm2_affinities",
    "multi_temperature_field",
    "gaussian_population_field",
    "drift_rms",
    "drifting_loss",
    "jacobian_asymmetry",
    "DriftField",
    "PaperDrift",
    "Algorithm2Drift",
    "MultiTemperatureDrift",
    "ObjectiveDrift",
    "CriticDrift",
    "DriftingHistory",
    "toy_generator",
    "train_drifting",
]

#: Settings of the official 2-D toy demo (Deng et al. 2026, Algorithm 2 notebook): 32-d Gaussian
#: noise, an MLP with 3 hidden layers of 256 SiLU units, Adam with learning rate 1e-3, 2000 steps,
#: 2048 generated + 2048 data samples per step, temperature 0.05 (Laplace kernel
#: ``exp(-|x - y| / T)``), data scaled to [-1, 1].
TOY_DEFAULTS: dict = {
    "latent_dim": 32,
    "hidden": 256,
    "depth": 3,
    "activation": "silu",
    "lr": 1e-3,
    "n_iters": 2000,
    "batch_size": 2048,
    "n_data": 2048,
    "temperature": 0.05,
    "data_range": (-1.0, 1.0),
}

#: Kernels of :func:`mean_shift` / :func:`paper_field`, as log-kernels of the distance.
KERNELS = ("laplace", "gaussian")

# Added, in units of the temperature, to the distance of the pair (x_i, x_i) when the negatives are x
# itself: no self-attraction. Relative to the temperature, so that the fields are scale equivariant
# (V(s x, s y; s T) = s V(x, y; T)); exp(-1e6) is exactly 0, as exp(-1e6 / T) was.
_SELF_MASK = 1e6


# ---------------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------------


def _check_triplet(x, y_pos, y_neg) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validate ``x``, ``y_pos``, ``y_neg``; return them with ``self_neg`` (negatives are ``x``)."""
    x = check_samples(x, "x")
    y_pos = check_samples(y_pos, "y_pos")
    check_same_dim(x, y_pos, "x", "y_pos")
    if y_neg is None:
        if x.shape[0] < 2:
            raise ValueError(
                "x must hold at least 2 samples when y_neg is None (the negatives are x without "
                f"the sample itself), got {x.shape[0]}"
            )
        return x, y_pos, x, True
    y_neg = check_samples(y_neg, "y_neg")
    check_same_dim(x, y_neg, "x", "y_neg")
    return x, y_pos, y_neg, False


def _check_kernel(kernel) -> str:
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a string, got {type(kernel).__name__}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    return kernel


def _check_temperatures(temperatures) -> tuple[float, ...]:
    if isinstance(temperatures, Tensor):
        temperatures = temperatures.flatten().tolist()
    if isinstance(temperatures, str) or not isinstance(temperatures, Sequence):
        raise TypeError(
            f"temperatures must be a sequence of positive numbers, got {type(temperatures).__name__}"
        )
    if len(temperatures) == 0:
        raise ValueError("temperatures must hold at least one temperature")
    return tuple(check_positive(t, f"temperatures[{i}]") for i, t in enumerate(temperatures))


def _log_kernel(x: Tensor, y: Tensor, temperature: float, kernel: str) -> Tensor:
    """``log k(x_i, y_j)``, shape ``(n, m)``: ``-|x-y|/T`` (Laplace) or ``-|x-y|^2/(2T^2)``."""
    if kernel == "laplace":
        return -torch.cdist(x, y) / temperature
    sq = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2.0 * x @ y.T).clamp_min(0.0)
    return -sq / (2.0 * temperature**2)


def _affinities(logits: Tensor, affinity_floor: float = 0.0) -> Tensor:
    """``sqrt(softmax_row * softmax_col)`` of the logits, optionally clamped before the root."""
    prod = torch.softmax(logits, dim=1) * torch.softmax(logits, dim=0)
    if affinity_floor > 0:
        prod = prod.clamp_min(affinity_floor)
    return prod.sqrt()


def _coupled_force(
    logits: Tensor,
    m: int,
    x: Tensor,
    y_pos: Tensor,
    y_neg: Tensor,
    attraction: float,
    repulsion: float,
    affinity_floor: float = 0.0,
) -> Tensor:
    """The Algorithm-2 force from logits ``(n, m + k)`` over ``[y_pos | y_neg]``."""
    a = _affinities(logits, affinity_floor)
    a_pos, a_neg = a[:, :m], a[:, m:]
    s_pos = a_pos.sum(1, keepdim=True)
    s_neg = a_neg.sum(1, keepdim=True)
    force = attraction * (a_pos * s_neg) @ y_pos - repulsion * (a_neg * s_pos) @ y_neg
    if attraction != repulsion:
        force = force - (attraction - repulsion) * (s_pos * s_neg) * x
    return force


# ---------------------------------------------------------------------------------------------
# fields
# ---------------------------------------------------------------------------------------------


def mean_shift(
    x, y, temperature: float = 0.05, kernel: str = "laplace", *, exclude_self: bool = False
) -> Tensor:
    r"""Row-normalised kernel mean shift of ``x`` towards the samples ``y`` (one half of the drift).

    .. math::

        V^+_p(x) = \frac{\mathbb E_{y\sim p}[k(x, y)\,(y - x)]}{\mathbb E_{y\sim p}[k(x, y)]},
        \qquad \widehat V^+(x_i) = \sum_j \frac{k(x_i, y_j)}{\sum_l k(x_i, y_l)}\,(y_j - x_i),

    with :math:`k(x, y) = e^{-|x-y|/T}` (``"laplace"``, the paper's kernel) or
    :math:`k(x, y) = e^{-|x-y|^2/(2T^2)}` (``"gaussian"``; then :math:`T = s` is the bandwidth and
    :math:`V^+_p = s^2\nabla\log p_s`, :math:`p_s = p * \mathcal N(0, s^2 I)`; chapter 8).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Points where the shift is evaluated.
    y : Tensor, shape (m, d)
        Samples of :math:`p`.
    temperature : float, default 0.05
        :math:`T > 0` (the bandwidth :math:`s` for the Gaussian kernel).
    kernel : {"laplace", "gaussian"}, default "laplace"
        The kernel.
    exclude_self : bool, default False
        Drop the pairs :math:`(x_i, y_i)`; requires ``y`` to have as many rows as ``x`` (used when
        ``y`` is ``x`` itself).

    Returns
    -------
    Tensor, shape (n, d)
        :math:`\widehat V^+(x_i)`, detached, in the dtype of ``x``.

    Used in: chapter 8 (drifting models: the drift as a difference of two mean shifts).

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, Eq. for :math:`V^+_p`; Gretton et al. 2026,
    arXiv:2605.05118 (the Gaussian-kernel reading :math:`s^2\nabla\log p_s`).
    """
    x = check_samples(x, "x")
    y = check_samples(y, "y")
    check_same_dim(x, y, "x", "y")
    temperature = check_positive(temperature, "temperature")
    kernel = _check_kernel(kernel)
    if exclude_self and (y.shape[0] != x.shape[0] or x.shape[0] < 2):
        raise ValueError(
            f"exclude_self needs y with as many rows as x (at least 2), got {x.shape[0]} and {y.shape[0]}"
        )
    with torch.no_grad():
        logits = _log_kernel(x, y, temperature, kernel)
        if exclude_self:
            logits.diagonal().fill_(-math.inf)
        return torch.softmax(logits, dim=1) @ y - x


def paper_field(
    x,
    y_pos,
    y_neg=None,
    temperature: float = 0.05,
    kernel: str = "laplace",
    *,
    attraction: float = 1.0,
    repulsion: float = 1.0,
) -> Tensor:
    r"""The paper's drift field: attraction to the data minus repulsion from the generated samples.

    .. math::

        V_{p,q}(x) = a\,V^+_p(x) - r\,V^-_q(x), \qquad
        V^\pm(x) = \frac{\mathbb E[k(x, y)(y - x)]}{\mathbb E[k(x, y)]},

    :math:`p` the data (``y_pos``), :math:`q` the model (``y_neg``), :math:`a = r = 1` in the paper
    (then :math:`V_{p,q} = -V_{q,p}`), :math:`k` the Laplace kernel :math:`e^{-|x-y|/T}` or the
    Gaussian kernel :math:`e^{-|x-y|^2/(2T^2)}`. See :func:`mean_shift`.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Generated samples where the field is evaluated.
    y_pos : Tensor, shape (m, d)
        Data samples (attraction).
    y_neg : Tensor, shape (k, d), optional
        Generated samples (repulsion); ``None`` uses ``x`` without the pair :math:`(x_i, x_i)`.
    temperature : float, default 0.05
        :math:`T > 0` (bandwidth :math:`s` for the Gaussian kernel).
    kernel : {"laplace", "gaussian"}, default "laplace"
        The kernel; the paper uses Laplace.
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0`, the weights of the two halves (the paper's ablation uses 1.5).

    Returns
    -------
    Tensor, shape (n, d)
        :math:`V(x_i)`, detached.

    Used in: chapter 8 (the paper's field, antisymmetry, the Gaussian-kernel fixed point).

    References
    ----------
    Deng et al. 2026, "Generative Modeling via Drifting", arXiv:2602.04770, Sec. 3.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    temperature = check_positive(temperature, "temperature")
    kernel = _check_kernel(kernel)
    attraction = check_nonnegative(attraction, "attraction")
    repulsion = check_nonnegative(repulsion, "repulsion")
    v_pos = mean_shift(x, y_pos, temperature, kernel)
    v_neg = mean_shift(x, y_neg, temperature, kernel, exclude_self=self_neg)
    return attraction * v_pos - repulsion * v_neg


def algorithm2_field(
    x,
    y_pos,
    y_neg=None,
    temperature: float = 0.05,
    *,
    attraction: float = 1.0,
    repulsion: float = 1.0,
) -> Tensor:
    r"""The drift field as implemented (Algorithm 2 of the paper, the toy notebook).

    With logits :math:`\ell_{ij} = -|x_i - t_j|/T` over the targets :math:`t = [y^+ \mid y^-]`
    (the distance of the pair :math:`(x_i, x_i)` increased by :math:`10^6\,T` when :math:`y^- = x`),

    .. math::

        A_{ij} = \sqrt{\mathrm{softmax}_j(\ell_{i\cdot})\;\mathrm{softmax}_i(\ell_{\cdot j})},
        \quad S^\pm_i = \sum_{j} A^\pm_{ij}, \quad
        B^\pm_i = \frac{\sum_j A^\pm_{ij} y^\pm_j}{S^\pm_i},

    .. math::

        V_i = S^+_i S^-_i\,\big[a\,(B^+_i - x_i) - r\,(B^-_i - x_i)\big]
        \overset{a = r = 1}{=} (A^+ \odot S^-)\,y^+ - (A^- \odot S^+)\,y^-
        = S^+_i S^-_i (B^+_i - B^-_i).

    The row–column (:math:`\sqrt{\text{row}\cdot\text{col}}`) normalisation is a one-shot proxy of
    an entropic transport plan (chapter 8).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Generated samples where the field is evaluated (the column softmax runs over them).
    y_pos : Tensor, shape (m, d)
        Data samples.
    y_neg : Tensor, shape (k, d), optional
        Negative (generated) samples; ``None`` means ``x`` with the self-pair masked.
    temperature : float, default 0.05
        :math:`T > 0`, in the units of the distances.
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0` (the paper's attraction/repulsion ablation).

    Returns
    -------
    Tensor, shape (n, d)
        :math:`V_i`, detached.

    Used in: chapter 8 (the implemented field, its fixed point and its "Sinkhorn proxy" reading).

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, Algorithm 2 and the official toy notebook.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    temperature = check_positive(temperature, "temperature")
    attraction = check_nonnegative(attraction, "attraction")
    repulsion = check_nonnegative(repulsion, "repulsion")
    with torch.no_grad():
        dist = torch.cdist(x, torch.cat([y_pos, y_neg], 0))
        if self_neg:
            dist[:, y_pos.shape[0] :].diagonal().add_(_SELF_MASK * temperature)
        return _coupled_force(-dist / temperature, y_pos.shape[0], x, y_pos, y_neg, attraction, repulsion)


def algorithm2_affinities(x, y_pos, y_neg=None, temperature: float = 0.05) -> tuple[Tensor, Tensor]:
    r"""The affinities of Algorithm 2: a one-shot, geometric-mean scaling of the Gibbs kernel.

    With :math:`K_{ij} = e^{-|x_i - t_j|/T}` over the targets :math:`t = [y^+ \mid y^-]` (self-pair
    masked when :math:`y^- = x`), row sums :math:`r_i = \sum_j K_{ij}` and column sums
    :math:`c_j = \sum_i K_{ij}`,

    .. math::

        A_{ij} = \sqrt{\frac{K_{ij}}{r_i}\,\frac{K_{ij}}{c_j}}
        = \frac{K_{ij}}{\sqrt{r_i c_j}}, \qquad A = D_r^{-1/2} K D_c^{-1/2}.

    A Sinkhorn plan has the same form :math:`\mathrm{diag}(u) K \mathrm{diag}(v)`, with scalings
    iterated until both marginals are uniform; :math:`A` stops after one symmetric step
    (:math:`u = r^{-1/2}`, :math:`v = c^{-1/2}`), so its marginals are not prescribed. This is the
    "Sinkhorn proxy" reading of the implemented field (Gretton et al. 2026).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Generated samples (the column sums run over them).
    y_pos : Tensor, shape (m, d)
        Data samples.
    y_neg : Tensor, shape (k, d), optional
        Negatives; ``None`` means ``x`` with the self-pair masked (then ``k = n``).
    temperature : float, default 0.05
        :math:`T > 0`.

    Returns
    -------
    tuple of Tensor, shapes (n, m) and (n, k)
        :math:`A^+` and :math:`A^-`, detached; :func:`algorithm2_field` is
        :math:`(A^+ \odot S^-)\,y^+ - (A^- \odot S^+)\,y^-` with :math:`S^\pm = A^\pm\mathbf 1`.

    Used in: chapter 8 (the implemented field as a Sinkhorn proxy).

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, Algorithm 2; Gretton et al. 2026, arXiv:2605.05118.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    temperature = check_positive(temperature, "temperature")
    with torch.no_grad():
        dist = torch.cdist(x, torch.cat([y_pos, y_neg], 0))
        if self_neg:
            dist[:, y_pos.shape[0] :].diagonal().add_(_SELF_MASK * temperature)
        a = _affinities(-dist / temperature)
    m = y_pos.shape[0]
    return a[:, :m], a[:, m:]


def multi_temperature_field(
    x,
    y_pos,
    y_neg=None,
    temperatures: Sequence[float] = (0.02, 0.05, 0.2),
    normalize: bool = True,
    *,
    attraction: float = 1.0,
    repulsion: float = 1.0,
    affinity_floor: float = 1e-6,
    return_info: bool = False,
):
    r"""The multi-temperature, RMS-normalised drift of the official ImageNet code.

    With ``normalize=True`` (the official ``drift_loss``): let :math:`\bar D` be the mean of all
    distances :math:`|x_i - t_j|` to the targets :math:`t = [y^- \mid y^+]` (self-pairs included,
    before masking), :math:`c = \bar D/\sqrt d` the input scale (so that the rescaled inputs
    :math:`x/c` have mean distance :math:`\sqrt d`). For each temperature :math:`R` the Algorithm-2
    force :math:`F_R` is computed from the logits :math:`-|x_i - t_j| / (\bar D R)` on the rescaled
    inputs, with :math:`A = \sqrt{\max(\text{row}\cdot\text{col}, \epsilon_A)}`, and divided by its
    per-coordinate RMS:

    .. math::

        V = c \sum_{R} \frac{F_R}{\sqrt{\max(\overline{F_R^2}, 10^{-8})}}, \qquad
        \overline{F_R^2} = \frac{1}{nd}\sum_{i,k} (F_R)_{ik}^2 .

    So :math:`V(\lambda x + b, \lambda y + b) = \lambda V(x, y)` (scale and translation
    equivariant), and with one temperature :math:`\frac{1}{nd}|V/c|^2 = 1` exactly: the loss of the
    official code (:math:`|V/c|^2` averaged over coordinates) stays roughly constant, which is why
    the raw drift (``info["raw_rms"]``) is the quantity to monitor. Clamps as in the official
    code: :math:`\bar D \ge 10^{-3}`, :math:`c \ge 10^{-3}`.

    With ``normalize=False``: :math:`V = \sum_R F_R` with the temperatures in raw distance units
    (one temperature and ``affinity_floor=0``: :func:`algorithm2_field`).

    Differences from the official code: ``y_neg`` given means exactly those negatives (the official
    code always adds the generated batch; pass ``y_neg=None`` for the standard case); the self-pair
    is masked with :math:`+10^6 \bar D` on the distance (:math:`+10^6 \max R` with ``normalize=False``;
    official: :math:`+100` after normalisation; both remove it); the result is returned in the units
    of ``x`` (multiply by :math:`1/c` for the official scaled units).

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Generated samples where the field is evaluated.
    y_pos : Tensor, shape (m, d)
        Data samples.
    y_neg : Tensor, shape (k, d), optional
        Negatives; ``None`` means ``x`` with the self-pair masked.
    temperatures : sequence of float, default (0.02, 0.05, 0.2)
        The temperatures :math:`R` (relative to :math:`\bar D` when ``normalize``).
    normalize : bool, default True
        Normalise distances and per-temperature forces as above.
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0` as in :func:`algorithm2_field`.
    affinity_floor : float, default 1e-6
        :math:`\epsilon_A \ge 0`, the clamp of :math:`\text{row}\cdot\text{col}` before the square
        root (official: ``1e-6``; ``0`` gives exactly the Algorithm-2 affinities). The typical
        product is about :math:`1/(n(n + m + k))`, so for batches of a few hundred samples or more
        the floor dominates the far pairs and adds a uniform pull to the data mean and push from
        the generated mean (on a 2-D Gaussian with ``n = m = 512`` a collapsed generator then
        fails to spread out in 300 steps; with ``0`` it does). Use ``0`` for large toy batches.
    return_info : bool, default False
        Also return a dict with ``"scale"`` (:math:`\bar D`, 1.0 when not normalising),
        ``"input_scale"`` (:math:`c`), ``"force_rms"`` (tuple of per-coordinate RMS of each
        :math:`F_R` in rescaled units, the official ``loss_R`` square-rooted) and ``"raw_rms"``
        (:math:`\sqrt{\frac1n\sum_i|c\sum_R F_R(x_i)|^2}`, the unnormalised drift in units of
        ``x``).

    Returns
    -------
    Tensor, shape (n, d)
        :math:`V`, detached; with ``return_info`` the tuple ``(V, info)``.

    Used in: chapter 8 (the ImageNet-scale loss and why its value stays flat), chapter 10.

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, Sec. on feature-space drifting; official code
    ``lambertae/drifting``, ``torch/drift_loss.py``.
    """
    x, y_pos, y_neg, self_neg = _check_triplet(x, y_pos, y_neg)
    temps = _check_temperatures(temperatures)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
    attraction = check_nonnegative(attraction, "attraction")
    repulsion = check_nonnegative(repulsion, "repulsion")
    affinity_floor = check_nonnegative(affinity_floor, "affinity_floor")
    m, d = y_pos.shape[0], x.shape[1]
    with torch.no_grad():
        dist = torch.cdist(x, torch.cat([y_pos, y_neg], 0))
        if normalize:
            # accumulate in float64: the mean is then the same for any thread count (a float32
            # parallel sum depends on how the threads split it)
            scale = dist.mean(dtype=torch.float64).to(dist.dtype).clamp_min(1e-3)
            c = (scale / math.sqrt(d)).clamp_min(1e-3)
        else:
            scale = c = torch.ones((), dtype=x.dtype, device=x.device)
        if self_neg:
            dist[:, m:].diagonal().add_(_SELF_MASK * (scale if normalize else max(temps)))
        xs, ps, ns = x / c, y_pos / c, y_neg / c
        total = torch.zeros_like(x)
        raw = torch.zeros_like(x)
        force_rms = []
        for R in temps:
            f = _coupled_force(-dist / (scale * R), m, xs, ps, ns, attraction, repulsion, affinity_floor)
            rms = f.pow(2).mean().clamp_min(1e-8).sqrt()
            if return_info:  # a host synchronisation: only when asked for
                force_rms.append(float(f.pow(2).mean().sqrt()))
            raw = raw + f
            total = total + (f / rms if normalize else f)
        v = c * total
        if not return_info:
            return v
        raw_rms = float((c * raw).pow(2).sum(1).mean().sqrt())
        info = {
            "scale": float(scale),
            "input_scale": float(c),
            "force_rms": tuple(force_rms),
            "raw_rms": raw_rms,
        }
        return v, info


def gaussian_population_field(
    x,
    mp,
    Sp,
    mq,
    Sq,
    bandwidth: float,
    *,
    attraction: float = 1.0,
    repulsion: float = 1.0,
) -> Tensor:
    r"""Population drift field of the Gaussian kernel between two Gaussians (closed form).

    For :math:`p = \mathcal N(m_p, \Sigma_p)`, :math:`q = \mathcal N(m_q, \Sigma_q)` and the
    row-normalised Gaussian kernel of bandwidth :math:`s`, :math:`V^+_p = s^2\nabla\log p_s` with
    :math:`p_s = \mathcal N(m_p, \Sigma_p + s^2 I)`, hence

    .. math::

        V(x) = a\,V^+_p(x) - r\,V^-_q(x)
        = s^2\big[r\,(s^2 I + \Sigma_q)^{-1}(x - m_q) - a\,(s^2 I + \Sigma_p)^{-1}(x - m_p)\big].

    Example: :math:`x = 0.3`, :math:`p = \mathcal N(1, 0.25)` (variance 0.25),
    :math:`q = \mathcal N(0, 1)`, :math:`s = 0.5` gives :math:`V = 0.25\,(0.24 + 1.4) = 0.41`.

    Parameters
    ----------
    x : Tensor, shape (n, d)
        Evaluation points.
    mp : Tensor, shape (d,)
        Mean of the data law :math:`p`.
    Sp : Tensor, shape (d, d)
        Covariance of :math:`p` (SPD).
    mq : Tensor, shape (d,)
        Mean of the model law :math:`q`.
    Sq : Tensor, shape (d, d)
        Covariance of :math:`q` (SPD).
    bandwidth : float
        :math:`s > 0`.
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0`.

    Returns
    -------
    Tensor, shape (n, d)
        :math:`V(x_i)`, in the promoted dtype of the inputs.

    Used in: chapter 8 (the fixed point of the Gaussian-kernel field, comparison with the KL flow).

    References
    ----------
    Gretton et al. 2026, arXiv:2605.05118 (population drift as smoothed scores).
    """
    x = check_samples(x, "x")
    mp, Sp = check_mean_cov(mp, Sp, "mp", "Sp")
    mq, Sq = check_mean_cov(mq, Sq, "mq", "Sq")
    for name, mean in (("mp", mp), ("mq", mq)):
        if mean.ndim != 1:
            raise ValueError(f"{name} must have shape (d,), got {tuple(mean.shape)}")
        if mean.shape[0] != x.shape[1]:
            raise ValueError(f"{name} must have dimension d={x.shape[1]} like x, got {mean.shape[0]}")
    s = check_positive(bandwidth, "bandwidth")
    attraction = check_nonnegative(attraction, "attraction")
    repulsion = check_nonnegative(repulsion, "repulsion")
    dtype = torch.promote_types(torch.promote_types(x.dtype, mp.dtype), mq.dtype)
    x, mp, Sp, mq, Sq = (t.to(dtype=dtype, device=x.device) for t in (x, mp, Sp, mq, Sq))
    eye = torch.eye(x.shape[1], dtype=dtype, device=x.device)
    grad_q = torch.linalg.solve(s**2 * eye + Sq, (x - mq).T).T
    grad_p = torch.linalg.solve(s**2 * eye + Sp, (x - mp).T).T
    return s**2 * (repulsion * grad_q - attraction * grad_p)


# ---------------------------------------------------------------------------------------------
# loss and diagnostics
# ---------------------------------------------------------------------------------------------


def drift_rms(V) -> float:
    r"""Root mean square norm of a drift field over the samples.

    .. math::

        \mathrm{RMS}(V) = \Big(\frac1n\sum_{i=1}^n |V_i|^2\Big)^{1/2}.

    Parameters
    ----------
    V : Tensor, shape (n, d)
        Drift at the samples.

    Returns
    -------
    float
        The RMS norm (``drifting_loss`` of an unnormalised field equals its square).

    Used in: chapter 8 (the progress diagnostic when the loss is flat).
    """
    V = check_samples(V, "V")
    return float(V.detach().pow(2).sum(1).mean().sqrt())


def drifting_loss(fx: Tensor, V) -> Tensor:
    r"""Stop-gradient drifting loss.

    .. math::

        \mathcal L = \frac1n\sum_{i=1}^n
        \big|f_\theta(e_i) - \mathrm{sg}(f_\theta(e_i) + V_i)\big|^2,
        \qquad \mathcal L = \frac1n\sum_i |V_i|^2, \qquad
        \nabla_\theta\mathcal L = -\frac2n\sum_i J_\theta(e_i)^\top V_i,

    with :math:`J_\theta = \partial f_\theta/\partial\theta` (a step of this loss is
    an explicit parametric flow step with velocity :math:`V`). Squared norms are summed over the
    coordinates and averaged over the samples (the official code also averages over coordinates:
    a factor :math:`1/d`).

    Parameters
    ----------
    fx : Tensor, shape (n, d)
        Generator outputs :math:`f_\theta(e_i)` (attached to the graph).
    V : Tensor, shape (n, d)
        Drift at ``fx`` (treated as a constant).

    Returns
    -------
    Tensor, shape ()
        The loss.

    Used in: chapter 8 (training drifting models), chapter 10.

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, the drifting loss.
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
    r"""How far a drift, as a particle system, is from a gradient flow: its Jacobian's skew part.

    Stack the particles into :math:`X = (x_1, \dots, x_n) \in \mathbb R^{nd}` and the drift into
    :math:`\mathcal V(X) = (V(x_1), \dots, V(x_n))` with the data fixed. A Wasserstein gradient
    flow restricted to particles is the gradient system
    :math:`\mathcal V = -n\nabla_X F(\frac1n\sum_i\delta_{x_i})` (``functionals`` docs), whose
    Jacobian is a Hessian, hence symmetric. With :math:`J = \partial\mathcal V/\partial X`
    (central finite differences of step ``eps``),

    .. math::

        \mathrm{asym}(\mathcal V) = \frac{\|\tfrac12(J - J^\top)\|_F}{\|J\|_F} \in [0, 1],

    0 for a gradient system (MMD, Sinkhorn drifts), 1 for a pure rotation; a value well above the
    finite-difference error shows that no functional :math:`F` has this drift as its Wasserstein
    gradient at these particles.

    Parameters
    ----------
    drift : callable
        ``drift(x, y_pos) -> V`` of shape ``(n, d)``, deterministic (e.g. :class:`Algorithm2Drift`,
        ``ObjectiveDrift(functionals.MMD(...))``; not a drift that draws fresh random numbers or
        refits a critic at each call).
    x : Tensor, shape (n, d)
        Particles; use float64 (the default ``eps`` assumes it) and small ``n d`` (the Jacobian
        costs ``2 n d`` drift evaluations).
    y_pos : Tensor, shape (m, d)
        Data samples, held fixed.
    eps : float, default 1e-5
        Finite-difference step :math:`> 0`.

    Returns
    -------
    float
        :math:`\mathrm{asym} \in [0, 1]` (0 when :math:`J = 0`).

    Used in: chapter 8 (which drifts are Wasserstein gradient flows).
    """
    if not callable(drift):
        raise TypeError(f"drift must be callable drift(x, y_pos) -> V, got {type(drift).__name__}")
    x = check_samples(x, "x").detach()
    y_pos = check_samples(y_pos, "y_pos").detach()
    check_same_dim(x, y_pos, "x", "y_pos")
    eps = check_positive(eps, "eps")
    n, d = x.shape
    flat = x.reshape(-1)
    cols = []
    for k in range(n * d):
        e = torch.zeros_like(flat)
        e[k] = eps
        v_plus = _check_velocity(drift((flat + e).reshape(n, d), y_pos), x, "drift")
        v_minus = _check_velocity(drift((flat - e).reshape(n, d), y_pos), x, "drift")
        cols.append((v_plus - v_minus).reshape(-1) / (2.0 * eps))
    J = torch.stack(cols, dim=1)  # J[a, b] = d V_a / d X_b
    norm = float(J.norm())
    if norm == 0.0:
        return 0.0
    return float((0.5 * (J - J.T)).norm()) / norm


# ---------------------------------------------------------------------------------------------
# drift fields as objects
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class DriftField(Protocol):
    r"""A drift field from samples: ``drift(x, y_pos) -> V``.

    .. math::

        V : (x_{1:n}, y^+_{1:m}) \mapsto (V(x_i))_{i \le n} \in \mathbb R^{n \times d}.

    Implementations may also define ``field_with_diagnostics(x, y_pos) -> (V, raw_rms)``, which
    :func:`train_drifting` logs as the raw drift RMS (otherwise :func:`drift_rms` of ``V``), and
    ``state_dict()`` / ``load_state_dict(state)`` for an internal state (random generators, a
    critic) that :func:`train_drifting` saves in its checkpoints.

    Used in: chapter 8 (every drift of the chapter plugs into :func:`train_drifting`).
    """

    def __call__(self, x: Tensor, y_pos: Tensor) -> Tensor: ...


class _SampleDrift:
    """Shared plumbing: ``__call__`` returns the field, ``field_with_diagnostics`` adds its RMS."""

    def __call__(self, x, y_pos) -> Tensor:
        return self.field_with_diagnostics(x, y_pos)[0]

    def field_with_diagnostics(self, x, y_pos) -> tuple[Tensor, float]:
        r"""The field and the RMS of its raw (unnormalised) version.

        .. math::

            (V, \mathrm{RMS}(V^{\mathrm{raw}})), \qquad
            \mathrm{RMS}(V) = \Big(\frac1n\sum_i |V_i|^2\Big)^{1/2}.

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Generated samples.
        y_pos : Tensor, shape (m, d)
            Data samples.

        Returns
        -------
        tuple of (Tensor of shape (n, d), float)
            The drift and the raw drift RMS (the same field unless it is normalised).

        Used in: chapter 8 (:func:`train_drifting` logs the raw RMS).
        """
        v = self._field(x, y_pos)
        return v, drift_rms(v)

    def state_dict(self) -> dict:
        r"""The drift's internal state (random generators, critic), for checkpoints.

        .. math::

            \text{state} = \{\text{name} \mapsto \text{tensor or nested dict}\}
            \quad (\text{empty for a stateless field}).

        Returns
        -------
        dict
            Restored by :meth:`load_state_dict`; :func:`train_drifting` saves it in its checkpoint.

        Used in: chapter 8 (checkpoint / resume of :func:`train_drifting`), chapter 10.
        """
        return {}

    def load_state_dict(self, state: dict) -> None:
        r"""Restore the state saved by :meth:`state_dict`.

        .. math::

            \text{drift} \leftarrow \text{state}.

        Parameters
        ----------
        state : dict
            A dict returned by :meth:`state_dict` of the same kind of drift.

        Used in: chapter 8 (resuming :func:`train_drifting`).
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if state:
            raise ValueError(f"{type(self).__name__} is stateless, got a state with keys {sorted(state)}")


class PaperDrift(_SampleDrift):
    r"""The paper's field :math:`V = a V^+_p - r V^-_q` as a :class:`DriftField`, negatives x.

    .. math::

        V(x_i) = a\,\frac{\sum_j k(x_i, y_j)(y_j - x_i)}{\sum_j k(x_i, y_j)}
        - r\,\frac{\sum_{l \ne i} k(x_i, x_l)(x_l - x_i)}{\sum_{l \ne i} k(x_i, x_l)}.

    Parameters
    ----------
    temperature : float, default 0.05
        :math:`T > 0` (bandwidth for the Gaussian kernel).
    kernel : {"laplace", "gaussian"}, default "laplace"
        The kernel, see :func:`paper_field`.
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0`.

    Notes
    -----
    ``drift(x, y_pos)`` maps ``x`` ``(n, d)``, ``y_pos`` ``(m, d)`` to ``V`` ``(n, d)``.

    Used in: chapter 8.

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        kernel: str = "laplace",
        *,
        attraction: float = 1.0,
        repulsion: float = 1.0,
    ) -> None:
        self.temperature = check_positive(temperature, "temperature")
        self.kernel = _check_kernel(kernel)
        self.attraction = check_nonnegative(attraction, "attraction")
        self.repulsion = check_nonnegative(repulsion, "repulsion")

    def _field(self, x, y_pos) -> Tensor:
        return paper_field(
            x,
            y_pos,
            None,
            self.temperature,
            self.kernel,
            attraction=self.attraction,
            repulsion=self.repulsion,
        )


class Algorithm2Drift(_SampleDrift):
    r"""The implemented field (:func:`algorithm2_field`, negatives x) as a DriftField.

    .. math::

        V_i = S^+_i S^-_i\,\big[a(B^+_i - x_i) - r(B^-_i - x_i)\big].

    Parameters
    ----------
    temperature : float, default 0.05
        :math:`T > 0` (the toy default for data in :math:`[-1, 1]^2`).
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0`.

    Notes
    -----
    ``drift(x, y_pos)`` maps ``x`` ``(n, d)``, ``y_pos`` ``(m, d)`` to ``V`` ``(n, d)``.

    Used in: chapter 8 (the toy demo), chapter 11 (benchmark).

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, Algorithm 2.
    """

    def __init__(self, temperature: float = 0.05, *, attraction: float = 1.0, repulsion: float = 1.0) -> None:
        self.temperature = check_positive(temperature, "temperature")
        self.attraction = check_nonnegative(attraction, "attraction")
        self.repulsion = check_nonnegative(repulsion, "repulsion")

    def _field(self, x, y_pos) -> Tensor:
        return algorithm2_field(
            x,
            y_pos,
            None,
            self.temperature,
            attraction=self.attraction,
            repulsion=self.repulsion,
        )


class MultiTemperatureDrift(_SampleDrift):
    r"""The multi-temperature, RMS-normalised field (:func:`multi_temperature_field`).

    .. math::

        V = c\sum_R F_R / \mathrm{RMS}(F_R).

    The raw drift RMS logged by :func:`train_drifting` is that of the unnormalised sum
    :math:`c\sum_R F_R` (``info["raw_rms"]``): it decreases while the loss stays flat.

    Parameters
    ----------
    temperatures : sequence of float, default (0.02, 0.05, 0.2)
        Temperatures relative to the mean distance (when ``normalize``).
    normalize : bool, default True
        See :func:`multi_temperature_field`.
    attraction, repulsion : float, default 1.0
        :math:`a, r \ge 0`.
    affinity_floor : float, default 1e-6
        Clamp of the affinity product (official code).

    Notes
    -----
    ``drift(x, y_pos)`` maps ``x`` ``(n, d)``, ``y_pos`` ``(m, d)`` to ``V`` ``(n, d)``.

    Used in: chapter 8, chapter 10 (CIFAR-10 drifting).

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770; official ``torch/drift_loss.py``.
    """

    def __init__(
        self,
        temperatures: Sequence[float] = (0.02, 0.05, 0.2),
        normalize: bool = True,
        *,
        attraction: float = 1.0,
        repulsion: float = 1.0,
        affinity_floor: float = 1e-6,
    ) -> None:
        self.temperatures = _check_temperatures(temperatures)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be a bool, got {type(normalize).__name__}")
        self.normalize = normalize
        self.attraction = check_nonnegative(attraction, "attraction")
        self.repulsion = check_nonnegative(repulsion, "repulsion")
        self.affinity_floor = check_nonnegative(affinity_floor, "affinity_floor")

    def field_with_diagnostics(self, x, y_pos) -> tuple[Tensor, float]:
        r"""The normalised field and the RMS of the unnormalised sum :math:`c\sum_R F_R`.

        .. math::

            \Big(c\sum_R \frac{F_R}{\mathrm{RMS}(F_R)},\
            \Big(\frac1n\sum_i\Big|c\sum_R F_R(x_i)\Big|^2\Big)^{1/2}\Big).

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Generated samples.
        y_pos : Tensor, shape (m, d)
            Data samples.

        Returns
        -------
        tuple of (Tensor of shape (n, d), float)
            ``V`` and ``info["raw_rms"]`` of :func:`multi_temperature_field`.

        Used in: chapter 8.
        """
        v, info = multi_temperature_field(
            x,
            y_pos,
            None,
            self.temperatures,
            self.normalize,
            attraction=self.attraction,
            repulsion=self.repulsion,
            affinity_floor=self.affinity_floor,
            return_info=True,
        )
        return v, info["raw_rms"]


def _check_velocity(v, x: Tensor, who: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"{who} must return a torch.Tensor, got {type(v).__name__}")
    if v.shape != x.shape:
        raise ValueError(f"{who} must return shape {tuple(x.shape)} like x, got {tuple(v.shape)}")
    return v.detach()


def _check_torch_generator(generator, name: str = "generator"):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


class ObjectiveDrift(_SampleDrift):
    r"""Drift from any objective's Wasserstein velocity: :math:`V = \lambda\,v_F`, optionally noisy.

    .. math::

        V(x_i) = \lambda\,v_{\rho_n}(x_i + \beta u_i), \qquad
        v_\rho = -\nabla_x \frac{\delta F}{\delta\rho}, \quad
        \rho_n = \frac1n\sum_j\delta_{x_j}, \quad u_i \sim \mathcal N(0, I),

    e.g. the MMD witness drift :math:`\mathbb E_\nu\nabla_1 k - \mathbb E_\rho\nabla_1 k`, the
    Sinkhorn barycentric projection :math:`\mathbb E_P[y \mid x] - \mathbb E_Q[x' \mid x]`, the
    sliced-W drift. With :math:`\beta = 0` the drifting loss with this drift is an
    explicit parametric flow step of :math:`F` with step :math:`\lambda`; :math:`\beta > 0` is the
    noise injection of Arbel et al. 2019 (the field of the current samples evaluated at perturbed
    points), which lets an MMD flow leave the spurious stationary points where a Gaussian-kernel
    MMD flow stalls.

    Parameters
    ----------
    objective : object
        Anything with ``velocity(x, y, at=None) -> (n, d)``, typically a
        :class:`gwf_tutorial.functionals.Objective` (``MMD``, ``SinkhornDivergence``,
        ``SlicedWasserstein``, ``KL``); ``at`` is only used when ``noise_level > 0``.
    scale : float, default 1.0
        :math:`\lambda > 0`.
    noise_level : float, default 0.0
        :math:`\beta \ge 0`, in the units of the data.
    generator : torch.Generator, optional
        Source of :math:`u` (seed it; saved by :meth:`state_dict`).

    Notes
    -----
    ``drift(x, y_pos)`` maps ``x`` ``(n, d)``, ``y_pos`` ``(m, d)`` to ``V`` ``(n, d)``.

    Used in: chapter 8 (drifts from other objectives, one training loop; noise injection against
    stranded mass), chapter 11.

    References
    ----------
    Arbel, Korba, Salim, Gretton, "Maximum Mean Discrepancy Gradient Flow", NeurIPS 2019 (noise
    injection); Feydy et al., AISTATS 2019 (Sinkhorn divergences).
    """

    def __init__(
        self,
        objective,
        scale: float = 1.0,
        *,
        noise_level: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not callable(getattr(objective, "velocity", None)):
            raise TypeError(
                "objective must have a callable velocity(x, y) method (a functionals.Objective), "
                f"got {type(objective).__name__}"
            )
        self.objective = objective
        self.scale = check_positive(scale, "scale")
        self.noise_level = check_nonnegative(noise_level, "noise_level")
        self.generator = _check_torch_generator(generator)

    def _field(self, x, y_pos) -> Tensor:
        x = check_samples(x, "x")
        y_pos = check_samples(y_pos, "y_pos")
        check_same_dim(x, y_pos, "x", "y_pos")
        if self.noise_level > 0:
            gen_device = self.generator.device if self.generator is not None else x.device
            u = torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=gen_device)
            at = x + self.noise_level * u.to(x.device)
            v = self.objective.velocity(x, y_pos, at=at)
        else:
            v = self.objective.velocity(x, y_pos)
        return self.scale * _check_velocity(v, x, "objective.velocity")

    def _generators(self) -> dict:
        gens = {"noise": self.generator, "objective": getattr(self.objective, "generator", None)}
        return {k: g for k, g in gens.items() if isinstance(g, torch.Generator)}

    def state_dict(self) -> dict:
        r"""States of the noise generator and of the objective's generator (if any).

        .. math::

            \{\text{"noise"}, \text{"objective"}\} \mapsto \text{generator state}.

        Returns
        -------
        dict
            ``{"noise": ByteTensor, "objective": ByteTensor}`` (keys present where a
            ``torch.Generator`` is held).

        Used in: chapter 8 (checkpoints of :func:`train_drifting`).
        """
        return {k: g.get_state() for k, g in self._generators().items()}

    def load_state_dict(self, state: dict) -> None:
        r"""Restore the generator states saved by :meth:`state_dict`.

        .. math::

            \text{generator} \leftarrow \text{state}.

        Parameters
        ----------
        state : dict
            From :meth:`state_dict`.

        Used in: chapter 8.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        gens = self._generators()
        if set(state) != set(gens):
            raise ValueError(f"state holds generators {sorted(state)}, this drift has {sorted(gens)}")
        for k, g in gens.items():
            g.set_state(state[k])


class CriticDrift(_SampleDrift):
    r"""KL-flow drift from a logistic critic, refitted (warm-started) at every call.

    The critic :math:`D` is trained to separate data (label 1) from generated samples (label 0),

    .. math::

        \min_D\ \frac1m\sum_j \log(1 + e^{-D(y_j)}) + \frac1n\sum_i \log(1 + e^{D(x_i)}),
        \qquad D^\star = \log\frac{\nu}{\rho}, \qquad V(x) = \lambda\,\nabla D(x),

    which is the KL flow velocity :math:`\nabla\log\nu - \nabla\log\rho` at the optimum
    (the GAN reading of a drifting step, chapter 8). With unequal sample sizes the optimum
    shifts by the constant :math:`\log(m/n)`, which leaves :math:`\nabla D` unchanged.

    Parameters
    ----------
    critic : torch.nn.Module, optional
        Maps ``(n, d)`` to ``(n, 1)`` or ``(n,)``. Default: built at the first call as
        ``nets.MLP(d, 1, hidden, depth, "silu")`` in the dtype of ``x`` (initialised from torch's
        global RNG: seed with :func:`gwf_tutorial.train.seed_everything`).
    n_iters : int, default 20
        Adam steps on the critic per call (full batch).
    lr : float, default 1e-3
        Critic learning rate.
    hidden, depth : int, default 64, 2
        Size of the default critic.
    scale : float, default 1.0
        :math:`\lambda > 0`.

    Notes
    -----
    ``drift(x, y_pos)`` maps ``x`` ``(n, d)``, ``y_pos`` ``(m, d)`` to ``V`` ``(n, d)``;
    ``self.last_loss`` holds the critic loss after the last fit.

    Used in: chapter 8 (drifting vs GAN), chapter 5.

    References
    ----------
    Gao et al. 2019 (VGrow); Yi et al. 2023 (MonoFlow): particle f-flows with a logistic critic.
    """

    def __init__(
        self,
        critic: nn.Module | None = None,
        *,
        n_iters: int = 20,
        lr: float = 1e-3,
        hidden: int = 64,
        depth: int = 2,
        scale: float = 1.0,
    ) -> None:
        if critic is not None and not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
        self.critic = critic
        self.n_iters = check_int(n_iters, "n_iters")
        self.lr = check_positive(lr, "lr")
        self.hidden = check_int(hidden, "hidden")
        self.depth = check_int(depth, "depth", min_value=0)
        self.scale = check_positive(scale, "scale")
        self._optimizer: torch.optim.Optimizer | None = None
        self.last_loss = math.nan

    def _critic_out(self, z: Tensor) -> Tensor:
        out = self.critic(z)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != (z.shape[0],):
            raise ValueError(f"critic must map (n, d) to (n, 1) or (n,), got {tuple(out.shape)}")
        return out

    def fit(self, x, y_pos) -> float:
        r"""Run ``n_iters`` Adam steps of the logistic loss; return its last value.

        .. math::

            \ell(D) = \overline{\log(1 + e^{-D(y)})} + \overline{\log(1 + e^{D(x)})}.

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Generated samples (label 0).
        y_pos : Tensor, shape (m, d)
            Data samples (label 1).

        Returns
        -------
        float
            The critic loss before the last step.

        Used in: chapter 8.
        """
        x = check_samples(x, "x").detach()
        y_pos = check_samples(y_pos, "y_pos").detach()
        check_same_dim(x, y_pos, "x", "y_pos")
        if self.critic is None:
            from gwf_tutorial.nets import MLP

            self.critic = MLP(x.shape[1], 1, self.hidden, self.depth, "silu", dtype=x.dtype).to(x.device)
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
        with torch.enable_grad():  # the logistic loss, trained full batch by critics.logistic_ratio
            fitted = logistic_ratio(
                x, y_pos, self.critic, self.n_iters, optimizer=self._optimizer, progress=False
            )
        self.last_loss = fitted.history.loss[-1]
        return self.last_loss

    def state_dict(self) -> dict:
        r"""Critic weights and its optimizer state (empty before the first call).

        .. math::

            \text{state} = (D, \text{Adam moments}).

        Returns
        -------
        dict
            ``{"critic", "optimizer", "in_dim", "dtype"}``, or ``{}`` if no critic was built yet.

        Used in: chapter 8 (checkpoints of :func:`train_drifting`).
        """
        if self.critic is None:
            return {}
        p = next(self.critic.parameters(), None)
        return {
            "critic": self.critic.state_dict(),
            "optimizer": None if self._optimizer is None else self._optimizer.state_dict(),
            "in_dim": None if p is None else int(getattr(self.critic, "in_dim", -1)),
            "dtype": None if p is None else str(p.dtype).removeprefix("torch."),
            "last_loss": self.last_loss,
        }

    def load_state_dict(self, state: dict) -> None:
        r"""Restore the critic and its optimizer (building the default critic if needed).

        .. math::

            (D, \text{Adam moments}) \leftarrow \text{state}.

        Parameters
        ----------
        state : dict
            From :meth:`state_dict`.

        Used in: chapter 8.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        if not state:
            return
        if self.critic is None:
            in_dim, dtype = state.get("in_dim"), state.get("dtype")
            if not isinstance(in_dim, int) or in_dim < 1 or not isinstance(dtype, str):
                raise ValueError("state has no in_dim/dtype to rebuild the default critic")
            from gwf_tutorial.nets import MLP

            self.critic = MLP(in_dim, 1, self.hidden, self.depth, "silu", dtype=getattr(torch, dtype))
            first = next(iter(state["critic"].values()), None)
            if isinstance(first, Tensor):
                self.critic.to(first.device)
        self.critic.load_state_dict(state["critic"])
        if state.get("optimizer") is not None:
            if self._optimizer is None:
                self._optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.lr)
            self._optimizer.load_state_dict(state["optimizer"])
        self.last_loss = float(state.get("last_loss", math.nan))

    def _field(self, x, y_pos) -> Tensor:
        self.fit(x, y_pos)
        x = x.detach()
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self._critic_out(xg).sum(), xg)
        return self.scale * grad.detach()


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


@dataclass
class DriftingHistory:
    r"""Result of :func:`train_drifting`.

    .. math::

        \texttt{loss}_t = \frac1n\sum_i|V_t(x_i)|^2, \qquad
        \texttt{drift\_rms}_t = \mathrm{RMS}(V^{\mathrm{raw}}_t).

    Attributes
    ----------
    loss : list of float
        Drifting loss per step (flat for normalised fields).
    drift_rms : list of float
        Raw (unnormalised) drift RMS per step, in the units of the data.
    net : torch.nn.Module
        The trained generator ``(n, latent_dim) -> (n, d)``.
    latent_dim : int
        Noise dimension.
    resumed_from : int
        Step at which this call resumed from a checkpoint (0 for a fresh run); the lists hold
        every step from 0 either way.

    Used in: chapter 8.
    """

    loss: list[float] = field(default_factory=list)
    drift_rms: list[float] = field(default_factory=list)
    net: nn.Module | None = None
    latent_dim: int = 0
    resumed_from: int = 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""Draw ``n`` samples :math:`f_\theta(e)`, :math:`e \sim \mathcal N(0, I)`.

        .. math::

            x_i = f_\theta(e_i), \quad e_i \sim \mathcal N(0, I_{\mathrm{latent\_dim}}).

        Parameters
        ----------
        n : int
            Number of samples.
        generator : torch.Generator, optional
            Seeded CPU generator for the noise.

        Returns
        -------
        Tensor, shape (n, d)
            Samples, detached.

        Used in: chapter 8.
        """
        n = check_int(n, "n")
        p = next(self.net.parameters())
        e = torch.randn(n, self.latent_dim, generator=generator, dtype=p.dtype)
        with torch.no_grad():
            return self.net(e.to(p.device))


def toy_generator(out_dim: int = 2, *, dtype: torch.dtype | None = None) -> nn.Module:
    r"""The generator of the official toy demo: ``nets.MLP(32, out_dim, 256, 3, "silu")``.

    .. math::

        f_\theta : \mathbb R^{32} \to \mathbb R^{d}, \quad \text{3 hidden layers of 256 SiLU units}.

    Parameters
    ----------
    out_dim : int, default 2
        Data dimension :math:`d`.
    dtype : torch.dtype, optional
        Parameter dtype.

    Returns
    -------
    torch.nn.Module
        The MLP, input ``(n, 32)``, output ``(n, out_dim)`` (see :data:`TOY_DEFAULTS`).

    Used in: chapter 8 (toy demo), chapter 11.

    References
    ----------
    Deng et al. 2026, official toy notebook.
    """
    from gwf_tutorial.nets import MLP

    return MLP(
        TOY_DEFAULTS["latent_dim"],
        out_dim,
        TOY_DEFAULTS["hidden"],
        TOY_DEFAULTS["depth"],
        TOY_DEFAULTS["activation"],
        dtype=dtype,
    )


def _data_sampler(data, n: int, generator, dtype, device) -> Callable[[], Tensor]:
    if isinstance(data, Tensor) or (not callable(data) and not hasattr(data, "sample")):
        pool = check_samples(data, "data").to(dtype=dtype, device=device)

        def draw() -> Tensor:
            idx = torch.randint(0, pool.shape[0], (n,), generator=generator)
            return pool[idx.to(device)]

        return draw
    if callable(getattr(data, "sample", None)):

        def draw() -> Tensor:
            return check_samples(data.sample(n, generator=generator), "data.sample(n)").to(
                dtype=dtype, device=device
            )

        return draw

    def draw() -> Tensor:
        return check_samples(data(n), "data(n)").to(dtype=dtype, device=device)

    return draw


def _check_checkpoint_args(checkpoint, checkpoint_every, n_iters: int) -> tuple[Path | None, int]:
    if checkpoint is None:
        if checkpoint_every is not None:
            raise ValueError("checkpoint_every was given without checkpoint (a file path)")
        return None, 0
    if not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(
            f"checkpoint must be a file path (str or os.PathLike), got {type(checkpoint).__name__}"
        )
    path = Path(checkpoint)
    if path.is_dir():
        raise ValueError(f"checkpoint must be a file path, got the directory {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"checkpoint's folder {str(path.parent)!r} does not exist")
    every = max(1, min(100, n_iters)) if checkpoint_every is None else checkpoint_every
    return path, check_int(every, "checkpoint_every")


def _drift_settings(drift) -> dict:
    """The drift's kind and public numeric / string settings (compared when a run resumes)."""
    plain = (bool, int, float, str)
    settings = {
        k: v
        for k, v in vars(drift).items()
        if not k.startswith(("_", "last_"))
        and (isinstance(v, plain) or (isinstance(v, tuple) and all(isinstance(u, plain) for u in v)))
    } if hasattr(drift, "__dict__") else {}  # fmt: skip
    return {"type": type(drift).__qualname__, **settings}


def _is_stateful(drift) -> bool:
    return callable(getattr(drift, "state_dict", None)) and callable(getattr(drift, "load_state_dict", None))


class _DriftLoss:
    """One drifting step as a :class:`~gwf_tutorial.trainer.Trainer` problem (no critic)."""

    def __init__(self, net, drift, draw, batch_size: int, latent_dim: int, generator) -> None:
        self.net, self.drift, self.draw, self.generator = net, drift, draw, generator
        self.batch_size, self.latent_dim = batch_size, latent_dim
        self.with_diag = callable(getattr(drift, "field_with_diagnostics", None))

    def batch(self) -> None:
        return None

    def map_loss(self, _) -> tuple[Tensor, list[Tensor]]:
        p = next(self.net.parameters())
        e = torch.randn(self.batch_size, self.latent_dim, generator=self.generator, dtype=p.dtype)
        e = e.to(p.device)
        y = self.draw()
        x = self.net(e)
        if x.ndim != 2 or x.shape[0] != self.batch_size:
            raise ValueError(f"net must map (n, latent_dim) to (n, d), got {tuple(x.shape)}")
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"data must have dimension d={x.shape[1]} like net's output, got {y.shape[1]}")
        xd = x.detach()
        if self.with_diag:
            V, raw = self.drift.field_with_diagnostics(xd, y)
        else:
            V = self.drift(xd, y)
            raw = drift_rms(V)
        V = _check_velocity(V, xd, "drift")
        loss = drifting_loss(x, V)
        return loss, [loss.detach(), torch.as_tensor(raw, dtype=torch.float64, device=x.device)]


_KIND = "drifting.train_drifting"


def _resume(trainer: Trainer, path: Path, config: dict, n_iters: int, drift, generator, hist) -> int:
    """Restore a :func:`train_drifting` checkpoint in place (net, Adam, drift, RNGs, history); its step."""

    def restore(ck: dict) -> None:
        if ck["step"] > n_iters:
            raise ValueError(f"checkpoint {str(path)!r} is at step {ck['step']}, past n_iters={n_iters}")
        if _is_stateful(drift):
            drift.load_state_dict(ck["drift"])
        elif ck["drift"]:
            raise ValueError("checkpoint holds a drift state but drift has no load_state_dict")
        set_rng_state(ck["rng"], generator)
        hist.loss, hist.drift_rms = list(ck["loss"]), list(ck["drift_rms"])
        hist.resumed_from = int(ck["step"])

    trainer.load(path, kind=_KIND, config=config, restore=restore, what="net/optimizer")
    return hist.resumed_from


def train_drifting(
    net: nn.Module,
    data,
    drift: DriftField,
    *,
    n_iters: int = TOY_DEFAULTS["n_iters"],
    batch_size: int = TOY_DEFAULTS["batch_size"],
    n_data: int | None = None,
    latent_dim: int | None = None,
    lr: float = TOY_DEFAULTS["lr"],
    generator: torch.Generator | None = None,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
) -> DriftingHistory:
    r"""Train a one-step generator with the drifting loss and any drift field; resumable.

    At each step, with :math:`e_i \sim \mathcal N(0, I)`, :math:`x_i = f_\theta(e_i)` and fresh
    data :math:`y_j \sim \nu`,

    .. math::

        V = \mathrm{drift}(x, y), \qquad
        \theta \leftarrow \mathrm{Adam}\Big(\nabla_\theta \frac1n\sum_i
        |f_\theta(e_i) - \mathrm{sg}(x_i + V_i)|^2\Big)
        = \mathrm{Adam}\Big(-\frac2n\sum_i J_\theta(e_i)^\top V_i\Big).

    The progress bar shows the loss and the raw drift RMS (``drift_rms``): for a normalised field
    (:class:`MultiTemperatureDrift`) the loss stays flat and the raw drift is the progress signal.

    Parameters
    ----------
    net : torch.nn.Module
        Generator mapping ``(n, latent_dim)`` to ``(n, d)`` (e.g. :func:`toy_generator`); trained
        in place.
    data : Tensor (N, d), object with ``sample(n, generator=)``, or callable ``n -> (n, d)``
        The data: a tensor is resampled with replacement (``n_data`` rows per step).
    drift : DriftField
        ``drift(x, y) -> V`` (e.g. :class:`Algorithm2Drift`, :class:`ObjectiveDrift`).
    n_iters : int, default 2000
        Total optimisation steps (a resumed run continues up to ``n_iters``).
    batch_size : int, default 2048
        Generated samples per step :math:`n`.
    n_data : int, optional
        Data samples per step (default ``batch_size``).
    latent_dim : int, optional
        Noise dimension (default ``net.in_dim``).
    lr : float, default 1e-3
        Adam learning rate.
    generator : torch.Generator, optional
        Seeded CPU generator for the noise and the data draws (restored in place on resume).
    progress : bool, default True
        Show a progress bar (:func:`gwf_tutorial.train.progress`) with the loss and raw drift RMS.
    checkpoint : str or os.PathLike, optional
        File to save to and resume from. If it exists, training resumes at its saved step with the
        network, the Adam state, the history, the random states (``generator``, torch's global
        generator, NumPy's and Python's) and the drift's :meth:`~_SampleDrift.state_dict`
        restored, so an interrupted run followed by a resumed one equals an uninterrupted run
        with the same seed. One file format for the library (:func:`gwf_tutorial.train.save_checkpoint`:
        written atomically, with its SHA-256 and the hyperparameters ``batch_size``, ``n_data``,
        ``latent_dim``, ``lr`` and the drift's kind and settings); a damaged file or other
        hyperparameters are refused.
    checkpoint_every : int, optional
        Save every this many steps and at the end (default ``min(100, n_iters)``); needs
        ``checkpoint``.

    Returns
    -------
    DriftingHistory
        Loss and raw drift RMS of every step (including those before a resume), the trained
        ``net``, ``latent_dim``, ``resumed_from``.

    Raises
    ------
    ValueError
        Bad arguments; a checkpoint that is damaged (named, and left in place), from another kind of
        run, saved with other hyperparameters (listed) or network shapes, or past ``n_iters``.

    Notes
    -----
    The raw drift RMS is a progress signal, not a monotone one: the Algorithm-2 force
    :math:`S^+S^-(B^+ - B^-)` is small when the generated samples are collapsed (:math:`S^+`
    vanishes), so from a collapsed initialisation it can first grow, and at the end it sits on a
    finite-sample floor that shrinks with the batch size. A ``data`` callable that draws from its
    own generator (not ``generator``) is not restored on resume.

    Used in: chapter 8 (toy demo, attraction/repulsion ablation, drifts from other objectives),
    chapter 10, chapter 11.

    References
    ----------
    Deng et al. 2026, arXiv:2602.04770, Algorithm 1.
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
    if not callable(drift):
        raise TypeError(f"drift must be callable drift(x, y_pos) -> V, got {type(drift).__name__}")
    n_iters = check_int(n_iters, "n_iters")
    batch_size = check_int(batch_size, "batch_size")
    n_data = batch_size if n_data is None else check_int(n_data, "n_data")
    if latent_dim is None:
        latent_dim = getattr(net, "in_dim", None)
        if latent_dim is None:
            raise ValueError("latent_dim must be given when net has no in_dim attribute")
    latent_dim = check_int(latent_dim, "latent_dim")
    lr = check_positive(lr, "lr")
    _check_torch_generator(generator)
    ckpt_path, every = _check_checkpoint_args(checkpoint, checkpoint_every, n_iters)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("net has no trainable parameters")
    dtype, dev = params[0].dtype, params[0].device
    draw = _data_sampler(data, n_data, generator, dtype, dev)
    stateful = _is_stateful(drift)
    trainer = Trainer(net, lr=lr, betas=(0.9, 0.999), generator=generator)  # torch's Adam defaults
    hist = DriftingHistory(net=net, latent_dim=latent_dim)
    config = {"batch_size": batch_size, "n_data": n_data, "latent_dim": latent_dim, "lr": lr}
    config["drift"] = _drift_settings(drift)
    start = 0
    if ckpt_path is not None and ckpt_path.exists():
        start = _resume(trainer, ckpt_path, config, n_iters, drift, generator, hist)

    def record(step: int, records: list[Tensor]) -> None:
        hist.loss.append(float(records[0]))
        hist.drift_rms.append(float(records[1]))
        done = step + 1
        if ckpt_path is not None and (done % every == 0 or done == n_iters):
            extra = {"step": done, "drift": drift.state_dict() if stateful else {}}
            extra.update(rng=rng_state(generator), loss=list(hist.loss), drift_rms=list(hist.drift_rms))
            trainer.save(ckpt_path, kind=_KIND, config=config, extra=extra)

    problem = _DriftLoss(net, drift, draw, batch_size, latent_dim, generator)
    trainer.fit(
        problem, n_iters, start=start, desc="drifting", names=("loss", "drift_rms"), progress=progress,
        callback=record,
    )  # fmt: skip
    return hist
