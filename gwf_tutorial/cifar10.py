r"""CIFAR-10 on one GPU, or several under ``torchrun``: one resumable entry point over the library's loop.

``python -m gwf_tutorial.cifar10 --method sjko --out runs/sjko`` trains (``--help`` lists the flags,
``--resume`` continues a run, ``--smoke`` runs on the CPU offline). Every method trains a one-step generator
:math:`G_\theta : \mathbb R^{n_z} \to [-1, 1]^{3 \cdot 32 \cdot 32}` with the library's losses:
``jko-kldv`` / ``jko-mmd`` (parametric JKO, chapters 4-5, KL-DV critic or learned-kernel MMD), ``sjko``
(chapter 7), ``drifting`` (chapter 8); e.g. phase :math:`k` of ``jko-kldv`` is

.. math::

    \min_\theta \max_h\ \tfrac{1}{2\tau d}\,\mathbb E_z|G_\theta(z) - G_k(z)|^2
    + \mathbb E_z h(G_\theta(z)) - \log \mathbb E_\nu e^{h},

with :math:`N_0 + (K - 1) N` iterations (``n_iters_first``, ``n_phases``, ``n_iters``). The library's
:class:`gwf_tutorial.trainer.Trainer` runs it (EMA, schedules, verified checkpoints); this module adds bf16
autocast of the networks, DDP, every random state in the checkpoints (``--resume`` is bit-exact on a CPU),
the refusal of a folder holding a run (``--overwrite`` replaces it) and FID / KID at the end. References: the
official ``train.py`` of GWF (``Paulcauch/GWF``), S-JKO (``Jae-Moo/Scalable-JKO``) and drifting
(``lambertae/drifting``); Heusel et al. (2017), FID; Binkowski et al. (2018), KID.

Used in: chapter 10.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gwf_tutorial import _validation as _v
from gwf_tutorial import critics as _critics
from gwf_tutorial import data as _data
from gwf_tutorial import drifting as _drifting
from gwf_tutorial import jko as _jko
from gwf_tutorial import metrics as _metrics
from gwf_tutorial import sjko as _sjko
from gwf_tutorial import train as _train
from gwf_tutorial.metrics import StandInFeatures
from gwf_tutorial.nets import Autocast, ConvCritic, ConvGenerator
from gwf_tutorial.train import DistInfo, init_distributed
from gwf_tutorial.trainer import Trainer as _Loop
from gwf_tutorial.trainer import frozen_copy

__all__ = ["METHODS", "NET_PRESETS", "METHOD_DEFAULTS", "Config", "make_config", "smoke_config", "DistInfo",
           "init_distributed", "StandInFeatures", "Trainer", "train", "evaluate", "GPU_CHECK_SCHEMA",
           "throughput_table", "build_parser", "config_from_args", "main"]  # fmt: skip

METHODS = ("jko-kldv", "jko-mmd", "sjko", "drifting")
#: ``--net``: ``small`` is the GWF Small-Net, ``large`` a deeper net of its family, ``tiny`` for the CPU.
NET_PRESETS: dict[str, dict] = {
    "tiny": {"latent_dim": 48, "g_width": 16, "g_blocks": 1, "d_width": 16, "d_blocks": 1},
    "small": {"latent_dim": 192, "g_width": 256, "g_blocks": 1, "d_width": 256, "d_blocks": 2},
    "large": {"latent_dim": 192, "g_width": 256, "g_blocks": 2, "d_width": 256, "d_blocks": 4},
}
_JKO = {"tau": 0.5, "n_phases": 100, "n_iters_first": 2000, "n_iters": 1000, "lr": 2e-4, "lr_critic": 1e-4,
        "betas": (0.5, 0.9), "r1": 0.0, "gp": 0.0, "reference": "noise", "grad_clip": 0.0}  # fmt: skip
#: The official commands. GWF README: ``--lambda2 1`` (``tau = 0.5`` with the per-dimension cost), KL-DV
#: ``--lbda_gp 0.2`` (``r1 = 0.4`` as ``r1 / 2``), MMD ``--lbda_gp 10``. S-JKO README: ``--h 0.1``, 10 000 +
#: 99 x 2 000 iterations, EMA, one cosine schedule to ``5e-5``, R1 0.2, phase 0 pulled to the upsampled
#: latent. Drifting ``train.py``: EMA, clipping at 1 (lr, betas and the pixel-space field are ours).
METHOD_DEFAULTS: dict[str, dict] = {
    "jko-kldv": {**_JKO, "r1": 0.4},
    "jko-mmd": {**_JKO, "gp": 10.0},
    "sjko": {**_JKO, "tau": 0.1, "n_iters_first": 10000, "n_iters": 2000, "r1": 0.2, "reference": "upsample",
             "lr_schedule": "cosine", "ema_decay": 0.9999},
    "drifting": {**_JKO, "tau": 0.0, "n_phases": 1, "n_iters_first": 100000, "n_iters": 0, "lr_critic": 0.0,
                 "betas": (0.9, 0.999), "reference": "none", "grad_clip": 1.0},
}  # fmt: skip
#: GWF Large-Net command (KL-DV), used for ``--net large``.
_LARGE_KLDV = {"tau": 0.1, "n_phases": 50, "n_iters_first": 2000, "n_iters": 2000, "lr_schedule": "cosine"}
#: Every setting, one ``--flag`` each: name -> (default, check). A check is a tuple of choices, an int (an
#: integer >= it), "pos" / "nonneg" (a number > 0 / >= 0), or a kind; None defaults come from the presets.
_SETTINGS = {
    "method": ("jko-kldv", METHODS), "net": ("small", tuple(NET_PRESETS)),
    "data": ("cifar10", ("cifar10", "synthetic")), "data_root": ("data", "str"), "n_synthetic": (5000, 2),
    "image_size": (32, 4), "latent_dim": (None, 1), "g_width": (None, 1), "g_blocks": (None, 1),
    "d_width": (None, 1), "d_blocks": (None, 0), "batch_size": (256, 1), "lr": (None, "pos"),
    "lr_critic": (None, "nonneg"), "betas": (None, "betas"), "tau": (None, "nonneg"), "n_phases": (None, 1),
    "n_iters_first": (None, 1), "n_iters": (None, 0),
    "reference": (None, ("noise", "upsample", "copy", "none")),
    "r1": (None, "nonneg"), "gp": (None, "nonneg"), "mmd_features": (128, 1),
    "temperatures": ((0.02, 0.05, 0.2), "floats"), "grad_clip": (None, "nonneg"),
    "ema_decay": (0.9999, "unit"),
    "lr_schedule": (None, ("constant", "cosine")), "eta_min": (5e-5, "nonneg"), "amp": (True, "bool"),
    "seed": (0, "seed"), "out": ("runs/cifar10", "str"), "ckpt_every": (1000, 1), "save_every": (20000, 0),
    "log_every": (100, 1), "time_budget": (0.0, "nonneg"), "fid_samples": (50000, 0), "fid_batch": (250, 1),
    "feature": ("inception", ("inception", "standin")), "kid": (False, "bool"), "device": ("", "device"),
    "progress": (True, "bool"),
}  # fmt: skip
#: Config fields whose flag has another name (the papers'); errors name both.
_FLAGS = {"lr": "--lr-g", "lr_critic": "--lr-d", "n_phases": "--phases", "n_iters_first": "--iters-first",
          "n_iters": "--iters"}  # fmt: skip
_HELP = {
    "smoke": "CPU smoke run: synthetic 16x16 data, tiny nets, stand-in FID",
    "resume": "continue from OUT/last.pt (its training settings are reused; a damaged file is refused) to "
    "the end of the run; an earlier --time-budget is not: give --time-budget again to stop early. Without "
    "OUT/last.pt it says so on stderr and starts a fresh run",
    "overwrite": "start a fresh run even if OUT already holds one (its last.pt, step_*.pt, log.jsonl, "
    "metrics.json, samples.png are deleted); without it (or --resume) such a folder is refused",
    "lr": "Adam learning rate of the generator", "lr_critic": "... of the critic / potential",
    "tau": "JKO step (cost |x-x'|^2 / (2 tau d))", "n_phases": "JKO phases K", "batch_size": "per process",
    "n_iters_first": "iterations of phase 0 (drifting: all)", "n_iters": "iterations of each later phase",
    "reference": "what phase 0 is pulled to", "amp": "bf16 autocast on CUDA", "out": "output folder",
    "time_budget": "seconds of training in THIS invocation, then stop after a checkpoint "
    "(not saved for --resume)",
    "fid_samples": "0: no evaluation", "feature": "standin: offline stand-in, not an FID",
    "save_every": "periodic checkpoint period (0: none)", "ckpt_every": "rolling checkpoint period",
}  # fmt: skip
_KIND = "cifar10.Trainer"  # the checkpoint kind (train.save_checkpoint)
_RUN_FILES = ("last.pt", "log.jsonl", "metrics.json", "samples.png")
# settings that may change on --resume (they do not change the training trajectory)
_OPERATIONAL = ("out", "ckpt_every", "save_every", "log_every", "time_budget", "fid_samples", "fid_batch",
                "feature", "kid", "device", "progress", "data_root")  # fmt: skip


class _ConfigMethods:
    r"""Every setting of a run (the fields of ``_SETTINGS``, one ``--flag`` each: ``python -m
    gwf_tutorial.cifar10 --help``); saved in each checkpoint, checked by ``--resume``. ``tau`` is the JKO step
    of the cost :math:`|x - x'|^2 / (2\tau d)`; ``batch_size`` is per process.

    Used in: :func:`~gwf_tutorial.cifar10.make_config`.
    """

    total_iters = property(lambda self: self.n_iters_first + (self.n_phases - 1) * self.n_iters)

    def phase_start(self, k: int) -> int:
        return 0 if k == 0 else self.n_iters_first + (k - 1) * self.n_iters

    def phase_of(self, step: int) -> int:
        first, n = self.n_iters_first, self.n_iters
        return 0 if step < first or not n else 1 + (step - first) // n

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @property
    def label(self) -> str:
        """What the numbers of this run are: data and features."""
        data = "CIFAR-10 train set" if self.data == "cifar10" else "SYNTHETIC data (not CIFAR-10)"
        inception = self.feature == "inception"
        return f"{data}, {'Inception-v3 features' if inception else 'STAND-IN features (random conv net)'}"


Config = dataclasses.make_dataclass(
    "Config", [(k, object, dataclasses.field(default=d)) for k, (d, _) in _SETTINGS.items()],
    bases=(_ConfigMethods,), namespace={"__module__": __name__, "__doc__": _ConfigMethods.__doc__},
)  # fmt: skip


def _label(name: str) -> str:
    return f"{name} ({_FLAGS[name]})" if name in _FLAGS else name


def _choice(value, name: str):
    if value not in _SETTINGS[name][1]:
        raise ValueError(f"{name} must be one of {_SETTINGS[name][1]}, got {value!r}")
    return value


def make_config(method: str = "jko-kldv", net: str = "small", **overrides) -> Config:
    r"""A complete, checked :class:`Config`: ``Config()`` <- ``NET_PRESETS[net]`` <-
    ``METHOD_DEFAULTS[method]`` <- ``overrides``; a ValueError / TypeError names a bad or unknown field.

    Used in: chapter 10.
    """
    _choice(method, "method"), _choice(net, "net")
    unknown = set(overrides) - set(_SETTINGS)
    if unknown:
        raise TypeError(f"unknown Config fields: {sorted(unknown)}")
    values = {**NET_PRESETS[net], "lr_schedule": "constant", **METHOD_DEFAULTS[method]}
    values.update(_LARGE_KLDV if (net, method) == ("large", "jko-kldv") else {})
    values.update({k: v for k, v in overrides.items() if v is not None and k not in ("method", "net")})
    cfg = Config(method=method, net=net, **values)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    for name, (_, check) in _SETTINGS.items():
        value, label = getattr(cfg, name), _label(name)
        if isinstance(check, tuple):
            _choice(value, name)
        elif isinstance(check, int):
            _v.check_int(value, label, min_value=check)
        elif check in ("pos", "nonneg", "unit"):
            (_v.check_nonnegative if check == "nonneg" else _v.check_positive)(value, label)
        if check == "unit" and not value < 1:
            raise ValueError(f"{name} must be in (0, 1), got {value}")
    if cfg.fid_samples == 1:  # checked now, not after training
        raise ValueError("fid_samples must be 0 (no evaluation) or >= 2 (FID needs two samples), got 1")
    cfg.seed = _v.check_seed(cfg.seed, "seed")
    if cfg.image_size != 32 and cfg.data == "cifar10":
        raise ValueError(f"image_size must be 32 for CIFAR-10, got {cfg.image_size}")
    if cfg.n_phases > 1 and cfg.n_iters < 1:
        raise ValueError("n_iters (--iters) must be >= 1 when n_phases (--phases) > 1")
    if cfg.method != "drifting":
        _v.check_positive(cfg.tau, "tau"), _v.check_positive(cfg.lr_critic, "lr_critic (--lr-d)")
        if cfg.reference == "none":
            raise ValueError(f"reference 'none' is for drifting only; {cfg.method} needs a JKO reference")
    if cfg.method == "jko-mmd" and cfg.r1 > 0:
        raise ValueError("jko-mmd penalises the witness with gp (WGAN-GP); r1 must be 0")
    if cfg.reference == "upsample" and math.isqrt(cfg.latent_dim // 3) ** 2 * 3 != cfg.latent_dim:
        raise ValueError(f"reference 'upsample' needs latent_dim = 3 * s * s (a 3 x s x s image), "
                         f"got {cfg.latent_dim}")  # fmt: skip
    cfg.betas = _v.check_betas(tuple(cfg.betas))
    cfg.temperatures = tuple(_v.check_positive(t, "temperatures") for t in cfg.temperatures)
    if not isinstance(cfg.device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {cfg.device!r}")
    if cfg.device or os.environ.get("GWF_DEVICE"):
        _v.check_device(cfg.device or os.environ["GWF_DEVICE"], "device" if cfg.device else "$GWF_DEVICE")


def smoke_config(method: str = "jko-kldv", **overrides) -> Config:
    r"""The CPU smoke configuration: synthetic 16x16 images, ``tiny`` nets, 250 iterations, stand-in FID (its
    numbers say nothing about CIFAR-10).

    Used in: chapter 10.
    """
    base = {"data": "synthetic", "n_synthetic": 2000, "image_size": 16, "batch_size": 32, "n_phases": 4,
            "n_iters_first": 100, "n_iters": 50, "ema_decay": 0.98, "fid_samples": 1000, "feature": "standin",
            "ckpt_every": 50, "save_every": 0, "log_every": 10, "out": f"runs/smoke-{method}",
            "device": "cpu", "latent_dim": 48}  # fmt: skip
    base.update({"drifting": {"n_phases": 1, "n_iters_first": 250, "n_iters": 0}, "sjko": {"tau": 0.5}}
                .get(method, {}))  # fmt: skip
    return make_config(method, "tiny", **{**base, **overrides})


class _CriticLoss(nn.Module):
    """The critic with a ``forward`` that returns its loss, so that DDP synchronises it."""

    def __init__(self, critic: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.critic, self._loss_fn = critic, loss_fn

    def forward(self, x_fake: Tensor, y: Tensor):
        return self._loss_fn(self.critic, x_fake, y)


def _gpu_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no GPU)"


class Trainer:
    r"""The networks, losses and data of a :class:`Config`: the problem that ``self.trainer`` (the library's
    loop) trains; the JKO methods freeze :math:`G_k` at the first iteration of phase :math:`k \ge 1`, phase 0
    uses ``cfg.reference``. ``real``: images ``(N, C, H, W)`` in ``[-1, 1]`` (default: ``cfg.data``).

    Used in: chapter 10.
    """

    def __init__(self, cfg: Config, dist_info: DistInfo | None = None, *, real: Tensor | None = None) -> None:
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a Config (make_config, smoke_config), got {type(cfg).__name__}")
        _validate(cfg)
        self.cfg, self.dist = cfg, dist_info or DistInfo()
        dev = _train.device(cfg.device or None)
        if dev.type == "cuda" and (self.dist.distributed or dev.index is None):
            dev = torch.device("cuda", self.dist.local_rank)
        self.device, cuda = dev, dev.type == "cuda"
        self.amp = bool(cfg.amp) and cuda
        torch.backends.cudnn.benchmark = cuda or torch.backends.cudnn.benchmark  # fastest convolutions
        real = self._load_real() if real is None else real
        if not isinstance(real, Tensor) or real.ndim != 4:
            raise ValueError(f"real must be a tensor (N, C, H, W), got {getattr(real, 'shape', real)}")
        self.image_shape, self.dim = tuple(real.shape[1:]), int(np.prod(real.shape[1:]))
        self.real = real.to(self.device, torch.float32).reshape(real.shape[0], self.dim)
        # random streams: one on the device (latents, noise, batches), one on the CPU (penalties)
        rank_seed = cfg.seed + 1_000_003 * self.dist.rank
        self.g_dev = _train.make_generator(rank_seed, device=self.device)
        self.g_cpu = _train.make_generator(rank_seed + 1)
        _train.seed_everything(cfg.seed)  # network initialisation: the same on every process
        c, s = self.image_shape[:2]
        self.generator = Autocast(ConvGenerator(cfg.latent_dim, c, s, cfg.g_width, cfg.g_blocks), self.amp)
        self.critic = self._build_critic(c, s)
        for net in (self.generator, self.critic):
            if net is not None:  # channels-last convolutions on CUDA (what bf16 tensor cores want)
                net.to(self.device, memory_format=torch.channels_last if cuda else torch.preserve_format)
        self.old: nn.Module | None = None  # the frozen G_k of phase k >= 1
        self.trainer = _Loop(
            self.generator, self.critic, lr=cfg.lr, lr_critic=cfg.lr_critic if self.critic else 1.0,
            betas=cfg.betas, lr_schedule=cfg.lr_schedule, eta_min=cfg.eta_min, ema_decay=cfg.ema_decay,
            clip_grad=cfg.grad_clip or None, fused=cuda,
        )  # fmt: skip
        self.objective = {"jko-kldv": _jko.get_critic_objective("kl_dv"), "jko-mmd":
                          _jko.LearnedKernelMMD(feature_dim=cfg.mmd_features)}.get(cfg.method)  # fmt: skip
        self.drift = _drifting.MultiTemperatureDrift(cfg.temperatures) if cfg.method == "drifting" else None
        self.names = ("loss_g",) if self.critic is None else ("loss_d", "objective", "transport", "loss_g")
        self.g_train = self._ddp(self.generator)
        self.d_train = None if self.critic is None else self._ddp(_CriticLoss(self.critic, self._critic_fn))
        self.step, self.history, self.train_seconds, self.resumed_from, self.extra = 0, [], 0.0, None, {}

    def _ddp(self, net: nn.Module) -> nn.Module:  # a DDP replica under torchrun
        if not self.dist.distributed:
            return net
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, broadcast_buffers=False)

    ema = property(lambda self: self.trainer.ema)
    opt_g = property(lambda self: self.trainer.opt_map)

    def _load_real(self) -> Tensor:
        cfg = self.cfg
        if cfg.data == "cifar10":  # rank 0 downloads first, the others read its copy
            images = _data.cifar10_tensor(cfg.data_root, download=True)[0] if self.dist.is_main else None
            self._barrier()
            return images if images is not None else _data.cifar10_tensor(cfg.data_root, download=False)[0]
        g = _train.make_generator(10_000 + cfg.seed)  # the same synthetic set on every process
        return _data.synthetic_images(cfg.n_synthetic, size=cfg.image_size, generator=g)[0]

    def _build_critic(self, c: int, s: int) -> nn.Module | None:
        cfg = self.cfg
        if cfg.method == "jko-mmd":  # the kernel's embedding is the conv net, starting at 0 (pixel kernel)
            conv = ConvCritic(c, s, cfg.d_width, cfg.mmd_features, n_blocks=cfg.d_blocks, zero_init_last=True)
            embedding = Autocast(conv, self.amp)
            return _critics.LearnedKernel(self.dim, feature_dim=cfg.mmd_features, embedding=embedding)
        if cfg.method == "drifting":
            return None
        conv = Autocast(ConvCritic(c, s, cfg.d_width, 1, n_blocks=cfg.d_blocks), self.amp)
        return _critics.Critic(self.dim, "kl_dv", net=conv) if cfg.method == "jko-kldv" else conv  # sjko: v

    def _critic_fn(self, critic: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The adversary's loss and bound, or (S-JKO) ``E v(T(x)) + E Psi*(-v(y)) + r1/2 E|grad v(y)|^2``."""
        cfg = self.cfg
        if cfg.method != "sjko":
            loss, bound = self.objective.critic_loss(critic, x, y, r1=cfg.r1, gp=cfg.gp, generator=self.g_cpu)
            return loss, bound.detach()
        v_real, grad = _critics.value_and_input_grad(critic, y) if cfg.r1 > 0 else (critic(y), None)
        loss = _sjko.potential_loss(critic(x), v_real, "kl", grad_real=grad, r1=cfg.r1)
        return loss, loss.detach()

    def _reference(self, z: Tensor, step: int) -> Tensor:
        """Points of rho_k paired with G(z): the frozen G_k, or phase 0's reference."""
        if self.old is not None:
            with torch.no_grad():
                return self.old(z)
        if self.cfg.reference == "noise":
            return torch.randn(z.shape[0], self.dim, generator=self.g_dev, device=self.device)
        c, s = self.image_shape[:2]
        q = math.isqrt(z.shape[1] // c)  # "upsample"
        z_img = z.reshape(-1, c, q, q)
        img = nn.functional.interpolate(z_img, size=(s, s), mode="bicubic", align_corners=False)
        return img.reshape(z.shape[0], self.dim)

    def _draw(self) -> tuple[Tensor, Tensor]:
        b = self.cfg.batch_size
        z = torch.randn(b, self.cfg.latent_dim, generator=self.g_dev, device=self.device)
        idx = torch.randint(0, self.real.shape[0], (b,), generator=self.g_dev, device=self.device)
        return z, self.real[idx]

    def batch(self) -> None:  # freeze G_k when the step starts a phase; each loss draws its batch
        cfg, step = self.cfg, self.step
        boundary = 0 < step and cfg.n_iters > 0 and step >= cfg.n_iters_first
        first_copy = step == 0 and cfg.reference == "copy" and self.old is None
        if (boundary and (step - cfg.n_iters_first) % cfg.n_iters == 0) or first_copy:  # never for drifting
            self.old = frozen_copy(self.generator).train()

    def critic_loss(self, _) -> tuple[Tensor, Tensor]:
        z, y = self._draw()
        with torch.no_grad():
            x_fake = self.g_train(z)
        loss, self._value = self.d_train(x_fake, y)
        return loss, loss.detach()

    def map_loss(self, _) -> tuple[Tensor, list[Tensor]]:
        cfg = self.cfg
        z, y = self._draw()
        x = self.g_train(z)
        if cfg.method == "drifting":  # the field without per-step checks or host reads; raw RMS when logged
            V, raw = self.drift._velocity(x.detach(), y, with_raw=self._logs_at(self.step + 1))
            self.extra.update({} if raw is None else {"drift_rms": raw.float()})
            loss = _drifting.drifting_loss(x, V)
            return loss, [loss.detach()]
        x_old = self._reference(z, self.step)
        transport = _jko.proximal_cost(x if cfg.method != "sjko" else x.detach(), x_old, cfg.tau,
                                       per_dim_average=True).mean()  # fmt: skip
        if cfg.method == "sjko":
            loss = _sjko.map_loss(x, x_old, self.critic(x), cfg.tau, per_dim_average=True)
        else:
            loss = transport + self.objective.map_term(self.critic, x, y)
        return loss, [self._value, transport.detach(), loss.detach()]

    def _logs_at(self, step: int) -> bool:
        return step % self.cfg.log_every == 0 or step == self.cfg.total_iters

    def train_step(self) -> dict:
        """One iteration; its detached scalar losses on the device (``scripts/gpu_check.py``)."""
        self.trainer.set_lr(self.step, self.cfg.total_iters)
        records = self.trainer.iteration(self)
        self.step += 1
        return self._named(records)

    def _named(self, records: list[Tensor]) -> dict:
        out, self.extra = {**self.extra, **dict(zip(self.names, records))}, {}
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the loop's state, G_k, step, history and every process's random states (collective)."""
        rng = {**_train.rng_state(), "g_dev": self.g_dev.get_state(), "g_cpu": self.g_cpu.get_state()}
        states = [rng] * self.dist.world_size
        if self.dist.distributed:
            torch.distributed.all_gather_object(states, rng)
        if self.dist.is_main:
            self.trainer.save(path, kind=_KIND, config=self.cfg.to_dict(), extra={
                "old": None if self.old is None else self.old.state_dict(), "step": self.step, "rng": states,
                "world_size": self.dist.world_size, "history": list(self.history),
                "train_seconds": self.train_seconds, "device": _gpu_name(self.device)})  # fmt: skip
        self._barrier()

    def load(self, path: str | os.PathLike) -> None:
        """Load a :meth:`save` file; refused, naming it, if damaged or trained with other settings."""
        self.trainer.load(path, kind=_KIND, config=self.cfg.to_dict(), restore=self._restore, what="run",
                          ignore=_OPERATIONAL)  # fmt: skip

    def _restore(self, state: dict) -> None:
        if state["world_size"] != self.dist.world_size:
            raise ValueError(f"checkpoint was written by {state['world_size']} process(es), "
                             f"this run has {self.dist.world_size}")  # fmt: skip
        self.old = None if state["old"] is None else frozen_copy(self.generator).train()
        if self.old is not None:
            self.old.load_state_dict(state["old"])
        self.step, self.history = int(state["step"]), list(state["history"])
        self.train_seconds, self.resumed_from = float(state["train_seconds"]), int(state["step"])
        st = state["rng"][self.dist.rank]
        self.g_dev.set_state(st["g_dev"]), self.g_cpu.set_state(st["g_cpu"]), _train.set_rng_state(st)

    def _barrier(self) -> None:
        if self.dist.distributed:
            torch.distributed.barrier()

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, use_ema: bool = True, batch_size: int = 500) -> Tensor:
        """``n`` images ``(n, C, H, W)`` in ``[-1, 1]`` on the CPU from the (EMA) generator, seeded."""
        n, net = _v.check_int(n, "n"), self.ema if use_ema else self.generator
        g, was_training, out = _train.make_generator(seed, device=self.device), net.training, []
        net.eval()
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), self.cfg.latent_dim, generator=g, device=self.device)
            out.append(net(z).float().reshape(z.shape[0], *self.image_shape).cpu())
        net.train(was_training)
        return torch.cat(out)

    def run(self, *, stop_check: Callable[[], bool] | None = None) -> str:
        """Train up to ``cfg.total_iters``, logging to ``log.jsonl``, saving ``last.pt`` / ``step_t.pt``;
        ``stop_check()`` true stops after a checkpoint. Returns ``"done"`` or ``"budget"``."""
        cfg, out = self.cfg, Path(self.cfg.out)
        if self.dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
        self._barrier()
        t0, seconds0, acc, status = time.perf_counter(), self.train_seconds, {}, ["done"]

        def after(it: int, records: list[Tensor]) -> bool:
            self.step = it + 1
            for k, v in self._named(records).items():  # tensors: no device synchronisation until a log line
                acc[k] = (acc[k][0] + v, acc[k][1] + 1) if k in acc else (v, 1)
            self.train_seconds = seconds0 + time.perf_counter() - t0
            if self._logs_at(self.step):
                rec = {"step": self.step, "phase": cfg.phase_of(self.step - 1),
                       **{k: float(v) / n for k, (v, n) in acc.items()}}
                rec["lr"] = self.opt_g.param_groups[0]["lr"]
                self.history.append(rec), acc.clear()
                if self.dist.is_main:
                    with open(out / "log.jsonl", "a") as f:
                        f.write(json.dumps(rec) + "\n")
            stop = bool(stop_check()) if stop_check is not None else False
            if self.dist.distributed and stop_check is not None:  # every process stops at the same step
                flag = torch.tensor([float(stop)], device=self.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop = bool(flag.item() > 0)
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.total_iters or stop:
                self.save(out / "last.pt")
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save(out / f"step_{self.step:07d}.pt")
            if stop and self.step < cfg.total_iters:
                status[0] = "budget"
            return status[0] == "budget"

        self.trainer.fit(self, cfg.total_iters, start=self.step, desc=f"{cfg.method} ({cfg.data})",
                         names=self.names, progress=cfg.progress and self.dist.is_main, callback=after)
        return status[0]


def evaluate(trainer: Trainer, *, n_samples: int | None = None, feature: str | None = None, seed: int = 12345,
             kid: bool | None = None) -> dict:  # fmt: skip
    r"""FID (and KID) of the EMA generator against the training images, labelled with what was measured,
    :math:`\mathrm{FD} = |\mu_r - \mu_g|^2 + \operatorname{tr}(\Sigma_r + \Sigma_g - 2(\Sigma_r^{1/2}
    \Sigma_g\Sigma_r^{1/2})^{1/2})` in Inception-v3 features or :class:`StandInFeatures` (offline: **not** an
    FID), by :func:`gwf_tutorial.metrics.frechet_distance`; ``n_samples``, ``feature`` and ``kid`` default to
    the run's. Returns ``fid``, optional ``kid_mean`` / ``kid_std``, ``n_samples``, ``n_real``, ``feature``,
    ``label``, ``device``, ``step``, ``train_seconds``, ``eval_seconds`` and more.

    Used in: chapter 10.
    """
    cfg, t0, dev = trainer.cfg, time.perf_counter(), trainer.device
    n = _v.check_int(cfg.fid_samples if n_samples is None else n_samples, "n_samples", min_value=2)
    feature = _choice(cfg.feature if feature is None else feature, "feature")
    extractor = None if feature == "inception" else StandInFeatures(*trainer.image_shape[:2])
    real = trainer.real.reshape(-1, *trainer.image_shape)
    fake = trainer.sample(n, seed=seed, batch_size=cfg.fid_batch)
    res = {"fid": _metrics.frechet_distance(real, fake, extractor, batch_size=cfg.fid_batch, device=dev),
           "n_samples": n, "n_real": int(real.shape[0])}  # fmt: skip
    if cfg.kid if kid is None else bool(kid):
        res["kid_mean"], res["kid_std"] = _metrics.kernel_distance(
            real, fake, extractor, subsets=50, subset_size=1000, batch_size=cfg.fid_batch, device=dev)
    data = "CIFAR-10 train set" if cfg.data == "cifar10" else "synthetic data (not CIFAR-10)"
    feat = "Inception-v3 (torchmetrics)" if feature == "inception" else StandInFeatures.label
    label = f"{data}; features: {feat}; {_gpu_name(dev)}"
    return {**res, "feature": feature, "data": cfg.data, "label": label,
            "device": _gpu_name(dev), "method": cfg.method, "net": cfg.net, "step": trainer.step,
            "train_seconds": trainer.train_seconds, "eval_seconds": time.perf_counter() - t0}  # fmt: skip


def _as_config(saved: dict) -> Config:
    return Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()})


def load_generator(path: str | os.PathLike, *, device: str = "cpu", use_ema: bool = True) -> tuple:
    """The (EMA) generator of a checkpoint in eval mode, ``(n, latent_dim) -> (n, C*H*W)``, and its Config."""
    state, config = _train.load_checkpoint(path, kind=_KIND, map_location=device)
    cfg = _as_config(config)
    net = Autocast(ConvGenerator(cfg.latent_dim, 3, cfg.image_size, cfg.g_width, cfg.g_blocks), False)
    net.load_state_dict(state["trainer"]["ema" if use_ema else "map"])
    return net.to(device).eval(), cfg


def _prepare_fresh_out(out: Path, *, resume: bool, overwrite: bool, is_main: bool) -> None:
    """Refuse a fresh run into a folder holding a run (unless ``overwrite``: then clear its files)."""
    if resume and is_main:
        msg = f"--resume: no checkpoint {str(out / 'last.pt')!r}; starting a fresh run"
        print(f"[gwf_tutorial.cifar10] {msg}", file=sys.stderr, flush=True)
    held = [p.name for p in (sorted(out.glob("*")) if out.is_dir() else [])
            if p.name in _RUN_FILES or (p.match("step_*.pt") and p.is_file())]  # fmt: skip
    if held and not overwrite:
        raise ValueError(f"output folder {str(out)!r} already holds a run ({', '.join(held)})"
                         + (" but no checkpoint last.pt to resume from" if resume else "")
                         + "; --resume continues it, --overwrite replaces it (train(..., resume=True / "
                         "overwrite=True))")  # fmt: skip
    for name in held if is_main else ():
        (out / name).unlink()


def train(cfg: Config, *, dist_info: DistInfo | None = None, resume: bool = False, overwrite: bool = False,
          real: Tensor | None = None, evaluate_at_end: bool = True) -> tuple[Trainer, dict]:  # fmt: skip
    r"""Build a :class:`Trainer`, continue ``cfg.out/last.pt`` if ``resume`` (none: say so, start fresh),
    train, write ``samples.png`` and, when done, :func:`evaluate` into ``metrics.json`` (rank 0). A fresh run
    refuses a folder that holds a run unless ``overwrite`` (its files are deleted first). Returns the trainer
    and the summary (``status``, ``step``, ``resumed_from``, ``metrics``, ...).

    Used in: chapter 10.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a Config (make_config, smoke_config), got {type(cfg).__name__}")
    ckpt, out = Path(cfg.out) / "last.pt", Path(cfg.out)
    resuming = resume and ckpt.exists()
    if not resuming:  # checked before the data are loaded
        _prepare_fresh_out(out, resume=resume, overwrite=overwrite, is_main=(dist_info or DistInfo()).is_main)
    trainer = Trainer(cfg, dist_info, real=real)
    if resuming:
        trainer.load(ckpt)
        if trainer.dist.is_main:  # the log restarts from the checkpoint's (exact) history
            (out / "log.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in trainer.history))
    t_end = time.perf_counter() + cfg.time_budget
    status = trainer.run(stop_check=(lambda: time.perf_counter() >= t_end) if cfg.time_budget > 0 else None)
    summary = {"status": status, "step": trainer.step, "total_iters": cfg.total_iters,
               "resumed_from": trainer.resumed_from, "train_seconds": round(trainer.train_seconds, 2),
               "device": _gpu_name(trainer.device), "world_size": trainer.dist.world_size,
               "method": cfg.method, "net": cfg.net, "label": cfg.label}  # fmt: skip
    if trainer.dist.distributed:  # DDP keeps the replicas equal: check it
        sums: list = [None] * trainer.dist.world_size
        torch.distributed.all_gather_object(sums, float(sum(p.detach().double().sum()
                                                            for p in trainer.generator.parameters())))
        summary["replicas_agree"] = len(set(sums)) == 1
    if trainer.dist.is_main:
        from torchvision.utils import save_image

        save_image((trainer.sample(64, seed=0) + 1) / 2, out / "samples.png", nrow=8)
        if status == "done" and evaluate_at_end and cfg.fid_samples > 0:
            summary["metrics"] = evaluate(trainer)
            (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    return trainer, summary


def build_parser() -> argparse.ArgumentParser:
    r"""The command line of ``python -m gwf_tutorial.cifar10``: one flag per :class:`Config` field (unset
    ones keep the method's defaults, listed by ``--help``), and ``--smoke``, ``--resume``, ``--overwrite``.

    Used in: :func:`~gwf_tutorial.cifar10.main`.
    """
    epilog = ["defaults (official commands; unset options keep them):",
              *(f"  {m:9s} " + ", ".join(f"{k}={v}" for k, v in d.items())
                for m, d in METHOD_DEFAULTS.items()),
              "  nets: " + "; ".join(f"{k}: {v}" for k, v in NET_PRESETS.items()),
              f"  --net large with jko-kldv: {_LARGE_KLDV}", f"  --smoke: {_HELP['smoke']}, CPU"]  # fmt: skip
    p = argparse.ArgumentParser(
        prog="python -m gwf_tutorial.cifar10", argument_default=argparse.SUPPRESS, epilog="\n".join(epilog),
        description="Train a one-step generator on CIFAR-10 with parametric JKO (KL-DV, MMD), S-JKO or "
        "drifting; resumable, EMA, bf16 autocast on CUDA, DDP under torchrun, FID/KID at the end.",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for name in ("smoke", "resume", "overwrite"):
        p.add_argument(f"--{name}", action="store_true", help=_HELP[name])
    for name, (_, check) in _SETTINGS.items():
        opts = {"help": _HELP.get(name), "dest": name}
        if check == "bool":
            opts["action"] = argparse.BooleanOptionalAction
        elif isinstance(check, tuple):
            opts["choices"] = check
        else:
            opts["type"] = int if isinstance(check, int) or check == "seed" else str if check in (
                "str", "device") else float  # fmt: skip
            opts.update({"betas": {"nargs": 2}, "floats": {"nargs": "+"}}.get(check, {}))
        p.add_argument(_FLAGS.get(name, "--" + name.replace("_", "-")), **opts)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[Config, bool, bool]:
    r"""Parse ``argv`` into a :class:`Config` and the ``--resume`` and ``--overwrite`` flags (``--resume``:
    the checkpoint's config, with the given operational options on top). A ValueError for ``--resume`` with
    training options that differ from the checkpoint's, a damaged checkpoint, or an invalid setting
    (:func:`make_config`'s checks, before anything runs).

    Used in: :func:`~gwf_tutorial.cifar10.main`.
    """
    given = vars(build_parser().parse_args(argv))
    resume, overwrite, smoke = (bool(given.pop(k, False)) for k in ("resume", "overwrite", "smoke"))
    given.update({k: tuple(given[k]) for k in ("betas", "temperatures") if k in given})
    method = given.get("method", "jko-kldv")
    out = Path(given.get("out", f"runs/smoke-{method}" if smoke else "runs/cifar10"))
    if resume and (out / "last.pt").exists():
        saved = _as_config(_train.load_checkpoint(out / "last.pt", kind=_KIND)[1])
        conflicts = {k: {"checkpoint": getattr(saved, k), "given": v} for k, v in given.items()
                     if k not in _OPERATIONAL and getattr(saved, k) != v}
        if conflicts:
            raise ValueError(f"--resume with settings that differ from the checkpoint "
                             f"{str(out / 'last.pt')!r}: {conflicts}")  # fmt: skip
        operational = {k: v for k, v in given.items() if k in _OPERATIONAL}
        operational.update(out=str(out), time_budget=given.get("time_budget", 0.0))  # not the saved budget
        cfg = dataclasses.replace(saved, **operational)
        _validate(cfg)
        return cfg, True, overwrite
    given.pop("method", None)
    net = given.pop("net", None)
    cfg = smoke_config(method, **given) if smoke else make_config(method, net or "small", **given)
    return cfg, resume, overwrite


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Command-line entry point: parse (an invalid command line exits with status 2 and a usage message),
    set up DDP from ``torchrun``'s variables (:func:`init_distributed`), :func:`train`, print the summary.

    Used in: :mod:`gwf_tutorial.cifar10` (its ``__main__``: ``python -m gwf_tutorial.cifar10``).
    """
    try:
        cfg, resume, overwrite = config_from_args(argv)
    except (ValueError, TypeError) as err:
        build_parser().error(str(err))
    info = init_distributed(cuda=_train.device(cfg.device or None).type == "cuda")
    try:
        if info.is_main:
            print(f"[gwf_tutorial.cifar10] {cfg.method} / {cfg.net} on {cfg.label}; {cfg.total_iters} "
                  f"iterations; world size {info.world_size}; out={cfg.out}", flush=True)  # fmt: skip
        _, summary = train(cfg, dist_info=info, resume=resume, overwrite=overwrite)
        if info.is_main:
            print(json.dumps(summary), flush=True)
        return summary
    finally:
        if info.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover - exercised by tests through subprocesses
    main(sys.argv[1:])


#: Schema tag of the JSON written by ``scripts/gpu_check.py`` (read by :func:`throughput_table`).
GPU_CHECK_SCHEMA = "gwf_tutorial.gpu_check/1"


def throughput_table(result: dict, *, precision: str = "bf16") -> list[dict]:
    r"""Hours each method's recipe takes at the steady speed :math:`s_m` (iterations per second, synthetic
    data, no FID) that a ``gpu_check`` JSON measured, :math:`(N_0 + (K - 1) N) / (3600\, s_m)`. One row per
    method in ``cifar10.METHODS`` order: ``method``, ``net``, ``batch_size``, ``precision``, ``it_per_s``,
    ``recipe_iters``, ``hours``, ``device``, ``dry_run``. A ValueError for another JSON or precision.

    Used in: chapter 10.
    """

    if not isinstance(result, dict) or result.get("schema") != GPU_CHECK_SCHEMA:
        raise ValueError(f"result must be a gpu_check JSON with schema {GPU_CHECK_SCHEMA!r}")
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be one of ('bf16', 'fp32'), got {precision!r}")
    s, rows = result["settings"], []
    for rec in result["throughput"]:
        if rec["precision"] == precision and rec["method"] in METHODS:
            iters, speed = make_config(rec["method"], s["recipe_net"]).total_iters, rec["steady_it_per_s"]
            rows.append({"method": rec["method"], "net": s["net"], "batch_size": s["batch_size"],
                         "precision": precision, "it_per_s": speed, "recipe_iters": iters,
                         "hours": iters / speed / 3600.0, "device": result["device"],
                         "dry_run": bool(result["dry_run"])})  # fmt: skip
    if not rows:
        raise ValueError(f"the result holds no {precision} measurement")
    return sorted(rows, key=lambda r: METHODS.index(r["method"]))
