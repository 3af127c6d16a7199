"""optlib.constrained and optlib.projections against SciPy's SLSQP, cvxpy and Cooper."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from constrained_problems import F64, cases
from optlib.constrained import (AugmentedLagrangian, PrimalDual, Problem, QuadraticPenalty, estimate_multipliers,
                                kkt_check, lagrangian, slsqp, solve)
from optlib.projections import Projected, project_box, project_l1_ball, project_l2_ball, project_simplex
from optlib.stability import NonFiniteLossError

CASES = cases()


def slsqp_reference(case):
    """SLSQP's solution and multipliers, in optlib's sign convention (optlib.constrained.slsqp converts them)."""
    x, lam, mu = slsqp(case.problem, case.x0, ftol=1e-15, maxiter=1000)
    return x, lam, mu


@pytest.fixture(scope="module")
def references():
    return {name: slsqp_reference(case) for name, case in CASES.items()}


def test_slsqp_gives_the_known_answers(references):
    x, lam, mu = references["x2_x_ge_1"]
    torch.testing.assert_close(x, torch.tensor([1.0], dtype=F64), atol=1e-8, rtol=0)
    torch.testing.assert_close(mu, torch.tensor([2.0], dtype=F64), atol=1e-6, rtol=0)
    x, lam, mu = references["parabola_line"]
    torch.testing.assert_close(torch.cat([x, lam, mu]), torch.tensor([1, 1, 2 / 3, 2 / 3], dtype=F64),
                               atol=1e-6, rtol=0)
    x, lam, mu = references["simplex_qp"]
    torch.testing.assert_close(x, torch.tensor([0.6, 0, 0, 0.4], dtype=F64), atol=1e-8, rtol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_the_kkt_checker_passes_at_every_reference_solution(name, references):
    x, lam, mu = references[name]
    report = kkt_check(CASES[name].problem, x, lam, mu, tol=1e-6)
    assert report.satisfied, str(report)
    estimated = kkt_check(CASES[name].problem, x, tol=1e-6)  # multipliers estimated from x alone
    assert estimated.satisfied, str(estimated)
    torch.testing.assert_close(estimated.ineq_multipliers, mu, atol=1e-5, rtol=0)


METHODS = {
    "augmented Lagrangian": (lambda: AugmentedLagrangian(penalty=10.0), dict(outer_steps=60)),
    "primal-dual": (lambda: PrimalDual(dual_lr=0.5), dict(inner="gd", inner_steps=1, lr=0.1, outer_steps=40000)),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", list(CASES))
def test_lagrangian_methods_match_slsqp(name, method, references):
    make, options = METHODS[method]
    case = CASES[name]
    result = solve(case.problem, make(), case.x0, tol=1e-7, **options)
    x, lam, mu = references[name]
    torch.testing.assert_close(result.x, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(result.eq_multipliers, lam, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.ineq_multipliers, mu, atol=1e-4, rtol=0)
    assert result.kkt.satisfied, str(result.kkt)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.projection is not None])
def test_projected_gradient_matches_slsqp(name, references):
    case = CASES[name]
    x = case.x0.clone().requires_grad_(True)
    opt = Projected(torch.optim.SGD([x], lr=0.1), {x: case.projection})
    for _ in range(3000):
        opt.zero_grad()
        case.problem.objective(x).backward()
        opt.step()
    x_ref, lam_ref, mu_ref = references[name]
    torch.testing.assert_close(x.detach(), x_ref, atol=1e-6, rtol=0)
    lam, mu = estimate_multipliers(case.problem, x.detach(), active_tol=1e-8)
    torch.testing.assert_close(lam, lam_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(mu, mu_ref, atol=1e-4, rtol=0)


def test_convex_problems_match_cvxpy_and_its_dual_values():
    cp = pytest.importorskip("cvxpy")
    from constrained_problems import _random_qp

    Q, c, A, b, G, h = (t.numpy() for t in _random_qp(7))
    x = cp.Variable(5)
    eq, ineq = A @ x == b, G @ x <= h
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(Q)) + c @ x), [eq, ineq]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    case = CASES["random_qp"]
    result = solve(case.problem, AugmentedLagrangian(penalty=10.0), case.x0, tol=1e-10, outer_steps=60)
    torch.testing.assert_close(result.x, torch.tensor(x.value), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.eq_multipliers, torch.tensor(eq.dual_value), atol=1e-4, rtol=0)
    torch.testing.assert_close(result.ineq_multipliers, torch.tensor(ineq.dual_value), atol=1e-4, rtol=0)
    assert (result.ineq_multipliers > 1e-3).tolist() == [False, True, False], "the second inequality binds"


def test_cooper_finds_the_same_solution_and_multiplier():
    cooper = pytest.importorskip("cooper")

    class Problem1D(cooper.ConstrainedMinimizationProblem):
        def __init__(self):
            super().__init__()
            multiplier = cooper.multipliers.DenseMultiplier(num_constraints=1, dtype=F64)
            self.constraint = cooper.Constraint(constraint_type=cooper.ConstraintType.INEQUALITY,
                                                formulation_type=cooper.formulations.Lagrangian,
                                                multiplier=multiplier)

        def compute_cmp_state(self, x):
            violation = cooper.ConstraintState(violation=1 - x)
            return cooper.CMPState(loss=(x ** 2).sum(), observed_constraints={self.constraint: violation})

    cmp = Problem1D()
    x = torch.tensor([3.0], dtype=F64, requires_grad=True)
    optimizer = cooper.optim.AlternatingPrimalDualOptimizer(
        cmp=cmp, primal_optimizers=torch.optim.SGD([x], lr=0.1),
        dual_optimizers=torch.optim.SGD(cmp.dual_parameters(), lr=0.5, maximize=True))
    for _ in range(2000):
        optimizer.roll(compute_cmp_state_kwargs=dict(x=x))
    ours = solve(CASES["x2_x_ge_1"].problem, PrimalDual(dual_lr=0.5), torch.tensor([3.0], dtype=F64),
                 inner="gd", inner_steps=1, lr=0.1, outer_steps=2000, tol=1e-12)
    theirs = cmp.constraint.multiplier.weight.detach().reshape(-1)
    torch.testing.assert_close(x.detach(), ours.x, atol=1e-6, rtol=0)
    torch.testing.assert_close(theirs, ours.ineq_multipliers, atol=1e-4, rtol=0)
    torch.testing.assert_close(theirs, torch.tensor([2.0], dtype=F64), atol=1e-4, rtol=0)


def test_the_quadratic_penalty_misses_by_one_over_the_weight_and_ill_conditions():
    case = CASES["x2_x_ge_1"]
    weights = [1e1, 1e2, 1e3, 1e4]
    errors = []
    for weight in weights:
        result = solve(case.problem, QuadraticPenalty(weight, growth=1.0), case.x0, outer_steps=1, tol=1e-12)
        errors.append(1.0 - float(result.x))  # minimizer of x^2 + w/2 (1 - x)^2: x = w / (2 + w)
    for weight, error in zip(weights, errors):
        assert error == pytest.approx(2 / (2 + weight), rel=1e-6)
    slope = np.polyfit(np.log10(weights), np.log10(errors), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.05)

    # min x1^2 + 2 x2^2 s.t. x1 + x2 = 1: the penalized Hessian diag(2, 4) + w 11^T has condition number ~ w
    problem = Problem(lambda x: x[0] ** 2 + 2 * x[1] ** 2, equalities=lambda x: (x.sum() - 1).reshape(1))
    conditions = []
    for weight in weights:
        penalty = QuadraticPenalty(weight, growth=1.0)
        hessian = torch.autograd.functional.hessian(lambda x: penalty.loss(*problem.values(x)),
                                                    torch.tensor([0.6, 0.3], dtype=F64))
        conditions.append(float(torch.linalg.cond(hessian)))
    slope = np.polyfit(np.log10(weights), np.log10(conditions), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.1) and conditions[-1] / conditions[0] > 300


@pytest.mark.parametrize("point, multiplier, violated", [
    ([0.5], None, ["primal feasibility", "complementary slackness"]),   # infeasible
    ([2.0], None, ["stationarity"]),                                   # feasible, not stationary
    ([1.0], [-2.0], ["stationarity", "dual feasibility", "complementary slackness"][:2]),  # wrong-sign multiplier
    ([1.0], [1.0], ["stationarity"]),                                  # wrong multiplier
    ([1.0], [2.0], []),
])
def test_the_kkt_checker_names_the_failing_condition(point, multiplier, violated):
    problem = CASES["x2_x_ge_1"].problem
    x = torch.tensor(point, dtype=F64)
    report = kkt_check(problem, x, ineq_multipliers=multiplier) if multiplier else kkt_check(problem, x)
    assert report.violated == violated, str(report)
    assert ("VIOLATED" in str(report)) == bool(violated)


def test_complementary_slackness_fails_for_a_positive_multiplier_on_an_inactive_constraint():
    problem = CASES["inactive"].problem
    report = kkt_check(problem, torch.tensor([1.0, 2.0], dtype=F64), ineq_multipliers=[0.5])
    assert "complementary slackness" in report.violated and "stationarity" in report.violated


def test_lagrangian_value_and_gradient():
    problem = CASES["parabola_line"].problem
    x = torch.tensor([1.0, 1.0], dtype=F64, requires_grad=True)
    value = lagrangian(problem, x, [2 / 3], [2 / 3])
    value.backward()
    assert float(value.detach()) == pytest.approx(1.0)
    assert x.grad.abs().max() < 1e-12


def test_projections_are_the_nearest_feasible_points():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        y = 3 * torch.randn(6, generator=gen, dtype=F64)
        for project, inside in [
            (lambda v: project_box(v, -1.0, 0.5), lambda v: (v >= -1).all() and (v <= 0.5).all()),
            (lambda v: project_l2_ball(v, 2.0), lambda v: v.norm() <= 2 + 1e-12),
            (lambda v: project_simplex(v, 1.5), lambda v: (v >= 0).all() and abs(float(v.sum()) - 1.5) < 1e-12),
            (lambda v: project_l1_ball(v, 1.0), lambda v: v.abs().sum() <= 1 + 1e-12),
        ]:
            p = project(y)
            assert inside(p)
            # variational inequality of a projection onto a convex set: (y - p) . (z - p) <= 0 for z in the set
            for _ in range(10):
                z = project(3 * torch.randn(6, generator=gen, dtype=F64))
                assert float((y - p) @ (z - p)) <= 1e-10
    inner = torch.tensor([0.1, -0.2], dtype=F64)
    assert torch.equal(project_l1_ball(inner, 1.0), inner) and torch.equal(project_l2_ball(inner), inner)


def test_the_simplex_projection_against_cvxpy():
    cp = pytest.importorskip("cvxpy")
    gen = torch.Generator().manual_seed(3)
    y = torch.randn(7, generator=gen, dtype=F64)
    w = cp.Variable(7)
    cp.Problem(cp.Minimize(cp.sum_squares(w - y.numpy())), [w >= 0, cp.sum(w) == 2]).solve(
        solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    torch.testing.assert_close(project_simplex(y, 2.0), torch.tensor(w.value), atol=1e-8, rtol=0)


def test_projected_wraps_any_optimizer_and_keeps_its_state_and_schedulers():
    model = torch.nn.Linear(3, 2)
    opt = Projected(torch.optim.Adam(model.parameters(), lr=0.5), {model.weight: lambda w: project_l2_ball(w, 0.1)})
    assert model.weight.norm() <= 0.1 + 1e-6  # projected at construction
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x = torch.randn(8, 3)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
        scheduler.step()
        assert model.weight.norm() <= 0.1 + 1e-6
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5 / 8)
    assert opt.state_dict()["state"][0]["step"] == 3


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="box is empty"):
        project_box(torch.zeros(2), 1.0, 0.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        project_simplex(torch.tensor([float("nan"), 1.0]))
    with pytest.raises(ValueError, match="radius must be"):
        project_l1_ball(torch.ones(2), -1.0)
    with pytest.raises(ValueError, match="not among the optimizer's parameters"):
        Projected(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1),
                  {torch.zeros(1, requires_grad=True): project_simplex})
    with pytest.raises(ValueError, match="dual_lr must be"):
        PrimalDual(dual_lr=0.0)
    with pytest.raises(ValueError, match="penalty must be"):
        AugmentedLagrangian(penalty=float("inf"))
    with pytest.raises(ValueError, match="scalar or a vector"):
        Problem(lambda x: x.sum(), inequalities=lambda x: torch.ones(2, 2)).values(torch.zeros(2))
    with pytest.raises(ValueError, match="scalar tensor"):
        Problem(lambda x: x).values(torch.zeros(2))
    with pytest.raises(NonFiniteLossError, match="not finite"):
        solve(Problem(lambda x: torch.log(x).sum(), inequalities=lambda x: 1 - x), AugmentedLagrangian(),
              torch.tensor([-1.0], dtype=F64))
    with pytest.raises(ValueError, match="1 entries for 2 constraint"):
        kkt_check(CASES["random_qp"].problem, torch.zeros(5, dtype=F64), eq_multipliers=[1.0],
                  ineq_multipliers=[0.0, 0.0, 0.0])
    form = PrimalDual()
    form.loss(torch.tensor(1.0), ineq=torch.zeros(2))
    with pytest.raises(ValueError, match="made for 0 and 2"):
        form.loss(torch.tensor(1.0), ineq=torch.zeros(3))
    with pytest.raises(RuntimeError, match="before any loss"):
        PrimalDual().update()


def test_slsqp_returns_multipliers_in_optlibs_signs():
    x, lam, mu = slsqp(Problem(lambda x: (x**2).sum(), inequalities=lambda x: 1 - x), [3.0])
    torch.testing.assert_close(torch.cat([x, mu]), torch.tensor([1.0, 2.0], dtype=F64), atol=1e-6, rtol=0)
    assert lam.shape == (0,)
    # an equality: min x1 + x2 on the circle of radius sqrt(2) is (-1, -1) with lambda = +1/2 in L = f + lambda h
    circle = Problem(lambda x: x.sum(), equalities=lambda x: (x @ x - 2).reshape(1))
    x, lam, mu = slsqp(circle, [1.0, 0.0])
    torch.testing.assert_close(x, torch.tensor([-1.0, -1.0], dtype=F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(lam, torch.tensor([0.5], dtype=F64), atol=1e-6, rtol=0)
    assert kkt_check(circle, x, lam).satisfied
    both = Problem(lambda x: (x[0] - 2) ** 2 + (x[1] - 1) ** 2, equalities=lambda x: (x[0] + x[1] - 2).reshape(1),
                   inequalities=lambda x: (x[0] ** 2 - x[1]).reshape(1))
    result = slsqp(both, torch.zeros(2, dtype=F64))
    x, lam, mu = result
    torch.testing.assert_close(torch.cat([x, lam, mu]), torch.tensor([1, 1, 2 / 3, 2 / 3], dtype=F64), atol=1e-6,
                               rtol=0)
    assert kkt_check(both, x, lam, mu).satisfied and result.result.fun == pytest.approx(1.0)
    infeasible = Problem(lambda x: (x**2).sum(), inequalities=lambda x: torch.stack([1 - x[0], x[0] - 0.0]))
    with pytest.raises(RuntimeError, match="SLSQP failed"):
        slsqp(infeasible, [0.5])


def test_slsqp_computes_the_multipliers_when_scipy_does_not_report_them(monkeypatch):
    """SciPy < 1.15 (Colab's scipy 1.13) has no result.multipliers: stationarity at SLSQP's point gives them."""
    import scipy.optimize

    minimize = scipy.optimize.minimize

    def old_minimize(*args, **kwargs):
        result = minimize(*args, **kwargs)
        del result["multipliers"]
        return result

    for name in ("x2_x_ge_1", "parabola_line", "random_qp", "simplex_qp"):
        case = CASES[name]
        x, lam, mu = slsqp(case.problem, case.x0, ftol=1e-15, maxiter=1000)
        monkeypatch.setattr(scipy.optimize, "minimize", old_minimize)
        old = slsqp(case.problem, case.x0, ftol=1e-15, maxiter=1000)
        monkeypatch.setattr(scipy.optimize, "minimize", minimize)
        assert "multipliers" not in old.result
        x_old, lam_old, mu_old = old
        torch.testing.assert_close(x_old, x, rtol=0, atol=0)
        torch.testing.assert_close(lam_old, lam, rtol=0, atol=1e-6)
        torch.testing.assert_close(mu_old, mu, rtol=0, atol=1e-6)
