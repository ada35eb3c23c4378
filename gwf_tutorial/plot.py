"""Figures, animations and widgets for the book.

The only module of :mod:`gwf_tutorial` that imports matplotlib (and ipywidgets, lazily). Every helper
takes torch tensors or arrays, draws on a given ``ax`` (or makes one) and returns the matplotlib object
it made, so a chapter can adjust titles and limits afterwards. No computation beyond what a figure
needs happens here.

Used in: every chapter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

__all__ = [
    "to_numpy",
    "scatter",
    "compare_samples",
    "density",
    "trajectories",
    "animate_frames",
    "curves",
    "vector_field",
    "grid_of_targets",
    "step_size_slider",
]

TARGET_STYLE = dict(s=4, alpha=0.35, color="0.55", linewidths=0)
PARTICLE_STYLE = dict(s=5, alpha=0.8, color="C0", linewidths=0)


def to_numpy(x) -> np.ndarray:
    """Detach and move a tensor (or array-like) to a NumPy array."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _ax(ax):
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    return ax


def _limits(*arrays, pad: float = 0.08):
    pts = np.concatenate([a[:, :2] for a in arrays if a is not None and len(a)], axis=0)
    lo, hi = np.quantile(pts, 0.005, axis=0), np.quantile(pts, 0.995, axis=0)
    span = (hi - lo).max() * (1 + 2 * pad)
    mid = (hi + lo) / 2
    return (mid[0] - span / 2, mid[0] + span / 2), (mid[1] - span / 2, mid[1] + span / 2)


def scatter(x, ax=None, *, title: str | None = None, limits=None, **style):
    """Scatter the first two coordinates of samples ``x`` of shape ``(n, d)``, equal aspect."""
    ax = _ax(ax)
    x = to_numpy(x)
    kw = dict(PARTICLE_STYLE)
    kw.update(style)
    ax.scatter(x[:, 0], x[:, 1], **kw)
    ax.set_aspect("equal")
    if limits is not None:
        ax.set_xlim(limits[0])
        ax.set_ylim(limits[1])
    if title:
        ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def compare_samples(x, y, ax=None, *, title: str | None = None, labels=("model", "target")):
    """Generated samples ``x`` (blue) over target samples ``y`` (grey), both ``(n, 2)``."""
    ax = _ax(ax)
    x, y = to_numpy(x), to_numpy(y)
    lim = _limits(x, y)
    scatter(y, ax, limits=lim, label=labels[1], **TARGET_STYLE)
    scatter(x, ax, limits=lim, title=title, label=labels[0])
    return ax


def density(log_prob: Callable[[torch.Tensor], torch.Tensor], limits, ax=None, *, n_grid=200,
            title=None, cmap="Greys"):
    """Image of ``exp(log_prob)`` on a square grid ``limits = ((x0, x1), (y0, y1))``."""
    ax = _ax(ax)
    xs = torch.linspace(*limits[0], n_grid, dtype=torch.float64)
    ys = torch.linspace(*limits[1], n_grid, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    with torch.no_grad():
        p = log_prob(pts.to(torch.get_default_dtype())).exp().reshape(n_grid, n_grid)
    im = ax.imshow(to_numpy(p), origin="lower", extent=[*limits[0], *limits[1]], cmap=cmap,
                   aspect="equal")
    if title:
        ax.set_title(title)
    return im


def trajectories(frames, ax=None, *, y=None, n_paths: int = 200, title=None, seed: int = 0):
    """Paths of ``n_paths`` particles through ``frames`` of shape ``(T, n, 2)``; start grey, end blue."""
    ax = _ax(ax)
    f = to_numpy(frames)
    if f.ndim != 3:
        raise ValueError(f"frames must have shape (T, n, d), got {f.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.choice(f.shape[1], size=min(n_paths, f.shape[1]), replace=False)
    lim = _limits(f[0], f[-1], None if y is None else to_numpy(y))
    if y is not None:
        scatter(y, ax, limits=lim, **TARGET_STYLE)
    for i in idx:
        ax.plot(f[:, i, 0], f[:, i, 1], color="C1", lw=0.6, alpha=0.5)
    ax.scatter(f[0, idx, 0], f[0, idx, 1], s=6, color="0.2", zorder=3)
    scatter(f[-1], ax, limits=lim, title=title)
    return ax


def animate_frames(frames, *, y=None, titles: Sequence[str] | None = None, interval: int = 120,
                   figsize=(4, 4)):
    """A matplotlib ``FuncAnimation`` of particles ``frames (T, n, 2)`` over target samples ``y``.

    In a notebook, display it with ``IPython.display.HTML(anim.to_jshtml())`` (works offline); close the
    figure afterwards with ``plt.close(anim._fig)`` so that it is not drawn twice.
    """
    f = to_numpy(frames)
    fig, ax = plt.subplots(figsize=figsize)
    lim = _limits(f[0], f[-1], None if y is None else to_numpy(y))
    if y is not None:
        scatter(y, ax, limits=lim, **TARGET_STYLE)
    pts = ax.scatter(f[0, :, 0], f[0, :, 1], **PARTICLE_STYLE)
    ax.set_xlim(lim[0])
    ax.set_ylim(lim[1])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    title = ax.set_title(titles[0] if titles else "")

    def update(k):
        pts.set_offsets(f[k, :, :2])
        if titles:
            title.set_text(titles[k])
        return (pts, title)

    return animation.FuncAnimation(fig, update, frames=len(f), interval=interval, blit=False)


def curves(xs, ys: dict, ax=None, *, xlabel="step", ylabel=None, logy=False, title=None,
           hline: float | None = None, hline_label: str | None = None):
    """Plot several named curves ``ys = {label: values}`` against ``xs`` (shared or per-label dict)."""
    ax = _ax(ax)
    for label, v in ys.items():
        x = xs[label] if isinstance(xs, dict) else xs
        ax.plot(to_numpy(x), to_numpy(v), label=label)
    if hline is not None:
        ax.axhline(hline, color="k", ls="--", lw=1, label=hline_label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    return ax


def vector_field(velocity: Callable[[torch.Tensor], torch.Tensor], limits, ax=None, *,
                 n_grid: int = 20, title=None, color="C3", normalize: bool = False):
    """Quiver plot of a velocity field ``velocity(points (N, 2)) -> (N, 2)`` on a grid."""
    ax = _ax(ax)
    xs = torch.linspace(*limits[0], n_grid)
    ys = torch.linspace(*limits[1], n_grid)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    v = to_numpy(velocity(pts))
    if normalize:
        v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12)
    ax.quiver(to_numpy(pts[:, 0]), to_numpy(pts[:, 1]), v[:, 0], v[:, 1], color=color,
              angles="xy", width=0.004)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def grid_of_targets(samples: dict, *, ncols: int = 5, size: float = 2.2):
    """One small scatter per named sample set ``samples = {name: (n, 2)}``; returns the figure."""
    n = len(samples)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax, (name, x) in zip(axes.flat, samples.items()):
        scatter(x, ax, title=name, s=2, alpha=0.5)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def step_size_slider(draw: Callable[[float], None], values: Sequence[float], *,
                     description: str = "step size", value: float | None = None):
    """An ipywidgets slider over ``values`` that calls ``draw(value)`` (which makes a figure).

    Returns the ``interactive`` widget. In the static book the widget shows the figure for the initial
    value; in Jupyter/Colab moving the slider redraws. Tag the cell ``nbval-ignore-output``.
    """
    import ipywidgets as widgets

    values = list(values)
    slider = widgets.SelectionSlider(options=values, value=value if value is not None else values[0],
                                     description=description, continuous_update=False)
    return widgets.interactive(draw, value=slider)
