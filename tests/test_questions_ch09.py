"""The checks of solutions/09_newton.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial
import math

import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "09_newton"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _damped(g, H, damping):
    A = H + damping * torch.eye(H.shape[0], dtype=H.dtype)
    return -torch.linalg.lstsq(A, g.unsqueeze(1)).solution.squeeze(1)


def q1_ns():
    return {"damped_newton_step": _damped, "uphill_slope": 0.2 * -0.1 + (-0.875) * (-0.7)}


def _newton_1d(fprime, fsecond, x0, steps):
    out, x = [x0], x0
    for _ in range(steps):
        x -= fprime(x) / fsecond(x)
        out.append(x)
    return out


def q2_ns():
    return {"newton_1d": _newton_1d, "ratio_limit": 0.75}


def q3_ns():
    return {"power_ratio": lambda p: 1 - 1 / (p - 1), "quartic_steps": math.ceil(math.log(1e-8) / math.log(2 / 3))}


def q4_ns():
    return {"hessian_bytes": lambda d, b, sym: b * (d * d + d) / 2 if sym else b * d**2,
            "resnet_pb": 2.62144, "params_in_500tb": 11180339.9}


def _saddle_free(g, H):
    vals, vecs = torch.linalg.eigh(H)
    absH = vecs @ torch.diag(vals.abs()) @ vecs.T
    return torch.linalg.solve(absH, -g)


def q5_ns():
    return {"saddle_free_step": _saddle_free, "min_damping": 1.25}


def _newton_logistic(X, y, lam, steps):
    w = X.new_zeros(X.shape[1])
    for _ in range(steps):
        p = torch.sigmoid(y * (X @ w))  # 1 - s
        grad = X.T @ (-y * (1 - p)) + lam * w
        hess = (X.T * (p * (1 - p))) @ X + lam * torch.eye(len(w), dtype=X.dtype)
        w = w + torch.linalg.solve(hess, -grad)
    return w


def q6_ns():
    return {"newton_logistic": _newton_logistic, "steps_to_tol": 7}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")
    _zero({**q1_ns(), "damped_newton_step": lambda g, H, d: torch.linalg.solve(H + d * torch.eye(len(g)), g)},
          "q1")  # wrong sign
    _zero({**q1_ns(), "damped_newton_step": lambda g, H, d: torch.linalg.solve(H, -g)}, "q1")  # no damping
    _zero({**q1_ns(), "damped_newton_step": lambda g, H, d: -g / (1 + d)}, "q1")  # gradient descent

    def in_place(g, H, d):
        H.add_(d * torch.eye(len(g), dtype=H.dtype))
        return torch.linalg.solve(H, -g)

    _zero({**q1_ns(), "damped_newton_step": in_place}, "q1")
    _zero({**q1_ns(), "uphill_slope": -0.5925}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "uphill_slope"}, "q1")


def test_q2():
    _full(q2_ns(), "q2")
    _zero({**q2_ns(), "ratio_limit": 0.5}, "q2")  # the constant of e^x - 2x, not of this f
    _zero({**q2_ns(), "ratio_limit": 1.5}, "q2")  # forgot the 2
    _zero({**q2_ns(), "newton_1d": lambda fp, fs, x0, n: _newton_1d(fp, fs, x0, n)[1:]}, "q2")  # drops x_0
    _zero({**q2_ns(), "newton_1d": lambda fp, fs, x0, n: _newton_1d(lambda x: -fp(x), fs, x0, n)}, "q2")


def test_q3():
    _full(q3_ns(), "q3")
    _zero({**q3_ns(), "power_ratio": lambda p: (p - 1) / p}, "q3")
    _zero({**q3_ns(), "power_ratio": lambda p: 2 / 3}, "q3")  # right only for p = 4
    _zero({**q3_ns(), "quartic_steps": 45}, "q3")


def test_q4():
    _full(q4_ns(), "q4")
    _zero({**q4_ns(), "hessian_bytes": lambda d, b, sym: b * d * d / 2 if sym else b * d * d}, "q4")  # no diagonal
    _zero({**q4_ns(), "hessian_bytes": lambda d, b, sym: d * d}, "q4")  # entries, not bytes
    _zero({**q4_ns(), "resnet_pb": 0.5}, "q4")  # the notes' figure
    _zero({**q4_ns(), "resnet_pb": 2621.44}, "q4")  # in TB
    _zero({**q4_ns(), "params_in_500tb": math.sqrt(500e12)}, "q4")  # forgot 4 bytes per entry


def test_q5():
    _full(q5_ns(), "q5")
    _zero({**q5_ns(), "saddle_free_step": lambda g, H: torch.linalg.solve(H, -g)}, "q5")  # plain Newton
    _zero({**q5_ns(), "saddle_free_step": lambda g, H: -g / torch.linalg.eigvalsh(H).abs().max()}, "q5")
    _zero({**q5_ns(), "min_damping": 2.0}, "q5")
    _zero({**q5_ns(), "min_damping": -1.25}, "q5")


def test_q6():
    _full(q6_ns(), "q6")

    def one_step_short(X, y, lam, steps):
        return _newton_logistic(X, y, lam, max(steps - 1, 0))

    _zero({**q6_ns(), "newton_logistic": one_step_short}, "q6")

    def no_regularisation_in_hessian(X, y, lam, steps):
        w = X.new_zeros(X.shape[1])
        for _ in range(steps):
            p = torch.sigmoid(y * (X @ w))
            grad = X.T @ (-y * (1 - p)) + lam * w
            hess = (X.T * (p * (1 - p))) @ X
            w = w - torch.linalg.solve(hess, grad)
        return w

    _zero({**q6_ns(), "newton_logistic": no_regularisation_in_hessian}, "q6")

    def gradient_descent(X, y, lam, steps):
        w = X.new_zeros(X.shape[1])
        for _ in range(steps):
            p = torch.sigmoid(y * (X @ w))
            w = w - 0.01 * (X.T @ (-y * (1 - p)) + lam * w)
        return w

    _zero({**q6_ns(), "newton_logistic": gradient_descent}, "q6")
    _zero({**q6_ns(), "steps_to_tol": 6}, "q6")
