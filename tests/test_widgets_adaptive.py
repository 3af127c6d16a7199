"""optlib.widgets.adaptive: chapter 6's Adam-on-Rosenbrock widget builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest

from optlib import functions, optim, run
from optlib.widgets import adaptive


pytestmark = pytest.mark.usefixtures("figures_closed")


def test_widget_has_the_promised_controls_and_draws_the_default_run():
    box = adaptive.adam_rosenbrock_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["Adam lr", "β₁", "β₂", "bias correction", "steps"]
    lr, beta1, beta2, correction, steps = controls
    assert isinstance(lr, w.FloatLogSlider) and lr.value == pytest.approx(0.03)
    assert beta1.value == pytest.approx(0.9) and beta2.value == 0.999
    assert list(correction.options) == ["on", "off"] and correction.value == "on"
    assert steps.value == 500
    left, right = plt.gcf().axes[:2]
    expected = run.minimize(functions.Rosenbrock(), [-1.2, 1.0], optim.Adam, steps=500, lr=0.03)
    adam_line = [line for line in right.lines if line.get_label() == "Adam"][0]
    np.testing.assert_allclose(adam_line.get_ydata(), expected.loss, rtol=1e-12)
    assert right.get_title() == f"Adam: f = {expected.final_loss:.2e} after 500 steps"
    assert right.get_yscale() == "log"


def test_widget_redraws_without_bias_correction_and_reports_a_stopped_run():
    box = adaptive.adam_rosenbrock_widget()
    correction = box.children[0].children[3]
    correction.value = "off"
    right = plt.gcf().axes[1]
    expected = run.minimize(functions.Rosenbrock(), [-1.2, 1.0], optim.Adam, steps=500, lr=0.03,
                            bias_correction=False)
    assert right.get_title() == f"Adam: f = {expected.final_loss:.2e} after 500 steps"
    _, right = adaptive.draw_adam_rosenbrock(1e6, 0.9, 0.999, True, 50, start=(1e150, 1e150))
    assert "nan" in right.get_title() or "inf" in right.get_title()
    with pytest.raises(TypeError, match="bias_correction"):
        adaptive.draw_adam_rosenbrock(0.01, 0.9, 0.999, "on", 10)
