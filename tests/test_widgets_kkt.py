"""optlib.widgets.kkt: the level widget of chapter 14, its drawings and its SLSQP helper."""

import math

import ipywidgets as w
import matplotlib.pyplot as plt
import pytest
import torch

from optlib import plot
from optlib.constrained import Problem, kkt_check, slsqp
from optlib.widgets import kkt

pytestmark = pytest.mark.usefixtures("figures_closed")
F64 = torch.float64


def _annotations(ax):
    return [c for c in ax.get_children() if isinstance(c, plt.Annotation)]


def test_level_widget_has_the_promised_controls_and_draws_its_default(capsys):
    plt.close("all")
    box = kkt.level_widget()
    assert isinstance(box, w.VBox)
    controls = box.children[0].children
    assert [c.description for c in controls] == ["level b", "constraint"]
    level, kind = controls
    assert (level.value, kind.value) == (pytest.approx(1.0), "inequality")
    assert list(kind.options) == ["inequality", "equality"]
    assert plt.gcf().axes[0].get_title().endswith("μ = 1.453, active")
    level.value = 9.0
    assert plt.gcf().axes[0].get_title().endswith("μ = 0.000, inactive")
    kind.value = "equality"
    assert plt.gcf().axes[0].get_title().endswith("λ = -0.277, an equality always binds")


def test_draw_level_prints_the_multiplier_and_the_verdict(capsys):
    ax = kkt.draw_level(1.0)
    assert capsys.readouterr().out == "b = 1: x* = (0.815, 0.579), μ = 1.453, active; KKT holds\n"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["$g(x) > 0$ (infeasible)", "unconstrained minimum", r"$-\nabla f$", r"$\nabla g$"]
    assert len(_annotations(ax)) == 2  # -grad f and grad g at x*
    kkt.draw_level(9.0)
    out = capsys.readouterr().out
    assert "μ = 0.000, inactive" in out and "-0.000" not in out
    with pytest.raises(ValueError, match="kind"):
        kkt.draw_level(1.0, "box")
    with pytest.raises(ValueError, match="positive"):
        kkt.level_problem(-1.0)


def test_the_multiplier_is_the_slope_of_the_optimal_value():
    # d f*/d b = -lambda on the circle; the disk's mu is the circle's lambda clipped at 0
    for b in (0.5, 2.0, 7.0):
        x, lam, _ = slsqp(kkt.level_problem(b, "equality"), [0.5, 0.5])
        values = [kkt.level_objective(slsqp(kkt.level_problem(b + s, "equality"), [0.5, 0.5])[0]).item()
                  for s in (1e-3, -1e-3)]
        assert (values[0] - values[1]) / 2e-3 == pytest.approx(-lam.item(), abs=1e-4)
        _, _, mu = slsqp(kkt.level_problem(b), [0.5, 0.5])
        assert mu.item() == pytest.approx(max(lam.item(), 0.0), abs=1e-6)


def test_draw_problem_shades_the_infeasible_side_and_draws_the_curves():
    problem = Problem(lambda x: (x[0] - 2) ** 2 + (x[1] - 1) ** 2, equalities=lambda x: (x[0] + x[1] - 2).reshape(1),
                      inequalities=lambda x: (x[0] ** 2 - x[1]).reshape(1))
    fig, ax = plot.subplots(1)
    kkt.draw_problem(problem, ax=ax, bounds=((-1, 2), (-1, 3)), title="both")
    assert ax.get_title() == "both" and ax.get_aspect() == 1.0
    assert ax.get_xlim() == (-1, 2) and ax.get_ylim() == (-1, 3)
    ax.legend()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["$h(x) = 0$", "$g(x) > 0$ (infeasible)"]
    X, Y, V = kkt.grid_values(problem.inequalities, ((-1, 2), (-1, 3)), resolution=11)
    assert X.shape == Y.shape == (11, 11) and V.shape == (11, 11, 1)
    assert V[0, 0, 0] == pytest.approx(1.0 - -1.0)  # g at (-1, -1): 1 + 1


def test_draw_gradients_shares_one_scale_and_skips_a_zero_gradient():
    problem = kkt.level_problem(1.0)
    x, _, mu = slsqp(problem, [0.5, 0.5])
    fig, ax = plot.subplots(1)
    kkt.draw_gradients(problem, x, ax=ax, length=1.0)
    red, orange = _annotations(ax)
    lengths = [math.dist(a.xy, a.xyann) for a in (red, orange)]
    assert lengths[0] == pytest.approx(1.0) and lengths[0] / lengths[1] == pytest.approx(mu.item(), rel=1e-5)
    fig, ax = plot.subplots(1)
    kkt.draw_gradients(kkt.level_problem(9.0), torch.tensor([2.0, 1.0]), ax=ax, constraints="active", marker=None)
    assert _annotations(ax) == [] and len(ax.lines) == 0  # -grad f = 0 and the constraint is inactive
    kkt.draw_gradients(kkt.level_problem(9.0), torch.tensor([2.0, 1.0]), ax=ax, constraints="all")
    assert len(_annotations(ax)) == 1  # grad g only
    with pytest.raises(ValueError, match="constraints"):
        kkt.draw_gradients(problem, x, ax=ax, constraints="some")
    with pytest.raises(ValueError, match="plane"):
        kkt.draw_gradients(problem, torch.zeros(3), ax=ax)


def test_draw_reports_marks_the_failing_conditions():
    problem = Problem(lambda x: (x**2).sum(), inequalities=lambda x: 1 - x)
    reports = {"infeasible": kkt_check(problem, torch.tensor([0.5], dtype=F64)),
               "solution": kkt_check(problem, torch.tensor([1.0], dtype=F64), ineq_multipliers=[2.0])}
    fig, ax = plot.subplots(1)
    kkt.draw_reports(reports, ax=ax, title="checks")
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["ok", "0.5", "ok", "0.5", "ok", "ok", "ok", "ok"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["infeasible", "solution"]
    with pytest.raises(ValueError, match="empty"):
        kkt.draw_reports({}, ax=ax)


def test_svm_problem_and_its_margin_drawing():
    X = torch.tensor([[1.0, 1.0], [3.0, 1.0], [-1.0, -1.0], [-1.0, -3.0]], dtype=F64)
    y = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=F64)
    problem = kkt.svm_problem(X, y)
    v, _, mu = slsqp(problem, torch.zeros(3, dtype=F64))
    assert kkt_check(problem, v, ineq_multipliers=mu).satisfied
    # support vectors (1, 1) and (-1, -1): w = (1/2, 1/2), b = 0, margin 2 / ||w|| = 2 sqrt 2
    torch.testing.assert_close(v, torch.tensor([0.5, 0.5, 0.0], dtype=F64), atol=1e-6, rtol=0)
    assert (mu > 1e-6).tolist() == [True, False, True, False]
    fig, ax = plot.subplots(1)
    kkt.draw_margin(X, y, v, [0, 2], ax=ax, title="svm")
    assert len(ax.lines) == 3 and ax.get_title() == "svm"
    with pytest.raises(ValueError, match="shape"):
        kkt.svm_problem(X[:, :1], y)
    with pytest.raises(ValueError, match="labels"):
        kkt.svm_problem(X, torch.tensor([1.0, 0.0, -1.0, -1.0]))
