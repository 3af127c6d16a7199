"""The checks of solutions/12_trust_region.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial
import math

import torch

from optlib.grading import load_questions

import question_scoring

CHAPTER = "12_trust_region"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _cauchy(g, H, radius):
    curvature = g @ H @ g
    tau = 1.0 if curvature <= 0 else min(1.0, float(g.norm() ** 3 / (radius * curvature)))
    return -tau * radius * g / g.norm()


def q1_ns():
    return {"cauchy_point": _cauchy, "cauchy_tau": 0.5}


def _ratio(f_old, f_new, g, H, p):
    return (f_old - f_new) / -(g @ p + 0.5 * p @ (H @ p)).item()


def _next_radius(radius, rho, hit_boundary, max_radius):
    if rho < 0.25:
        return radius / 4
    if rho > 0.75 and hit_boundary:
        return min(max_radius, 2 * radius)
    return radius


def q2_ns():
    return {"reduction_ratio": _ratio, "next_radius": _next_radius, "accepted_rho": 0.5}


def _boundary_tau(z, d, radius):
    a, b, c = (d @ d).item(), 2 * (z @ d).item(), (z @ z).item() - radius**2
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def q3_ns():
    return {"boundary_tau": _boundary_tau}


def _dogleg(g, H, radius):
    newton = -torch.linalg.solve(H, g)
    if newton.norm() <= radius:
        return newton
    cauchy = -(g @ g) / (g @ H @ g) * g
    if cauchy.norm() >= radius:
        return -radius * g / g.norm()
    return cauchy + _boundary_tau(cauchy, newton - cauchy, radius) * (newton - cauchy)


def q4_ns():
    return {"dogleg": _dogleg}


def _exact(g, H, radius):
    lam_min = torch.linalg.eigvalsh(H)[0].item()
    eye = torch.eye(len(g), dtype=g.dtype)

    def step(lam):
        return torch.linalg.solve(H + lam * eye, -g)

    if lam_min > 0 and step(0.0).norm() <= radius:
        return step(0.0)
    lo = max(0.0, -lam_min)
    hi = lo + 1.0
    while step(hi).norm() > radius:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if step(mid).norm() > radius else (lo, mid)
    return step(hi)


def q5_ns():
    return {"exact_step": _exact}


def q6_ns():
    return {"iterations_by_radius": {0.01: 49, 0.1: 54, 1.0: 29, 10.0: 41}, "best_radius": 1.0}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")
    _zero({**q1_ns(), "cauchy_point": lambda g, H, r: -r * g / g.norm()}, "q1")  # always to the boundary
    _zero({**q1_ns(), "cauchy_point": lambda g, H, r: -(g @ g) / (g @ H @ g) * g}, "q1")  # ignores the radius
    _zero({**q1_ns(), "cauchy_point": lambda g, H, r: _cauchy(g, H.abs(), r)}, "q1")  # wrong curvature
    _zero({**q1_ns(), "cauchy_tau": 1.0}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "cauchy_tau"}, "q1")


def test_q2():
    _full(q2_ns(), "q2")
    _zero({**q2_ns(), "reduction_ratio": lambda f0, f1, g, H, p: (f0 - f1) / -(g @ p + p @ (H @ p)).item()}, "q2")
    _zero({**q2_ns(), "reduction_ratio": lambda f0, f1, g, H, p: -_ratio(f0, f1, g, H, p)}, "q2")

    def grows_inside(radius, rho, hit, mx):
        return _next_radius(radius, rho, True, mx)

    _zero({**q2_ns(), "next_radius": grows_inside}, "q2")

    def no_cap(radius, rho, hit, mx):
        return _next_radius(radius, rho, hit, math.inf)

    _zero({**q2_ns(), "next_radius": no_cap}, "q2")

    def halves(radius, rho, hit, mx):
        return radius / 2 if rho < 0.25 else _next_radius(radius, rho, hit, mx)

    _zero({**q2_ns(), "next_radius": halves}, "q2")
    _zero({**q2_ns(), "accepted_rho": 2.0}, "q2")


def test_q3():
    _full(q3_ns(), "q3")

    def negative_root(z, d, radius):
        a, b, c = (d @ d).item(), 2 * (z @ d).item(), (z @ z).item() - radius**2
        return (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)

    _zero({"boundary_tau": negative_root}, "q3")
    _zero({"boundary_tau": lambda z, d, r: ((r - z.norm()) / d.norm()).item()}, "q3")  # ignores the angle
    _zero({"boundary_tau": lambda z, d, r: (r / d.norm()).item()}, "q3")  # from the origin


def test_q4():
    _full(q4_ns(), "q4")
    _zero({"dogleg": lambda g, H, r: _cauchy(g, H, r)}, "q4")  # the Cauchy point only

    def newton_clipped(g, H, radius):
        p = -torch.linalg.solve(H, g)
        return p * min(1.0, radius / p.norm().item())

    _zero({"dogleg": newton_clipped}, "q4")

    def in_place(g, H, radius):
        g.neg_()
        return _dogleg(-g, H, radius)

    _zero({"dogleg": in_place}, "q4")


def test_q5():
    _full(q5_ns(), "q5")
    _zero({"exact_step": _dogleg}, "q5")  # fails on the indefinite cases (and is not the exact minimizer)

    def newton_clipped(g, H, radius):
        p = -torch.linalg.solve(H, g)
        return p * min(1.0, radius / p.norm().item())

    _zero({"exact_step": newton_clipped}, "q5")
    _zero({"exact_step": lambda g, H, r: -r * g / g.norm()}, "q5")


def test_q6():
    _full(q6_ns(), "q6")
    _zero({**q6_ns(), "iterations_by_radius": {0.01: 49, 0.1: 54, 1.0: 28, 10.0: 41}}, "q6")
    _zero({**q6_ns(), "iterations_by_radius": {0.1: 54, 1.0: 29, 10.0: 41}}, "q6")
    _zero({**q6_ns(), "best_radius": 0.01}, "q6")
