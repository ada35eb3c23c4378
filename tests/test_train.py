"""Tests of gwf_tutorial.train: device choice, seeding, generators, progress bars."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gwf_tutorial import train
from gwf_tutorial.train import device, make_generator, progress, seed_everything


def test_device_honours_env_and_prefer(monkeypatch):
    monkeypatch.setenv("GWF_DEVICE", "cpu")
    assert device() == torch.device("cpu")
    monkeypatch.setenv("GWF_DEVICE", "meta")  # any device string, even one without a backend here
    assert device() == torch.device("meta")
    assert device("cpu") == torch.device("cpu")  # an explicit choice wins over the environment
    monkeypatch.delenv("GWF_DEVICE")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert device() == torch.device(expected)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device() == torch.device("cuda")


def _draw(gen):
    return (
        random.random(),
        float(np.random.rand()),
        float(torch.rand(())),
        float(torch.rand((), generator=gen)),
    )


def test_seed_everything_reproducible():
    a = _draw(seed_everything(123))
    b = _draw(seed_everything(123))
    assert a == b
    c = _draw(seed_everything(124))
    assert all(u != v for u, v in zip(a, c))
    # the returned generator is an independent stream seeded alike: it equals torch's after the same seed
    g = seed_everything(7)
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=make_generator(7)))
    # large seeds: numpy takes them modulo 2^32
    seed_everything(2**40 + 5)
    x = np.random.rand()
    np.random.seed(5)
    assert np.random.rand() == x


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        seed_everything(bad)


def test_make_generator():
    g1, g2 = make_generator(11), make_generator(11)
    assert torch.equal(torch.randn(4, generator=g1), torch.randn(4, generator=g2))
    assert g1.device == torch.device("cpu")
    # seed None: drawn from torch's global generator, so reproducible after seeding it
    torch.manual_seed(0)
    s1 = make_generator().initial_seed()
    torch.manual_seed(0)
    assert make_generator().initial_seed() == s1
    assert make_generator().initial_seed() != s1


def test_progress_disabled_by_env(monkeypatch, capsys):
    monkeypatch.setenv("GWF_PROGRESS", "0")
    bar = progress(range(5), desc="loop")
    assert bar.disable
    assert list(bar) == [0, 1, 2, 3, 4]
    assert "loop" not in capsys.readouterr().err
    monkeypatch.setenv("GWF_PROGRESS", "1")
    bar = progress(range(3), desc="shown")
    assert not bar.disable
    assert list(bar) == [0, 1, 2]
    bar.close()
    assert progress(range(3), disable=True).disable  # an explicit choice wins
    monkeypatch.setenv("GWF_PROGRESS", "0")
    bar = progress(range(3), disable=False)
    assert not bar.disable
    bar.close()
    monkeypatch.delenv("GWF_PROGRESS")
    bar = progress(total=4)  # enabled by default, usable without an iterable
    assert not bar.disable and bar.total == 4
    bar.close()


def test_module_exports():
    assert set(train.__all__) == {
        "device",
        "seed_everything",
        "make_generator",
        "progress",
        "rng_state",
        "set_rng_state",
        "atomic_save",
        "ema_update",
    }


def test_rng_state_round_trip_and_atomic_save(tmp_path):
    g = torch.Generator().manual_seed(3)
    train.seed_everything(1)
    state = train.rng_state(g)
    train.atomic_save(state, tmp_path / "rng.pt")
    assert not (tmp_path / "rng.pt.tmp").exists()
    first = (torch.rand(3, generator=g), torch.rand(3), np.random.rand(3), random.random())
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)
    train.set_rng_state(loaded, g)
    again = (torch.rand(3, generator=g), torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert np.array_equal(first[2], again[2]) and first[3] == again[3]
    with pytest.raises(ValueError, match="generator"):
        train.set_rng_state(loaded, None)
    with pytest.raises(ValueError, match="state"):
        train.set_rng_state({"torch": 1})


def test_ema_update():
    net, ema = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        for p in ema.parameters():
            p.fill_(0.0)
    train.ema_update(ema, net, 0.9)
    assert all(torch.allclose(p, torch.full_like(p, 0.1)) for p in ema.parameters())
    with pytest.raises(ValueError, match="decay"):
        train.ema_update(ema, net, 1.0)
