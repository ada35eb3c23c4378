"""Tests for gwf_tutorial.jko: the parametric JKO step against the exact Gaussian JKO step, GWF
Prop. 3.1 (inf-sup = sup-inf) and Prop. 3.2 (Moreau envelope), checkpoint round trip, options."""

import math

import numpy as np
import pytest
import torch
from conftest import moment_matched
from scipy import optimize
from test_train import assert_damaged_checkpoints_refused
from torch import nn

from gwf_tutorial import gaussian, jko, metrics, nets, sjko, targets
from gwf_tutorial.critics import Critic
from gwf_tutorial.fdiv import KL, KL_DV, dv_bound
from gwf_tutorial.functionals import MMD, SinkhornDivergence, SlicedWasserstein

F64 = torch.float64


# moment_matched (tests/conftest.py): the transport term of an affine map and E log pi for a Gaussian pi
# are quadratic in z, so with these points their sample averages are the exact expectations.


M0 = torch.tensor([0.5, -1.0], dtype=F64)
S0 = torch.tensor([[1.0, 0.3], [0.3, 0.6]], dtype=F64)
M = torch.tensor([2.0, 1.0], dtype=F64)
SIG = torch.tensor([[0.5, -0.1], [-0.1, 0.8]], dtype=F64)
TAU = 0.3


# ------------------------------------------------------------------------------- losses


def test_proximal_cost_closed_form_and_per_dim_average():
    x = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=F64)
    xo = torch.zeros_like(x)
    torch.testing.assert_close(jko.proximal_cost(x, xo, 0.5), torch.tensor([14.0, 0.0], dtype=F64))
    torch.testing.assert_close(
        jko.proximal_cost(x, xo, 0.5, per_dim_average=True), torch.tensor([14.0 / 3, 0.0], dtype=F64)
    )
    with pytest.raises(ValueError, match="tau"):
        jko.proximal_cost(x, xo, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        jko.proximal_cost(x, xo[:, :2], 1.0)


def test_saddle_objective_equals_sjko_semi_dual_with_v_equal_1_minus_h():
    # GWF's L(T, h) and S-JKO's J(v, T) with v = 1 - h (the centred KL conjugate e^s - 1):
    # E[c + h(T)] - E e^{h - 1} = E[c - v(T)] - E[e^{-v} - 1]. Same for weighted samples.
    g = torch.Generator().manual_seed(0)
    x_old = torch.randn(7, 2, generator=g, dtype=F64)
    x_new = torch.randn(7, 2, generator=g, dtype=F64)
    h_new = torch.randn(7, generator=g, dtype=F64)
    h_data = torch.randn(5, generator=g, dtype=F64)
    ws, wd = torch.rand(7, generator=g, dtype=F64), torch.rand(5, generator=g, dtype=F64)
    for kw_j, kw_s in [({}, {}), ({"source_weights": ws, "data_weights": wd},) * 2]:
        ours = jko.saddle_objective(KL, x_new, x_old, h_new, h_data, TAU, **kw_j)
        cost = sjko.transport_cost(x_new, x_old, TAU)
        theirs = sjko.semi_dual_objective(cost, 1 - h_new, 1 - h_data, "kl", **kw_s)
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    # Donsker-Varadhan: E c + E h(T) - log E e^h
    dv = jko.saddle_objective(KL_DV, x_new, x_old, h_new, h_data, TAU)
    expected = jko.proximal_cost(x_new, x_old, TAU).mean() + dv_bound(h_new, h_data)
    torch.testing.assert_close(dv, expected)
    with pytest.raises(ValueError, match="h_new"):
        jko.saddle_objective(KL, x_new, x_old, h_new[:3], h_data, TAU)


# ------------------------------------------------------------------ exact Gaussian JKO step


@pytest.mark.parametrize(
    "which, parametrization",
    [("gaussian_kl", "reparameterized"), ("log_prob", "reparameterized"), ("log_prob", "composed")],
)
def test_affine_steps_reproduce_exact_gaussian_jko(which, parametrization):
    # Objective: "gaussian_kl" = exact KL of the affine push-forward (gaussian.kl);
    # "log_prob" = KL by change of variables with the target's log-density (PushforwardKL)
    # on moment-matched samples (exact for affine maps). Two steps, tau = 0.3, 2-D,
    # non-commuting covariances; Adam with cosine decay. Tolerance 1e-8 (optimiser accuracy).
    z = moment_matched(64, M0, S0, torch.Generator().manual_seed(0))
    if which == "gaussian_kl":
        objective = jko.GaussianPushforwardKL(M0, S0, M, SIG)
    else:
        objective = jko.PushforwardKL(targets.Gaussian(M, SIG))
    T = nets.AffineMap(2, dtype=F64)
    chain = jko.ParametricJKO(
        T, objective, TAU, z, n_iters=450, lr=0.05, betas=(0.9, 0.999), lr_schedule="cosine",
        batch_size=64, parametrization=parametrization, seed=0, progress=False,
    )  # fmt: skip
    means, covs = gaussian.jko_iterates_kl(M0, S0, M, SIG, TAU, 2)
    chain.step()
    # the first step's minimal value is the JKO value W2^2 / (2 tau) + KL (up to the constant
    # entropy of mu_0 that PushforwardKL drops without source_log_prob)
    exact_value = gaussian.w2_squared(M0, S0, means[1], covs[1]) / (2 * TAU) + gaussian.kl(
        means[1], covs[1], M, SIG
    )
    const = 0.0 if which == "gaussian_kl" else -0.5 * torch.logdet(2 * math.pi * math.e * S0).item()
    assert chain.history[0].loss[-1] + const == pytest.approx(exact_value.item(), abs=1e-8)
    chain.step()
    x = chain.push(z)
    torch.testing.assert_close(x.mean(0), means[2], rtol=0, atol=1e-8)
    torch.testing.assert_close(x.T.cov(correction=0), covs[2], rtol=0, atol=1e-8)
    assert x.dtype == F64
    assert [r.k for r in chain.history] == [0, 1] and len(chain.history[1].transport) == 450


class _Quadratic(nn.Module):
    """h(x) = a x + b x^2 + c: the optimal KL critic between Gaussians is in this family."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(2, 1, dtype=F64)
        nn.init.zeros_(self.lin.weight)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x):
        return self.lin(torch.cat([x, x**2], 1))


def test_critic_jko_step_on_kl_approximates_exact_gaussian_step():
    # The f-divergence path (critic + map, GWF's loss_D / loss_G) with an affine map and a
    # quadratic KL critic, 1-D: N(0, 0.5) -> target N(1, 1), tau = 0.5, n = 1000 samples each.
    # Estimation error only (E_nu e^{h-1} from samples): tolerance 0.01 on the mean, 0.02 on
    # the variance (measured 1e-3 and 5e-3).
    g = torch.Generator().manual_seed(0)
    m0, s0 = torch.tensor([0.0], dtype=F64), torch.tensor([[0.5]], dtype=F64)
    m, sig = torch.tensor([1.0], dtype=F64), torch.tensor([[1.0]], dtype=F64)
    z, y = moment_matched(1000, m0, s0, g), moment_matched(1000, m, sig, g)
    T = nets.AffineMap(1, dtype=F64)
    chain = jko.ParametricJKO(
        T, "kl", 0.5, z, y, critic=Critic(1, "kl", net=_Quadratic()), n_iters=800, lr=1e-2,
        lr_critic=5e-2, batch_size=1000, lr_schedule="cosine", seed=0, progress=False,
    )  # fmt: skip
    chain.step()
    mean, cov = T.push_gaussian(m0, s0)
    exact_mean, exact_cov = gaussian.jko_step_kl(m0, s0, m, sig, 0.5)
    assert abs(mean.item() - exact_mean.item()) < 0.01
    assert abs(cov.item() - exact_cov.item()) < 0.02
    assert len(chain.history[0].critic_bound) == 800


# ------------------------------------------------------------------ GWF Prop. 3.1 and 3.2


def test_prop_3_1_inf_sup_equals_sup_inf_equals_jko_value():
    # 1-D KL step from mu = N(0, 1) to nu = N(2, 0.5), tau = 0.3, with affine maps T(x) = a x + c
    # and quadratic critics h(y) = p y^2/2 + q y + r (both families contain the saddle point);
    # expectations by 80-node Gauss-Hermite quadrature, L(T, h) = jko.saddle_objective.
    # inf_T sup_h L (VWGF / GWF) and sup_h inf_T L (S-JKO) are solved by nested BFGS.
    tau, m0, v0, m, v = 0.3, 0.0, 1.0, 2.0, 0.5
    t, w = np.polynomial.hermite_e.hermegauss(80)
    w = torch.tensor(w / w.sum(), dtype=F64)
    t = torch.tensor(t, dtype=F64)
    xs, ys = (m0 + math.sqrt(v0) * t)[:, None], (m + math.sqrt(v) * t)[:, None]

    def L(T_par, h_par):
        a, c = T_par
        p, q, r = h_par
        xn = a * xs + c

        def h(u):
            return (0.5 * p * u**2 + q * u + r)[:, 0]

        return jko.saddle_objective(KL, xn, xs, h(xn), h(ys), tau, source_weights=w, data_weights=w)

    def solve(fun, x0, sign):
        """argmin (sign=+1) or argmax (sign=-1) of fun over a vector, with autograd gradients."""

        def f(v):
            p = torch.tensor(v, dtype=F64, requires_grad=True)
            val = sign * fun(p)
            (g,) = torch.autograd.grad(val, p)
            return val.item(), g.numpy()

        res = optimize.minimize(f, x0, jac=True, method="BFGS", options={"gtol": 1e-11, "maxiter": 500})
        return sign * res.fun, res.x

    def inf_sup(T_par):  # sup over h for fixed T, gradient in T by Danskin
        val, h_star = solve(lambda hp: L(T_par, hp), np.zeros(3), -1)
        return val, h_star

    def outer_T(v):
        Tp = torch.tensor(v, dtype=F64, requires_grad=True)
        _, h_star = inf_sup(Tp.detach())
        val = L(Tp, torch.tensor(h_star, dtype=F64))
        (g,) = torch.autograd.grad(val, Tp)
        return val.item(), g.numpy()

    res1 = optimize.minimize(outer_T, np.array([1.0, 0.0]), jac=True, method="BFGS", options={"gtol": 1e-10})
    value_inf_sup = res1.fun

    def outer_h(v):
        hp = torch.tensor(v, dtype=F64, requires_grad=True)
        if hp[0].item() <= -1 / tau + 1e-3:  # inf over T is -inf there
            return 1e6, np.zeros(3)
        _, T_star = solve(lambda Tp: L(Tp, hp.detach()), np.array([1.0, 0.0]), +1)
        val = -L(torch.tensor(T_star, dtype=F64), hp)
        (g,) = torch.autograd.grad(val, hp)
        return val.item(), g.numpy()

    res2 = optimize.minimize(outer_h, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-10})
    value_sup_inf = -res2.fun

    # exact JKO value: W2^2(rho+, mu) / (2 tau) + KL(rho+ || nu) with the closed-form step
    mu0, s0 = torch.tensor([m0], dtype=F64), torch.tensor([[v0]], dtype=F64)
    mn, sn = torch.tensor([m], dtype=F64), torch.tensor([[v]], dtype=F64)
    mp, sp = gaussian.jko_step_kl(mu0, s0, mn, sn, tau)
    exact = (gaussian.w2_squared(mu0, s0, mp, sp) / (2 * tau) + gaussian.kl(mp, sp, mn, sn)).item()
    assert value_inf_sup == pytest.approx(exact, abs=1e-7)
    assert value_sup_inf == pytest.approx(exact, abs=1e-7)
    # the saddle point: T = JKO map, h = f'(rho+/nu) = log(rho+/nu) + 1 (curvature 1/v - 1/s+)
    jmap = gaussian.jko_map_kl(mu0, s0, mn, sn, tau)
    np.testing.assert_allclose(res1.x, [jmap.A.item(), jmap.b.item()], atol=1e-5)
    assert res2.x[0] == pytest.approx(1 / v - 1 / sp.item(), abs=1e-5)


def test_prop_3_2_half_step_on_moreau_envelope_is_the_jko_step():
    # F_eps(mu) = min_eta W2^2(mu, eta) + eps KL(eta || nu), eps = 2 tau, on Gaussians (the
    # minimiser is the JKO step, gaussian.jko_step_kl). Its Wasserstein gradient at N(m, S) is
    # the affine field grad_m F + 2 sym(grad_S F)(x - m); one explicit step of size 1/2 must give
    # the JKO step (2-D, non-commuting covariances; tolerance 1e-9).
    mean = M0.clone().requires_grad_(True)
    cov = S0.clone().requires_grad_(True)
    m1, s1 = gaussian.jko_step_kl(mean, cov, M, SIG, TAU)
    f_eps = gaussian.w2_squared(mean, cov, m1, s1) + 2 * TAU * gaussian.kl(m1, s1, M, SIG)
    gm, gS = torch.autograd.grad(f_eps, (mean, cov))
    gS = 0.5 * (gS + gS.T)
    step_mean = M0 - 0.5 * gm
    A = torch.eye(2, dtype=F64) - gS  # x -> x - (1/2)(gm + 2 gS (x - m))
    step_cov = A @ S0 @ A.T
    exact_mean, exact_cov = gaussian.jko_step_kl(M0, S0, M, SIG, TAU)
    torch.testing.assert_close(step_mean, exact_mean, rtol=0, atol=1e-9)
    torch.testing.assert_close(step_cov, exact_cov, rtol=0, atol=1e-9)
    # the envelope theorem: the same gradient with the minimiser held fixed
    mean2 = M0.clone().requires_grad_(True)
    f_fixed = gaussian.w2_squared(mean2, S0, m1.detach(), s1.detach())
    (gm2,) = torch.autograd.grad(f_fixed, mean2)
    torch.testing.assert_close(gm2, gm, rtol=0, atol=1e-9)


# ------------------------------------------------------------------ chains, checkpoints


def _small_chain(parametrization, seed_init, **over):
    torch.manual_seed(seed_init)  # different initial weights: the checkpoint must override them
    g = torch.Generator().manual_seed(3)
    z = torch.randn(256, 2, generator=g)
    y = targets.get_target("moons").sample(256, g) / 3
    net = nets.ResidualMLP(2, hidden=16, n_blocks=1, zero_init_last=True)
    return jko.ParametricJKO(
        net, "js", 0.5, z, y, n_iters=15, batch_size=64, critic_hidden=16, critic_depth=1,
        **{"parametrization": parametrization, "gp": 0.1, "seed": 11, "progress": False, **over},
    )  # fmt: skip


@pytest.mark.parametrize("parametrization", ["reparameterized", "composed"])
def test_checkpoint_round_trip_matches_uninterrupted_run(tmp_path, parametrization):
    ref = _small_chain(parametrization, 0)
    ref.run(3)
    path = tmp_path / "chain.pt"
    first = _small_chain(parametrization, 0)
    first.run(2, checkpoint=path)
    assert path.exists()
    resumed = _small_chain(parametrization, 123)
    resumed.run(3, checkpoint=path)  # loads the 2-step state, runs step 3, saves
    assert resumed.n_phases == 3
    for a, b in zip(ref.map.state_dict().values(), resumed.map.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(ref.critic.state_dict().values(), resumed.critic.state_dict().values()):
        assert torch.equal(a, b)
    assert [h.loss for h in ref.history] == [h.loss for h in resumed.history]
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(9))
    assert torch.equal(ref.push(z), resumed.push(z))
    assert ref.sample(1000, torch.Generator().manual_seed(1)).shape == (1000, 2)
    # nothing left to do: run(3) again is a no-op
    assert resumed.run(3, checkpoint=path) == []


def test_state_dict_round_trip_in_memory_and_unknown_trainer_options():
    ref = _small_chain("composed", 0)
    ref.run(2)
    other = _small_chain("composed", 123)  # other initial weights: the state replaces them
    other.load_state_dict(ref.state_dict())
    ref.step()
    other.step()
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(9))
    assert other.n_phases == 3 and torch.equal(ref.push(z), other.push(z))
    with pytest.raises(ValueError, match="'reparameterized' chain"):
        _small_chain("reparameterized", 0).load_state_dict(ref.state_dict())
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['lr_map'\]"):
        _small_chain("composed", 0, lr_map=1e-3)


def test_checkpoint_refuses_damaged_files_and_other_hyperparameters(tmp_path):
    path = tmp_path / "chain.pt"
    _small_chain("reparameterized", 0).run(1, checkpoint=path)
    fresh = _small_chain("reparameterized", 0)
    assert_damaged_checkpoints_refused(path, lambda p: fresh.run(2, checkpoint=p))
    assert fresh.n_phases == 0
    with pytest.raises(ValueError, match=r"other hyperparameters.*lr: 0.001 in the checkpoint, 0.002 now"):
        _small_chain("reparameterized", 0, lr=2e-3).run(2, checkpoint=path)
    with pytest.raises(ValueError, match="parametrization: 'reparameterized' in the checkpoint, 'composed'"):
        _small_chain("composed", 0).load(path)
    with pytest.raises(ValueError, match="objective: .*'minimax'.* in the checkpoint, .*'non_saturating'"):
        _small_chain("reparameterized", 0, generator_loss="non_saturating").run(2, checkpoint=path)
    wider = jko.ParametricJKO(
        nets.ResidualMLP(2, hidden=8, n_blocks=1), "js", 0.5, torch.zeros(8, 2), torch.zeros(8, 2),
        n_iters=15, batch_size=64, critic_hidden=16, critic_depth=1, gp=0.1, progress=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="does not fit this chain"):
        wider.load(path)


def test_per_dim_average_is_a_step_tau_times_d():
    # |.|^2 / (2 tau d) with tau is the math's cost with step tau d: identical training.
    def chain(tau, per_dim):
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1)
        z, y = torch.randn(128, 3, generator=g), 1 + torch.randn(128, 3, generator=g)
        net = nets.MLP(3, 3, hidden=16, depth=1)
        c = jko.ParametricJKO(net, MMD(bandwidth=1.0), tau, z, y, n_iters=20, batch_size=128,
                              per_dim_average=per_dim, seed=0, progress=False)  # fmt: skip
        c.run(2)
        return c

    a, b = chain(0.2, True), chain(0.6, False)
    for p, q in zip(a.map.parameters(), b.map.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.history[1].transport, b.history[1].transport, rtol=1e-5)


@pytest.mark.parametrize(
    "objective, factor",
    [(MMD(bandwidth=2.0), 0.75), ("energy", 0.5),
     (SlicedWasserstein(50, generator=torch.Generator().manual_seed(0)), 0.5),
     (SinkhornDivergence(eps=1.0, max_iter=50, tol=1e-4), 0.5), ("kl_dv", 0.5)],
    ids=["mmd", "energy", "sw", "sinkhorn", "kl_dv"],
)  # fmt: skip
def test_chain_moves_samples_toward_target(objective, factor):
    # A 3-step chain (tau = 1) with a residual MLP; the energy distance to fresh target samples
    # must drop by the given factor (measured: 0.57 for the Gaussian-kernel MMD, which moves
    # slowly, 0.03-0.15 for the others). History records both terms at every iteration.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(400, 2, generator=g)
    y = torch.randn(400, 2, generator=g) * 0.5 + torch.tensor([2.0, 1.0])
    net = nets.ResidualMLP(2, hidden=32, n_blocks=1, zero_init_last=True)
    chain = jko.ParametricJKO(net, objective, 1.0, z, y, n_iters=60, lr=5e-3, batch_size=200,
                              seed=0, progress=False)  # fmt: skip
    before = metrics.energy_distance(z, y).item()
    chain.run(3)
    fresh = torch.randn(400, 2, generator=g) * 0.5 + torch.tensor([2.0, 1.0])
    after = metrics.energy_distance(chain.sample(400, torch.Generator().manual_seed(5)), fresh).item()
    assert after < factor * before
    for r in chain.history:
        assert len(r.transport) == len(r.objective) == len(r.loss) == 60
        np.testing.assert_allclose(np.add(r.transport, r.objective), r.loss)
    assert all(t >= 0 for t in chain.history[0].transport)


def test_bad_input():
    z = torch.randn(10, 2)
    net = nets.MLP(2, 2, hidden=4, depth=1)
    with pytest.raises(ValueError, match="tau"):
        jko.ParametricJKO(net, "kl", 0.0, z, z)
    with pytest.raises(ValueError, match="tau"):
        jko.ParametricJKO(net, "kl", float("nan"), z, z)
    with pytest.raises(ValueError, match="data"):
        jko.ParametricJKO(net, "kl", 1.0, z)
    with pytest.raises(ValueError, match="n_iters"):
        jko.ParametricJKO(net, "mmd", 1.0, z, z, n_iters=0)
    with pytest.raises(ValueError, match="objective"):
        jko.ParametricJKO(net, "wasserstein", 1.0, z, z)
    with pytest.raises(TypeError, match="objective"):
        jko.ParametricJKO(net, 3, 1.0, z, z)
    with pytest.raises(TypeError, match="dtype"):
        jko.ParametricJKO(net, "mmd", 1.0, z.double(), z)
    with pytest.raises(ValueError, match="source"):
        jko.ParametricJKO(net, "mmd", 1.0, torch.full((4, 2), float("nan")), z)
    with pytest.raises(ValueError, match="parametrization"):
        jko.ParametricJKO(net, "mmd", 1.0, z, z, parametrization="chained")
    with pytest.raises(ValueError, match="reparameterized"):
        obj = jko.GaussianPushforwardKL(M0, S0, M, SIG)
        jko.ParametricJKO(nets.AffineMap(2, dtype=F64), obj, 1.0, z.double(), parametrization="composed")
    with pytest.raises(ValueError, match="critic"):
        jko.ParametricJKO(net, "mmd", 1.0, z, z, critic=Critic(2, "kl"))
    with pytest.raises(ValueError, match="SPD|positive definite"):
        jko.GaussianPushforwardKL(M0, -S0, M, SIG)
    with pytest.raises(TypeError, match="per_dim_average"):
        jko.ParametricJKO(net, "mmd", 1.0, z, z, per_dim_average=1)
    with pytest.raises(TypeError, match="map_net"):
        jko.ParametricJKO(lambda x: x, "mmd", 1.0, z, z)


def test_diverging_learning_rate_raises_the_flow_error_naming_it():
    # a huge learning rate sends the map to infinity: the Trainer stops at the first non-finite term with
    # the library's divergence error (also a FloatingPointError, what train_variants keeps as "diverged")
    from gwf_tutorial.flows import FlowDivergedError

    chain = _small_chain("reparameterized", 0, lr=1e30, lr_critic=1e30)
    with pytest.raises(FlowDivergedError, match=r"JKO step 1 diverged at iteration \d+ .*lr=1e\+30.*tau=0.5"):
        chain.run(1)
    with pytest.raises(FloatingPointError):
        _small_chain("reparameterized", 0, lr=1e30, lr_critic=1e30).run(1)


def test_run_means_up_to_k_steps_in_total():
    chain = _small_chain("reparameterized", 0)
    assert len(chain.run(2)) == 2 and chain.n_phases == 2
    assert chain.run(2) == [] and len(chain.run(3)) == 1 and chain.n_phases == 3
