"""Tests for gwf_tutorial.nets: shapes, dtypes, the formulas of each network, identity
initialisations, Gaussian push-forwards and log-determinants of the exact map families."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gwf_tutorial.nets import ACTIVATIONS, MLP, AffineMap, ResidualMLP, Translation, make_activation

F64 = torch.float64


def test_activations_match_their_formulas():
    u = torch.linspace(-3, 3, 13, dtype=F64)
    expected = {
        "silu": u * torch.sigmoid(u),
        "relu": u.clamp_min(0),
        "leaky_relu": torch.where(u > 0, u, 0.2 * u),
        "elu": torch.where(u > 0, u, torch.expm1(u)),
        "gelu": F.gelu(u),
        "tanh": torch.tanh(u),
        "softplus": torch.log1p(torch.exp(u)),
    }
    assert set(expected) == set(ACTIVATIONS)
    for name, value in expected.items():
        torch.testing.assert_close(make_activation(name)(u), value)
    with pytest.raises(ValueError, match="activation"):
        make_activation("swish")
    with pytest.raises(TypeError, match="activation"):
        make_activation(None)


def test_mlp_is_the_composition_of_its_layers():
    torch.manual_seed(0)
    net = MLP(3, 2, hidden=5, depth=2, activation="tanh", dtype=F64)
    x = torch.randn(4, 3, dtype=F64)
    lins = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in lins] == [(3, 5), (5, 5), (5, 2)]
    h = torch.tanh(x @ lins[0].weight.T + lins[0].bias)
    h = torch.tanh(h @ lins[1].weight.T + lins[1].bias)
    torch.testing.assert_close(net(x), h @ lins[2].weight.T + lins[2].bias)
    assert net(x).dtype == F64
    linear = MLP(3, 2, depth=0)  # a single affine layer
    assert len([m for m in linear.modules() if isinstance(m, nn.Linear)]) == 1
    with pytest.raises(ValueError, match="x must have shape"):
        net(torch.randn(4, 2, dtype=F64))
    with pytest.raises(TypeError, match="x must be"):
        net([[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="depth"):
        MLP(3, 2, depth=-1)
    with pytest.raises(ValueError, match="hidden"):
        MLP(3, 2, hidden=0)
    with pytest.raises(TypeError, match="in_dim"):
        MLP(2.5, 2)


def test_residual_mlp_formula_identity_init_and_skip():
    torch.manual_seed(0)
    x = torch.randn(6, 2, dtype=F64)
    net = ResidualMLP(2, hidden=4, n_blocks=1, zero_init_last=True, dtype=F64)
    torch.testing.assert_close(net(x), x)  # T = Id at initialisation
    # the formula, with a non-zero output layer: h0 = W_in x; h1 = h0 + W2 s(W1 s(h0)); T = x + W_out s(h1)
    nn.init.normal_(net.out.weight)
    s = torch.nn.functional.silu
    block = net.blocks[0].body
    h0 = x @ net.inp.weight.T + net.inp.bias
    h1 = h0 + (s(s(h0) @ block[1].weight.T + block[1].bias) @ block[3].weight.T + block[3].bias)
    torch.testing.assert_close(net(x), x + s(h1) @ net.out.weight.T + net.out.bias)
    # latent dimension different from the output: no skip; zero init gives T = 0
    gen = ResidualMLP(3, hidden=4, n_blocks=2, in_dim=5, zero_init_last=True, dtype=F64)
    z = torch.randn(6, 5, dtype=F64)
    assert gen(z).shape == (6, 3) and not gen.skip
    torch.testing.assert_close(gen(z), torch.zeros(6, 3, dtype=F64))
    assert ResidualMLP(2, n_blocks=0)(x.float()).shape == (6, 2)
    assert not ResidualMLP(2, skip=False).skip
    with pytest.raises(ValueError, match="n_blocks"):
        ResidualMLP(2, n_blocks=-1)


def _moment_matched(n, mean, cov, seed):
    z = torch.randn(n, mean.shape[0], generator=torch.Generator().manual_seed(seed), dtype=F64)
    z = z - z.mean(0)
    z = torch.linalg.solve_triangular(torch.linalg.cholesky(z.T @ z / n), z.T, upper=False).T
    return mean + z @ torch.linalg.cholesky(cov).T


def test_affine_map_push_gaussian_and_log_det():
    T = AffineMap(2, dtype=F64)
    x = torch.randn(5, 2, dtype=F64)
    torch.testing.assert_close(T(x), x)  # identity at initialisation
    with torch.no_grad():
        T.A.copy_(torch.tensor([[1.5, 0.4], [-0.3, 0.7]], dtype=F64))
        T.b.copy_(torch.tensor([1.0, -2.0], dtype=F64))
    m = torch.tensor([0.2, 0.5], dtype=F64)
    S = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    # push-forward moments equal the empirical moments of pushed moment-matched samples
    z = _moment_matched(200, m, S, 0)
    mp, Sp = T.push_gaussian(m, S)
    with torch.no_grad():
        pushed = T(z)
    torch.testing.assert_close(mp, pushed.mean(0))
    torch.testing.assert_close(Sp, pushed.T.cov(correction=0))
    # log|det J| against the autograd Jacobian of the forward map
    J = torch.autograd.functional.jacobian(lambda u: T(u[None])[0], x[0])
    ld = T.log_abs_det_jacobian(x)
    assert ld.shape == (5,)
    torch.testing.assert_close(ld, torch.linalg.slogdet(J).logabsdet.expand(5))
    # differentiable in A: d log|det A| / dA = A^{-T}
    (gA,) = torch.autograd.grad(ld[0], T.A)
    torch.testing.assert_close(gA, torch.linalg.inv(T.A.detach()).T)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\) and \(\.\.\., 2, 2\), got \(1,\) and \(2, 2\)"):
        T.push_gaussian(m[:1], S)
    with pytest.raises(ValueError, match="shapes"):
        T.push_gaussian(torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64))
    with pytest.raises(ValueError, match="x must have shape"):
        T.log_abs_det_jacobian(torch.randn(3, 3, dtype=F64))


def test_fixed_affine_map_batches_and_keeps_the_graph():
    # AffineMap(A=..., b=...): buffers (no parameters) kept in the autograd graph, batched maps broadcast
    A = torch.tensor([[1.5, 0.4], [0.4, 0.7]], dtype=F64, requires_grad=True)
    b = torch.tensor([[1.0, -2.0], [0.0, 3.0]], dtype=F64)  # a batch of two maps with one A
    T = AffineMap(A=A, b=b)
    assert list(T.parameters()) == [] and T.dim == 2
    x = torch.randn(5, 2, dtype=F64)
    y = T(x)
    assert y.shape == (2, 5, 2)
    torch.testing.assert_close(y[1], x @ A.detach().T + b[1])
    (gA,) = torch.autograd.grad(y.sum(), A)
    torch.testing.assert_close(gA, 2 * x.sum(0).expand(2, 2))
    m, S = torch.tensor([0.2, 0.5], dtype=F64), torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    mp, Sp = T.push_gaussian(m.float(), S.float())  # mixed dtypes promote to float64
    assert mp.shape == (2, 2) and Sp.dtype == F64
    torch.testing.assert_close(mp, A.detach() @ m + b)
    torch.testing.assert_close(Sp, A.detach() @ S @ A.detach().T)
    with pytest.raises(ValueError, match="either dim"):
        AffineMap(2, A=A, b=b[0])
    with pytest.raises(ValueError, match="either dim"):
        AffineMap()
    with pytest.raises(ValueError, match="A and b must have shapes"):
        AffineMap(A=A, b=torch.zeros(3))
    with pytest.raises(TypeError, match="x must have dtype"):
        T(x.float())


def test_translation():
    T = Translation(3, dtype=F64)
    x = torch.randn(4, 3, dtype=F64)
    torch.testing.assert_close(T(x), x)
    with torch.no_grad():
        T.b.fill_(2.0)
    torch.testing.assert_close(T(x), x + 2.0)
    torch.testing.assert_close(T.log_abs_det_jacobian(x), torch.zeros(4, dtype=F64))
    # the metric tensor G = E[J^T J] of the family is the identity: J = I for every point
    J = torch.autograd.functional.jacobian(lambda b: x + b, T.b.detach())
    torch.testing.assert_close(J, torch.eye(3, dtype=F64).expand(4, 3, 3))
    with pytest.raises(ValueError, match="dim"):
        Translation(0)


# ---------------------------------------------------------------------------------------------
# ICNN and gradient maps
# ---------------------------------------------------------------------------------------------


def test_icnn_is_convex_and_gradient_map_starts_near_identity():
    from gwf_tutorial.nets import ICNN, GradientMap

    torch.manual_seed(0)
    psi = ICNN(2, hidden=16, depth=3, identity_init=False, dtype=torch.float64)
    with torch.no_grad():  # make the convex part large, so a failure of convexity would show
        for p in psi.parameters():
            p.add_(torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 2, generator=g, dtype=torch.float64)
    b = torch.randn(500, 2, generator=g, dtype=torch.float64)
    for t in (0.1, 0.5, 0.9):  # midpoint convexity along random chords
        assert bool((psi(t * a + (1 - t) * b) <= t * psi(a) + (1 - t) * psi(b) + 1e-10).all())
    H = torch.func.hessian(lambda x: psi(x[None])[0])(a[0])
    alpha = float(psi.alpha_min + torch.nn.functional.softplus(psi.alpha_raw))
    assert float(torch.linalg.eigvalsh(H).min()) >= alpha - 1e-9 >= 0.01  # strong convexity
    T = GradientMap(ICNN(2, hidden=16, dtype=torch.float64))
    assert torch.allclose(T(a), a, atol=1e-3)  # identity at initialisation
    # the Jacobian of T is the (symmetric) Hessian of psi
    J = torch.func.jacrev(lambda x: T(x[None])[0])(b[0])
    assert torch.allclose(J, J.T, atol=1e-10)


def test_gradient_map_trains_psi():
    from gwf_tutorial.nets import ICNN, GradientMap

    torch.manual_seed(0)
    T = GradientMap(ICNN(2, hidden=8, depth=2))
    loss = (T(torch.randn(64, 2)) - 3.0).pow(2).mean()
    loss.backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in T.parameters())


def test_icnn_bad_input():
    from gwf_tutorial.nets import ICNN, GradientMap

    with pytest.raises(ValueError, match="alpha"):
        ICNN(2, alpha=-1.0)
    with pytest.raises(TypeError, match="potential"):
        GradientMap(lambda x: x)
    with pytest.raises(ValueError):
        ICNN(2)(torch.zeros(3, 5))


# ---------------------------------------------------------------- image networks (chapter 10)


def test_conv_generator_shapes_range_and_formula():
    from gwf_tutorial.nets import ConvGenerator

    torch.manual_seed(0)
    for size, n_blocks in ((4, 1), (8, 1), (16, 2), (32, 1)):
        g = ConvGenerator(12, channels=3, size=size, width=8, blocks_per_stage=n_blocks, dtype=F64)
        x = g(torch.randn(5, 12, dtype=F64))
        assert x.shape == (5, 3 * size * size) and g.out_dim == 3 * size * size and g.in_dim == 12
        assert g.image_shape == (3, size, size) and x.dtype == F64
        assert bool((x.abs() < 1).all())  # tanh output
        n_up = {4: 0, 8: 1, 16: 2, 32: 3}[size]
        assert len(g.blocks) == max(n_up, 1) * n_blocks
    # the formula, by hand, for one upsampling block (eval mode: running statistics 0 / 1)
    g = ConvGenerator(6, channels=1, size=8, width=4, dtype=F64).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    z = torch.randn(3, 6, dtype=F64)
    bn = lambda m, h: F.batch_norm(h, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)  # noqa: E731
    up = lambda h: F.interpolate(h, scale_factor=2, mode="nearest")  # noqa: E731
    b = g.blocks[0]
    h = g.dense(z).view(3, 4, 4, 4)
    r = b.conv2(torch.relu(bn(b.bn2, b.conv1(up(torch.relu(bn(b.bn1, h)))))))
    h = up(h) + r
    expected = torch.tanh(g.conv_out(torch.relu(bn(g.bn_out, h)))).reshape(3, 64)
    torch.testing.assert_close(g(z), expected)


def test_conv_critic_shapes_formula_and_per_sample_independence():
    from gwf_tutorial.nets import ConvCritic

    torch.manual_seed(0)
    c = ConvCritic(channels=3, size=16, width=8, out_dim=5, n_down=2, n_blocks=1, dtype=F64)
    x = torch.randn(4, 3 * 16 * 16, dtype=F64)
    out = c(x)
    assert out.shape == (4, 5) and c.in_dim == 768 and c.image_shape == (3, 16, 16)
    # no normalisation: each output depends on its own image only (needed by per-sample gradient penalties)
    torch.testing.assert_close(c(x[:1]), out[:1])
    J = torch.func.jacrev(lambda v: c(v).sum(1))(x)  # (4, 4, 768)
    assert float(J[0, 1:].abs().max()) == 0.0
    # the formula: blocks, relu, sum over pixels, linear
    h = x.reshape(4, 3, 16, 16)
    for blk in c.blocks:
        h = blk(h)
    torch.testing.assert_close(out, c.out(torch.relu(h).sum(dim=(2, 3))))
    # first block by hand: conv-lrelu-conv-avgpool, plus avgpool then 1x1 conv
    b0 = c.blocks[0]
    h0 = x.reshape(4, 3, 16, 16)
    r = F.avg_pool2d(b0.conv2(F.leaky_relu(b0.conv1(h0), 0.2)), 2)
    torch.testing.assert_close(b0(h0), r + b0.skip(F.avg_pool2d(h0, 2)))
    z = ConvCritic(channels=1, size=8, width=4, out_dim=3, zero_init_last=True)
    assert float(z(torch.randn(2, 64)).abs().max()) == 0.0


def test_conv_nets_bad_input():
    from gwf_tutorial.nets import ConvCritic, ConvGenerator

    with pytest.raises(ValueError, match="size"):
        ConvGenerator(8, size=24)  # not 4 * 2**k
    with pytest.raises(ValueError, match="size"):
        ConvCritic(size=6, n_down=2)
    with pytest.raises(TypeError, match="latent_dim"):
        ConvGenerator(8.5)
    with pytest.raises(ValueError, match="z must have shape"):
        ConvGenerator(8, size=8, width=4)(torch.zeros(2, 7))
    with pytest.raises(ValueError, match="x must have shape"):
        ConvCritic(size=8, width=4)(torch.zeros(2, 3, 8, 8))


def test_conv_critic_pooling_is_folded_into_the_convolutions_exactly():
    # avg_pool2d(conv3x3(h)) = stride-2 4x4 conv with the box-smoothed kernel; avg_pool2d(conv1x1(h)) likewise
    import torch.nn.functional as F

    from gwf_tutorial.nets import ConvCritic

    torch.manual_seed(0)
    c = ConvCritic(channels=3, size=16, width=8, out_dim=2, n_down=2, n_blocks=1, dtype=F64)
    b1 = c.blocks[1]  # a downsampling block after the first
    h = torch.randn(4, 8, 8, 8, dtype=F64)
    r = F.avg_pool2d(b1.conv2(F.leaky_relu(b1.conv1(F.leaky_relu(h, 0.2)), 0.2)), 2)
    torch.testing.assert_close(b1(h), r + F.avg_pool2d(b1.skip(h), 2), rtol=1e-12, atol=1e-12)
    # channels-last memory (what the CIFAR-10 trainer uses on CUDA): the same function
    x = torch.randn(4, 3 * 16 * 16, dtype=F64)
    cl = ConvCritic(channels=3, size=16, width=8, out_dim=2, n_down=2, n_blocks=1, dtype=F64)
    cl.load_state_dict(c.state_dict())
    cl.to(memory_format=torch.channels_last)
    torch.testing.assert_close(cl(x), c(x), rtol=1e-12, atol=1e-12)


def test_forward_refuses_other_dtypes_except_under_autocast():
    """float16 / bfloat16 / int64 / float64 into a float32 network: a TypeError naming the argument and
    the dtype expected, at the entry (not deep in a matrix product); torch.autocast casts by itself."""
    from gwf_tutorial.nets import ICNN, ConvCritic, ConvGenerator

    torch.manual_seed(0)
    nets = [(MLP(2, 2, 8, 1), "x", 2), (ResidualMLP(2, 8, 1), "x", 2), (ICNN(2, 8, 1), "x", 2),
            (AffineMap(2), "x", 2), (Translation(2), "x", 2), (ConvGenerator(4, 1, 8, 8), "z", 4),
            (ConvCritic(1, 8, 8, n_down=1, n_blocks=0), "x", 64)]  # fmt: skip
    for net, name, d in nets:
        x = torch.randn(3, d)
        net(x)
        for dt in (torch.float16, torch.bfloat16, torch.int64, torch.float64):
            with pytest.raises(TypeError, match=rf"^{name} must have dtype torch.float32 .* got {dt}"):
                net(x.to(dt))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MLP(2, 2, 8, 1)(torch.randn(3, 2, dtype=torch.bfloat16)).shape == (3, 2)


def test_mlp_out_activation_is_applied_last_and_keeps_the_initial_weights():
    torch.manual_seed(0)
    plain = MLP(3, 4, hidden=8, depth=2)
    torch.manual_seed(0)
    squashed = MLP(3, 4, hidden=8, depth=2, out_activation="tanh")
    x = 3 * torch.randn(16, 3)
    torch.testing.assert_close(squashed(x), torch.tanh(plain(x)))
    assert squashed(100 * x).abs().max() <= 1.0
    with pytest.raises(ValueError, match="activation"):
        MLP(3, 4, out_activation="sigmoidal")
