"""optlib.widgets.geometry: the double-well escape widget of chapter 4 builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import geometry
from optlib.widgets import geometry as geometry_widgets


pytestmark = pytest.mark.usefixtures("figures_closed")


def test_escape_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = geometry_widgets.escape_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["learning rate", "momentum", "noise std", "start offset y0",
                                                 "steps"]
    values = [c.value for c in controls]
    assert values == pytest.approx([0.1, 0.0, 0.01, 1e-8, 250])
    left, right = plt.gcf().axes[:2]
    assert len(right.lines) == 2
    assert right.get_title().startswith("escaped (f ≤ −0.1) at step")


def test_draw_escape_reports_no_escape_and_divergence():
    well = geometry.DoubleWell()
    # on the stable manifold, without noise, plain GD never leaves the saddle
    _, right = geometry_widgets.draw_escape(well, 0.1, 0.0, 0.0, 0.0, 50)
    assert right.get_title() == "not escaped in 50 steps"
    _, right = geometry_widgets.draw_escape(well, 2.5, 0.9, 0.0, 0.1, 200)
    assert right.get_title().startswith("loss")
