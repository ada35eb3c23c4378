"""Tests of gwf_tutorial.targets: densities against scipy and numerical integration, scores against
autograd and finite differences, samples against the stated parameters and supports, the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import logsumexp
from scipy.stats import multivariate_normal, norm

from gwf_tutorial import targets as T
from gwf_tutorial.targets import (
    Banana,
    Checkerboard,
    Gaussian,
    GaussianMixture,
    Rings,
    Spirals,
    SwissRoll,
    TwoMoons,
    get_target,
    list_targets,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mixture_3d() -> GaussianMixture:
    """Three modes in 3-D, arbitrary weights and full covariances."""
    means = [[0.0, 0.0, 0.0], [3.0, -1.0, 0.5], [-2.0, 2.0, 1.0]]
    covs = [
        [[1.0, 0.3, 0.1], [0.3, 0.5, -0.2], [0.1, -0.2, 0.8]],
        [[0.4, 0.0, 0.1], [0.0, 0.9, 0.2], [0.1, 0.2, 0.3]],
        [[2.0, -0.5, 0.0], [-0.5, 1.0, 0.3], [0.0, 0.3, 0.6]],
    ]
    return GaussianMixture(means, covs, weights=[2.0, 5.0, 3.0], name="m3")


def _grid(lo: float, hi: float, k: int):
    """Midpoints of a k x k grid on [lo, hi]^2 and the cell area."""
    h = (hi - lo) / k
    c = lo + h * (torch.arange(k, dtype=F64) + 0.5)
    gx, gy = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1), h * h


# --------------------------------------------------------------------------------------------
# densities against independent computations
# --------------------------------------------------------------------------------------------


def test_gaussian_log_prob_matches_scipy():
    mean = [1.0, -0.5, 2.0]
    cov = [[1.0, 0.6, 0.2], [0.6, 0.8, -0.1], [0.2, -0.1, 0.5]]
    t = Gaussian(mean, cov)
    x = torch.randn(50, 3, generator=_gen(1), dtype=F64) * 2
    ref = multivariate_normal(mean, cov).logpdf(x.numpy())
    np.testing.assert_allclose(t.log_prob(x).numpy(), ref, rtol=1e-12, atol=1e-12)
    # score: closed form -Sigma^{-1}(x - m)
    ref_score = -(x.numpy() - np.array(mean)) @ np.linalg.inv(np.array(cov)).T
    np.testing.assert_allclose(t.score(x).numpy(), ref_score, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["eight_gaussians", "sjko_8gaussians", "twenty_five_gaussians"])
def test_registry_mixtures_log_prob_match_scipy(name):
    t = get_target(name)
    x = t.sample(40, generator=_gen(2), dtype=F64) + 0.05 * torch.randn(40, 2, generator=_gen(3), dtype=F64)
    comps = [
        math.log(w) + multivariate_normal(m, c).logpdf(x.numpy())
        for w, m, c in zip(t.weights.tolist(), t.means.numpy(), t.covs.numpy())
    ]
    np.testing.assert_allclose(t.log_prob(x).numpy(), logsumexp(np.stack(comps), axis=0), rtol=1e-10)


def test_mixture_full_covariances_log_prob_matches_scipy():
    t = _mixture_3d()
    x = torch.randn(60, 3, generator=_gen(4), dtype=F64) * 2.5
    w = np.array([0.2, 0.5, 0.3])
    pdf = sum(wk * multivariate_normal(m, c).pdf(x.numpy()) for wk, m, c in zip(w, t.means, t.covs))
    np.testing.assert_allclose(t.log_prob(x).numpy(), np.log(pdf), rtol=1e-11)
    np.testing.assert_allclose(t.weights.numpy(), w, rtol=1e-15)


def test_mixture_covs_forms():
    """A number, per-mode stds (K,), one shared (d, d) and (K, d, d) covariances."""
    means = torch.tensor([[0.0, 0.0], [2.0, 1.0]], dtype=F64)
    eye = torch.eye(2, dtype=F64)
    a = GaussianMixture(means, 0.5)
    torch.testing.assert_close(a.covs, 0.25 * eye.expand(2, 2, 2))
    b = GaussianMixture(means, [0.5, 2.0])
    torch.testing.assert_close(b.covs, torch.stack([0.25 * eye, 4.0 * eye]))
    torch.testing.assert_close(b.stds, torch.tensor([0.5, 2.0], dtype=F64))
    S = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=F64)
    c = GaussianMixture(means, S)
    torch.testing.assert_close(c.covs, S.expand(2, 2, 2))
    # stds = sqrt of the largest eigenvalue
    torch.testing.assert_close(c.stds, torch.linalg.eigvalsh(S)[-1].sqrt().expand(2))


def test_banana_density_normalised_and_matches_formula():
    t = Banana()
    x = torch.randn(30, 2, generator=_gen(5), dtype=F64) * 2
    a, b, s = 2.0, 0.25, 0.5
    x1, x2 = x[:, 0].numpy(), x[:, 1].numpy()
    ref = norm(0, a).logpdf(x1) + norm(b * (x1**2 - a * a), s).logpdf(x2)
    np.testing.assert_allclose(t.log_prob(x).numpy(), ref, rtol=1e-12)
    # integrates to one (iterated quadrature: inner over x2, outer over x1)
    val, _ = integrate.dblquad(
        lambda x2_, x1_: float(t.log_prob(torch.tensor([[x1_, x2_]], dtype=F64)).exp()),
        -12,
        12,
        lambda x1_: b * (x1_**2 - a * a) - 6 * s,
        lambda x1_: b * (x1_**2 - a * a) + 6 * s,
        epsabs=1e-7,
    )
    assert val == pytest.approx(1.0, abs=1e-6)


def test_rings_log_prob_matches_angular_quadrature():
    """p_k(x) = (1/2pi) int N(x; c + r(cos t, sin t), s^2 I) dt, checked by quadrature."""
    t = Rings(
        radii=[0.0, 1.0, 2.5], std=[0.3, 0.2, 0.4], weights=[1, 2, 3], centers=[[0, 0], [1, 0], [0, -1]]
    )
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.3, -0.7], [2.0, 2.0], [-3.0, 1.0]], dtype=F64)

    def gauss_on_circle(th, p, r, s, c):
        d2 = (p[0] - c[0] - r * math.cos(th)) ** 2 + (p[1] - c[1] - r * math.sin(th)) ** 2
        return math.exp(-d2 / (2 * s * s)) / (2 * math.pi * s * s)

    def ref(p):
        total = 0.0
        rings = zip([1 / 6, 2 / 6, 3 / 6], [0.0, 1.0, 2.5], [0.3, 0.2, 0.4], [(0, 0), (1, 0), (0, -1)])
        for w, r, s, c in rings:
            val, _ = integrate.quad(
                gauss_on_circle, 0, 2 * math.pi, args=(p, r, s, c), epsabs=1e-14, epsrel=1e-12, limit=200
            )
            total += w * val / (2 * math.pi)
        return math.log(total)

    expected = np.array([ref(p) for p in pts.tolist()])
    np.testing.assert_allclose(t.log_prob(pts).numpy(), expected, rtol=1e-9)


def test_checkerboard_density_matches_cdf_formula_and_integrates_to_one():
    """Reference in 50-digit arithmetic (mpmath), so that tail cancellations do not matter."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 50
    t = Checkerboard()  # 4 x 4 on [-1, 1]^2, noise 0.05
    x = torch.rand(60, 2, generator=_gen(6), dtype=F64) * 2.6 - 1.3
    x = torch.cat([x, torch.tensor([[3.0, 0.2], [-2.0, -2.5], [0.26, 0.24]], dtype=F64)])
    w, s = mpmath.mpf(1) / 2, mpmath.mpf(1) / 20

    def cell(v, a):  # P(v - a - w <= s Z <= v - a), from the tail on the side of the interval
        lo, hi = (v - a - w) / s, (v - a) / s
        return mpmath.ncdf(hi) - mpmath.ncdf(lo) if lo < 0 else mpmath.ncdf(-lo) - mpmath.ncdf(-hi)

    ref = []
    for x1, x2 in x.tolist():
        x1, x2 = mpmath.mpf(x1), mpmath.mpf(x2)
        dens = sum(
            cell(x1, -1 + i * w) * cell(x2, -1 + j * w)
            for i in range(4)
            for j in range(4)
            if (i + j) % 2 == 0
        )
        ref.append(float(mpmath.log(dens / (8 * w * w))))
    np.testing.assert_allclose(t.log_prob(x).numpy(), np.array(ref), rtol=1e-11)
    g, area = _grid(-1.5, 1.5, 300)
    assert float(t.log_prob(g).exp().sum() * area) == pytest.approx(1.0, abs=1e-6)


def test_checkerboard_log_prob_stable_far_away():
    """Far from the board the log-density is finite and matches the Gaussian tail (log space)."""
    t = Checkerboard()
    x = torch.tensor([[40.0, 0.3], [-25.0, -0.9]], dtype=F64)
    lp = t.log_prob(x)
    assert torch.isfinite(lp).all()
    # x1 = 40: only cells with i = 3 (a1 = 0.5) matter in x1: log(Phi((40-0.5)/s) - Phi((40-1)/s)) ~ logsf
    ref_x1 = norm.logsf((40.0 - 1.0) / 0.05)  # exact to a relative 1e-300 (the other cdf is ~1)
    # x2 = 0.3 lies in row j = 2 (black with i = 3? 3 + 2 odd -> no), so sum over black cells of row i=3
    w, s = 0.5, 0.05
    py = sum(norm.cdf((0.3 - (-1 + j * w)) / s) - norm.cdf((0.3 - (-1 + j * w) - w) / s) for j in (1, 3))
    assert float(lp[0]) == pytest.approx(ref_x1 + math.log(py) - math.log(8 * w * w), rel=1e-10)


def test_checkerboard_noiseless_density():
    t = get_target("sjko_checkerboard")
    w = 4 * math.pi / 3 / 4
    lp = t.log_prob(torch.tensor([[-2.0, -2.0], [-2.0, -1.0], [0.1, 0.1], [3.0, 0.0]], dtype=F64))
    const = -math.log(8 * w * w)
    torch.testing.assert_close(lp, torch.tensor([const, -math.inf, const, -math.inf], dtype=F64))
    s = t.score(torch.tensor([[-2.0, -2.0], [-2.0, -1.0]], dtype=F64))
    assert torch.equal(s[0], torch.zeros(2, dtype=F64)) and torch.isnan(s[1]).all()


@pytest.mark.parametrize(
    "target",
    [
        Gaussian([1.0, -0.5], [[1.0, 0.6], [0.6, 0.8]]),
        _mixture_3d(),
        get_target("eight_gaussians"),
        Banana(curvature=-0.7),
        Rings(
            radii=[0.0, 1.0, 2.5], std=[0.3, 0.2, 0.4], weights=[1, 2, 3], centers=[[0, 0], [1, 0], [0, -1]]
        ),
        get_target("two_circles"),
    ],
    ids=lambda t: t.name,
)
def test_closed_form_score_equals_autograd_of_log_prob(target):
    x = 2.0 * torch.randn(64, target.dim, generator=_gen(7), dtype=F64)
    x = torch.cat([x, target.sample(64, generator=_gen(8), dtype=F64)])
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(target.log_prob(xr).sum(), xr)
    torch.testing.assert_close(target.score(x), ref, rtol=1e-9, atol=1e-10)


def test_rings_score_finite_at_centre():
    """At a ring centre the score is the limit (A(z)/z -> 1/2), here 0 by symmetry of concentric rings."""
    t = get_target("rings")
    s = t.score(torch.zeros(1, 2, dtype=F64))
    assert torch.equal(s, torch.zeros(1, 2, dtype=F64))
    # next to the centre: matches central finite differences
    x = torch.tensor([[1e-6, -2e-6]], dtype=F64)
    h = 1e-7
    fd = torch.stack(
        [
            (t.log_prob(x + h * e) - t.log_prob(x - h * e)) / (2 * h)
            for e in torch.eye(2, dtype=F64)[:, None, :]
        ],
        dim=-1,
    )
    torch.testing.assert_close(t.score(x), fd, rtol=1e-5, atol=1e-8)


def test_checkerboard_score_matches_finite_differences():
    t = Checkerboard(noise=0.1)
    x = torch.rand(40, 2, generator=_gen(9), dtype=F64) * 2.4 - 1.2
    h = 1e-6
    fd = torch.stack(
        [(t.log_prob(x + h * e) - t.log_prob(x - h * e)) / (2 * h) for e in torch.eye(2, dtype=F64)], dim=-1
    )
    torch.testing.assert_close(t.score(x), fd, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------------------------
# samples against the stated parameters
# --------------------------------------------------------------------------------------------


def test_gaussian_sample_moments():
    mean = torch.tensor([1.0, -0.5], dtype=F64)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=F64)
    n = 40_000
    x = Gaussian(mean, cov).sample(n, generator=_gen(10), dtype=F64)
    se_mean = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - mean).abs() < 5 * se_mean).all()
    # SE of a sample covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    se_cov = ((torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None] + cov**2) / n).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < 5 * se_cov).all()


def test_mixture_sample_moments():
    """E x = sum_k w_k m_k, Cov x = sum_k w_k (S_k + m_k m_k^T) - E x E x^T."""
    t = _mixture_3d()
    n = 40_000
    x = t.sample(n, generator=_gen(11), dtype=F64)
    w, m, S = t.weights, t.means, t.covs
    mu = (w[:, None] * m).sum(0)
    cov = (w[:, None, None] * (S + m[:, :, None] * m[:, None, :])).sum(0) - torch.outer(mu, mu)
    se_mean = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - mu).abs() < 5 * se_mean).all()
    # sample covariance entries: tolerance 5 x the Gaussian SE, x 1.5 for the mixture's heavier tails
    se_cov = ((torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None] + cov**2) / n).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < 7.5 * se_cov).all()


def test_mixture_weights_and_modes_recovered():
    """Modes 20x further apart than in _mixture_3d: nearest-mean labels are exact."""
    t0 = _mixture_3d()
    t = GaussianMixture(20 * t0.means, t0.covs, weights=[2.0, 5.0, 3.0])
    n = 30_000
    x = t.sample(n, generator=_gen(11), dtype=F64)
    comp = ((x[:, None] - t.means[None]) ** 2).sum(-1).argmin(1)
    frac = torch.bincount(comp, minlength=3).to(F64) / n
    w = t.weights
    assert ((frac - w).abs() < 5 * (w * (1 - w) / n).sqrt()).all()
    for k in range(3):
        xk = x[comp == k]
        nk = len(xk)
        S = t.covs[k]
        assert ((xk.mean(0) - t.means[k]).abs() < 5 * (torch.diagonal(S) / nk).sqrt()).all()
        se = ((torch.diagonal(S)[:, None] * torch.diagonal(S)[None] + S**2) / nk).sqrt()
        assert ((torch.cov(xk.T) - S).abs() < 5 * se).all()


@pytest.mark.parametrize("name,k", [("eight_gaussians", 8), ("twenty_five_gaussians", 25)])
def test_registry_mixture_modes(name, k):
    t = get_target(name)
    assert t.n_modes == k
    x = t.sample(20_000, generator=_gen(12), dtype=F64)
    d2 = ((x[:, None, :] - t.means[None]) ** 2).sum(-1)
    nearest = d2.argmin(1)
    frac = torch.bincount(nearest, minlength=k).to(F64) / len(x)
    w = 1.0 / k
    assert (frac - w).abs().max() < 5 * math.sqrt(w * (1 - w) / len(x))
    # distance to the own mode: |x - m|^2 / s^2 ~ chi2(2), mean 2
    r2 = d2.min(1).values / t.stds[0] ** 2
    assert float(r2.mean()) == pytest.approx(2.0, abs=5 * 2 / math.sqrt(len(x)))


def test_registry_mixture_constants():
    h = 1 / math.sqrt(2)
    e = get_target("eight_gaussians")
    expected = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (h, h), (h, -h), (-h, h), (-h, -h)], dtype=F64)
    torch.testing.assert_close(e.means, expected)
    torch.testing.assert_close(e.stds, torch.full((8,), 0.1, dtype=F64))
    s8 = get_target("sjko_8gaussians")
    torch.testing.assert_close(s8.means.norm(dim=1), torch.full((8,), 12.0, dtype=F64))
    torch.testing.assert_close(s8.covs, 0.4 * torch.eye(2, dtype=F64).expand(8, 2, 2))
    s25 = get_target("twenty_five_gaussians")
    grid = {(float(a), float(b)) for a in (-6, -3, 0, 3, 6) for b in (-6, -3, 0, 3, 6)}
    assert {tuple(m) for m in s25.means.tolist()} == grid
    torch.testing.assert_close(s25.covs, 0.005 * torch.eye(2, dtype=F64).expand(25, 2, 2))


def test_stratified_counts_are_exact():
    t = GaussianMixture([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], 0.1, weights=[0.5, 0.3, 0.2], stratified=True)
    x = t.sample(101, generator=_gen(13), dtype=F64)
    counts = torch.bincount(((x[:, None] - t.means[None]) ** 2).sum(-1).argmin(1), minlength=3)
    # floor(101 w) = (50, 30, 20), the remaining point to the largest fractional part (0.5 -> mode 0)
    assert counts.tolist() == [51, 30, 20]
    s25 = get_target("sjko_25gaussians", stratified=True).sample(250, generator=_gen(14), dtype=F64)
    near = ((s25[:, None] - get_target("sjko_25gaussians").means[None]) ** 2).sum(-1).argmin(1)
    assert torch.bincount(near, minlength=25).tolist() == [10] * 25


def test_banana_sample_moments():
    a, b, s = 2.0, 0.25, 0.5
    n = 40_000
    x = Banana(a, b, s).sample(n, generator=_gen(15), dtype=F64)
    # E x1 = 0, Var x1 = a^2; E x2 = 0, E x2^2 = 2 a^4 b^2 + s^2
    assert abs(float(x[:, 0].mean())) < 5 * a / math.sqrt(n)
    assert float(x[:, 0].var()) == pytest.approx(a * a, rel=5 * math.sqrt(2 / n))
    v2 = 2 * a**4 * b * b + s * s
    assert abs(float(x[:, 1].mean())) < 5 * math.sqrt(v2 / n)
    assert float((x[:, 1] ** 2).mean()) == pytest.approx(v2, rel=0.05)


# --------------------------------------------------------------------------------------------
# supports of the curve targets (noise switched off)
# --------------------------------------------------------------------------------------------


def test_checkerboard_support_and_cells():
    for t in (Checkerboard(noise=0.0), get_target("sjko_checkerboard")):
        n = 8000
        x = t.sample(n, generator=_gen(16), dtype=F64)
        assert (x >= t.low).all() and (x <= t.high).all()
        idx = torch.floor((x - t.low) / t.width).long()
        assert ((idx.sum(1) % 2) == 0).all()  # only black cells
        counts = torch.bincount(idx[:, 0] * 4 + idx[:, 1], minlength=16)
        black = [i * 4 + j for i in range(4) for j in range(4) if (i + j) % 2 == 0]
        assert set(torch.nonzero(counts).flatten().tolist()) == set(black)
        assert ((counts[black].to(F64) / n - 1 / 8).abs() < 5 * math.sqrt(7 / 64 / n)).all()
    # the drifting board: cells of width 0.5 on [-1, 1]^2; the S-JKO board: [-2pi/3, 2pi/3]^2
    assert Checkerboard().width == 0.5
    assert get_target("sjko_checkerboard").high == pytest.approx(2 * math.pi / 3)


def test_rings_support_and_weights():
    t = Rings(std=1e-3, weights=[1, 1, 1, 2])
    n = 20_000
    x = t.sample(n, generator=_gen(17), dtype=F64)
    rho = x.norm(dim=1)
    radii = torch.tensor([0.75, 1.5, 2.25, 3.0], dtype=F64)
    dist, which = (rho[:, None] - radii).abs().min(1)
    assert dist.max() < 6e-3
    frac = torch.bincount(which, minlength=4).to(F64) / n
    w = torch.tensor([0.2, 0.2, 0.2, 0.4], dtype=F64)
    assert ((frac - w).abs() < 5 * (w * (1 - w) / n).sqrt()).all()
    # angles uniform: mean of (cos, sin) is 0
    assert (x / rho[:, None]).mean(0).abs().max() < 5 / math.sqrt(2 * n)


def test_two_circles_constants():
    x = get_target("two_circles").sample(10_000, generator=_gen(18), dtype=F64)
    rho = x.norm(dim=1)
    inner = rho < 6
    assert abs(float(inner.to(F64).mean()) - 0.5) < 5 * 0.5 / 100
    # radial noise std 0.2 (plus a curvature bias s^2 / (2 r), < 0.005)
    assert float(rho[inner].mean()) == pytest.approx(4.0, abs=0.02)
    assert float(rho[~inner].std()) == pytest.approx(0.2, abs=0.01)


def test_moons_support_and_mean():
    t = TwoMoons(noise=0.0)
    x = t.sample(5000, generator=_gen(19), dtype=F64)
    u = (x + 1.0) / 3.0  # undo scale 3, shift -1
    upper = (u.norm(dim=1) - 1).abs() < 1e-12
    lower = ((u - torch.tensor([1.0, 0.5], dtype=F64)).norm(dim=1) - 1).abs() < 1e-12
    assert (upper | lower).all()
    assert (u[upper & ~lower, 1] >= 0).all() and (u[lower & ~upper, 1] <= 0.5).all()
    # with noise: mean = c (1/2, 1/4) + o
    n = 40_000
    xn = TwoMoons().sample(n, generator=_gen(20), dtype=F64)
    expected = torch.tensor([3 * 0.5 - 1, 3 * 0.25 - 1], dtype=F64)
    se = xn.std(0) / math.sqrt(n)
    assert ((xn.mean(0) - expected).abs() < 5 * se).all()


def test_swiss_roll_lies_on_the_spiral():
    t = SwissRoll(noise=0.0)
    assert t.curve_scale == pytest.approx(4.5 * math.pi, rel=1e-12)
    x = t.sample(5000, generator=_gen(21), dtype=F64)
    rho = x.norm(dim=1)
    tt = t.curve_scale * rho  # the curve parameter
    assert (tt >= math.pi / 2 - 1e-9).all() and (tt <= 4.5 * math.pi + 1e-9).all()
    torch.testing.assert_close(x, rho[:, None] * torch.stack([tt.cos(), tt.sin()], 1), rtol=0, atol=1e-12)
    assert x.abs().max() <= 1.0
    # "sample" normalisation: the largest coordinate is exactly 1
    xs = SwissRoll(noise=0.0, normalization="sample").sample(500, generator=_gen(22), dtype=F64)
    assert float(xs.abs().max()) == pytest.approx(1.0, abs=1e-15)


def test_spirals_lie_on_the_arms():
    t = Spirals(n_arms=3, noise=0.0)
    x = t.sample(3000, generator=_gen(23), dtype=F64)
    tt = 3.0 * x.norm(dim=1)  # t = c |x|
    assert (tt <= 2 * math.pi * 1.5 + 1e-9).all()
    base = tt[:, None] / 3.0 * torch.stack([-tt.cos(), tt.sin()], 1)
    errs = []
    for a in range(3):
        phi = 2 * math.pi * a / 3
        R = torch.tensor([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]], dtype=F64)
        errs.append((x - base @ R.T).norm(dim=1))
    err, arm = torch.stack(errs, 1).min(1)
    assert err.max() < 1e-12
    assert (torch.bincount(arm, minlength=3).to(F64) / 3000 - 1 / 3).abs().max() < 5 * math.sqrt(2 / 9 / 3000)
    # E|x| = 2 t1 / (3c) for t = t1 sqrt(u)
    assert float(x.norm(dim=1).mean()) == pytest.approx(2 * 3 * math.pi / 9, rel=0.03)


def test_three_rings_points():
    t = get_target("gwf_three_rings")
    assert t.points.shape == (3000, 2)
    centres = torch.tensor([[0.0, 0.0], [0.0, -0.75], [0.0, -1.5]], dtype=F64)
    d = (t.points[:, None] - centres[None]).norm(dim=-1)
    assert ((d - 0.3).abs().min(1).values < 1e-12).all()
    x = t.sample(500, generator=_gen(24), dtype=F64)
    assert ((x[:, None] - t.points[None]).abs().sum(-1).min(1).values == 0).all()


# --------------------------------------------------------------------------------------------
# registry round trip
# --------------------------------------------------------------------------------------------


def test_list_targets_contents():
    names = list_targets()
    assert names == sorted(names)
    for required in (
        "gaussian",
        "eight_gaussians",
        "twenty_five_gaussians",
        "moons",
        "swiss_roll",
        "checkerboard",
        "rings",
        "spirals",
    ):
        assert required in names
    assert any(n.startswith("gwf_") for n in names)
    assert any(n.startswith("sjko_") for n in names)
    assert any(n.startswith("drifting_") for n in names)


@pytest.mark.parametrize("name", list_targets())
def test_registry_round_trip(name):
    t = get_target(name)
    assert t.name == name and t.dim == 2
    x32 = t.sample(64, generator=_gen(25))
    assert x32.shape == (64, 2) and x32.dtype == torch.float32 and torch.isfinite(x32).all()
    # reproducible with a seeded generator; float64 draw = float32 draw up to rounding
    assert torch.equal(x32, t.sample(64, generator=_gen(25)))
    x64 = t.sample(64, generator=_gen(25), dtype=F64)
    assert x64.dtype == F64
    torch.testing.assert_close(x64.float(), x32, rtol=0, atol=0)
    assert not torch.equal(x32, t.sample(64, generator=_gen(26)))
    # the global RNG is untouched when a generator is given
    state = torch.get_rng_state()
    t.sample(8, generator=_gen(0))
    assert torch.equal(state, torch.get_rng_state())
    if t.has_density:
        for x in (x32, x64):
            lp, s = t.log_prob(x), t.score(x)
            assert lp.shape == (64,) and lp.dtype == x.dtype
            assert s.shape == (64, 2) and s.dtype == x.dtype
            assert torch.isfinite(lp).all() and torch.isfinite(s).all()
    else:
        with pytest.raises(NotImplementedError):
            t.log_prob(x64)
        with pytest.raises(NotImplementedError):
            t.score(x64)


def test_registry_aliases_are_the_same_law():
    pairs = [
        ("eight_gaussians", "gwf_eight_gaussians"),
        ("twenty_five_gaussians", "sjko_25gaussians"),
        ("moons", "gwf_moons"),
        ("swiss_roll", "drifting_swiss_roll"),
        ("checkerboard", "drifting_checkerboard"),
        ("two_circles", "sjko_twocircles"),
        ("two_circles", "gwf_circles"),
    ]
    for a, b in pairs:
        assert torch.equal(
            get_target(a).sample(50, generator=_gen(1)), get_target(b).sample(50, generator=_gen(1))
        )


def test_get_target_name_normalisation_and_kwargs():
    t = get_target("Eight-Gaussians", std=0.2)
    assert t.name == "eight_gaussians"
    torch.testing.assert_close(t.stds, torch.full((8,), 0.2, dtype=F64))
    with pytest.raises(ValueError, match="unknown target"):
        get_target("nine_gaussians")
    with pytest.raises(TypeError, match="name"):
        get_target(3)
    with pytest.raises(TypeError):
        get_target("moons", radius=2.0)


def test_log_prob_float32_keeps_dtype_and_agrees():
    t = _mixture_3d()
    x = t.sample(100, generator=_gen(27), dtype=F64)
    lp32 = t.log_prob(x.float())
    assert lp32.dtype == torch.float32
    torch.testing.assert_close(lp32.double(), t.log_prob(x), rtol=1e-5, atol=1e-5)


def test_score_keeps_graph_when_x_requires_grad():
    """Differentiating the score: the Laplacian of log N(m, S) is -tr(S^{-1})."""
    t = Checkerboard(noise=0.2)  # autograd score
    g = Gaussian([0.0, 1.0], [[2.0, 0.3], [0.3, 0.5]])
    x = torch.randn(5, 2, generator=_gen(28), dtype=F64, requires_grad=True)
    s = t.score(x)
    assert s.requires_grad
    sg = g.score(x)
    lap = sum(torch.autograd.grad(sg[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    expected = -torch.linalg.inv(g.cov).trace()
    torch.testing.assert_close(lap, expected.expand(5))


def test_repr_rounds_parameters():
    r = repr(get_target("eight_gaussians"))
    assert "GaussianMixture(name='eight_gaussians'" in r and "0.1," in r and "0.1000000" not in r
    # the table-driven scalar parameters (Target._params), in their table's order, then the other fields
    assert repr(get_target("banana")) == "Banana(name='banana', dim=2, scale=2.0, curvature=0.25, noise=0.5)"
    r = repr(get_target("swiss_roll"))
    assert r.endswith("noise=0.03, t_min=1.5708, t_max=14.1372, normalization='population')")
    assert isinstance(Checkerboard(low=-2.0).low, float) and Spirals(n_arms=3.0).n_arms == 3


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_bad_input_raises_naming_the_argument():
    t = get_target("gaussian")
    with pytest.raises(ValueError, match="n "):
        t.sample(0)
    with pytest.raises(TypeError, match="n must be an integer"):
        t.sample(2.5)
    with pytest.raises(TypeError, match="generator"):
        t.sample(3, generator=0)
    with pytest.raises(TypeError, match="dtype"):
        t.sample(3, dtype=torch.int64)
    with pytest.raises(ValueError, match="x must have 2 columns"):
        t.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        t.score(torch.zeros(3))
    with pytest.raises(ValueError, match="x contains NaN"):
        t.log_prob(torch.tensor([[0.0, math.nan]]))
    with pytest.raises(ValueError, match="cov must be positive definite"):
        Gaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="cov must be symmetric"):
        Gaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match="cov must be 2x2"):
        Gaussian([0.0, 0.0], torch.eye(3))
    with pytest.raises(ValueError, match="mean contains NaN"):
        Gaussian([0.0, math.nan], torch.eye(2))
    with pytest.raises(ValueError, match="weights must be non-negative"):
        GaussianMixture([[0.0], [1.0]], 1.0, weights=[1.0, -0.5])
    with pytest.raises(ValueError, match=r"weights must have shape \(2,\)"):
        GaussianMixture([[0.0], [1.0]], 1.0, weights=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="covs must be positive"):
        GaussianMixture([[0.0], [1.0]], -1.0)
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture([[0.0, 0.0], [1.0, 1.0]], torch.zeros(2, 2, 2))
    with pytest.raises(ValueError, match="means must have shape"):
        GaussianMixture([0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="noise"):
        Checkerboard(noise=-0.1)
    with pytest.raises(ValueError, match="high must exceed low"):
        Checkerboard(low=1.0, high=-1.0)
    with pytest.raises(ValueError, match="std must be positive"):
        Rings(std=0.0)
    with pytest.raises(ValueError, match="radii"):
        Rings(radii=[-1.0, 1.0])
    with pytest.raises(ValueError, match="scale must be positive"):
        Banana(scale=0.0)
    with pytest.raises(ValueError, match="t_max must exceed t_min"):
        SwissRoll(t_min=3.0, t_max=2.0)
    with pytest.raises(ValueError, match="normalization"):
        SwissRoll(normalization="batch")
    with pytest.raises(ValueError, match="turns must be positive"):
        Spirals(turns=0)
    assert T.Target.has_density.fget(get_target("moons")) is False


def test_gaussian_quantiles_exact_moments():
    x = T.gaussian_quantiles(500, 1.0, 2.0)
    assert x.shape == (500, 1) and x.dtype == torch.float64
    assert float(x.mean()) == pytest.approx(1.0, abs=1e-12)
    assert float(x.var(unbiased=False)) == pytest.approx(2.0, abs=1e-12)
    assert bool((x[1:] > x[:-1]).all())  # sorted quantiles
    with pytest.raises(ValueError, match="var"):
        T.gaussian_quantiles(10, 0.0, 0.0)
