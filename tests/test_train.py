"""Tests of gwf_tutorial.train: device choice, seeding, generators, progress bars, the checkpoint format."""

from __future__ import annotations

import random
import re
from pathlib import Path

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
        "save_checkpoint",
        "load_checkpoint",
        "ema_update",
        "DistInfo",
        "init_distributed",
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


# ---------------------------------------------------------------- one device rule


def _entry_point(name: str):
    """Inputs on the CPU (built here), and a call of the public training entry point ``name`` on them."""
    from gwf_tutorial import cifar10, drifting, fflows, jko, nets, projected, sjko

    g = train.make_generator(0)
    z, y = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g) + 2.0
    net, pot = nets.MLP(2, 2, hidden=8, depth=1), nets.MLP(2, 1, hidden=8, depth=1)
    affine = nets.AffineMap(2)
    small = {"critic_iters": 2, "first_critic_iters": 3, "hidden": 8, "progress": False}
    if name == "cifar10.Trainer":  # builds its own networks, on train.device() (the CPU here)
        cfg = cifar10.smoke_config("jko-kldv", image_size=8, n_synthetic=64, batch_size=8, device="")
        tr = cifar10.Trainer(cfg)
        return lambda: [tr.train_step() for _ in range(2)]
    calls = {
        "jko.ParametricJKO": lambda: jko.ParametricJKO(
            net, "kl", 0.5, z, y, n_iters=3, batch_size=16, critic_hidden=8, seed=0, progress=False
        ).run(2),
        "sjko.SemiDualJKO": lambda: sjko.SemiDualJKO(
            net, pot, "kl", tau=0.5, n_iters=3, batch_size=16, seed=0
        ).run(2, z, y, progress=False),
        "drifting.train_drifting": lambda: drifting.train_drifting(
            net,
            y,
            drifting.MultiTemperatureDrift(),
            n_iters=3,
            batch_size=16,
            generator=train.make_generator(1),
            progress=False,
        ),  # fmt: skip
        "fflows.f_flow": lambda: fflows.f_flow(
            z, y, "kl", 0.05, 2, generator=train.make_generator(2), **small
        ),
        "fflows.vgrow": lambda: fflows.vgrow(
            z,
            y,
            "kl",
            0.05,
            2,
            generator_net=net,
            inner_steps=1,
            fit_iters=2,
            generator=train.make_generator(2),
            **small,
        ),  # fmt: skip
        "fflows.ept": lambda: fflows.ept(z, y, "kl", 0.05, 2, generator=train.make_generator(2), **small),
        "projected.projected_flow": lambda: projected.projected_flow(
            affine,
            jko.UnbiasedMMD("gaussian", bandwidth=[1.0]),
            z,
            y,
            method="jko",
            n_steps=2,
            n_iters=2,
            progress=False,
        ),  # fmt: skip
    }
    return calls[name]


ENTRY_POINTS = [
    "jko.ParametricJKO",
    "sjko.SemiDualJKO",
    "drifting.train_drifting",
    "fflows.f_flow",
    "fflows.vgrow",
    "fflows.ept",
    "projected.projected_flow",
    "cifar10.Trainer",
]


_FACTORIES = {
    torch.randn, torch.rand, torch.randint, torch.randperm, torch.normal, torch.zeros, torch.ones,
    torch.empty, torch.full, torch.arange, torch.linspace, torch.logspace, torch.eye, torch.tensor,
}  # fmt: skip


class _DefaultDeviceTrap(torch.overrides.TorchFunctionMode):
    """Creates on ``meta`` (tensors without data) every tensor that a factory would put on the *default*
    device: no ``device=`` argument, no ``generator=`` (a generator fixes the device itself), not a number
    (0-d tensors mix with any device). Modules pass ``device=None`` explicitly, so building a network on the
    CPU and moving it (``.to(device)``) is not trapped."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        scalar = func is torch.tensor and args and isinstance(args[0], int | float | bool)
        if func in _FACTORIES and "device" not in kwargs and kwargs.get("generator") is None and not scalar:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_training_entry_points_compute_on_their_inputs_device(name, tmp_path, monkeypatch):
    # The rule (train's module docstring): compute where the inputs are. A tensor created on the *default*
    # device instead (a forgotten ``device=``) is what breaks on a GPU, where the default is the CPU and the
    # inputs are on CUDA. Here the roles are swapped: the inputs are on the CPU and such tensors are created
    # on ``meta``, so any of them makes the run fail (mixed devices, or reading a value that does not exist).
    monkeypatch.chdir(tmp_path)
    call = _entry_point(name)
    with _DefaultDeviceTrap():
        call()
    with pytest.raises((RuntimeError, NotImplementedError)), _DefaultDeviceTrap():  # the trap can fail
        float(torch.randn(3).sum() + torch.ones(3, device="cpu").sum())


def test_trainer_takes_its_device_from_train_device(monkeypatch, tmp_path):
    from gwf_tutorial import cifar10

    asked = []

    def fake(prefer=None):
        asked.append(prefer)
        return torch.device("cpu")

    monkeypatch.setattr(train, "device", fake)
    small = {"image_size": 8, "n_synthetic": 64, "batch_size": 8, "out": str(tmp_path)}
    tr = cifar10.Trainer(cifar10.smoke_config("sjko", device="", **small))
    assert asked == [None] and tr.device == torch.device("cpu")
    cifar10.Trainer(cifar10.smoke_config("sjko", device="cpu", **small))
    assert asked == [None, "cpu"]  # an explicit setting goes through the same function
    assert cifar10.init_distributed(env={"WORLD_SIZE": "1"}).world_size == 1 and asked[-1] is None


# ---------------------------------------------------------------- the checkpoint format


def damaged_copies(path) -> list[Path]:
    """Three damaged copies of a checkpoint beside it: 64 flipped bytes in the middle, half of it, empty."""
    path = Path(path)
    data = path.read_bytes()
    mid = len(data) // 2
    flipped = bytearray(data)
    for i in range(mid - 32, mid + 32):
        flipped[i] ^= 0xFF
    out = []
    for what, content in (("flipped", bytes(flipped)), ("truncated", data[: len(data) // 2]), ("empty", b"")):
        p = path.with_name(f"{what}-{path.name}")
        p.write_bytes(content)
        out.append(p)
    return out


def assert_damaged_checkpoints_refused(path, load) -> None:
    """``load(p)`` refuses every damaged copy of ``path`` with a ValueError naming it, and keeps the file."""
    for p in damaged_copies(path):
        before = p.read_bytes()
        with pytest.raises(ValueError, match=re.escape(str(p))):
            load(p)
        assert p.read_bytes() == before


def _toy_state():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return net, opt, {"net": net.state_dict(), "opt": opt.state_dict(), "rng": train.rng_state(), "step": 7}


def test_checkpoint_round_trip(tmp_path):
    net, opt, state = _toy_state()
    path = tmp_path / "c.pt"
    config = {"lr": 1e-3, "betas": (0.5, 0.9), "name": "kl", "gamma": float("nan")}
    config.update(f=print, g=damaged_copies)  # objects: their repr, or their name when it is an address
    train.save_checkpoint(path, state, kind="test", config=config)
    assert not (tmp_path / "c.pt.tmp").exists()
    assert path.read_bytes().startswith(b"GWFCKPT 1 ")
    loaded, saved = train.load_checkpoint(path, kind="test", config=config)
    assert saved == {"lr": 1e-3, "betas": [0.5, 0.9], "name": "kl", "gamma": "nan"} | {
        "f": repr(print), "g": "damaged_copies"
    }
    assert loaded["step"] == 7
    assert all(torch.equal(a, b) for a, b in zip(loaded["net"].values(), net.state_dict().values()))
    assert torch.equal(loaded["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(loaded["rng"]["torch"], state["rng"]["torch"])


def test_checkpoint_refuses_damage_other_kinds_and_other_hyperparameters(tmp_path):
    _, _, state = _toy_state()
    path = tmp_path / "c.pt"
    train.save_checkpoint(path, state, kind="test", config={"lr": 1e-3, "batch": 8, "out": "a"})
    assert_damaged_checkpoints_refused(path, lambda p: train.load_checkpoint(p))
    for what, p in zip(("changed bytes", "truncated", "empty"), damaged_copies(path)):
        with pytest.raises(ValueError, match=what):
            train.load_checkpoint(p)
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a gwf_tutorial checkpoint.*zip"):
        train.load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="does not exist"):
        train.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="written by test, not by other"):
        train.load_checkpoint(path, kind="other")
    diff = r"batch: 8 in the checkpoint, 16 now; lr: 0.001 in the checkpoint, 0.01 now"
    with pytest.raises(ValueError, match=diff):
        train.load_checkpoint(path, config={"lr": 1e-2, "batch": 16, "out": "a"})
    with pytest.raises(ValueError, match=r"extra: '\(absent\)' in the checkpoint, 1 now"):
        train.load_checkpoint(path, config={"lr": 1e-3, "batch": 8, "out": "a", "extra": 1})
    _, saved = train.load_checkpoint(path, config={"lr": 1e-3, "batch": 8, "out": "b"}, ignore=("out",))
    assert saved["out"] == "a"
    with pytest.raises(TypeError, match="config"):
        train.save_checkpoint(path, state, kind="test", config=None)
    assert path.read_bytes().startswith(b"GWFCKPT")  # a refused save leaves the file as it was


def test_dist_info_collectives_are_identities_for_one_process():
    info, net = train.DistInfo(), torch.nn.Linear(2, 2)
    info.barrier()
    assert info.gather({"a": 1}) == [{"a": 1}] and info.wrap(net, torch.device("cpu")) is net
    assert not info.distributed and info.is_main
