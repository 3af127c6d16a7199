"""Checks for ``solutions/04_loss_geometry.ipynb`` (chapter "Geometry of loss surfaces").

Every reference is computed here, from closed forms, optlib's test functions or a short loop
written for the test; the learner's functions are called on inputs the notebook never shows.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from optlib.grading import CheckFailed, Question, expect, expect_close, require

F64 = torch.float64


def _sym(eigenvalues, seed: int) -> torch.Tensor:
    """A symmetric matrix with the given eigenvalues and randomly rotated eigenvectors."""
    lam = torch.as_tensor(eigenvalues, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    H = (q * lam) @ q.T
    return 0.5 * (H + H.T)


def _number(value, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number, got {str(value)[:100]}") from None


# ------------------------------------------------------------------------------------------ q1
def q1(ns):
    classify = require(ns, "classify", "callable")
    cond = require(ns, "cond", "callable")
    cases = [
        ([0.5, 4.0], "minimum"), ([-1.0, -3.0, -0.2], "maximum"), ([2.0, -5.0, 1.0], "saddle"),
        ([-1.0, 0.0, 2.0], "saddle"), ([0.0, 3.0], "degenerate"), ([-2.0, 0.0, 0.0], "degenerate"),
        ([0.0, 0.0], "degenerate"), ([1e-3, 50.0], "minimum"),
    ]
    for i, (eigenvalues, expected) in enumerate(cases):
        got = classify(_sym(eigenvalues, seed=40 + i))
        expect(got == expected, f"classify(H) for a Hessian with eigenvalues {eigenvalues} returned {got!r}, "
                                f"expected {expected!r}")
    for i, eigenvalues in enumerate(([0.5, 4.0], [2.0, -5.0, 1.0], [-1.0, -3.0, -0.2], [-7.0, 0.1, 3.0, 2.0])):
        absolute = [abs(v) for v in eigenvalues]
        expect_close(_number(cond(_sym(eigenvalues, seed=60 + i)), "cond(H)"), max(absolute) / min(absolute),
                     rtol=1e-6, what=f"cond(H) for a Hessian with eigenvalues {eigenvalues} (the ratio of the "
                                     "largest to the smallest singular value)")


# ------------------------------------------------------------------------------------------ q2
def _f_after_loop(A, x0, lr, t):
    x = x0.clone()
    for _ in range(t):
        x = x - lr * (A @ x)
    return 0.5 * (x @ A @ x).item()


def _steps_reference(target=1e-8):
    from optlib import functions

    quad = functions.Quadratic(condition_number=100, angle=math.pi / 6)
    lam = torch.linalg.eigvalsh(quad.A)
    L, mu = lam.max().item(), lam.min().item()
    steps = {}
    for key, lr in (("1/L", 1 / L), ("2/(L+mu)", 2 / (L + mu)), ("1.99/L", 1.99 / L)):
        x, k = torch.tensor([-1.8, 1.0], dtype=F64), 0
        while 0.5 * (x @ quad.A @ x).item() > target:
            x, k = x - lr * (quad.A @ x), k + 1
        steps[key] = k
    return steps


def q2(ns):
    f_after = require(ns, "gd_loss_after", "callable")
    A = _sym([0.3, 2.0, 7.0], seed=21)
    x0 = torch.tensor([1.0, -2.0, 0.7], dtype=F64)
    for lr, t in ((0.1, 0), (0.1, 1), (0.1, 17), (0.25, 9), (0.3, 12), (0.02, 60)):
        keep = x0.clone()
        got = _number(f_after(A.clone(), x0, lr, t), "gd_loss_after(...)")
        expect(torch.equal(x0, keep), "gd_loss_after changed x0 in place")
        expect_close(got, _f_after_loop(A, x0, lr, t), rtol=1e-7, atol=1e-14,
                     what=f"gd_loss_after(A, x0, lr={lr}, t={t}) for a 3-D test matrix"
                          + (" (lr above 2/L: the loss grows)" if lr > 2 / 7 else ""))
    predicted = require(ns, "predicted_steps", dict)
    ref = _steps_reference()
    expect(sorted(predicted) == sorted(ref),
           f"predicted_steps should have the keys {sorted(ref)}, got {sorted(predicted)}")
    for key, value in ref.items():
        got = _number(predicted[key], f"predicted_steps[{key!r}]")
        expect(abs(got - value) <= 1, f"predicted_steps[{key!r}] is {got:g}, but gradient descent needs {value} "
                                      "steps: the smallest t with f(x_t) <= 1e-8")
    fastest = require(ns, "fastest", str)
    expect(fastest == min(ref, key=ref.get), f"fastest = {fastest!r} is not the learning rate that needs the "
                                             "fewest steps")


# ------------------------------------------------------------------------------------------ q3
Y0S = [10.0**-k for k in (2, 4, 6, 8, 10, 12)]


def _escape_reference(lr=0.05):
    steps = []
    for y0 in Y0S:
        y, t = y0, 0
        while abs(y) < 1.0:
            y, t = y + lr * 2 * y, t + 1  # gradient of x^2 - y^2 in y is -2y
        steps.append(t)
    return steps


def q3(ns):
    steps = require(ns, "escape_steps", (list, tuple, np.ndarray, torch.Tensor))
    slope = _number(require(ns, "escape_slope"), "escape_slope")
    try:
        steps = np.asarray(steps.detach().cpu() if isinstance(steps, torch.Tensor) else steps, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed("escape_steps should hold six numbers") from None
    expect(steps.shape == (len(Y0S),), f"escape_steps should hold one count per y0 in y0s ({len(Y0S)} numbers), "
                                       f"got shape {steps.shape}")
    ref = np.array(_escape_reference())
    for y0, got, want in zip(Y0S, steps, ref):
        expect(abs(got - want) <= 1, f"for y0 = {y0:g} escape_steps says {got:g}, but |y_t| first reaches 1 at "
                                     f"step {want}")
    ref_slope = np.polyfit(np.log10(1 / np.array(Y0S)), ref, 1)[0]
    expect_close(slope, ref_slope, rtol=0.01, what="escape_slope (the slope of a least-squares line through "
                                                   "(log10(1/y0), steps))")


# ------------------------------------------------------------------------------------------ q4
def q4(ns):
    newton = require(ns, "newton_step", "callable")
    # a strictly convex quadratic: one Newton step lands on the minimizer A^-1 b
    A = _sym([0.5, 2.0, 9.0], seed=31)
    b = torch.tensor([1.0, 0.0, -2.0], dtype=F64)
    x = torch.tensor([3.0, -1.0, 2.0], dtype=F64)
    keep = x.clone()
    got = newton(lambda z: A @ z - b, lambda z: A.clone(), x)
    expect(torch.equal(x, keep), "newton_step changed x in place")
    expect_close(got, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10,
                 what="newton_step on a 3-D quadratic 0.5 x^T A x - b^T x (one step should reach the minimizer)")
    # x^2 - y^2: Newton jumps onto the saddle
    grad = lambda z: torch.stack([2 * z[0], -2 * z[1]])
    hess = lambda z: torch.tensor([[2.0, 0.0], [0.0, -2.0]], dtype=F64)
    expect_close(newton(grad, hess, torch.tensor([0.3, -0.8], dtype=F64)), torch.zeros(2, dtype=F64), atol=1e-12,
                 what="newton_step on x^2 - y^2 from (0.3, -0.8)")
    # a non-quadratic function in 2-D: f = x^4 + x y + (1 + y)^2
    grad = lambda z: torch.stack([4 * z[0] ** 3 + z[1], z[0] + 2 * (1 + z[1])])
    hess = lambda z: torch.stack([torch.stack([12 * z[0] ** 2, torch.ones((), dtype=F64)]),
                                  torch.tensor([1.0, 2.0], dtype=F64)])
    z = torch.tensor([0.8, -0.3], dtype=F64)
    expect_close(newton(grad, hess, z), z - torch.linalg.solve(hess(z), grad(z)), rtol=1e-8,
                 what="newton_step on f = x^4 + xy + (1 + y)^2 from (0.8, -0.3)")
    factor = _number(require(ns, "quartic_factor"), "quartic_factor")
    expect_close(factor, 2 / 3, rtol=1e-6, what="quartic_factor (x_{t+1} / x_t for Newton's method on f(x) = x^4)")


# ------------------------------------------------------------------------------------------ q5
def q5(ns):
    goe = require(ns, "goe", "callable")
    H = goe(3, 20_000, torch.Generator().manual_seed(5))
    expect(isinstance(H, torch.Tensor), f"goe should return a torch tensor, got {type(H).__name__}")
    expect(tuple(H.shape) == (20_000, 3, 3), f"goe(3, 20000, generator) has shape {tuple(H.shape)}, "
                                            "expected (samples, d, d) = (20000, 3, 3)")
    expect(H.dtype == F64, f"goe should return float64 matrices, got {H.dtype}")
    expect(torch.allclose(H, H.transpose(-1, -2), atol=1e-12), "the matrices goe returns are not symmetric")
    again = goe(3, 20_000, torch.Generator().manual_seed(5))
    expect(torch.equal(H, again), "goe with two generators of the same seed gave different matrices: draw every "
                                  "random number from the generator passed in")
    other = goe(3, 20_000, torch.Generator().manual_seed(6))
    expect(not torch.equal(H, other), "goe gave the same matrices for generators with different seeds")
    diagonal = H.diagonal(dim1=-2, dim2=-1).reshape(-1)
    off = H[:, 0, 1]
    expect_close(diagonal.mean().item(), 0.0, atol=0.02, what="the mean of the diagonal entries")
    expect_close(diagonal.var().item(), 2 / 3, rtol=0.05, what="the variance of the diagonal entries for d = 3")
    expect_close(off.var().item(), 1 / 3, rtol=0.05, what="the variance of an off-diagonal entry for d = 3")
    H2 = goe(2, 100_000, torch.Generator().manual_seed(9))
    fraction = (torch.linalg.eigvalsh(H2)[:, 0] > 0).double().mean().item()
    expect_close(fraction, (2 - math.sqrt(2)) / 4, atol=0.006,
                 what="the fraction of positive definite matrices among 100,000 samples of goe(2, ...)")


# ------------------------------------------------------------------------------------------ q6
def _tiny_network_loss(w):
    return (w[0] * w[1] - 1.0) ** 2


def q6(ns):
    gap = require(ns, "jensen_gap", "callable")
    g = torch.Generator().manual_seed(66)
    x, y = torch.randn(4, generator=g, dtype=F64), torch.randn(4, generator=g, dtype=F64)
    for t in (0.0, 0.3, 0.5, 0.85):
        square = lambda z: (z**2).sum()
        expect_close(_number(gap(square, x, y, t), "jensen_gap(...)"), t * (1 - t) * ((x - y) ** 2).sum().item(),
                     rtol=1e-7, atol=1e-12, what=f"jensen_gap(f, x, y, t={t}) for f(z) = |z|^2 (chord minus function)")
        wavy = lambda z: torch.sin(z).sum() + z[0] * z[1]
        expected = t * wavy(x) + (1 - t) * wavy(y) - wavy(t * x + (1 - t) * y)
        expect_close(_number(gap(wavy, x, y, t), "jensen_gap(...)"), expected.item(), rtol=1e-7, atol=1e-12,
                     what=f"jensen_gap(f, x, y, t={t}) for f(z) = sum(sin(z)) + z0 z1")
    a = torch.as_tensor(require(ns, "chord_x"), dtype=F64).reshape(-1)
    b = torch.as_tensor(require(ns, "chord_y"), dtype=F64).reshape(-1)
    t = _number(require(ns, "chord_t"), "chord_t")
    expect(a.shape == (2,) and b.shape == (2,), "chord_x and chord_y should be points (a, b) of length 2")
    expect(0.0 <= t <= 1.0, f"chord_t should lie in [0, 1], got {t}")
    for name, p in (("chord_x", a), ("chord_y", b)):
        loss = _tiny_network_loss(p).item()
        expect(loss <= 1e-10,
               f"{name} = {p.tolist()} is not a global minimizer of f(a, b) = (ab - 1)^2 (f = {loss:.3g})")
    value = t * _tiny_network_loss(a) + (1 - t) * _tiny_network_loss(b) - _tiny_network_loss(t * a + (1 - t) * b)
    expect(value.item() <= -0.1, f"the Jensen gap between chord_x and chord_y at chord_t is {value.item():.3g}; it "
                                 "should be at most -0.1 (f at least 0.1 above the chord): try other minimizers or t")


# ------------------------------------------------------------------------------------------ q7
def _largest_root(lr, curvature, momentum):
    return float(np.abs(np.roots([1.0, -(1.0 + momentum - lr * curvature), momentum])).max())


def q7(ns):
    factor = require(ns, "heavy_ball_factor", "callable")
    for lr, curvature, momentum in ((0.1, -1.0, 0.0), (0.1, 2.0, 0.0), (0.3, 10.0, 0.0), (0.05, 3.0, 0.9),
                                    (0.2, -0.5, 0.5), (0.01, 100.0, 0.81), (0.1, -2.0, 0.95)):
        expect_close(_number(factor(lr, curvature, momentum), "heavy_ball_factor(...)"),
                     _largest_root(lr, curvature, momentum), rtol=1e-7,
                     what=f"heavy_ball_factor(lr={lr}, curvature={curvature}, momentum={momentum})")
    growth = _number(require(ns, "measured_growth"), "measured_growth")
    expect_close(growth, _largest_root(0.1, -1.0, 0.9), rtol=1e-3,
                 what="measured_growth (|x_101 / x_100| for momentum 0.9, lr 0.1 on f(x) = -x^2/2)")


QUESTIONS = [
    Question("q1", 3, q1, "reading a Hessian: type of critical point and condition number"),
    Question("q2", 3, q2, "the loss of gradient descent on a quadratic, in closed form"),
    Question("q3", 2, q3, "escape time from a saddle"),
    Question("q4", 3, q4, "Newton's step, and Newton on x^4"),
    Question("q5", 2, q5, "sampling random Hessians (GOE)"),
    Question("q6", 3, q6, "a Jensen violation in a two-weight network"),
    Question("q7", 2, q7, "momentum along negative curvature"),
]
