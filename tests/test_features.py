"""Tests of gwf_tutorial.features: the digits classifier, class coverage and the Fréchet distance
in its features (chapter 9). One classifier is trained once per module (about 2 s on one thread)."""

from __future__ import annotations

import pytest
import torch

from gwf_tutorial import data, features, gaussian, metrics


@pytest.fixture(scope="module")
def digits():
    x_train, y_train = data.load_digits("train")
    x_test, y_test = data.load_digits("test")
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def trained(digits):
    x_train, y_train, x_test, y_test = digits
    return features.train_classifier(
        x_train, y_train, test_images=x_test, test_labels=y_test, n_iters=300, progress=False
    )


def test_classifier_learns_the_digits_quickly(trained, digits):
    assert trained.test_accuracy > 0.9
    assert trained.train_accuracy >= trained.test_accuracy - 0.01
    # the loss went down: from about log(10) = 2.3 to well below 0.5
    assert trained.loss[0] > 1.5 and sum(trained.loss[-20:]) / 20 < 0.5
    # accuracy recomputed by hand from the logits
    _, _, x_test, y_test = digits
    with torch.no_grad():
        acc = float((trained.net.logits(x_test).argmax(1) == y_test).double().mean())
    assert acc == pytest.approx(trained.test_accuracy, abs=1e-12)


def test_training_is_seeded(digits):
    x_train, y_train, _, _ = digits
    a = features.train_classifier(x_train[:300], y_train[:300], n_iters=20, seed=3, progress=False)
    b = features.train_classifier(x_train[:300], y_train[:300], n_iters=20, seed=3, progress=False)
    c = features.train_classifier(x_train[:300], y_train[:300], n_iters=20, seed=4, progress=False)
    assert a.loss == b.loss and a.loss != c.loss
    assert a.test_accuracy is None
    assert all(torch.equal(p, q) for p, q in zip(a.net.parameters(), b.net.parameters()))


def test_features_shapes_and_flat_inputs(trained, digits):
    net = trained.net
    x = digits[2][:7]
    f = net(x)
    assert f.shape == (7, net.num_features) and isinstance(net.num_features, int)
    assert torch.equal(net(x.reshape(7, 64)), f)
    assert torch.equal(net.features(x), f)
    assert net.logits(x).shape == (7, 10)
    labels, conf = net.predict(x)
    assert labels.dtype == torch.int64 and bool(((conf > 0.1) & (conf <= 1)).all())


def test_coverage_of_real_test_digits_is_complete_and_balanced(trained, digits):
    _, _, x_test, y_test = digits
    cov = features.class_coverage(trained.net, x_test)
    assert cov.classes_hit == 10 and cov.n_classes == 10
    # the test split is balanced (TV of the true labels < 0.01); a > 90% accurate classifier moves
    # at most ~10% of the mass, so TV <= 0.01 + 0.1; measured about 0.02
    true_tv = 0.5 * float((torch.bincount(y_test, minlength=10).double() / len(y_test) - 0.1).abs().sum())
    assert true_tv < 0.01 and cov.tv < 0.05
    assert cov.shares.sum().item() == pytest.approx(1.0) and int(cov.counts.sum()) == len(y_test)
    assert cov.confident_fraction > 0.85


def test_coverage_of_a_single_class_is_one_class(trained):
    x_all, y_all = data.load_digits("all")
    threes = x_all[y_all == 3]  # 183 images
    cov = features.class_coverage(trained.net, threes.reshape(len(threes), 64))
    assert cov.classes_hit == 1
    assert int(cov.counts.argmax()) == 3
    assert cov.tv == pytest.approx(0.9, abs=0.03)  # 1 - 1/K for a single class


def test_coverage_counts_by_hand():
    class Fixed(torch.nn.Module):  # a "classifier" that predicts given labels
        n_classes = 4
        image_shape = (1, 2, 2)

        def predict(self, x):
            lab = x.reshape(len(x), 4)[:, 0].long()
            return lab, torch.ones(len(x))

    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 19 + [3] * 1)
    x = labels.double()[:, None].repeat(1, 4)
    cov = features.class_coverage(Fixed(), x)
    assert cov.counts.tolist() == [50, 30, 19, 1]
    # hit: count >= max(1, 0.2 * 100 / 4 = 5): classes 0, 1, 2
    assert cov.classes_hit == 3
    assert cov.tv == pytest.approx(0.5 * (0.25 + 0.05 + 0.06 + 0.24))


def test_frechet_distance_real_vs_real_much_smaller_than_real_vs_noise(trained, digits):
    x_train, _, x_test, _ = digits
    net = trained.net
    real = features.image_scores(net, x_train[:450], x_test)
    noise = torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fake = features.image_scores(net, noise, x_test)
    blurred = features.image_scores(
        net,
        x_train[:450].mean(0, keepdim=True).expand(450, 1, 8, 8)
        + 0.1 * torch.randn(450, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
        x_test,
    )
    assert real.frechet > 0
    assert fake.frechet > 30 * real.frechet and blurred.frechet > 30 * real.frechet
    assert real.n == 450 and real.coverage.classes_hit == 10


def test_frechet_distance_is_bures_w2_of_the_feature_gaussians(trained, digits):
    _, _, x_test, _ = digits
    net = trained.net
    a, b = x_test[:200], x_test[200:]
    fd = features.image_scores(net, a, b).frechet
    with torch.no_grad():
        fa, fb = net(a).double(), net(b).double()
    ref = gaussian.w2_squared(
        fb.mean(0),
        torch.cov(fb.T) + 1e-9 * torch.eye(64, dtype=torch.float64),
        fa.mean(0),
        torch.cov(fa.T) + 1e-9 * torch.eye(64, dtype=torch.float64),
    )
    assert fd == pytest.approx(float(ref), rel=2e-3, abs=1e-3)
    assert metrics.frechet_distance(b, a, net) == pytest.approx(fd, rel=1e-9)


def test_nearest_neighbor_ratio_detects_copies(digits, trained):
    x_train, _, x_test, _ = digits
    # copies of training images: distance 0 to the training set
    assert features.nearest_neighbor_ratio(x_train[:300], x_train, x_test) == 0.0
    # fresh real images (a half of the test split against the other half as reference): about 1
    r = features.nearest_neighbor_ratio(x_test[:225], x_train, x_test[225:])
    assert 0.8 < r < 1.25
    # pixel noise lies far off the data
    noise = torch.rand(300, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert features.nearest_neighbor_ratio(noise, x_train, x_test) > 3
    # by hand in one dimension: fake at distance 2, reference at distance 0.5 from train {0, 10}
    t = torch.tensor([[0.0], [10.0]])
    assert features.nearest_neighbor_ratio(torch.tensor([[2.0], [8.0]]), t, torch.tensor([[0.5]])) == 4.0
    s = features.image_scores(trained.net, x_train[:300], x_test, train=x_train)
    assert s.nn_ratio == 0.0 and features.image_scores(trained.net, x_test, x_train).nn_ratio is None


def test_bad_input(trained, digits):
    x_train, y_train, _, _ = digits
    net = trained.net
    with pytest.raises(ValueError, match="images must have shape"):
        features.train_classifier(torch.zeros(5, 3, 8, 8), torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be an integer"):
        features.train_classifier(x_train[:5], torch.zeros(5))
    with pytest.raises(ValueError, match="labels must have shape"):
        features.train_classifier(x_train[:5], y_train[:4])
    with pytest.raises(ValueError, match="labels must lie"):
        features.train_classifier(x_train[:5], torch.full((5,), 12), n_classes=10)
    with pytest.raises(ValueError, match="together"):
        features.train_classifier(x_train[:5], y_train[:5], test_images=x_train[:5])
    with pytest.raises(ValueError, match="n_iters"):
        features.train_classifier(x_train[:5], y_train[:5], n_iters=0)
    with pytest.raises(ValueError, match="NaN"):
        features.class_coverage(net, torch.full((3, 64), float("nan")))
    with pytest.raises(ValueError, match="min_fraction"):
        features.class_coverage(net, x_train[:5], min_fraction=0.0)
    with pytest.raises(ValueError, match="confidence"):
        features.class_coverage(net, x_train[:5], confidence=1.0)
    with pytest.raises(TypeError, match="predict"):
        features.class_coverage(object(), x_train[:5])
    with pytest.raises(TypeError, match="DigitsClassifier"):
        features.image_scores(torch.nn.Identity(), x_train[:5], x_train[:5])
    with pytest.raises(ValueError, match="at least 2"):
        features.image_scores(net, x_train[:1], x_train[:5])
    with pytest.raises(ValueError, match=r"x must have shape"):
        net(torch.zeros(2, 63))
    with pytest.raises(ValueError, match="n_classes"):
        features.DigitsClassifier(n_classes=1)
    with pytest.raises(ValueError, match="same number of pixels"):
        features.nearest_neighbor_ratio(x_train[:3], x_train, torch.zeros(3, 10))
    with pytest.raises(TypeError, match="train must be a floating"):
        features.nearest_neighbor_ratio(x_train[:3], y_train, x_train[:3])
