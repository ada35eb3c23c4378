"""Tests for gwf_tutorial.data: digits, synthetic images, CIFAR-10 loader errors."""

import pytest
import torch

from gwf_tutorial import data


def test_digits_split_shapes_range_and_disjoint():
    xtr, ytr = data.load_digits("train")
    xte, yte = data.load_digits("test")
    xall, yall = data.load_digits("all")
    assert xtr.shape == (1347, 1, 8, 8) and xte.shape == (450, 1, 8, 8) and xall.shape == (1797, 1, 8, 8)
    assert float(xall.min()) == -1.0 and float(xall.max()) == 1.0
    # stratified: every class in both splits, in proportion
    assert torch.bincount(yte, minlength=10).min() >= 43
    # the two splits partition the whole set (compare as multisets of rows)
    rows = torch.cat([xtr, xte]).flatten(1)
    key = lambda r: sorted(map(tuple, r.tolist()))  # noqa: E731
    assert key(rows) == key(xall.flatten(1))
    # deterministic
    assert torch.equal(data.load_digits("train")[0], xtr)


def test_digits_bad_input():
    with pytest.raises(ValueError, match="split"):
        data.load_digits("val")
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits("train", test_fraction=1.5)


def test_synthetic_images_structure():
    g = torch.Generator().manual_seed(0)
    x, y = data.synthetic_images(400, size=16, generator=g)
    assert x.shape == (400, 3, 16, 16) and x.dtype == torch.float32 and y.shape == (400,)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.bincount(y, minlength=10).tolist() == [40] * 10
    # classes are separable: a nearest-class-mean classifier on pixels is near perfect
    means = torch.stack([x[y == c].mean(0).flatten() for c in range(10)])
    x2, y2 = data.synthetic_images(200, size=16, generator=torch.Generator().manual_seed(1))
    pred = torch.cdist(x2.flatten(1), means).argmin(1)
    assert (pred == y2).float().mean() > 0.9
    # reproducible, and seeds differ
    x3, _ = data.synthetic_images(400, size=16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, x3) and not torch.equal(x[:200], x2)


def test_synthetic_images_bad_input():
    with pytest.raises(ValueError, match="channels"):
        data.synthetic_images(4, channels=2)
    with pytest.raises(ValueError, match="noise"):
        data.synthetic_images(4, noise=-1.0)
    with pytest.raises(ValueError, match="n must"):
        data.synthetic_images(0)


def test_cifar10_missing_archive_offline_gives_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="CIFAR-10 could not be loaded"):
        data.load_cifar10(str(tmp_path), download=False)


def test_to_unit_range():
    out = data.to_unit_range(torch.tensor([-1.0, 0.0, 1.0, 3.0]))
    assert torch.equal(out, torch.tensor([0.0, 0.5, 1.0, 1.0]))
