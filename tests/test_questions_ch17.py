"""The checks of solutions/17_muon.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial
import math

import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "17_muon"

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _polar(G):
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def q1_ns():
    return {"polar_factor": _polar}


def _ns_step(X, a, b, c):
    A = X @ X.T
    return a * X + b * (A @ X) + c * (A @ (A @ X))


def q2_ns():
    return {"ns_step": _ns_step, "cubic_steps": 14}


def q3_ns():
    return {"steepest_value": lambda M: float(torch.trace(M.T @ _polar(M))), "sgd_value": 10.25 / 3}


def _route(named_shapes):
    matrices = [i for i, (_, shape) in enumerate(named_shapes) if len(shape) == 2]
    return ["muon" if i in matrices[1:-1] else "adamw" for i in range(len(named_shapes))]


def q4_ns():
    return {"route": _route}


def _scale(shape, rule):
    m, n = shape
    return (m / n) ** 0.5 if rule == "sqrt_aspect_ratio" and m > n else (1.0 if rule == "sqrt_aspect_ratio"
                                                                           else 0.2 * max(m, n) ** 0.5)


def q5_ns():
    return {"shape_scale": _scale, "rms_1024x256": 0.0625}


def _muon_step(W, G, B, lr, mu, nesterov=True, form="ema", scaled=True):
    B_new = mu * B + ((1 - mu) * G if form == "ema" else G)
    D = (1 - mu) * G + mu * B_new if nesterov else B_new
    s = math.sqrt(max(1.0, W.shape[0] / W.shape[1])) if scaled else 1.0
    return W - lr * s * _polar(D), B_new


def q6_ns():
    return {"muon_step": _muon_step}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")
    assert "drop the singular values" in _zero({"polar_factor": lambda G: G.clone()}, "q1").message
    _zero({"polar_factor": lambda G: torch.linalg.svd(G, full_matrices=False)[0]}, "q1")  # U only
    _zero({"polar_factor": lambda G: _polar(G).mT}, "q1")  # V U^T
    _zero({"polar_factor": lambda G: G / torch.linalg.matrix_norm(G, 2)}, "q1")  # SGD's direction

    def in_place(G):
        G.copy_(_polar(G))
        return G.clone()

    _zero({"polar_factor": in_place}, "q1")


def test_q2():
    _full(q2_ns(), "q2")
    msg = _zero({**q2_ns(), "ns_step": lambda X, a, b, c: a * X + b * X**3 + c * X**5}, "q2").message
    assert "each entry" in msg
    _zero({**q2_ns(), "ns_step": lambda X, a, b, c: a * X + b * X @ X.T @ X + c * X @ X.T @ X @ X.T}, "q2")
    _zero({**q2_ns(), "ns_step": lambda X, a, b, c: a * X + b * (X @ X.T) @ X}, "q2")  # forgot the quintic term
    _zero({**q2_ns(), "cubic_steps": 13}, "q2")
    _zero({k: v for k, v in q2_ns().items() if k != "cubic_steps"}, "q2")


def test_q3():
    _full(q3_ns(), "q3")
    assert "Frobenius" in _zero({**q3_ns(), "steepest_value": lambda M: float(M.norm())}, "q3").message
    assert "spectral" in _zero({**q3_ns(), "steepest_value": lambda M: float(torch.linalg.matrix_norm(M, 2))},
                               "q3").message
    _zero({**q3_ns(), "steepest_value": lambda M: float(torch.trace(M))}, "q3")
    _zero({**q3_ns(), "sgd_value": 4.5}, "q3")  # the nuclear norm, not SGD's value
    _zero({**q3_ns(), "sgd_value": 10.25 ** 0.5}, "q3")  # the Frobenius norm


def test_q4():
    _full(q4_ns(), "q4")
    _zero({"route": lambda ns: ["muon" if len(s) == 2 else "adamw" for _, s in ns]}, "q4")  # all matrices
    _zero({"route": lambda ns: ["muon" if n.endswith("weight") and len(s) == 2 and i > 0 else "adamw"
                                for i, (n, s) in enumerate(ns)]}, "q4")  # keeps the head
    _zero({"route": lambda ns: ["muon" if len(s) >= 2 else "adamw" for _, s in ns]}, "q4")
    _zero({"route": lambda ns: ["Muon"] * len(ns)}, "q4")


def test_q5():
    _full(q5_ns(), "q5")
    _zero({**q5_ns(), "shape_scale": lambda s, r: (s[0] / s[1]) ** 0.5 if r == "sqrt_aspect_ratio"
           else 0.2 * max(s) ** 0.5}, "q5")  # no max(1, .)
    _zero({**q5_ns(), "shape_scale": lambda s, r: _scale(s, r) if r == "sqrt_aspect_ratio"
           else 0.2 * (s[0] * s[1]) ** 0.5}, "q5")
    assert "multiply by the shape scale" in _zero({**q5_ns(), "rms_1024x256": 1 / 32}, "q5").message
    _zero({**q5_ns(), "rms_1024x256": 0.2}, "q5")


def test_q6():
    _full(q6_ns(), "q6")
    msg = _zero({"muon_step": partial(_muon_step, form="sum")}, "q6").message
    assert "sum form" in msg
    _zero({"muon_step": partial(_muon_step, nesterov=False)}, "q6")
    _zero({"muon_step": partial(_muon_step, scaled=False)}, "q6")  # no shape scale: fails on the tall matrix
    _zero({"muon_step": lambda W, G, B, lr, mu: _muon_step(W, G, B, lr, mu)[0]}, "q6")  # only the weights

    def in_place(W, G, B, lr, mu):
        W_new, B_new = _muon_step(W, G, B, lr, mu)
        B.copy_(B_new)
        return W_new, B

    _zero({"muon_step": in_place}, "q6")
