r"""Neural networks used by the methods: MLPs for low-dimensional problems, maps for JKO steps.

The networks here hold no loss and no training loop; :mod:`gwf_tutorial.jko`,
:mod:`gwf_tutorial.sjko`, :mod:`gwf_tutorial.drifting` and :mod:`gwf_tutorial.critics` compose them.

Low-dimensional networks (this section):

- :class:`MLP` -- a plain multilayer perceptron (critics, generators, drifting toy models);
- :class:`ResidualMLP` -- the S-JKO toy network: residual blocks, optionally ``x + net(x)`` and
  zero-initialised output so that the map starts at the identity;
- :class:`ICNN` and :class:`GradientMap` -- an input-convex network :math:`\psi` and the map
  :math:`T = \nabla\psi` (Brenier maps, JKO-ICNN);
- :class:`AffineMap` and :class:`Translation` -- exact, tiny map families for tests on Gaussians.

Image networks (small convolutional generators / critics for 8x8 digits and 32x32 CIFAR-10) go in
the second section of this module.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gwf_tutorial._validation import check_dtype_like, check_int

__all__ = [
    "ACTIVATIONS",
    "make_activation",
    "MLP",
    "ResidualMLP",
    "ICNN",
    "GradientMap",
    "AffineMap",
    "Translation",
]

#: Activation names accepted by the networks of this module.
ACTIVATIONS = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


def make_activation(activation: str) -> nn.Module:
    r"""Build an activation module from its name.

    .. math::

        \mathrm{silu}(u) = u\,\sigma(u), \quad \mathrm{relu}(u) = \max(u, 0), \quad
        \mathrm{leaky\_relu}(u) = \max(u, 0.2u), \dots

    Parameters
    ----------
    activation : str
        One of ``"silu"``, ``"relu"``, ``"leaky_relu"`` (slope 0.2), ``"elu"``, ``"gelu"``,
        ``"tanh"``, ``"softplus"``.

    Returns
    -------
    torch.nn.Module
        The elementwise activation (shape preserving).

    Used in: every chapter that trains a network (4--11).
    """
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a string, got {type(activation).__name__}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation]()


def _check_input(x: Tensor, in_dim: int, weight: Tensor, name: str = "x") -> None:
    """Cheap shape and dtype check for ``forward`` (no finiteness check: it would synchronise a GPU).

    ``x`` must have the dtype of ``weight`` (a parameter of the network), so that float16 / bfloat16 /
    integer inputs fail here, with the argument named, rather than inside a matrix product; under
    ``torch.autocast`` (which casts by itself) the dtype is not checked.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{name} must have shape (n, {in_dim}), got {tuple(x.shape)}")
    check_dtype_like(x, weight, name)


class MLP(nn.Module):
    r"""Multilayer perceptron with ``depth`` hidden layers of width ``hidden``.

    .. math::

        h_0 = x, \quad h_{l} = \sigma(W_l h_{l-1} + b_l)\ (l = 1, \dots, L), \quad
        \mathrm{MLP}(x) = W_{L+1} h_L + b_{L+1},

    with :math:`L` = ``depth`` and :math:`\sigma` the activation. ``depth=0`` is a single linear
    layer.

    Parameters
    ----------
    in_dim : int
        Input dimension.
    out_dim : int
        Output dimension.
    hidden : int, default 256
        Width of every hidden layer.
    depth : int, default 3
        Number of hidden layers (``>= 0``).
    activation : str, default "silu"
        Name of the activation, see :func:`make_activation`.
    dtype : torch.dtype, optional
        Parameter dtype (``torch.float64`` for closed-form tests); default torch's default dtype.

    Notes
    -----
    ``forward(x)`` maps ``x`` of shape ``(n, in_dim)`` to shape ``(n, out_dim)``.

    Used in: chapters 4 (critics), 5, 6 (generators), 8 (drifting toy model: 3x256 SiLU), 11.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 256,
        depth: int = 3,
        activation: str = "silu",
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_int(in_dim, "in_dim")
        self.out_dim = check_int(out_dim, "out_dim")
        hidden = check_int(hidden, "hidden")
        depth = check_int(depth, "depth", min_value=0)
        make_activation(activation)  # validates the name
        layers: list[nn.Module] = []
        width = self.in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden, dtype=dtype), make_activation(activation)]
            width = hidden
        layers.append(nn.Linear(width, self.out_dim, dtype=dtype))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, self.net[0].weight)
        return self.net(x)


class _ResidualBlock(nn.Module):
    """``h + W2 act(W1 act(h))`` (pre-activation residual block)."""

    def __init__(self, hidden: int, activation: str, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            make_activation(activation),
            nn.Linear(hidden, hidden, dtype=dtype),
            make_activation(activation),
            nn.Linear(hidden, hidden, dtype=dtype),
        )

    def forward(self, h: Tensor) -> Tensor:
        return h + self.body(h)


class ResidualMLP(nn.Module):
    r"""Residual MLP, the toy network of S-JKO; a map that can start at the identity.

    .. math::

        h_0 = W_{\mathrm{in}} x + b_{\mathrm{in}}, \quad
        h_{j} = h_{j-1} + W_{j,2}\,\sigma(W_{j,1}\,\sigma(h_{j-1}) + b_{j,1}) + b_{j,2},

        N(x) = W_{\mathrm{out}}\,\sigma(h_J) + b_{\mathrm{out}}, \qquad
        T(x) = \begin{cases} x + N(x) & \text{if } \mathtt{in\_dim} = \mathtt{dim}
        \ (\text{and } \mathtt{skip}), \\ N(x) & \text{otherwise,} \end{cases}

    with :math:`J` = ``n_blocks``. With ``zero_init_last=True`` the output layer starts at zero,
    so :math:`N \equiv 0` and :math:`T = \mathrm{Id}` at initialisation (a JKO chain starting at
    the previous map).

    Parameters
    ----------
    dim : int
        Output dimension.
    hidden : int, default 128
        Width of the residual stream.
    n_blocks : int, default 3
        Number of residual blocks (``>= 0``).
    activation : str, default "silu"
        Name of the activation, see :func:`make_activation`.
    in_dim : int, optional
        Input dimension; default ``dim``.
    zero_init_last : bool, default False
        Initialise the output layer at zero (so ``T = Id`` when ``in_dim == dim``, ``T = 0``
        otherwise).
    skip : bool, default True
        Add the input to the output when ``in_dim == dim``.
    dtype : torch.dtype, optional
        Parameter dtype.

    Notes
    -----
    ``forward(x)`` maps ``(n, in_dim)`` to ``(n, dim)``.

    Used in: chapter 7 (S-JKO toy experiments), chapter 4 and 6 (parametric JKO maps).

    References
    ----------
    Choi, J., Choi, J., Kang, M. (2024). Scalable Wasserstein gradient flow for generative
    modeling through unbalanced optimal transport. ICML. (Toy networks: width 128, 3 blocks, SiLU.)
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 128,
        n_blocks: int = 3,
        activation: str = "silu",
        in_dim: int | None = None,
        *,
        zero_init_last: bool = False,
        skip: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.in_dim = self.dim if in_dim is None else check_int(in_dim, "in_dim")
        hidden = check_int(hidden, "hidden")
        n_blocks = check_int(n_blocks, "n_blocks", min_value=0)
        make_activation(activation)
        self.skip = bool(skip) and self.in_dim == self.dim
        self.inp = nn.Linear(self.in_dim, hidden, dtype=dtype)
        self.blocks = nn.Sequential(*[_ResidualBlock(hidden, activation, dtype) for _ in range(n_blocks)])
        self.act = make_activation(activation)
        self.out = nn.Linear(hidden, self.dim, dtype=dtype)
        if zero_init_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, self.inp.weight)
        n = self.out(self.act(self.blocks(self.inp(x))))
        return x + n if self.skip else n


class ICNN(nn.Module):
    r"""Input-convex neural network (Amos et al. 2017): a scalar potential convex in its input.

    .. math::

        u_1 = \sigma(W^x_0 x + b_0), \quad u_{l+1} = \sigma\big(W^z_l u_l + W^x_l x + b_l\big),
        \quad \psi(x) = \tfrac{\alpha}{2}|x|^2 + w^\top u_L,

    with :math:`W^z_l \ge 0`, :math:`w \ge 0` (stored unconstrained, made non-negative by
    ``softplus``) and :math:`\sigma` = softplus, convex and non-decreasing, so every :math:`u_l` and
    :math:`\psi` are convex in :math:`x`. The quadratic weight is learned,
    :math:`\alpha = \alpha_{\min} + \operatorname{softplus}(a) \ge \alpha_{\min} > 0`, which makes
    :math:`\psi` strongly convex, so :math:`\nabla\psi` is injective; it must be learned because
    the convex part only adds to the Hessian (:math:`\nabla^2\psi \succeq \alpha I`): a map that
    contracts mass (onto the modes of a mixture) needs a small :math:`\alpha`. By Brenier's
    theorem the optimal transport maps for the quadratic cost are exactly such gradients, which is
    why JKO-ICNN (Mokrov et al. 2021) parametrises each JKO step's map as :math:`\nabla\psi`
    (:class:`GradientMap`). With ``identity_init=True`` the output weights start near zero
    (``softplus(-10)``) and :math:`\alpha` at ``alpha``, so :math:`\nabla\psi \approx
    \alpha\,\mathrm{id}` (the identity for the default ``alpha = 1``).

    Parameters
    ----------
    dim : int
        Input dimension d.
    hidden : int, default 64
        Width of each layer.
    depth : int, default 3
        Number of hidden layers L.
    alpha : float, default 1.0
        Initial weight of the quadratic term (``> alpha_min``).
    alpha_min : float, default 0.01
        Floor of the quadratic weight (``> 0``): the strong-convexity constant.
    identity_init : bool, default True
    dtype : torch.dtype, optional

    Notes
    -----
    ``forward(x)``: ``(n, d) -> (n,)``.

    Used in: chapter 4 (the JKO-ICNN row of the method table).

    References
    ----------
    Amos, Xu, Kolter (2017). Input convex neural networks. ICML.
    Mokrov, Korotin, Li, Genevay, Solomon, Burnaev (2021). Large-scale Wasserstein gradient flows. NeurIPS.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 64,
        depth: int = 3,
        *,
        alpha: float = 1.0,
        alpha_min: float = 0.01,
        identity_init: bool = True,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        hidden = check_int(hidden, "hidden")
        depth = check_int(depth, "depth")
        for value, name in ((alpha_min, "alpha_min"), (alpha, "alpha")):
            if not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not alpha > alpha_min:
            raise ValueError(f"alpha must be larger than alpha_min={alpha_min}, got {alpha!r}")
        self.alpha_min = float(alpha_min)
        excess = torch.tensor(float(alpha) - self.alpha_min, dtype=dtype)
        self.alpha_raw = nn.Parameter(excess + torch.log(-torch.expm1(-excess)))  # softplus^{-1}
        self.x_layers = nn.ModuleList([nn.Linear(self.dim, hidden, dtype=dtype) for _ in range(depth)])
        self.z_weights = nn.ParameterList(
            [nn.Parameter(torch.randn(hidden, hidden, dtype=dtype) / hidden - 2.0) for _ in range(depth - 1)]
        )
        w0 = torch.full((hidden,), -10.0 if identity_init else 0.0, dtype=dtype)
        self.w_out = nn.Parameter(w0)
        self.act = nn.Softplus()

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim, self.x_layers[0].weight)
        u = self.act(self.x_layers[0](x))
        for Wz, layer in zip(self.z_weights, self.x_layers[1:]):
            u = self.act(u @ nn.functional.softplus(Wz).T + layer(x))
        alpha = self.alpha_min + nn.functional.softplus(self.alpha_raw)
        return 0.5 * alpha * (x * x).sum(-1) + u @ nn.functional.softplus(self.w_out)


class GradientMap(nn.Module):
    r"""The map :math:`T(x) = \nabla\psi(x)` of a scalar potential (e.g. an :class:`ICNN`).

    .. math::

        T(x) = \nabla_x \psi(x), \qquad \nabla T(x) = \nabla^2\psi(x) \succeq 0
        \ \text{for convex } \psi,

    computed with autograd and ``create_graph=True`` so that losses of :math:`T` train
    :math:`\psi`. A gradient of a strongly convex potential is the optimal transport map between
    any source and its push-forward (Brenier), and its Jacobian is a symmetric positive definite
    Hessian, so :math:`\log|\det\nabla T|` is well defined (:class:`~gwf_tutorial.jko.PushforwardKL`).

    Parameters
    ----------
    potential : nn.Module
        ``(n, d) -> (n,)``.

    Notes
    -----
    ``forward(x)``: ``(n, d) -> (n, d)``.

    Used in: chapter 4 (JKO-ICNN).
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
    r"""Affine map :math:`T(x) = A x + b`, initialised at the identity.

    .. math::

        T(x) = x A^\top + b \quad (\text{row convention}), \qquad A_0 = I_d,\ b_0 = 0.

    The push-forward of a Gaussian :math:`\mathcal N(m, S)` is :math:`\mathcal N(Am + b, ASA^\top)`,
    exposed by :meth:`push_gaussian`, which makes the family exact for Gaussian JKO tests.

    Parameters
    ----------
    dim : int
        Dimension d.
    dtype : torch.dtype, optional
        Parameter dtype.

    Notes
    -----
    ``forward(x)`` maps ``(n, d)`` to ``(n, d)``. Parameters: ``A`` of shape ``(d, d)``, ``b`` of
    shape ``(d,)``.

    Used in: chapters 2 and 4 (the parametric JKO step reproducing the exact Gaussian JKO step).
    """

    def __init__(self, dim: int, *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.A = nn.Parameter(torch.eye(self.dim, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(self.dim, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim, self.A)
        return x @ self.A.T + self.b

    def push_gaussian(self, mean: Tensor, cov: Tensor) -> tuple[Tensor, Tensor]:
        r"""Push a Gaussian forward: :math:`(m, S) \mapsto (A m + b, A S A^\top)`.

        .. math::

            T_\# \mathcal N(m, S) = \mathcal N(A m + b,\ A S A^\top).

        Parameters
        ----------
        mean : Tensor, shape (d,)
        cov : Tensor, shape (d, d)

        Returns
        -------
        mean, cov : Tensor, shapes (d,) and (d, d)
            Differentiable in ``A`` and ``b``.

        Used in: chapter 4 (exact objectives of affine JKO steps).
        """
        if mean.shape != (self.dim,) or cov.shape != (self.dim, self.dim):
            raise ValueError(
                f"mean and cov must have shapes ({self.dim},) and ({self.dim}, {self.dim}), "
                f"got {tuple(mean.shape)} and {tuple(cov.shape)}"
            )
        return self.A @ mean + self.b, self.A @ cov @ self.A.T

    def log_abs_det_jacobian(self, x: Tensor) -> Tensor:
        r"""Log-determinant of the Jacobian at each point (constant for an affine map).

        .. math::

            \log|\det \nabla T(x)| = \log|\det A|.

        Parameters
        ----------
        x : Tensor, shape (n, d)
            Points (only their number and device are used).

        Returns
        -------
        Tensor, shape (n,)
            :math:`\log|\det A|` repeated, differentiable in ``A``.

        Used in: chapter 4 (KL objective of a parametric JKO step by change of variables).
        """
        _check_input(x, self.dim, self.A)
        return torch.linalg.slogdet(self.A).logabsdet.expand(x.shape[0])


class Translation(nn.Module):
    r"""Translation :math:`T(x) = x + b`, initialised at the identity (:math:`b = 0`).

    .. math::

        T(x) = x + b.

    For this family the metric tensor of the projected Wasserstein flow is the identity
    (:math:`G(\theta) = \mathbb E[J^\top J] = I`), so projected and particle flows of the mean
    agree.

    Parameters
    ----------
    dim : int
        Dimension d.
    dtype : torch.dtype, optional
        Parameter dtype.

    Notes
    -----
    ``forward(x)`` maps ``(n, d)`` to ``(n, d)``; parameter ``b`` of shape ``(d,)``.

    Used in: chapter 6 (projected Wasserstein flows), tests.
    """

    def __init__(self, dim: int, *, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim")
        self.b = nn.Parameter(torch.zeros(self.dim, dtype=dtype))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.dim, self.b)
        return x + self.b

    def log_abs_det_jacobian(self, x: Tensor) -> Tensor:
        r"""Log-determinant of the Jacobian, zero for a translation.

        .. math::

            \log|\det \nabla T(x)| = \log|\det I| = 0.

        Parameters
        ----------
        x : Tensor, shape (n, d)

        Returns
        -------
        Tensor, shape (n,)
            Zeros in the dtype of ``b``.

        Used in: chapter 6 (projected flows of the KL divergence).
        """
        _check_input(x, self.dim, self.b)
        return self.b.new_zeros(x.shape[0])


# ---------------------------------------------------------------------------------------------
# Image networks (8x8 scikit-learn digits, 32x32 CIFAR-10): small convolutional generators and
# critics. To be added here (chapters 9 and 10); same conventions: constructor arguments
# validated with ``check_int``, ``forward`` shape-checked, ``dtype=`` accepted.
# ---------------------------------------------------------------------------------------------


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
    r"""Residual convolutional generator for images, flat in and flat out (the GWF "Small-Net").

    .. math::

        h_0 = \mathrm{reshape}_{w \times 4 \times 4}(W z + b), \qquad
        h_{j} = U(h_{j-1}) + C_2\,\sigma(B_2\, C_1\, U(\sigma(B_1 h_{j-1}))), \qquad
        G(z) = \mathrm{flatten}\big(\tanh(C_{\mathrm{out}}\,\sigma(B\, h_J))\big) \in [-1, 1]^{C H W},

    with :math:`U` a 2x nearest-neighbour upsampling in the first block of each of the
    :math:`\log_2(\mathtt{size}/4)` stages (identity in the others), :math:`C` 3x3 convolutions,
    :math:`B` batch normalisations and :math:`\sigma` = ReLU. Images flow through the library's
    ``(n, d)`` interfaces as flat vectors (``d = channels * size * size``, channel-major, the order of
    ``x.reshape(n, -1)`` for ``x`` of shape ``(n, C, H, W)``), so every objective of :mod:`~gwf_tutorial.jko`,
    :mod:`~gwf_tutorial.sjko` and :mod:`~gwf_tutorial.drifting` applies unchanged. Moved with
    ``net.to(memory_format=torch.channels_last)`` (CUDA), its activations stay channels-last.

    With the defaults (latent 192, width 256, one block per stage, 32x32 RGB) this is the generator of
    the "Small-Net" of the GWF paper, itself the OTM / S-JKO ``Generator_otm`` (a linear layer to
    256x4x4, three upsampling residual blocks, BN-ReLU-conv-tanh). Deviation: the official block adds the
    residual branch to itself (its ``bypass`` calls the same layers); here the skip is the upsampled
    input, as in SNGAN-style ResNets. ``blocks_per_stage > 1`` gives a deeper net of the same family.

    Parameters
    ----------
    latent_dim : int, default 192
        Dimension of the latent :math:`z`.
    channels : int, default 3
        Image channels :math:`C`.
    size : int, default 32
        Image height = width; ``4 * 2**k`` (4, 8, 16, 32, 64, ...).
    width : int, default 256
        Feature maps in every block.
    blocks_per_stage : int, default 1
        Residual blocks per resolution (the first one upsamples).
    dtype : torch.dtype, optional
        Parameter dtype.

    Attributes
    ----------
    in_dim, out_dim : int
        ``latent_dim`` and ``channels * size * size``.
    image_shape : tuple of int
        ``(channels, size, size)``.

    Notes
    -----
    ``forward(z)`` maps ``(n, latent_dim)`` to ``(n, channels * size * size)``; reshape with
    ``x.view(n, *net.image_shape)`` for pictures. Batch normalisation uses batch statistics in
    ``train()`` mode and running statistics in ``eval()`` mode.

    Used in: chapter 10 (CIFAR-10: parametric JKO, S-JKO, drifting).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), GWF, Small-Net (official ``networks/modelOTM/OTM.py``,
    ``--model_name otm --nz 192 --ngf 256``). Choi, J. et al. (2024), S-JKO (same network).
    Miyato, T. et al. (2018). Spectral normalization for GANs. ICLR (the ResNet generator family).
    """

    def __init__(
        self,
        latent_dim: int = 192,
        channels: int = 3,
        size: int = 32,
        width: int = 256,
        blocks_per_stage: int = 1,
        *,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_int(latent_dim, "latent_dim")
        channels = check_int(channels, "channels")
        size = _check_image_size(size, 2)
        n_up = (size // 4).bit_length() - 1
        if 4 * 2**n_up != size:
            raise ValueError(f"size must be 4 * 2**k (4, 8, 16, 32, ...), got {size}")
        width = check_int(width, "width")
        blocks_per_stage = check_int(blocks_per_stage, "blocks_per_stage")
        self.image_shape = (channels, size, size)
        self.out_dim = channels * size * size
        self.width = width
        self.dense = nn.Linear(self.in_dim, width * 16, dtype=dtype)
        blocks = []
        for _ in range(max(n_up, 1)):
            for j in range(blocks_per_stage):
                blocks.append(_GeneratorBlock(width, upsample=(j == 0 and n_up > 0), dtype=dtype))
        self.blocks = nn.Sequential(*blocks)
        self.bn_out = nn.BatchNorm2d(width, dtype=dtype)
        self.conv_out = nn.Conv2d(width, channels, 3, padding=1, dtype=dtype)

    def forward(self, z: Tensor) -> Tensor:
        _check_input(z, self.in_dim, self.dense.weight, "z")
        h = self.dense(z).view(z.shape[0], self.width, 4, 4)
        h = self.blocks(_to_weight_format(h, self.conv_out.weight))
        x = torch.tanh(self.conv_out(torch.relu(self.bn_out(h))))
        return x.reshape(z.shape[0], self.out_dim)


def _to_weight_format(h: Tensor, weight: Tensor) -> Tensor:
    """``h`` in channels-last memory when ``weight`` is (a net moved with ``memory_format=channels_last``)."""
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return h.contiguous(memory_format=torch.channels_last)
    return h


def _conv_then_pool(conv: nn.Conv2d, h: Tensor) -> Tensor:
    r"""``avg_pool2d(conv(h), 2)`` as one strided convolution (no pooling pass, 4/9 of the multiply-adds).

    .. math::

        \tfrac14\sum_{a, b \in \{0, 1\}} (W * h)[2i + a, 2j + b] = (W' *_2 h)[i, j], \qquad
        W'[s, t] = \tfrac14 \sum_{a, b \in \{0, 1\}} W[s - a, t - b]

    (:math:`W` zero outside its support): a 3x3 convolution with padding 1 followed by 2x2 average pooling
    is the stride-2 4x4 convolution with padding 1 whose kernel is :math:`W` smoothed by the 2x2 box; a 1x1
    convolution followed by the pooling is the stride-2 2x2 convolution with kernel :math:`W / 4` in each tap.
    Same function, same parameters; on a GPU its backward is a convolution instead of a pooling backward.
    """
    w = conv.weight
    if w.shape[-1] == 1:
        return nn.functional.conv2d(h, w.expand(-1, -1, 2, 2) * 0.25, conv.bias, stride=2)
    pad = nn.functional.pad
    w4 = (pad(w, (0, 1, 0, 1)) + pad(w, (1, 0, 0, 1)) + pad(w, (0, 1, 1, 0)) + pad(w, (1, 0, 1, 0))) * 0.25
    return nn.functional.conv2d(h, w4, conv.bias, stride=2, padding=1)


class _CriticBlock(nn.Module):
    """``r(h) + s(h)``: residual branch of two 3x3 convolutions (optionally average-pooled) plus skip.

    The pooling is folded into the convolution before it (:func:`_conv_then_pool`): the same function.
    """

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
        s = h
        if self.down and self.first:  # pool the (3-channel) image, then the 1x1 convolution
            s = self.skip(nn.functional.avg_pool2d(s, 2))
        elif self.down:
            s = _conv_then_pool(self.skip, s)
        elif self.skip is not None:
            s = self.skip(s)
        return r + s


class ConvCritic(nn.Module):
    r"""Residual convolutional critic / potential / embedding for images, flat in (the GWF "Small-Net").

    .. math::

        h_0 = \mathrm{reshape}_{C \times H \times W}(x), \qquad
        h_j = P\big(C_2\,\sigma(C_1\,\sigma(h_{j-1}))\big) + S(h_{j-1}), \qquad
        D(x) = W \sum_{\text{pixels}} \mathrm{relu}(h_J) + b \in \mathbb R^{\mathtt{out\_dim}},

    with :math:`\sigma` the leaky ReLU (slope 0.2; none before the first convolution), :math:`P` a
    2x average pooling in the ``n_down`` downsampling blocks (identity in the ``n_blocks`` others), and
    :math:`S` the skip (identity, or pooled 1x1 convolution). Sum pooling over pixels, then one linear
    layer. No normalisation, so it is a function of each image alone and gradient penalties (R1, WGAN-GP)
    apply per sample. Each pooling is computed inside the convolution before it (a stride-2 convolution
    with the box-smoothed kernel: the same function and parameters, no separate pooling pass). Moved with
    ``net.to(memory_format=torch.channels_last)`` (what :mod:`gwf_tutorial.cifar10` does on CUDA), the
    network keeps its activations channels-last.

    With the defaults (width 256, two downsampling blocks then two plain ones, 32x32 RGB) this is the
    discriminator of the GWF "Small-Net" (OTM ``Discriminator_otm``, whose width is the generator's
    ``ngf = 256``); ``out_dim = 1`` gives a scalar critic or potential, ``out_dim = 128`` the embedding of
    the learned MMD kernel (GWF's ``--embed_dim 128``).

    Parameters
    ----------
    channels : int, default 3
    size : int, default 32
        Image height = width, divisible by ``2**n_down``.
    width : int, default 256
        Feature maps.
    out_dim : int, default 1
        Output dimension.
    n_down : int, default 2
        Downsampling blocks (``>= 1``).
    n_blocks : int, default 2
        Further residual blocks at the lowest resolution (``>= 0``).
    zero_init_last : bool, default False
        Start the output layer at zero (an embedding that starts at 0, e.g. for
        :class:`~gwf_tutorial.critics.LearnedKernel`).
    dtype : torch.dtype, optional

    Attributes
    ----------
    in_dim : int
        ``channels * size * size``.
    image_shape : tuple of int

    Notes
    -----
    ``forward(x)`` maps ``(n, channels * size * size)`` to ``(n, out_dim)``.

    Used in: chapter 10 (critic of JKO-KL-DV, embedding of JKO-MMD, potential of S-JKO; the stand-in
    FID feature extractor is a frozen random one).

    References
    ----------
    Korba, Bonet, Caucheteux (2026), GWF, Small-Net (official ``Discriminator_otm``). Miyato, T. et al.
    (2018), the ResNet discriminator family.
    """

    def __init__(
        self,
        channels: int = 3,
        size: int = 32,
        width: int = 256,
        out_dim: int = 1,
        n_down: int = 2,
        n_blocks: int = 2,
        *,
        zero_init_last: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        channels = check_int(channels, "channels")
        n_down = check_int(n_down, "n_down")
        size = _check_image_size(size, n_down)
        width = check_int(width, "width")
        self.out_dim = check_int(out_dim, "out_dim")
        n_blocks = check_int(n_blocks, "n_blocks", min_value=0)
        self.image_shape = (channels, size, size)
        self.in_dim = channels * size * size
        blocks = [_CriticBlock(channels, width, down=True, first=True, dtype=dtype)]
        blocks += [_CriticBlock(width, width, down=True, first=False, dtype=dtype) for _ in range(n_down - 1)]
        blocks += [_CriticBlock(width, width, down=False, first=False, dtype=dtype) for _ in range(n_blocks)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(width, self.out_dim, dtype=dtype)
        if zero_init_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, self.out.weight)
        h = _to_weight_format(x.reshape(x.shape[0], *self.image_shape), self.blocks[0].conv1.weight)
        h = self.blocks(h)
        return self.out(torch.relu(h).sum(dim=(2, 3)))


__all__ += ["ConvGenerator", "ConvCritic"]
