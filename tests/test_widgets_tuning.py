"""optlib.widgets.tuning: chapter 8's one-optimizer, one-learning-rate widget, built without a kernel;
and optlib.plot's lr_sweep and ecdf, which draw chapter 8's sweep and search figures."""
from functools import partial

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optlib import data, losses, models, optim, plot, tuning
from optlib.widgets.tuning import draw_training, training_widget


pytestmark = pytest.mark.usefixtures("figures_closed")


@pytest.fixture(scope="module")
def split():
    digits = data.load_digits(dtype=torch.float64)
    small = data.Dataset(digits.X_train[:300], digits.y_train[:300], digits.X_test[:100], digits.y_test[:100])
    return small


def make(gen):
    return models.MLP((64, 16, 10), generator=gen, dtype=torch.float64)


METHODS = {"SGD": optim.SGD, "Adam": optim.Adam}


def test_training_widget_draws_the_default_run(split):
    box = training_widget(make, losses.softmax_loss, split, METHODS, optimizer="Adam", lr=0.01, epochs=2,
                          target=0.05)
    assert isinstance(box, w.VBox)
    optimizer, lr, seed = box.children[0].children
    assert [c.description for c in (optimizer, lr, seed)] == ["optimizer", "learning rate", "seed"]
    assert list(optimizer.options) == ["SGD", "Adam"] and optimizer.value == "Adam"
    assert isinstance(lr, w.FloatLogSlider) and lr.value == pytest.approx(0.01)
    assert (lr.min, lr.max) == (-4, 1) and (seed.value, seed.min, seed.max) == (0, 0, 9)
    fig = plt.gcf()
    left, right = fig.axes[:2]
    assert fig.get_size_inches()[0] <= plot.PAGE_WIDTH
    assert left.get_title() == "Adam, lr = 0.01" and left.get_yscale() == "log"
    expected = tuning.train_and_validate(make, losses.softmax_loss, split, optim.Adam, epochs=2, batch_size=64,
                                         seed=0, eval_every=5, lr=0.01)
    assert right.get_title() == f"final validation loss {expected['val_loss']:.3f}"
    curve, target = left.lines
    np.testing.assert_allclose(curve.get_ydata(), expected.trace.metric("train_loss")[1])
    assert target.get_ydata()[0] == 0.05
    assert [line.get_label() for line in right.lines] == ["training", "validation"]


def test_draw_training_says_when_a_run_diverged(split):
    left, right = draw_training(make, losses.softmax_loss, split, optim.SGD, name="SGD", lr=1e3, seed=1,
                                epochs=1, batch_size=64)
    assert right.get_title() == "diverged" and left.get_title() == "SGD, lr = 1e+03"


def test_training_widget_rejects_bad_input(split):
    with pytest.raises(ValueError, match="optimizer must be one of"):
        training_widget(make, losses.softmax_loss, split, METHODS, optimizer="RMSProp")
    with pytest.raises(ValueError):
        training_widget(make, losses.softmax_loss, split, METHODS, lr=0.0)
    with pytest.raises(ValueError):
        training_widget(make, losses.softmax_loss, split, METHODS, epochs=0)


# ---------------------------------------------------------------- plot.lr_sweep and plot.ecdf
def curves(offset):
    return {"A": ([0.01, 0.1, 1.0], [0.3 + offset, 0.1, np.nan]), "B": ([0.001, 0.01, 0.1], [0.2, 0.05, 0.4]),
            "C": ([1.0, 10.0], [0.5, 0.2])}


def test_lr_sweep_draws_a_row_per_metric_and_a_column_per_group():
    fig, axes = plot.lr_sweep([curves(0), curves(1)], {"first": ["A", "B"], "second": ["C"]},
                              ylabels=["loss", "other"], logy=[True, False], chosen={"A": 0.1, "C": 10.0},
                              diverged={"A": [1.0, 10.0]}, hlines={1: 0.5})
    assert axes.shape == (2, 2) and fig.get_size_inches()[0] <= plot.PAGE_WIDTH
    top_left, top_right = axes[0]
    assert top_left.get_xscale() == "log" and top_left.get_yscale() == "log" and axes[1, 0].get_yscale() == "linear"
    assert top_left.get_ylabel() == "loss" and axes[1, 1].get_xlabel() == "learning rate"
    # each method keeps its colour across columns and rows
    line_a = top_left.lines[0]
    assert line_a.get_label() == "A" and axes[1, 0].lines[0].get_color() == line_a.get_color()
    # the chosen lr is a large marker, the diverged lrs crosses on the top edge
    big = [ln for ln in top_left.lines if ln.get_markersize() == 9]
    assert len(big) == 1 and list(big[0].get_xdata()) == [0.1]
    crosses = [ln for ln in top_left.lines if ln.get_marker() == "x"]
    assert len(crosses) == 1 and list(crosses[0].get_xdata()) == [1.0, 10.0]
    assert [ln.get_ydata()[0] for ln in axes[1, 0].lines if ln.get_linestyle() == ":"] == [0.5]
    # legends sit above the top panels, with the group's title and a "diverged" entry where needed
    legend = top_left.get_legend()
    assert legend.get_title().get_text() == "first"
    assert [t.get_text() for t in legend.get_texts()] == ["A", "B", "diverged"]
    assert [t.get_text() for t in top_right.get_legend().get_texts()] == ["C"]
    fig.canvas.draw()
    box, panel = legend.get_window_extent(), top_left.get_window_extent()
    assert box.y0 >= panel.y1 - 1, "the legend covers no data"


def test_lr_sweep_rejects_inconsistent_input():
    with pytest.raises(ValueError):
        plot.lr_sweep([], {"g": ["A"]}, ylabels=[])
    with pytest.raises(ValueError, match="y label"):
        plot.lr_sweep([curves(0)], {"g": ["A"]}, ylabels=["a", "b"])
    with pytest.raises(ValueError, match="logy"):
        plot.lr_sweep([curves(0)], {"g": ["A"]}, ylabels=["a"], logy=[True, False])
    with pytest.raises(KeyError, match="no curve"):
        plot.lr_sweep([curves(0)], {"g": ["A", "Z"]}, ylabels=["a"])


def test_ecdf_draws_the_fraction_of_values_at_or_below_x():
    ax = plot.ecdf({"one": [3.0, 1.0, 2.0, np.nan], "two": [0.5, 5.0]}, logx=True, xlabel="loss")
    one, two = ax.lines
    np.testing.assert_array_equal(one.get_xdata(), [1.0, 2.0, 3.0])
    np.testing.assert_allclose(one.get_ydata(), [1 / 3, 2 / 3, 1.0])
    assert two.get_drawstyle() == "steps-post" and ax.get_xscale() == "log" and ax.get_xlabel() == "loss"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["one", "two"]
    with pytest.raises(TypeError):
        plot.ecdf([1.0, 2.0])
    with pytest.raises(ValueError, match="no value"):
        plot.ecdf({"x": [np.nan]})


def test_partial_methods_work_in_the_widget(split):
    box = training_widget(make, losses.softmax_loss, split, {"momentum": partial(optim.SGD, momentum=0.9)},
                          optimizer="momentum", lr=0.05, epochs=1)
    assert plt.gcf().axes[0].get_title() == "momentum, lr = 0.05" and isinstance(box, w.VBox)
