"""optlib.widgets.shampoo: the widget of chapter 16 builds and draws its race without a kernel."""
import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib import kronecker
from optlib.widgets import shampoo

pytestmark = pytest.mark.usefixtures("figures_closed")


def test_matrix_race_widget_has_its_controls_and_draws_its_default():
    plt.close("all")
    box = shampoo.matrix_race_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["cond(A) = cond(B)", "optimizer", "steps"]
    cond, optimizer, steps = controls
    assert (cond.value, optimizer.value, steps.value) == pytest.approx((30.0, "Shampoo", 200))
    assert list(optimizer.options) == list(kronecker.METHODS)
    ax = plt.gcf().axes[0]
    assert ax.get_title() == "steps to 1e-04: SGD never, Adam never, Shampoo 64"
    assert len(ax.get_legend().get_texts()) == 3


def test_draw_matrix_race_rejects_unknown_optimizers_and_reaches_at_small_kappa():
    ax = shampoo.draw_matrix_race(3.0, "SGD momentum", 200)
    assert ax.get_title() == "steps to 1e-04: SGD 85, Adam 73, SGD momentum 80"
    with pytest.raises(ValueError, match="optimizer"):
        shampoo.draw_matrix_race(3.0, "Muon", 50)
