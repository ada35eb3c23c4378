r"""The f-divergence catalogue: generator f, its derivatives, its convex conjugate, critics.

Direction and notation (the book's convention, as in the GWF paper): :math:`\rho` is the model,
:math:`\nu` the data, :math:`r = \rho / \nu` the density ratio, and

.. math::

    D_f(\rho \,\|\, \nu) = \mathbb E_\nu\big[f(r)\big]
    = \sup_h\ \mathbb E_\rho\, h - \mathbb E_\nu\, f^*(h),

with :math:`f` convex on :math:`[0, \infty)`, :math:`f(1) = 0`, and the supremum reached at the
optimal critic :math:`h^* = f'(r)`.  The first variation of :math:`D_f` is :math:`f'(r)` and the
Wasserstein velocity is

.. math::

    v = -\nabla f'(r) = r f''(r)\, \nabla \log(\nu/\rho),

so every divergence contributes one scalar *velocity factor* :math:`r f''(r)`.

Each :class:`FDivergence` carries

- ``f``, ``f_prime``, ``f_double_prime`` on :math:`t \ge 0` (``f`` is ``+inf`` for :math:`t < 0`,
  its convex extension; the derivatives are NaN there),
- ``conjugate`` :math:`f^*(s) = \sup_{t \ge 0} st - f(t)`, finite on :math:`s < s_{\max}`
  (``domain_upper``) and returned as ``+inf`` outside (the supremum is infinite there),
- ``output_activation``: a map from :math:`\mathbb R` onto the conjugate domain, put on the last
  layer of a critic as in f-GAN (Nowozin et al. 2016), so that :math:`f^*(h)` is always finite,
- ``ratio_from_critic`` :math:`= (f')^{-1}`, recovering :math:`r` from a trained critic.

Instances: :data:`KL`, :data:`KL_DV` (KL through the Donsker--Varadhan bound), :data:`REVERSE_KL`,
:data:`JS` (the ``2 JS`` convention, see below), :data:`PEARSON_CHI2`, :data:`SQUARED_HELLINGER`,
:data:`GAN`; look-up by name with :func:`get_fdivergence`.

**Naming: which KL is "reverse".** Every divergence here is :math:`D_f(\rho\,\|\,\nu)` with
:math:`\rho` the model (the flowing distribution) and :math:`\nu` the data, so ``"kl"`` is
:math:`\mathrm{KL}(\rho\|\nu)` and ``"reverse_kl"`` (:math:`f(t) = -\log t`) is
:math:`\mathrm{KL}(\nu\|\rho)`. The generative-modelling literature names
them the other way round from the data's point of view: :math:`\mathrm{KL}(\text{model}\|\text{data})`
= our ``"kl"`` is the "reverse KL", **mode seeking** (it does not pay for missing a mode),
while :math:`\mathrm{KL}(\text{data}\|\text{model})` = our ``"reverse_kl"`` is the maximum-likelihood
("forward") KL, **mass covering**: its velocity factor :math:`r f''(r) = 1/r` is large where the
model misses data mass (chapter 4's velocity figure).

References
----------
Nowozin, S., Cseke, B., Tomioka, R. (2016). f-GAN: training generative neural samplers using
variational divergence minimization. NeurIPS.
Nguyen, X., Wainwright, M. J., Jordan, M. I. (2010). Estimating divergence functionals and the
likelihood ratio by convex risk minimization. IEEE Trans. Inf. Theory.
Korba, A., Bonet, C., Caucheteux, P. (2026). A unifying view of variational generative Wasserstein
flows. arXiv:2605.31369.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gwf_tutorial._validation import as_tensor, check_finite

__all__ = [
    "FDivergence",
    "KL",
    "KL_DV",
    "REVERSE_KL",
    "JS",
    "PEARSON_CHI2",
    "SQUARED_HELLINGER",
    "GAN",
    "FDIVERGENCES",
    "get_fdivergence",
    "dv_bound",
    "variational_bound",
    "PSI_STAR",
    "PSI_F",
    "psi_star",
]

_LOG2 = math.log(2.0)
_INF = float("inf")


def _tensor(t, name: str) -> Tensor:
    t = as_tensor(t, name)
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN values")
    return t


def _on_domain(
    t: Tensor, ok: Tensor, fill: float, fn: Callable[[Tensor], Tensor], off: float = _INF
) -> Tensor:
    """``fn(t)`` where ``ok``, ``off`` elsewhere, without NaN gradients from the masked branch."""
    safe = torch.where(ok, t, torch.full_like(t, fill))
    return torch.where(ok, fn(safe), torch.full_like(t, off))


def _derivative(fn: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """A derivative of f on ``t >= 0``: NaN for ``t < 0`` (outside the domain of f)."""

    def wrapped(t: Tensor) -> Tensor:
        return _on_domain(t, t >= 0, 1.0, fn, off=float("nan"))

    return wrapped


# --- the generators f and their derivatives, each on t >= 0 (+inf for t < 0) ----------------


def _kl_f(t):
    return _on_domain(t, t >= 0, 1.0, lambda u: torch.xlogy(u, u))


@_derivative
def _kl_fp(u):
    return torch.log(u) + 1


@_derivative
def _kl_fpp(u):
    return 1 / u


def _kl_conj(s):
    return torch.exp(s - 1)


def _kl_inv(h):
    return torch.exp(h - 1)


def _rkl_f(t):
    return _on_domain(t, t > 0, 1.0, lambda u: -torch.log(u))


@_derivative
def _rkl_fp(u):
    return -1 / u


@_derivative
def _rkl_fpp(u):
    return u**-2


def _rkl_conj(s):
    return _on_domain(s, s < 0, -1.0, lambda u: -1 - torch.log(-u))


def _rkl_inv(h):
    return _on_domain(h, h < 0, -1.0, lambda u: -1 / u)


def _rkl_act(v):
    return -torch.exp(-v)


def _js_f(t):
    return _on_domain(
        t, t >= 0, 1.0, lambda u: torch.xlogy(u, u) - (1 + u) * torch.log((1 + u) / 2)
    )


@_derivative
def _js_fp(u):
    return torch.log(2 * u / (1 + u))


@_derivative
def _js_fpp(u):
    return 1 / (u * (1 + u))


def _js_conj(s):
    # -log(2 - e^s) = -log 2 - log1p(-e^{s - log 2})
    return _on_domain(s, s < _LOG2, 0.0, lambda u: -_LOG2 - torch.log1p(-torch.exp(u - _LOG2)))


def _js_inv(h):
    return _on_domain(h, h < _LOG2, 0.0, lambda u: torch.exp(u) / (2 - torch.exp(u)))


def _js_act(v):
    return _LOG2 - F.softplus(-v)


def _chi2_f(t):
    return _on_domain(t, t >= 0, 1.0, lambda u: (u - 1) ** 2)


@_derivative
def _chi2_fp(u):
    return 2 * (u - 1)


@_derivative
def _chi2_fpp(u):
    return 2 * torch.ones_like(u)


def _chi2_conj(s):
    # sup_{t >= 0} st - (t - 1)^2: interior optimum t = 1 + s/2 when s >= -2, else t = 0.
    return torch.where(s >= -2, s + s**2 / 4, -torch.ones_like(s))


def _chi2_inv(h):
    return torch.clamp(1 + h / 2, min=0.0)


def _hel_f(t):
    return _on_domain(t, t >= 0, 1.0, lambda u: (torch.sqrt(u) - 1) ** 2)


@_derivative
def _hel_fp(u):
    return 1 - u**-0.5


@_derivative
def _hel_fpp(u):
    return 0.5 * u**-1.5


def _hel_conj(s):
    return _on_domain(s, s < 1, 0.0, lambda u: u / (1 - u))


def _hel_inv(h):
    return _on_domain(h, h < 1, 0.0, lambda u: (1 - u) ** -2)


def _hel_act(v):
    return 1 - torch.exp(-v)


def _gan_f(t):
    return _on_domain(t, t >= 0, 1.0, lambda u: torch.xlogy(u, u) - (1 + u) * torch.log1p(u))


@_derivative
def _gan_fp(u):
    return torch.log(u / (1 + u))


def _gan_conj(s):
    # -log(1 - e^s) = -log(-expm1(s))
    return _on_domain(s, s < 0, -1.0, lambda u: -torch.log(-torch.expm1(u)))


def _gan_inv(h):
    return _on_domain(h, h < 0, -1.0, lambda u: torch.exp(u) / (-torch.expm1(u)))


def _gan_act(v):
    return -F.softplus(-v)


def _identity(v):
    return v


@dataclass(frozen=True)
class FDivergence:
    r"""An f-divergence :math:`D_f(\rho\|\nu) = \mathbb E_\nu f(\rho/\nu)` with its dual pieces.

    .. math::

        f^*(s) = \sup_{t \ge 0}\ st - f(t), \qquad
        D_f(\rho\|\nu) = \sup_h\ \mathbb E_\rho h - \mathbb E_\nu f^*(h), \qquad
        h^* = f'(r), \qquad v = r f''(r)\, \nabla \log(\nu / \rho).

    All callables act elementwise on tensors of any shape and keep the dtype.

    Parameters
    ----------
    name : str
        Registry name (``"kl"``, ``"js"``, ...).
    f, f_prime, f_double_prime : callable
        :math:`f, f', f''` on :math:`t \ge 0`; ``f`` is ``+inf`` and the derivatives NaN for
        :math:`t < 0`.
    conjugate_fn : callable
        :math:`f^*` on its domain :math:`s < s_{\max}` (may return NaN outside; call
        :meth:`conjugate`).
    domain_upper : float
        :math:`s_{\max}`: :math:`f^*(s) < \infty` iff :math:`s < s_{\max}` (``inf`` if no bound).
    f_prime_inverse : callable
        :math:`(f')^{-1}`, the density ratio from a critic value.
    activation : callable
        Map from :math:`\mathbb R` onto the conjugate domain (f-GAN output activation).
    description : str
        One line: which divergence, in which convention.
    dv : bool
        True for :data:`KL_DV`: the variational bound is Donsker--Varadhan's (:func:`dv_bound`)
        instead of :math:`\mathbb E_\rho h - \mathbb E_\nu f^*(h)`; the optimal critic is then
        :math:`f'(r)` up to an additive constant.

    Used in: chapter 4 (f-divergence flows from samples), 6, 7 (S-JKO), 11.

    References
    ----------
    Nowozin, S., Cseke, B., Tomioka, R. (2016). f-GAN. NeurIPS (Table of conjugates and output
    activations).
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

    def conjugate_activated(self, v) -> Tensor:
        r""":math:`f^*(g_f(v))` from a critic's raw output :math:`v`, in a numerically stable form.

        .. math::

            \text{GAN: } f^*(-\operatorname{softplus}(-v)) = \operatorname{softplus}(v), \qquad
            \text{JS: } f^*(\log 2 - \operatorname{softplus}(-v)) = \operatorname{softplus}(v) - \log 2.

        Composing :meth:`conjugate` with the output activation loses everything for a confident
        critic: for :math:`v \gtrsim 100` in float32, :math:`g_f(v)` rounds to its bound
        :math:`s_{\max}` and :math:`f^*` to :math:`+\infty` (a NaN gradient). Divergences with a
        closed form of the composition use it; the others compose.

        Parameters
        ----------
        v : Tensor, any shape

        Returns
        -------
        Tensor, shape of ``v``

        Used in: chapter 5 (GAN losses of the JKO loop with a confident discriminator).
        """
        return self._conjugate_activated(_tensor(v, "v"))

    def _conjugate_activated(self, v: Tensor) -> Tensor:
        """:meth:`conjugate_activated` without the NaN check (per-step calls of the training loops)."""
        if self.conjugate_of_activation is not None:
            return self.conjugate_of_activation(v)
        return self._conjugate(self.activation(v))

    def conjugate(self, s) -> Tensor:
        r"""Convex conjugate :math:`f^*(s) = \sup_{t \ge 0} st - f(t)`, ``+inf`` off its domain.

        .. math::

            f^*(s) = \sup_{t \ge 0}\ st - f(t) \quad (= +\infty \text{ for } s \ge s_{\max}).

        Parameters
        ----------
        s : Tensor, any shape
            Critic values.

        Returns
        -------
        Tensor, same shape as ``s``
            :math:`f^*(s)`; ``+inf`` where :math:`s \ge s_{\max}` (a critic should go through
            :meth:`output_activation` to stay in the domain). Gradients are finite on the domain.

        Used in: chapter 4 (variational bound), 7 (S-JKO semi-dual).
        """
        return self._conjugate(_tensor(s, "s"))

    def _conjugate(self, s: Tensor) -> Tensor:
        """:meth:`conjugate` without the NaN check (per-step calls of the training loops)."""
        if math.isinf(self.domain_upper):
            return self.conjugate_fn(s)
        return _on_domain(s, s < self.domain_upper, self.domain_upper - 1.0, self.conjugate_fn)

    def optimal_critic(self, r) -> Tensor:
        r"""The maximiser of the variational bound, :math:`h^* = f'(r)`.

        .. math::

            h^*(x) = f'\big(r(x)\big), \qquad r = \rho / \nu.

        Parameters
        ----------
        r : Tensor, any shape
            Density ratio values (``>= 0``).

        Returns
        -------
        Tensor, same shape
            :math:`f'(r)` (for :data:`KL_DV` any constant may be added).

        Used in: chapter 4 (critics as density ratios).
        """
        r = _tensor(r, "r")
        if bool((r < 0).any()):
            raise ValueError("r must be non-negative (a density ratio)")
        return self.f_prime(r)

    def velocity_factor(self, r) -> Tensor:
        r"""The scalar factor of the f-flow velocity, :math:`r f''(r)`.

        .. math::

            v = -\nabla f'(r) = r f''(r)\, \nabla \log(\nu/\rho).

        Parameters
        ----------
        r : Tensor, any shape
            Density ratio values (``> 0``).

        Returns
        -------
        Tensor, same shape
            :math:`r f''(r)` (KL: 1, reverse KL: :math:`1/r`, 2JS and GAN: :math:`1/(1+r)`,
            :math:`\chi^2`: :math:`2r`, squared Hellinger: :math:`1/(2\sqrt r)`).

        Used in: chapter 4 (particle f-flows: VGrow/EPT, MonoFlow, DGflow).
        """
        r = _tensor(r, "r")
        if bool((r <= 0).any()):
            raise ValueError("r must be positive (a density ratio)")
        return r * self.f_double_prime(r)

    def ratio_from_critic(self, h) -> Tensor:
        r"""Invert the optimal critic: :math:`r = (f')^{-1}(h)`.

        .. math::

            r = (f')^{-1}(h), \quad \text{e.g. KL: } r = e^{h - 1},\
            \chi^2: r = \max(1 + h/2, 0).

        Parameters
        ----------
        h : Tensor, any shape
            Critic values, inside the conjugate domain.

        Returns
        -------
        Tensor, same shape
            The density ratio; ``inf`` where :math:`h \ge s_{\max}`.

        Used in: chapter 4 (reading a density ratio off a trained critic).
        """
        return self.f_prime_inverse(_tensor(h, "h"))

    def output_activation(self, v) -> Tensor:
        r"""Map raw network outputs onto the conjugate domain (f-GAN output activation).

        .. math::

            \text{KL, }\chi^2: v; \quad \text{reverse KL: } -e^{-v}; \quad
            \text{2JS: } \log 2 - \mathrm{softplus}(-v); \quad
            \text{Hellinger: } 1 - e^{-v}; \quad \text{GAN: } -\mathrm{softplus}(-v).

        Parameters
        ----------
        v : Tensor, any shape
            Raw critic outputs.

        Returns
        -------
        Tensor, same shape
            Values in :math:`(-\infty, s_{\max})`.

        Used in: chapter 4 (critic networks, :class:`gwf_tutorial.critics.Critic`).

        References
        ----------
        Nowozin et al. (2016), f-GAN, Table 2.
        """
        if not isinstance(v, Tensor):
            raise TypeError(f"v must be a torch.Tensor, got {type(v).__name__}")
        return self.activation(v)


KL = FDivergence(
    "kl",
    _kl_f,
    _kl_fp,
    _kl_fpp,
    _kl_conj,
    _INF,
    _kl_inv,
    _identity,
    "KL(rho||nu), f(t) = t log t, f*(s) = exp(s - 1)",
)

KL_DV = FDivergence(
    "kl_dv",
    _kl_f,
    _kl_fp,
    _kl_fpp,
    _kl_conj,
    _INF,
    _kl_inv,
    _identity,
    "KL(rho||nu) through the Donsker-Varadhan bound E_rho h - log E_nu exp(h)",
    dv=True,
)

REVERSE_KL = FDivergence(
    "reverse_kl",
    _rkl_f,
    _rkl_fp,
    _rkl_fpp,
    _rkl_conj,
    0.0,
    _rkl_inv,
    _rkl_act,
    "KL(nu||rho), f(t) = -log t, f*(s) = -1 - log(-s) on s < 0",
)

JS = FDivergence(
    "js",
    _js_f,
    _js_fp,
    _js_fpp,
    _js_conj,
    _LOG2,
    _js_inv,
    _js_act,
    "2 JS(rho, nu) = KL(rho||m) + KL(nu||m), m = (rho + nu)/2; f(t) = t log t - (1 + t) "
    "log((1 + t)/2), f*(s) = -log(2 - exp(s)) on s < log 2",
    conjugate_of_activation=lambda v: F.softplus(v) - _LOG2,
)

PEARSON_CHI2 = FDivergence(
    "chi2",
    _chi2_f,
    _chi2_fp,
    _chi2_fpp,
    _chi2_conj,
    _INF,
    _chi2_inv,
    _identity,
    "Pearson chi^2(rho||nu), f(t) = (t - 1)^2, f*(s) = s + s^2/4 (s >= -2), -1 (s < -2)",
)

SQUARED_HELLINGER = FDivergence(
    "squared_hellinger",
    _hel_f,
    _hel_fp,
    _hel_fpp,
    _hel_conj,
    1.0,
    _hel_inv,
    _hel_act,
    "squared Hellinger, f(t) = (sqrt t - 1)^2, f*(s) = s/(1 - s) on s < 1",
)

GAN = FDivergence(
    "gan",
    _gan_f,
    _gan_fp,
    _js_fpp,  # f'' = 1/(t(1+t)) as for 2JS (the two f differ by an affine term)
    _gan_conj,
    0.0,
    _gan_inv,
    _gan_act,
    "GAN divergence 2 JS - log 4, f(t) = t log t - (1 + t) log(1 + t), f*(s) = -log(1 - exp(s)) "
    "on s < 0",
    conjugate_of_activation=F.softplus,
)

#: All divergences of the catalogue, by name.
FDIVERGENCES: dict[str, FDivergence] = {
    d.name: d for d in (KL, KL_DV, REVERSE_KL, JS, PEARSON_CHI2, SQUARED_HELLINGER, GAN)
}

_ALIASES = {
    "kl-dv": "kl_dv",
    "dv": "kl_dv",
    "rkl": "reverse_kl",
    "reverse-kl": "reverse_kl",
    "jsd": "js",
    "jensen_shannon": "js",
    "chi": "chi2",
    "pearson": "chi2",
    "pearson_chi2": "chi2",
    "hellinger": "squared_hellinger",
}


def get_fdivergence(name: str | FDivergence) -> FDivergence:
    r"""Look up an f-divergence by name (case-insensitive; an :class:`FDivergence` passes through).

    .. math::

        \text{name} \mapsto (f, f', f'', f^*, s_{\max}, (f')^{-1}).

    Parameters
    ----------
    name : str or FDivergence
        One of ``"kl"``, ``"kl_dv"``, ``"reverse_kl"``, ``"js"``, ``"chi2"``,
        ``"squared_hellinger"``, ``"gan"`` (aliases: ``"dv"``, ``"rkl"``, ``"jsd"``,
        ``"pearson"``, ``"hellinger"``, ...).

    Returns
    -------
    FDivergence

    Used in: chapters 4, 7, 11 (choosing a divergence by a string in configurations).
    """
    if isinstance(name, FDivergence):
        return name
    if not isinstance(name, str):
        raise TypeError(f"name must be a string or an FDivergence, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FDIVERGENCES:
        raise ValueError(f"unknown f-divergence {name!r}: name must be one of {sorted(FDIVERGENCES)}")
    return FDIVERGENCES[key]


# ---------------------------------------------------------------------------------------------
# The S-JKO conjugates Psi* and the generators f they are the conjugates of
# ---------------------------------------------------------------------------------------------


def _psi_star_kl(s: Tensor) -> Tensor:
    return torch.expm1(s)


def _psi_star_chi2(s: Tensor) -> Tensor:
    u = F.relu(s + 2.0) - 2.0  # = max(s, -2)
    return u + 0.25 * u * u


def _psi_star_js(s: Tensor) -> Tensor:
    return 2.0 * F.softplus(s) - 2.0 * math.log(2.0)


#: The conjugates :math:`\Psi^*(s)` used by S-JKO (official names in parentheses):
#:
#: - ``"kl"`` (kl): :math:`e^s - 1`, conjugate of the centred KL generator
#:   :math:`f(t) = t\log t - t + 1`; in terms of :data:`KL` (:math:`f = t\log
#:   t`, :math:`f^*(s) = e^{s-1}`) it is :math:`f^*(s + 1) - 1`. The generators differ by
#:   :math:`1 - t`, which integrates to 0 between probability measures, so :math:`D_\Psi =
#:   \mathrm{KL}` either way; the centred one makes the optimal potential
#:   :math:`v^* = -\log(\mathrm d\rho_{k+1}/\mathrm d\nu)` (no shift by 1);
#: - ``"chi2"`` (chi): :math:`s + s^2/4` for :math:`s \ge -2`, else :math:`-1`, conjugate of the
#:   Pearson generator :math:`f(t) = (t - 1)^2` on :math:`t \ge 0`
#:   (= :data:`PEARSON_CHI2` ``.conjugate``);
#: - ``"js"`` (softplus): :math:`2\,\mathrm{softplus}(s) - 2\log 2`, conjugate of
#:   :math:`f(t) = t\log t + (2 - t)\log(2 - t)` on :math:`[0, 2]`, i.e.
#:   :math:`D_\Psi(\mu\|\nu) = 2\,\mathrm{JS}(\mu, 2\nu - \mu)` (a Jensen--Shannon-type divergence
#:   whose density ratio is capped at 2).
#:
#: All three satisfy :math:`\Psi^*(0) = 0` and :math:`\Psi^{*\prime}(0) = 1`.
PSI_STAR: dict[str, Callable[[Tensor], Tensor]] = {
    "kl": _psi_star_kl,
    "chi2": _psi_star_chi2,
    "js": _psi_star_js,
}

#: The generators :math:`f` (of :math:`D_f(\mu\|\nu) = \int f(\mathrm d\mu / \mathrm d\nu)\,
#: \mathrm d\nu`) whose convex conjugates are :data:`PSI_STAR`; ``inf`` outside their domain.
PSI_F: dict[str, Callable[[Tensor], Tensor]] = {
    "kl": lambda t: torch.where(t >= 0, torch.special.xlogy(t, t) - t + 1, torch.full_like(t, math.inf)),
    "chi2": lambda t: torch.where(t >= 0, (t - 1) ** 2, torch.full_like(t, math.inf)),
    "js": lambda t: torch.where(
        (t >= 0) & (t <= 2),
        torch.special.xlogy(t, t) + torch.special.xlogy(2 - t, 2 - t),
        torch.full_like(t, math.inf),
    ),
}

_PSI_ALIASES = {"chi": "chi2", "softplus": "js"}


def psi_star(divergence: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    r"""Return the conjugate :math:`\Psi^*` of an S-JKO divergence, by name or as given.

    .. math::

        \Psi^*_{\mathrm{kl}}(s) = e^s - 1, \quad
        \Psi^*_{\chi^2}(s) = \begin{cases} s + s^2/4 & s \ge -2 \\ -1 & s < -2 \end{cases},
        \quad \Psi^*_{\mathrm{js}}(s) = 2\,\mathrm{softplus}(s) - 2\log 2.

    Parameters
    ----------
    divergence : str or callable
        ``"kl"``, ``"chi2"`` (alias ``"chi"``), ``"js"`` (alias ``"softplus"``, the official
        code's name), or a callable ``Tensor -> Tensor`` used as :math:`\Psi^*` (elementwise,
        convex, non-decreasing).

    Returns
    -------
    callable
        Elementwise map, shape preserving.

    Used in: chapter 7 (S-JKO losses).

    References
    ----------
    Choi et al. (2024), ``utils.select_phi`` of the official code; see :data:`PSI_STAR`.
    """
    if callable(divergence):
        return divergence
    if not isinstance(divergence, str):
        raise TypeError(f"divergence must be a name or a callable, got {type(divergence).__name__}")
    name = _PSI_ALIASES.get(divergence, divergence)
    if name not in PSI_STAR:
        raise ValueError(
            f"divergence must be one of {sorted(PSI_STAR) + sorted(_PSI_ALIASES)}, got {divergence!r}"
        )
    return PSI_STAR[name]



def _critic_values(h_x, h_y, *, check_nan: bool = True) -> tuple[Tensor, Tensor]:
    """Critic values as ``(n,)`` vectors. With ``check_nan`` (the public entry points): real floating
    dtypes only (integers cast, float16 / bfloat16 refused outside autocast), no NaN, infinite or
    overflowing entries (:func:`~gwf_tutorial._validation.check_finite`, one host synchronisation each).
    Without it (the training loops, at every step): shapes only."""
    out = []
    for t, nm in ((h_x, "h_x"), (h_y, "h_y")):
        if not isinstance(t, Tensor):
            raise TypeError(f"{nm} must be a torch.Tensor, got {type(t).__name__}")
        if t.numel() == 0:
            raise ValueError(f"{nm} must not be empty (shape (n,) with n >= 1), got {tuple(t.shape)}")
        if t.ndim == 2 and t.shape[1] != 1 or t.ndim > 2:
            raise ValueError(f"{nm} must have shape (n,) or (n, 1), got {tuple(t.shape)}")
        if check_nan:
            t = check_finite(as_tensor(t, nm), nm)
        out.append(t.reshape(-1))
    return out[0], out[1]


def _bound(fdiv: FDivergence, h_x: Tensor, h_y: Tensor, *, check_nan: bool = True) -> Tensor:
    """The variational (or DV) bound. The training loops call it with ``check_nan=False`` at every
    critic step: their samples are checked once at the entry points, and a NaN test is a device
    synchronisation."""
    h_x, h_y = _critic_values(h_x, h_y, check_nan=check_nan)
    if fdiv.dv:
        return h_x.mean() - (torch.logsumexp(h_y, dim=0) - math.log(h_y.numel()))
    return h_x.mean() - fdiv._conjugate(h_y).mean()


def dv_bound(h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Donsker--Varadhan lower bound on :math:`\mathrm{KL}(\rho\|\nu)` from critic values.

    .. math::

        \mathrm{KL}(\rho\|\nu) \ \ge\ \mathbb E_\rho h - \log \mathbb E_\nu e^{h}
        \ \ge\ \mathbb E_\rho h - \mathbb E_\nu e^{h - 1},

    with equality in the first at :math:`h = \log r + c` for any constant :math:`c`; the second
    inequality (:math:`\log u \le u/e`) holds for every :math:`h`.

    Parameters
    ----------
    h_x : Tensor, shape (n,) or (n, 1)
        Critic on model samples :math:`x \sim \rho`.
    h_y : Tensor, shape (m,) or (m, 1)
        Critic on data samples :math:`y \sim \nu`.

    Returns
    -------
    Tensor, shape ()
        The sample estimate (log-mean-exp computed stably).

    Used in: chapter 4 (KL critics, the GWF code's default ``KL-DV``).

    References
    ----------
    Donsker, M. D., Varadhan, S. R. S. (1983). Asymptotic evaluation of certain Markov process
    expectations for large time IV. Comm. Pure Appl. Math.
    Belghazi, M. I. et al. (2018). Mutual information neural estimation. ICML.
    """
    return _bound(KL_DV, h_x, h_y)


def variational_bound(fdiv: FDivergence | str, h_x: Tensor, h_y: Tensor) -> Tensor:
    r"""Variational lower bound on :math:`D_f(\rho\|\nu)` from critic values.

    .. math::

        D_f(\rho\|\nu) \ \ge\ \mathbb E_\rho h - \mathbb E_\nu f^*(h),

    tight at :math:`h = f'(r)`. For :data:`KL_DV` this is :func:`dv_bound` instead.

    Parameters
    ----------
    fdiv : FDivergence or str
        The divergence.
    h_x : Tensor, shape (n,) or (n, 1)
        Critic on model samples :math:`x \sim \rho`.
    h_y : Tensor, shape (m,) or (m, 1)
        Critic on data samples :math:`y \sim \nu`; values outside the conjugate domain give
        ``-inf``.

    Returns
    -------
    Tensor, shape ()
        The sample estimate of the bound.

    Used in: chapter 4 (critic training, f-divergence estimates), 7.

    References
    ----------
    Nguyen, Wainwright, Jordan (2010); Nowozin, Cseke, Tomioka (2016), f-GAN.
    """
    return _bound(get_fdivergence(fdiv), h_x, h_y)
