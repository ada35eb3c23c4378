"""Tests of gwf_tutorial.plot: every helper runs headless (Agg, set inside this module only) and returns
the documented matplotlib / HTML / widget object, drawing what it is given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(autouse=True, scope="module")
def _agg():
    """Draw off-screen for these tests only, then restore the previous backend."""
    previous = matplotlib.get_backend()
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")
    try:
        matplotlib.use(previous, force=True)
    except Exception:  # pragma: no cover - a backend unavailable here was active before
        pass


@pytest.fixture
def plot(_agg):
    from gwf_tutorial import plot as P

    yield P
    _agg.close("all")


def _samples(n=50, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) + shift


def test_to_numpy(plot):
    x = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    a = plot.to_numpy(x * 2)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64 and a.shape == (3, 2)
    np.testing.assert_array_equal(a, 2.0)
    assert isinstance(plot.to_numpy([[1, 2]]), np.ndarray)
    # NumPy has no bfloat16: low precision comes back as float32, with the same values
    for dt in (torch.float16, torch.bfloat16):
        low = torch.tensor([[0.5, -1.25]], dtype=dt)
        a = plot.to_numpy(low)
        assert a.dtype == np.float32
        np.testing.assert_array_equal(a, low.float().numpy())


def test_plots_draw_low_precision_samples(plot):
    x = _samples(30)
    for dt in (torch.float16, torch.bfloat16):
        (coll,) = plot.scatter(x.to(dt)).collections
        np.testing.assert_array_equal(coll.get_offsets(), x.to(dt).float().numpy())
        plot.compare_samples(x.to(dt), x.to(dt))
        plot.trajectories(torch.stack([x, x]).to(dt))
    with pytest.raises(TypeError, match="seed"):
        plot.trajectories(torch.stack([x, x]), seed=1.5)


def test_scatter_draws_the_points(plot):
    from matplotlib.axes import Axes

    x = _samples(30)
    ax = plot.scatter(x, title="t", limits=((-5, 5), (-4, 4)), color="r")
    assert isinstance(ax, Axes)
    (coll,) = ax.collections
    np.testing.assert_allclose(coll.get_offsets(), x.numpy())
    assert ax.get_title() == "t" and ax.get_xlim() == (-5, 5) and ax.get_ylim() == (-4, 4)
    # extra coordinates are ignored, an existing ax is reused
    ax2 = plot.scatter(torch.randn(10, 4), ax=ax)
    assert ax2 is ax and len(ax.collections) == 2
    with pytest.raises(ValueError, match="x must have shape"):
        plot.scatter(torch.zeros(5))


def test_compare_samples(plot):
    x, y = _samples(20, 1), _samples(40, 2, shift=1.0)
    ax = plot.compare_samples(x, y, title="cmp")
    target, model = ax.collections
    np.testing.assert_allclose(model.get_offsets(), x.numpy())
    np.testing.assert_allclose(target.get_offsets(), y.numpy())
    assert ax.get_title() == "cmp"
    assert [c.get_label() for c in ax.collections] == ["target", "model"]


def test_trajectories(plot):
    frames = torch.cumsum(torch.randn(6, 30, 2, generator=torch.Generator().manual_seed(3)), 0)
    ax = plot.trajectories(frames, y=_samples(20), n_paths=7, title="paths")
    assert len(ax.lines) == 7
    for line in ax.lines:
        assert line.get_xydata().shape == (6, 2)
    # the last collection holds the final positions of all particles
    np.testing.assert_allclose(ax.collections[-1].get_offsets(), frames[-1].numpy())
    with pytest.raises(ValueError, match="frames must have shape"):
        plot.trajectories(torch.zeros(6, 30))


def test_animate_frames_returns_html(plot, _agg):
    frames = torch.stack([_samples(15, 0) * (1 + 0.2 * k) for k in range(4)])
    n_fig = len(_agg.get_fignums())
    anim = plot.animate_frames(frames, y=_samples(10, 1), titles=[f"k={k}" for k in range(4)], interval=50)
    assert isinstance(anim, plot.AnimationHTML)
    html = anim._repr_html_()
    assert "<script" in html and "animation" in html.lower()
    assert html.count("data:image/png;base64") == 4  # one image per frame
    assert str(anim) == html == anim.to_jshtml()
    assert repr(anim) == "<AnimationHTML: 4 frames>"
    assert len(_agg.get_fignums()) == n_fig  # the figure was closed
    # IPython displays it as HTML
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(anim)
    assert data["text/html"] == html
    # html=False: the FuncAnimation itself
    from matplotlib.animation import FuncAnimation

    fa = plot.animate_frames(frames, html=False)
    assert isinstance(fa, FuncAnimation)
    assert "<script" in fa.to_jshtml()
    with pytest.raises(ValueError, match="titles"):
        plot.animate_frames(frames, titles=["a"])
    with pytest.raises(ValueError, match="frames must have shape"):
        plot.animate_frames(frames[0])


def test_curves(plot):
    ax = plot.curves(
        np.arange(5),
        {"a": np.arange(5) ** 2, "b": torch.ones(5)},
        logy=True,
        hline=2.0,
        hline_label="floor",
        ylabel="W2",
        title="c",
    )
    labels = [ln.get_label() for ln in ax.lines]
    assert labels == ["a", "b", "floor"]
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), np.arange(5) ** 2)
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "W2"
    ax2 = plot.curves({"a": [0, 1], "b": [0, 2, 4]}, {"a": [1, 2], "b": [3, 4, 5]})
    np.testing.assert_array_equal(ax2.lines[1].get_xdata(), [0, 2, 4])


def test_vector_field(plot):
    ax = plot.vector_field(lambda p: -p, ((-1, 1), (-1, 1)), n_grid=5, normalize=True, title="v")
    (q,) = ax.collections
    U, V = np.asarray(q.U), np.asarray(q.V)
    np.testing.assert_allclose(np.hypot(U, V)[np.hypot(q.X, q.Y) > 0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(U, -q.X / np.maximum(np.hypot(q.X, q.Y), 1e-12), atol=1e-6)
    with pytest.raises(ValueError, match="velocity must return shape"):
        plot.vector_field(lambda p: p[:, 0], ((-1, 1), (-1, 1)), n_grid=4)


def test_grid_of_targets(plot):
    from matplotlib.figure import Figure

    from gwf_tutorial.targets import get_target

    g = torch.Generator().manual_seed(0)
    samples = {name: get_target(name).sample(50, generator=g) for name in ("moons", "rings", "spirals")}
    fig = plot.grid_of_targets(samples, ncols=2)
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4
    assert [a.get_title() for a in axes[:3]] == ["moons", "rings", "spirals"]
    assert not axes[3].axison
    with pytest.raises(ValueError, match="samples"):
        plot.grid_of_targets({})


def test_step_size_slider_calls_draw(plot):
    widgets = pytest.importorskip("ipywidgets")
    calls = []

    def draw(h):  # any parameter name: draw is called positionally
        calls.append(h)

    w = plot.step_size_slider(draw, [0.01, 0.1, 1.0], description="tau", value=0.1)
    assert isinstance(w, widgets.interactive)
    slider = w.children[0]
    assert isinstance(slider, widgets.SelectionSlider)
    assert slider.description == "tau" and slider.value == 0.1 and list(slider.options) == [0.01, 0.1, 1.0]
    assert calls == [0.1]  # drawn once for the initial value
    slider.value = 1.0
    assert calls == [0.1, 1.0]
    assert plot.step_size_slider(draw, [0.5, 2.0]).children[0].value == 0.5
    with pytest.raises(ValueError, match="value must be one of values"):
        plot.step_size_slider(draw, [0.5, 2.0], value=3.0)
    with pytest.raises(ValueError, match="values"):
        plot.step_size_slider(draw, [])


def test_library_does_not_import_matplotlib_outside_plot():
    import subprocess
    import sys

    code = (
        "import sys, gwf_tutorial.targets, gwf_tutorial.metrics, gwf_tutorial.train;"
        "print('matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_animation_html_loads_nothing_from_the_network(plot):
    html = str(plot.animate_frames(torch.zeros(3, 5, 2)))
    assert "<script" in html and "http://" not in html and "https://" not in html


def test_gaussian_ellipse_axes_and_skips_invalid():
    import matplotlib.pyplot as plt

    from gwf_tutorial.plot import gaussian_ellipse

    fig, ax = plt.subplots()
    e = gaussian_ellipse(ax, [1.0, 2.0], [[4.0, 0.0], [0.0, 1.0]], n_std=2, color="C0")
    assert e is not None and e.width == pytest.approx(8.0) and e.height == pytest.approx(4.0)
    assert gaussian_ellipse(ax, [0.0, 0.0], [[1.0, 0.0], [0.0, -1.0]]) is None
    assert gaussian_ellipse(ax, [0.0, 0.0], [[float("nan"), 0.0], [0.0, 1.0]]) is None
    with pytest.raises(ValueError, match="shapes"):
        gaussian_ellipse(ax, [0.0], [[1.0]])
    plt.close(fig)


def test_method_map_places_every_method_once(plot):
    from gwf_tutorial.methods import METHODS, display_name

    labels = {display_name(name): m for name, m in METHODS.items()}
    assert len(labels) == len(METHODS)  # one printed name per method
    assert display_name("jko_chi2") == "JKO $\\chi^2$" and display_name("gan_ns") == "GAN NS"
    fig = plot.method_map(labels)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(texts) == sorted(labels)
    assert fig.get_size_inches()[0] <= 10


def test_method_map_refuses_a_method_it_cannot_place(plot):
    from gwf_tutorial.methods import METHODS, Method

    odd = Method(METHODS["gan"].function, "gan", 5, "KL", "a new scheme", "particles")
    with pytest.raises(ValueError, match="a new scheme"):
        plot.method_map({"odd": odd})


def test_samples_grid_draws_rows_by_columns(plot):
    from matplotlib.figure import Figure

    samples = {"a": {"t1": _samples(30), "t2": None}, "b": {"t1": _samples(30, 1), "t2": _samples(30, 2)}}
    refs = {"t1": _samples(40, 3), "t2": _samples(40, 4, shift=2.0)}
    fig = plot.samples_grid(samples, refs, row_labels={"a": "row A"}, notes={("b", "t2"): "1.23"}, size=1.5)
    assert isinstance(fig, Figure)
    assert fig.get_size_inches()[0] <= 10
    axes = np.array(fig.axes).reshape(2, 2)
    assert [ax.get_title() for ax in axes[0]] == ["t1", "t2"]
    assert axes[0, 0].get_ylabel() == "row A" and axes[1, 0].get_ylabel() == "b"
    # reference then samples in each panel; the "n/a" panel has the reference only
    assert [len(ax.collections) for ax in axes.flat] == [2, 1, 2, 2]
    assert np.allclose(axes[1, 0].collections[1].get_offsets(), samples["b"]["t1"].numpy())
    assert "n/a" in [t.get_text() for t in axes[0, 1].texts]
    assert "1.23" in [t.get_text() for t in axes[1, 1].texts]
    # panels of a column share the target's limits
    assert axes[0, 1].get_xlim() == axes[1, 1].get_xlim()
    with pytest.raises(ValueError, match="same"):
        plot.samples_grid({"a": {"t1": _samples()}, "b": {"t2": _samples()}})
    with pytest.raises(ValueError, match="at least one row"):
        plot.samples_grid({})


def test_ratio_heatmap_is_centred_at_one(plot, _agg):
    r = np.array([[1.0, 0.5], [np.nan, 100.0], [2.0, 1000.0]])
    fig, ax = _agg.subplots()
    im = plot.ratio_heatmap(r, ["m1", "m2", "m3"], ["t1", "t2"], ax, breaks=[2])
    assert im.norm(0.0) == pytest.approx(0.5)  # log10(1) is the centre of the colour map
    assert im.norm(np.log10(0.5)) == pytest.approx(0.0) and im.norm(np.log10(100.0)) == pytest.approx(1.0)
    data = im.get_array()
    assert data[0, 0] == pytest.approx(0.0) and data[2, 1] == pytest.approx(2.0)  # clipped in colour only
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["1.00", "0.50", "100", "2.00", "1000"]  # NaN cell: hatched, no text
    assert len(ax.patches) == 1
    assert all(t.get_fontsize() >= 9 for t in ax.texts + ax.get_xticklabels() + ax.get_yticklabels())
    with pytest.raises(ValueError, match="shape"):
        plot.ratio_heatmap(r, ["m1"], ["t1", "t2"], ax)
    with pytest.raises(ValueError, match="vmin"):
        plot.ratio_heatmap(r, ["m1", "m2", "m3"], ["t1", "t2"], ax, vmin=2.0)
