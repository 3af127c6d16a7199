"""optlib.widgets.trust_region: the radius widget of chapter 12 builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import functions
from optlib.widgets import trust_region

pytestmark = pytest.mark.usefixtures("figures_closed")


def test_trust_region_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = trust_region.trust_region_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["radius Δ₀", "η", "steps"]
    radius, eta, steps = controls
    assert (radius.value, eta.value, steps.value) == pytest.approx((0.1, 0.15, 60))
    fig = plt.gcf()
    left, right = fig.axes[:2]
    assert len(left.lines) >= 2 and len(right.lines) >= 1
    # a small first radius costs iterations while the region grows
    assert right.get_title() == "at the minimum after 53 iterations"
    radius.value = 1.0
    assert plt.gcf().axes[1].get_title() == "at the minimum after 28 iterations"
    labels = [t.get_text() for t in plt.gcf().axes[1].get_legend().get_texts()]
    assert "Δ₀ = 1, η = 0.15" in labels


def test_draw_trust_region_reports_an_unfinished_run():
    fn = functions.Rosenbrock()
    left, right = trust_region.draw_trust_region(fn, 0.1, 0.15, 10)
    assert right.get_title().startswith("f = ") and right.get_title().endswith("after 10 iterations")
    left, right = trust_region.draw_trust_region(fn, 100.0, 0.0, 60)
    assert right.get_title() == "at the minimum after 43 iterations"


def test_draw_model_draws_the_circles_and_rejects_other_dimensions():
    import torch

    fig, ax = plt.subplots()
    g, H = torch.tensor([1.0, -2.0], dtype=torch.float64), torch.diag(torch.tensor([2.0, -1.0], dtype=torch.float64))
    out = trust_region.draw_model(g, H, ax=ax, half_width=1.5, radii=(0.5, 1.0), title="model")
    assert out is ax and len(ax.lines) == 2 and ax.get_title() == "model"
    assert ax.get_xlim() == pytest.approx((-1.5, 1.5))
    with pytest.raises(ValueError, match="2-D model"):
        trust_region.draw_model(torch.ones(3), torch.eye(3), ax=ax, half_width=1.0)
