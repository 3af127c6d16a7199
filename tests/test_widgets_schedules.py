"""optlib.widgets.schedules: chapter 7's schedule widget builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optlib import schedules
from optlib.data import Dataset
from optlib.widgets import schedules as schedule_widgets


pytestmark = pytest.mark.usefixtures("figures_closed")


def small_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(96, 5, generator=g, dtype=torch.float64)
    X[:, -1] = 1.0  # a bias column
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).long() + (X[:, 2] > 1).long()
    return Dataset(X[:64], y[:64], X[64:], y[64:])


def test_make_schedule_shapes():
    total, per_epoch = 100, 10
    cos = schedule_widgets.make_schedule("cosine", total, 0, 0.1, per_epoch)
    assert cos(0) == 1.0 and cos(total) == pytest.approx(0.1)
    warm = schedule_widgets.make_schedule("linear", total, 20, 0.0, per_epoch)
    assert warm(0) == pytest.approx(1 / 20) and warm(20) == 1.0 and warm(total) == pytest.approx(0.0)
    # exponential and 1/t reach the final factor at the end of training
    for kind in ("exponential", "1/t"):
        f = schedule_widgets.make_schedule(kind, total, 0, 0.05, per_epoch)
        assert f(total) == pytest.approx(0.05, rel=1e-9), kind
    assert schedule_widgets.make_schedule("step", total, 0, 0.5, per_epoch)(25) == 0.5
    with pytest.raises(ValueError, match="kind must be one of"):
        schedule_widgets.make_schedule("warm restarts", total, 0, 0.1, per_epoch)


def test_widget_has_the_promised_controls_and_draws_the_default_run():
    box = schedule_widgets.schedule_widget(small_data(), f_star=0.0, epochs=2, batch_size=16)
    assert isinstance(box, w.VBox)
    kind, warmup, factor, base_lr = box.children[0].children
    assert [c.description for c in (kind, warmup, factor, base_lr)] == [
        "schedule", "warmup steps", "final factor / γ", "base lr"]
    assert list(kind.options) == list(schedule_widgets.KINDS) and kind.value == "cosine"
    assert (warmup.value, factor.value) == (0, 0.0) and base_lr.value == pytest.approx(0.8)
    left, right = plt.gcf().axes[:2]
    lr_line = left.lines[0].get_ydata()
    np.testing.assert_allclose(lr_line, schedules.values(schedules.cosine(8), 8, 0.8), rtol=1e-12)
    assert right.get_title().startswith("final f − f* = ")


def test_a_divergent_rate_is_reported():
    _, right = schedule_widgets.draw_schedule(small_data(), 0.0, "constant", 0, 0.0, 1e8, epochs=40)
    assert right.get_title().startswith("diverged")
