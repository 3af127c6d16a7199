"""optlib.widgets.quasi_newton: the history widget of chapter 10 builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import functions
from optlib.widgets import quasi_newton

pytestmark = pytest.mark.usefixtures("figures_closed")


def test_history_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = quasi_newton.history_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["history m", "line search", "iterations"]
    m, line_search, steps = controls
    assert (m.value, line_search.value, steps.value) == (10, "strong Wolfe", 60)
    assert list(line_search.options) == ["strong Wolfe", "none (α = 1)"]
    left, right = plt.gcf().axes[:2]
    assert len(left.lines) >= 2 and len(right.lines) >= 2
    # strong Wolfe, m = 10: Rosenbrock from (-1.2, 1) to f* + 1e-8 in 35 iterations
    assert right.get_title() == "at the minimum after 35 iterations"
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels == ["L-BFGS, m = 1", "L-BFGS, m = 10"]
    # without the line search the full step α = 1 does not reach the minimum in 60 iterations
    line_search.value = "none (α = 1)"
    assert plt.gcf().axes[1].get_title().startswith("f = ")


def test_draw_history_with_m_1_draws_one_run_and_rejects_unknown_line_searches():
    fn = functions.Rosenbrock()
    left, right = quasi_newton.draw_history(fn, 1, "strong Wolfe", 60)
    assert right.get_title() == "at the minimum after 27 iterations"
    assert [t.get_text() for t in right.get_legend().get_texts()] == ["L-BFGS, m = 1"]
    with pytest.raises(ValueError, match="line_search"):
        quasi_newton.draw_history(fn, 5, "armijo", 10)
