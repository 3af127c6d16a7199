"""The checks of solutions/15_constrained_training.ipynb give full marks to a correct answer and 0 to a plausible
wrong one."""
from __future__ import annotations

from functools import partial
import math

import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "15_constrained_training"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _ball(y, radius):
    return y * min(1.0, radius / max(float(y.norm()), 1e-300))


def q1_ns():
    return {"project_ball": _ball, "mu_disk": 0.62189942}


def _simplex(y):
    # bisection on the threshold tau: sum(max(y - tau, 0)) = 1
    lo, hi = float(y.min()) - 1, float(y.max())
    for _ in range(200):
        tau = (lo + hi) / 2
        lo, hi = (tau, hi) if float((y - tau).clamp(min=0).sum()) > 1 else (lo, tau)
    return (y - (lo + hi) / 2).clamp(min=0)


def q2_ns():
    return {"project_simplex": _simplex}


def _alm_loss(f, g, mu, rho):
    inside = torch.where(mu + rho * g > 0, mu * g + rho / 2 * g**2, -(mu**2) / (2 * rho))
    return f + inside.sum()


def q3_ns():
    return {"alm_loss": _alm_loss, "alm_update": lambda mu, g, rho: torch.relu(mu + rho * g),
            "x_alm": torch.tensor([2 / 3, 1 / 3], dtype=F64), "mu_alm": 4 / 3}


def _descent_ascent(Q, c, G, h, x0, lr, dual_lr, steps):
    x, mu = x0, torch.zeros(G.shape[0], dtype=x0.dtype)
    for _ in range(steps):
        x, mu = x - lr * (Q @ x + c + G.T @ mu), torch.maximum(mu + dual_lr * (G @ x - h), torch.zeros_like(mu))
    return x, mu


def q4_ns():
    return {"descent_ascent": _descent_ascent, "spreads": {0.3: 0.0, 10.0: 7.29}}


def q5_ns():
    return {"parity_gap_of": lambda d, s: d[s.bool()].mean() - d[~s.bool()].mean(),
            "smooth_gap": 0.10149494411504012, "hard_gap": 0.1307896782481074}


def _penalty_minimizer(w):
    # minimize (x1 - 3)^2 + (x2 - 1)^2 + (w/2) max(0, x1 + x2 - 2)^2 by Newton steps (it is piecewise quadratic)
    x = torch.zeros(2, dtype=F64)
    a = torch.ones(2, dtype=F64)
    for _ in range(5):
        g = x.sum() - 2
        active = float(g) > 0
        grad = 2 * (x - torch.tensor([3.0, 1.0], dtype=F64)) + (w * g * a if active else 0)
        hess = 2 * torch.eye(2, dtype=F64) + (w * torch.outer(a, a) if active else 0)
        x = x - torch.linalg.solve(hess, grad)
    return x


def q6_ns():
    weights = (1, 10, 100, 1000)
    violations = [float(_penalty_minimizer(w).sum() - 2) for w in weights]
    return {"mu_star": 2, "penalty_minimizer": _penalty_minimizer, "violations": violations,
            "conditions": [1.0 + w for w in weights], "slope": math.log10(violations[3] / violations[2])}


def q7_ns():
    return {"tightest_slack": 0.04, "cost_points": 1.3000000000000012}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6", "q7"]


def test_q1():
    _full(q1_ns(), "q1")
    _zero({**q1_ns(), "project_ball": lambda y, r: y * (r / y.norm())}, "q1")  # always onto the sphere
    _zero({**q1_ns(), "project_ball": lambda y, r: y.clamp(-r, r)}, "q1")  # the box, not the ball

    def in_place(y, r):
        if y.norm() > r:
            y.mul_(r / y.norm())
        return y

    _zero({**q1_ns(), "project_ball": in_place}, "q1")
    _zero({**q1_ns(), "mu_disk": -0.6219}, "q1")  # sign
    _zero({**q1_ns(), "mu_disk": 0.31}, "q1")  # forgot the 2 of grad g = 2x


def test_q2():
    _full(q2_ns(), "q2")
    _zero({"project_simplex": lambda y: y.clamp(min=0) / y.clamp(min=0).sum()}, "q2")  # rescaling
    _zero({"project_simplex": lambda y: torch.softmax(y, 0)}, "q2")
    _zero({"project_simplex": lambda y: (y - (y.sum() - 1) / len(y))}, "q2")  # the hyperplane only


def test_q3():
    _full(q3_ns(), "q3")
    no_clamp = lambda f, g, mu, rho: f + ((mu + rho * g) ** 2 - mu**2).sum() / (2 * rho)
    _zero({**q3_ns(), "alm_loss": no_clamp}, "q3")
    no_shift = lambda f, g, mu, rho: f + ((mu + rho * g).clamp(min=0) ** 2).sum() / (2 * rho)
    _zero({**q3_ns(), "alm_loss": no_shift}, "q3")
    _zero({**q3_ns(), "alm_update": lambda mu, g, rho: mu + rho * g}, "q3")
    _zero({**q3_ns(), "x_alm": torch.tensor([0.6, 0.3], dtype=F64)}, "q3")  # a penalty's point, outside
    _zero({**q3_ns(), "mu_alm": 2 / 3}, "q3")


def test_q4():
    _full(q4_ns(), "q4")

    def alternating(Q, c, G, h, x0, lr, dual_lr, steps):
        x, mu = x0.clone(), torch.zeros(len(h), dtype=x0.dtype)
        for _ in range(steps):
            x = x - lr * (Q @ x + c + G.T @ mu)
            mu = (mu + dual_lr * (G @ x - h)).clamp(min=0)
        return x, mu

    _zero({**q4_ns(), "descent_ascent": alternating}, "q4")

    def unclamped(Q, c, G, h, x0, lr, dual_lr, steps):
        x, mu = x0.clone(), torch.zeros(len(h), dtype=x0.dtype)
        for _ in range(steps):
            x, mu = x - lr * (Q @ x + c + G.T @ mu), mu + dual_lr * (G @ x - h)
        return x, mu

    _zero({**q4_ns(), "descent_ascent": unclamped}, "q4")
    _zero({**q4_ns(), "descent_ascent": lambda *args: _descent_ascent(*args)[0]}, "q4")  # x only
    _zero({**q4_ns(), "spreads": {0.3: 0.0, 10.0: 0.0}}, "q4")
    _zero({**q4_ns(), "spreads": {10.0: 7.29}}, "q4")


def test_q5():
    _full(q5_ns(), "q5")
    _zero({**q5_ns(), "parity_gap_of": lambda d, s: d[s == 0].mean() - d[s == 1].mean()}, "q5")  # sign
    _zero({**q5_ns(), "parity_gap_of": lambda d, s: d[s == 1].mean() - d.mean()}, "q5")  # against everyone
    _zero({**q5_ns(), "smooth_gap": 0.1307896782481074}, "q5")  # the hard gap
    _zero({**q5_ns(), "hard_gap": 0.10149494411504012}, "q5")  # the smooth gap


def test_q6():
    _full(q6_ns(), "q6")
    _zero({**q6_ns(), "mu_star": 1.0}, "q6")
    _zero({**q6_ns(), "penalty_minimizer": lambda w: torch.tensor([2.0, 0.0], dtype=F64)}, "q6")  # x*, not x_w
    _zero({**q6_ns(), "violations": [2 / w for w in (1, 10, 100, 1000)]}, "q6")  # mu*/w, not measured
    _zero({**q6_ns(), "conditions": [float(w) for w in (1, 10, 100, 1000)]}, "q6")
    _zero({**q6_ns(), "slope": -1.0 + 0.05}, "q6")


def test_q7():
    _full(q7_ns(), "q7")
    _zero({**q7_ns(), "tightest_slack": 0.03}, "q7")  # costs 1.8 points
    _zero({**q7_ns(), "tightest_slack": 0.05, "cost_points": 0.8}, "q7")  # 0.04 is tighter
    _zero({**q7_ns(), "tightest_slack": 0.045}, "q7")  # not in the grid
    _zero({**q7_ns(), "cost_points": 0.013}, "q7")  # a fraction, not points
