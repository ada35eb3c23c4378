"""The continuity and Fokker-Planck equations of chapter 2 beyond the Gaussian case, on 1-D grids.

- eq-gf-continuity and its weak form eq-gf-continuity-weak: a two-bump density transported by the
  nonlinear field v(x) = -x + 0.8 sin 2x, solved on a grid (central differences, RK4), against particles
  moved along v (RK4) carrying the grid's mass;
- eq-gf-fokker-planck and the dissipation identity eq-gf-dissipation for the double well
  nu ~ exp(-(x^2 - 1)^2): a finite-volume solution against 20 000 chains of ``flows.langevin``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from gwf_tutorial import flows, train


def _bump(z, mean, sd):
    return np.exp(-((z - mean) ** 2) / (2 * sd * sd)) / (sd * math.sqrt(2 * math.pi))


def _rk4(rhs, y, dt):
    k1 = rhs(y)
    k2 = rhs(y + dt / 2 * k1)
    k3 = rhs(y + dt / 2 * k2)
    return y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + rhs(y + dt * k3))


def _v_nonlinear(z):
    return -z + 0.8 * np.sin(2 * z)


TESTS_PHI = [(lambda z: z, lambda z: np.ones_like(z)), (lambda z: z**2, lambda z: 2 * z),
             (np.cos, lambda z: -np.sin(z)), (np.tanh, lambda z: 1 / np.cosh(z) ** 2)]  # (phi, phi')


def test_particles_along_a_nonlinear_field_follow_the_continuity_equation_and_its_weak_form():
    x = np.linspace(-5, 5, 4001)
    dx = x[1] - x[0]
    rho = 0.6 * _bump(x, -1.0, 0.3) + 0.4 * _bump(x, 1.2, 0.5)
    weights = rho * dx  # particles = grid points carrying the mass of rho_0
    particles, dt, moments = x.copy(), 5e-4, []
    for step in range(2001):
        moments.append([(rho * phi(x)).sum() * dx for phi, _ in TESTS_PHI])
        if step == 1000:  # t = 1/2: the right side of eq-gf-continuity-weak, from the particles
            v_particles = _v_nonlinear(particles)
            flux = np.array([(weights * dphi(particles) * v_particles).sum() for _, dphi in TESTS_PHI])
        if step < 2000:
            particles = _rk4(_v_nonlinear, particles, dt)
            rho = _rk4(lambda r: -np.gradient(r * _v_nonlinear(x), dx), rho, dt)  # eq-gf-continuity
    moments = np.array(moments)
    moments_particles = np.array([(weights * phi(particles)).sum() for phi, _ in TESTS_PHI])
    assert np.abs(moments_particles - moments[-1]).max() < 1e-6  # law of the particles = solution of the PDE
    assert np.abs(moments[-1] - moments[0]).max() > 0.1  # and the law did move
    d_dt = (moments[1001] - moments[999]) / (2 * dt)  # time derivative of the grid moments at t = 1/2
    assert np.abs(d_dt - flux).max() < 1e-6  # eq-gf-continuity-weak


def test_fokker_planck_of_a_double_well_against_langevin_chains_and_the_dissipation_identity():
    x = np.linspace(-3, 3, 601)
    dx, faces = x[1] - x[0], 0.5 * (x[1:] + x[:-1])
    grad_u = lambda z: 4 * z * (z**2 - 1)  # noqa: E731  U(z) = (z^2 - 1)^2
    nu = np.exp(-((x**2 - 1) ** 2))
    nu /= nu.sum() * dx

    def rhs(r):  # d rho/dt = -dJ/dx with J = -rho U' - d rho/dx, zero flux at both ends
        flux = -0.5 * (r[1:] + r[:-1]) * grad_u(faces) - np.diff(r) / dx
        return -np.diff(np.concatenate([[0.0], flux, [0.0]])) / dx

    def kl(r):
        return float((r * np.log(np.maximum(r, 1e-300) / nu)).sum() * dx)

    rho, dt, t_end = _bump(x, 0.5, 0.4), 2e-5, 0.5
    n, kl_around = round(t_end / dt), []
    for step in range(n):
        if step in (n // 2 - 1, n // 2 + 1):
            kl_around.append(kl(rho))
        if step == n // 2:  # relative Fisher information at t = 0.25
            fisher = float((rho * np.gradient(np.log(np.maximum(rho, 1e-300) / nu), dx) ** 2).sum() * dx)
        rho = _rk4(rhs, rho, dt)
    dkl = (kl_around[1] - kl_around[0]) / (2 * dt)
    assert abs(rho.sum() * dx - 1) < 1e-8 and abs(dkl + fisher) < 1e-4 * fisher  # eq-gf-dissipation
    assert f"{dkl:.3f} {-fisher:.3f}" == "-0.590 -0.590"  # the numbers quoted in chapter 2

    g = train.make_generator(5)
    eta = 1e-3
    x0 = 0.5 + 0.4 * torch.randn(20_000, 1, generator=g, dtype=torch.float64)
    chains = flows.langevin(x0, lambda z: -grad_u(z), step_size=eta, n_steps=round(t_end / eta), generator=g,
                            progress=False).x[:, 0].numpy()  # fmt: skip
    for phi in (lambda z: z, lambda z: z**2, lambda z: (z > 0).astype(float)):
        values = phi(chains)
        se = values.std() / math.sqrt(len(values))
        assert abs(values.mean() - (rho * phi(x)).sum() * dx) < 4 * se + 5 * eta  # eq-gf-fokker-planck
