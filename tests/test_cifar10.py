"""Tests for gwf_tutorial.cifar10: configuration (the papers' settings), torchrun parsing, the composed
losses, exact resume after a real kill (SIGKILL of the CLI) and after an in-process interruption, the
offline FID pipeline (synthetic data, stand-in features), checkpoint loading and a 2-process gloo run.

Everything runs on the CPU with 8x8 synthetic images and the tiny networks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import assert_damaged_checkpoints_refused, damaged_copies

from gwf_tutorial import cifar10, critics, data, jko, metrics, train
from gwf_tutorial.nets import ConvGenerator

ROOT = Path(__file__).resolve().parent.parent
# 8x8 images, batch 16: a few tens of milliseconds per iteration on one CPU thread
TINY = {"image_size": 8, "n_synthetic": 400, "batch_size": 16, "log_every": 5, "progress": False}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", GWF_PROGRESS="0", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


def _load(path) -> dict:
    return train.load_checkpoint(path)[0]


def _assert_same_state(a: dict, b: dict) -> None:
    """Bitwise equality of networks, EMA, frozen map, optimisers, step and history."""
    assert a["step"] == b["step"]
    assert a["history"] == b["history"]
    _assert_equal_tree(a["old"], b["old"], "old")
    for key in ("map", "ema", "critic", "opt_map", "opt_critic"):
        _assert_equal_tree(a["trainer"][key], b["trainer"][key], key)


def _assert_equal_tree(x, y, where: str) -> None:
    if isinstance(x, torch.Tensor):
        assert torch.equal(x, y), f"{where} differs"
    elif isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for k in x:
            _assert_equal_tree(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, list | tuple):
        assert len(x) == len(y), where
        for i, (u, v) in enumerate(zip(x, y)):
            _assert_equal_tree(u, v, f"{where}[{i}]")
    else:
        assert x == y, f"{where}: {x!r} != {y!r}"


# ---------------------------------------------------------------- configuration


def test_defaults_are_the_official_commands():
    c = cifar10.make_config("jko-kldv")  # GWF README, Small-Net + KL_DV + JKO
    assert (c.tau, c.n_phases, c.n_iters_first, c.n_iters, c.batch_size) == (0.5, 100, 2000, 1000, 256)
    assert (c.lr, c.lr_critic, c.betas, c.ema_decay, c.r1) == (2e-4, 1e-4, (0.5, 0.9), 0.9999, 0.4)
    assert (c.latent_dim, c.g_width, c.d_width, c.lr_schedule) == (192, 256, 256, "constant")
    assert c.total_iters == 2000 + 99 * 1000
    big = cifar10.make_config("jko-kldv", "large")  # GWF README, Large-Net command
    assert (big.tau, big.n_phases, big.n_iters, big.lr_schedule, big.eta_min) == (
        0.1,
        50,
        2000,
        "cosine",
        5e-5,
    )
    from gwf_tutorial.sjko import tau_from_h

    s = cifar10.make_config("sjko")  # S-JKO README CIFAR-10 command (h = 0.1), train.py defaults for the rest
    assert (s.tau, s.n_phases, s.n_iters_first, s.n_iters, s.r1) == (0.1, 100, 10000, 2000, 0.2)
    assert s.reference == "upsample"
    assert (s.lr_schedule, s.eta_min, s.ema_decay, s.batch_size) == ("cosine", 5e-5, 0.9999, 256)
    assert s.total_iters == 10000 + 99 * 2000  # the horizon of the official CosineAnnealingLR
    assert s.tau == tau_from_h(0.1, 3 * 32 * 32, per_dim_average=True)  # the sjko loss averages over d
    m = cifar10.make_config("jko-mmd")
    assert (m.gp, m.r1, m.mmd_features) == (10.0, 0.0, 128)
    d = cifar10.make_config("drifting")
    assert (d.n_phases, d.grad_clip, d.reference) == (1, 1.0, "none")
    # phases: phase k starts at n_iters_first + (k - 1) n_iters
    for k in range(4):
        assert c.phase_of(c.phase_start(k)) == k
        if k:
            assert c.phase_of(c.phase_start(k) - 1) == k - 1
    assert c.phase_start(3) == 2000 + 2 * 1000


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="method"):
        cifar10.make_config("gan")
    with pytest.raises(ValueError, match="net"):
        cifar10.make_config("sjko", "huge")
    with pytest.raises(TypeError, match="unknown Config fields"):
        cifar10.make_config("sjko", learning_rate=1.0)
    with pytest.raises(ValueError, match="tau"):
        cifar10.make_config("jko-kldv", tau=-1.0)
    with pytest.raises(ValueError, match="upsample"):
        cifar10.make_config("sjko", latent_dim=100)
    with pytest.raises(ValueError, match="image_size"):
        cifar10.make_config("sjko", image_size=16)  # CIFAR-10 is 32x32
    with pytest.raises(ValueError, match="ema_decay"):
        cifar10.make_config("drifting", ema_decay=1.0)
    with pytest.raises(ValueError, match="r1"):
        cifar10.make_config("jko-mmd", r1=0.1)
    with pytest.raises(TypeError, match="cfg"):
        cifar10.Trainer({"method": "sjko"})


def test_settings_that_would_fail_after_training_are_refused_up_front(monkeypatch):
    # FID / KID need two samples and two real images: refused when the config is made, not at the end
    with pytest.raises(ValueError, match="fid_samples must be 0 .* or >= 2"):
        cifar10.smoke_config("drifting", fid_samples=1)
    assert cifar10.smoke_config("drifting", fid_samples=0).fid_samples == 0
    with pytest.raises(ValueError, match="n_synthetic must be an integer >= 2"):
        cifar10.smoke_config("drifting", n_synthetic=1)
    # a seed is an integer: a float is refused (not validated and then used as a float)
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        cifar10.smoke_config("drifting", seed=2.0)
    assert type(cifar10.smoke_config("drifting", seed=np.int64(3)).seed) is int
    # devices: unknown, absent, or from $GWF_DEVICE
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'nope'"):
        cifar10.smoke_config("drifting", device="nope")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' needs a CUDA GPU"):
            cifar10.smoke_config("drifting", device="cuda")
    monkeypatch.setenv("GWF_DEVICE", "nope")
    with pytest.raises(ValueError, match=re.escape("$GWF_DEVICE must be")):
        cifar10.make_config("drifting", device="")
    with pytest.raises(TypeError, match="cfg must be a Config"):
        cifar10.train({"method": "drifting"})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--fid-samples 1", "fid_samples must be 0"),
        ("--n-synthetic 1", "n_synthetic must be an integer >= 2"),
        ("--device nope", "device must be 'cpu', 'cuda' or 'cuda:N'"),
        ("--tau -1", "tau must be a finite number >= 0"),
        ("--batch-size x", "argument --batch-size: invalid int value"),
    ],
)
def test_command_line_errors_are_usage_messages(flags, message, tmp_path, capsys):
    # exit status 2 with argparse's usage message, before anything is loaded or trained
    argv = ["--smoke", "--method", "drifting", *flags.split(), "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exc:
        cifar10.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("usage: python -m gwf_tutorial.cifar10")
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_init_distributed_reads_torchrun_variables():
    assert cifar10.init_distributed({}, init=False) == cifar10.DistInfo()
    assert not cifar10.init_distributed({"WORLD_SIZE": "1"}, init=False).distributed
    env = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}
    info = cifar10.init_distributed(env, cuda=False, init=False)
    assert (info.rank, info.local_rank, info.world_size, info.backend) == (2, 0, 4, "gloo")
    assert not info.is_main and info.distributed
    env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    assert cifar10.init_distributed(env, cuda=True, init=False).backend == "nccl"
    with pytest.raises(ValueError, match="inconsistent"):
        cifar10.init_distributed({"WORLD_SIZE": "2", "RANK": "2"}, init=False)
    with pytest.raises(ValueError, match="integers"):
        cifar10.init_distributed({"WORLD_SIZE": "two"}, init=False)


def test_cli_help_and_resume_conflicts(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cifar10.main(["--help"])
    assert exc.value.code == 0
    assert "--method" in capsys.readouterr().out
    argv = [*"--smoke --method sjko --image-size 8 --n-synthetic 400 --out".split(), str(tmp_path)]
    cfg, resume, overwrite = cifar10.config_from_args(argv)
    assert (cfg.data, cfg.feature, cfg.net, cfg.method) == ("synthetic", "standin", "tiny", "sjko")
    assert not resume and not overwrite
    assert "SYNTHETIC" in cfg.label and "STAND-IN" in cfg.label
    tr = cifar10.Trainer(cfg)
    tr.save(tmp_path / "last.pt")
    again, resume, _ = cifar10.config_from_args(["--resume", "--out", str(tmp_path), "--time-budget", "5"])
    assert resume and again.method == "sjko" and again.time_budget == 5.0  # operational settings may change
    with pytest.raises(ValueError, match="differ from the checkpoint"):
        cifar10.config_from_args(["--resume", "--out", str(tmp_path), "--tau", "0.3"])
    assert cifar10.config_from_args([*argv, "--overwrite"])[2]
    # a damaged checkpoint is refused by --resume, naming it, before anything else
    for bad in damaged_copies(tmp_path / "last.pt"):
        folder = tmp_path / bad.stem
        folder.mkdir()
        (folder / "last.pt").write_bytes(bad.read_bytes())
        with pytest.raises(ValueError, match=re.escape(str(folder / "last.pt"))):
            cifar10.config_from_args(["--resume", "--out", str(folder)])
        assert (folder / "last.pt").read_bytes() == bad.read_bytes()


# ---------------------------------------------------------------- the composed losses


def test_jko_step_uses_the_library_losses_and_freezes_the_previous_map(one_thread, tmp_path):
    cfg = cifar10.smoke_config("jko-kldv", out=str(tmp_path), n_phases=2, n_iters_first=3, n_iters=3, **TINY)
    tr = cifar10.Trainer(cfg)
    assert isinstance(tr.critic, critics.Critic) and tr.objective.fdiv.name == "kl_dv"
    # the generator loss, recomputed from the library's functions on fixed batches
    z = torch.randn(16, cfg.latent_dim)
    x_old = torch.randn(16, tr.dim)
    x = tr.generator(z)
    expected = jko.proximal_cost(x, x_old, cfg.tau, per_dim_average=True).mean() + tr.critic(x).mean()
    by_hand = ((x - x_old) ** 2).mean(1).mean() / (2 * cfg.tau) + tr.critic(x).mean()
    torch.testing.assert_close(expected, by_hand)
    for _ in range(3):
        out = tr.train_step()
        assert float(out["transport"]) > 0.1  # phase 0: pulled to independent N(0, I) images
    out = tr.train_step()  # first iteration of phase 1: G_1 is the frozen current G, same batch statistics
    assert float(out["transport"]) == 0.0
    assert tr.old is not None and not any(p.requires_grad for p in tr.old.parameters())
    assert all(p.requires_grad for p in tr.critic.parameters())


def test_sjko_reference_is_the_upsampled_latent(one_thread, tmp_path):
    cfg = cifar10.smoke_config("sjko", out=str(tmp_path), **TINY)
    tr = cifar10.Trainer(cfg)
    z = torch.randn(5, cfg.latent_dim)  # 48 = 3 x 4 x 4, upsampled to 3 x 8 x 8
    ref = tr._reference(z)
    img = torch.nn.functional.interpolate(z.reshape(5, 3, 4, 4), size=(8, 8), mode="bicubic")
    torch.testing.assert_close(ref, img.reshape(5, -1))


# ---------------------------------------------------------------- exact resume


def test_killed_cli_run_resumes_to_the_uninterrupted_result(one_thread, tmp_path):
    args = (
        "--smoke --method jko-kldv --image-size 8 --n-synthetic 400 --batch-size 16 --phases 3 "
        "--iters-first 30 --iters 30 --ckpt-every 5 --log-every 5 --fid-samples 0 --no-progress"
    ).split()
    killed, ref = tmp_path / "killed", tmp_path / "ref"
    cmd = [sys.executable, "-m", "gwf_tutorial.cifar10", *args, "--out", str(killed)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    t0 = time.time()
    while not (killed / "last.pt").exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way:\n{output}"
    step_at_kill = _load(killed / "last.pt")["step"]
    assert 0 < step_at_kill < 90
    summary = cifar10.main([*args, "--out", str(killed), "--resume"])  # the real --resume path
    assert summary["resumed_from"] == step_at_kill and summary["step"] == 90
    cifar10.main([*args, "--out", str(ref)])
    _assert_same_state(_load(killed / "last.pt"), _load(ref / "last.pt"))
    logged = [json.loads(line)["step"] for line in (killed / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(5, 91, 5))  # the log restarts from the checkpoint's history


@pytest.mark.parametrize("method", ["jko-mmd", "sjko", "drifting"])
def test_interrupted_run_resumes_exactly(method, one_thread, tmp_path):
    over = {
        "n_phases": 3,
        "n_iters_first": 4,
        "n_iters": 4,
        "ckpt_every": 100,
        "lr_schedule": "cosine",
        **TINY,
    }
    if method == "drifting":
        over.update(n_phases=1, n_iters_first=12, n_iters=0)
    a = cifar10.Trainer(cifar10.smoke_config(method, out=str(tmp_path / "a"), **over))
    assert a.run() == "done" and a.step == 12
    b = cifar10.Trainer(cifar10.smoke_config(method, out=str(tmp_path / "b"), **over))
    assert b.run(stop_check=lambda: b.step >= 5) == "budget" and b.step == 5
    c = cifar10.Trainer(cifar10.smoke_config(method, out=str(tmp_path / "b"), **over))
    c.load(tmp_path / "b" / "last.pt")
    assert c.run() == "done"
    _assert_same_state(_load(tmp_path / "a" / "last.pt"), _load(tmp_path / "b" / "last.pt"))
    # cosine annealed towards eta_min: the last iteration's learning rate, in closed form
    last = c.cfg.eta_min + (c.cfg.lr - c.cfg.eta_min) * (1 + np.cos(np.pi * 11 / 12)) / 2
    assert c.trainer.opt_map.param_groups[0]["lr"] == pytest.approx(last, rel=1e-12)
    with pytest.raises(ValueError, match="other hyperparameters.*seed: 0 in the checkpoint, 1 now"):
        cifar10.Trainer(cifar10.smoke_config(method, out=str(tmp_path / "b"), seed=1, **over)).load(
            tmp_path / "b" / "last.pt"
        )
    fresh = cifar10.Trainer(cifar10.smoke_config(method, out=str(tmp_path / "b"), **over))
    assert_damaged_checkpoints_refused(tmp_path / "b" / "last.pt", fresh.load)
    assert fresh.step == 0


# ---------------------------------------------------------------- FID pipeline (offline, stand-in)


def test_fid_pipeline_offline_with_stand_in_features(one_thread, tmp_path):
    cfg = cifar10.smoke_config(
        "drifting", out=str(tmp_path), n_iters_first=40, fid_samples=300, ema_decay=0.5, kid=True, **TINY
    )
    tr, summary = cifar10.train(cfg)
    res = summary["metrics"]
    assert "synthetic" in res["label"] and "stand-in" in res["label"] and "CPU" in res["label"]
    assert res["n_samples"] == 300 and res["n_real"] == 400 and res["feature"] == "standin"
    assert (tmp_path / "samples.png").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["fid"] == res["fid"]
    # the same number from metrics.frechet_distance on the same samples and features
    f = cifar10.StandInFeatures(3, 8)
    fake = tr.sample(300, seed=12345)
    real = tr.real.reshape(-1, 3, 8, 8)
    assert metrics.frechet_distance(real, fake, f) == pytest.approx(res["fid"], rel=1e-6)
    # the stand-in features separate distributions: an untrained generator is far, a fresh draw is near
    g = torch.Generator().manual_seed(3)
    fresh, _ = data.synthetic_images(400, size=8, generator=g)
    floor = metrics.frechet_distance(real, fresh, f)
    untrained = cifar10.Trainer(cfg).sample(300, seed=1)
    assert metrics.frechet_distance(real, untrained, f) > 5 * floor
    assert res["fid"] < metrics.frechet_distance(real, untrained, f)  # training moved towards the data
    # frozen and deterministic
    assert not any(p.requires_grad for p in f.parameters())
    torch.testing.assert_close(f(fresh[:4]), cifar10.StandInFeatures(3, 8)(fresh[:4]))
    # load_generator gives the EMA generator back
    net, cfg2 = cifar10.load_generator(tmp_path / "last.pt")
    z = torch.randn(4, cfg2.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(net(z), tr.ema.eval()(z))
    assert isinstance(net.net, ConvGenerator) and cfg2 == tr.cfg


# ---------------------------------------------------------------- DDP (2 processes, gloo, CPU)


def test_two_process_gloo_run(tmp_path):
    args = (
        "--smoke --method sjko --image-size 8 --n-synthetic 400 --batch-size 8 --phases 2 --iters-first 3 "
        "--iters 3 --fid-samples 0 --no-progress --device cpu"
    ).split()
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    cmd = [*run, "-m", "gwf_tutorial.cifar10", *args, "--out", str(tmp_path)]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads([line for line in res.stdout.splitlines() if line.startswith("{")][-1])
    assert summary["world_size"] == 2 and summary["replicas_agree"] and summary["step"] == 6
    state = _load(tmp_path / "last.pt")
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["g_dev"], state["rng"][1]["g_dev"])  # one stream per process


def test_resume_without_time_budget_runs_to_the_end(one_thread, tmp_path, capsys):
    # the time budget belongs to one invocation: a resumed run does not reuse the saved one
    args = (
        "--smoke --method sjko --image-size 8 --n-synthetic 400 --batch-size 16 --phases 2 --iters-first 10 "
        "--iters 10 --ckpt-every 5 --log-every 5 --fid-samples 0 --no-progress"
    ).split()
    first = cifar10.main([*args, "--out", str(tmp_path), "--time-budget", "1e-6"])
    assert first["status"] == "budget" and first["step"] == 1
    cfg, resume, _ = cifar10.config_from_args(["--resume", "--out", str(tmp_path)])
    assert resume and cfg.time_budget == 0.0
    again = cifar10.main(["--resume", "--out", str(tmp_path)])
    assert again["status"] == "done" and again["resumed_from"] == 1
    assert again["step"] == again["total_iters"] == 20
    with pytest.raises(SystemExit):
        cifar10.main(["--help"])
    assert "not saved for --resume" in " ".join(capsys.readouterr().out.split())


def test_train_step_reads_nothing_back_to_the_host_outside_log_steps(one_thread, tmp_path):
    # a read (.item(), float(), bool()) of a tensor is a host synchronisation on a GPU; torch's own reads
    # here are of the CPU Adam's step counters (CPU tensors; fused Adam on a GPU) and are not counted
    import traceback

    torch_dir = os.path.dirname(torch.__file__)
    names = ("__bool__", "__float__", "__int__", "item", "tolist")
    saved = {n: getattr(torch.Tensor, n) for n in names}
    sites = {}
    for method in ("sjko", "drifting", "jko-kldv"):
        tr = cifar10.Trainer(cifar10.smoke_config(method, out=str(tmp_path), **{**TINY, "log_every": 1000}))
        sites[method] = []

        def wrap(fn, where=sites[method]):
            def reader(self, *a, **k):
                caller = traceback.extract_stack(limit=2)[0]
                if not caller.filename.startswith(torch_dir):
                    where.append(Path(caller.filename).name)
                return fn(self, *a, **k)

            return reader

        try:
            for n, fn in saved.items():
                setattr(torch.Tensor, n, wrap(fn))
            out = tr.train_step()
        finally:
            for n, fn in saved.items():
                setattr(torch.Tensor, n, fn)
        assert all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in out.values())
    assert sites["sjko"] == []
    # none from the trainer or the drift field; what remains is input validation of library functions
    # (finiteness checks in _validation / fdiv), reported by scripts/gpu_check.py
    assert not any(f in ("cifar10.py", "drifting.py") for f in sites["drifting"] + sites["jko-kldv"])
    assert set(sites["drifting"] + sites["jko-kldv"]) <= {"_validation.py", "fdiv.py"}


def test_a_fresh_run_refuses_a_folder_holding_a_run(one_thread, tmp_path, capsys):
    args = (
        "--smoke --method drifting --image-size 8 --n-synthetic 400 --batch-size 8 --phases 1 "
        "--iters-first 4 --iters 0 --ckpt-every 2 --log-every 2 --fid-samples 0 --no-progress"
    ).split()
    out = tmp_path / "run"
    first = cifar10.main([*args, "--out", str(out)])
    held = sorted(p.name for p in out.iterdir())
    assert first["step"] == 4 and {"last.pt", "log.jsonl", "samples.png"} <= set(held)
    before = {name: (out / name).read_bytes() for name in held}
    with pytest.raises(ValueError, match="already holds a run.*last.pt.*--resume continues it, --overwrite"):
        cifar10.main([*args, "--out", str(out)])
    with pytest.raises(ValueError, match="already holds a run"):
        cifar10.train(cifar10.config_from_args([*args, "--out", str(out)])[0])
    assert {name: (out / name).read_bytes() for name in held} == before  # nothing touched
    # --overwrite: a fresh run, its log written anew (not appended)
    again = cifar10.main([*args, "--out", str(out), "--overwrite"])
    assert again["resumed_from"] is None and again["step"] == 4
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [2, 4]
    # --resume with no checkpoint says so on stderr and starts fresh; leftovers still need --overwrite
    capsys.readouterr()
    empty = tmp_path / "empty"
    fresh = cifar10.main([*args, "--out", str(empty), "--resume"])
    assert fresh["resumed_from"] is None and fresh["step"] == 4
    said = f"--resume: no checkpoint {str(empty / 'last.pt')!r}; starting a fresh run"
    assert said in capsys.readouterr().err
    (empty / "last.pt").unlink()
    with pytest.raises(ValueError, match="holds a run .*but no checkpoint last.pt to resume from"):
        cifar10.main([*args, "--out", str(empty), "--resume"])
    assert cifar10.main([*args, "--out", str(empty), "--resume", "--overwrite"])["step"] == 4
