"""Tests of gwf_tutorial.sjko: S-JKO losses, the semi-dual JKO step and its trainer.

The reference is the exact Gaussian JKO step of KL(. || N(m, Sigma)) (``gaussian.jko_step_kl``,
closed form): with an affine map and a quadratic potential the semi-dual saddle point is
reachable exactly, so the tests can demand the closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from test_train import assert_damaged_checkpoints_refused
from torch import nn

from gwf_tutorial import critics, fdiv, gaussian, jko, nets, sjko

DT = torch.float64


class Quadratic(nn.Module):
    """v(y) = c y^2 + e y + g in 1-D (the exact family of log-ratios of Gaussians)."""

    def __init__(self, c=0.0, e=0.0, g=0.0):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([c, e, g], dtype=DT))

    def forward(self, y):
        y = y[:, 0]
        return self.theta[0] * y**2 + self.theta[1] * y + self.theta[2]


class NoisyAffine(nn.Module):
    """T(x, z) = a x + s z + b (1-D point, 1-D latent)."""

    def __init__(self, s=0.5):
        super().__init__()
        self.a = nn.Parameter(torch.ones((), dtype=DT))
        self.s = nn.Parameter(torch.tensor(s, dtype=DT))
        self.b = nn.Parameter(torch.zeros((), dtype=DT))

    def forward(self, x, z):
        return self.a * x + self.s * z + self.b


def quantile_points(n, mean, var):
    """n deterministic points whose empirical law is close to N(mean, var) (exact mean, var)."""
    u = norm.ppf((np.arange(n) + 0.5) / n)
    u = (u - u.mean()) / u.std()
    return torch.tensor(mean + math.sqrt(var) * u, dtype=DT)[:, None]


def gauss_hermite(n, mean, var):
    """Nodes and normalised weights of E_{N(mean, var)} (probabilists' Gauss-Hermite)."""
    u, w = np.polynomial.hermite_e.hermegauss(n)
    return (
        torch.tensor(mean + math.sqrt(var) * u, dtype=DT),
        torch.tensor(w / w.sum(), dtype=DT),
    )


def exact_steps(mean, var, target_mean, target_var, tau, k):
    m, S = torch.tensor([mean], dtype=DT), torch.tensor([[var]], dtype=DT)
    for _ in range(k):
        m, S = gaussian.jko_step_kl(
            m, S, torch.tensor([target_mean], dtype=DT), torch.tensor([[target_var]], dtype=DT), tau
        )
    return m.item(), S.item()


def primal_value(mean, var, mean1, var1, target_mean, target_var, tau):
    """W2^2(N(mean, var), N(mean1, var1)) / (2 tau) + KL(N(mean1, var1) || N(target))."""

    def t(a):
        return torch.tensor([a], dtype=DT)

    def c(a):
        return torch.tensor([[a]], dtype=DT)

    w2 = gaussian.w2_squared(t(mean), c(var), t(mean1), c(var1))
    return (w2 / (2 * tau) + gaussian.kl(t(mean1), c(var1), t(target_mean), c(target_var))).item()


def optimal_potential(mean1, var1, target_mean, target_var):
    """v* = -log(rho_{k+1} / nu) for Gaussians, as (c, e, g) of c y^2 + e y + g."""
    c = 1 / (2 * var1) - 1 / (2 * target_var)
    e = -mean1 / var1 + target_mean / target_var
    g = mean1**2 / (2 * var1) - target_mean**2 / (2 * target_var) + 0.5 * math.log(var1 / target_var)
    return c, e, g


# Closed form: mu = 0, s = 1, target N(2, 0.5), h = 0.3 -> mu+ = 0.75, s+ = 0.7165626463
CASE = dict(mean=0.0, var=1.0, target_mean=2.0, target_var=0.5, tau=0.3)


# ---------------------------------------------------------------------------------------------
# Psi* and the losses
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["kl", "chi2", "softplus"])
def test_psi_star_is_the_conjugate_of_psi_f(name):
    # Legendre transform on a fine grid of t: Psi*(s) = sup_t s t - f(t)
    hi = 2.0 if name == "softplus" else 30.0
    t = torch.linspace(0.0, hi, 300001, dtype=DT)
    f = sjko.PSI_F[name](t)
    s = torch.linspace(-3.0, 0.6, 37, dtype=DT)
    legendre = (s[:, None] * t[None, :] - f[None, :]).max(dim=1).values
    assert torch.allclose(sjko.PSI_STAR[name](s), legendre, atol=1e-6)
    # Psi*(0) = 0, Psi*'(0) = 1 (f(1) = 0, f'(1) = 0)
    s0 = torch.zeros((), dtype=DT, requires_grad=True)
    val = sjko.psi_star(name)(s0)
    (grad,) = torch.autograd.grad(val, s0)
    assert abs(val.item()) < 1e-15 and abs(grad.item() - 1) < 1e-12


def test_psi_star_matches_the_fdiv_catalogue():
    s = torch.linspace(-4.0, 3.0, 50, dtype=DT)
    assert torch.allclose(sjko.PSI_STAR["chi2"](s), fdiv.PEARSON_CHI2.conjugate(s), atol=1e-12)
    # centred KL: e^s - 1 = f*_{t log t}(s + 1) - 1
    assert torch.allclose(sjko.PSI_STAR["kl"](s), fdiv.KL.conjugate(s + 1) - 1, atol=1e-12)
    assert sjko.psi_star("softplus") is sjko.PSI_STAR["softplus"]
    with pytest.raises(ValueError, match="divergence must be one of"):  # "js" is not Jensen-Shannon here
        sjko.psi_star("js")
    # one catalogue: the S-JKO conjugates live in fdiv, sjko re-exports them
    assert sjko.psi_star is fdiv.psi_star and sjko.PSI_STAR is fdiv.PSI_STAR and sjko.PSI_F is fdiv.PSI_F


def test_losses_by_hand():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 3, generator=g, dtype=DT)
    y = torch.randn(7, 3, generator=g, dtype=DT)
    vf = torch.randn(7, generator=g, dtype=DT)
    vr = torch.randn(5, 1, generator=g, dtype=DT)
    grad = torch.randn(5, 3, generator=g, dtype=DT)
    tau = 0.7
    cost = ((x - y) ** 2).sum(1) / (2 * tau)
    assert torch.allclose(sjko.transport_cost(x, y, tau), cost)
    assert torch.allclose(sjko.transport_cost(x, y, tau, per_dim_average=True), cost / 3)
    assert sjko.transport_cost is jko.proximal_cost  # one proximal cost
    expected = vf.mean() + torch.expm1(-vr[:, 0]).mean() + 0.1 * (grad**2).sum(1).mean()
    got = sjko.potential_loss(vf, vr, "kl", grad_real=grad, r1=0.2)
    assert torch.allclose(got, expected)
    assert torch.allclose(sjko.map_loss(x, y, vf, tau), (cost - vf).mean())
    w = torch.rand(7, generator=g, dtype=DT)
    assert torch.allclose(sjko.map_loss(x, y, vf, tau, source_weights=w), ((cost - vf) * w).sum() / w.sum())
    j = sjko.semi_dual_objective(cost, vf, vr, "chi2")
    u = torch.clamp(-vr[:, 0], min=-2)
    assert torch.allclose(j, (cost - vf).mean() - (u + u**2 / 4).mean())


def test_r1_penalty_gradient_of_a_quadratic():
    v = Quadratic(0.3, -1.2, 0.5)
    y = torch.linspace(-2, 2, 9, dtype=DT)[:, None]
    vals, grad = critics.value_and_input_grad(v, y)  # one R1 in the library: critics'
    assert torch.allclose(vals.reshape(-1), 0.3 * y[:, 0] ** 2 - 1.2 * y[:, 0] + 0.5)
    r1 = critics.add_penalties(y.new_zeros(()), v, y, y, r1=2.0)  # R1 alone: it adds (r1 / 2) R1
    assert torch.allclose(r1, (grad**2).sum(1).mean())
    assert torch.allclose(grad[:, 0], 0.6 * y[:, 0] - 1.2)
    # the penalty trains the potential: d/dc (1/2) E|2 c y + e|^2 = E[(2cy + e) 2y]
    pen = 0.5 * (grad**2).sum(1).mean()
    (dc,) = torch.autograd.grad(pen, v.theta)[:1]
    assert torch.allclose(dc[0], ((0.6 * y[:, 0] - 1.2) * 2 * y[:, 0]).mean())


def test_quadratic_potential_by_hand():
    v = sjko.QuadraticPotential(2, dtype=DT)
    assert torch.equal(v(torch.ones(3, 2, dtype=DT)), torch.zeros(3, dtype=DT))  # starts at 0
    with torch.no_grad():
        v.C.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]], dtype=DT))  # symmetric part [[1, 1], [1, -1]]
        v.e.copy_(torch.tensor([0.5, -2.0], dtype=DT))
        v.g.fill_(3.0)
    y = torch.tensor([[1.0, 2.0], [-1.0, 0.5]], dtype=DT)
    expected = torch.tensor([1 + 2 * 2 - 4 + 0.5 - 4 + 3, 1 - 1 - 0.25 - 0.5 - 1 + 3], dtype=DT)
    assert torch.allclose(v(y), expected, atol=1e-14)
    with pytest.raises(ValueError, match="y"):
        v(torch.zeros(3, 3, dtype=DT))


# ---------------------------------------------------------------------------------------------
# The semi-dual saddle point is the exact JKO step (deterministic, Gauss-Hermite expectations)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gh_saddle():
    """Alternating Adam on L_v and L_T with exact Gaussian expectations (64-node quadrature)."""
    x, wx = gauss_hermite(64, CASE["mean"], CASE["var"])
    y, wy = gauss_hermite(64, CASE["target_mean"], CASE["target_var"])
    T = nets.AffineMap(1, dtype=DT)
    v = Quadratic()
    opt_t = torch.optim.Adam(T.parameters(), lr=0.05)
    opt_v = torch.optim.Adam(v.parameters(), lr=0.05)
    n_iters = 1000
    for it in range(n_iters):
        for opt in (opt_t, opt_v):
            opt.param_groups[0]["lr"] = 0.05 * 0.5 * (1 + math.cos(math.pi * it / n_iters))
        opt_v.zero_grad()
        with torch.no_grad():
            tx = T(x[:, None])
        loss_v = sjko.potential_loss(v(tx), v(y[:, None]), "kl", source_weights=wx, data_weights=wy)
        loss_v.backward()
        opt_v.step()
        opt_t.zero_grad()
        tx = T(x[:, None])
        loss_t = sjko.map_loss(tx, x[:, None], v(tx), CASE["tau"], source_weights=wx)
        loss_t.backward()
        opt_t.step()
    return T, v, (x, wx, y, wy)


def test_semi_dual_saddle_is_the_exact_gaussian_jko_step(gh_saddle):
    T, v, _ = gh_saddle
    a, b = T.A.item(), T.b.item()
    mean1, var1 = b + a * CASE["mean"], a**2 * CASE["var"]
    m_ref, S_ref = exact_steps(**{k: CASE[k] for k in CASE}, k=1)
    assert abs(m_ref - 0.75) < 1e-12 and abs(S_ref - 0.7165626463) < 1e-9  # the closed form above
    assert abs(mean1 - m_ref) < 1e-6
    assert abs(var1 - S_ref) < 1e-6
    # the potential is v* = -log(rho_1 / nu)
    c, e, g = optimal_potential(m_ref, S_ref, CASE["target_mean"], CASE["target_var"])
    assert torch.allclose(v.theta.detach(), torch.tensor([c, e, g], dtype=DT), atol=1e-5)


def test_semi_dual_value_equals_primal_jko_objective(gh_saddle):
    m1, S1 = exact_steps(**CASE, k=1)
    primal = primal_value(
        CASE["mean"], CASE["var"], m1, S1, CASE["target_mean"], CASE["target_var"], CASE["tau"]
    )
    x, wx, y, wy = gh_saddle[2]
    tau = CASE["tau"]
    a_star = math.sqrt(S1 / CASE["var"])

    def value(c, e, g, a, b):
        v = Quadratic(c, e, g)
        tx = (a * x + b)[:, None]
        cost = sjko.transport_cost(tx, x[:, None], tau)
        return sjko.semi_dual_objective(
            cost, v(tx), v(y[:, None]), "kl", source_weights=wx, data_weights=wy
        ).item()

    star = optimal_potential(m1, S1, CASE["target_mean"], CASE["target_var"])
    b_star = m1 - a_star * CASE["mean"]
    # exact optimum (analytic T*, v*): strong duality
    assert abs(value(*star, a_star, b_star) - primal) < 1e-10
    # the trained saddle point
    T, v, _ = gh_saddle
    learned = value(*v.theta.detach().tolist(), T.A.item(), T.b.item())
    assert abs(learned - primal) < 1e-8
    # for v*, any other map gives a larger value (inf over T) ...
    assert value(*star, a_star * 1.05, b_star) > primal + 1e-4
    assert value(*star, a_star, b_star + 0.05) > primal + 1e-4
    # ... and another potential with its own best map (closed-form c-transform) gives a
    # smaller one (weak duality): T(x) = (x / tau + e) / (1 / tau - 2 c)
    c, e, g = star[0] * 0.8, star[1] * 0.9, star[2] + 0.1
    best = value(c, e, g, 1 / (1 - 2 * c * tau), e * tau / (1 - 2 * c * tau))
    assert best < primal - 1e-4


# ---------------------------------------------------------------------------------------------
# The trainer
# ---------------------------------------------------------------------------------------------

# a case where rho_{k+1} / nu is bounded, so that equal-weight points estimate E_nu exp(-v) well
EASY = dict(mean=0.0, var=0.5, target_mean=1.0, target_var=1.0, tau=0.5)


def make_trainer(parametrization="reparameterized", n=500, **kw):
    opts = dict(
        divergence="kl",
        tau=EASY["tau"],
        lr=0.05,
        lr_critic=0.05,
        r1=0.0,
        n_iters=600,
        batch_size=n,
        lr_schedule="cosine",
        seed=0,
        parametrization=parametrization,
    )
    opts.update(kw)
    return sjko.SemiDualJKO(nets.AffineMap(1, dtype=DT), Quadratic(), **opts)


def test_phase_converges_to_the_exact_jko_step():
    src = quantile_points(500, EASY["mean"], EASY["var"])
    data = quantile_points(500, EASY["target_mean"], EASY["target_var"])
    tr = make_trainer()
    res = tr.phase(src, data, progress=False)
    out = tr.push(src)
    m1, S1 = exact_steps(**EASY, k=1)
    assert out.dtype == DT
    assert abs(out.mean().item() - m1) < 2e-3
    assert abs(out.var(unbiased=False).item() - S1) < 2e-3
    # the semi-dual estimate at the end of the phase is the primal JKO objective
    primal = primal_value(
        EASY["mean"], EASY["var"], m1, S1, EASY["target_mean"], EASY["target_var"], EASY["tau"]
    )
    assert abs(res.semi_dual[-1].item() - primal) < 5e-3
    assert res.potential_loss.shape == (600,) and res.map_loss.shape == (600,)
    assert tr.n_phases == 1 and tr.history[0] is res


def test_phase_with_minibatch_samplers():
    def source(n, generator=None):
        return math.sqrt(EASY["var"]) * torch.randn(n, 1, generator=generator, dtype=DT)

    def data(n, generator=None):
        return EASY["target_mean"] + torch.randn(n, 1, generator=generator, dtype=DT)

    tr = make_trainer(n=256, n_iters=800, lr=0.02, lr_critic=0.02)
    tr.phase(source, data, progress=False)
    m1, S1 = exact_steps(**EASY, k=1)
    a, b = tr.map.A.item(), tr.map.b.item()
    assert abs(b + a * EASY["mean"] - m1) < 5e-2
    assert abs(a**2 * EASY["var"] - S1) < 5e-2
    x = tr.sample(10)
    assert x.shape == (10, 1) and x.dtype == DT


def test_reparameterized_and_composed_agree_after_three_phases():
    src = quantile_points(500, EASY["mean"], EASY["var"])
    data = quantile_points(500, EASY["target_mean"], EASY["target_var"])
    outs = {}
    for par in ("reparameterized", "composed"):
        tr = make_trainer(par, n_iters=500)
        tr.run(3, src, data, progress=False)
        outs[par] = tr.push(src)[:, 0]
        assert len(tr.chain) == (3 if par == "composed" else 0)
    m3, S3 = exact_steps(**EASY, k=3)
    r, c = outs["reparameterized"], outs["composed"]
    assert abs(r.mean().item() - c.mean().item()) < 1e-3
    assert abs(r.var().item() - c.var().item()) < 1e-3
    for o in (r, c):
        assert abs(o.mean().item() - m3) < 3e-3
        assert abs(o.var(unbiased=False).item() - S3) < 3e-3


def test_composed_samples_through_every_map():
    src = quantile_points(50, 0.0, 1.0)
    tr = make_trainer("composed", n_iters=2)
    tr.run(2, src, quantile_points(50, 1.0, 1.0), progress=False)
    A = [m.A.item() for m in tr.chain]
    B = [m.b.item() for m in tr.chain]
    expected = A[1] * (A[0] * src + B[0]) + B[1]
    assert torch.allclose(tr.push(src), expected)


def test_independent_latents_change_the_proximal_term():
    s, tau, n = 0.5, 0.5, 40000
    for independent in (False, True):
        tr = sjko.SemiDualJKO(
            NoisyAffine(s),
            Quadratic(),
            tau=tau,
            noise_dim=1,
            n_iters=1,
            batch_size=8,
            independent_latents=independent,
            seed=1,
        )
        src = torch.randn(64, 1, dtype=DT)
        tr.phase(src, src + 1, progress=False)
        tr.start_phase()  # phase 1: old map = frozen copy of the current one
        x0 = torch.randn(n, 1, generator=torch.Generator().manual_seed(3), dtype=DT)
        inputs, old, z = tr.source_and_old(x0)
        new = tr.map(inputs, z)
        prox = sjko.transport_cost(new, old, tau).mean().item()
        if independent:  # E|s (z - z')|^2 / (2 tau) = s^2 / tau
            expected = tr.map.s.item() ** 2 / tau
            assert abs(prox - expected) < 0.03 * expected
        else:  # same latent: the proximal term is a per-sample displacement, 0 at T = T_old
            assert prox == 0.0


def test_instance_noise_scale_and_flag():
    y = torch.zeros(200000, 1, dtype=DT)
    for k in (0, 3):
        noisy = sjko.add_instance_noise(y, k, generator=torch.Generator().manual_seed(0))
        assert abs(noisy.std().item() - 1 / (32 * (k + 1))) < 1e-2 / (32 * (k + 1))

    seen = {}

    class Recording(Quadratic):
        def forward(self, y):
            seen.setdefault("first", y.detach().clone())
            return super().forward(y)

    data = quantile_points(20, 1.0, 1.0)
    for flag in (False, True):
        seen.clear()
        tr = sjko.SemiDualJKO(
            nets.AffineMap(1, dtype=DT),
            Recording(),
            r1=0.0,
            n_iters=1,
            batch_size=20,
            instance_noise=flag,
            seed=0,
        )
        tr.phase(quantile_points(20, 0.0, 1.0), data, progress=False)
        diff = (seen["first"] - data).std().item()
        if flag:
            assert abs(diff - 1 / 32) < 0.5 / 32
        else:
            assert diff == 0.0


def test_per_dim_average_is_a_step_scaled_by_d():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(64, 2, generator=g, dtype=DT)
    data = torch.randn(64, 2, generator=g, dtype=DT) + 1
    maps = []
    for per_dim, tau in ((True, 0.25), (False, 0.5)):
        tr = sjko.SemiDualJKO(
            nets.AffineMap(2, dtype=DT),
            sjko.QuadraticPotential(2, dtype=DT),
            tau=tau,
            per_dim_average=per_dim,
            r1=0.0,
            lr=0.01,
            lr_critic=0.01,
            n_iters=20,
            batch_size=64,
            seed=0,
        )
        tr.phase(src, data, progress=False)
        maps.append(tr.map.A.detach().clone())
    assert torch.allclose(maps[0], maps[1], atol=1e-10)
    tr = sjko.SemiDualJKO(
        nets.AffineMap(2, dtype=DT),
        sjko.QuadraticPotential(2, dtype=DT),
        tau=0.25,
        r1=0.0,
        lr=0.01,
        lr_critic=0.01,
        n_iters=20,
        batch_size=64,
        seed=0,
    )
    tr.phase(src, data, progress=False)
    assert not torch.allclose(tr.map.A, maps[0], atol=1e-6)


def test_ema_average_of_the_map():
    src = quantile_points(30, 0.0, 1.0)
    tr = make_trainer(n_iters=1, ema_decay=0.9)
    tr.phase(src, quantile_points(30, 1.0, 1.0), progress=False)
    # after one step from A_0 = 1: A_ema = 0.9 * 1 + 0.1 * A_1
    assert torch.allclose(tr.ema.A, 0.9 + 0.1 * tr.map.A)
    assert torch.allclose(tr.push(src), tr.ema(src))
    assert torch.allclose(tr.push(src, use_ema=False), tr.map(src))


def test_checkpoint_resume_is_exact(tmp_path):
    src = quantile_points(100, 0.0, 1.0)

    def data(n, generator=None):
        return 1 + torch.randn(n, 1, generator=generator, dtype=DT)

    ref = make_trainer(n=32, n_iters=10, ema_decay=0.5)
    ref.run(2, src, data, progress=False)

    first = make_trainer(n=32, n_iters=10, ema_decay=0.5)
    first.phase(src, data, progress=False)
    first.save(tmp_path / "one.pt")
    resumed = make_trainer(n=32, n_iters=10, ema_decay=0.5, seed=123)
    resumed.load(tmp_path / "one.pt")
    assert resumed.n_phases == 1 and len(resumed.history) == 1
    resumed.phase(src, data, progress=False)
    assert torch.equal(resumed.map.A, ref.map.A) and torch.equal(resumed.map.b, ref.map.b)
    assert torch.equal(resumed.potential.theta, ref.potential.theta)
    assert torch.equal(resumed.ema.A, ref.ema.A)


@pytest.mark.parametrize("parametrization", ["reparameterized", "composed"])
def test_run_resumes_from_checkpoint_losing_only_the_interrupted_phase(tmp_path, parametrization):
    src = quantile_points(100, 0.0, 1.0)

    def data(n, generator=None):
        return 1 + torch.randn(n, 1, generator=generator, dtype=DT)

    calls = {"n": 0}

    def crashing(n, generator=None):  # the same stream as data, then a crash inside phase 2
        calls["n"] += 1
        if calls["n"] > 2 * 11 + 5:  # per phase: 1 validation draw + 10 iterations
            raise RuntimeError("power cut")
        return data(n, generator)

    kw = dict(parametrization=parametrization, n=32, n_iters=10, ema_decay=0.5)
    ref = make_trainer(**kw)
    ref.run(3, src, data, progress=False)

    ckpt = tmp_path / "sjko.pt"
    first = make_trainer(**kw)
    with pytest.raises(RuntimeError, match="power cut"):
        first.run(3, src, crashing, checkpoint=ckpt, progress=False)
    assert first.n_phases == 2 and ckpt.exists()

    resumed = make_trainer(**kw, seed=99)  # everything that matters comes from the file
    out = resumed.run(3, src, data, checkpoint=ckpt, progress=False)
    assert [r.k for r in out] == [2]
    assert [r.k for r in resumed.history] == [0, 1, 2] and resumed.n_phases == 3
    assert torch.equal(resumed.map.A, ref.map.A) and torch.equal(resumed.map.b, ref.map.b)
    assert torch.equal(resumed.potential.theta, ref.potential.theta)
    assert torch.equal(resumed.ema.A, ref.ema.A)
    assert torch.equal(resumed.history[1].map_loss, ref.history[1].map_loss)
    assert torch.equal(resumed.push(src), ref.push(src))
    # a finished checkpoint: nothing left to run, the same sampler
    done = make_trainer(**kw)
    assert done.run(3, src, data, checkpoint=ckpt, progress=False) == []
    assert torch.equal(done.push(src), ref.push(src))
    fresh = make_trainer(**kw)
    with pytest.raises(ValueError, match="K=2"):
        fresh.run(2, src, data, checkpoint=ckpt, progress=False)
    assert fresh.n_phases == 0  # left untouched
    # a damaged file or other hyperparameters: refused, naming the file, which stays
    assert_damaged_checkpoints_refused(ckpt, lambda p: fresh.run(3, src, data, checkpoint=p))
    assert fresh.n_phases == 0
    with pytest.raises(ValueError, match=r"other hyperparameters.*tau: 0.5 in the checkpoint, 0.25 now"):
        make_trainer(**kw, tau=0.25).run(3, src, data, checkpoint=ckpt, progress=False)
    with pytest.raises(ValueError, match=r"ema_decay: 0.5 in the checkpoint, 0.9 now"):
        make_trainer(**{**kw, "ema_decay": 0.9}).run(3, src, data, checkpoint=ckpt, progress=False)


def test_phase_callback_sees_every_iteration():
    seen = []
    tr = make_trainer(n=20, n_iters=7)
    res = tr.phase(
        quantile_points(20, 0.0, 1.0),
        quantile_points(20, 1.0, 1.0),
        progress=False,
        callback=lambda it, lv, lt: seen.append((it, float(lv), float(lt))),
    )
    assert [s[0] for s in seen] == list(range(7))
    assert torch.equal(torch.tensor([s[1] for s in seen], dtype=DT), res.potential_loss)
    assert torch.equal(torch.tensor([s[2] for s in seen], dtype=DT), res.map_loss)
    with pytest.raises(TypeError, match="callback"):
        tr.phase(quantile_points(20, 0.0, 1.0), quantile_points(20, 1.0, 1.0), callback=3)


def test_bad_run_phase_and_checkpoint_arguments(tmp_path):
    src = quantile_points(10, 0.0, 1.0)
    tr = make_trainer(n_iters=1)
    with pytest.raises(ValueError, match="K"):
        tr.run(0, src, src)
    with pytest.raises(ValueError, match="n_iters_first"):
        tr.run(1, src, src, n_iters_first=0)
    with pytest.raises(ValueError, match="tau_first"):
        tr.run(1, src, src, tau_first=-1.0)
    with pytest.raises(ValueError, match="n_iters"):
        tr.phase(src, src, n_iters=0)
    with pytest.raises(ValueError, match="tau"):
        tr.phase(src, src, tau=0.0)
    with pytest.raises(ValueError, match="data points"):
        tr.phase(src, torch.zeros(10, 2, dtype=DT), progress=False)
    with pytest.raises(ValueError, match="missing.pt' does not exist"):
        tr.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt' is not a gwf_tutorial checkpoint"):
        tr.load(tmp_path / "other.pt")
    tr.phase(src, src + 1, progress=False)
    with pytest.raises(ValueError, match="n"):
        tr.sample(0)
    tr.save(tmp_path / "reparameterized.pt")
    with pytest.raises(ValueError, match="parametrization"):
        make_trainer("composed").load(tmp_path / "reparameterized.pt")


def test_toy_networks_with_latent_and_official_flags():
    """2-D residual MLPs with an extra latent, R1, instance noise, independent latents."""
    torch.manual_seed(0)
    map_net = sjko.LatentMap(nets.ResidualMLP(2, hidden=16, n_blocks=1, in_dim=4, zero_init_last=True))
    pot = nets.MLP(2, 1, hidden=16, depth=2)
    tr = sjko.SemiDualJKO(
        map_net,
        pot,
        "softplus",
        tau=1.0,
        noise_dim=2,
        n_iters=5,
        batch_size=32,
        independent_latents=True,
        instance_noise=True,
        per_dim_average=True,
        ema_decay=0.99,
        seed=0,
    )

    def source(n, generator=None):
        return torch.randn(n, 2, generator=generator)

    def data(n, generator=None):
        return torch.randn(n, 2, generator=generator) * 0.5 + 2

    res = tr.run(2, source, data, progress=False)
    assert [r.k for r in res] == [0, 1]
    assert all(torch.isfinite(r.potential_loss).all() for r in res)
    x = tr.sample(7)
    assert x.shape == (7, 2) and x.dtype == torch.float32


def test_image_shaped_samples():
    """Nothing image specific: (n, C, H, W) samples, conv map, flattening critic."""

    class ConvMap(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

        def forward(self, x):
            return x + self.conv(x)

    critic = nn.Sequential(nn.Flatten(), nn.Linear(16, 1))
    tr = sjko.SemiDualJKO(ConvMap(), critic, tau=0.1, n_iters=3, batch_size=8, seed=0, initial_map="copy")
    g = torch.Generator().manual_seed(0)
    data = torch.rand(40, 1, 4, 4, generator=g)
    res = tr.phase(torch.randn(40, 1, 4, 4, generator=g), data, progress=False)
    assert torch.isfinite(res.map_loss).all()
    assert tr.sample(5).shape == (5, 1, 4, 4)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw, err",
    [
        (dict(tau=0.0), ValueError),
        (dict(tau=float("nan")), ValueError),
        (dict(divergence="hellinger"), ValueError),
        (dict(divergence=3), TypeError),
        (dict(parametrization="chain"), ValueError),
        (dict(batch_size=0), ValueError),
        (dict(n_iters=1.5), TypeError),
        (dict(ema_decay=1.0), ValueError),
        (dict(betas=(0.5,)), ValueError),
        (dict(r1=-1.0), ValueError),
        (dict(independent_latents=1), TypeError),
        (dict(lr_schedule="step"), ValueError),
        (dict(initial_map="identity"), ValueError),
        (dict(lr=-1e-3), ValueError),
    ],
)
def test_bad_constructor_arguments(kw, err):
    with pytest.raises(err):
        make_trainer(**kw)


def test_bad_networks_and_samplers():
    with pytest.raises(TypeError, match="map_net"):
        sjko.SemiDualJKO(lambda x: x, Quadratic())
    with pytest.raises(TypeError, match="potential_net"):
        sjko.SemiDualJKO(nets.AffineMap(1), "v")
    tr = make_trainer(n_iters=1)
    good = quantile_points(10, 0.0, 1.0)
    with pytest.raises(ValueError, match="source"):
        tr.phase(torch.full((10, 1), float("nan"), dtype=DT), good)
    with pytest.raises(TypeError, match="data"):
        tr.phase(good, "data")
    with pytest.raises(ValueError, match="data"):
        tr.phase(good, lambda n, generator=None: torch.zeros(n + 1, 1, dtype=DT))
    with pytest.raises(ValueError, match="no source"):
        make_trainer().sample(3)


def test_bad_loss_arguments():
    x = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="tau"):
        sjko.transport_cost(x, x, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        sjko.transport_cost(x, torch.zeros(3, 2), 1.0)
    with pytest.raises(ValueError, match="grad_real"):
        sjko.potential_loss(torch.zeros(4), torch.zeros(4), r1=0.2)
    with pytest.raises(ValueError, match="v_real"):
        sjko.potential_loss(torch.zeros(4), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="v_new"):
        sjko.map_loss(x, x, torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="source_weights"):
        sjko.map_loss(x, x, torch.zeros(4), 1.0, source_weights=-torch.ones(4))
    with pytest.raises(ValueError, match="k"):
        sjko.add_instance_noise(x, -1)


def test_presets_and_on_phase_callback():
    tr = sjko.toy_trainer(n_iters=3, batch_size=16)
    assert isinstance(tr.map, sjko.LatentMap) and tr.tau == 1.0
    seen = []
    src = torch.randn(64, 2, dtype=torch.float64)
    y = torch.randn(64, 2, dtype=torch.float64) + 1.0
    tr.run(2, src, y, progress=False, on_phase=lambda t: seen.append(t.n_phases))
    assert seen == [1, 2]
    aff = sjko.affine_trainer(1, 0.5, n_iters=2)
    assert isinstance(aff.map, nets.AffineMap) and aff.tau == 0.5
    with pytest.raises(TypeError, match="on_phase"):
        tr.run(1, src, y, on_phase=3)


# ---------------------------------------------------------------- units of the step: official h vs tau


def _official_map_loss(new, old, v, h):
    """The official ``train.py``: ``c`` = squared distance averaged over coordinates, ``0.5 c / h - D``."""
    c = ((new - old).reshape(new.shape[0], -1) ** 2).mean(dim=1)
    return (0.5 * c / h - v).mean()


@pytest.mark.parametrize("shape", [(2,), (3, 8, 8), (3, 32, 32)])
def test_tau_from_h_gives_the_official_map_loss(shape):
    g = torch.Generator().manual_seed(7)
    n, h, d = 16, 0.1, math.prod(shape)
    new, old = torch.randn(2, n, *shape, generator=g, dtype=DT)
    v = torch.randn(n, generator=g, dtype=DT)
    expected = _official_map_loss(new, old, v, h)
    summed = sjko.map_loss(new, old, v, sjko.tau_from_h(h, d))
    averaged = sjko.map_loss(new, old, v, sjko.tau_from_h(h, d, per_dim_average=True), per_dim_average=True)
    torch.testing.assert_close(summed, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(averaged, expected, rtol=1e-12, atol=1e-12)
    # taking the official h as the library's (summed-cost) tau is off by the factor d
    assert not torch.allclose(sjko.map_loss(new, old, v, h), expected)
    # the README's cost weight: 1 / tau_README = 2 d h, the weight of the summed |x - y|^2
    sq = (new - old).reshape(n, -1).pow(2).sum(1)
    torch.testing.assert_close(sjko.transport_cost(new, old, sjko.tau_from_h(h, d)), sq / (2 * d * h))


def test_tau_from_h_readme_example_and_validation():
    # README, CIFAR-10: "if we set h = 0.1, then tau ~ 0.0016" for 1 / tau_README = 2 d h, d = 3072
    assert round(1 / (2 * sjko.tau_from_h(0.1, 3 * 32 * 32)), 4) == 0.0016
    with pytest.raises(ValueError, match="h"):
        sjko.tau_from_h(0.0, 2)
    with pytest.raises(ValueError, match="dim"):
        sjko.tau_from_h(1.0, 0)
    with pytest.raises(TypeError, match="per_dim_average"):
        sjko.tau_from_h(1.0, 2, per_dim_average=1)


def test_toy_trainer_step_is_half_the_official_toy_step():
    # official toy S-JKO command: --h 1 --reg_name none, data in d = 2; the toy trainer documents
    # two deviations: half that step (tau = 1 is h = 0.5) and R1 kept at 0.2
    tr = sjko.toy_trainer(n_iters=1)
    assert tr.tau == sjko.tau_from_h(1.0, 2) / 2 == sjko.tau_from_h(0.5, 2)
    assert tr.r1 == 0.2
    g = torch.Generator().manual_seed(3)
    new, old = torch.randn(2, 32, 2, generator=g, dtype=DT)
    v = torch.randn(32, generator=g, dtype=DT)
    ours = sjko.map_loss(new, old, v, tr.tau, per_dim_average=tr.per_dim_average)
    torch.testing.assert_close(ours, _official_map_loss(new, old, v, 0.5), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(ours, _official_map_loss(new, old, v, 1.0))


def test_run_means_up_to_k_phases_in_total():
    src = quantile_points(50, 0.0, 1.0)
    data = quantile_points(50, 1.0, 1.0)
    tr = make_trainer(n_iters=3)
    assert len(tr.run(2, src, data, progress=False)) == 2 and tr.n_phases == 2
    assert tr.run(2, src, data, progress=False) == []
    assert len(tr.run(3, src, data, progress=False)) == 1 and tr.n_phases == 3


def test_diverging_learning_rate_raises_naming_it_instead_of_nan_samples():
    from gwf_tutorial.flows import FlowDivergedError

    src = quantile_points(50, 0.0, 1.0)
    tr = make_trainer(n_iters=50, lr=1e200, lr_critic=1e200)
    with pytest.raises(FlowDivergedError, match=r"S-JKO phase 0 diverged at iteration \d+ .*lr=1e\+200"):
        tr.phase(src, quantile_points(50, 1.0, 1.0), progress=False)


def test_learning_rates_have_one_name_each():
    tr = make_trainer(lr=0.03, lr_critic=0.02)
    assert (tr.lr, tr.lr_critic) == (0.03, 0.02)
    for old in ("lr_map", "lr_potential"):
        with pytest.raises(TypeError, match=old):
            make_trainer(**{old: 0.05})
