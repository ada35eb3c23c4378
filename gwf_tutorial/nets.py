"""Neural networks of the methods: MLPs and maps for low-dimensional problems, convolutional nets for images.
They hold no loss and no training loop. Every network maps rows, ``forward(x)`` from ``(n, in_dim)`` to ``(n,
out_dim)``; images travel flat (``d = channels * size * size``, channel-major, the order of ``x.reshape(n,
-1)``), so every objective applies unchanged. ``activation`` is a name for :func:`make_activation`; ``dtype``
is the parameter dtype (default torch's), which inputs must have (checked in ``forward``, except under
``torch.autocast``).

Used in: chapters 4-10.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gwf_tutorial._validation import as_tensor, check_choice, check_dtype_like, check_int, check_positive

__all__ = ["ACTIVATIONS", "make_activation", "MLP", "ResidualMLP", "ICNN", "GradientMap", "AffineMap",
           "Translation", "ConvGenerator", "ConvCritic", "Autocast"]  # fmt: skip

#: Activation names accepted by the networks of this module.
ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.2), "elu": nn.ELU,
               "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus}  # fmt: skip


def make_activation(activation: str) -> nn.Module:
    """An elementwise activation module from its name, a key of :data:`ACTIVATIONS` (leaky ReLU: slope 0.2).

    Used in: :class:`~gwf_tutorial.nets.MLP`, :class:`~gwf_tutorial.features.DigitsClassifier`.
    """
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a string, got {type(activation).__name__}")
    return ACTIVATIONS[check_choice(activation, "activation", ACTIVATIONS)]()


def _zero_(layer: nn.Module) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)


def _check_input(x: Tensor, in_dim: int, weight: Tensor, name: str = "x", batched: bool = False) -> None:
    """Shape ``(n, in_dim)`` (``(..., n, in_dim)`` if ``batched``) and the dtype of ``weight``; no finiteness
    check (it would synchronise a GPU)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if (x.ndim < 2 if batched else x.ndim != 2) or x.shape[-1] != in_dim:
        raise ValueError(f"{name} must have shape ({'..., ' * batched}n, {in_dim}), got {tuple(x.shape)}")
    check_dtype_like(x, weight, name)


class MLP(nn.Module):
    r"""Multilayer perceptron, ``depth`` hidden layers of width ``hidden`` (``depth=0``: one linear layer),
    :math:`h_0 = x`, :math:`h_{l} = \sigma(W_l h_{l-1} + b_l)` (:math:`l \le L`), :math:`\mathrm{MLP}(x) =
    W_{L+1} h_L + b_{L+1}`; ``out_activation`` (a name of :data:`ACTIVATIONS`, e.g. ``"tanh"`` for pixels in
    :math:`[-1, 1]`) is applied to the output when given.

    Used in: chapters 4, 7, 8 and 9.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, activation: str = "silu",
                 *, out_activation: str | None = None, dtype: torch.dtype | None = None) -> None:  # fmt: skip
        super().__init__()
        self.in_dim, self.out_dim = check_int(in_dim, "in_dim"), check_int(out_dim, "out_dim")
        hidden, depth = check_int(hidden, "hidden"), check_int(depth, "depth", min_value=0)
        make_activation(activation)  # validates the name
        layers: list[nn.Module] = []
        width = self.in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden, dtype=dtype), make_activation(activation)]
            width = hidden
        layers.append(nn.Linear(width, self.out_dim, dtype=dtype))
        if out_activation is not None:
            layers.append(make_activation(out_activation))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, self.net[0].weight)
        return self.net(x)


class _ResidualBlock(nn.Module):
    """``h + W2 act(W1 act(h))`` (pre-activation residual block)."""

    def __init__(self, hidden: int, activation: str, dtype: torch.dtype | None) -> None:
        super().__init__()
        act, linear = make_activation, lambda: nn.Linear(hidden, hidden, dtype=dtype)
        self.body = nn.Sequential(act(activation), linear(), act(activation), linear())

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ResidualMLP(nn.Module):
    r"""Residual MLP (the S-JKO toy network, Choi et al. 2024), ``(n, in_dim) -> (n, dim)``, :math:`h_0 =
    W_{\mathrm{in}} x + b_{\mathrm{in}}`, :math:`h_{j} = h_{j-1} + W_{j,2}\,\sigma(W_{j,1}\,\sigma(h_{j-1}) +
    b_{j,1}) + b_{j,2}`, :math:`T(x) = [x +]\ W_{\mathrm{out}}\,\sigma(h_J) + b_{\mathrm{out}}`, with
    :math:`J` = ``n_blocks`` and the skip ``x +`` when ``skip`` and ``in_dim == dim``; ``zero_init_last``
    starts the output layer at zero (:math:`T = \mathrm{Id}`).

    Used in: chapters 4, 5 and 6.
    """

    def __init__(self, dim: int, hidden: int = 128, n_blocks: int = 3, activation: str = "silu",
                 in_dim: int | None = None, *, zero_init_last: bool = False, skip: bool = True,
                 dtype: torch.dtype | None = None) -> None:  # fmt: skip
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.in_dim = self.dim if in_dim is None else check_int(in_dim, "in_dim")
        hidden, n_blocks = check_int(hidden, "hidden"), check_int(n_blocks, "n_blocks", min_value=0)
        self.skip = bool(skip) and self.in_dim == self.dim
        self.inp = nn.Linear(self.in_dim, hidden, dtype=dtype)
        self.blocks = nn.Sequential(*[_ResidualBlock(hidden, activation, dtype) for _ in range(n_blocks)])
        self.act = make_activation(activation)
        self.out = nn.Linear(hidden, self.dim, dtype=dtype)
        if zero_init_last:
            _zero_(self.out)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, self.inp.weight)
        n = self.out(self.act(self.blocks(self.inp(x))))
        return x + n if self.skip else n


class ICNN(nn.Module):
    r"""Input-convex neural network (Amos et al. 2017; JKO-ICNN, Mokrov et al. 2021): a scalar potential
    ``(n, d) -> (n,)``, strongly convex in its input: :math:`u_1 = \sigma(W^x_0 x + b_0)`, :math:`u_{l+1} =
    \sigma(W^z_l u_l + W^x_l x + b_l)`, :math:`\psi(x) = \tfrac{\alpha}{2}|x|^2 + w^\top u_L`, with
    :math:`W^z_l, w \ge 0` (softplus of free weights), :math:`\sigma` = softplus, a learned :math:`\alpha \ge`
    ``alpha_min`` :math:`> 0`; ``identity_init`` starts at :math:`\nabla\psi \approx \alpha x`.

    Used in: chapter 4.
    """

    def __init__(self, dim: int, hidden: int = 64, depth: int = 3, *, alpha: float = 1.0,
                 alpha_min: float = 0.01, identity_init: bool = True, dtype: torch.dtype | None = None
                 ) -> None:  # fmt: skip
        super().__init__()
        self.dim, hidden = check_int(dim, "dim"), check_int(hidden, "hidden")
        depth = check_int(depth, "depth")
        alpha_min, alpha = check_positive(alpha_min, "alpha_min"), check_positive(alpha, "alpha")
        if not alpha > alpha_min:
            raise ValueError(f"alpha must be larger than alpha_min={alpha_min}, got {alpha!r}")
        self.alpha_min = float(alpha_min)
        excess = torch.tensor(float(alpha) - self.alpha_min, dtype=dtype)
        self.alpha_raw = nn.Parameter(excess + torch.log(-torch.expm1(-excess)))  # softplus^{-1}
        self.x_layers = nn.ModuleList([nn.Linear(self.dim, hidden, dtype=dtype) for _ in range(depth)])
        z0 = [torch.randn(hidden, hidden, dtype=dtype) / hidden - 2.0 for _ in range(depth - 1)]
        self.z_weights = nn.ParameterList([nn.Parameter(w) for w in z0])
        self.w_out = nn.Parameter(torch.full((hidden,), -10.0 if identity_init else 0.0, dtype=dtype))
        self.act = nn.Softplus()

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim, self.x_layers[0].weight)
        u = self.act(self.x_layers[0](x))
        for Wz, layer in zip(self.z_weights, self.x_layers[1:]):
            u = self.act(u @ nn.functional.softplus(Wz).T + layer(x))
        alpha = self.alpha_min + nn.functional.softplus(self.alpha_raw)
        return 0.5 * alpha * (x * x).sum(-1) + u @ nn.functional.softplus(self.w_out)


class GradientMap(nn.Module):
    r"""The map :math:`T(x) = \nabla\psi(x)`, ``(n, d) -> (n, d)``, of a scalar ``potential`` (an
    :class:`ICNN`) by autograd with ``create_graph=True``; for convex :math:`\psi`, a Brenier map.

    Used in: chapter 4.
    """

    def __init__(self, potential: nn.Module) -> None:
        super().__init__()
        if not isinstance(potential, nn.Module):
            raise TypeError(f"potential must be an nn.Module, got {type(potential).__name__}")
        self.potential = potential

    def forward(self, x: Tensor) -> Tensor:
        with torch.enable_grad():
            xx = x if x.requires_grad else x.detach().requires_grad_(True)
            psi = self.potential(xx)
            if psi.shape != xx.shape[:1]:
                raise ValueError(f"potential must map (n, d) to (n,), got {tuple(psi.shape)}")
            (grad,) = torch.autograd.grad(psi.sum(), xx, create_graph=True)
        return grad


class AffineMap(nn.Module):
    r"""Affine map on rows, :math:`T(x) = x A^\top + b`, with :math:`T_\# N(m, S) = N(A m + b,\ A S A^\top)`.
    ``AffineMap(d)`` is trainable, ``A`` ``(d, d)`` and ``b`` ``(d,)`` parameters starting at the identity
    (exact for Gaussian JKO steps); ``AffineMap(A=A, b=b)`` holds given tensors as buffers, kept in their
    autograd graph, batches ``(..., d, d)``, ``(..., d)`` allowed: the Monge and Gaussian JKO maps.

    Used in: chapters 1, 4, 5 and 6; :func:`~gwf_tutorial.gaussian.monge_map`.
    """

    def __init__(self, dim: int | None = None, *, A=None, b=None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if (dim is None) == (A is None):
            raise ValueError("AffineMap needs either dim (a trainable map) or A and b (a fixed map)")
        if A is None:
            self.dim = check_int(dim, "dim")
            self.A = nn.Parameter(torch.eye(self.dim, dtype=dtype))
            self.b = nn.Parameter(torch.zeros(self.dim, dtype=dtype))
            return
        A, b = as_tensor(A, "A", dtype=dtype), as_tensor(b, "b", dtype=dtype)
        if A.ndim < 2 or A.shape[-1] != A.shape[-2] or b.ndim < 1 or b.shape[-1] != A.shape[-1]:
            raise ValueError(f"A and b must have shapes (..., d, d) and (..., d), got {A.shape}, {b.shape}")
        self.dim = A.shape[-1]
        self.register_buffer("A", A)
        self.register_buffer("b", b)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim, self.A, batched=self.A.ndim > 2 or self.b.ndim > 1)
        return x @ self.A.mT + (self.b if self.b.ndim == 1 else self.b.unsqueeze(-2))

    def push_gaussian(self, mean, cov) -> tuple[Tensor, Tensor]:
        """Image ``(A m + b, A S A^T)`` of :math:`N(m, S)`, ``mean (..., d)``, ``cov (..., d, d)``; batches
        broadcast, differentiable in ``A`` and ``b``; shapes are checked, values not (training loops)."""
        mean, cov, d = as_tensor(mean, "mean"), as_tensor(cov, "cov"), self.dim
        if mean.ndim < 1 or mean.shape[-1] != d or cov.ndim < 2 or tuple(cov.shape[-2:]) != (d, d):
            got = f"{tuple(mean.shape)} and {tuple(cov.shape)}"
            raise ValueError(f"mean and cov must have shapes (..., {d}) and (..., {d}, {d}), got {got}")
        dt = torch.promote_types(torch.promote_types(mean.dtype, cov.dtype), self.A.dtype)
        A, b, mean, cov = self.A.to(dt), self.b.to(dt), mean.to(dt), cov.to(dt)
        Am = A @ mean if mean.ndim == 1 else (A @ mean.unsqueeze(-1)).squeeze(-1)
        return Am + b, A @ cov @ A.mT

    def log_abs_det_jacobian(self, x: Tensor) -> Tensor:
        r""":math:`\log|\det A|` repeated for the ``n`` rows of ``x``, shape ``(n,)``."""
        _check_input(x, self.dim, self.A)
        return torch.linalg.slogdet(self.A).logabsdet.expand(x.shape[0])


class Translation(nn.Module):
    """Translation :math:`T(x) = x + b`, ``b = 0`` at first; its projected-flow metric tensor is the identity.

    Used in: chapters 5 and 6.
    """

    def __init__(self, dim: int, *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.b = nn.Parameter(torch.zeros(self.dim, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim, self.b)
        return x + self.b

    def log_abs_det_jacobian(self, x: Tensor) -> Tensor:
        """Zeros of shape ``(n,)``: a translation preserves volume."""
        _check_input(x, self.dim, self.b)
        return self.b.new_zeros(x.shape[0])


def _check_image_size(size: int, n_halvings: int, name: str = "size") -> int:
    size = check_int(size, name, min_value=4)
    if size % (2**n_halvings) != 0:
        raise ValueError(f"{name} must be divisible by {2**n_halvings}, got {size}")
    return size


class _GeneratorBlock(nn.Module):
    """Pre-activation residual block ``u(h) + conv(relu(bn(conv(u(relu(bn(h)))))))``, ``u``: 2x upsampling."""

    def __init__(self, width: int, upsample: bool, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.upsample = bool(upsample)
        self.bn1 = nn.BatchNorm2d(width, dtype=dtype)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, dtype=dtype)
        self.bn2 = nn.BatchNorm2d(width, dtype=dtype)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, dtype=dtype)

    def _up(self, h: Tensor) -> Tensor:
        return nn.functional.interpolate(h, scale_factor=2, mode="nearest") if self.upsample else h

    def forward(self, h: Tensor) -> Tensor:
        r = self.conv1(self._up(torch.relu(self.bn1(h))))
        r = self.conv2(torch.relu(self.bn2(r)))
        return self._up(h) + r


class ConvGenerator(nn.Module):
    r"""Residual convolutional generator (GWF's "Small-Net"), ``(n, latent_dim) -> (n, channels * size *
    size)`` in ``[-1, 1]``: :math:`h_0 = \mathrm{reshape}_{w \times 4 \times 4}(W z + b)`, :math:`h_{j} =
    U(h_{j-1}) + C_2\,\sigma(B_2\, C_1\, U(\sigma(B_1 h_{j-1})))`, :math:`G(z) =
    \mathrm{flatten}(\tanh(C_{\mathrm{out}}\,\sigma(B\, h_J)))`, with :math:`U` a 2x upsampling in the first
    of ``blocks_per_stage`` blocks of each of the :math:`\log_2(\mathtt{size}/4)` stages, :math:`C` 3x3
    convolutions, :math:`B` batch norms, :math:`\sigma` = ReLU; the skip is the upsampled input (SNGAN-style).

    Used in: chapter 10.
    """

    def __init__(self, latent_dim: int = 192, channels: int = 3, size: int = 32, width: int = 256,
                 blocks_per_stage: int = 1, *, dtype: torch.dtype | None = None) -> None:  # fmt: skip
        super().__init__()
        self.in_dim, channels = check_int(latent_dim, "latent_dim"), check_int(channels, "channels")
        size = _check_image_size(size, 2)
        n_up = (size // 4).bit_length() - 1
        if 4 * 2**n_up != size:
            raise ValueError(f"size must be 4 * 2**k (4, 8, 16, 32, ...), got {size}")
        self.width = width = check_int(width, "width")
        blocks_per_stage = check_int(blocks_per_stage, "blocks_per_stage")
        self.image_shape, self.out_dim = (channels, size, size), channels * size * size
        self.dense = nn.Linear(self.in_dim, width * 16, dtype=dtype)
        stages = [(j == 0 and n_up > 0) for _ in range(max(n_up, 1)) for j in range(blocks_per_stage)]
        self.blocks = nn.Sequential(*[_GeneratorBlock(width, upsample=up, dtype=dtype) for up in stages])
        self.bn_out = nn.BatchNorm2d(width, dtype=dtype)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1, dtype=dtype)

    def forward(self, z: Tensor) -> Tensor:
        _check_input(z, self.in_dim, self.dense.weight, "z")
        h = self.dense(z).view(z.shape[0], self.width, 4, 4)
        h = self.blocks(_to_weight_format(h, self.conv_out.weight))
        return torch.tanh(self.conv_out(torch.relu(self.bn_out(h)))).reshape(z.shape[0], self.out_dim)


def _to_weight_format(h: Tensor, weight: Tensor) -> Tensor:
    """``h`` in channels-last memory when ``weight`` is (a net moved with ``memory_format=channels_last``)."""
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return h.contiguous(memory_format=torch.channels_last)
    return h


def _conv_then_pool(conv: nn.Conv2d, h: Tensor) -> Tensor:
    r"""``avg_pool2d(conv(h), 2)`` as one stride-2 convolution with the kernel smoothed by the 2x2 box,
    :math:`W'[s, t] = \tfrac14 \sum_{a, b \in \{0, 1\}} W[s - a, t - b]` (4x4 for a 3x3 ``conv``, 2x2 with
    :math:`W / 4` per tap for a 1x1): the same function, without a pooling pass."""
    w = conv.weight
    if w.shape[-1] == 1:
        return nn.functional.conv2d(h, w.expand(-1, -1, 2, 2) * 0.25, conv.bias, stride=2)
    pad = nn.functional.pad
    w4 = (pad(w, (0, 1, 0, 1)) + pad(w, (1, 0, 0, 1)) + pad(w, (0, 1, 1, 0)) + pad(w, (1, 0, 1, 0))) * 0.25
    return nn.functional.conv2d(h, w4, conv.bias, stride=2, padding=1)


class _CriticBlock(nn.Module):
    """``r(h) + s(h)``: two 3x3 convolutions (optionally pooled, :func:`_conv_then_pool`) plus a skip."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.down, self.first = bool(down), bool(first)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, dtype=dtype)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, dtype=dtype)
        self.skip = nn.Conv2d(c_in, c_out, 1, dtype=dtype) if (down or c_in != c_out) else None

    def forward(self, h: Tensor) -> Tensor:
        act = nn.functional.leaky_relu
        r = h if self.first else act(h, 0.2)  # no activation on raw images
        r = act(self.conv1(r), 0.2)
        r = _conv_then_pool(self.conv2, r) if self.down else self.conv2(r)
        if self.down and self.first:  # pool the (3-channel) image, then the 1x1 convolution
            return r + self.skip(nn.functional.avg_pool2d(h, 2))
        if self.down:
            return r + _conv_then_pool(self.skip, h)
        return r + (h if self.skip is None else self.skip(h))


class ConvCritic(nn.Module):
    r"""Residual convolutional critic (GWF's "Small-Net"), potential or embedding, ``(n, channels * size *
    size) -> (n, out_dim)``: :math:`h_j = P(C_2\,\sigma(C_1\,\sigma(h_{j-1}))) + S(h_{j-1})`, :math:`D(x) = W
    \sum_{\text{pixels}} \mathrm{relu}(h_J) + b`, with :math:`\sigma` the leaky ReLU (0.2), :math:`P` a 2x
    average pooling in the ``n_down`` first blocks and none in the ``n_blocks`` others, :math:`S` the skip; no
    normalisation, so gradient penalties apply per sample. ``out_dim = 128`` with ``zero_init_last`` is the
    learned MMD kernel's embedding.

    Used in: chapter 10.
    """

    def __init__(self, channels: int = 3, size: int = 32, width: int = 256, out_dim: int = 1, n_down: int = 2,
                 n_blocks: int = 2, *, zero_init_last: bool = False, dtype: torch.dtype | None = None
                 ) -> None:  # fmt: skip
        super().__init__()
        channels, n_down = check_int(channels, "channels"), check_int(n_down, "n_down")
        size, width = _check_image_size(size, n_down), check_int(width, "width")
        self.out_dim, n_blocks = check_int(out_dim, "out_dim"), check_int(n_blocks, "n_blocks", min_value=0)
        self.image_shape, self.in_dim = (channels, size, size), channels * size * size
        blocks = [_CriticBlock(channels, width, down=True, first=True, dtype=dtype)]
        blocks += [_CriticBlock(width, width, down=True, first=False, dtype=dtype) for _ in range(n_down - 1)]
        blocks += [_CriticBlock(width, width, down=False, first=False, dtype=dtype) for _ in range(n_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width, self.out_dim, dtype=dtype)
        if zero_init_last:
            _zero_(self.out)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, self.out.weight)
        h = x.reshape(x.shape[0], *self.image_shape)
        h = self.blocks(_to_weight_format(h, self.blocks[0].conv1.weight))
        return self.out(torch.relu(h).sum(dim=(2, 3)))


class Autocast(nn.Module):
    """``net`` run under bfloat16 autocast on CUDA (``enabled``), its output cast back to float32, so that the
    losses around it are computed in float32.

    Used in: :class:`~gwf_tutorial.cifar10.Trainer`.
    """

    def __init__(self, net: nn.Module, enabled: bool) -> None:
        super().__init__()
        self.net, self.enabled = net, bool(enabled)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return self.net(x)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            return self.net(x).float()
