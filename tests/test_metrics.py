"""Tests of gwf_tutorial.metrics against independent computations: sorted matchings and brute-force
assignments (scipy), a linear program, a numpy Sinkhorn, explicit double sums, scipy's energy distance,
closed forms for Gaussians, hand-built mode-coverage cases, and the floor's reproducibility."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment, linprog
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import energy_distance as scipy_energy_distance

from gwf_tutorial import metrics as M
from gwf_tutorial.kernels import median_bandwidth
from gwf_tutorial.metrics import (
    Floor,
    ModeCoverage,
    energy_distance,
    floor,
    mmd2,
    mode_coverage,
    score_vs_floor,
    sinkhorn_divergence,
    sliced_w2,
    w2_squared,
)
from gwf_tutorial.targets import GaussianMixture, get_target

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(n=12, m=15, d=2, seed=0, shift=0.5):
    g = _gen(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randn(m, d, generator=g, dtype=F64) * 1.3 + shift
    return x, y


def _np_entropic_ot(x, y, a, b, eps, iters=20_000):
    """OT_eps = min <P, C> + eps KL(P | a b^T) by log-domain Sinkhorn in numpy (test reference).

    Returns the primal value and the dual value <f, a> + <g, b> (equal at convergence). For x = y the
    symmetric update f <- (f + T(f)) / 2 is used (Feydy et al. 2019), which converges fast."""
    C = cdist(x, y, "sqeuclidean")
    la, lb = np.log(a), np.log(b)
    sym = x is y
    f, g = np.zeros(len(a)), np.zeros(len(b))
    for _ in range(iters):
        if sym:
            f_new = 0.5 * (f - eps * logsumexp((f[None, :] - C) / eps + la[None, :], axis=1))
            g = f_new
        else:
            f_new = -eps * logsumexp((g[None, :] - C) / eps + lb[None, :], axis=1)
            g = -eps * logsumexp((f_new[:, None] - C) / eps + la[:, None], axis=0)
        done = np.abs(f_new - f).max() < 1e-15
        f = f_new
        if done:
            break
    if sym:
        f = g = -eps * logsumexp((f[None, :] - C) / eps + la[None, :], axis=1)
    logP = (f[:, None] + g[None, :] - C) / eps + la[:, None] + lb[None, :]
    P = np.exp(logP)
    kl = (P * (logP - la[:, None] - lb[None, :])).sum() - P.sum() + 1.0
    return float((P * C).sum() + eps * kl), float(f @ a + g @ b)


# --------------------------------------------------------------------------------------------
# exact W2
# --------------------------------------------------------------------------------------------


def test_w2_1d_equals_sorted_matching():
    x, y = _pair(n=40, m=40, d=1, seed=1)
    expected = float(((torch.sort(x[:, 0]).values - torch.sort(y[:, 0]).values) ** 2).mean())
    assert float(w2_squared(x, y)) == pytest.approx(expected, rel=1e-12)


def test_w2_equals_brute_force_assignment():
    x, y = _pair(n=7, m=7, d=3, seed=2)
    C = cdist(x.numpy(), y.numpy(), "sqeuclidean")
    r, c = linear_sum_assignment(C)
    assert float(w2_squared(x, y)) == pytest.approx(C[r, c].mean(), rel=1e-12)


def test_w2_weighted_unequal_sizes_equals_linear_program():
    x, y = _pair(n=5, m=7, d=2, seed=3)
    a = np.array([1.0, 2.0, 3.0, 1.0, 3.0])
    b = np.array([2.0, 1.0, 1.0, 1.0, 2.0, 2.0, 1.0])
    a, b = a / a.sum(), b / b.sum()
    C = cdist(x.numpy(), y.numpy(), "sqeuclidean")
    n, m = C.shape
    A_eq = np.vstack([np.kron(np.eye(n), np.ones(m)), np.kron(np.ones(n), np.eye(m))])
    lp = linprog(C.ravel(), A_eq=A_eq, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    # weights are normalised inside: pass them unnormalised
    val = w2_squared(x, y, weights_x=torch.tensor(a * 7), weights_y=torch.tensor(b * 3))
    assert float(val) == pytest.approx(lp.fun, rel=1e-9)


def test_w2_identity_translation_and_dtype():
    x, _ = _pair(n=30, d=3, seed=4)
    assert float(w2_squared(x, x)) == 0.0
    c = torch.tensor([0.3, -1.2, 2.0], dtype=F64)
    # y = x + c (shuffled): the optimal plan is the translation, W2^2 = |c|^2
    y = (x + c)[torch.randperm(30, generator=_gen(5))]
    assert float(w2_squared(x, y)) == pytest.approx(float(c @ c), rel=1e-12)
    v32 = w2_squared(x.float(), y.float())
    assert v32.dtype == torch.float32 and v32.shape == ()
    assert float(v32) == pytest.approx(float(c @ c), rel=1e-5)
    assert w2_squared(x, y).dtype == F64


def test_w2_gradient_is_the_matching_displacement():
    """For equal sizes the plan is a permutation s: grad_x W2^2 = 2 (x_i - y_s(i)) / n."""
    x, y = _pair(n=6, m=6, d=2, seed=6)
    C = cdist(x.numpy(), y.numpy(), "sqeuclidean")
    _, perm = linear_sum_assignment(C)
    xr = x.clone().requires_grad_(True)
    w2_squared(xr, y).backward()
    torch.testing.assert_close(xr.grad, 2 * (x - y[torch.as_tensor(perm)]) / 6)


# --------------------------------------------------------------------------------------------
# Sinkhorn divergence
# --------------------------------------------------------------------------------------------


def test_sinkhorn_divergence_equals_numpy_sinkhorn():
    x, y = _pair(n=6, m=8, d=2, seed=7)
    a = np.array([1.0, 2.0, 1.0, 3.0, 1.0, 2.0])
    b = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 3.0, 1.0, 2.0])
    a, b = a / a.sum(), b / b.sum()
    eps = 0.3
    xn, yn = x.numpy(), y.numpy()
    primal, dual = _np_entropic_ot(xn, yn, a, b, eps)
    pxx, dxx = _np_entropic_ot(xn, xn, a, a, eps)
    pyy, dyy = _np_entropic_ot(yn, yn, b, b, eps)
    for p, q in ((primal, dual), (pxx, dxx), (pyy, dyy)):
        assert p == pytest.approx(q, rel=1e-10)  # the reference converged
    ref = primal - 0.5 * pxx - 0.5 * pyy
    val = sinkhorn_divergence(x, y, eps, weights_x=torch.tensor(a), weights_y=torch.tensor(b))
    assert val.dtype == F64 and val.shape == ()
    assert float(val) == pytest.approx(ref, rel=1e-7)


def test_symmetric_term_converges_fast_at_small_eps():
    """OT_eps(alpha, alpha) at eps well below the nearest-neighbour distances (where plain alternating
    Sinkhorn oscillates for 1e4+ iterations): no warning within 50 iterations, equal to the reference."""
    x = torch.randn(40, 2, generator=_gen(30), dtype=F64)
    a = torch.full((40,), 1 / 40, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        val = M._self_entropic_ot(x, a, 0.01, max_iter=50, tol=1e-9)
    xn, an = x.numpy(), a.numpy()
    primal, dual = _np_entropic_ot(xn, xn, an, an, 0.01)
    assert primal == pytest.approx(dual, rel=1e-10)
    assert float(val) == pytest.approx(primal, rel=1e-7)


def test_sinkhorn_divergence_zero_on_identical_positive_otherwise():
    x, y = _pair(n=10, m=10, d=2, seed=8)
    assert abs(float(sinkhorn_divergence(x, x, 0.5))) < 1e-8  # the solvers' tolerance
    for eps in (0.3, 1.0, 10.0):
        assert float(sinkhorn_divergence(x, y, eps)) > 0.01


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_sinkhorn_divergence_limits():
    """eps -> 0: W2^2 (tiny data, unique optimal matching); eps -> inf: squared distance of the means."""
    x, y = _pair(n=5, m=5, d=2, seed=9, shift=1.0)
    w2 = float(w2_squared(x, y))
    gaps = [abs(float(sinkhorn_divergence(x, y, eps)) - w2) for eps in (0.3, 0.03, 0.003)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3 * w2
    big = float(sinkhorn_divergence(x, y, 1e4))
    mean_gap = float(((x.mean(0) - y.mean(0)) ** 2).sum())
    assert big == pytest.approx(mean_gap, rel=1e-3)


def test_sinkhorn_divergence_one_point_each():
    """Dirac masses: the only plan is the product, OT_eps(delta_x, delta_y) = |x - y|^2 for every eps."""
    x = torch.tensor([[0.5, -1.0]], dtype=F64)
    y = torch.tensor([[2.0, 1.0]], dtype=F64)
    assert float(sinkhorn_divergence(x, y, 0.7)) == pytest.approx(1.5**2 + 2.0**2, rel=1e-12)


def test_sinkhorn_divergence_float32_converges_without_warning():
    x, y = _pair(n=20, m=25, d=2, seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Sinkhorn did not converge" at the default tolerance
        v32 = sinkhorn_divergence(x.float(), y.float(), 1.0)
    assert v32.dtype == torch.float32
    assert float(v32) == pytest.approx(float(sinkhorn_divergence(x, y, 1.0)), rel=1e-4)


def test_sinkhorn_divergence_gradient_matches_finite_differences():
    x, y = _pair(n=5, m=6, d=2, seed=11)
    eps = 0.5
    xr = x.clone().requires_grad_(True)
    sinkhorn_divergence(xr, y, eps).backward()
    h = 1e-6
    e = torch.zeros_like(x)
    e[2, 1] = h
    fd = (float(sinkhorn_divergence(x + e, y, eps)) - float(sinkhorn_divergence(x - e, y, eps))) / (2 * h)
    assert float(xr.grad[2, 1]) == pytest.approx(fd, rel=1e-5, abs=1e-8)


# --------------------------------------------------------------------------------------------
# sliced W2
# --------------------------------------------------------------------------------------------


def test_sliced_w2_in_1d_equals_w2():
    x, y = _pair(n=30, m=30, d=1, seed=12)
    assert float(sliced_w2(x, y, n_projections=7, generator=_gen(0))) == pytest.approx(
        float(w2_squared(x, y)), rel=1e-12
    )
    # unequal sizes and weights too (POT's 1-D quantile formula vs network simplex)
    x2, y2 = _pair(n=9, m=13, d=1, seed=13)
    wx = torch.rand(9, generator=_gen(1), dtype=F64) + 0.1
    assert float(sliced_w2(x2, y2, 3, weights_x=wx)) == pytest.approx(
        float(w2_squared(x2, y2, weights_x=wx)), rel=1e-10
    )


def test_sliced_w2_equals_mean_of_sorted_projections():
    x, y = _pair(n=25, m=25, d=3, seed=14)
    L = 11
    val = sliced_w2(x, y, n_projections=L, generator=_gen(3))
    theta = torch.randn(3, L, generator=_gen(3), dtype=F64)
    theta = theta / theta.norm(dim=0)
    px, py = torch.sort(x @ theta, dim=0).values, torch.sort(y @ theta, dim=0).values
    assert float(val) == pytest.approx(float(((px - py) ** 2).mean()), rel=1e-12)
    # reproducible with the same seed, different with another
    assert torch.equal(val, sliced_w2(x, y, n_projections=L, generator=_gen(3)))
    assert float(val) != float(sliced_w2(x, y, n_projections=L, generator=_gen(4)))


def test_sliced_w2_isotropic_gaussians_closed_form():
    """W2^2 of the projections of N(m1, s1^2 I), N(m2, s2^2 I) on theta: (theta.(m1 - m2))^2 + (s1 - s2)^2,
    whose mean over the sphere is |m1 - m2|^2 / d + (s1 - s2)^2 (checked for the directions drawn)."""
    d, n, L = 3, 3000, 40
    g = _gen(15)
    m1, m2 = torch.zeros(d, dtype=F64), torch.tensor([1.0, -0.5, 0.8], dtype=F64)
    s1, s2 = 1.0, 0.6
    x = m1 + s1 * torch.randn(n, d, generator=g, dtype=F64)
    y = m2 + s2 * torch.randn(n, d, generator=g, dtype=F64)
    theta = torch.randn(d, L, generator=_gen(16), dtype=F64)
    theta = theta / theta.norm(dim=0)
    val = float(sliced_w2(x, y, n_projections=L, generator=_gen(16)))
    expected = float((((m1 - m2) @ theta) ** 2).mean()) + (s1 - s2) ** 2
    assert val == pytest.approx(expected, rel=0.1)  # sample means and stds: a few % at n = 3000
    # the same with the sample moments of each projection: equal up to the O(log n / n) shape term
    px, py = x @ theta, y @ theta
    moments = (
        (px.mean(0) - py.mean(0)) ** 2 + (px.std(0, correction=0) - py.std(0, correction=0)) ** 2
    ).mean()
    assert val == pytest.approx(float(moments), rel=0.01)


# --------------------------------------------------------------------------------------------
# MMD and energy distance
# --------------------------------------------------------------------------------------------


def _gauss_gram(a, b, s):
    return np.exp(-cdist(a, b, "sqeuclidean") / (2 * s * s))


def test_mmd2_biased_and_unbiased_equal_double_sums(monkeypatch):
    x, y = _pair(n=9, m=11, d=2, seed=17)
    s = 0.8
    Kxx, Kyy, Kxy = (_gauss_gram(a.numpy(), b.numpy(), s) for a, b in ((x, x), (y, y), (x, y)))
    n, m = 9, 11
    biased = Kxx.sum() / n**2 + Kyy.sum() / m**2 - 2 * Kxy.mean()
    unbiased = (
        (Kxx.sum() - np.trace(Kxx)) / (n * (n - 1))
        + (Kyy.sum() - np.trace(Kyy)) / (m * (m - 1))
        - 2 * Kxy.mean()
    )
    for block in (1024, 4):  # the default single block and several row blocks
        monkeypatch.setattr(M, "_BLOCK_ROWS", block)
        assert float(mmd2(x, y, bandwidth=s)) == pytest.approx(biased, rel=1e-12)
        assert float(mmd2(x, y, bandwidth=s, unbiased=True)) == pytest.approx(unbiased, rel=1e-12)
    # the U-statistic is the V-statistic minus the diagonal terms, re-weighted
    assert unbiased < biased


def test_mmd2_default_bandwidth_is_pooled_median_and_other_kernels():
    x, y = _pair(n=10, m=12, d=2, seed=18)
    s = median_bandwidth(x, y)
    assert float(mmd2(x, y)) == pytest.approx(float(mmd2(x, y, bandwidth=s)), rel=1e-14)
    D = cdist(x.numpy(), y.numpy())
    Dx, Dy = cdist(x.numpy(), x.numpy()), cdist(y.numpy(), y.numpy())
    lap = np.exp(-Dx / 0.7).mean() + np.exp(-Dy / 0.7).mean() - 2 * np.exp(-D / 0.7).mean()
    assert float(mmd2(x, y, kernel="laplace", bandwidth=0.7)) == pytest.approx(lap, rel=1e-12)


def test_mmd2_gaussians_closed_form():
    """Closed form: N(0, 1) vs N(1, 0.25), s = 1: MMD^2 = 0.3261969796 (U-statistic, n = 3000)."""
    n = 3000
    g = _gen(19)
    x = torch.randn(n, 1, generator=g, dtype=F64)
    y = 1.0 + 0.5 * torch.randn(n, 1, generator=g, dtype=F64)
    val = float(mmd2(x, y, bandwidth=1.0, unbiased=True))
    assert val == pytest.approx(0.3261969796, abs=0.02)  # ~ 5 standard errors at this n


def test_energy_distance_equals_scipy_squared_in_1d():
    """scipy's energy distance is sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) (V-statistic); ours is the square."""
    x, y = _pair(n=30, m=17, d=1, seed=20)
    ref = scipy_energy_distance(x[:, 0].numpy(), y[:, 0].numpy()) ** 2
    assert float(energy_distance(x, y)) == pytest.approx(ref, rel=1e-10)


def test_energy_distance_double_sum_and_gradient_at_coincident_points():
    x, y = _pair(n=8, m=10, d=3, seed=21)
    D, Dx, Dy = (cdist(a.numpy(), b.numpy()) for a, b in ((x, y), (x, x), (y, y)))
    ref = 2 * D.mean() - Dx.mean() - Dy.mean()
    assert float(energy_distance(x, y)) == pytest.approx(ref, rel=1e-12)
    assert float(energy_distance(x, x)) == 0.0
    xr = x.clone().requires_grad_(True)
    energy_distance(xr, torch.cat([x[:3], y])).backward()  # three coincident pairs x_i = y_i
    assert torch.isfinite(xr.grad).all()


# --------------------------------------------------------------------------------------------
# mode coverage
# --------------------------------------------------------------------------------------------


def _three_modes(weights=None):
    return GaussianMixture([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]], 0.1, weights=weights)


def test_mode_coverage_all_modes():
    mix = _three_modes()
    x = mix.means.repeat_interleave(10, 0) + 0.05  # 10 per mode, within 3 std
    res = mode_coverage(x, mix)
    assert isinstance(res, ModeCoverage)
    assert (res.modes_hit, res.n_modes) == (3, 3)
    assert res.high_quality_fraction == 1.0
    assert res.weight_tv == pytest.approx(0.0, abs=1e-15)
    assert res.counts.tolist() == [10, 10, 10]
    torch.testing.assert_close(res.found_weights, torch.full((3,), 1 / 3, dtype=F64))


def test_mode_coverage_missing_mode_and_outliers():
    mix = _three_modes()
    near = mix.means[:2].repeat_interleave(10, 0)  # modes 0, 1 only
    outliers = torch.tensor([[2.5, 2.5], [0.31, 0.0], [-10.0, 0.0], [5.0, 0.29]], dtype=F64)
    res = mode_coverage(torch.cat([near, outliers]), mix)
    # default radius 3 s = 0.3 in 2-D: (5, 0.29) is high quality, (0.31, 0) is not
    assert res.counts.tolist() == [10, 11, 0]
    assert res.modes_hit == 2
    assert res.high_quality_fraction == pytest.approx(21 / 24)
    found = np.array([10, 11, 0]) / 21
    assert res.weight_tv == pytest.approx(0.5 * np.abs(found - 1 / 3).sum())
    # no high-quality sample at all: TV is 1 by convention
    none = mode_coverage(torch.full((5, 2), 2.5, dtype=F64), mix)
    assert (none.modes_hit, none.high_quality_fraction, none.weight_tv) == (0, 0.0, 1.0)


def test_mode_coverage_threshold_radius_and_weights():
    mix = _three_modes(weights=[2.0, 1.0, 1.0])
    # n = 40, phi = 0.2: thresholds 0.2 * 40 * (0.5, 0.25, 0.25) = (4, 2, 2)
    x = torch.cat(
        [
            mix.means[0].expand(3, 2),  # 3 < 4: not hit
            mix.means[1].expand(2, 2),  # 2 >= 2: hit
            mix.means[2].expand(1, 2),  # 1 < 2: not hit
            torch.full((34, 2), 100.0, dtype=F64),
        ]
    )
    res = mode_coverage(x, mix)
    assert res.modes_hit == 1
    assert mode_coverage(x, mix, min_fraction=0.15).modes_hit == 2  # thresholds (3, 1.5, 1.5)
    assert mode_coverage(x, mix, min_fraction=0.1).modes_hit == 3  # thresholds (2, 1, 1)
    # an explicit radius: 0.2 excludes a point at 0.25, the default 0.3 includes it
    y = torch.tensor([[0.25, 0.0], [5.0, 0.1]], dtype=F64)
    assert mode_coverage(y, mix).counts.tolist() == [1, 1, 0]
    assert mode_coverage(y, mix, radius=0.2).counts.tolist() == [0, 1, 0]
    assert mode_coverage(y, mix, radius=[0.3, 0.05, 1.0]).counts.tolist() == [1, 0, 0]


def test_mode_coverage_default_radius_is_3_std_in_2d_and_chi2_in_higher_d():
    from scipy.stats import chi2

    assert math.sqrt(chi2.ppf(1 - math.exp(-4.5), 2)) == pytest.approx(3.0, rel=1e-12)
    # a perfect sampler of 25 Gaussians: every mode hit, ~98.9% of samples high quality
    t = get_target("twenty_five_gaussians")
    n = 5000
    res = mode_coverage(t.sample(n, generator=_gen(22), dtype=F64), t)
    q = 1 - math.exp(-4.5)
    assert res.modes_hit == 25
    assert res.high_quality_fraction == pytest.approx(q, abs=5 * math.sqrt(q * (1 - q) / n))
    assert res.weight_tv < 0.06
    # 10-D isotropic mixture: the chi2 radius keeps the same share, 3 std only P(chi2_10 <= 9) = 0.47
    mix = GaussianMixture(torch.eye(10, dtype=F64) * 10, 0.5)
    n = 4000
    x = mix.sample(n, generator=_gen(23), dtype=F64)
    assert mode_coverage(x, mix).high_quality_fraction == pytest.approx(q, abs=5 * math.sqrt(q * (1 - q) / n))
    p3 = chi2.cdf(9.0, 10)
    hq3 = mode_coverage(x, mix, radius=1.5).high_quality_fraction
    assert hq3 == pytest.approx(p3, abs=5 * math.sqrt(p3 * (1 - p3) / n))


def test_mode_coverage_duck_typed_mixture_with_unnormalised_weights():
    class Mix:
        means = torch.tensor([[0.0, 0.0], [5.0, 0.0]])
        weights = torch.tensor([30.0, 10.0])  # unnormalised: thresholds 0.2 n w_k use w / sum(w)
        stds = torch.tensor([0.1, 0.1])

    x = torch.tensor([[0.0, 0.0]] * 3 + [[5.0, 0.0]], dtype=F64)
    res = mode_coverage(x, Mix())
    assert res.weight_tv == pytest.approx(0.0, abs=1e-15)
    assert res.modes_hit == 2


# --------------------------------------------------------------------------------------------
# floor and score_vs_floor
# --------------------------------------------------------------------------------------------


def test_floor_positive_with_spread_and_reproducible():
    t = get_target("gaussian")
    f = floor(t, 60, "w2", n_pairs=6, seed=3, progress=False)
    assert isinstance(f, Floor) and f.n == 60 and f.metric == "w2"
    assert f.values.shape == (6,) and f.values.dtype == F64
    assert (f.values > 0).all()
    assert f.q25 < f.median < f.q75
    np.testing.assert_allclose(f.median, np.median(f.values.numpy()))
    f2 = floor(t, 60, "w2", n_pairs=6, seed=3, progress=False)
    assert torch.equal(f.values, f2.values)
    assert not torch.equal(f.values, floor(t, 60, "w2", n_pairs=6, seed=4, progress=False).values)
    # the first value is the metric between the first two draws of the seeded generator
    g = _gen(3)
    a, b = t.sample(60, generator=g, dtype=F64), t.sample(60, generator=g, dtype=F64)
    assert float(f.values[0]) == pytest.approx(float(w2_squared(a, b)), rel=1e-12)


def test_floor_shrinks_with_n_and_accepts_names_and_callables():
    small = floor("gaussian", 30, "energy", n_pairs=5, progress=False)
    large = floor("gaussian", 240, "energy", n_pairs=5, progress=False)
    # the energy-distance V-statistic between independent samples is O(1/n)
    assert large.median < small.median / 3
    sk = floor("gaussian", 30, functools.partial(sinkhorn_divergence, eps=1.0), n_pairs=3, progress=False)
    assert sk.metric == "partial" and sk.median > 0
    for name in ("mmd", "sliced_w2"):
        assert floor("moons", 40, name, n_pairs=3, progress=False).median > 0


def test_score_vs_floor_perfect_sampler_is_near_one():
    t = get_target("gaussian")
    n = 100
    fl = floor(t, n, "energy", n_pairs=10, seed=0, progress=False)
    x = t.sample(n, generator=_gen(99), dtype=F64)
    res = score_vs_floor(x, t, "energy", floor_result=fl)
    assert res.values.shape == (3,) and res.floor is fl
    assert 0.2 < res.ratio < 5
    bad = score_vs_floor(x + 2.0, t, "energy", floor_result=fl)
    assert bad.ratio > 20 * res.ratio
    with pytest.raises(ValueError, match="floor_result"):
        score_vs_floor(x[:50], t, "energy", floor_result=fl)


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn",
    [
        w2_squared,
        functools.partial(sinkhorn_divergence, eps=0.5),
        sliced_w2,
        mmd2,
        energy_distance,
    ],
    ids=["w2", "sinkhorn", "sliced", "mmd", "energy"],
)
def test_distances_reject_bad_input(fn):
    x, y = _pair(n=5, m=6, d=2)
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\)"):
        fn(x[:, 0], y)
    with pytest.raises(ValueError, match=r"y must have shape \(n, d\)"):
        fn(x, y[None])
    with pytest.raises(ValueError, match="x and y must have the same dimension"):
        fn(x, torch.cat([y, y], 1))
    xn = x.clone()
    xn[1, 0] = math.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        fn(xn, y)
    with pytest.raises(ValueError, match="y contains NaN"):
        fn(x, torch.full_like(y, math.inf))
    with pytest.raises(TypeError, match="same dtype"):
        fn(x, y.float())


def test_bad_parameters_raise_naming_the_argument():
    x, y = _pair(n=5, m=6, d=2)
    for eps in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="eps"):
            sinkhorn_divergence(x, y, eps)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_w2(x, y, n_projections=0)
    with pytest.raises(TypeError, match="generator"):
        sliced_w2(x, y, generator=1)
    with pytest.raises(ValueError, match=r"weights_x must have shape \(5,\)"):
        w2_squared(x, y, weights_x=torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="weights_y must be non-negative"):
        w2_squared(x, y, weights_y=torch.tensor([1.0, -1, 1, 1, 1, 1], dtype=F64))
    with pytest.raises(ValueError, match="unbiased=True needs at least 2"):
        mmd2(x[:1], y, unbiased=True)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, y, bandwidth=-1.0)
    mix = _three_modes()
    with pytest.raises(ValueError, match="x must have 2 columns"):
        mode_coverage(torch.zeros(3, 3), mix)
    with pytest.raises(ValueError, match="min_fraction"):
        mode_coverage(x, mix, min_fraction=1.5)
    with pytest.raises(ValueError, match="radius must be positive"):
        mode_coverage(x, mix, radius=0.0)
    with pytest.raises(TypeError, match="mixture"):
        mode_coverage(x, object())
    with pytest.raises(ValueError, match="n must be"):
        floor("gaussian", 1)
    with pytest.raises(ValueError, match="unknown metric"):
        floor("gaussian", 10, "w3")
    with pytest.raises(ValueError, match="unknown target"):
        floor("nowhere", 10)


# ---------------------------------------------------------------------------------------------
# image metrics (torchmetrics) with a stand-in feature extractor
# ---------------------------------------------------------------------------------------------


class _StandIn(torch.nn.Module):
    """A fixed random conv feature extractor (stands in for Inception offline)."""

    num_features = 12

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 12, 5, stride=2)

    def forward(self, x):
        return torch.tanh(self.conv(x)).mean((2, 3))


def test_frechet_distance_equals_bures_w2_of_feature_gaussians():
    from gwf_tutorial import data, gaussian

    x, _ = data.synthetic_images(300, size=16, generator=torch.Generator().manual_seed(0))
    y, _ = data.synthetic_images(250, size=16, generator=torch.Generator().manual_seed(1), noise=0.3)
    f = _StandIn()
    fd = M.frechet_distance(x, y, f, batch_size=64)
    with torch.no_grad():
        fx, fy = f(x).double(), f(y).double()
    ref = gaussian.w2_squared(fx.mean(0), torch.cov(fx.T), fy.mean(0), torch.cov(fy.T))
    assert fd == pytest.approx(float(ref), rel=1e-5)
    # an iterable of batches gives the same number
    assert M.frechet_distance(iter(x.split(100)), iter(y.split(70)), f) == pytest.approx(fd, rel=1e-9)


def test_frechet_and_kernel_distance_detect_dropped_classes():
    from gwf_tutorial import data

    x, _ = data.synthetic_images(400, size=16, generator=torch.Generator().manual_seed(0))
    y, _ = data.synthetic_images(400, size=16, generator=torch.Generator().manual_seed(1))
    z, lz = data.synthetic_images(800, size=16, generator=torch.Generator().manual_seed(2))
    half = z[lz < 5][:400]
    f = _StandIn()
    assert M.frechet_distance(x, half, f) > 10 * M.frechet_distance(x, y, f)
    k_same, _ = M.kernel_distance(x, y, f, subsets=20, subset_size=200)
    k_half, _ = M.kernel_distance(x, half, f, subsets=20, subset_size=200)
    assert k_half > 10 * abs(k_same)


def test_image_metric_bad_input():
    f = _StandIn()
    x = torch.zeros(4, 3, 8, 8)
    with pytest.raises(ValueError, match="real"):
        M.frechet_distance(torch.zeros(4, 3, 8), x, f)
    with pytest.raises(ValueError, match="fake contains NaN"):
        M.frechet_distance(x, torch.full((4, 3, 8, 8), float("nan")), f)
    with pytest.raises(ValueError, match="num_features"):
        M.frechet_distance(x, x, torch.nn.Identity())
    with pytest.raises(TypeError, match="feature"):
        M.frechet_distance(x, x, "inception")


def test_mixture_scores_matches_its_parts():
    from gwf_tutorial.targets import get_target

    target = get_target("eight_gaussians")
    fl = M.floor(target, 300, "energy", n_pairs=4, progress=False)
    x = target.sample(300, generator=torch.Generator().manual_seed(3))
    r = M.mixture_scores(x, target, fl)
    assert r["ratio"] == pytest.approx(M.score_vs_floor(x, target, "energy", fl).ratio)
    assert r["modes"] == 8 and r["near"] > 0.9 and r["tv"] < 0.1
    with pytest.raises(ValueError, match="floor_result"):
        M.mixture_scores(x, target, M.floor(target, 300, "w2", n_pairs=2, progress=False))


# ------------------------------------------------------------------------------------------
# extreme values and seeds
# ------------------------------------------------------------------------------------------


def _spread(seed=0):
    g = _gen(seed)
    return torch.randn(30, 2, generator=g, dtype=F64), torch.randn(20, 2, generator=g, dtype=F64) + 1.0


def test_extreme_values_float32_refused_float64_scale_equivariant():
    """1e30 in float32: squared distances overflow, so the metrics refuse it, naming the argument. In
    float64 they compute, and equal their scale laws: E(sx, sy) = s E, SW2(sx, sy) = s^2 SW2,
    S_{s^2 eps}(sx, sy) = s^2 S_eps (the entropic cost scales with the squared cost)."""
    x, y = _spread()
    s = 1e30
    for fn in (M.energy_distance, M.sliced_w2, lambda a, b: M.sinkhorn_divergence(a, b, eps=0.5)):
        with pytest.raises(ValueError, match=r"^x holds values up to .*, too large for torch.float32"):
            fn((s * x).float(), y.float())
        with pytest.raises(ValueError, match=r"^y holds values"):
            fn(x.float(), (s * y).float())
    ed = M.energy_distance
    torch.testing.assert_close(ed(s * x, s * y), s * ed(x, y), rtol=1e-12, atol=0)
    sw = lambda a, b: M.sliced_w2(a, b, generator=_gen(3))  # noqa: E731
    torch.testing.assert_close(sw(s * x, s * y), s**2 * sw(x, y), rtol=1e-12, atol=0)
    sk = M.sinkhorn_divergence(s * x, s * y, eps=0.5 * s**2)
    torch.testing.assert_close(sk, s**2 * M.sinkhorn_divergence(x, y, eps=0.5), rtol=1e-9, atol=0)


def test_seeds_are_integers():
    x = get_target("moons").sample(20, _gen(0))
    for bad in (2.0, True, "2"):
        with pytest.raises(TypeError, match="seed must be a non-negative integer"):
            M.score_vs_floor(x, "moons", n_refs=1, seed=bad)
    a = M.score_vs_floor(x, "moons", n_refs=1, seed=np.int64(2))
    b = M.score_vs_floor(x, "moons", n_refs=1, seed=2)
    assert a.ratio == b.ratio
