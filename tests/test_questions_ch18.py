"""The checks of solutions/18_schedule_free.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial

import numpy as np
import torch

from optlib import averaging
from optlib.grading import load_questions

import question_scoring

CHAPTER = "18_schedule_free"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _coefficients(weights):
    sums = np.cumsum(weights)
    return [w / s if s else 0.0 for w, s in zip(weights, sums)]


def q1_ns():
    return {"averaging_coefficients": _coefficients, "c_uniform_10": 1 / 10}


def _weights(lrs, r, p):
    return [t**r * m**p for t, m in enumerate(np.maximum.accumulate(lrs), start=1)]


def q2_ns():
    w = _weights([0.025, 0.05, 0.075] + [0.1] * 5, 0, 2)
    return {"averaging_weights": _weights, "warmup_share": sum(w[:3]) / sum(w)}


def _step(y, z, x, g, lr, beta, c):
    z = z - lr * g
    x = torch.lerp(x, z, c)
    return torch.lerp(x, z, 1 - beta), z, x


def q3_ns():
    return {"schedule_free_step": _step}


def q4_ns():
    return {"recover_x": lambda y, z, beta: torch.lerp(y, z, 1 - 1 / beta), "beta_without_x": 0}


def _run(grad_fn, w0, lr, beta, steps):
    z, x, zs = w0, w0, []
    for t in range(steps):
        z = z - lr * grad_fn(torch.lerp(x, z, 1 - beta))
        zs.append(z)
        x = torch.stack(zs).mean(0)
    return x, zs


def q5_ns():
    return {"schedule_free_run": _run, "gradient_point_beta0": "z", "gradient_point_beta1": "X"}


def _noisy_run(X, y, lr, beta, steps, generator):
    z = X.new_zeros(X.shape[1])
    x = z.clone()
    for t in range(1, steps + 1):
        yt = torch.lerp(x, z, 1 - beta)
        i = torch.randint(0, len(X), (1,), generator=generator)
        z = z - lr * (X[i[0]] @ yt - y[i[0]]) * X[i[0]]
        x = x + (z - x) / t
    return torch.lerp(x, z, 1 - beta), x


def q6_ns():
    return {"noisy_run": _noisy_run, "median_ratio": 2.5}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1_coefficients():
    _full(q1_ns(), "q1")
    _zero({**q1_ns(), "averaging_coefficients": lambda ws: [1 / (t + 1) for t in range(1, len(ws) + 1)]}, "q1")
    _zero({**q1_ns(), "averaging_coefficients": lambda ws: [1 / t for t in range(1, len(ws) + 1)]}, "q1")
    _zero({**q1_ns(), "c_uniform_10": 1 / 11}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "c_uniform_10"}, "q1")


def test_q2_weights_use_the_largest_rate_so_far():
    _full(q2_ns(), "q2")
    result = _zero({**q2_ns(), "averaging_weights": lambda lrs, r, p: [t**r * lr**p for t, lr in
                                                                        enumerate(lrs, start=1)]}, "q2")
    assert "largest" in result.message
    _zero({**q2_ns(), "averaging_weights": lambda lrs, r, p: [t**p * m**r for t, m in
                                                              enumerate(np.maximum.accumulate(lrs), start=1)]}, "q2")
    _zero({**q2_ns(), "warmup_share": 3 / 8}, "q2")


def test_q3_one_step_matches_schedule_free_sgd():
    _full(q3_ns(), "q3")

    def old_z(y, z, x, g, lr, beta, c):  # averages the old z
        x_next = torch.lerp(x, z, c)
        z_next = z - lr * g
        return torch.lerp(x_next, z_next, 1 - beta), z_next, x_next

    def swapped(y, z, x, g, lr, beta, c):  # beta on the wrong sequence
        z_next = z - lr * g
        x_next = torch.lerp(x, z_next, c)
        return torch.lerp(z_next, x_next, 1 - beta), z_next, x_next

    def sgd_on_y(y, z, x, g, lr, beta, c):  # steps from y instead of z
        z_next = y - lr * g
        x_next = torch.lerp(x, z_next, c)
        return torch.lerp(x_next, z_next, 1 - beta), z_next, x_next

    for wrong in (old_z, swapped, sgd_on_y, lambda *a: a[0]):
        _zero({"schedule_free_step": wrong}, "q3")


def test_q4_recover_x():
    _full(q4_ns(), "q4")
    _zero({**q4_ns(), "recover_x": lambda y, z, beta: (y - beta * z) / (1 - beta)}, "q4")
    _zero({**q4_ns(), "recover_x": lambda y, z, beta: y}, "q4")

    def in_place(y, z, beta):
        return y.sub_((1 - beta) * z).div_(beta)

    _zero({**q4_ns(), "recover_x": in_place}, "q4")
    _zero({**q4_ns(), "beta_without_x": 1}, "q4")


def test_q5_uniform_average_and_limits():
    _full(q5_ns(), "q5")

    def with_start(grad_fn, w0, lr, beta, steps):  # averages w0 too
        x, zs = _run(grad_fn, w0, lr, beta, steps)
        return torch.stack([w0, *zs]).mean(0), zs

    def swapped(grad_fn, w0, lr, beta, steps):
        return _run(grad_fn, w0, lr, 1 - beta, steps)

    _zero({**q5_ns(), "schedule_free_run": with_start}, "q5")
    _zero({**q5_ns(), "schedule_free_run": swapped}, "q5")
    _zero({**q5_ns(), "gradient_point_beta0": "x", "gradient_point_beta1": "z"}, "q5")


def test_q6_noisy_run_and_ratio():
    _full(q6_ns(), "q6")

    def returns_x_twice(X, y, lr, beta, steps, generator):
        _, x = _noisy_run(X, y, lr, beta, steps, generator)
        return x, x

    def two_draws(X, y, lr, beta, steps, generator):  # draws the example differently
        return _noisy_run(X, y, lr, beta, steps, torch.Generator().manual_seed(int(generator.initial_seed()) + 1))

    result = _zero({**q6_ns(), "noisy_run": returns_x_twice}, "q6")
    assert "x where y belongs" in result.message
    _zero({**q6_ns(), "noisy_run": two_draws}, "q6")
    _zero({**q6_ns(), "median_ratio": 0.9}, "q6")


def test_q6_ratio_of_the_solution_is_well_above_one():
    problem = averaging.NoisyLeastSquares.make(n=200, dim=5, generator=torch.Generator().manual_seed(0))
    ratios = []
    for s in range(8):
        y_end, x_end = _noisy_run(problem.X, problem.y, 0.05, 0.5, 1000, torch.Generator().manual_seed(s))
        ratios.append((problem.excess(y_end) / problem.excess(x_end)).item())
    assert np.median(ratios) > 1.5
