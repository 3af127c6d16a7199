"""optlib.widgets.constrained: the dual-step and parity widgets of chapter 15 build and draw without a kernel,
and the runs they draw (primal-dual paths, parity fits) are the methods they claim to be."""
import math

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch

from optlib import functions
from optlib.constrained import AugmentedLagrangian, Problem, QuadraticPenalty, primal_dual_path
from optlib.fairness import biased_lending, fit_parity, parity_gap, parity_report
from optlib.widgets import constrained

pytestmark = pytest.mark.usefixtures("figures_closed")
F64 = torch.float64


def _disk_problem():
    bowl = functions.Quadratic(condition_number=4, angle=math.pi / 6)
    center = torch.tensor([2.0, 1.0], dtype=F64)
    return Problem(lambda x: bowl(x - center), inequalities=lambda x: (x @ x - 1).reshape(1))


X_STAR = torch.tensor([0.9125893799, 0.4088772637], dtype=F64)
MU_STAR = 0.6218994208
X0 = torch.tensor([0.0, -1.0], dtype=F64)


def test_primal_dual_path_is_simultaneous_descent_ascent_with_a_clamped_multiplier():
    problem = _disk_problem()
    path = primal_dual_path(problem, X0, lr=0.1, dual_lr=0.5, steps=5)
    assert path.path.shape == (6, 2) and path.multipliers.shape == (5, 1) and path.violations.shape == (5,)
    assert path.stopped is None
    x, mu = X0.clone(), torch.zeros(1, dtype=F64)
    for k in range(5):
        xg = x.clone().requires_grad_(True)
        f, _, g = problem.values(xg)
        (f + mu @ g).backward()
        x, mu = x - 0.1 * xg.grad, (mu + 0.5 * g.detach()).clamp(min=0)
        torch.testing.assert_close(path.path[k + 1], x)
        torch.testing.assert_close(path.multipliers[k], mu)
        assert path.violations[k] == pytest.approx(max(float(g.detach()), 0.0))


def test_primal_dual_path_converges_for_a_small_dual_step_and_cycles_for_a_large_one():
    problem = _disk_problem()
    settled = primal_dual_path(problem, X0, lr=0.1, dual_lr=0.1, steps=400)
    torch.testing.assert_close(settled.path[-1], X_STAR, atol=1e-6, rtol=0)
    assert settled.multipliers[-1, 0].item() == pytest.approx(MU_STAR, abs=1e-6)
    cycling = primal_dual_path(problem, X0, lr=0.1, dual_lr=3.0, steps=400)
    tail = cycling.multipliers[-200:, 0]
    assert tail.max() - tail.min() > 1 and (tail == 0).any()  # the clamp at 0 is hit


def test_primal_dual_path_stops_when_values_become_non_finite():
    problem = Problem(lambda x: -(x**3).sum(), inequalities=lambda x: (x[0] - 1e6).reshape(1))
    path = primal_dual_path(problem, torch.tensor([2.0], dtype=F64), lr=1.0, dual_lr=1.0, steps=50)
    assert path.stopped is not None and "non-finite" in path.stopped
    assert len(path.path) == len(path.multipliers) + 1 < 51


def test_draw_constrained_shades_the_infeasible_side_and_draws_paths():
    fig, ax = plt.subplots()
    constrained.draw_constrained(_disk_problem(), ax=ax, bounds=((-1.5, 2.5), (-1.5, 2.5)),
                                 paths={"path": [[0.0, -1.0], [0.9, 0.4]]}, marks={"x*": X_STAR}, resolution=60)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["path", "x*"]
    assert ax.get_xlim() == (-1.5, 2.5)
    with pytest.raises(ValueError, match="2-D problems"):
        constrained.draw_constrained(_disk_problem(), ax=ax, bounds=((0, 1),))


def test_dual_step_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = constrained.dual_step_widget(_disk_problem(), X0, X_STAR, MU_STAR)
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["dual step η", "primal step α", "steps"]
    eta, lr, steps = controls
    assert (eta.value, lr.value, steps.value) == pytest.approx((3.0, 0.1, 600))
    left, right = plt.gcf().axes[:2]
    assert left.get_title().startswith("μ still swings over [0.00, ")
    eta.value = 0.1
    assert plt.gcf().axes[0].get_title() == f"μ settled at {MU_STAR:.3f}"


def test_fit_parity_meets_the_slack_and_the_report_measures_both_gaps():
    data = biased_lending(seed=1, n_train=400, n_test=300)
    free, _ = fit_parity(data)
    free_report = parity_report(free, data)
    assert free_report["gap_train"] > 0.08
    model, trace = fit_parity(data, 0.03)
    report = parity_report(model, data)
    assert report["gap_train"] == pytest.approx(0.03, abs=1e-6)
    assert trace.metrics["multipliers"][-1][1][0] > 0 and trace.metrics["multipliers"][-1][1][1] == 0
    with torch.no_grad():
        decisions = model(data.X_test).argmax(1)
    assert report["hard_gap_test"] == pytest.approx(float(parity_gap(decisions.to(F64), data.s_test)))
    assert report["acc_test"] == pytest.approx(float((decisions == data.y_test).to(F64).mean()))
    r0, r1 = report["rates_train"]
    assert r1 - r0 == pytest.approx(report["gap_train"])
    penalized, _ = fit_parity(data, 0.03, QuadraticPenalty(weight=10.0, growth=1.0))
    assert parity_report(penalized, data)["gap_train"] > 0.03 + 1e-3
    with pytest.raises(ValueError, match="needs a slack"):
        fit_parity(data, None, AugmentedLagrangian())


def test_parity_widget_has_the_promised_controls_and_draws_its_default():
    plt.close("all")
    box = constrained.parity_widget()
    controls = box.children[0].children
    assert [c.description for c in controls] == ["slack ε", "formulation", "weight ρ or w"]
    slack, formulation, weight = controls
    assert (slack.value, formulation.value, weight.value) == (0.05, "augmented Lagrangian", pytest.approx(20.0))
    assert list(formulation.options) == list(constrained.FORMULATIONS)
    left, right = plt.gcf().axes[:2]
    assert left.get_title().startswith("gap 0.050 (slack 0.05)")
    assert [t.get_text() for t in left.get_legend().get_texts()] == ["labels", "unconstrained", "constrained"]
    formulation.value = "quadratic penalty"
    gap = float(plt.gcf().axes[0].get_title().split()[1])
    assert gap > 0.05 + 1e-3  # a penalty misses the slack
    with pytest.raises(ValueError, match="formulation"):
        constrained.draw_parity(biased_lending(seed=0, n_train=50, n_test=50), 0.05, "barrier", 1.0)
