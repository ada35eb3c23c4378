r"""Every method of the book as one named function: an objective, a discretization, a parametrization.

Each function picks an objective :math:`F`, a discretization of the flow (explicit Euler, the JKO step
:math:`\rho_{k+1} = \arg\min_\rho F(\rho) + W_2^2(\rho, \rho_k)/2\tau`, its semi-dual, or the GAN switch
:math:`\tau = \infty`) and a parametrization (particles, maps, one generator), and is named as its paper names
it; :data:`METHODS` is the method map. Shared arguments: ``x0`` (n, d) particles or latents; ``y`` (m, d)
target samples; ``score`` :math:`\nabla\log\nu`; ``step_size``, ``n_steps``; ``n_iters`` optimiser steps per
JKO step, ``n_phases`` JKO steps; ``critic_iters``, ``first_critic_iters``; ``lr``, ``lr_critic``; ``hidden``
the critic's width; ``generator``, ``seed``, ``progress``. Defaults suit 2-D data on the unit scale. Particle
methods return the particles (n, d), trained methods an object with ``sample(n, generator)`` or ``push(z)``.
Used in: ``benchmark.run`` (chapter 11) through :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gwf_tutorial import critics, fflows, flows, functionals, jko, kernels, nets
from gwf_tutorial import drifting as _drifting
from gwf_tutorial import sjko as _sjko
from gwf_tutorial._validation import check_int, check_samples

__all__ = ["FAMILIES", "Method", "METHODS", "display_name", "sliced_wasserstein_flow", "mmd_flow",
    "sinkhorn_flow", "kl_flow", "langevin", "f_flow", "vgrow", "ept", "monoflow", "dgflow", "gwf", "vwgf",
    "jko_icnn", "gan", "fgan", "wgan_gp", "mmd_gan", "gmmn", "sjko", "drifting", "DRIFT_FIELDS"]

#: Method families, in the order of the book.
FAMILIES = ("particle", "f-flow", "jko", "gan", "s-jko", "drifting")

#: MMD bandwidths of the JKO and GMMN objectives, as multiples of the median heuristic.
_MMD_BANDWIDTHS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def _flow(x0, objective, y, step_size, n_steps, *, noise_level=0.0, generator=None, progress=False) -> Tensor:
    return flows.particle_flow(x0, objective, y, step_size, n_steps, noise_level=noise_level,
        track_value=False, record_every=n_steps, generator=generator, progress=progress).x


def _identity_map(d: int) -> nn.Module:
    """``x + ResMLP(x)`` with 64 units and 2 blocks, the identity at initialisation."""
    return nets.ResidualMLP(d, hidden=64, n_blocks=2, zero_init_last=True)


def _gaussian_source(d: int) -> Callable:
    """The source :math:`\\mu_0 = \\mathcal N(0, I_d)` as a sampler ``(n, generator) -> (n, d)``."""
    return lambda n, generator=None: torch.randn(n, d, generator=generator)


def _mmd(y: Tensor, bandwidths=_MMD_BANDWIDTHS) -> jko.UnbiasedMMD:
    """MMD^2 U-statistic, Gaussian kernels at ``bandwidths`` x the median distance of ``y[:1000]``."""
    med = kernels.median_bandwidth(y[:1000])
    return jko.UnbiasedMMD("gaussian", [f * med for f in bandwidths])


def _objective(objective, y: Tensor, generator):
    """The book's instance of an objective name that needs settings; other values pass through."""
    if objective == "mmd":
        return _mmd(y)
    if objective == "sinkhorn":
        return functionals.SinkhornDivergence(0.1, max_iter=30, tol=1e-3)
    if objective == "sliced_wasserstein":
        return functionals.SlicedWasserstein(100, generator=generator)
    return objective


def _chain(y, objective, tau, n_phases, *, map_net=None, seed=0, progress=False,
           **options) -> jko.ParametricJKO:
    """A parametric JKO chain (``tau=None``: the GAN switch) from N(0, I), run for ``n_phases`` steps."""
    options = dict(batch_size=256, lr=1e-3, lr_critic=1e-3, critic_hidden=64, critic_depth=2) | options
    y = check_samples(y, "y", min_n=2)
    d = y.shape[1]
    map_net = _identity_map(d) if map_net is None else map_net
    chain = jko.ParametricJKO(
        map_net, objective, tau, _gaussian_source(d), y, seed=seed, progress=progress, **options)
    chain.run(n_phases)
    return chain


def sliced_wasserstein_flow(x0, y, *, step_size=1.0, n_steps=150, n_directions=100, generator=None,
                            progress=False) -> Tensor:
    r"""Sliced-Wasserstein particle flow: :math:`x \leftarrow x - \eta\nabla_x \tfrac12 SW_2^2(\rho, \nu)`.

    Objective: :math:`\frac12 SW_2^2`, ``n_directions`` fresh directions per step; discretization: explicit
    Euler; parametrization: particles. References: Liutkus et al., "Sliced-Wasserstein flows", ICML 2019.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    sw = functionals.SlicedWasserstein(n_directions, generator=generator)
    return _flow(x0, sw, y, step_size, n_steps, generator=generator, progress=progress)


def mmd_flow(x0, y, *, kernel="gaussian", bandwidth=None, step_size=3.0, final_step_size=None, n_steps=200,
             noise_level=0.5, generator=None, progress=False) -> Tensor:
    r"""MMD particle flow with noise injection: :math:`x \leftarrow x + \eta_k v(x + \beta_k \xi)`.

    Objective: :math:`\frac12\mathrm{MMD}_k^2(\rho, \nu)` (``"gaussian"``, median-heuristic bandwidth by
    default, or ``"energy"`` :math:`k = -|x - y|`); discretization: explicit Euler, :math:`\eta_k` geometric
    from ``step_size`` to ``final_step_size``, noise :math:`\beta_k = \beta\max(0, 1 - 2k/K)`;
    parametrization: particles. References: Arbel, Korba, Salim, Gretton, NeurIPS 2019.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    if bandwidth is None and kernel == "gaussian":
        bandwidth = kernels.median_bandwidth(y)
    mmd = functionals.MMD(kernel) if bandwidth is None else functionals.MMD(kernel, bandwidth)
    h = step_size
    if final_step_size is not None:
        last = max(1, n_steps - 1)
        h = lambda i: step_size * (final_step_size / step_size) ** (i / last)  # noqa: E731
    noise = 0.0
    if noise_level:
        noise = lambda i: noise_level * max(0.0, 1 - 2 * i / n_steps)  # noqa: E731
    return _flow(x0, mmd, y, h, n_steps, noise_level=noise, generator=generator, progress=progress)


def sinkhorn_flow(x0, y, *, epsilon=0.05, max_iter=20, step_size=1.0, n_steps=12, generator=None,
                  progress=False) -> Tensor:
    r"""Sinkhorn-divergence particle flow: :math:`x \leftarrow x - \eta\nabla_x S_\varepsilon(\rho, \nu)`.

    Objective: the debiased :math:`S_\varepsilon` (``max_iter`` warm-started Sinkhorn iterations per step);
    discretization: explicit Euler; parametrization: particles. References: Feydy et al., AISTATS 2019.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    obj = functionals.SinkhornDivergence(epsilon, max_iter=max_iter, tol=1e-6, warm_start=True)
    return _flow(x0, obj, y, step_size, n_steps, generator=generator, progress=progress)


def kl_flow(x0, score, step_size, *, n_steps=80, generator=None, progress=False) -> Tensor:
    r"""KL particle flow, blob velocity: :math:`v = \nabla\log\nu - \nabla\log(\rho * K)`.

    Objective: :math:`\mathrm{KL}(\rho\,\|\,\nu)` with the target's score; discretization: explicit Euler;
    parametrization: particles (Silverman KDE bandwidth). References: Carrillo, Craig, Patacchini, "A blob
    method for diffusion", Calc. Var. PDE 2019.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return _flow(x0, functionals.KL(score), None, step_size, n_steps, generator=generator, progress=progress)


def langevin(x0, score, step_size, *, n_steps=2000, generator=None, progress=False) -> Tensor:
    r"""Unadjusted Langevin: :math:`x \leftarrow x + \eta\nabla\log\nu(x) + \sqrt{2\eta}\,\xi`.

    Objective: :math:`\mathrm{KL}(\rho\,\|\,\nu)`; discretization: Euler-Maruyama; parametrization:
    particles (independent chains). References: Roberts and Tweedie, Bernoulli 1996.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return flows.langevin(
        x0, score, step_size, n_steps, generator=generator, record_every=n_steps, progress=progress).x


def f_flow(x0, y, *, fdiv="kl", step_size=0.05, n_steps=60, critic_iters=10, first_critic_iters=200, r1=0.1,
           hidden=32, lr_critic=5e-3, generator=None, progress=False) -> Tensor:
    r"""Explicit f-divergence flow from samples: :math:`x \leftarrow x - \eta\nabla f'(\hat r(x))`.

    Objective: :math:`D_f(\rho\,\|\,\nu)`, the ratio :math:`\hat r` from a logistic critic (``hidden``
    x 2, R1 ``r1``) refit every step; discretization: explicit Euler; parametrization: particles.
    References: Gao et al., "Deep generative learning via variational gradient flow", ICML 2019.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return fflows.f_flow(x0, y, fdiv, step_size, n_steps, critic_iters=critic_iters,
        first_critic_iters=first_critic_iters, r1=r1, generator=generator, hidden=hidden, lr=lr_critic,
        record_every=n_steps, progress=progress).x


def vgrow(x0, y, *, fdiv="kl", step_size=0.02, n_steps=100, inner_steps=3, fit_iters=5, lr=1e-2,
          critic_iters=5, first_critic_iters=100, hidden=32, lr_critic=5e-3, generator=None,
          progress=False) -> nn.Module:
    r"""VGrow: the f-divergence flow of the particles ``x0``, projected on a generator network.

    Objective: :math:`D_f(\rho\,\|\,\nu)` through a logistic ratio critic; discretization: ``inner_steps``
    particle steps, then ``fit_iters`` regression steps of the generator onto them; parametrization: one
    generator (identity at start, :math:`z \sim \mathcal N(0, I_d)`), returned. References: Gao et al., ICML
    2019; Gao et al., "Deep generative learning via Euler particle transport", 2022.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    net = _identity_map(check_samples(x0, "x0").shape[1])
    fflows.vgrow(x0, y, fdiv, step_size, n_steps, generator_net=net, inner_steps=inner_steps,
        fit_iters=fit_iters, lr_generator=lr, critic_iters=critic_iters,
        first_critic_iters=first_critic_iters, generator=generator, hidden=hidden, lr=lr_critic,
        record_every=n_steps, progress=progress)
    return net


def ept(x0, y, *, fdiv="kl", step_size=0.1, n_steps=30, r1=1.0, r_min=0.1, critic_iters=10,
        first_critic_iters=100, hidden=32, generator=None, progress=False) -> Tensor:
    r"""EPT: Euler particle transport with a least-squares density-ratio fit.

    Objective: :math:`D_f(\rho\,\|\,\nu)`, the ratio fit by least squares (floored at ``r_min``, R1 ``r1``);
    discretization: explicit Euler; parametrization: particles. References: Gao et al., MSML 2022.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return fflows.ept(x0, y, fdiv, step_size, n_steps, r1=r1, r_min=r_min, critic_iters=critic_iters,
        first_critic_iters=first_critic_iters, hidden=hidden, generator=generator, record_every=n_steps,
        progress=progress).x


def monoflow(x0, y, *, h="logd", step_size=0.05, n_steps=80, critic_iters=10, first_critic_iters=200, r1=0.1,
             hidden=32, lr_critic=5e-3, generator=None, progress=False) -> Tensor:
    r"""MonoFlow: particles along a monotone rescaling of the log-ratio, :math:`v = \nabla h(D(x))`.

    Objective: the log-ratio :math:`D` of a logistic critic rescaled by ``h`` (``"logd"``:
    :math:`\log\sigma(D)`, the non-saturating GAN); discretization: explicit Euler; parametrization:
    particles. References: Yi, Zhu, Liu, "MonoFlow", ICML 2023.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return fflows.monoflow(x0, y, h, step_size, n_steps, critic_iters=critic_iters,
        first_critic_iters=first_critic_iters, r1=r1, generator=generator, hidden=hidden, lr=lr_critic,
        record_every=n_steps, progress=progress).x


def dgflow(x0, y, *, fdiv="kl", step_size=0.1, n_steps=25, gamma=0.01, critic_iters=300, lr_critic=5e-3,
           hidden=32, generator=None, critic_generator=None, progress=False) -> Tensor:
    r"""DGflow: refine samples along the flow of a fixed discriminator,
    :math:`x \leftarrow x - \eta\,\nabla f'(\hat r(x)) + \sqrt{2\gamma \eta}\,\xi`.

    Objective: :math:`D_f(\rho\,\|\,\nu)`, the ratio of a logistic discriminator trained once
    (``critic_iters`` steps, mini-batches from ``critic_generator``); discretization: Euler-Maruyama
    with diffusion ``gamma``; parametrization: particles. References: Ansari, Ang, Soh, "Refining deep
    generative models via discriminator gradient flow", ICLR 2021.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    disc = critics.logistic_ratio(x0, y, n_iters=critic_iters, lr=lr_critic, hidden=hidden, depth=2,
        generator=critic_generator, progress=False)
    return fflows.dgflow(x0, disc, fdiv, step_size, n_steps, gamma, generator=generator, record_every=n_steps,
        progress=progress).x


def gwf(y, objective="kl", tau=1.0, *, n_phases=6, n_iters=600, r1=0.4, seed=0, objective_generator=None,
        progress=False, **options) -> jko.ParametricJKO:
    r"""GWF: the parametric JKO step of :mod:`gwf_tutorial.jko` from :math:`\mu_0 = \mathcal N(0, I_d)`, one
    push-forward map reparameterized at every step.

    Objective: an f-divergence name (``"kl"``, ``"kl_dv"``, ``"js"``, ``"chi2"``,
    ``"squared_hellinger"``; critic with R1 ``r1``), ``"w1"``, ``"mmd"`` (5 Gaussian bandwidths x
    median), ``"sinkhorn"``, ``"sliced_wasserstein"`` (directions from ``objective_generator``) or any
    objective of ``jko.ParametricJKO``; discretization: ``n_phases`` JKO steps of size ``tau``;
    parametrization: one map :math:`x + \mathrm{ResMLP}(x)`, identity at start. ``options`` go to
    ``ParametricJKO``. References: Korba, Bonet, Caucheteux, "Generative Wasserstein flows" (2026).

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    y = check_samples(y, "y", min_n=2)
    objective = _objective(objective, y, objective_generator)
    return _chain(
        y, objective, tau, n_phases, n_iters=n_iters, r1=r1, seed=seed, progress=progress, **options)


def vwgf(y, objective="kl", tau=1.0, *, n_phases=6, n_iters=600, r1=0.4, seed=0, progress=False,
         **options) -> jko.ParametricJKO:
    r"""VWGF: the variational JKO step with a new map per step, composed.

    Objective: an f-divergence through its critic, as :func:`gwf`; discretization: ``n_phases`` JKO
    steps; parametrization: composed maps :math:`T_K \circ \dots \circ T_1`, each started at the
    identity. References: Fan, Zhang, Taghvaei, Chen, "Variational Wasserstein gradient flow", ICML 2022.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return gwf(y, objective, tau, n_phases=n_phases, n_iters=n_iters, r1=r1, seed=seed, progress=progress,
        parametrization="composed", **options)


def jko_icnn(target, source, tau=0.05, *, n_phases=10, n_iters=50, lr=5e-3, hidden=32, depth=2, dim=None,
             seed=0, progress=False, **options) -> jko.ParametricJKO:
    r"""JKO-ICNN: each JKO step's map (:mod:`gwf_tutorial.jko`, from :math:`\rho_k`) is the gradient
    :math:`\nabla u_{k+1}` of an input-convex network.

    Objective: KL by change of variables, with ``target`` a log-density (``log_prob`` or a callable);
    discretization: ``n_phases`` JKO steps; parametrization: composed :math:`\nabla u_k`, ICNNs.
    ``source``: samples (n, d) of :math:`\mu_0` or a sampler ``(n, generator) -> (n, dim)``. References:
    Mokrov et al., "Large-scale Wasserstein gradient flows", NeurIPS 2021.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    d = check_samples(source, "source").shape[1] if isinstance(source, Tensor) else check_int(dim, "dim")
    net = nets.GradientMap(nets.ICNN(d, hidden=hidden, depth=depth))
    chain = jko.ParametricJKO(net, jko.PushforwardKL(target), tau, source, n_iters=n_iters, lr=lr,
        batch_size=256, parametrization="composed", seed=seed, progress=progress, **options)
    chain.run(n_phases)
    return chain


def gan(y, *, loss="minimax", n_iters=900, r1=0.4, lr=2e-4, lr_critic=2e-4, seed=0, progress=False,
        **options) -> jko.ParametricJKO:
    r"""GAN: :math:`\min_G \max_D \mathbb E\log D(y) + \mathbb E\log(1 - D(G(z)))`.

    Objective: Jensen-Shannon through a logistic critic (R1 ``r1``), generator ``loss`` ``"minimax"``
    or ``"non_saturating"``; discretization: none (:math:`\tau = \infty`, ``n_iters`` alternating
    updates); parametrization: one generator. References: Goodfellow et al., NeurIPS 2014.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return _chain(y, "gan", None, 1, n_iters=n_iters, symmetric=True, r1=r1, lr=lr, lr_critic=lr_critic,
        generator_loss=loss, seed=seed, progress=progress, **options)


def fgan(y, fdiv="kl", *, n_iters=900, r1=0.4, lr=2e-4, lr_critic=2e-4, seed=0, progress=False,
         **options) -> jko.ParametricJKO:
    r"""f-GAN: :math:`\min_G \sup_h \mathbb E\,h(y) - \mathbb E\,f^*(h(G(z)))`, i.e. :math:`D_f(\nu\|\rho)`.

    Objective: the variational ``fdiv`` in f-GAN's direction; discretization: none (:math:`\tau =
    \infty`); parametrization: one generator. References: Nowozin, Cseke, Tomioka, "f-GAN", NeurIPS 2016.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return _chain(y, fdiv, None, 1, n_iters=n_iters, symmetric=True, r1=r1, lr=lr, lr_critic=lr_critic,
        seed=seed, progress=progress, **options)


def wgan_gp(y, *, n_iters=360, critic_steps=5, gp=10.0, lr=1e-4, lr_critic=1e-4, betas=(0.0, 0.9), seed=0,
            progress=False, **options) -> jko.ParametricJKO:
    r"""WGAN-GP: :math:`\min_G \max_{|\nabla h| \le 1} \mathbb E\,h(y) - \mathbb E\,h(G(z))`, penalised.

    Objective: :math:`W_1` through a critic with gradient penalty ``gp``, ``critic_steps`` critic
    updates per generator update; discretization: none; parametrization: one generator. References:
    Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return _chain(y, "w1", None, 1, n_iters=n_iters, critic_steps=critic_steps, gp=gp, lr=lr,
        lr_critic=lr_critic, betas=betas, seed=seed, progress=progress, **options)


def mmd_gan(y, *, n_iters=750, seed=0, progress=False, **options) -> jko.ParametricJKO:
    r"""MMD-GAN: :math:`\min_G \max_\phi \mathrm{MMD}^2_{k\circ\phi}(G_\#\mu_0, \nu)`, a learned kernel.

    Objective: MMD^2, Gaussian kernel on learned features; discretization: none; parametrization: one
    generator. References: Li et al., "MMD GAN", NeurIPS 2017.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    return _chain(y, "mmd_learned", None, 1, n_iters=n_iters, seed=seed, progress=progress, **options)


def gmmn(y, *, n_iters=2700, bandwidths=_MMD_BANDWIDTHS, seed=0, progress=False,
         **options) -> jko.ParametricJKO:
    r"""GMMN: a generator trained on a fixed-kernel :math:`\mathrm{MMD}^2` (no critic).

    Objective: the MMD^2 U-statistic, Gaussian kernels at ``bandwidths`` x the median distance;
    discretization: none (:math:`\tau = \infty`); parametrization: one generator. References: Li,
    Swersky, Zemel, ICML 2015; Dziugaite, Roy, Ghahramani, UAI 2015.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    y = check_samples(y, "y", min_n=2)
    return _chain(y, _mmd(y, bandwidths), None, 1, n_iters=n_iters, seed=seed, progress=progress, **options)


def sjko(y, *, n_phases=6, n_iters=600, seed=0, progress=False, **options) -> _sjko.SemiDualJKO:
    r"""S-JKO: the semi-dual JKO step :math:`\sup_v \inf_T J(v, T)` of :mod:`gwf_tutorial.sjko`, whose inner
    problem is explicit.

    Objective: KL through its conjugate :math:`\Psi^*`, a potential :math:`v`; discretization: ``n_phases``
    semi-dual JKO steps of ``n_iters`` (``options`` go to ``sjko.toy_trainer``); parametrization: one
    reparameterized map with a d-dim latent, a ``sjko.SemiDualJKO``. References: Choi, Choi, Kwon, ICML 2024.

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    y = check_samples(y, "y", min_n=2)
    d = y.shape[1]
    trainer = _sjko.toy_trainer(d, noise_dim=d, seed=seed, dtype=y.dtype, n_iters=n_iters, **options)
    trainer.run(n_phases, _gaussian_source(d), y, progress=progress)
    return trainer


#: The drift fields of :func:`drifting` by name: ``generator -> DriftField`` (the generator draws
#: the sliced field's directions).
DRIFT_FIELDS: dict[str, Callable] = {
    "paper": lambda g: _drifting.PaperDrift(0.15),
    "algorithm2": lambda g: _drifting.Algorithm2Drift(0.1),
    "multi_temperature": lambda g: _drifting.MultiTemperatureDrift(affinity_floor=0.0),
    "mmd": lambda g: _drifting.ObjectiveDrift(functionals.MMD("multi", [0.05, 0.2, 0.8])),
    "sinkhorn": lambda g: _drifting.ObjectiveDrift(_objective("sinkhorn", None, g)),  # the JKO settings
    "sliced_wasserstein": lambda g: _drifting.ObjectiveDrift(functionals.SlicedWasserstein(50, generator=g)),
    "critic": lambda g: _drifting.CriticDrift(n_iters=5, lr=5e-3),
}


def drifting(y, field="algorithm2", *, n_iters=3200, batch_size=256, lr=2e-3, latent_dim=8, generator=None,
             field_generator=None, progress=False) -> _drifting.DriftingHistory:
    r"""Drifting model: a one-step generator regressed onto its own samples moved by a drift field (the
    stop-gradient loss of :mod:`gwf_tutorial.drifting`).

    Objective: the drift field :math:`V`, a name of :data:`DRIFT_FIELDS` or a ``drifting.DriftField``;
    discretization: one explicit step per iteration, absorbed by the regression; parametrization: one
    generator ``MLP(latent_dim -> d, 64 x 3)``, a ``drifting.DriftingHistory``. References: Deng et al.,
    "Generative modeling via drifting" (2026).

    Used in: ``methods.METHODS`` (the benchmark's table).
    """
    net = nets.MLP(latent_dim, check_samples(y, "y").shape[1], hidden=64, depth=3)
    if isinstance(field, str):
        if field not in DRIFT_FIELDS:
            raise ValueError(f"field must be one of {sorted(DRIFT_FIELDS)} or a DriftField, got {field!r}")
        field = DRIFT_FIELDS[field](field_generator)
    return _drifting.train_drifting(
        net, y, field, n_iters=n_iters, batch_size=batch_size, lr=lr, generator=generator, progress=progress)


@dataclass(frozen=True)
class Method:
    """One row of the method map: a function of this module, its family (:data:`FAMILIES`) and chapter,
    its three choices in words, the keyword ``options`` of the function that make this row (e.g.
    ``objective="js"``), and whether it ``needs_score`` :math:`\\nabla\\log\\nu`.
    Used in: ``methods.METHODS``.
    """

    function: Callable
    family: str
    chapter: int
    objective: str
    discretization: str
    parametrization: str
    options: dict = field(default_factory=dict)
    needs_score: bool = False


_P, _E, _J, _G = "particles", "explicit Euler", "JKO step", "none (GAN switch, tau = inf)"
_MAP, _GEN = "one map, reparameterized", "one generator"
_M = Method

_WORDS = dict(chi2="$\\chi^2$", w1="$W_1$", f="$f$", flow="flow", fgan="$f$-GAN", sjko="S-JKO", vgrow="VGrow",
    dgflow="DGflow", monoflow="MonoFlow", langevin="Langevin", sinkhorn="Sinkhorn", hellinger="Hellinger")


def display_name(key: str) -> str:
    """A key of :data:`METHODS` as figures print it: ``"jko_chi2"`` -> ``"JKO $\\chi^2$"``.
    Used in: the introduction, chapter 11."""
    return " ".join(_WORDS.get(w, w.upper() if len(w) <= 4 else w) for w in key.split("_"))


#: The method map: name -> :class:`Method`, in the order of the book. Benchmark names are keys.
METHODS: dict[str, Method] = {
    "particle_sw": _M(sliced_wasserstein_flow, "particle", 3, "sliced W2", _E, _P),
    "particle_energy": _M(mmd_flow, "particle", 3, "MMD, energy kernel", _E + ", geometric step", _P,
                          dict(kernel="energy", final_step_size=0.5, noise_level=0.0)),
    "particle_mmd": _M(mmd_flow, "particle", 3, "MMD, Gaussian kernel", _E + " + noise injection", _P),
    "particle_sinkhorn": _M(sinkhorn_flow, "particle", 3, "Sinkhorn divergence", _E, _P),
    "particle_kl": _M(kl_flow, "particle", 2, "KL (target score, blob)", _E, _P, needs_score=True),
    "langevin": _M(langevin, "particle", 2, "KL (target score)", "Euler-Maruyama", _P, needs_score=True),
    "f_flow": _M(f_flow, "f-flow", 4, "KL (logistic critic)", _E, _P),
    "vgrow": _M(vgrow, "f-flow", 4, "KL (logistic critic)", _E + " + generator fit", _GEN),
    "ept": _M(ept, "f-flow", 4, "KL (least-squares ratio)", _E, _P),
    "monoflow": _M(monoflow, "f-flow", 4, "log sigmoid of the critic", _E, _P),
    "dgflow": _M(dgflow, "f-flow", 4, "KL (fixed discriminator)", "Euler-Maruyama", _P),
    "jko_kl": _M(gwf, "jko", 4, "KL (critic)", _J, _MAP),
    "jko_kl_dv": _M(gwf, "jko", 4, "KL (Donsker-Varadhan critic)", _J, _MAP, dict(objective="kl_dv")),
    "jko_js": _M(gwf, "jko", 6, "Jensen-Shannon (critic)", _J, _MAP, dict(objective="js", tau=10.0)),
    "jko_chi2": _M(gwf, "jko", 6, "Pearson chi^2 (critic)", _J, _MAP, dict(objective="chi2")),
    "jko_hellinger": _M(gwf, "jko", 4, "squared Hellinger (critic)", _J, _MAP,
                        dict(objective="squared_hellinger")),
    "jko_mmd": _M(gwf, "jko", 5, "MMD^2 (U-statistic)", _J, _MAP,
                  dict(objective="mmd", tau=100.0, n_iters=450, r1=0.0)),
    "jko_w1": _M(gwf, "jko", 5, "W1 (gradient-penalised critic)", _J, _MAP,
                 dict(objective="w1", tau=0.1, n_iters=240, r1=0.0, critic_steps=5, gp=10.0,
                      betas=(0.5, 0.9))),
    "jko_sinkhorn": _M(gwf, "jko", 5, "Sinkhorn divergence", _J, _MAP,
                       dict(objective="sinkhorn", tau=10.0, n_iters=240, r1=0.0)),
    "jko_sw": _M(gwf, "jko", 5, "sliced W2", _J, _MAP,
                 dict(objective="sliced_wasserstein", tau=10.0, r1=0.0, lr=2e-3)),
    "vwgf": _M(vwgf, "jko", 4, "KL (critic)", _J, "composed maps"),
    "jko_icnn": _M(jko_icnn, "jko", 4, "KL (known density)", _J, "composed gradients of ICNNs"),
    "gan": _M(gan, "gan", 5, "Jensen-Shannon (critic)", _G, _GEN),
    "gan_ns": _M(gan, "gan", 5, "Jensen-Shannon (critic), non-saturating", _G, _GEN,
                 dict(loss="non_saturating")),
    "fgan_kl": _M(fgan, "gan", 5, "KL(nu || rho) (critic)", _G, _GEN),
    "wgan_gp": _M(wgan_gp, "gan", 5, "W1 (gradient-penalised critic)", _G, _GEN),
    "mmd_gan": _M(mmd_gan, "gan", 5, "MMD^2, learned kernel", _G, _GEN),
    "gmmn": _M(gmmn, "gan", 5, "MMD^2, fixed kernels", _G, _GEN),
    "sjko": _M(sjko, "s-jko", 7, "KL (semi-dual potential)", "semi-dual JKO step", _MAP + " (latent input)"),
    **{"drift_" + ("sw" if f == "sliced_wasserstein" else f): _M(drifting, "drifting", 8,
        f"drift field: {f.replace('_', ' ')}", "one step per update", _GEN, dict(field=f, n_iters=n))
       for f, n in [("paper", 3200), ("algorithm2", 3200), ("multi_temperature", 2400), ("mmd", 2400),
                    ("sinkhorn", 2400), ("sliced_wasserstein", 3200), ("critic", 2400)]},
}  # fmt: skip
