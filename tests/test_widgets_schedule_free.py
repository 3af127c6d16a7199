"""optlib.widgets.schedule_free: the sequences widget builds and draws its default without a kernel."""
import ipywidgets as w
import matplotlib.pyplot as plt
import pytest

from optlib.widgets import schedule_free

pytestmark = pytest.mark.usefixtures("figures_closed")


def test_sequences_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = schedule_free.sequences_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["β", "learning rate γ", "steps"]
    beta, lr, steps = controls
    assert (beta.value, lr.value, steps.value) == pytest.approx((0.9, 0.05, 2000))
    ax = plt.gcf().axes[0]
    assert len(ax.lines) == 3
    assert ax.get_title().startswith("β = 0.90, γ = 0.05")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["z (SGD iterate)", "y (gradient point)", "x (average)"]
    steps.value = 300
    assert len(plt.gcf().axes[0].lines) == 3
