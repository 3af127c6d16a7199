"""The checks of solutions/16_shampoo_soap.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial

import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "16_shampoo_soap"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _inverse_root(A, p, eps):
    # by the SVD: A is symmetric PSD, so its singular values are its eigenvalues
    U, S, _ = torch.linalg.svd(A)
    return U @ torch.diag((S + eps) ** (-1.0 / p)) @ U.T


def q1_ns():
    return {"inverse_root": _inverse_root}


def _shampoo_step(W, G, lr, eps):
    return W - lr * _inverse_root(G @ G.T, 4, eps) @ G @ _inverse_root(G.T @ G, 4, eps)


def q2_ns():
    return {"shampoo_step": _shampoo_step}


def q3_ns():
    return {"kronecker_preconditioner": lambda L, R: _inverse_root(torch.kron(L, R), 4, 0.0)}


def q4_ns():
    return {"adam_floats": lambda m, n: 2 * m * n, "shampoo_floats": lambda m, n: 2 * m**2 + 2 * n**2,
            "soap_floats": lambda m, n: 2 * (m * n + m**2 + n**2)}


def _rotate(G, L, R):
    _, QL = torch.linalg.eigh(L)
    _, QR = torch.linalg.eigh(R)
    QL, QR = -QL.flip(1), QR.flip(1)  # signs are free
    return QL.T @ G @ QR


def q5_ns():
    return {"rotate_to_eigenbasis": _rotate}


def q6_ns():
    return {"steps_by_freq": {1: 59, 3: 166, 10: 172}}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")
    _zero({"inverse_root": lambda A, p, eps: torch.linalg.matrix_power(A + eps * torch.eye(len(A), dtype=A.dtype), 1)
           .pinverse()}, "q1")  # the inverse, not the root

    def positive_power(A, p, eps):
        vals, vecs = torch.linalg.eigh(A)
        return (vecs * (vals.clamp(min=0) + eps) ** (1.0 / p)) @ vecs.T

    _zero({"inverse_root": positive_power}, "q1")

    def no_eps(A, p, eps):
        return _inverse_root(A, p, 0.0)

    _zero({"inverse_root": no_eps}, "q1")

    def in_place(A, p, eps):
        A.add_(eps * torch.eye(len(A), dtype=A.dtype))
        return _inverse_root(A, p, 0.0)

    _zero({"inverse_root": in_place}, "q1")


def test_q2():
    _full(q2_ns(), "q2")
    _zero({"shampoo_step": lambda W, G, lr, eps: W - lr * _inverse_root(G @ G.T, 2, eps) @ G
           @ _inverse_root(G.T @ G, 2, eps)}, "q2")  # the power 1/2
    _zero({"shampoo_step": lambda W, G, lr, eps: W - lr * G}, "q2")  # SGD
    _zero({"shampoo_step": lambda W, G, lr, eps: W + lr * _inverse_root(G @ G.T, 4, eps) @ G
           @ _inverse_root(G.T @ G, 4, eps)}, "q2")  # wrong sign
    _zero({"shampoo_step": lambda W, G, lr, eps: W - lr * _inverse_root(G.T @ G, 4, eps) @ G.T
           @ _inverse_root(G @ G.T, 4, eps)}, "q2")  # transposed


def test_q3():
    _full(q3_ns(), "q3")
    _full({"kronecker_preconditioner": lambda L, R: torch.kron(_inverse_root(L, 4, 0.0), _inverse_root(R, 4, 0.0))},
          "q3")
    _zero({"kronecker_preconditioner": lambda L, R: torch.kron(_inverse_root(R, 4, 0.0), _inverse_root(L, 4, 0.0))},
          "q3")  # column-major order
    _zero({"kronecker_preconditioner": lambda L, R: _inverse_root(torch.kron(L, R), 2, 0.0)}, "q3")


def test_q4():
    _full(q4_ns(), "q4")
    _zero({**q4_ns(), "shampoo_floats": lambda m, n: m**2 + n**2}, "q4")  # forgot the roots
    _zero({**q4_ns(), "soap_floats": lambda m, n: 2 * m * n + m**2 + n**2}, "q4")  # forgot the bases
    _zero({**q4_ns(), "adam_floats": lambda m, n: 2 * m * n + 1}, "q4")  # counted the step


def test_q5():
    _full(q5_ns(), "q5")

    def ascending(G, L, R):
        return torch.linalg.eigh(L)[1].T @ G @ torch.linalg.eigh(R)[1]

    _zero({"rotate_to_eigenbasis": ascending}, "q5")

    def backwards(G, L, R):
        QL, QR = torch.linalg.eigh(L)[1].flip(1), torch.linalg.eigh(R)[1].flip(1)
        return QL @ G @ QR.T  # the rotation back, not into the basis

    _zero({"rotate_to_eigenbasis": backwards}, "q5")
    _zero({"rotate_to_eigenbasis": lambda G, L, R: G.clone()}, "q5")


def test_q6():
    _full(q6_ns(), "q6")
    _zero({"steps_by_freq": {1: 59, 3: 166}}, "q6")
    _zero({"steps_by_freq": {1: 64, 3: None, 10: None}}, "q6")  # plain Shampoo, without grafting
    _zero({"steps_by_freq": {1: 59, 3: 166, 10: 173}}, "q6")
