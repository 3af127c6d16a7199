"""The checks of solutions/14_kkt.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "14_kkt"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def q1_ns():
    return {"x_star_1d": 1, "mu_star_1d": 4.0, "x_star": [0.5, 1.5], "mu_star": torch.tensor(1.0, dtype=F64)}


def _residuals(grad_f, jac_h, jac_g, h, g, lam, mu):
    stationarity = grad_f + lam @ jac_h + mu @ jac_g
    parts = [
        [stationarity.abs()],
        [h.abs(), torch.relu(g)],
        [torch.relu(-mu)],
        [(mu * g).abs()],
    ]
    out = []
    for pieces in parts:
        values = torch.cat([p.reshape(-1) for p in pieces] + [torch.zeros(1, dtype=F64)])
        out.append(values.max())
    return torch.stack(out)


def q2_ns():
    return {"kkt_residuals": _residuals}


def _halfspace(y, a, b):
    violation = float(a @ y) - b
    if violation <= 0:
        return y.clone(), 0.0
    mu = violation / float(a.norm() ** 2)
    return y - mu * a, mu


def q3_ns():
    return {"halfspace_projection": _halfspace}


def _simplex(y):
    # bisection on the threshold tau: sum max(y - tau, 0) = 1 is decreasing in tau
    lo, hi = float(y.min()) - 1.0, float(y.max())
    for _ in range(200):
        mid = (lo + hi) / 2
        if float((y - mid).clamp(min=0).sum()) > 1:
            lo = mid
        else:
            hi = mid
    return (y - (lo + hi) / 2).clamp(min=0)


def q4_ns():
    return {"project_simplex": _simplex}


def _penalty_minimizer(a, c, w):
    if a >= c:
        return a
    return c - 2 * (c - a) / (2 + w)


def q5_ns():
    return {"penalty_minimizer": _penalty_minimizer,
            "penalty_multiplier": lambda a, c, w: w * max(0.0, c - _penalty_minimizer(a, c, w)),
            "weight_for_error": lambda a, c, eps: (2 * (c - a) - 2 * eps) / eps}


def _ball(c, b):
    x = -(b ** 0.5) * c / c.norm()
    return x, float(c.norm()) / (2 * b ** 0.5)


def q6_ns():
    return {"linear_on_ball": _ball, "fd_slope": -0.75, "mu_at_4": 0.75}


def _fit_svm_slsqp(X, y):
    from scipy.optimize import minimize

    Xn, yn = X.numpy(), y.numpy()
    result = minimize(lambda v: 0.5 * (v[0] ** 2 + v[1] ** 2), np.zeros(3), method="SLSQP",
                      constraints=[dict(type="ineq", fun=lambda v: yn * (Xn @ v[:2] + v[2]) - 1)],
                      options=dict(ftol=1e-12, maxiter=500))
    return torch.tensor(result.x, dtype=F64), torch.tensor(result.multipliers, dtype=F64)


def _fit_svm_augmented_lagrangian(X, y):
    from optlib.constrained import AugmentedLagrangian, solve
    from optlib.widgets.kkt import svm_problem

    fit = solve(svm_problem(X, y), AugmentedLagrangian(penalty=10.0), torch.zeros(3, dtype=F64), tol=1e-8)
    return fit.x, fit.ineq_multipliers


def q7_ns(fit=_fit_svm_slsqp):
    return {"fit_svm": fit, "support": [4, 14, 22]}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6", "q7"]


def test_q1():
    _full(q1_ns(), "q1")
    _full({**q1_ns(), "x_star": torch.tensor([0.5, 1.5], dtype=F64)}, "q1")
    assert "wrong sign" in _zero({**q1_ns(), "mu_star_1d": -4.0}, "q1").message
    assert "unconstrained" in _zero({**q1_ns(), "x_star_1d": 3.0}, "q1").message
    _zero({**q1_ns(), "mu_star_1d": 2.0}, "q1")  # forgot the factor 2 of (x - 3)^2
    _zero({**q1_ns(), "x_star": [1.0, 2.0], "mu_star": 0.0}, "q1")  # the unconstrained minimum
    _zero({**q1_ns(), "mu_star": 0.5}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "mu_star"}, "q1")


def test_q2():
    _full(q2_ns(), "q2")

    def signed_stationarity(grad_f, jac_h, jac_g, h, g, lam, mu):
        out = _residuals(grad_f, jac_h, jac_g, h, g, lam, mu).clone()
        out[0] = (grad_f + lam @ jac_h + mu @ jac_g).max()  # forgot the absolute value
        return out

    def ignores_equalities(grad_f, jac_h, jac_g, h, g, lam, mu):
        out = _residuals(grad_f, jac_h, jac_g, h, g, lam, mu).clone()
        out[1] = torch.relu(g).max() if len(g) else torch.zeros((), dtype=F64)
        return out

    def signed_slackness(grad_f, jac_h, jac_g, h, g, lam, mu):
        out = _residuals(grad_f, jac_h, jac_g, h, g, lam, mu).clone()
        out[3] = (mu * g).max() if len(g) else torch.zeros((), dtype=F64)
        return out

    def two_norms(grad_f, jac_h, jac_g, h, g, lam, mu):
        return torch.stack([(grad_f + lam @ jac_h + mu @ jac_g).norm(), torch.cat([h, torch.relu(g)]).norm(),
                            torch.relu(-mu).norm(), (mu * g).norm()])

    for wrong in (signed_stationarity, ignores_equalities, signed_slackness, two_norms):
        _zero({"kkt_residuals": wrong}, "q2")
    message = _zero({"kkt_residuals": signed_slackness}, "q2").message
    assert "complementary slackness" in message and "stationarity" not in message
    _zero({"kkt_residuals": lambda *args: _residuals(*args)[[1, 0, 2, 3]]}, "q2")  # wrong order


def test_q3():
    _full(q3_ns(), "q3")

    def no_clipping(y, a, b):
        mu = (float(a @ y) - b) / float(a @ a)
        return y - mu * a, mu

    assert "negative mu" in _zero({"halfspace_projection": no_clipping}, "q3").message

    def wrong_sign(y, a, b):
        x, mu = _halfspace(y, a, b)
        return y + mu * a, mu

    _zero({"halfspace_projection": wrong_sign}, "q3")
    _zero({"halfspace_projection": lambda y, a, b: _halfspace(y, a, b)[0]}, "q3")  # no multiplier

    def unnormalized(y, a, b):
        mu = max(0.0, float(a @ y) - b)
        return y - mu * a, mu

    _zero({"halfspace_projection": unnormalized}, "q3")


def test_q4():
    _full(q4_ns(), "q4")
    _zero({"project_simplex": lambda y: y.clamp(min=0) / y.clamp(min=0).sum()}, "q4")  # clip and rescale
    _zero({"project_simplex": lambda y: torch.softmax(y, 0)}, "q4")
    _zero({"project_simplex": lambda y: y - (y.sum() - 1) / len(y)}, "q4")  # only the equality


def test_q5():
    _full(q5_ns(), "q5")
    assert "inactive" in _zero({**q5_ns(), "penalty_minimizer": lambda a, c, w: (2 * a + w * c) / (2 + w)},
                               "q5").message
    _zero({**q5_ns(), "penalty_minimizer": lambda a, c, w: a if a >= c else (a + w * c) / (1 + w)}, "q5")  # w, not w/2
    _zero({**q5_ns(), "penalty_multiplier": lambda a, c, w: 2 * (c - a)}, "q5")  # the limit, not the estimate
    _zero({**q5_ns(), "weight_for_error": lambda a, c, eps: 2 * (c - a) / eps}, "q5")  # x_w ~ 2(c - a)/w


def test_q6():
    _full(q6_ns(), "q6")
    _full({**q6_ns(), "fd_slope": -0.75 + 3e-5}, "q6")  # a numerical finite difference
    assert "maximizer" in _zero({**q6_ns(), "linear_on_ball": lambda c, b: (-_ball(c, b)[0], _ball(c, b)[1])},
                                "q6").message
    _zero({**q6_ns(), "linear_on_ball": lambda c, b: (_ball(c, b)[0], float(c.norm()) / (2 * b))}, "q6")
    assert "negative" in _zero({**q6_ns(), "fd_slope": 0.75}, "q6").message
    _zero({**q6_ns(), "mu_at_4": 1.5}, "q6")


def test_q7():
    _full(q7_ns(), "q7")
    _full(q7_ns(_fit_svm_augmented_lagrangian), "q7")
    _full({**q7_ns(), "support": (22, 4, 14)}, "q7")

    def flipped(X, y):
        v, mu = _fit_svm_slsqp(X, y)
        return -v, mu

    assert "wrong sign" in _zero(q7_ns(flipped), "q7").message

    def negative_multipliers(X, y):
        v, mu = _fit_svm_slsqp(X, y)
        return v, -mu

    _zero(q7_ns(negative_multipliers), "q7")

    def no_bias(X, y):
        from scipy.optimize import minimize

        Xn, yn = X.numpy(), y.numpy()
        result = minimize(lambda w: 0.5 * (w @ w), np.ones(2), method="SLSQP",
                          constraints=[dict(type="ineq", fun=lambda w: yn * (Xn @ w) - 1)])
        return torch.tensor([*result.x, 0.0], dtype=F64), torch.tensor(result.multipliers, dtype=F64)

    _zero(q7_ns(no_bias), "q7")
    _zero({**q7_ns(), "support": [4, 14]}, "q7")
    _zero({**q7_ns(), "support": list(range(24))}, "q7")
