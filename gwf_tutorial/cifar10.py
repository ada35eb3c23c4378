r"""CIFAR-10 on one GPU (or several): one resumable training entry point over the library.

.. code-block:: bash

    python -m gwf_tutorial.cifar10 --method jko-kldv --net small --out runs/kldv        # train
    python -m gwf_tutorial.cifar10 --resume --out runs/kldv                              # continue to the end
    python -m gwf_tutorial.cifar10 --overwrite --method sjko --out runs/kldv              # replace that run
    torchrun --nproc_per_node 4 -m gwf_tutorial.cifar10 --method sjko --out runs/sjko     # 4 GPUs
    python -m gwf_tutorial.cifar10 --smoke --method drifting --out runs/smoke             # CPU, offline

Every method trains a one-step generator :math:`G_\theta : \mathbb R^{n_z} \to [-1, 1]^{3 \cdot 32 \cdot 32}`
(flat images, :class:`~gwf_tutorial.nets.ConvGenerator`); the losses are the library's, composed here:

- ``jko-kldv`` -- the parametric JKO step of GWF (chapter 4) on :math:`\mathrm{KL}(\rho\|\nu)` in its
  Donsker--Varadhan form, critic :math:`h` (:class:`~gwf_tutorial.jko.VariationalFDivergence`),
  reparameterized: phase :math:`k` trains :math:`G` from the latent with the proximal pull to the frozen
  :math:`G_k`,

  .. math::

      \min_\theta \max_h\ \frac{1}{2\tau d}\,\mathbb E_z|G_\theta(z) - G_k(z)|^2
      + \mathbb E_z h(G_\theta(z)) - \log \mathbb E_\nu e^{h} ;

- ``jko-mmd`` -- the same step with :math:`\mathrm{MMD}^2` of a learned kernel on a convolutional
  embedding (:class:`~gwf_tutorial.jko.LearnedKernelMMD`, chapter 5);
- ``sjko`` -- S-JKO (chapter 7): the semi-dual of the same step with a potential :math:`v`,
  :func:`~gwf_tutorial.sjko.potential_loss` and :func:`~gwf_tutorial.sjko.map_loss`;
- ``drifting`` -- the drifting model (chapter 8): :func:`~gwf_tutorial.drifting.drifting_loss` with the
  multi-temperature field :class:`~gwf_tutorial.drifting.MultiTemperatureDrift`, in pixel space.

Around them the loop adds what long runs need: an exponential moving average (EMA) of the generator,
``torch.autocast`` mixed precision (bfloat16, CUDA only), cosine learning-rate schedules as in the papers'
commands, DistributedDataParallel under ``torchrun`` (gloo on CPU, NCCL on CUDA), and checkpoints: a rolling
``last.pt`` plus periodic ``step_XXXXXXX.pt`` holding the networks, the EMA, the frozen previous map, the
optimisers, the schedulers, the step, every random state (per process) and the configuration, so that
``--resume`` continues **exactly** (bit for bit on a CPU) where an interrupted run stopped. They use the
library's one checkpoint format (:func:`gwf_tutorial.train.save_checkpoint`): a damaged file is refused,
naming it, and so is a resume with other training settings. A fresh run never writes into a folder that
already holds a run: ``--resume`` continues it, ``--overwrite`` replaces it.

FID / KID are computed with torchmetrics (:func:`gwf_tutorial.metrics.frechet_distance`) on
``--fid-samples`` samples of the EMA generator (50 000 by default on CIFAR-10) against the CIFAR-10
**train** set, with Inception-v3 features (weights downloaded at first use). Offline, ``--smoke`` (or
``--data synthetic --feature standin``) runs the same pipeline on :func:`gwf_tutorial.data.synthetic_images`
with a frozen random convolutional feature extractor (:class:`StandInFeatures`); every output of such a run
says so, and its numbers say nothing about CIFAR-10.

Used in: chapter 10.

References
----------
Korba, Bonet, Caucheteux (2026), GWF, official ``Paulcauch/GWF`` (``train.py``, README commands).
Choi, Choi, Kang (2024), S-JKO, official ``Jae-Moo/Scalable-JKO`` (``train.py``).
Deng et al. (2026), Generative modeling via drifting, official ``lambertae/drifting`` (``torch/train.py``).
Heusel et al. (2017), FID; Binkowski et al. (2018), KID.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gwf_tutorial import critics as _critics
from gwf_tutorial import data as _data
from gwf_tutorial import drifting as _drifting
from gwf_tutorial import jko as _jko
from gwf_tutorial import metrics as _metrics
from gwf_tutorial import sjko as _sjko
from gwf_tutorial import train as _train
from gwf_tutorial._validation import check_betas, check_int, check_nonnegative, check_positive, check_seed
from gwf_tutorial.nets import ConvCritic, ConvGenerator
from gwf_tutorial.train import (
    ema_update,
    load_checkpoint,
    make_generator,
    progress,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

__all__ = [
    "METHODS",
    "NET_PRESETS",
    "METHOD_DEFAULTS",
    "Config",
    "make_config",
    "smoke_config",
    "DistInfo",
    "init_distributed",
    "StandInFeatures",
    "Trainer",
    "train",
    "load_generator",
    "evaluate",
    "GPU_CHECK_SCHEMA",
    "throughput_table",
    "build_parser",
    "main",
]

#: Training methods of :func:`main` (``--method``).
METHODS = ("jko-kldv", "jko-mmd", "sjko", "drifting")

#: Network sizes (``--net``): latent dimension, generator width and blocks per resolution, critic width and
#: plain blocks after its two downsampling blocks. ``small`` is the GWF paper's Small-Net (OTM:
#: ``--nz 192 --ngf 256``, critic width ``ngf``); ``large`` is a deeper net of the same ResNet family
#: (**not** the paper's NCSN++ Large-Net); ``tiny`` is for CPU smoke runs.
NET_PRESETS: dict[str, dict] = {
    "tiny": {"latent_dim": 48, "g_width": 16, "g_blocks": 1, "d_width": 16, "d_blocks": 1},
    "small": {"latent_dim": 192, "g_width": 256, "g_blocks": 1, "d_width": 256, "d_blocks": 2},
    "large": {"latent_dim": 192, "g_width": 256, "g_blocks": 2, "d_width": 256, "d_blocks": 4},
}

#: Per-method defaults, from the official commands. GWF README (Small-Net): ``--lambda2 1`` (the transport
#: cost ``mean_d |x - x'|^2 / lambda2``, i.e. ``tau = lambda2 / 2 = 0.5`` with the per-dimension average),
#: ``--batch_size 256 --JKO_steps 100 --inner_iterations_first 2000 --inner_iterations 1000``, Adam
#: ``lr_T = 2e-4, lr_D = 1e-4, betas = (0.5, 0.9)``, EMA 0.9999; KL-DV with ``--gp_type sjko --lbda_gp 0.2``
#: (``0.2 |grad h(y)|^2`` on data: ``r1 = 0.4`` in the library's ``r1 / 2`` convention), MMD with a learned
#: kernel on a 128-d embedding and ``--lbda_gp 10`` (here the WGAN-GP of :func:`critics.gradient_penalty`; GWF
#: penalises ``|grad|^2`` at interpolates). S-JKO README CIFAR-10 command: ``--num_phase 100 --init_h 0.1
#: --h 0.1 --init_num_iterations 10000 --num_iterations 2000 --use_ema --ema_decay 0.9999 --lr_scheduler``;
#: its ``train.py`` loss ``0.5 c / h`` with ``c`` the per-dimension mean is ``|x - x'|^2 / (2 h d)``, so
#: ``tau = h = 0.1`` here (per-dimension cost; ``sjko.tau_from_h``: ``tau = h d = 307.2`` with the summed
#: cost, the README's ``1 / tau_README = 2 d h``); ``--lr_scheduler`` is one ``CosineAnnealingLR`` of both
#: optimisers over all ``10000 + 99 * 2000`` iterations down to ``eta_min = 5e-5`` (``lr_schedule =
#: "cosine"``); ``train.py`` defaults for the rest: batch 256, Adam ``2e-4 / 1e-4``, betas (0.5, 0.9), R1
#: ``lmbda = 0.2`` (as ``lmbda / 2``). Phase 0 starts from the bicubic upsampling of the ``3 x 8 x 8``
#: latent (``Q`` of its ``train.py`` for the ``otm`` generator, the family of this file's nets; the
#: README command's default NCSN++ maps a ``3 x 32 x 32`` noise image and starts from that image).
#: Drifting (official torch
#: ``train.py``): EMA 0.9999, gradient clipping at 1; the learning rate, betas and the pixel-space field are
#: this tutorial's choices (the paper drifts in the features of a pretrained MAE).
METHOD_DEFAULTS: dict[str, dict] = {
    "jko-kldv": {
        "tau": 0.5,
        "n_phases": 100,
        "n_iters_first": 2000,
        "n_iters": 1000,
        "lr": 2e-4,
        "lr_critic": 1e-4,
        "betas": (0.5, 0.9),
        "r1": 0.4,
        "gp": 0.0,
        "reference": "noise",
        "grad_clip": 0.0,
    },
    "jko-mmd": {
        "tau": 0.5,
        "n_phases": 100,
        "n_iters_first": 2000,
        "n_iters": 1000,
        "lr": 2e-4,
        "lr_critic": 1e-4,
        "betas": (0.5, 0.9),
        "r1": 0.0,
        "gp": 10.0,
        "reference": "noise",
        "grad_clip": 0.0,
    },
    "sjko": {
        "tau": 0.1,
        "n_phases": 100,
        "n_iters_first": 10000,
        "n_iters": 2000,
        "lr": 2e-4,
        "lr_critic": 1e-4,
        "betas": (0.5, 0.9),
        "r1": 0.2,
        "gp": 0.0,
        "reference": "upsample",
        "grad_clip": 0.0,
        "lr_schedule": "cosine",
        "ema_decay": 0.9999,
    },
    "drifting": {
        "tau": 0.0,
        "n_phases": 1,
        "n_iters_first": 100000,
        "n_iters": 0,
        "lr": 2e-4,
        "lr_critic": 0.0,
        "betas": (0.9, 0.999),
        "r1": 0.0,
        "gp": 0.0,
        "reference": "none",
        "grad_clip": 1.0,
    },
}

#: The GWF Large-Net command (KL-DV): ``--lambda2 0.2 --JKO_steps 50 --inner_iterations_first 2000
#: --inner_iterations 2000 --lr_scheduler --scheduler_type cosine --eta_min 5e-5``; used for ``--net large``.
_LARGE_KLDV = {"tau": 0.1, "n_phases": 50, "n_iters_first": 2000, "n_iters": 2000, "lr_schedule": "cosine"}

_REFERENCES = ("noise", "upsample", "copy", "none")
_KIND = "cifar10.Trainer"  # the checkpoint kind (train.save_checkpoint)
# Files of a run in its output folder (a fresh run refuses a folder holding any of them).
_RUN_FILES = ("last.pt", "log.jsonl", "metrics.json", "samples.png")
# Settings that may change when a run is resumed (they do not change the training trajectory).
_OPERATIONAL = (
    "out",
    "ckpt_every",
    "save_every",
    "log_every",
    "time_budget",
    "fid_samples",
    "fid_batch",
    "feature",
    "kid",
    "device",
    "progress",
    "data_root",
)


@dataclass
class Config:
    r"""Every setting of a run (saved in each checkpoint; ``--resume`` checks it).

    .. math::

        \text{iterations} = N_0 + (K - 1) N, \qquad \text{phase } k \text{ starts at }
        N_0 + (k - 1) N \ (k \ge 1),

    with :math:`K` = ``n_phases``, :math:`N_0` = ``n_iters_first``, :math:`N` = ``n_iters``. Fields left at
    ``None`` are filled by :func:`make_config` from :data:`METHOD_DEFAULTS` and :data:`NET_PRESETS`.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    net : str
        One of :data:`NET_PRESETS`.
    data : {"cifar10", "synthetic"}
        CIFAR-10 train set through torchvision, or :func:`gwf_tutorial.data.synthetic_images`.
    data_root : str
        Folder of the CIFAR-10 archive.
    n_synthetic, image_size : int
        Size of the synthetic set and its image size (CIFAR-10: 32).
    latent_dim, g_width, g_blocks, d_width, d_blocks : int
        Network sizes (see :class:`~gwf_tutorial.nets.ConvGenerator`, :class:`~gwf_tutorial.nets.ConvCritic`).
    batch_size : int
        Per process (the effective batch is ``world_size * batch_size``, as in the GWF code).
    lr, lr_critic : float
        Adam learning rates of the generator and of the critic / potential (flags ``--lr-g``, ``--lr-d``).
    betas : tuple of float
    tau : float
        JKO step (transport cost :math:`|x - x'|^2 / (2\tau d)` with the per-dimension average).
    n_phases, n_iters_first, n_iters : int
        JKO phases and iterations (drifting: one phase of ``n_iters_first`` steps); flags ``--phases``,
        ``--iters-first``, ``--iters``.
    reference : {"noise", "upsample", "copy", "none"}
        What phase 0 is pulled to: independent :math:`\mathcal N(0, I)` images (GWF), the bicubic upsampling
        of the latent (S-JKO), a frozen copy of the initial generator, or nothing (drifting).
    r1, gp : float
        R1 weight (loss ``+ r1/2 E|grad|^2`` on data) and WGAN-GP weight of the critic / potential.
    mmd_features : int
        Learned embedding dimension of ``jko-mmd``.
    temperatures : tuple of float
        Drift temperatures (``drifting``).
    grad_clip : float
        Generator gradient-norm clip (0: none).
    ema_decay : float
    lr_schedule : {"constant", "cosine"}
        Cosine: ``CosineAnnealingLR`` over all iterations down to ``eta_min`` (both papers' option).
    eta_min : float
    amp : bool
        bfloat16 autocast of the networks (CUDA only; ignored on a CPU).
    seed : int
    out : str
        Output folder (checkpoints, ``log.jsonl``, ``samples.png``, ``metrics.json``).
    ckpt_every, save_every, log_every : int
        Rolling checkpoint, periodic checkpoint (0: none) and log periods, in iterations.
    time_budget : float
        Stop (after a checkpoint) once this many seconds of training have passed in this call (0: none).
        Per invocation: ``--resume`` does not reuse a saved one (a resumed run goes to the end unless
        given a new ``--time-budget``).
    fid_samples, fid_batch : int
        Samples for FID / KID at the end (0: skip) and the batch of the feature extractor.
    feature : {"inception", "standin"}
    kid : bool
        Also compute KID.
    device : str
        ``""`` = :func:`gwf_tutorial.train.device` (``$GWF_DEVICE``, else CUDA when present, else the CPU);
        under ``torchrun`` CUDA means ``cuda:LOCAL_RANK``.
    progress : bool
    """

    method: str = "jko-kldv"
    net: str = "small"
    data: str = "cifar10"
    data_root: str = "data"
    n_synthetic: int = 5000
    image_size: int = 32
    latent_dim: int | None = None
    g_width: int | None = None
    g_blocks: int | None = None
    d_width: int | None = None
    d_blocks: int | None = None
    batch_size: int = 256
    lr: float | None = None
    lr_critic: float | None = None
    betas: tuple[float, float] | None = None
    tau: float | None = None
    n_phases: int | None = None
    n_iters_first: int | None = None
    n_iters: int | None = None
    reference: str | None = None
    r1: float | None = None
    gp: float | None = None
    mmd_features: int = 128
    temperatures: tuple[float, ...] = (0.02, 0.05, 0.2)
    grad_clip: float | None = None
    ema_decay: float = 0.9999
    lr_schedule: str | None = None
    eta_min: float = 5e-5
    amp: bool = True
    seed: int = 0
    out: str = "runs/cifar10"
    ckpt_every: int = 1000
    save_every: int = 20000
    log_every: int = 100
    time_budget: float = 0.0
    fid_samples: int = 50000
    fid_batch: int = 250
    feature: str = "inception"
    kid: bool = False
    device: str = ""
    progress: bool = True

    @property
    def total_iters(self) -> int:
        """``n_iters_first + (n_phases - 1) * n_iters``."""
        return self.n_iters_first + (self.n_phases - 1) * self.n_iters

    def phase_start(self, k: int) -> int:
        """First iteration of phase ``k`` (0-based)."""
        return 0 if k == 0 else self.n_iters_first + (k - 1) * self.n_iters

    def phase_of(self, step: int) -> int:
        """Phase of iteration ``step`` (0-based)."""
        if step < self.n_iters_first or self.n_iters == 0:
            return 0
        return 1 + (step - self.n_iters_first) // self.n_iters

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"]) if d["betas"] is not None else None
        d["temperatures"] = list(d["temperatures"])
        return d

    @property
    def is_synthetic(self) -> bool:
        return self.data == "synthetic"

    @property
    def label(self) -> str:
        """What the numbers of this run are: data, features, and whether they say anything about CIFAR-10."""
        data = "CIFAR-10 train set" if self.data == "cifar10" else "SYNTHETIC data (not CIFAR-10)"
        feat = (
            "Inception-v3 features" if self.feature == "inception" else "STAND-IN features (random conv net)"
        )
        return f"{data}, {feat}"


def _check_choice(value, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def make_config(method: str = "jko-kldv", net: str = "small", **overrides) -> Config:
    r"""A complete, checked :class:`Config`: method and network defaults, then ``overrides``.

    .. math::

        \text{config} = \text{Config()} \leftarrow \text{NET\_PRESETS[net]} \leftarrow
        \text{METHOD\_DEFAULTS[method]} \leftarrow \text{overrides}.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    net : str
        One of :data:`NET_PRESETS`.
    **overrides
        Any :class:`Config` field.

    Returns
    -------
    Config

    Raises
    ------
    ValueError, TypeError
        Unknown fields or values out of range, naming the field.

    Used in: chapter 10.
    """
    _check_choice(method, "method", METHODS)
    _check_choice(net, "net", tuple(NET_PRESETS))
    names = {f.name for f in dataclasses.fields(Config)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"unknown Config fields: {sorted(unknown)}")
    values = dict(NET_PRESETS[net])
    values.update(METHOD_DEFAULTS[method])
    if net == "large" and method == "jko-kldv":
        values.update(_LARGE_KLDV)
    values.setdefault("lr_schedule", "constant")
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = Config(method=method, net=net, **{k: v for k, v in values.items() if k not in ("method", "net")})
    _validate(cfg)
    return cfg


#: Config fields whose command-line flag has another name (the papers' flags); errors name both.
_FLAGS = {"lr": "--lr-g", "lr_critic": "--lr-d", "n_phases": "--phases", "n_iters_first": "--iters-first",
          "n_iters": "--iters"}  # fmt: skip


def _label(name: str) -> str:
    return f"{name} ({_FLAGS[name]})" if name in _FLAGS else name


def _validate(cfg: Config) -> None:
    _check_choice(cfg.data, "data", ("cifar10", "synthetic"))
    _check_choice(cfg.reference, "reference", _REFERENCES)
    _check_choice(cfg.lr_schedule, "lr_schedule", ("constant", "cosine"))
    _check_choice(cfg.feature, "feature", ("inception", "standin"))
    for name in (
        "latent_dim",
        "g_width",
        "g_blocks",
        "d_width",
        "batch_size",
        "n_phases",
        "n_iters_first",
        "mmd_features",
        "ckpt_every",
        "log_every",
        "fid_batch",
    ):
        check_int(getattr(cfg, name), _label(name))
    for name in ("d_blocks", "n_iters", "save_every", "fid_samples"):
        check_int(getattr(cfg, name), _label(name), min_value=0)
    if cfg.fid_samples == 1:  # checked now, not after training: FID / KID need two samples
        raise ValueError("fid_samples must be 0 (no evaluation) or >= 2 (FID needs two samples), got 1")
    check_int(cfg.n_synthetic, "n_synthetic", min_value=2)  # FID / KID need two real images
    cfg.seed = check_seed(cfg.seed, "seed")
    check_int(cfg.image_size, "image_size", min_value=4)
    if cfg.data == "cifar10" and cfg.image_size != 32:
        raise ValueError(f"image_size must be 32 for CIFAR-10, got {cfg.image_size}")
    if cfg.n_phases > 1 and cfg.n_iters < 1:
        raise ValueError("n_iters (--iters) must be >= 1 when n_phases (--phases) > 1")
    for name in ("lr", "ema_decay"):
        check_positive(getattr(cfg, name), _label(name))
    if not cfg.ema_decay < 1:
        raise ValueError(f"ema_decay must be in (0, 1), got {cfg.ema_decay}")
    for name in ("lr_critic", "r1", "gp", "grad_clip", "eta_min", "time_budget", "tau"):
        check_nonnegative(getattr(cfg, name), _label(name))
    if cfg.method != "drifting":
        check_positive(cfg.tau, "tau")
        check_positive(cfg.lr_critic, _label("lr_critic"))
        if cfg.reference == "none":
            raise ValueError(f"reference 'none' is for drifting only; {cfg.method} needs a JKO reference")
    if cfg.method == "jko-mmd" and cfg.r1 > 0:
        raise ValueError("jko-mmd penalises the witness with gp (WGAN-GP); r1 must be 0")
    if cfg.reference == "upsample":
        s = math.isqrt(cfg.latent_dim // 3) if cfg.latent_dim % 3 == 0 else 0
        if s * s * 3 != cfg.latent_dim:
            raise ValueError(
                f"reference 'upsample' needs latent_dim = 3 * s * s (a 3 x s x s image), got {cfg.latent_dim}"
            )
    cfg.betas = check_betas(tuple(cfg.betas) if isinstance(cfg.betas, list) else cfg.betas)
    cfg.temperatures = tuple(check_positive(t, "temperatures") for t in cfg.temperatures)
    if not isinstance(cfg.device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {cfg.device!r}")
    if cfg.device or os.environ.get("GWF_DEVICE"):
        _check_device(cfg.device or os.environ["GWF_DEVICE"], "device" if cfg.device else "$GWF_DEVICE")


def _check_device(name: str, what: str) -> torch.device:
    """``torch.device(name)``, or a ``ValueError`` naming ``what`` for an unknown or absent device."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{what} must be 'cpu', 'cuda' or 'cuda:N', got {name!r}") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {name!r} needs a CUDA GPU, but torch finds none; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{what} {name!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def smoke_config(method: str = "jko-kldv", **overrides) -> Config:
    r"""The CPU smoke configuration: synthetic 16x16 images, the ``tiny`` nets, a few hundred iterations.

    .. math::

        \text{data} = \texttt{synthetic\_images}(2000, 16), \quad \text{4 phases}, \quad
        \text{FID on 1000 samples with stand-in features}.

    It exercises every part of the pipeline (losses, EMA, checkpoints, FID) in a couple of minutes on a
    laptop CPU; its numbers say nothing about CIFAR-10.

    Parameters
    ----------
    method : str
    **overrides
        Any :class:`Config` field.

    Returns
    -------
    Config

    Used in: chapter 10 (the CPU path of the notebook), ``tests/test_cifar10.py``.
    """
    base = {
        "data": "synthetic",
        "n_synthetic": 2000,
        "image_size": 16,
        "batch_size": 32,
        "n_phases": 4,
        "n_iters_first": 100,
        "n_iters": 50,
        "ema_decay": 0.98,
        "fid_samples": 1000,
        "feature": "standin",
        "ckpt_every": 50,
        "save_every": 0,
        "log_every": 10,
        "out": f"runs/smoke-{method}",
        "device": "cpu",
        "latent_dim": 48,
    }
    if method == "drifting":
        base.update({"n_phases": 1, "n_iters_first": 250, "n_iters": 0})
    if method == "sjko":
        base.update({"tau": 0.5})
    base.update(overrides)
    return make_config(method, "tiny", **base)


# ---------------------------------------------------------------------------------------------
# distributed set-up
# ---------------------------------------------------------------------------------------------


@dataclass
class DistInfo:
    """Process group facts: ``rank``, ``local_rank``, ``world_size``, ``backend`` (``None``: one process)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(env: dict | None = None, *, cuda: bool | None = None, init: bool = True) -> DistInfo:
    r"""Read the ``torchrun`` variables and start the process group (gloo on CPU, NCCL on CUDA).

    .. math::

        (\texttt{RANK}, \texttt{LOCAL\_RANK}, \texttt{WORLD\_SIZE}) \mapsto \text{DistInfo};
        \quad \texttt{WORLD\_SIZE} \le 1 \Rightarrow \text{single process, nothing started}.

    Parameters
    ----------
    env : dict, optional
        The environment (default ``os.environ``).
    cuda : bool, optional
        Use CUDA (default: :func:`gwf_tutorial.train.device` is CUDA). Selects NCCL and ``cuda:LOCAL_RANK``.
    init : bool, default True
        Call ``torch.distributed.init_process_group`` (``False``: only parse, for tests).

    Returns
    -------
    DistInfo

    Raises
    ------
    ValueError
        Inconsistent or non-integer variables.

    Used in: chapter 10 (``torchrun --nproc_per_node N -m gwf_tutorial.cifar10``).
    """
    env = os.environ if env is None else env
    cuda = _train.device().type == "cuda" if cuda is None else bool(cuda)
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers: {err}") from err
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(
            f"inconsistent torchrun variables: RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world}"
        )
    if world == 1:
        return DistInfo()
    backend = "nccl" if cuda else "gloo"
    info = DistInfo(rank=rank, local_rank=local, world_size=world, backend=backend)
    if init:
        import torch.distributed as dist

        if cuda:
            torch.cuda.set_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, init_method="env://")
    return info


# ---------------------------------------------------------------------------------------------
# small modules
# ---------------------------------------------------------------------------------------------


class _Autocast(nn.Module):
    """Runs ``net`` under bfloat16 autocast (CUDA) and returns float32, so losses are computed in float32."""

    def __init__(self, net: nn.Module, enabled: bool) -> None:
        super().__init__()
        self.net = net
        self.enabled = bool(enabled)
        for name in ("in_dim", "out_dim", "image_shape"):
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return self.net(x)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            out = self.net(x)
        return out.float()


class _CriticLoss(nn.Module):
    """One module around the critic whose ``forward`` returns its loss, so that DDP synchronises it."""

    def __init__(self, critic: nn.Module, loss_fn: Callable[[nn.Module, Tensor, Tensor], tuple]) -> None:
        super().__init__()
        self.critic = critic
        self._loss_fn = loss_fn

    def forward(self, x_fake: Tensor, y: Tensor):
        return self._loss_fn(self.critic, x_fake, y)


class StandInFeatures(nn.Module):
    r"""A frozen, randomly initialised convolutional feature extractor: the **offline stand-in** of Inception.

    .. math::

        \phi(x) = D_{\omega_0}(x) \in \mathbb R^{p}, \qquad \omega_0 \text{ drawn once from a fixed seed},

    with :math:`D` a :class:`~gwf_tutorial.nets.ConvCritic` (no training). Random convolutional features
    separate image distributions (they detect the synthetic set's dropped classes), so the FID/KID pipeline
    can be tested end to end without downloading Inception weights. A Fréchet distance in these features is
    **not** an FID: it is not comparable to any published number.

    Parameters
    ----------
    channels, size : int
        Image shape.
    num_features : int, default 64
        :math:`p`.
    seed : int, default 0

    Notes
    -----
    ``forward(x)`` maps images ``(b, C, H, W)`` in ``[-1, 1]`` to ``(b, num_features)``.

    Used in: chapter 10 (smoke runs), ``tests/test_cifar10.py``.
    """

    label = "stand-in features (a frozen random conv net), not Inception: not an FID"

    def __init__(self, channels: int = 3, size: int = 32, num_features: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.num_features = check_int(num_features, "num_features")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_int(seed, "seed", min_value=0))
            self.net = ConvCritic(channels, size, width=32, out_dim=self.num_features, n_down=2, n_blocks=0)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1).float())


# ---------------------------------------------------------------------------------------------
# the trainer
# ---------------------------------------------------------------------------------------------


def _frozen_copy(net: nn.Module) -> nn.Module:
    c = copy.deepcopy(net)
    for p in c.parameters():
        p.requires_grad_(False)
    return c


def _gpu_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU (no GPU)"


class Trainer:
    r"""Builds the networks, losses, optimisers and data of a :class:`Config` and trains, resumably.

    One iteration (step :math:`t`, phase :math:`k`):

    .. math::

        \text{critic / potential: } \phi \leftarrow \mathrm{Adam}(\nabla_\phi L_\phi), \qquad
        \text{generator: } \theta \leftarrow \mathrm{Adam}(\nabla_\theta L_\theta), \qquad
        \bar\theta \leftarrow \beta\bar\theta + (1 - \beta)\theta,

    with the method's losses (module docstring) and, for the JKO methods, the frozen reference
    :math:`G_k` taken at the first iteration of each phase :math:`k \ge 1` (evaluated with batch
    statistics, like the trained generator, so the transport cost is exactly 0 at the start of a phase);
    phase 0's reference is ``cfg.reference``.

    Parameters
    ----------
    cfg : Config
    dist_info : DistInfo, optional
        From :func:`init_distributed` (default: single process).
    real : Tensor, optional
        Training images ``(N, C, H, W)`` in ``[-1, 1]`` (default: loaded from ``cfg.data``).

    Attributes
    ----------
    generator, ema : nn.Module
        The trained generator and its EMA (flat outputs; ``ema`` is what :meth:`sample` uses).
    critic : nn.Module or None
        Critic (``jko-kldv``), learned kernel (``jko-mmd``) or potential (``sjko``).
    step : int
        Iterations done.
    history : list of dict
        Logged losses every ``cfg.log_every`` iterations.

    Used in: chapter 10.
    """

    def __init__(self, cfg: Config, dist_info: DistInfo | None = None, *, real: Tensor | None = None) -> None:
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a Config, got {type(cfg).__name__}")
        _validate(cfg)
        self.cfg = cfg
        self.dist = dist_info or DistInfo()
        dev = _train.device(cfg.device or None)  # the library's one device rule (train.device)
        if dev.type == "cuda" and (self.dist.distributed or dev.index is None):
            dev = torch.device("cuda", self.dist.local_rank)
        self.device = dev
        self.amp = bool(cfg.amp) and dev.type == "cuda"
        cuda = dev.type == "cuda"
        if cuda:  # fastest convolutions (GPU runs are not bitwise reproducible anyway)
            torch.backends.cudnn.benchmark = True
        if real is None:
            real = self._load_real()
        if not isinstance(real, Tensor) or real.ndim != 4:
            raise ValueError(
                f"real must be a tensor of shape (N, C, H, W), got {getattr(real, 'shape', real)}"
            )
        self.image_shape = tuple(real.shape[1:])
        self.dim = int(np.prod(self.image_shape))
        self.real = real.to(self.device, torch.float32).reshape(real.shape[0], self.dim)

        # random streams: one on the device (latents, noise, batches), one on the CPU (penalties)
        rank_seed = cfg.seed + 1_000_003 * self.dist.rank
        self.g_dev = make_generator(rank_seed, device=self.device)
        self.g_cpu = make_generator(rank_seed + 1)
        torch.manual_seed(cfg.seed)  # network initialisation: the same on every process
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)

        c, s = self.image_shape[0], self.image_shape[1]
        gen = ConvGenerator(cfg.latent_dim, c, s, cfg.g_width, cfg.g_blocks)
        self.generator = _Autocast(gen, self.amp).to(self.device)
        self.critic = self._build_critic(c, s)
        if cuda:  # channels-last convolutions (what bf16 tensor cores want); the CPU path is unchanged
            for net in (self.generator, self.critic):
                if net is not None:
                    net.to(memory_format=torch.channels_last)
        self.ema = _frozen_copy(self.generator).eval()
        self.old: nn.Module | None = None  # the frozen G_k of phase k >= 1
        adam = {"betas": cfg.betas, "fused": True} if cuda else {"betas": cfg.betas}  # fused: few launches
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=cfg.lr, **adam)
        self.opt_d = (
            None
            if self.critic is None
            else torch.optim.Adam(self.critic.parameters(), lr=cfg.lr_critic, **adam)
        )
        self.sched = []
        if cfg.lr_schedule == "cosine":
            for opt in (self.opt_g, self.opt_d):
                if opt is not None:
                    self.sched.append(
                        torch.optim.lr_scheduler.CosineAnnealingLR(
                            opt, T_max=cfg.total_iters, eta_min=cfg.eta_min
                        )
                    )
        self._setup_losses()
        self.g_train: nn.Module = self.generator
        self.d_train: nn.Module | None = self._critic_loss_module
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DDP(self.generator, device_ids=ids, broadcast_buffers=False)
            if self.d_train is not None:
                self.d_train = DDP(self.d_train, device_ids=ids, broadcast_buffers=False)
        self.step = 0
        self.history: list[dict] = []
        self.train_seconds = 0.0
        self.resumed_from: int | None = None

    # -- construction ---------------------------------------------------------------------------

    def _load_real(self) -> Tensor:
        cfg = self.cfg
        if cfg.data == "cifar10":  # rank 0 downloads first, the others read its copy
            images = None
            if self.dist.is_main:
                images, _ = _data.cifar10_tensor(cfg.data_root, train=True, download=True)
            self._barrier()
            if images is None:
                images, _ = _data.cifar10_tensor(cfg.data_root, train=True, download=False)
            return images
        g = make_generator(10_000 + cfg.seed)  # the same synthetic set on every process
        images, _ = _data.synthetic_images(cfg.n_synthetic, size=cfg.image_size, generator=g)
        return images

    def _build_critic(self, c: int, s: int) -> nn.Module | None:
        cfg = self.cfg
        if cfg.method == "drifting":
            return None
        if cfg.method == "jko-mmd":
            conv = ConvCritic(c, s, cfg.d_width, cfg.mmd_features, n_blocks=cfg.d_blocks, zero_init_last=True)
            # the kernel's embedding g_psi is the conv net: phi(x) = (x, g_psi(x)); it starts at 0, so the
            # kernel starts as the fixed multi-bandwidth Gaussian kernel on pixels
            kernel = _critics.LearnedKernel(
                self.dim, feature_dim=cfg.mmd_features, embedding=_Autocast(conv, self.amp)
            )
            return kernel.to(self.device)
        conv = _Autocast(ConvCritic(c, s, cfg.d_width, 1, n_blocks=cfg.d_blocks), self.amp)
        if cfg.method == "jko-kldv":
            return _critics.Critic(self.dim, "kl_dv", net=conv).to(self.device)
        return conv.to(self.device)  # sjko: the potential v, (n, d) -> (n, 1)

    def _setup_losses(self) -> None:
        cfg = self.cfg
        self.objective = None
        self.drift = None
        if cfg.method == "jko-kldv":
            self.objective = _jko.get_critic_objective("kl_dv")
        elif cfg.method == "jko-mmd":
            self.objective = _jko.LearnedKernelMMD(feature_dim=cfg.mmd_features)
        elif cfg.method == "drifting":
            self.drift = _drifting.MultiTemperatureDrift(cfg.temperatures)
        if self.critic is None:
            self._critic_loss_module = None
            return
        fn = self._sjko_potential_loss if cfg.method == "sjko" else self._adversary_loss
        self._critic_loss_module = _CriticLoss(self.critic, fn)

    # -- losses (the library's, composed) -------------------------------------------------------

    def _adversary_loss(self, critic: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Critic loss of a parametric JKO step: minus the bound, plus R1 / WGAN-GP (as ParametricJKO)."""
        cfg = self.cfg
        loss, bound = self.objective.critic_loss(critic, x, y, r1=cfg.r1, gp=cfg.gp, generator=self.g_cpu)
        return loss, bound.detach()

    def _sjko_potential_loss(self, potential: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """S-JKO potential loss ``E v(T(x)) + E Psi*(-v(y)) + r1/2 E|grad v(y)|^2`` (KL)."""
        if self.cfg.r1 > 0:
            v_real, grad = _critics.value_and_input_grad(potential, y)
        else:
            v_real, grad = potential(y), None
        loss = _sjko.potential_loss(potential(x), v_real, "kl", grad_real=grad, r1=self.cfg.r1)
        return loss, loss.detach()

    def _reference(self, z: Tensor, step: int) -> Tensor:
        """Points of rho_k paired with G(z): the frozen G_k, or phase 0's reference."""
        if self.old is not None:
            with torch.no_grad():
                return self.old(z)
        ref = self.cfg.reference
        if ref == "noise":
            return torch.randn(z.shape[0], self.dim, generator=self.g_dev, device=self.device)
        if ref == "upsample":
            c, s = self.image_shape[0], self.image_shape[1]
            q = math.isqrt(z.shape[1] // c)
            img = nn.functional.interpolate(
                z.reshape(-1, c, q, q), size=(s, s), mode="bicubic", align_corners=False
            )
            return img.reshape(z.shape[0], self.dim)
        raise RuntimeError("reference 'copy' is set up in _start_phase")  # pragma: no cover

    def _start_phase(self, step: int) -> None:
        cfg = self.cfg
        if cfg.method == "drifting":
            return
        if step == 0 and cfg.reference == "copy" and self.old is None:
            self.old = _frozen_copy(self.generator).train()
        elif (
            step > 0
            and cfg.n_iters > 0
            and step >= cfg.n_iters_first
            and (step - cfg.n_iters_first) % cfg.n_iters == 0
        ):
            # phase boundary: freeze G_k; evaluated with batch statistics like G itself (as the S-JKO code),
            # so that at the first iteration of the phase G(z) = G_k(z) exactly
            self.old = _frozen_copy(self.generator).train()

    def _draw(self) -> tuple[Tensor, Tensor]:
        b = self.cfg.batch_size
        z = torch.randn(b, self.cfg.latent_dim, generator=self.g_dev, device=self.device)
        idx = torch.randint(0, self.real.shape[0], (b,), generator=self.g_dev, device=self.device)
        return z, self.real[idx]

    def _set_critic_grad(self, flag: bool) -> None:
        for p in self.critic.parameters():
            p.requires_grad_(flag)

    def train_step(self) -> dict:
        r"""One iteration: critic / potential update, generator update, EMA, schedulers.

        .. math::

            t \mapsto t + 1.

        No host synchronisation of its own: the losses stay on the device (the loop averages them there
        and reads them once per log line); ``drifting``'s raw drift RMS is computed at logged iterations only.

        Returns
        -------
        dict
            Detached scalar tensors of this iteration (``loss_g``, ``loss_d``, ``transport``, ``objective``;
            ``drift_rms`` at logged iterations of ``drifting``).

        Used in: chapter 10.
        """
        cfg = self.cfg
        self._start_phase(self.step)
        self.generator.train()
        out: dict = {}
        if self.critic is not None:
            z, y = self._draw()
            with torch.no_grad():
                x_fake = self.g_train(z)
            self._set_critic_grad(True)
            loss_d, value = self.d_train(x_fake, y)
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            out["loss_d"], out["objective"] = loss_d.detach(), value
            self._set_critic_grad(False)

        z, y = self._draw()
        x = self.g_train(z)
        if cfg.method == "drifting":
            V = self._drift_field(x.detach(), y, out)
            loss_g = _drifting.drifting_loss(x, V)
        else:
            x_old = self._reference(z, self.step)
            if cfg.method == "sjko":
                loss_g = _sjko.map_loss(x, x_old, self.critic(x), cfg.tau, per_dim_average=True)
                transport = _jko.proximal_cost(x.detach(), x_old, cfg.tau, per_dim_average=True).mean()
            else:
                transport = _jko.proximal_cost(x, x_old, cfg.tau, per_dim_average=True).mean()
                loss_g = transport + self.objective.map_term(self.critic, x, y)
            out["transport"] = transport.detach()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.generator.parameters(), cfg.grad_clip)
        self.opt_g.step()
        if self.critic is not None:
            self._set_critic_grad(True)
        self._update_ema()
        for sch in self.sched:
            sch.step()
        out["loss_g"] = loss_g.detach()
        self.step += 1
        return out

    def _logs_at(self, step: int) -> bool:
        """Whether iteration ``step`` (1-based count after it) is logged."""
        return step % self.cfg.log_every == 0 or step == self.cfg.total_iters

    def _drift_field(self, x: Tensor, y: Tensor, out: dict) -> Tensor:
        """The drift field, without per-step input checks or host reads; its raw RMS at logged iterations."""
        V, raw = self.drift._velocity(x, y, with_raw=self._logs_at(self.step + 1))
        if raw is not None:
            out["drift_rms"] = raw.float()
        return V

    def _update_ema(self) -> None:
        ema_update(self.ema, self.generator, self.cfg.ema_decay)

    # -- checkpoints ----------------------------------------------------------------------------

    def _rng_state(self) -> dict:
        return {**rng_state(), "g_dev": self.g_dev.get_state(), "g_cpu": self.g_cpu.get_state()}

    def _set_rng_state(self, st: dict) -> None:
        self.g_dev.set_state(st["g_dev"])
        self.g_cpu.set_state(st["g_cpu"])
        set_rng_state(st)

    def state_dict(self) -> dict:
        r"""Everything needed to continue exactly: networks, EMA, frozen map, optimisers, schedulers, RNG.

        .. math::

            \text{state} = (\theta, \phi, \bar\theta, \theta_k, \text{Adam}, \text{schedules}, t,
            \text{RNG states of every process}, \text{history})

        (the configuration is stored beside it by :meth:`save`).

        Collective under DDP (every process must call it; the RNG states are gathered).

        Returns
        -------
        dict

        Used in: chapter 10.
        """
        rng = self._rng_state()
        if self.dist.distributed:
            import torch.distributed as dist

            states: list = [None] * self.dist.world_size
            dist.all_gather_object(states, rng)
        else:
            states = [rng]
        return {
            "step": self.step,
            "world_size": self.dist.world_size,
            "generator": self.generator.state_dict(),
            "ema": self.ema.state_dict(),
            "critic": None if self.critic is None else self.critic.state_dict(),
            "old": None if self.old is None else self.old.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": None if self.opt_d is None else self.opt_d.state_dict(),
            "sched": [s.state_dict() for s in self.sched],
            "rng": states,
            "history": list(self.history),
            "train_seconds": self.train_seconds,
            "device": _gpu_name(self.device),
        }

    def load_state_dict(self, state: dict) -> None:
        r"""Restore :meth:`state_dict` (same number of processes; :meth:`load` checks the configuration).

        .. math::

            \text{state} \mapsto \text{trainer at step } t.

        Parameters
        ----------
        state : dict

        Raises
        ------
        ValueError
            A state of another world size.

        Used in: chapter 10 (``--resume``).
        """
        if not isinstance(state, dict) or "world_size" not in state:
            raise ValueError("state must be a dict returned by Trainer.state_dict")
        if state["world_size"] != self.dist.world_size:
            raise ValueError(
                f"checkpoint was written by {state['world_size']} process(es), "
                f"this run has {self.dist.world_size}"
            )
        self.generator.load_state_dict(state["generator"])
        self.ema.load_state_dict(state["ema"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.opt_d.load_state_dict(state["opt_d"])
        self.opt_g.load_state_dict(state["opt_g"])
        for s, sd in zip(self.sched, state["sched"]):
            s.load_state_dict(sd)
        self.old = None
        if state["old"] is not None:
            self.old = _frozen_copy(self.generator).train()
            self.old.load_state_dict(state["old"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self._set_rng_state(state["rng"][self.dist.rank])
        self.resumed_from = self.step

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` and the configuration (:func:`train.save_checkpoint`: atomic, with its
        SHA-256); rank 0 writes, collective under DDP."""
        state = self.state_dict()
        if self.dist.is_main:
            save_checkpoint(path, state, kind=_KIND, config=self.cfg.to_dict())
        self._barrier()

    def load(self, path: str | os.PathLike) -> None:
        """Load a checkpoint written by :meth:`save`; a damaged file, or one trained with other settings
        (all but the operational ones: output folder, periods, evaluation), is refused naming it."""
        state, _ = load_checkpoint(path, kind=_KIND, config=self.cfg.to_dict(), ignore=_OPERATIONAL)
        self.load_state_dict(state)

    def _barrier(self) -> None:
        if self.dist.distributed:
            import torch.distributed as dist

            dist.barrier()

    # -- sampling and the loop ------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, use_ema: bool = True, batch_size: int = 500) -> Tensor:
        r"""``n`` images from the EMA generator (eval mode), on the CPU.

        .. math::

            x_i = \bar G(z_i), \qquad z_i \sim \mathcal N(0, I), \text{ seeded}.

        Parameters
        ----------
        n : int
        seed : int, default 0
            Seed of the latents (does not touch the training random streams).
        use_ema : bool, default True
        batch_size : int, default 500

        Returns
        -------
        Tensor, shape (n, C, H, W)
            Values in ``[-1, 1]``.

        Used in: chapter 10.
        """
        return torch.cat(list(self.sample_batches(n, seed=seed, use_ema=use_ema, batch_size=batch_size)))

    def sample_batches(self, n: int, *, seed: int = 0, use_ema: bool = True, batch_size: int = 500):
        """Yield :meth:`sample`'s images batch by batch (for FID on 50 000 samples)."""
        n = check_int(n, "n")
        net = self.ema if use_ema else self.generator
        g = make_generator(seed, device=self.device)
        was_training = net.training
        net.eval()
        try:
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                with torch.no_grad():
                    z = torch.randn(b, self.cfg.latent_dim, generator=g, device=self.device)
                    yield net(z).float().reshape(b, *self.image_shape).cpu()
        finally:
            net.train(was_training)

    def run(self, *, stop_check: Callable[[], bool] | None = None) -> str:
        r"""Train up to ``cfg.total_iters`` iterations, checkpointing; returns why it stopped.

        .. math::

            t = t_0, \dots, T - 1, \qquad \text{save } \texttt{last.pt} \text{ every }
            \texttt{ckpt\_every}, \ \texttt{step\_t.pt} \text{ every } \texttt{save\_every}.

        Parameters
        ----------
        stop_check : callable, optional
            Called after every iteration; ``True`` stops after a checkpoint (used for ``time_budget``).

        Returns
        -------
        str
            ``"done"`` or ``"budget"``.

        Used in: chapter 10.
        """
        cfg = self.cfg
        out = Path(cfg.out)
        if self.dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
        self._barrier()
        total = cfg.total_iters
        t_start = time.perf_counter()
        seconds0 = self.train_seconds
        bar = progress(
            range(self.step, total),
            total=total,
            initial=self.step,
            desc=f"{cfg.method} ({cfg.data})",
            disable=not (cfg.progress and self.dist.is_main),
        )
        status = "done"
        acc: dict[str, Tensor] = {}
        n_acc: dict[str, int] = {}
        for _ in bar:
            vals = self.train_step()
            for k, v in vals.items():  # tensors: no device synchronisation until the log line
                acc[k] = acc[k] + v if k in acc else v
                n_acc[k] = n_acc.get(k, 0) + 1
            self.train_seconds = seconds0 + time.perf_counter() - t_start
            if self._logs_at(self.step):
                rec = {"step": self.step, "phase": cfg.phase_of(self.step - 1)}
                rec.update({k: float(v) / n_acc[k] for k, v in acc.items()})
                rec["lr"] = self.opt_g.param_groups[0]["lr"]
                self.history.append(rec)
                acc, n_acc = {}, {}
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix({k: f"{v:.3g}" for k, v in rec.items() if k not in ("step", "phase")})
                if self.dist.is_main:
                    with open(out / "log.jsonl", "a") as f:
                        f.write(json.dumps(rec) + "\n")
            stop = bool(stop_check()) if stop_check is not None else False
            if self.dist.distributed and stop_check is not None:  # every process stops at the same step
                import torch.distributed as dist

                flag = torch.tensor(
                    [float(stop)], device=self.device if self.device.type == "cuda" else "cpu"
                )
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item() > 0)
            if self.step % cfg.ckpt_every == 0 or self.step == total or stop:
                self.save(out / "last.pt")
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save(out / f"step_{self.step:07d}.pt")
            if stop and self.step < total:
                status = "budget"
                break
        return status


def _config_from_dict(d: dict) -> Config:
    d = dict(d)
    d["betas"] = tuple(d["betas"]) if d.get("betas") is not None else None
    d["temperatures"] = tuple(d["temperatures"])
    return Config(**d)


# ---------------------------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------------------------


def evaluate(
    trainer: Trainer,
    *,
    n_samples: int | None = None,
    feature: str | None = None,
    seed: int = 12345,
    kid: bool | None = None,
) -> dict:
    r"""FID (and KID) of the EMA generator against the training images, labelled with what was measured.

    .. math::

        \mathrm{FD} = |\mu_r - \mu_g|^2 + \operatorname{tr}\big(\Sigma_r + \Sigma_g
        - 2(\Sigma_r^{1/2}\Sigma_g\Sigma_r^{1/2})^{1/2}\big)

    in Inception-v3 features (the FID; CIFAR-10 convention: 50 000 samples against the 50 000 training
    images) or in :class:`StandInFeatures` (offline; **not** an FID), through
    :func:`gwf_tutorial.metrics.frechet_distance` / :func:`~gwf_tutorial.metrics.kernel_distance`.

    Parameters
    ----------
    trainer : Trainer
    n_samples : int, optional
        Default ``cfg.fid_samples``.
    feature : {"inception", "standin"}, optional
        Default ``cfg.feature``.
    seed : int, default 12345
        Seed of the generated latents.
    kid : bool, optional
        Default ``cfg.kid``.

    Returns
    -------
    dict
        ``fid`` (or the stand-in distance), optional ``kid_mean`` / ``kid_std``, ``n_samples``, ``n_real``,
        ``feature``, ``data``, ``label``, ``device``, ``step``, ``train_seconds``, ``eval_seconds``.

    Used in: chapter 10.
    """
    cfg = trainer.cfg
    n = check_int(cfg.fid_samples if n_samples is None else n_samples, "n_samples", min_value=2)
    feature = _check_choice(cfg.feature if feature is None else feature, "feature", ("inception", "standin"))
    kid = cfg.kid if kid is None else bool(kid)
    t0 = time.perf_counter()
    c, s = trainer.image_shape[0], trainer.image_shape[1]
    extractor = None if feature == "inception" else StandInFeatures(c, s)
    real = trainer.real.reshape(-1, *trainer.image_shape)
    fake = trainer.sample(n, seed=seed, batch_size=cfg.fid_batch)
    dev = trainer.device
    res = {
        "fid": _metrics.frechet_distance(real, fake, extractor, batch_size=cfg.fid_batch, device=dev),
        "n_samples": n,
        "n_real": int(real.shape[0]),
    }
    if kid:
        res["kid_mean"], res["kid_std"] = _metrics.kernel_distance(
            real, fake, extractor, subsets=50, subset_size=1000, batch_size=cfg.fid_batch, device=dev
        )
    data_label = "CIFAR-10 train set" if cfg.data == "cifar10" else "synthetic data (not CIFAR-10)"
    feat_label = "Inception-v3 (torchmetrics)" if feature == "inception" else StandInFeatures.label
    res.update(
        {
            "feature": feature,
            "data": cfg.data,
            "label": f"{data_label}; features: {feat_label}; {_gpu_name(dev)}",
            "device": _gpu_name(dev),
            "method": cfg.method,
            "net": cfg.net,
            "step": trainer.step,
            "train_seconds": trainer.train_seconds,
            "eval_seconds": time.perf_counter() - t0,
        }
    )
    return res


def load_generator(
    path: str | os.PathLike, *, device: str = "cpu", use_ema: bool = True
) -> tuple[nn.Module, Config]:
    r"""The (EMA) generator of a checkpoint, ready to sample, and its configuration.

    .. math::

        \texttt{last.pt} \mapsto (\bar G, \text{config}).

    Parameters
    ----------
    path : str or path
    device : str, default "cpu"
    use_ema : bool, default True

    Returns
    -------
    (nn.Module, Config)
        The generator maps ``(n, latent_dim)`` to flat images ``(n, C*H*W)``; in eval mode.

    Used in: chapter 10 (load a GPU run's checkpoint in the notebook).
    """
    state, config = load_checkpoint(path, kind=_KIND, map_location=device)
    cfg = _config_from_dict(config)
    sd = state["ema" if use_ema else "generator"]
    size = cfg.image_size
    gen = ConvGenerator(cfg.latent_dim, 3, size, cfg.g_width, cfg.g_blocks)
    net = _Autocast(gen, False)
    net.load_state_dict(sd)
    return net.to(device).eval(), cfg


def _prepare_fresh_out(out: Path, *, resume: bool, overwrite: bool, is_main: bool) -> None:
    """Refuse a fresh run into a folder holding a run (unless ``overwrite``: then clear its files)."""
    if resume and is_main:
        msg = f"--resume: no checkpoint {str(out / 'last.pt')!r}; starting a fresh run"
        print(f"[gwf_tutorial.cifar10] {msg}", file=sys.stderr, flush=True)
    files = sorted(out.glob("*")) if out.is_dir() else []
    held = [p.name for p in files if p.name in _RUN_FILES or (p.match("step_*.pt") and p.is_file())]
    if held and not overwrite:
        raise ValueError(
            f"output folder {str(out)!r} already holds a run ({', '.join(held)})"
            + (" but no checkpoint last.pt to resume from" if resume else "")
            + "; --resume continues it, --overwrite replaces it (train(..., resume=True / overwrite=True))"
        )
    if held and is_main:
        for name in held:
            (out / name).unlink()


def train(
    cfg: Config,
    *,
    dist_info: DistInfo | None = None,
    resume: bool = False,
    overwrite: bool = False,
    real: Tensor | None = None,
    evaluate_at_end: bool = True,
) -> tuple[Trainer, dict]:
    r"""Build a :class:`Trainer`, resume from ``cfg.out/last.pt`` if asked and present, train, evaluate.

    .. math::

        \text{config} \mapsto (\text{trainer after } T \text{ iterations}, \text{summary}).

    Parameters
    ----------
    cfg : Config
    dist_info : DistInfo, optional
    resume : bool, default False
        Continue from ``cfg.out/last.pt`` (refused if damaged or trained with other settings). When there
        is none, say so on stderr and start a fresh run.
    overwrite : bool, default False
        Allow a fresh run into a folder that already holds a run (``last.pt``, ``step_*.pt``,
        ``log.jsonl``, ``metrics.json``, ``samples.png``): those files are deleted first. Without it
        (and without a checkpoint to resume) such a folder is refused.
    real : Tensor, optional
        Training images (default: loaded from ``cfg.data``).
    evaluate_at_end : bool, default True
        FID / KID when the run completes and ``cfg.fid_samples > 0`` (rank 0).

    Returns
    -------
    (Trainer, dict)
        The summary has ``status``, ``step``, ``resumed_from``, ``train_seconds``, ``device``, ``label`` and
        the metrics of :func:`evaluate` (also written to ``metrics.json``); ``samples.png`` holds 64 samples.

    Used in: chapter 10, :func:`main`.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a Config (make_config, smoke_config), got {type(cfg).__name__}")
    ckpt = Path(cfg.out) / "last.pt"
    resuming = resume and ckpt.exists()
    if not resuming:  # checked before the data are loaded
        main_process = (dist_info or DistInfo()).is_main
        _prepare_fresh_out(Path(cfg.out), resume=resume, overwrite=overwrite, is_main=main_process)
    trainer = Trainer(cfg, dist_info, real=real)
    if resuming:
        trainer.load(ckpt)
        if trainer.dist.is_main:  # the log restarts from the checkpoint's (exact) history
            with open(Path(cfg.out) / "log.jsonl", "w") as f:
                f.writelines(json.dumps(rec) + "\n" for rec in trainer.history)
    deadline = None
    if cfg.time_budget > 0:
        t_end = time.perf_counter() + cfg.time_budget
        deadline = lambda: time.perf_counter() >= t_end  # noqa: E731
    status = trainer.run(stop_check=deadline)
    summary = {
        "status": status,
        "step": trainer.step,
        "total_iters": cfg.total_iters,
        "resumed_from": trainer.resumed_from,
        "train_seconds": round(trainer.train_seconds, 2),
        "device": _gpu_name(trainer.device),
        "world_size": trainer.dist.world_size,
        "method": cfg.method,
        "net": cfg.net,
        "label": cfg.label,
    }
    if trainer.dist.distributed:  # DDP keeps the replicas equal: check it
        import torch.distributed as dist

        with torch.no_grad():
            mine = torch.cat([p.detach().double().reshape(-1) for p in trainer.generator.parameters()]).sum()
        sums: list = [None] * trainer.dist.world_size
        dist.all_gather_object(sums, float(mine))
        summary["replicas_agree"] = len(set(sums)) == 1
    if trainer.dist.is_main:
        out = Path(cfg.out)
        try:
            from torchvision.utils import save_image

            grid = trainer.sample(64, seed=0)
            save_image((grid + 1) / 2, out / "samples.png", nrow=8)
        except ImportError:  # pragma: no cover - torchvision is in requirements.txt
            pass
        if status == "done" and evaluate_at_end and cfg.fid_samples > 0:
            summary["metrics"] = evaluate(trainer)
            with open(out / "metrics.json", "w") as f:
                json.dump(summary, f, indent=2)
    return trainer, summary


# ---------------------------------------------------------------------------------------------
# throughput measured by scripts/gpu_check.py
# ---------------------------------------------------------------------------------------------

#: Schema tag of the JSON written by ``scripts/gpu_check.py`` (read by :func:`throughput_table`).
GPU_CHECK_SCHEMA = "gwf_tutorial.gpu_check/1"


def throughput_table(result: dict, *, precision: str = "bf16") -> list[dict]:
    r"""Hours each method's full recipe takes at the steady-state speed a ``gpu_check`` JSON measured.

    .. math::

        \text{hours}_m = \frac{T_m}{3600\, s_m}, \qquad T_m = N_0 + (K - 1) N,

    with :math:`T_m` the recipe's iterations (:attr:`Config.total_iters`) and :math:`s_m` the measured
    steady-state iterations per second of method :math:`m` (start-up, checkpoints and the final FID
    excluded). Throughput on **synthetic** data: it says how long training
    takes on that GPU, nothing about sample quality (no FID).

    Parameters
    ----------
    result : dict
        The JSON of ``scripts/gpu_check.py`` (``benchmark.load_results("gpu_check")``), schema
        :data:`GPU_CHECK_SCHEMA`.
    precision : {"bf16", "fp32"}, default "bf16"

    Returns
    -------
    list of dict
        One row per measured method, in :data:`METHODS` order: ``method``, ``net``, ``batch_size``,
        ``precision``, ``it_per_s`` (steady state), ``recipe_iters``, ``hours``, ``device``, ``dry_run``.

    Raises
    ------
    ValueError
        Not a ``gpu_check`` result, or no measurement at that precision.

    Used in: chapter 10.
    """
    if not isinstance(result, dict) or result.get("schema") != GPU_CHECK_SCHEMA:
        raise ValueError(f"result must be a gpu_check JSON with schema {GPU_CHECK_SCHEMA!r}")
    precision = _check_choice(precision, "precision", ("bf16", "fp32"))
    settings = result["settings"]
    rows = []
    for rec in result["throughput"]:
        if rec["precision"] != precision or rec["method"] not in METHODS:
            continue
        iters = make_config(rec["method"], settings["recipe_net"]).total_iters
        rows.append(
            {
                "method": rec["method"],
                "net": settings["net"],
                "batch_size": settings["batch_size"],
                "precision": precision,
                "it_per_s": rec["steady_it_per_s"],
                "recipe_iters": iters,
                "hours": iters / rec["steady_it_per_s"] / 3600.0,
                "device": result["device"],
                "dry_run": bool(result["dry_run"]),
            }
        )
    if not rows:
        raise ValueError(f"the result holds no {precision} measurement")
    return sorted(rows, key=lambda r: METHODS.index(r["method"]))


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def _defaults_text() -> str:
    lines = ["defaults (official commands; unset options keep them):"]
    for m, d in METHOD_DEFAULTS.items():
        lines.append(f"  {m:9s} " + ", ".join(f"{k}={v}" for k, v in d.items()))
    lines.append("  nets: " + "; ".join(f"{k}: {v}" for k, v in NET_PRESETS.items()))
    lines.append("  --net large with jko-kldv: " + ", ".join(f"{k}={v}" for k, v in _LARGE_KLDV.items()))
    lines.append("  --smoke: synthetic 16x16 data, tiny nets, 250 iterations, stand-in features, CPU")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    r"""The command-line interface of ``python -m gwf_tutorial.cifar10``.

    .. math::

        \text{argv} \mapsto \text{given options (unset ones keep the method's defaults)}.

    Returns
    -------
    argparse.ArgumentParser

    Used in: chapter 10.
    """
    p = argparse.ArgumentParser(
        prog="python -m gwf_tutorial.cifar10",
        description="Train a one-step generator on CIFAR-10 with parametric JKO (KL-DV, MMD), S-JKO or "
        "drifting; resumable, EMA, bf16 autocast on CUDA, DDP under torchrun, FID/KID at the end.",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_defaults_text(),
    )
    p.add_argument("--method", choices=METHODS, help="training method (default jko-kldv)")
    p.add_argument("--net", choices=tuple(NET_PRESETS), help="network size (default small = GWF Small-Net)")
    p.add_argument(
        "--smoke", action="store_true", help="CPU smoke run: synthetic 16x16 data, tiny nets, stand-in FID"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/last.pt (its training settings are reused; a damaged file is refused) to the "
        "end of the run; an earlier --time-budget is not: give --time-budget again to stop early. Without "
        "OUT/last.pt it says so on stderr and starts a fresh run",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start a fresh run even if OUT already holds one (its last.pt, step_*.pt, log.jsonl, "
        "metrics.json, samples.png are deleted); without it (or --resume) such a folder is refused",
    )
    p.add_argument("--data", choices=("cifar10", "synthetic"))
    p.add_argument("--data-root", dest="data_root")
    p.add_argument("--n-synthetic", dest="n_synthetic", type=int)
    p.add_argument("--image-size", dest="image_size", type=int, help="synthetic data only")
    p.add_argument("--latent-dim", dest="latent_dim", type=int)
    p.add_argument("--g-width", dest="g_width", type=int)
    p.add_argument("--g-blocks", dest="g_blocks", type=int)
    p.add_argument("--d-width", dest="d_width", type=int)
    p.add_argument("--d-blocks", dest="d_blocks", type=int)
    p.add_argument("--batch-size", dest="batch_size", type=int, help="per process")
    p.add_argument("--lr-g", dest="lr", type=float, help="Adam learning rate of the generator")
    p.add_argument("--lr-d", dest="lr_critic", type=float, help="... of the critic / potential")
    p.add_argument("--betas", type=float, nargs=2)
    p.add_argument("--tau", type=float, help="JKO step (cost |x-x'|^2 / (2 tau d))")
    p.add_argument("--phases", dest="n_phases", type=int, help="JKO phases K")
    p.add_argument(
        "--iters-first", dest="n_iters_first", type=int, help="iterations of phase 0 (drifting: all)"
    )
    p.add_argument("--iters", dest="n_iters", type=int, help="iterations of each later phase")
    p.add_argument("--reference", choices=_REFERENCES, help="what phase 0 is pulled to")
    p.add_argument("--r1", type=float)
    p.add_argument("--gp", type=float)
    p.add_argument("--mmd-features", dest="mmd_features", type=int)
    p.add_argument("--temperatures", type=float, nargs="+")
    p.add_argument("--grad-clip", dest="grad_clip", type=float)
    p.add_argument("--ema-decay", dest="ema_decay", type=float)
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=("constant", "cosine"))
    p.add_argument("--eta-min", dest="eta_min", type=float)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, help="bf16 autocast on CUDA")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", help="output folder")
    p.add_argument("--ckpt-every", dest="ckpt_every", type=int, help="rolling checkpoint period")
    p.add_argument("--save-every", dest="save_every", type=int, help="periodic checkpoint period (0: none)")
    p.add_argument("--log-every", dest="log_every", type=int)
    p.add_argument(
        "--time-budget",
        dest="time_budget",
        type=float,
        help="seconds of training in THIS invocation, then stop after a checkpoint (not saved for --resume)",
    )
    p.add_argument("--fid-samples", dest="fid_samples", type=int, help="0: no evaluation")
    p.add_argument("--fid-batch", dest="fid_batch", type=int)
    p.add_argument(
        "--feature", choices=("inception", "standin"), help="standin: offline stand-in, not an FID"
    )
    p.add_argument("--kid", action=argparse.BooleanOptionalAction)
    p.add_argument("--device")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction)
    return p


def config_from_args(argv: Sequence[str] | None = None) -> tuple[Config, bool, bool]:
    r"""Parse ``argv`` into a :class:`Config` and the ``--resume`` and ``--overwrite`` flags.

    .. math::

        \text{argv} \mapsto \text{make\_config}(\text{method}, \text{net}, \text{given options});
        \quad \texttt{--resume}: \text{the checkpoint's config, given operational options on top}.

    Parameters
    ----------
    argv : sequence of str, optional

    Returns
    -------
    (Config, bool, bool)

    Raises
    ------
    ValueError
        ``--resume`` with training options that differ from the checkpoint's, or a damaged checkpoint;
        an invalid setting (:func:`make_config`'s checks, made before anything runs: e.g.
        ``--fid-samples 1``, ``--n-synthetic 1``, an unknown ``--device`` or ``cuda`` without a GPU).
        :func:`main` turns these into a usage message.

    Used in: :func:`main`.
    """
    given = vars(build_parser().parse_args(argv))
    resume = bool(given.pop("resume", False))
    overwrite = bool(given.pop("overwrite", False))
    smoke = bool(given.pop("smoke", False))
    for key in ("betas", "temperatures"):
        if key in given:
            given[key] = tuple(given[key])
    method = given.get("method", "jko-kldv")
    out = Path(given.get("out", f"runs/smoke-{method}" if smoke else "runs/cifar10"))
    ckpt = out / "last.pt"
    if resume and ckpt.exists():
        _, saved = load_checkpoint(ckpt, kind=_KIND)
        conflicts = {}
        for k, v in given.items():
            sv = tuple(saved[k]) if isinstance(saved.get(k), list) else saved.get(k)
            if k not in _OPERATIONAL and sv != v:
                conflicts[k] = {"checkpoint": sv, "given": v}
        if conflicts:
            raise ValueError(
                f"--resume with settings that differ from the checkpoint {str(ckpt)!r}: {conflicts}"
            )
        merged = {**saved, **{k: v for k, v in given.items() if k in _OPERATIONAL}, "out": str(out)}
        merged["time_budget"] = given.get("time_budget", 0.0)  # per invocation: never the saved one
        cfg = _config_from_dict(merged)
        _validate(cfg)
        return cfg, True, overwrite
    given.pop("method", None)
    net = given.pop("net", None)
    if smoke:
        return smoke_config(method, **given), resume, overwrite
    return make_config(method, net or "small", **given), resume, overwrite


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Command-line entry point: parse, set up DDP from ``torchrun``'s variables, train, evaluate, report.

    .. math::

        \text{argv} \mapsto \text{summary (printed as JSON, written to OUT/metrics.json)}.

    Parameters
    ----------
    argv : sequence of str, optional
        Default ``sys.argv[1:]``.

    Returns
    -------
    dict
        The summary of :func:`train`.

    Raises
    ------
    SystemExit
        Status 2 with a usage message (``argparse``'s ``parser.error``) for an invalid command line: bad
        values or conflicts found by :func:`config_from_args`, before anything is loaded or trained.

    Used in: chapter 10 (``python -m gwf_tutorial.cifar10 --help``).
    """
    try:  # command-line errors: a usage message and exit status 2, not a traceback
        cfg, resume, overwrite = config_from_args(argv)
    except (ValueError, TypeError) as err:
        build_parser().error(str(err))
    info = init_distributed(cuda=_train.device(cfg.device or None).type == "cuda")
    try:
        if info.is_main:
            print(
                f"[gwf_tutorial.cifar10] {cfg.method} / {cfg.net} on {cfg.label}; "
                f"{cfg.total_iters} iterations; world size {info.world_size}; out={cfg.out}",
                flush=True,
            )
        _, summary = train(cfg, dist_info=info, resume=resume, overwrite=overwrite)
        if info.is_main:
            print(json.dumps(summary), flush=True)
        return summary
    finally:
        if info.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == "__main__":  # pragma: no cover - exercised by tests through subprocesses
    main(sys.argv[1:])
