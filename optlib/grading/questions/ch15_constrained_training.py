"""Checks for solutions/15_constrained_training.ipynb: projections onto a ball and the simplex, a multiplier from
stationarity, the augmented Lagrangian, gradient descent-ascent with a clamped multiplier, parity gaps, the
penalty's error and conditioning, and what a parity slack costs in accuracy.

Every reference is computed here from closed forms, optlib or a short loop; the learner's functions are
called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import contextlib
import math

import torch

from optlib.grading import CheckFailed, Question, as_number, expect, expect_close, require, require_number, \
    require_tensor

F64 = torch.float64


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


@contextlib.contextmanager
def _default_float32():
    """``biased_lending`` draws its groups with ``torch.rand`` in the default dtype: make the data the chapter's
    (float32 default) whatever the learner's notebook set."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


# ---------------------------------------------------------------- q1
def _disk_problem():
    from optlib import functions

    bowl = functions.Quadratic(condition_number=4, angle=math.pi / 6)
    center = torch.tensor([2.0, 1.0], dtype=F64)
    return bowl, center


def _disk_multiplier() -> float:
    from optlib.projections import project_l2_ball

    bowl, center = _disk_problem()
    x = torch.tensor([0.0, -1.0], dtype=F64)
    for _ in range(200):
        x = project_l2_ball(x - 0.4 * bowl.A @ (x - center))
    grad_f, grad_g = bowl.A @ (x - center), 2 * x
    return float(-(grad_f @ grad_g) / (grad_g @ grad_g))


def q1(ns):
    from optlib.projections import project_l2_ball

    project = require(ns, "project_ball", "callable")
    gen = torch.Generator().manual_seed(1501)
    for n, radius, scale in ((3, 1.0, 3.0), (5, 0.5, 0.1), (4, 2.0, 5.0), (2, 1.0, 0.3)):
        y = scale * torch.randn(n, generator=gen, dtype=F64)
        saved = y.clone()
        got = require_tensor(project(y, radius), f"`project_ball(y, {radius})`", (n,))
        _untouched((y,), (saved,), "project_ball")
        expected = project_l2_ball(saved, radius)
        if not torch.allclose(got, expected, rtol=1e-10, atol=1e-12):
            inside = float(saved.norm()) <= radius
            hint = (" (this y is already inside the ball: its nearest point is y itself)" if inside
                    else " (outside the ball the nearest point is y scaled onto the sphere)")
            raise CheckFailed(f"project_ball(y, {radius}) is not the nearest point of the ball{hint}")
    mu = require_number(ns, "mu_disk")
    expect_close(mu, _disk_multiplier(), rtol=0, atol=1e-6,
                 what="`mu_disk` (the multiplier of the disk at the solution of the chapter's problem)")


# ---------------------------------------------------------------- q2
def q2(ns):
    from optlib.projections import project_simplex

    project = require(ns, "project_simplex", "callable")
    gen = torch.Generator().manual_seed(1502)
    inputs = [torch.randn(n, generator=gen, dtype=F64) * s for n, s in ((1, 1.0), (3, 1.0), (10, 0.2), (50, 3.0))]
    inside = torch.rand(6, generator=gen, dtype=F64)
    inputs.append(inside / inside.sum())
    inputs.append(torch.tensor([0.9, -0.4, 0.2, 0.7], dtype=F64))
    for y in inputs:
        saved = y.clone()
        got = require_tensor(project(y), f"`project_simplex` of a vector of {len(y)} entries", tuple(y.shape))
        _untouched((y,), (saved,), "project_simplex")
        expected = project_simplex(saved)
        if not torch.allclose(got, expected, rtol=1e-9, atol=1e-12):
            feasible = bool((got >= -1e-12).all()) and abs(float(got.sum()) - 1) < 1e-9
            hint = (" (it is in the simplex, but not the nearest point: projecting is not rescaling)" if feasible
                    else " (the result must be >= 0 and sum to 1)")
            raise CheckFailed(f"project_simplex(y) is not the nearest point of the simplex for y = "
                              f"{[round(v, 3) for v in saved.tolist()[:6]]}{'...' if len(y) > 6 else ''}{hint}")


# ---------------------------------------------------------------- q3
def _alm_loss(f, g, mu, rho):
    return f + ((mu + rho * g).clamp(min=0).pow(2).sum() - mu.pow(2).sum()) / (2 * rho)


def q3(ns):
    loss = require(ns, "alm_loss", "callable")
    update = require(ns, "alm_update", "callable")
    gen = torch.Generator().manual_seed(1503)
    for p, rho in ((1, 1.0), (3, 10.0), (4, 0.5)):
        f = torch.randn((), generator=gen, dtype=F64)
        g = torch.randn(p, generator=gen, dtype=F64)
        mu = torch.rand(p, generator=gen, dtype=F64)
        g[0] = -2.0 - mu[0] / rho  # mu + rho g < 0 there: that term of the loss is clamped
        saved = (f.clone(), g.clone(), mu.clone())
        value = require_tensor(loss(f, g, mu, rho), f"`alm_loss(f, g, mu, {rho})`")
        expect(value.numel() == 1, f"`alm_loss` should return a scalar, got shape {tuple(value.shape)}")
        _untouched((f, g, mu), saved, "alm_loss")
        expect_close(value.reshape(()), _alm_loss(*saved, rho), rtol=1e-10, atol=1e-12,
                     what=f"alm_loss(f, g, mu, rho={rho}) (with some mu + rho g < 0)")
        new = require_tensor(update(mu, g, rho), f"`alm_update(mu, g, {rho})`", (p,))
        _untouched((g, mu), saved[1:], "alm_update")
        expected = (saved[2] + rho * saved[1]).clamp(min=0)
        if not torch.allclose(new, expected, rtol=1e-10, atol=1e-12):
            if torch.allclose(new, saved[2] + rho * saved[1], rtol=1e-10, atol=1e-12):
                raise CheckFailed("alm_update lets a multiplier go negative: clamp mu + rho g at 0")
            raise CheckFailed(f"alm_update(mu, g, {rho}) is not max(0, mu + rho g)")
    x = require_tensor(require(ns, "x_alm"), "`x_alm`", (2,))
    expect_close(x, torch.tensor([2 / 3, 1 / 3], dtype=F64), rtol=0, atol=1e-6,
                 what="`x_alm` (the solution of min x1^2 + 2 x2^2 s.t. x1 + x2 >= 1)")
    mu = as_number(require(ns, "mu_alm"), "`mu_alm`")
    expect_close(mu, 4 / 3, rtol=0, atol=1e-5, what="`mu_alm` (the multiplier of x1 + x2 >= 1)")


# ---------------------------------------------------------------- q4
def _descent_ascent(Q, c, G, h, x0, lr, dual_lr, steps):
    x, mu = x0.clone(), torch.zeros(len(h), dtype=F64)
    for _ in range(steps):
        g = G @ x - h
        x = x - lr * (Q @ x + c + G.T @ mu)
        mu = (mu + dual_lr * g).clamp(min=0)
    return x, mu


def _random_qp(gen: torch.Generator, d: int, p: int):
    M = torch.randn(d, d, generator=gen, dtype=F64)
    Q = M @ M.T / d + torch.eye(d, dtype=F64)
    c = torch.randn(d, generator=gen, dtype=F64)
    G = torch.randn(p, d, generator=gen, dtype=F64)
    h = torch.randn(p, generator=gen, dtype=F64)
    h[-1] = 50.0  # far away: inactive, so its multiplier must stay at 0
    return Q, c, G, h


def q4(ns):
    step = require(ns, "descent_ascent", "callable")
    gen = torch.Generator().manual_seed(1504)
    for d, p, steps in ((3, 2, 1), (4, 3, 40)):
        args = _random_qp(gen, d, p)
        x0 = torch.randn(d, generator=gen, dtype=F64)
        saved = tuple(a.clone() for a in (*args, x0))
        out = step(*args, x0, 0.1, 0.5, steps)
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               "`descent_ascent` should return a pair (x, mu)")
        x = require_tensor(out[0], "the x that descent_ascent returns", (d,))
        mu = require_tensor(out[1], "the mu that descent_ascent returns", (p,))
        _untouched((*args, x0), saved, "descent_ascent")
        ref_x, ref_mu = _descent_ascent(*saved, 0.1, 0.5, steps)
        if not (torch.allclose(x, ref_x, rtol=1e-9, atol=1e-11) and torch.allclose(mu, ref_mu, rtol=1e-9,
                                                                                       atol=1e-11)):
            if (mu < 0).any():
                raise CheckFailed("a multiplier went negative: clamp mu + eta (G x - h) at 0")
            raise CheckFailed(f"descent_ascent after {steps} step(s) differs from simultaneous descent-ascent: "
                              "both updates use x_k (the multiplier step uses G x_k - h, before x moves)")
    spreads = require(ns, "spreads", dict)
    for eta in (0.3, 10.0):
        expect(eta in spreads, f"`spreads` has no entry for eta = {eta}")
    small = as_number(spreads[0.3], "spreads[0.3]")
    large = as_number(spreads[10.0], "spreads[10.0]")
    expect(0 <= small < 1e-6, f"spreads[0.3] is {small:.3g}: at eta = 0.3 the multiplier settles (max - min over "
                              "the last 100 of 500 steps, alpha = 0.1)")
    expect(large > 1, f"spreads[10.0] is {large:.3g}: at eta = 10 the multiplier keeps oscillating")


# ---------------------------------------------------------------- q5
def _lending_gaps(seed: int) -> tuple[float, float]:
    from optlib.fairness import biased_lending, parity_gap
    from optlib.fairness import fit_parity

    with _default_float32():
        data = biased_lending(seed=seed)
    model, _ = fit_parity(data)
    with torch.no_grad():
        scores = model(data.X_train)
    smooth = parity_gap(torch.softmax(scores, 1)[:, 1], data.s_train)
    hard = parity_gap(scores.argmax(1).to(F64), data.s_train)
    return float(smooth), float(hard)


def q5(ns):
    gap = require(ns, "parity_gap_of", "callable")
    gen = torch.Generator().manual_seed(1505)
    for n in (10, 101):
        s = (torch.rand(n, generator=gen) < 0.3).long()
        s[0], s[1] = 0, 1
        decisions = torch.rand(n, generator=gen, dtype=F64)
        saved = (decisions.clone(), s.clone())
        got = as_number(gap(decisions, s), f"parity_gap_of(decisions, s) for {n} decisions")
        _untouched((decisions, s), saved, "parity_gap_of")
        expected = float(saved[0][saved[1] == 1].mean() - saved[0][saved[1] == 0].mean())
        if abs(got - expected) > 1e-12:
            if abs(got + expected) <= 1e-12:
                raise CheckFailed("parity_gap_of has the wrong sign: group 1's mean minus group 0's")
            raise CheckFailed("parity_gap_of is not the mean of the decisions in group 1 minus in group 0 "
                              "(groups of unequal size: average within each group)")
    smooth, hard = _lending_gaps(2)
    expect_close(require_number(ns, "smooth_gap"), smooth, rtol=0, atol=1e-8,
                 what="`smooth_gap` (the gap of P(yes) on the training set of biased_lending(seed=2))")
    expect_close(require_number(ns, "hard_gap"), hard, rtol=0, atol=1e-8,
                 what="`hard_gap` (the gap of the 0/1 decisions on the training set of biased_lending(seed=2))")


# ---------------------------------------------------------------- q6
def _penalty_minimizer(w: float) -> torch.Tensor:
    # f = (x1 - 3)^2 + (x2 - 1)^2, g = x1 + x2 - 2: the violation is 2 / (1 + w), x_w = c - (w v / 2) (1, 1)
    v = 2 / (1 + w)
    return torch.tensor([3 - w * v / 2, 1 - w * v / 2], dtype=F64)


def q6(ns):
    expect_close(require_number(ns, "mu_star"), 2.0, rtol=0, atol=1e-9,
                 what="`mu_star` (the multiplier of x1 + x2 <= 2 at the solution)")
    minimizer = require(ns, "penalty_minimizer", "callable")
    for w in (0.5, 3.0, 50.0, 2000.0):
        x = require_tensor(minimizer(w), f"`penalty_minimizer({w})`", (2,))
        expect_close(x, _penalty_minimizer(w), rtol=0, atol=1e-7, what=f"penalty_minimizer({w})")
    weights = (1, 10, 100, 1000)
    violations = require(ns, "violations", (list, tuple))
    expect(len(violations) == 4, "`violations` should hold four numbers, for w = 1, 10, 100, 1000")
    for w, v in zip(weights, violations):
        expect_close(as_number(v, f"the violation at w = {w}"), 2 / (1 + w), rtol=1e-6, atol=0,
                     what=f"the violation g(x_w) at w = {w}")
    conditions = require(ns, "conditions", (list, tuple))
    expect(len(conditions) == 4, "`conditions` should hold four numbers, for w = 1, 10, 100, 1000")
    for w, k in zip(weights, conditions):
        expect_close(as_number(k, f"the condition number at w = {w}"), 1 + w, rtol=1e-6, atol=0,
                     what=f"the condition number of the penalized Hessian at w = {w} (2 I + w a a^T)")
    slope = require_number(ns, "slope")
    expect_close(slope, math.log10((2 / 1001) / (2 / 101)), rtol=0, atol=1e-6,
                 what="`slope` (log10 of the violation at w = 1000 over the violation at w = 100)")


# ---------------------------------------------------------------- q7
def q7(ns):
    from optlib.fairness import biased_lending
    from optlib.fairness import fit_parity, parity_report

    tightest = require_number(ns, "tightest_slack")
    k = round(tightest * 100)
    expect(0 <= k <= 10 and abs(tightest - k / 100) < 1e-9,
           f"`tightest_slack` is {tightest:g}: it should be one of the slacks 0.00, 0.01, ..., 0.10")
    with _default_float32():
        data = biased_lending(seed=4)
    free = parity_report(fit_parity(data)[0], data)["acc_train"]

    def drop(j: int) -> float:
        return free - parity_report(fit_parity(data, j / 100)[0], data)["acc_train"]

    cost = drop(k)
    expect(cost <= 0.015, f"at slack {k / 100:.2f} the training accuracy falls by {100 * cost:.2f} points, "
                          "more than 1.5")
    for j in range(k):
        expect(drop(j) > 0.015, f"slack {j / 100:.2f} also costs at most 1.5 points: `tightest_slack` is the "
                                "smallest such slack")
    expect_close(require_number(ns, "cost_points"), 100 * cost, rtol=0, atol=1e-6,
                 what="`cost_points` (the accuracy lost at the tightest slack, in percentage points)")


QUESTIONS = [
    Question("q1", 2, q1, "Projection onto a ball, and a multiplier from stationarity"),
    Question("q2", 3, q2, "Projection onto the simplex"),
    Question("q3", 3, q3, "The augmented Lagrangian"),
    Question("q4", 3, q4, "Gradient descent-ascent with a clamped multiplier"),
    Question("q5", 2, q5, "Parity gaps"),
    Question("q6", 3, q6, "The penalty's error and conditioning"),
    Question("q7", 3, q7, "What a slack costs"),
]
