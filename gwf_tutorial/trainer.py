r"""The library's one training loop: a map (generator), an optional critic, and a loss that couples them.

Every trained push-forward of the library (the parametric JKO chains of :mod:`gwf_tutorial.jko`, the
S-JKO phases of :mod:`gwf_tutorial.sjko`, the GANs they contain as ``tau=None`` switches) is the same
loop: at each iteration a problem draws its batch, the critic takes ``critic_steps`` Adam steps on the
problem's critic loss, then the map takes one Adam step on the problem's map loss,

.. math::

    \psi \leftarrow \psi - \eta_c \nabla_\psi \ell_c(\psi; \theta) \ (\times\, \texttt{critic\_steps}),
    \qquad \theta \leftarrow \theta - \eta\, \nabla_\theta \ell(\theta; \psi),

with the options of :class:`Trainer` (learning-rate schedule, EMA, clipping, bf16) and a
:class:`TrainingDivergedError` at a non-finite loss. The problem is:

- ``batch()``: draws what one iteration shares (or ``None``),
- ``critic_loss(batch) -> (loss, record)``: the critic's loss and one detached scalar to log,
- ``map_loss(batch) -> (loss, records)``: the map's loss and a list of detached scalars to log,

so the method (objective, discretization, parametrization) lives in the problem and the mechanics here.
Checkpoints use the one format of :func:`gwf_tutorial.train.save_checkpoint`; a long run: ResumableRun.

Used in: chapters 4-7 and 9 (through ``jko.ParametricJKO`` and ``sjko.SemiDualJKO``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from gwf_tutorial import _validation as _v
from gwf_tutorial import train as _train
from gwf_tutorial._validation import FlowDivergedError, check_betas, check_nonnegative, check_positive
from gwf_tutorial.train import DistInfo, ema_update, load_checkpoint, save_checkpoint

__all__ = ["PhaseRecord", "Trainer", "TrainerPreset", "TrainingDivergedError", "frozen_copy", "LossModule",
           "RunSettings", "ResumableRun"]  # fmt: skip

_SCHEDULES = ("constant", "cosine")


class TrainingDivergedError(FlowDivergedError, FloatingPointError):
    """A loss of the :class:`Trainer` became non-finite; the message names the iteration and the
    learning rates. A :class:`~gwf_tutorial.flows.FlowDivergedError` (and a ``FloatingPointError``).

    Used in: :meth:`~gwf_tutorial.trainer.Trainer.fit` (raised there).
    """


@dataclass
class PhaseRecord:
    r"""Record of one phase (one JKO step :math:`\rho_k \to \rho_{k+1}`) of a preset: its index ``k``, step
    ``tau`` (None: no transport term), ``n_iters``, wall-clock ``seconds``, and its per-iteration ``curves``
    by name, also read as attributes (``record.transport``).

    Used in: :class:`~gwf_tutorial.jko.ParametricJKO` (curves ``transport``, ``objective``, ``loss``,
    ``critic_bound``) and :class:`~gwf_tutorial.sjko.SemiDualJKO` (``potential_loss``, ``map_loss``,
    ``semi_dual``).
    """

    k: int
    tau: float | None
    n_iters: int
    seconds: float = 0.0
    curves: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        curves = self.__dict__.get("curves", {})
        if name in curves:
            return curves[name]
        raise AttributeError(f"PhaseRecord has no field or curve {name!r} (curves: {sorted(curves)})")


def frozen_copy(net: nn.Module) -> nn.Module:
    """A deep copy of ``net`` in eval mode with ``requires_grad=False`` (a frozen :math:`T_k`).

    Used in: :class:`~gwf_tutorial.jko.ParametricJKO`, :class:`~gwf_tutorial.sjko.SemiDualJKO`.
    """
    return copy.deepcopy(net).requires_grad_(False).eval()


def _delegate(name: str, doc: str) -> property:
    return property(lambda self: getattr(self.trainer, name), doc=doc)


class TrainerPreset:
    """Base of the book's presets (``ParametricJKO``, ``SemiDualJKO``): their ``trainer`` attribute is a
    :class:`Trainer`, whose settings and optimisers they expose read-only under the same names.

    Used in: :class:`gwf_tutorial.jko.ParametricJKO`, :class:`gwf_tutorial.sjko.SemiDualJKO`.
    """

    trainer: Trainer
    lr = _delegate("lr", "Adam learning rate of the map.")
    lr_critic = _delegate("lr_critic", "Adam learning rate of the critic (S-JKO: the potential).")
    betas = _delegate("betas", "Adam betas.")
    critic_steps = _delegate("critic_steps", "Critic updates per map update.")
    lr_schedule = _delegate("lr_schedule", "'constant' or 'cosine'.")
    opt_map = _delegate("opt_map", "The map's Adam optimiser.")
    opt_critic = _delegate("opt_critic", "The critic's Adam optimiser.")


class Trainer:
    r"""Adam on a map and (optionally) a critic, alternating ``critic_steps`` critic steps and one map step.

    ``critic``: None for a problem without one. ``generator``: the problem's random stream, saved with the
    checkpoints. ``lr_schedule="cosine"`` anneals both rates at iteration :math:`i` of each :meth:`fit` of
    :math:`n` to :math:`\eta_{\min} + (\eta - \eta_{\min}) \tfrac12(1 + \cos(\pi i / n))` (``eta_min``).
    ``ema_decay`` :math:`\beta`: keep :attr:`ema`, :math:`\bar\theta \leftarrow \beta\bar\theta + (1 -
    \beta)\theta`; ``clip_grad``: the map's gradient norm; ``bf16``, ``fused``: autocast, fused Adam (CUDA).

    Used in: :class:`~gwf_tutorial.jko.ParametricJKO`, :class:`~gwf_tutorial.sjko.SemiDualJKO`, the
    module :mod:`gwf_tutorial.cifar10`, :func:`~gwf_tutorial.drifting.train_drifting` and
    :func:`~gwf_tutorial.fflows.vgrow`.
    """

    def __init__(self, map_net: nn.Module, critic: nn.Module | None = None, *, lr: float = 1e-3,
                 lr_critic: float = 1e-3, betas: tuple[float, float] = (0.5, 0.9), critic_steps: int = 1,
                 lr_schedule: str = "constant", ema_decay: float | None = None,
                 clip_grad: float | None = None, bf16: bool = False, generator: torch.Generator | None = None,
                 eta_min: float = 0.0, fused: bool = False) -> None:  # fmt: skip
        for net, name in ((map_net, "map_net"), (critic, "critic")):
            if net is not None and not isinstance(net, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
        self.lr_schedule = _v.check_choice(lr_schedule, "lr_schedule", _SCHEDULES)
        self.ema_decay = None if ema_decay is None else _v.check_interval(ema_decay, "ema_decay")
        self.critic_steps = _v.check_int(critic_steps, "critic_steps")
        self.lr, self.lr_critic = check_positive(lr, "lr"), check_positive(lr_critic, "lr_critic")
        self.betas = check_betas(betas)
        self.clip_grad = None if clip_grad is None else check_nonnegative(clip_grad, "clip_grad")
        self.bf16, self.generator, self.fused = bool(bf16), generator, bool(fused)
        self.eta_min = check_nonnegative(eta_min, "eta_min")
        self.critic = critic
        self.opt_critic = None if critic is None else self._adam(critic, self.lr_critic)
        self.set_map(map_net)

    def _adam(self, net: nn.Module, lr: float) -> torch.optim.Adam:
        fused = {"fused": True} if self.fused else {}
        return torch.optim.Adam(net.parameters(), lr=lr, betas=self.betas, **fused)

    def set_map(self, map_net: nn.Module) -> None:
        """Train ``map_net`` from now on, with a fresh Adam state (and a fresh EMA copy)."""
        self.map = map_net
        self.opt_map = self._adam(map_net, self.lr)
        self.ema = frozen_copy(map_net) if self.ema_decay is not None else None

    def set_lr(self, it: int, n_iters: int) -> None:
        """Learning rates of iteration ``it`` of ``n_iters`` (the schedule)."""
        factor = 1.0 if self.lr_schedule == "constant" else 0.5 * (1 + math.cos(math.pi * it / n_iters))
        for opt, lr in ((self.opt_map, self.lr), (self.opt_critic, self.lr_critic)):
            if opt is not None:
                for g in opt.param_groups:
                    g["lr"] = self.eta_min + (lr - self.eta_min) * factor

    def _step(self, opt: torch.optim.Optimizer, net: nn.Module, loss: Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad is not None and net is self.map:
            nn.utils.clip_grad_norm_(net.parameters(), self.clip_grad)
        opt.step()

    def _autocast(self):
        device = next(self.map.parameters()).device
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16 and device.type == "cuda")

    def iteration(self, problem) -> list[Tensor]:
        """One iteration: ``critic_steps`` critic steps then one map step; the detached records."""
        batch = problem.batch()
        records = []
        if self.critic is not None:
            for _ in range(self.critic_steps):
                with self._autocast():
                    loss, record = problem.critic_loss(batch)
                self._step(self.opt_critic, self.critic, loss)
            records.append(record)
            self.critic.requires_grad_(False)
        try:
            with self._autocast():
                loss, map_records = problem.map_loss(batch)
            self._step(self.opt_map, self.map, loss)
            if self.ema is not None:
                ema_update(self.ema, self.map, self.ema_decay)
        finally:
            if self.critic is not None:
                self.critic.requires_grad_(True)
        return records + list(map_records)

    def fit(self, problem, n_iters: int, *, start: int = 0, desc: str = "training", names: tuple = (),
            progress: bool | None = None, callback: Callable[[int, list[Tensor]], None] | None = None,
            hint: str = "") -> Tensor:  # fmt: skip
        r"""Iterations ``start, ..., n_iters - 1`` of ``problem`` (module docstring; the schedule runs over
        ``n_iters``): the records, ``(n_records, iterations run)`` float64 on the map's device.

        ``desc`` labels the bar and the error, ``names`` the records (critic's first), ``hint`` ends the
        error; ``progress``: default unless ``$GWF_PROGRESS`` is 0; ``callback(it, records)`` after each
        iteration, a true return stops the loop. Raises :class:`TrainingDivergedError` at the first
        non-finite record (checked every iteration on a CPU, every 100 on CUDA).
        """
        self.map.train()
        if self.critic is not None:
            self.critic.train()
        logs, checked = None, 0
        disable = None if progress is None else not progress
        bar = _train.progress(range(start, n_iters), total=n_iters, initial=start, desc=desc, disable=disable)
        show_every = max(1, min(25, n_iters // 20))
        for it in bar:
            self.set_lr(it, n_iters)
            records = self.iteration(problem)
            if logs is None:
                logs = records[0].new_empty(len(records), n_iters - start, dtype=torch.float64)
            logs[:, it - start] = torch.stack([r.detach().reshape(()).to(logs) for r in records])
            if logs.device.type == "cpu" or it % 100 == 99 or it == n_iters - 1:
                self._check(logs[:, checked : it + 1 - start], checked + start, desc, names, hint)
                checked = it + 1 - start
            if names and (it % show_every == 0 or it == n_iters - 1) and not getattr(bar, "disable", False):
                bar.set_postfix(**{n: f"{v:.3g}" for n, v in zip(names, logs[:, it - start].tolist())})
            if callback is not None and callback(it, records):
                return logs[:, : it + 1 - start]
        return logs

    def _check(self, logs: Tensor, offset: int, desc: str, names: tuple[str, ...], hint: str) -> None:
        bad = ~torch.isfinite(logs)
        if not bool(bad.any()):
            return
        it = int(bad.any(0).nonzero()[0])
        values = logs[:, it].tolist()
        names = names or [f"record {i}" for i in range(len(values))]
        named = ", ".join(f"{n} {v}" for n, v in zip(names, values))
        lrs = f"lr={self.lr:g}" + (f", lr_critic={self.lr_critic:g}" if self.critic is not None else "")
        raise TrainingDivergedError(f"{desc} diverged at iteration {offset + it} ({named}); try a smaller "
                                    f"learning rate ({lrs}){hint}")

    def state_dict(self) -> dict:
        """Networks, optimisers, EMA and the generator's state (a dict for ``torch.save``)."""
        nets = ("map", "opt_map", "critic", "opt_critic", "ema")
        state = {k: None if getattr(self, k) is None else getattr(self, k).state_dict() for k in nets}
        state["generator"] = None if self.generator is None else self.generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` into a trainer built with the same networks and options."""
        for k in ("critic", "ema", "generator"):
            if (state[k] is None) != (getattr(self, k) is None):
                raise ValueError(f"state and trainer disagree on the {k}")
        self.map.load_state_dict(state["map"])
        self.opt_map = self._adam(self.map, self.lr)
        self.opt_map.load_state_dict(state["opt_map"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
            self.opt_critic.load_state_dict(state["opt_critic"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])

    def save(self, path: str | os.PathLike, *, kind: str, config: dict, extra: dict) -> None:
        """Save this trainer's state and ``extra`` (the caller's counters, chain, history) to ``path``."""
        save_checkpoint(path, {"trainer": self.state_dict(), **extra}, kind=kind, config=config)

    def load(self, path: str | os.PathLike, *, kind: str, config: dict, restore: Callable[[dict], None],
             what: str, ignore: tuple[str, ...] = ()) -> None:  # fmt: skip
        """Load a :meth:`save` file: the trainer's state, then ``restore(state)`` for the caller's part.

        Raises a ValueError naming the file when it is damaged, of another kind or configuration (keys in
        ``ignore`` may differ; :func:`gwf_tutorial.train.load_checkpoint`), or does not fit the networks.
        """
        state, _ = load_checkpoint(path, kind=kind, config=config, ignore=ignore)
        try:
            self.load_state_dict(state["trainer"])
            restore(state)
        except (RuntimeError, KeyError, ValueError) as err:
            if isinstance(err, ValueError) and os.fspath(path) in str(err):
                raise
            raise ValueError(f"checkpoint {os.fspath(path)!r} does not fit this {what}: {err}") from err


class LossModule(nn.Module):
    """``loss_fn(net, *args)`` as the ``forward`` of a module holding ``net``: a loss that DDP synchronises.

    Used in: :class:`~gwf_tutorial.cifar10.Trainer`.
    """

    def __init__(self, net: nn.Module, loss_fn: Callable) -> None:
        super().__init__()
        self.net, self._loss_fn = net, loss_fn

    def forward(self, *args):
        return self._loss_fn(self.net, *args)


class RunSettings:
    r"""Base of a :class:`ResumableRun`'s settings: a dataclass of the table ``SETTINGS`` (name -> (default,
    check), a ``--flag`` each: :meth:`parser`, :meth:`check`) with the phases ``n_phases`` :math:`K`,
    ``n_iters_first`` :math:`N_0`, ``n_iters`` :math:`N`: ``total_iters`` :math:`= N_0 + (K - 1) N`.

    Used in: :mod:`gwf_tutorial.cifar10` (the base of its Config).
    """

    SETTINGS: dict = {}
    total_iters = property(lambda self: self.n_iters_first + (self.n_phases - 1) * self.n_iters)

    def phase_start(self, k: int) -> int:
        return 0 if k == 0 else self.n_iters_first + (k - 1) * self.n_iters

    def phase_of(self, step: int) -> int:
        first, n = self.n_iters_first, self.n_iters
        return 0 if step < first or not n else 1 + (step - first) // n

    def to_dict(self) -> dict:  # what a checkpoint stores
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def check(self, labels: dict | None = None) -> None:
        """Check (and normalise) each setting: choices, an int (the minimum), "pos" / "nonneg" / "unit" (> 0,
        >= 0, in (0, 1)), "seed", "betas", "floats" (> 0), "device", "str", "bool"; errors name ``labels``."""
        for name, (_, check) in self.SETTINGS.items():
            value, label = getattr(self, name), (labels or {}).get(name, name)
            if isinstance(check, tuple) and value not in check:
                raise ValueError(f"{name} must be one of {check}, got {value!r}")
            if isinstance(check, int):
                _v.check_int(value, label, min_value=check)
            elif check in ("pos", "nonneg", "unit"):
                (_v.check_nonnegative if check == "nonneg" else _v.check_positive)(value, label)
                if check == "unit" and not value < 1:
                    raise ValueError(f"{name} must be in (0, 1), got {value}")
            elif check == "seed":
                setattr(self, name, _v.check_seed(value, label))
            elif check in ("betas", "floats"):
                value = _v.check_betas(tuple(value)) if check == "betas" else [_v.check_positive(t, label)
                                                                               for t in value]  # fmt: skip
                setattr(self, name, tuple(value))
            elif check == "device" and not isinstance(value, str):
                raise TypeError(f"{name} must be a string such as 'cpu' or 'cuda', got {value!r}")
            elif check == "device" and (value or os.environ.get("GWF_DEVICE")):
                _v.check_device(value or os.environ["GWF_DEVICE"], label if value else "$GWF_DEVICE")

    @classmethod
    def parser(cls, *, flags: dict | None = None, helps: dict | None = None, switches: tuple = (),
               **options) -> argparse.ArgumentParser:  # fmt: skip
        """A parser: a ``--flag`` per setting (``flags[name]`` or ``--name-with-dashes``) typed by its check,
        absent unless given; ``switches``, ``--resume``, ``--overwrite`` (:meth:`ResumableRun.start`)."""
        helps = {**_SWITCHES, **(helps or {})}
        p = argparse.ArgumentParser(argument_default=argparse.SUPPRESS, **options)
        for name in (*switches, "resume", "overwrite"):
            p.add_argument(f"--{name}", action="store_true", help=helps.get(name))
        for name, (_, check) in cls.SETTINGS.items():
            opts = {"help": helps.get(name), "dest": name}
            if check == "bool":
                opts["action"] = argparse.BooleanOptionalAction
            elif isinstance(check, tuple):
                opts["choices"] = check
            else:
                kind = int if isinstance(check, int) else {"seed": int, "str": str, "device": str}.get(check)
                opts.update(type=kind or float, nargs={"betas": 2, "floats": "+"}.get(check))
            p.add_argument((flags or {}).get(name, "--" + name.replace("_", "-")), **opts)
        return p


_SWITCHES = {
    "resume": "continue from OUT/last.pt (its training settings are reused; a damaged file is refused) to "
    "the end of the run; an earlier --time-budget is not: give --time-budget again to stop early. Without "
    "OUT/last.pt it says so on stderr and starts a fresh run",
    "overwrite": "start a fresh run even if OUT already holds one (its last.pt, step_*.pt, log.jsonl, "
    "metrics.json, samples.png are deleted); without it (or --resume) such a folder is refused",
}  # fmt: skip
_RUN_FILES = ("last.pt", "log.jsonl", "metrics.json", "samples.png")  # besides step_*.pt


class ResumableRun:
    r"""Base of a long run of a :class:`Trainer` problem with a one-step generator, alone or in a DDP group:
    random streams per process (``g_dev`` on the device, ``g_cpu``), data batches (:meth:`draw`), a log,
    checkpoints with every process's random states (a resume is bit-exact on a CPU), a time budget, seeded
    (EMA) samples, a command line. A subclass builds its networks after ``super().__init__`` (which seeds the
    global generators alike on every process), sets ``self.trainer`` and is its problem (:meth:`batch`
    freezes the map as ``old``, :math:`T_k`, when a phase :math:`k \ge 1` starts); it names ``kind``,
    ``operational`` (settings a resume may change), ``names``, ``desc``. ``cfg``: a :class:`RunSettings`.

    Used in: :class:`~gwf_tutorial.cifar10.Trainer` (its base).
    """

    kind, operational, names, desc, image_shape = "ResumableRun", (), (), "training", ()

    def __init__(self, cfg: RunSettings, dist: DistInfo | None = None) -> None:
        self.cfg, self.dist = cfg, dist or DistInfo()
        dev = _train.device(cfg.device or None)
        if dev.type == "cuda" and (self.dist.distributed or dev.index is None):
            dev = torch.device("cuda", self.dist.local_rank)
        self.device, self.amp = dev, bool(cfg.amp) and dev.type == "cuda"
        torch.backends.cudnn.benchmark = dev.type == "cuda" or torch.backends.cudnn.benchmark  # fastest convs
        rank_seed = cfg.seed + 1_000_003 * self.dist.rank  # one stream per process, the same after a resume
        self.g_dev = _train.make_generator(rank_seed, device=dev)
        self.g_cpu = _train.make_generator(rank_seed + 1)
        _train.seed_everything(cfg.seed)  # network initialisation: the same on every process
        self.step, self.history, self.train_seconds, self.resumed_from, self.extra = 0, [], 0.0, None, {}
        self.old: nn.Module | None = None

    ema = property(lambda self: self.trainer.ema)
    device_name = property(lambda self: torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                           else "CPU (no GPU)")  # fmt: skip

    @classmethod
    def start(cls, cfg: RunSettings, dist: DistInfo | None = None, *, resume: bool = False,
              overwrite: bool = False, **kwargs) -> ResumableRun:  # fmt: skip
        """A run of ``cfg`` ready to :meth:`run`: ``cfg.out/last.pt`` loaded if ``resume`` (none: said on
        stderr), else fresh, refused if ``cfg.out`` holds a run unless ``overwrite`` (its files deleted)."""
        out, is_main = Path(cfg.out), (dist or DistInfo()).is_main
        if not (resume and (out / "last.pt").exists()):
            if resume and is_main:
                msg = f"--resume: no checkpoint {str(out / 'last.pt')!r}; starting a fresh run"
                print(f"[{cls.__module__}] {msg}", file=sys.stderr, flush=True)
            held = [p.name for p in (sorted(out.glob("*")) if out.is_dir() else [])
                    if p.name in _RUN_FILES or (p.match("step_*.pt") and p.is_file())]  # fmt: skip
            if held and not overwrite:
                why = " but no checkpoint last.pt to resume from" if resume else ""
                raise ValueError(f"output folder {str(out)!r} already holds a run ({', '.join(held)}){why}; "
                                 "--resume continues it, --overwrite replaces it (train(..., resume=True / "
                                 "overwrite=True))")  # fmt: skip
            for name in held if is_main else ():
                (out / name).unlink()
        run = cls(cfg, dist, **kwargs)
        if resume and (out / "last.pt").exists():
            run.load(out / "last.pt")
        return run

    @classmethod
    def resume_config(cls, path: str | os.PathLike, given: dict) -> dict:
        """The settings saved in checkpoint ``path`` (lists as tuples) with the ``operational`` ones of
        ``given`` on top; a ValueError when ``given`` changes another one, or the file is damaged."""
        saved = _train.load_checkpoint(path, kind=cls.kind)[1]
        saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
        conflicts = {k: {"checkpoint": saved.get(k), "given": v} for k, v in given.items()
                     if k not in cls.operational and saved.get(k) != v}  # fmt: skip
        if conflicts:
            raise ValueError(f"--resume with settings that differ from the checkpoint {os.fspath(path)!r}: "
                             f"{conflicts}")  # fmt: skip
        return {**saved, **{k: v for k, v in given.items() if k in cls.operational}}

    def summary(self, status: str) -> dict:
        """The run in numbers; under DDP ``replicas_agree``: the same map on every process (collective)."""
        out = {"status": status, "step": self.step, "total_iters": self.cfg.total_iters,
               "resumed_from": self.resumed_from, "train_seconds": round(self.train_seconds, 2),
               "device": self.device_name, "world_size": self.dist.world_size}  # fmt: skip
        if self.dist.distributed:  # DDP keeps the replicas equal: check it
            total = float(sum(p.detach().double().sum() for p in self.trainer.map.parameters()))
            out["replicas_agree"] = len(set(self.dist.gather(total))) == 1
        return out

    def set_data(self, real: Tensor) -> None:
        """The data: ``real`` ``(N, *image_shape)``, kept flat on the device as ``self.real`` ``(N, dim)``."""
        self.image_shape, self.dim = tuple(real.shape[1:]), math.prod(real.shape[1:])
        self.real = real.to(self.device, torch.float32).reshape(real.shape[0], self.dim)

    def draw(self) -> tuple[Tensor, Tensor]:
        """``cfg.batch_size`` latents ``z ~ N(0, I)`` and data points (with replacement), from ``g_dev``."""
        b = self.cfg.batch_size
        z = torch.randn(b, self.cfg.latent_dim, generator=self.g_dev, device=self.device)
        idx = torch.randint(0, self.real.shape[0], (b,), generator=self.g_dev, device=self.device)
        return z, self.real[idx]

    def place(self, *nets: nn.Module | None) -> None:
        """Move ``nets`` (None: skipped) to the device, channels-last on CUDA (for bf16 tensor cores)."""
        fmt = torch.channels_last if self.device.type == "cuda" else torch.preserve_format
        for net in (net for net in nets if net is not None):
            net.to(self.device, memory_format=fmt)

    def batch(self) -> None:
        """Freeze the map as ``old`` at the first iteration of each phase ``k >= 1``."""
        k = self.cfg.phase_of(self.step)
        if k > 0 and self.cfg.phase_start(k) == self.step:
            self.old = frozen_copy(self.trainer.map).train()

    def train_step(self) -> dict:
        """One iteration; its named detached records, on the device (``scripts/gpu_check.py``)."""
        self.trainer.set_lr(self.step, self.cfg.total_iters)
        records = self.trainer.iteration(self)
        self.step += 1
        return self._named(records)

    def _named(self, records: list[Tensor]) -> dict:  # ``self.extra``: records the problem added
        out, self.extra = {**self.extra, **dict(zip(self.names, records))}, {}
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the trainer's state, ``old``, step, history, every process's random states (collective)."""
        rng = {**_train.rng_state(), "g_dev": self.g_dev.get_state(), "g_cpu": self.g_cpu.get_state()}
        rng = self.dist.gather(rng)
        if self.dist.is_main:
            self.trainer.save(path, kind=self.kind, config=self.cfg.to_dict(), extra={
                "old": None if self.old is None else self.old.state_dict(), "step": self.step, "rng": rng,
                "world_size": self.dist.world_size, "history": list(self.history),
                "train_seconds": self.train_seconds, "device": self.device_name})  # fmt: skip
        self.dist.barrier()

    def load(self, path: str | os.PathLike) -> None:
        """Load a :meth:`save` file; refused, naming it, if damaged or written with other settings."""
        self.trainer.load(path, kind=self.kind, config=self.cfg.to_dict(), restore=self._restore, what="run",
                          ignore=self.operational)  # fmt: skip

    def _restore(self, state: dict) -> None:
        if state["world_size"] != self.dist.world_size:
            raise ValueError(f"checkpoint was written by {state['world_size']} process(es), "
                             f"this run has {self.dist.world_size}")  # fmt: skip
        self.old = None if state["old"] is None else frozen_copy(self.trainer.map).train()
        if self.old is not None:
            self.old.load_state_dict(state["old"])
        self.step, self.history = int(state["step"]), list(state["history"])
        self.train_seconds, self.resumed_from = float(state["train_seconds"]), int(state["step"])
        st = state["rng"][self.dist.rank]
        self.g_dev.set_state(st["g_dev"]), self.g_cpu.set_state(st["g_cpu"]), _train.set_rng_state(st)

    @torch.no_grad()
    def sample(self, n: int, *, seed: int = 0, use_ema: bool = True, batch_size: int = 500) -> Tensor:
        """``n`` samples ``(n, *image_shape)`` on the CPU from the (EMA) map, in eval mode, seeded."""
        n, net = _v.check_int(n, "n"), self.ema if use_ema else self.trainer.map
        g, was_training, out = _train.make_generator(seed, device=self.device), net.training, []
        net.eval()
        for start in range(0, n, batch_size):
            z = torch.randn(min(batch_size, n - start), self.cfg.latent_dim, generator=g, device=self.device)
            out.append(net(z).float().reshape(z.shape[0], *self.image_shape).cpu())
        net.train(was_training)
        return torch.cat(out)

    def run(self, *, stop_check: Callable[[], bool] | None = None) -> str:
        """Train to ``cfg.total_iters``: the means of the records every ``log_every`` iterations in
        ``history`` and ``cfg.out/log.jsonl``, ``last.pt`` every ``ckpt_every``, ``step_<t>.pt`` every
        ``save_every`` (if > 0); after ``cfg.time_budget`` s (if > 0) or once ``stop_check()``, stop (all
        processes) after a checkpoint: ``"budget"``, else ``"done"``."""
        cfg, out, dist = self.cfg, Path(self.cfg.out), self.dist
        if dist.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if self.step:  # a resumed run: the log restarts from the checkpoint's (exact) history
                (out / "log.jsonl").write_text("".join(json.dumps(rec) + "\n" for rec in self.history))
        dist.barrier()
        t0, sec0, acc, stopped, n_iters = time.perf_counter(), self.train_seconds, {}, [0], cfg.total_iters
        budget = (lambda: time.perf_counter() - t0 >= cfg.time_budget) if cfg.time_budget > 0 else None
        checks = [check for check in (budget, stop_check) if check is not None]

        def after(it: int, records: list[Tensor]) -> bool:
            self.step = step = it + 1
            for k, v in self._named(records).items():  # tensors: no device synchronisation until a log line
                acc[k] = (acc[k][0] + v, acc[k][1] + 1) if k in acc else (v, 1)
            self.train_seconds = sec0 + time.perf_counter() - t0
            if step % cfg.log_every == 0 or step == n_iters:
                rec = {"step": step, "phase": cfg.phase_of(step - 1),
                       **{k: float(v) / c for k, (v, c) in acc.items()}}
                rec["lr"] = self.trainer.opt_map.param_groups[0]["lr"]
                self.history.append(rec), acc.clear()
                if dist.is_main:
                    with open(out / "log.jsonl", "a") as f:
                        f.write(json.dumps(rec) + "\n")
            stop = any(bool(check()) for check in checks)
            if checks and dist.distributed:  # every process stops at the same step
                flag = torch.tensor([float(stop)], device=self.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                stop = bool(flag.item() > 0)
            if step % cfg.ckpt_every == 0 or step == n_iters or stop:
                self.save(out / "last.pt")
            if cfg.save_every and step % cfg.save_every == 0:
                self.save(out / f"step_{step:07d}.pt")
            stopped[0] = stop and step < n_iters
            return stopped[0]

        self.trainer.fit(self, n_iters, start=self.step, desc=self.desc, names=self.names,
                         progress=cfg.progress and dist.is_main, callback=after)  # fmt: skip
        return "budget" if stopped[0] else "done"

    @classmethod
    def command_line(cls, argv, *, parse: Callable, train: Callable, parser: Callable, title: Callable):
        """A training command: ``parse(argv) -> (cfg, resume, overwrite)`` (errors: ``parser()``'s usage, exit
        status 2), DDP from ``torchrun``'s variables, ``train(cfg, dist_info=, resume=, overwrite=) -> (run,
        summary)``, the summary printed (rank 0) and returned."""
        try:
            cfg, resume, overwrite = parse(argv)
        except (ValueError, TypeError) as err:
            parser().error(str(err))
        info = _train.init_distributed(cuda=_train.device(cfg.device or None).type == "cuda")
        try:
            if info.is_main:
                print(f"[{cls.__module__}] {title(cfg)}; {cfg.total_iters} iterations; world size "
                      f"{info.world_size}; out={cfg.out}", flush=True)  # fmt: skip
            _, summary = train(cfg, dist_info=info, resume=resume, overwrite=overwrite)
            if info.is_main:
                print(json.dumps(summary), flush=True)
            return summary
        finally:
            if info.distributed and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
