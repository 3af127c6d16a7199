"""optlib.widgets.gradients: chapter 2's finite-difference widget, built without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optlib import grad
from optlib.widgets.gradients import finite_difference_widget


pytestmark = pytest.mark.usefixtures("figures_closed")


def f(x):
    return 1 / (1 + x * x)


def test_finite_difference_widget_draws_the_error_of_the_chosen_step(capsys):
    hs = np.logspace(-12, 0, 25)
    box = finite_difference_widget(f, 0.5, -0.64, h=1e-4, hs=hs)
    assert isinstance(box, w.VBox)
    h, method, precision = box.children[0].children
    assert [c.description for c in (h, method, precision)] == ["step h", "method", "precision"]
    assert h.value == pytest.approx(1e-4) and (method.value, precision.value) == ("central", "float64")
    assert list(method.options) == ["central", "forward"] and list(precision.options) == ["float64", "float32"]
    ax = plt.gcf().axes[0]
    curve, guide, chosen = ax.lines
    expected = grad.finite_difference_errors(f, 0.5, -0.64, hs, method="central").numpy()
    np.testing.assert_allclose(curve.get_ydata(), np.maximum(expected, 1e-17))
    err = grad.finite_difference_errors(f, 0.5, -0.64, [1e-4], method="central")[0].item()
    assert chosen.get_ydata()[0] == pytest.approx(err) and ax.get_title() == f"h = 1.0e-04: error {err:.2e}"
    assert "central difference in float64" in capsys.readouterr().out


def test_finite_difference_widget_switches_method_and_precision():
    box = finite_difference_widget(f, 0.5, -0.64)
    _, method, precision = box.children[0].children
    method.value, precision.value = "forward", "float32"
    ax = plt.gcf().axes[0]
    assert ax.lines[0].get_label() == "forward, float32" and len(ax.lines[0].get_xdata()) == 129
    # the round-off guide eps / h uses float32's epsilon
    assert ax.lines[1].get_ydata()[-1] == pytest.approx(torch.finfo(torch.float32).eps)
