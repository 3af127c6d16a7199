"""optlib.widgets.schedule_free: the sequences widget builds and draws; the helper runs match the optimizers."""

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from optlib import averaging
from optlib import data as datasets
from optlib.optim import ScheduleFreeSGD
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


def test_curves_match_schedule_free_sgd_for_one_run():
    problem = averaging.NoisyLeastSquares.make(n=50, dim=3, generator=torch.Generator().manual_seed(1))
    curves = averaging.schedule_free_curves(problem, lr=0.05, beta=0.7, steps=30, seeds=1,
                                                record_at=[30], generator=torch.Generator().manual_seed(2))
    # the same draws, through the optimizer
    gen = torch.Generator().manual_seed(2)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = ScheduleFreeSGD([p], lr=0.05, momentum=0.7, weight_lr_power=0.0)
    for _ in range(30):
        i = torch.randint(0, 50, (1, 1), generator=gen)[0]
        opt.zero_grad()
        (0.5 * ((problem.X[i] @ p - problem.y[i]) ** 2).mean()).backward()
        opt.step()
    x = opt.averaged_parameters()[0]
    assert curves["x"][0, 0] == pytest.approx(problem.excess(x).item(), rel=1e-10)
    assert curves["z"][0, 0] == pytest.approx(problem.excess(opt.state[p]["z"]).item(), rel=1e-10)


def test_curves_accept_the_limits_and_reject_bad_arguments():
    problem = averaging.NoisyLeastSquares.make(n=50, dim=3, generator=torch.Generator().manual_seed(1))
    for beta in (0.0, 1.0):
        c = averaging.schedule_free_curves(problem, lr=0.05, beta=beta, steps=20, seeds=2,
                                               generator=torch.Generator().manual_seed(0))
        assert c["x"].shape == (len(c["steps"]), 2) and np.isfinite(c["x"]).all()
    c = averaging.schedule_free_curves(problem, lr=0.05, beta=0.0, steps=20, seeds=2, record_at=[20],
                                           generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(c["y"], c["z"])
    with pytest.raises(ValueError, match="beta"):
        averaging.schedule_free_curves(problem, lr=0.05, beta=1.5, steps=5)
    with pytest.raises(ValueError, match="record_at"):
        averaging.schedule_free_curves(problem, lr=0.05, beta=0.5, steps=5, record_at=[6])


def test_train_digits_reports_x_and_y_for_schedule_free_only():
    digits = datasets.load_digits(dtype=torch.float64)
    sf = averaging.schedule_free_digits(digits, "schedule_free", 0.03, seed=0, steps=20)
    assert set(sf) == {"train_loss", "test_acc", "train_loss_y", "test_acc_y"}
    assert sf["train_loss"] != sf["train_loss_y"]
    adamw = averaging.schedule_free_digits(digits, "adamw_cosine", 0.03, seed=0, steps=20)
    assert set(adamw) == {"train_loss", "test_acc"} and 0 < adamw["test_acc"] <= 1
    with pytest.raises(ValueError, match="method"):
        averaging.schedule_free_digits(digits, "sgd", 0.1, seed=0)
