"""Tests of gwf_tutorial.flows: exact Euler / noise-injection / ULA recursions, ULA against the
Ornstein-Uhlenbeck closed form (MATH §6.1) and its O(h) bias, each particle flow decreasing its
objective, the stalling Gaussian-kernel MMD flow, the divergence guard, trajectories, schedules."""

from __future__ import annotations

import math

import pytest
import torch

from gwf_tutorial import gaussian as G
from gwf_tutorial import metrics
from gwf_tutorial.flows import FlowDivergedError, Trajectory, euler_flow, langevin, particle_flow
from gwf_tutorial.functionals import KL, MMD, SinkhornDivergence, SlicedWasserstein
from gwf_tutorial.targets import Gaussian as GaussianTarget
from gwf_tutorial.targets import get_target

F64 = torch.float64


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _x0(n=50, d=2, seed=0, dtype=F64):
    return torch.randn(n, d, generator=_gen(seed), dtype=dtype)


def _linear(x, at=None):
    return -(x if at is None else at)


# ------------------------------------------------------------------------------------------
# the Euler loop: exact recursions
# ------------------------------------------------------------------------------------------


def test_euler_linear_field_with_step_schedule_is_exact():
    """v(x) = -x: x_K = prod_k (1 - h_k) x_0 for any schedule h_k."""
    x0 = _x0()
    sched = [0.1 / (1 + k) for k in range(12)]
    traj = euler_flow(x0, _linear, lambda k: 0.1 / (1 + k), 12, progress=False)
    factor = math.prod(1 - h for h in sched)
    torch.testing.assert_close(traj.x, factor * x0, rtol=1e-13, atol=1e-15)
    assert traj.step_sizes == pytest.approx(sched, rel=1e-15)
    # a constant step size
    traj = euler_flow(x0, _linear, 0.25, 5, progress=False)
    torch.testing.assert_close(traj.x, 0.75**5 * x0, rtol=1e-13, atol=1e-15)
    assert traj.step_sizes == [0.25] * 5


def test_noise_injection_evaluates_the_field_at_perturbed_points():
    """x_{k+1} = x_k + h v(x_k; x_k + beta_k u_k), u_k ~ N(0, I) from the generator: replayed by hand."""
    x0 = _x0(n=20)
    betas = [0.5, 0.0, 0.3, 0.1]
    traj = euler_flow(x0, _linear, 0.2, 4, noise_level=lambda k: betas[k], generator=_gen(7), progress=False)
    g = _gen(7)
    x = x0.clone()
    for k in range(4):
        z = x + betas[k] * torch.randn(x.shape, generator=g, dtype=F64) if betas[k] > 0 else x
        x = x - 0.2 * z
    torch.testing.assert_close(traj.x, x, rtol=1e-14, atol=1e-15)


def test_langevin_is_the_ula_recursion():
    target = GaussianTarget(
        torch.tensor([1.0, -1.0], dtype=F64), torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    )
    x0 = _x0(n=30)
    traj = langevin(x0, target, 0.05, 3, generator=_gen(3), progress=False)
    g = _gen(3)
    x = x0.clone()
    for _ in range(3):
        x = x + 0.05 * target.score(x) + math.sqrt(0.1) * torch.randn(x.shape, generator=g, dtype=F64)
    torch.testing.assert_close(traj.x, x, rtol=1e-13, atol=1e-14)
    # a plain score callable is accepted too
    traj2 = langevin(x0, target.score, 0.05, 3, generator=_gen(3), progress=False)
    torch.testing.assert_close(traj2.x, traj.x, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------
# ULA vs the OU closed form
# ------------------------------------------------------------------------------------------


def _ula_moments(mu, S, m, Sigma, h, n_steps):
    """Exact mean / covariance of ULA for a Gaussian target: mu <- mu - hA(mu - m),
    S <- (I - hA) S (I - hA)^T + 2h I, A = Sigma^{-1}."""
    A = torch.linalg.inv(Sigma)
    B = torch.eye(2, dtype=F64) - h * A
    for _ in range(n_steps):
        mu = m + B @ (mu - m)
        S = B @ S @ B.T + 2 * h * torch.eye(2, dtype=F64)
    return mu, S


def test_ula_matches_ou_flow_up_to_monte_carlo_and_o_h_bias():
    """MATH §6.1: KL flow to N(m, Sigma) from N(mu0, S0) is the OU flow. ULA with step h at time t = K h
    matches it within Monte Carlo error plus the O(h) discretisation bias."""
    m = torch.tensor([1.0, -0.5], dtype=F64)
    Sigma = torch.tensor([[1.0, 0.4], [0.4, 0.6]], dtype=F64)
    mu0 = torch.tensor([-2.0, 1.5], dtype=F64)
    S0 = torch.tensor([[0.3, 0.0], [0.0, 0.2]], dtype=F64)
    h, K, n = 0.01, 80, 20_000
    t = h * K
    g = _gen(11)
    x0 = mu0 + torch.randn(n, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(S0).T
    traj = langevin(x0, GaussianTarget(m, Sigma), h, K, generator=g, progress=False)
    mean_mc, cov_mc = traj.x.mean(0), torch.cov(traj.x.T)
    mean_ou, cov_ou = G.ou_flow(mu0, S0, m, Sigma, t)
    mean_ula, cov_ula = _ula_moments(mu0, S0, m, Sigma, h, K)
    # (1) the known O(h) ULA bias: first order in h, here at most 0.05 = 5 h in every entry
    bias_mean = float((mean_ula - mean_ou).abs().max())
    bias_cov = float((cov_ula - cov_ou).abs().max())
    assert bias_mean < 5 * h and bias_cov < 5 * h
    # halving h halves the bias (first order)
    mean_half, cov_half = _ula_moments(mu0, S0, m, Sigma, h / 2, 2 * K)
    ratio = float((cov_half - cov_ou).abs().max()) / bias_cov
    assert 0.4 < ratio < 0.6
    # (2) Monte Carlo: sd of a mean ~ sqrt(S_ii / n) <= 0.008, of a covariance entry ~ sqrt(2/n) S <= 0.01
    se_mean = (cov_ou.diagonal() / n).sqrt()
    assert bool(((mean_mc - mean_ou).abs() <= 4 * se_mean + bias_mean).all())
    se_cov = math.sqrt(2.0 / n) * float(cov_ou.abs().max())
    assert float((cov_mc - cov_ou).abs().max()) <= 4 * se_cov + bias_cov
    # (3) the flow really moved: at time t the mean is far from mu0, so (2) is not vacuous
    assert float((mean_ou - mu0).norm()) > 1.5


def test_ula_stationary_variance_bias_in_1d():
    """MATH §2: ULA on N(0, Sigma) has stationary variance Sigma / (1 - h / (2 Sigma)), here 4/3."""
    target = GaussianTarget(torch.zeros(1, dtype=F64), torch.ones(1, 1, dtype=F64))
    n, h = 20_000, 0.5
    traj = langevin(torch.zeros(n, 1, dtype=F64), target, h, 40, generator=_gen(2), progress=False)
    var = float(traj.x.var())
    assert var == pytest.approx(1.0 / (1.0 - h / 2.0), abs=0.05)  # sd ~ sqrt(2/n) 4/3 = 0.013
    assert abs(var - 1.0) > 0.25  # the bias is real, not Monte Carlo noise


# ------------------------------------------------------------------------------------------
# each particle flow decreases its objective on a 2-D target
# ------------------------------------------------------------------------------------------

FLOW_CASES = [
    ("mmd-gaussian", lambda: MMD("gaussian", 1.0), 1.0, 160, "moons"),
    ("mmd-energy", lambda: MMD("energy"), 1.0, 160, "moons"),
    ("mmd-imq", lambda: MMD("imq", 1.0), 1.0, 160, "moons"),
    ("sliced", lambda: SlicedWasserstein(50, generator=_gen(1)), 1.0, 100, "moons"),
    ("sinkhorn", lambda: SinkhornDivergence(0.5, max_iter=300, tol=1e-6), 0.5, 20, "moons"),
    ("kl-blob", lambda: KL(get_target("banana"), 0.3), 0.05, 160, "banana"),
]


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("name,make,h,K,target", FLOW_CASES, ids=[c[0] for c in FLOW_CASES])
def test_each_flow_decreases_its_objective_and_w2(name, make, h, K, target):
    tgt = get_target(target)
    g = _gen(0)
    n = 120
    x0 = 0.5 * torch.randn(n, 2, generator=g, dtype=F64)
    y = tgt.sample(n, generator=g, dtype=F64)
    obj = make()
    use_y = None if isinstance(obj, KL) else y
    traj = particle_flow(x0, obj, use_y, h, K, record_every=K // 4, progress=False)
    assert len(traj.values) == 5
    v0, vK = traj.values[0], traj.values[-1]
    # KL's value is only known up to an additive constant: compare decreases, not ratios
    # (observed: every objective loses > 98% of its value; KL drops by 2.7)
    drop = v0 - vK
    assert drop > (2.0 if isinstance(obj, KL) else 0.9 * v0), traj.values
    # an independent check: W2^2 to fresh target samples decreases a lot too (observed ~ 15x)
    fresh = tgt.sample(n, generator=_gen(99), dtype=F64)
    w0, wK = float(metrics.w2_squared(x0, fresh)), float(metrics.w2_squared(traj.x, fresh))
    assert wK < 0.2 * w0, (w0, wK)


def test_deterministic_flows_decrease_monotonically_for_small_steps():
    """A smooth objective (fixed-bandwidth MMD, fixed-h KL) decreases at every small explicit step."""
    tgt = get_target("gaussian")
    x0 = _x0(n=80, seed=4) * 0.3
    y = tgt.sample(80, generator=_gen(5), dtype=F64)
    for obj, yy, h in [(MMD("gaussian", 1.0), y, 0.5), (KL(tgt, 0.4), None, 0.02)]:
        traj = particle_flow(x0, obj, yy, h, 30, record_every=1, progress=False)
        diffs = torch.tensor(traj.values).diff()
        assert bool((diffs < 1e-12).all()), (obj, diffs.max())


# ------------------------------------------------------------------------------------------
# the Gaussian-kernel MMD flow stalls; the energy kernel and noise injection get through
# ------------------------------------------------------------------------------------------


def test_gaussian_mmd_flow_stalls_where_energy_kernel_and_noise_injection_get_through():
    """Particles at N(0, 0.3^2 I), target N((3, 0), 0.3^2 I), Gaussian kernel s = 0.5: the attraction
    weight exp(-9/(2 s^2)) ~ e^-18 vanishes, the particles only repel each other and the MMD value drops
    by spreading them out, while W2 to the target grows. The energy kernel's force does not decay with
    distance and gets through; noise injection (beta_k = 2(1 - k/K), Arbel et al.) gets half way."""
    g = _gen(0)
    n, K = 100, 400
    x0 = 0.3 * torch.randn(n, 2, generator=g, dtype=F64)
    y = 0.3 * torch.randn(n, 2, generator=g, dtype=F64) + torch.tensor([3.0, 0.0], dtype=F64)
    w2_start = float(metrics.w2_squared(x0, y))
    gauss = MMD("gaussian", 0.5)

    def run(obj, beta=0.0):
        traj = particle_flow(
            x0, obj, y, 1.0, K, noise_level=beta, generator=_gen(10), record_every=K, progress=False
        )
        return traj, float(metrics.w2_squared(traj.x, y))

    plain, w2_plain = run(gauss)
    noisy, w2_noisy = run(gauss, lambda k: 2.0 * (1 - k / K))
    energy, w2_energy = run(MMD("energy"))
    # stalled: the MMD value went down (0.58 -> 0.07) but the particles did not approach the target
    assert plain.values[-1] < 0.2 * plain.values[0]
    assert w2_plain > 0.9 * w2_start  # start ~ 9; observed ~ 14.6 (spread out)
    assert float(plain.x[:, 0].mean()) < 1.0
    # energy kernel: all the way (observed W2^2 ~ 0.002)
    assert w2_energy < 0.02 and abs(float(energy.x[:, 0].mean()) - 3.0) < 0.1
    # noise injection: much better than plain (observed ~ 7 vs 14.6), and a lower MMD value
    assert w2_noisy < 0.7 * w2_plain
    assert noisy.values[-1] < 0.5 * plain.values[-1]


# ------------------------------------------------------------------------------------------
# divergence guard
# ------------------------------------------------------------------------------------------


def test_divergence_guard_names_the_step_size():
    """ULA on N(0, 0.1) is unstable for h > 2 Sigma = 0.2: with h = 1 each step multiplies by -9."""
    target = GaussianTarget(torch.zeros(2, dtype=F64), 0.1 * torch.eye(2, dtype=F64))
    with pytest.raises(FlowDivergedError, match=r"step_size=1\b") as err:
        langevin(_x0(), target, 1.0, 50, generator=_gen(0), progress=False)
    assert "try a smaller step_size" in str(err.value)
    assert isinstance(err.value, ValueError)
    # the same run with a stable step size passes
    langevin(_x0(), target, 0.05, 50, generator=_gen(0), progress=False)
    # a particle flow with a far too large step: MMD energy with h = 1e6
    y = _x0(seed=1) + 1.0
    with pytest.raises(FlowDivergedError, match=r"step_size=1e\+06"):
        particle_flow(_x0(), MMD("energy"), y, 1e6, 5, progress=False)
    # schedules: the message names the step size of the step that blew up
    with pytest.raises(FlowDivergedError, match=r"step 3 with step_size=10000"):
        euler_flow(
            _x0(), lambda x, at=None: x, lambda k: 1e4 if k >= 3 else 1e-3, 10, max_norm=1e3, progress=False
        )


def test_divergence_guard_non_finite_and_max_norm():
    def nan_field(x, at=None):
        return torch.full_like(x, float("nan"))

    with pytest.raises(FlowDivergedError, match="non-finite"):
        euler_flow(_x0(), nan_field, 0.1, 3, max_norm=math.inf, progress=False)
    # max_norm = inf disables only the norm bound: a fast but finite growth runs through
    traj = euler_flow(_x0(), lambda x, at=None: 10 * x, 1.0, 10, max_norm=math.inf, progress=False)
    torch.testing.assert_close(traj.x, 11.0**10 * _x0(), rtol=1e-12, atol=0)
    with pytest.raises(FlowDivergedError, match="too large"):
        euler_flow(_x0(), lambda x, at=None: 10 * x, 1.0, 10, progress=False)


# ------------------------------------------------------------------------------------------
# trajectories
# ------------------------------------------------------------------------------------------


def test_trajectory_recording_shapes():
    x0 = _x0(n=17, d=3)
    traj = euler_flow(x0, _linear, 0.1, 10, value_fn=lambda x: x.pow(2).sum(), record_every=3, progress=False)
    assert isinstance(traj, Trajectory)
    assert traj.steps == [0, 3, 6, 9, 10]
    assert traj.frames.shape == (5, 17, 3) and traj.frames.dtype == F64
    assert len(traj.values) == 5 and len(traj.step_sizes) == 10
    torch.testing.assert_close(traj.frames[0], x0, rtol=0, atol=0)
    torch.testing.assert_close(traj.frames[-1], traj.x, rtol=0, atol=0)
    torch.testing.assert_close(traj.frames[2], 0.9**6 * x0, rtol=1e-13, atol=1e-15)
    assert traj.values[1] == pytest.approx(float((0.9**3 * x0).pow(2).sum()), rel=1e-12)
    # defaults: about 100 frames, no values without value_fn
    traj = euler_flow(x0, _linear, 0.01, 250, progress=False)
    assert traj.steps[:3] == [0, 2, 4] and traj.steps[-1] == 250 and traj.values == []
    assert traj.frames.shape == (len(traj.steps), 17, 3)
    # particle_flow records objective values; track_value=False records none
    y = _x0(n=12, d=3, seed=1)
    traj = particle_flow(x0, "sw", y, 0.5, 4, record_every=2, progress=False)
    assert traj.steps == [0, 2, 4] and len(traj.values) == 3
    traj = particle_flow(x0, MMD("energy"), y, 0.5, 4, track_value=False, progress=False)
    assert traj.values == [] and traj.frames.shape == (5, 17, 3)


def test_flows_keep_dtype_and_do_not_modify_input():
    for dtype in (torch.float32, F64):
        x0 = _x0(n=20, dtype=dtype)
        keep = x0.clone()
        y = _x0(n=25, seed=3, dtype=dtype)
        traj = particle_flow(x0, MMD("energy"), y, 0.1, 3, progress=False)
        assert traj.x.dtype == dtype and traj.frames.dtype == dtype
        torch.testing.assert_close(x0, keep, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------


def test_bad_inputs():
    x0 = _x0()
    with pytest.raises(ValueError, match="step_size must be positive"):
        euler_flow(x0, _linear, 0.0, 3, progress=False)
    with pytest.raises(ValueError, match=r"step_size\(2\) must be positive"):
        euler_flow(x0, _linear, lambda k: 0.1 if k < 2 else -0.1, 5, progress=False)
    with pytest.raises(ValueError, match="n_steps must be an integer >= 1"):
        euler_flow(x0, _linear, 0.1, 0, progress=False)
    with pytest.raises(TypeError, match="n_steps must be an integer"):
        euler_flow(x0, _linear, 0.1, 2.5, progress=False)
    with pytest.raises(ValueError, match="noise_level must be a finite number >= 0"):
        euler_flow(x0, _linear, 0.1, 3, noise_level=-1.0, progress=False)
    with pytest.raises(ValueError, match="diffusion must be a finite number >= 0"):
        euler_flow(x0, _linear, 0.1, 3, diffusion=-1.0, progress=False)
    with pytest.raises(ValueError, match="record_every must be an integer >= 1"):
        euler_flow(x0, _linear, 0.1, 3, record_every=0, progress=False)
    with pytest.raises(TypeError, match="velocity_fn must be callable"):
        euler_flow(x0, "not a field", 0.1, 3, progress=False)
    with pytest.raises(TypeError, match="value_fn must be callable"):
        euler_flow(x0, _linear, 0.1, 3, value_fn=1.0, progress=False)
    with pytest.raises(ValueError, match="velocity_fn must return a tensor of shape"):
        euler_flow(x0, lambda x, at=None: x[:, :1], 0.1, 3, progress=False)
    bad = x0.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        euler_flow(bad, _linear, 0.1, 3, progress=False)
    y = _x0(seed=2)
    with pytest.raises(ValueError, match="x0 and y must have the same dimension"):
        particle_flow(x0, "mmd", y[:, :1], 0.1, 3, progress=False)
    with pytest.raises(ValueError, match="needs target samples"):
        particle_flow(x0, "sw", None, 0.1, 3, progress=False)
    with pytest.raises(ValueError, match="unknown objective"):
        particle_flow(x0, "wgan", y, 0.1, 3, progress=False)
    with pytest.raises(TypeError, match="score must be callable"):
        langevin(x0, 3.0, 0.1, 3, progress=False)
    with pytest.raises(ValueError, match="max_norm must be positive"):
        langevin(x0, _linear, 0.1, 3, max_norm=-1.0, progress=False)


def test_linear_schedule():
    from gwf_tutorial.flows import linear_schedule

    s = linear_schedule(0.6, 240)
    assert s(0) == pytest.approx(0.6) and s(120) == pytest.approx(0.3) and s(240) == 0.0 and s(1000) == 0.0
    assert linear_schedule(1.0, 10, end=0.5)(20) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="decay_steps"):
        linear_schedule(1.0, 0)
    with pytest.raises(ValueError, match="start"):
        linear_schedule(-1.0, 10)


# ------------------------------------------------------------------------------------------
# divergence: the spread bound, and the guard read in blocks off the CPU
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["gaussian", "energy"])
def test_mmd_flow_with_a_far_too_large_step_raises(kernel):
    """The benchmark's MMD flows use step 3; at 100x-10000x the particles are thrown out (finite, with
    a bounded kernel) and the spread bound stops the run, naming the step size."""
    from gwf_tutorial.kernels import median_bandwidth

    y = get_target("eight_gaussians").sample(200, _gen(0)).double()
    x0 = _x0(n=200, seed=1)
    obj = MMD("gaussian", median_bandwidth(y)) if kernel == "gaussian" else MMD("energy")
    ok = particle_flow(x0, obj, y, 3.0, 30, progress=False)
    assert metrics.energy_distance(ok.x, y) < metrics.energy_distance(x0, y)
    for factor in (100, 1000, 10000):
        with pytest.raises(FlowDivergedError, match=rf"step_size={3 * factor:g}\b.*about the target mean"):
            particle_flow(x0, obj, y, 3.0 * factor, 30, progress=False)


def test_spread_bound_is_translation_invariant_and_scale_equivariant():
    from gwf_tutorial.flows import SPREAD_FACTOR, spread_bound

    x0, y = _x0(seed=0), _x0(n=30, seed=1) + 2.0
    c, bound = spread_bound(x0, y)
    torch.testing.assert_close(c, y.mean(0))
    rms = lambda z: float(z.pow(2).sum(1).mean().sqrt())  # noqa: E731
    assert bound == pytest.approx(SPREAD_FACTOR * max(rms(x0 - c), rms(y - c)))
    c2, bound2 = spread_bound(7 * x0 + 5, 7 * y + 5)
    torch.testing.assert_close(c2, 7 * c + 5)
    assert bound2 == pytest.approx(7 * bound)


def test_guard_in_blocks_gives_the_same_flow_and_the_same_error(monkeypatch):
    """Off the CPU the guard reads the per-step norms every 16 steps (one host synchronisation per
    block): forced here on the CPU, the flow is bit-identical, the error names the same step, and a
    velocity that refuses non-finite input still reports the divergence."""
    import gwf_tutorial.flows as F

    y = _x0(n=40, seed=1) + 1.0
    kw = dict(step_size=0.5, n_steps=40, progress=False, record_every=40)
    every_step = particle_flow(_x0(), MMD("energy"), y, **kw)
    blow = lambda k: 1e4 if k >= 21 else 1e-3  # noqa: E731
    with pytest.raises(FlowDivergedError) as err_step:
        euler_flow(_x0(), lambda x, at=None: x, blow, 30, max_norm=1e3, progress=False)
    monkeypatch.setattr(F, "_check_every", lambda device: 16)
    blocks = particle_flow(_x0(), MMD("energy"), y, **kw)
    assert torch.equal(blocks.x, every_step.x)
    with pytest.raises(FlowDivergedError) as err_block:
        euler_flow(_x0(), lambda x, at=None: x, blow, 30, max_norm=1e3, progress=False)
    assert str(err_block.value) == str(err_step.value)
    assert "step 21 with step_size=10000" in str(err_block.value)
    calls = [0]

    def nan_then_checked(x, at=None):  # NaN particles after step 0; then a velocity that refuses them
        calls[0] += 1
        return torch.full_like(x, math.nan) if calls[0] == 1 else MMD("energy").velocity(x, y)

    with pytest.raises(FlowDivergedError, match="step 0 with step_size=0.1: particles became non-finite"):
        euler_flow(_x0(), nan_then_checked, 0.1, 5, progress=False)


def test_guard_in_blocks_synchronises_once_per_block(monkeypatch):
    import gwf_tutorial.flows as F

    syncs = [0]
    orig = torch.Tensor.__bool__

    def counting(self):
        syncs[0] += 1
        return orig(self)

    x = _x0()
    guard = F._Guard(x, None, 1e3, "test")
    guard.every = 16  # the block size on a GPU
    monkeypatch.setattr(torch.Tensor, "__bool__", counting)
    for _ in range(64):
        guard.push(x, 0.1)
    monkeypatch.undo()
    assert syncs[0] == 64 // 16
