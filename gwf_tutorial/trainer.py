r"""The library's one training loop: a map (generator), an optional critic, and a loss that couples them.

Every trained push-forward of the library (the parametric JKO chains of :mod:`gwf_tutorial.jko`, the
S-JKO phases of :mod:`gwf_tutorial.sjko`, the GANs they contain as ``tau=None`` switches) is the same
loop: at each iteration a problem draws its batch, the critic takes ``critic_steps`` Adam steps on the
problem's critic loss, then the map takes one Adam step on the problem's map loss,

.. math::

    \phi \leftarrow \phi - \eta_c \nabla_\phi L_c(\phi; \theta) \ (\times\, \texttt{critic\_steps}),
    \qquad \theta \leftarrow \theta - \eta\, \nabla_\theta L(\theta; \phi),

with the learning rates :math:`\eta, \eta_c` constant or cosine-annealed over the ``n_iters``
iterations, an EMA of :math:`\theta` when asked, optional gradient clipping and bfloat16 autocast on
CUDA. A non-finite loss raises :class:`TrainingDivergedError` naming the learning rates. The problem is:

- ``batch()``: draws what one iteration shares (or ``None``),
- ``critic_loss(batch) -> (loss, record)``: the critic's loss and one detached scalar to log,
- ``map_loss(batch) -> (loss, records)``: the map's loss and a list of detached scalars to log,

so the method (objective, discretization, parametrization) lives in the problem and the mechanics here.
Checkpoints use the one format of :func:`gwf_tutorial.train.save_checkpoint`.

Used in: chapters 4-7 and 9 (through ``jko.ParametricJKO`` and ``sjko.SemiDualJKO``).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from gwf_tutorial._validation import FlowDivergedError, check_betas, check_nonnegative, check_positive
from gwf_tutorial.train import ema_update, load_checkpoint, save_checkpoint
from gwf_tutorial.train import progress as _progress

__all__ = ["PhaseRecord", "Trainer", "TrainerPreset", "TrainingDivergedError", "frozen_copy"]

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

    .. math::

        \eta_i = \eta\, s(i), \quad s(i) = 1 \ (\text{constant}) \ \text{or}\
        \tfrac12\big(1 + \cos(\pi i / n)\big) \ (\text{cosine}), \qquad
        \bar\theta \leftarrow \beta\bar\theta + (1 - \beta)\theta \ (\text{EMA}).

    Used in: :class:`~gwf_tutorial.jko.ParametricJKO`, :class:`~gwf_tutorial.sjko.SemiDualJKO`, the
    module :mod:`gwf_tutorial.cifar10`, :func:`~gwf_tutorial.drifting.train_drifting` and
    :func:`~gwf_tutorial.fflows.vgrow`.

    Parameters
    ----------
    map_net, critic : nn.Module
        The map (generator) trained by :meth:`fit`; the critic (potential), None for a problem without one.
    lr, lr_critic, betas : float, float, tuple of two floats
        Adam learning rates of the map and the critic; Adam betas (both optimisers).
    critic_steps : int, default 1
        Critic updates per map update.
    lr_schedule : {"constant", "cosine"}, default "constant"
        Cosine: annealed to 0 within each :meth:`fit`.
    ema_decay : float, optional
        Keep :attr:`ema`, an EMA of the map's weights, updated after every map step.
    clip_grad : float, optional
        Clip the gradient norm of the map to this value before its step.
    bf16 : bool, default False
        Compute the losses under ``torch.autocast(dtype=bfloat16)`` when the map is on CUDA (never on a CPU).
    generator : torch.Generator, optional
        The problem's random stream, saved and restored with the checkpoints.
    eta_min : float, default 0
        Cosine: the floor :math:`\eta_{\min} + (\eta - \eta_{\min}) s(i)` of both learning rates.
    fused : bool, default False
        Fused Adam (CUDA: fewer kernel launches).
    """

    def __init__(
        self,
        map_net: nn.Module,
        critic: nn.Module | None = None,
        *,
        lr: float = 1e-3,
        lr_critic: float = 1e-3,
        betas: tuple[float, float] = (0.5, 0.9),
        critic_steps: int = 1,
        lr_schedule: str = "constant",
        ema_decay: float | None = None,
        clip_grad: float | None = None,
        bf16: bool = False,
        generator: torch.Generator | None = None,
        eta_min: float = 0.0,
        fused: bool = False,
    ) -> None:
        for net, name in ((map_net, "map_net"), (critic, "critic")):
            if net is not None and not isinstance(net, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
        if lr_schedule not in _SCHEDULES:
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        if ema_decay is not None and not (isinstance(ema_decay, int | float) and 0 < ema_decay < 1):
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay!r}")
        if not isinstance(critic_steps, int) or isinstance(critic_steps, bool) or critic_steps < 1:
            raise ValueError(f"critic_steps must be an integer >= 1, got {critic_steps!r}")
        self.lr, self.lr_critic = check_positive(lr, "lr"), check_positive(lr_critic, "lr_critic")
        self.betas = check_betas(betas)
        self.critic_steps, self.lr_schedule, self.ema_decay = critic_steps, lr_schedule, ema_decay
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

    def _critic_grad(self, flag: bool) -> None:
        for p in self.critic.parameters():
            p.requires_grad_(flag)

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
            self._critic_grad(False)
        try:
            with self._autocast():
                loss, map_records = problem.map_loss(batch)
            self._step(self.opt_map, self.map, loss)
            if self.ema is not None:
                ema_update(self.ema, self.map, self.ema_decay)
        finally:
            if self.critic is not None:
                self._critic_grad(True)
        return records + list(map_records)

    def fit(
        self,
        problem,
        n_iters: int,
        *,
        start: int = 0,
        desc: str = "training",
        names: tuple[str, ...] = (),
        progress: bool | None = None,
        callback: Callable[[int, list[Tensor]], None] | None = None,
        hint: str = "",
    ) -> Tensor:
        r"""Run ``n_iters`` iterations of ``problem``; the records of every iteration.

        Parameters
        ----------
        problem : object with ``batch``, ``critic_loss``, ``map_loss``
            See the module docstring.
        n_iters : int
            Iterations ``start, ..., n_iters - 1`` (``start`` > 0: a run resumed in the middle); the
            schedule runs over ``n_iters``.
        desc, names, hint : str, tuple of str, str
            Label of the progress bar and of the divergence error; names of the records (critic's first),
            shown in the bar every few iterations and in the error; a hint appended to the error.
        progress : bool, optional
            Show a progress bar (default: unless ``$GWF_PROGRESS`` is 0).
        callback : callable, optional
            ``callback(it, records)`` after every iteration; a true return value stops the loop.

        Returns
        -------
        Tensor, shape (n_records, iterations run), float64, on the map's device

        Raises
        ------
        TrainingDivergedError
            At the first non-finite record (checked every iteration on a CPU, every 100 on CUDA).
        """
        self.map.train()
        if self.critic is not None:
            self.critic.train()
        logs, checked = None, 0
        disable = None if progress is None else not progress
        bar = _progress(range(start, n_iters), total=n_iters, initial=start, desc=desc, disable=disable)
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
        logs, it = logs[:, it:], offset + it
        values = logs[:, 0].tolist()
        names = names or [f"record {i}" for i in range(len(values))]
        named = ", ".join(f"{n} {v}" for n, v in zip(names, values))
        lrs = f"lr={self.lr:g}" + (f", lr_critic={self.lr_critic:g}" if self.critic is not None else "")
        raise TrainingDivergedError(
            f"{desc} diverged at iteration {it} ({named}); try a smaller learning rate ({lrs}){hint}"
        )

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

