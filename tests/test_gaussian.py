"""Tests of gwf_tutorial.gaussian: each closed form against an independent computation
(ODE integration, numerical minimisation, POT on samples, Monte Carlo, torch.distributions)."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import scipy.linalg
import torch
from scipy.integrate import solve_ivp
from scipy.optimize import minimize
from scipy.stats import norm

from gwf_tutorial import gaussian as G
from gwf_tutorial import nets

F64 = torch.float64


def _t(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _rand_spd(d: int, g: torch.Generator, floor: float = 0.3) -> torch.Tensor:
    X = torch.randn(d, d, generator=g, dtype=F64)
    return X @ X.T / d + floor * torch.eye(d, dtype=F64)


def _rand_gaussian(d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(d, generator=g, dtype=F64), _rand_spd(d, g)


def _sample(m, S, n, g):
    z = torch.randn(n, m.shape[-1], generator=g, dtype=F64)
    return m + z @ torch.linalg.cholesky(S).T


# ------------------------------------------------------------------------------------------
# matrix square roots
# ------------------------------------------------------------------------------------------


def test_sqrtm_matches_scipy_and_squares_back():
    g = torch.Generator().manual_seed(0)
    S = torch.stack([_rand_spd(4, g) for _ in range(3)])  # batch (3, 4, 4)
    R = G._sqrtm(S)
    assert R.dtype == F64 and R.shape == (3, 4, 4)
    for k in range(3):
        ref = scipy.linalg.sqrtm(S[k].numpy()).real
        np.testing.assert_allclose(R[k].numpy(), ref, atol=1e-12)
    torch.testing.assert_close(R @ R, S, atol=1e-12, rtol=0)
    torch.testing.assert_close(R.mT, R, atol=0, rtol=0)


def test_sqrtm_gradient_matches_finite_differences_including_repeated_eigenvalues():
    g = torch.Generator().manual_seed(1)
    C = torch.randn(3, 3, generator=g, dtype=F64)

    def f(X):  # symmetric input built from a free matrix; at X = 0 all eigenvalues equal 1
        S = torch.eye(3, dtype=F64) + 0.5 * (X + X.T)
        return (G._sqrtm(S) * C).sum()

    for X0 in (torch.zeros(3, 3, dtype=F64), 0.3 * torch.randn(3, 3, generator=g, dtype=F64)):
        X = X0.clone().requires_grad_(True)
        assert torch.autograd.gradcheck(f, (X,), eps=1e-6, atol=1e-7)
        (grad,) = torch.autograd.grad(f(X), X)
        assert bool(torch.isfinite(grad).all())


# ------------------------------------------------------------------------------------------
# Bures-Wasserstein, Monge map, KL
# ------------------------------------------------------------------------------------------


def test_w2_squared_commuting_case_and_pot_closed_form():
    # diagonal covariances: W2^2 = |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    a, b = _t(1.0, 4.0, 0.25), _t(9.0, 1.0, 0.5)
    m1, m2 = _t(0.0, 1.0, -1.0), _t(2.0, 0.0, 0.5)
    expected = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    got = G.w2_squared(m1, torch.diag(a), m2, torch.diag(b))
    assert got.dtype == F64
    assert abs(got.item() - expected.item()) < 1e-12
    # general covariances: POT's own implementation returns W2 (not squared)
    g = torch.Generator().manual_seed(2)
    for d in (1, 2, 5):
        m1, S1 = _rand_gaussian(d, g)
        m2, S2 = _rand_gaussian(d, g)
        ref = ot.gaussian.bures_wasserstein_distance(m1.numpy(), m2.numpy(), S1.numpy(), S2.numpy())
        assert abs(G.w2_squared(m1, S1, m2, S2).item() - float(ref) ** 2) < 1e-9


def test_w2_squared_against_emd_on_samples_and_sorted_1d():
    g = torch.Generator().manual_seed(3)
    m1, S1 = _t(0.0, 0.5), _t([1.0, 0.4], [0.4, 0.5])
    m2, S2 = _t(1.0, -0.5), _t([0.3, -0.2], [-0.2, 1.5])
    n = 3000
    x, y = _sample(m1, S1, n, g), _sample(m2, S2, n, g)
    emp = ot.emd2([], [], ot.dist(x.numpy(), y.numpy()), numItermax=10**7)
    exact = G.w2_squared(m1, S1, m2, S2).item()
    # sampling error of W2^2 between two n = 3000 samples in 2-D: about 1 % here; allow 5 %
    assert abs(emp - exact) / exact < 5e-2
    # 1-D: W2^2 = mean((x_(i) - y_(i))^2) on sorted samples, and it agrees with the closed form
    x1 = _sample(_t(0.0), _t([2.0]), 20000, g)[:, 0].sort().values
    y1 = _sample(_t(-1.0), _t([0.5]), 20000, g)[:, 0].sort().values
    exact1 = G.w2_squared(_t(0.0), _t([2.0]), _t(-1.0), _t([0.5])).item()
    assert abs(exact1 - (1.0 + (math.sqrt(2.0) - math.sqrt(0.5)) ** 2)) < 1e-12
    assert abs(((x1 - y1) ** 2).mean().item() - exact1) / exact1 < 3e-2


def test_monge_map_pushes_forward_and_is_a_gradient_of_convex_function():
    g = torch.Generator().manual_seed(4)
    for d in (1, 2, 4):
        m1, S1 = _rand_gaussian(d, g)
        m2, S2 = _rand_gaussian(d, g)
        T = G.monge_map(m1, S1, m2, S2)
        assert isinstance(T, nets.AffineMap) and T.A.dtype == F64
        torch.testing.assert_close(T.A, T.A.T, atol=1e-12, rtol=0)  # symmetric ...
        assert torch.linalg.eigvalsh(T.A).min() > 0  # ... positive definite: T = grad(convex)
        torch.testing.assert_close(T.A @ S1 @ T.A, S2, atol=1e-10, rtol=0)
        mean_p, cov_p = T.push_gaussian(m1, S1)
        torch.testing.assert_close(mean_p, m2, atol=1e-12, rtol=0)
        torch.testing.assert_close(cov_p, S2, atol=1e-10, rtol=0)
        # transport cost of T equals W2^2: E|T(X) - X|^2 = |Em|^2 + tr((A - I) S1 (A - I))
        D = T.A - torch.eye(d, dtype=F64)
        cost = ((T.b + D @ m1) ** 2).sum() + torch.trace(D @ S1 @ D)
        assert abs(cost.item() - G.w2_squared(m1, S1, m2, S2).item()) < 1e-10
        # on samples: mapped samples have the target's moments
        x = _sample(m1, S1, 40000, g)
        Tx = T(x)
        assert Tx.shape == x.shape and Tx.dtype == F64
        scale = float(torch.linalg.matrix_norm(S2, ord=2))
        assert (Tx.mean(0) - m2).abs().max() < 0.03 * math.sqrt(scale)
        assert (torch.cov(Tx.T).reshape(d, d) - S2).abs().max() < 0.05 * scale


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(5)
    MVN = torch.distributions.MultivariateNormal
    for d in (1, 3, 5):
        m1, S1 = _rand_gaussian(d, g)
        m2, S2 = _rand_gaussian(d, g)
        ref = torch.distributions.kl_divergence(MVN(m1, S1), MVN(m2, S2))
        assert abs(G.kl(m1, S1, m2, S2).item() - ref.item()) < 1e-10
    assert abs(G.kl(m1, S1, m1, S1).item()) < 1e-12
    # 1-D: KL(N(0,1) || N(1, 4)) = log 2 + (1 + 1)/8 - 1/2
    assert abs(G.kl(_t(0.0), _t([1.0]), _t(1.0), _t([4.0])).item() - (math.log(2) - 0.25)) < 1e-12


def test_batched_inputs_match_loop():
    g = torch.Generator().manual_seed(6)
    ms = torch.randn(4, 3, generator=g, dtype=F64)
    Ss = torch.stack([_rand_spd(3, g) for _ in range(4)])
    m2, S2 = _rand_gaussian(3, g)  # broadcast against the batch
    for fn in (G.w2_squared, G.kl, lambda a, b, c, e: G.mmd2(a, b, c, e, 0.7)):
        batched = fn(ms, Ss, m2, S2)
        assert batched.shape == (4,)
        loop = torch.stack([fn(ms[k], Ss[k], m2, S2) for k in range(4)])
        torch.testing.assert_close(batched, loop, atol=1e-12, rtol=0)
    mean1, cov1 = G.jko_step_kl(ms, Ss, m2, S2, 0.2)
    for k in range(4):
        mk, ck = G.jko_step_kl(ms[k], Ss[k], m2, S2, 0.2)
        torch.testing.assert_close(mean1[k], mk, atol=1e-12, rtol=0)
        torch.testing.assert_close(cov1[k], ck, atol=1e-12, rtol=0)


def test_dtypes_preserved_and_promoted():
    m, S = _t(0.0, 1.0), _t([2.0, 0.3], [0.3, 1.0])
    assert G.w2_squared(m, S, m + 1, S).dtype == F64
    out32 = G.w2_squared(m.float(), S.float(), (m + 1).float(), S.float())
    assert out32.dtype == torch.float32 and abs(out32.item() - 2.0) < 1e-5
    assert G.kl(m.float(), S.float(), m, S).dtype == F64  # mixed -> float64
    assert G.jko_step_kl(m, S, m, S, 0.1)[1].dtype == F64
    assert G.ou_flow(m, S, m, S, 0.5)[1].dtype == F64


# ------------------------------------------------------------------------------------------
# KL flow: OU, JKO, Euler
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_ou_flow_matches_moment_ode_integration(d):
    g = torch.Generator().manual_seed(10 + d)
    m0, S0 = _rand_gaussian(d, g)
    m, Sigma = _rand_gaussian(d, g)
    A = np.linalg.inv(Sigma.numpy())

    def rhs(_, z):
        mu, S = z[:d], z[d:].reshape(d, d)
        return np.concatenate([-A @ (mu - m.numpy()), (2 * np.eye(d) - A @ S - S @ A).ravel()])

    times = [0.3, 1.0, 2.5]
    sol = solve_ivp(
        rhs,
        (0, 2.5),
        np.concatenate([m0.numpy(), S0.numpy().ravel()]),
        t_eval=times,
        method="DOP853",
        rtol=1e-11,
        atol=1e-12,
    )
    means, covs = G.ou_flow(m0, S0, m, Sigma, torch.tensor(times, dtype=F64))
    assert means.shape == (3, d) and covs.shape == (3, d, d)
    for k, t in enumerate(times):
        np.testing.assert_allclose(means[k].numpy(), sol.y[:d, k], atol=1e-8)
        np.testing.assert_allclose(covs[k].numpy().ravel(), sol.y[d:, k], atol=1e-8)
        mean_t, cov_t = G.ou_flow(m0, S0, m, Sigma, t)  # scalar time gives the same
        torch.testing.assert_close(mean_t, means[k], atol=1e-13, rtol=0)
        torch.testing.assert_close(cov_t, covs[k], atol=1e-13, rtol=0)
    mean_0, cov_0 = G.ou_flow(m0, S0, m, Sigma, 0.0)
    torch.testing.assert_close(cov_0, S0, atol=1e-13, rtol=0)
    torch.testing.assert_close(mean_0, m0, atol=1e-13, rtol=0)


def test_jko_step_1d_numbers():
    # mu = 0, variance s = 1, target N(2, variance 0.5), tau = 0.3; s+ is a VARIANCE
    mean, cov = G.jko_step_kl(_t(0.0), _t([1.0]), _t(2.0), _t([0.5]), 0.3)
    assert abs(mean.item() - 0.75) < 1e-12
    assert abs(cov.item() - 0.7165626463) < 1e-10
    # by hand: B = 1 + tau/Sigma, M = (1/2 + sqrt(1/4 + tau B / s)) / B, s+ = M^2 s
    B = 1 + 0.3 / 0.5
    M = (0.5 + math.sqrt(0.25 + 0.3 * B)) / B
    assert abs(cov.item() - M**2) < 1e-12
    T = G.jko_map_kl(_t(0.0), _t([1.0]), _t(2.0), _t([0.5]), 0.3)
    assert abs(T.A.item() - M) < 1e-12 and abs(T.b.item() - 0.75) < 1e-12


def _numerical_jko(mean_k, cov_k, m, Sigma, tau):
    """Minimise W2^2(N, N_k)/(2 tau) + KL(N || target) over N(mu, L L^T), L lower triangular."""
    d = mean_k.shape[0]
    rows, cols = torch.tril_indices(d, d)
    diag = rows == cols

    def unpack(p):
        mu = p[:d]
        vals = p[d:]
        vals = torch.where(diag, torch.exp(vals), vals)
        L = torch.zeros(d, d, dtype=F64).index_put((rows, cols), vals)
        return mu, L @ L.T

    def fun(p_np):
        p = torch.tensor(p_np, dtype=F64, requires_grad=True)
        mu, S = unpack(p)
        obj = G.w2_squared(mu, S, mean_k, cov_k) / (2 * tau) + G.kl(mu, S, m, Sigma)
        (grad,) = torch.autograd.grad(obj, p)
        return obj.item(), grad.numpy()

    L0 = torch.linalg.cholesky(cov_k)[rows, cols]
    p0 = torch.cat([mean_k, torch.where(diag, torch.log(L0), L0)]).numpy()
    res = minimize(fun, p0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 2000})
    mu, S = unpack(torch.tensor(res.x, dtype=F64))
    return mu, S


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_jko_step_matches_numerical_minimisation(d):
    g = torch.Generator().manual_seed(20 + d)
    mean_k, cov_k = _rand_gaussian(d, g)
    m, Sigma = _rand_gaussian(d, g)
    if d > 1:  # make sure the covariances do not commute
        assert (cov_k @ Sigma - Sigma @ cov_k).abs().max() > 0.05
    tau = 0.4
    mean_num, cov_num = _numerical_jko(mean_k, cov_k, m, Sigma, tau)
    mean_cf, cov_cf = G.jko_step_kl(mean_k, cov_k, m, Sigma, tau)
    torch.testing.assert_close(mean_cf, mean_num, atol=1e-6, rtol=0)
    torch.testing.assert_close(cov_cf, cov_num, atol=1e-6, rtol=0)


def test_jko_map_satisfies_optimality_condition():
    # (T(x) - x)/tau = -grad(log rho_+ + U)(T(x)), with gradients from torch.distributions
    g = torch.Generator().manual_seed(30)
    d, tau = 3, 0.7
    mean, cov = _rand_gaussian(d, g)
    m, Sigma = _rand_gaussian(d, g)
    T = G.jko_map_kl(mean, cov, m, Sigma, tau)
    mean_p, cov_p = G.jko_step_kl(mean, cov, m, Sigma, tau)
    torch.testing.assert_close(T.push_gaussian(mean, cov)[1], cov_p, atol=1e-12, rtol=0)
    x = _sample(mean, cov, 50, g)
    y = T(x).requires_grad_(True)
    MVN = torch.distributions.MultivariateNormal
    first_var = MVN(mean_p, cov_p).log_prob(y) - MVN(m, Sigma).log_prob(y)
    (grad,) = torch.autograd.grad(first_var.sum(), y)
    torch.testing.assert_close((y.detach() - x) / tau, -grad, atol=1e-10, rtol=0)


def test_jko_fixed_point_and_first_order_convergence_to_ou():
    g = torch.Generator().manual_seed(40)
    d = 3
    m0, S0 = _rand_gaussian(d, g)
    m, Sigma = _rand_gaussian(d, g)
    fixed = G.jko_step_kl(m, Sigma, m, Sigma, 0.8)
    torch.testing.assert_close(fixed[0], m, atol=1e-12, rtol=0)
    torch.testing.assert_close(fixed[1], Sigma, atol=1e-12, rtol=0)
    mean_ou, cov_ou = G.ou_flow(m0, S0, m, Sigma, 1.0)

    def error(n_steps):
        means, covs = G.jko_iterates_kl(m0, S0, m, Sigma, 1.0 / n_steps, n_steps)
        assert means.shape == (n_steps + 1, d) and covs.shape == (n_steps + 1, d, d)
        return (
            torch.linalg.norm(means[-1] - mean_ou) + torch.linalg.matrix_norm(covs[-1] - cov_ou)
        ).item()

    e1, e2, e3 = error(20), error(40), error(80)
    assert 1.7 < e1 / e2 < 2.3 and 1.7 < e2 / e3 < 2.3
    assert e3 < 0.05


def test_euler_step_matches_particle_step_and_1d_formula():
    # the particle map x -> x + h v(x), v = grad log target - grad log rho (autograd through
    # torch.distributions), is affine: read off its linear part at d + 1 points and push forward
    g = torch.Generator().manual_seed(50)
    d, h = 3, 0.1
    mean, cov = _rand_gaussian(d, g)
    m, Sigma = _rand_gaussian(d, g)
    MVN = torch.distributions.MultivariateNormal
    pts = torch.cat([mean[None], mean + torch.eye(d, dtype=F64)]).requires_grad_(True)
    logr = MVN(m, Sigma).log_prob(pts) - MVN(mean, cov).log_prob(pts)
    (v,) = torch.autograd.grad(logr.sum(), pts)
    moved = pts.detach() + h * v
    M = (moved[1:] - moved[0]).T
    mean_e, cov_e = G.euler_step_kl(mean, cov, m, Sigma, h)
    torch.testing.assert_close(mean_e, moved[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(cov_e, M @ cov @ M.T, atol=1e-12, rtol=0)
    # 1-D, variances: s+ = s (1 + h(1/s - 1/Sigma))^2
    s, Sg, h = 1.7, 0.6, 0.25
    _, cov1 = G.euler_step_kl(_t(0.0), _t([s]), _t(0.0), _t([Sg]), h)
    assert abs(cov1.item() - s * (1 + h * (1 / s - 1 / Sg)) ** 2) < 1e-12


def test_explicit_euler_unstable_past_bound_while_jko_converges():
    # 1-D target variance Sigma = 1: the Euler covariance recursion is stable iff h < Sigma
    m, Sigma, mean0, cov0 = _t(0.0), _t([1.0]), _t(1.0), _t([1.3])
    n = 200
    _, covs_ok = G.euler_iterates_kl(mean0, cov0, m, Sigma, 0.5, n)
    assert abs(covs_ok[-1].item() - 1.0) < 1e-10  # below the bound it converges
    for h in (1.2, 1.5):  # past the bound (the mean would still converge for h < 2)
        means, covs = G.euler_iterates_kl(mean0, cov0, m, Sigma, h, n)
        assert abs(means[-1].item()) < 1e-6
        tail = covs[-50:].flatten()
        assert (not bool(torch.isfinite(tail).all())) or (tail - 1.0).abs().max() > 0.5
        means_j, covs_j = G.jko_iterates_kl(mean0, cov0, m, Sigma, h, n)
        assert abs(covs_j[-1].item() - 1.0) < 1e-10 and abs(means_j[-1].item()) < 1e-10


# ------------------------------------------------------------------------------------------
# MMD and entropic OT
# ------------------------------------------------------------------------------------------


def test_mmd2_number_and_monte_carlo():
    val = G.mmd2(_t(0.0), _t([1.0]), _t(1.0), _t([0.25]), 1.0)
    assert abs(val.item() - 0.3261969796) < 1e-9
    assert abs(G.mmd2(_t(0.0), _t([1.0]), _t(0.0), _t([1.0]), 1.0).item()) < 1e-14
    # 2-D: linear-time unbiased estimator (Gretton et al. 2012, MMD_l) on 10^6 pairs
    g = torch.Generator().manual_seed(60)
    m1, S1 = _t(0.0, 0.0), _t([1.0, 0.5], [0.5, 1.2])
    m2, S2 = _t(0.8, -0.3), _t([0.4, 0.0], [0.0, 0.6])
    s = 0.9
    n = 10**6
    x, xp = _sample(m1, S1, n, g), _sample(m1, S1, n, g)
    y, yp = _sample(m2, S2, n, g), _sample(m2, S2, n, g)

    def k(a, b):
        return torch.exp(-((a - b) ** 2).sum(-1) / (2 * s**2))

    hstat = k(x, xp) + k(y, yp) - k(x, yp) - k(xp, y)
    se = hstat.std().item() / math.sqrt(n)
    exact = G.mmd2(m1, S1, m2, S2, s).item()
    assert abs(hstat.mean().item() - exact) < 5 * se
    assert se < 2e-3  # the check is sharp: se is small compared with MMD^2 (~0.1)


def test_sinkhorn_divergence_numbers_and_small_eps_limit():
    a = (_t(0.0), _t([1.0]))
    b = (_t(1.0), _t([0.25]))
    # MATH §6.7's numbers are the debiased divergence S_eps, not OT_eps
    for eps, expected in ((0.1, 1.24969), (1.0, 1.22469), (10.0, 1.05459)):
        assert abs(G.sinkhorn_divergence(*a, *b, eps).item() - expected) < 5e-6
        assert G.entropic_ot(*a, *b, eps).item() > expected + 0.1
    w2 = G.w2_squared(*a, *b).item()
    assert abs(w2 - 1.25) < 1e-12
    assert abs(G.entropic_ot(*a, *b, 1e-5).item() - w2) < 1e-3
    assert abs(G.sinkhorn_divergence(*a, *b, 1e-5).item() - w2) < 1e-8
    assert abs(G.sinkhorn_divergence(*a, *a, 0.7).item()) < 1e-12


def _pot_entropic(x: np.ndarray, y: np.ndarray, eps: float) -> float:
    """OT_eps between uniform discrete measures: <P, C> + eps KL(P || a b^T), C = |x - y|^2.

    POT's reg * sum(P log P) differs from eps KL(P || a b^T) by a constant on the coupling set, so
    the plans agree; ``ot.sinkhorn2`` returns only <P, C>, hence the value is rebuilt from the plan.
    """
    C = ot.dist(x[:, None], y[:, None])  # squared Euclidean
    a = np.full(len(x), 1.0 / len(x))
    b = np.full(len(y), 1.0 / len(y))
    P = ot.sinkhorn(a, b, C, eps, method="sinkhorn_log", stopThr=1e-11, numItermax=10000)
    nz = P > 0
    return float((P * C).sum() + eps * (P[nz] * np.log(P[nz] / np.outer(a, b)[nz])).sum())


@pytest.mark.parametrize("eps", [0.3, 1.0, 10.0])
def test_entropic_ot_against_pot_sinkhorn_1d(eps):
    # 1-D "samples" at n normal quantiles, standardised to the exact mean and variance, so the
    # discretisation error (about 1e-4 at n = 250, measured) is far below the tolerance
    n = 250
    q = norm.ppf((np.arange(n) + 0.5) / n)
    q = (q - q.mean()) / q.std()
    x, y = q, 1.0 + 0.5 * q
    a = (_t(0.0), _t([1.0]))
    b = (_t(1.0), _t([0.25]))
    ab, aa, bb = _pot_entropic(x, y, eps), _pot_entropic(x, x, eps), _pot_entropic(y, y, eps)
    assert abs(ab - G.entropic_ot(*a, *b, eps).item()) < 5e-4
    assert abs(aa - G.entropic_ot(*a, *a, eps).item()) < 5e-4
    assert abs(ab - 0.5 * (aa + bb) - G.sinkhorn_divergence(*a, *b, eps).item()) < 5e-4


def test_entropic_ot_matches_minimisation_over_gaussian_couplings():
    # the optimal plan between Gaussians is Gaussian: minimise over cross-covariances
    # C = Sa^{1/2} K Sb^{1/2}, K = Q (I + Q^T Q)^{-1/2} (any Q gives |K|_2 < 1):
    #   |ma - mb|^2 + tr Sa + tr Sb - 2 tr C - (eps/2) log det(I - K K^T)
    g = torch.Generator().manual_seed(70)
    d, eps = 2, 0.6
    ma, Sa = _rand_gaussian(d, g)
    mb, Sb = _rand_gaussian(d, g)
    Ra, Rb = G._sqrtm(Sa), G._sqrtm(Sb)
    eye = torch.eye(d, dtype=F64)

    def fun(q_np):
        Q = torch.tensor(q_np, dtype=F64).reshape(d, d).requires_grad_(True)
        K = Q @ torch.linalg.inv(G._sqrtm(eye + Q.T @ Q))
        C = Ra @ K @ Rb
        obj = (
            ((ma - mb) ** 2).sum()
            + torch.trace(Sa + Sb - 2 * C)
            - 0.5 * eps * torch.logdet(eye - K @ K.T)
        )
        (grad,) = torch.autograd.grad(obj, Q)
        return obj.item(), grad.numpy().ravel()

    res = minimize(fun, np.zeros(d * d), jac=True, method="BFGS", options={"gtol": 1e-10})
    assert abs(res.fun - G.entropic_ot(ma, Sa, mb, Sb, eps).item()) < 1e-8


# ------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------


def test_bad_inputs_raise_naming_the_argument():
    m, S = _t(0.0, 0.0), torch.eye(2, dtype=F64)
    not_spd = _t([1.0, 2.0], [2.0, 1.0])
    with pytest.raises(ValueError, match="S2"):
        G.w2_squared(m, S, m, not_spd)
    with pytest.raises(ValueError, match="target_cov"):
        G.jko_step_kl(m, S, m, not_spd, 0.1)
    with pytest.raises(ValueError, match="m1 and m2"):
        G.kl(m, S, _t(0.0, 0.0, 0.0), torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="S1"):
        G.mmd2(m, torch.eye(3, dtype=F64), m, S, 1.0)
    with pytest.raises(ValueError, match="tau"):
        G.jko_step_kl(m, S, m, S, -0.1)
    with pytest.raises(ValueError, match="tau"):
        G.jko_iterates_kl(m, S, m, S, 0.0, 3)
    with pytest.raises(ValueError, match="step_size"):
        G.euler_step_kl(m, S, m, S, 0.0)
    with pytest.raises(ValueError, match="mean"):
        G.jko_step_kl(_t(float("nan"), 0.0), S, m, S, 0.1)
    with pytest.raises(ValueError, match="mean0"):
        G.ou_flow(_t(float("nan"), 0.0), S, m, S, 1.0)
    with pytest.raises(ValueError, match="t"):
        G.ou_flow(m, S, m, S, -1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        G.mmd2(m, S, m, S, 0.0)
    with pytest.raises(ValueError, match="eps"):
        G.sinkhorn_divergence(m, S, m, S, -1.0)
    with pytest.raises(ValueError, match="n_steps"):
        G.euler_iterates_kl(m, S, m, S, 0.1, 0)
    with pytest.raises(ValueError, match="x"):
        G.monge_map(m, S, m, S)(torch.zeros(5, 3, dtype=F64))


# ---------------------------------------------------------------------------------------------
# relative Fisher information and the Gaussian JKO objective
# ---------------------------------------------------------------------------------------------


def test_relative_fisher_information_monte_carlo_and_dissipation():
    f64 = torch.float64
    m1, S1 = torch.tensor([0.5, -1.0], dtype=f64), torch.tensor([[0.6, 0.2], [0.2, 0.4]], dtype=f64)
    m2, S2 = torch.tensor([1.0, 0.0], dtype=f64), torch.tensor([[1.0, -0.3], [-0.3, 0.8]], dtype=f64)
    g = torch.Generator().manual_seed(0)
    L = torch.linalg.cholesky(S1)
    x = m1 + torch.randn(200_000, 2, generator=g, dtype=torch.float64) @ L.T
    diff = -(x - m1) @ torch.linalg.inv(S1) + (x - m2) @ torch.linalg.inv(S2)  # grad log rho - grad log pi
    mc = float((diff**2).sum(1).mean())
    exact = float(G.relative_fisher_information(m1, S1, m2, S2))
    assert exact == pytest.approx(mc, rel=0.02)
    # d/dt KL(rho_t || pi) = -I(rho_t | pi) along the OU flow
    dt, t = 1e-5, 0.7
    kls = [float(G.kl(*G.ou_flow(m1, S1, m2, S2, s), m2, S2)) for s in (t - dt, t + dt)]
    fisher_t = float(G.relative_fisher_information(*G.ou_flow(m1, S1, m2, S2, t), m2, S2))
    assert (kls[1] - kls[0]) / (2 * dt) == pytest.approx(-fisher_t, rel=1e-6)
    assert float(G.relative_fisher_information(m2, S2, m2, S2)) == pytest.approx(0.0, abs=1e-12)


def test_jko_objective_kl_is_minimised_by_the_jko_step():
    f64 = torch.float64
    m0, S0 = torch.tensor([-2.0, 1.5], dtype=f64), torch.tensor([[0.3, -0.1], [-0.1, 0.2]], dtype=f64)
    m, S = torch.zeros(2, dtype=f64), torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=f64)
    tau = 0.3
    m1, S1 = G.jko_step_kl(m0, S0, m, S, tau)
    best = float(G.jko_objective_kl(m1, S1, m0, S0, m, S, tau))
    g = torch.Generator().manual_seed(1)
    L = torch.linalg.cholesky(S1)
    dm = 0.05 * torch.randn(300, 2, generator=g, dtype=f64)
    dL = 0.05 * torch.randn(300, 2, 2, generator=g, dtype=f64).tril()
    Lp = L + dL
    vals = G.jko_objective_kl(m1 + dm, Lp @ Lp.mT, m0, S0, m, S, tau)
    assert vals.shape == (300,) and bool((vals > best).all())
    with pytest.raises(ValueError, match="tau"):
        G.jko_objective_kl(m1, S1, m0, S0, m, S, 0.0)


def test_euler_iterates_far_past_the_bound_raise():
    """Step 5 (17 times the bound lambda_min = 0.29): the covariance loses definiteness at step 10 and
    the iterates would become non-finite; the error names the step size and the bound. Below the
    bound, and a little past it (what chapter 2 plots), the iterates are returned."""
    from gwf_tutorial.flows import FlowDivergedError
    from gwf_tutorial.targets import get_target

    t = get_target("gaussian")
    mu0, S0 = _t(-2.0, 1.5), torch.tensor([[0.3, -0.1], [-0.1, 0.2]], dtype=F64)
    lam = float(torch.linalg.eigvalsh(t.cov).min())
    with pytest.raises(FlowDivergedError, match=rf"step 10 with step_size=5\b.*target_cov \({lam:.3g}\)"):
        G.euler_iterates_kl(mu0, S0, t.mean, t.cov, 5.0, 200)
    for h in (0.2, 0.7):
        means, covs = G.euler_iterates_kl(mu0, S0, t.mean, t.cov, h, 40)
        assert bool(torch.isfinite(covs).all()) and bool((torch.linalg.eigvalsh(covs) > 0).all())
