"""Tests of gwf_tutorial.functionals: every analytic velocity against the autograd Wasserstein
gradient of its sample estimate, and against closed forms or independent computations (MATH §6)."""

from __future__ import annotations

import math
import sys
import warnings
from importlib.util import find_spec

import numpy as np
import ot
import pytest
import torch
from scipy.stats import norm

from gwf_tutorial import functionals as Fn
from gwf_tutorial import gaussian as G
from gwf_tutorial import metrics
from gwf_tutorial.functionals import (
    KL,
    MMD,
    SinkhornDivergence,
    SlicedEnergyMMD,
    SlicedWasserstein,
    get_objective,
    kde_bandwidth,
    slicing_constant,
    wasserstein_gradient,
)
from gwf_tutorial.kernels import EnergyKernel, GaussianKernel, MultiBandwidthKernel
from gwf_tutorial.targets import Gaussian as GaussianTarget

F64 = torch.float64


def _data(n=40, m=50, d=2, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    y = 0.7 * torch.randn(m, d, generator=g, dtype=dtype) + 1.0
    return x, y


def _sample(mean, cov, n, g):
    mean = torch.as_tensor(mean, dtype=F64)
    cov = torch.as_tensor(cov, dtype=F64)
    z = torch.randn(n, mean.shape[0], generator=g, dtype=F64)
    return mean + z @ torch.linalg.cholesky(cov).T


def _grad_of_first_variation(obj, x, y, z):
    """-grad_z of obj.first_variation(x, y, z), by autograd (independent of obj.velocity)."""
    zz = z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(obj.first_variation(x, y, zz).sum(), zz)
    return -g


# ------------------------------------------------------------------------------------------
# wasserstein_gradient
# ------------------------------------------------------------------------------------------


def test_wasserstein_gradient_of_potential_plus_interaction_energy():
    """F(rho) = int V drho + 1/2 iint W(x - x') drho drho has Wasserstein gradient
    grad V(x) + (grad W * rho)(x): with V = |x - c|^2 / 2 and W(z) = exp(-|z|^2 / 2) this is
    (x_i - c) - 1/n sum_j exp(-|x_i - x_j|^2 / 2) (x_i - x_j) at the empirical measure."""
    x, _ = _data(n=30, d=3)
    c = torch.tensor([0.5, -1.0, 2.0], dtype=F64)

    def value(z):
        D = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1)
        return 0.5 * (z - c).pow(2).sum(1).mean() + 0.5 * torch.exp(-D / 2).mean()

    x_before = x.clone()
    grad = wasserstein_gradient(value, x)
    D = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    expected = (x - c) - (torch.exp(-D / 2)[:, :, None] * (x[:, None, :] - x[None, :, :])).mean(1)
    assert grad.dtype == F64 and grad.shape == x.shape and not grad.requires_grad
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)  # input untouched


def test_wasserstein_gradient_bad_inputs():
    x, _ = _data()
    with pytest.raises(ValueError, match="0-d tensor"):
        wasserstein_gradient(lambda z: z.sum(1), x)
    with pytest.raises(ValueError, match="differentiabl"):
        wasserstein_gradient(lambda z: torch.tensor(1.0, dtype=F64), x)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        wasserstein_gradient(lambda z: z.sum(), bad)
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        wasserstein_gradient(lambda z: z.sum(), x[:, 0])


# ------------------------------------------------------------------------------------------
# MMD
# ------------------------------------------------------------------------------------------

MMD_CASES = [
    ("gaussian-fixed", lambda: MMD("gaussian", 0.8)),
    ("gaussian-median", lambda: MMD("gaussian")),
    ("imq", lambda: MMD("imq", 0.8, beta=-1.5)),
    ("laplace", lambda: MMD("laplace", 0.8)),
    ("energy", lambda: MMD("energy")),
    ("riesz-1.5", lambda: MMD("energy", exponent=1.5)),
    ("multi-median", lambda: MMD("multi")),
    ("multi-given", lambda: MMD("gaussian", [0.3, 1.0, 3.0])),
]


@pytest.mark.parametrize("name,make", MMD_CASES, ids=[c[0] for c in MMD_CASES])
def test_mmd_velocity_is_the_wasserstein_gradient(name, make):
    obj = make()
    x, y = _data()
    v = obj.velocity(x, y)
    assert v.shape == x.shape and v.dtype == F64
    torch.testing.assert_close(v, -wasserstein_gradient(lambda z: obj.value(z, y), x), rtol=1e-9, atol=1e-12)
    # at other points: minus the gradient of the witness function
    z = torch.randn(7, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    torch.testing.assert_close(
        obj.velocity(x, y, at=z), _grad_of_first_variation(obj, x, y, z), rtol=1e-9, atol=1e-12
    )


def test_mmd_velocity_explicit_gaussian_formula():
    """MATH §2: x_i += (1/s^2)[mean_j k(x_i,y_j)(y_j - x_i) - mean_j k(x_i,x_j)(x_j - x_i)]."""
    x, y = _data(n=20, m=30)
    s = 0.9
    Kxy = torch.exp(-torch.cdist(x, y).pow(2) / (2 * s * s))
    Kxx = torch.exp(-torch.cdist(x, x).pow(2) / (2 * s * s))
    expected = (
        (Kxy[:, :, None] * (y[None] - x[:, None])).mean(1)
        - (Kxx[:, :, None] * (x[None] - x[:, None])).mean(1)
    ) / s**2
    torch.testing.assert_close(MMD("gaussian", s).velocity(x, y), expected, rtol=1e-10, atol=1e-12)


def _kernel_mean_and_grad(mean, cov, z, s):
    """E_{X ~ N(mean, cov)} k(z, X) and its z-gradient for k = exp(-|z - X|^2 / (2 s^2)) (MATH §6.4):
    K(S, delta) = det(I + S/s^2)^{-1/2} exp(-delta^T (s^2 I + S)^{-1} delta / 2), delta = z - mean."""
    d = z.shape[1]
    A = s * s * torch.eye(d, dtype=F64) + cov
    delta = z - mean
    sol = torch.linalg.solve(A, delta.T).T
    K = torch.linalg.det(torch.eye(d, dtype=F64) + cov / s**2) ** -0.5 * torch.exp(
        -0.5 * (delta * sol).sum(1)
    )
    return K, -K[:, None] * sol


def test_mmd_witness_gradient_matches_gaussian_closed_form():
    """With rho = N(m1, S1), nu = N(m2, S2) and the Gaussian kernel, the witness gradient is in closed
    form; the sample velocity at fixed points z converges to it at the Monte Carlo rate."""
    g = torch.Generator().manual_seed(1)
    m1, S1 = torch.tensor([0.0, 0.0], dtype=F64), torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    m2, S2 = torch.tensor([1.0, -0.5], dtype=F64), torch.tensor([[0.4, -0.1], [-0.1, 0.8]], dtype=F64)
    s = 0.7
    n = 100_000
    x, y = _sample(m1, S1, n, g), _sample(m2, S2, n, g)
    z = torch.tensor([[0.0, 0.0], [0.5, 0.5], [1.0, -1.0], [-1.0, 0.5], [2.0, 0.0]], dtype=F64)
    Kx, gx = _kernel_mean_and_grad(m1, S1, z, s)
    Ky, gy = _kernel_mean_and_grad(m2, S2, z, s)
    obj = MMD("gaussian", s)
    v = obj.velocity(x, y, at=z)
    # Monte Carlo: each entry is a mean of n bounded terms (|grad k| <= e^{-1/2}/s ~ 0.87):
    # sd <= 0.003; observed max error ~ 0.002 over seeds
    torch.testing.assert_close(v, gy - gx, rtol=0, atol=0.008)
    torch.testing.assert_close(obj.first_variation(x, y, z), Kx - Ky, rtol=0, atol=0.008)
    # and the closed form is not trivially small here (the test can fail)
    assert float((gy - gx).abs().max()) > 0.25


def test_mmd_value_matches_gaussian_closed_form():
    """MATH §6.4: MMD^2(N(0,1), N(1,0.25)), s = 1, is 0.3261969796; value is half the V-statistic."""
    g = torch.Generator().manual_seed(2)
    n = 3000
    x = torch.randn(n, 1, generator=g, dtype=F64)
    y = 1.0 + 0.5 * torch.randn(n, 1, generator=g, dtype=F64)
    exact = float(
        G.mmd2(
            torch.zeros(1, dtype=F64),
            torch.eye(1, dtype=F64),
            torch.ones(1, dtype=F64),
            0.25 * torch.eye(1, dtype=F64),
            1.0,
        )
    )
    assert exact == pytest.approx(0.3261969796, abs=1e-9)
    # V-statistic bias O(1/n) ~ 3e-4, Monte Carlo sd ~ 0.01 at n = 3000
    assert 2 * float(MMD("gaussian", 1.0).value(x, y)) == pytest.approx(exact, abs=0.03)


def test_mmd_median_bandwidth_uses_pooled_sample():
    x, y = _data()
    from gwf_tutorial.kernels import median_bandwidth

    s = median_bandwidth(x, y)
    torch.testing.assert_close(MMD("gaussian").velocity(x, y), MMD("gaussian", s).velocity(x, y))
    torch.testing.assert_close(MMD("gaussian").value(x, y), MMD("gaussian", s).value(x, y))


def test_mmd_energy_value_is_half_energy_distance():
    x, y = _data(n=30, m=45, d=3)

    def dist(a, b):
        return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1).sqrt()

    exy, exx, eyy = dist(x, y).mean(), dist(x, x).mean(), dist(y, y).mean()
    expected = 0.5 * (2 * exy - exx - eyy)
    torch.testing.assert_close(MMD("energy").value(x, y), expected, rtol=1e-12, atol=1e-14)
    assert isinstance(get_objective("energy").kernel, EnergyKernel)


@pytest.mark.parametrize("kernel", ["gaussian", "energy", "multi"])
def test_mmd_chunked_equals_unchunked(kernel, monkeypatch):
    x, y = _data(n=37, m=23)
    z = torch.randn(11, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    full = MMD(kernel, chunk_size=10_000)
    for chunked in (MMD(kernel, chunk_size=4), MMD(kernel, chunk_size=1)):
        torch.testing.assert_close(chunked.velocity(x, y), full.velocity(x, y), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(chunked.velocity(x, y, at=z), full.velocity(x, y, at=z))
        torch.testing.assert_close(chunked.value(x, y), full.value(x, y), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(chunked.first_variation(x, y, z), full.first_variation(x, y, z))
    # the automatic block size (default chunk_size=None) splits into blocks of <= 2**20 entries;
    # make it tiny so that the automatic path is exercised with many blocks
    monkeypatch.setattr(Fn, "_AUTO_BLOCK_ENTRIES", 100)
    auto = MMD(kernel)
    torch.testing.assert_close(auto.velocity(x, y), full.velocity(x, y), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(auto.value(x, y), full.value(x, y), rtol=1e-12, atol=1e-14)


def test_mmd_bad_inputs():
    x, y = _data()
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        MMD("gaussian", 0.0)
    with pytest.raises(ValueError, match="unknown kernel"):
        MMD("cauchy")
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        MMD("gaussian", chunk_size=0)
    with pytest.raises(ValueError, match="same dimension"):
        MMD().velocity(x, y[:, :1])
    with pytest.raises(TypeError, match="same dtype"):
        MMD().velocity(x, y.float())
    with pytest.raises(ValueError, match="needs target samples"):
        MMD().velocity(x, None)
    bad = y.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="y contains NaN or infinite"):
        MMD().value(x, bad)
    with pytest.raises(ValueError, match="at must have shape"):
        MMD().velocity(x, y, at=x[0])


# ------------------------------------------------------------------------------------------
# KL
# ------------------------------------------------------------------------------------------


def _gaussian_target():
    return GaussianTarget(
        torch.tensor([0.5, -0.3], dtype=F64), torch.tensor([[1.0, 0.4], [0.4, 0.6]], dtype=F64)
    )


@pytest.mark.parametrize("h", [0.4, None])
def test_kl_blob_velocity_is_the_wasserstein_gradient(h):
    target = _gaussian_target()
    obj = KL(target, h)
    x, _ = _data(n=35)
    v = obj.velocity(x, None)
    assert v.shape == x.shape and v.dtype == F64
    # with h = None the Silverman bandwidth is recomputed (detached) inside value: same number
    torch.testing.assert_close(
        v, -wasserstein_gradient(lambda z: obj.value(z, None), x), rtol=1e-9, atol=1e-11
    )
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    torch.testing.assert_close(obj.velocity(x, None, at=z), _grad_of_first_variation(obj, x, None, z))
    # at the particles the two-pass formula is used; at other points the softmax blocks: same field
    torch.testing.assert_close(v, obj.velocity(x, None, at=x), rtol=1e-10, atol=1e-12)


def test_kl_blob_velocity_at_particles_far_apart_float32():
    """Pairs far apart (exponents below -80, floored in the two-pass formula) change nothing."""
    g = torch.Generator().manual_seed(9)
    x = torch.cat([torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g) + 12.0])
    obj = KL(lambda z: -z, 0.15)
    v = obj.velocity(x, None)
    assert v.dtype == torch.float32 and torch.isfinite(v).all()
    torch.testing.assert_close(v, obj.velocity(x, None, at=x), rtol=1e-4, atol=1e-4)
    v64 = KL(lambda z: -z, 0.15).velocity(x.double(), None)
    torch.testing.assert_close(v, v64.float(), rtol=1e-4, atol=1e-4)


def test_kl_kde_velocity_is_score_minus_kde_score():
    """v_kde(z) = grad log pi(z) - grad log rho_h(z), the latter by autograd of the KDE's log density."""
    target = _gaussian_target()
    obj = KL(target, 0.5, velocity_estimator="kde")
    x, _ = _data(n=35)
    z = torch.cat([x, torch.randn(5, 2, generator=torch.Generator().manual_seed(6), dtype=F64)])
    zz = z.clone().requires_grad_(True)
    (grad_log_kde,) = torch.autograd.grad(obj._log_kde(zz, x, 0.5).sum(), zz)
    torch.testing.assert_close(
        obj.velocity(x, None, at=z), target.score(z) - grad_log_kde, rtol=1e-10, atol=1e-12
    )
    torch.testing.assert_close(obj.velocity(x, None), obj.velocity(x, None, at=x), rtol=1e-12, atol=1e-13)


def test_kl_log_density_is_the_gaussian_kde():
    x, _ = _data(n=25)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(7), dtype=F64)
    h = 0.6
    dens = np.mean(
        [norm.pdf(z[:, 0].numpy(), xi[0], h) * norm.pdf(z[:, 1].numpy(), xi[1], h) for xi in x.numpy()],
        axis=0,
    )
    got = KL(_gaussian_target(), h)._log_kde(z, x, h)
    np.testing.assert_allclose(got.numpy(), np.log(dens), rtol=1e-12)


def test_kl_kde_bias_stationary_at_target_minus_h2():
    """The plug-in KDE velocity vanishes when rho * K_h = pi, i.e. for pi = N(0, 1) at
    rho = N(0, 1 - h^2), not at rho = pi; there it is -h^2/(1 + h^2) z (the documented bias).
    Particles are the n quantiles of rho, so the only error is the O(1/n) quantisation."""
    h = 0.5
    target = GaussianTarget(torch.zeros(1, dtype=F64), torch.ones(1, 1, dtype=F64))
    obj = KL(target, h, velocity_estimator="kde")
    levels = (np.arange(4000) + 0.5) / 4000
    z = torch.linspace(-1.5, 1.5, 7, dtype=F64)[:, None]
    x_shrunk = torch.tensor(norm.ppf(levels) * math.sqrt(1 - h * h), dtype=F64)[:, None]
    x_exact = torch.tensor(norm.ppf(levels), dtype=F64)[:, None]
    assert float(obj.velocity(x_shrunk, None, at=z).abs().max()) < 2e-3
    torch.testing.assert_close(obj.velocity(x_exact, None, at=z), -h * h / (1 + h * h) * z, rtol=0, atol=2e-3)


def test_kde_bandwidth_silverman():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 2, generator=g, dtype=F64) * torch.tensor([1.0, 3.0], dtype=F64)
    sigma = float(x.std(0).mean())
    assert kde_bandwidth(x) == pytest.approx((4 / 4) ** (1 / 6) * 500 ** (-1 / 6) * sigma, rel=1e-12)
    x1 = x[:, :1]
    assert kde_bandwidth(x1) == pytest.approx((4 / 3) ** 0.2 * 500**-0.2 * float(x1.std()), rel=1e-12)
    assert (4 / 3) ** 0.2 == pytest.approx(1.0592, abs=1e-4)  # the familiar 1.06 sigma n^{-1/5}
    with pytest.raises(ValueError, match="zero spread"):
        kde_bandwidth(torch.ones(5, 2))
    with pytest.raises(ValueError, match="at least 2"):
        kde_bandwidth(torch.ones(1, 2))


def test_kl_chunked_equals_unchunked():
    target = _gaussian_target()
    x, _ = _data(n=33)
    z = torch.randn(9, 2, generator=torch.Generator().manual_seed(8), dtype=F64)
    for est in ("blob", "kde"):
        full = KL(target, 0.5, velocity_estimator=est, chunk_size=1000)
        part = KL(target, 0.5, velocity_estimator=est, chunk_size=5)
        torch.testing.assert_close(part.velocity(x, None), full.velocity(x, None), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(part.velocity(x, None, at=z), full.velocity(x, None, at=z))
        torch.testing.assert_close(part.value(x, None), full.value(x, None), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(part.first_variation(x, None, z), full.first_variation(x, None, z))


def test_kl_bad_inputs():
    target = _gaussian_target()
    x, _ = _data()
    with pytest.raises(TypeError, match="score"):
        KL(3.0)
    with pytest.raises(ValueError, match="kde_bandwidth must be positive"):
        KL(target, -1.0)
    with pytest.raises(ValueError, match="velocity_estimator"):
        KL(target, velocity_estimator="svgd")
    with pytest.raises(ValueError, match="needs log_prob"):
        KL(target.score).value(x, None)
    with pytest.raises(ValueError, match="score must return"):
        KL(lambda z: z[:, 0]).velocity(x, None)
    # a score callable alone is enough for the velocity
    torch.testing.assert_close(KL(target.score, 0.5).velocity(x, None), KL(target, 0.5).velocity(x, None))


# ------------------------------------------------------------------------------------------
# sliced Wasserstein
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n,m", [(40, 40), (40, 57), (33, 20)])
def test_sliced_velocity_is_the_wasserstein_gradient(n, m):
    x, y = _data(n=n, m=m, d=3)
    obj = SlicedWasserstein(30, generator=torch.Generator().manual_seed(0))
    theta = obj.sample_projections(3, dtype=F64)
    assert theta.shape == (30, 3)
    torch.testing.assert_close(theta.norm(dim=1), torch.ones(30, dtype=F64))
    v = obj.velocity(x, y, projections=theta)
    ag = -wasserstein_gradient(lambda z: obj.value(z, y, projections=theta), x)
    torch.testing.assert_close(v, ag, rtol=1e-10, atol=1e-12)
    # at the particles themselves, the interpolated CDF gives back the rank levels
    torch.testing.assert_close(obj.velocity(x, y, at=x, projections=theta), v, rtol=1e-12, atol=1e-13)


def test_sliced_in_1d_is_sorted_matching():
    """d = 1: F = 1/2 W2^2 = 1/2 mean((x_(i) - y_(i))^2) and v(x_i) = y_(rank i) - x_i (MATH §6.6)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50, 1, generator=g, dtype=F64)
    y = 2.0 + 0.5 * torch.randn(50, 1, generator=g, dtype=F64)
    obj = SlicedWasserstein(5, generator=torch.Generator().manual_seed(1))  # directions are +-1
    xs, ys = x[:, 0].sort().values, y[:, 0].sort().values
    assert float(obj.value(x, y)) == pytest.approx(0.5 * float((xs - ys).pow(2).mean()), rel=1e-12)
    assert float(obj.value(x, y)) == pytest.approx(0.5 * float(metrics.w2_squared(x, y)), rel=1e-9)
    ranks = x[:, 0].argsort().argsort()
    torch.testing.assert_close(obj.velocity(x, y), (ys[ranks] - x[:, 0])[:, None], rtol=1e-12, atol=1e-13)


def test_sliced_in_1d_unequal_sizes_uses_hazen_quantiles():
    """n != m: the target quantile at level (r + 1/2)/n interpolates the sorted targets placed at
    levels (j + 1/2)/m: numpy's "hazen" quantile."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(30, 1, generator=g, dtype=F64)
    y = torch.rand(47, 1, generator=g, dtype=F64) * 3
    ranks = x[:, 0].argsort().argsort().numpy()
    q = np.quantile(y[:, 0].numpy(), (ranks + 0.5) / 30, method="hazen")
    v = SlicedWasserstein(3).velocity(x, y)
    np.testing.assert_allclose(v[:, 0].numpy(), q - x[:, 0].numpy(), rtol=1e-12, atol=1e-13)


def test_sliced_value_matches_isotropic_gaussian_closed_form():
    """MATH §6.6: SW2^2(N(m1, s1^2 I), N(m2, s2^2 I)) = |m1 - m2|^2 / d + (s1 - s2)^2."""
    g = torch.Generator().manual_seed(5)
    n, d = 4000, 3
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.tensor([1.2, 0.0, 0.0], dtype=F64) + 0.5 * torch.randn(n, d, generator=g, dtype=F64)
    exact = 1.2**2 / d + 0.5**2
    obj = SlicedWasserstein(800, generator=torch.Generator().manual_seed(6))
    # sd over 800 directions: 1.44 * sd(theta_1^2) / sqrt(800) ~ 0.015; sampling error ~ 0.005
    assert 2 * float(obj.value(x, y)) == pytest.approx(exact, abs=0.05)


def test_sliced_bad_inputs():
    x, y = _data()
    with pytest.raises(ValueError, match="n_projections must be an integer >= 1"):
        SlicedWasserstein(0)
    with pytest.raises(TypeError, match="generator"):
        SlicedWasserstein(10, generator=0)
    with pytest.raises(ValueError, match="unit-norm"):
        SlicedWasserstein(2).velocity(x, y, projections=2 * torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="projections must have 2 columns"):
        SlicedWasserstein(2).value(x, y, projections=torch.eye(3, dtype=F64))


# ------------------------------------------------------------------------------------------
# energy-kernel MMD by slicing
# ------------------------------------------------------------------------------------------


def test_slicing_constant_closed_forms_and_monte_carlo():
    """|u| = c_d E|theta^T u|: c_1 = 1, c_2 = pi/2, c_3 = 2, c_4 = 3 pi / 4; d = 6 by Monte Carlo."""
    for d, c in [(1, 1.0), (2, math.pi / 2), (3, 2.0), (4, 3 * math.pi / 4)]:
        assert slicing_constant(d) == pytest.approx(c, rel=1e-12)
    g = torch.randn(400_000, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    mean_abs = float((g[:, 0] / g.norm(dim=1)).abs().mean())  # sd of the mean ~ 5e-4
    assert 1.0 / mean_abs == pytest.approx(slicing_constant(6), rel=3e-3)


@pytest.mark.parametrize("n,m,d", [(40, 40, 2), (40, 57, 2), (33, 20, 3)])
def test_sliced_energy_velocity_is_the_wasserstein_gradient(n, m, d):
    x, y = _data(n=n, m=m, d=d)
    obj = SlicedEnergyMMD(25, generator=torch.Generator().manual_seed(0))
    theta = obj.sample_projections(d, dtype=F64)
    assert theta.shape == (25, d)
    torch.testing.assert_close(theta.norm(dim=1), torch.ones(25, dtype=F64))
    v = obj.velocity(x, y, projections=theta)
    ag = -wasserstein_gradient(lambda z: obj.value(z, y, projections=theta), x)
    torch.testing.assert_close(v, ag, rtol=1e-10, atol=1e-12)
    # the binary-search path at other points gives the same numbers at the particles themselves
    torch.testing.assert_close(obj.velocity(x, y, at=x, projections=theta), v, rtol=1e-12, atol=1e-13)


def test_sliced_energy_in_1d_is_the_energy_mmd():
    """d = 1: the directions are +-1 and c_1 = 1, so the sliced estimate is exact."""
    x, y = _data(n=31, m=45, d=1, seed=2)
    obj, exact = SlicedEnergyMMD(3), MMD("energy")
    assert float(obj.value(x, y)) == pytest.approx(float(exact.value(x, y)), rel=1e-12)
    torch.testing.assert_close(obj.velocity(x, y), exact.velocity(x, y), rtol=1e-12, atol=1e-13)
    at = torch.linspace(-3, 3, 17, dtype=F64)[:, None]
    torch.testing.assert_close(obj.velocity(x, y, at=at), exact.velocity(x, y, at=at), rtol=1e-12, atol=1e-13)


def test_sliced_energy_grid_in_2d_matches_the_exact_energy_mmd():
    """A rotated grid of 64 angles is within 0.5% of the exact O(n^2) velocity; independent random
    directions, as many, are much further off (the reason for the grid in 2-D)."""
    x, y = _data(n=400, m=300, d=2, seed=3)
    exact = MMD("energy")
    v_exact = exact.velocity(x, y)

    def rel(obj):
        return float((obj.velocity(x, y) - v_exact).norm() / v_exact.norm())

    grid = SlicedEnergyMMD(64, generator=torch.Generator().manual_seed(0))
    rand = SlicedEnergyMMD(64, generator=torch.Generator().manual_seed(0), directions="random")
    assert rel(grid) < 5e-3
    assert rel(rand) > 10 * rel(grid)
    assert float(grid.value(x, y)) == pytest.approx(float(exact.value(x, y)), rel=1e-4)


def test_sliced_energy_random_directions_are_unbiased_in_3d():
    """The mean of independent estimates (random directions) approaches the exact velocity."""
    x, y = _data(n=60, m=50, d=3, seed=4)
    obj = SlicedEnergyMMD(50, generator=torch.Generator().manual_seed(1))
    v_exact = MMD("energy").velocity(x, y)
    one = obj.velocity(x, y)
    mean = torch.stack([obj.velocity(x, y) for _ in range(400)]).mean(0)
    err_one = float((one - v_exact).norm() / v_exact.norm())
    err_mean = float((mean - v_exact).norm() / v_exact.norm())
    assert err_mean < 0.02 and err_mean < err_one / 5  # sd shrinks as 1/sqrt(401)


def test_sliced_energy_bad_inputs():
    x, y = _data()
    with pytest.raises(ValueError, match="n_projections must be an integer >= 1"):
        SlicedEnergyMMD(0)
    with pytest.raises(TypeError, match="generator"):
        SlicedEnergyMMD(10, generator=0)
    with pytest.raises(ValueError, match="directions must be"):
        SlicedEnergyMMD(10, directions="sobol")
    with pytest.raises(ValueError, match="needs d == 2"):
        SlicedEnergyMMD(10, directions="grid").sample_projections(3)
    with pytest.raises(ValueError, match="unit-norm"):
        SlicedEnergyMMD(2).velocity(x, y, projections=2 * torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="y must"):
        SlicedEnergyMMD(2).value(x, y[:, :1])


# ------------------------------------------------------------------------------------------
# Sinkhorn divergence
# ------------------------------------------------------------------------------------------


def _barycentric(x, y, eps):
    """Row-normalised entropic plan of POT's ot.solve (cost |x-y|^2/2) applied to y."""
    a = torch.full((x.shape[0],), 1 / x.shape[0], dtype=F64)
    b = torch.full((y.shape[0],), 1 / y.shape[0], dtype=F64)
    P = ot.solve(
        0.5 * torch.cdist(x, y).pow(2),
        a,
        b,
        reg=eps,
        reg_type="KL",
        method="sinkhorn_log",
        max_iter=20_000,
        tol=1e-13,
    ).plan
    return (P @ y) / P.sum(1, keepdim=True)


# the lazy solver in blocks of 16 rows: several blocks even at these sizes
SOLVERS = [dict(solver="dense"), dict(solver="lazy", chunk_size=16)]


@pytest.mark.parametrize("solver", SOLVERS, ids=["dense", "lazy"])
def test_sinkhorn_velocity_is_the_barycentric_projection_difference(solver):
    x, y = _data(n=30, m=40)
    eps = 0.3
    obj = SinkhornDivergence(eps, max_iter=20_000, tol=1e-13, **solver)
    v = obj.velocity(x, y)
    expected = _barycentric(x, y, eps) - _barycentric(x, x, eps)
    torch.testing.assert_close(v, expected, rtol=1e-7, atol=1e-8)
    # not debiased: E_P[y | x] - x
    v_biased = SinkhornDivergence(eps, debiased=False, max_iter=20_000, tol=1e-13, **solver).velocity(x, y)
    torch.testing.assert_close(v_biased, _barycentric(x, y, eps) - x, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("debiased", [True, False])
def test_sinkhorn_velocity_is_the_wasserstein_gradient(debiased):
    x, y = _data(n=30, m=40)
    obj = SinkhornDivergence(0.3, debiased=debiased, max_iter=20_000, tol=1e-13)
    v = obj.velocity(x, y)
    torch.testing.assert_close(v, -wasserstein_gradient(lambda z: obj.value(z, y), x), rtol=1e-6, atol=1e-8)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(9), dtype=F64)
    torch.testing.assert_close(obj.velocity(x, y, at=z), _grad_of_first_variation(obj, x, y, z))
    torch.testing.assert_close(obj.velocity(x, y, at=x), v, rtol=1e-10, atol=1e-12)


def test_sinkhorn_lazy_solver_equals_the_dense_one():
    """POT's online solver (cost recomputed by blocks) gives the dense solver's value, velocity,
    potentials and gradient; the value's gradient in y too (envelope theorem in both arguments)."""
    x, y = _data(n=30, m=40)
    kw = dict(max_iter=20_000, tol=1e-13)
    dense, lazy = SinkhornDivergence(0.3, **kw), SinkhornDivergence(0.3, solver="lazy", chunk_size=16, **kw)
    z = torch.randn(6, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    torch.testing.assert_close(lazy.velocity(x, y), dense.velocity(x, y), rtol=1e-9, atol=1e-11)
    fl, fd = lazy.first_variation(x, y, z), dense.first_variation(x, y, z)  # up to a constant
    torch.testing.assert_close(fl - fl.mean(), fd - fd.mean(), rtol=1e-9, atol=1e-11)
    xs, ys = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    xl, yl = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
    vd, vl = dense.value(xs, ys), lazy.value(xl, yl)
    torch.testing.assert_close(vl, vd, rtol=1e-10, atol=1e-12)
    gd, gl = torch.autograd.grad(vd, (xs, ys)), torch.autograd.grad(vl, (xl, yl))
    torch.testing.assert_close(gl, gd, rtol=1e-8, atol=1e-10)
    assert "solver='lazy'" in repr(lazy)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_lazy_solver_follows_the_dense_flow_with_few_iterations():
    """Unconverged, warm-started solves (a few iterations per flow step) depend on the order of the
    updates; the lazy solver alternates in the dense one's order, so the flows coincide."""
    x, y = _data(n=30, m=40)
    kw = dict(max_iter=3, warm_start=True)
    dense, lazy = SinkhornDivergence(0.1, **kw), SinkhornDivergence(0.1, solver="lazy", chunk_size=16, **kw)
    xd, xl = x.clone(), x.clone()
    for _ in range(4):
        xd, xl = xd + dense.velocity(xd, y), xl + lazy.velocity(xl, y)
    torch.testing.assert_close(xl, xd, rtol=1e-10, atol=1e-12)
    assert float((xd - x).abs().max()) > 0.1  # the particles did move


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_value_conventions():
    """Cost |x-y|^2/2 with eps is half of metrics' cost |x-y|^2 with 2 eps."""
    x, y = _data(n=30, m=40)
    obj = SinkhornDivergence(0.25, max_iter=5000, tol=1e-11)
    other = metrics.sinkhorn_divergence(x, y, eps=0.5)
    assert float(obj.value(x, y)) == pytest.approx(0.5 * float(other), rel=1e-6)
    # small eps: close to half the exact W2^2 (S_eps -> W2^2 / 2 as eps -> 0; observed ratio 0.990)
    small = SinkhornDivergence(0.05, max_iter=5000, tol=1e-9)
    w2 = float(metrics.w2_squared(x, y))
    assert float(small.value(x, y)) == pytest.approx(0.5 * w2, rel=0.02)


@pytest.mark.parametrize("solver", SOLVERS, ids=["dense", "lazy"])
def test_sinkhorn_warm_start_agrees_with_cold_start_and_saves_iterations(solver):
    x, y = _data(n=30, m=40)
    cold = SinkhornDivergence(0.3, max_iter=20_000, tol=1e-12, **solver)
    warm = SinkhornDivergence(0.3, max_iter=20_000, tol=1e-12, warm_start=True, **solver)
    torch.testing.assert_close(warm.velocity(x, y), cold.velocity(x, y), rtol=1e-8, atol=1e-10)
    x2 = x + 0.05 * cold.velocity(x, y)  # one small flow step
    exact = cold.velocity(x2, y)
    torch.testing.assert_close(warm.velocity(x2, y), exact, rtol=1e-7, atol=1e-9)
    # other shapes: the stored potentials are not reused
    torch.testing.assert_close(warm.velocity(x2[:20], y), cold.velocity(x2[:20], y), rtol=1e-7, atol=1e-9)
    # with only 3 iterations, a warm start from the previous step is far more accurate than a cold one
    warm.velocity(x, y)
    warm.max_iter = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        err_warm = float((warm.velocity(x2, y) - exact).abs().max())
        err_cold = float((SinkhornDivergence(0.3, max_iter=3, **solver).velocity(x2, y) - exact).abs().max())
    assert err_warm < 0.3 * err_cold, (err_warm, err_cold)  # observed 0.04 vs 0.23


def test_sinkhorn_float32_can_converge():
    """The default tol (1e-9) is below float32 round-off; it is raised to 10 float32 eps, so an easy
    float32 problem stops without a non-convergence warning."""
    x, y = _data(n=30, m=40, dtype=torch.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        v32 = SinkhornDivergence(0.5).velocity(x, y)
    assert not [w for w in caught if "did not converge" in str(w.message)]
    v64 = SinkhornDivergence(0.5, tol=1e-12, max_iter=10_000).velocity(x.double(), y.double())
    torch.testing.assert_close(v32.double(), v64, rtol=0, atol=1e-4)


def test_sinkhorn_bad_inputs():
    x, y = _data()
    with pytest.raises(ValueError, match="eps must be positive"):
        SinkhornDivergence(0.0)
    with pytest.raises(ValueError, match="max_iter must be an integer >= 1"):
        SinkhornDivergence(0.1, max_iter=0)
    with pytest.raises(ValueError, match="same dimension"):
        SinkhornDivergence(0.1).velocity(x, y[:, :1])
    with pytest.raises(ValueError, match=r"solver must be one of \['auto', 'dense', 'geomloss', 'lazy'\]"):
        SinkhornDivergence(0.1, solver="keops")
    with pytest.raises(ValueError, match="chunk_size"):
        SinkhornDivergence(0.1, solver="lazy", chunk_size=0)
    with pytest.raises(ValueError, match=r"scaling must be in \(0, 1\)"):
        SinkhornDivergence(0.1, scaling=1.0)


def test_sinkhorn_geomloss_missing_or_warm_start_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "geomloss", None)  # import geomloss now raises ImportError
    with pytest.raises(ImportError, match=r"gwf-tutorial\[gpu\]"):
        SinkhornDivergence(0.1, solver="geomloss")
    assert SinkhornDivergence(0.1, solver="auto")._solver_for(torch.zeros(1, 2)) == "dense"  # CPU
    monkeypatch.delitem(sys.modules, "geomloss")
    if find_spec("geomloss") is not None:
        with pytest.raises(ValueError, match="warm_start=True is not available"):
            SinkhornDivergence(0.1, solver="geomloss", warm_start=True)


def test_sinkhorn_geomloss_solver_equals_the_dense_one():
    """GeomLoss (tensorized backend on a CPU) with the same conventions: value, velocity at the
    particles and elsewhere, first variation, debiased or not, to its eps-scaling error, which
    shrinks as ``scaling`` tends to 1 (value ~1e-4 relative, velocity ~0.5% of its size at 0.95)."""
    pytest.importorskip("geomloss")
    x, y = _data(n=60, m=70)
    z = x[:20] + 0.3
    for debiased in (True, False):
        dense = SinkhornDivergence(0.3, debiased=debiased, max_iter=20_000, tol=1e-13)
        geo = SinkhornDivergence(0.3, debiased=debiased, solver="geomloss", scaling=0.95)
        torch.testing.assert_close(geo.value(x, y), dense.value(x, y), rtol=2e-4, atol=0)
        v_dense = dense.velocity(x, y)
        tol = 0.01 * float(v_dense.abs().max())
        torch.testing.assert_close(geo.velocity(x, y), v_dense, rtol=0, atol=tol)
        torch.testing.assert_close(geo.velocity(x, y, at=z), dense.velocity(x, y, at=z), rtol=0, atol=tol)
        fv_geo, fv_dense = geo.first_variation(x, y, z), dense.first_variation(x, y, z)
        torch.testing.assert_close(fv_geo - fv_geo.mean(), fv_dense - fv_dense.mean(), rtol=0, atol=tol)
        # the velocity is the Wasserstein gradient of GeomLoss's value, to the same error
        grad = -wasserstein_gradient(lambda q, geo=geo: geo.value(q, y), x)
        torch.testing.assert_close(geo.velocity(x, y), grad, rtol=0, atol=tol)
    v_dense = SinkhornDivergence(0.3, max_iter=20_000, tol=1e-13).velocity(x, y)
    errors = [
        float((SinkhornDivergence(0.3, solver="geomloss", scaling=s).velocity(x, y) - v_dense).abs().max())
        for s in (0.9, 0.99)
    ]
    assert errors[1] < errors[0] / 3, errors


# ------------------------------------------------------------------------------------------
# objective registry, dtypes
# ------------------------------------------------------------------------------------------


def test_get_objective():
    assert isinstance(get_objective("mmd"), MMD)
    assert isinstance(get_objective("mmd", kernel="gaussian", bandwidth=0.5).kernel, GaussianKernel)
    assert isinstance(get_objective("MMD", kernel="multi").kernel, MultiBandwidthKernel)
    assert isinstance(get_objective("sw", n_projections=7), SlicedWasserstein)
    assert get_objective("sliced_wasserstein").n_projections == 200
    assert get_objective("sinkhorn", eps=0.2).eps == 0.2
    assert get_objective("sliced_energy", n_projections=8).n_projections == 8
    assert isinstance(get_objective("kl", target=_gaussian_target()), KL)
    obj = SlicedWasserstein(3)
    assert get_objective(obj) is obj
    with pytest.raises(TypeError, match="kwargs cannot be combined"):
        get_objective(obj, n_projections=4)
    with pytest.raises(ValueError, match="unknown objective"):
        get_objective("wasserstein_gan")
    with pytest.raises(TypeError, match="objective must be a name"):
        get_objective(3)


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_velocities_keep_dtype(dtype):
    x, y = _data(n=20, m=25, dtype=dtype)
    objs = [
        MMD("gaussian"),
        MMD("energy"),
        SlicedWasserstein(10),
        SlicedEnergyMMD(10),
        SinkhornDivergence(0.5),
    ]
    for obj in objs:
        assert obj.velocity(x, y).dtype == dtype, obj
        assert obj.value(x, y).dtype == dtype, obj
    target = _gaussian_target()
    kl = KL(lambda z: target.score(z.double()).to(z.dtype), 0.5)
    assert kl.velocity(x, None).dtype == dtype


# ------------------------------------------------------------------------------------------------
# Host synchronisations: inputs are checked once per call, never per block
# ------------------------------------------------------------------------------------------------
# The Python-level ways a tensor's value reaches the host (on a GPU each one waits for the device).
_SYNC_METHODS = ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__")


def _count_syncs(monkeypatch, fn) -> int:
    """Number of calls of the ``_SYNC_METHODS`` of ``torch.Tensor`` made by ``fn()``."""
    count = [0]

    def counting(orig):
        def wrapped(self, *args, **kwargs):
            count[0] += 1
            return orig(self, *args, **kwargs)

        return wrapped

    with monkeypatch.context() as mp:
        for name in _SYNC_METHODS:
            mp.setattr(torch.Tensor, name, counting(getattr(torch.Tensor, name)))
        fn()
    return count[0]


def test_sync_counter_sees_syncs_in_a_loop(monkeypatch):
    """The counter is not blind: a loop with one ``bool(tensor)`` per block counts one per block."""
    t = torch.ones(8)
    assert _count_syncs(monkeypatch, lambda: [bool(t[i] > 0) for i in range(8)]) == 8
    assert _count_syncs(monkeypatch, lambda: [float(t[i]) + t[i].item() for i in range(3)]) == 6


def _sync_objectives():
    target = _gaussian_target()
    fixed = dict(max_iter=20, tol=1e-300)  # 20 Sinkhorn iterations at every size (tol never reached)
    return {
        "mmd_gaussian": MMD("gaussian", chunk_size=64),
        "mmd_energy": MMD("energy", chunk_size=64),
        "mmd_imq": MMD("imq", 1.0, chunk_size=64),
        "mmd_multi": MMD("multi", chunk_size=64),
        "kl_blob": KL(target, chunk_size=64),
        "kl_kde": KL(target, 0.5, velocity_estimator="kde", chunk_size=64),
        "sw": SlicedWasserstein(16, generator=torch.Generator().manual_seed(0)),
        "sliced_energy": SlicedEnergyMMD(16, generator=torch.Generator().manual_seed(0)),
        "sinkhorn_dense": SinkhornDivergence(0.5, **fixed),
        "sinkhorn_lazy": SinkhornDivergence(0.5, solver="lazy", chunk_size=64, **fixed),
    }


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("key", list(_sync_objectives()))
def test_host_syncs_per_call_do_not_grow_with_n(key, monkeypatch):
    """``value`` and ``velocity`` (at the particles and elsewhere) make as many host syncs at
    n = 1000 (16 blocks of 64 rows) as at n = 200 (4 blocks): none inside the block loops."""
    counts = {}
    for n in (200, 1000):
        obj = _sync_objectives()[key]
        x, y = _data(n=n, m=n, seed=1)
        z = x[: n // 2] + 0.1
        yy = None if isinstance(obj, KL) else y
        counts[n] = [
            _count_syncs(monkeypatch, lambda obj=obj, x=x, yy=yy: obj.value(x, yy)),
            _count_syncs(monkeypatch, lambda obj=obj, x=x, yy=yy: obj.velocity(x, yy)),
            _count_syncs(monkeypatch, lambda obj=obj, x=x, yy=yy, z=z: obj.velocity(x, yy, at=z)),
        ]
    assert counts[200] == counts[1000], counts
    # validation: a handful of syncs per call (finiteness of each input, a median, a bandwidth); with
    # Sinkhorn also POT's, per solve: a convergence check every 10 iterations, the lazy solver's copies
    limit = 24 if key.startswith("sinkhorn") else 12
    assert max(counts[1000]) <= limit, counts


def test_block_rows_follow_the_device():
    """CPU: blocks of 2**20 entries; GPU (free memory given): one block when 16 (n, m) matrices fit
    in a quarter of the free memory, else as many rows as fit."""
    assert Fn._block_rows(4000, 8000, 4, None) == 2**20 // 8000
    assert Fn._block_rows(4000, 8000, 4, 100 * 2**30) == 4000
    assert Fn._block_rows(16000, 32000, 4, 2**30) == (2**30 // 4) // (32000 * 4 * 16)
    assert Fn._block_rows(16000, 32000, 4, 10) == 1
    x = torch.zeros(5000, 2)
    assert Fn._free_device_bytes(x.device) is None
    assert Fn._row_slices(5000, 3000, None, x)[0] == slice(0, 2**20 // 3000)


# ------------------------------------------------------------------------------------------------
# Extreme values: refused in float32, scale laws in float64
# ------------------------------------------------------------------------------------------------
def test_extreme_values_float32_refused_float64_scale_equivariant():
    """1e30 overflows float32 squares: refused with the argument named. In float64 the energy MMD,
    sliced W2 and Sinkhorn objectives follow their scale laws (value s, s^2, s^2 with eps s^2;
    velocity 1, s, s)."""
    x, y = _data()
    s = 1e30
    gen = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    cases = [  # (objective at scale s, at scale 1, power of s of the value, of the velocity)
        (MMD("energy"), MMD("energy"), 1, 0),
        (SlicedWasserstein(20, generator=gen()), SlicedWasserstein(20, generator=gen()), 2, 1),
        (SinkhornDivergence(0.5 * s**2, max_iter=200), SinkhornDivergence(0.5, max_iter=200), 2, 1),
    ]
    for big, small, p_value, p_velocity in cases:
        with pytest.raises(ValueError, match=r"^x holds values up to .*, too large for torch.float32"):
            big.value((s * x).float(), y.float())
        with pytest.raises(ValueError, match=r"^y holds values up to .*, too large for torch.float32"):
            big.velocity(x.float(), (s * y).float())
        torch.testing.assert_close(big.value(s * x, s * y), s**p_value * small.value(x, y), rtol=1e-9, atol=0)
        v_big, v_small = big.velocity(s * x, s * y), small.velocity(x, y)
        torch.testing.assert_close(v_big, s**p_velocity * v_small, rtol=1e-9, atol=1e-12 * s**p_velocity)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd2_estimate_matches_the_explicit_statistic_in_blocks_or_whole(unbiased):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(23, 2, generator=g, dtype=torch.float64)
    y = torch.randn(17, 2, generator=g, dtype=torch.float64) + 0.4
    k = GaussianKernel(0.8)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    if unbiased:
        ref = (kxx.sum() - kxx.trace()) / (23 * 22) + (kyy.sum() - kyy.trace()) / (17 * 16)
    else:
        ref = kxx.mean() + kyy.mean()
    ref = ref - 2 * kxy.mean()
    for chunk_size in (0, 5, None):
        est = Fn.mmd2_estimate(k._gram, x, y, unbiased=unbiased, chunk_size=chunk_size)
        torch.testing.assert_close(est, ref, rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="at least 2 samples"):
        Fn.mmd2_estimate(k._gram, x[:1], y, unbiased=True)
