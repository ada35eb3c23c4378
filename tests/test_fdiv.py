"""Tests for gwf_tutorial.fdiv: conjugate identities, Fenchel--Young, closed forms, bounds."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from gwf_tutorial import fdiv, gaussian
from gwf_tutorial.fdiv import (
    FDIVERGENCES,
    GAN,
    JS,
    KL,
    KL_DV,
    PEARSON_CHI2,
    REVERSE_KL,
    SQUARED_HELLINGER,
    dv_bound,
    get_fdivergence,
    variational_bound,
)

ALL = list(FDIVERGENCES.values())
IDS = [d.name for d in ALL]
T_GRID = torch.logspace(-3, 1.5, 400, dtype=torch.float64)  # t in [1e-3, 31.6]


def _s_grid(d, n=300):
    """Critic values inside the conjugate domain (up to 0.05 below its upper end)."""
    hi = min(d.domain_upper, 6.0) - 0.05 if math.isfinite(d.domain_upper) else 4.0
    return torch.linspace(-8.0, hi, n, dtype=torch.float64)


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_conjugate_identity_on_grid(d):
    # f*(f'(t)) = t f'(t) - f(t): the sup defining f* is reached at t.
    s = d.f_prime(T_GRID)
    lhs = d.conjugate(s)
    rhs = T_GRID * s - d.f(T_GRID)
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)
    assert lhs.dtype == torch.float64


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_fenchel_young_on_grid(d):
    # f(t) + f*(s) >= s t for all t >= 0 and s in the domain; equality at s = f'(t).
    s = _s_grid(d)
    gap = d.f(T_GRID)[:, None] + d.conjugate(s)[None, :] - T_GRID[:, None] * s[None, :]
    assert torch.isfinite(gap).all()
    assert gap.min() >= -1e-12
    eq = d.f(T_GRID) + d.conjugate(d.f_prime(T_GRID)) - T_GRID * d.f_prime(T_GRID)
    assert eq.abs().max() < 1e-10


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_conjugate_matches_numerical_supremum(d):
    # Independent computation: f*(s) = sup_{t >= 0} st - f(t) by scipy's bounded scalar search.
    for s in [-3.0, -1.0, -0.2, 0.3, 0.6, 0.9, 1.5]:
        if s >= d.domain_upper:
            assert d.conjugate(torch.tensor(s, dtype=torch.float64)).item() == math.inf
            continue

        def neg(t, s=s):
            return -(s * t - d.f(torch.tensor(t, dtype=torch.float64)).item())

        # the maximiser is f'^{-1}(s) (or 0 for chi^2 with s < -2): search a bracket around it
        t_star = d.ratio_from_critic(torch.tensor(s, dtype=torch.float64)).item()
        res = optimize.minimize_scalar(
            neg, bounds=(0.0, 2 * t_star + 1.0), method="bounded", options={"xatol": 1e-12}
        )
        expected = max(-res.fun, -d.f(torch.tensor(0.0, dtype=torch.float64)).item())
        got = d.conjugate(torch.tensor(s, dtype=torch.float64)).item()
        assert got == pytest.approx(expected, abs=1e-8), (d.name, s)


def test_chi2_conjugate_lower_branch():
    s = torch.tensor([-5.0, -2.0, -1.0], dtype=torch.float64)
    torch.testing.assert_close(
        PEARSON_CHI2.conjugate(s), torch.tensor([-1.0, -1.0, -0.75], dtype=torch.float64)
    )


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_derivatives_match_autograd(d):
    t = T_GRID.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(d.f(t).sum(), t)
    torch.testing.assert_close(g1, d.f_prime(T_GRID), rtol=1e-9, atol=1e-9)
    t = T_GRID.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(d.f_prime(t).sum(), t)
    torch.testing.assert_close(g2, d.f_double_prime(T_GRID), rtol=1e-9, atol=1e-9)
    # and the conjugate's derivative is (f')^{-1} (Legendre duality), inside the domain
    s = _s_grid(d)
    if d is PEARSON_CHI2:
        s = s[s > -2]
    s = s.clone().requires_grad_(True)
    (g3,) = torch.autograd.grad(d.conjugate(s).sum(), s)
    torch.testing.assert_close(g3, d.ratio_from_critic(s.detach()), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_normalisation_and_inverse(d):
    one = torch.tensor(1.0, dtype=torch.float64)
    # f(1) = 0, except for the GAN divergence (2 JS - log 4), whose f(1) = -log 4
    assert d.f(one).item() == pytest.approx(-math.log(4) if d is GAN else 0.0, abs=1e-15)
    torch.testing.assert_close(d.ratio_from_critic(d.optimal_critic(T_GRID)), T_GRID)


def test_velocity_factors_closed_forms():
    r = T_GRID
    torch.testing.assert_close(KL.velocity_factor(r), torch.ones_like(r))
    torch.testing.assert_close(REVERSE_KL.velocity_factor(r), 1 / r)
    torch.testing.assert_close(JS.velocity_factor(r), 1 / (1 + r))
    torch.testing.assert_close(GAN.velocity_factor(r), 1 / (1 + r))
    torch.testing.assert_close(PEARSON_CHI2.velocity_factor(r), 2 * r)
    torch.testing.assert_close(SQUARED_HELLINGER.velocity_factor(r), 0.5 / r.sqrt())


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_output_activation_maps_onto_domain(d):
    v = torch.linspace(-30, 30, 601, dtype=torch.float64)
    h = d.output_activation(v)
    assert torch.isfinite(d.conjugate(h)).all()
    assert (h < d.domain_upper).all()
    assert (h[1:] >= h[:-1]).all()  # monotone
    assert h[0] < -5  # unbounded below (up to the grid)
    upper = d.domain_upper if math.isfinite(d.domain_upper) else 30.0
    assert h[-1] == pytest.approx(upper, abs=1e-6)  # reaches the upper end


@pytest.mark.parametrize("d", ALL, ids=IDS)
def test_conjugate_out_of_domain_is_inf_with_finite_grad_inside(d):
    if not math.isfinite(d.domain_upper):
        pytest.skip("no upper bound")
    s = torch.tensor(
        [d.domain_upper - 0.5, d.domain_upper, d.domain_upper + 1], dtype=torch.float64
    ).requires_grad_(True)
    val = d.conjugate(s)
    assert torch.isfinite(val[0]) and val[1] == math.inf and val[2] == math.inf
    (g,) = torch.autograd.grad(val[0], s)
    assert torch.isfinite(g).all()


def _quad_divergence(d, m1, s1, m2, s2):
    """E_nu f(rho/nu) by adaptive quadrature (rho = N(m1, s1^2), nu = N(m2, s2^2))."""

    def integrand(x):
        r = stats.norm.pdf(x, m1, s1) / stats.norm.pdf(x, m2, s2)
        return stats.norm.pdf(x, m2, s2) * d.f(torch.tensor(r, dtype=torch.float64)).item()

    lo = min(m1 - 12 * s1, m2 - 12 * s2)
    hi = max(m1 + 12 * s1, m2 + 12 * s2)
    return integrate.quad(integrand, lo, hi, limit=200, epsabs=1e-12)[0]


def test_divergences_between_gaussians_closed_forms():
    m1, s1, m2, s2 = 0.3, 0.8, -0.4, 1.1

    def kl_gauss(ma, sa, mb, sb):
        t = lambda v: torch.tensor([[v]], dtype=torch.float64)  # noqa: E731
        return gaussian.kl(
            torch.tensor([ma], dtype=torch.float64), t(sa**2), torch.tensor([mb]).double(), t(sb**2)
        ).item()

    # (quadrature accuracy about 1e-8)
    assert _quad_divergence(KL, m1, s1, m2, s2) == pytest.approx(kl_gauss(m1, s1, m2, s2), abs=1e-7)
    assert _quad_divergence(REVERSE_KL, m1, s1, m2, s2) == pytest.approx(
        kl_gauss(m2, s2, m1, s1), abs=1e-7
    )
    # squared Hellinger = 2 - 2 BC, Bhattacharyya coefficient of two 1-D Gaussians
    bc = math.sqrt(2 * s1 * s2 / (s1**2 + s2**2)) * math.exp(
        -((m1 - m2) ** 2) / (4 * (s1**2 + s2**2))
    )
    assert _quad_divergence(SQUARED_HELLINGER, m1, s1, m2, s2) == pytest.approx(
        2 - 2 * bc, abs=1e-7
    )
    # GAN divergence = 2 JS - log 4
    assert _quad_divergence(GAN, m1, s1, m2, s2) == pytest.approx(
        _quad_divergence(JS, m1, s1, m2, s2) - math.log(4), abs=1e-7
    )
    # chi^2: int rho^2 / nu - 1 in closed form (needs 2/s1^2 > 1/s2^2)
    a = 2 / s1**2 - 1 / s2**2
    b = 2 * m1 / s1**2 - m2 / s2**2
    c = 2 * m1**2 / s1**2 - m2**2 / s2**2
    chi2 = s2 / (s1**2 * math.sqrt(a)) * math.exp(0.5 * (b**2 / a - c)) - 1
    assert _quad_divergence(PEARSON_CHI2, m1, s1, m2, s2) == pytest.approx(chi2, abs=1e-7)


@pytest.mark.parametrize("d", [KL, REVERSE_KL, JS, PEARSON_CHI2, SQUARED_HELLINGER, GAN], ids=str)
def test_variational_bound_tight_at_optimal_critic(d):
    # rho = N(0.5, 1), nu = N(0, 1): r(x) = exp(0.5 x - 0.125). Monte Carlo, n = 2e5 per side.
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x = 0.5 + torch.randn(n, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)

    def ratio(z):
        return torch.exp(0.5 * z - 0.125)

    exact = _quad_divergence(d, 0.5, 1.0, 0.0, 1.0)
    best = variational_bound(d, d.optimal_critic(ratio(x)), d.optimal_critic(ratio(y))).item()
    assert best == pytest.approx(exact, abs=0.02)  # Monte Carlo error, about 5 standard errors
    # a wrong critic (optimal for the ratio r^0.5) is worse by more than the Monte Carlo error
    h = lambda z: d.optimal_critic(ratio(z).sqrt())  # noqa: E731
    assert variational_bound(d, h(x), h(y)).item() < exact - 0.01


def test_dv_bound_dominates_classical_bound_pointwise():
    # E h - log E e^h >= E h - E e^{h - 1} for every h (log u <= u / e), equality iff E e^h = e.
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        h_x = 2 * torch.randn(64, generator=g, dtype=torch.float64)
        h_y = 3 * torch.randn(80, generator=g, dtype=torch.float64) - 1
        dv = dv_bound(h_x, h_y)
        classical = variational_bound(KL, h_x, h_y)
        assert dv >= classical - 1e-12
        # the best constant shift of the classical bound equals DV (DV is shift invariant)
        c = 1 - torch.log(torch.exp(h_y).mean())
        torch.testing.assert_close(variational_bound(KL, h_x + c, h_y + c), dv)
        torch.testing.assert_close(dv_bound(h_x + 3.0, h_y + 3.0), dv)
    # KL_DV routes variational_bound to the DV form
    torch.testing.assert_close(variational_bound(KL_DV, h_x, h_y), dv_bound(h_x, h_y))


def test_dv_bound_value_against_numpy():
    h_x = torch.tensor([0.1, -0.4, 2.0], dtype=torch.float64)
    h_y = torch.tensor([[0.3], [1.5]], dtype=torch.float64)
    expected = np.mean([0.1, -0.4, 2.0]) - np.log(np.mean(np.exp([0.3, 1.5])))
    assert dv_bound(h_x, h_y).item() == pytest.approx(expected, abs=1e-14)


def test_registry_and_aliases():
    assert get_fdivergence("KL") is KL
    assert get_fdivergence(" Squared_Hellinger ") is SQUARED_HELLINGER
    assert get_fdivergence(GAN) is GAN
    assert set(FDIVERGENCES) == {
        "kl",
        "kl_dv",
        "reverse_kl",
        "js",
        "chi2",
        "squared_hellinger",
        "gan",
    }
    with pytest.raises(ValueError, match="name"):
        get_fdivergence("wasserstein")
    with pytest.raises(TypeError, match="name"):
        get_fdivergence(3)


def test_bad_input():
    with pytest.raises(ValueError, match="r must be non-negative"):
        KL.optimal_critic(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="r must be positive"):
        KL.velocity_factor(torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="s contains NaN"):
        JS.conjugate(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="h_x"):
        variational_bound(KL, torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(TypeError, match="h_y"):
        dv_bound(torch.zeros(3), [0.0, 1.0])
    with pytest.raises(TypeError, match="v must be"):
        GAN.output_activation(1.0)
    assert fdiv.KL.f(torch.tensor([-1.0])).item() == math.inf


@pytest.mark.parametrize("name", ["kl", "reverse_kl", "js", "chi2", "squared_hellinger", "gan"])
def test_conjugate_activated_equals_composition_and_is_stable(name):
    d = get_fdivergence(name)
    v = torch.linspace(-8, 8, 33, dtype=torch.float64)
    assert torch.allclose(d._conjugate_activated(v), d.conjugate(d.activation(v)), rtol=1e-9, atol=1e-9)
    if name in ("gan", "js"):  # a confident critic: the composition overflows, the closed form does not
        big = torch.tensor([150.0], requires_grad=True)
        assert not torch.isfinite(d.conjugate(d.activation(big.detach()))).all()
        out = d._conjugate_activated(big)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(big.grad).all()


def test_bounds_check_critic_values_once_at_entry():
    # public bounds: one value check (NaN, Inf, overflow, dtype); the loops' per-step form checks shapes
    h_x, h_y = torch.tensor([0.2, -0.4, 1.0]), torch.tensor([0.5, 0.1])
    big = torch.tensor([0.5, 1e30])  # exp(1e30 - 1) = inf: the bound would be -inf
    with pytest.raises(ValueError, match=r"^h_y holds values up to 1e\+30"):
        variational_bound(KL, h_x, big)
    with pytest.raises(ValueError, match=r"^h_x contains NaN or infinite"):
        dv_bound(torch.tensor([0.0, math.inf]), h_y)
    with pytest.raises(TypeError, match=r"^h_x must hold real"):
        dv_bound(h_x.to(torch.complex64), h_y)
    with pytest.raises(TypeError, match=r"^h_y must be float32 or float64"):
        variational_bound(JS, h_x, h_y.bfloat16())
    with pytest.raises(ValueError, match=r"^h_x must not be empty"):
        variational_bound(JS, h_x[:0], h_y)
    as_int = variational_bound(KL, h_x.round().long(), h_y)
    assert torch.equal(as_int, variational_bound(KL, h_x.round(), h_y))
    # the per-step form (used by the training loops) gives the same number without checking values
    assert torch.equal(fdiv._bound(KL, h_x, h_y, check_nan=False), variational_bound(KL, h_x, h_y))
    assert fdiv._bound(KL, h_x, big, check_nan=False).item() == -math.inf
    with pytest.raises(ValueError, match="h_x must not be empty"):
        fdiv._bound(KL, h_x[:0], h_y, check_nan=False)


def test_softplus_psi_is_2js_against_the_reflected_law():
    """S-JKO's "softplus" divergence: sum_j nu_j Psi(mu_j / nu_j) = 2 JS(mu, 2 nu - mu), infinite where
    dmu/dnu > 2, and not JS(mu, nu); Psi*(s) = 2 softplus(s) - 2 log 2 at the maximiser t = 2 sigmoid(s)."""
    psi = fdiv.PSI_F["softplus"]
    nu = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    mu = torch.tensor([0.15, 0.1, 0.45, 0.3], dtype=torch.float64)  # mu / nu <= 2
    d_psi = float((nu * psi(mu / nu)).sum())

    def kl(a, b):
        return float(torch.special.xlogy(a, a / b).sum())

    def js(a, b):
        m = (a + b) / 2
        return (kl(a, m) + kl(b, m)) / 2

    assert d_psi == pytest.approx(2 * js(mu, 2 * nu - mu), rel=1e-12)
    assert abs(d_psi - 2 * js(mu, nu)) > 1e-2  # a different divergence from 2 JS(mu, nu)
    # infinite where the density ratio exceeds 2
    mu_far = torch.tensor([0.25, 0.05, 0.3, 0.4], dtype=torch.float64)  # 0.25 / 0.1 > 2
    assert math.isinf(float((nu * psi(mu_far / nu)).sum()))
    # the conjugate in closed form: sup_t s t - Psi(t) at t = 2 sigmoid(s)
    s = torch.linspace(-5.0, 5.0, 41, dtype=torch.float64)
    t_star = 2 * torch.sigmoid(s)
    torch.testing.assert_close(fdiv.PSI_STAR["softplus"](s), s * t_star - psi(t_star), rtol=1e-12, atol=1e-12)
    closed = 2 * torch.nn.functional.softplus(s) - 2 * math.log(2)
    torch.testing.assert_close(fdiv.psi_star("softplus")(s), closed, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match=r"one of \['chi2', 'kl', 'softplus'\], got 'js'"):
        fdiv.psi_star("js")
