r"""CIFAR-10 on one GPU, or several under ``torchrun``: one resumable entry point over the library's loop.

``python -m gwf_tutorial.cifar10 --method sjko --out runs/sjko`` (``--help``: the flags; ``--resume``;
``--smoke``: on the CPU, offline) trains a one-step generator :math:`G_\theta : \mathbb R^{n_z} \to
[-1, 1]^{3 \cdot 32 \cdot 32}` with ``jko-kldv`` / ``jko-mmd`` (parametric JKO, chapters 4-5), ``sjko``
(chapter 7) or ``drifting`` (chapter 8); e.g. phase :math:`k` of ``jko-kldv`` is

.. math::

    \min_\theta \max_h\ \tfrac{1}{2\tau d}\,\mathbb E_z|G_\theta(z) - G_k(z)|^2
    + \mathbb E_z h(G_\theta(z)) - \log \mathbb E_\nu e^{h},

for :math:`N_0 + (K - 1) N` iterations (``n_iters_first``, ``n_phases``, ``n_iters``), in a
:class:`gwf_tutorial.trainer.ResumableRun` (EMA, DDP, bf16 on CUDA, checkpoints with every random state:
``--resume`` is bit-exact on a CPU), then FID / KID. References: the official ``train.py`` of GWF
(``Paulcauch/GWF``), S-JKO (``Jae-Moo/Scalable-JKO``), drifting (``lambertae/drifting``); Heusel et al.
(2017), FID; Binkowski et al. (2018), KID.

Used in: chapter 10.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from gwf_tutorial import _validation as _v
from gwf_tutorial import critics, data, drifting, jko, metrics, sjko
from gwf_tutorial import train as _train
from gwf_tutorial import trainer as _tr
from gwf_tutorial.metrics import StandInFeatures
from gwf_tutorial.nets import Autocast, ConvCritic, ConvGenerator
from gwf_tutorial.train import DistInfo, init_distributed

__all__ = ["METHODS", "NET_PRESETS", "METHOD_DEFAULTS", "Config", "make_config", "smoke_config", "DistInfo",
           "init_distributed", "StandInFeatures", "Trainer", "train", "evaluate", "build_parser",
           "config_from_args", "main"]  # fmt: skip

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
#: Every setting, one ``--flag`` each: name -> (default, check), checks of ``trainer.RunSettings.check``
#: (choices, a minimum integer, "pos", "nonneg", ...); None defaults come from the presets.
_SETTINGS = {
    "method": ("jko-kldv", METHODS), "net": ("small", tuple(NET_PRESETS)),
    "data": ("cifar10", ("cifar10", "synthetic")), "data_root": ("data", "str"), "n_synthetic": (5000, 2),
    "image_size": (32, 4), "latent_dim": (None, 1), "g_width": (None, 1), "g_blocks": (None, 1),
    "d_width": (None, 1), "d_blocks": (None, 0), "batch_size": (256, 1), "lr": (None, "pos"),
    "lr_critic": (None, "nonneg"), "betas": (None, "betas"), "tau": (None, "nonneg"), "n_phases": (None, 1),
    "n_iters_first": (None, 1), "n_iters": (None, 0),
    "reference": (None, ("noise", "upsample", "copy", "none")), "r1": (None, "nonneg"),
    "gp": (None, "nonneg"), "mmd_features": (128, 1), "temperatures": ((0.02, 0.05, 0.2), "floats"),
    "grad_clip": (None, "nonneg"), "ema_decay": (0.9999, "unit"),
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
    "lr": "Adam learning rate of the generator", "lr_critic": "... of the critic / potential",
    "tau": "JKO step (cost |x-x'|^2 / (2 tau d))", "n_phases": "JKO phases K", "batch_size": "per process",
    "n_iters_first": "iterations of phase 0 (drifting: all)", "n_iters": "iterations of each later phase",
    "reference": "what phase 0 is pulled to", "amp": "bf16 autocast on CUDA", "out": "output folder",
    "time_budget": "seconds of training in THIS invocation, then stop after a checkpoint (not saved for "
    "--resume)", "fid_samples": "0: no evaluation", "feature": "standin: offline stand-in, not an FID",
    "save_every": "periodic checkpoint period (0: none)", "ckpt_every": "rolling checkpoint period",
}  # fmt: skip
_OPERATIONAL = (  # settings that may change on --resume (they do not change the training trajectory)
    "out", "ckpt_every", "save_every", "log_every", "time_budget", "fid_samples", "fid_batch", "feature",
    "kid", "device", "progress", "data_root")  # fmt: skip
_LABEL = property(lambda cfg: (  # what the numbers of a run are: data and features
    "CIFAR-10 train set" if cfg.data == "cifar10" else "SYNTHETIC data (not CIFAR-10)")
    + (", Inception-v3 features" if cfg.feature == "inception" else ", STAND-IN features (random conv net)"))
Config = dataclasses.make_dataclass(
    "Config", [(k, object, dataclasses.field(default=d)) for k, (d, _) in _SETTINGS.items()],
    bases=(_tr.RunSettings,), namespace={"__module__": __name__, "label": _LABEL, "SETTINGS": _SETTINGS,
                                         "__doc__": r"""
    Every setting of a run (``_SETTINGS``, one ``--flag`` each: ``python -m gwf_tutorial.cifar10 --help``,
    ``_HELP``), saved in each checkpoint, checked by ``--resume``; ``label``: what the numbers are.

    Used in: :func:`~gwf_tutorial.cifar10.make_config`.
    """},
)  # fmt: skip


def make_config(method: str = "jko-kldv", net: str = "small", **overrides) -> Config:
    r"""A complete, checked :class:`Config`: ``Config()`` <- ``NET_PRESETS[net]`` <-
    ``METHOD_DEFAULTS[method]`` <- ``overrides``; a ValueError / TypeError names a bad or unknown field.

    Used in: chapter 10.
    """
    _v.check_choice(method, "method", METHODS), _v.check_choice(net, "net", NET_PRESETS)
    if set(overrides) - set(_SETTINGS):
        raise TypeError(f"unknown Config fields: {sorted(set(overrides) - set(_SETTINGS))}")
    values = {**NET_PRESETS[net], "lr_schedule": "constant", **METHOD_DEFAULTS[method],
              **(_LARGE_KLDV if (net, method) == ("large", "jko-kldv") else {}),
              **{k: v for k, v in overrides.items() if v is not None and k not in ("method", "net")},
              }  # fmt: skip
    return _validate(Config(method=method, net=net, **values))


def _validate(cfg: Config) -> Config:  # the table's checks, then those across settings
    cfg.check({k: f"{k} ({flag})" for k, flag in _FLAGS.items()})
    if cfg.fid_samples == 1:  # checked now, not after training
        raise ValueError("fid_samples must be 0 (no evaluation) or >= 2 (FID needs two samples), got 1")
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
    return cfg


def smoke_config(method: str = "jko-kldv", **overrides) -> Config:
    r"""The CPU smoke configuration: synthetic 16x16 images, ``tiny`` nets, 250 iterations, stand-in FID.

    Used in: chapter 10.
    """
    base = {"data": "synthetic", "n_synthetic": 2000, "image_size": 16, "batch_size": 32, "n_phases": 4,
            "n_iters_first": 100, "n_iters": 50, "ema_decay": 0.98, "fid_samples": 1000, "feature": "standin",
            "ckpt_every": 50, "save_every": 0, "log_every": 10, "out": f"runs/smoke-{method}",
            "device": "cpu", "latent_dim": 48}  # fmt: skip
    base.update({"drifting": {"n_phases": 1, "n_iters_first": 250, "n_iters": 0}, "sjko": {"tau": 0.5}}
                .get(method, {}))  # fmt: skip
    return make_config(method, "tiny", **{**base, **overrides})


class Trainer(_tr.ResumableRun):
    r"""The networks, losses and data of a :class:`Config`, the problem that ``self.trainer`` (the library's
    loop) trains, in a :class:`~gwf_tutorial.trainer.ResumableRun` (``run``, ``save``, ``load``, ``sample``,
    ``train_step``); phase 0 of a JKO method is pulled to ``cfg.reference``, phase :math:`k \ge 1` to the
    frozen :math:`G_k` (``old``). ``real``: images ``(N, C, H, W)`` in ``[-1, 1]`` (default: ``cfg.data``).

    Used in: chapter 10.
    """

    kind, operational = "cifar10.Trainer", _OPERATIONAL  # the checkpoints' kind (train.save_checkpoint)
    desc = property(lambda self: f"{self.cfg.method} ({self.cfg.data})")

    def __init__(self, cfg: Config, dist_info: DistInfo | None = None, *, real: Tensor | None = None) -> None:
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a Config (make_config, smoke_config), got {type(cfg).__name__}")
        _validate(cfg)
        super().__init__(cfg, dist_info)  # the device, the random streams and seeds
        real = self._load_real() if real is None else real
        if not isinstance(real, Tensor) or real.ndim != 4:
            raise ValueError(f"real must be a tensor (N, C, H, W), got {getattr(real, 'shape', real)}")
        self.set_data(real)
        c, s = self.image_shape[:2]
        self.generator = Autocast(ConvGenerator(cfg.latent_dim, c, s, cfg.g_width, cfg.g_blocks), self.amp)
        self.critic = self._build_critic(c, s)
        self.place(self.generator, self.critic)
        self.trainer = _tr.Trainer(
            self.generator, self.critic, lr=cfg.lr, lr_critic=cfg.lr_critic if self.critic else 1.0,
            betas=cfg.betas, lr_schedule=cfg.lr_schedule, eta_min=cfg.eta_min, ema_decay=cfg.ema_decay,
            clip_grad=cfg.grad_clip or None, fused=self.device.type == "cuda")  # fmt: skip
        self.objective = {"jko-kldv": jko.get_critic_objective("kl_dv"), "jko-mmd":
                          jko.LearnedKernelMMD(feature_dim=cfg.mmd_features)}.get(cfg.method)  # fmt: skip
        self.drift = drifting.MultiTemperatureDrift(cfg.temperatures) if cfg.method == "drifting" else None
        self.names = ("loss_g",) if self.critic is None else ("loss_d", "objective", "transport", "loss_g")
        self.g_train = self.dist.wrap(self.generator, self.device)  # DDP replicas under torchrun
        if self.critic is not None:  # DDP synchronises what a forward computes: the critic's loss
            self.d_train = self.dist.wrap(_tr.LossModule(self.critic, self._critic_fn), self.device)

    def _load_real(self) -> Tensor:
        cfg = self.cfg
        if cfg.data == "cifar10":  # rank 0 downloads first, the others read its copy
            images = data.cifar10_tensor(cfg.data_root, download=True)[0] if self.dist.is_main else None
            self.dist.barrier()
            return images if images is not None else data.cifar10_tensor(cfg.data_root, download=False)[0]
        g = _train.make_generator(10_000 + cfg.seed)  # the same synthetic set on every process
        return data.synthetic_images(cfg.n_synthetic, size=cfg.image_size, generator=g)[0]

    def _build_critic(self, c: int, s: int) -> nn.Module | None:
        cfg, mmd = self.cfg, self.cfg.method == "jko-mmd"
        if cfg.method == "drifting":
            return None
        conv = Autocast(ConvCritic(c, s, cfg.d_width, cfg.mmd_features if mmd else 1, n_blocks=cfg.d_blocks,
                                   zero_init_last=mmd), self.amp)  # fmt: skip
        if mmd:  # the kernel's embedding is the conv net, starting at 0 (pixel kernel)
            return critics.LearnedKernel(self.dim, feature_dim=cfg.mmd_features, embedding=conv)
        return critics.Critic(self.dim, "kl_dv", net=conv) if cfg.method == "jko-kldv" else conv  # sjko: v

    def _critic_fn(self, critic: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The adversary's loss and bound, or (S-JKO) ``E v(T(x)) + E Psi*(-v(y)) + r1/2 E|grad v(y)|^2``."""
        cfg = self.cfg
        if cfg.method != "sjko":
            loss, bound = self.objective.critic_loss(critic, x, y, r1=cfg.r1, gp=cfg.gp, generator=self.g_cpu)
            return loss, bound.detach()
        v_real, grad = critics.value_and_input_grad(critic, y) if cfg.r1 > 0 else (critic(y), None)
        loss = sjko.potential_loss(critic(x), v_real, "kl", grad_real=grad, r1=cfg.r1)
        return loss, loss.detach()

    def _reference(self, z: Tensor) -> Tensor:
        """Points of rho_k paired with G(z): the frozen G_k, or phase 0's reference."""
        if self.old is not None:
            with torch.no_grad():
                return self.old(z)
        if self.cfg.reference == "noise":
            return torch.randn(z.shape[0], self.dim, generator=self.g_dev, device=self.device)
        c, s = self.image_shape[:2]
        z_img = z.reshape(-1, c, *(2 * [math.isqrt(z.shape[1] // c)]))  # "upsample"
        img = nn.functional.interpolate(z_img, size=(s, s), mode="bicubic", align_corners=False)
        return img.reshape(z.shape[0], self.dim)

    def batch(self) -> None:  # G_k frozen when a phase starts (reference "copy": G_0 at step 0)
        if self.step == 0 and self.cfg.reference == "copy" and self.old is None:
            self.old = _tr.frozen_copy(self.generator).train()
        super().batch()

    def critic_loss(self, _) -> tuple[Tensor, Tensor]:
        z, y = self.draw()
        with torch.no_grad():
            x_fake = self.g_train(z)
        loss, self._value = self.d_train(x_fake, y)
        return loss, loss.detach()

    def map_loss(self, _) -> tuple[Tensor, list[Tensor]]:
        cfg, (z, y) = self.cfg, self.draw()
        x = self.g_train(z)
        if cfg.method == "drifting":  # the field without per-step checks or host reads; raw RMS when logged
            logged = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.total_iters
            V, raw = self.drift._velocity(x.detach(), y, with_raw=logged)
            self.extra.update({} if raw is None else {"drift_rms": raw.float()})
            loss = drifting.drifting_loss(x, V)
            return loss, [loss.detach()]
        x_old = self._reference(z)
        transport = jko.proximal_cost(x if cfg.method != "sjko" else x.detach(), x_old, cfg.tau,
                                       per_dim_average=True).mean()  # fmt: skip
        if cfg.method == "sjko":
            loss = sjko.map_loss(x, x_old, self.critic(x), cfg.tau, per_dim_average=True)
        else:
            loss = transport + self.objective.map_term(self.critic, x, y)
        return loss, [self._value, transport.detach(), loss.detach()]


def evaluate(trainer: Trainer, *, n_samples: int | None = None, feature: str | None = None, seed: int = 12345,
             kid: bool | None = None) -> dict:  # fmt: skip
    r"""FID (and KID) of the EMA generator against the training images, by
    :func:`gwf_tutorial.metrics.frechet_distance` in Inception-v3 features or :class:`StandInFeatures`
    (offline: **not** an FID); ``n_samples``, ``feature``, ``kid``: by default the run's.
    Returns ``fid`` (``kid_mean``, ``kid_std``), ``n_samples``, ``n_real``, ``feature``, a ``label`` of what
    was measured, ``device``, ``step``, ``train_seconds``, ``eval_seconds`` and the run's names.

    Used in: chapter 10.
    """
    cfg, t0, dev, name = trainer.cfg, time.perf_counter(), trainer.device, trainer.device_name
    n = _v.check_int(cfg.fid_samples if n_samples is None else n_samples, "n_samples", min_value=2)
    feature = _v.check_choice(cfg.feature if feature is None else feature, "feature", _SETTINGS["feature"][1])
    extractor = None if feature == "inception" else StandInFeatures(*trainer.image_shape[:2])
    real = trainer.real.reshape(-1, *trainer.image_shape)
    fake = trainer.sample(n, seed=seed, batch_size=cfg.fid_batch)
    res = {"fid": metrics.frechet_distance(real, fake, extractor, batch_size=cfg.fid_batch, device=dev),
           "n_samples": n, "n_real": int(real.shape[0])}  # fmt: skip
    if cfg.kid if kid is None else bool(kid):
        res["kid_mean"], res["kid_std"] = metrics.kernel_distance(
            real, fake, extractor, subsets=50, subset_size=1000, batch_size=cfg.fid_batch, device=dev)
    images = "CIFAR-10 train set" if cfg.data == "cifar10" else "synthetic data (not CIFAR-10)"
    feat = "Inception-v3 (torchmetrics)" if feature == "inception" else StandInFeatures.label
    return {**res, "feature": feature, "data": cfg.data, "label": f"{images}; features: {feat}; {name}",
            "device": name, "method": cfg.method, "net": cfg.net, "step": trainer.step,
            "train_seconds": trainer.train_seconds, "eval_seconds": time.perf_counter() - t0}  # fmt: skip


def load_generator(path, *, device: str = "cpu", use_ema: bool = True) -> tuple:
    """The (EMA) generator of a checkpoint in eval mode, ``(n, latent_dim) -> (n, C*H*W)``, and its Config."""
    state, config = _train.load_checkpoint(path, kind=Trainer.kind, map_location=device)
    cfg = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})
    net = Autocast(ConvGenerator(cfg.latent_dim, 3, cfg.image_size, cfg.g_width, cfg.g_blocks), False)
    net.load_state_dict(state["trainer"]["ema" if use_ema else "map"])
    return net.to(device).eval(), cfg


def train(cfg: Config, *, dist_info: DistInfo | None = None, resume: bool = False, overwrite: bool = False,
          real: Tensor | None = None, evaluate_at_end: bool = True) -> tuple[Trainer, dict]:  # fmt: skip
    r"""Build a :class:`Trainer` by ``trainer.ResumableRun.start`` (``resume``, ``overwrite``: see there),
    train, write ``samples.png`` and, when done, :func:`evaluate` into ``metrics.json`` (rank 0). Returns the
    trainer and the summary (``status``, ``step``, ``resumed_from``, ``metrics``, ...).

    Used in: chapter 10.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a Config (make_config, smoke_config), got {type(cfg).__name__}")
    trainer = Trainer.start(cfg, dist_info, resume=resume, overwrite=overwrite, real=real)
    status = trainer.run()
    summary = {**trainer.summary(status), "method": cfg.method, "net": cfg.net, "label": cfg.label}
    if trainer.dist.is_main:
        from torchvision.utils import save_image

        save_image((trainer.sample(64, seed=0) + 1) / 2, Path(cfg.out) / "samples.png", nrow=8)
        if status == "done" and evaluate_at_end and cfg.fid_samples > 0:
            summary["metrics"] = evaluate(trainer)
            (Path(cfg.out) / "metrics.json").write_text(json.dumps(summary, indent=2))
    return trainer, summary


def build_parser() -> argparse.ArgumentParser:
    r"""The command line of ``python -m gwf_tutorial.cifar10``: one flag per :class:`Config` field (unset
    ones keep the method's defaults, listed by ``--help``), and ``--smoke``, ``--resume``, ``--overwrite``.

    Used in: :func:`~gwf_tutorial.cifar10.main`.
    """
    epilog = "\n".join(["defaults (official commands; unset options keep them):", *(f"  {m:9s} " + ", ".join(
        f"{k}={v}" for k, v in d.items()) for m, d in METHOD_DEFAULTS.items()), "  nets: " + "; ".join(
        f"{k}: {v}" for k, v in NET_PRESETS.items()), f"  --net large with jko-kldv: {_LARGE_KLDV}",
        f"  --smoke: {_HELP['smoke']}, CPU"])  # fmt: skip
    return Config.parser(
        flags=_FLAGS, helps=_HELP, switches=("smoke",),
        prog="python -m gwf_tutorial.cifar10", epilog=epilog,
        description="Train a one-step generator on CIFAR-10 with parametric JKO (KL-DV, MMD), S-JKO or "
        "drifting; resumable, EMA, bf16 autocast on CUDA, DDP under torchrun, FID/KID at the end.",
        formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip


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
    if resume and (out / "last.pt").exists():  # the saved settings; the time budget is this invocation's
        given.update(out=str(out), time_budget=given.get("time_budget", 0.0))
        return _validate(Config(**Trainer.resume_config(out / "last.pt", given))), True, overwrite
    net, _ = given.pop("net", None), given.pop("method", None)
    cfg = smoke_config(method, **given) if smoke else make_config(method, net or "small", **given)
    return cfg, resume, overwrite


def main(argv: Sequence[str] | None = None) -> dict:
    r"""Command-line entry point (``trainer.ResumableRun.command_line``): parse (exit status 2 and the usage
    for a bad command line), DDP from ``torchrun``'s variables, :func:`train`, print the summary.

    Used in: :mod:`gwf_tutorial.cifar10` (its ``__main__``: ``python -m gwf_tutorial.cifar10``).
    """
    return Trainer.command_line(argv, parse=config_from_args, train=train, parser=build_parser,
                                title=lambda cfg: f"{cfg.method} / {cfg.net} on {cfg.label}")


if __name__ == "__main__":  # pragma: no cover - exercised by tests through subprocesses
    main(sys.argv[1:])
