r"""Explicit f-divergence flows from samples, and the published methods VGrow, EPT, MonoFlow, DGflow: the
velocity :math:`v = r f''(r)\, \nabla \log(\nu/\rho)`, :math:`r = \rho/\nu` (:mod:`gwf_tutorial.fdiv`), read
off a critic refit at every step (:func:`velocity_from_critic`). Shared arguments: ``x0`` ``(n, d)`` (latents
``(n, d_z)`` with a ``generator_net``), data ``y`` ``(m, d)``; ``fdiv`` a divergence of
:mod:`gwf_tutorial.fdiv`, its name, ``"logd"`` or a factor ``r -> omega(r)``; the critic's ``critic_iters``
warm-started Adam steps per flow step (``first_critic_iters`` at the first), ``lr``, ``hidden`` x ``depth``
SiLU MLP, ``batch_size``, ``r1``, ``gp``; the flow's ``step_size``, ``n_steps``, ``record_every``,
``max_norm``, ``progress``, ``generator`` (mini-batches, noise). All return an :class:`FFlowResult`; a blow-up
raises :class:`~gwf_tutorial.flows.FlowDivergedError`.

Used in: chapter 4.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gwf_tutorial._validation import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.critics import Critic, fit_critic, logistic_ratio
from gwf_tutorial.fdiv import PEARSON_CHI2, FDivergence, get_fdivergence, variational_bound
from gwf_tutorial.flows import FlowDivergedError, Trajectory, _rms, euler_flow, spread_bound
from gwf_tutorial.trainer import Trainer, frozen_copy

__all__ = ["ESTIMATORS", "VELOCITY_FACTORS", "MONOFLOW_H", "get_velocity_factor", "velocity_from_critic",
           "FFlowResult", "f_flow", "vgrow", "ept", "monoflow", "dgflow"]  # fmt: skip

#: The three ways of reading a velocity off a critic, see :func:`velocity_from_critic`.
ESTIMATORS = ("logistic", "variational", "least_squares")

#: Velocity factors :math:`\omega(r) = r f''(r)` outside the catalogue: ``"logd"`` :math:`r/(1 + r)`, the
#: non-saturating ("log D trick") GAN generator (VGrow's and DGflow's logD).
VELOCITY_FACTORS: dict[str, Callable[[Tensor], Tensor]] = {"logd": lambda r: r / (1 + r)}

#: MonoFlow's monotone maps :math:`\Upsilon` of the logit :math:`D = \log(\nu/\rho)`, velocity
#: :math:`\Upsilon'(D)\nabla D`: ``"kl"`` :math:`D`, ``"logd"`` :math:`\log\sigma(D)` (non-saturating GAN,
#: :math:`\Upsilon' = r/(1+r)`), ``"minimax"`` :math:`\mathrm{softplus}(D)` (minimax GAN, 2JS).
MONOFLOW_H: dict[str, Callable[[Tensor], Tensor]] = {"kl": lambda d: d, "logd": lambda d: -F.softplus(-d),
                                                     "minimax": F.softplus}  # fmt: skip


def get_velocity_factor(fdiv) -> Callable[[Tensor], Tensor]:
    r"""The velocity factor :math:`\omega(r) = r f''(r)` of ``fdiv``, elementwise in :math:`r > 0`:
    KL :math:`1`, 2JS :math:`\tfrac{1}{1+r}`, :math:`\chi^2` :math:`2r`, logD :math:`\tfrac{r}{1+r}`.

    Used in: chapter 4.
    """
    if isinstance(fdiv, str) and fdiv.strip().lower() in VELOCITY_FACTORS:
        return VELOCITY_FACTORS[fdiv.strip().lower()]
    if callable(fdiv):
        return fdiv
    if not isinstance(fdiv, FDivergence | str):
        raise TypeError(f"fdiv must be an FDivergence, a name or a callable, got {type(fdiv).__name__}")
    try:
        d = get_fdivergence(fdiv)
    except ValueError as err:
        raise ValueError(f"fdiv must be an f-divergence name or one of {sorted(VELOCITY_FACTORS)}, "
                         f"got {fdiv!r}") from err  # fmt: skip
    return lambda r: r * d.f_double_prime(r)


def _scalar_out(net: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    out = net(z)
    out = out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out
    if out.shape != (z.shape[0],):
        raise ValueError(f"the critic must return shape (n,) or (n, 1), got {tuple(out.shape)}")
    return out


def _ratio(out: Tensor, estimator: str, r_min: float) -> Tensor:
    """The density ratio from a logistic logit (``e^{-D}``) or a least-squares critic (``1 + h/2``)."""
    return torch.exp(-out).clamp(1e-30, 1e30) if estimator == "logistic" else (1 + out / 2).clamp_min(r_min)


def value_and_grad(net: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(net(x), grad_x net(x))``, both detached, of a critic ``(n, d) -> (n,)`` or ``(n, 1)`` (not in
    ``__all__``; also the field of :class:`~gwf_tutorial.drifting.CriticDrift`)."""
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        out = _scalar_out(net, z)
        (g,) = torch.autograd.grad(out.sum(), z)
    return out.detach(), g.detach()


def velocity_from_critic(critic: Callable[[Tensor], Tensor], x, *, estimator: str = "logistic", fdiv="kl",
                         r_min: float = 1e-3, logit_clip: float | None = None) -> Tensor:  # fmt: skip
    r"""The f-flow velocity at ``x``, shape ``(n, d)``, read off a trained ``critic`` (``(n, d) -> (n,)``):
    ``"logistic"`` :math:`v = \omega(e^{-D})\,\nabla D`, ``"variational"`` :math:`v = -\nabla h`,
    ``"least_squares"`` :math:`v = -\omega(R)\,\nabla\log R`, :math:`R = \max(1 + h/2, r_{\min})`, with
    :math:`\omega` of :func:`get_velocity_factor`; ``logit_clip`` bounds the logit in the factor.

    Used in: chapter 4.
    """
    x, estimator = check_samples(x, "x"), check_choice(estimator, "estimator", ESTIMATORS)
    r_min = check_positive(r_min, "r_min")
    logit_clip = None if logit_clip is None else check_positive(logit_clip, "logit_clip")
    check_callable(critic, "critic")
    _check_net_dtype(critic, x.dtype, "critic", "x")
    out, g = value_and_grad(critic, x)
    if estimator == "variational":
        return -g
    factor = get_velocity_factor(fdiv)
    if estimator == "logistic":
        out = out if logit_clip is None else out.clamp(-logit_clip, logit_clip)
        return factor(_ratio(out, estimator, r_min))[:, None] * g
    R = _ratio(out, estimator, r_min)
    return -(factor(R) / R)[:, None] * (g / 2)


@dataclass
class FFlowResult:
    r"""Result of an f-flow: final particles ``x`` (:math:`G(z)` with a generator), ``trajectory``,
    ``divergence`` (critic estimates of :math:`D_f(\rho_k\|\nu)` before each step; empty without an f),
    ``critic``, ``fields`` (the frozen :math:`v_k`, with ``keep_fields=True``), ``step_sizes``, ``latent``.

    Used in: :func:`~gwf_tutorial.fflows.f_flow`.
    """

    x: Tensor
    trajectory: Trajectory
    divergence: list[float] = field(default_factory=list)
    critic: Callable | None = None
    fields: list[Callable[[Tensor], Tensor]] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)
    latent: Tensor | None = None

    def push(self, x) -> Tensor:
        r"""Apply the forward Euler map of the stored fields to new points ``(n, d)`` (EPT),
        :math:`\Phi = (\mathrm{Id} + \eta_{K-1} v_{K-1}) \circ \dots \circ (\mathrm{Id} + \eta_0 v_0)`."""
        x = check_samples(x, "x").detach()
        if len(self.fields) != len(self.step_sizes) or not self.fields:
            raise ValueError("no stored velocity fields: run the flow with keep_fields=True")
        for v, h in zip(self.fields, self.step_sizes):
            x = x + h * v(x)
        return x


def _check_net_dtype(net, dtype: torch.dtype, net_name: str, x_name: str) -> None:
    """A network (or a bound method of one, e.g. ``critic.logit``) must hold parameters of ``dtype``."""
    net = getattr(net, "__self__", net)
    p = next(iter(net.parameters()), None) if isinstance(net, nn.Module) else None
    if p is not None and p.dtype != dtype:
        raise TypeError(f"{net_name} has {p.dtype} parameters but {x_name} is {dtype}; cast one of them "
                        f"(e.g. {net_name}.to({dtype}))")  # fmt: skip


class _CriticFitter:
    """Builds, warm-starts and refits the critic of an f-flow (its Adam state kept across refits); ``step``
    refits it, logs its divergence estimate and returns its velocity field (``field_of(critic)``)."""

    def __init__(self, estimator, fdiv, like: Tensor, critic, *, field_of, estimate, hidden, depth, lr,
                 batch_size, r1, critic_iters, first_critic_iters, generator, gp=0.0):
        self.estimator, self.gen, self.field_of, self.estimate = estimator, generator, field_of, estimate
        self.divergence: list[float] = []
        self.lr = check_positive(lr, "lr")
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        self.r1, self.gp = check_nonnegative(r1, "r1"), check_nonnegative(gp, "gp")
        self.iters = [check_int(n, name) for n, name in ((first_critic_iters, "first_critic_iters"),
                                                         (critic_iters, "critic_iters"))]  # fmt: skip
        self.fit_fdiv = {"variational": fdiv, "least_squares": PEARSON_CHI2}.get(estimator)
        if estimator == "variational" and self.fit_fdiv is None:
            raise ValueError("the variational estimator needs an f-divergence (fdiv)")
        if estimator == "logistic" and self.gp > 0:
            raise ValueError("gp is not used by the logistic estimator (use r1)")
        if critic is None:
            hidden, depth = check_int(hidden, "hidden"), check_int(depth, "depth", min_value=0)
            with torch.device("cpu"):  # initialised on the CPU on every machine (same weights), then moved
                critic = Critic(like.shape[1], self.fit_fdiv, hidden=hidden, depth=depth, dtype=like.dtype)
            critic = critic.to(like.device)
        elif not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
        _check_net_dtype(critic, like.dtype, "critic", "x0")
        self.critic, self.n_fits = critic, 0
        self.opt = torch.optim.Adam(critic.parameters(), lr=self.lr)

    def step(self, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        """Refit (``first_critic_iters`` Adam steps at the first call, then ``critic_iters``); the field."""
        n_iters = self.iters[min(self.n_fits, 1)]
        self.n_fits += 1
        common = dict(n_iters=n_iters, lr=self.lr, batch_size=self.batch_size, r1=self.r1, generator=self.gen,
                      optimizer=self.opt, progress=False)  # fmt: skip
        if self.estimator == "logistic":
            logistic_ratio(x, y, net=self.critic, **common)
        else:
            fit_critic(self.critic, x, y, self.fit_fdiv, gp=self.gp, **common)
        est = self.estimate(self.critic, x)
        self.divergence.extend([] if est is None else [est])
        return self.field_of(self.critic)


def _generator_flow(latent, y, net, fitter: _CriticFitter, step_size, n_steps: int, *, inner_steps: int,
                    fit_iters: int, lr_generator: float, record_every, progress, desc: str) -> FFlowResult:
    """Outer step: refit the critic, move the targets Y = G(z) ``inner_steps`` times along its field, then
    ``fit_iters`` :class:`~gwf_tutorial.trainer.Trainer` steps on the regression loss E|G(z) - Y|^2 / 2."""
    _check_net_dtype(net, latent.dtype, "generator_net", "x0")
    step_size = check_positive(step_size, "step_size")
    inner_steps, fit_iters = check_int(inner_steps, "inner_steps"), check_int(fit_iters, "fit_iters")
    lr_generator = check_positive(lr_generator, "lr_generator")
    record_every = check_int(max(1, n_steps // 100) if record_every is None else record_every, "record_every")
    trainer = Trainer(net, lr=lr_generator, betas=(0.9, 0.999))
    with torch.no_grad():
        x = net(latent)
    if x.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"generator_net must map x0 to shape (n, {y.shape[1]}), got {tuple(x.shape)}")
    center, max_norm = spread_bound(x, y)
    steps, frames, target = [0], [x.detach().clone()], []

    def batch() -> Tensor:
        if not target:  # the first iteration of an outer step
            with torch.no_grad():
                x = net(latent)
            v_field = fitter.step(x, y)
            for _ in range(inner_steps):
                x = x + step_size * v_field(x)
            target.append(x.detach())
        return target[0]

    def map_loss(target: Tensor) -> tuple[Tensor, list[Tensor]]:
        loss = 0.5 * (net(latent) - target).pow(2).sum(1).mean()
        return loss, [loss.detach()]

    def record(it: int, _records) -> None:  # after each outer step: new targets next, check, record
        k, rest = divmod(it + 1, fit_iters)
        if rest:
            return
        target.clear()
        if k % record_every and k != n_steps:
            return
        with torch.no_grad():
            x = net(latent)
        rms = float(_rms(x - center))  # NaN or inf when x is not finite
        if not rms <= max_norm:
            what = "too large" if math.isfinite(rms) else "non-finite"
            raise FlowDivergedError(f"{desc} diverged at outer step {k - 1} with step_size={step_size:g}: "
                                    f"generated samples became {what} (RMS norm {rms:.3g} about the data "
                                    f"mean, bound {max_norm:.3g}); try a smaller step_size, lr_generator "
                                    f"({lr_generator:g}) or critic lr ({fitter.lr:g})")  # fmt: skip
        steps.append(k)
        frames.append(x.detach().clone())

    hint = f" = lr_generator, a smaller step_size ({step_size:g}) or critic lr ({fitter.lr:g})"
    trainer.fit(SimpleNamespace(batch=batch, map_loss=map_loss), n_steps * fit_iters, desc=desc,
                names=("regression loss",), progress=progress, callback=record, hint=hint)  # fmt: skip
    traj = Trajectory(x=frames[-1], steps=steps, frames=torch.stack(frames), step_sizes=[step_size] * n_steps)
    return FFlowResult(frames[-1], traj, fitter.divergence, fitter.critic, [], list(traj.step_sizes), latent)


def _flow(x0, y, fdiv, estimator: str, step_size, n_steps, *, critic=None, r_min=1e-3, logit_clip=None,
          generator_net=None, inner_steps=1, fit_iters=1, lr_generator=1e-3, desc: str, field_of=None,
          generator=None, critic_options: dict, keep_fields=False, max_norm=None, **flow) -> FFlowResult:
    """The f-flow of ``x0`` towards ``y``: particles following the field of the critic refit at every step
    (:func:`euler_flow`), or a generator regressed on them."""
    if generator_net is not None and not isinstance(generator_net, nn.Module):
        raise TypeError(f"generator_net must be a torch.nn.Module, got {type(generator_net).__name__}")
    x0 = check_samples(x0, "x0" if generator_net is None else "x0 (latent)").detach()
    y = check_samples(y, "y").detach()
    if generator_net is None:
        check_same_dim(x0, y, "x0", "y")
    n_steps, r_min = check_int(n_steps, "n_steps"), check_positive(r_min, "r_min")
    logit_clip = None if logit_clip is None else check_positive(logit_clip, "logit_clip")
    get_velocity_factor(fdiv)  # validates
    named = isinstance(fdiv, str) and fdiv.strip().lower() not in VELOCITY_FACTORS
    fdiv_obj = get_fdivergence(fdiv) if isinstance(fdiv, FDivergence) or named else None

    def default_field(net):
        return lambda z: velocity_from_critic(net, z, estimator=estimator, fdiv=fdiv, r_min=r_min,
                                              logit_clip=logit_clip)  # fmt: skip

    @torch.no_grad()
    def estimate(net, x):  # the critic's estimate of D_f(rho || nu) at the particles x
        if field_of or fdiv_obj is None:
            return None
        h_x, h_y = _scalar_out(net, x), _scalar_out(net, y)
        if estimator != "variational":  # the optimal critic at the fitted ratio
            h_x = fdiv_obj.f_prime(_ratio(h_x, estimator, r_min))
            h_y = fdiv_obj.f_prime(_ratio(h_y, estimator, r_min))
        return float(variational_bound(fdiv_obj, h_x, h_y))

    fitter = _CriticFitter(estimator, fdiv_obj, x0 if generator_net is None else y, critic, estimate=estimate,
                           field_of=field_of or default_field, generator=generator, **critic_options)
    if generator_net is not None:
        return _generator_flow(x0, y, generator_net, fitter, step_size, n_steps, inner_steps=inner_steps,
                               fit_iters=fit_iters, lr_generator=lr_generator, desc=desc, **flow)
    check_bool(keep_fields, "keep_fields")
    fields: list[Callable] = []

    def velocity_fn(x, at=None):
        v_field = fitter.step(x, y)
        if keep_fields:
            fields.append(fitter.field_of(frozen_copy(fitter.critic)))
        return v_field(x if at is None else at)

    center, default_norm = spread_bound(x0, y)
    max_norm = default_norm if max_norm is None else max_norm
    try:
        traj = euler_flow(x0, velocity_fn, step_size, n_steps, max_norm=max_norm, desc=desc, center=center,
                          generator=generator, **flow)
    except FlowDivergedError as err:  # the critic's learning rate can be the culprit too
        raise FlowDivergedError(f"{err}, or a smaller critic lr (lr={fitter.lr:g})") from None
    return FFlowResult(traj.x, traj, fitter.divergence, fitter.critic, fields, list(traj.step_sizes))


def f_flow(x0, y, fdiv="kl", step_size=0.1, n_steps: int = 100, *, estimator: str = "logistic",
           critic: nn.Module | None = None, critic_iters: int = 20, first_critic_iters: int = 200,
           lr: float = 1e-3, hidden: int = 64, depth: int = 2, batch_size: int | None = None, r1: float = 0.0,
           gp: float = 0.0, diffusion: float = 0.0, r_min: float = 1e-3, logit_clip: float | None = None,
           keep_fields: bool = False, record_every: int | None = None, max_norm: float | None = None,
           generator: torch.Generator | None = None, progress: bool = True) -> FFlowResult:  # fmt: skip
    r"""Explicit particle flow of an f-divergence from samples, the critic refit every step:
    :math:`x_{k+1} = x_k + \eta_k\, v_k(x_k) + \sqrt{2\gamma \eta_k}\,\xi_k`, :math:`v_k = r_k f''(r_k)\,
    \nabla\log(\nu/\rho_k)` from :func:`velocity_from_critic` (``estimator``), :math:`\gamma` = ``diffusion``;
    default critic: a :class:`~gwf_tutorial.critics.Critic` in the dtype of ``x0``; ``keep_fields`` stores
    each field for :meth:`FFlowResult.push`; ``max_norm`` defaults to
    :func:`~gwf_tutorial.flows.spread_bound`.

    Used in: chapter 4; :func:`~gwf_tutorial.fflows.vgrow`.
    """
    estimator = check_choice(estimator, "estimator", ESTIMATORS)
    options = dict(hidden=hidden, depth=depth, lr=lr, batch_size=batch_size, r1=r1, gp=gp,
                   critic_iters=critic_iters, first_critic_iters=first_critic_iters)  # fmt: skip
    return _flow(x0, y, fdiv, estimator, step_size, n_steps, critic=critic, r_min=r_min, max_norm=max_norm,
                 logit_clip=logit_clip, desc=f"f-flow ({estimator})", critic_options=options,
                 diffusion=diffusion, keep_fields=keep_fields, record_every=record_every, generator=generator,
                 progress=progress)  # fmt: skip


def vgrow(x0, y, fdiv="kl", step_size=0.5, n_steps: int = 50, *, generator_net: nn.Module | None = None,
          inner_steps: int = 5, fit_iters: int = 10, lr_generator: float = 1e-3, critic_iters: int = 20,
          first_critic_iters: int = 200, lr: float = 1e-3, hidden: int = 64, depth: int = 2,
          batch_size: int | None = None, r1: float = 0.0, record_every: int | None = None,
          generator: torch.Generator | None = None, progress: bool = True) -> FFlowResult:  # fmt: skip
    r"""VGrow (Gao et al. 2019): variational gradient flow with a logistic density-ratio estimate :math:`D
    \approx \log(\nu/\rho_k)`, :math:`r = e^{-D}`: :math:`Y \leftarrow Y + \eta\, r f''(r)\,\nabla D(Y)`
    (``inner_steps`` times), then :math:`G \leftarrow \arg\min_G \tfrac12 \mathbb E|G(z) - Y|^2`. Without
    ``generator_net`` the particles ``x0`` follow :func:`f_flow`; with it, ``x0`` are latents, and :math:`G`
    takes ``fit_iters`` :class:`~gwf_tutorial.trainer.Trainer` steps (``lr_generator``) per refit.

    Used in: chapter 4.
    """
    options = dict(hidden=hidden, depth=depth, lr=lr, batch_size=batch_size, r1=r1,
                   critic_iters=critic_iters, first_critic_iters=first_critic_iters)  # fmt: skip
    desc = "f-flow (logistic)" if generator_net is None else "VGrow"
    return _flow(x0, y, fdiv, "logistic", step_size, n_steps, generator_net=generator_net,
                 generator=generator, inner_steps=inner_steps, fit_iters=fit_iters, lr_generator=lr_generator,
                 desc=desc, critic_options=options, record_every=record_every, progress=progress)


def ept(x0, y, fdiv="kl", step_size=0.1, n_steps: int = 50, *, r1: float = 0.1, critic_iters: int = 20,
        first_critic_iters: int = 200, lr: float = 1e-3, hidden: int = 64, depth: int = 2,
        batch_size: int | None = None, r_min: float = 1e-3, record_every: int | None = None,
        generator: torch.Generator | None = None, progress: bool = True) -> FFlowResult:  # fmt: skip
    r"""EPT (Gao et al. 2022): Euler particle transport with a least-squares density-ratio fit, :math:`R =
    \arg\min_R \tfrac12\mathbb E_\nu R^2 - \mathbb E_{\rho_k} R + \tfrac{\lambda}{2}\mathbb E_\nu|\nabla
    R|^2`, :math:`x \leftarrow x - s\, R f''(R)\,\nabla \log R(x)`, with :math:`\lambda` = ``r1``; the fields
    are kept, so ``result.push(z)`` transports fresh samples.

    Used in: chapter 4.
    """
    return f_flow(x0, y, fdiv, step_size, n_steps, estimator="least_squares", critic_iters=critic_iters,
                  first_critic_iters=first_critic_iters, lr=lr, hidden=hidden, depth=depth, progress=progress,
                  batch_size=batch_size, r1=r1, r_min=r_min, keep_fields=True, record_every=record_every,
                  generator=generator)


def monoflow(x0, y, h="logd", step_size=0.5, n_steps: int = 50, *, generator_net: nn.Module | None = None,
             lr_generator: float = 1e-3, critic_iters: int = 20, first_critic_iters: int = 200,
             lr: float = 1e-3, hidden: int = 64, depth: int = 2, batch_size: int | None = None,
             r1: float = 0.0, record_every: int | None = None, generator: torch.Generator | None = None,
             progress: bool = True) -> FFlowResult:  # fmt: skip
    r"""MonoFlow (Yi, Zhu, Liu 2023): particles follow an increasing map :math:`\Upsilon` (``h``, a name
    of :data:`MONOFLOW_H` or a callable) of the log ratio :math:`D \approx \log(\nu/\rho_k)`, :math:`v =
    \Upsilon'(D)\nabla D`: the f-flow with :math:`r f''(r) = \Upsilon'(-\log r)`. With
    ``generator_net``, one :class:`~gwf_tutorial.trainer.Trainer` step per critic refit on
    :math:`\tfrac12\mathbb E|G(z) - \mathrm{sg}(G(z) + \eta v)|^2`, of gradient
    :math:`-\eta\nabla_\theta\mathbb E\,\Upsilon(D(G(z)))`: ascent on :math:`\mathbb E\,\Upsilon(D)`.

    Used in: chapter 4.
    """
    hfun = MONOFLOW_H.get(h.strip().lower()) if isinstance(h, str) else h
    if isinstance(h, str) and hfun is None:
        raise ValueError(f"h must be one of {sorted(MONOFLOW_H)} or a callable, got {h!r}")
    if not callable(hfun):
        raise TypeError(f"h must be a name or a callable, got {type(h).__name__}")

    def field_of(net):
        return lambda z: value_and_grad(lambda u: hfun(_scalar_out(net, u)), check_samples(z, "x"))[1]

    options = dict(hidden=hidden, depth=depth, lr=lr, batch_size=batch_size, r1=r1,
                   critic_iters=critic_iters, first_critic_iters=first_critic_iters)  # fmt: skip
    desc = "MonoFlow" if generator_net is None else "MonoFlow (generator)"
    return _flow(x0, y, "kl", "logistic", step_size, n_steps, generator_net=generator_net,
                 generator=generator, lr_generator=lr_generator, desc=desc, field_of=field_of,
                 critic_options=options, record_every=record_every, progress=progress)  # fmt: skip


def dgflow(x0, discriminator, fdiv="kl", step_size=0.1, n_steps: int = 25, gamma: float = 0.01, *,
           generator_net: nn.Module | None = None, record_every: int | None = None,
           generator: torch.Generator | None = None, progress: bool = True) -> FFlowResult:  # fmt: skip
    r"""DGflow (Ansari, Ang, Soh 2021): refine samples along the gradient flow of a fixed discriminator,
    :math:`x_{k+1} = x_k + \eta\, \omega\big(e^{-D(x_k)}\big)\,\nabla D(x_k) + \sqrt{2\gamma\eta}\;\xi_k`,
    the Euler--Maruyama scheme of :math:`D_f(\rho\|\nu) - \gamma H(\rho)`, with ``discriminator`` a logit
    :math:`D \approx \log(\nu/\rho_0)` or an object with ``logit``; with ``generator_net``, in latent space.
    Official defaults: :math:`\eta = 0.1`, :math:`\gamma = 0.01`, 25 steps.

    Used in: chapter 4.
    """
    x0, gamma = check_samples(x0, "x0"), check_nonnegative(gamma, "gamma")
    factor, logit = get_velocity_factor(fdiv), getattr(discriminator, "logit", None)
    disc = logit if callable(logit) else discriminator
    if not callable(disc):
        raise TypeError("discriminator must be callable or have a logit method")
    if generator_net is not None and not isinstance(generator_net, nn.Module):
        raise TypeError(f"generator_net must be a torch.nn.Module, got {type(generator_net).__name__}")
    out_dtype, out_name = x0.dtype, "x0"
    if generator_net is not None:
        _check_net_dtype(generator_net, x0.dtype, "generator_net", "x0")
        out_dtype, out_name = next(iter(generator_net.parameters()), x0).dtype, "generator_net's output"
    _check_net_dtype(disc, out_dtype, "discriminator", out_name)

    data_logit = disc if generator_net is None else (lambda u: disc(generator_net(u)))

    def velocity_fn(z, at=None):
        d, g = value_and_grad(data_logit, z)
        return factor(_ratio(d, "logistic", 0.0))[:, None] * g

    traj = euler_flow(x0, velocity_fn, step_size, n_steps, diffusion=gamma, record_every=record_every,
                      generator=generator, progress=progress, desc="DGflow")
    if generator_net is None:
        return FFlowResult(x=traj.x, trajectory=traj, critic=disc, step_sizes=list(traj.step_sizes))
    with torch.no_grad():
        frames = torch.stack([generator_net(f) for f in traj.frames])
    data_traj = replace(traj, x=frames[-1], frames=frames)
    return FFlowResult(frames[-1], data_traj, critic=disc, step_sizes=list(traj.step_sizes), latent=traj.x)
