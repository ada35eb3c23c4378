r"""S-JKO: the JKO step as source-fixed unbalanced optimal transport, solved in the semi-dual.

The JKO step to :math:`\nu` is a max-min over a potential :math:`g` and a map :math:`T`, with the cost
:math:`c_\tau(x, y) = |x - y|^2/(2\tau)` and the conjugate :math:`\Psi^*` of the divergence :math:`D_\Psi`,

.. math::

    \sup_g \inf_T\ J(g, T), \qquad J(g, T) = \mathbb E_{x \sim \rho_k}\big[c_\tau(x, T(x)) - g(T(x))\big]
    - \mathbb E_{y \sim \nu}\big[\Psi^*(-g(y))\big],

whose saddle point has :math:`T_\#\rho_k = \rho_{k+1}` and :math:`J = W_2^2(\rho_{k+1}, \rho_k)/(2\tau) +
D_\Psi(\rho_{k+1} \| \nu)`, the JKO objective. Shared arguments: ``divergence``, a name of :data:`PSI_STAR`
or a callable :math:`\Psi^*`; samplers (``source``, ``data``), tensors ``(N, ...)`` (rows drawn), callables
``f(n, generator=g)`` or objects with ``.sample(n, generator=g)``; ``progress``, a tqdm bar (default: unless
``GWF_PROGRESS=0``); ``source_weights`` / ``data_weights``, optional quadrature weights (normalised).

References: Choi, Choi, Kang (2024), Scalable Wasserstein gradient flow for generative modeling through
unbalanced optimal transport, ICML, arXiv:2402.05443; official code ``Jae-Moo/Scalable-JKO``.

Used in: chapter 7; chapters 4 and 9 (a baseline); ``cifar10`` and ``methods`` (chapters 10 and 11).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from gwf_tutorial import _validation as _v
from gwf_tutorial._validation import as_tensor, check_int, check_nonnegative, check_positive
from gwf_tutorial.critics import SemiDualPotential, _values, _weighted_mean
from gwf_tutorial.fdiv import PSI_F, PSI_STAR, psi_star
from gwf_tutorial.jko import _check_sampler, _config, _draw, _load_copies, proximal_cost, resolve_initial_map
from gwf_tutorial.nets import MLP, AffineMap, ResidualMLP
from gwf_tutorial.train import make_generator, save_checkpoint
from gwf_tutorial.trainer import PhaseRecord, Trainer, TrainerPreset, frozen_copy

# PSI_STAR, PSI_F, psi_star live in gwf_tutorial.fdiv; chapter 7 reads them as sjko.PSI_STAR / sjko.psi_star.
__all__ = ["PSI_STAR", "PSI_F", "psi_star", "transport_cost", "tau_from_h", "potential_loss", "map_loss",
           "semi_dual_objective", "add_instance_noise", "QuadraticPotential", "LatentMap",
           "SemiDualJKO", "toy_trainer", "affine_trainer"]  # fmt: skip

#: Chapter 7's name of :func:`gwf_tutorial.jko.proximal_cost`, :math:`c_\tau(x, y) = |x - y|^2 / (2\tau)`.
transport_cost = proximal_cost
_PARAMETRIZATIONS = ("reparameterized", "composed")
_KIND = "sjko.SemiDualJKO"
_CONFIG = ("divergence tau lr lr_critic betas r1 ema_decay per_dim_average independent_latents "
           "instance_noise n_iters batch_size noise_dim parametrization lr_schedule").split()  # fmt: skip


def tau_from_h(h: float, dim: int, *, per_dim_average: bool = False) -> float:
    r"""The library's JKO step :math:`\tau` for the official code's step ``h`` in dimension d.

    The official ``0.5 * c / h - v``, ``c`` the squared distance averaged over the d coordinates, is the
    cost :math:`|x - y|^2/(2hd)` (README: :math:`1/\tau_{\mathrm{README}} = 2dh`); the library's is
    :math:`|x - y|^2/(2\tau)` (divided by d with ``per_dim_average=True``), so :math:`\tau = h d` (summed
    cost) or :math:`\tau = h` (per-dimension average): the official toy ``--h 1`` (d = 2) is :math:`\tau = 2`,
    its CIFAR-10 ``--h 0.1`` :math:`\tau = 307.2`.

    Used in: chapter 7 (units of the step).
    """
    h, dim = check_positive(h, "h"), check_int(dim, "dim")
    return h if _v.check_bool(per_dim_average, "per_dim_average") else h * dim


def potential_loss(v_fake, v_real, divergence: str | Callable = "kl", *, grad_real: Tensor | None = None,
                   r1: float = 0.0, source_weights=None, data_weights=None) -> Tensor:  # fmt: skip
    r"""Loss of the potential (minimised, shape ``()``): minus the semi-dual up to terms free of g, plus R1
    :math:`\frac{\lambda}{2}\mathbb E_\nu |\nabla g|^2` (:meth:`SemiDualPotential.loss
    <gwf_tutorial.critics.SemiDualPotential.loss>`, ``r1`` :math:`= \lambda`, official code: 0.2), from the
    values ``v_fake`` :math:`= g(T(x_i))`, ``v_real`` and ``grad_real``.

    Used in: :mod:`gwf_tutorial.cifar10`.
    """
    weights = dict(source_weights=source_weights, data_weights=data_weights)
    return SemiDualPotential(divergence).loss(v_fake, v_real, grad_real=grad_real, r1=r1, **weights)


def map_loss(t_new: Tensor, t_old: Tensor, v_new, tau: float, *, per_dim_average: bool = False,
             source_weights=None) -> Tensor:  # fmt: skip
    r"""Loss of the map (minimised, shape ``()``), the c-transform objective in one mean,
    :math:`L_T = \mathbb E[c_\tau(T_{\mathrm{old}}(x), T(x)) - g(T(x))]`: ``t_new`` :math:`= T(x_i)` ``(n,
    ...)``, ``t_old`` the paired points of :math:`\rho_k`, ``v_new`` :math:`= g(T(x_i))` ``(n,)``.

    Used in: chapter 7.
    """
    for t, nm in ((t_new, "t_new"), (t_old, "t_old")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim < 2 or t.shape[0] < 1:
            raise ValueError(f"{nm} must have shape (n, ...) with n >= 1, got {tuple(t.shape)}")
    if (t_new.shape, t_new.dtype, t_new.device) != (t_old.shape, t_old.dtype, t_old.device):
        got = [(tuple(t.shape), t.dtype, t.device.type) for t in (t_new, t_old)]
        raise ValueError(f"t_new and t_old must have the same shape, dtype and device, got {got}")
    v_new = _values(v_new, "v_new")
    cost = proximal_cost(t_new, t_old, tau, per_dim_average=per_dim_average)
    if cost.shape != v_new.shape:
        raise ValueError(f"v_new must have one value per map output ({cost.shape[0]}), got {v_new.shape[0]}")
    return _weighted_mean(cost - v_new, source_weights, "source_weights")


def semi_dual_objective(cost, v_fake, v_real, divergence: str | Callable = "kl", *, source_weights=None,
                        data_weights=None) -> Tensor:  # fmt: skip
    r"""The semi-dual :math:`J(g, T)` of the module docstring (shape ``()``), the primal JKO objective at the
    saddle point, from ``cost`` :math:`= c_\tau(x_i, T(x_i))` ``(n,)``, ``v_fake``, ``v_real`` as in
    :func:`potential_loss`.

    Used in: chapter 7 (semi-dual = primal at the optimum).
    """
    cost, v_fake = _values(cost, "cost"), _values(v_fake, "v_fake")
    if cost.shape != v_fake.shape:
        raise ValueError(f"cost and v_fake must have the same length, got {len(cost)} and {len(v_fake)}")
    data = SemiDualPotential(divergence).data_term(v_real, data_weights)
    return _weighted_mean(cost - v_fake, source_weights, "source_weights") - data


def add_instance_noise(y: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
    r"""The official code's instance noise on data ``y`` ``(m, ...)`` at phase k (0-based), same shape:
    :math:`\tilde y = y + \varepsilon / (32 (k + 1))`, :math:`\varepsilon \sim \mathcal N(0, I)`.

    Used in: ``sjko.SemiDualJKO`` (``instance_noise=True``).
    """
    y = as_tensor(y, "y")
    if y.ndim < 2 or y.shape[0] < 1:
        raise ValueError(f"y must have shape (n, ...) with n >= 1, got {tuple(y.shape)}")
    k = check_int(k, "k", min_value=0)
    eps = torch.randn(y.shape, generator=generator, dtype=y.dtype, device=y.device)
    return y + eps / (32.0 * (k + 1))


class QuadraticPotential(nn.Module):
    r"""Quadratic potential ``(n, dim) -> (n,)`` started at 0, exact for Gaussians (with ``nets.AffineMap``):
    :math:`g(y) = y^\top C y + e^\top y + a`; parameters ``C`` (its symmetric part), ``e``, ``g`` (:math:`a`).

    Used in: chapter 7 (S-JKO on Gaussians, checked against the exact JKO step).
    """

    def __init__(self, dim: int, *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.C = nn.Parameter(torch.zeros(self.dim, self.dim, dtype=dtype))
        self.e = nn.Parameter(torch.zeros(self.dim, dtype=dtype))
        self.g = nn.Parameter(torch.zeros((), dtype=dtype))

    def forward(self, y: Tensor) -> Tensor:
        if not isinstance(y, Tensor) or y.ndim != 2 or y.shape[1] != self.dim:
            raise ValueError(f"y must be a tensor of shape (n, {self.dim}), got {getattr(y, 'shape', y)}")
        C = 0.5 * (self.C + self.C.T)
        return ((y @ C) * y).sum(1) + y @ self.e + self.g


class LatentMap(nn.Module):
    r"""Gives a network ``net`` ``(n, d + nz) -> (n, d)`` the S-JKO map signature ``T(x, z)``:
    :math:`T(x, z) = N([x, z])`, or :math:`x + N([x, z])` with ``residual``.

    Used in: chapter 7 (toy maps with an extra latent, as in the official code).
    """

    def __init__(self, net: nn.Module, *, residual: bool = True) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        self.net, self.residual = net, bool(residual)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        if x.ndim != 2 or z.ndim != 2 or x.shape[0] != z.shape[0]:
            raise ValueError(f"x, z must have shapes (n, d), (n, nz), got {tuple(x.shape)} {tuple(z.shape)}")
        out = self.net(torch.cat([x, z], dim=1))
        return x + out if self.residual else out


def _call(net: Callable, x: Tensor, z: Tensor | None) -> Tensor:
    return net(x) if z is None else net(x, z)


def _latent(tr: SemiDualJKO, n: int) -> Tensor | None:
    g, nz = tr._noise_generator, tr.noise_dim
    return None if nz == 0 else torch.randn(n, nz, generator=g, device=tr.device, dtype=tr.dtype)


@torch.no_grad()
def _push_chain(tr: SemiDualJKO, x0: Tensor, maps: list[nn.Module]) -> Tensor:
    """:math:`T_{k-1}(\\cdots T_0(T_{-1}(x_0)))`, a fresh latent per map."""
    x = _call(tr.initial_map, x0, _latent(tr, x0.shape[0]))
    for m in maps:
        x = _call(m, x, _latent(tr, x.shape[0]))
    return x


class _PhaseLoss:
    """One S-JKO iteration as a :class:`~gwf_tutorial.trainer.Trainer` problem (the official draw order): the
    ``adversary``'s (:class:`~gwf_tutorial.critics.SemiDualPotential`) loss, then :func:`map_loss`."""

    def __init__(self, tr: SemiDualJKO, source, data, k: int, tau: float) -> None:
        self.tr, self.source, self.data, self.k, self.tau, self.psi_term = tr, source, data, k, tau, None

    def batch(self) -> None:
        return None

    def critic_loss(self, _) -> tuple[Tensor, Tensor]:
        tr = self.tr
        y = _draw(tr, self.data, tr.batch_size, "data", tr.generator)
        if tr.instance_noise:
            y = add_instance_noise(y, self.k, generator=tr._noise_generator)
        x0 = _draw(tr, self.source, tr.batch_size, "source", tr.generator)
        inputs = _push_chain(tr, x0, tr.chain) if tr.parametrization == "composed" else x0
        with torch.no_grad():
            fake = _call(tr.map, inputs, _latent(tr, inputs.shape[0]))
        if fake.shape[1:] != y.shape[1:]:
            raise ValueError(f"data points have shape {tuple(y.shape[1:])} but map_net outputs shape "
                             f"{tuple(fake.shape[1:])}")  # fmt: skip
        loss_v, _, self.psi_term = tr.adversary.critic_terms(tr.potential, fake, y, r1=tr.r1)
        return loss_v, loss_v.detach()

    def map_loss(self, _) -> tuple[Tensor, list[Tensor]]:
        tr = self.tr
        inputs, old, z = tr.source_and_old(_draw(tr, self.source, tr.batch_size, "source", tr.generator))
        new = _call(tr.map, inputs, z)
        if new.shape != old.shape:  # e.g. latent and data spaces differ: pass initial_map="copy"
            raise ValueError(f"map_net outputs shape {tuple(new.shape)}, source points {tuple(old.shape)}")
        v_new = tr.adversary.values(tr.potential, new)
        loss_t = map_loss(new, old, v_new, self.tau, per_dim_average=tr.per_dim_average)
        return loss_t, [loss_t.detach(), loss_t.detach() - self.psi_term]


class SemiDualJKO(TrainerPreset):
    r"""S-JKO trainer: a potential and a map per JKO phase, reparameterized (O(K)) or composed (O(K^2)).

    Phase k alternates Adam steps on the potential's loss (``adversary``, a
    :class:`~gwf_tutorial.critics.SemiDualPotential`) and :func:`map_loss` (a
    :class:`~gwf_tutorial.trainer.Trainer`, the potential its critic) on the saddle problem of the module
    docstring, with :math:`x = T_{k-1}(x_0, z')` paired with the new map's :math:`T(x_0, z)`,
    :math:`x_0 \sim \mu_0`; :math:`T_k` started at :math:`T_{k-1}` (reparameterized, :math:`\rho_k =
    (T_{k-1})_\#\mu_0`) or a new step map after the frozen chain :math:`T_{k-1} \circ \dots \circ T_0`
    (composed; ``chain``, ``chain_ema``). Defaults are the official toy code's: :math:`z' = z`, no instance
    noise, the summed cost (:func:`tau_from_h`); a tensor sampler of at most ``batch_size`` rows is all used.

    ``map_net(x)``, or ``map_net(x, z)`` when ``noise_dim > 0`` (:class:`LatentMap`), starts at the identity;
    ``potential_net`` :math:`g` ``(n, ...) -> (n,)`` or ``(n, 1)`` is warm-started across phases;
    ``ema_decay``: an EMA of the map for :meth:`push` (official CIFAR-10: 0.9999); ``per_dim_average``,
    ``independent_latents``, ``instance_noise``: the cost divided by d, independent ``z, z'``,
    :func:`add_instance_noise`; ``initial_map``: :math:`T_{-1}`, as for ``jko.ParametricJKO``.

    Used in: chapter 7 (S-JKO on toys, O(K) vs O(K^2)), chapters 4 and 9 (a baseline).
    """

    def __init__(self, map_net: nn.Module, potential_net: nn.Module, divergence: str | Callable = "kl",
                 tau: float = 1.0, *, lr: float = 1e-4, lr_critic: float = 2e-5, betas=(0.5, 0.9),
                 r1: float = 0.2, ema_decay: float | None = None, per_dim_average: bool = False,
                 independent_latents: bool = False, instance_noise: bool = False, n_iters: int = 5000,
                 batch_size: int = 400, noise_dim: int = 0, parametrization: str = "reparameterized",
                 initial_map: Callable | str | None = None, lr_schedule: str = "constant",
                 seed: int | None = None) -> None:  # fmt: skip
        for net, name in ((map_net, "map_net"), (potential_net, "potential_net")):
            if not isinstance(net, nn.Module):
                raise TypeError(f"{name} must be a torch.nn.Module, got {type(net).__name__}")
            if not list(net.parameters()):
                raise ValueError(f"{name} has no parameters to train")
        self.divergence, self.adversary = divergence, SemiDualPotential(divergence)
        self.tau, self.r1 = check_positive(tau, "tau"), check_nonnegative(r1, "r1")
        self.per_dim_average = _v.check_bool(per_dim_average, "per_dim_average")
        self.independent_latents = _v.check_bool(independent_latents, "independent_latents")
        self.instance_noise = _v.check_bool(instance_noise, "instance_noise")
        self.n_iters, self.batch_size = check_int(n_iters, "n_iters"), check_int(batch_size, "batch_size")
        self.noise_dim = check_int(noise_dim, "noise_dim", min_value=0)
        self.parametrization = _v.check_choice(parametrization, "parametrization", _PARAMETRIZATIONS)
        param = next(map_net.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.initial_map = resolve_initial_map(initial_map, map_net)
        seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else seed
        self.seed = check_int(seed, "seed", min_value=0)
        self.generator = make_generator(self.seed)  # CPU: samplers, mini-batch indices
        cpu = self.device.type == "cpu"
        self._noise_generator = self.generator if cpu else make_generator(self.seed + 1, device=self.device)
        self.trainer = Trainer(map_net, potential_net, lr=lr, lr_critic=lr_critic, betas=betas,
                               lr_schedule=lr_schedule, ema_decay=ema_decay, generator=self.generator)
        self.ema_decay = self.trainer.ema_decay
        # composed: the frozen step maps T_0, ..., T_{k-1} and their EMA copies; the phases' records
        self.chain, self.chain_ema, self.history = [], [], []
        self.n_phases, self._source, self._old = 0, None, None

    map = property(lambda self: self.trainer.map, doc="The current (last trained) map.")
    potential = property(lambda self: self.trainer.critic, doc="The potential v.")
    ema = property(lambda self: self.trainer.ema, doc="EMA copy of the map (None without ema_decay).")

    @torch.no_grad()
    def push(self, x0: Tensor, *, use_ema: bool = True) -> Tensor:
        r"""Push points ``x0`` ``(n, ...)`` of :math:`\mu_0` to :math:`\rho_K` (fresh latents, EMA if kept):
        :math:`T_{K-1}(x_0, z)` (reparameterized) or
        :math:`T_{K-1}(\cdots T_0(T_{-1}(x_0), z_0) \cdots, z_{K-1})` (composed)."""
        if not isinstance(x0, Tensor) or x0.ndim < 2:
            raise ValueError("x0 must be a tensor of shape (n, ...)")
        x0 = x0.to(device=self.device, dtype=self.dtype)
        use_ema = use_ema and self.ema is not None
        if self.parametrization == "composed":
            return _push_chain(self, x0, self.chain_ema if use_ema else self.chain)
        net = self.initial_map if self.n_phases == 0 else (self.ema if use_ema else self.map)
        return _call(net, x0, _latent(self, x0.shape[0]))

    @torch.no_grad()
    def sample(self, n: int, source=None) -> Tensor:
        r"""``n`` samples of :math:`\rho_K`: :meth:`push` of draws of ``source`` (default: the last one)."""
        n = check_int(n, "n")
        source = self._source if source is None else _check_sampler(source, "source")
        if source is None:
            raise ValueError("no source given and no phase has run yet: pass source=")
        if isinstance(source, Tensor):
            idx = torch.randint(0, source.shape[0], (n,), generator=self.generator)
            return self.push(source[idx.to(source.device)])
        return self.push(_draw(self, source, n, "source", self.generator, check=True))

    def start_phase(self) -> None:
        """Prepare phase k = ``n_phases``: freeze the previous map :math:`T_{k-1}` as the old map
        (reparameterized) or train a copy of the last step map (composed). Called by :meth:`phase`."""
        self._old = None
        if self.parametrization == "reparameterized":
            self._old = self.initial_map if self.n_phases == 0 else frozen_copy(self.map)
        elif self.n_phases > 0:
            self.trainer.set_map(frozen_copy(self.chain[-1]).requires_grad_(True).train())

    def source_and_old(self, x0: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        r"""For latent points ``x0``: the map's inputs, the paired points of :math:`\rho_k` (no graph) and the
        map's latents (or None): :math:`(x_0, T_{k-1}(x_0, z'), z)` (reparameterized; :math:`z' = z` unless
        ``independent_latents``) or :math:`(x, x, z)`, :math:`x` the chain's output (composed)."""
        if self.parametrization == "composed":
            x = _push_chain(self, x0, self.chain)
            return x, x, _latent(self, x.shape[0])
        if self._old is None:
            raise RuntimeError("call start_phase() first")
        z = _latent(self, x0.shape[0])
        z_old = _latent(self, x0.shape[0]) if self.independent_latents else z
        with torch.no_grad():
            old = _call(self._old, x0, z_old)
        return x0, old, z

    def phase(self, source, data, *, n_iters: int | None = None, tau: float | None = None,
              progress: bool | None = None, callback: Callable | None = None) -> PhaseRecord:  # fmt: skip
        r"""Run phase k = ``n_phases``, one JKO step :math:`\rho_k \to \rho_{k+1}` (``n_iters`` iterations of
        step ``tau``, default the trainer's): its :class:`~gwf_tutorial.trainer.PhaseRecord`, also appended to
        ``history``; ``callback(iteration, potential_loss, map_loss)`` (detached scalars) runs after each."""
        source, data = _check_sampler(source, "source"), _check_sampler(data, "data")
        _v.check_callable(callback, "callback", optional=True)
        n_iters = self.n_iters if n_iters is None else check_int(n_iters, "n_iters")
        tau = self.tau if tau is None else check_positive(tau, "tau")
        for sampler, name in ((source, "source"), (data, "data")):
            if not isinstance(sampler, Tensor):
                _draw(self, sampler, 2, name, self.generator, check=True)
        self._source, k = source, self.n_phases
        self.start_phase()
        t0 = time.perf_counter()
        hook = None if callback is None else (lambda it, r: callback(it, r[0], r[1]))
        logs = self.trainer.fit(
            _PhaseLoss(self, source, data, k, tau), n_iters, desc=f"S-JKO phase {k}", callback=hook,
            names=("potential_loss", "map_loss", "semi_dual"), progress=progress,
            hint=f" or a smaller tau (tau={tau})",
        ).to(self.dtype).cpu()  # fmt: skip
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        result = PhaseRecord(k, tau, n_iters, time.perf_counter() - t0,
                             dict(zip(("potential_loss", "map_loss", "semi_dual"), logs)))
        if self.parametrization == "composed":
            self.chain.append(frozen_copy(self.map))
            self.chain_ema += [] if self.ema is None else [frozen_copy(self.ema)]
        self._old, self.n_phases = None, self.n_phases + 1
        self.history.append(result)
        return result

    def run(self, K: int, source, data, *, n_iters_first: int | None = None, tau_first: float | None = None,
            checkpoint: str | os.PathLike | None = None, progress: bool | None = None,
            on_phase: Callable | None = None) -> list[PhaseRecord]:  # fmt: skip
        r"""Run phases up to K in total (none if ``n_phases >= K``): the records of this call's phases.

        ``n_iters_first`` / ``tau_first`` set the very first phase (official ``init_num_iterations``,
        ``init_h``); ``on_phase(self)`` runs after every phase. With ``checkpoint``, the state is saved there
        after every phase (:meth:`save`) and a fresh trainer whose file exists first loads it (:meth:`load`),
        so re-running an interrupted call completes it.
        """
        K = check_int(K, "K")
        _v.check_callable(on_phase, "on_phase", optional=True)
        n_iters_first = None if n_iters_first is None else check_int(n_iters_first, "n_iters_first")
        tau_first = None if tau_first is None else check_positive(tau_first, "tau_first")
        if checkpoint is not None and self.n_phases == 0 and os.path.exists(checkpoint):
            self.load(checkpoint, max_phases=K)
        out = []
        while self.n_phases < K:
            first = self.n_phases == 0
            out.append(self.phase(source, data, n_iters=n_iters_first if first else None,
                                  tau=tau_first if first else None, progress=progress))  # fmt: skip
            if checkpoint is not None:
                self.save(checkpoint)
            if on_phase is not None:
                on_phase(self)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Save :meth:`state_dict` and the hyperparameters (:func:`gwf_tutorial.train.save_checkpoint`)."""
        save_checkpoint(path, self.state_dict(), kind=_KIND, config=_config(self, _CONFIG))

    def load(self, path: str | os.PathLike, *, max_phases: int | None = None) -> None:
        """Load a :meth:`save` file into this trainer (same networks and options); a ValueError names the file
        if it is damaged, of another kind, from other hyperparameters (listed) or networks, or holds more than
        ``max_phases`` phases."""

        def restore(state: dict) -> None:
            if max_phases is not None and int(state["n_phases"]) > max_phases:
                n = int(state["n_phases"])
                raise ValueError(f"checkpoint {os.fspath(path)!r} holds {n} phases, more than K={max_phases}")
            self._restore(state)

        self.trainer.load(path, kind=_KIND, config=_config(self, _CONFIG), restore=restore, what="trainer")

    def state_dict(self) -> dict:
        """What a resume at a phase boundary needs: the Trainer's state, the chain, the RNGs, the history."""
        initial = self.initial_map.state_dict() if isinstance(self.initial_map, nn.Module) else None
        return {"trainer": self.trainer.state_dict(), "chain": [m.state_dict() for m in self.chain],
                "chain_ema": [m.state_dict() for m in self.chain_ema], "initial_map": initial,
                "n_phases": self.n_phases, "noise_generator": self._noise_generator.get_state(),
                "history": [vars(r).copy() for r in self.history], "parametrization": self.parametrization}

    def _restore(self, state: dict) -> None:
        if state["initial_map"] is not None and isinstance(self.initial_map, nn.Module):
            self.initial_map.load_state_dict(state["initial_map"])
        self.chain = _load_copies(self.map, state["chain"])
        self.chain_ema = _load_copies(self.map, state["chain_ema"])
        self.n_phases, self._old = int(state["n_phases"]), None
        if self._noise_generator is not self.generator:
            self._noise_generator.set_state(state["noise_generator"])
        self.history = [PhaseRecord(**r) for r in state["history"]]


def toy_trainer(dim: int = 2, *, hidden: int = 64, noise_dim: int = 2, seed: int = 0,
                dtype: torch.dtype | None = torch.float64, device: str | torch.device | None = None,
                **options) -> SemiDualJKO:  # fmt: skip
    r"""S-JKO with the book's 2-D networks and settings: KL, :math:`\tau = 1`, :math:`T(x, z) = x + N(x, z)`.

    A :class:`LatentMap` over a :class:`~gwf_tutorial.nets.ResidualMLP` (width ``hidden``, 2 blocks, started
    at the identity), an MLP potential (width ``hidden``, depth 3), Adam 1e-3 for both with a cosine per
    phase, R1 0.2, 150 iterations of batch 256; initialised on the CPU, then moved to ``device``; ``options``
    override. Against the official toy command (``--h 1 --reg_name none``, 10 phases of 5000 iterations,
    128-wide nets): half its step (:math:`\tau = 1` is ``h = 0.5``), R1 kept (``r1=0`` follows it), 2% of its
    iterations.

    Used in: chapter 7 (two circles, 25 Gaussians), :func:`~gwf_tutorial.methods.sjko`.
    """
    dim, noise_dim = check_int(dim, "dim"), check_int(noise_dim, "noise_dim", min_value=0)
    seed = check_int(seed, "seed", min_value=0)
    torch.manual_seed(seed)
    map_net = LatentMap(ResidualMLP(dim, hidden, 2, in_dim=dim + noise_dim, zero_init_last=True, dtype=dtype))
    potential = MLP(dim, 1, hidden=hidden, depth=3, dtype=dtype)
    if device is not None:
        map_net, potential = map_net.to(device), potential.to(device)
    settings = dict(divergence="kl", tau=1.0, lr=1e-3, lr_critic=1e-3, noise_dim=noise_dim, n_iters=150,
                    batch_size=256, lr_schedule="cosine", seed=seed)  # fmt: skip
    return SemiDualJKO(map_net, potential, **{**settings, **options})


def affine_trainer(dim: int, tau: float, *, dtype: torch.dtype = torch.float64, **options) -> SemiDualJKO:
    r"""S-JKO over the exact family for Gaussians: affine maps :math:`T(x) = A x + b` and quadratic potentials
    (:class:`QuadraticPotential`), containing the exact KL step (:func:`gwf_tutorial.gaussian.jko_step_kl`).
    KL, Adam 0.05 with a cosine per phase, no R1, 600 iterations of batch 500, seed 0; ``options`` override.

    Used in: chapter 7 (one phase against the closed form; reparameterized vs composed).
    """
    dim = check_int(dim, "dim")
    settings = dict(divergence="kl", tau=tau, lr=0.05, lr_critic=0.05, r1=0.0, n_iters=600, batch_size=500,
                    lr_schedule="cosine", seed=0)  # fmt: skip
    affine, potential = AffineMap(dim, dtype=dtype), QuadraticPotential(dim, dtype=dtype)
    return SemiDualJKO(affine, potential, **{**settings, **options})
