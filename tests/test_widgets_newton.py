"""optlib.widgets.newton: the damping widget of chapter 9 builds and draws without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import functions
from optlib.widgets import newton

pytestmark = pytest.mark.usefixtures("figures_closed")


def test_damping_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = newton.damping_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["damping δ", "mode", "steps"]
    damping, mode, steps = controls
    assert (damping.value, mode.value, steps.value) == pytest.approx((0.1, "newton", 30))
    assert list(mode.options) == ["newton", "saddle_free"]
    fig = plt.gcf()
    left, right = fig.axes[:2]
    assert len(left.lines) >= 2 and len(right.lines) >= 1
    # δ = 0.1 is below the negative curvature: the run still ends on the saddle, f = 0
    assert right.get_title() in ("f = 0.000 after 30 steps", "f = -0.000 after 30 steps")
    mode.value = "saddle_free"
    assert plt.gcf().axes[1].get_title() == "at the minimum after 5 steps"
    labels = [t.get_text() for t in plt.gcf().axes[1].get_legend().get_texts()]
    assert "saddle-free, δ = 0.1" in labels


def test_draw_damping_escapes_with_enough_damping_and_rejects_unknown_modes():
    fn = functions.SaddleWithFloor()
    left, right = newton.draw_damping(fn, 3.0, "newton", 30)
    assert right.get_title() == "at the minimum after 14 steps"
    with pytest.raises(ValueError, match="mode"):
        newton.draw_damping(fn, 1.0, "bfgs", 10)


def test_saddle_with_floor_gradient_and_hessian_match_autograd():
    import torch

    fn = functions.SaddleWithFloor()
    p = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(fn(p), p)
    torch.testing.assert_close(fn.gradient(p.detach()), g)
    auto = torch.autograd.functional.hessian(fn.value, p.detach())
    torch.testing.assert_close(fn.hessian(p.detach()), auto)
    assert fn(fn.minima).tolist() == pytest.approx([-1.0, -1.0])
