"""Checks for solutions/09_newton.ipynb: the damped Newton step, quadratic convergence, Newton on |x|^p,
the Hessian's memory, the saddle-free step, and Newton on L2-regularised logistic regression.

Every reference is computed here from closed forms or a short loop; the learner's functions are
called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import math

import torch

from optlib.grading import (CheckFailed, Question, as_number, expect, expect_close, random_spd, require,
                            require_number, require_tensor)

F64 = torch.float64


def _symmetric(n: int, gen: torch.Generator, shift: float) -> torch.Tensor:
    m = torch.randn(n, n, generator=gen, dtype=F64)
    return (m + m.T) / 2 + shift * torch.eye(n, dtype=F64)


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


# ---------------------------------------------------------------- q1
def q1(ns):
    step = require(ns, "damped_newton_step", "callable")
    gen = torch.Generator().manual_seed(901)
    for n, damping in ((4, 0.0), (5, 0.3), (3, 2.0)):
        H, g = random_spd(n, gen), torch.randn(n, generator=gen, dtype=F64)
        saved = (g.clone(), H.clone())
        p = require_tensor(step(g, H, damping), "`damped_newton_step`", (n,))
        _untouched((g, H), saved, "damped_newton_step")
        expected = torch.linalg.solve(H + damping * torch.eye(n, dtype=F64), -g)
        if not torch.allclose(p, expected, rtol=1e-9, atol=1e-12):
            if torch.allclose(p, -expected, rtol=1e-9, atol=1e-12):
                raise CheckFailed(f"damped_newton_step has the wrong sign (damping {damping}): the step solves "
                                  "(H + damping I) p = -g")
            raise CheckFailed(f"damped_newton_step(g, H, {damping}) is not the solution of (H + damping I) p = -g")
    # a huge damping gives a short gradient step -g / damping
    H, g = random_spd(3, gen), torch.randn(3, generator=gen, dtype=F64)
    expect_close(step(g, H, 1e8) * 1e8, -g, rtol=1e-6, what="damped_newton_step with damping 1e8, times 1e8")
    slope = require_number(ns, "uphill_slope")
    expect_close(slope, 0.5925, rtol=1e-9, what="`uphill_slope` (g . p of the plain Newton step at (0.1, 0.5))")


# ---------------------------------------------------------------- q2
def _reference_newton(fprime, fsecond, x0: float, steps: int) -> list[float]:
    xs = [x0]
    for _ in range(steps):
        xs.append(xs[-1] - fprime(xs[-1]) / fsecond(xs[-1]))
    return xs


def q2(ns):
    newton = require(ns, "newton_1d", "callable")
    cases = [(lambda x: math.sinh(x - 1.0) + 0.5 * (x - 1.0), lambda x: math.cosh(x - 1.0) + 0.5, 2.7, 6),
             (lambda x: x**3 + 2 * x - 3, lambda x: 3 * x**2 + 2, -0.4, 5)]
    for fp, fs, x0, steps in cases:
        out = newton(fp, fs, x0, steps)
        expect(isinstance(out, (list, tuple)) and len(out) == steps + 1,
               f"`newton_1d(..., steps={steps})` should return a list of steps + 1 iterates x_0..x_steps")
        got = [as_number(v, "an iterate of newton_1d") for v in out]
        ref = _reference_newton(fp, fs, x0, steps)
        expect_close(got[0], x0, rtol=0, atol=0, what="x_0 (the first entry is the start)")
        for k, (a, b) in enumerate(zip(got, ref)):
            expect_close(a, b, rtol=1e-9, atol=1e-12, what=f"iterate x_{k} of newton_1d from {x0}")
    ratio = require_number(ns, "ratio_limit")
    expect_close(ratio, 0.75, rtol=1e-6,
                 what="`ratio_limit` (the limit of e_{k+1} / e_k^2 for f = x^4/4 + x^2/2 - 2x)")


# ---------------------------------------------------------------- q3
def q3(ns):
    ratio = require(ns, "power_ratio", "callable")
    for p in (2.5, 3.0, 4.0, 6.0, 10.0):
        got = as_number(ratio(p), f"power_ratio({p})")
        expect_close(got, (p - 2) / (p - 1), rtol=1e-9, what=f"power_ratio({p}) (x_{{k+1}} / x_k for f = |x|^{p})")
    steps = require_number(ns, "quartic_steps")
    expect(steps == 46, f"`quartic_steps` is {steps:g}: count the Newton steps on x^4 from x = 1 until "
                        "|x| <= 1e-8 for the first time")


# ---------------------------------------------------------------- q4
def q4(ns):
    size = require(ns, "hessian_bytes", "callable")
    for d, b in ((1000, 4), (12345, 2), (7, 8)):
        full = as_number(size(d, b, False), f"hessian_bytes({d}, {b}, False)")
        sym = as_number(size(d, b, True), f"hessian_bytes({d}, {b}, True)")
        expect_close(full, d * d * b, rtol=1e-12, atol=0, what=f"hessian_bytes({d}, {b}, False)")
        expect_close(sym, d * (d + 1) // 2 * b, rtol=1e-12, atol=0,
                     what=f"hessian_bytes({d}, {b}, True) (the diagonal and one triangle)")
    expect_close(require_number(ns, "resnet_pb"), 4 * 25.6e6**2 / 1e15, rtol=1e-3,
                 what="`resnet_pb` (the full float32 Hessian of 25.6e6 parameters, in PB = 1e15 bytes)")
    expect_close(require_number(ns, "params_in_500tb"), math.sqrt(500e12 / 4), rtol=1e-3,
                 what="`params_in_500tb` (the d whose full float32 Hessian fills 500 TB = 5e14 bytes)")


# ---------------------------------------------------------------- q5
def _abs_solve(g: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(H)
    return -(vecs @ ((vecs.T @ g) / vals.abs()))


def q5(ns):
    step = require(ns, "saddle_free_step", "callable")
    gen = torch.Generator().manual_seed(905)
    for n in (2, 4, 6):
        H = _symmetric(n, gen, 0.0)
        vals = torch.linalg.eigvalsh(H)
        expect(vals.min() < 0 < vals.max(), "internal: the test matrix should be indefinite")
        g = torch.randn(n, generator=gen, dtype=F64)
        saved = (g.clone(), H.clone())
        p = require_tensor(step(g, H), "`saddle_free_step`", (n,))
        _untouched((g, H), saved, "saddle_free_step")
        expected = _abs_solve(saved[0], saved[1])
        if not torch.allclose(p, expected, rtol=1e-8, atol=1e-10):
            plain = torch.linalg.solve(saved[1], -saved[0])
            hint = (" (this is the plain Newton step: replace each eigenvalue of H by its absolute value)"
                    if torch.allclose(p, plain, rtol=1e-8, atol=1e-10) else "")
            raise CheckFailed(f"saddle_free_step is not -|H|^-1 g{hint}")
        expect(float(g @ p) < 0, "saddle_free_step should be a descent direction")
    delta = require_number(ns, "min_damping")
    expect_close(delta, 1.25, rtol=1e-9, what="`min_damping` (the smallest damping that makes H + damping I "
                                              "positive semidefinite at (0.1, 0.5))")


# ---------------------------------------------------------------- q6
def _logistic_problem(gen: torch.Generator, n: int, d: int):
    X = torch.randn(n, d, generator=gen, dtype=F64)
    w_true = torch.randn(d, generator=gen, dtype=F64)
    y = torch.where(X @ w_true + 0.5 * torch.randn(n, generator=gen, dtype=F64) > 0, 1.0, -1.0).to(F64)
    return X, y


def _logistic_newton(X, y, lam: float, steps: int) -> tuple[torch.Tensor, list[float]]:
    w = torch.zeros(X.shape[1], dtype=F64)
    norms = []
    for _ in range(steps):
        s = torch.sigmoid(-y * (X @ w))
        g = -(X.T @ (y * s)) + lam * w
        H = X.T @ (X * (s * (1 - s))[:, None]) + lam * torch.eye(X.shape[1], dtype=F64)
        norms.append(float(g.norm()))
        w = w - torch.linalg.solve(H, g)
    return w, norms


def q6(ns):
    newton = require(ns, "newton_logistic", "callable")
    gen = torch.Generator().manual_seed(906)
    for n, d, lam, steps in ((60, 3, 0.5, 1), (120, 4, 2.0, 8)):
        X, y = _logistic_problem(gen, n, d)
        saved = (X.clone(), y.clone())
        w = require_tensor(newton(X, y, lam, steps), "`newton_logistic`", (d,))
        _untouched((X, y), saved, "newton_logistic")
        ref, _ = _logistic_newton(saved[0], saved[1], lam, steps)
        expect_close(w, ref, rtol=1e-8, atol=1e-10,
                     what=f"newton_logistic after {steps} full Newton step(s) from w = 0 (lambda = {lam})")
    X, y = _logistic_problem(torch.Generator().manual_seed(9), 200, 5)
    _, norms = _logistic_newton(X, y, 1.0, 12)
    expected = next(k for k, v in enumerate(norms) if v <= 1e-10)
    got = require_number(ns, "steps_to_tol")
    expect(got == expected, f"`steps_to_tol` is {got:g}: count the full Newton steps from w = 0 on the notebook's "
                            "problem until the gradient norm at the iterate is <= 1e-10")


QUESTIONS = [
    Question("q1", 2, q1, "The damped Newton step"),
    Question("q2", 3, q2, "Digits doubling: the constant of quadratic convergence"),
    Question("q3", 2, q3, "Newton on |x|^p"),
    Question("q4", 2, q4, "The Hessian's memory"),
    Question("q5", 3, q5, "The saddle-free step"),
    Question("q6", 3, q6, "Newton on logistic regression"),
]
