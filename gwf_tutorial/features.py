r"""Measuring generated images with a small classifier: Fréchet distance and class coverage. On 8x8 digits
Inception-v3 says little; a classifier trained on the data itself gives the feature space of a Fréchet
distance (its penultimate layer) and counts the classes a generator produces (the image analogue of
:func:`gwf_tutorial.metrics.mode_coverage`; Heusel et al. 2017, Srivastava et al. 2017). Images are float
tensors ``(N, C, H, W)`` in ``[-1, 1]`` (:func:`gwf_tutorial.data.load_digits`) or flat rows ``(N, C·H·W)``,
what the generators produce; ``classifier`` is a trained :class:`DigitsClassifier` (or anything with
``predict``).

Used in: chapter 9.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gwf_tutorial._validation import (
    check_finite,
    check_int,
    check_interval,
    check_nonnegative,
    check_positive,
)
from gwf_tutorial.nets import make_activation
from gwf_tutorial.train import make_generator
from gwf_tutorial.train import progress as _progress

__all__ = ["DigitsClassifier", "TrainedClassifier", "train_classifier", "ClassCoverage", "class_coverage",
           "nearest_neighbor_ratio", "ImageScores", "image_scores"]  # fmt: skip


def _as_images(x, name: str, shape: tuple[int, int, int], *, values: bool = True) -> Tensor:
    """``x`` as images ``(n, C, H, W)`` (from flat rows too); with ``values``: n >= 1 finite floats."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if values and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    c, h, w = shape
    if x.ndim == 2 and x.shape[1] == c * h * w:
        x = x.reshape(x.shape[0], c, h, w)
    elif x.ndim != 4 or tuple(x.shape[1:]) != shape:
        got = tuple(x.shape)
        raise ValueError(f"{name} must have shape (n, {c}, {h}, {w}) or (n, {c * h * w}), got {got}")
    if values and x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image")
    return check_finite(x, name) if values else x


def _as_labels(labels, n: int, n_classes: int | None, device) -> tuple[Tensor, int]:
    """Labels ``(n,)`` in ``0..n_classes - 1`` (``n_classes`` inferred if None), as long, on ``device``."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if n_classes is None:
        n_classes = max(int(labels.max()) + 1, 2) if labels.numel() else 2
    n_classes = check_int(n_classes, "n_classes", min_value=2)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) (one per image), got {tuple(labels.shape)}")
    if bool((labels < 0).any()) or bool((labels >= n_classes).any()):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return labels.long().to(device), n_classes


class DigitsClassifier(nn.Module):
    r"""A small convolutional classifier whose penultimate layer is a feature extractor, :math:`\phi(x) =
    \sigma(W_3\,\mathrm{vec}\,\sigma(\mathrm{conv}_{2}^{\,s=2} \sigma(\mathrm{conv}_1 x))) \in \mathbb R^{p}`,
    :math:`\mathrm{logits}(x) = W_4\,\phi(x) + b_4 \in \mathbb R^{K}`, 3x3 convolutions of ``width`` and
    ``2·width`` channels, :math:`p` = ``num_features``, :math:`K` = ``n_classes``. ``forward`` returns
    :math:`\phi(x)` ``(n, p)`` (a ``feature`` for :func:`gwf_tutorial.metrics.frechet_distance`); no batch
    norm or dropout, so train and eval modes agree.

    Used in: :func:`~gwf_tutorial.features.train_classifier`.
    """

    def __init__(self, n_classes: int = 10, num_features: int = 64, width: int = 16,
                 image_shape: tuple[int, int, int] = (1, 8, 8), activation: str = "silu", *,
                 dtype: torch.dtype | None = None) -> None:  # fmt: skip
        super().__init__()
        self.n_classes = check_int(n_classes, "n_classes", min_value=2)
        self.num_features, width = check_int(num_features, "num_features"), check_int(width, "width")
        if not (isinstance(image_shape, tuple | list) and len(image_shape) == 3):
            raise ValueError(f"image_shape must be a tuple (C, H, W), got {image_shape!r}")
        c, h, w = (check_int(v, "image_shape entries") for v in image_shape)
        if h < 2 or w < 2:
            raise ValueError(f"image_shape must have H, W >= 2, got {tuple(image_shape)}")
        self.image_shape = (c, h, w)
        self.conv1 = nn.Conv2d(c, width, 3, padding=1, dtype=dtype)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, dtype=dtype)
        self.fc = nn.Linear(2 * width * ((h + 1) // 2) * ((w + 1) // 2), self.num_features, dtype=dtype)
        self.head = nn.Linear(self.num_features, self.n_classes, dtype=dtype)
        self.act = make_activation(activation)

    def features(self, x: Tensor) -> Tensor:
        r"""The feature vector :math:`\phi(x)`, shape ``(n, num_features)``."""
        a = self.act(self.conv2(self.act(self.conv1(_as_images(x, "x", self.image_shape, values=False)))))
        return self.act(self.fc(a.flatten(1)))

    forward = features

    def logits(self, x: Tensor) -> Tensor:
        r"""Class scores :math:`W_4 \phi(x) + b_4`, shape ``(n, n_classes)``."""
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor, *, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
        r"""Labels :math:`\arg\max_k p(k \mid x)` and their probabilities, in batches, without gradients."""
        batch_size = check_int(batch_size, "batch_size")
        x = _as_images(x, "x", self.image_shape, values=False)
        probs = [torch.softmax(self.logits(x[i : i + batch_size]), 1) for i in range(0, len(x), batch_size)]
        conf, labels = torch.cat(probs).max(1)
        return labels, conf


@dataclass
class TrainedClassifier:
    """Result of :func:`train_classifier` (``net`` in eval mode, ``test_accuracy`` None without test images).

    Used in: :func:`~gwf_tutorial.features.train_classifier`.
    """

    net: DigitsClassifier
    train_accuracy: float
    test_accuracy: float | None
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _accuracy(net: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    pred, _ = net.predict(images)
    return float((pred == labels.to(pred.device)).double().mean())


def train_classifier(images, labels, *, test_images=None, test_labels=None, n_classes: int | None = None,
                     n_iters: int = 600, batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 1e-4,
                     seed: int = 0, progress: bool = True, **net_kwargs) -> TrainedClassifier:  # fmt: skip
    r"""Train a :class:`DigitsClassifier` by Adam on the cross-entropy :math:`\frac1B \sum_{i \in
    \text{batch}} -\log \operatorname{softmax}(\mathrm{logits}_\psi(x_i))_{k_i}` (+ ``weight_decay``
    :math:`|\psi|^2`) and report its accuracy; mini-batches with replacement and the initialisation seeded by
    ``seed``, learning rate cosine-annealed to 0 over ``n_iters``; ``**net_kwargs`` go to
    :class:`DigitsClassifier`.

    Used in: chapter 9.
    """
    shape = tuple(net_kwargs.get("image_shape", (1, 8, 8)))
    if len(shape) != 3:
        raise ValueError(f"image_shape must be a tuple (C, H, W), got {shape!r}")
    x = _as_images(images, "images", shape)
    y, n_classes = _as_labels(labels, x.shape[0], n_classes, x.device)
    if (test_images is None) != (test_labels is None):
        raise ValueError("test_images and test_labels must be given together")
    if test_images is not None:
        xt = _as_images(test_images, "test_images", shape).to(x.device)
        yt = _as_labels(test_labels, xt.shape[0], n_classes, x.device)[0]
    n_iters, batch_size = check_int(n_iters, "n_iters"), check_int(batch_size, "batch_size")
    lr, weight_decay = check_positive(lr, "lr"), check_nonnegative(weight_decay, "weight_decay")
    seed = check_int(seed, "seed", min_value=0)

    torch.manual_seed(seed)
    net = DigitsClassifier(n_classes, dtype=x.dtype, **net_kwargs).to(x.device)
    g = make_generator(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_iters)
    losses: list[float] = []
    t0 = time.perf_counter()
    net.train()
    for _ in _progress(range(n_iters), desc="classifier", disable=None if progress else True):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g).to(x.device)
        loss = F.cross_entropy(net.logits(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.eval().requires_grad_(False)
    seconds = time.perf_counter() - t0
    test_accuracy = None if test_images is None else _accuracy(net, xt, yt)
    return TrainedClassifier(net, _accuracy(net, x, y), test_accuracy, losses, seconds)


@dataclass
class ClassCoverage:
    """Result of :func:`class_coverage`.

    Used in: :func:`~gwf_tutorial.features.class_coverage`.
    """

    shares: Tensor
    counts: Tensor
    classes_hit: int
    n_classes: int
    tv: float
    confident_fraction: float


def class_coverage(classifier: DigitsClassifier, images, n_classes: int | None = None, *,
                   min_fraction: float = 0.2, confidence: float = 0.9) -> ClassCoverage:  # fmt: skip
    r"""Per-class shares of the predicted labels :math:`s_k = c_k / n`, classes hit :math:`[c_k \ge \max(1,
    \phi\, n / K)]` and distance to uniform :math:`\mathrm{TV} = \frac12 \sum_k |s_k - \frac1K|`, with
    :math:`c_k` the images labelled :math:`k` and :math:`\phi` = ``min_fraction``. A classifier labels
    anything, noise included: read it next to ``confident_fraction`` (share with top probability >=
    ``confidence``) and the Fréchet distance.

    Used in: chapter 9.
    """
    if not callable(getattr(classifier, "predict", None)):
        raise TypeError(f"classifier must have a predict method, got {type(classifier).__name__}")
    n_classes = getattr(classifier, "n_classes", None) if n_classes is None else n_classes
    if n_classes is None:
        raise ValueError("n_classes must be given when the classifier has no n_classes attribute")
    n_classes = check_int(n_classes, "n_classes", min_value=2)
    shape = getattr(classifier, "image_shape", None)
    x = _as_images(images, "images", tuple(shape)) if shape is not None else images
    min_fraction = check_interval(min_fraction, "min_fraction", closed="right")
    confidence = check_interval(confidence, "confidence")
    labels, conf = classifier.predict(x)
    labels = labels.cpu()
    if bool((labels < 0).any()) or bool((labels >= n_classes).any()):
        raise ValueError(f"the classifier predicted labels outside 0..{n_classes - 1}")
    n = labels.shape[0]
    counts = torch.bincount(labels, minlength=n_classes)
    shares = counts.double() / n
    hit = counts >= max(1.0, min_fraction * n / n_classes)
    tv = 0.5 * float((shares - 1.0 / n_classes).abs().sum())
    confident = float((conf >= confidence).double().mean())
    return ClassCoverage(shares, counts, int(hit.sum()), n_classes, tv, confident)


def nearest_neighbor_ratio(fake, train, reference) -> float:
    r"""Distance of generated images to the training set, relative to that of held-out real images, :math:`R =
    \operatorname{median}_i \min_j |g_i - t_j| / \operatorname{median}_l \min_j |r_l - t_j|`: :math:`R \ll 1`
    for a generator that copies its training images, :math:`R \approx 1` for fresh data.

    Used in: :func:`~gwf_tutorial.features.image_scores`.
    """
    mats = []
    for t, name in ((fake, "fake"), (train, "train"), (reference, "reference")):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating torch.Tensor")
        if t.ndim < 2 or t.shape[0] < 1:
            raise ValueError(f"{name} must have shape (n, ...) with n >= 1, got {tuple(t.shape)}")
        mats.append(check_finite(t.detach().reshape(t.shape[0], -1).double().cpu(), name))
    g, tr, r = mats
    if not (g.shape[1] == tr.shape[1] == r.shape[1]):
        raise ValueError(f"fake, train and reference must have the same number of pixels, got {g.shape[1]}, "
                         f"{tr.shape[1]} and {r.shape[1]}")  # fmt: skip
    d_fake = torch.cdist(g, tr).min(dim=1).values.median()
    d_ref = torch.cdist(r, tr).min(dim=1).values.median()
    if not float(d_ref) > 0:
        raise ValueError("the reference images coincide with training images (median distance 0)")
    return float(d_fake / d_ref)


@dataclass
class ImageScores:
    """Result of :func:`image_scores` (``frechet`` in the classifier's features, ``nn_ratio`` None without
    training images).

    Used in: :func:`~gwf_tutorial.features.image_scores`.
    """

    frechet: float
    coverage: ClassCoverage
    n: int
    nn_ratio: float | None = None


def image_scores(classifier: DigitsClassifier, fake, real, *, train=None, batch_size: int = 500
                 ) -> ImageScores:  # fmt: skip
    """Fréchet distance in the classifier's features, class coverage and copy check of ``fake`` against
    ``real`` (held-out images; ``train`` for :func:`nearest_neighbor_ratio`). The Fréchet distance of a
    finite sample is biased upward: compare at equal sizes, next to two real samples' distance.

    Used in: chapter 9.
    """
    from gwf_tutorial.metrics import frechet_distance
    if not isinstance(classifier, DigitsClassifier):
        raise TypeError(f"classifier must be a DigitsClassifier, got {type(classifier).__name__}")
    fake = _as_images(fake, "fake", classifier.image_shape).detach()
    real = _as_images(real, "real", classifier.image_shape).detach()
    batch_size, dtype = check_int(batch_size, "batch_size"), next(classifier.parameters()).dtype
    fd = frechet_distance(real.to(dtype), fake.to(dtype), classifier, batch_size=batch_size)
    ratio = None
    if train is not None:
        ratio = nearest_neighbor_ratio(fake, _as_images(train, "train", classifier.image_shape), real)
    return ImageScores(fd, class_coverage(classifier, fake.to(dtype)), fake.shape[0], ratio)
