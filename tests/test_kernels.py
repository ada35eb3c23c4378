"""Tests of gwf_tutorial.kernels: Gram matrices and gradients against explicit formulas."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist

from gwf_tutorial import kernels as K
from gwf_tutorial.kernels import (
    EnergyKernel,
    GaussianKernel,
    IMQKernel,
    LaplaceKernel,
    MultiBandwidthKernel,
    get_kernel,
    median_bandwidth,
    squared_distances,
)


def _data(n=7, m=9, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(m, d, generator=g, dtype=torch.float64) + 0.5
    return x, y


def _numpy_gram(name, x, y, s=None, beta=-0.5, r=1.0):
    D = cdist(x.numpy(), y.numpy())
    if name == "gaussian":
        return np.exp(-(D**2) / (2 * s * s))
    if name == "imq":
        return (1 + D**2 / s**2) ** beta
    if name == "laplace":
        return np.exp(-D / s)
    if name == "energy":
        return -(D**r)
    raise AssertionError(name)


KERNELS = [
    ("gaussian", GaussianKernel(0.7), dict(s=0.7)),
    ("imq", IMQKernel(0.7, beta=-1.5), dict(s=0.7, beta=-1.5)),
    ("laplace", LaplaceKernel(0.7), dict(s=0.7)),
    ("energy", EnergyKernel(), dict()),
    ("energy", EnergyKernel(1.5), dict(r=1.5)),
]


@pytest.mark.parametrize("name,kernel,params", KERNELS)
def test_gram_matches_explicit_formula(name, kernel, params):
    x, y = _data()
    G = kernel(x, y)
    assert G.shape == (7, 9) and G.dtype == torch.float64
    np.testing.assert_allclose(G.numpy(), _numpy_gram(name, x, y, **params), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,kernel,params", KERNELS)
def test_mean_grad_matches_autograd(name, kernel, params):
    x, y = _data()
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(kernel(xr, y).sum(), xr)
    # mean_grad averages over the 9 columns; autograd of the sum gives 9 times that
    torch.testing.assert_close(kernel.mean_grad(x, y), g / 9, rtol=1e-10, atol=1e-12)
    # weights: grad_1 k(x_i, y_j) = G_ij (x_i - y_j), check one entry by finite differences
    G = kernel._resolve(x, y)._grad_weights(x, y)
    eps = 1e-6
    e = torch.zeros(3, dtype=torch.float64)
    e[1] = eps
    fd = (kernel(x[2:3] + e, y[4:5]) - kernel(x[2:3] - e, y[4:5])) / (2 * eps)
    assert float(G[2, 4] * (x[2, 1] - y[4, 1])) == pytest.approx(float(fd), rel=1e-6, abs=1e-9)


def test_multi_bandwidth_is_mean_or_sum_of_base_kernels():
    x, y = _data()
    bws = [0.3, 1.0, 2.5]
    mean_k = MultiBandwidthKernel("gaussian", bws)
    sum_k = MultiBandwidthKernel("laplace", bws, reduction="sum")
    expected_mean = sum(_numpy_gram("gaussian", x, y, s=b) for b in bws) / 3
    expected_sum = sum(_numpy_gram("laplace", x, y, s=b) for b in bws)
    np.testing.assert_allclose(mean_k(x, y).numpy(), expected_mean, rtol=1e-12)
    np.testing.assert_allclose(sum_k(x, y).numpy(), expected_sum, rtol=1e-12)
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(mean_k(xr, y).sum(), xr)
    torch.testing.assert_close(mean_k.mean_grad(x, y), g / 9, rtol=1e-10, atol=1e-12)
    # default: factors x median heuristic at call time
    med = median_bandwidth(x, y)
    auto = MultiBandwidthKernel("gaussian", factors=(0.5, 2.0))
    expected = (
        _numpy_gram("gaussian", x, y, s=0.5 * med) + _numpy_gram("gaussian", x, y, s=2 * med)
    ) / 2
    np.testing.assert_allclose(auto(x, y).numpy(), expected, rtol=1e-12)


def test_median_bandwidth_matches_numpy_and_is_used_when_none():
    x, y = _data(n=10, m=13)
    pooled = np.concatenate([x.numpy(), y.numpy()])
    med = median_bandwidth(x, y)
    assert med == pytest.approx(np.median(pdist(pooled)), rel=1e-12)
    assert median_bandwidth(x) == pytest.approx(np.median(pdist(x.numpy())), rel=1e-12)
    np.testing.assert_allclose(
        GaussianKernel(None)(x, y).numpy(), _numpy_gram("gaussian", x, y, s=med), rtol=1e-12
    )
    # the heuristic is not differentiated: gradient equals that of the fixed-bandwidth kernel
    xr = x.clone().requires_grad_(True)
    (g_none,) = torch.autograd.grad(IMQKernel(None)(xr, y).sum(), xr)
    (g_fix,) = torch.autograd.grad(IMQKernel(med)(xr, y).sum(), xr)
    torch.testing.assert_close(g_none, g_fix)
    # large samples: an evenly spaced subsample of max_points rows
    big = torch.randn(50, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    idx = np.round(np.linspace(0, 49, 20)).astype(int)
    assert median_bandwidth(big, max_points=20) == pytest.approx(
        np.median(pdist(big.numpy()[idx])), rel=1e-12
    )


def test_energy_kernel_has_finite_gradient_at_coincident_points():
    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    for kernel in (EnergyKernel(), EnergyKernel(0.5), LaplaceKernel(1.0)):
        xr = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(kernel(xr, xr).sum(), xr)
        assert torch.isfinite(g).all()
        assert torch.isfinite(kernel.mean_grad(x, x)).all()
    # the coincident pair contributes nothing: only the third point pulls (energy, r = 1)
    mg = EnergyKernel().mean_grad(x, x)
    u = (x[0] - x[2]) / (x[0] - x[2]).norm()
    torch.testing.assert_close(mg[0], -u / 3)


def test_squared_distances_two_paths_agree(monkeypatch):
    x, y = _data(n=20, m=30, d=4)
    exact = squared_distances(x, y)
    np.testing.assert_allclose(exact.numpy(), cdist(x.numpy(), y.numpy()) ** 2, rtol=1e-12)
    monkeypatch.setattr(K, "_DIFF_MAX_ELEMENTS", 0)
    torch.testing.assert_close(squared_distances(x, y), exact, rtol=1e-10, atol=1e-12)


def test_dtype_is_preserved():
    x, y = _data()
    assert GaussianKernel(1.0)(x.float(), y.float()).dtype == torch.float32
    assert EnergyKernel()(x, y).dtype == torch.float64


def test_get_kernel_names_and_instances():
    assert isinstance(get_kernel("gaussian"), GaussianKernel)
    assert isinstance(get_kernel("RBF", 1.0), GaussianKernel)
    assert isinstance(get_kernel("imq", 2.0, beta=-1.0), IMQKernel)
    assert isinstance(get_kernel("laplace"), LaplaceKernel)
    assert get_kernel("riesz", exponent=1.5).exponent == 1.5
    multi = get_kernel("gaussian", [0.5, 1.0])
    assert isinstance(multi, MultiBandwidthKernel) and multi.bandwidths == (0.5, 1.0)
    assert isinstance(get_kernel("multi"), MultiBandwidthKernel)
    k = LaplaceKernel(0.3)
    assert get_kernel(k) is k
    assert get_kernel("gaussian", 0.4).bandwidth == 0.4


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: GaussianKernel(-1.0), ValueError, "bandwidth"),
        (lambda: GaussianKernel(float("nan")), ValueError, "bandwidth"),
        (lambda: IMQKernel(1.0, beta=0.5), ValueError, "beta"),
        (lambda: EnergyKernel(2.0), ValueError, "exponent"),
        (lambda: get_kernel("energy", 1.0), ValueError, "bandwidth"),
        (lambda: get_kernel("cosine"), ValueError, "unknown kernel"),
        (lambda: get_kernel(GaussianKernel(1.0), 2.0), TypeError, "bandwidth"),
        (lambda: MultiBandwidthKernel("energy"), ValueError, "base"),
        (lambda: MultiBandwidthKernel("gaussian", [1.0, 0.0]), ValueError, "bandwidths"),
    ],
)
def test_bad_arguments_raise(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_bad_samples_raise():
    x, y = _data()
    k = GaussianKernel(1.0)
    with pytest.raises(ValueError, match="same dimension"):
        k(x, y[:, :2])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        k(bad, y)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        k(x[0], y)
    with pytest.raises(ValueError, match="coincide"):
        median_bandwidth(torch.zeros(4, 2))
