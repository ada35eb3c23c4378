"""The one training loop: schedule, critic steps, EMA, clipping, autocast, divergence, checkpoints."""

import math

import pytest
import torch
from torch import nn

from gwf_tutorial import train
from gwf_tutorial._validation import FlowDivergedError
from gwf_tutorial.trainer import Trainer, TrainingDivergedError, frozen_copy


class _Regression:
    """Map: least squares onto a shifted batch; critic: least squares of the critic onto the map's output."""

    def __init__(self, tr: Trainer, scale: float = 1.0):
        self.tr, self.scale, self.calls = tr, scale, {"batch": 0, "critic": 0, "map": 0}

    def batch(self):
        self.calls["batch"] += 1
        return torch.randn(8, 2, generator=self.tr.generator, dtype=torch.float64)

    def critic_loss(self, z):
        self.calls["critic"] += 1
        with torch.no_grad():
            x = self.tr.map(z)
        loss = ((self.tr.critic(x).squeeze(-1) - x.sum(1)) ** 2).mean()
        return loss, loss.detach()

    def map_loss(self, z):
        self.calls["map"] += 1
        loss = self.scale * ((self.tr.map(z) - z - 1.0) ** 2).mean()
        if self.tr.critic is not None:
            assert not any(p.requires_grad for p in self.tr.critic.parameters())  # frozen for the map step
        return loss, [loss.detach()]


def _trainer(seed=0, critic=True, **kw):
    torch.manual_seed(seed)
    net = nn.Linear(2, 2).double()
    c = nn.Linear(2, 1).double() if critic else None
    return Trainer(net, c, generator=train.make_generator(seed), **kw)


def test_critic_steps_per_map_step_and_records():
    tr = _trainer(critic_steps=3, lr=0.05)
    prob = _Regression(tr)
    logs = tr.fit(prob, 200, progress=False)
    assert prob.calls == {"batch": 200, "critic": 600, "map": 200}
    assert logs.shape == (2, 200) and logs.dtype == torch.float64
    assert all(p.requires_grad for p in tr.critic.parameters())  # unfrozen after the map step
    assert logs[1, -20:].mean() < 0.1 * logs[1, :20].mean()  # the map's loss goes down


def test_cosine_schedule_and_constant_schedule():
    tr = _trainer(lr=0.1, lr_critic=0.2, lr_schedule="cosine")
    for it, n in ((0, 4), (1, 4), (2, 4), (3, 4)):
        tr.set_lr(it, n)
        f = 0.5 * (1 + math.cos(math.pi * it / n))
        assert tr.opt_map.param_groups[0]["lr"] == 0.1 * f and tr.opt_critic.param_groups[0]["lr"] == 0.2 * f
    const = _trainer(lr=0.1, lr_schedule="constant")
    const.set_lr(3, 4)
    assert const.opt_map.param_groups[0]["lr"] == 0.1
    floor = _trainer(lr=0.1, lr_critic=0.2, lr_schedule="cosine", eta_min=0.05)  # torch's CosineAnnealingLR
    for it in range(4):
        floor.set_lr(it, 4)
        f = 0.5 * (1 + math.cos(math.pi * it / 4))
        assert floor.opt_map.param_groups[0]["lr"] == pytest.approx(0.05 + 0.05 * f, rel=1e-15)
        assert floor.opt_critic.param_groups[0]["lr"] == pytest.approx(0.05 + 0.15 * f, rel=1e-15)


def test_a_true_callback_stops_the_loop():
    tr = _trainer(lr=0.05)
    seen = []
    logs = tr.fit(_Regression(tr), 10, progress=False, callback=lambda it, rec: seen.append(it) or it == 3)
    assert seen == [0, 1, 2, 3] and logs.shape == (2, 4) and torch.isfinite(logs).all()


def test_ema_follows_the_closed_form():
    tr = _trainer(critic=False, ema_decay=0.5, lr=0.05)
    w0 = tr.map.weight.detach().clone()
    prob = _Regression(tr)
    tr.fit(prob, 1, progress=False)
    w1 = tr.map.weight.detach()
    torch.testing.assert_close(tr.ema.weight, 0.5 * w0 + 0.5 * w1, rtol=0, atol=1e-15)
    assert not any(p.requires_grad for p in tr.ema.parameters())


def test_gradient_clipping_bounds_the_step():
    # with Adam the first step is lr * sign-like; clipping to a tiny norm changes the direction's scale
    # only through Adam's epsilon, so check the clipped gradient norm itself
    tr = _trainer(critic=False, clip_grad=1e-3)
    prob = _Regression(tr, scale=1e6)
    tr.iteration(prob)
    norm = torch.sqrt(sum((p.grad**2).sum() for p in tr.map.parameters()))
    assert norm <= 1e-3 * (1 + 1e-6)
    # the map only: the critic's gradient is left as it is
    tr = _trainer(clip_grad=1e-3)
    prob = _Regression(tr, scale=1e6)
    prob.critic_loss = lambda z: (1e6 * tr.critic(z).sum(), torch.zeros(()))
    tr.iteration(prob)
    assert torch.sqrt(sum((p.grad**2).sum() for p in tr.critic.parameters())) > 1.0


def test_bf16_autocast_is_off_on_cpu():
    tr = _trainer(bf16=True)
    seen = []

    class P(_Regression):
        def map_loss(self, z):
            seen.append(torch.is_autocast_enabled("cpu"))
            return super().map_loss(z)

    tr.fit(P(tr), 2, progress=False)
    assert seen == [False, False]


def test_non_finite_loss_raises_the_divergence_error_naming_the_learning_rates():
    tr = _trainer(lr=0.25, lr_critic=0.5)
    msg = r"run diverged at iteration 0 \(c nan, m inf\).*lr=0.25, lr_critic=0.5"
    with pytest.raises(TrainingDivergedError, match=msg):

        class Bad(_Regression):
            def critic_loss(self, z):
                loss, _ = super().critic_loss(z)
                return loss, torch.tensor(float("nan"))

            def map_loss(self, z):
                loss, _ = super().map_loss(z)
                return loss, [torch.tensor(float("inf"))]

        tr.fit(Bad(tr), 3, desc="run", names=("c", "m"), progress=False)
    assert issubclass(TrainingDivergedError, FlowDivergedError)
    assert issubclass(TrainingDivergedError, FloatingPointError)  # what older callers catch


def test_kill_and_resume_is_bit_exact(tmp_path):
    ref = _trainer(ema_decay=0.9, lr_schedule="cosine")
    ref.fit(_Regression(ref), 4, progress=False)
    ref.fit(_Regression(ref), 4, progress=False)

    first = _trainer(ema_decay=0.9, lr_schedule="cosine")
    first.fit(_Regression(first), 4, progress=False)
    path = tmp_path / "t.pt"
    first.save(path, kind="test", config={"lr": first.lr}, extra={"counter": 4})
    second = _trainer(seed=1, ema_decay=0.9, lr_schedule="cosine")  # other weights and stream: overwritten
    got = {}
    second.load(path, kind="test", config={"lr": second.lr}, restore=got.update, what="test")
    assert got["counter"] == 4
    second.fit(_Regression(second), 4, progress=False)
    for key in ("map", "critic", "ema"):
        a, b = ref.state_dict()[key], second.state_dict()[key]
        assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = ref.opt_map.state_dict()["state"], second.opt_map.state_dict()["state"]
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
    assert torch.equal(ref.map.weight, second.map.weight) and torch.equal(ref.ema.weight, second.ema.weight)
    assert torch.equal(ref.generator.get_state(), second.generator.get_state())
    with pytest.raises(ValueError, match="other hyperparameters"):
        second.load(path, kind="test", config={"lr": 1.0}, restore=got.update, what="test")
    no_ema = _trainer()
    with pytest.raises(ValueError, match="does not fit this test.*ema"):
        no_ema.load(path, kind="test", config={"lr": no_ema.lr}, restore=got.update, what="test")


def test_set_map_resets_adam_and_ema_and_frozen_copy():
    tr = _trainer(ema_decay=0.5)
    tr.fit(_Regression(tr), 2, progress=False)
    assert tr.opt_map.state
    new = nn.Linear(2, 2).double()
    tr.set_map(new)
    assert tr.map is new and not tr.opt_map.state and torch.equal(tr.ema.weight, new.weight)
    f = frozen_copy(new)
    assert not f.training and not any(p.requires_grad for p in f.parameters())


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(lr=0.0), "lr"),
        (dict(lr_critic=-1.0), "lr_critic"),
        (dict(lr_schedule="linear"), "lr_schedule"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(critic_steps=0), "critic_steps"),
        (dict(clip_grad=-1.0), "clip_grad"),
        (dict(eta_min=-1.0), "eta_min"),
        (dict(betas=(1.5, 0.9)), "betas"),
    ],
)
def test_bad_arguments_are_named(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        _trainer(**kw)
    with pytest.raises(TypeError, match="map_net"):
        Trainer(3)


def test_run_settings_table_checks_phases_and_parser():
    import dataclasses

    from gwf_tutorial.trainer import RunSettings

    table = {"n_phases": (2, 1), "n_iters_first": (3, 1), "n_iters": (4, 0), "lr": (0.1, "pos"),
             "decay": (0.5, "unit"), "seed": (0, "seed"), "betas": ((0.5, 0.9), "betas"),
             "temps": ((1, 2), "floats"), "mode": ("a", ("a", "b")), "flag": (True, "bool"),
             "device": ("", "device")}  # fmt: skip
    fields = [(k, object, dataclasses.field(default=d)) for k, (d, _) in table.items()]
    S = dataclasses.make_dataclass("S", fields, bases=(RunSettings,), namespace={"SETTINGS": table})
    s = S(betas=[0.5, 0.9])
    s.check()
    assert (s.betas, s.temps, s.total_iters, s.phase_start(2)) == ((0.5, 0.9), (1.0, 2.0), 7, 7)
    assert [s.phase_of(t) for t in (0, 2, 3, 6, 7)] == [0, 0, 1, 1, 2] and s.to_dict()["betas"] == [0.5, 0.9]
    bad = [(dict(lr=0.0), r"lr \(--lr-x\)"), (dict(decay=1.0), r"decay must be in \(0, 1\)"),
           (dict(seed=1.5), "seed"), (dict(mode="c"), "mode must be one of"), (dict(n_phases=0), "n_phases"),
           (dict(device=3), "device must be a string"), (dict(device="nope"), "device must be 'cpu'")]
    for kwargs, match in bad:
        with pytest.raises((ValueError, TypeError), match=match):
            S(**kwargs).check({"lr": "lr (--lr-x)"})
    parser = S.parser(flags={"lr": "--lr-x"}, switches=("smoke",))
    argv = ["--lr-x", "0.5", "--betas", "0.1", "0.2", "--no-flag", "--smoke", "--seed", "3"]
    expected = {"lr": 0.5, "betas": [0.1, 0.2], "flag": False, "smoke": True, "seed": 3}  # unset: absent
    assert vars(parser.parse_args(argv)) == expected
    assert "--resume" in parser.format_help() and "--overwrite" in parser.format_help()
