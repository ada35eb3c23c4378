"""Input checks shared by the whole library: bad input fails early with a ``ValueError`` / ``TypeError``
that names the argument and says what was expected, once, at the public entry points.

Samples and parameters are float32 or float64: integer arrays are cast to torch's default dtype, float16 /
bfloat16 refused outside ``torch.autocast``; values whose squares overflow (above :func:`max_abs`) are
refused; a seed is a non-negative ``int``, never a float or a bool.

Used in: the public entry points of every module.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import torch
from torch import Tensor

__all__ = ["FlowDivergedError", "as_tensor", "check_samples", "check_same_dim", "check_positive",
           "check_nonnegative", "check_int", "check_finite", "check_spd", "check_mean_cov", "check_betas",
           "check_seed", "check_dtype_like", "check_callable", "check_choice", "check_bool", "check_interval",
           "max_abs", "check_device", "check_generator", "check_dtype", "check_weights"]  # fmt: skip

_LOW_PRECISION = (torch.float16, torch.bfloat16)


class FlowDivergedError(ValueError):
    """Raised when an explicit flow's iterates become non-finite or blow up; the message names the step and
    the step size (stable below about ``2 / L``, ``L`` the velocity's Lipschitz constant).

    Used in: chapter 4 (imported from :mod:`gwf_tutorial.flows`).
    """


def _autocast(t: Tensor) -> bool:
    return torch.is_autocast_enabled(t.device.type)


def max_abs(dtype: torch.dtype) -> float:
    """Largest magnitude accepted in a floating tensor of ``dtype``: ``sqrt(finfo.max) / 100`` (squared
    distances, summed over dimensions and samples, stay finite)."""
    return math.sqrt(torch.finfo(dtype).max) / 100.0


def as_tensor(value, name: str, *, dtype: torch.dtype | None = None) -> Tensor:
    """Convert ``value`` (tensor, array, list, number) to a floating tensor or raise ``TypeError``; a
    non-tensor converts straight to ``dtype`` (python floats are not rounded through float32)."""
    t = value
    if not isinstance(value, Tensor):
        try:
            t = torch.as_tensor(value, dtype=dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            got = type(value).__name__
            raise TypeError(f"{name} must be a tensor or array-like of numbers, got {got}") from err
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must hold real floating-point numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    elif t.dtype in _LOW_PRECISION and not _autocast(t):
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}: low precision is not supported "
                        f"here (cast with {name}.float())")  # fmt: skip
    return t if dtype is None else t.to(dtype)


def check_finite(t: Tensor, name: str) -> Tensor:
    """Raise ``ValueError`` if ``t`` holds NaN, infinite entries or (floating ``t``) entries beyond
    :func:`max_abs`; one host synchronisation."""
    if t.numel() == 0:
        return t
    if not t.is_floating_point():
        if t.is_complex() or not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        return t
    m = float(t.detach().abs().amax())  # NaN if any entry is NaN
    if not math.isfinite(m):
        raise ValueError(f"{name} contains NaN or infinite values")
    limit = max_abs(t.dtype)
    if m > limit:
        hint = "rescale it" if t.dtype == torch.float64 else "rescale it or use float64"
        raise ValueError(f"{name} holds values up to {m:.3g}, too large for {t.dtype} (squares overflow "
                         f"beyond about {limit:.3g}); {hint}")  # fmt: skip
    return t


def check_weights(w, n: int, name: str = "weights", *, dtype: torch.dtype = torch.float64,
                  device=None) -> Tensor:  # fmt: skip
    """Probability weights ``(n,)`` in ``dtype`` on ``device``: non-negative, finite, with a positive sum,
    normalised to sum 1 (uniform if None)."""
    if w is None:
        return torch.full((n,), 1.0 / n, dtype=dtype, device=device)
    w = check_finite(as_tensor(w, name), name).to(dtype=dtype, device=device)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(w.shape)}")
    if bool((w < 0).any()):
        raise ValueError(f"{name} must be non-negative")
    total = w.sum()
    if not float(total) > 0:
        raise ValueError(f"{name} must have a positive sum")
    return w / total


def check_samples(x, name: str = "x", *, dim: int | None = None, min_n: int = 1) -> Tensor:
    """A sample matrix ``(n, d)`` (from array-likes too): floating, finite, ``n >= min_n``, ``d == dim``."""
    x = as_tensor(x, name)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got shape {tuple(x.shape)}")
    if x.shape[0] < min_n:
        raise ValueError(f"{name} must hold at least {min_n} sample(s), got {x.shape[0]}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one dimension, got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns (dimension d={dim}), got {x.shape[1]}")
    return check_finite(x, name)


def check_same_dim(x: Tensor, y: Tensor, name_x: str = "x", name_y: str = "y", *,
                   same_dtype: bool = True) -> None:  # fmt: skip
    """Raise unless ``x`` and ``y`` have the same last dimension, device and (``same_dtype``) dtype."""
    if x.shape[-1] != y.shape[-1]:
        got = f"{x.shape[-1]} and {y.shape[-1]}"
        raise ValueError(f"{name_x} and {name_y} must have the same dimension d, got {got}")
    if x.device != y.device:
        raise ValueError(f"{name_x} and {name_y} must be on the same device, got {x.device} and {y.device}")
    if same_dtype and x.dtype != y.dtype:
        raise TypeError(f"{name_x} and {name_y} must have the same dtype, got {x.dtype} and {y.dtype}")


def _check_real(value, name: str) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got NaN")
    return value


def check_positive(value, name: str, *, allow_inf: bool = False) -> float:
    """Return ``float(value)`` if it is a real number ``> 0`` (finite unless ``allow_inf``)."""
    v = _check_real(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be positive, got {v}")
    if math.isinf(v) and not allow_inf:
        raise ValueError(f"{name} must be finite, got {v}")
    return v


def check_nonnegative(value, name: str) -> float:
    """Return ``float(value)`` if it is a finite real number ``>= 0``."""
    v = _check_real(value, name)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    return v


def check_interval(value, name: str, low: float = 0.0, high: float = 1.0, *, closed: str = "") -> float:
    """``float(value)`` if it lies between ``low`` and ``high`` (default the open unit interval); ``closed``
    names the ends included: ``"left"``, ``"right"`` or ``"both"``."""
    v = _check_real(value, name)
    left, right = closed in ("left", "both"), closed in ("right", "both")
    if not ((v >= low if left else v > low) and (v <= high if right else v < high)):
        interval = f"{'[' if left else '('}{low:g}, {high:g}{']' if right else ')'}"
        raise ValueError(f"{name} must be in {interval}, got {v}")
    return v


def check_int(value, name: str, *, min_value: int = 1) -> int:
    """Return ``int(value)`` if it is an integer ``>= min_value``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not isinstance(value, int | torch.SymInt):
        if not (isinstance(value, Real) and float(value).is_integer()):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    if value < min_value:
        raise ValueError(f"{name} must be an integer >= {min_value}, got {value}")
    return int(value)


def check_seed(seed, name: str = "seed") -> int:
    """``seed`` as an ``int`` if it is a non-negative integer; floats (even ``2.0``) and bools are refused."""
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"{name} must be a non-negative integer, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed}")
    return int(seed)


def check_dtype_like(x: Tensor, like: Tensor, name: str, what: str = "the network's parameters") -> None:
    """Raise ``TypeError`` unless ``x`` has the dtype of ``like`` (e.g. a network's weights); no check
    under ``torch.autocast``, which casts by itself. No host synchronisation."""
    if x.dtype != like.dtype and not _autocast(x):
        raise TypeError(f"{name} must have dtype {like.dtype} (the dtype of {what}), got {x.dtype}; "
                        f"cast it with {name}.to({like.dtype})")  # fmt: skip


def check_spd(S, name: str, *, dim: int | None = None, semidefinite: bool = False) -> Tensor:
    """A symmetric positive definite (``semidefinite``: PSD up to round-off) matrix ``(..., d, d)``."""
    S = as_tensor(S, name)
    if S.ndim < 2 or S.shape[-1] != S.shape[-2]:
        raise ValueError(f"{name} must be a square matrix of shape (..., d, d), got {tuple(S.shape)}")
    if dim is not None and S.shape[-1] != dim:
        raise ValueError(f"{name} must be {dim}x{dim}, got {tuple(S.shape[-2:])}")
    if S.numel() == 0:
        return S
    check_finite(S, name)
    D = S.detach()
    tol = 1e-6 if S.dtype == torch.float64 else 1e-4
    if not bool(torch.allclose(D, D.mT, atol=tol * float(D.abs().amax().clamp_min(1.0)))):
        raise ValueError(f"{name} must be symmetric")
    eig = torch.linalg.eigvalsh(D)
    floor = (1e-10 if S.dtype == torch.float64 else 1e-5) * float(eig.abs().amax().clamp_min(1.0))
    if not bool((eig >= -floor).all() if semidefinite else (eig > 0).all()):
        kind = "semi-definite" if semidefinite else "definite"
        raise ValueError(f"{name} must be positive {kind}, got smallest eigenvalue {eig.min().item():.3g}")
    return S


def check_mean_cov(mean, cov, name_mean: str = "mean", name_cov: str = "cov", *,
                   semidefinite: bool = False) -> tuple[Tensor, Tensor]:
    """A Gaussian's mean ``(..., d)`` and SPD (``semidefinite``: PSD) covariance, in one dtype."""
    mean = check_finite(as_tensor(mean, name_mean), name_mean)
    if mean.ndim < 1:
        raise ValueError(f"{name_mean} must have shape (..., d), got a scalar")
    cov = check_spd(cov, name_cov, dim=mean.shape[-1], semidefinite=semidefinite)
    dtype = torch.promote_types(mean.dtype, cov.dtype)
    return mean.to(dtype), cov.to(dtype)


def check_betas(betas, name: str = "betas") -> tuple[float, float]:
    """Adam's ``(beta1, beta2)``: two numbers in ``[0, 1)``, returned as floats."""
    ok = isinstance(betas, tuple | list) and len(betas) == 2
    if not (ok and all(isinstance(b, Real) and not isinstance(b, bool) and 0 <= b < 1 for b in betas)):
        raise ValueError(f"{name} must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])


def check_callable(value, name: str, *, optional: bool = False) -> None:
    """Raise ``TypeError`` unless ``value`` is callable (or None, when ``optional``)."""
    if not (callable(value) or (optional and value is None)):
        what = "callable or None" if optional else "callable"
        raise TypeError(f"{name} must be {what}, got {type(value).__name__}")


def check_choice(value, name: str, choices) -> str:
    """``value`` if it is one of ``choices`` (a string key), else ``ValueError`` listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_bool(value, name: str) -> bool:
    """``value`` if it is a ``bool`` (not 0/1 or a tensor), else ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_device(name, what: str = "device") -> torch.device:
    """``name`` as a ``torch.device`` if it is ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` and exists here."""
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {name!r} needs a CUDA GPU, but torch finds none; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{what} {name!r}: there are only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def check_generator(generator, name: str = "generator"):
    """``generator`` if it is a ``torch.Generator`` or None, else ``TypeError``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def check_dtype(dtype, name: str = "dtype") -> torch.dtype:
    """``dtype`` if it is a floating ``torch.dtype``, else ``TypeError``."""
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"{name} must be a floating torch.dtype, got {dtype!r}")
    return dtype
