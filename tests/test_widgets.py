"""optlib.widgets: controls, interactive() and the optimizer playground (built without a kernel)."""
import math

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import widgets
from optlib.optim import OPTIMIZERS


pytestmark = pytest.mark.usefixtures("figures_closed")


def test_slider_factories():
    s = widgets.float_slider("lr", 0.5, 0.0, 2.0)
    assert isinstance(s, w.FloatSlider) and (s.value, s.min, s.max) == (0.5, 0.0, 2.0)
    assert s.step == pytest.approx(0.02) and s.continuous_update is False
    log = widgets.log_slider("lr", 1e-2, 1e-4, 1.0)
    assert isinstance(log, w.FloatLogSlider) and log.value == pytest.approx(1e-2)
    assert (log.min, log.max, log.base) == (-4, 0, 10)
    i = widgets.int_slider("steps", 10, 1, 100, step=5)
    assert isinstance(i, w.IntSlider) and (i.value, i.step) == (10, 5)
    d = widgets.dropdown("f", ["a", "b"])
    assert isinstance(d, w.Dropdown) and d.value == "a"
    assert widgets.dropdown("f", ("a", "b"), "b").value == "b"


def test_interactive_layout_and_first_draw():
    calls = []

    def draw(lr, steps, name):
        calls.append((lr, steps, name))
        fig, ax = plt.subplots()
        ax.plot([0, 1], [lr, lr])

    lr = widgets.log_slider("lr", 1e-2, 1e-4, 1.0)
    steps = widgets.int_slider("steps", 20, 1, 100)
    name = widgets.dropdown("name", ["x", "y"], "y")
    box = widgets.interactive(draw, lr=lr, steps=steps, name=name)
    assert isinstance(box, w.VBox) and len(box.children) == 2
    controls, out = box.children
    assert isinstance(controls, w.VBox) and controls.children == (lr, steps, name)
    assert isinstance(out, w.Output)
    assert len(calls) == 1
    assert calls[0][1:] == (20, "y") and math.isclose(calls[0][0], 1e-2)


def test_interactive_redraws_when_a_control_moves():
    calls = []
    s = widgets.int_slider("k", 3, 0, 10)
    widgets.interactive(lambda k: calls.append(k), k=s)
    s.value = 7
    assert calls == [3, 7]


@pytest.mark.parametrize("bad", [3, "slider", w.Button(), w.HBox()])
def test_interactive_rejects_non_widgets(bad):
    with pytest.raises(TypeError, match="control 'x' must be an ipywidgets value widget"):
        widgets.interactive(lambda x: None, x=bad)


def test_optimizer_playground_builds():
    box = widgets.optimizer_playground(steps=30)
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["function", "optimizer", "learning rate", "steps",
                                                 "start x1", "start x2"]
    function, optimizer, lr, steps, x1, x2 = controls
    assert function.value == "rosenbrock" and optimizer.value == "GD"
    assert list(optimizer.options) == list(OPTIMIZERS)
    assert steps.value == 30 and lr.value == pytest.approx(1e-3)
    assert (x1.value, x2.value) == (-1.2, 1.0)  # Rosenbrock's start point
    left, right = plt.gcf().axes[:2]  # the default figure was drawn
    assert len(left.lines) == 1 and len(left.lines[0].get_xdata()) == 31
    assert right.get_title().startswith("f after 30 steps: ")


def test_optimizer_playground_moves_the_start_with_the_function():
    box = widgets.optimizer_playground(steps=5, functions=["rosenbrock", "himmelblau"],
                                       optimizers={"GD": OPTIMIZERS["GD"]})
    function, _, _, _, x1, x2 = box.children[0].children
    function.value = "himmelblau"
    assert (x1.value, x2.value) == pytest.approx((-0.3, -0.9))


def test_optimizer_playground_survives_a_diverging_setting():
    box = widgets.optimizer_playground(function="quadratic", steps=400, lr=1.0)
    assert isinstance(box, w.VBox)
    right = plt.gcf().axes[1]
    assert right.get_title().startswith("loss became inf")
    assert len(right.lines[0].get_xdata()) > 5  # the diverging curve is drawn, not lost
