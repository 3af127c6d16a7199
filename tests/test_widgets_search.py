"""optlib.widgets.search: chapter 1's random-local-search widget, built without a kernel."""

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch

from optlib import search
from optlib.widgets.search import local_search_widget


pytestmark = pytest.mark.usefixtures("figures_closed")


def loss(w):
    return ((w - 1.0) ** 2).sum()


def test_local_search_widget_draws_the_default_run(capsys):
    start = torch.zeros(3, dtype=torch.float64)
    box = local_search_widget(loss, start, lambda W: (0.5, 0.25), step_size=0.1, trials=200, seed=3)
    assert isinstance(box, w.VBox)
    step, trials = box.children[0].children
    assert [c.description for c in (step, trials)] == ["step size", "trials"]
    assert isinstance(step, w.FloatLogSlider) and step.value == pytest.approx(0.1)
    assert isinstance(trials, w.IntSlider) and trials.value == 200
    ax = plt.gcf().axes[0]
    proposals, best = ax.lines
    expected = search.random_local_search(loss, start, 200, 0.1, generator=torch.Generator().manual_seed(3))
    assert list(best.get_ydata()) == expected.best_so_far and list(proposals.get_ydata()) == expected.losses
    assert ax.get_yscale() == "log" and ax.get_title() == "step 0.1: test accuracy 0.250"
    assert ax.get_legend()._loc == 3  # lower left: the curves fall from the upper left


def test_local_search_widget_redraws_and_works_without_accuracy():
    box = local_search_widget(loss, torch.zeros(2, dtype=torch.float64), trials=100)
    _, trials = box.children[0].children
    trials.value = 300
    ax = plt.gcf().axes[0]
    assert len(ax.lines[1].get_xdata()) == 300 and ax.get_title() == "step 0.01"
