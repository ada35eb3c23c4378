"""Tests for the IPM / MMD / GAN parts of gwf_tutorial.jko (and the learned kernel of critics):
JKO-MMD on Gaussians against the closed form, the W1 step against its saddle point, the
learned-kernel MMD, and the GAN switches (no transport, symmetric direction, non-saturating loss)
against the plain GAN written out by hand."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import moment_matched
from scipy import optimize
from torch import nn

from gwf_tutorial import gaussian, jko, metrics, nets
from gwf_tutorial.critics import Critic, LearnedKernel

F64 = torch.float64


M0 = torch.tensor([0.5, -1.0], dtype=F64)
S0 = torch.tensor([[1.0, 0.3], [0.3, 0.6]], dtype=F64)
M = torch.tensor([1.5, 0.0], dtype=F64)
SIG = torch.tensor([[0.5, -0.1], [-0.1, 0.8]], dtype=F64)


def saddle_value(chain: jko.ParametricJKO, z, y) -> torch.Tensor:
    """The step's saddle function on given batches: the transport term plus the critic's bound."""
    z, y = jko._check_batch(chain, z, "z"), jko._check_batch(chain, y, "y")
    src, x_old = jko._source_and_old(chain, z)
    x_new = chain.map(src)
    return jko._transport(chain, x_new, x_old) + chain.adversary.bound(chain.critic, x_new, y)


# ------------------------------------------------------------------ MMD^2, U-statistic


def test_unbiased_mmd_is_unbiased_for_the_gaussian_closed_form():
    # Mean of the U-statistic over 1000 independent pairs of samples (n = 12, m = 9) against
    # gaussian.mmd2 (measured 0.07 standard errors off); the V-statistic's bias is far outside the
    # same interval (measured 18 standard errors).
    g = torch.Generator().manual_seed(0)
    s = 1.2
    exact = gaussian.mmd2(M0, S0, M, SIG, s).item()
    obj = jko.UnbiasedMMD(bandwidth=s)
    L0, L1 = torch.linalg.cholesky(S0), torch.linalg.cholesky(SIG)
    u, v = [], []
    for _ in range(1000):
        x = M0 + torch.randn(12, 2, generator=g, dtype=F64) @ L0.T
        y = M + torch.randn(9, 2, generator=g, dtype=F64) @ L1.T
        u.append(obj.value(x, y).item())
        v.append(metrics.mmd2(x, y, bandwidth=s).item())
    u, v = np.array(u), np.array(v)
    se = u.std() / math.sqrt(len(u))
    assert abs(u.mean() - exact) < 4 * se
    assert abs(v.mean() - exact) > 10 * se
    # the value is the U-statistic of metrics.mmd2 (independent implementation); the first
    # variation is twice the witness function
    x, y = x.clone(), y.clone()
    torch.testing.assert_close(obj.value(x, y), metrics.mmd2(x, y, bandwidth=s, unbiased=True))
    at = torch.randn(4, 2, generator=g, dtype=F64)
    k = lambda a, b: torch.exp(-(torch.cdist(a, b) ** 2) / (2 * s * s))  # noqa: E731
    torch.testing.assert_close(obj.first_variation(x, y, at), 2 * (k(at, x).mean(1) - k(at, y).mean(1)))


def _exact_affine_mmd_step(tau, s):
    """argmin over affine maps of E|Az + b - z|^2/(2 tau) + MMD^2(N(A m0 + b, A S0 A^T), N(m, Sigma))
    with everything in closed form (BFGS, autograd gradients)."""
    eye = torch.eye(2, dtype=F64)

    def fun(v):
        th = torch.tensor(v, dtype=F64, requires_grad=True)
        A, b = th[:4].reshape(2, 2), th[4:]
        D = A - eye
        transport = ((D @ M0 + b) ** 2).sum() + torch.trace(D @ S0 @ D.T)
        val = transport / (2 * tau) + gaussian.mmd2(A @ M0 + b, A @ S0 @ A.T, M, SIG, s)
        (gr,) = torch.autograd.grad(val, th)
        return val.item(), gr.numpy()

    res = optimize.minimize(fun, np.r_[1.0, 0, 0, 1, 0, 0], jac=True, method="BFGS", options={"gtol": 1e-12})
    A, b = torch.tensor(res.x[:4], dtype=F64).reshape(2, 2), torch.tensor(res.x[4:], dtype=F64)
    return A @ M0 + b, A @ S0 @ A.T, res.fun


def test_jko_mmd_affine_step_matches_gaussian_closed_form():
    # One JKO step of MMD^2 (Gaussian kernel, s = 1) from N(M0, S0) toward N(M, SIG), tau = 1,
    # in the affine family: (a) the exact objective (GaussianPushforwardMMD) reproduces the
    # closed-form minimiser to 1e-6; (b) the sample path (UnbiasedMMD on 400 + 400 points, full
    # batch, no critic) lands within 10% of the step's displacement (measured 5.7%: the finite-sample
    # error of the U-statistic at n = 400).
    tau, s = 1.0, 1.0
    m_ex, S_ex, val_ex = _exact_affine_mmd_step(tau, s)
    z = moment_matched(400, M0, S0, torch.Generator().manual_seed(0))
    y = moment_matched(400, M, SIG, torch.Generator().manual_seed(1))
    kw = dict(n_iters=300, lr=0.03, betas=(0.9, 0.999), lr_schedule="cosine", batch_size=400, seed=0,
              progress=False)  # fmt: skip
    T = nets.AffineMap(2, dtype=F64)
    exact = jko.ParametricJKO(T, jko.GaussianPushforwardMMD(M0, S0, M, SIG, s), tau, z, **kw)
    exact.step()
    m, S = T.push_gaussian(M0, S0)
    torch.testing.assert_close(m, m_ex, rtol=0, atol=1e-6)
    torch.testing.assert_close(S, S_ex, rtol=0, atol=1e-6)
    assert exact.history[0].loss[-1] == pytest.approx(val_ex, abs=1e-8)
    assert (m_ex - M0).norm() > 0.2  # the step moves

    T2 = nets.AffineMap(2, dtype=F64)
    chain = jko.ParametricJKO(T2, jko.UnbiasedMMD(bandwidth=s), tau, z, y, **kw)
    chain.step()
    assert chain.critic is None  # no adversary
    m2, S2 = T2.push_gaussian(M0, S0)
    step = (m_ex - M0).norm() + (S_ex - S0).norm()
    assert ((m2 - m_ex).norm() + (S2 - S_ex).norm()) < 0.1 * step


# ------------------------------------------------------------------ W1 with a penalised critic


def test_jko_w1_step_matches_its_saddle_point():
    # 1-D: mu_0 = N(0, 1) (moment-matched), nu = N(2, 1), T(z) = z + b, linear critic h = w x + c.
    # GP = (|w| - 1)^2 exactly, so L(b, w) = b^2/(2 tau) + w (b - 2) - gp (|w| - 1)^2 and the
    # saddle point is b* = tau (1 + 1/gp) / (1 + tau/(2 gp)), w* = -b*/tau (without the penalty
    # bias, b = tau: the W1 flow moves at unit speed). Tolerance 1e-6 (gradient descent-ascent,
    # measured 1e-10).
    tau, gp = 0.5, 10.0
    z = moment_matched(
        200, torch.zeros(1, dtype=F64), torch.eye(1, dtype=F64), torch.Generator().manual_seed(0)
    )
    y = moment_matched(200, torch.full((1,), 2.0, dtype=F64), torch.eye(1, dtype=F64), torch.Generator())
    T = nets.Translation(1, dtype=F64)
    critic = Critic(1, None, net=nn.Linear(1, 1, dtype=F64))
    nn.init.zeros_(critic.net.weight)
    chain = jko.ParametricJKO(
        T, "w1", tau, z, y, critic=critic, gp=gp, n_iters=500, lr=0.02, lr_critic=0.05,
        betas=(0.5, 0.9), lr_schedule="cosine", batch_size=200, seed=0, progress=False,
    )  # fmt: skip
    chain.step()
    b_star = tau * (1 + 1 / gp) / (1 + tau / (2 * gp))
    assert T.b.item() == pytest.approx(b_star, abs=1e-6)
    assert critic.net.weight.item() == pytest.approx(-b_star / tau, abs=1e-6)
    # the recorded objective is the critic's W1 estimate, w (E x - E y)
    assert chain.history[0].objective[-1] == pytest.approx((b_star / tau) * (2 - b_star), abs=1e-6)


# ------------------------------------------------------------------ learned kernel


def test_learned_kernel_starts_as_the_fixed_mixture_and_is_maximised():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 2, generator=g, dtype=F64)
    y = torch.randn(25, 2, generator=g, dtype=F64) * 0.5 + 1.0
    bw = [0.3, 1.0, 3.0]
    torch.manual_seed(0)
    k = LearnedKernel(2, feature_dim=4, hidden=16, depth=1, bandwidths=bw, dtype=F64)
    # zero-initialised features: k = mean of Gaussian kernels on the raw inputs
    ref = metrics.mmd2(x, y, "multi", bandwidth=bw, unbiased=True)
    torch.testing.assert_close(k.mmd2(x, y), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(k.mmd2(x, y, unbiased=False), metrics.mmd2(x, y, "multi", bandwidth=bw))
    at = torch.randn(5, 2, generator=g, dtype=F64)
    gk = sum(torch.exp(-(torch.cdist(at, b) ** 2) / (2 * s * s)).mean(1) for s in bw for b in [x]) / 3
    gy = sum(torch.exp(-(torch.cdist(at, y) ** 2) / (2 * s * s)).mean(1) for s in bw) / 3
    torch.testing.assert_close(k.witness(x, y, at), gk - gy)
    # critic training (max over the kernel) raises the discrepancy
    opt = torch.optim.Adam(k.parameters(), lr=0.02)
    for _ in range(60):
        loss = -k.mmd2(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert k.mmd2(x, y).item() > 1.2 * ref.item()
    assert not torch.allclose(k.weights(), torch.full((3,), 1 / 3, dtype=F64))


def test_learned_kernel_mmd_chain_trains_without_nan():
    # min over the map, max over the kernel, with a witness gradient penalty; float32, small case.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(256, 2, generator=g)
    y = torch.randn(256, 2, generator=g) * 0.3 + torch.tensor([2.0, 0.0])
    net = nets.ResidualMLP(2, hidden=16, n_blocks=1, zero_init_last=True)
    chain = jko.ParametricJKO(
        net, "mmd_learned", 1.0, z, y, n_iters=25, batch_size=64, lr=5e-3, critic_hidden=16,
        critic_depth=1, gp=1.0, seed=0, progress=False,
    )  # fmt: skip
    assert isinstance(chain.critic, LearnedKernel)
    before = [p.detach().clone() for p in chain.critic.parameters()]
    e0 = metrics.energy_distance(z, y).item()
    chain.run(2)
    for r in chain.history:
        assert all(map(math.isfinite, r.loss + r.critic_bound + r.transport))
    assert any(not torch.equal(a, b) for a, b in zip(before, chain.critic.parameters()))
    assert metrics.energy_distance(chain.sample(256, torch.Generator().manual_seed(1)), y).item() < e0


# ------------------------------------------------------------------ GAN switches


def _gan_nets():
    torch.manual_seed(0)
    net = nets.MLP(2, 2, hidden=8, depth=1, dtype=F64)
    critic = Critic(2, "gan", hidden=8, depth=1, dtype=F64)
    return net, critic


@pytest.mark.parametrize("generator_loss", ["minimax", "non_saturating"])
def test_no_transport_switch_is_the_plain_gan(generator_loss):
    # tau=None, symmetric=True, "gan": the critic h = log D, D = sigmoid(v), and the chain is the
    # GAN of Goodfellow et al.: critic ascent on E_nu log D + E_z log(1 - D(G z)), generator
    # descent on E_z log(1 - D(G z)) (minimax) or -E_z log D(G z) (non-saturating). Full batches
    # (no sampling randomness): the parameters after 4 iterations agree to 1e-10.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(32, 2, generator=g, dtype=F64)
    y = torch.randn(32, 2, generator=g, dtype=F64) + 2.0
    net, critic = _gan_nets()
    net_h, critic_h = copy.deepcopy(net), copy.deepcopy(critic)
    chain = jko.ParametricJKO(
        net, "gan", None, z, y, critic=critic, symmetric=True, generator_loss=generator_loss,
        n_iters=4, batch_size=32, seed=0, progress=False,
    )  # fmt: skip
    # the value function and the generator loss at initialisation
    v_fake, v_real = critic_h.raw(net_h(z)), critic_h.raw(y)
    value = F.logsigmoid(v_real).mean() + F.logsigmoid(-v_fake).mean()
    torch.testing.assert_close(saddle_value(chain, z, y), value, rtol=0, atol=1e-13)
    gen_loss = F.logsigmoid(-v_fake).mean() if generator_loss == "minimax" else -F.logsigmoid(v_fake).mean()
    torch.testing.assert_close(chain.map_loss(z, y), gen_loss, rtol=0, atol=1e-13)
    chain.step()
    opt_d = torch.optim.Adam(critic_h.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_g = torch.optim.Adam(net_h.parameters(), lr=1e-3, betas=(0.5, 0.9))
    for _ in range(4):
        fake = net_h(z).detach()
        d_loss = -(F.logsigmoid(critic_h.raw(y)).mean() + F.logsigmoid(-critic_h.raw(fake)).mean())
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        v = critic_h.raw(net_h(z))
        g_loss = F.logsigmoid(-v).mean() if generator_loss == "minimax" else -F.logsigmoid(v).mean()
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
    for a, b in zip(
        list(net.parameters()) + list(critic.parameters()),
        list(net_h.parameters()) + list(critic_h.parameters()),
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert chain.history[0].transport == [0.0] * 4


def test_symmetric_switch_swaps_the_variational_form():
    # forward D_f(rho || nu): E_rho h - E_nu f*(h); symmetric D_f(nu || rho): E_nu h - E_rho f*(h)
    # (KL: f*(s) = e^{s-1}; KL-DV: log E e^h); the map term is the part that depends on rho.
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20, 2, generator=g, dtype=F64)
    y = torch.randn(15, 2, generator=g, dtype=F64) + 1.0
    tau = 0.5
    for name in ["kl", "kl_dv"]:
        for symmetric in [False, True]:
            T = nets.Translation(2, dtype=F64)
            with torch.no_grad():
                T.b.copy_(torch.tensor([0.3, -0.2]))
            torch.manual_seed(0)
            critic = Critic(2, name, hidden=8, depth=1, dtype=F64)
            chain = jko.ParametricJKO(T, name, tau, z, y, critic=critic, symmetric=symmetric,
                                      progress=False)  # fmt: skip
            x = T(z)
            h_x, h_y = critic(x), critic(y)
            transport = ((x - z) ** 2).sum(1).mean() / (2 * tau)
            if name == "kl":
                conj_x, conj_y = torch.exp(h_x - 1).mean(), torch.exp(h_y - 1).mean()
            else:
                conj_x, conj_y = (
                    torch.logsumexp(h_x, 0) - math.log(20),
                    torch.logsumexp(h_y, 0) - math.log(15),
                )
            if symmetric:
                value, term = h_y.mean() - conj_x, -conj_x
            else:
                value, term = h_x.mean() - conj_y, h_x.mean()
            torch.testing.assert_close(saddle_value(chain, z, y), transport + value, rtol=0, atol=1e-13)
            torch.testing.assert_close(chain.map_loss(z, y), transport + term, rtol=0, atol=1e-13)


class _ExactGANCritic(nn.Module):
    """The optimal critic of the GAN divergence between 1-D Gaussians rho = N(0, 1), nu = N(1, 0.36):
    forward h* = f'(r) = log(r / (1 + r)); symmetric h* = f'(1/r) = -log(1 + r), r = rho / nu."""

    def __init__(self, symmetric):
        super().__init__()
        self.symmetric = symmetric
        self.unused = nn.Parameter(torch.zeros((), dtype=F64))  # an optimiser needs a parameter

    def forward(self, x):
        x = x[:, 0]
        log_r = -0.5 * x**2 + 0.5 * (x - 1) ** 2 / 0.36 + math.log(0.6)
        return -F.softplus(log_r) if self.symmetric else -F.softplus(-log_r)


@pytest.mark.parametrize("symmetric", [False, True])
def test_non_saturating_loss_is_a_different_flow_from_js(symmetric):
    # With the optimal critic, the minimax generator moves particles along the JS (GAN
    # divergence) flow v = grad log(nu/rho) / (1 + r), in both directions (the divergence is
    # symmetric); the non-saturating loss along v = r/(1 + r) grad log(nu/rho), the flow of
    # KL - 2 JS (Arjovsky and Bottou 2017). Exact to 1e-10; the two differ by O(1).
    x = torch.linspace(-2.5, 3.0, 12, dtype=F64)[:, None]
    y = torch.ones(4, 1, dtype=F64)
    log_r = -0.5 * x[:, 0] ** 2 + 0.5 * (x[:, 0] - 1) ** 2 / 0.36 + math.log(0.6)
    r = torch.exp(log_r)
    grad_log_ratio = -(x[:, 0] - 1) / 0.36 + x[:, 0]  # grad log(nu / rho)
    v_js = (grad_log_ratio / (1 + r))[:, None]
    v_kl = grad_log_ratio[:, None]
    vel = {}
    for loss in ["minimax", "non_saturating"]:
        chain = jko.ParametricJKO(
            nets.Translation(1, dtype=F64), "gan", None, x, y, critic=_ExactGANCritic(symmetric),
            symmetric=symmetric, generator_loss=loss, progress=False,
        )  # fmt: skip
        vel[loss] = chain.map_velocity(x, y)
    torch.testing.assert_close(vel["minimax"], v_js, rtol=0, atol=1e-10)
    torch.testing.assert_close(vel["non_saturating"], v_kl - v_js, rtol=0, atol=1e-10)
    assert (vel["non_saturating"] - vel["minimax"]).abs().max() > 1.0


def test_map_velocity_of_fixed_kernel_mmd_is_the_mmd_flow_velocity():
    # For a sample objective the velocity is -n grad of its value: for the U-statistic of MMD^2,
    # 2 x (E_nu grad k - E_rho grad k) with the diagonal (self-interaction) removed.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, generator=g, dtype=F64)
    y = torch.randn(5, 2, generator=g, dtype=F64) + 1
    s = 0.8
    chain = jko.ParametricJKO(nets.Translation(2, dtype=F64), jko.UnbiasedMMD(bandwidth=s), 1.0, x, y,
                              progress=False)  # fmt: skip
    v = chain.map_velocity(x, y)
    diff_xy = x[:, None] - y[None]
    diff_xx = x[:, None] - x[None]
    kxy = torch.exp(-(diff_xy**2).sum(-1) / (2 * s * s))
    kxx = torch.exp(-(diff_xx**2).sum(-1) / (2 * s * s))
    grad_xy = -(kxy[..., None] * diff_xy / s**2).mean(1)
    grad_xx = -(kxx[..., None] * diff_xx / s**2).sum(1) / 5  # sum over j != i (diagonal is 0)
    torch.testing.assert_close(v, 2 * (grad_xy - grad_xx), rtol=0, atol=1e-12)


# ------------------------------------------------------------------ bad input


def test_bad_input():
    z = torch.randn(10, 2)
    net = nets.MLP(2, 2, hidden=4, depth=1)
    with pytest.raises(ValueError, match="tau"):
        jko.ParametricJKO(net, "w1", -1.0, z, z)
    with pytest.raises(ValueError, match="gp"):
        jko.ParametricJKO(net, "w1", 1.0, z, z, gp=0.0)
    with pytest.raises(ValueError, match="symmetric"):
        jko.ParametricJKO(net, "w1", 1.0, z, z, symmetric=True)
    with pytest.raises(ValueError, match="symmetric"):
        jko.ParametricJKO(net, "mmd_u", 1.0, z, z, symmetric=True)
    with pytest.raises(ValueError, match="non_saturating"):
        jko.ParametricJKO(net, "kl", 1.0, z, z, generator_loss="non_saturating")
    with pytest.raises(ValueError, match="generator_loss"):
        jko.ParametricJKO(net, "gan", 1.0, z, z, generator_loss="saturating")
    with pytest.raises(TypeError, match="symmetric"):
        jko.ParametricJKO(net, "kl", 1.0, z, z, symmetric=1)
    with pytest.raises(ValueError, match="objective"):
        jko.get_critic_objective("mmd_fixed")
    with pytest.raises(ValueError, match="bandwidth"):
        jko.GaussianPushforwardMMD(M0, S0, M, SIG, 0.0)
    with pytest.raises(ValueError, match="bandwidths"):
        LearnedKernel(2, bandwidths=[1.0, -1.0])
    with pytest.raises(ValueError, match="x"):
        LearnedKernel(2).mmd2(torch.randn(5, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="2 samples"):
        jko.UnbiasedMMD(bandwidth=1.0).value(torch.randn(1, 2), torch.randn(5, 2))
    chain = jko.ParametricJKO(net, "kl", None, z, z, progress=False)
    with pytest.raises(ValueError, match="y"):
        chain.map_loss(z)
    with pytest.raises(TypeError, match="dtype"):
        chain.map_loss(z.double(), z)
    with pytest.raises(ValueError, match="z"):
        saddle_value(chain, torch.full((3, 2), float("nan")), z)
    obj = jko.GaussianPushforwardMMD(M0, S0, M, SIG, 1.0)
    pf = jko.ParametricJKO(nets.AffineMap(2, dtype=F64), obj, 1.0, z.double(), progress=False)
    with pytest.raises(TypeError, match="map_velocity"):
        pf.map_velocity(z.double())


# ------------------------------------------------------------------ one target, each way


def test_train_variants_equals_direct_chains_and_keeps_diverged_runs():
    # train_variants is ParametricJKO run once per variant from the same initial map: the samples
    # equal those of chains built by hand with the same seeds (bit for bit); tau=None records a zero
    # transport term; a run whose objective is NaN is kept as diverged, with no samples.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(64, 2, generator=g, dtype=F64)
    y = torch.randn(64, 2, generator=g, dtype=F64) * 0.5 + 1.0

    def make_map():
        return nets.ResidualMLP(2, hidden=8, n_blocks=1, dtype=F64)

    common = dict(n_iters=5, batch_size=32, critic_hidden=8, critic_depth=1, seed=3)
    nan_kl = jko.PushforwardKL(lambda x: x.sum(1) * float("nan"))
    variants = {
        "jko": dict(objective="kl", tau=1.0),
        "gan": dict(objective="gan", tau=None, symmetric=True, generator_loss="non_saturating"),
        "nan": dict(objective=nan_kl, tau=1.0),
    }
    runs = jko.train_variants(
        variants, make_map, z, y, n_phases=2, n_samples=16, init_seed=4, sample_seed=5, progress=False,
        **common,
    )  # fmt: skip
    assert list(runs) == ["jko", "gan", "nan"]
    for name in ["jko", "gan"]:
        spec = dict(variants[name])
        objective, tau = spec.pop("objective"), spec.pop("tau")
        torch.manual_seed(4)
        chain = jko.ParametricJKO(make_map(), objective, tau, z, y, progress=False, **common, **spec)
        chain.run(2)
        x = chain.sample(16, torch.Generator().manual_seed(5))
        assert not runs[name].diverged and runs[name].cpu_seconds >= 0
        torch.testing.assert_close(runs[name].samples, x, rtol=0, atol=0)
    assert all(t == 0.0 for r in runs["gan"].chain.history for t in r.transport)
    assert runs["jko"].chain.history[-1].transport[-1] > 0
    assert runs["nan"].diverged and runs["nan"].samples is None and "diverged" in runs["nan"].error
    with pytest.raises(ValueError, match="tau"):
        jko.train_variants({"a": dict(objective="kl")}, make_map, z, y, n_phases=1)
    with pytest.raises(TypeError, match="variants"):
        jko.train_variants({}, make_map, z, y, n_phases=1)
    with pytest.raises(TypeError, match="make_map"):
        jko.train_variants({"a": dict(objective="kl", tau=1.0)}, None, z, y, n_phases=1)


def test_gan_generator_losses_finite_with_a_confident_discriminator():
    for kwargs in (dict(generator_loss="non_saturating"), dict(symmetric=True)):
        obj = jko.get_critic_objective("gan", **kwargs)
        critic = Critic(2, "gan", hidden=4, depth=1)
        with torch.no_grad():
            for p in critic.parameters():
                p.zero_()
            critic.net.net[-1].bias.fill_(150.0)  # logit 150: h rounds to 0 in float32
        x = torch.randn(8, 2, requires_grad=True)
        term = obj.map_term(critic, x, None)
        term.backward()
        assert torch.isfinite(term) and torch.isfinite(x.grad).all()
