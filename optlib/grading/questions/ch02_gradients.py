"""Checks for solutions/02_gradients.ipynb (chapter "Gradients").

References are computed here on fresh inputs: finite differences against closed forms that
separate forward from central differences exactly, error-model minimizers in closed form,
gradients and Hessian-vector products by autograd, the relative error from planted errors of
known size, and miss probabilities from binomial coefficients.
"""
from __future__ import annotations

import math

import torch

from optlib.grading import CheckFailed, Question, expect, expect_close, require, require_tensor

_F64 = torch.float64
_EPS64 = torch.finfo(_F64).eps


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _as_float(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} should be a single number, got a tensor of shape {tuple(value.shape)}")
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number, got {type(value).__name__}") from None


class _Counted:
    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x):
        self.calls += 1
        return self.f(x)


# q1 -------------------------------------------------------------------------------------------
def q1(ns):
    numerical_gradient = require(ns, "numerical_gradient", "callable")
    g = _gen(11)
    a = torch.rand(2, 3, generator=g, dtype=_F64) + 0.5
    b = torch.randn(2, 3, generator=g, dtype=_F64)
    x = torch.randn(2, 3, generator=g, dtype=_F64)
    d = x.numel()

    def quadratic(z):
        return (a * z * z).sum() + (b * z).sum()
    # on a quadratic both differences are exact formulas: forward = f' + a h, central = f'
    for method, expected, budget in [("forward", 2 * a * x + b + a * 0.1, d + 1), ("central", 2 * a * x + b, 2 * d + 1)]:
        x_before = x.clone()
        counted = _Counted(quadratic)
        got = require_tensor(numerical_gradient(counted, x, 0.1, method), f"numerical_gradient(f, x, 0.1, {method!r})",
                      x.shape)
        expect(torch.equal(x, x_before), "numerical_gradient must leave x unchanged: restore each coordinate exactly (save its old "
                                         "value; x + h - h is not always x) or work on a copy")
        expect_close(got, expected, rtol=1e-9, atol=1e-9,
                     what=f"the {method} difference with h = 0.1 on a quadratic (compare your formula with the "
                          f"definition of the {method} difference)")
        expect(counted.calls <= budget, f"the {method} difference evaluated f {counted.calls} times for d = {d}; "
                                        f"it needs at most {budget - (method == 'central')}")
    x = torch.randn(5, generator=g, dtype=_F64)

    def smooth(z):
        return (torch.sin(z) * z * z).sum() + z[0] * z[3] + torch.exp(0.3 * z).sum()
    z = x.clone().requires_grad_(True)
    smooth(z).backward()
    got = require_tensor(numerical_gradient(smooth, x, 1e-5, "central"), "numerical_gradient(f, x, 1e-5, 'central')", x.shape)
    expect_close(got, z.grad, rtol=1e-6, atol=1e-8, what="the central difference on a smooth function of 5 variables")


# q2 -------------------------------------------------------------------------------------------
def q2(ns):
    forward = require(ns, "best_step_forward", "callable")
    central = require(ns, "best_step_central", "callable")
    for f0, fk, eps in [(1.0, 1.0, _EPS64), (3.0, 0.5, 1e-7), (0.2, 40.0, 1e-10), (-2.0, 1.5, 1e-12), (0.5, -3.0, 1e-9)]:
        expect_close(_as_float(forward(f0, fk, eps), "best_step_forward"), math.sqrt(2 * eps * abs(f0) / abs(fk)),
                     rtol=1e-7, what=f"best_step_forward({f0}, {fk}, {eps:g})")
        expect_close(_as_float(central(f0, fk, eps), "best_step_central"), (3 * eps * abs(f0) / abs(fk)) ** (1 / 3),
                     rtol=1e-7, what=f"best_step_central({f0}, {fk}, {eps:g})")
    measured = require(ns, "measured_best_h", dict)
    expect(set(measured) == {"forward", "central"},
           f"measured_best_h should have exactly the keys 'forward' and 'central', got {sorted(measured)}")
    # for exp at 0: f = f'' = f''' = 1; round-off makes the measured optimum noisy, so allow a factor of 10
    for method, theory in [("forward", math.sqrt(2 * _EPS64)), ("central", (3 * _EPS64) ** (1 / 3))]:
        h = _as_float(measured[method], f"measured_best_h[{method!r}]")
        expect(h > 0 and abs(math.log10(h / theory)) <= 1,
               f"measured_best_h[{method!r}] = {h:.2g} is far from the step that minimizes the error: take the h "
               f"of the grid where |D_h f(0) - 1| is smallest, for exp in float64")


# q3 -------------------------------------------------------------------------------------------
def _problem(seed: int, n: int, D: int, C: int, scale: float):
    g = _gen(seed)
    X = torch.randn(n, D, generator=g, dtype=_F64)
    y = torch.randint(0, C, (n,), generator=g)
    W = scale * torch.randn(C, D, generator=g, dtype=_F64)
    return W, X, y


def _squared_hinge(W, X, y, reg):
    s = X @ W.T
    m = (s - s.gather(1, y[:, None]) + 1).clamp(min=0).scatter(1, y[:, None], 0.0)
    return (m * m).sum(1).mean() + reg * (W * W).sum()


def q3(ns):
    loss_and_grad = require(ns, "squared_hinge_loss_and_grad", "callable")
    for seed, (n, D, C), scale, reg in [(31, (8, 5, 4), 0.7, 0.1), (32, (12, 3, 6), 0.2, 0.0), (33, (5, 7, 3), 2.0, 0.05)]:
        W, X, y = _problem(seed, n, D, C, scale)
        W_auto = W.clone().requires_grad_(True)
        expected_loss = _squared_hinge(W_auto, X, y, reg)
        expected_loss.backward()
        out = loss_and_grad(W, X, y, reg)
        expect(isinstance(out, tuple) and len(out) == 2, "squared_hinge_loss_and_grad should return (loss, grad)")
        loss, G = out
        expect_close(_as_float(loss, "the loss"), expected_loss.item(), rtol=1e-10, atol=1e-12,
                     what=f"the loss on a random problem (n = {n}, C = {C}, reg = {reg})")
        expect_close(require_tensor(G, "the gradient", W.shape), W_auto.grad, rtol=1e-9, atol=1e-11,
                     what=f"the gradient on a random problem (n = {n}, C = {C}, reg = {reg})")


# q4 -------------------------------------------------------------------------------------------
def q4(ns):
    input_grad = require(ns, "softmax_input_grad", "callable")
    for seed, (n, D, C), scale in [(41, (6, 4, 3), 1.0), (42, (10, 7, 5), 3.0), (43, (1, 2, 2), 0.5)]:
        W, X, y = _problem(seed, n, D, C, scale)
        X_auto = X.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(X_auto @ W.T, y).backward()
        got = require_tensor(input_grad(W, X, y), f"softmax_input_grad(W, X, y) with X of shape {(n, D)}", X.shape)
        expect_close(got, X_auto.grad, rtol=1e-9, atol=1e-12,
                     what=f"the gradient with respect to X on a random problem (n = {n}, D = {D}, C = {C})")


# q5 -------------------------------------------------------------------------------------------
def q5(ns):
    max_relative_error = require(ns, "max_relative_error", "callable")
    g = _gen(51)
    x = torch.randn(6, generator=g, dtype=_F64)

    def f(z):  # does not depend on z[5]: analytic and numerical derivatives are both exactly 0 there
        return torch.log1p(z[:5] ** 2).sum() + z[0] * z[1] * z[2]
    z = x.clone().requires_grad_(True)
    f(z).backward()
    exact = z.grad.detach()
    expect(exact[5] == 0, "internal: the test function must ignore its last coordinate")
    value = _as_float(max_relative_error(f, x, exact.clone()), "max_relative_error(f, x, correct gradient)")
    expect(math.isfinite(value), "max_relative_error returned NaN or inf: a coordinate where both gradients are 0 "
                                 "has relative error 0")
    expect(value < 1e-6, f"max_relative_error of a CORRECT gradient is {value:.2g}; expected a round-off-level "
                         "number (central differences, h = 1e-5)")
    # planted errors of known size: relative error |a - n| / max(|a|, |n|)
    for k, factor, expected in [(3, 1.5, 1 / 3), (1, 0.5, 0.5), (4, -1.0, 2.0)]:
        planted = exact.clone()
        planted[k] *= factor
        got = _as_float(max_relative_error(f, x, planted), "max_relative_error")
        expect_close(got, expected, rtol=1e-4, atol=1e-6,
                     what=f"max_relative_error when one coordinate of the gradient is multiplied by {factor}")


# q6 -------------------------------------------------------------------------------------------
def q6(ns):
    miss_probability = require(ns, "miss_probability", "callable")
    checks_needed = require(ns, "checks_needed", "callable")
    for d, bad, k in [(650, 10, 20), (100, 3, 10), (30, 1, 29), (50, 5, 46), (12, 2, 1)]:
        expected = math.comb(d - bad, k) / math.comb(d, k)
        expect_close(_as_float(miss_probability(d, bad, k), "miss_probability"), expected, rtol=1e-9, atol=1e-15,
                     what=f"miss_probability({d}, {bad}, {k})")
    for d, bad, target in [(650, 10, 0.05), (100, 1, 0.5), (200, 20, 0.01), (40, 4, 1e-3)]:
        k = next(k for k in range(d + 1) if math.comb(d - bad, k) / math.comb(d, k) <= target)
        got = checks_needed(d, bad, target)
        expect(int(got) == k and float(got) == int(got),
               f"checks_needed({d}, {bad}, {target}) = {got}: it should be the SMALLEST number of sampled "
               f"coordinates whose miss probability is at most {target}")
    measured = _as_float(require(ns, "measured_miss"), "measured_miss")
    exact = math.comb(640, 20) / math.comb(650, 20)
    # 4000 simulated checks: standard error about 0.007
    expect(abs(measured - exact) < 0.03,
           f"measured_miss = {measured:.4f} is too far from the true miss probability: sample 20 DISTINCT "
           f"coordinates of 650 per check (torch.randperm) and count the checks that contain no bias coordinate")


# q7 -------------------------------------------------------------------------------------------
def q7(ns):
    hvp = require(ns, "hvp", "callable")
    g = _gen(71)
    A = torch.randn(4, 4, generator=g, dtype=_F64)
    functions = [
        lambda z: (z ** 3).sum() + z[0] * z[1] * z[2],
        lambda z: torch.log(torch.cosh(A @ z)).sum() + (z ** 4).sum() / 4,
    ]
    for k, f in enumerate(functions):
        x = torch.randn(4, generator=g, dtype=_F64)
        v = torch.randn(4, generator=g, dtype=_F64)
        expected = torch.autograd.functional.hessian(f, x) @ v
        got = require_tensor(hvp(f, x.clone(), v.clone()), "hvp(f, x, v)", x.shape)
        expect_close(got, expected, rtol=1e-9, atol=1e-11, what=f"hvp on test function {k + 1} (compare with H(x) v)")
    x = torch.randn(4, generator=g, dtype=_F64)
    out = hvp(functions[0], x, torch.ones(4, dtype=_F64))
    expect(not x.requires_grad, "hvp must not switch on requires_grad of the caller's x: work on a copy")
    expect(not (isinstance(out, torch.Tensor) and out.requires_grad),
           "hvp should return a plain tensor: detach it (it must not carry an autograd graph)")


QUESTIONS = [
    Question("q1", 3, q1, "finite-difference gradients"),
    Question("q2", 2, q2, "the best step h"),
    Question("q3", 3, q3, "the gradient of the squared hinge loss"),
    Question("q4", 2, q4, "the softmax gradient with respect to the inputs"),
    Question("q5", 2, q5, "the gradient check"),
    Question("q6", 2, q6, "how often a sampled check misses a bug"),
    Question("q7", 2, q7, "Hessian-vector products by autograd"),
]
