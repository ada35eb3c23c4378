"""Tests of gwf_tutorial.drifting against closed forms and naive loops."""

from __future__ import annotations

import math

import pytest
import torch
from test_train import assert_damaged_checkpoints_refused
from torch import nn

from gwf_tutorial import drifting, train
from gwf_tutorial.drifting import (
    Algorithm2Drift,
    CriticDrift,
    DriftField,
    MultiTemperatureDrift,
    ObjectiveDrift,
    PaperDrift,
    algorithm2_affinities,
    algorithm2_field,
    drift_rms,
    drifting_loss,
    gaussian_population_field,
    jacobian_asymmetry,
    paper_field,
    train_drifting,
)

F64 = torch.float64


def multi_temperature_field(x, y_pos, y_neg=None, temperatures=(0.02, 0.05, 0.2), normalize=True, *,
                            affinity_floor=1e-6, return_raw=False):  # fmt: skip
    """MultiTemperatureDrift's field with any negatives (y_neg None: x without the self-pairs), checked;
    ``return_raw``: ``(V, raw drift RMS)``."""
    x, y_pos, y_neg, self_neg = drifting._check_triplet(x, y_pos, y_neg)
    temps, normalize, floor = drifting._check_multi(temperatures, normalize, affinity_floor)
    V, raw = drifting._multi_temperature(x, y_pos, y_neg, self_neg, temps, normalize, 1.0, 1.0, floor, True)
    return (V, float(raw)) if return_raw else V


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _gauss(n, mean, cov, g):
    mean = torch.as_tensor(mean, dtype=F64)
    L = torch.linalg.cholesky(torch.as_tensor(cov, dtype=F64))
    return mean + torch.randn(n, mean.shape[0], generator=g, dtype=F64) @ L.T


# ------------------------------------------------------------------------------------------
# Algorithm 2: naive loop, S+S-(B+ - B-), antisymmetry
# ------------------------------------------------------------------------------------------


def _naive_algorithm2(x, yp, yn, T, self_neg, a=1.0, r=1.0):
    """Algorithm 2 with Python loops and math.exp (independent of the vectorised code)."""
    x, yp, yn = x.tolist(), yp.tolist(), yn.tolist()
    targets = yp + yn
    n, m, d = len(x), len(yp), len(x[0])
    logit = [[0.0] * len(targets) for _ in range(n)]
    for i in range(n):
        for j, t in enumerate(targets):
            dist = math.sqrt(sum((x[i][k] - t[k]) ** 2 for k in range(d)))
            if self_neg and j - m == i:
                dist += 1e6
            logit[i][j] = -dist / T
    ex = [[math.exp(v) for v in row] for row in logit]
    row_sum = [sum(row) for row in ex]
    col_sum = [sum(ex[i][j] for i in range(n)) for j in range(len(targets))]
    V = []
    for i in range(n):
        A = [math.sqrt(ex[i][j] / row_sum[i] * ex[i][j] / col_sum[j]) for j in range(len(targets))]
        sp, sn = sum(A[:m]), sum(A[m:])
        bp = [sum(A[j] * yp[j][k] for j in range(m)) / sp for k in range(d)]
        bn = [sum(A[m + j] * yn[j][k] for j in range(len(yn))) / sn for k in range(d)]
        V.append([sp * sn * (a * (bp[k] - x[i][k]) - r * (bn[k] - x[i][k])) for k in range(d)])
    return torch.tensor(V, dtype=F64)


@pytest.mark.parametrize("self_neg", [False, True])
def test_algorithm2_equals_naive_loop(self_neg):
    g = _gen(0)
    x = torch.randn(5, 2, generator=g, dtype=F64)
    yp = torch.randn(4, 2, generator=g, dtype=F64) + 0.5
    yn = x if self_neg else torch.randn(3, 2, generator=g, dtype=F64)
    V = algorithm2_field(x, yp, None if self_neg else yn, temperature=0.7)
    ref = _naive_algorithm2(x, yp, yn, 0.7, self_neg)
    torch.testing.assert_close(V, ref, rtol=1e-12, atol=1e-12)
    # attraction/repulsion imbalance: S+S-[a(B+ - x) - r(B- - x)]
    V15 = algorithm2_field(x, yp, None if self_neg else yn, 0.7, attraction=1.5, repulsion=0.5)
    ref15 = _naive_algorithm2(x, yp, yn, 0.7, self_neg, a=1.5, r=0.5)
    torch.testing.assert_close(V15, ref15, rtol=1e-12, atol=1e-12)
    assert (V15 - V).abs().max() > 1e-3  # the imbalance changes the field


def test_algorithm2_equals_barycentre_form():
    """MATH §4: (A+ * S-) @ y+ - (A- * S+) @ y- = S+ S- (B+ - B-), B the A-weighted barycentres."""
    g = _gen(1)
    x = torch.randn(7, 3, generator=g, dtype=F64)
    yp = torch.randn(6, 3, generator=g, dtype=F64)
    T = 0.4
    logit = -torch.cdist(x, torch.cat([yp, x])) / T
    logit[:, 6:] -= 1e6 / T * torch.eye(7, dtype=F64)
    A = (logit.softmax(1) * logit.softmax(0)).sqrt()
    Ap, An = A[:, :6], A[:, 6:]
    Sp, Sn = Ap.sum(1, keepdim=True), An.sum(1, keepdim=True)
    Bp, Bn = Ap @ yp / Sp, An @ x / Sn
    torch.testing.assert_close(algorithm2_field(x, yp, None, T), Sp * Sn * (Bp - Bn))


def test_antisymmetry():
    g = _gen(2)
    x = torch.randn(20, 2, generator=g, dtype=F64)
    p = torch.randn(15, 2, generator=g, dtype=F64) + 1.0
    q = torch.randn(12, 2, generator=g, dtype=F64)
    for f in (
        lambda a, b: paper_field(x, a, b, 0.5, "laplace"),
        lambda a, b: paper_field(x, a, b, 0.5, "gaussian"),
        lambda a, b: algorithm2_field(x, a, b, 0.5),
        lambda a, b: multi_temperature_field(x, a, b),
        lambda a, b: multi_temperature_field(x, a, b, (0.3,), normalize=False),
    ):
        V = f(p, q)
        assert V.abs().max() > 1e-2
        torch.testing.assert_close(f(q, p), -V, rtol=1e-10, atol=1e-12)
    # V_{p,q} with weights (a, r) = -V_{q,p} with weights (r, a)
    torch.testing.assert_close(
        algorithm2_field(x, p, q, 0.5, attraction=1.5, repulsion=1.0),
        -algorithm2_field(x, q, p, 0.5, attraction=1.0, repulsion=1.5),
    )
    # identical positive and negative sets: exactly zero
    assert algorithm2_field(x, p, p.clone(), 0.5).abs().max() < 1e-14
    assert paper_field(x, p, p.clone(), 0.5).abs().max() < 1e-14


# ------------------------------------------------------------------------------------------
# Gaussian kernel: population field, V = 0 at p = q, V+ = s^2 grad log p_s
# ------------------------------------------------------------------------------------------


def test_population_field_math_number():
    """MATH §6.8: x = 0.3, p = N(1, 0.25) (variance 0.25), q = N(0, 1), s = 0.5 -> V = 0.41."""
    x = torch.tensor([[0.3]], dtype=F64)
    V = gaussian_population_field(x, [1.0], [[0.25]], [0.0], [[1.0]], 0.5)
    # 0.25 * (0.3 / 1.25 + 0.7 / 0.5) = 0.25 * (0.24 + 1.4) = 0.41
    assert V.dtype == F64
    assert abs(V.item() - 0.41) < 1e-14


def test_attraction_is_smoothed_score():
    """V+_p = s^2 grad log p_s, p = N(1, 0.25): -s^2 (x - 1)/(0.25 + s^2), Monte Carlo, m = 4e5."""
    g = _gen(3)
    yp = 1.0 + 0.5 * torch.randn(400_000, 1, generator=g, dtype=F64)
    x = torch.tensor([[-0.5], [0.3], [1.0], [2.0]], dtype=F64)
    for s in (0.3, 0.5, 1.0):
        exact = -(s**2) * (x - 1.0) / (0.25 + s**2)
        est = paper_field(x, yp, None, s, "gaussian", repulsion=0.0)  # the attraction V+ alone
        # self-normalised estimator, effective sample size >~ 1e4: MC error < 0.005
        torch.testing.assert_close(est, exact, rtol=0, atol=0.01)


def test_population_field_matches_monte_carlo_1d_and_2d():
    g = _gen(4)
    m = 300_000
    # 1-D, the MATH §6.8 setting at several points
    yp = 1.0 + 0.5 * torch.randn(m, 1, generator=g, dtype=F64)
    yq = torch.randn(m, 1, generator=g, dtype=F64)
    x = torch.tensor([[-0.5], [0.3], [1.0], [2.0]], dtype=F64)
    exact = gaussian_population_field(x, [1.0], [[0.25]], [0.0], [[1.0]], 0.5)
    torch.testing.assert_close(paper_field(x, yp, yq, 0.5, "gaussian"), exact, rtol=0, atol=0.01)
    assert abs(exact[1].item() - 0.41) < 1e-12
    # 2-D, correlated covariances, with an attraction/repulsion imbalance
    mp, Sp = torch.tensor([0.5, -0.2], dtype=F64), torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=F64)
    mq, Sq = (
        torch.tensor([-0.3, 0.1], dtype=F64),
        torch.tensor([[1.0, -0.3], [-0.3, 0.8]], dtype=F64),
    )
    yp, yq = _gauss(m, mp, Sp, g), _gauss(m, mq, Sq, g)
    x = torch.randn(6, 2, generator=g, dtype=F64)
    exact = gaussian_population_field(x, mp, Sp, mq, Sq, 0.6, attraction=1.5)
    est = paper_field(x, yp, yq, 0.6, "gaussian", attraction=1.5)
    assert exact.abs().max() > 0.3
    torch.testing.assert_close(est, exact, rtol=0, atol=0.02)


def test_field_vanishes_for_same_population():
    """Gaussian kernel, p = q: V = 0 within Monte Carlo error, and clearly not 0 for p != q."""
    g = _gen(5)
    m = 300_000
    x = torch.tensor([[-1.0, 0.0], [0.0, 0.5], [0.8, -0.4], [1.5, 1.5]], dtype=F64)
    mean, cov = [0.2, -0.1], [[1.0, 0.3], [0.3, 0.6]]
    yp, yq = _gauss(m, mean, cov, g), _gauss(m, mean, cov, g)
    assert paper_field(x, yp, yq, 0.5, "gaussian").abs().max() < 0.01
    # the test can fail: shifting q by 0.3 gives V = -s^2 (s^2 I + cov)^{-1} (0.3, 0.3), |V| ~ 0.08
    shifted = paper_field(x, yp, yq + 0.3, 0.5, "gaussian")
    exact = gaussian_population_field(x, mean, cov, torch.tensor(mean) + 0.3, cov, 0.5)
    assert exact.norm(dim=1).min() > 0.05
    torch.testing.assert_close(shifted, exact, rtol=0, atol=0.01)
    # population field is exactly 0 at p = q
    assert gaussian_population_field(x, mean, cov, mean, cov, 0.5).abs().max() == 0.0
    # Algorithm 2 (Laplace, row-col normalised) also vanishes at p = q up to MC error
    xs = _gauss(400, mean, cov, g)
    V = algorithm2_field(xs, yp[:8000], yq[:8000], 0.5)
    V_shift = algorithm2_field(xs, yp[:8000], yq[:8000] + 0.5, 0.5)
    assert drift_rms(V) < 0.15 * drift_rms(V_shift)


# ------------------------------------------------------------------------------------------
# multi-temperature field
# ------------------------------------------------------------------------------------------


def test_multi_temperature_is_sum_of_rms_normalised_algorithm2():
    g = _gen(6)
    x = torch.randn(30, 3, generator=g, dtype=F64)
    yp = 2.0 * torch.randn(25, 3, generator=g, dtype=F64) + 1.0
    temps = (0.02, 0.05, 0.2)
    scale = torch.cdist(x, torch.cat([yp, x])).mean()  # self-pairs included, as in the code
    c = scale / math.sqrt(3)
    ref = torch.zeros_like(x)
    for R in temps:
        F = algorithm2_field(x, yp, None, temperature=R * scale.item()) / c  # rescaled units
        ref += F / F.pow(2).mean().sqrt()
    ref = c * ref  # back to the units of x
    V = multi_temperature_field(x, yp, None, temps, affinity_floor=0.0)
    torch.testing.assert_close(V, ref, rtol=1e-9, atol=1e-12)
    # the official default clamps the affinity product at 1e-6: a different field
    assert (multi_temperature_field(x, yp, None, temps) - V).abs().max() > 1e-3
    # normalize=False with one temperature and no floor is Algorithm 2
    torch.testing.assert_close(
        multi_temperature_field(x, yp, None, (0.7,), normalize=False, affinity_floor=0.0),
        algorithm2_field(x, yp, None, 0.7),
    )


def test_multi_temperature_scale_invariance_and_unit_rms():
    g = _gen(7)
    x = torch.randn(40, 2, generator=g, dtype=F64)
    yp = 0.5 * torch.randn(50, 2, generator=g, dtype=F64) + 1.0
    V, raw_rms = multi_temperature_field(x, yp, return_raw=True)
    assert torch.isfinite(V).all()
    for lam, b in ((10.0, 0.0), (0.1, 3.0), (2.0, -1.0)):
        shift = torch.tensor([b, -b], dtype=F64)
        Vl = multi_temperature_field(lam * x + shift, lam * yp + shift)
        torch.testing.assert_close(Vl, lam * V, rtol=1e-8, atol=1e-10)
    # one temperature: (1/(nd)) |V / c|^2 = 1 exactly
    V1 = multi_temperature_field(x, yp, None, (0.05,))
    c = torch.cdist(x, torch.cat([yp, x])).mean() / math.sqrt(2)
    assert (V1 / c).pow(2).mean().item() == pytest.approx(1.0, rel=1e-10)
    # three temperatures: RMS of the sum at most 3 (triangle inequality), and > 1
    rms = (V / c).pow(2).mean().sqrt().item()
    assert 1.0 < rms <= 3.0 + 1e-12
    # raw drift reported in units of x, scale equivariant too
    _, raw_rms_l = multi_temperature_field(10 * x, 10 * yp, return_raw=True)
    assert raw_rms_l == pytest.approx(10 * raw_rms, rel=1e-8)


def test_multi_temperature_finite_in_degenerate_cases():
    g = _gen(8)
    yp = torch.randn(20, 2, generator=g)
    collapsed = torch.zeros(16, 2)  # a fully collapsed generator
    for x in (collapsed, torch.randn(16, 2, generator=g) * 1e-6, torch.randn(16, 2, generator=g)):
        for temps in ((0.02, 0.05, 0.2), (1e-3,), (100.0,)):
            V = multi_temperature_field(x, yp, None, temps)
            assert V.dtype == torch.float32 and torch.isfinite(V).all()


# ------------------------------------------------------------------------------------------
# loss: value and gradient (MATH §1)
# ------------------------------------------------------------------------------------------


def test_stop_grad_loss_gradient_linear_net():
    """grad_theta E|f - sg(f + V)|^2 = -2 E[J^T V]; f(z) = W z + b: -2 mean V z^T and -2 mean V."""
    g = _gen(9)
    net = nn.Linear(3, 2, dtype=F64)
    z = torch.randn(11, 3, generator=g, dtype=F64)
    V = torch.randn(11, 2, generator=g, dtype=F64)
    loss = drifting_loss(net(z), V)
    assert loss.item() == pytest.approx(V.pow(2).sum(1).mean().item(), rel=1e-14)
    loss.backward()
    torch.testing.assert_close(net.weight.grad, -2.0 * V.T @ z / 11, rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(net.bias.grad, -2.0 * V.mean(0), rtol=1e-13, atol=1e-14)


def test_stop_grad_loss_gradient_nonlinear_net():
    """Same identity with the full Jacobian of a small MLP (torch.func.jacrev over parameters)."""
    torch.manual_seed(0)
    g = _gen(10)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 3)).to(F64)
    z = torch.randn(7, 2, generator=g, dtype=F64)
    V = torch.randn(7, 3, generator=g, dtype=F64)
    params = {k: v.detach() for k, v in net.named_parameters()}
    jac = torch.func.jacrev(lambda p: torch.func.functional_call(net, p, (z,)))(params)
    drifting_loss(net(z), V).backward()
    for name, p in net.named_parameters():
        J = jac[name].reshape(7, 3, -1)  # (n, d, n_params)
        expected = (-2.0 * torch.einsum("ndp,nd->p", J, V) / 7).reshape(p.shape)
        torch.testing.assert_close(p.grad, expected, rtol=1e-12, atol=1e-13)


# ------------------------------------------------------------------------------------------
# drift objects
# ------------------------------------------------------------------------------------------


def test_drift_objects_match_functions():
    g = _gen(11)
    x = torch.randn(12, 2, generator=g, dtype=F64)
    y = torch.randn(10, 2, generator=g, dtype=F64)
    torch.testing.assert_close(Algorithm2Drift(0.3)(x, y), algorithm2_field(x, y, None, 0.3))
    torch.testing.assert_close(
        PaperDrift(0.3, "gaussian", repulsion=1.5)(x, y),
        paper_field(x, y, None, 0.3, "gaussian", repulsion=1.5),
    )
    torch.testing.assert_close(MultiTemperatureDrift()(x, y), multi_temperature_field(x, y))
    # paper field with self-negatives: the pair (x_i, x_i) is excluded from the repulsion
    V = PaperDrift(0.3, "laplace")(x, y)
    k = torch.exp(-torch.cdist(x, x) / 0.3) * (1 - torch.eye(12, dtype=F64))
    v_neg = (k @ x) / k.sum(1, keepdim=True) - x
    torch.testing.assert_close(V, paper_field(x, y, None, 0.3, repulsion=0.0) - v_neg)
    for drift in (Algorithm2Drift(), PaperDrift(), MultiTemperatureDrift(), CriticDrift()):
        assert isinstance(drift, DriftField)


class _MeanMatching:
    """A stand-in objective: velocity = mean(y) - x (the flow of 1/2 E|x - mean(y)|^2)."""

    def velocity(self, x, y):
        return y.mean(0) - x


def test_objective_drift():
    g = _gen(12)
    x = torch.randn(9, 2, generator=g, dtype=F64)
    y = torch.randn(14, 2, generator=g, dtype=F64) + 3.0
    torch.testing.assert_close(ObjectiveDrift(_MeanMatching(), 2.0)(x, y), 2.0 * (y.mean(0) - x))

    class _Bad:
        def velocity(self, x, y):
            return x[:, :1]

    with pytest.raises(ValueError, match="objective.velocity"):
        ObjectiveDrift(_Bad())(x, y)
    with pytest.raises(TypeError, match="objective"):
        ObjectiveDrift(object())


def test_objective_drift_mmd_witness():
    """functionals.MMD, Gaussian kernel s: V = [mean k(x,y)(y-x) - mean k(x,x')(x'-x)] / s^2."""
    functionals = pytest.importorskip("gwf_tutorial.functionals")
    g = _gen(13)
    x = torch.randn(9, 2, generator=g, dtype=F64)
    y = torch.randn(14, 2, generator=g, dtype=F64) + 1.0
    s = 0.8
    V = ObjectiveDrift(functionals.MMD("gaussian", bandwidth=s))(x, y)
    kxy = torch.exp(-(torch.cdist(x, y) ** 2) / (2 * s * s))
    kxx = torch.exp(-(torch.cdist(x, x) ** 2) / (2 * s * s))
    ref = (kxy @ y - kxy.sum(1, keepdim=True) * x) / 14 - (kxx @ x - kxx.sum(1, keepdim=True) * x) / 9
    torch.testing.assert_close(V, ref / s**2, rtol=1e-10, atol=1e-12)


def test_critic_drift_is_kl_velocity_for_gaussians():
    """Logistic critic between N(0,1) (model) and N(1,1) (data): D* = x - 1/2, grad D* = 1."""
    torch.manual_seed(0)
    g = _gen(14)
    x = torch.randn(4000, 1, generator=g, dtype=F64)
    y = torch.randn(4000, 1, generator=g, dtype=F64) + 1.0
    drift = CriticDrift(nn.Linear(1, 1, dtype=F64), n_iters=300, lr=0.05)
    V = drift(x, y)
    assert V.shape == x.shape
    # logistic-regression MLE on 8000 points: slope 1 +- ~0.03
    torch.testing.assert_close(V, torch.ones_like(V), rtol=0, atol=0.1)
    assert drift.last_loss < 2 * math.log(2)  # better than chance


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


def _gaussian_target():
    mean = torch.tensor([0.5, -0.3])
    cov = torch.tensor([[0.3, 0.1], [0.1, 0.2]])
    return mean, cov, torch.linalg.cholesky(cov)


def test_train_drifting_moves_towards_gaussian_target():
    from gwf_tutorial.nets import MLP

    torch.manual_seed(0)
    g = _gen(15)
    mean, cov, L = _gaussian_target()
    net = MLP(4, 2, hidden=32, depth=2)
    x0 = net(torch.randn(4000, 4, generator=g)).detach()
    hist = train_drifting(
        net,
        lambda n: mean + torch.randn(n, 2, generator=g) @ L.T,
        Algorithm2Drift(0.5),
        n_iters=300,
        batch_size=256,
        lr=3e-3,
        generator=g,
        progress=False,
    )
    assert len(hist.loss) == len(hist.drift_rms) == 300
    # unnormalised field: the loss value is E|V|^2 = drift_rms^2
    torch.testing.assert_close(torch.tensor(hist.loss), torch.tensor(hist.drift_rms) ** 2, rtol=1e-5, atol=0)
    first, last = sum(hist.drift_rms[:20]) / 20, sum(hist.drift_rms[-20:]) / 20
    assert last < 0.4 * first
    x = hist.sample(4000, generator=g)
    err0, err = (x0.mean(0) - mean).norm(), (x.mean(0) - mean).norm()
    cerr0, cerr = (torch.cov(x0.T) - cov).norm(), (torch.cov(x.T) - cov).norm()
    assert err < 0.1 and err < 0.2 * err0
    assert cerr < 0.1 and cerr < 0.3 * cerr0


def test_train_drifting_multi_temperature_and_tensor_data():
    """Normalised multi-temperature field (official defaults), data given as a tensor."""
    from gwf_tutorial.nets import MLP

    torch.manual_seed(1)
    g = _gen(16)
    mean, cov, L = _gaussian_target()
    data = mean + torch.randn(5000, 2, generator=g) @ L.T
    net = MLP(4, 2, hidden=32, depth=2)
    x0 = net(torch.randn(4000, 4, generator=g)).detach()
    drift = MultiTemperatureDrift()
    hist = train_drifting(net, data, drift, n_iters=300, batch_size=128, lr=1e-3, generator=g, progress=False)
    assert all(math.isfinite(v) for v in hist.loss + hist.drift_rms)
    # the loss is E|V|^2 of the normalised field, not the raw drift RMS^2
    assert abs(hist.loss[-1] - hist.drift_rms[-1] ** 2) > 0.1
    x = hist.sample(4000, generator=g)
    err0, err = (x0.mean(0) - mean).norm(), (x.mean(0) - mean).norm()
    cerr0, cerr = (torch.cov(x0.T) - cov).norm(), (torch.cov(x.T) - cov).norm()
    assert err < 0.1 and err < 0.2 * err0
    assert cerr < 0.1 and cerr < 0.3 * cerr0


def test_train_drifting_objective_drift_float64():
    g = _gen(17)
    torch.manual_seed(2)
    net = nn.Linear(3, 2, dtype=F64)
    hist = train_drifting(
        net,
        lambda n: torch.full((n, 2), 2.0, dtype=F64),
        ObjectiveDrift(_MeanMatching()),
        n_iters=5,
        batch_size=8,
        latent_dim=3,
        generator=g,
        progress=False,
    )
    assert hist.sample(4).dtype == F64 and len(hist.loss) == 5


# ------------------------------------------------------------------------------------------
# dtype and bad input
# ------------------------------------------------------------------------------------------


def test_float64_preserved():
    x = torch.randn(6, 2, dtype=F64)
    y = torch.randn(5, 2, dtype=F64)
    for V in (
        paper_field(x, y),
        algorithm2_field(x, y),
        multi_temperature_field(x, y),
        gaussian_population_field(x, [0.0, 0.0], torch.eye(2), [1.0, 0.0], torch.eye(2), 1.0),
    ):
        assert V.dtype == F64 and V.shape == (6, 2)


def test_bad_inputs():
    x, y = torch.randn(6, 2), torch.randn(5, 2)
    with pytest.raises(ValueError, match="x"):
        algorithm2_field(x[:, 0], y)
    with pytest.raises(ValueError, match="dimension"):
        paper_field(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="y_neg"):
        algorithm2_field(x, y, torch.randn(4, 3))
    with pytest.raises(ValueError, match="NaN"):
        algorithm2_field(x, torch.full((5, 2), float("nan")))
    with pytest.raises(ValueError, match="temperature"):
        algorithm2_field(x, y, temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        paper_field(x, y, temperature=-1.0)
    with pytest.raises(ValueError, match="kernel"):
        paper_field(x, y, kernel="cosine")
    with pytest.raises(ValueError, match="x must hold at least 2"):
        algorithm2_field(x[:1], y)
    with pytest.raises(ValueError, match="attraction"):
        algorithm2_field(x, y, attraction=-1.0)
    with pytest.raises(ValueError, match="temperatures"):
        multi_temperature_field(x, y, temperatures=())
    with pytest.raises(ValueError, match=r"temperatures\[1\]"):
        MultiTemperatureDrift(temperatures=(0.1, 0.0))
    with pytest.raises(TypeError, match="x and y_pos"):
        algorithm2_field(x.double(), y)
    with pytest.raises(ValueError, match="Sp"):
        gaussian_population_field(x, [0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]], [0.0, 0.0], torch.eye(2), 1)
    with pytest.raises(ValueError, match="bandwidth"):
        gaussian_population_field(x, [0.0, 0.0], torch.eye(2), [0.0, 0.0], torch.eye(2), 0.0)
    with pytest.raises(ValueError, match="mq"):
        gaussian_population_field(x, [0.0, 0.0], torch.eye(2), [0.0, 0.0, 0.0], torch.eye(3), 1.0)
    with pytest.raises(ValueError, match="V must have the shape"):
        drifting_loss(x, y)
    net = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="n_iters"):
        train_drifting(net, y, Algorithm2Drift(), n_iters=0, latent_dim=3, progress=False)
    with pytest.raises(ValueError, match="data must have dimension"):
        train_drifting(
            net,
            torch.randn(9, 3),
            Algorithm2Drift(),
            n_iters=1,
            batch_size=4,
            latent_dim=3,
            progress=False,
        )
    with pytest.raises(ValueError, match="latent_dim"):
        train_drifting(net, y, Algorithm2Drift(), n_iters=1, progress=False)
    with pytest.raises(TypeError, match="drift"):
        train_drifting(net, y, "algorithm2", n_iters=1, latent_dim=3, progress=False)


# ------------------------------------------------------------------------------------------
# the Sinkhorn-proxy reading, gradient-flow structure, drifts from other objectives
# ------------------------------------------------------------------------------------------


def test_algorithm2_affinities_are_one_shot_scaling():
    """A = D_r^{-1/2} K D_c^{-1/2}; the field is (A+ S-) y+ - (A- S+) y-; marginals not uniform."""
    ot = pytest.importorskip("ot")
    g = _gen(20)
    x = torch.randn(8, 2, generator=g, dtype=F64)
    yp = torch.randn(6, 2, generator=g, dtype=F64) + 1.0
    T = 0.6
    K = torch.exp(-torch.cdist(x, torch.cat([yp, x])) / T)
    K[:, 6:] *= 1 - torch.eye(8, dtype=F64)  # self-pair masked: exp(-1e6 / T) = 0
    r, c = K.sum(1, keepdim=True), K.sum(0, keepdim=True)
    A = K / (r * c).sqrt()
    Ap, An = algorithm2_affinities(x, yp, None, T)
    assert Ap.shape == (8, 6) and An.shape == (8, 8)
    torch.testing.assert_close(torch.cat([Ap, An], 1), A, rtol=1e-12, atol=1e-15)
    Sp, Sn = Ap.sum(1, keepdim=True), An.sum(1, keepdim=True)
    torch.testing.assert_close(algorithm2_field(x, yp, None, T), (Ap * Sn) @ yp - (An * Sp) @ x)
    # a Sinkhorn plan (POT) on the same kernel has uniform marginals; A's are not even constant
    C = torch.cdist(x, torch.cat([yp, x])) / T
    C[:, 6:] += 100.0 * torch.eye(8, dtype=F64)  # the self-pair masked (finite for POT)
    a, b = torch.full((8,), 1 / 8, dtype=F64), torch.full((14,), 1 / 14, dtype=F64)
    P = ot.sinkhorn(a, b, C, 1.0, method="sinkhorn_log", stopThr=1e-12, numItermax=10_000)
    torch.testing.assert_close(P.sum(1), a, rtol=0, atol=1e-9)
    torch.testing.assert_close(P.sum(0), b, rtol=0, atol=1e-9)
    row = A.sum(1)
    assert (row.max() - row.min()) / row.mean() > 0.05


def test_jacobian_asymmetry_linear_fields():
    """V(x) = x M^T: J = I (x) M, asym = |M - M^T|_F / (2 |M|_F); 1 for a rotation, 0 symmetric."""
    x = torch.randn(5, 2, generator=_gen(21), dtype=F64)
    y = torch.zeros(3, 2, dtype=F64)
    M = torch.tensor([[0.3, -1.2], [0.5, 2.0]], dtype=F64)
    expected = ((M - M.T).norm() / (2 * M.norm())).item()
    assert jacobian_asymmetry(lambda a, b: a @ M.T, x, y) == pytest.approx(expected, rel=1e-8)
    rot = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64)
    assert jacobian_asymmetry(lambda a, b: a @ rot.T, x, y) == pytest.approx(1.0, rel=1e-8)
    assert jacobian_asymmetry(lambda a, b: a @ (M + M.T).T, x, y) < 1e-9
    # coupling between particles: V_i = sum_j x_j (a symmetric all-ones block matrix)
    assert jacobian_asymmetry(lambda a, b: a.sum(0).expand_as(a).clone(), x, y) < 1e-9
    assert jacobian_asymmetry(lambda a, b: torch.zeros_like(a), x, y) == 0.0
    with pytest.raises(ValueError, match="eps"):
        jacobian_asymmetry(lambda a, b: a, x, y, eps=0.0)
    with pytest.raises(TypeError, match="drift"):
        jacobian_asymmetry("mmd", x, y)


def test_gradient_flow_drifts_have_symmetric_jacobians_drifting_fields_do_not():
    """MMD and Sinkhorn drifts are -n grad_X F (symmetric Jacobian); the drifting fields are not."""
    functionals = pytest.importorskip("gwf_tutorial.functionals")
    g = _gen(22)
    x = torch.randn(6, 2, generator=g, dtype=F64)
    y = torch.randn(7, 2, generator=g, dtype=F64) + 0.5
    mmd = ObjectiveDrift(functionals.MMD("gaussian", bandwidth=1.0))
    sink = ObjectiveDrift(functionals.SinkhornDivergence(0.5, max_iter=5000, tol=1e-12))
    assert jacobian_asymmetry(mmd, x, y) < 1e-7  # finite-difference error only
    assert jacobian_asymmetry(sink, x, y) < 1e-6
    for drift in (Algorithm2Drift(0.5), PaperDrift(0.5), PaperDrift(0.5, "gaussian")):
        assert jacobian_asymmetry(drift, x, y) > 0.05


def test_objective_drift_noise_injection():
    """MMD with noise: V = v_rho(x + beta u), u from the drift's generator (Arbel et al. 2019)."""
    functionals = pytest.importorskip("gwf_tutorial.functionals")
    g = _gen(23)
    x = torch.randn(9, 2, generator=g, dtype=F64)
    y = torch.randn(11, 2, generator=g, dtype=F64) + 1.0
    s, beta = 0.7, 0.4
    drift = ObjectiveDrift(functionals.MMD("gaussian", bandwidth=s), 2.0, noise_level=beta, generator=_gen(5))
    V = drift(x, y)
    z = x + beta * torch.randn(9, 2, generator=_gen(5), dtype=F64)
    kzy = torch.exp(-(torch.cdist(z, y) ** 2) / (2 * s * s))
    kzx = torch.exp(-(torch.cdist(z, x) ** 2) / (2 * s * s))
    ref = (kzy @ y - kzy.sum(1, keepdim=True) * z) / 11 - (kzx @ x - kzx.sum(1, keepdim=True) * z) / 9
    torch.testing.assert_close(V, 2.0 * ref / s**2, rtol=1e-10, atol=1e-12)
    assert (V - drift(x, y)).abs().max() > 1e-3  # fresh noise at the next call
    # the generator state round-trips through state_dict
    state = drift.state_dict()
    V1 = drift(x, y)
    drift.load_state_dict(state)
    torch.testing.assert_close(drift(x, y), V1, rtol=0, atol=0)
    with pytest.raises(ValueError, match="noise_level"):
        ObjectiveDrift(functionals.MMD(), noise_level=-1.0)
    with pytest.raises(TypeError, match="generator"):
        ObjectiveDrift(functionals.MMD(), noise_level=0.1, generator=0)


def test_objective_drift_sinkhorn_is_barycentric_projection():
    """Sinkhorn drift = P y / P 1 - Q x / Q 1 with POT's entropic plans, cost |x - y|^2 / 2."""
    functionals = pytest.importorskip("gwf_tutorial.functionals")
    ot = pytest.importorskip("ot")
    g = _gen(24)
    x = torch.randn(10, 2, generator=g, dtype=F64)
    y = torch.randn(8, 2, generator=g, dtype=F64) + torch.tensor([2.0, 0.0], dtype=F64)
    eps = 0.3

    def plan(a, b):
        M = 0.5 * torch.cdist(a, b) ** 2
        wa = torch.full((a.shape[0],), 1 / a.shape[0], dtype=F64)
        wb = torch.full((b.shape[0],), 1 / b.shape[0], dtype=F64)
        return ot.sinkhorn(wa, wb, M, eps, method="sinkhorn_log", stopThr=1e-12, numItermax=10**4)

    P, Q = plan(x, y), plan(x, x)
    ref = P @ y / P.sum(1, keepdim=True) - Q @ x / Q.sum(1, keepdim=True)
    V = ObjectiveDrift(functionals.SinkhornDivergence(eps, max_iter=10**4, tol=1e-12))(x, y)
    torch.testing.assert_close(V, ref, rtol=1e-7, atol=1e-9)
    assert V[:, 0].mean() > 1.0  # it transports the cloud towards y


def test_objective_drift_sliced_in_1d_is_sorted_matching():
    """d = 1, n = m: every direction is +-1 and the SW drift is y_(rank(x_i)) - x_i."""
    functionals = pytest.importorskip("gwf_tutorial.functionals")
    g = _gen(25)
    x = torch.randn(12, 1, generator=g, dtype=F64)
    y = 3.0 + 0.5 * torch.randn(12, 1, generator=g, dtype=F64)
    rank = x[:, 0].argsort().argsort()
    ref = y[:, 0].sort().values[rank][:, None] - x
    sw = functionals.SlicedWasserstein(n_projections=7, generator=_gen(3))
    torch.testing.assert_close(ObjectiveDrift(sw)(x, y), ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------
# checkpoint / resume
# ------------------------------------------------------------------------------------------


class _Interrupted(Exception):
    pass


def _ckpt_run(make_drift, path=None, every=None, stop_after=None, seed=0, init_seed=0, n_iters=12):
    from gwf_tutorial.nets import MLP

    torch.manual_seed(init_seed)
    net = MLP(3, 2, hidden=8, depth=1, dtype=F64)
    g = _gen(seed)
    calls = [0]

    def data(n):  # one draw per step; with stop_after, a crash inside step stop_after + 1
        calls[0] += 1
        if stop_after is not None and calls[0] > stop_after:
            raise _Interrupted
        return torch.randn(n, 2, generator=g, dtype=F64) + 1.0

    hist = train_drifting(
        net,
        data,
        make_drift(),
        n_iters=n_iters,
        batch_size=10,
        lr=1e-2,
        generator=g,
        progress=False,
        checkpoint=path,
        checkpoint_every=every,
    )
    return hist, net


@pytest.mark.parametrize(
    "make_drift",
    [
        lambda: Algorithm2Drift(0.5),
        lambda: CriticDrift(n_iters=2, hidden=8, depth=1),  # critic + its Adam state
    ],
    ids=["algorithm2", "critic"],
)
def test_checkpoint_resume_equals_uninterrupted_run(make_drift, tmp_path):
    ref, ref_net = _ckpt_run(make_drift)
    path = tmp_path / "drift.pt"
    with pytest.raises(_Interrupted):
        _ckpt_run(make_drift, path, every=4, stop_after=9)  # crash during step 10 (index 9)
    # resume with a differently initialised net and a differently seeded generator: both restored
    hist, net = _ckpt_run(make_drift, path, every=4, seed=99, init_seed=7)
    assert hist.resumed_from == 8  # the last interval (step 9) was lost and redone
    assert hist.loss == ref.loss and hist.drift_rms == ref.drift_rms  # bitwise
    for p, q in zip(net.parameters(), ref_net.parameters(), strict=True):
        assert torch.equal(p, q)
    # a finished checkpoint: nothing left to do, the history comes back whole
    again, net2 = _ckpt_run(make_drift, path, every=4, init_seed=3)
    assert again.resumed_from == 12 and again.loss == ref.loss
    assert all(torch.equal(p, q) for p, q in zip(net2.parameters(), ref_net.parameters()))


def test_checkpoint_extends_a_run_and_restores_noise_generators(tmp_path):
    """Resuming with a larger n_iters continues the same random streams (noisy MMD drift)."""
    functionals = pytest.importorskip("gwf_tutorial.functionals")

    def make():
        return ObjectiveDrift(functionals.MMD("gaussian", 1.0), noise_level=0.3, generator=_gen(8))

    ref, ref_net = _ckpt_run(make, n_iters=10)
    path = tmp_path / "c.pt"
    _ckpt_run(make, path, every=3, n_iters=6)
    hist, net = _ckpt_run(make, path, every=3, n_iters=10, seed=5)
    assert hist.resumed_from == 6 and hist.loss == ref.loss
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), ref_net.parameters()))


def test_checkpoint_bad_arguments(tmp_path):
    net = nn.Linear(3, 2)
    y = torch.randn(9, 2)
    kw = dict(n_iters=2, batch_size=4, latent_dim=3, progress=False)
    with pytest.raises(ValueError, match="checkpoint_every was given without checkpoint"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint_every=5, **kw)
    with pytest.raises(ValueError, match="checkpoint_every"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=tmp_path / "a.pt", checkpoint_every=0, **kw)
    with pytest.raises(TypeError, match="checkpoint_every"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=tmp_path / "a.pt", checkpoint_every=2.5, **kw)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=3, **kw)
    with pytest.raises(ValueError, match="does not exist"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=tmp_path / "no" / "a.pt", **kw)
    with pytest.raises(ValueError, match="directory"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=tmp_path, **kw)
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt' is not a gwf_tutorial checkpoint"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=bad, **kw)
    other = tmp_path / "other.pt"
    torch.save({"step": 1}, other)
    with pytest.raises(ValueError, match="other.pt' is not a gwf_tutorial checkpoint"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=other, **kw)
    train.save_checkpoint(other, {"step": 1}, kind="jko.ParametricJKO", config={})
    with pytest.raises(ValueError, match="written by jko.ParametricJKO, not by drifting.train_drifting"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=other, **kw)
    good = tmp_path / "good.pt"
    train_drifting(net, y, Algorithm2Drift(), checkpoint=good, checkpoint_every=1, **kw)
    assert good.exists() and not (tmp_path / "good.pt.tmp").exists()
    # a damaged file or other hyperparameters (the drift's included): refused, naming the file, kept
    def resume(p):
        return train_drifting(net, y, Algorithm2Drift(), checkpoint=p, **kw)

    assert_damaged_checkpoints_refused(good, resume)
    with pytest.raises(ValueError, match="batch_size: 4 in the checkpoint, 5 now"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=good, **{**kw, "batch_size": 5})
    with pytest.raises(ValueError, match="drift: .*'temperature': 0.05.* in the checkpoint, .*0.1"):
        train_drifting(net, y, Algorithm2Drift(temperature=0.1), checkpoint=good, **kw)
    with pytest.raises(ValueError, match="'type': 'Algorithm2Drift'.* in the checkpoint, .*'PaperDrift'"):
        train_drifting(net, y, PaperDrift(), checkpoint=good, **kw)
    with pytest.raises(ValueError, match="past n_iters=1"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=good, **{**kw, "n_iters": 1})
    with pytest.raises(ValueError, match="does not fit"):
        train_drifting(nn.Linear(3, 2, bias=False), y, Algorithm2Drift(), checkpoint=good, **kw)
    with pytest.raises(ValueError, match="generator"):
        train_drifting(net, y, Algorithm2Drift(), checkpoint=good, generator=_gen(0), **kw)


def test_progress_bar_shows_raw_drift(monkeypatch):
    """The bar's postfix carries the raw drift RMS (not the flat normalised loss)."""
    import gwf_tutorial.train as train_mod

    shown = []

    class _Bar:
        def __init__(self, iterable, **kwargs):
            self.iterable, self.kwargs = iterable, kwargs

        def __iter__(self):
            return iter(self.iterable)

        def set_postfix(self, **kw):
            shown.append(kw)

    monkeypatch.setattr(train_mod, "progress", lambda it, **kw: _Bar(it, **kw))  # the Trainer's bar
    torch.manual_seed(0)
    g = _gen(26)
    hist = train_drifting(
        nn.Linear(3, 2),
        torch.randn(50, 2, generator=g) + 2.0,
        MultiTemperatureDrift(affinity_floor=0.0),
        n_iters=40,
        batch_size=16,
        latent_dim=3,
        generator=g,
    )
    assert shown and all("drift_rms" in kw and "loss" in kw for kw in shown)
    assert shown[0]["drift_rms"] == f"{hist.drift_rms[0]:.3g}"
    assert shown[-1]["drift_rms"] == f"{hist.drift_rms[-1]:.3g}"
    assert shown[0]["drift_rms"] != shown[0]["loss"]


# ------------------------------------------------------------------------------------------
# extreme values: refused in float32, scale equivariant in float64
# ------------------------------------------------------------------------------------------


def test_fields_refuse_float32_overflow_and_are_scale_equivariant():
    """V(s x, s y; s T) = s V(x, y; T) for the kernel fields (the self-pair mask is relative to the
    temperature), V(s x, s y) = s V(x, y) for the normalised multi-temperature field; at s = 1e30 in
    float32 the squared distances overflow, so the fields refuse the input, naming it."""
    g = _gen(0)
    x, y = torch.randn(30, 2, generator=g, dtype=F64), torch.randn(20, 2, generator=g, dtype=F64) + 1
    s = 1e30
    for fn in (paper_field, algorithm2_field):
        torch.testing.assert_close(fn(s * x, s * y, temperature=0.1 * s), s * fn(x, y, temperature=0.1),
                                   rtol=1e-12, atol=1e-14 * s)  # fmt: skip
        with pytest.raises(ValueError, match=r"^x holds values up to .*, too large for torch.float32"):
            fn((s * x).float(), y.float())
        with pytest.raises(ValueError, match=r"^y(_pos)? holds values"):
            fn(x.float(), (s * y).float())
    a_big = algorithm2_affinities(s * x, s * y, temperature=0.1 * s)
    for a, b in zip(a_big, algorithm2_affinities(x, y, temperature=0.1)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    mt = multi_temperature_field
    torch.testing.assert_close(mt(s * x, s * y), s * mt(x, y), rtol=1e-7, atol=1e-10 * s)
    raw_big = mt(s * x, s * y, temperatures=(0.05 * s, 0.2 * s), normalize=False)
    raw = mt(x, y, temperatures=(0.05, 0.2), normalize=False)
    torch.testing.assert_close(raw_big, s * raw, rtol=1e-12, atol=1e-14 * s)


def test_gaussian_population_field_of_a_degenerate_law_vanishes_on_its_support_only():
    # rho = N(0, diag(1, 0)) against nu = N(0, I): V(x) = s^2 [(s^2 I + S_rho)^{-1} - (s^2 I + I)^{-1}] x
    s, eye = 0.5, torch.eye(2, dtype=F64)
    flat = torch.diag(torch.tensor([1.0, 0.0], dtype=F64))
    zero = torch.zeros(2, dtype=F64)
    x_on = torch.tensor([[-1.0, 0.0], [0.3, 0.0], [2.0, 0.0]], dtype=F64)
    assert gaussian_population_field(x_on, zero, eye, zero, flat, s).abs().max() < 1e-15
    x_off = x_on + torch.tensor([0.0, 1.0], dtype=F64)
    expected = s**2 * (1 / s**2 - 1 / (s**2 + 1))  # the second coordinate at distance 1 off the support
    torch.testing.assert_close(gaussian_population_field(x_off, zero, eye, zero, flat, s)[:, 1],
                               torch.full((3,), expected, dtype=F64))
