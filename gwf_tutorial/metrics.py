r"""Sample-based quality metrics and the finite-sample floor. Distances between ``x`` ``(n, d)`` and ``y``
``(m, d)`` return 0-d tensors of the dtype of ``x``, differentiable in both; ``weights_x``, ``weights_y``
(``(n,)``, ``(m,)``, uniform when None) are normalised to sum 1. The ground cost is :math:`|x - y|^2` (no
factor 1/2), the entropic term :math:`\varepsilon\,\mathrm{KL}(\pi\,\|\,\alpha\otimes\beta)`; solvers are
POT's. ``target`` is a :class:`~gwf_tutorial.targets.Target` or a registry name; ``metric`` is ``"w2"``,
``"energy"``, ``"mmd"``, ``"sliced_w2"`` or a callable ``(x, y) -> scalar``. :func:`floor` is the metric
between two independent target samples of the same size; :func:`score_vs_floor` divides a method's metric by
it.

Used in: chapters 1, 3-9 and 11.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import ot
import torch
from torch import Tensor

from gwf_tutorial._validation import (
    as_tensor,
    check_finite,
    check_generator,
    check_int,
    check_interval,
    check_positive,
    check_samples,
    check_seed,
    check_weights,
)
from gwf_tutorial.functionals import mmd2_estimate
from gwf_tutorial.kernels import check_pair as _pair
from gwf_tutorial.kernels import get_kernel, squared_distances
from gwf_tutorial.nets import ConvCritic
from gwf_tutorial.targets import get_target
from gwf_tutorial.train import progress as _progress

__all__ = ["w2_squared", "sinkhorn_divergence", "mmd2", "energy_distance", "sliced_w2", "ModeCoverage",
           "mode_coverage", "mixture_scores", "Floor", "floor", "ScoreVsFloor", "score_vs_floor",
           "frechet_distance", "kernel_distance", "StandInFeatures"]  # fmt: skip

# Rows per block when averaging a kernel matrix (keeps the (n, m) matrix out of memory at once).
_BLOCK_ROWS = 1024
# Smallest Sinkhorn tolerance, in machine epsilons of the dtype (float32 marginals stall near 1e-8).
_TOL_FLOOR_EPS = 10.0


def _measures(x, y, weights_x, weights_y) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Checked samples and their normalised weights."""
    x, y = _pair(x, y)
    a = check_weights(weights_x, x.shape[0], "weights_x", dtype=x.dtype, device=x.device)
    return x, y, a, check_weights(weights_y, y.shape[0], "weights_y", dtype=x.dtype, device=x.device)


def w2_squared(x, y, weights_x=None, weights_y=None, *, num_itermax: int = 10_000_000) -> Tensor:
    r"""Exact squared 2-Wasserstein distance between two discrete measures (POT's network simplex),
    :math:`W_2^2(\alpha, \beta) = \min_{\pi \in \Pi(a, b)} \sum_{i,j} \pi_{ij} |x_i - y_j|^2`.

    Used in: chapters 1 and 3.
    """
    x, y, a, b = _measures(x, y, weights_x, weights_y)
    return ot.emd2(a, b, squared_distances(x, y), numItermax=check_int(num_itermax, "num_itermax"))


def _self_entropic_ot(x: Tensor, a: Tensor, eps: float, max_iter: int, tol: float) -> Tensor:
    """``OT_eps(alpha, alpha)`` by POT's log-domain Sinkhorn with the symmetric update (the two
    log-scalings averaged after each iteration, Feydy et al. 2019: plain Sinkhorn oscillates here);
    ``<P, M> + eps KL(P | a a^T)`` with the envelope gradient."""
    M = squared_distances(x, x)
    Md, ad = M.detach(), a.detach()
    log_u = torch.zeros_like(ad)
    for _ in range(max_iter):
        plan, log = ot.bregman.sinkhorn_log(ad, ad, Md, eps, numItermax=1, stopThr=tol, log=True, warn=False,
                                            warmstart=(log_u, log_u))  # fmt: skip
        log_u = 0.5 * (log["log_u"] + log["log_v"])
        if float(log["err"][-1]) < tol:
            break
    else:
        warnings.warn(f"Sinkhorn (symmetric term) did not reach tol={tol:.1e} in max_iter={max_iter} "
                      "iterations", stacklevel=3)  # fmt: skip
    q = ad[:, None] * ad[None, :]
    return (plan * M).sum() + eps * (torch.xlogy(plan, plan) - torch.xlogy(plan, q) - plan + q).sum()


def sinkhorn_divergence(x, y, eps: float, weights_x=None, weights_y=None, *, max_iter: int = 5000,
                        tol: float = 1e-8) -> Tensor:  # fmt: skip
    r"""Debiased Sinkhorn divergence (log-domain Sinkhorn through POT, envelope-theorem gradients),
    :math:`S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta) - \tfrac12
    \mathrm{OT}_\varepsilon(\alpha, \alpha) - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta)`,
    :math:`\mathrm{OT}_\varepsilon = \min_{\pi \in \Pi(a, b)} \sum_{ij} \pi_{ij} |x_i - y_j|^2 + \varepsilon\,
    \mathrm{KL}(\pi \,\|\, a \otimes b)`. ``tol`` (marginal violation) is raised to ``10 * finfo(dtype).eps``;
    a warning says when ``max_iter`` is reached first.

    Used in: chapters 1 and 3.
    """
    x, y, a, b = _measures(x, y, weights_x, weights_y)
    eps, max_iter = check_positive(eps, "eps"), check_int(max_iter, "max_iter")
    tol = max(check_positive(tol, "tol"), _TOL_FLOOR_EPS * torch.finfo(x.dtype).eps)
    xy = ot.solve(squared_distances(x, y), a, b, reg=eps, reg_type="KL", max_iter=max_iter, tol=tol,
                  grad="envelope").value
    xx = _self_entropic_ot(x, a, eps, max_iter, tol)
    return xy - 0.5 * (xx + _self_entropic_ot(y, b, eps, max_iter, tol))


def sliced_w2(x, y, n_projections: int = 200, generator: torch.Generator | None = None, weights_x=None,
              weights_y=None) -> Tensor:  # fmt: skip
    r"""Squared sliced 2-Wasserstein distance over ``n_projections`` random directions, each 1-D term by
    ``ot.wasserstein_1d`` (no root, no factor ``d``), :math:`SW_2^2(\alpha, \beta) \approx \frac1L
    \sum_{l=1}^L W_2^2(\theta_l^\top x, \theta_l^\top y)`, :math:`\theta_l \sim U(S^{d-1})`.

    Used in: chapter 1.
    """
    x, y, a, b = _measures(x, y, weights_x, weights_y)
    n_projections = check_int(n_projections, "n_projections")
    check_generator(generator)
    dev = generator.device if generator is not None else torch.device("cpu")
    theta = torch.randn(x.shape[1], n_projections, generator=generator, dtype=torch.float64, device=dev)
    theta = (theta / theta.norm(dim=0, keepdim=True)).to(dtype=x.dtype, device=x.device)
    return ot.wasserstein_1d(x @ theta, y @ theta, a, b, p=2).mean()


def mmd2(x, y, kernel="gaussian", bandwidth=None, unbiased: bool = False, **kernel_kwargs) -> Tensor:
    r"""Squared maximum mean discrepancy :math:`\frac{1}{n^2}\sum_{i,i'} k(x_i, x_{i'}) +
    \frac{1}{m^2}\sum_{j,j'} k(y_j, y_{j'}) - \frac{2}{nm}\sum_{i,j} k(x_i, y_j)`, V-statistic (default) or
    U-statistic (``unbiased=True``), the U-statistic summing over :math:`i \ne i'`, :math:`j \ne j'`
    (:func:`~gwf_tutorial.functionals.mmd2_estimate`); ``kernel``, ``bandwidth`` and ``**kernel_kwargs`` go to
    :func:`~gwf_tutorial.kernels.get_kernel`.

    Used in: chapter 5.
    """
    x, y = _pair(x, y)
    if not isinstance(unbiased, bool):
        raise TypeError(f"unbiased must be a bool, got {unbiased!r}")
    k = get_kernel(kernel, bandwidth, **kernel_kwargs)._resolve(x, y)
    return mmd2_estimate(k._gram, x, y, unbiased=unbiased, chunk_size=_BLOCK_ROWS)


def energy_distance(x, y) -> Tensor:
    r"""Energy distance (V-statistic): :func:`mmd2` with the kernel :math:`-|x - y|`.

    Used in: chapter 4.
    """
    return mmd2(x, y, kernel="energy")


@dataclass
class ModeCoverage:
    """Result of :func:`mode_coverage` (``counts`` int64 and ``found_weights`` float64 per mode).

    Used in: :func:`~gwf_tutorial.metrics.mode_coverage`.
    """

    modes_hit: int
    n_modes: int
    high_quality_fraction: float
    weight_tv: float
    counts: Tensor
    found_weights: Tensor


def mode_coverage(x, mixture, radius=None, *, min_fraction: float = 0.2) -> ModeCoverage:
    r"""How many modes of a mixture a sample covers, how well, and with which weights. :math:`x_i` goes to its
    nearest mode :math:`k(i)`, of high quality if :math:`|x_i - m_{k(i)}| \le R_{k(i)}`; with :math:`c_k` such
    samples in mode ``k`` and :math:`H = \sum_k c_k`, :math:`\text{hit}_k = [c_k \ge \max(1, \phi\, n\,
    w_k)]`, :math:`\text{HQ} = H / n`, :math:`\mathrm{TV} = \tfrac12 \sum_k |c_k / H - w_k|`, :math:`\phi` =
    ``min_fraction``; default :math:`R_k = s_k\sqrt{\chi^2_{d, q}}`, :math:`q = 1 - e^{-9/2}` (:math:`3 s_k`
    in 2-D). ``mixture`` has ``means``, ``stds`` and ``weights``.

    Used in: chapters 3, 4, 5, 8 and 11.
    """
    from scipy.stats import chi2
    for attr in ("means", "weights", "stds"):
        if not hasattr(mixture, attr):
            raise TypeError(f"mixture must have attributes means, weights, stds (missing {attr!r})")
    means = check_finite(as_tensor(mixture.means, "mixture.means"), "mixture.means").detach().double()
    if means.ndim != 2:
        raise ValueError(f"mixture.means must have shape (K, d), got {tuple(means.shape)}")
    k, d = means.shape
    weights = check_weights(as_tensor(mixture.weights, "mixture.weights").cpu(), k, "mixture.weights")
    stds = as_tensor(mixture.stds, "mixture.stds").detach().to("cpu", torch.float64)
    stds = check_finite(stds, "mixture.stds")
    if stds.shape != (k,) or not bool((stds > 0).all()):
        raise ValueError(f"mixture.stds must be positive, of shape ({k},)")
    x = check_samples(x, "x", dim=d).detach().to(torch.float64)
    phi = check_interval(min_fraction, "min_fraction", closed="right")
    if radius is None:
        radius_t = stds * math.sqrt(chi2.ppf(1.0 - math.exp(-4.5), d))
    else:
        radius_t = check_finite(as_tensor(radius, "radius"), "radius").detach().to("cpu", torch.float64)
        if radius_t.numel() not in (1, k) or not bool((radius_t > 0).all()):
            raise ValueError(f"radius must be positive, one number or one per mode ({k},)")
        radius_t = radius_t.reshape(-1).expand(k)
    n = x.shape[0]
    dist2 = squared_distances(x, means.to(x.device)).cpu()  # (n, K)
    d2_min, nearest = dist2.min(dim=1)
    hq = d2_min.sqrt() <= radius_t[nearest]
    counts = torch.bincount(nearest[hq], minlength=k)
    total = int(counts.sum())
    threshold = torch.clamp(phi * n * weights, min=1.0)
    modes_hit = int((counts >= threshold).sum())
    found = counts.to(torch.float64) / total if total > 0 else torch.zeros(k, dtype=torch.float64)
    tv = 0.5 * float((found - weights).abs().sum()) if total > 0 else 1.0
    return ModeCoverage(modes_hit, k, float(hq.to(torch.float64).mean()), tv, counts, found)


def mixture_scores(x, mixture, floor_result: Floor, *, seed: int = 12345) -> dict:
    r"""Energy distance over its floor and mode coverage of a sample of a mixture: a dict of ``ratio``
    (:func:`score_vs_floor`, ``floor_result`` the energy :func:`floor`), ``modes``, ``near`` and ``tv``
    (:func:`mode_coverage`).

    Used in: chapter 4.
    """
    if not isinstance(floor_result, Floor) or floor_result.metric != "energy":
        raise ValueError("floor_result must be the energy-distance Floor: metrics.floor(..., 'energy')")
    x = check_samples(x, "x", min_n=2).detach()
    cov = mode_coverage(x, mixture)
    ratio = score_vs_floor(x, mixture, "energy", floor_result, seed=seed).ratio
    return {"ratio": ratio, "modes": cov.modes_hit, "near": cov.high_quality_fraction, "tv": cov.weight_tv}


_METRICS: dict[str, Callable] = {
    "w2": w2_squared, "w2_squared": w2_squared, "energy": energy_distance, "energy_distance": energy_distance,
    "mmd": mmd2, "mmd2": mmd2,  # sliced_w2: directions from a generator seeded 0 on the device of x
    "sliced_w2": lambda x, y: sliced_w2(x, y, generator=torch.Generator(device=x.device).manual_seed(0)),
}  # fmt: skip


def _resolve_metric(metric) -> tuple[Callable, str]:
    if isinstance(metric, str):
        key = metric.lower()
        if key not in _METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {sorted(_METRICS)} or pass a callable "
                             "(e.g. functools.partial(sinkhorn_divergence, eps=0.1))")  # fmt: skip
        return _METRICS[key], key
    if not callable(metric):
        raise TypeError(f"metric must be a name or a callable (x, y) -> scalar, got {metric!r}")
    return metric, getattr(metric, "__name__", type(metric).__name__)


def _resolve_target(target):
    """A registry name's target, or ``target`` itself when it has ``sample(n, generator=None)`` (also the
    check of ``benchmark.run``)."""
    if isinstance(target, str):
        return get_target(target)
    if not callable(getattr(target, "sample", None)):
        raise TypeError("target must have a sample(n, generator=None) method (or be a registry name), got "
                        f"{type(target).__name__}")  # fmt: skip
    return target


def _values(fn: Callable, pairs) -> Tensor:
    """``fn(a, b)`` for each pair, without gradient, as a float64 tensor."""
    with torch.no_grad():
        return torch.tensor([float(fn(a, b)) for a, b in pairs], dtype=torch.float64)


@dataclass
class Floor:
    """Result of :func:`floor`: ``median``, ``q25``, ``q75`` of ``values`` (one per pair, float64), ``n`` and
    ``metric``.

    Used in: chapter 6; :func:`~gwf_tutorial.metrics.floor`.
    """

    median: float
    q25: float
    q75: float
    values: Tensor
    n: int
    metric: str


def floor(target, n: int, metric="w2", n_pairs: int = 10, seed: int = 0, *,
          dtype: torch.dtype = torch.float64, progress: bool | None = None) -> Floor:  # fmt: skip
    r"""The metric between two independent samples of the target, what a perfect sampler shows:
    :math:`F_r = D\big(\{y^{(2r-1)}_i\}_{i=1}^n, \{y^{(2r)}_i\}_{i=1}^n\big)`, :math:`y^{(s)}_i \sim p`
    i.i.d., :math:`r \le R` = ``n_pairs``, summarised by the median and quartiles; all ``2R`` samples drawn
    in order from one generator seeded with ``seed``.

    Used in: chapters 1, 3, 4, 5, 7, 8 and 11.
    """
    target = _resolve_target(target)
    n = check_int(n, "n", min_value=2)
    n_pairs, seed = check_int(n_pairs, "n_pairs"), check_seed(seed)
    fn, name = _resolve_metric(metric)
    g = torch.Generator().manual_seed(seed)
    bar = _progress(range(n_pairs), desc=f"floor {name}", disable=None if progress is None else not progress)
    v = _values(fn, ((target.sample(n, generator=g, dtype=dtype), target.sample(n, generator=g, dtype=dtype))
                     for _ in bar))  # fmt: skip
    q = torch.quantile(v, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    return Floor(median=float(q[1]), q25=float(q[0]), q75=float(q[2]), values=v, n=n, metric=name)


@dataclass
class ScoreVsFloor:
    """Result of :func:`score_vs_floor`: ``score`` (median of ``values``), ``ratio`` and ``floor``.

    Used in: :func:`~gwf_tutorial.metrics.score_vs_floor`.
    """

    score: float
    ratio: float
    values: Tensor
    floor: Floor


def score_vs_floor(x, target, metric="w2", floor_result: Floor | None = None, n_refs: int = 3,
                   seed: int = 12345) -> ScoreVsFloor:  # fmt: skip
    r"""A method's score against fresh target samples and its ratio to the floor: :math:`\text{score} =
    \operatorname{median}_{r \le R'} D\big(x, \{y^{(r)}_i\}_{i=1}^n\big)`, :math:`\text{ratio} =
    \text{score} / \operatorname{median}_r F_r`, with ``R' = n_refs`` reference draws seeded with ``seed``;
    ``floor_result`` defaults to :func:`floor` with 10 pairs, seed 0.

    Used in: chapters 3, 5, 6, 7, 8 and 11.
    """
    x = check_samples(x, "x", min_n=2).detach()
    target, n_refs = _resolve_target(target), check_int(n_refs, "n_refs")
    seed = check_seed(seed)
    fn, name = _resolve_metric(metric)
    n = x.shape[0]
    if floor_result is None:
        floor_result = floor(target, n, metric)
    elif not isinstance(floor_result, Floor):
        raise TypeError(f"floor_result must be a Floor, got {type(floor_result).__name__}")
    elif floor_result.n != n:
        raise ValueError(f"floor_result was computed at n={floor_result.n}, but x has n={n}")
    g = torch.Generator().manual_seed(seed)
    v = _values(fn, ((x, target.sample(n, generator=g, dtype=x.dtype).to(x.device)) for _ in range(n_refs)))
    score = float(torch.quantile(v, 0.5))
    if not floor_result.median > 0:
        raise ValueError("the floor's median is not positive; the ratio is undefined")
    return ScoreVsFloor(score=score, ratio=score / floor_result.median, values=v, floor=floor_result)


def _image_batches(images, name: str, batch_size: int):
    """Checked image batches ``(b, C, H, W)`` from a tensor or an iterable of tensors."""
    if isinstance(images, Tensor):
        if images.ndim != 4:
            raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(images.shape)}")
        images = images.split(batch_size)
    try:
        iterator = iter(images)
    except TypeError as err:
        raise TypeError(f"{name} must be a tensor (N, C, H, W) or an iterable of such batches") from err
    for batch in iterator:
        if not isinstance(batch, Tensor) or batch.ndim != 4:
            raise ValueError(f"each batch of {name} must be a tensor of shape (b, C, H, W)")
        yield check_finite(batch, name)


def _image_metric(metric, real, fake, batch_size: int, device) -> Tensor:
    """Feed ``real`` and ``fake`` (values in [-1, 1]) to a torchmetrics image metric and compute it."""
    batch_size = check_int(batch_size, "batch_size")
    metric = metric.to(device) if device is not None else metric
    custom = getattr(metric, "used_custom_model", False)
    for name, images, is_real in (("real", real, True), ("fake", fake, False)):
        count = 0
        for batch in _image_batches(images, name, batch_size):
            batch = batch.detach().to(device) if device is not None else batch.detach()
            if custom:  # the extractor receives the images as they are (floats in [-1, 1])
                metric.update(batch.float(), real=is_real)
            else:  # Inception: uint8 RGB in [0, 255], grey images repeated to 3 channels
                u8 = ((batch.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                u8 = u8.repeat(1, 3, 1, 1) if u8.shape[1] == 1 else u8
                metric.update(u8, real=is_real)
            count += batch.shape[0]
        if count < 2:
            raise ValueError(f"{name} must hold at least 2 images, got {count}")
    return metric.compute()


class StandInFeatures(torch.nn.Module):
    r"""A frozen random convolutional feature extractor, the offline stand-in of Inception (not an FID):
    :math:`\phi(x) = D_{\omega_0}(x) \in \mathbb R^p`, :math:`\omega_0` drawn once from ``seed``; images
    ``(b, C, H, W)`` in ``[-1, 1]`` to ``(b, num_features)``.

    Used in: :func:`~gwf_tutorial.cifar10.evaluate`.
    """

    label = "stand-in features (a frozen random conv net), not Inception: not an FID"

    def __init__(self, channels: int = 3, size: int = 32, num_features: int = 64, seed: int = 0) -> None:
        super().__init__()
        self.num_features = check_int(num_features, "num_features")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(check_int(seed, "seed", min_value=0))
            self.net = ConvCritic(channels, size, width=32, out_dim=self.num_features, n_down=2, n_blocks=0)
        self.requires_grad_(False).eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.reshape(x.shape[0], -1).float())


def _feature_arg(feature) -> dict:
    """The ``feature`` and ``normalize`` arguments of a torchmetrics image metric."""
    if feature is None:
        return dict(feature=2048, normalize=False)
    if isinstance(feature, torch.nn.Module):
        if not isinstance(getattr(feature, "num_features", None), int):
            raise ValueError("feature must have an int attribute num_features (its output dimension)")
        return dict(feature=feature, normalize=True)
    raise TypeError(f"feature must be None (Inception-v3) or an nn.Module feature extractor, got {feature!r}")


def frechet_distance(real, fake, feature=None, *, batch_size: int = 250, device=None) -> float:
    r"""Fréchet distance (FID, through torchmetrics) between two image sets, :math:`|\mu_r - \mu_g|^2 +
    \operatorname{tr}\big(\Sigma_r + \Sigma_g - 2 (\Sigma_r^{1/2} \Sigma_g \Sigma_r^{1/2})^{1/2}\big)` between
    Gaussians fitted to their features. ``real``, ``fake``: images ``(N, C, H, W)`` in ``[-1, 1]`` or
    iterables of such batches. ``feature=None`` is Inception-v3 (uint8 RGB images); an ``nn.Module`` with
    ``num_features`` gets float images.

    Used in: chapters 9 and 10.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    metric = FrechetInceptionDistance(**_feature_arg(feature))
    return float(_image_metric(metric, real, fake, batch_size, device))


def kernel_distance(real, fake, feature=None, *, subsets: int = 100, subset_size: int = 1000,
                    batch_size: int = 250, device=None) -> tuple[float, float]:  # fmt: skip
    r"""Kernel inception distance (KID), ``(mean, std)`` over ``subsets`` subsets of ``subset_size`` images:
    the unbiased :math:`\mathrm{MMD}^2` with the kernel :math:`k(a, b) = (a^\top b / p + 1)^3` on
    ``p``-dimensional features; ``real``, ``fake`` and ``feature`` as in :func:`frechet_distance`.

    Used in: :func:`~gwf_tutorial.cifar10.evaluate`.
    """
    from torchmetrics.image.kid import KernelInceptionDistance
    subsets = check_int(subsets, "subsets")
    subset_size = check_int(subset_size, "subset_size", min_value=2)
    feat = _feature_arg(feature)
    sizes = [im.shape[0] for im in (real, fake) if isinstance(im, Tensor) and im.ndim == 4]
    subset_size = min(subset_size, *sizes) if sizes else subset_size
    with warnings.catch_warnings():  # "will save all extracted features in buffer": that is the method
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = KernelInceptionDistance(subsets=subsets, subset_size=subset_size, **feat)
    mean, std = _image_metric(metric, real, fake, batch_size, device)
    return float(mean), float(std)
