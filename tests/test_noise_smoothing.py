r"""The noise-smoothing identity behind noise injection (chapter 3, eq-pf-noise), checked by quadrature.

For the Gaussian kernel :math:`k_s(x, y) = e^{-|x-y|^2/2s^2}` and :math:`u \sim N(0, I_d)`,

.. math::

    \mathbb E_u\, k_s(z + \beta u, y) = c\, k_{s'}(z, y), \qquad
    s'^2 = s^2 + \beta^2, \quad c = (s^2 / s'^2)^{d/2},

(a Gaussian convolved with a Gaussian), hence, differentiating in :math:`z`,
:math:`\mathbb E_u \nabla_1 k_s(z + \beta u, y) = c\, \nabla_1 k_{s'}(z, y)
= (s^2/s'^2)^{d/2 + 1}\, \frac{y - z}{s^2}\, e^{-|z-y|^2/2s'^2}`: the force of the smoothed kernel
reaches further (bandwidth :math:`s'`) and is weaker by the factor with exponent :math:`d/2 + 1`.
The MMD velocity is linear in the kernel, so the velocity evaluated at noisy points is, on average,
the velocity of the kernel :math:`c\, k_{s'}`.
"""

import math

import numpy as np
import pytest
import torch

from gwf_tutorial import functionals
from gwf_tutorial.kernels import GaussianKernel

f64 = torch.float64


def _gauss_hermite(d: int, n_nodes: int = 100):
    """Nodes (N, d) and weights (N,) of a tensor Gauss-Hermite rule for expectations under N(0, I_d)."""
    t, w = np.polynomial.hermite_e.hermegauss(n_nodes)  # weight exp(-t^2 / 2)
    w = w / math.sqrt(2 * math.pi)
    grids = np.meshgrid(*[t] * d, indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    weights = np.prod(np.meshgrid(*[w] * d, indexing="ij"), axis=0).ravel()
    return torch.tensor(nodes, dtype=f64), torch.tensor(weights, dtype=f64)


def _points(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, d, generator=g, dtype=f64), torch.randn(7, d, generator=g, dtype=f64) + 0.3


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("s, beta", [(0.5, 0.3), (0.3, 0.6), (1.0, 1.0)])
def test_smoothed_gaussian_kernel_and_force(d, s, beta):
    u, w = _gauss_hermite(d)
    z, y = _points(d)
    s2 = math.sqrt(s * s + beta * beta)
    c = (s * s / (s2 * s2)) ** (d / 2)
    k, k_smooth = GaussianKernel(s), GaussianKernel(s2)

    noisy = z[:, None, :] + beta * u[None, :, :]  # (n, N, d)
    gram = torch.stack([k(noisy[i], y) for i in range(len(z))])  # (n, N, m)
    assert torch.allclose(torch.einsum("q,iqj->ij", w, gram), c * k_smooth(z, y), atol=1e-12)

    force = torch.stack([k.mean_grad(noisy[i], y) for i in range(len(z))])  # (n, N, d)
    expected = c * k_smooth.mean_grad(z, y)
    assert torch.allclose(torch.einsum("q,iqd->id", w, force), expected, atol=1e-12)
    # the same in the "unsmoothed force" form: exponent d/2 + 1 on s^2 / s'^2
    diff = y[None, :, :] - z[:, None, :]
    bump = torch.exp(-(diff**2).sum(-1, keepdim=True) / (2 * s2**2))
    closed = (s * s / s2**2) ** (d / 2 + 1) * diff / s**2 * bump
    assert torch.allclose(expected, closed.mean(1), atol=1e-12)


def test_mmd_velocity_at_noisy_points_is_the_smoothed_velocity():
    d, s, beta = 2, 0.4, 0.5
    u, w = _gauss_hermite(d)
    x, y = _points(d, seed=1)
    z = torch.tensor([[0.2, -0.1], [1.0, 0.5], [-1.5, 2.0]], dtype=f64)
    s2 = math.sqrt(s * s + beta * beta)
    c = (s * s / (s2 * s2)) ** (d / 2)
    noisy_v = torch.stack([functionals.MMD(GaussianKernel(s)).velocity(x, y, at=zi + beta * u) for zi in z])
    averaged = torch.einsum("q,iqd->id", w, noisy_v)
    smoothed = c * functionals.MMD(GaussianKernel(s2)).velocity(x, y, at=z)
    assert torch.allclose(averaged, smoothed, atol=1e-12)
    assert float(smoothed.norm()) > 1e-3  # not a vacuous comparison
