"""The checks of solutions/10_quasi_newton.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial

import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "10_quasi_newton"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _update(H, s, y):
    # the expanded form of (I - rho s y^T) H (I - rho y s^T) + rho s s^T
    rho = 1 / torch.dot(y, s)
    Hy = H @ y
    return (H - rho * (torch.outer(Hy, s) + torch.outer(s, Hy))
            + (rho**2 * torch.dot(y, Hy) + rho) * torch.outer(s, s))


def q1_ns():
    return {"bfgs_inverse_update": _update, "secant_residual": 3e-16}


def _two_loop(g, s_list, y_list):
    q, alphas = g.clone(), []
    for s, y in reversed(list(zip(s_list, y_list))):
        a = torch.dot(s, q) / torch.dot(y, s)
        q = q - a * y
        alphas.append(a)
    if s_list:
        q = q * torch.dot(s_list[-1], y_list[-1]) / torch.dot(y_list[-1], y_list[-1])
    for (s, y), a in zip(zip(s_list, y_list), reversed(alphas)):
        b = torch.dot(y, q) / torch.dot(y, s)
        q = q + (a - b) * s
    return q


def q2_ns():
    return {"two_loop_direction": _two_loop}


def q3_ns():
    return {"sty_lower_bound": lambda alpha, c2, dphi0: -alpha * (1 - c2) * dphi0, "smallest_margin": 1.7}


def _bfgs_exact(A, b, x0):
    x, H = x0.clone(), torch.eye(len(b), dtype=A.dtype)
    for _ in range(len(b)):
        g = A @ x - b
        d = -H @ g
        s = (torch.dot(g, g @ H) / torch.dot(d, A @ d)) * d
        x = x + s
        H = _update(H, s, A @ s)
    return x, H


def q4_ns():
    return {"bfgs_exact_quadratic": _bfgs_exact, "inverse_error": 1e-15}


def q5_ns():
    return {"lbfgs_bytes": lambda d, m, b: 2 * d * m * b, "dense_over_lbfgs": 1.28e6}


def q6_ns():
    from optlib.grading.questions.ch10_quasi_newton import HISTORIES, _evaluations

    evals = {m: _evaluations(m) for m in HISTORIES}
    return {"evals_by_m": evals, "best_m": min(HISTORIES, key=lambda m: (evals[m], m))}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")
    # the direct (BFGS) update of B instead of the inverse H
    _zero({**q1_ns(), "bfgs_inverse_update": lambda H, s, y: H - torch.outer(H @ s, H @ s) / (s @ H @ s)
           + torch.outer(y, y) / (y @ s)}, "q1")
    # s and y swapped: H_new s = y, the secant condition of B
    _zero({**q1_ns(), "bfgs_inverse_update": lambda H, s, y: _update(H, y, s)}, "q1")
    # the rank-one term only (forgets to conjugate H): no secant condition
    _zero({**q1_ns(), "bfgs_inverse_update": lambda H, s, y: H + torch.outer(s, s) / (y @ s)}, "q1")

    def in_place(H, s, y):
        H.copy_(_update(H, s, y))
        return H

    _zero({**q1_ns(), "bfgs_inverse_update": in_place}, "q1")
    _zero({**q1_ns(), "secant_residual": 0.3}, "q1")


def test_q2():
    _full(q2_ns(), "q2")

    # H0 = I instead of gamma I
    _zero({"two_loop_direction": _two_loop_unscaled}, "q2")
    # the loops in the wrong order (newest pair first in the second loop)
    _zero({"two_loop_direction": lambda g, S, Y: _two_loop(g, S[::-1], Y[::-1])}, "q2")
    # only the newest pair
    _zero({"two_loop_direction": lambda g, S, Y: _two_loop(g, S[-1:], Y[-1:])}, "q2")
    _zero({"two_loop_direction": lambda g, S, Y: -_two_loop(g, S, Y)}, "q2")


def _two_loop_unscaled(g, s_list, y_list):
    q, alphas = g.clone(), []
    for s, y in reversed(list(zip(s_list, y_list))):
        a = torch.dot(s, q) / torch.dot(y, s)
        q = q - a * y
        alphas.append(a)
    for (s, y), a in zip(zip(s_list, y_list), reversed(alphas)):
        q = q + (a - torch.dot(y, q) / torch.dot(y, s)) * s
    return q


def test_q3():
    _full(q3_ns(), "q3")
    _zero({**q3_ns(), "sty_lower_bound": lambda alpha, c2, dphi0: alpha * (1 - c2) * dphi0}, "q3")  # sign
    _zero({**q3_ns(), "sty_lower_bound": lambda alpha, c2, dphi0: (c2 - 1) * dphi0}, "q3")  # forgot alpha
    _zero({**q3_ns(), "sty_lower_bound": lambda alpha, c2, dphi0: -alpha * c2 * dphi0}, "q3")
    _zero({**q3_ns(), "smallest_margin": 0.5}, "q3")


def test_q4():
    _full(q4_ns(), "q4")

    def fixed_step(A, b, x0):
        x, H = x0.clone(), torch.eye(len(b), dtype=A.dtype)
        for _ in range(len(b)):
            s = -H @ (A @ x - b)
            x = x + s
            H = _update(H, s, A @ s)
        return x, H

    _zero({**q4_ns(), "bfgs_exact_quadratic": fixed_step}, "q4")
    # steepest descent with exact line searches: H stays I
    _zero({**q4_ns(), "bfgs_exact_quadratic": lambda A, b, x0: (_bfgs_exact(A, b, x0)[0],
                                                                  torch.eye(len(b), dtype=A.dtype))}, "q4")
    _zero({**q4_ns(), "bfgs_exact_quadratic": lambda A, b, x0: _bfgs_exact(A, b, x0)[0]}, "q4")
    _zero({**q4_ns(), "inverse_error": 0.2}, "q4")


def test_q5():
    _full(q5_ns(), "q5")
    _zero({**q5_ns(), "lbfgs_bytes": lambda d, m, b: m * d * b}, "q5")  # s only
    _zero({**q5_ns(), "lbfgs_bytes": lambda d, m, b: 2 * m * d}, "q5")  # entries, not bytes
    _zero({**q5_ns(), "dense_over_lbfgs": 2.56e6}, "q5")  # one vector per pair
    _zero({**q5_ns(), "dense_over_lbfgs": 25.6e6**2}, "q5")


def test_q6():
    right = q6_ns()
    _full(right, "q6")
    evals = right["evals_by_m"]
    _zero({**right, "evals_by_m": {m: v + 1 for m, v in evals.items()}}, "q6")  # one too many each
    _zero({**right, "evals_by_m": {m: evals[m] for m in (1, 3, 10)}}, "q6")  # a key missing
    worst = max(evals, key=lambda m: (evals[m], m))
    _zero({**right, "best_m": worst}, "q6")
