r"""Fenchel-Young: :math:`f(t) + f^*(s) \ge s t`, with equality iff :math:`s \in \partial f(t)`.

For :math:`t > 0`, where every :math:`f` of the catalogue is differentiable and strictly convex, the
subdifferential is :math:`\{f'(t)\}`. At the boundary :math:`t = 0` of the domain it can be a half-line
(Pearson :math:`\chi^2`: :math:`\partial f(0) = (-\infty, -2]`, so equality holds for every such
:math:`s`, not only :math:`s = f'(0) = -2`) or empty (KL: :math:`f'(0^+) = -\infty`, no equality at all).
Chapter 4's eq-fdf-fenchel-young uses the interior case.
"""

import pytest
import torch

from gwf_tutorial.fdiv import FDIVERGENCES

f64 = torch.float64


def _gap(d, t, s):
    return d.f(t) + d.conjugate(s) - s * t


@pytest.mark.parametrize("name", [n for n in FDIVERGENCES if n != "kl_dv"])
def test_equality_exactly_at_the_derivative_for_t_positive(name):
    d = FDIVERGENCES[name]
    t = torch.tensor([0.2, 0.7, 1.0, 1.5, 3.0], dtype=f64)
    s = d.f_prime(t)
    assert torch.allclose(_gap(d, t, s), torch.zeros_like(t), atol=1e-10)
    for ds in (-0.05, 0.05):  # any other s: strict inequality (f strictly convex)
        shifted = s + ds
        inside = shifted < d.domain_upper
        assert bool((_gap(d, t[inside], shifted[inside]) > 1e-6).all())


def test_chi2_equality_on_the_whole_subdifferential_at_zero():
    d = FDIVERGENCES["chi2"]
    zero = torch.zeros(1, dtype=f64)
    s_in = torch.tensor([-2.0, -2.5, -5.0, -40.0], dtype=f64)  # in (-inf, -2] = subdifferential at t = 0
    assert torch.allclose(_gap(d, zero, s_in), torch.zeros_like(s_in), atol=1e-12)
    s_out = torch.tensor([-1.9, -1.0, 0.5], dtype=f64)
    assert bool((_gap(d, zero, s_out) > 1e-3).all())


def test_kl_no_equality_at_zero():
    d = FDIVERGENCES["kl"]
    s = torch.linspace(-30, 5, 71, dtype=f64)
    assert bool((_gap(d, torch.zeros(1, dtype=f64), s) > 0).all())  # empty subdifferential at t = 0
