r"""The f-divergence catalogue: generator f, its derivatives, convex conjugate and f-GAN critic activation.

.. math::

    D_f(\rho \,\|\, \nu) = \mathbb E_\nu f(r) = \sup_h\ \mathbb E_\rho h - \mathbb E_\nu f^*(h), \quad
    h^* = f'(r), \quad v = -\nabla f'(r) = r f''(r)\, \nabla \log\frac{\nu}{\rho}, \quad r = \frac{\rho}{\nu},

with :math:`\rho` the model, :math:`\nu` the data and :math:`f^*(s) = \sup_{t \ge 0} st - f(t)`, finite on
:math:`s < s_{\max}` (``domain_upper``). So ``"kl"`` is :math:`\mathrm{KL}(\rho\|\nu)`, mode seeking (the
literature's "reverse KL"), and ``"reverse_kl"`` is :math:`\mathrm{KL}(\nu\|\rho)`, maximum likelihood and
mass covering. Instances: :data:`KL`, :data:`KL_DV` (Donsker--Varadhan bound), :data:`REVERSE_KL`,
:data:`JS` (:math:`2\,\mathrm{JS}`), :data:`PEARSON_CHI2`, :data:`SQUARED_HELLINGER`, :data:`GAN`, by name
with :func:`get_fdivergence`; the S-JKO conjugates :data:`PSI_STAR`. Critic values ``h_x`` (on model
samples) and ``h_y`` (on data) have shape ``(n,)`` or ``(n, 1)``.

Used in: chapters 4, 5, 7 and 11.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from gwf_tutorial._validation import as_tensor, check_finite

__all__ = ["FDivergence", "KL", "KL_DV", "REVERSE_KL", "JS", "PEARSON_CHI2", "SQUARED_HELLINGER", "GAN",
           "FDIVERGENCES", "get_fdivergence", "dv_bound", "variational_bound", "PSI_STAR", "PSI_F",
           "psi_star"]  # fmt: skip

_LOG2, _INF = math.log(2.0), float("inf")


def _tensor(t, name: str) -> Tensor:
    t = as_tensor(t, name)
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN values")
    return t


def _on_domain(t: Tensor, ok: Tensor, fill: float, fn: Callable[[Tensor], Tensor],
               off: float = _INF) -> Tensor:  # fmt: skip
    """``fn(t)`` where ``ok``, ``off`` elsewhere, without NaN gradients from the masked branch."""
    return torch.where(ok, fn(torch.where(ok, t, torch.full_like(t, fill))), torch.full_like(t, off))


def _f(fn: Callable[[Tensor], Tensor], strict: bool = False) -> Callable[[Tensor], Tensor]:
    """A generator f: ``fn`` on ``t >= 0`` (``t > 0`` if ``strict``), ``+inf`` elsewhere."""
    return lambda t: _on_domain(t, t > 0 if strict else t >= 0, 1.0, fn)


def _derivative(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """A derivative of f on ``t >= 0``: NaN for ``t < 0`` (outside the domain of f)."""
    return lambda t: _on_domain(t, t >= 0, 1.0, fn, off=float("nan"))


def _below(upper: float, fill: float, fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``fn`` on ``s < upper`` (the conjugate domain), ``+inf`` elsewhere."""
    return lambda s: _on_domain(s, s < upper, fill, fn)


@dataclass(frozen=True)
class FDivergence:
    r"""An f-divergence :math:`D_f(\rho\|\nu) = \mathbb E_\nu f(\rho/\nu)` with the dual pieces of the module
    docstring, callables acting elementwise on tensors of any shape (dtype kept): ``f``, ``f_prime``,
    ``f_double_prime`` (:math:`f, f', f''` on :math:`t \ge 0`; ``f`` is ``+inf`` and the derivatives NaN
    for :math:`t < 0`), ``conjugate_fn`` (:math:`f^*` on :math:`s < s_{\max}` = ``domain_upper``; call
    :meth:`conjugate`), ``f_prime_inverse`` (:math:`(f')^{-1}`, the density ratio from a critic value),
    ``activation`` (from :math:`\mathbb R` onto the conjugate domain, f-GAN's output activation), ``dv``
    (True for :data:`KL_DV`: the bound is Donsker--Varadhan's, :func:`dv_bound`) and the optional
    ``conjugate_of_activation`` (a stable :math:`f^* \circ` ``activation``).

    Used in: :func:`~gwf_tutorial.fdiv.get_fdivergence`, :func:`~gwf_tutorial.fflows.get_velocity_factor`.
    """

    name: str
    f: Callable[[Tensor], Tensor]
    f_prime: Callable[[Tensor], Tensor]
    f_double_prime: Callable[[Tensor], Tensor]
    conjugate_fn: Callable[[Tensor], Tensor]
    domain_upper: float
    f_prime_inverse: Callable[[Tensor], Tensor]
    activation: Callable[[Tensor], Tensor]
    description: str = ""
    dv: bool = False
    conjugate_of_activation: Callable[[Tensor], Tensor] | None = None

    def __repr__(self) -> str:
        return f"FDivergence({self.name!r})"

    def _conjugate_activated(self, v: Tensor) -> Tensor:
        r""":math:`f^*(g_f(v))` of raw critic outputs ``v``, by ``conjugate_of_activation`` where given (the
        plain composition rounds :math:`g_f(v)` to :math:`s_{\max}` for a confident critic: ``inf``)."""
        if self.conjugate_of_activation is not None:
            return self.conjugate_of_activation(v)
        return self._conjugate(self.activation(v))

    def conjugate(self, s) -> Tensor:
        r"""Convex conjugate :math:`f^*(s) = \sup_{t \ge 0} st - f(t)`, ``+inf`` for :math:`s \ge s_{\max}`,
        shape of ``s``; gradients are finite on the domain."""
        return self._conjugate(_tensor(s, "s"))

    def _conjugate(self, s: Tensor) -> Tensor:  # without the NaN check (per-step calls of the training loops)
        if math.isinf(self.domain_upper):
            return self.conjugate_fn(s)
        return _on_domain(s, s < self.domain_upper, self.domain_upper - 1.0, self.conjugate_fn)

    def optimal_critic(self, r) -> Tensor:
        r"""The maximiser :math:`h^* = f'(r)` of the variational bound at density ratios ``r >= 0``."""
        r = _tensor(r, "r")
        if bool((r < 0).any()):
            raise ValueError("r must be non-negative (a density ratio)")
        return self.f_prime(r)

    def velocity_factor(self, r) -> Tensor:
        r"""The factor :math:`r f''(r)` of the f-flow velocity :math:`v = r f''(r)\,\nabla\log(\nu/\rho)`:
        KL 1, reverse KL :math:`1/r`, 2JS and GAN :math:`1/(1+r)`, :math:`\chi^2` :math:`2r`, squared
        Hellinger :math:`1/(2\sqrt r)`."""
        r = _tensor(r, "r")
        if bool((r <= 0).any()):
            raise ValueError("r must be positive (a density ratio)")
        return r * self.f_double_prime(r)

    def ratio_from_critic(self, h) -> Tensor:
        r"""The density ratio :math:`(f')^{-1}(h)` of critic values (``inf`` if :math:`h \ge s_{\max}`)."""
        return self.f_prime_inverse(_tensor(h, "h"))

    def output_activation(self, v) -> Tensor:
        r"""Map raw critic outputs onto the conjugate domain :math:`(-\infty, s_{\max})` (f-GAN): KL and
        :math:`\chi^2` :math:`v`, reverse KL :math:`-e^{-v}`, 2JS :math:`\log 2 - \mathrm{softplus}(-v)`,
        Hellinger :math:`1 - e^{-v}`, GAN :math:`-\mathrm{softplus}(-v)`."""
        if not isinstance(v, Tensor):
            raise TypeError(f"v must be a torch.Tensor, got {type(v).__name__}")
        return self.activation(v)


def _js_fpp(u):
    return 1 / (u * (1 + u))


KL = FDivergence(
    "kl", _f(lambda u: torch.xlogy(u, u)), _derivative(lambda u: torch.log(u) + 1),
    _derivative(lambda u: 1 / u), lambda s: torch.exp(s - 1), _INF, lambda h: torch.exp(h - 1), lambda v: v,
    "KL(rho||nu), f(t) = t log t, f*(s) = exp(s - 1)")  # fmt: skip
KL_DV = replace(KL, name="kl_dv", dv=True,
                description="KL(rho||nu) through the Donsker-Varadhan bound E_rho h - log E_nu exp(h)")
REVERSE_KL = FDivergence(
    "reverse_kl", _f(lambda u: -torch.log(u), strict=True), _derivative(lambda u: -1 / u),
    _derivative(lambda u: u**-2), _below(0.0, -1.0, lambda u: -1 - torch.log(-u)), 0.0,
    _below(0.0, -1.0, lambda u: -1 / u), lambda v: -torch.exp(-v),
    "KL(nu||rho), f(t) = -log t, f*(s) = -1 - log(-s) on s < 0")  # fmt: skip
JS = FDivergence(
    "js", _f(lambda u: torch.xlogy(u, u) - (1 + u) * torch.log((1 + u) / 2)),
    _derivative(lambda u: torch.log(2 * u / (1 + u))), _derivative(_js_fpp),
    _below(_LOG2, 0.0, lambda u: -_LOG2 - torch.log1p(-torch.exp(u - _LOG2))),  # -log(2 - e^s)
    _LOG2, _below(_LOG2, 0.0, lambda u: torch.exp(u) / (2 - torch.exp(u))), lambda v: _LOG2 - F.softplus(-v),
    "2 JS(rho, nu) = KL(rho||m) + KL(nu||m), m = (rho + nu)/2; f(t) = t log t - (1 + t) "
    "log((1 + t)/2), f*(s) = -log(2 - exp(s)) on s < log 2",
    conjugate_of_activation=lambda v: F.softplus(v) - _LOG2)  # fmt: skip
PEARSON_CHI2 = FDivergence(
    "chi2", _f(lambda u: (u - 1) ** 2), _derivative(lambda u: 2 * (u - 1)),
    _derivative(lambda u: 2 * torch.ones_like(u)),
    lambda s: torch.where(s >= -2, s + s**2 / 4, -torch.ones_like(s)),  # optimum t = max(1 + s/2, 0)
    _INF, lambda h: torch.clamp(1 + h / 2, min=0.0), lambda v: v,
    "Pearson chi^2(rho||nu), f(t) = (t - 1)^2, f*(s) = s + s^2/4 (s >= -2), -1 (s < -2)")  # fmt: skip
SQUARED_HELLINGER = FDivergence(
    "squared_hellinger", _f(lambda u: (torch.sqrt(u) - 1) ** 2), _derivative(lambda u: 1 - u**-0.5),
    _derivative(lambda u: 0.5 * u**-1.5), _below(1.0, 0.0, lambda u: u / (1 - u)), 1.0,
    _below(1.0, 0.0, lambda u: (1 - u) ** -2), lambda v: 1 - torch.exp(-v),
    "squared Hellinger, f(t) = (sqrt t - 1)^2, f*(s) = s/(1 - s) on s < 1")  # fmt: skip
GAN = FDivergence(
    "gan", _f(lambda u: torch.xlogy(u, u) - (1 + u) * torch.log1p(u)),
    _derivative(lambda u: torch.log(u / (1 + u))),
    _derivative(_js_fpp),  # f'' = 1/(t(1+t)) as for 2JS (the two f differ by an affine term)
    _below(0.0, -1.0, lambda u: -torch.log(-torch.expm1(u))), 0.0,  # -log(1 - e^s)
    _below(0.0, -1.0, lambda u: torch.exp(u) / (-torch.expm1(u))), lambda v: -F.softplus(-v),
    "GAN divergence 2 JS - log 4, f(t) = t log t - (1 + t) log(1 + t), f*(s) = -log(1 - exp(s)) on s < 0",
    conjugate_of_activation=F.softplus)  # fmt: skip

#: All divergences of the catalogue, by name.
FDIVERGENCES: dict[str, FDivergence] = {d.name: d for d in (KL, KL_DV, REVERSE_KL, JS, PEARSON_CHI2,
                                                              SQUARED_HELLINGER, GAN)}  # fmt: skip


def get_fdivergence(name: str | FDivergence) -> FDivergence:
    """An f-divergence of :data:`FDIVERGENCES` by name (case-insensitive); an :class:`FDivergence` as is.

    Used in: chapters 4 and 5.
    """
    if isinstance(name, FDivergence):
        return name
    if not isinstance(name, str):
        raise TypeError(f"name must be a string or an FDivergence, got {type(name).__name__}")
    key = name.strip().lower()
    if key not in FDIVERGENCES:
        raise ValueError(f"unknown f-divergence {name!r}: name must be one of {sorted(FDIVERGENCES)}")
    return FDIVERGENCES[key]


def _psi_star_chi2(s: Tensor) -> Tensor:
    u = F.relu(s + 2.0) - 2.0  # = max(s, -2)
    return u + 0.25 * u * u


#: The conjugates :math:`\Psi^*` of S-JKO (official names in parentheses), all with :math:`\Psi^*(0) = 0`,
#: :math:`\Psi^{*\prime}(0) = 1`: ``"kl"`` (kl) :math:`e^s - 1`, of the centred KL generator
#: :math:`t\log t - t + 1` (the divergence :data:`KL`, optimal potential :math:`-\log(\rho_{k+1}/\nu)`);
#: ``"chi2"`` (chi) :math:`s + s^2/4` for :math:`s \ge -2`, else :math:`-1` (the conjugate
#: of :data:`PEARSON_CHI2`); ``"softplus"`` (softplus) :math:`2\,\mathrm{softplus}(s) - 2\log 2`, of
#: :math:`t\log t + (2 - t)\log(2 - t)` on :math:`[0, 2]`, i.e. :math:`D_\Psi(\mu\|\nu) = 2\,\mathrm{JS}(\mu,
#: 2\nu - \mu)`, infinite where :math:`\mathrm d\mu/\mathrm d\nu > 2`: not the Jensen--Shannon divergence.
PSI_STAR: dict[str, Callable[[Tensor], Tensor]] = {
    "kl": torch.expm1, "chi2": _psi_star_chi2,
    "softplus": lambda s: 2.0 * F.softplus(s) - 2.0 * math.log(2.0)}

#: The generators :math:`f` whose convex conjugates are :data:`PSI_STAR`; ``inf`` outside their domain.
PSI_F: dict[str, Callable[[Tensor], Tensor]] = {
    "kl": _f(lambda t: torch.xlogy(t, t) - t + 1),
    "chi2": _f(lambda t: (t - 1) ** 2),
    "softplus": lambda t: _on_domain(t, (t >= 0) & (t <= 2), 1.0,
                                     lambda u: torch.xlogy(u, u) + torch.xlogy(2 - u, 2 - u)),
}  # fmt: skip


def psi_star(divergence: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    r"""The conjugate :math:`\Psi^*` of an S-JKO divergence: a name of :data:`PSI_STAR` or a callable
    (elementwise, convex, non-decreasing) as is.

    Used in: :mod:`gwf_tutorial.sjko`.
    """
    if callable(divergence):
        return divergence
    if not isinstance(divergence, str):
        raise TypeError(f"divergence must be a name or a callable, got {type(divergence).__name__}")
    if divergence not in PSI_STAR:
        raise ValueError(f"divergence must be one of {sorted(PSI_STAR)}, got {divergence!r}")
    return PSI_STAR[divergence]


def _critic_values(h_x, h_y, *, check_nan: bool = True) -> tuple[Tensor, Tensor]:
    """Critic values as ``(n,)`` vectors. With ``check_nan`` (the public entry points): real floating
    dtypes only, no NaN, infinite or overflowing entries (one host synchronisation each); without it (the
    training loops, at every step): shapes only."""
    out = []
    for t, nm in ((h_x, "h_x"), (h_y, "h_y")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(t).__name__}")
        if t.numel() == 0:
            raise ValueError(f"{nm} must not be empty (shape (n,) with n >= 1), got {tuple(t.shape)}")
        if t.ndim == 2 and t.shape[1] != 1 or t.ndim > 2:
            raise ValueError(f"{nm} must have shape (n,) or (n, 1), got {tuple(t.shape)}")
        t = check_finite(as_tensor(t, nm), nm) if check_nan else t
        out.append(t.reshape(-1))
    return out[0], out[1]


def _bound(fdiv: FDivergence, h_x: Tensor, h_y: Tensor, *, check_nan: bool = True) -> Tensor:
    """The variational (or DV) bound; the training loops call it with ``check_nan=False`` at every step."""
    h_x, h_y = _critic_values(h_x, h_y, check_nan=check_nan)
    if fdiv.dv:
        return h_x.mean() - (torch.logsumexp(h_y, dim=0) - math.log(h_y.numel()))
    return h_x.mean() - fdiv._conjugate(h_y).mean()


def dv_bound(h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Donsker--Varadhan lower bound on :math:`\mathrm{KL}(\rho\|\nu)` from critic values, shape ``()``:
    :math:`\mathrm{KL}(\rho\|\nu) \ge \mathbb E_\rho h - \log \mathbb E_\nu e^{h} \ge \mathbb E_\rho h -
    \mathbb E_\nu e^{h - 1}`, with equality in the first at :math:`h = \log r + c` for any constant :math:`c`.

    Used in: chapter 4.
    """
    return _bound(KL_DV, h_x, h_y)


def variational_bound(fdiv: FDivergence | str, h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Variational lower bound :math:`D_f(\rho\|\nu) \ge \mathbb E_\rho h - \mathbb E_\nu f^*(h)` from critic
    values, shape ``()``, tight at :math:`h = f'(r)`; ``-inf`` if ``h_y`` leaves the conjugate domain;
    :func:`dv_bound` for :data:`KL_DV`.

    Used in: chapter 4.
    """
    return _bound(get_fdivergence(fdiv), h_x, h_y)
