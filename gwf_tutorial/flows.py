r"""Particle discretizations of Wasserstein gradient flows: one explicit Euler loop and its drivers.
:func:`euler_flow` moves particles ``x0`` ``(n, d)`` (not modified; dtype and device kept) along any velocity
field, with noise injection (velocity at perturbed points, Arbel et al. 2019) and Brownian noise;
:func:`particle_flow` drives it with an :class:`~gwf_tutorial.functionals.Objective` and target samples ``y``
``(m, d)``, :func:`langevin` with a score. Shared arguments: ``step_size`` :math:`\eta` and ``noise_level``
:math:`\beta` are numbers or schedules ``k -> value``; ``record_every`` (default ``max(1, n_steps // 100)``)
sets the recorded steps (first and last always); ``generator`` draws all noise; ``progress`` shows a bar. The
divergence guard raises :class:`FlowDivergedError`, naming the step and the step size, after a step with a
non-finite particle or an RMS norm about its centre above ``max_norm`` (read every 16 steps on a GPU);
``max_norm=math.inf`` keeps only the finiteness check.

Used in: chapters 2, 3 and 8; :mod:`gwf_tutorial.fflows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from gwf_tutorial._validation import (
    FlowDivergedError,
    check_callable,
    check_int,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.functionals import get_objective
from gwf_tutorial.train import progress as _progress

__all__ = ["Trajectory", "FlowDivergedError", "linear_schedule", "euler_flow", "particle_flow", "langevin",
           "spread_bound"]  # fmt: skip

# On a GPU the guard's per-step norms stay on the device and are read once per block of this many steps.
_CHECK_EVERY = 16
# Default bound of a flow towards y: this many times the larger initial spread about the mean of y
# (the benchmark's flows stay below 1.2 times it at their budgets, every target).
SPREAD_FACTOR = 4.0


def _rms(x: Tensor) -> Tensor:
    return x.detach().pow(2).sum(1).mean().sqrt()


def spread_bound(x0: Tensor, y: Tensor) -> tuple[Tensor, float]:
    r"""Centre :math:`c = \bar y` and default ``max_norm`` :math:`4\max\big(\mathrm{rms}(x_0 - c),
    \mathrm{rms}(y - c)\big)` (1 if both spreads are 0) of the divergence guard of a flow from ``x0`` towards
    ``y``: a flow that transports ``x0`` to ``y`` stays near both clouds.

    Used in: :func:`~gwf_tutorial.fflows.f_flow`, :func:`~gwf_tutorial.flows.particle_flow`.
    """
    c = y.detach().mean(0)
    scale = max(float(_rms(x0 - c)), float(_rms(y - c)))
    return c, SPREAD_FACTOR * (scale if scale > 0 else 1.0)


@dataclass
class Trajectory:
    r"""Result of a particle flow :math:`x_{k+1} = x_k + \eta_k v_k(x_k) (+\sqrt{2\gamma\eta_k}\xi_k)`: final
    particles ``x``, recorded step indices ``steps`` (0 the initial state), ``frames`` ``(len(steps), n,
    d)``, objective ``values`` there (empty when not tracked) and ``step_sizes`` :math:`\eta_k` (``n_steps``).

    Used in: :func:`~gwf_tutorial.flows.euler_flow`.
    """

    x: Tensor
    steps: list[int]
    frames: Tensor
    values: list[float] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)


def _schedule(value, name: str, check) -> Callable[[int], float]:
    """A number or a callable ``k -> number`` as a checked callable."""
    if callable(value):
        return lambda k: check(value(k), f"{name}({k})")
    v = check(value, name)
    return lambda k: v


def linear_schedule(start: float, decay_steps: float, end: float = 0.0) -> Callable[[int], float]:
    r"""A schedule :math:`\beta_k = \text{end} + (\text{start} - \text{end})\,\max(0,\ 1 - k / K_d)` from
    ``start`` to ``end`` in :math:`K_d` = ``decay_steps`` steps, then constant.

    Used in: chapter 3.
    """
    start, decay_steps = check_nonnegative(start, "start"), check_positive(decay_steps, "decay_steps")
    end = check_nonnegative(end, "end")
    return lambda k: end + (start - end) * max(0.0, 1.0 - k / decay_steps)


def _check_every(device: torch.device) -> int:
    """Steps per read of the guard: 1 on a CPU (no device to wait for), else ``_CHECK_EVERY``."""
    return 1 if device.type == "cpu" else _CHECK_EVERY


class _Guard:
    """Divergence guard of :func:`euler_flow`: per-step finiteness and RMS norm about ``center`` kept on the
    device, read every ``every`` steps; raises at the first bad step of the block."""

    def __init__(self, x: Tensor, center, max_norm, desc: str) -> None:
        if center is not None:
            center = center.detach().to(dtype=x.dtype, device=x.device)
            if center.shape != x.shape[1:]:
                raise ValueError(f"center must have shape ({x.shape[1]},), got {tuple(center.shape)}")
        if max_norm is None:
            max_norm = 1e3 * max(1.0, float(_rms(x if center is None else x - center)))
        self.max_norm = check_positive(max_norm, "max_norm", allow_inf=True)
        self.center, self.every, self.desc = center, _check_every(x.device), desc
        self.start, self.finite, self.rms, self.h = 0, [], [], []

    def push(self, x: Tensor, h: float) -> None:
        self.finite.append(torch.isfinite(x).all())
        self.rms.append(_rms(x if self.center is None else x - self.center))
        self.h.append(h)
        if len(self.h) >= self.every:
            self.check()

    def check(self) -> None:
        if not self.h:
            return
        finite, rms = torch.stack(self.finite), torch.stack(self.rms)
        bad = ~finite | ~(rms <= self.max_norm)
        if bool(bad.any()):  # one synchronisation per block
            j = int(bad.nonzero()[0, 0])
            what = "non-finite"
            if bool(finite[j]):
                where = "" if self.center is None else " about the target mean"
                what = f"too large (RMS norm {float(rms[j]):.3g} > {self.max_norm:.3g}{where})"
            raise FlowDivergedError(f"{self.desc} diverged at step {self.start + j} with step_size="
                                    f"{self.h[j]:g}: particles became {what}; try a smaller step_size "
                                    "(explicit steps need it below about 2 / Lip(v), Lip(v) the Lipschitz "
                                    "constant of the velocity)")  # fmt: skip
        self.start += len(self.h)
        self.finite, self.rms, self.h = [], [], []


def euler_flow(x0, velocity_fn: Callable[..., Tensor], step_size, n_steps: int, *, noise_level=0.0,
               diffusion: float = 0.0, value_fn: Callable[[Tensor], Tensor] | None = None,
               record_every: int | None = None, generator: torch.Generator | None = None,
               progress: bool = True, max_norm: float | None = None, desc: str = "euler flow",
               center: Tensor | None = None) -> Trajectory:  # fmt: skip
    r"""Explicit Euler steps along a velocity field, with noise injection and diffusion (Arbel et al. 2019),
    :math:`x_{k+1} = x_k + \eta_k\, v(x_k;\ x_k + \beta_k \xi'_k) + \sqrt{2\gamma \eta_k}\,\xi_k`,
    :math:`\xi'_k, \xi_k \sim \mathcal N(0, I)`, with ``velocity_fn(x) -> (n, d)`` (``velocity_fn(x, at=z)``
    with noise injection), :math:`\gamma` = ``diffusion`` (:math:`\gamma=1`, :math:`v = \nabla\log\nu`: ULA),
    ``value_fn`` (``x -> 0-d tensor``) recorded; the guard's norm is about ``center`` (default the
    origin), ``max_norm`` defaults to ``1e3 * max(1, rms(x0))``; ``desc`` labels the bar and the errors.

    Used in: chapters 2 and 8.
    """
    x, n_steps = check_samples(x0, "x0").detach().clone(), check_int(n_steps, "n_steps")
    check_callable(velocity_fn, "velocity_fn")
    check_callable(value_fn, "value_fn", optional=True)
    h_of = _schedule(step_size, "step_size", check_positive)
    beta_of = _schedule(noise_level, "noise_level", check_nonnegative)
    diffusion = check_nonnegative(diffusion, "diffusion")
    record_every = check_int(max(1, n_steps // 100) if record_every is None else record_every, "record_every")
    guard = _Guard(x, center, max_norm, desc)
    gen_device = generator.device if generator is not None else x.device

    def noise() -> Tensor:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=gen_device).to(x.device)

    traj = Trajectory(x=x, steps=[], frames=[])

    def record(k: int) -> None:
        traj.steps.append(k)
        traj.frames.append(x.detach().clone())
        if value_fn is not None:
            with torch.no_grad():
                traj.values.append(float(value_fn(x)))

    record(0)
    for k in _progress(range(n_steps), desc=desc, disable=not progress):
        h, beta = h_of(k), beta_of(k)
        try:
            v = velocity_fn(x, at=x + beta * noise()) if beta > 0 else velocity_fn(x)
        except ValueError:
            guard.check()  # a velocity that refuses non-finite particles: report the divergence
            raise
        if not isinstance(v, Tensor) or v.shape != x.shape:
            raise ValueError(f"velocity_fn must return a tensor of shape {tuple(x.shape)}")
        x = x + h * v.detach().to(x.dtype)
        x = x + math.sqrt(2.0 * diffusion * h) * noise() if diffusion > 0 else x
        traj.step_sizes.append(h)
        guard.push(x, h)
        if (k + 1) % record_every == 0 or k + 1 == n_steps:
            guard.check()
            record(k + 1)
    traj.x, traj.frames = x, torch.stack(traj.frames)
    return traj


def particle_flow(x0, objective, y, step_size, n_steps: int, *, noise_level=0.0,
                  record_every: int | None = None, track_value: bool = True,
                  generator: torch.Generator | None = None, progress: bool = True,
                  max_norm: float | None = None) -> Trajectory:  # fmt: skip
    r"""Explicit particle flow of an objective, optionally with noise injection (Arbel et al. 2019),
    :math:`x^i_{k+1} = x^i_k + \eta_k v_{\rho_k}(x^i_k + \beta_k \xi^i_k)`, :math:`v_\rho = -\nabla
    \frac{\delta F}{\delta\rho}(\rho)`, :math:`\rho_k = \frac1n\sum_i \delta_{x^i_k}`, with ``objective`` an
    :class:`~gwf_tutorial.functionals.Objective` or a name for :func:`~gwf_tutorial.functionals.get_objective`
    (``y=None`` for ``KL``); ``track_value`` records ``objective.value``. With ``y`` the guard is
    :func:`spread_bound`.

    Used in: chapter 3; ``methods._flow``.
    """
    obj, x0 = get_objective(objective), check_samples(x0, "x0")
    center = None
    if y is not None:
        y = check_samples(y, "y").detach()
        check_same_dim(x0, y, "x0", "y")
        center, default_norm = spread_bound(x0, y)
        max_norm = default_norm if max_norm is None else max_norm
    elif obj.needs_target_samples:
        raise ValueError(f"{type(obj).__name__} needs target samples y")
    value_fn = (lambda x: obj.value(x, y)) if track_value else None
    return euler_flow(x0, lambda x, at=None: obj.velocity(x, y, at=at), step_size, n_steps, center=center,
                      noise_level=noise_level, value_fn=value_fn, record_every=record_every,
                      generator=generator, progress=progress, max_norm=max_norm, desc=f"{obj.name} flow")


def langevin(x0, score, step_size, n_steps: int, *, generator: torch.Generator | None = None,
             value_fn: Callable[[Tensor], Tensor] | None = None, record_every: int | None = None,
             progress: bool = True, max_norm: float | None = None) -> Trajectory:  # fmt: skip
    r"""Unadjusted Langevin algorithm (ULA) :math:`x_{k+1} = x_k + \eta_k \nabla\log\nu(x_k) +
    \sqrt{2\eta_k}\,\xi_k` with ``score`` :math:`\nabla\log\nu` (a callable or an object with ``score``),
    ``x0`` holding independent chains. Biased: for :math:`\nu = \mathcal N(0, \Sigma)` in 1-D the stationary
    variance is :math:`\Sigma / (1 - \eta/(2\Sigma))`, stable for :math:`\eta < 2\Sigma`.

    Used in: chapters 2 and 3.
    """
    score = score.score if callable(getattr(score, "score", None)) else score
    if not callable(score):
        raise TypeError("score must be callable or an object with a score method")
    return euler_flow(x0, lambda x, at=None: score(x), step_size, n_steps, diffusion=1.0, value_fn=value_fn,
                      record_every=record_every, generator=generator, progress=progress, max_norm=max_norm,
                      desc="langevin")  # fmt: skip
