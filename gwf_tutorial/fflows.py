r"""Explicit f-divergence flows from samples, and the published methods as instances.

The Wasserstein gradient flow of :math:`D_f(\rho\,\|\,\nu)` moves particles with

.. math::

    v = -\nabla f'(r) = r f''(r)\, \nabla \log\frac{\nu}{\rho}, \qquad r = \frac{\rho}{\nu}.

:func:`f_flow` refits a critic to the particles and the data at every step and reads the velocity off it
(:func:`velocity_from_critic`): ``"logistic"`` (a classifier logit :math:`D \approx \log(\nu/\rho)`;
VGrow, MonoFlow, DGflow), ``"variational"`` (the critic :math:`h \approx f'(r)` of the variational bound;
GWF's critic) or ``"least_squares"`` (a ratio fit :math:`R = 1 + h/2 \approx r`; EPT). :func:`vgrow`,
:func:`ept`, :func:`monoflow` and :func:`dgflow` are the published methods, one call each.

Conventions: ``x0`` has shape ``(n, d)`` (or ``(n, d_z)`` latents with a ``generator_net``), data ``y``
shape ``(m, d)``. ``fdiv`` is a divergence of :mod:`gwf_tutorial.fdiv` or its name, ``"logd"``, or a
velocity factor ``r -> s(r)``. Critic arguments (``critic_iters`` warm-started Adam steps per flow step,
``first_critic_iters`` at the first, ``lr``, ``hidden`` x ``depth`` SiLU MLP, ``batch_size``, ``r1``,
``gp``) and flow arguments (``step_size``, ``n_steps``, ``record_every``, ``progress``, ``max_norm``,
``generator`` for mini-batches and noise) mean the same in every function. All return an
:class:`FFlowResult`; a blow-up raises :class:`~gwf_tutorial.flows.FlowDivergedError`.

Used in: chapter 4.

References
----------
Gao et al. (2019), "Deep generative learning via variational gradient flow", ICML (VGrow).
Gao et al. (2022), "Deep generative learning via Euler particle transport", MSML 2021 (EPT).
Yi, Zhu, Liu (2023), "MonoFlow: rethinking divergence GANs via the perspective of Wasserstein gradient
flows", ICML.
Ansari, Ang, Soh (2021), "Refining deep generative models via discriminator gradient flow", ICLR
(DGflow).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gwf_tutorial._validation import (
    check_int,
    check_nonnegative,
    check_positive,
    check_same_dim,
    check_samples,
)
from gwf_tutorial.critics import Critic, fit_critic, logistic_ratio
from gwf_tutorial.fdiv import PEARSON_CHI2, FDivergence, get_fdivergence, variational_bound
from gwf_tutorial.flows import FlowDivergedError, Trajectory, euler_flow, spread_bound
from gwf_tutorial.train import progress as _progress

__all__ = [
    "ESTIMATORS",
    "VELOCITY_FACTORS",
    "MONOFLOW_H",
    "get_velocity_factor",
    "velocity_from_critic",
    "FFlowResult",
    "f_flow",
    "vgrow",
    "ept",
    "monoflow",
    "dgflow",
]

#: The three ways of reading a velocity off a critic, see :func:`velocity_from_critic`.
ESTIMATORS = ("logistic", "variational", "least_squares")

#: Velocity factors :math:`s(r) = r f''(r)` that are not in the f-divergence catalogue:
#: ``"logd"``: :math:`r/(1 + r)`, the non-saturating ("log D trick") GAN generator, VGrow's
#: "logD" divergence and DGflow's ``logD``.
VELOCITY_FACTORS: dict[str, Callable[[Tensor], Tensor]] = {"logd": lambda r: r / (1 + r)}

#: MonoFlow's monotone maps :math:`h` of the logit :math:`D = \log(\nu/\rho)`; the velocity is
#: :math:`\nabla h(D) = h'(D)\nabla D`:
#: ``"kl"``: :math:`h(D) = D` (:math:`h' = 1`, the KL flow);
#: ``"logd"``: :math:`h(D) = \log\sigma(D)` (non-saturating GAN, :math:`h' = r/(1+r)`);
#: ``"minimax"`` (alias ``"js"``): :math:`h(D) = \mathrm{softplus}(D) = -\log(1 - \sigma(D))`
#: (minimax GAN, :math:`h' = 1/(1 + r)`, the 2JS flow).
MONOFLOW_H: dict[str, Callable[[Tensor], Tensor]] = {
    "kl": lambda d: d,
    "logd": lambda d: -F.softplus(-d),
    "minimax": F.softplus,
    "js": F.softplus,
}

_R_CLAMP = (1e-30, 1e30)


def get_velocity_factor(fdiv) -> Callable[[Tensor], Tensor]:
    r"""The velocity factor :math:`s(r) = r f''(r)` of ``fdiv``, an elementwise function of :math:`r > 0`.

    .. math::

        \text{KL: } 1, \quad \text{2JS: } \tfrac{1}{1+r}, \quad \chi^2: 2r, \quad \text{logD: }
        \tfrac{r}{1+r}.

    Used in: chapter 4.
    """
    if isinstance(fdiv, FDivergence):
        d = fdiv
    elif isinstance(fdiv, str):
        key = fdiv.strip().lower()
        if key in VELOCITY_FACTORS:
            return VELOCITY_FACTORS[key]
        try:
            d = get_fdivergence(key)
        except ValueError as err:
            raise ValueError(
                f"fdiv must be an f-divergence name or one of {sorted(VELOCITY_FACTORS)}, got {fdiv!r}"
            ) from err
    elif callable(fdiv):
        return fdiv
    else:
        raise TypeError(f"fdiv must be an FDivergence, a name or a callable, got {type(fdiv).__name__}")
    return lambda r: r * d.f_double_prime(r)


def _as_fdiv(fdiv) -> FDivergence | None:
    """The FDivergence behind ``fdiv`` if there is one (for divergence estimates)."""
    if isinstance(fdiv, FDivergence):
        return fdiv
    if isinstance(fdiv, str) and fdiv.strip().lower() not in VELOCITY_FACTORS:
        return get_fdivergence(fdiv)
    return None


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    return estimator


def _scalar_out(net: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    out = net(z)
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (z.shape[0],):
        raise ValueError(f"the critic must return shape (n,) or (n, 1), got {tuple(out.shape)}")
    return out


def _grad(net: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
    """``(net(x), grad_x net(x))``, both detached."""
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        out = _scalar_out(net, z)
        (g,) = torch.autograd.grad(out.sum(), z)
    return out.detach(), g.detach()


def velocity_from_critic(
    critic: Callable[[Tensor], Tensor],
    x,
    *,
    estimator: str = "logistic",
    fdiv="kl",
    r_min: float = 1e-3,
    logit_clip: float | None = None,
) -> Tensor:
    r"""The f-flow velocity at ``x``, shape ``(n, d)``, read off a trained ``critic`` (``(n, d) -> (n,)``).

    .. math::

        \text{logistic: } v = s(e^{-D})\,\nabla D, \qquad
        \text{variational: } v = -\nabla h, \qquad
        \text{least squares: } v = -s(R)\,\nabla\log R,\ R = \max(1 + h/2, r_{\min}),

    with :math:`s` of :func:`get_velocity_factor`. ``logit_clip`` bounds the logistic logit in the factor
    only (an outlier's unbounded logit would otherwise take a huge step under :math:`\chi^2` or reverse KL).

    Used in: chapter 4.
    """
    x = check_samples(x, "x")
    estimator = _check_estimator(estimator)
    r_min = check_positive(r_min, "r_min")
    if logit_clip is not None:
        logit_clip = check_positive(logit_clip, "logit_clip")
    if not callable(critic):
        raise TypeError("critic must be callable")
    _check_net_dtype(critic, x.dtype, "critic", "x")
    out, g = _grad(critic, x)
    if estimator == "variational":
        return -g
    factor = get_velocity_factor(fdiv)
    if estimator == "logistic":
        if logit_clip is not None:
            out = out.clamp(-logit_clip, logit_clip)
        r = torch.exp(-out).clamp(*_R_CLAMP)
        return factor(r)[:, None] * g
    R = (1 + out / 2).clamp_min(r_min)
    return -(factor(R) / R)[:, None] * (g / 2)


def _estimate(fdiv: FDivergence | None, estimator: str, critic, x: Tensor, y: Tensor, r_min: float):
    """Critic estimate of D_f(rho || nu) at the current particles (None without an f)."""
    if fdiv is None:
        return None
    with torch.no_grad():
        h_x, h_y = _scalar_out(critic, x), _scalar_out(critic, y)
        if estimator == "variational":
            return float(variational_bound(fdiv, h_x, h_y))
        if estimator == "logistic":
            r_x, r_y = torch.exp(-h_x).clamp(*_R_CLAMP), torch.exp(-h_y).clamp(*_R_CLAMP)
        else:
            r_x, r_y = (1 + h_x / 2).clamp_min(r_min), (1 + h_y / 2).clamp_min(r_min)
        return float(variational_bound(fdiv, fdiv.f_prime(r_x), fdiv.f_prime(r_y)))


@dataclass
class FFlowResult:
    r"""Result of an f-flow.

    .. math::

        x_{k+1} = x_k + h_k\, v_k(x_k) \;(+\sqrt{2\gamma h_k}\,\xi_k), \qquad
        \Phi = (\mathrm{Id} + h_{K-1} v_{K-1}) \circ \dots \circ (\mathrm{Id} + h_0 v_0).

    ``x`` (final particles, or :math:`G(z)` in generator modes), ``trajectory``, ``divergence`` (critic
    estimate of :math:`D_f(\rho_k\|\nu)` before each step; empty without an f), ``critic``, ``fields`` (the
    frozen :math:`v_k` for :meth:`push`, with ``keep_fields=True``), ``step_sizes`` and ``latent``.

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
        r"""Apply the forward Euler map :math:`\Phi` of the stored fields to new points ``(n, d)`` (EPT)."""
        x = check_samples(x, "x").detach()
        if len(self.fields) != len(self.step_sizes) or not self.fields:
            raise ValueError("no stored velocity fields: run the flow with keep_fields=True")
        for v, h in zip(self.fields, self.step_sizes):
            x = x + h * v(x)
        return x


def _check_net_dtype(net, dtype: torch.dtype, net_name: str, x_name: str) -> None:
    """A network given to a flow must hold its parameters in the dtype of the points it is applied to
    (a bound method, e.g. ``critic.logit``, counts as its module)."""
    net = getattr(net, "__self__", net)
    p = next(iter(net.parameters()), None) if isinstance(net, nn.Module) else None
    if p is not None and p.dtype != dtype:
        raise TypeError(
            f"{net_name} has {p.dtype} parameters but {x_name} is {dtype}; cast one of them "
            f"(e.g. {net_name}.to({dtype}))"
        )


def _check_flow_args(x0, y, n_steps):
    x0 = check_samples(x0, "x0")
    y = check_samples(y, "y")
    check_same_dim(x0, y, "x0", "y")
    return x0, y.detach(), check_int(n_steps, "n_steps")


class _CriticFitter:
    """Builds, warm-starts and refits the critic of an f-flow."""

    def __init__(
        self, estimator, fdiv, d, dtype, device, critic, *, hidden, depth, lr, batch_size, r1, gp, gen
    ):
        self.estimator = estimator
        self.gen = gen
        self.lr = check_positive(lr, "lr")
        self.batch_size = None if batch_size is None else check_int(batch_size, "batch_size")
        self.r1 = check_nonnegative(r1, "r1")
        self.gp = check_nonnegative(gp, "gp")
        if estimator == "variational":
            self.fit_fdiv = _as_fdiv(fdiv)
            if self.fit_fdiv is None:
                raise ValueError("the variational estimator needs an f-divergence (fdiv)")
        elif estimator == "least_squares":
            self.fit_fdiv = PEARSON_CHI2
        else:
            self.fit_fdiv = None
            if self.gp > 0:
                raise ValueError("gp is not used by the logistic estimator (use r1)")
        if critic is None:
            with torch.device("cpu"):  # initialised on the CPU on every machine (same weights), then moved
                critic = Critic(
                    d,
                    self.fit_fdiv,
                    hidden=check_int(hidden, "hidden"),
                    depth=check_int(depth, "depth", min_value=0),
                    dtype=dtype,
                )
            critic = critic.to(device)
        elif not isinstance(critic, nn.Module):
            raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}")
        _check_net_dtype(critic, dtype, "critic", "x0")
        self.critic = critic
        self.opt = torch.optim.Adam(critic.parameters(), lr=self.lr)

    def fit(self, x: Tensor, y: Tensor, n_iters: int) -> None:
        common = dict(
            n_iters=n_iters,
            lr=self.lr,
            batch_size=self.batch_size,
            r1=self.r1,
            generator=self.gen,
            optimizer=self.opt,
            progress=False,
        )
        if self.estimator == "logistic":
            logistic_ratio(x, y, net=self.critic, **common)
        else:
            fit_critic(self.critic, x, y, self.fit_fdiv, gp=self.gp, **common)


def _frozen(net: nn.Module) -> nn.Module:
    c = copy.deepcopy(net)
    for p in c.parameters():
        p.requires_grad_(False)
    return c.eval()


def f_flow(
    x0,
    y,
    fdiv="kl",
    step_size=0.1,
    n_steps: int = 100,
    *,
    estimator: str = "logistic",
    critic: nn.Module | None = None,
    critic_iters: int = 20,
    first_critic_iters: int = 200,
    lr: float = 1e-3,
    hidden: int = 64,
    depth: int = 2,
    batch_size: int | None = None,
    r1: float = 0.0,
    gp: float = 0.0,
    diffusion: float = 0.0,
    r_min: float = 1e-3,
    logit_clip: float | None = None,
    keep_fields: bool = False,
    record_every: int | None = None,
    max_norm: float | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> FFlowResult:
    r"""Explicit particle flow of an f-divergence from samples, the critic refit every step.

    .. math::

        x_{k+1} = x_k + h_k\, v_k(x_k) + \sqrt{2\gamma h_k}\,\xi_k, \qquad
        v_k = r_k f''(r_k)\,\nabla\log\frac{\nu}{\rho_k},

    :math:`v_k` from :func:`velocity_from_critic` (``estimator``) and :math:`\gamma` = ``diffusion``. The
    critic (default an MLP :class:`~gwf_tutorial.critics.Critic` in the dtype of ``x0``) keeps its Adam state
    across steps. ``keep_fields`` stores each step's critic for :meth:`FFlowResult.push`; the guard defaults
    to :func:`~gwf_tutorial.flows.spread_bound`.

    Used in: chapter 4; :func:`~gwf_tutorial.fflows.vgrow`.
    """
    x0, y, n_steps = _check_flow_args(x0, y, n_steps)
    estimator = _check_estimator(estimator)
    r_min = check_positive(r_min, "r_min")
    get_velocity_factor(fdiv)  # validates
    fdiv_obj = _as_fdiv(fdiv)
    critic_iters = check_int(critic_iters, "critic_iters")
    first_critic_iters = check_int(first_critic_iters, "first_critic_iters")
    fitter = _CriticFitter(
        estimator,
        fdiv,
        x0.shape[1],
        x0.dtype,
        x0.device,
        critic,
        hidden=hidden,
        depth=depth,
        lr=lr,
        batch_size=batch_size,
        r1=r1,
        gp=gp,
        gen=generator,
    )

    if logit_clip is not None:
        logit_clip = check_positive(logit_clip, "logit_clip")

    def field_of(net):
        return lambda z: velocity_from_critic(
            net, z, estimator=estimator, fdiv=fdiv, r_min=r_min, logit_clip=logit_clip
        )

    return _particle_flow(
        x0,
        y,
        fitter,
        field_of,
        lambda net, x: _estimate(fdiv_obj, estimator, net, x, y, r_min),
        step_size,
        n_steps,
        critic_iters=critic_iters,
        first_critic_iters=first_critic_iters,
        diffusion=diffusion,
        keep_fields=keep_fields,
        record_every=record_every,
        max_norm=max_norm,
        generator=generator,
        progress=progress,
        desc=f"f-flow ({estimator})",
    )


def _rms(x: Tensor) -> float:
    return float(x.detach().pow(2).sum(1).mean().sqrt())


def _particle_flow(
    x0,
    y,
    fitter: _CriticFitter,
    field_of: Callable,
    estimate: Callable,
    step_size,
    n_steps,
    *,
    critic_iters,
    first_critic_iters,
    diffusion,
    keep_fields,
    record_every,
    max_norm,
    generator,
    progress,
    desc,
) -> FFlowResult:
    if not isinstance(keep_fields, bool):
        raise TypeError("keep_fields must be a bool")
    divergence: list[float] = []
    fields: list[Callable] = []
    counter = [0]

    def velocity_fn(x, at=None):
        fitter.fit(x, y, first_critic_iters if counter[0] == 0 else critic_iters)
        counter[0] += 1
        est = estimate(fitter.critic, x)
        if est is not None:
            divergence.append(est)
        if keep_fields:
            fields.append(field_of(_frozen(fitter.critic)))
        return field_of(fitter.critic)(x if at is None else at)

    center, default_norm = spread_bound(x0, y)
    max_norm = default_norm if max_norm is None else max_norm
    try:
        traj = euler_flow(
            x0,
            velocity_fn,
            step_size,
            n_steps,
            diffusion=diffusion,
            record_every=record_every,
            generator=generator,
            progress=progress,
            max_norm=max_norm,
            desc=desc,
            center=center,
        )
    except FlowDivergedError as err:  # the critic's learning rate can be the culprit too
        raise FlowDivergedError(f"{err}, or a smaller critic lr (lr={fitter.lr:g})") from None
    return FFlowResult(
        x=traj.x,
        trajectory=traj,
        divergence=divergence,
        critic=fitter.critic,
        fields=fields,
        step_sizes=list(traj.step_sizes),
    )


def _generator_flow(
    latent,
    y,
    generator_net: nn.Module,
    fitter: _CriticFitter,
    field_of: Callable,
    estimate: Callable,
    step_size,
    n_steps: int,
    *,
    inner_steps: int,
    fit_iters: int,
    lr_generator: float,
    critic_iters: int,
    first_critic_iters: int,
    record_every: int | None,
    progress: bool,
    desc: str,
) -> FFlowResult:
    r"""Outer loop: refit critic, move particles ``inner_steps`` times, regress the generator."""
    if not isinstance(generator_net, nn.Module):
        raise TypeError(f"generator_net must be a torch.nn.Module, got {type(generator_net).__name__}")
    latent = check_samples(latent, "x0 (latent)").detach()
    _check_net_dtype(generator_net, latent.dtype, "generator_net", "x0")
    step_size = check_positive(step_size, "step_size")
    inner_steps = check_int(inner_steps, "inner_steps")
    fit_iters = check_int(fit_iters, "fit_iters")
    lr_generator = check_positive(lr_generator, "lr_generator")
    if record_every is None:
        record_every = max(1, n_steps // 100)
    record_every = check_int(record_every, "record_every")
    opt = torch.optim.Adam(generator_net.parameters(), lr=lr_generator)
    with torch.no_grad():
        x = generator_net(latent)
    if x.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"generator_net must map x0 to shape (n, {y.shape[1]}), got {tuple(x.shape)}")
    center, max_norm = spread_bound(x, y)
    steps, frames, divergence = [0], [x.detach().clone()], []
    for k in _progress(range(n_steps), desc=desc, disable=not progress):
        with torch.no_grad():
            x = generator_net(latent)
        fitter.fit(x, y, first_critic_iters if k == 0 else critic_iters)
        est = estimate(fitter.critic, x)
        if est is not None:
            divergence.append(est)
        v_field = field_of(fitter.critic)
        target = x
        for _ in range(inner_steps):
            target = target + step_size * v_field(target)
        target = target.detach()
        for _ in range(fit_iters):
            loss = 0.5 * (generator_net(latent) - target).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (k + 1) % record_every == 0 or k + 1 == n_steps:
            with torch.no_grad():
                x = generator_net(latent)
            rms = _rms(x - center)  # NaN or inf when x is not finite
            if not rms <= max_norm:
                raise FlowDivergedError(
                    f"{desc} diverged at outer step {k} with step_size={step_size:g}: generated samples "
                    f"became {'too large' if math.isfinite(rms) else 'non-finite'} (RMS norm {rms:.3g} about "
                    f"the data mean, bound {max_norm:.3g}); try a smaller step_size, lr_generator "
                    f"({lr_generator:g}) or critic lr ({fitter.lr:g})"
                )
            steps.append(k + 1)
            frames.append(x.detach().clone())
    traj = Trajectory(x=frames[-1], steps=steps, frames=torch.stack(frames), step_sizes=[step_size] * n_steps)
    return FFlowResult(
        x=frames[-1],
        trajectory=traj,
        divergence=divergence,
        critic=fitter.critic,
        step_sizes=list(traj.step_sizes),
        latent=latent,
    )


def vgrow(
    x0,
    y,
    fdiv="kl",
    step_size=0.5,
    n_steps: int = 50,
    *,
    generator_net: nn.Module | None = None,
    inner_steps: int = 5,
    fit_iters: int = 10,
    lr_generator: float = 1e-3,
    critic_iters: int = 20,
    first_critic_iters: int = 200,
    lr: float = 1e-3,
    hidden: int = 64,
    depth: int = 2,
    batch_size: int | None = None,
    r1: float = 0.0,
    record_every: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> FFlowResult:
    r"""VGrow: variational gradient flow with a logistic density-ratio estimate.

    .. math::

        D \approx \log\frac{\nu}{\rho_k}, \quad r = e^{-D}, \quad
        Y \leftarrow Y + s\, r f''(r)\,\nabla D(Y)\ (\text{inner\_steps times}), \quad
        G \leftarrow \arg\min_G \tfrac12 \mathbb E|G(z) - Y|^2 .

    Without ``generator_net`` the particles ``x0`` follow :func:`f_flow`; with it, ``x0`` are latents and
    each outer step refits the classifier, moves :math:`Y = G(z)` and regresses :math:`G` on them
    (``fit_iters`` Adam steps).

    Used in: chapter 4.
    """
    if generator_net is None:
        return f_flow(
            x0,
            y,
            fdiv,
            step_size,
            n_steps,
            estimator="logistic",
            critic_iters=critic_iters,
            first_critic_iters=first_critic_iters,
            lr=lr,
            hidden=hidden,
            depth=depth,
            batch_size=batch_size,
            r1=r1,
            record_every=record_every,
            generator=generator,
            progress=progress,
        )
    y = check_samples(y, "y").detach()
    n_steps = check_int(n_steps, "n_steps")
    get_velocity_factor(fdiv)
    fdiv_obj = _as_fdiv(fdiv)
    fitter = _CriticFitter(
        "logistic", fdiv, y.shape[1], y.dtype, y.device, None,
        hidden=hidden, depth=depth, lr=lr, batch_size=batch_size, r1=r1, gp=0.0, gen=generator,
    )  # fmt: skip

    def field_of(net):
        return lambda z: velocity_from_critic(net, z, estimator="logistic", fdiv=fdiv)

    return _generator_flow(
        x0,
        y,
        generator_net,
        fitter,
        field_of,
        lambda net, x: _estimate(fdiv_obj, "logistic", net, x, y, 1e-3),
        step_size,
        n_steps,
        inner_steps=inner_steps,
        fit_iters=fit_iters,
        lr_generator=lr_generator,
        critic_iters=check_int(critic_iters, "critic_iters"),
        first_critic_iters=check_int(first_critic_iters, "first_critic_iters"),
        record_every=record_every,
        progress=progress,
        desc="VGrow",
    )


def ept(
    x0,
    y,
    fdiv="kl",
    step_size=0.1,
    n_steps: int = 50,
    *,
    r1: float = 0.1,
    critic_iters: int = 20,
    first_critic_iters: int = 200,
    lr: float = 1e-3,
    hidden: int = 64,
    depth: int = 2,
    batch_size: int | None = None,
    r_min: float = 1e-3,
    record_every: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> FFlowResult:
    r"""EPT: Euler particle transport with a least-squares density-ratio fit.

    .. math::

        R = \arg\min_R\ \tfrac12\mathbb E_\nu R^2 - \mathbb E_{\rho_k} R
        + \tfrac{\lambda}{2}\mathbb E_\nu|\nabla R|^2, \qquad
        x \leftarrow x - s\, R f''(R)\,\nabla \log R(x),

    with :math:`\lambda` = ``r1``; the fields are kept, so ``result.push(z)`` transports fresh samples.

    Used in: chapter 4.
    """
    return f_flow(
        x0,
        y,
        fdiv,
        step_size,
        n_steps,
        estimator="least_squares",
        critic_iters=critic_iters,
        first_critic_iters=first_critic_iters,
        lr=lr,
        hidden=hidden,
        depth=depth,
        batch_size=batch_size,
        r1=r1,
        r_min=r_min,
        keep_fields=True,
        record_every=record_every,
        generator=generator,
        progress=progress,
    )


def _monoflow_h(h) -> Callable[[Tensor], Tensor]:
    if isinstance(h, str):
        key = h.strip().lower()
        if key not in MONOFLOW_H:
            raise ValueError(f"h must be one of {sorted(MONOFLOW_H)} or a callable, got {h!r}")
        return MONOFLOW_H[key]
    if callable(h):
        return h
    raise TypeError(f"h must be a name or a callable, got {type(h).__name__}")


def monoflow(
    x0,
    y,
    h="logd",
    step_size=0.5,
    n_steps: int = 50,
    *,
    generator_net: nn.Module | None = None,
    lr_generator: float = 1e-3,
    critic_iters: int = 20,
    first_critic_iters: int = 200,
    lr: float = 1e-3,
    hidden: int = 64,
    depth: int = 2,
    batch_size: int | None = None,
    r1: float = 0.0,
    record_every: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> FFlowResult:
    r"""MonoFlow: particles follow a monotone rescaling ``h`` of the log density ratio.

    .. math::

        D \approx \log\frac{\nu}{\rho_k}, \qquad v = \nabla_x\, h\big(D(x)\big) = h'(D)\,\nabla D, \quad h' >
        0,

    the f-flow with :math:`r f''(r) = h'(-\log r)`; ``h`` is ``"kl"``, ``"logd"``, ``"minimax"`` (``"js"``)
    (:data:`MONOFLOW_H`) or a callable. With ``generator_net``, one Adam step per iteration on
    :math:`-\mathbb E\, h(D(G(z)))` (the GAN form).

    Used in: chapter 4.
    """
    hfun = _monoflow_h(h)
    x0_checked = check_samples(x0, "x0")
    y = check_samples(y, "y").detach()
    n_steps = check_int(n_steps, "n_steps")
    fitter = _CriticFitter(
        "logistic", "kl", y.shape[1], y.dtype, y.device, None,
        hidden=hidden, depth=depth, lr=lr, batch_size=batch_size, r1=r1, gp=0.0, gen=generator,
    )  # fmt: skip

    def field_of(net):
        def v(z: Tensor) -> Tensor:
            _, g = _grad(lambda u: hfun(_scalar_out(net, u)), check_samples(z, "x"))
            return g

        return v

    def no_estimate(net, x):
        return None

    if generator_net is None:
        check_same_dim(x0_checked, y, "x0", "y")
        return _particle_flow(
            x0_checked,
            y,
            fitter,
            field_of,
            no_estimate,
            step_size,
            n_steps,
            critic_iters=check_int(critic_iters, "critic_iters"),
            first_critic_iters=check_int(first_critic_iters, "first_critic_iters"),
            diffusion=0.0,
            keep_fields=False,
            record_every=record_every,
            max_norm=None,
            generator=generator,
            progress=progress,
            desc="MonoFlow",
        )
    return _generator_flow(
        x0_checked,
        y,
        generator_net,
        fitter,
        field_of,
        no_estimate,
        step_size,
        n_steps,
        inner_steps=1,
        fit_iters=1,
        lr_generator=lr_generator,
        critic_iters=check_int(critic_iters, "critic_iters"),
        first_critic_iters=check_int(first_critic_iters, "first_critic_iters"),
        record_every=record_every,
        progress=progress,
        desc="MonoFlow (generator)",
    )


def dgflow(
    x0,
    discriminator,
    fdiv="kl",
    step_size=0.1,
    n_steps: int = 25,
    gamma: float = 0.01,
    *,
    generator_net: nn.Module | None = None,
    record_every: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> FFlowResult:
    r"""DGflow: refine a generator's samples along the gradient flow of a fixed discriminator.

    .. math::

        x_{k+1} = x_k + \eta\, s\big(e^{-D(x_k)}\big)\,\nabla D(x_k) + \sqrt{2\gamma\eta}\;\xi_k,

    the Euler--Maruyama scheme of :math:`D_f(\rho\|\nu) - \gamma H(\rho)`, with ``discriminator`` a logit
    :math:`D \approx \log(\nu/\rho_0)` or an object with ``logit``; with ``generator_net``, in latent space.
    Official defaults: :math:`\eta = 0.1`, :math:`\gamma = 0.01`, 25 steps.

    Used in: chapter 4.
    """
    x0 = check_samples(x0, "x0")
    gamma = check_nonnegative(gamma, "gamma")
    factor = get_velocity_factor(fdiv)
    logit = getattr(discriminator, "logit", None)
    disc = logit if callable(logit) else discriminator
    if not callable(disc):
        raise TypeError("discriminator must be callable or have a logit method")
    if generator_net is not None and not isinstance(generator_net, nn.Module):
        raise TypeError(f"generator_net must be a torch.nn.Module, got {type(generator_net).__name__}")
    if generator_net is None:
        _check_net_dtype(disc, x0.dtype, "discriminator", "x0")
    else:
        _check_net_dtype(generator_net, x0.dtype, "generator_net", "x0")
        for q in generator_net.parameters():
            _check_net_dtype(disc, q.dtype, "discriminator", "generator_net's output")
            break

    def data_logit(z: Tensor) -> Tensor:
        return _scalar_out(disc, z if generator_net is None else generator_net(z))

    def velocity_fn(z, at=None):
        d, g = _grad(data_logit, z)
        return factor(torch.exp(-d).clamp(*_R_CLAMP))[:, None] * g

    traj = euler_flow(
        x0,
        velocity_fn,
        step_size,
        n_steps,
        diffusion=gamma,
        record_every=record_every,
        generator=generator,
        progress=progress,
        max_norm=1e3 * max(1.0, _rms(x0)),
        desc="DGflow",
    )
    if generator_net is None:
        return FFlowResult(x=traj.x, trajectory=traj, critic=disc, step_sizes=list(traj.step_sizes))
    with torch.no_grad():
        frames = torch.stack([generator_net(f) for f in traj.frames])
    data_traj = Trajectory(
        x=frames[-1], steps=traj.steps, frames=frames, values=traj.values, step_sizes=traj.step_sizes
    )
    return FFlowResult(
        x=frames[-1], trajectory=data_traj, critic=disc, step_sizes=list(traj.step_sizes), latent=traj.x
    )
