"""optlib.widgets.momentum: the valley widget of chapter 5 builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import functions
from optlib.widgets import momentum


pytestmark = pytest.mark.usefixtures("figures_closed")


def test_valley_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = momentum.valley_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["learning rate", "momentum ρ", "method", "steps"]
    lr, rho, method, steps = controls
    assert (lr.value, rho.value, method.value, steps.value) == pytest.approx((0.01, 0.9, "heavy ball", 200))
    assert list(method.options) == ["heavy ball", "Nesterov"]
    assert (rho.min, rho.max) == (0.0, 0.99)
    # the default figure: paths on the contours and the two loss curves
    fig = plt.gcf()
    left, right = fig.axes[:2]
    assert len(left.lines) >= 2 and len(right.lines) == 2
    assert right.get_title() == "f ≤ 1e-8 after 179 steps"
    rho.value = 0.5
    method.value = "Nesterov"
    assert "Nesterov, ρ = 0.50" in [t.get_text() for t in plt.gcf().axes[1].get_legend().get_texts()]


def test_draw_valley_reports_a_diverged_run_and_rejects_unknown_methods():
    quad = functions.Quadratic(condition_number=100, angle=0.5)
    left, right = momentum.draw_valley(quad, 0.05, 0.9, "heavy ball", 400)
    assert right.get_title().startswith("loss")
    with pytest.raises(ValueError, match="method"):
        momentum.draw_valley(quad, 0.01, 0.9, "Adam", 10)
