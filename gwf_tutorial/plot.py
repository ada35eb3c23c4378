r"""Figures, animations and widgets for the book; the only module that imports matplotlib.

Every helper takes torch tensors or arrays (samples ``(n, d)``, ``d >= 2``, first two coordinates
drawn; frames ``(T, n, d)``), draws on the given ``ax`` (a new 4 x 4 in figure if None) and returns the
matplotlib object it made (the Axes unless said otherwise). ``limits``: ``((x0, x1), (y0, y1))``;
``title``: optional; ``y``: target samples drawn in grey underneath; ``style``: keywords for matplotlib.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation

from gwf_tutorial._validation import check_positive, check_seed

__all__ = ["to_numpy", "scatter", "compare_samples", "trajectories", "AnimationHTML",
           "animate_frames", "curves", "vector_field", "grid_of_targets", "step_size_slider",
           "gaussian_ellipse", "method_map", "samples_grid", "ratio_heatmap"]  # fmt: skip

TARGET_STYLE = dict(s=4, alpha=0.35, color="0.55", linewidths=0)
PARTICLE_STYLE = dict(s=5, alpha=0.8, color="C0", linewidths=0)


def to_numpy(x) -> np.ndarray:
    r"""``x`` (a tensor, detached, or an array-like) as a NumPy array on the CPU, same shape; float16 /
    bfloat16 come back as float32 (NumPy has no bfloat16).

    Used in: ``plot.curves``, ``plot.vector_field`` and the other helpers here.
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    return np.asarray(x)


def _ax(ax):
    return plt.subplots(figsize=(4, 4))[1] if ax is None else ax


def _points(x, name: str, ndim: int = 2) -> np.ndarray:
    """A ``(n, d >= 2)`` array of points (frames ``(T, n, d)`` for ``ndim=3``), or ``ValueError`` naming the
    argument."""
    a = to_numpy(x)
    if a.ndim != ndim or a.shape[-1] < 2:
        raise ValueError(f"{name} must have shape {'(T, n, d)' if ndim == 3 else '(n, d)'} with d >= 2, got "
                         f"{a.shape}")  # fmt: skip
    return a


def _limits(*arrays, pad: float = 0.08):
    pts = np.concatenate([a[:, :2] for a in arrays if a is not None and len(a)], axis=0)
    lo, hi = np.quantile(pts, 0.005, axis=0), np.quantile(pts, 0.995, axis=0)
    span, mid = max((hi - lo).max(), 1e-12) * (1 + 2 * pad), (hi + lo) / 2
    return (mid[0] - span / 2, mid[0] + span / 2), (mid[1] - span / 2, mid[1] + span / 2)


def scatter(x, ax=None, *, title: str | None = None, limits=None, **style):
    r"""Scatter the first two coordinates of samples ``x``, equal aspect, no ticks, in the particle style
    (blue, small dots) updated by ``style``.

    Used in: chapters 1, 3, 5, 7 and 8.
    """
    x, ax = _points(x, "x"), _ax(ax)
    ax.scatter(x[:, 0], x[:, 1], **(PARTICLE_STYLE | style))
    ax.set(aspect="equal", xticks=[], yticks=[])
    if limits is not None:
        ax.set(xlim=limits[0], ylim=limits[1])
    if title:
        ax.set_title(title)
    return ax


def compare_samples(x, y, ax=None, *, title: str | None = None, labels=("model", "target")):
    r"""Generated samples ``x`` (blue) over target samples ``y`` (grey) on common limits, with the legend
    ``labels``.

    Used in: chapters 3-5 and 8 (end state of the 2-D methods).
    """
    x, y = _points(x, "x"), _points(y, "y")
    ax, lim = _ax(ax), _limits(x, y)
    scatter(y, ax, limits=lim, label=labels[1], **TARGET_STYLE)
    scatter(x, ax, limits=lim, title=title, label=labels[0])
    return ax


def trajectories(frames, ax=None, *, y=None, n_paths: int = 200, title=None, seed: int = 0):
    r"""Paths of ``n_paths`` random particles (chosen by ``seed``) through ``frames``: start points dark
    grey, end points blue, paths orange.

    Used in: chapters 2, 4 and 8.
    """
    f = _points(frames, "frames", ndim=3)
    ax, rng = _ax(ax), np.random.default_rng(check_seed(seed))
    idx = rng.choice(f.shape[1], size=min(n_paths, f.shape[1]), replace=False)
    lim = _limits(f[0], f[-1], None if y is None else _points(y, "y"))
    if y is not None:
        scatter(y, ax, limits=lim, **TARGET_STYLE)
    for i in idx:
        ax.plot(f[:, i, 0], f[:, i, 1], color="C1", lw=0.6, alpha=0.5)
    ax.scatter(f[0, idx, 0], f[0, idx, 1], s=6, color="0.2", zorder=3)
    scatter(f[-1], ax, limits=lim, title=title)
    return ax


class AnimationHTML:
    r"""A rendered animation that notebooks display as HTML (JavaScript player, works offline). ``data``: the
    HTML (also ``str(anim)``, ``anim.to_jshtml()``, ``_repr_html_``); ``animation``: the ``FuncAnimation`` it
    was rendered from (figure closed), e.g. for ``.save("flow.gif")``; ``n_frames``.

    Used in: ``plot.animate_frames``.
    """

    def __init__(self, data: str, animation_: animation.FuncAnimation, n_frames: int):
        self.data, self.animation, self.n_frames = data, animation_, n_frames

    def _repr_html_(self) -> str:
        return self.data

    to_jshtml = __str__ = _repr_html_

    def __repr__(self) -> str:
        return f"<AnimationHTML: {self.n_frames} frames>"


# The network stylesheet (Font Awesome on a CDN) that matplotlib's ``to_jshtml`` links, dropped: the player's
# ``fa fa-*`` icons use the Font Awesome the book theme serves, so nothing loads from the network.
_CDN_STYLESHEET = re.compile(r'<link[^>]*href="https?://[^"]*font-awesome[^"]*"[^>]*>\s*')


def animate_frames(frames, *, y=None, titles: Sequence[str] | None = None, interval: int = 120,
                   figsize=(4, 4), html: bool = True):
    r"""Animate particles ``frames``, rendered to HTML once (``titles``: one per frame; ``interval``:
    milliseconds between frames): an :class:`AnimationHTML` (figure closed; tag the cell
    ``nbval-ignore-output``, the player's ids are random), or with ``html=False`` the ``FuncAnimation``
    itself, figure open.

    Used in: chapters 2-4 and 7 (animated particle flows).
    """
    f = _points(frames, "frames", ndim=3)
    if titles is not None and len(titles) != len(f):
        raise ValueError(f"titles must have one entry per frame ({len(f)}), got {len(titles)}")
    fig, ax = plt.subplots(figsize=figsize)
    lim = _limits(f[0], f[-1], None if y is None else _points(y, "y"))
    if y is not None:
        scatter(y, ax, limits=lim, **TARGET_STYLE)
    pts = ax.scatter(f[0, :, 0], f[0, :, 1], **PARTICLE_STYLE)
    ax.set(xlim=lim[0], ylim=lim[1], aspect="equal", xticks=[], yticks=[])
    title = ax.set_title(titles[0] if titles else "")

    def update(k):
        pts.set_offsets(f[k, :, :2])
        if titles:
            title.set_text(titles[k])
        return (pts, title)

    anim = animation.FuncAnimation(fig, update, frames=len(f), interval=interval, blit=False)
    if not html:
        return anim
    data = _CDN_STYLESHEET.sub("", anim.to_jshtml())
    plt.close(fig)
    return AnimationHTML(data, anim, len(f))


def curves(xs, ys: dict, ax=None, *, xlabel="step", ylabel=None, logy=False, title=None,
           hline: float | None = None, hline_label: str | None = None):
    r"""Several named curves ``ys`` against a shared (or per-label dict) abscissa ``xs``; ``hline``: a
    dashed horizontal reference (e.g. the finite-sample floor) labelled ``hline_label``.

    Used in: chapters 3-5, 7 and 8 (losses and metrics along training).
    """
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
    ax.legend(frameon=False, fontsize=9)
    return ax


def vector_field(velocity: Callable[[torch.Tensor], torch.Tensor], limits, ax=None, *, n_grid: int = 20,
                 title=None, color="C3", normalize: bool = False):
    r"""Quiver plot of ``velocity`` (Tensor (N, 2) -> (N, 2)) on an ``n_grid`` x ``n_grid`` grid;
    ``normalize`` draws unit arrows (directions only).

    Used in: chapters 4 and 8.
    """
    ax = _ax(ax)
    grid = [torch.linspace(*lim, n_grid) for lim in limits[:2]]
    gx, gy = torch.meshgrid(*grid, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    v = to_numpy(velocity(pts))
    if v.shape != (len(pts), 2):
        raise ValueError(f"velocity must return shape (N, 2) = ({len(pts)}, 2), got {v.shape}")
    v = v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12) if normalize else v
    ax.quiver(pts[:, 0].numpy(), pts[:, 1].numpy(), v[:, 0], v[:, 1], color=color, angles="xy", width=0.004)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax


def grid_of_targets(samples: dict, *, ncols: int = 5, size: float = 2.2):
    r"""One small scatter per named sample set of ``samples``, ``ncols`` panels per row; the Figure.

    Used in: the introduction (the targets of the book).
    """
    n = len(samples)
    if n == 0:
        raise ValueError("samples must hold at least one named sample set")
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
    r"""An ipywidgets slider over ``values`` that calls ``draw(value)`` (which makes a figure); the
    ``ipywidgets.interactive`` (``.children[0]`` is the slider). The static book shows the figure of the
    initial ``value`` (default the first); tag the cell ``nbval-ignore-output``.

    Used in: chapters 2-4 and 8.
    """
    import ipywidgets as widgets
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one step size")
    if value is not None and value not in values:
        raise ValueError(f"value must be one of values, got {value!r}")
    slider = widgets.SelectionSlider(options=values, value=values[0] if value is None else value,
                                     description=description, continuous_update=False)
    return widgets.interactive(lambda value: draw(value), value=slider)


def gaussian_ellipse(ax, mean, cov, *, n_std: float = 1.0, **style):
    r"""Draw the ``n_std``-standard-deviation ellipse :math:`\{x : (x - m)^\top \Sigma^{-1} (x - m) =
    c^2\}` of a 2-D Gaussian :math:`\mathcal N(m, \Sigma)`, :math:`c` = ``n_std``; the patch, or ``None``
    (nothing drawn) when ``cov`` is not finite positive-definite (a diverging iterate).

    Used in: chapter 2 (JKO iterates against the exact flow).
    """
    from matplotlib.patches import Ellipse
    mean, cov = to_numpy(mean).reshape(-1), to_numpy(cov)
    if mean.shape != (2,) or cov.shape != (2, 2):
        raise ValueError(f"mean and cov must have shapes (2,) and (2, 2), got {mean.shape} and {cov.shape}")
    n_std = check_positive(n_std, "n_std")
    if not np.isfinite(cov).all() or not np.isfinite(mean).all():
        return None
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    if vals.min() <= 0:
        return None
    angle = np.degrees(np.arctan2(vecs[1, 1], vecs[0, 1]))
    patch = Ellipse(mean, 2 * n_std * np.sqrt(vals[1]), 2 * n_std * np.sqrt(vals[0]), angle=angle, fill=False,
                    **style)  # fmt: skip
    ax.add_patch(patch)
    return patch


#: Columns and rows of :func:`method_map`: (label, words of ``Method.discretization`` /
#: ``Method.parametrization`` that select it), first match wins.
_MAP_COLUMNS = (("explicit step", ("explicit",)), ("noisy step", ("Maruyama",)), ("JKO step", ("JKO",)),
                ("GAN step\n($\\tau=\\infty$)", ("GAN",)), ("drift step", ("update",)))
_MAP_ROWS = (("particles", ("particles",)), ("map(s) from the source", ("map", "ICNN")),
             ("generator", ("generator",)))
_MAP_OBJECTIVES = (("drift field", "drift"), ("MMD", "MMD"), ("$W_1$ critic", "W1"),
                   ("OT (Sinkhorn, sliced)", ("Sinkhorn", "sliced")), ("KL / $f$-divergence", ""))


def _first_match(text: str, options) -> int:
    for i, (_, words) in enumerate(options):
        if any(w in text for w in ((words,) if isinstance(words, str) else words)):
            return i
    raise ValueError(f"no column or row of the method map matches {text!r}")


def method_map(methods, *, figsize=(10.0, 6.5)) -> plt.Figure:
    """Every method at its discretization (column) and parametrization (row), coloured by objective.
    ``methods`` maps the names to print (``methods.display_name``) to rows with ``discretization``,
    ``parametrization`` and ``objective`` strings (:data:`gwf_tutorial.methods.METHODS`).

    Used in: the introduction.
    """
    cells: dict[tuple[int, int], list[tuple[str, int]]] = {}
    for name, m in methods.items():
        key = (_first_match(m.parametrization, _MAP_ROWS), _first_match(m.discretization, _MAP_COLUMNS))
        cells.setdefault(key, []).append((name, _first_match(m.objective, _MAP_OBJECTIVES)))
    colors = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=figsize)
    n_cols, n_rows = len(_MAP_COLUMNS), len(_MAP_ROWS)
    ax.set(xlim=(0, n_cols), ylim=(n_rows, 0), xticks=[i + 0.5 for i in range(n_cols)],
           yticks=[i + 0.5 for i in range(n_rows)])
    ax.set_xticklabels([c for c, _ in _MAP_COLUMNS], fontsize=9)
    ax.set_yticklabels([r for r, _ in _MAP_ROWS], fontsize=9)
    ax.xaxis.tick_top()
    ax.grid(False)
    for k in range(1, n_cols):
        ax.axvline(k, color="0.8", lw=0.8)
    for k in range(1, n_rows):
        ax.axhline(k, color="0.8", lw=0.8)
    for (row, col), entries in cells.items():
        for j, (name, obj) in enumerate(entries):
            ax.text(col + 0.5, row + (j + 1) / (len(entries) + 1), name, ha="center",
                    va="center", fontsize=9, color=colors[obj])
    handles = [plt.Line2D([], [], ls="", marker="s", color=colors[i], label=label)
               for i, (label, _) in enumerate(_MAP_OBJECTIVES)]
    ax.legend(handles=handles, title="objective", fontsize=9, title_fontsize=9, loc="upper left",
              bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def samples_grid(samples: dict, references: dict | None = None, *, row_labels: dict | None = None,
                 notes: dict | None = None, size: float = 1.6, label_width: float = 2.6) -> plt.Figure:
    r"""One row per method, one column per target: the method's samples over the target's in grey.
    ``samples[row][col]``: samples (n, d), or ``None`` for a method that does not apply (an empty panel
    reading "n/a"); rows and columns keep the order of the dicts (columns from the first row).
    ``references[col]``: target samples drawn under each panel; ``row_labels[row]``: the text left of a row
    (default the row key); ``notes[(row, col)]``: a short text in the panel's lower-right corner. All text is
    9 pt or more; the figure is ``label_width + size * n_cols`` inches wide.

    Used in: chapter 11 (samples of every family on the same targets).
    """
    rows = list(samples)
    if not rows:
        raise ValueError("samples must hold at least one row")
    cols = list(samples[rows[0]])
    if not cols or any(list(samples[r]) != cols for r in rows):
        raise ValueError("every row of samples must have the same, non-empty columns")
    references, row_labels, notes = references or {}, row_labels or {}, notes or {}
    fig, axes = plt.subplots(len(rows), len(cols), squeeze=False,
                             figsize=(label_width + size * len(cols), size * len(rows)))
    for j, col in enumerate(cols):
        ref = None if references.get(col) is None else _points(references[col], f"references[{col!r}]")
        known = [a for a in [ref] + [samples[r][col] for r in rows] if a is not None]
        lims = _limits(*[_points(a, "samples") for a in known[:1]]) if known else None
        for i, row in enumerate(rows):
            ax = axes[i, j]
            ax.set(xticks=[], yticks=[])
            if ref is not None:
                ax.scatter(ref[:, 0], ref[:, 1], **(TARGET_STYLE | dict(s=2)))
            x = samples[row][col]
            if x is None:
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=10, transform=ax.transAxes)
            else:
                a = _points(x, f"samples[{row!r}][{col!r}]")
                ax.scatter(a[:, 0], a[:, 1], **(PARTICLE_STYLE | dict(s=2, alpha=0.6)))
            if lims is not None:
                ax.set(xlim=lims[0], ylim=lims[1])
            ax.set_aspect("equal")
            if (row, col) in notes:
                ax.text(0.97, 0.03, notes[row, col], ha="right", va="bottom", fontsize=9,
                        transform=ax.transAxes, bbox=dict(fc="white", ec="none", alpha=0.7, pad=1))
            if i == 0:
                ax.set_title(str(col), fontsize=10)
            if j == 0:
                ax.set_ylabel(row_labels.get(row, str(row)), fontsize=9, rotation=0, ha="right", va="center",
                              labelpad=8)
    fig.tight_layout(w_pad=0.3, h_pad=0.3)
    return fig


def ratio_heatmap(ratios, row_labels: Sequence[str], col_labels: Sequence[str], ax=None, *,
                  vmin: float = 0.5, vmax: float = 100.0, breaks: Sequence[int] = (), cmap: str = "RdBu_r"):
    r"""A heatmap of ratios to a floor, on a log scale with a diverging colour map centred at 1, :math:`c =
    \mathrm{TwoSlopeNorm}(\log_{10} r;\ \log_{10} v_{\min},\ 0,\ \log_{10} v_{\max})`, so a cell at the floor
    (:math:`r = 1`) is the map's centre (white for ``RdBu_r``), below it blue, above it red; values beyond
    [``vmin``, ``vmax``] are clipped in colour, not in the printed value. ``ratios`` (rows, cols) with NaN for
    "not applicable" (hatched); ``breaks``: row indices above which a black line separates groups. Returns the
    AxesImage (``.norm(0.0)`` is 0.5: 1 is the centre).

    Used in: chapter 11 (the benchmark table).
    """
    from matplotlib.colors import TwoSlopeNorm
    r = np.asarray(ratios, dtype=float)
    if r.ndim != 2 or r.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"ratios must have shape ({len(row_labels)}, {len(col_labels)}), got {r.shape}")
    if not 0 < vmin < 1 < vmax:
        raise ValueError(f"need 0 < vmin < 1 < vmax, got vmin={vmin}, vmax={vmax}")
    ax = _ax(ax)
    norm = TwoSlopeNorm(vmin=np.log10(vmin), vcenter=0.0, vmax=np.log10(vmax))
    im = ax.imshow(np.log10(np.clip(r, vmin, vmax)), cmap=cmap, norm=norm, aspect="auto")
    for i, j in np.ndindex(r.shape):
        v = r[i, j]
        if np.isnan(v):
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", color="0.6"))
            continue
        strong = abs(norm(np.log10(np.clip(v, vmin, vmax))) - 0.5) > 0.35
        ax.text(j, i, f"{v:.2f}" if v < 10 else f"{v:.0f}", ha="center", va="center", fontsize=9,
                color="white" if strong else "black")
    for b in breaks:
        ax.axhline(b - 0.5, color="k", lw=1)
    ax.set_xticks(range(len(col_labels)), list(col_labels), fontsize=9)
    ax.set_yticks(range(len(row_labels)), list(row_labels), fontsize=9)
    return im
