"""The checks of solutions/05_momentum.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch

from optlib import convergence, functions
from optlib.grading import load_questions

import question_scoring

CHAPTER = "05_momentum"

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _torch_step(x, v, grad, lr, rho):
    v2 = v * rho + grad
    return x - v2 * lr, v2


def _classical_step(x, u, grad, lr, rho):
    u2 = u * rho - grad * lr
    return x + u2, u2


def q1_ns():
    return {"torch_momentum_step": _torch_step, "classical_momentum_step": _classical_step, "formulation_gap": 0.0}


def q2_ns():
    gen = torch.Generator().manual_seed(7)
    std, mean = {}, {}
    for rho in (0.5, 0.9, 0.99):
        v = torch.zeros(1000, dtype=torch.float64)
        for _ in range(3000):
            v = rho * v + 1 + torch.randn(1000, generator=gen, dtype=torch.float64)
        std[rho], mean[rho] = ((1 - rho) * v).std().item(), ((1 - rho) * v).mean().item()
    return {"predicted_std": lambda rho: (1 / (1 + rho) * (1 - rho)) ** 0.5, "measured_std": std,
            "measured_mean": mean}


def q3_ns():
    return {"critical_momentum": lambda lr, lam: 1 - 2 * math.sqrt(lr * lam) + lr * lam,
            "critical_rate": lambda lr, lam: math.sqrt(1 - 2 * math.sqrt(lr * lam) + lr * lam),
            "best_rho_on_grid": np.float64(0.81)}


def _nesterov(x, u, grad_fn, lr, rho):
    ahead = x + rho * u
    u2 = rho * u - lr * grad_fn(ahead)
    return x + u2, u2


def q4_ns():
    return {"nesterov_step": _nesterov, "lookahead_gap": 3e-16, "plain_gap": 0.1}


def _agd(grad_fn, x0, L, steps):
    # written with the tau-free "momentum = (j - 1)/(j + 2) after the j-th step" indexing
    xs, y, x_old = [x0], x0, x0
    for j in range(1, steps + 1):
        x = y - grad_fn(y) / L
        y = x + (j - 1) / (j + 2) * (x - x_old)
        x_old = x
        xs.append(x)
    return torch.stack(xs)


def _q5_values():
    lams = torch.logspace(-6, 0, 500, dtype=torch.float64)
    one = torch.ones(500, dtype=torch.float64)

    def grad_fn(z):
        return lams * (z - one)

    path_agd = _agd(grad_fn, torch.zeros(500, dtype=torch.float64), 1.0, 1000)
    x, path_gd = torch.zeros(500, dtype=torch.float64), []
    for _ in range(1001):
        path_gd.append(x)
        x = x - grad_fn(x)
    gaps = {name: (0.5 * lams * (torch.stack(p) if isinstance(p, list) else p).sub(one) ** 2).sum(1).numpy()
            for name, p in (("gd", path_gd), ("agd", path_agd))}
    t = np.arange(1001)
    return {"gd_slope": convergence.fit_slope(t, gaps["gd"], x_min=100, x_max=1000).slope,
            "agd_slope": convergence.fit_slope(t, gaps["agd"], x_min=100, x_max=1000).slope,
            "bound_ratio": float(np.max(gaps["agd"][1:] * (t[1:] + 1) ** 2 / 1000.0))}


def q5_ns():
    return {"accelerated_gradient": _agd, **_q5_values()}


def _count(q, lr, rho):
    x = q.start.clone()
    prev = x.clone()
    f0 = q(x).item()
    for t in range(1, 30_000):
        x, prev = x - lr * q.gradient(x) + rho * (x - prev), x  # heavy ball in its one-line form
        if q(x).item() <= 1e-8 * f0:
            return t
    raise AssertionError("no convergence")


@pytest.fixture(scope="module")
def q6_values():
    gd, hb = {}, {}
    for kappa in (10, 100, 1000):
        q = functions.Quadratic(condition_number=kappa, dim=10, seed=0)
        gd[kappa] = _count(q, convergence.gd_optimal_lr(kappa, 1.0), 0.0)
        hb[kappa] = _count(q, *convergence.heavy_ball_parameters(kappa, 1.0))
    ks = np.log([10, 100, 1000])
    return {"steps_gd": gd, "steps_hb": hb, "speedup": {k: gd[k] / hb[k] for k in gd},
            "kappa_slope_gd": np.polyfit(ks, np.log(list(gd.values())), 1)[0],
            "kappa_slope_hb": np.polyfit(ks, np.log(list(hb.values())), 1)[0]}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")

    def lr_outside(x, u, grad, lr, rho):  # forgets to scale the gradient by lr in the classical form
        u2 = rho * u - grad
        return x + lr * u2, u2

    _zero({**q1_ns(), "classical_momentum_step": lr_outside}, "q1")

    def old_velocity(x, v, grad, lr, rho):  # steps with the old velocity
        return x - lr * v, rho * v + grad

    _zero({**q1_ns(), "torch_momentum_step": old_velocity}, "q1")

    def in_place(x, v, grad, lr, rho):
        v.mul_(rho).add_(grad)
        return x - lr * v, v

    _zero({**q1_ns(), "torch_momentum_step": in_place}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "formulation_gap"}, "q1")


def test_q2():
    ns = q2_ns()
    _full(ns, "q2")
    _zero({**ns, "predicted_std": lambda rho: 1 - rho}, "q2")  # confuses the std with the weight
    _zero({**ns, "predicted_std": lambda rho: math.sqrt(1 - rho)}, "q2")
    # measured the velocity itself, without the factor (1 - rho)
    _zero({**ns, "measured_std": {rho: s / (1 - rho) for rho, s in ns["measured_std"].items()}}, "q2")


def test_q3():
    _full(q3_ns(), "q3")
    _zero({**q3_ns(), "critical_momentum": lambda lr, lam: 1 - math.sqrt(lr * lam)}, "q3")  # forgot the square
    # returns rho instead of sqrt(rho)
    _zero({**q3_ns(), "critical_rate": lambda lr, lam: (1 - math.sqrt(lr * lam)) ** 2}, "q3")
    _zero({**q3_ns(), "best_rho_on_grid": 0.9}, "q3")


def test_q4():
    _full(q4_ns(), "q4")

    def heavy_ball(x, u, grad_fn, lr, rho):  # gradient at x, not at the look-ahead point
        u2 = rho * u - lr * grad_fn(x)
        return x + u2, u2

    result = _zero({**q4_ns(), "nesterov_step": heavy_ball}, "q4")
    assert "look-ahead" in result.message
    _zero({**q4_ns(), "lookahead_gap": 0.05}, "q4")


def test_q5():
    ns = q5_ns()
    _full(ns, "q5")

    def constant_momentum(grad_fn, x0, L, steps):  # a fixed momentum 0.9 is not the accelerated schedule
        xs, y, x_old = [x0], x0, x0
        for _ in range(steps):
            x = y - grad_fn(y) / L
            y = x + 0.9 * (x - x_old)
            x_old = x
            xs.append(x)
        return torch.stack(xs)

    _zero({**ns, "accelerated_gradient": constant_momentum}, "q5")

    def returns_y(grad_fn, x0, L, steps):  # returns the extrapolated points y_k
        ys, y, x_old = [x0], x0, x0
        for k in range(steps):
            x = y - grad_fn(y) / L
            y = x + k / (k + 3) * (x - x_old)
            x_old = x
            ys.append(y)
        return torch.stack(ys)

    _zero({**ns, "accelerated_gradient": returns_y}, "q5")
    _zero({**ns, "agd_slope": -1.0}, "q5")
    _zero({**ns, "bound_ratio": 2 * ns["bound_ratio"]}, "q5")


def test_q6(q6_values):
    _full(q6_values, "q6")
    # counted steps of the loss to 1e-8 in absolute terms instead of relative to f(x_0)
    off = {**q6_values, "steps_gd": {k: v + 20 for k, v in q6_values["steps_gd"].items()}}
    _zero(off, "q6")
    _zero({**q6_values, "speedup": {k: 1.2 for k in (10, 100, 1000)}}, "q6")
    _zero({**q6_values, "kappa_slope_hb": 1.0}, "q6")
