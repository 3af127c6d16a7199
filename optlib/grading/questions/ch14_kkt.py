"""Checks for solutions/14_kkt.ipynb: KKT points by hand, a KKT residual function, the projections
onto a half-space and onto the simplex, the quadratic penalty's minimizer, the multiplier as a price,
and the support vectors of a hard-margin SVM.

Every reference is computed here, from closed forms, from optlib's projection or from SciPy's
SLSQP; the learner's functions are called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import math

import torch

from optlib.grading import CheckFailed, Question, as_number, expect, expect_close, require, require_number, require_tensor

F64 = torch.float64


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return new tensors instead")


def _pair(value, what: str):
    expect(isinstance(value, (tuple, list)) and len(value) == 2, f"{what} should return a pair (x, mu)")
    return value[0], value[1]


def _slsqp(objective, inequalities, x0) -> tuple[torch.Tensor, torch.Tensor]:
    """SLSQP's solution and inequality multipliers for min objective s.t. inequalities(x) <= 0 (torch functions).

    Through :func:`optlib.constrained.slsqp`, which also works with a SciPy older than 1.15 (Colab's).
    """
    from optlib.constrained import Problem, slsqp

    x, _, mu = slsqp(Problem(objective, inequalities=inequalities), torch.as_tensor(x0, dtype=F64), ftol=1e-12,
                     maxiter=500)
    return x, mu


# ---------------------------------------------------------------- q1
def q1(ns):
    x1, mu1 = require_number(ns, "x_star_1d"), require_number(ns, "mu_star_1d")
    x_ref, mu_ref = _slsqp(lambda x: (x[0] - 3.0) ** 2, lambda x: (x[0] - 1.0).reshape(1), [0.0])
    if abs(x1 - 3.0) < 1e-9:
        raise CheckFailed("`x_star_1d` is 3, the unconstrained minimum: it violates x <= 1")
    expect_close(x1, x_ref[0], rtol=0, atol=1e-6, what="`x_star_1d` (min (x - 3)^2 s.t. x <= 1)")
    if abs(mu1 + mu_ref[0]) < 1e-5:
        raise CheckFailed("`mu_star_1d` has the wrong sign: with g(x) = x - 1 <= 0 the multiplier of an active "
                          "inequality is >= 0")
    expect_close(mu1, mu_ref[0], rtol=0, atol=1e-5, what="`mu_star_1d` (the multiplier of x <= 1)")
    x2 = require_tensor(torch.as_tensor(require(ns, "x_star"), dtype=F64), "`x_star`", (2,))
    mu2 = require_number(ns, "mu_star")
    x_ref, mu_ref = _slsqp(lambda x: (x[0] - 1.0) ** 2 + (x[1] - 2.0) ** 2, lambda x: (x[0] + x[1] - 2.0).reshape(1),
                           [0.0, 0.0])
    expect_close(x2, x_ref, rtol=0, atol=1e-6,
                 what="`x_star` (min (x1 - 1)^2 + (x2 - 2)^2 s.t. x1 + x2 <= 2)")
    expect_close(mu2, mu_ref[0], rtol=0, atol=1e-5, what="`mu_star` (the multiplier of x1 + x2 <= 2)")


# ---------------------------------------------------------------- q2
CONDITIONS = ("stationarity", "primal feasibility", "dual feasibility", "complementary slackness")


def _residuals(grad_f, jac_h, jac_g, h, g, lam, mu) -> torch.Tensor:
    def largest(v):
        return v.abs().max() if v.numel() else torch.zeros((), dtype=F64)

    return torch.stack([
        largest(grad_f + jac_h.T @ lam + jac_g.T @ mu),
        torch.maximum(largest(h), largest(g.clamp(min=0))),
        largest((-mu).clamp(min=0)),
        largest(mu * g),
    ])


def _kkt_case(gen: torch.Generator, d: int, m: int, p: int):
    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    return r(d), r(m, d), r(p, d), r(m), r(p), r(m), r(p)


def q2(ns):
    residuals = require(ns, "kkt_residuals", "callable")
    gen = torch.Generator().manual_seed(1402)
    cases = [_kkt_case(gen, 4, 2, 3), _kkt_case(gen, 3, 0, 2), _kkt_case(gen, 5, 1, 0), _kkt_case(gen, 2, 1, 4)]
    # a KKT point: the residuals are 0 up to rounding
    grad_f, jac_h, jac_g, h, g, lam, mu = _kkt_case(gen, 3, 1, 2)
    g, mu = torch.tensor([0.0, -0.7], dtype=F64), torch.tensor([1.3, 0.0], dtype=F64)
    cases.append((-(jac_h.T @ lam + jac_g.T @ mu), jac_h, jac_g, torch.zeros(1, dtype=F64), g, lam, mu))
    for args in cases:
        saved = tuple(a.clone() for a in args)
        got = require_tensor(residuals(*args), "`kkt_residuals(...)`", (4,)).to(F64)
        _untouched(args, saved, "kkt_residuals")
        expected = _residuals(*saved)
        if torch.allclose(got, expected, rtol=1e-9, atol=1e-12):
            continue
        wrong = [name for name, a, e in zip(CONDITIONS, got, expected) if not abs(a - e) <= 1e-12 + 1e-9 * abs(e)]
        m, p = len(saved[3]), len(saved[4])
        raise CheckFailed(f"kkt_residuals: the {' and '.join(wrong)} residual(s) are wrong (a problem with {m} "
                          f"equalities and {p} inequalities; each residual is the largest absolute violation, "
                          "0 when there is nothing to violate)")


# ---------------------------------------------------------------- q3
def q3(ns):
    project = require(ns, "halfspace_projection", "callable")
    gen = torch.Generator().manual_seed(1403)
    for d, shift in ((3, 2.0), (4, -2.0), (2, 0.5), (5, -0.3)):
        y, a = torch.randn(d, generator=gen, dtype=F64), torch.randn(d, generator=gen, dtype=F64)
        b = float(a @ y) - shift  # shift > 0: y violates a.x <= b, the constraint binds
        saved = (y.clone(), a.clone())
        x, mu = _pair(project(y, a, b), f"halfspace_projection(y, a, {b:.3g})")
        x = require_tensor(x, "the x of `halfspace_projection`", (d,)).to(F64)
        mu = as_number(mu, "the mu of `halfspace_projection`")
        _untouched((y, a), saved, "halfspace_projection")
        mu_ref = max(0.0, float(a @ y - b) / float(a @ a))
        x_ref = y - mu_ref * a
        if mu_ref == 0 and mu < -1e-9:
            raise CheckFailed("halfspace_projection returns a negative mu when y already satisfies a.x <= b: "
                              "an inactive constraint has mu = 0")
        expect_close(mu, mu_ref, rtol=1e-9, atol=1e-12,
                     what=f"the multiplier of halfspace_projection ({'active' if mu_ref > 0 else 'inactive'} case)")
        expect_close(x, x_ref, rtol=1e-9, atol=1e-12,
                     what=f"the projection x of halfspace_projection ({'active' if mu_ref > 0 else 'inactive'} case)")


# ---------------------------------------------------------------- q4
def q4(ns):
    from optlib.projections import project_simplex

    project = require(ns, "project_simplex", "callable")
    gen = torch.Generator().manual_seed(1404)
    cases = [torch.randn(6, generator=gen, dtype=F64), 3 * torch.randn(9, generator=gen, dtype=F64),
             torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64), torch.tensor([5.0, -1.0, 0.5], dtype=F64),
             torch.rand(7, generator=gen, dtype=F64) / 10]
    for y in cases:
        saved = y.clone()
        x = require_tensor(project(y), "`project_simplex(y)`", y.shape).to(F64)
        _untouched((y,), (saved,), "project_simplex")
        expect(bool((x >= -1e-12).all()) and abs(float(x.sum()) - 1) < 1e-9,
               f"project_simplex({saved.numpy().round(3).tolist()}) is not in the simplex "
               "(entries >= 0 summing to 1)")
        expect_close(x, project_simplex(saved), rtol=1e-9, atol=1e-12,
                     what=f"project_simplex({saved.numpy().round(3).tolist()}) (the nearest point of the simplex)")


# ---------------------------------------------------------------- q5
def _penalty(a: float, c: float, w: float) -> float:
    return (2 * a + w * c) / (2 + w) if a < c else a


def q5(ns):
    minimizer = require(ns, "penalty_minimizer", "callable")
    multiplier = require(ns, "penalty_multiplier", "callable")
    weight = require(ns, "weight_for_error", "callable")
    for a, c, w in ((0.0, 1.0, 10.0), (-2.0, 0.5, 3.0), (1.0, 1.5, 1e4), (2.0, 1.0, 5.0), (0.3, -1.0, 100.0)):
        got = as_number(minimizer(a, c, w), f"penalty_minimizer({a}, {c}, {w:g})")
        expected = _penalty(a, c, w)
        if a >= c and abs(got - expected) > 1e-9:
            raise CheckFailed(f"penalty_minimizer({a}, {c}, {w:g}): here a >= c, the constraint is inactive and the "
                              "penalty max(c - x, 0)^2 is zero at x = a")
        expect_close(got, expected, rtol=1e-9, atol=1e-12,
                     what=f"penalty_minimizer({a}, {c}, {w:g}) (the minimizer of (x - a)^2 + (w/2) max(c - x, 0)^2)")
        mu = as_number(multiplier(a, c, w), f"penalty_multiplier({a}, {c}, {w:g})")
        expect_close(mu, w * max(c - expected, 0.0), rtol=1e-9, atol=1e-12,
                     what=f"penalty_multiplier({a}, {c}, {w:g}) (w max(c - x_w, 0))")
    for a, c, eps in ((0.0, 1.0, 1e-3), (-1.0, 2.0, 1e-6)):
        w = as_number(weight(a, c, eps), f"weight_for_error({a}, {c}, {eps:g})")
        expect_close(w, 2 * (c - a) / eps - 2, rtol=1e-9, atol=1e-9,
                     what=f"weight_for_error({a}, {c}, {eps:g}) (the smallest w with c - x_w <= eps)")


# ---------------------------------------------------------------- q6
def q6(ns):
    solve_ball = require(ns, "linear_on_ball", "callable")
    gen = torch.Generator().manual_seed(1406)
    for d, b in ((3, 4.0), (2, 0.5), (5, 9.0)):
        c = torch.randn(d, generator=gen, dtype=F64)
        saved = c.clone()
        x, mu = _pair(solve_ball(c, b), f"linear_on_ball(c, {b:g})")
        x = require_tensor(x, "the x of `linear_on_ball`", (d,)).to(F64)
        mu = as_number(mu, "the mu of `linear_on_ball`")
        _untouched((c,), (saved,), "linear_on_ball")
        root = math.sqrt(b)
        if torch.allclose(x, root * saved / saved.norm(), rtol=1e-8, atol=1e-10):
            raise CheckFailed("linear_on_ball returns the maximizer of c.x on the ball: the minimizer points along -c")
        expect_close(x, -root * saved / saved.norm(), rtol=1e-8, atol=1e-10,
                     what=f"the x of linear_on_ball(c, {b:g}) (min c.x s.t. ||x||^2 <= {b:g})")
        expect_close(mu, saved.norm().item() / (2 * root), rtol=1e-8, atol=1e-10,
                     what=f"the mu of linear_on_ball(c, {b:g})")
    slope = require_number(ns, "fd_slope")
    mu4 = require_number(ns, "mu_at_4")
    expect_close(mu4, 0.75, rtol=1e-8, what="`mu_at_4` (the multiplier for c = (1, 2, 2), b = 4)")
    if abs(slope - 0.75) < 1e-4:
        raise CheckFailed("`fd_slope` is +0.75: loosening the constraint (larger b) can only lower f*, so the slope "
                          "d f*/d b is negative")
    expect_close(slope, -0.75, rtol=0, atol=1e-4,
                 what="`fd_slope` (the central finite difference of f*(b) at b = 4, c = (1, 2, 2))")


# ---------------------------------------------------------------- q7
def svm_data(seed: int, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Two clouds of n/2 points each (labels +1 and -1), from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.ones(n // 2), -torch.ones(n - n // 2)]).to(F64)
    X = y[:, None] * torch.tensor([1.5, 1.0], dtype=F64) + 0.7 * torch.randn(n, 2, generator=gen, dtype=F64)
    return X, y


def _svm_reference(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _slsqp(lambda v: 0.5 * (v[0] ** 2 + v[1] ** 2), lambda v: 1 - y * (X @ v[:2] + v[2]), torch.zeros(3))


#: The data set of the notebook's question 7 and two fresh ones for the check.
NOTEBOOK_SEED, CHECK_SEEDS = 7, (1407, 1417)


def q7(ns):
    fit = require(ns, "fit_svm", "callable")
    for seed in CHECK_SEEDS:
        X, y = svm_data(seed)
        saved = (X.clone(), y.clone())
        v, mu = _pair(fit(X, y), "fit_svm(X, y)")
        v = require_tensor(v, "the v = (w1, w2, b) of `fit_svm`", (3,)).to(F64)
        mu = require_tensor(mu, "the mu of `fit_svm`", (len(y),)).to(F64)
        _untouched((X, y), saved, "fit_svm")
        v_ref, mu_ref = _svm_reference(*saved)
        if torch.allclose(v, -v_ref, atol=1e-4, rtol=0):
            raise CheckFailed("fit_svm's (w, b) has the wrong sign: the constraints are y_i (w.x_i + b) >= 1")
        expect_close(v, v_ref, rtol=0, atol=1e-4, what="the (w1, w2, b) of fit_svm")
        expect(bool((mu >= -1e-6).all()), "fit_svm returns a negative multiplier: inequality multipliers are >= 0")
        expect_close(mu, mu_ref, rtol=1e-3, atol=1e-3, what="the multipliers mu of fit_svm")
    X, y = svm_data(NOTEBOOK_SEED)
    _, mu_ref = _svm_reference(X, y)
    support = sorted(int(i) for i in (mu_ref > 1e-4).nonzero().reshape(-1))
    got = require(ns, "support", (list, tuple))
    expect(sorted(int(as_number(i, "an index in `support`")) for i in got) == support,
           f"`support` is {list(got)}: list the indices i with mu_i > 0 on the notebook's data (svm_data({NOTEBOOK_SEED}))")


QUESTIONS = [
    Question("q1", 2, q1, "KKT points by hand"),
    Question("q2", 3, q2, "A KKT residual function"),
    Question("q3", 2, q3, "Projection onto a half-space, with its multiplier"),
    Question("q4", 2, q4, "Projection onto the simplex"),
    Question("q5", 2, q5, "The quadratic penalty's minimizer"),
    Question("q6", 2, q6, "The multiplier as a price"),
    Question("q7", 3, q7, "Support vectors from the multipliers"),
]
