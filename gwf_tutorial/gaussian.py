r"""Closed forms for Gaussian measures: the ground truth of the chapters and of the tests. Bures--Wasserstein
distance and Monge map, KL, Fisher information, the Wasserstein gradient flow of
:math:`\mathrm{KL}(\cdot\,\|\,\nu)` (an OU process) with its exact JKO and explicit Euler steps,
Gaussian-kernel MMD and entropic OT. A Gaussian is a mean ``(..., d)`` and an SPD *covariance* ``(..., d,
d)``; batch dimensions broadcast, results have the batch shape ``(...)``. Two Gaussians are ``m1, S1``
:math:`= \bar x, S_1` and ``m2, S2`` :math:`= \bar y, S_2`; a flow runs from ``mean, cov`` (``mean0, cov0``)
towards ``target_mean, target_cov``, :math:`\nu = N(\bar y, \Sigma)`, :math:`\Lambda = \Sigma^{-1}`. The cost
is :math:`|x - y|^2`, the JKO proximal term :math:`W_2^2 / (2\tau)`. float64 in gives float64 out (mixed
dtypes promote); everything is differentiable. Maps are :class:`~gwf_tutorial.nets.AffineMap`.

Used in: chapters 1, 2, 4, 5, 6, 7 and 9.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gwf_tutorial._validation import (
    FlowDivergedError,
    as_tensor,
    check_finite,
    check_int,
    check_mean_cov,
    check_nonnegative,
    check_positive,
    check_same_dim,
)
from gwf_tutorial.nets import AffineMap

__all__ = ["w2_squared", "monge_map", "kl", "relative_fisher_information", "jko_objective_kl", "ou_flow",
           "jko_step_kl", "jko_map_kl", "jko_iterates_kl", "euler_step_kl", "euler_iterates_kl", "mmd2",
           "entropic_ot", "sinkhorn_divergence"]  # fmt: skip


def _sym(S: Tensor) -> Tensor:
    return 0.5 * (S + S.mT)


def _eye_like(S: Tensor) -> Tensor:
    return torch.eye(S.shape[-1], dtype=S.dtype, device=S.device).expand(S.shape)


def _mv(A: Tensor, v: Tensor) -> Tensor:
    return (A @ v.unsqueeze(-1)).squeeze(-1)


def _batch_shape(m1: Tensor, S1: Tensor, m2: Tensor, S2: Tensor) -> torch.Size:
    return torch.broadcast_shapes(m1.shape[:-1], S1.shape[:-2], m2.shape[:-1], S2.shape[:-2])


def _trace(S: Tensor) -> Tensor:
    return S.diagonal(dim1=-2, dim2=-1).sum(-1)


class _SqrtmSPD(torch.autograd.Function):
    r"""Principal square root :math:`S^{1/2} = U \operatorname{diag}(\sqrt{\lambda}) U^\top` of symmetric PSD
    ``(..., d, d)`` by ``eigh``; its backward solves :math:`Y\,dY + dY\,Y = dS`, ``dY_ij = dS_ij / (sqrt(l_i)
    + sqrt(l_j))`` in the eigenbasis: finite for repeated eigenvalues (``S = I``), unlike autograd."""

    @staticmethod
    def forward(ctx, S: Tensor) -> Tensor:
        lam, U = torch.linalg.eigh(_sym(S))
        r = lam.clamp_min(0.0).sqrt()
        ctx.save_for_backward(U, r)
        return _sym((U * r.unsqueeze(-2)) @ U.mT)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        U, r = ctx.saved_tensors
        return U @ ((U.mT @ _sym(grad) @ U) * (r.unsqueeze(-1) + r.unsqueeze(-2)).reciprocal()) @ U.mT


_sqrtm = _SqrtmSPD.apply


def _spd_inv(S: Tensor) -> Tensor:
    return _sym(torch.cholesky_inverse(torch.linalg.cholesky(S)))


def _logdet_spd(S: Tensor) -> Tensor:
    return 2.0 * torch.log(torch.linalg.cholesky(S).diagonal(dim1=-2, dim2=-1)).sum(-1)


def _check_pair(m1, S1, m2, S2, names: str = "m1 S1 m2 S2") -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validate two Gaussians of one dimension and device, promoted to one dtype (covariances symmetrised)."""
    n = names.split()
    m1, S1 = check_mean_cov(m1, S1, n[0], n[1])
    m2, S2 = check_mean_cov(m2, S2, n[2], n[3])
    check_same_dim(m1, m2, n[0], n[2], same_dtype=False)
    dtype = torch.promote_types(m1.dtype, m2.dtype)
    return m1.to(dtype), _sym(S1).to(dtype), m2.to(dtype), _sym(S2).to(dtype)


_FLOW0, _FLOW = "mean0 cov0 target_mean target_cov", "mean cov target_mean target_cov"


def _bures_cross(S1: Tensor, S2: Tensor) -> tuple[Tensor, Tensor]:
    """``S1^{1/2}`` and ``C = (S1^{1/2} S2 S1^{1/2})^{1/2}``."""
    R1 = _sqrtm(S1)
    return R1, _sqrtm(_sym(R1 @ S2 @ R1))


def w2_squared(m1, S1, m2, S2) -> Tensor:
    r"""Squared Bures--Wasserstein distance between two Gaussians (Givens & Shortt 1984), :math:`W_2^2 =
    |\bar x - \bar y|^2 + \operatorname{tr}\big(S_1 + S_2 - 2(S_1^{1/2} S_2 S_1^{1/2})^{1/2}\big)`.

    Used in: chapters 1, 2, 4, 6, 7 and 9.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    _, C = _bures_cross(S1, S2)
    return ((m1 - m2) ** 2).sum(-1) + (_trace(S1) + _trace(S2) - 2.0 * _trace(C)).clamp_min(0.0)


def monge_map(m1, S1, m2, S2) -> AffineMap:
    r"""Optimal transport map :math:`T(x) = \bar y + A (x - \bar x)` from :math:`N(\bar x, S_1)` to
    :math:`N(\bar y, S_2)` (Knott & Smith 1984), with the SPD
    :math:`A = S_1^{-1/2}\big(S_1^{1/2} S_2 S_1^{1/2}\big)^{1/2} S_1^{-1/2}` (:math:`A S_1 A = S_2`).

    Used in: chapters 1 and 2.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    R1, C = _bures_cross(S1, S2)
    R1i = _spd_inv(R1)
    A = _sym(R1i @ C @ R1i)
    m1, m2 = torch.broadcast_tensors(m1, m2)
    return AffineMap(A=A, b=m2 - _mv(A, m1))


def kl(m1, S1, m2, S2) -> Tensor:
    r"""KL divergence (nats) between two Gaussians, :math:`\mathrm{KL}\big(N(\bar x, S_1) \,\|\, N(\bar y,
    S_2)\big) = \tfrac12\big[\operatorname{tr}(S_2^{-1} S_1) + (\bar y - \bar x)^\top S_2^{-1} (\bar y - \bar
    x) - d + \log\det S_2 - \log\det S_1\big]`.

    Used in: chapters 2, 4, 6 and 7.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    d, batch = m1.shape[-1], _batch_shape(m1, S1, m2, S2)
    L2, L1 = torch.linalg.cholesky(S2).expand(*batch, d, d), torch.linalg.cholesky(S1).expand(*batch, d, d)
    diff = (m2 - m1).expand(*batch, d).unsqueeze(-1)
    z = torch.linalg.solve_triangular(L2, diff, upper=False).squeeze(-1)
    W = torch.linalg.solve_triangular(L2, L1, upper=False)
    return 0.5 * ((W**2).sum((-2, -1)) + (z**2).sum(-1) - d + _logdet_spd(S2) - _logdet_spd(S1))


def relative_fisher_information(m1, S1, m2, S2) -> Tensor:
    r"""Relative Fisher information :math:`I(\rho\,|\,\nu) = \mathbb E_\rho|\nabla\log\rho - \nabla\log\nu|^2
    = \operatorname{tr}(D S_1 D) + |S_2^{-1}(\bar x - \bar y)|^2`, :math:`D = S_1^{-1} - S_2^{-1}`, of
    :math:`\rho = N(\bar x, S_1)` w.r.t. :math:`\nu = N(\bar y, S_2)`: the dissipation
    :math:`-\tfrac{d}{dt}\mathrm{KL}(\rho_t\|\nu)` along the KL flow.

    Used in: chapter 2.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    P2 = _spd_inv(S2)
    D = _spd_inv(S1) - P2
    return _trace(D @ S1 @ D) + (_mv(P2, m1 - m2) ** 2).sum(-1)


def jko_objective_kl(mean, cov, prev_mean, prev_cov, target_mean, target_cov, tau) -> Tensor:
    r"""The JKO objective :math:`J(\rho) = \frac{W_2^2(\rho, \rho_k)}{2\tau} + \mathrm{KL}(\rho\,\|\,\nu)` at
    :math:`\rho = N(\text{mean}, \text{cov})`, :math:`\rho_k = N(\text{prev\_mean}, \text{prev\_cov})`,
    minimised by :func:`jko_step_kl`.

    Used in: chapter 2.
    """
    tau = check_positive(tau, "tau")
    return w2_squared(mean, cov, prev_mean, prev_cov) / (2 * tau) + kl(mean, cov, target_mean, target_cov)


def ou_flow(mean0, cov0, target_mean, target_cov, t) -> tuple[Tensor, Tensor]:
    r"""Exact Wasserstein gradient flow of :math:`\mathrm{KL}(\cdot\,\|\,N(\bar y, \Sigma))` (OU) at time
    ``t``: ``(mean_t, cov_t)`` = :math:`\big(\bar y + e^{-t\Lambda}(\bar x_0 - \bar y),\ \Sigma +
    e^{-t\Lambda}(S_0 - \Sigma) e^{-t\Lambda}\big)`, with a leading axis ``T`` for 1-D times ``t``.

    Used in: chapters 2 and 6.
    """
    m0, S0, m, Sigma = _check_pair(mean0, cov0, target_mean, target_cov, _FLOW0)
    if isinstance(t, Tensor) and t.ndim == 1:
        times = check_finite(as_tensor(t, "t"), "t").to(m0.dtype)
        if bool((times < 0).any()):
            raise ValueError(f"t must be >= 0, got minimum {times.min().item()}")
        batch = _batch_shape(m0, S0, m, Sigma)
        times = times.reshape(-1, *([1] * (len(batch) + 2)))
    else:
        times = torch.tensor(check_nonnegative(t, "t"), dtype=m0.dtype, device=m0.device)
    E = torch.linalg.matrix_exp(-times * _spd_inv(Sigma))
    return m + _mv(E, m0 - m), _sym(Sigma + E @ (S0 - Sigma) @ E.mT)


def _jko_map(mean: Tensor, cov: Tensor, m: Tensor, Sigma: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """``(M, b)`` of the JKO map ``x -> M x + b``."""
    A = _spd_inv(Sigma)
    eye = _eye_like(A)
    B = eye + tau * A
    mean_next = torch.linalg.solve(B, (mean + tau * _mv(A, m)).unsqueeze(-1)).squeeze(-1)
    Bh = _sqrtm(B)
    Bih = _spd_inv(Bh)
    # Bh S^{-1} Bh = Y^T Y with Y = L^{-1} Bh, S = L L^T (symmetric PSD by construction)
    L, Bh = torch.broadcast_tensors(torch.linalg.cholesky(cov), Bh)
    Y = torch.linalg.solve_triangular(L, Bh, upper=False)
    M = _sym(Bih @ (0.5 * eye + _sqrtm(0.25 * eye + tau * (Y.mT @ Y))) @ Bih)
    return M, mean_next - _mv(M, mean)


def _jko_step(mean: Tensor, cov: Tensor, m: Tensor, Sigma: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    M, b = _jko_map(mean, cov, m, Sigma, tau)
    return _mv(M, mean) + b, _sym(M @ cov @ M)


def jko_map_kl(mean, cov, target_mean, target_cov, tau) -> AffineMap:
    r"""Optimal map of the exact JKO step of :math:`\mathrm{KL}(\cdot\|N(\bar y, \Sigma))` from
    :math:`N(\bar x, S)`, :math:`T(x) = \bar x_+ + M (x - \bar x)`, :math:`B = I + \tau \Lambda`,
    :math:`\bar x_+ = B^{-1}(\bar x + \tau \Lambda \bar y)`,
    :math:`M = B^{-1/2}[\tfrac12 I + (\tfrac14 I + \tau B^{1/2} S^{-1} B^{1/2})^{1/2}] B^{-1/2}`, the SPD
    solution of :math:`M B M - M = \tau S^{-1}` (the step's optimality condition).

    Used in: chapter 2.
    """
    mean, cov, m, Sigma = _check_pair(mean, cov, target_mean, target_cov, _FLOW)
    M, b = _jko_map(mean, cov, m, Sigma, check_positive(tau, "tau"))
    return AffineMap(A=M, b=b)


def jko_step_kl(mean, cov, target_mean, target_cov, tau) -> tuple[Tensor, Tensor]:
    r"""Exact JKO step of :math:`\mathrm{KL}(\cdot\,\|\,N(\bar y, \Sigma))` from :math:`N(\bar x, S)`:
    ``(mean_next, cov_next)`` :math:`= (\bar x_+, M S M)`, the minimiser of :func:`jko_objective_kl`
    (:math:`\bar x_+, M` of :func:`jko_map_kl`); stable for every :math:`\tau`, :math:`O(\tau)` from
    :func:`ou_flow`.

    Used in: chapters 2 and 7.
    """
    mean, cov, m, Sigma = _check_pair(mean, cov, target_mean, target_cov, _FLOW)
    return _jko_step(mean, cov, m, Sigma, check_positive(tau, "tau"))


def _iterate(step, mean0, cov0, target_mean, target_cov, h: float, n_steps) -> tuple[Tensor, Tensor]:
    """``n_steps`` of ``step(mean, cov, m, Sigma, h)``, stacked with the initial state first."""
    mean, cov, m, Sigma = _check_pair(mean0, cov0, target_mean, target_cov, _FLOW0)
    n_steps = check_int(n_steps, "n_steps")
    batch, d = _batch_shape(mean, cov, m, Sigma), mean.shape[-1]
    means, covs = [mean.expand(*batch, d)], [cov.expand(*batch, d, d)]
    for _ in range(n_steps):
        mean, cov = step(means[-1], covs[-1], m, Sigma, h)
        means.append(mean)
        covs.append(cov)
    return torch.stack(means), torch.stack(covs)


def jko_iterates_kl(mean0, cov0, target_mean, target_cov, tau, n_steps) -> tuple[Tensor, Tensor]:
    """``n_steps`` exact JKO steps (:func:`jko_step_kl`): ``means (K + 1, ..., d)``, ``covs (K + 1, ..., d,
    d)``, the initial state first.

    Used in: chapters 2, 4, 6 and 7.
    """
    return _iterate(_jko_step, mean0, cov0, target_mean, target_cov, check_positive(tau, "tau"), n_steps)


def _euler_step(mean, cov, m, Sigma, h):
    A = _spd_inv(Sigma)
    cov_inv = _sym(torch.linalg.inv_ex(cov)[0])  # no error on a degenerate (diverged) covariance
    M = _eye_like(cov_inv + A) + h * (cov_inv - A)
    return mean - h * _mv(A, mean - m), _sym(M @ cov @ M.mT)


def euler_step_kl(mean, cov, target_mean, target_cov, step_size) -> tuple[Tensor, Tensor]:
    r"""Explicit Euler particle step of the KL flow to :math:`N(\bar y, \Sigma)`, applied to :math:`N(\bar x,
    S)`: :math:`x \mapsto x + \eta(-\Lambda(x - \bar y) + S^{-1}(x - \bar x))`, so :math:`\bar x_+ = \bar x -
    \eta \Lambda(\bar x - \bar y)`, :math:`S_+ = M S M^\top`, :math:`M = I + \eta(S^{-1} - \Lambda)`, stable
    iff :math:`\eta < \lambda_{\min}(\Sigma)`; past it the iterates come as they are.

    Used in: chapter 2.
    """
    mean, cov, m, Sigma = _check_pair(mean, cov, target_mean, target_cov, _FLOW)
    return _euler_step(mean, cov, m, Sigma, check_positive(step_size, "step_size"))


def euler_iterates_kl(mean0, cov0, target_mean, target_cov, step_size, n_steps) -> tuple[Tensor, Tensor]:
    """``n_steps`` explicit Euler steps (:func:`euler_step_kl`): ``means (K + 1, ..., d)``, ``covs (K + 1,
    ..., d, d)``; raises :class:`~gwf_tutorial.flows.FlowDivergedError` naming the step size and the stability
    bound when an iterate stops being a Gaussian.

    Used in: chapter 2.
    """
    h = check_positive(step_size, "step_size")
    means, covs = _iterate(_euler_step, mean0, cov0, target_mean, target_cov, h, n_steps)
    # the first non-finite or non-PD iterate, in one synchronisation
    finite = torch.isfinite(means).flatten(1).all(1) & torch.isfinite(covs).flatten(1).all(1)
    pd = (torch.linalg.cholesky_ex(torch.nan_to_num(covs)).info == 0).reshape(len(covs), -1).all(1)
    bad = ~(finite & pd)
    if bool(bad.any()):
        k = int(bad.nonzero()[0, 0])
        what = "became non-finite" if not bool(finite[k]) else "lost a positive definite covariance"
        lam = float(torch.linalg.eigvalsh(as_tensor(target_cov, "target_cov")).min())
        raise FlowDivergedError(f"euler_iterates_kl diverged at step {k - 1} with step_size={h:g}: the "
                                f"iterates {what}; the explicit step is stable only for step_size below the "
                                f"smallest eigenvalue of target_cov ({lam:.3g})")  # fmt: skip
    return means, covs


def _gauss_kernel_mean(S: Tensor, delta: Tensor, s2: float) -> Tensor:  # K(S, delta) of mmd2
    d, batch = S.shape[-1], torch.broadcast_shapes(S.shape[:-2], delta.shape[:-1])
    L = torch.linalg.cholesky(s2 * _eye_like(S) + S)
    z = torch.linalg.solve_triangular(L.expand(*batch, d, d), delta.expand(*batch, d).unsqueeze(-1),
                                      upper=False).squeeze(-1)  # fmt: skip
    logdet = 2.0 * torch.log(L.diagonal(dim1=-2, dim2=-1)).sum(-1) - d * math.log(s2)
    return torch.exp(-0.5 * logdet - 0.5 * (z**2).sum(-1))


def mmd2(m1, S1, m2, S2, bandwidth) -> Tensor:
    r"""Population :math:`\mathrm{MMD}^2 = K(2S_1, 0) + K(2S_2, 0) - 2K(S_1 + S_2, \bar x - \bar y)` between
    two Gaussians (Gretton et al. 2012) for the kernel :math:`k(x, y) = e^{-|x - y|^2 / (2 s^2)}`,
    ``s = bandwidth``, with :math:`K(S, \delta) = \det(I + S/s^2)^{-1/2}
    \exp\big(-\tfrac12 \delta^\top (s^2 I + S)^{-1} \delta\big)`.

    Used in: chapter 5.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    s2 = check_positive(bandwidth, "bandwidth") ** 2
    k11 = _gauss_kernel_mean(2.0 * S1, torch.zeros_like(m1), s2)
    k22 = _gauss_kernel_mean(2.0 * S2, torch.zeros_like(m2), s2)
    return k11 + k22 - 2.0 * _gauss_kernel_mean(S1 + S2, m1 - m2, s2)


def _entropic_ot(ma: Tensor, Sa: Tensor, mb: Tensor, Sb: Tensor, eps: float) -> Tensor:
    d, s2 = ma.shape[-1], 0.5 * eps
    eye, Ra = _eye_like(Sa @ Sb), _sqrtm(Sa)
    D = _sqrtm(4.0 * _sym(Ra @ Sb @ Ra) + s2**2 * eye)
    cross = ((ma - mb) ** 2).sum(-1) + _trace(Sa) + _trace(Sb) - _trace(D)
    return cross + d * s2 * (1.0 - math.log(2.0 * s2)) + s2 * _logdet_spd(D + s2 * eye)


def entropic_ot(m1, S1, m2, S2, eps) -> Tensor:
    r"""Entropic OT between two Gaussians (Janati, Muzellec, Peyre & Cuturi 2020, Theorem 1),
    :math:`\mathrm{OT}_\varepsilon = \min_{\pi \in \Pi(\alpha, \beta)} \int |x - y|^2 \, d\pi + \varepsilon\,
    \mathrm{KL}(\pi \,\|\, \alpha \otimes \beta) = |\bar x - \bar y|^2 + \operatorname{tr} S_1 +
    \operatorname{tr} S_2 - \operatorname{tr} D + d\,\sigma^2 (1 - \log 2\sigma^2) + \sigma^2 \log\det(D +
    \sigma^2 I)`, :math:`\sigma^2 = \varepsilon / 2`, :math:`D = (4 S_1^{1/2} S_2 S_1^{1/2} + \sigma^4
    I)^{1/2}`; on samples, POT's ``ot.solve(M, a, b, reg=eps, reg_type="KL").value``.

    Used in: chapter 1.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    return _entropic_ot(m1, S1, m2, S2, check_positive(eps, "eps"))


def sinkhorn_divergence(m1, S1, m2, S2, eps) -> Tensor:
    r"""Debiased Sinkhorn divergence between two Gaussians (Feydy et al. 2019), with :func:`entropic_ot`:
    :math:`S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
    - \tfrac12\big(\mathrm{OT}_\varepsilon(\alpha, \alpha) + \mathrm{OT}_\varepsilon(\beta, \beta)\big)`.

    Used in: chapter 1.
    """
    m1, S1, m2, S2 = _check_pair(m1, S1, m2, S2)
    eps = check_positive(eps, "eps")
    self_terms = _entropic_ot(m1, S1, m1, S1, eps) + _entropic_ot(m2, S2, m2, S2, eps)
    return _entropic_ot(m1, S1, m2, S2, eps) - 0.5 * self_terms
