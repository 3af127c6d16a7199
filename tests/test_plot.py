"""optlib.plot: every figure function draws without error on the Agg backend and draws what it is given."""
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from optlib import functions, plot  # noqa: E402
from optlib.optim import SGD  # noqa: E402
from optlib.run import minimize  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def traces():
    fn = functions.Quadratic(condition_number=10.0)
    return {
        "lr 0.05": minimize(fn, fn.start, SGD, steps=15, lr=0.05),
        "lr 0.15": minimize(fn, fn.start, SGD, steps=15, lr=0.15),
    }


def test_book_style_is_applied():
    assert plt.rcParams["axes.grid"] is True
    assert plt.rcParams["axes.spines.top"] is False


def test_subplots():
    fig, axes = plot.subplots(3, 2)
    assert axes.shape == (2, 3)
    assert fig.get_figwidth() == pytest.approx(plot.PAGE_WIDTH) and fig.get_figheight() == pytest.approx(6.8)
    fig, ax = plot.subplots(width=5, height=2)
    assert fig.get_size_inches().tolist() == [5, 2]


def test_figures_fit_the_page_column_so_their_text_is_not_shrunk():
    # at 100 dpi the page shows PAGE_WIDTH inches at full size (tools/static/course.css)
    assert plt.rcParams["figure.dpi"] == plt.rcParams["savefig.dpi"] == 100
    assert plot.PAGE_WIDTH * 100 <= 780
    assert plt.rcParams["font.size"] >= 10 and plt.rcParams["figure.figsize"][0] <= plot.PAGE_WIDTH
    for ncols in (1, 2, 3):
        assert plot.figure_size(ncols)[0] <= plot.PAGE_WIDTH
    with pytest.raises(ValueError, match="at most PAGE_WIDTH"):
        plot.subplots(2, width=11)
    with pytest.raises(ValueError, match="at most 3 panels"):
        plot.subplots(4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="ncols must be a positive integer"):
            plot.figure_size(bad)
    axes = plot.images(np.zeros((20, 8, 8)), ncols=10)
    assert axes[0, 0].figure.get_figwidth() <= plot.PAGE_WIDTH


def test_grid_values():
    fn = functions.Saddle()
    X, Y, Z = plot.grid_values(fn, resolution=11)
    assert X.shape == Y.shape == Z.shape == (11, 11)
    np.testing.assert_allclose(Z, X**2 - Y**2)
    assert X[0, 0] == -2.0 and X[0, -1] == 2.0 and Y[-1, 0] == 2.0


@pytest.mark.parametrize("name", list(functions.FUNCTIONS))
def test_contour_every_function(name):
    fn = functions.get_function(name)
    ax = plot.contour(fn, resolution=40, levels=10)
    assert ax.get_title() == fn.name
    assert ax.get_xlim() == fn.bounds[0] and ax.get_ylim() == fn.bounds[1]
    assert len(ax.lines) == 0  # no paths given
    markers = len(fn.minima) + len(fn.saddles)
    assert len(ax.get_legend().get_texts()) == (len(fn.minima) > 0) + (len(fn.saddles) > 0)
    assert markers > 0
    ax.figure.canvas.draw()


def test_contour_draws_one_line_per_path(traces):
    fn = functions.Quadratic(condition_number=10.0)
    ax = plot.contour(fn, resolution=30, paths=traces, title="two runs")
    assert len(ax.lines) == 2
    assert [line.get_label() for line in ax.lines] == ["lr 0.05", "lr 0.15"]
    np.testing.assert_allclose(np.asarray(ax.lines[0].get_xydata()), traces["lr 0.05"].path())
    assert ax.get_title() == "two runs"
    # paths may also be plain arrays or tensors, and a list of traces takes their names
    ax = plot.contour(fn, resolution=30, paths=[np.zeros((3, 2)), torch.ones(4, 2)], mark_critical=False)
    assert len(ax.lines) == 2 and len(ax.lines[1].get_xdata()) == 4
    ax = plot.contour(fn, resolution=30, paths=list(traces.values()), filled=False)
    assert [line.get_label() for line in ax.lines] == ["SGD", "SGD"]
    ax.figure.canvas.draw()


def test_contour_rejects_non_2d_functions():
    with pytest.raises(ValueError, match="contour needs a 2-D function"):
        plot.contour(functions.Rosenbrock(dim=3))


def test_surface_with_path(traces):
    fn = functions.Quadratic(condition_number=10.0)
    ax = plot.surface(fn, resolution=20, path=traces["lr 0.05"], title="bowl")
    assert ax.name == "3d" and ax.get_title() == "bowl"
    assert len(ax.lines) == 1
    ax.figure.canvas.draw()


def test_loss_curves(traces):
    ax = plot.loss_curves(traces)
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[1].get_ydata(), traces["lr 0.15"].loss)
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "loss"
    ax = plot.loss_curves(traces, key="grad_norm", x="time", logy=False, logx=True)
    assert ax.get_xlabel() == "seconds" and ax.get_ylabel() == "gradient norm" and ax.get_xscale() == "log"
    ax = plot.loss_curves(list(traces.values()), optimum=0.0)
    assert ax.get_ylabel() == "f(x) − f*"
    ax.figure.canvas.draw()
    with pytest.raises(ValueError, match="x must be 'step' or 'time'"):
        plot.loss_curves(traces, x="epoch")


def test_loss_curves_show_a_diverged_run_without_overflow():
    fn = functions.Quadratic(condition_number=10.0)
    diverged = minimize(fn, fn.start, SGD, steps=200, lr=1e3, on_nonfinite="stop")
    assert not np.isfinite(diverged.loss[-1]) and max(diverged.loss[:-1]) > 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's log axis must not overflow
        ax = plot.loss_curves({"diverged": diverged})
        ax.figure.canvas.draw()
    ys = ax.lines[0].get_ydata()
    expected = [v for v in diverged.loss if np.isfinite(v) and v <= 1e100]
    np.testing.assert_array_equal(ys, expected)
    assert len(ys) > 5
    low, high = ax.get_ylim()  # the curve is inside the axes, not lost to a fallback (1, 10) range
    assert low <= min(ys) and high >= max(ys) > 1e90


def test_lines():
    x = np.arange(5)
    ax = plot.lines(x, {"a": x**2, "b": x + 1}, logy=True, xlabel="k", ylabel="v", title="t", marker="o")
    assert len(ax.lines) == 2 and ax.get_legend() is not None and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), x**2)
    ax = plot.lines(x, torch.arange(5.0), logx=True)
    assert len(ax.lines) == 1 and ax.get_legend() is None and ax.get_xscale() == "log"


def test_bars_one_cluster_per_group_and_one_colour_per_series():
    ax = plot.bars({"SGD": {"measured": 2.0, "predicted": 1.0}, "Adam": {"measured": 5.0}}, ylabel="ms", logy=True)
    heights = [p.get_height() for p in ax.patches]
    assert heights == [2.0, 5.0, 1.0]  # series by series: measured (SGD, Adam), then predicted (SGD)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["SGD", "Adam"]
    assert ax.get_legend() is not None and ax.get_yscale() == "log" and ax.get_ylabel() == "ms"
    assert ax.patches[0].get_x() + ax.patches[0].get_width() <= ax.patches[2].get_x() + 1e-12  # side by side
    with pytest.raises(TypeError, match="mapping"):
        plot.bars({"SGD": 2.0})


def test_histogram():
    g = np.random.default_rng(0)
    ax = plot.histogram({"a": g.normal(size=200), "b": g.normal(1, 1, size=200)}, bins=20, xlabel="x")
    assert len(ax.patches) == 40 and ax.get_ylabel() == "density"
    heights = np.array([p.get_height() for p in ax.patches[:20]])
    widths = np.array([p.get_width() for p in ax.patches[:20]])
    assert (heights * widths).sum() == pytest.approx(1.0)  # density=True
    ax = plot.histogram(torch.arange(10.0), density=False, logy=True)
    assert ax.get_ylabel() == "count" and ax.get_yscale() == "log"


def test_images():
    imgs = torch.rand(12, 8, 8, generator=torch.Generator().manual_seed(0))
    axes = plot.images(imgs, titles=[str(i) for i in range(12)], ncols=5, suptitle="digits")
    assert axes.shape == (3, 5)
    assert sum(len(ax.images) for ax in axes.flat) == 12
    assert axes[0, 1].get_title() == "1"
    assert axes[0, 0].figure.get_suptitle() == "digits"
    with pytest.raises(ValueError, match=r"images expects an array of shape \(k, h, w\)"):
        plot.images(torch.zeros(8, 8))


def test_axes_can_be_combined():
    fig, (left, right) = plot.subplots(2)
    fn = functions.Himmelblau()
    assert plot.contour(fn, ax=left, resolution=20) is left
    assert plot.lines([0, 1], [1, 0], ax=right) is right
    assert len(fig.axes) >= 2


def test_lines_styles_and_second_call_keeps_labels():
    x = np.arange(4)
    ax = plot.lines(x, {"measured": x * 1.0, "slope 1": x + 0.5}, styles={"slope 1": "k--"}, xlabel="h", title="t")
    assert ax.lines[1].get_linestyle() == "--" and ax.lines[0].get_linestyle() == "-"
    plot.lines(x, {"more": x * 2.0}, ax=ax)
    assert len(ax.lines) == 3 and ax.get_xlabel() == "h" and ax.get_title() == "t"


def test_arrows():
    ax = plot.arrows([0.0, 0.0], torch.eye(2), labels=["e1", "e2"], scale=0.5)
    assert len(ax.texts) == 2  # one annotation per arrow
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["e1", "e2"]
    assert np.allclose(ax.texts[0].xy, (0.5, 0.0))
    with pytest.raises(ValueError, match=r"vectors must have shape \(k, 2\)"):
        plot.arrows([0, 0], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels for"):
        plot.arrows([0, 0], np.zeros((2, 2)), labels=["one"])


def test_scatter():
    pts = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.5], [0.5, 2.0]])
    ax = plot.scatter(pts, [0, 1, 1, -1], names={0: "A", 1: "B", -1: "none"}, title="basins")
    assert len(ax.collections) == 3
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["A", "B", "none"]
    assert len(plot.scatter(pts).collections) == 1
    with pytest.raises(ValueError, match=r"points must have shape \(n, 2\)"):
        plot.scatter(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="labels for"):
        plot.scatter(pts, [0, 1])


def test_contour_grid():
    xs, ys = np.linspace(-1, 1, 7), np.linspace(-2, 2, 5)
    Z = ys[:, None] ** 2 + xs[None, :] ** 2
    ax = plot.contour_grid(xs, ys, Z, mark=(0.0, 0.0), title="slice")
    assert ax.get_title() == "slice" and len(ax.figure.axes) == 2  # with its colorbar
    ax.figure.canvas.draw()
    with pytest.raises(ValueError, match=r"Z must have shape"):
        plot.contour_grid(xs, ys, Z.T)
