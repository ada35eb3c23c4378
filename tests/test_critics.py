"""Tests for gwf_tutorial.critics: trained critics recover f'(r) and log(nu/rho) for two known
Gaussians, DV >= classical bound, penalties and losses against independent computations."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gwf_tutorial._validation as validation
from gwf_tutorial import critics, fdiv
from gwf_tutorial._validation import FlowDivergedError
from gwf_tutorial.critics import Critic, add_penalties, fit_critic, logistic_ratio
from gwf_tutorial.fdiv import FDIVERGENCES, JS, KL, KL_DV, dv_bound, variational_bound

F64 = torch.float64


def critic_loss(fdiv, h_x, h_y):
    """A variational critic's loss, minus the bound (fit_critic's per-step loss, checked)."""
    return -variational_bound(fdiv, h_x, h_y)


def r1_penalty(critic, y):
    """R1 alone, E_nu |grad h(y)|^2: add_penalties adds (r1 / 2) R1."""
    return add_penalties(y.new_zeros(()), critic, y, y, r1=2.0)


def gradient_penalty(critic, x, y, *, generator=None):
    """WGAN-GP alone: E(|grad h(t x_i + (1 - t) y_i)| - 1)^2, i < min(n, m)."""
    return add_penalties(x.new_zeros(()), critic, x, y, gp=1.0, generator=generator)


def logistic_loss(d_x, d_y):
    """The class-balanced logistic loss that logistic_ratio minimises (critics._logistic)."""
    return critics._logistic(d_x, d_y)


@pytest.fixture(scope="module")
def gaussians():
    # rho = N(0.5, 1) (model, x), nu = N(0, 1) (data, y): log r(x) = 0.5 x - 0.125
    g = torch.Generator().manual_seed(0)
    x = 0.5 + torch.randn(2000, 1, generator=g)
    y = torch.randn(2000, 1, generator=g)
    grid = torch.linspace(-1.0, 1.5, 51)[:, None]
    return x, y, grid, 0.5 * grid[:, 0] - 0.125


@pytest.mark.parametrize("d", list(FDIVERGENCES.values()), ids=list(FDIVERGENCES))
def test_trained_critic_recovers_f_prime_of_the_ratio(gaussians, d):
    # MLP critic (32 x 2, SiLU) with the f-GAN output activation, 400 full-batch Adam steps on
    # 2000 + 2000 samples. On the bulk [-1, 1.5]: max |h - f'(r)| < 0.25 (measured 0.07-0.18;
    # f'(r) spans 0.6-2.7 there) and correlation > 0.99 (measured >= 0.995). Reverse KL and chi^2
    # need the R1 penalty: their empirical bounds are unbounded (the critic grows without limit at
    # data points with no model samples nearby). KL-DV is compared up to a constant.
    x, y, grid, log_r = gaussians
    torch.manual_seed(0)
    critic = Critic(1, d, hidden=32, depth=2)
    r1 = 0.1 if d.name in ("chi2", "reverse_kl") else 0.0
    hist = fit_critic(critic, x, y, n_iters=400, lr=1e-2, r1=r1, generator=torch.Generator().manual_seed(1),
                      progress=False)  # fmt: skip
    with torch.no_grad():
        h = critic(grid)
    target = d.optimal_critic(torch.exp(log_r))
    if d.dv:
        h = h - (h - target).mean()
    assert (h - target).abs().max() < 0.25
    assert torch.corrcoef(torch.stack([h, target]))[0, 1] > 0.99
    assert len(hist.loss) == len(hist.bound) == len(hist.penalty) == 400
    assert (hist.penalty[-1] > 0) == (r1 > 0)


def test_logistic_ratio_recovers_the_log_density_ratio(gaussians):
    # D* = log(nu/rho) = -(0.5 x - 0.125); r = e^{-D}. Tolerance 0.2 on [-1, 1.5] (measured 0.11).
    x, y, grid, log_r = gaussians
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    est = logistic_ratio(x, y, n_iters=400, lr=1e-2, hidden=32, depth=2, generator=gen, progress=False)
    with torch.no_grad():
        assert (est.log_ratio(grid) - log_r).abs().max() < 0.2
        torch.testing.assert_close(est.logit(grid), -est.log_ratio(grid))
        torch.testing.assert_close(est.ratio(grid), torch.exp(est.log_ratio(grid)))
    # the history's "bound" is minus the logistic loss, which ends below log 4 (chance level)
    assert -est.history.bound[-1] < math.log(4)


def test_dv_bound_dominates_the_classical_bound_for_trained_critics(gaussians):
    # E h - log E e^h >= E h - E e^{h - 1} for every critic h, here along the training of a DV
    # critic and of a classical KL critic (pointwise in h, on the same samples).
    x, y, _, _ = gaussians
    for d in (KL_DV, KL):
        torch.manual_seed(0)
        critic = Critic(1, d, hidden=16, depth=1)
        opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
        for _ in range(30):
            h_x, h_y = critic(x), critic(y)
            assert dv_bound(h_x, h_y) >= -critic_loss(KL, h_x, h_y) - 1e-6
            loss = critic_loss(d, h_x, h_y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    torch.testing.assert_close(critic_loss(KL_DV, h_x, h_y), -dv_bound(h_x, h_y))


class _Fixed(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.w = nn.Parameter(torch.ones((), dtype=F64))
        self.fn = fn

    def forward(self, z):
        return self.w * self.fn(z)


def test_penalties_against_closed_forms():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 3, generator=g, dtype=F64)
    y = torch.randn(20, 3, generator=g, dtype=F64) + 1
    a = torch.tensor([0.3, -1.2, 2.0], dtype=F64)
    linear = _Fixed(lambda z: z @ a)  # grad = a everywhere
    torch.testing.assert_close(r1_penalty(linear, y), a.pow(2).sum())
    torch.testing.assert_close(gradient_penalty(linear, x, y), (a.norm() - 1) ** 2)
    quad = _Fixed(lambda z: 0.5 * z.pow(2).sum(1))  # grad = z
    torch.testing.assert_close(r1_penalty(quad, y), y.pow(2).sum(1).mean())
    # WGAN-GP on interpolates t x + (1 - t) y (pairs i < min(n, m)), t drawn from the generator
    t = torch.rand(20, 1, generator=torch.Generator().manual_seed(5), dtype=F64)
    xh = t * x[:20] + (1 - t) * y
    gp = gradient_penalty(quad, x, y, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(gp, ((xh.norm(dim=1) - 1) ** 2).mean())
    # both are differentiable in the critic's parameters (d/dw of w^2 |a|^2 = 2 |a|^2 at w = 1)
    (gw,) = torch.autograd.grad(r1_penalty(linear, y), linear.w)
    torch.testing.assert_close(gw, 2 * a.pow(2).sum())


def test_losses_against_independent_computations():
    g = torch.Generator().manual_seed(1)
    d_x, d_y = torch.randn(40, generator=g, dtype=F64), torch.randn(25, generator=g, dtype=F64)
    # class-balanced logistic loss = mean BCE of each class (model label 0, data label 1)
    expected = F.binary_cross_entropy_with_logits(
        d_x, torch.zeros_like(d_x)
    ) + F.binary_cross_entropy_with_logits(d_y, torch.ones_like(d_y))
    torch.testing.assert_close(logistic_loss(d_x, d_y), expected)
    # critic loss = minus the variational bound; JS through its conjugate -log(2 - e^s)
    h_x, h_y = JS.output_activation(d_x), JS.output_activation(d_y)
    torch.testing.assert_close(
        critic_loss(JS, h_x, h_y), -(h_x.mean() + torch.log(2 - torch.exp(h_y)).mean())
    )
    torch.testing.assert_close(critic_loss(KL_DV, d_x, d_y), -(d_x.mean() - torch.log(torch.exp(d_y).mean())))


def test_critic_module_shapes_activation_and_dtype():
    x = torch.randn(7, 2, dtype=F64)
    c = Critic(2, "js", hidden=8, depth=1, dtype=F64)
    h = c(x)
    assert h.shape == (7,) and h.dtype == F64
    assert (h < math.log(2)).all()  # inside the JS conjugate domain
    torch.testing.assert_close(h, JS.output_activation(c.raw(x)))
    raw = Critic(2, None, hidden=8, depth=1)
    z = torch.randn(5, 2)
    torch.testing.assert_close(raw(z), raw.raw(z))
    # a custom net returning (n, 1) is squeezed; a wrong shape is an error
    lin = Critic(2, "kl", net=nn.Linear(2, 1))
    assert lin(z).shape == (5,)
    with pytest.raises(ValueError, match="shape"):
        Critic(2, "kl", net=nn.Linear(2, 3))(z)
    with pytest.raises(ValueError, match="x must have shape"):
        c(torch.randn(4, 3, dtype=F64))
    # the logistic estimator's default network follows the samples' dtype
    est = logistic_ratio(x, x + 1, n_iters=2, progress=False)
    assert est.logit(x).dtype == F64


def test_unbounded_bound_raises_a_clear_error(gaussians):
    # The empirical reverse-KL bound is unbounded above; unregularised training with a large
    # learning rate drives the critic to -inf at data points and must stop with a clear message.
    x, y, _, _ = gaussians
    torch.manual_seed(0)
    critic = Critic(1, "reverse_kl", hidden=32, depth=2)
    with pytest.raises(FlowDivergedError, match=r"gradient penalty.*lr|lr.*gradient penalty"):
        fit_critic(critic, x, y, n_iters=600, lr=1e-2, progress=False)


def test_bad_input():
    x, y = torch.randn(10, 2), torch.randn(12, 2)
    c = Critic(2, "kl", hidden=4, depth=1)
    with pytest.raises(ValueError, match="dimension"):
        fit_critic(c, x, torch.randn(12, 3))
    with pytest.raises(ValueError, match="lr"):
        fit_critic(c, x, y, lr=0.0)
    with pytest.raises(ValueError, match="n_iters"):
        fit_critic(c, x, y, n_iters=0)
    with pytest.raises(ValueError, match="r1"):
        fit_critic(c, x, y, r1=-1.0)
    with pytest.raises(ValueError, match="x contains NaN"):
        fit_critic(c, torch.full((3, 2), math.nan), y)
    with pytest.raises(ValueError, match="fdiv"):
        fit_critic(Critic(2, None, hidden=4, depth=1), x, y)
    with pytest.raises(TypeError, match="critic"):
        fit_critic(lambda z: z.sum(1), x, y, "kl")
    with pytest.raises(TypeError, match="net"):
        logistic_ratio(x, y, net="mlp")
    with pytest.raises(ValueError, match="in_dim"):
        Critic(0, "kl")
    with pytest.raises(TypeError, match="net"):
        Critic(2, "kl", net=lambda z: z)
    assert critics.__all__  # the public API is declared


def test_exact_log_ratio_of_two_gaussians():
    from gwf_tutorial.critics import ExactLogRatio
    from gwf_tutorial.targets import Gaussian

    f64 = torch.float64
    eye = torch.eye(2, dtype=f64)
    rho, nu = Gaussian(torch.tensor([1.0, 0.0], dtype=f64), eye), Gaussian(torch.zeros(2, dtype=f64), eye)
    D = ExactLogRatio(rho, nu)
    x = torch.randn(50, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(D(x), x[:, 0] - 0.5, atol=1e-12)  # log r = x_1 - 1/2
    with pytest.raises(TypeError, match="q must have a log_prob"):
        ExactLogRatio(Gaussian(torch.zeros(2, dtype=f64), eye), object())


def test_learned_kernel_custom_embedding():
    from gwf_tutorial.critics import LearnedKernel

    emb = torch.nn.Linear(3, 2)
    torch.nn.init.zeros_(emb.weight)
    torch.nn.init.zeros_(emb.bias)
    k = LearnedKernel(3, feature_dim=2, embedding=emb)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    assert k.features(x).shape == (5, 5) and torch.equal(k.features(x)[:, 3:], torch.zeros(5, 2))
    assert any(p is emb.weight for p in k.parameters())  # the embedding is trained with the kernel
    with pytest.raises(TypeError, match="embedding"):
        LearnedKernel(3, embedding=lambda z: z)


# ---------------------------------------------------------------- reliability: checked once, at entry


@pytest.mark.parametrize(
    "loss",
    [lambda a, b: critic_loss("kl", a, b), lambda a, b: critic_loss("js", a, b),
     lambda a, b: critic_loss("kl_dv", a, b), lambda a, b: variational_bound("chi2", a, b)],
    ids=["critic_loss-kl", "critic_loss-js", "critic_loss-kl_dv", "variational_bound-chi2"],
)
def test_critic_losses_check_values_and_dtypes_at_entry(loss):
    a = torch.tensor([0.5, -1.0, 2.0])
    b = torch.tensor([0.1, 0.3])
    names = ("h_x", "h_y")
    # integers are cast to the default dtype: the same value as the float input
    assert torch.equal(loss(a.round().long(), b), loss(a.round(), b))
    for i, name in enumerate(names):
        def spoil(t, i=i):
            return (t, b) if i == 0 else (a, t)

        ref = a if i == 0 else b
        for dt in (torch.float16, torch.bfloat16):  # refused, not silently computed in low precision
            with pytest.raises(TypeError, match=rf"{name} must be float32 or float64"):
                loss(*spoil(ref.to(dt)))
        with pytest.raises(TypeError, match=rf"{name} must hold real"):
            loss(*spoil(ref.to(torch.complex64)))
        for bad in (math.inf, math.nan):
            with pytest.raises(ValueError, match=rf"{name} contains NaN or infinite"):
                loss(*spoil(torch.cat([ref[:1], torch.tensor([bad])])))
        with pytest.raises(ValueError, match=rf"{name} holds values up to 1e\+30"):  # would be -inf
            loss(*spoil(torch.cat([ref[:1], torch.tensor([1e30])])))
        with pytest.raises(ValueError, match=rf"{name} must"):  # an empty batch, not a NaN
            loss(*spoil(ref[:0]))


def test_value_and_input_grad_names_its_argument_y():
    c = Critic(2, "kl", hidden=4, depth=1)
    y = torch.randn(5, 2)
    with pytest.raises(TypeError, match=r"^y must have dtype torch.float32"):
        critics.value_and_input_grad(c, y.double())
    for dt in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match=r"^y must be float32 or float64"):
            critics.value_and_input_grad(c, y.to(dt))
    vi, gi = critics.value_and_input_grad(c, y.round().long())  # integers: cast, same result
    vf, gf = critics.value_and_input_grad(c, y.round())
    assert torch.equal(vi, vf) and torch.equal(gi, gf)


def test_penalties_refuse_an_empty_batch():
    c = Critic(2, "kl", hidden=4, depth=1)
    x = torch.randn(5, 2)
    for kw in (dict(r1=1.0), dict(gp=1.0)):
        with pytest.raises(ValueError, match=r"^y must have shape \(n, ...\) with n >= 1"):
            critics.add_penalties(torch.zeros(()), c, x, x[:0], **kw)
    with pytest.raises(ValueError, match=r"^x must have shape"):
        critics.add_penalties(torch.zeros(()), c, x[:0], x, gp=1.0)
    # no penalty, nothing to compute: the loss passes through
    assert critics.add_penalties(torch.ones(()), c, x[:0], x[:0]) == 1.0


@pytest.mark.parametrize("fit", ["fit_critic", "logistic_ratio"])
def test_far_too_large_lr_raises_the_divergence_error_naming_lr(fit):
    x, y = torch.randn(20, 2), torch.randn(15, 2) + 1
    torch.manual_seed(0)
    with pytest.raises(FlowDivergedError, match=r"lr=1e\+30"):
        if fit == "fit_critic":
            fit_critic(Critic(2, "kl", hidden=8, depth=1), x, y, n_iters=5, lr=1e30, progress=False)
        else:
            logistic_ratio(x, y, n_iters=5, lr=1e30, hidden=8, depth=1, progress=False)


def test_training_loops_check_values_once_not_per_step(monkeypatch):
    # a value check is a host synchronisation: the loops check their samples at entry, and their
    # per-step losses check shapes only (no checked critic values)
    checked, public = [], []
    critic_values, check_finite = fdiv._critic_values, validation.check_finite

    def spy_values(h_x, h_y, *, check_nan=True):
        checked.append(check_nan)
        return critic_values(h_x, h_y, check_nan=check_nan)

    def spy_finite(t, name):
        public.append(name)
        return check_finite(t, name)

    monkeypatch.setattr(fdiv, "_critic_values", spy_values)
    monkeypatch.setattr(validation, "check_finite", spy_finite)
    x, y = torch.randn(20, 2), torch.randn(15, 2) + 1
    counts = []
    for n_iters in (2, 7):
        checked.clear(), public.clear()
        fit_critic(Critic(2, "kl", hidden=8, depth=1), x, y, n_iters=n_iters, progress=False)
        logistic_ratio(x, y, n_iters=n_iters, hidden=8, depth=1, progress=False)
        assert checked == [False] * n_iters  # fit_critic's loss: one unchecked bound per step
        counts.append(len(public))
    assert counts == [4, 4]  # x and y, once per call


# ---------------------------------------------------------------------------------------------
# the critic-objective interface: make_critic, critic_loss (bound + penalties), map_term, velocity
# ---------------------------------------------------------------------------------------------


def _objectives():
    return [critics.get_critic_objective("kl"), critics.get_critic_objective("js", symmetric=True),
            critics.get_critic_objective("kl_dv"), critics.WassersteinCritic(), critics.LearnedKernelMMD(),
            critics.SemiDualPotential("chi2")]  # fmt: skip


@pytest.mark.parametrize("obj", _objectives(), ids=repr)
def test_every_critic_objective_implements_the_one_interface(obj):
    torch.manual_seed(0)
    x, y = torch.randn(12, 2, dtype=F64), torch.randn(9, 2, dtype=F64) + 0.5
    critic = obj.make_critic(2, hidden=8, depth=1, dtype=F64)
    loss, bound = obj.critic_loss(critic, x, y)
    torch.testing.assert_close(loss, -bound, rtol=0, atol=0)
    torch.testing.assert_close(bound, obj.bound(critic, x, y), rtol=0, atol=1e-15)
    fn = obj.penalty_function(critic, x, y)
    g = torch.Generator().manual_seed(3)
    loss_p, _ = obj.critic_loss(critic, x, y, r1=0.3, gp=0.2, generator=g)
    expected = -bound + 0.15 * r1_penalty(fn, y) + 0.2 * gradient_penalty(fn, x, y,
                                                                          generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss_p, expected, rtol=1e-12, atol=1e-12)
    # velocity: -n grad of the map term in the particles (autograd on a copy)
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(obj.map_term(critic, xx, y), xx)
    torch.testing.assert_close(obj.velocity(critic, x, y), -len(x) * grad, rtol=0, atol=0)
    assert not obj.velocity(critic, x, y).requires_grad


def test_velocities_of_w1_and_the_semi_dual_potential_in_closed_form():
    # h(x) = a.x: the W1 map term E h(T z) moves particles along -a; the S-JKO potential v = a.x (h = -v)
    # along +a, the gradient of v
    a = torch.tensor([0.5, -2.0], dtype=F64)
    linear = lambda z: z @ a  # noqa: E731
    x = torch.randn(7, 2, dtype=F64)
    torch.testing.assert_close(critics.WassersteinCritic().velocity(linear, x), -a.expand(7, 2))
    torch.testing.assert_close(critics.SemiDualPotential().velocity(linear, x), a.expand(7, 2))


@pytest.mark.parametrize("r1", [0.0, 0.2])
def test_semi_dual_potential_critic_loss_is_the_s_jko_potential_loss(r1):
    from gwf_tutorial import sjko

    torch.manual_seed(1)
    x, y = torch.randn(10, 3, dtype=F64), torch.randn(8, 3, dtype=F64)
    v = nn.Sequential(nn.Linear(3, 16), nn.SiLU(), nn.Linear(16, 1)).double()  # (n, 1) values
    obj = critics.SemiDualPotential("kl")
    loss, bound = obj.critic_loss(v, x, y, r1=r1)
    v_real, grad = critics.value_and_input_grad(v, y)
    expected = sjko.potential_loss(v(x), v_real, "kl", grad_real=grad, r1=r1)
    assert torch.equal(loss, expected)
    torch.testing.assert_close(bound, -(v(x).mean() + torch.expm1(-v(y)).mean()), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(obj.map_term(v, x), -v(x).mean())
    _, _, data = obj.critic_terms(v, x, y, r1=r1)
    torch.testing.assert_close(data, obj.data_term(v(y)))
    with pytest.raises(ValueError, match="one value per point"):
        obj.values(lambda z: z, x)
    assert isinstance(sjko.toy_trainer(n_iters=1).adversary, critics.SemiDualPotential)


def test_r1_is_the_squared_norm_over_all_coordinates_of_a_point():
    # h(y) = <a, y> on image-shaped y (m, 2, 3): grad h = a, R1 = |a|^2 (not the channel sum averaged)
    a = torch.arange(6, dtype=F64).reshape(2, 3)
    y = torch.randn(5, 2, 3, dtype=F64)
    out = critics.add_penalties(torch.zeros((), dtype=F64), lambda z: (z * a).sum((1, 2)), y, y, r1=2.0)
    torch.testing.assert_close(out, (a**2).sum())


def test_jko_re_exports_the_critic_objectives():
    from gwf_tutorial import jko

    for name in ("CriticObjective", "VariationalFDivergence", "WassersteinCritic", "LearnedKernelMMD",
                 "get_critic_objective"):  # fmt: skip
        assert getattr(jko, name) is getattr(critics, name)
