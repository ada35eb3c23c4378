"""Tests for gwf_tutorial.projected: the metric tensor G(theta) = E[J^T J] of map families against
closed forms and an independent autograd loop, and the projected (natural-gradient) flow against
the exact Gaussian (Ornstein-Uhlenbeck) flow, compared with plain gradient descent and small-step
parametric JKO."""

import pytest
import torch
from conftest import moment_matched
from torch import nn

from gwf_tutorial import gaussian, jko, nets, projected
from gwf_tutorial.functionals import MMD

F64 = torch.float64


M0 = torch.tensor([0.5, -1.0], dtype=F64)
S0 = torch.tensor([[1.0, 0.3], [0.3, 0.6]], dtype=F64)
M = torch.tensor([2.0, 1.0], dtype=F64)
SIG = torch.tensor([[0.5, -0.1], [-0.1, 0.8]], dtype=F64)


def pushed_gaussian(theta):
    """(mean, cov) of the affine push-forward of N(M0, S0) for flattened AffineMap parameters."""
    A, b = theta[:4].reshape(2, 2), theta[4:]
    return A @ M0 + b, A @ S0 @ A.T


# ------------------------------------------------------------------------ metric tensor


def test_metric_tensor_of_translations_is_the_identity():
    z = torch.randn(37, 3, generator=torch.Generator().manual_seed(0), dtype=F64) * 5
    G = projected.metric_tensor(nets.Translation(3, dtype=F64), z)
    torch.testing.assert_close(G, torch.eye(3, dtype=F64), rtol=0, atol=1e-14)


def test_metric_tensor_of_affine_maps_matches_closed_form():
    # G = [[I (x) M, I (x) m], [I (x) m^T, I]] with m = E z, M = E z z^T (empirical), at any (A, b):
    # checked against the library's closed form and an entry-by-entry construction.
    g = torch.Generator().manual_seed(1)
    z = 0.7 * torch.randn(50, 2, generator=g, dtype=F64) + torch.tensor([1.0, -2.0], dtype=F64)
    T = nets.AffineMap(2, dtype=F64)
    with torch.no_grad():
        T.A.copy_(torch.tensor([[2.0, -1.0], [0.5, 3.0]]))
        T.b.copy_(torch.tensor([0.3, 0.1]))
    m, Mz = z.mean(0), z.T @ z / z.shape[0]
    G = projected.metric_tensor(T, z)
    torch.testing.assert_close(G, projected.affine_metric_tensor(m, Mz), rtol=0, atol=1e-12)
    ref = torch.zeros(6, 6, dtype=F64)
    for i in range(2):
        for j in range(2):
            for k in range(2):
                for l in range(2):
                    ref[2 * i + j, 2 * k + l] = float(i == k) * Mz[j, l]
            ref[2 * i + j, 4 + i] = ref[4 + i, 2 * i + j] = m[j]
    ref[4:, 4:] = torch.eye(2, dtype=F64)
    torch.testing.assert_close(G, ref, rtol=0, atol=1e-12)


def test_metric_tensor_of_mlp_matches_autograd_loop():
    # Independent computation: one backward pass per (sample, output coordinate).
    torch.manual_seed(0)
    net = nets.MLP(2, 2, hidden=5, depth=1, activation="tanh", dtype=F64)
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    params = list(net.parameters())
    rows = []
    for i in range(z.shape[0]):
        for k in range(2):
            gs = torch.autograd.grad(net(z[i : i + 1])[0, k], params)
            rows.append(torch.cat([g.reshape(-1) for g in gs]))
    J = torch.stack(rows)  # (n d, p)
    J_lib = projected.parameter_jacobian(net, z)
    assert J_lib.shape == (7, 2, sum(p.numel() for p in params))
    torch.testing.assert_close(J_lib.reshape(14, -1), J, rtol=0, atol=1e-13)
    torch.testing.assert_close(projected.metric_tensor(net, z), J.T @ J / 7, rtol=0, atol=1e-13)


def test_objective_gradient_matches_finite_differences():
    T = nets.AffineMap(2, dtype=F64)
    obj = jko.GaussianPushforwardKL(M0, S0, M, SIG)
    z = moment_matched(16, M0, S0, torch.Generator().manual_seed(3))
    value, grad = projected.objective_gradient(T, obj, z)
    theta = torch.nn.utils.parameters_to_vector(T.parameters()).detach()

    def f(th):
        m, S = pushed_gaussian(th)
        return gaussian.kl(m, S, M, SIG)

    assert value.item() == pytest.approx(f(theta).item(), abs=1e-12)
    eps = 1e-6
    fd = torch.stack([(f(theta + eps * e) - f(theta - eps * e)) / (2 * eps) for e in torch.eye(6, dtype=F64)])
    torch.testing.assert_close(grad, fd, rtol=0, atol=1e-8)


# ------------------------------------------------------------------------ the flows


def _ou_error(result):
    """max over t_k of |m_k - m(t_k)| + ||S_k - S(t_k)||_F against the exact OU flow."""
    errs = []
    for t, th in zip(result.times, result.params):
        m, S = pushed_gaussian(th)
        mo, So = gaussian.ou_flow(M0, S0, M, SIG, float(t))
        errs.append(float((m - mo).norm() + (S - So).norm()))
    return max(errs)


def test_natural_gradient_flow_tracks_the_exact_gaussian_flow_better_than_gradient_descent():
    # Affine maps of mu_0 = N(M0, S0) (non-identity covariance, so G != I), F = KL to N(M, SIG)
    # (exact, GaussianPushforwardKL). The KL velocity is affine, so the projected flow is the
    # exact Wasserstein (OU) flow: explicit Euler with h = 0.02 up to t = 1 has an O(h) error
    # (measured 0.025); plain gradient descent in (A, b) follows another path (measured 1.0).
    z = moment_matched(32, M0, S0, torch.Generator().manual_seed(0))
    obj = jko.GaussianPushforwardKL(M0, S0, M, SIG)
    kw = dict(step_size=0.02, n_steps=50, progress=False)
    nat = projected.projected_flow(nets.AffineMap(2, dtype=F64), obj, z, method="natural", **kw)
    gd = projected.projected_flow(nets.AffineMap(2, dtype=F64), obj, z, method="gradient", **kw)
    err_nat, err_gd = _ou_error(nat), _ou_error(gd)
    assert err_nat < 0.04
    assert err_nat < 0.1 * err_gd
    # halving the step halves the error (first order), a check that the error is discretisation
    half = projected.projected_flow(
        nets.AffineMap(2, dtype=F64),
        obj,
        z,
        method="natural",
        step_size=0.01,
        n_steps=100,
        progress=False,
    )
    assert _ou_error(half) == pytest.approx(err_nat / 2, rel=0.15)
    # both decrease the objective; the record has one entry per step and the initial point
    assert (
        nat.params.shape == (51, 6)
        and nat.values.shape == (51,)
        and nat.times[-1].item() == pytest.approx(1.0)
    )
    assert nat.values[-1] < nat.values[0] and gd.values[-1] < gd.values[0]


def test_small_tau_jko_on_affine_maps_follows_the_exact_jko_steps():
    # method="jko" runs ParametricJKO steps from the current map; with the exact objective the
    # affine family reproduces the closed-form Gaussian JKO steps (tolerance 1e-4: optimiser
    # accuracy of 300 Adam iterations, measured 1.2e-5).
    z = moment_matched(32, M0, S0, torch.Generator().manual_seed(0))
    obj = jko.GaussianPushforwardKL(M0, S0, M, SIG)
    res = projected.projected_flow(
        nets.AffineMap(2, dtype=F64), obj, z, method="jko", step_size=0.5, n_steps=2, n_iters=300,
        lr=0.05, progress=False,
    )  # fmt: skip
    means, covs = gaussian.jko_iterates_kl(M0, S0, M, SIG, 0.5, 2)
    for k in range(3):
        m, S = pushed_gaussian(res.params[k])
        torch.testing.assert_close(m, means[k], rtol=0, atol=1e-4)
        torch.testing.assert_close(S, covs[k], rtol=0, atol=1e-4)


def test_translation_family_natural_equals_gradient_and_moves_the_mean():
    # G = I: both schemes coincide; for the exact KL the mean follows m(t) of the OU flow to O(h).
    z = moment_matched(16, M0, S0, torch.Generator().manual_seed(4))
    y = moment_matched(64, M, SIG, torch.Generator().manual_seed(5))
    obj = MMD(bandwidth=1.0)
    kw = dict(step_size=0.5, n_steps=5, progress=False)
    a = projected.projected_flow(nets.Translation(2, dtype=F64), obj, z, y, method="natural", **kw)
    b = projected.projected_flow(nets.Translation(2, dtype=F64), obj, z, y, method="gradient", **kw)
    torch.testing.assert_close(a.params, b.params, rtol=0, atol=1e-12)
    assert (a.params[-1] - (M - M0)).norm() < (a.params[0] - (M - M0)).norm()


def test_natural_direction_damping_and_pseudo_inverse():
    # Redundant parameters: T(z) = z + b1 + b2 has a singular G = [[I, I], [I, I]]; the
    # minimum-norm direction splits the gradient equally; damping lambda solves (G + lambda I).
    class TwoShifts(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = nn.Parameter(torch.zeros(2, dtype=F64))
            self.b2 = nn.Parameter(torch.zeros(2, dtype=F64))

        def forward(self, x):
            return x + self.b1 + self.b2

    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    net = TwoShifts()
    grad = torch.tensor([1.0, -2.0, 1.0, -2.0], dtype=F64)
    eta = projected.natural_direction(net, z, grad)
    torch.testing.assert_close(eta, grad / 2, rtol=0, atol=1e-12)
    G = torch.eye(4, dtype=F64) + torch.eye(4, dtype=F64).roll(2, 1)
    eta_d = projected.natural_direction(net, z, grad, damping=0.1)
    torch.testing.assert_close((G + 0.1 * torch.eye(4, dtype=F64)) @ eta_d, grad, rtol=0, atol=1e-12)


def test_bad_input():
    z = torch.randn(8, 2, dtype=F64)
    T = nets.AffineMap(2, dtype=F64)
    obj = jko.GaussianPushforwardKL(M0, S0, M, SIG)
    with pytest.raises(ValueError, match="method"):
        projected.projected_flow(T, obj, z, method="euler")
    with pytest.raises(ValueError, match="step_size"):
        projected.projected_flow(T, obj, z, step_size=0.0)
    with pytest.raises(TypeError, match="objective"):
        projected.projected_flow(T, "kl", z)
    with pytest.raises(ValueError, match="data"):
        projected.projected_flow(T, MMD(), z)
    with pytest.raises(TypeError, match="dtype"):
        projected.metric_tensor(T, z.float())
    with pytest.raises(ValueError, match="z"):
        projected.metric_tensor(T, torch.full((3, 2), float("nan"), dtype=F64))
    with pytest.raises(TypeError, match="map_net"):
        projected.metric_tensor(lambda x: x, z)
    with pytest.raises(ValueError, match="grad"):
        projected.natural_direction(T, z, torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match="damping"):
        projected.natural_direction(T, z, torch.zeros(6, dtype=F64), damping=-1.0)
    with pytest.raises(ValueError, match="second_moment"):
        projected.affine_metric_tensor(M0, -S0)


def test_affine_gaussian_path_matches_push_gaussian():
    # The path of pushed Gaussians of a (K, d^2 + d) parameter path equals AffineMap.push_gaussian at
    # every row (parameters written into the map in the order of parameter_jacobian).
    g = torch.Generator().manual_seed(7)
    params = torch.randn(5, 6, generator=g, dtype=F64)
    means, covs = projected.affine_gaussian_path(params, M0, S0)
    assert means.shape == (5, 2) and covs.shape == (5, 2, 2)
    T = nets.AffineMap(2, dtype=F64)
    for k in range(5):
        torch.nn.utils.vector_to_parameters(params[k], T.parameters())
        with torch.no_grad():
            m, S = T.push_gaussian(M0, S0)
        torch.testing.assert_close(means[k], m, rtol=0, atol=1e-14)
        torch.testing.assert_close(covs[k], S, rtol=0, atol=1e-14)
    m1, S1 = projected.affine_gaussian_path(params[0], M0, S0)  # one parameter vector
    torch.testing.assert_close(m1, means[0], rtol=0, atol=0)
    torch.testing.assert_close(S1, covs[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match="params"):
        projected.affine_gaussian_path(torch.zeros(3, 5, dtype=F64), M0, S0)
    with pytest.raises(TypeError, match="params"):
        projected.affine_gaussian_path([1.0] * 6, M0, S0)
    with pytest.raises(ValueError, match="cov"):
        projected.affine_gaussian_path(params, M0, -S0)


@pytest.mark.parametrize("method", ["natural", "gradient"])
@pytest.mark.parametrize("case", ["overflow", "leaves the domain"])
def test_a_diverging_flow_raises_the_divergence_error_naming_the_step_size(method, case):
    # far too large a step: the one divergence error of the library (a ValueError) naming step_size,
    # both when the pushed particles overflow (MMD, step 1e30: finite parameters near 1e29, beyond
    # what float32 distances hold) and when the map leaves the objective's domain (Gaussian KL, step
    # 10: the affine map becomes singular, its pushed covariance not positive definite)
    from gwf_tutorial._validation import FlowDivergedError

    g = torch.Generator().manual_seed(0)
    if case == "overflow":
        z, y = torch.randn(16, 2, generator=g), 3.0 + torch.randn(16, 2, generator=g)
        args, h, T = (MMD("gaussian", 1.0), z, y), 1e30, nets.AffineMap(2)
    else:
        z = torch.randn(16, 2, dtype=F64, generator=g)
        args, h, T = (jko.GaussianPushforwardKL(M0, S0, M, SIG), z), 10.0, nets.AffineMap(2, dtype=F64)
    with pytest.raises(FlowDivergedError, match=r"flow diverged: after step \d+ .*step_size=") as err:
        projected.projected_flow(T, *args, method=method, step_size=h, n_steps=30, progress=False)
    assert f"step_size={h:g} is too large" in str(err.value)
