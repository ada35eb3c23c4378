"""Reliability sweep over the public API: bad input fails early, with a message naming the argument.

Every public function and class of the library is called once with good arguments (the call must
succeed), then with one argument spoiled at a time:

- a sample matrix of the wrong shape (1-D), holding a NaN, or empty (0 rows);
- two sample matrices of different dtypes or dimensions (and, where a GPU exists, devices);
- a hyperparameter that must be positive set to 0, -1 or NaN; an integer count set to 0 or 1.5;
- plus targeted cases (unknown names, non-SPD covariances, ...).

Each spoiled call must raise ``ValueError`` or ``TypeError`` whose message names the argument.

Plots are checked for shapes only: matplotlib draws what is finite, and an empty sample is an empty
figure. Exempt from the NaN case (``nan=False``) as well: the per-iteration primitives that training
loops call at every step -- the transport costs and losses of ``jko`` / ``sjko`` / ``drifting`` and
the networks' forward passes. A finiteness check there is a device synchronisation per call (a stall
on a GPU); they check shapes and dtypes, and NaN propagates to the loss.
Networks also follow torch's semantics for an empty batch (an empty output), so their forward passes
are exempt from the empty case.

A second sweep (:func:`test_extreme_values_and_dtypes`) spoils the same arguments with finite but
extreme values (one entry 1e30, a hyperparameter 1e30) and with float16 / bfloat16 / int64 tensors.
These may be accepted -- then the result must be finite and, for a dtype, equal to the result for the
same values in the original dtype -- or refused with a message naming the argument.
:func:`test_sweep_outcome_counts` runs both sweeps and prints the outcome counts (``pytest -s``):
clear error, accepted and correct, silent NaN/Inf, silently accepted invalid input, unclear error.

Finally, every method of :mod:`gwf_tutorial.benchmark` run twice with the same seed gives identical
samples on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from gwf_tutorial import (
    benchmark,
    cifar10,
    critics,
    drifting,
    fdiv,
    fflows,
    flows,
    functionals,
    gaussian,
    jko,
    kernels,
    metrics,
    nets,
    plot,
    projected,
    sjko,
    targets,
    train,
)

BAD = (ValueError, TypeError)
F64 = torch.float64


def S(n: int = 12, d: int = 2, seed: int = 0) -> torch.Tensor:
    """A small sample matrix."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def V(n: int = 12, seed: int = 0) -> torch.Tensor:
    """A small vector of values (critic outputs)."""
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def SPD(d: int = 2) -> torch.Tensor:
    return torch.tensor([[1.0, 0.3], [0.3, 0.8]], dtype=torch.float64)[:d, :d]


def critic2() -> nn.Module:
    torch.manual_seed(0)
    return critics.Critic(2, hidden=8, depth=1)


def latent(n, generator=None):
    return torch.randn(n, 2, generator=generator)


@dataclass
class Spec:
    """A public callable, good keyword arguments, and which of them to spoil.

    ``samples``: (n, d) matrices; ``vectors``: (n,) values; ``pairs``: two sample arguments that must
    share dtype and dimension; ``positive``: numbers that must be > 0; ``ints``: counts >= 1;
    ``extra``: (label, overrides, name that the message must contain).
    """

    name: str
    fn: Callable
    kwargs: Callable[[], dict]
    samples: tuple = ()
    vectors: tuple = ()
    pairs: tuple = ()
    positive: tuple = ()
    ints: tuple = ()
    extra: list = field(default_factory=list)
    nan: bool = True
    empty: bool = True


SPECS: list[Spec] = []


def spec(name, fn, kwargs, **kw) -> None:
    SPECS.append(Spec(name, fn, kwargs, **kw))


# fmt: off

# --- targets ---------------------------------------------------------------------------------------
spec("targets.Gaussian", targets.Gaussian, lambda: dict(mean=[0.0, 1.0], cov=SPD()),
     extra=[("not SPD", dict(cov=[[1.0, 2.0], [2.0, 1.0]]), "cov"),
            ("NaN mean", dict(mean=[math.nan, 0]), "mean"),
            ("shape", dict(cov=torch.eye(3)), "cov")])
spec("targets.GaussianMixture", targets.GaussianMixture, lambda: dict(means=S(3), covs=0.1),
     samples=("means",), extra=[("negative std", dict(covs=-0.1), "covs"),
                                ("weights", dict(weights=[0.5, 0.5, -1.0]), "weights")])
spec("targets.Banana", targets.Banana, lambda: dict(), positive=("scale", "noise"))
spec("targets.TwoMoons", targets.TwoMoons, lambda: dict(), positive=("scale",))
spec("targets.SwissRoll", targets.SwissRoll, lambda: dict(), extra=[("noise", dict(noise=-1.0), "noise")])
spec("targets.Checkerboard", targets.Checkerboard, lambda: dict(), ints=("n_cells",),
     extra=[("noise", dict(noise=-1.0), "noise")])
spec("targets.Rings", targets.Rings, lambda: dict(), positive=("std",))
spec("targets.Spirals", targets.Spirals, lambda: dict(), ints=("n_arms",), positive=("turns", "scale"))
spec("targets.FinitePoints", targets.FinitePoints, lambda: dict(points=S()), samples=("points",))
spec("targets.get_target", targets.get_target, lambda: dict(name="moons"),
     extra=[("unknown", dict(name="nope"), "target"), ("type", dict(name=3), "name")])
spec("Target.sample", lambda n: targets.get_target("moons").sample(n), lambda: dict(n=5), ints=("n",))
spec("Target.log_prob", lambda x: targets.get_target("banana").log_prob(x), lambda: dict(x=S()),
     samples=("x",), extra=[("dim", dict(x=S(d=3)), "x")])
spec("Target.score", lambda x: targets.get_target("eight_gaussians").score(x), lambda: dict(x=S()),
     samples=("x",), extra=[("dim", dict(x=S(d=3)), "x")])
spec("targets.gaussian_quantiles", targets.gaussian_quantiles, lambda: dict(n=10, mean=0.0, var=1.0),
     ints=("n",), positive=("var",))

# --- kernels -----------------------------------------------------------------------------------------
spec("kernels.squared_distances", kernels.squared_distances, lambda: dict(x=S(), y=S(7)),
     samples=("x", "y"), pairs=(("x", "y"),))
spec("kernels.median_bandwidth", kernels.median_bandwidth, lambda: dict(x=S(), y=S(7)),
     samples=("x", "y"), pairs=(("x", "y"),), ints=("max_points",))
spec("kernels.GaussianKernel", kernels.GaussianKernel, lambda: dict(bandwidth=1.0), positive=("bandwidth",))
spec("kernels.IMQKernel", kernels.IMQKernel, lambda: dict(bandwidth=1.0), positive=("bandwidth",))
spec("kernels.LaplaceKernel", kernels.LaplaceKernel, lambda: dict(bandwidth=1.0), positive=("bandwidth",))
spec("kernels.EnergyKernel", kernels.EnergyKernel, lambda: dict(exponent=1.0), positive=("exponent",))
spec("kernels.MultiBandwidthKernel", kernels.MultiBandwidthKernel, lambda: dict(bandwidths=[0.5, 1.0]),
     extra=[("negative", dict(bandwidths=[0.5, -1.0]), "bandwidth")])
spec("Kernel.__call__", lambda x, y: kernels.GaussianKernel(1.0)(x, y), lambda: dict(x=S(), y=S(7)),
     samples=("x", "y"), pairs=(("x", "y"),))
spec("kernels.get_kernel", kernels.get_kernel, lambda: dict(name_or_kernel="gaussian"),
     extra=[("unknown", dict(name_or_kernel="nope"), "kernel"), ("bandwidth", dict(bandwidth=-1.0),
         "bandwidth")])

# --- fdiv --------------------------------------------------------------------------------------------
spec("fdiv.get_fdivergence", fdiv.get_fdivergence, lambda: dict(name="kl"),
     extra=[("unknown", dict(name="nope"), "name"), ("type", dict(name=3), "name")])
spec("fdiv.dv_bound", fdiv.dv_bound, lambda: dict(h_x=V(), h_y=V(7)), vectors=("h_x", "h_y"))
spec("fdiv.variational_bound", fdiv.variational_bound, lambda: dict(fdiv="kl", h_x=V(), h_y=V(7)),
     vectors=("h_x", "h_y"), extra=[("unknown", dict(fdiv="nope"), "divergence")])

# --- functionals ---------------------------------------------------------------------------------------
for _name, _make in [
    ("MMD", lambda: functionals.MMD("gaussian", 1.0)),
    ("SlicedWasserstein", lambda: functionals.SlicedWasserstein(10,
        generator=torch.Generator().manual_seed(0))),
    ("SinkhornDivergence", lambda: functionals.SinkhornDivergence(0.5, max_iter=50)),
    ("UnbiasedMMD", lambda: jko.UnbiasedMMD("gaussian", 1.0)),
]:
    spec(f"{_name}.value", lambda x, y, _m=_make: _m().value(x, y), lambda: dict(x=S(), y=S(7)),
         samples=("x", "y"), pairs=(("x", "y"),))
    spec(f"{_name}.velocity", lambda x, y, _m=_make: _m().velocity(x, y), lambda: dict(x=S(), y=S(7)),
         samples=("x", "y"), pairs=(("x", "y"),))
spec("functionals.MMD", functionals.MMD, lambda: dict(kernel="gaussian", bandwidth=1.0),
    positive=("bandwidth",))
spec("functionals.KL", functionals.KL, lambda: dict(target=targets.get_target("gaussian")),
     positive=("kde_bandwidth",), extra=[("no score", dict(target=3), "target")])
spec("KL.velocity", lambda x: functionals.KL(targets.get_target("gaussian")).velocity(x), lambda: dict(x=S()),
     samples=("x",))
spec("functionals.SlicedWasserstein", functionals.SlicedWasserstein, lambda: dict(n_projections=5),
     ints=("n_projections",))
spec("functionals.SinkhornDivergence", functionals.SinkhornDivergence, lambda: dict(eps=0.1),
     positive=("eps", "tol"), ints=("max_iter",))
spec("functionals.SlicedEnergyMMD", functionals.SlicedEnergyMMD, lambda: dict(n_projections=5),
     ints=("n_projections",))
spec("functionals.slicing_constant", functionals.slicing_constant, lambda: dict(d=2), ints=("d",))
spec("functionals.get_objective", functionals.get_objective, lambda: dict(name="mmd"),
     extra=[("unknown", dict(name="nope"), "objective")])
spec("functionals.kde_bandwidth", functionals.kde_bandwidth, lambda: dict(x=S()), samples=("x",))
spec("functionals.wasserstein_gradient", functionals.wasserstein_gradient,
     lambda: dict(value_fn=lambda z: z.pow(2).sum(), x=S()), samples=("x",),
     extra=[("not callable", dict(value_fn=3), "value_fn")])

# --- critics -------------------------------------------------------------------------------------------
spec("critics.Critic", critics.Critic, lambda: dict(in_dim=2, hidden=8, depth=1), ints=("in_dim", "hidden"))
spec("critics.value_and_input_grad", critics.value_and_input_grad, lambda: dict(critic=critic2(), y=S()),
     samples=("y",), nan=False)
spec("critics.add_penalties", critics.add_penalties,
     lambda: dict(loss=torch.zeros(()), critic=critic2(), x=S(), y=S(seed=1), r1=1.0, gp=1.0), nan=False,
     empty=False)
spec("critics.fit_critic", critics.fit_critic, lambda: dict(critic=critic2(), x=S(), y=S(7), fdiv="kl",
    n_iters=2),
     samples=("x", "y"), pairs=(("x", "y"),), ints=("n_iters",), positive=("lr",))
spec("critics.logistic_ratio", critics.logistic_ratio,
     lambda: dict(x=S(), y=S(7), n_iters=2, hidden=8, depth=1, progress=False),
     samples=("x", "y"), pairs=(("x", "y"),), ints=("n_iters",), positive=("lr",))
spec("critics.LearnedKernel", critics.LearnedKernel, lambda: dict(in_dim=2), ints=("in_dim", "feature_dim"))
spec("critics.SemiDualPotential", critics.SemiDualPotential, lambda: dict(divergence="chi2"),
     extra=[("divergence", dict(divergence="nope"), "divergence")])

# --- flows ---------------------------------------------------------------------------------------------
spec("flows.euler_flow", flows.euler_flow,
     lambda: dict(x0=S(), velocity_fn=lambda x: -x, step_size=0.1, n_steps=2, progress=False),
     samples=("x0",), positive=("step_size",), ints=("n_steps",),
     extra=[("not callable", dict(velocity_fn=3), "velocity_fn")])
spec("flows.particle_flow", flows.particle_flow,
     lambda: dict(x0=S(), objective=functionals.MMD("gaussian", 1.0), y=S(7), step_size=0.1, n_steps=2,
                  progress=False),
     samples=("x0", "y"), pairs=(("x0", "y"),), positive=("step_size",), ints=("n_steps",),
     extra=[("unknown objective", dict(objective="nope"), "objective")])
spec("flows.langevin", flows.langevin,
     lambda: dict(x0=S(), score=lambda x: -x, step_size=0.1, n_steps=2, progress=False),
     samples=("x0",), positive=("step_size",), ints=("n_steps",), extra=[("score", dict(score=3), "score")])
spec("flows.linear_schedule", flows.linear_schedule, lambda: dict(start=1.0, decay_steps=10),
    positive=("decay_steps",))

# --- nets ----------------------------------------------------------------------------------------------
spec("nets.MLP", nets.MLP, lambda: dict(in_dim=2, out_dim=2, hidden=8, depth=1), ints=("in_dim",
    "out_dim", "hidden"),
     extra=[("activation", dict(activation="nope"), "activation")])
spec("MLP.forward", lambda x: nets.MLP(2, 2, 8, 1)(x), lambda: dict(x=S()), samples=("x",),
     extra=[("dim", dict(x=S(d=3)), "x")], nan=False, empty=False)
spec("nets.ResidualMLP", nets.ResidualMLP, lambda: dict(dim=2, hidden=8, n_blocks=1), ints=("dim", "hidden"))
spec("ResidualMLP.forward", lambda x: nets.ResidualMLP(2, 8, 1)(x), lambda: dict(x=S()), samples=("x",),
    nan=False, empty=False)
spec("nets.AffineMap", nets.AffineMap, lambda: dict(dim=2), ints=("dim",))
spec("nets.Translation", nets.Translation, lambda: dict(dim=2), ints=("dim",))
spec("nets.make_activation", nets.make_activation, lambda: dict(activation="silu"),
     extra=[("unknown", dict(activation="nope"), "activation")])
spec("nets.ICNN", nets.ICNN, lambda: dict(dim=2, hidden=8, depth=1), ints=("dim", "hidden"))

# --- jko -----------------------------------------------------------------------------------------------
spec("jko.proximal_cost", jko.proximal_cost, lambda: dict(x_new=S(), x_old=S(seed=1), tau=1.0),
     samples=("x_new", "x_old"), pairs=(("x_new", "x_old"),), positive=("tau",), nan=False)
spec("jko.saddle_objective", jko.saddle_objective,
     lambda: dict(fdiv="kl", x_new=S(), x_old=S(seed=1), h_new=V(), h_data=V(7), tau=1.0),
     samples=("x_new", "x_old"), vectors=("h_new", "h_data"), positive=("tau",), nan=False)
spec("jko.get_critic_objective", jko.get_critic_objective, lambda: dict(name="kl"),
     extra=[("unknown", dict(name="nope"), "objective")])
spec("jko.ParametricJKO", jko.ParametricJKO,
     lambda: dict(map_net=nets.ResidualMLP(2, 8, 1), objective="kl", tau=1.0, source=latent, data=S(50),
                  n_iters=2, progress=False),
     positive=("tau", "lr", "lr_critic"), ints=("n_iters", "batch_size", "critic_steps"),
     extra=[("objective", dict(objective="nope"), "objective"), ("map_net", dict(map_net=3), "map_net"),
            ("data", dict(data=None), "data")])

# --- projected ---------------------------------------------------------------------------------------
spec("projected.parameter_jacobian", projected.parameter_jacobian,
     lambda: dict(map_net=nets.AffineMap(2), z=S()), samples=("z",))
spec("projected.metric_tensor", projected.metric_tensor, lambda: dict(map_net=nets.AffineMap(2), z=S()),
     samples=("z",))
spec("projected.natural_direction", projected.natural_direction,
     lambda: dict(map_net=nets.AffineMap(2), z=S(), grad=torch.ones(6)),
     samples=("z",), extra=[("damping", dict(damping=-1.0), "damping")])
spec("projected.projected_flow", projected.projected_flow,
     lambda: dict(map_net=nets.AffineMap(2), objective=functionals.MMD("gaussian", 1.0), source=S(),
         data=S(7),
                  step_size=0.01, n_steps=2),
     positive=("step_size",), ints=("n_steps",))

# --- fflows --------------------------------------------------------------------------------------------
_FF = dict(critic_iters=1, first_critic_iters=1, hidden=8, depth=1, progress=False)
spec("fflows.f_flow", fflows.f_flow, lambda: dict(x0=S(), y=S(7), n_steps=2, **_FF),
     samples=("x0", "y"), pairs=(("x0", "y"),), positive=("step_size", "lr", "r_min"),
     ints=("n_steps", "critic_iters", "first_critic_iters"),
     extra=[("estimator", dict(estimator="nope"), "estimator"), ("fdiv", dict(fdiv="nope"), "divergence")])
spec("fflows.vgrow", fflows.vgrow, lambda: dict(x0=S(), y=S(7), n_steps=2, **_FF),
     samples=("x0", "y"), pairs=(("x0", "y"),), positive=("step_size",), ints=("n_steps",))
spec("fflows.ept", fflows.ept, lambda: dict(x0=S(), y=S(7), n_steps=2, **_FF),
     samples=("x0", "y"), pairs=(("x0", "y"),), positive=("step_size",), ints=("n_steps",))
spec("fflows.monoflow", fflows.monoflow, lambda: dict(x0=S(), y=S(7), n_steps=2, **_FF),
     samples=("x0", "y"), pairs=(("x0", "y"),), positive=("step_size",), ints=("n_steps",),
     extra=[("h", dict(h="nope"), "h")])
spec("fflows.dgflow", fflows.dgflow,
     lambda: dict(x0=S(), discriminator=lambda z: z.sum(1), n_steps=2, progress=False),
     samples=("x0",), positive=("step_size",), ints=("n_steps",), extra=[("gamma", dict(gamma=-1.0),
         "gamma")])
spec("fflows.velocity_from_critic", fflows.velocity_from_critic, lambda: dict(critic=critic2(), x=S()),
     samples=("x",), positive=("r_min",), extra=[("estimator", dict(estimator="nope"), "estimator")])
spec("fflows.get_velocity_factor", fflows.get_velocity_factor, lambda: dict(fdiv="kl"),
     extra=[("unknown", dict(fdiv="nope"), "divergence")])

# --- sjko ----------------------------------------------------------------------------------------------
spec("sjko.tau_from_h", sjko.tau_from_h, lambda: dict(h=0.1, dim=3), positive=("h",), ints=("dim",))
spec("fdiv.psi_star", fdiv.psi_star, lambda: dict(divergence="kl"),
     extra=[("unknown", dict(divergence="nope"), "divergence")])
spec("sjko.potential_loss", sjko.potential_loss, lambda: dict(v_fake=V(), v_real=V(7)),
    vectors=("v_fake", "v_real"),
     extra=[("r1", dict(r1=-1.0), "r1")], nan=False)
spec("sjko.map_loss", sjko.map_loss, lambda: dict(t_new=S(), t_old=S(seed=1), v_new=V(), tau=1.0),
     samples=("t_new", "t_old"), vectors=("v_new",), positive=("tau",), nan=False)
spec("sjko.semi_dual_objective", sjko.semi_dual_objective, lambda: dict(cost=V().abs(), v_fake=V(seed=1),
    v_real=V(7)),
     vectors=("cost", "v_fake", "v_real"), nan=False)
spec("sjko.add_instance_noise", sjko.add_instance_noise, lambda: dict(y=S(), k=0),
     samples=("y",), extra=[("k", dict(k=-1), "k")], nan=False)
spec("sjko.QuadraticPotential", sjko.QuadraticPotential, lambda: dict(dim=2), ints=("dim",))
spec("sjko.SemiDualJKO", sjko.SemiDualJKO,
     lambda: dict(map_net=nets.ResidualMLP(2, 8, 1), potential_net=nets.MLP(2, 1, 8, 1), n_iters=2),
     positive=("tau", "lr", "lr_critic"), ints=("n_iters", "batch_size"),
     extra=[("divergence", dict(divergence="nope"), "divergence"), ("map_net", dict(map_net=3), "map_net")])
spec("SemiDualJKO.phase",
     lambda source, data: sjko.SemiDualJKO(nets.ResidualMLP(2, 8, 1), nets.MLP(2, 1, 8, 1), n_iters=1).phase(
         source, data, progress=False),
     lambda: dict(source=S(), data=S(7)), samples=("source", "data"))

# --- drifting ------------------------------------------------------------------------------------------
for _fname in ("paper_field", "algorithm2_field"):
    spec(f"drifting.{_fname}", getattr(drifting, _fname), lambda: dict(x=S(), y_pos=S(7)),
         samples=("x", "y_pos"), pairs=(("x", "y_pos"),), positive=("temperature",),
         extra=[("attraction", dict(attraction=-1.0), "attraction")])
spec("drifting.algorithm2_affinities", drifting.algorithm2_affinities, lambda: dict(x=S(), y_pos=S(7)),
     samples=("x", "y_pos"), pairs=(("x", "y_pos"),), positive=("temperature",))
spec("drifting.gaussian_population_field", drifting.gaussian_population_field,
     lambda: dict(x=S().double(), mp=torch.zeros(2, dtype=torch.float64), Sp=SPD(), mq=torch.ones(2,
         dtype=torch.float64),
                  Sq=SPD(), bandwidth=0.5),
     samples=("x",), positive=("bandwidth",))
spec("drifting.drift_rms", drifting.drift_rms, lambda: dict(V=S()), samples=("V",))
spec("drifting.drifting_loss", drifting.drifting_loss, lambda: dict(fx=S(), V=S(seed=1)), samples=("V",),
     extra=[("shape", dict(V=S(5)), "V")], nan=False)
spec("drifting.jacobian_asymmetry", drifting.jacobian_asymmetry,
     lambda: dict(drift=drifting.Algorithm2Drift(0.5), x=S(4).double(), y_pos=S(7).double()),
     samples=("x", "y_pos"), positive=("eps",))
spec("drifting.PaperDrift", drifting.PaperDrift, lambda: dict(temperature=0.1), positive=("temperature",))
spec("drifting.Algorithm2Drift", drifting.Algorithm2Drift, lambda: dict(temperature=0.1),
    positive=("temperature",))
spec("drifting.MultiTemperatureDrift", drifting.MultiTemperatureDrift, lambda: dict(),
     extra=[("temperatures", dict(temperatures=()), "temperatures"),
            ("negative temperature", dict(temperatures=(0.1, -1.0)), "temperature")])
spec("drifting.ObjectiveDrift", drifting.ObjectiveDrift,
    lambda: dict(objective=functionals.MMD("gaussian", 1.0)),
     positive=("scale",), extra=[("objective", dict(objective=3), "objective")])
spec("drifting.CriticDrift", drifting.CriticDrift, lambda: dict(), positive=("lr", "scale"),
    ints=("n_iters",))
spec("DriftField.__call__", lambda x, y_pos: drifting.Algorithm2Drift(0.5)(x, y_pos), lambda: dict(x=S(),
    y_pos=S(7)),
     samples=("x", "y_pos"), pairs=(("x", "y_pos"),))
spec("drifting.train_drifting", drifting.train_drifting,
     lambda: dict(net=nets.MLP(4, 2, 8, 1), data=S(30), drift=drifting.Algorithm2Drift(0.5), n_iters=2,
         batch_size=8,
                  progress=False),
     samples=("data",), positive=("lr",), ints=("n_iters", "batch_size"),
     extra=[("net", dict(net=3), "net"), ("drift", dict(drift=3), "drift")])

# --- gaussian (closed forms) ------------------------------------------------------------------------
def _G():
    return dict(m1=torch.zeros(2, dtype=F64), S1=SPD(), m2=torch.ones(2, dtype=F64), S2=SPD())


for _fname in ("w2_squared", "monge_map", "kl"):
    spec(f"gaussian.{_fname}", getattr(gaussian, _fname), _G,
         extra=[("NaN mean", dict(m1=torch.tensor([math.nan, 0.0], dtype=torch.float64)), "m1"),
                ("not SPD", dict(S2=torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)), "S2"),
                ("dim", dict(S1=torch.eye(3, dtype=torch.float64)), "S1")])
spec("gaussian.mmd2", gaussian.mmd2, lambda: _G() | dict(bandwidth=1.0), positive=("bandwidth",))
spec("gaussian.entropic_ot", gaussian.entropic_ot, lambda: _G() | dict(eps=1.0), positive=("eps",))
spec("gaussian.sinkhorn_divergence", gaussian.sinkhorn_divergence, lambda: _G() | dict(eps=1.0),
    positive=("eps",))
def _J():
    zero, one = torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)
    return dict(mean=zero, cov=SPD(), target_mean=one, target_cov=SPD())


spec("gaussian.jko_step_kl", gaussian.jko_step_kl, lambda: _J() | dict(tau=0.5), positive=("tau",))
spec("gaussian.jko_map_kl", gaussian.jko_map_kl, lambda: _J() | dict(tau=0.5), positive=("tau",))
spec("gaussian.euler_step_kl", gaussian.euler_step_kl, lambda: _J() | dict(step_size=0.1),
    positive=("step_size",))

# --- metrics -----------------------------------------------------------------------------------------
for _fname in ("w2_squared", "energy_distance", "mmd2"):
    spec(f"metrics.{_fname}", getattr(metrics, _fname), lambda: dict(x=S(), y=S(7)), samples=("x", "y"),
         pairs=(("x", "y"),))
spec("metrics.sinkhorn_divergence", metrics.sinkhorn_divergence, lambda: dict(x=S(), y=S(7), eps=0.5),
     samples=("x", "y"), pairs=(("x", "y"),), positive=("eps", "tol"), ints=("max_iter",))
spec("metrics.sliced_w2", metrics.sliced_w2, lambda: dict(x=S(), y=S(7), n_projections=5),
     samples=("x", "y"), pairs=(("x", "y"),), ints=("n_projections",))
spec("metrics.mode_coverage", metrics.mode_coverage, lambda: dict(x=S(),
    mixture=targets.get_target("eight_gaussians")),
     samples=("x",), positive=("radius", "min_fraction"), extra=[("mixture", dict(mixture=3), "mixture")])
_SEEDS = [("float seed", dict(seed=2.0), "seed"), ("bool seed", dict(seed=True), "seed")]
spec("metrics.floor", metrics.floor, lambda: dict(target="moons", n=20, n_pairs=2, progress=False),
     ints=("n_pairs",), extra=[("n", dict(n=1), "n"), ("metric", dict(metric="nope"), "metric")] + _SEEDS)
spec("metrics.score_vs_floor", metrics.score_vs_floor, lambda: dict(x=S(20), target="moons", n_refs=1),
     samples=("x",), ints=("n_refs",), extra=[("target", dict(target=3), "target")] + _SEEDS)

# --- train -------------------------------------------------------------------------------------------
spec("train.seed_everything", train.seed_everything, lambda: dict(seed=0), extra=[("seed", dict(seed=-1),
    "seed")])
spec("train.ema_update", train.ema_update, lambda: dict(ema=nets.MLP(2, 2, 4, 1), net=nets.MLP(2, 2, 4,
    1), decay=0.9),
     extra=[("decay", dict(decay=1.5), "decay"), ("NaN", dict(decay=math.nan), "decay")])

# --- benchmark ---------------------------------------------------------------------------------------
spec("benchmark.run", benchmark.run,
     lambda: dict(method="particle_sw", target="moons", n_samples=10, seed=0, budget_s=0.01),
     positive=("budget_s",), extra=[("n_samples", dict(n_samples=0), "n_samples"), ("seed",
         dict(seed=-1), "seed"),
                                    ("method", dict(method="nope"), "method"),
                                    ("seed float", dict(seed=2.0), "seed"),
                                    ("budget beyond 1e6 x nominal", dict(budget_s=1e30), "budget_s")])
spec("benchmark.load_results", benchmark.load_results, lambda: dict(stem="sjko_scaling"),
     extra=[("unknown", dict(stem="nope"), "stem"), ("path", dict(stem="../x"), "stem")])
spec("benchmark.method_info", benchmark.method_info, lambda: dict(method="sjko"),
     extra=[("unknown", dict(method="nope"), "method")])

# --- cifar10: the command line and its configuration (bad settings refused before anything runs) ------
_RUNS = tempfile.TemporaryDirectory(prefix="gwf-reliability-")  # removed when the interpreter exits
_TINY_CLI = ("--smoke --method drifting --image-size 8 --n-synthetic 16 --batch-size 8 --phases 1 "
             "--iters-first 2 --iters 0 --ckpt-every 2 --log-every 2 --fid-samples 0 --no-progress").split()


def _fresh_out() -> str:
    return tempfile.mkdtemp(dir=_RUNS.name)


def _cli(argv):
    """``cifar10.main`` as the sweep sees it: a usage error (exit status 2, argparse's message on stderr)
    becomes a ValueError carrying that message; anything else propagates."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(io.StringIO()):
            return cifar10.main(argv)
    except SystemExit as err:
        if err.code == 2 and printed.getvalue().startswith("usage:"):
            raise ValueError(printed.getvalue()) from None
        raise


def _argv(*flags) -> dict:
    return dict(argv=[*_TINY_CLI, *flags, "--out", _fresh_out()])


_CLI_BAD = [("fid-samples", ("--fid-samples", "1"), "fid_samples"),
            ("n-synthetic", ("--n-synthetic", "1"), "n_synthetic"),
            ("device", ("--device", "nope"), "device"), ("tau", ("--tau", "-1"), "tau"),
            ("seed", ("--seed", "-1"), "seed"), ("seed float", ("--seed", "2.5"), "seed"),
            ("lr", ("--lr-g", "0"), "--lr-g"), ("ema", ("--ema-decay", "1"), "ema_decay")]  # fmt: skip
if not torch.cuda.is_available():
    _CLI_BAD.append(("no GPU", ("--device", "cuda"), "device"))
spec("cifar10.main", _cli, lambda: _argv(),
     extra=[(label, _argv(*flags), name) for label, flags, name in _CLI_BAD])
spec("cifar10.config_from_args", cifar10.config_from_args, lambda: _argv(),
     extra=[(label, _argv(*flags), name) for label, flags, name in _CLI_BAD
            if label != "seed float"])  # argparse's own type error (exit 2) for an int flag: see cifar10.main
spec("cifar10.make_config", cifar10.make_config,
     lambda: dict(method="drifting", net="tiny", data="synthetic", image_size=8, n_synthetic=16,
                  device="cpu"),
     positive=("lr", "ema_decay"), ints=("batch_size", "n_synthetic", "latent_dim", "fid_batch"),
     extra=[("seed float", dict(seed=2.0), "seed"), ("seed", dict(seed=-1), "seed"),
            ("fid_samples", dict(fid_samples=1), "fid_samples"), ("device", dict(device="nope"), "device"),
            ("method", dict(method="gan"), "method"), ("data", dict(data="mnist"), "data")])
spec("cifar10.train", lambda cfg: cifar10.train(cfg, evaluate_at_end=False),
     lambda: dict(cfg=cifar10.config_from_args(_argv()["argv"])[0]), extra=[("cfg", dict(cfg=3), "cfg")])

# --- the rest of the public API -------------------------------------------------------------------
spec("targets.TwoCircles", targets.TwoCircles, lambda: dict(), positive=("std",))
spec("jko.UnbiasedMMD", jko.UnbiasedMMD, lambda: dict(bandwidth=1.0), positive=("bandwidth",))
spec("jko.VariationalFDivergence", jko.VariationalFDivergence, lambda: dict(fdiv="js"),
     extra=[("fdiv", dict(fdiv="nope"), "name"), ("generator_loss", dict(generator_loss="nope"),
         "generator_loss")])
spec("jko.LearnedKernelMMD", jko.LearnedKernelMMD, lambda: dict(), ints=("feature_dim",))
spec("jko.PushforwardKL", jko.PushforwardKL, lambda: dict(target=targets.get_target("gaussian")),
     extra=[("target", dict(target=3), "target")])
spec("jko.GaussianPushforwardKL", jko.GaussianPushforwardKL,
     lambda: dict(source_mean=torch.zeros(2), source_cov=torch.eye(2), target_mean=torch.ones(2),
         target_cov=SPD()),
     extra=[("not SPD", dict(target_cov=torch.tensor([[1.0, 2.0], [2.0, 1.0]])), "target_cov")])
spec("jko.GaussianPushforwardMMD", jko.GaussianPushforwardMMD,
     lambda: dict(source_mean=torch.zeros(2), source_cov=torch.eye(2), target_mean=torch.ones(2),
                  target_cov=SPD(), bandwidth=1.0), positive=("bandwidth",))
spec("jko.train_variants", jko.train_variants,
     lambda: dict(variants={"mmd": dict(objective="mmd_u", tau=1.0)},
                  make_map=lambda: nets.ResidualMLP(2, 8, 1), source=latent, data=S(50), n_phases=1,
                  n_samples=10, n_iters=1, progress=False),
     ints=("n_phases", "n_samples"), extra=[("variants", dict(variants={}), "variants"),
                                           ("make_map", dict(make_map=3), "make_map")])
spec("sjko.LatentMap", sjko.LatentMap, lambda: dict(net=nets.MLP(4, 2, 8, 1)), extra=[("net",
    dict(net=3), "net")])
spec("sjko.toy_trainer", sjko.toy_trainer, lambda: dict(dim=2, hidden=8), ints=("dim",),
     extra=[("seed", dict(seed=-1), "seed")])
spec("sjko.affine_trainer", sjko.affine_trainer, lambda: dict(dim=2, tau=1.0), ints=("dim",),
    positive=("tau",))
spec("metrics.mixture_scores", metrics.mixture_scores,
     lambda: dict(x=S(20), mixture=targets.get_target("eight_gaussians"),
                  floor_result=metrics.floor("eight_gaussians", 20, "energy", n_pairs=2, progress=False)),
     samples=("x",), extra=[("floor", dict(floor_result=3), "floor_result")] + _SEEDS)
spec("nets.GradientMap", nets.GradientMap, lambda: dict(potential=nets.ICNN(2, 8, 1)),
     extra=[("potential", dict(potential=3), "potential")])
spec("nets.ConvGenerator", nets.ConvGenerator, lambda: dict(latent_dim=4, channels=1, size=8, width=8),
     ints=("latent_dim", "channels", "width"))
spec("nets.ConvCritic", nets.ConvCritic, lambda: dict(channels=1, size=8, width=8, n_down=1, n_blocks=1),
     ints=("channels", "width"))
spec("gaussian.relative_fisher_information", gaussian.relative_fisher_information, _G,
     extra=[("not SPD", dict(S2=torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=torch.float64)), "S2")])
spec("gaussian.jko_objective_kl", gaussian.jko_objective_kl,
     lambda: _J() | dict(prev_mean=torch.zeros(2, dtype=torch.float64), prev_cov=SPD(), tau=0.5),
         positive=("tau",))
def _J0():
    zero, one = torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)
    return dict(mean0=zero, cov0=SPD(), target_mean=one, target_cov=SPD())


spec("gaussian.ou_flow", gaussian.ou_flow, lambda: _J0() | dict(t=0.5), extra=[("t", dict(t=-1.0), "t")])
spec("gaussian.jko_iterates_kl", gaussian.jko_iterates_kl, lambda: _J0() | dict(tau=0.5, n_steps=2),
     positive=("tau",), ints=("n_steps",))
spec("gaussian.euler_iterates_kl", gaussian.euler_iterates_kl, lambda: _J0() | dict(step_size=0.1, n_steps=2),
     positive=("step_size",), ints=("n_steps",))
spec("projected.affine_metric_tensor", projected.affine_metric_tensor,
     lambda: dict(mean=torch.zeros(2), second_moment=torch.eye(2)),
     extra=[("NaN", dict(mean=torch.tensor([math.nan, 0.0])), "mean"), ("shape",
         dict(second_moment=torch.eye(3)),
                                                                         "second_moment")])
spec("projected.objective_gradient", projected.objective_gradient,
     lambda: dict(map_net=nets.AffineMap(2), objective=functionals.MMD("gaussian", 1.0), z=S(), y=S(7)),
     samples=("z", "y"))
spec("projected.affine_gaussian_path", projected.affine_gaussian_path,
     lambda: dict(params=torch.zeros(3, 6), mean=torch.zeros(2), cov=torch.eye(2)),
     extra=[("params", dict(params=torch.zeros(3, 5)), "params")])
spec("train.make_generator", train.make_generator, lambda: dict(seed=0), extra=[("seed", dict(seed=-1),
    "seed")])
spec("benchmark.applicable", benchmark.applicable, lambda: dict(method="langevin", target="moons"),
     extra=[("method", dict(method="nope"), "method"), ("target", dict(target=3), "target")])
spec("benchmark.list_methods", benchmark.list_methods, lambda: dict(family="jko"),
     extra=[("family", dict(family="nope"), "family")])
spec("benchmark.Standardizer.from_samples", benchmark.Standardizer.from_samples, lambda: dict(y=S()),
     samples=("y",))

# --- plot: shapes only (matplotlib draws what is finite, and an empty sample is an empty figure) ----
def _closing(fn):
    def call(**kw):
        import matplotlib.pyplot as plt

        try:
            return fn(**kw)
        finally:
            plt.close("all")

    return call


spec("plot.scatter", _closing(plot.scatter), lambda: dict(x=S()), samples=("x",), nan=False, empty=False)
spec("plot.compare_samples", _closing(plot.compare_samples), lambda: dict(x=S(), y=S(7)), samples=("x", "y"),
     nan=False, empty=False)
spec("plot.trajectories", _closing(plot.trajectories), lambda: dict(frames=torch.randn(3, 5, 2)),
     samples=("frames",), nan=False, empty=False)
# fmt: on


# ---------------------------------------------------------------------------------------------
# cases
# ---------------------------------------------------------------------------------------------


def _nan(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = math.nan
    return t


def _cases():
    for sp in SPECS:
        yield pytest.param(sp, "ok", {}, None, id=f"{sp.name}-ok")
        for a in sp.samples:
            yield pytest.param(sp, "1-D", {a: lambda kw, a=a: kw[a][:, 0]}, a, id=f"{sp.name}-{a}-1D")
            if sp.nan:
                yield pytest.param(sp, "NaN", {a: lambda kw, a=a: _nan(kw[a])}, a, id=f"{sp.name}-{a}-NaN")
            if sp.empty:
                yield pytest.param(sp, "empty", {a: lambda kw, a=a: kw[a][:0]}, a, id=f"{sp.name}-{a}-empty")
        for a in sp.vectors:
            two_d = {a: lambda kw, a=a: kw[a][:, None].expand(-1, 3)}
            yield pytest.param(sp, "2-D", two_d, a, id=f"{sp.name}-{a}-2D")
            if sp.nan:
                yield pytest.param(sp, "NaN", {a: lambda kw, a=a: _nan(kw[a])}, a, id=f"{sp.name}-{a}-NaN")
            yield pytest.param(sp, "empty", {a: lambda kw, a=a: kw[a][:0]}, a, id=f"{sp.name}-{a}-empty")
        for a, b in sp.pairs:
            dtype = {b: lambda kw, b=b: kw[b].double()}
            yield pytest.param(sp, "dtype", dtype, (a, b), id=f"{sp.name}-{b}-dtype")
            dim = {b: lambda kw, b=b: torch.cat([kw[b], kw[b][:, :1]], 1)}
            yield pytest.param(sp, "dim", dim, (a, b), id=f"{sp.name}-{b}-dim")
        for a in sp.positive:
            for v in (0.0, -1.0, math.nan):
                yield pytest.param(sp, f"{a}={v}", {a: lambda kw, v=v: v}, a, id=f"{sp.name}-{a}={v}")
        for a in sp.ints:
            for v in (0, 1.5):
                yield pytest.param(sp, f"{a}={v}", {a: lambda kw, v=v: v}, a, id=f"{sp.name}-{a}={v}")
        for label, over, a in sp.extra:
            yield pytest.param(sp, label, {k: (lambda kw, v=v: v) for k, v in over.items()}, a,
                               id=f"{sp.name}-{label}")  # fmt: skip


def _named(message: str, names) -> bool:
    names = (names,) if isinstance(names, str) else names
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}", message) for n in names)


@pytest.mark.parametrize(("sp", "label", "spoil", "names"), list(_cases()))
def test_public_api_rejects_bad_input(sp, label, spoil, names):
    torch.manual_seed(0)
    kw = sp.kwargs()
    for key, make in spoil.items():
        kw[key] = make(kw)
    if names is None:
        sp.fn(**kw)  # the good call must work, so that the spoiled ones test the checks
        return
    with pytest.raises(BAD) as err:
        sp.fn(**kw)
    message = f"{sp.name} [{label}]: the message does not name {names}: {err.value}"
    assert _named(str(err.value), names), message


# ---------------------------------------------------------------------------------------------
# extreme values and dtypes; outcome counts
# ---------------------------------------------------------------------------------------------
# Modules that other parts of the "one recipe" rework are rewriting now: their outcomes are counted
# and printed, but not asserted here, until the rework lands (then this list shrinks to nothing).
EXCLUDED_PENDING_REWORK: tuple[str, ...] = ()
# Outside the files of this change, with known failures of the second sweep (to fix there): none left
# (plot, projected, critics, fdiv, benchmark and the cifar10 command line are asserted now).
EXCLUDED_OUTSIDE_THIS_CHANGE: tuple[str, ...] = ()
LOW_PRECISION = (torch.float16, torch.bfloat16)
CLEAR, ACCEPTED, SILENT_NAN, SILENT_INVALID, UNCLEAR = (
    "clear error", "accepted-correct", "silent NaN/Inf", "silent invalid", "unclear error")  # fmt: skip


def _asserted(sp: Spec) -> bool:
    return not sp.name.startswith(EXCLUDED_PENDING_REWORK + EXCLUDED_OUTSIDE_THIS_CHANGE)


def _set_first(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = value
    return t


def _extreme_cases():
    """(spec, label, spoil, names, reference): ``reference`` (or None) spoils the same argument into
    the value the spoiled call must reproduce if it accepts the input."""
    for sp in SPECS:
        for a in sp.samples + sp.vectors:
            if sp.nan:  # per-iteration primitives (nan=False) check no values, only shapes and dtypes
                yield sp, "1e30", {a: lambda kw, a=a: _set_first(kw[a], 1e30)}, a, None
            for dt in LOW_PRECISION:
                low = {a: lambda kw, a=a, dt=dt: kw[a].to(dt)}
                ref = {a: lambda kw, a=a, dt=dt: kw[a].to(dt).to(kw[a].dtype)}
                yield sp, str(dt).split(".")[1], low, a, ref
            as_int = {a: lambda kw, a=a: kw[a].round().long()}
            ref = {a: lambda kw, a=a: kw[a].round().to(torch.get_default_dtype())}
            yield sp, "int64", as_int, a, ref
        for a in sp.positive:
            yield sp, f"{a}=1e30", {a: lambda kw: 1e30}, a, None


def _tensors(out, depth: int = 0):
    """The tensors and floats in a result (tensors, numbers, tuples, lists, dicts, dataclasses)."""
    if depth > 3:
        return
    if isinstance(out, torch.Tensor):
        yield out.detach()
    elif isinstance(out, float):
        yield torch.tensor(out)
    elif isinstance(out, tuple | list):
        for o in out:
            yield from _tensors(o, depth + 1)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _tensors(o, depth + 1)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from _tensors(getattr(out, f.name), depth + 1)


def _finite(out) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in _tensors(out) if t.is_floating_point())


def _same(out, ref) -> bool:
    a, b = list(_tensors(out)), list(_tensors(ref))
    close = [x.shape == y.shape and torch.allclose(x.double(), y.double(), rtol=1e-4, atol=1e-6)
             for x, y in zip(a, b)]  # fmt: skip
    return len(a) == len(b) and all(close)


def _call(sp: Spec, spoil: dict):
    torch.manual_seed(0)
    kw = sp.kwargs()
    for key, make in spoil.items():
        kw[key] = make(kw)
    return sp.fn(**kw)


def _outcome(sp: Spec, spoil: dict, names, reference: dict | None, must_reject: bool) -> tuple[str, str]:
    """Classify one spoiled call; returns (outcome, detail)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = _call(sp, spoil)
        except BAD as err:
            return (CLEAR if _named(str(err), names) else UNCLEAR), f"{type(err).__name__}: {err}"
        except Exception as err:  # noqa: BLE001 - anything else is an unclear error
            return UNCLEAR, f"{type(err).__name__}: {err}"
        if not _finite(out):
            return SILENT_NAN, "returned NaN/Inf"
        if must_reject:
            return SILENT_INVALID, "accepted input that must be refused"
        if reference is not None and not _same(out, _call(sp, reference)):
            return SILENT_INVALID, "accepted, but the result differs from the same values in the input dtype"
        return ACCEPTED, ""


_EXTREME = [pytest.param(*c, id=f"{c[0].name}-{c[3]}-{c[1]}") for c in _extreme_cases()]


@pytest.mark.parametrize(("sp", "label", "spoil", "names", "reference"), _EXTREME)
def test_extreme_values_and_dtypes(sp, label, spoil, names, reference):
    """1e30 entries, 1e30 hyperparameters, low-precision and integer tensors: a finite (and, for a
    dtype, unchanged) result, or an error naming the argument."""
    if not _asserted(sp):
        pytest.skip("module in EXCLUDED_PENDING_REWORK or EXCLUDED_OUTSIDE_THIS_CHANGE")
    outcome, detail = _outcome(sp, spoil, names, reference, must_reject=False)
    assert outcome in (CLEAR, ACCEPTED), f"{sp.name} [{label}] on {names}: {outcome}: {detail}"


def test_sweep_outcome_counts(record_property):
    """Both sweeps, every case classified; printed with ``pytest -s`` and recorded in the report.

    Asserted for the modules not in ``EXCLUDED_PENDING_REWORK``: no silent NaN/Inf, no silently
    accepted invalid input, unclear errors under 2 %.
    """
    counts = {True: Counter(), False: Counter()}
    failures = []
    for p in _cases():
        sp, label, spoil, names = p.values
        if names is None:
            continue
        outcome, detail = _outcome(sp, spoil, names, None, must_reject=True)
        counts[_asserted(sp)][outcome] += 1
        if _asserted(sp) and outcome != CLEAR:
            failures.append(f"{sp.name} [{label}]: {outcome}: {detail}")
    for sp, label, spoil, names, reference in _extreme_cases():
        outcome, detail = _outcome(sp, spoil, names, reference, must_reject=False)
        counts[_asserted(sp)][outcome] += 1
        if _asserted(sp) and outcome not in (CLEAR, ACCEPTED):
            failures.append(f"{sp.name} [{label}]: {outcome}: {detail}")
    order = (CLEAR, ACCEPTED, SILENT_NAN, SILENT_INVALID, UNCLEAR)
    lines = ["reliability sweep: outcome counts (spoiled calls)"]
    for key, title in ((True, "asserted modules"), (False, "EXCLUDED_* modules (counted only)")):
        total = sum(counts[key].values())
        row = ", ".join(f"{o}: {counts[key][o]}" for o in order)
        lines.append(f"  {title:40s} {total:5d} calls -- {row}")
    print("\n" + "\n".join(lines))
    record_property("reliability_sweep", "; ".join(lines[1:]))
    mine = counts[True]
    assert mine[SILENT_NAN] == 0 and mine[SILENT_INVALID] == 0, failures
    assert mine[UNCLEAR] < 0.02 * sum(mine.values()), failures


def test_every_public_function_is_swept():
    """Every public callable of the swept modules has a spec (classes count through their constructor)."""
    import inspect

    swept = {sp.name.split(".",
        1)[1] if "." in sp.name else sp.name for sp in SPECS} | {sp.name for sp in SPECS}
    skip = {
        # results and protocols, not functions of data
        "Trajectory", "FlowDivergedError", "FFlowResult", "PhaseRecord", "DriftingHistory",
        "CriticHistory", "LogisticRatio", "ModeCoverage", "Floor", "ScoreVsFloor", "ProjectedFlowResult",
        "DriftField", "Objective", "Kernel", "Target", "CriticObjective", "PushforwardObjective",
        "MethodInfo",
        "NotApplicableError", "Standardizer", "VariantRun", "AffineMap", "FDivergence", "ExactLogRatio",
        # listing and bookkeeping helpers without data arguments
        "list_targets", "list_methods", "device", "make_generator", "progress", "rng_state", "set_rng_state",
        "atomic_save", "applicable",
        # summaries of the committed benchmark results (tests/test_benchmark.py)
        "summarize", "headline", "family_ratios", "goals", "throughput_table",
        # no arguments
        "WassersteinCritic",
        # image metrics on a feature extractor: checked in tests/test_metrics.py
        "frechet_distance", "kernel_distance",
    }
    missing = []
    for mod in (targets, kernels, fdiv, functionals, critics, flows, jko, fflows, sjko, drifting,
        metrics, benchmark):
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj) or name in skip or name.isupper():
                continue
            if name not in swept and inspect.getmodule(obj) is mod:
                missing.append(f"{mod.__name__}.{name}")
    # a little room for functions that other modules add later; the list must stay short
    assert len(missing) <= 3, missing


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
@pytest.mark.parametrize("sp", [sp for sp in SPECS if sp.pairs], ids=lambda sp: sp.name)
def test_mismatched_devices_are_rejected(sp):
    kw = sp.kwargs()
    a, b = sp.pairs[0]
    kw[b] = kw[b].cuda()
    with pytest.raises(BAD) as err:
        sp.fn(**kw)
    assert _named(str(err.value), (a, b, "device"))


def test_benchmark_run_refuses_float_seeds_and_endless_budgets():
    # a float seed is refused, not validated and then used (random.seed(2.0) != torch.manual_seed(2));
    # a budget whose iteration counts overflow (1e30 s) is refused naming budget_s, not an OverflowError
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        benchmark.run("particle_sw", "moons", 10, seed=2.0, budget_s=0.01)
    nominal = benchmark.method_info("particle_sw").budget_s
    with pytest.raises(ValueError, match=r"budget_s must be at most 1e\+06 times the nominal budget"):
        benchmark.run("particle_sw", "moons", 10, seed=0, budget_s=1e30)
    with pytest.raises(ValueError, match="budget_s"):
        benchmark.run("particle_sw", "moons", 10, seed=0, budget_s=1.01e6 * nominal)
    import numpy as np

    a = benchmark.run("particle_sw", "moons", 10, seed=np.int64(3), budget_s=0.01)
    assert torch.equal(a, benchmark.run("particle_sw", "moons", 10, seed=3, budget_s=0.01))


# ---------------------------------------------------------------------------------------------
# determinism of every method
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", benchmark.list_methods())
def test_every_method_is_deterministic_on_cpu(method):
    t = targets.get_target("eight_gaussians")
    budget = 2e-3 * benchmark.method_info(method).budget_s
    a = benchmark.run(method, t, 32, seed=7, budget_s=budget)
    b = benchmark.run(method, t, 32, seed=7, budget_s=budget)
    assert torch.equal(a, b)
