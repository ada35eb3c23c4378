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
    assert set(train.__all__) == {"device", "seed_everything", "make_generator", "progress"}
