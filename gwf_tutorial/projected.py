r"""Projected (parametric) Wasserstein gradient flows: the flow seen through a family of maps.

A generator :math:`T_\theta` pushes a latent law :math:`\mu_0` to :math:`\rho_\theta =
(T_\theta)_\#\mu_0`. Moving :math:`\theta` at speed :math:`\dot\theta` moves each sample
:math:`x = T_\theta(z)` at speed :math:`J_\theta(z)\dot\theta`, with :math:`J_\theta(z) =
\partial_\theta T_\theta(z) \in \mathbb R^{d \times p}`. The Wasserstein metric pulled back to
parameters is

.. math::

    G(\theta) = \mathbb E_{z\sim\mu_0}\big[J_\theta(z)^\top J_\theta(z)\big] \in \mathbb R^{p\times p},

and the **projected Wasserstein gradient flow** of :math:`F` is the flow of parameters whose
particle velocity is the :math:`L^2(\rho_\theta)` projection of the Wasserstein velocity
:math:`v = -\nabla \frac{\delta F}{\delta\rho}` onto the fields :math:`J_\theta\dot\theta`:

.. math::

    \dot\theta = \operatorname*{arg\,min}_{\eta}\ \mathbb E\,|J_\theta(z)\eta - v(T_\theta(z))|^2
    = -G(\theta)^{-1}\nabla_\theta F(\rho_\theta),

since :math:`\nabla_\theta F(\rho_\theta) = \mathbb E[J_\theta^\top \nabla\frac{\delta F}{\delta\rho}
(T_\theta(z))]`. It is the natural gradient for the Wasserstein metric. A parametric JKO step with
small :math:`\tau` is its implicit discretisation (GWF Prop. 6.3: :math:`G(\theta)(\theta_+ -
\theta)/\tau = -\nabla_\theta F + o(1)`); plain gradient descent :math:`\dot\theta = -\nabla_\theta F`
ignores :math:`G` and follows another path. For translations :math:`T_\theta(z) = z + \theta`,
:math:`G = I` and the three coincide; for affine maps on Gaussians the projection is exact (the
velocity of the KL flow to a Gaussian is affine), so the projected flow *is* the Wasserstein flow.

This module computes :math:`J`, :math:`G` (:func:`parameter_jacobian`, :func:`metric_tensor`, and
the affine closed form :func:`affine_metric_tensor`), the gradient of :math:`F` in parameters
(:func:`objective_gradient`), and integrates the three schemes (:func:`projected_flow`).

Used in: chapter 6 (parametric Wasserstein flows).

References
----------
Korba, A., Bonet, C., Caucheteux, P. (2026). A unifying view of variational generative
Wasserstein flows. arXiv:2605.31369 (Section 6, Prop. 6.3).
Li, W., Montufar, G. (2018). Natural gradient via optimal transport. Information Geometry.
Arbel, M., Gretton, A., Li, W., Montufar, G. (2020). Kernelized Wasserstein natural gradient. ICLR.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from gwf_tutorial._validation import (
    FlowDivergedError,
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_samples,
    max_abs,
)
from gwf_tutorial.functionals import Objective
from gwf_tutorial.jko import ParametricJKO, PushforwardObjective
from gwf_tutorial.train import progress as _progress

__all__ = [
    "parameter_jacobian",
    "metric_tensor",
    "affine_metric_tensor",
    "objective_gradient",
    "natural_direction",
    "ProjectedFlowResult",
    "projected_flow",
    "affine_gaussian_path",
]

_METHODS = ("natural", "gradient", "jko")


def _check_map(map_net) -> list[nn.Parameter]:
    if not isinstance(map_net, nn.Module):
        raise TypeError(f"map_net must be a torch.nn.Module, got {type(map_net).__name__}")
    params = [p for p in map_net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("map_net has no trainable parameters")
    return params


def _check_z(z, map_net) -> Tensor:
    z = check_samples(z, "z")
    p0 = next(map_net.parameters())
    if z.dtype != p0.dtype:
        raise TypeError(f"z must have the map's dtype {p0.dtype}, got {z.dtype}")
    return z.to(p0.device)


def parameter_jacobian(map_net: nn.Module, z) -> Tensor:
    r"""Jacobian of the pushed samples in the map's parameters.

    .. math::

        J_\theta(z_i) = \frac{\partial T_\theta(z_i)}{\partial\theta} \in \mathbb R^{d\times p},

    with :math:`\theta` the trainable parameters flattened in the order of
    ``map_net.parameters()`` (the order of :func:`torch.nn.utils.parameters_to_vector`).

    Parameters
    ----------
    map_net : nn.Module
        :math:`T_\theta`, ``(n, d_0) -> (n, d)``.
    z : Tensor, shape (n, d_0)
        Source points :math:`z_i \sim \mu_0` (the map's dtype).

    Returns
    -------
    Tensor, shape (n, d, p)
        Detached.

    Used in: chapter 6 (the metric tensor of a map family).
    """
    params = _check_map(map_net)
    z = _check_z(z, map_net)
    names = [n for n, p in map_net.named_parameters() if p.requires_grad]
    values = {n: p.detach() for n, p in zip(names, params)}

    def push(pv: dict) -> Tensor:
        return functional_call(map_net, pv, (z,))

    jac = jacrev(push)(values)  # name -> (n, d, *shape)
    x_shape = push(values).shape
    if len(x_shape) != 2:
        raise ValueError(f"map_net must return shape (n, d), got {tuple(x_shape)}")
    return torch.cat([jac[n].reshape(*x_shape, -1) for n in names], dim=-1).detach()


def metric_tensor(map_net: nn.Module, z) -> Tensor:
    r"""The Wasserstein metric tensor of a map family, pulled back to parameters.

    .. math::

        G(\theta) = \frac1n\sum_{i=1}^n J_\theta(z_i)^\top J_\theta(z_i) \approx
        \mathbb E_{z\sim\mu_0}\big[J_\theta(z)^\top J_\theta(z)\big],

    symmetric positive semi-definite (definite when the particle velocities
    :math:`J_\theta\eta` of distinct :math:`\eta` differ on the sample). :math:`\eta^\top G\eta =
    \frac1n\sum_i |J_\theta(z_i)\eta|^2` is the kinetic energy of the motion
    :math:`\dot\theta = \eta`.

    Parameters
    ----------
    map_net : nn.Module
        :math:`T_\theta`.
    z : Tensor, shape (n, d_0)
        Quadrature points of :math:`\mu_0`.

    Returns
    -------
    Tensor, shape (p, p)

    Used in: chapter 6 (translations: :math:`G = I`; affine maps: :func:`affine_metric_tensor`).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), Prop. 6.3; Li, Montufar (2018).
    """
    J = parameter_jacobian(map_net, z)
    return torch.einsum("ndp,ndq->pq", J, J) / J.shape[0]


def affine_metric_tensor(mean, second_moment) -> Tensor:
    r"""Closed form of :math:`G` for affine maps :math:`T(z) = Az + b` (parameters ``A`` row-major,
    then ``b``, as in :class:`~gwf_tutorial.nets.AffineMap`).

    .. math::

        \frac{\partial T_k}{\partial A_{ij}} = \delta_{ki} z_j, \quad
        \frac{\partial T_k}{\partial b_i} = \delta_{ki}
        \quad\Longrightarrow\quad
        G = \begin{pmatrix} I_d \otimes M & I_d \otimes m \\ I_d \otimes m^\top & I_d \end{pmatrix},
        \qquad M = \mathbb E[zz^\top],\ m = \mathbb E z,

    independent of :math:`(A, b)` (the family is flat).

    Parameters
    ----------
    mean : Tensor, shape (d,)
        :math:`m = \mathbb E z`.
    second_moment : Tensor, shape (d, d)
        :math:`M = \mathbb E zz^\top = S + mm^\top` (SPD).

    Returns
    -------
    Tensor, shape (d^2 + d, d^2 + d)

    Used in: chapter 6 (the affine family on Gaussians), tests.
    """
    m, M = check_mean_cov(mean, second_moment, "mean", "second_moment")
    if m.ndim != 1:
        raise ValueError(f"mean must have shape (d,), got {tuple(m.shape)}")
    d = m.shape[0]
    eye = torch.eye(d, dtype=M.dtype, device=M.device)
    top = torch.cat([torch.kron(eye, M), torch.kron(eye, m[:, None])], dim=1)
    bottom = torch.cat([torch.kron(eye, m[None, :]), eye], dim=1)
    return torch.cat([top, bottom], dim=0)


def _objective_value(map_net, objective, z: Tensor, y: Tensor | None, guard=None) -> Tensor:
    x = map_net(z)
    if guard is not None:
        guard(x)
    if isinstance(objective, PushforwardObjective):
        return objective.pushforward_value(map_net, z, x)
    return objective.value(x, y)


def _check_objective(objective, data):
    if isinstance(objective, PushforwardObjective):
        return None if data is None else check_samples(data, "data")
    if isinstance(objective, Objective):
        if data is None and objective.needs_target_samples:
            raise ValueError(f"data (target samples) is required for objective {objective!r}")
        return None if data is None else check_samples(data, "data")
    raise TypeError(
        "objective must be a functionals.Objective or a jko.PushforwardObjective, got "
        f"{type(objective).__name__}"
    )


def objective_gradient(map_net: nn.Module, objective, z, y=None) -> tuple[Tensor, Tensor]:
    r"""The objective of the pushed measure and its gradient in the parameters.

    .. math::

        \widehat F(\theta) = F\big((T_\theta)_\#\hat\mu_0\big), \qquad
        \nabla_\theta \widehat F = \frac1n\sum_i J_\theta(z_i)^\top
        \nabla\frac{\delta F}{\delta\rho}(T_\theta(z_i)).

    Parameters
    ----------
    map_net : nn.Module
        :math:`T_\theta`.
    objective : functionals.Objective or jko.PushforwardObjective
        A sample objective (``value(x, y)``) or a push-forward objective (e.g.
        :class:`~gwf_tutorial.jko.GaussianPushforwardKL`).
    z : Tensor, shape (n, d_0)
    y : Tensor, shape (m, d), optional
        Target samples for sample objectives.

    Returns
    -------
    value : Tensor, shape ()
    grad : Tensor, shape (p,)
        Both detached; parameters flattened as in :func:`parameter_jacobian`.

    Used in: chapter 6.
    """
    if y is not None:
        y = check_samples(y, "y")
    params = _check_map(map_net)
    y = _check_objective(objective, y)
    z = _check_z(z, map_net)
    return _value_and_gradient(map_net, objective, params, z, y)


def _value_and_gradient(map_net, objective, params, z, y, guard=None) -> tuple[Tensor, Tensor]:
    """:func:`objective_gradient` on checked arguments; ``guard(x)`` sees the pushed particles first."""
    with torch.enable_grad():
        value = _objective_value(map_net, objective, z, y, guard)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ValueError("the objective must return one number")
        grads = torch.autograd.grad(value.reshape(()), params, allow_unused=True)
    flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)])
    return value.detach().reshape(()), flat.detach()


def natural_direction(map_net: nn.Module, z, grad, damping: float = 0.0) -> Tensor:
    r"""The Wasserstein natural gradient: the parameter velocity of the projected flow.

    .. math::

        \eta = \big(G(\theta) + \lambda I\big)^{-1}\nabla_\theta F, \qquad
        \dot\theta = -\eta,

    with :math:`\lambda` = ``damping``; for :math:`\lambda = 0` the minimum-norm solution
    (pseudo-inverse), which is the exact projection when :math:`G` is singular (redundant
    parameters, e.g. permutations of hidden units).

    Parameters
    ----------
    map_net : nn.Module
    z : Tensor, shape (n, d_0)
    grad : Tensor, shape (p,)
        :math:`\nabla_\theta F` (e.g. from :func:`objective_gradient`).
    damping : float, default 0
        :math:`\lambda \ge 0`.

    Returns
    -------
    Tensor, shape (p,)

    Used in: chapter 6.

    References
    ----------
    Li, Montufar (2018). Natural gradient via optimal transport.
    """
    damping = check_nonnegative(damping, "damping")
    G = metric_tensor(map_net, z)
    if not isinstance(grad, Tensor):
        raise TypeError(f"grad must be a torch.Tensor, got {type(grad).__name__}")
    if grad.shape != (G.shape[0],):
        raise ValueError(f"grad must have shape ({G.shape[0]},), got {tuple(grad.shape)}")
    grad = grad.to(G)
    if damping > 0:
        return torch.linalg.solve(G + damping * torch.eye(G.shape[0], dtype=G.dtype, device=G.device), grad)
    return torch.linalg.pinv(G, hermitian=True) @ grad


@dataclass
class ProjectedFlowResult:
    r"""A discretised parameter flow :math:`\theta(t_k)`.

    .. math::

        t_k = k h, \qquad \theta_k \approx \theta(t_k), \qquad F_k = \widehat F(\theta_k).

    Attributes
    ----------
    method : str
        ``"natural"``, ``"gradient"`` or ``"jko"``.
    step_size : float
        :math:`h` (the JKO step :math:`\tau` for ``"jko"``).
    times : Tensor, shape (K + 1,)
    params : Tensor, shape (K + 1, p)
        Flattened parameters (order of :func:`parameter_jacobian`).
    values : Tensor, shape (K + 1,)
        Objective at each :math:`\theta_k`.

    Used in: chapter 6 (comparing the three schemes).
    """

    method: str
    step_size: float
    times: Tensor
    params: Tensor
    values: Tensor


def projected_flow(
    map_net: nn.Module,
    objective,
    source,
    data=None,
    *,
    method: str = "natural",
    step_size: float = 0.01,
    n_steps: int = 100,
    damping: float = 0.0,
    n_iters: int = 200,
    lr: float = 1e-2,
    progress: bool = True,
) -> ProjectedFlowResult:
    r"""Integrate a parameter flow of :math:`F((T_\theta)_\#\mu_0)` by one of three schemes.

    .. math::

        \text{natural: } \theta_{k+1} = \theta_k - h\,(G(\theta_k) + \lambda I)^{-1}
        \nabla_\theta F(\theta_k), \qquad
        \text{gradient: } \theta_{k+1} = \theta_k - h\,\nabla_\theta F(\theta_k),

        \text{jko: } \theta_{k+1} = \operatorname*{arg\,min}_\theta
        \frac{1}{2h}\frac1n\sum_i |T_\theta(z_i) - T_{\theta_k}(z_i)|^2 + F(\theta)
        \quad (\text{Adam}, :class:`~gwf_tutorial.jko.ParametricJKO`).

    The first is explicit Euler on the projected Wasserstein flow, the second on the Euclidean
    gradient flow in parameters (a different flow unless :math:`G = I`), the third the implicit
    (parametric JKO) step, which tends to the projected flow as :math:`h \to 0`.

    Parameters
    ----------
    map_net : nn.Module
        :math:`T_\theta`, updated in place (the final parameters are :math:`\theta_K`).
    objective : functionals.Objective or jko.PushforwardObjective
    source : Tensor, shape (n, d_0)
        Fixed quadrature points :math:`z_i` of :math:`\mu_0` (used whole at every step).
    data : Tensor, shape (m, d), optional
        Target samples for sample objectives (used whole).
    method : {"natural", "gradient", "jko"}, default "natural"
    step_size : float, default 0.01
        :math:`h > 0` (the JKO step for ``"jko"``).
    n_steps : int, default 100
        :math:`K`.
    damping : float, default 0
        :math:`\lambda` of :func:`natural_direction`.
    n_iters : int, default 200
        Adam iterations per JKO step (``"jko"`` only; cosine-annealed learning rate).
    lr : float, default 1e-2
        Adam learning rate of the JKO steps (``"jko"`` only).
    progress : bool, default True
        Show a progress bar over the K steps.

    Returns
    -------
    ProjectedFlowResult

    Raises
    ------
    FlowDivergedError
        (a ``ValueError``) when the pushed particles become non-finite or overflow; the message names the
        step and ``step_size``.

    Used in: chapter 6 (translation, affine and small-MLP families: natural gradient vs gradient
    descent vs small-step parametric JKO, against the exact Gaussian flow).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), Prop. 6.3.
    """
    params = _check_map(map_net)
    data = _check_objective(objective, data)
    z = _check_z(source, map_net)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    h = check_positive(step_size, "step_size")
    n_steps = check_int(n_steps, "n_steps")
    damping = check_nonnegative(damping, "damping")
    if data is not None:
        data = data.to(device=z.device, dtype=z.dtype)
    chain = None
    if method == "jko":
        chain = ParametricJKO(
            map_net,
            objective,
            h,
            z,
            data,
            n_iters=check_int(n_iters, "n_iters"),
            batch_size=z.shape[0],
            lr=check_positive(lr, "lr"),
            betas=(0.9, 0.999),
            lr_schedule="cosine",
            reset_optimizer=True,
            initial_map="copy",
            seed=0,
            progress=False,
        )
    thetas = [parameters_to_vector(params).detach().clone()]
    values = []
    for k in _progress(range(n_steps), desc=f"projected flow ({method})", disable=not progress):
        if k == 0:
            value, g = _value_and_gradient(map_net, objective, params, z, data)
        else:
            value, g = _after_step(k, method, h, lambda guard: _value_and_gradient(
                map_net, objective, params, z, data, guard))  # fmt: skip
        values.append(value)
        if method == "jko":
            chain.step()
        else:
            eta = natural_direction(map_net, z, g, damping) if method == "natural" else g
            with torch.no_grad():
                vector_to_parameters(parameters_to_vector(params) - h * eta, params)
        thetas.append(parameters_to_vector(params).detach().clone())
    with torch.no_grad():
        value = _after_step(n_steps, method, h, lambda guard: _objective_value(
            map_net, objective, z, data, guard))  # fmt: skip
        values.append(value.detach().reshape(()))
    times = h * torch.arange(n_steps + 1, dtype=thetas[0].dtype)
    return ProjectedFlowResult(
        method=method, step_size=h, times=times, params=torch.stack(thetas), values=torch.stack(values)
    )


def _after_step(k: int, method: str, h: float, evaluate):
    """``evaluate(guard)`` on the iterate after ``k`` steps, as one divergence error naming ``step_size``.

    ``guard`` sees the pushed particles first and refuses non-finite or overflowing ones
    (:func:`~gwf_tutorial._validation.max_abs`; one host synchronisation per step). The samples and the
    map were checked at entry, so an error of the objective now (e.g. a singular affine map under a
    Gaussian KL) means that the iterates left its domain: it is raised as the same divergence error.
    """
    tail = f"step_size={h:g} is too large, try a smaller step_size"

    def guard(x: Tensor) -> None:
        m = float(x.detach().abs().amax())
        if not m <= max_abs(x.dtype):  # NaN fails too
            raise FlowDivergedError(f"the {method} flow diverged: after step {k} the pushed particles reach "
                                    f"{m:.3g}; {tail}")  # fmt: skip

    try:
        return evaluate(guard)
    except FlowDivergedError:
        raise
    except (ValueError, torch.linalg.LinAlgError) as err:
        raise FlowDivergedError(
            f"the {method} flow diverged: after step {k} the objective fails on the pushed particles "
            f"({err}); {tail}"
        ) from err


def affine_gaussian_path(params, mean, cov) -> tuple[Tensor, Tensor]:
    r"""The Gaussians pushed by affine maps along a parameter path (e.g. :attr:`ProjectedFlowResult.params`).

    .. math::

        \theta_k = (\operatorname{vec}(A_k), b_k) \ \longmapsto\
        (T_{\theta_k})_\#\mathcal N(m_0, S_0) = \mathcal N\big(A_k m_0 + b_k,\ A_k S_0 A_k^\top\big),

    with the parameters flattened as in :class:`~gwf_tutorial.nets.AffineMap` and
    :func:`parameter_jacobian` (``A`` row-major, then ``b``).

    Parameters
    ----------
    params : Tensor, shape (K, d^2 + d) or (d^2 + d,)
        Flattened affine parameters.
    mean : Tensor, shape (d,)
        :math:`m_0`, the mean of the source :math:`\mu_0`.
    cov : Tensor, shape (d, d)
        :math:`S_0`, its covariance (SPD).

    Returns
    -------
    means : Tensor, shape (K, d) (or (d,))
    covs : Tensor, shape (K, d, d) (or (d, d))

    Used in: chapter 6 (the projected flows on the affine family against the exact Gaussian flow).
    """
    m0, S0 = check_mean_cov(mean, cov, "mean", "cov")
    if m0.ndim != 1:
        raise ValueError(f"mean must have shape (d,), got {tuple(m0.shape)}")
    d = m0.shape[0]
    if not isinstance(params, Tensor):
        raise TypeError(f"params must be a torch.Tensor, got {type(params).__name__}")
    if params.ndim not in (1, 2) or params.shape[-1] != d * d + d:
        raise ValueError(
            f"params must have shape (K, {d * d + d}) or ({d * d + d},) for affine maps of R^{d}, got "
            f"{tuple(params.shape)}"
        )
    if not bool(torch.isfinite(params).all()):
        raise ValueError("params contains NaN or infinite values")
    p = params.to(m0)
    A = p[..., : d * d].reshape(*p.shape[:-1], d, d)
    b = p[..., d * d :]
    means = (A @ m0.unsqueeze(-1)).squeeze(-1) + b
    covs = A @ S0 @ A.mT
    return means, 0.5 * (covs + covs.mT)
