"""Tests of gwf_tutorial.methods: every method a named function, one table of their three choices."""

from __future__ import annotations

import inspect

import pytest
import torch

from gwf_tutorial import benchmark, flows, functionals, methods, train
from gwf_tutorial.methods import FAMILIES, METHODS

FUNCTIONS = sorted({row.function for row in METHODS.values()}, key=lambda f: f.__name__)


def test_the_map_names_a_public_function_and_three_choices_per_row():
    for name, row in METHODS.items():
        fname = row.function.__name__
        assert fname in methods.__all__ and getattr(methods, fname) is row.function
        assert row.family in FAMILIES and 2 <= row.chapter <= 8, name
        for choice in (row.objective, row.discretization, row.parametrization):
            assert isinstance(choice, str) and choice.strip(), name
        params = inspect.signature(row.function).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key in row.options:  # every option is a keyword the function takes
            assert key in params or takes_any, (name, key)
    # the benchmark's names are rows; the methods it does not run are the ones with their own setting
    assert set(benchmark.list_methods()) <= set(METHODS)
    assert set(METHODS) - set(benchmark.list_methods()) == {"vwgf", "jko_icnn"}
    assert benchmark.FAMILIES is FAMILIES


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_every_method_is_short_and_says_its_paper_and_choices(fn):
    lines, _ = inspect.getsourcelines(fn)
    assert len(lines) <= 60, f"{fn.__name__} has {len(lines)} lines"
    doc = fn.__doc__
    for word in ("Objective", "discretization", "parametrization", "Used in", "References"):
        assert word in doc, (fn.__name__, word)


def test_paper_names_are_functions():
    names = ("gwf vwgf sjko jko_icnn gan fgan wgan_gp mmd_gan gmmn vgrow ept monoflow dgflow drifting "
             "mmd_flow sliced_wasserstein_flow sinkhorn_flow kl_flow langevin f_flow").split()
    for name in names:
        assert callable(getattr(methods, name)) and name in methods.__all__


def test_mmd_flow_geometric_step_is_the_schedule_of_the_flow_library():
    g = torch.Generator().manual_seed(0)
    x0, y = torch.randn(40, 2, generator=g), 1.0 + 0.5 * torch.randn(60, 2, generator=g)
    x = methods.mmd_flow(x0, y, kernel="energy", final_step_size=0.5, noise_level=0.0, n_steps=7)
    ref = flows.particle_flow(x0, functionals.MMD("energy"), y, lambda i: 3.0 * (0.5 / 3.0) ** (i / 6), 7,
                              track_value=False, progress=False)  # fmt: skip
    assert torch.equal(x, ref.x)
    # the schedule starts at step_size: a single step is one Euler step of size 3
    one = methods.mmd_flow(x0, y, kernel="energy", final_step_size=0.5, noise_level=0.0, n_steps=1)
    v = functionals.MMD("energy").velocity(x0, y)
    assert torch.allclose(one, x0 + 3.0 * v)


def test_drifting_field_by_name_or_object_and_a_clear_error():
    y = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="field must be one of .*algorithm2"):
        methods.drifting(y, "nope", n_iters=1)
    train.seed_everything(0)
    a = methods.drifting(y, "algorithm2", n_iters=3, batch_size=16, generator=train.make_generator(1))
    train.seed_everything(0)
    field = methods.DRIFT_FIELDS["algorithm2"](None)
    b = methods.drifting(y, field, n_iters=3, batch_size=16, generator=train.make_generator(1))
    g1, g2 = train.make_generator(2), train.make_generator(2)
    assert torch.equal(a.sample(10, generator=g1), b.sample(10, generator=g2))


def test_vwgf_is_gwf_with_composed_maps():
    y = 2.0 + torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    chain = methods.vwgf(y, n_phases=2, n_iters=2)
    assert chain.parametrization == "composed" and len(chain.history) == 2
    assert methods.gwf(y, n_phases=1, n_iters=2).parametrization == "reparameterized"


def test_jko_icnn_contracts_towards_a_narrow_gaussian():
    # KL(rho || N(0, s^2 I)) with s^2 = 0.25 from N(0, I): the JKO steps shrink the variance towards s^2
    class Narrow:
        def log_prob(self, x):
            return -2.0 * (x**2).sum(-1)

    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    train.seed_everything(0)
    chain = methods.jko_icnn(Narrow(), z, 0.2, n_phases=3, n_iters=30)
    with torch.no_grad():
        ratio = chain.push(z).var(0) / z.var(0)
    assert bool((ratio > 0.25).all() and (ratio < 0.8).all()), ratio


def test_particle_methods_return_particles_and_trained_methods_a_sampler():
    g = torch.Generator().manual_seed(0)
    x0, y = torch.randn(30, 2, generator=g), torch.randn(300, 2, generator=g)
    x = methods.sliced_wasserstein_flow(x0, y, n_steps=3, generator=train.make_generator(0))
    assert x.shape == x0.shape and not torch.equal(x, x0)
    chain = methods.gan(y, n_iters=2)
    assert chain.sample(7, generator=train.make_generator(0)).shape == (7, 2)
    trainer = methods.sjko(y, n_phases=1, n_iters=2)
    assert trainer.push(x0).shape == x0.shape


def test_bad_data_is_rejected_at_the_method_naming_the_argument():
    flat = torch.ones(5)
    for fn in (methods.gwf, methods.gan, methods.gmmn, methods.sjko, methods.drifting):
        with pytest.raises(ValueError, match=r"y must have shape \(n, d\)"):
            fn(flat)
    with pytest.raises(ValueError, match="y must be finite|y.*NaN|y.*finite"):
        methods.wgan_gp(torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match=r"x0 must have shape \(n, d\)"):
        methods.vgrow(flat, torch.ones(5, 1))
    with pytest.raises(TypeError, match="dim"):
        methods.jko_icnn(lambda x: -(x**2).sum(-1), lambda n, generator=None: torch.randn(n, 2))
