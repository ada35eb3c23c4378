r"""Measuring generated images with a small classifier: Fréchet distance and class coverage.

Inception-v3 (the FID network) was trained on 299×299 photographs and says little about 8×8
digits. The standard substitute on small image sets is a classifier trained on the data itself:
its penultimate layer is the feature space of a Fréchet distance, and its predictions count which
classes a generator produces (the image analogue of the mode coverage of
:func:`gwf_tutorial.metrics.mode_coverage`).

- :class:`DigitsClassifier` — a two-layer convolutional network; ``forward`` returns the
  ``num_features``-dimensional features (so the network itself is the ``feature`` argument of
  :func:`gwf_tutorial.metrics.frechet_distance`), :meth:`DigitsClassifier.logits` the class scores.
- :func:`train_classifier` — seeded Adam training on labelled images, with train / test accuracy.
- :func:`class_coverage` — per-class shares of the predicted labels, classes hit, total-variation
  distance to the uniform law, share of confident predictions.
- :func:`nearest_neighbor_ratio` — whether generated images copy the training images.
- :func:`image_scores` — all of it for one set of generated samples against real images.

Images are float tensors ``(N, C, H, W)`` in ``[-1, 1]`` (:func:`gwf_tutorial.data.load_digits`);
flat sample matrices ``(N, C·H·W)``, the form the generators of chapter 9 produce, are accepted
everywhere and reshaped.

Used in: chapter 9 (digits on a CPU).

References
----------
Heusel, M. et al. (2017). GANs trained by a two time-scale update rule converge to a local Nash
equilibrium. NeurIPS (the Fréchet Inception distance).
Srivastava, A. et al. (2017). VEEGAN: reducing mode collapse in GANs using implicit variational
learning. NeurIPS (counting modes with a classifier on stacked MNIST).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gwf_tutorial._validation import check_finite, check_int, check_positive
from gwf_tutorial.nets import make_activation
from gwf_tutorial.train import make_generator, progress

__all__ = [
    "DigitsClassifier",
    "TrainedClassifier",
    "train_classifier",
    "ClassCoverage",
    "class_coverage",
    "nearest_neighbor_ratio",
    "ImageScores",
    "image_scores",
]


def _as_images(x, name: str, shape: tuple[int, int, int]) -> Tensor:
    """``x`` as images ``(n, C, H, W)``: accepts that shape or flat rows ``(n, C·H·W)``; finite floats."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got dtype {x.dtype}")
    c, h, w = shape
    if x.ndim == 2 and x.shape[1] == c * h * w:
        x = x.reshape(x.shape[0], c, h, w)
    elif x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise ValueError(
            f"{name} must have shape (n, {c}, {h}, {w}) or (n, {c * h * w}), got {tuple(x.shape)}"
        )
    if x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one image")
    return check_finite(x, name)


def _as_labels(labels, n: int, n_classes: int) -> Tensor:
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) (one per image), got {tuple(labels.shape)}")
    if bool((labels < 0).any()) or bool((labels >= n_classes).any()):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return labels.long()


class DigitsClassifier(nn.Module):
    r"""A small convolutional classifier whose penultimate layer is a feature extractor.

    .. math::

        \phi(x) = \sigma\big(W_3\,\mathrm{vec}\,\sigma(\mathrm{conv}_{2}^{\,s=2}
        \sigma(\mathrm{conv}_1 x))\big) \in \mathbb R^{p}, \qquad
        \mathrm{logits}(x) = W_4\,\phi(x) + b_4 \in \mathbb R^{K},

    with :math:`3\times3` convolutions (``width`` and ``2·width`` channels, the second of stride
    2), :math:`\sigma` the activation, :math:`p` = ``num_features`` and :math:`K` = ``n_classes``.
    ``forward`` returns :math:`\phi(x)`, so the network is a ``feature`` extractor for
    :func:`gwf_tutorial.metrics.frechet_distance` (it has the integer attribute
    ``num_features``); :meth:`logits` and :meth:`predict` classify. No batch normalisation and no
    dropout: train and eval modes compute the same function.

    Parameters
    ----------
    n_classes : int, default 10
    num_features : int, default 64
        Dimension :math:`p` of the feature layer.
    width : int, default 16
        Channels of the first convolution.
    image_shape : tuple of 3 ints, default (1, 8, 8)
        ``(C, H, W)`` of the inputs (H and W at least 2).
    activation : str, default "silu"
        See :func:`gwf_tutorial.nets.make_activation`.
    dtype : torch.dtype, optional

    Notes
    -----
    ``forward(x)``, :meth:`features`, :meth:`logits`: ``x`` of shape ``(n, C, H, W)`` or flat
    ``(n, C·H·W)``; outputs ``(n, num_features)`` and ``(n, n_classes)``.

    Used in: chapter 9 (the Fréchet distance and class coverage of generated digits).
    """

    def __init__(
        self,
        n_classes: int = 10,
        num_features: int = 64,
        width: int = 16,
        image_shape: tuple[int, int, int] = (1, 8, 8),
        activation: str = "silu",
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.n_classes = check_int(n_classes, "n_classes", min_value=2)
        self.num_features = check_int(num_features, "num_features")
        width = check_int(width, "width")
        if not (isinstance(image_shape, tuple | list) and len(image_shape) == 3):
            raise ValueError(f"image_shape must be a tuple (C, H, W), got {image_shape!r}")
        c, h, w = (check_int(v, "image_shape entries") for v in image_shape)
        if h < 2 or w < 2:
            raise ValueError(f"image_shape must have H, W >= 2, got {tuple(image_shape)}")
        self.image_shape = (c, h, w)
        self.conv1 = nn.Conv2d(c, width, 3, padding=1, dtype=dtype)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, dtype=dtype)
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        self.fc = nn.Linear(2 * width * h2 * w2, self.num_features, dtype=dtype)
        self.head = nn.Linear(self.num_features, self.n_classes, dtype=dtype)
        self.act = make_activation(activation)

    def _images(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        c, h, w = self.image_shape
        if x.ndim == 2 and x.shape[1] == c * h * w:
            return x.reshape(x.shape[0], c, h, w)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"x must have shape (n, {c}, {h}, {w}) or (n, {c * h * w}), got {tuple(x.shape)}"
            )
        return x

    def features(self, x: Tensor) -> Tensor:
        r"""The feature vector :math:`\phi(x)`, shape ``(n, num_features)``.

        .. math::

            \phi(x) = \sigma\big(W_3\,\mathrm{vec}\,\sigma(\mathrm{conv}_2\,\sigma(\mathrm{conv}_1 x))\big).

        Parameters
        ----------
        x : Tensor, shape (n, C, H, W) or (n, C·H·W)

        Returns
        -------
        Tensor, shape (n, num_features)

        Used in: chapter 9 (Fréchet distance in the classifier's features).
        """
        a = self.act(self.conv2(self.act(self.conv1(self._images(x)))))
        return self.act(self.fc(a.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)

    def logits(self, x: Tensor) -> Tensor:
        r"""Class scores :math:`W_4 \phi(x) + b_4`, shape ``(n, n_classes)``.

        .. math::

            p(k \mid x) = \operatorname{softmax}(\mathrm{logits}(x))_k .

        Parameters
        ----------
        x : Tensor, shape (n, C, H, W) or (n, C·H·W)

        Returns
        -------
        Tensor, shape (n, n_classes)

        Used in: chapter 9.
        """
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor, *, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
        r"""Predicted labels and their probabilities, in batches, without gradients.

        .. math::

            \hat k(x) = \arg\max_k p(k \mid x), \qquad \hat p(x) = \max_k p(k \mid x).

        Parameters
        ----------
        x : Tensor, shape (n, C, H, W) or (n, C·H·W)
        batch_size : int, default 1000

        Returns
        -------
        labels : Tensor, shape (n,), int64
        confidence : Tensor, shape (n,)

        Used in: chapter 9 (:func:`class_coverage`, accuracy).
        """
        batch_size = check_int(batch_size, "batch_size")
        x = self._images(x)
        labels, conf = [], []
        for start in range(0, x.shape[0], batch_size):
            p = torch.softmax(self.logits(x[start : start + batch_size]), dim=1)
            c, k = p.max(dim=1)
            labels.append(k)
            conf.append(c)
        return torch.cat(labels), torch.cat(conf)


@dataclass
class TrainedClassifier:
    r"""Result of :func:`train_classifier`.

    .. math::

        \text{accuracy} = \frac1N \sum_i [\hat k(x_i) = k_i].

    Attributes
    ----------
    net : DigitsClassifier
        The trained network (in eval mode).
    train_accuracy : float
    test_accuracy : float or None
        On the held-out images, when given.
    loss : list of float
        Cross-entropy of each mini-batch.
    seconds : float
        Wall-clock training time.

    Used in: chapter 9.
    """

    net: DigitsClassifier
    train_accuracy: float
    test_accuracy: float | None
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _accuracy(net: DigitsClassifier, images: Tensor, labels: Tensor) -> float:
    pred, _ = net.predict(images)
    return float((pred == labels.to(pred.device)).double().mean())


def train_classifier(
    images,
    labels,
    *,
    test_images=None,
    test_labels=None,
    n_classes: int | None = None,
    n_iters: int = 600,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    show_progress: bool = True,
    **net_kwargs,
) -> TrainedClassifier:
    r"""Train a :class:`DigitsClassifier` by Adam on the cross-entropy; report its accuracy.

    .. math::

        \min_\psi\ \frac1B \sum_{i \in \text{batch}} -\log \operatorname{softmax}
        \big(\mathrm{logits}_\psi(x_i)\big)_{k_i} \;(+\ \text{weight decay } \lambda |\psi|^2),

    mini-batches drawn with replacement by a generator seeded with ``seed`` (the network is
    initialised under the same seed), learning rate cosine-annealed to 0 over ``n_iters``.

    Parameters
    ----------
    images : Tensor, shape (N, C, H, W) or (N, C·H·W)
        Training images in ``[-1, 1]`` (flat rows need ``image_shape`` in ``net_kwargs`` unless
        they are 8×8 grey digits).
    labels : Tensor, shape (N,), int
        Classes in ``0..n_classes-1``.
    test_images, test_labels : Tensor, optional
        Held-out images and labels for :attr:`TrainedClassifier.test_accuracy` (both or neither).
    n_classes : int, optional
        Default ``labels.max() + 1`` (at least 2).
    n_iters : int, default 600
    batch_size : int, default 128
    lr : float, default 3e-3
    weight_decay : float, default 1e-4
        Adam's L2 penalty :math:`\lambda \ge 0`.
    seed : int, default 0
    show_progress : bool, default True
        A tqdm bar (:func:`gwf_tutorial.train.progress`; hidden when ``GWF_PROGRESS=0``).
    **net_kwargs
        Passed to :class:`DigitsClassifier` (``num_features``, ``width``, ``image_shape``, ...).

    Returns
    -------
    TrainedClassifier

    Raises
    ------
    ValueError, TypeError
        Bad shapes, non-integer or out-of-range labels, non-finite images, bad hyper-parameters.

    Used in: chapter 9 (600 iterations: a few seconds on one CPU thread, about 97% test accuracy on the
    digits).
    """
    shape = tuple(net_kwargs.get("image_shape", (1, 8, 8)))
    if len(shape) != 3:
        raise ValueError(f"image_shape must be a tuple (C, H, W), got {shape!r}")
    x = _as_images(images, "images", shape)
    if not isinstance(labels, Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if n_classes is None:
        n_classes = max(int(labels.max()) + 1, 2) if labels.numel() else 2
    n_classes = check_int(n_classes, "n_classes", min_value=2)
    y = _as_labels(labels, x.shape[0], n_classes).to(x.device)
    if (test_images is None) != (test_labels is None):
        raise ValueError("test_images and test_labels must be given together")
    if test_images is not None:
        xt = _as_images(test_images, "test_images", shape).to(x.device)
        yt = _as_labels(test_labels, xt.shape[0], n_classes).to(x.device)
    n_iters = check_int(n_iters, "n_iters")
    batch_size = check_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    if not (isinstance(weight_decay, int | float) and math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    seed = check_int(seed, "seed", min_value=0)

    torch.manual_seed(seed)
    net = DigitsClassifier(n_classes, dtype=x.dtype, **net_kwargs).to(x.device)
    g = make_generator(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=float(weight_decay))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_iters)
    losses: list[float] = []
    t0 = time.perf_counter()
    net.train()
    for _ in progress(range(n_iters), desc="classifier", disable=None if show_progress else True):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g).to(x.device)
        loss = F.cross_entropy(net.logits(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    seconds = time.perf_counter() - t0
    return TrainedClassifier(
        net=net,
        train_accuracy=_accuracy(net, x, y),
        test_accuracy=None if test_images is None else _accuracy(net, xt, yt),
        loss=losses,
        seconds=seconds,
    )


@dataclass
class ClassCoverage:
    r"""Which classes a set of images falls into, per a classifier (see :func:`class_coverage`).

    .. math::

        s_k = c_k / n, \qquad \text{classes\_hit} = \sum_k [c_k \ge \max(1, \phi n / K)], \qquad
        \mathrm{TV} = \tfrac12 \sum_k |s_k - 1/K|.

    Attributes
    ----------
    shares : Tensor, shape (K,)
        Share :math:`s_k` of the images predicted as class ``k`` (float64, sums to 1).
    counts : Tensor, shape (K,)
        Images predicted as class ``k`` (int64).
    classes_hit : int
        Classes with at least ``min_fraction`` of their expected share :math:`n/K`.
    n_classes : int
        :math:`K`.
    tv : float
        Total-variation distance between the shares and the uniform law, in ``[0, 1 - 1/K]``.
    confident_fraction : float
        Share of images whose top class probability is at least ``confidence``.

    Used in: chapter 9.
    """

    shares: Tensor
    counts: Tensor
    classes_hit: int
    n_classes: int
    tv: float
    confident_fraction: float


def class_coverage(
    classifier: DigitsClassifier,
    images,
    n_classes: int | None = None,
    *,
    min_fraction: float = 0.2,
    confidence: float = 0.9,
) -> ClassCoverage:
    r"""Per-class shares of the predicted labels, classes hit, and distance to uniform.

    Each image gets the classifier's label :math:`\hat k(x_i)`; with :math:`c_k` the number of
    images labelled :math:`k` among :math:`n`,

    .. math::

        s_k = \frac{c_k}{n}, \qquad
        \text{hit}_k = \big[c_k \ge \max(1, \phi\, n / K)\big], \qquad
        \mathrm{TV} = \frac12 \sum_{k=1}^K \Big|s_k - \frac1K\Big|,

    with :math:`\phi` = ``min_fraction``. The digits are balanced (each class is 10% ± 0.3% of
    the data), so TV measures how far a generator is from producing every digit equally often: 0
    for a perfect balance, :math:`1 - 1/K` (0.9 for digits) for a single class. A classifier labels
    *anything*, including noise, so coverage counts classes but does not say the images look like
    digits: read it next to ``confident_fraction`` (share of images with
    :math:`\max_k p(k \mid x) \ge` ``confidence``) and the Fréchet distance.

    Parameters
    ----------
    classifier : DigitsClassifier
        A trained classifier (anything with ``predict(x) -> (labels, confidence)``).
    images : Tensor, shape (n, C, H, W) or (n, C·H·W)
        The images (e.g. generated samples); finite.
    n_classes : int, optional
        :math:`K`; default ``classifier.n_classes``.
    min_fraction : float, default 0.2
        :math:`\phi \in (0, 1]`.
    confidence : float, default 0.9
        Threshold in ``(0, 1)`` of :attr:`ClassCoverage.confident_fraction`.

    Returns
    -------
    ClassCoverage

    Used in: chapter 9 (class coverage of every generator).
    """
    if not callable(getattr(classifier, "predict", None)):
        raise TypeError(f"classifier must have a predict method, got {type(classifier).__name__}")
    if n_classes is None:
        n_classes = getattr(classifier, "n_classes", None)
        if n_classes is None:
            raise ValueError("n_classes must be given when the classifier has no n_classes attribute")
    n_classes = check_int(n_classes, "n_classes", min_value=2)
    shape = getattr(classifier, "image_shape", None)
    x = _as_images(images, "images", tuple(shape)) if shape is not None else images
    if not (isinstance(min_fraction, int | float) and 0 < min_fraction <= 1):
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction!r}")
    if not (isinstance(confidence, int | float) and 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    labels, conf = classifier.predict(x)
    labels = labels.cpu()
    if bool((labels < 0).any()) or bool((labels >= n_classes).any()):
        raise ValueError(f"the classifier predicted labels outside 0..{n_classes - 1}")
    n = labels.shape[0]
    counts = torch.bincount(labels, minlength=n_classes)
    shares = counts.double() / n
    hit = counts >= max(1.0, min_fraction * n / n_classes)
    tv = 0.5 * float((shares - 1.0 / n_classes).abs().sum())
    return ClassCoverage(
        shares=shares,
        counts=counts,
        classes_hit=int(hit.sum()),
        n_classes=n_classes,
        tv=tv,
        confident_fraction=float((conf >= confidence).double().mean()),
    )


def nearest_neighbor_ratio(fake, train, reference) -> float:
    r"""Distance of generated images to the training set, relative to that of fresh real images.

    .. math::

        R = \frac{\operatorname{median}_i \min_j |g_i - t_j|}
        {\operatorname{median}_l \min_j |r_l - t_j|},

    with :math:`g_i` the generated images, :math:`t_j` the training images and :math:`r_l` real
    images not used in training (the test split), all as vectors of pixels. A generator that
    copies its training images has :math:`R \ll 1` (and a Fréchet distance at the floor); a fresh
    sample of the data law has :math:`R \approx 1`; blurred or noisy images lie off the data and
    give :math:`R > 1`.

    Parameters
    ----------
    fake : Tensor, shape (n, ...)
        Generated images (any shape with ``n`` rows; flattened).
    train : Tensor, shape (N, ...)
        The training images.
    reference : Tensor, shape (m, ...)
        Held-out real images of the same shape.

    Returns
    -------
    float

    Used in: chapter 9 (a memorisation check beside the Fréchet distance).
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
        raise ValueError(
            f"fake, train and reference must have the same number of pixels, got {g.shape[1]}, "
            f"{tr.shape[1]} and {r.shape[1]}"
        )
    d_fake = torch.cdist(g, tr).min(dim=1).values.median()
    d_ref = torch.cdist(r, tr).min(dim=1).values.median()
    if not float(d_ref) > 0:
        raise ValueError("the reference images coincide with training images (median distance 0)")
    return float(d_fake / d_ref)


@dataclass
class ImageScores:
    r"""Scores of one image set against real images (see :func:`image_scores`).

    .. math::

        \mathrm{FD} = |\mu_r - \mu_g|^2 + \operatorname{tr}\big(\Sigma_r + \Sigma_g
        - 2(\Sigma_r^{1/2}\Sigma_g\Sigma_r^{1/2})^{1/2}\big)\ \text{in the classifier's features}.

    Attributes
    ----------
    frechet : float
        Fréchet distance in the classifier's features.
    coverage : ClassCoverage
        Class coverage of the generated images.
    n : int
        Number of generated images.
    nn_ratio : float or None
        :func:`nearest_neighbor_ratio` of the generated images (when the training images were given).

    Used in: chapter 9.
    """

    frechet: float
    coverage: ClassCoverage
    n: int
    nn_ratio: float | None = None


def image_scores(
    classifier: DigitsClassifier, fake, real, *, train=None, batch_size: int = 500
) -> ImageScores:
    r"""Fréchet distance in the classifier's features, class coverage and copy check of ``fake``.

    .. math::

        \mathrm{FD}\big(\phi_\#\hat\rho_{\text{real}}, \phi_\#\hat\rho_{\text{fake}}\big)
        \ \text{(Gaussians fitted to the features } \phi\text{)}, \quad
        \text{coverage} = \text{class\_coverage}(\text{fake}), \quad
        R = \text{nearest\_neighbor\_ratio}(\text{fake}, \text{train}, \text{real}).

    The Fréchet distance (:func:`gwf_tutorial.metrics.frechet_distance`) of a finite sample is
    biased upward (the fitted covariances are noisy), so compare methods at the same number of
    images and next to the distance between two real samples of the same sizes, the floor of this
    metric.

    Parameters
    ----------
    classifier : DigitsClassifier
        Trained classifier (its ``forward`` gives the features).
    fake : Tensor, shape (n, C, H, W) or (n, C·H·W)
        Generated images, ``n >= 2``.
    real : Tensor, shape (m, C, H, W) or (m, C·H·W)
        Held-out reference images (e.g. the test split), ``m >= 2``.
    train : Tensor, optional
        The training images; when given, :attr:`ImageScores.nn_ratio` is computed.
    batch_size : int, default 500

    Returns
    -------
    ImageScores

    Used in: chapter 9 (the table of every method).
    """
    from gwf_tutorial.metrics import frechet_distance

    if not isinstance(classifier, DigitsClassifier):
        raise TypeError(f"classifier must be a DigitsClassifier, got {type(classifier).__name__}")
    fake = _as_images(fake, "fake", classifier.image_shape).detach()
    real = _as_images(real, "real", classifier.image_shape).detach()
    if fake.shape[0] < 2 or real.shape[0] < 2:
        raise ValueError("fake and real must hold at least 2 images each")
    batch_size = check_int(batch_size, "batch_size")
    dtype = next(classifier.parameters()).dtype
    fd = frechet_distance(real.to(dtype), fake.to(dtype), classifier, batch_size=batch_size)
    ratio = None
    if train is not None:
        ratio = nearest_neighbor_ratio(fake, _as_images(train, "train", classifier.image_shape), real)
    return ImageScores(
        frechet=fd, coverage=class_coverage(classifier, fake.to(dtype)), n=fake.shape[0], nn_ratio=ratio
    )
