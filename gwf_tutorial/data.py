r"""Image datasets: scikit-learn digits, CIFAR-10 through torchvision, and a synthetic set for tests.

Every loader returns images as a float tensor ``(N, C, H, W)`` in ``[-1, 1]`` (the range of a ``tanh``
generator) and int64 labels ``(N,)``. :func:`synthetic_images` stands in for CIFAR-10 where no
download is possible, so the image pipeline (training, checkpoints, FID) is tested offline; numbers
measured on it say nothing about CIFAR-10.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from gwf_tutorial._validation import check_dtype, check_generator, check_int, check_nonnegative, check_seed

__all__ = ["load_digits", "load_cifar10", "cifar10_tensor", "synthetic_images", "to_unit_range"]

_SPLITS = ("train", "test", "all")

def load_digits(split: str = "train", *, test_fraction: float = 0.25, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    r"""The scikit-learn 8×8 digits (1797 images, no download) in ``[-1, 1]``, :math:`x \mapsto x/8 - 1`.
    ``split``: ``"train"``, ``"test"`` (``test_fraction`` of the images, stratified by class, fixed by
    ``seed``) or ``"all"``. Returns ``(images, labels)`` of shapes ``(N, 1, 8, 8)`` and ``(N,)``.

    Used in: chapter 9.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if not (isinstance(test_fraction, float | int) and 0.0 < float(test_fraction) < 1.0):
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    seed, dtype = check_seed(seed), check_dtype(dtype)
    bunch = _sk_load_digits()
    images = bunch.images.astype(np.float64) / 8.0 - 1.0
    labels = bunch.target.astype(np.int64)
    if split != "all":
        train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=float(test_fraction),
                                               random_state=seed, stratify=labels)  # fmt: skip
        keep = np.sort(train_idx if split == "train" else test_idx)
        images, labels = images[keep], labels[keep]
    return torch.as_tensor(images, dtype=dtype).unsqueeze(1), torch.as_tensor(labels)


def load_cifar10(root: str = "data", *, train: bool = True, download: bool = True):
    r"""CIFAR-10 as a ``torchvision`` dataset of ``(image, label)``, images ``(3, 32, 32)`` in ``[-1, 1]``.
    ``download`` fetches the archive into ``root`` at first use (170 MB, needs the internet); a missing
    archive raises ``RuntimeError`` with advice.

    Used in: ``data.cifar10_tensor``.
    """
    if not isinstance(root, str) or not root:
        raise TypeError(f"root must be a non-empty path string, got {root!r}")
    try:
        import torchvision
        from torchvision import transforms
    except ImportError as err:  # pragma: no cover - torchvision is in requirements.txt
        raise RuntimeError("load_cifar10 needs torchvision: pip install torchvision") from err
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    try:
        return torchvision.datasets.CIFAR10(root=root, train=train, download=download, transform=transform)
    except Exception as err:  # URLError, RuntimeError("Dataset not found") ...
        raise RuntimeError(f"CIFAR-10 could not be loaded from {root!r} (download={download}): {err}. It "
                           "needs the internet at first use (170 MB); offline, use data='synthetic' to test "
                           "the pipeline.") from err  # fmt: skip


def cifar10_tensor(root: str = "data", *, train: bool = True, download: bool = True) -> tuple[Tensor, Tensor]:
    """All of CIFAR-10 (train or test) as one tensor ``(N, 3, 32, 32)`` in ``[-1, 1]`` and labels ``(N,)``.

    Used in: :mod:`~gwf_tutorial.cifar10` (FID reference statistics).
    """
    ds = load_cifar10(root, train=train, download=download)
    x = torch.as_tensor(np.asarray(ds.data), dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1.0
    return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)


def synthetic_images(n: int, *, size: int = 32, channels: int = 3, n_classes: int = 10, noise: float = 0.05,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    r"""A labelled synthetic image set with known structure, for offline pipeline tests: class :math:`c`
    draws a Gaussian blob of colour :math:`u_c \in [-1, 1]^C` at a class-specific point on a circle
    (jittered by 1/16 of the image) over stripes of class-specific orientation, plus pixel noise of
    standard deviation ``noise``, clipped to ``[-1, 1]``; labels are balanced, ``channels`` is 1 or 3.

    Used in: chapter 10.
    """
    check_int(n, "n")
    check_int(size, "size", min_value=4)
    check_int(n_classes, "n_classes")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    noise = check_nonnegative(noise, "noise")
    check_generator(generator)
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=generator)]
    # Class constants from a fixed private generator: the same classes for every seed.
    g_cls = torch.Generator().manual_seed(12345)
    colours = torch.rand(n_classes, channels, generator=g_cls) * 2 - 1
    angles = 2 * math.pi * torch.arange(n_classes) / n_classes
    centres = 0.5 + 0.28 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)  # in [0, 1]^2
    orient = math.pi * torch.arange(n_classes) / n_classes
    grid = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")  # (size, size)
    jitter = (torch.rand(n, 2, generator=generator) - 0.5) / 8
    c = centres[labels] + jitter  # (n, 2)
    r2 = (xx[None] - c[:, 0, None, None]) ** 2 + (yy[None] - c[:, 1, None, None]) ** 2
    blob = torch.exp(-r2 / (2 * 0.12**2))  # (n, size, size)
    th = orient[labels]
    phase = torch.rand(n, generator=generator) * 2 * math.pi
    wave = 2 * math.pi * 3 * (torch.cos(th)[:, None, None] * xx + torch.sin(th)[:, None, None] * yy)
    background = -0.5 + 0.25 * torch.sin(wave + phase[:, None, None])  # stripes, (n, size, size)
    img = background[:, None] * (1 - blob[:, None]) + colours[labels][:, :, None, None] * blob[:, None]
    return (img + noise * torch.randn(img.shape, generator=generator)).clamp(-1, 1).contiguous(), labels


def to_unit_range(images: Tensor) -> Tensor:
    """Map images from ``[-1, 1]`` to ``[0, 1]`` (clipped), e.g. for plotting or FID packages.

    Used in: chapter 10.
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a tensor, got {type(images).__name__}")
    return ((images + 1) / 2).clamp(0, 1)
