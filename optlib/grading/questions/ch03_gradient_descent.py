"""Checks for ``solutions/03_gradient_descent.ipynb`` (chapter "Gradient descent and SGD").

Every reference is computed here, from closed forms, optlib's test functions or a short loop
written for the test; the learner's functions are called on inputs the notebook never shows.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from optlib.grading import CheckFailed, Question, expect, expect_close, require

F64 = torch.float64


def _spd(eigenvalues, seed: int) -> torch.Tensor:
    """A symmetric matrix with the given eigenvalues and randomly rotated eigenvectors."""
    lam = torch.as_tensor(eigenvalues, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(len(lam), len(lam), generator=g, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    return (q * lam) @ q.T


def _numbers(value, count: int, what: str) -> list[float]:
    """``value`` as ``count`` floats (a tuple, list, array or tensor), or CheckFailed."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    elif isinstance(value, np.ndarray):
        value = value.reshape(-1).tolist()
    if not isinstance(value, (tuple, list)) or len(value) != count:
        raise CheckFailed(f"{what} should return {count} numbers (a tuple), got {str(value)[:120]}")
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should return {count} numbers, got {str(value)[:120]}") from None


# ------------------------------------------------------------------------------------------ q1
def _gd_reference(grad, x0, lr, steps):
    xs = [x0.clone()]
    for _ in range(steps):
        xs.append(xs[-1] - lr * grad(xs[-1]))
    return torch.stack(xs)


def q1(ns):
    gd = require(ns, "gradient_descent", "callable")
    A = _spd([0.5, 3.0, 12.0], seed=101)
    b = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    cases = [
        ("a 3-D quadratic, lr = 0.05, 25 steps", lambda x: A @ x - b,
         torch.tensor([2.0, -1.0, 0.5], dtype=F64), 0.05, 25),
        ("grad(x) = x**3 - sin(x) in 2-D, lr = 0.1, 12 steps", lambda x: x**3 - torch.sin(x),
         torch.tensor([1.7, -0.4], dtype=F64), 0.1, 12),
        ("zero steps", lambda x: 2 * x, torch.tensor([0.3, 0.2, -0.1, 4.0], dtype=F64), 0.1, 0),
    ]
    for label, grad, x0, lr, steps in cases:
        keep = x0.clone()
        out = gd(grad, x0, lr, steps)
        expect(isinstance(out, torch.Tensor),
               f"gradient_descent should return a torch tensor, got {type(out).__name__}")
        expect(tuple(out.shape) == (steps + 1, len(x0)),
               f"on {label} the result has shape {tuple(out.shape)}, expected (steps + 1, d) = {(steps + 1, len(x0))}: "
               "row 0 is x0, row k the point after k steps")
        expect(torch.equal(x0, keep), "gradient_descent changed x0 in place: work on a copy (x0.clone())")
        expect_close(out, _gd_reference(grad, keep, lr, steps), rtol=1e-7, atol=1e-10,
                     what=f"the iterates on {label}")


# ------------------------------------------------------------------------------------------ q2
def q2(ns):
    constants = require(ns, "gd_constants", "callable")
    for eigenvalues, seed in (([2.0, 8.0], 1), ([0.1, 0.7, 3.0, 5.0, 40.0], 2), ([4.0, 4.0, 4.0], 3)):
        A = _spd(eigenvalues, seed)
        lr_max, lr_best, rate = _numbers(constants(A.clone()), 3, "gd_constants(A)")
        L, mu = max(eigenvalues), min(eigenvalues)
        where = f"for a matrix with eigenvalues {eigenvalues}"
        expect_close(lr_max, 2 / L, rtol=1e-6, what=f"lr_max {where}")
        expect_close(lr_best, 2 / (L + mu), rtol=1e-6, what=f"lr_best {where}")
        expect_close(rate, (L - mu) / (L + mu), rtol=1e-6, atol=1e-9, what=f"rate {where}")


# ------------------------------------------------------------------------------------------ q3
LRS = np.linspace(0.01, 0.19, 50)


def _sweep_reference(target=1e-6, horizon=3000):
    from optlib import functions

    quad = functions.Quadratic(condition_number=10, angle=math.pi / 6)
    lam, Q = torch.linalg.eigh(quad.A)
    c = (Q.T @ quad.start).numpy()
    lam = lam.numpy()
    k = np.arange(horizon + 1)[:, None]
    steps = []
    for lr in LRS:
        f = 0.5 * (lam * c**2 * np.abs(1 - lr * lam) ** (2 * k)).sum(1)
        steps.append(int(np.argmax(f <= target)))
    return np.array(steps)


def q3(ns):
    steps = require(ns, "steps_needed", (list, tuple, np.ndarray, torch.Tensor))
    best = require(ns, "best_lr", (float, int, np.floating))
    try:
        steps = np.asarray(steps.detach().cpu() if isinstance(steps, torch.Tensor) else steps, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed("steps_needed should hold numbers only (every learning rate in lrs reaches 1e-6 "
                          "within 3000 steps)") from None
    expect(steps.shape == (len(LRS),), f"steps_needed should hold one count per learning rate in lrs "
                                       f"({len(LRS)} numbers), got shape {steps.shape}")
    ref = _sweep_reference()
    off = np.abs(steps - ref)
    if (off > 1).any():
        i = int(np.argmax(off))
        raise CheckFailed(f"steps_needed[{i}] (lr = {LRS[i]:.4f}) is {steps[i]:g}, expected {ref[i]}: count the "
                          "steps k from k = 0 (the start) until f(x_k) <= 1e-6 first holds")
    matches = np.flatnonzero(np.abs(LRS - float(best)) < 1e-9)
    expect(len(matches) == 1, f"best_lr should be one of the values in lrs, got {float(best)!r}")
    expect(ref[matches[0]] == ref.min(), f"best_lr = {float(best):.4f} needs {ref[matches[0]]} steps; another "
                                         "learning rate in lrs needs fewer")


# ------------------------------------------------------------------------------------------ q4
def _least_squares(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=F64)
    y = X @ torch.randn(d, generator=g, dtype=F64) + 0.1 * torch.randn(n, generator=g, dtype=F64)

    def grad_fn(w, idx):
        Xb, yb = X[idx], y[idx]
        return Xb.T @ (Xb @ w - yb) / len(idx)

    return grad_fn


def _sgd_reference(grad_fn, w0, n, lr, batch_size, epochs, generator):
    w = w0.clone()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            w = w - lr * grad_fn(w, order[start:start + batch_size])
    return w


def q4(ns):
    sgd = require(ns, "minibatch_sgd", "callable")
    for n, d, lr, batch_size, epochs, seed in ((37, 3, 0.05, 8, 3, 5), (50, 4, 0.1, 50, 2, 6), (23, 2, 0.02, 1, 2, 7)):
        grad_fn = _least_squares(n, d, seed)
        calls = []

        def counted(w, idx, grad_fn=grad_fn, calls=calls):
            calls.append(len(idx))
            return grad_fn(w, idx)

        w0 = torch.linspace(-1.0, 1.0, d, dtype=F64)
        keep = w0.clone()
        out = sgd(counted, w0, n, lr, batch_size, epochs, torch.Generator().manual_seed(seed))
        where = f"(N = {n}, batch_size = {batch_size}, epochs = {epochs})"
        expect(torch.equal(w0, keep), "minibatch_sgd changed w0 in place: work on a copy (w0.clone())")
        expected_calls = epochs * math.ceil(n / batch_size)
        expect(len(calls) == expected_calls,
               f"minibatch_sgd called grad_fn {len(calls)} times {where}, expected {expected_calls}: one step per "
               "batch, ceil(N / batch_size) batches per epoch, the last one possibly smaller")
        sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
        first_epoch = calls[: len(sizes)]
        expect(sorted(first_epoch) == sorted(sizes),
               f"the batches of one epoch should have sizes {sizes} {where}, got {first_epoch}")
        ref = _sgd_reference(grad_fn, keep, n, lr, batch_size, epochs, torch.Generator().manual_seed(seed))
        expect_close(out, ref, rtol=1e-8, atol=1e-10,
                     what=f"the final weights {where}; shuffle with torch.randperm(N, generator=generator) once per "
                          "epoch and cut the order into consecutive batches")


# ------------------------------------------------------------------------------------------ q5
def q5(ns):
    noise = require(ns, "expected_noise", "callable")
    g = torch.Generator().manual_seed(55)
    for n, d in ((9, 4), (30, 2)):
        G = torch.randn(n, d, generator=g, dtype=F64) * torch.linspace(0.5, 2.0, d, dtype=F64) + 0.3
        sigma2 = (G - G.mean(0)).pow(2).sum(1).mean().item()
        for B in (1, 3, n):
            for replacement in (True, False):
                expected = sigma2 / B * (1.0 if replacement else (n - B) / (n - 1))
                got = noise(G.clone(), B, replacement)
                expect_close(float(got), expected, rtol=1e-6, atol=1e-12,
                             what=f"expected_noise(G, B={B}, replacement={replacement}) for N = {n} per-example "
                                  "gradients (sigma^2 averages over all N, dividing by N)")


# ------------------------------------------------------------------------------------------ q6
def _per_example_gradients():
    """The per-example gradients the notebook builds in its set-up cell (least squares at w = 0)."""
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(500, 10, generator=gen, dtype=F64)
    w_star = torch.randn(10, generator=gen, dtype=F64)
    y = X @ w_star + 0.5 * torch.randn(500, generator=gen, dtype=F64)
    return -y[:, None] * X


def q6(ns):
    measured = require(ns, "noise_with_replacement", dict)
    G = _per_example_gradients()
    n = len(G)
    sigma2 = (G - G.mean(0)).pow(2).sum(1).mean().item()
    sizes = (1, 10, 100, 250)
    expect(sorted(measured) == list(sizes), f"noise_with_replacement should have the keys {list(sizes)} "
                                            f"(the batch sizes), got {sorted(measured)}")
    for B in sizes:
        value = float(measured[B])
        theory = sigma2 / B
        if B > 1 and abs(value - theory * (n - B) / (n - 1)) < abs(value - theory) and abs(value / theory - 1) > 0.15:
            raise CheckFailed(f"at B = {B} your measurement {value:.4g} matches sampling WITHOUT replacement: draw "
                              "the indices of every batch independently with torch.randint")
        expect(abs(value / theory - 1) <= 0.15,
               f"at B = {B} the measured noise is {value:.4g}, but E|g_B - grad L|^2 should be within 15% of "
               f"{theory:.4g}; use 4000 batches, squared norms of (batch mean - full mean), averaged over batches")


# ------------------------------------------------------------------------------------------ q7
def _rosenbrock_final_loss(lr, steps=500):
    x, y = 1.001, 1.001
    for _ in range(steps):
        gx, gy = -2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)
        x, y = x - lr * gx, y - lr * gy
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def q7(ns):
    L = require(ns, "rosen_L", (float, int, np.floating))
    final = require(ns, "rosen_final_loss", dict)
    L_ref = 501 + math.sqrt(301**2 + 400**2)  # largest eigenvalue of [[802, -400], [-400, 200]]
    expect_close(float(L), L_ref, rtol=1e-6,
                 what="rosen_L (the largest eigenvalue of Rosenbrock's Hessian at its minimum (1, 1))")
    expect(sorted(final) == [0.95, 1.05], f"rosen_final_loss should have the keys 0.95 and 1.05, got {sorted(final)}")
    for factor in (0.95, 1.05):
        expect_close(float(final[factor]), _rosenbrock_final_loss(factor * 2 / L_ref), rtol=1e-3,
                     what=f"f after 500 steps from (1.001, 1.001) at lr = {factor} x 2/L")


QUESTIONS = [
    Question("q1", 2, q1, "gradient descent as a function"),
    Question("q2", 2, q2, "the stability limit and the best fixed learning rate"),
    Question("q3", 3, q3, "the best learning rate, measured"),
    Question("q4", 3, q4, "minibatch SGD with reshuffling"),
    Question("q5", 2, q5, "the noise of a minibatch gradient, exactly"),
    Question("q6", 2, q6, "sampling with replacement, measured"),
    Question("q7", 2, q7, "stability at Rosenbrock's minimum"),
]
