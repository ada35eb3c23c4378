r"""Projected (parametric) Wasserstein gradient flows: the flow seen through a family of maps. A generator
:math:`T_\theta` pushes :math:`\mu_0` to :math:`\rho_\theta = (T_\theta)_\#\mu_0`, with parameter Jacobian
:math:`J_\theta(z) = \partial_\theta T_\theta(z) \in \mathbb R^{d\times p}`. The map-space metric pulled back
to parameters and the projected flow of :math:`F` are

.. math::

    G(\theta) = \mathbb E_{z\sim\mu_0}\big[J_\theta(z)^\top J_\theta(z)\big], \qquad
    \dot\theta = \operatorname*{arg\,min}_{\eta}\ \mathbb E\,\Big|J_\theta\eta
    + \nabla\frac{\delta F}{\delta\rho}(T_\theta)\Big|^2 = -G(\theta)^{-1}\nabla_\theta F(\rho_\theta),

the natural gradient for :math:`G`. :math:`\eta^\top G\eta` is the mean squared speed of the samples; it
bounds the Wasserstein metric pulled back to parameters, :math:`\eta^\top G_W\eta`, from above, with equality
only when :math:`J_\theta(z)\eta` is a gradient field of :math:`x = T_\theta(z)`. So the projected flow is
not, in general, the Wasserstein natural gradient :math:`-G_W^{-1}\nabla_\theta F` (Li and Montufar; Arbel et
al.); both move the law alike when the family produces the flow's velocity exactly. A parametric JKO step of
small :math:`\tau` discretises the projected flow implicitly (GWF Prop. 6.3); plain gradient descent ignores
:math:`G`. Parameters are flattened in the order of ``map_net.parameters()``; ``z``/``source``: latent points
(n, d_0) in the map's dtype; ``objective``: a ``functionals.Objective`` (``value(x, y)``, with target samples
``y``/``data``) or a ``jko.PushforwardObjective``. Results are detached.

Used in: chapter 6 (parametric Wasserstein flows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from gwf_tutorial._validation import (
    FlowDivergedError,
    check_finite,
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

__all__ = ["parameter_jacobian", "metric_tensor", "affine_metric_tensor", "objective_gradient",
           "natural_direction", "ProjectedFlowResult", "projected_flow", "affine_gaussian_path"]  # fmt: skip

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


def _check_mean(mean, cov, name_cov: str) -> tuple[Tensor, Tensor]:
    m, S = check_mean_cov(mean, cov, "mean", name_cov)
    if m.ndim != 1:
        raise ValueError(f"mean must have shape (d,), got {tuple(m.shape)}")
    return m, S


def parameter_jacobian(map_net: nn.Module, z) -> Tensor:
    r"""Jacobian of the pushed samples in the map's parameters, :math:`J_\theta(z_i)`, shape (n, d, p).

    Used in: ``projected.metric_tensor``.
    """
    params, z = _check_map(map_net), _check_z(z, map_net)
    names = [n for n, p in map_net.named_parameters() if p.requires_grad]
    values = {n: p.detach() for n, p in zip(names, params)}
    jac = jacrev(lambda pv: functional_call(map_net, pv, (z,)))(values)  # name -> (n, d, *shape)
    x_shape = functional_call(map_net, values, (z,)).shape
    if len(x_shape) != 2:
        raise ValueError(f"map_net must return shape (n, d), got {tuple(x_shape)}")
    return torch.cat([jac[n].reshape(*x_shape, -1) for n in names], dim=-1).detach()


def metric_tensor(map_net: nn.Module, z) -> Tensor:
    r"""The metric tensor of the module docstring on the samples ``z``, shape (p, p), :math:`G(\theta) =
    \frac1n \sum_i J_\theta(z_i)^\top J_\theta(z_i)`; :math:`G = I` for translations,
    :func:`affine_metric_tensor` for affine maps.

    Used in: chapter 6.
    """
    J = parameter_jacobian(map_net, z)
    return torch.einsum("ndp,ndq->pq", J, J) / J.shape[0]


def affine_metric_tensor(mean, second_moment) -> Tensor:
    r"""Closed form of :math:`G` for affine maps :math:`T(z) = Az + b` (``A`` row-major, then ``b``),
    :math:`G = \begin{pmatrix} I_d \otimes M & I_d \otimes m \\ I_d \otimes m^\top & I_d \end{pmatrix}`,
    :math:`M = \mathbb E[zz^\top]` (``second_moment``), :math:`m = \mathbb E z` (``mean``), independent of
    :math:`(A, b)`; shape (d^2 + d, d^2 + d).

    Used in: chapter 6 (the affine family on Gaussians), tests.
    """
    m, M = _check_mean(mean, second_moment, "second_moment")
    d = m.shape[0]
    eye = torch.eye(d, dtype=M.dtype, device=M.device)
    top = torch.cat([torch.kron(eye, M), torch.kron(eye, m[:, None])], dim=1)
    return torch.cat([top, torch.cat([torch.kron(eye, m[None, :]), eye], dim=1)], dim=0)


def _objective_value(map_net, objective, z: Tensor, y: Tensor | None, guard=None) -> Tensor:
    x = map_net(z)
    if guard is not None:
        guard(x)
    if isinstance(objective, PushforwardObjective):
        return objective.pushforward_value(map_net, z, x)
    return objective.value(x, y)


def _check_objective(objective, data, name: str = "data"):
    if isinstance(objective, Objective) and data is None and objective.needs_target_samples:
        raise ValueError(f"data (target samples) is required for objective {objective!r}")
    if not isinstance(objective, (Objective, PushforwardObjective)):
        raise TypeError("objective must be a functionals.Objective or a jko.PushforwardObjective, got "
                        f"{type(objective).__name__}")  # fmt: skip
    return None if data is None else check_samples(data, name)


def objective_gradient(map_net: nn.Module, objective, z, y=None) -> tuple[Tensor, Tensor]:
    r"""The objective of the pushed measure :math:`\widehat F(\theta) = F((T_\theta)_\#\hat\mu_0)`, shape (),
    and its gradient :math:`\frac1n\sum_i J_\theta(z_i)^\top \nabla\frac{\delta F}{\delta\rho}(T_\theta(z_i))`
    in the parameters, shape (p,).

    Used in: ``projected.projected_flow`` (its first step).
    """
    params, y = _check_map(map_net), _check_objective(objective, y, "y")
    return _value_and_gradient(map_net, objective, params, _check_z(z, map_net), y)


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
    r"""The natural gradient :math:`\eta = (G(\theta) + \lambda I)^{-1}\nabla_\theta F`, shape (p,), of
    ``grad`` (p,) for the map-space metric :math:`G` (the projected flow moves :math:`\dot\theta = -\eta`);
    :math:`\lambda` = ``damping`` :math:`\ge 0`, the minimum-norm (pseudo-inverse) solution for 0.

    Used in: ``projected.projected_flow``.
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
    r"""A discretised parameter flow: ``times`` :math:`t_k = kh` (K + 1,), ``params`` :math:`\theta_k`
    (K + 1, p), ``values`` :math:`\widehat F(\theta_k)` (K + 1,), the ``method`` and ``step_size`` h.

    Used in: ``projected.projected_flow``.
    """

    method: str
    step_size: float
    times: Tensor
    params: Tensor
    values: Tensor


def projected_flow(map_net: nn.Module, objective, source, data=None, *, method: str = "natural",
                   step_size: float = 0.01, n_steps: int = 100, damping: float = 0.0, n_iters: int = 200,
                   lr: float = 1e-2, progress: bool = True) -> ProjectedFlowResult:
    r"""Integrate a parameter flow of :math:`F((T_\theta)_\#\mu_0)` by one of three schemes, ``"natural"``
    :math:`\theta_{k+1} = \theta_k - \eta\,(G + \lambda I)^{-1}\nabla_\theta F`, ``"gradient"``
    :math:`\theta_{k+1} = \theta_k - \eta\,\nabla_\theta F` or ``"jko"`` :math:`\theta_{k+1} =
    \operatorname*{arg\,min}_\theta \frac{1}{2\eta}\frac1n\sum_i |T_\theta(z_i) - T_{\theta_k}(z_i)|^2 +
    F(\theta)`. ``map_net`` is updated in place; ``source`` and ``data`` are used whole at every step;
    ``damping`` is :math:`\lambda`; ``n_iters`` and ``lr``: the Adam iterations (cosine schedule) and rate of
    each JKO step (``"jko"`` only, :class:`~gwf_tutorial.jko.ParametricJKO`). Raises
    :class:`~gwf_tutorial.flows.FlowDivergedError` (a ``ValueError`` naming the step and ``step_size``) when
    the pushed particles become non-finite or overflow.

    Used in: chapter 6 (translation, affine and small-MLP families against the exact Gaussian flow).
    """
    params, data = _check_map(map_net), _check_objective(objective, data)
    z = _check_z(source, map_net)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    h, n_steps = check_positive(step_size, "step_size"), check_int(n_steps, "n_steps")
    damping = check_nonnegative(damping, "damping")
    data = None if data is None else data.to(device=z.device, dtype=z.dtype)
    if method == "jko":
        chain = ParametricJKO(map_net, objective, h, z, data, n_iters=check_int(n_iters, "n_iters"),
            batch_size=z.shape[0], lr=check_positive(lr, "lr"), betas=(0.9, 0.999), lr_schedule="cosine",
            reset_optimizer=True, initial_map="copy", seed=0, progress=False)  # fmt: skip

    def step(g: Tensor) -> None:
        if method == "jko":
            chain.step()
            return
        eta = natural_direction(map_net, z, g, damping) if method == "natural" else g
        with torch.no_grad():
            vector_to_parameters(parameters_to_vector(params) - h * eta, params)

    thetas, values = [parameters_to_vector(params).detach().clone()], []
    for k in _progress(range(n_steps), desc=f"projected flow ({method})", disable=not progress):
        if k == 0:  # checked at entry; later iterates are guarded
            value, g = objective_gradient(map_net, objective, z, data)
        else:
            value, g = _after_step(k, method, h,
                                   lambda gd: _value_and_gradient(map_net, objective, params, z, data, gd))
        values.append(value)
        step(g)
        thetas.append(parameters_to_vector(params).detach().clone())
    with torch.no_grad():
        last = _after_step(n_steps, method, h, lambda g: _objective_value(map_net, objective, z, data, g))
        values.append(last.detach().reshape(()))
    times = h * torch.arange(n_steps + 1, dtype=thetas[0].dtype)
    return ProjectedFlowResult(method, h, times, torch.stack(thetas), torch.stack(values))


def _after_step(k: int, method: str, h: float, evaluate):
    """``evaluate(guard)`` on the iterate after ``k`` steps, ``guard`` refusing non-finite or overflowing
    pushed particles; the inputs were checked at entry, so every failure now is one divergence error."""
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
        raise FlowDivergedError(f"the {method} flow diverged: after step {k} the objective fails on the "
                                f"pushed particles ({err}); {tail}") from err  # fmt: skip


def affine_gaussian_path(params, mean, cov) -> tuple[Tensor, Tensor]:
    r"""The Gaussians :math:`(T_{\theta_k})_\#\mathcal N(\bar z, S_0) = \mathcal N(A_k \bar z + b_k,\ A_k S_0
    A_k^\top)` pushed by affine maps :math:`\theta_k = (\operatorname{vec}(A_k), b_k)` along a parameter path
    ``params`` (e.g. ``ProjectedFlowResult.params``), shape (K, d^2 + d) or (d^2 + d,); ``mean``, ``cov``:
    :math:`\bar z` (d,), :math:`S_0` (d, d). Returns the means (K, d) and covariances (K, d, d) (without K for
    one ``params``).

    Used in: chapter 6 (the projected flows on the affine family against the exact Gaussian flow).
    """
    m0, S0 = _check_mean(mean, cov, "cov")
    d = m0.shape[0]
    if not isinstance(params, Tensor):
        raise TypeError(f"params must be a torch.Tensor, got {type(params).__name__}")
    if params.ndim not in (1, 2) or params.shape[-1] != d * d + d:
        raise ValueError(f"params must have shape (K, {d * d + d}) or ({d * d + d},) for affine maps of "
                         f"R^{d}, got {tuple(params.shape)}")  # fmt: skip
    p = check_finite(params, "params").to(m0)
    A = p[..., : d * d].reshape(*p.shape[:-1], d, d)
    means, covs = (A @ m0.unsqueeze(-1)).squeeze(-1) + p[..., d * d :], A @ S0 @ A.mT
    return means, 0.5 * (covs + covs.mT)
