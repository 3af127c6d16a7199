"""Checks for solutions/01_random_search.ipynb (chapter "Optimization as search").

Every reference is computed here, on inputs the learner has not seen: the hinge loss and its
gradient at 0 from ``optlib.losses``, the two searches from ``optlib.search`` with the same
random draws, record counts and alignment from closed forms, the success probability of a random
step from the exact distribution of a random direction's cosine.
"""
from __future__ import annotations

import math
from statistics import NormalDist

import torch

from optlib import losses, search
from optlib.grading import CheckFailed, Question, expect, expect_close, require

_F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _classification_problem(seed: int, n: int = 7, D: int = 5, C: int = 4, scale: float = 1.0):
    g = _gen(seed)
    X = torch.randn(n, D, generator=g, dtype=_F64)
    y = torch.randint(0, C, (n,), generator=g)
    W = scale * torch.randn(C, D, generator=g, dtype=_F64)
    return W, X, y


def _as_float(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{what} should be a single number, got a tensor of shape {tuple(value.shape)}")
        return float(value.item())
    try:
        return float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} should be a number, got {type(value).__name__}") from None


# q1 -------------------------------------------------------------------------------------------
def q1(ns):
    hinge_loss = require(ns, "hinge_loss", "callable")
    for seed, scale, reg in [(101, 1.0, 0.1), (102, 0.05, 0.0), (103, 3.0, 0.01)]:
        W, X, y = _classification_problem(seed, scale=scale)
        W_before = W.clone()
        expected = losses.svm_loss(X @ W.T, y) + reg * (W * W).sum()
        got = hinge_loss(W, X, y, reg)
        expect(isinstance(got, torch.Tensor), f"hinge_loss should return a torch tensor, got {type(got).__name__}")
        expect(torch.equal(W, W_before), "hinge_loss must not modify W")
        expect_close(got.reshape(()) if got.numel() == 1 else got, expected, rtol=1e-10, atol=1e-12,
                     what=f"hinge_loss on a random problem (n = 7, C = 4, reg = {reg})")


# q2 -------------------------------------------------------------------------------------------
def q2(ns):
    grad_at_zero = require(ns, "grad_at_zero", "callable")
    for seed, (n, D, C) in [(201, (6, 4, 3)), (202, (9, 3, 5)), (203, (1, 2, 2))]:
        _, X, y = _classification_problem(seed, n=n, D=D, C=C)
        if C == 5:
            y = y % 3  # classes 3 and 4 never occur: num_classes, not y.max() + 1, fixes C
        expected = losses.svm_loss_and_grad(torch.zeros(C, D, dtype=_F64), X, y, 0.0)[1]
        got = grad_at_zero(X, y, C)
        expect(isinstance(got, torch.Tensor), f"grad_at_zero should return a torch tensor, got {type(got).__name__}")
        expect(tuple(got.shape) == (C, D), f"grad_at_zero(X, y, {C}) with X of shape {(n, D)} should have shape "
                                           f"{(C, D)} (one row per class), got {tuple(got.shape)}")
        expect_close(got, expected, rtol=1e-10, atol=1e-12,
                     what=f"grad_at_zero on a random problem (n = {n}, D = {D}, C = {C})")


# q3 -------------------------------------------------------------------------------------------
def _quadratic(seed: int, shape):
    target = torch.randn(shape, generator=_gen(seed), dtype=_F64)
    return lambda W: ((W - 0.01 * target) ** 2).sum()


def q3(ns):
    random_search = require(ns, "random_search", "callable")
    for seed, shape, trials, scale in [(301, (3, 4), 50, 0.01), (302, (5,), 200, 0.003), (303, (2, 2), 1, 1.0)]:
        loss_fn = _quadratic(seed, shape)
        ref = search.random_search(loss_fn, shape, trials=trials, scale=scale, dtype=_F64, generator=_gen(seed + 7))
        out = random_search(loss_fn, shape, trials, scale, _gen(seed + 7))
        expect(isinstance(out, tuple) and len(out) == 2, "random_search should return a tuple (best, best_loss)")
        best, best_loss = out
        expect(isinstance(best, torch.Tensor) and tuple(best.shape) == tuple(shape),
               f"best should be a tensor of shape {tuple(shape)}")
        expect_close(_as_float(best_loss, "best_loss"), ref.best_loss, rtol=1e-12, atol=1e-15,
                     what=f"best_loss after {trials} trials (draw the candidates exactly as specified)")
        expect_close(best, ref.best, rtol=1e-12, atol=1e-15, what="best (the candidate of lowest loss)")


# q4 -------------------------------------------------------------------------------------------
def q4(ns):
    expected_records = require(ns, "expected_records", "callable")
    log10_trials = require(ns, "log10_trials_for_cosine", "callable")
    for N in (1, 2, 7, 1000, 12345):
        expect_close(_as_float(expected_records(N), f"expected_records({N})"), sum(1 / k for k in range(1, N + 1)),
                     rtol=1e-9, what=f"expected_records({N})")
    for c, d in [(0.5, 650), (0.1, 30730), (0.3, 100), (1.0, 2)]:
        expect_close(_as_float(log10_trials(c, d), "log10_trials_for_cosine"), d * c * c / (2 * math.log(10)),
                     rtol=1e-9, what=f"log10_trials_for_cosine({c}, {d})")


# q5 -------------------------------------------------------------------------------------------
def q5(ns):
    random_local_search = require(ns, "random_local_search", "callable")
    for seed, shape, trials, step in [(501, (4, 3), 80, 0.05), (502, (6,), 150, 0.3), (503, (2,), 5, 10.0)]:
        loss_fn = _quadratic(seed, shape)
        start = torch.randn(shape, generator=_gen(seed + 1), dtype=_F64)
        start_copy = start.clone()
        ref = search.random_local_search(loss_fn, start, trials=trials, step_size=step, generator=_gen(seed + 9))
        out = random_local_search(loss_fn, start, trials, step, _gen(seed + 9))
        expect(torch.equal(start, start_copy), "random_local_search must not modify `start` (work on a copy)")
        expect(isinstance(out, tuple) and len(out) == 3,
               "random_local_search should return a tuple (best, best_loss, accepted)")
        best, best_loss, accepted = out
        expect(isinstance(best, torch.Tensor) and tuple(best.shape) == tuple(shape),
               f"best should be a tensor of shape {tuple(shape)}")
        expect(int(accepted) == ref.accepted,
               f"accepted = {int(accepted)} after {trials} proposals, expected {ref.accepted}: propose from the "
               f"current point, draw the noise exactly as specified, and accept only a strictly lower loss")
        expect_close(_as_float(best_loss, "best_loss"), ref.best_loss, rtol=1e-12, atol=1e-15, what="best_loss")
        expect_close(best, ref.best, rtol=1e-12, atol=1e-15, what="best")


# q6 -------------------------------------------------------------------------------------------
_STEPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)


def _sweep_reference() -> dict:
    from optlib import data

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 1500 small evaluations: threading only adds overhead
    try:
        digits = data.load_digits(bias_column=True, dtype=_F64)
        X, y = digits.X_train, digits.y_train
        W0 = 1e-3 * torch.randn(10, X.shape[1], generator=_gen(0), dtype=_F64)

        def loss(W):
            return losses.svm_loss(X @ W.T, y) + 1e-3 * (W * W).sum()
        return {s: search.random_local_search(loss, W0, trials=300, step_size=s, generator=_gen(6)).best_loss
                for s in _STEPS}
    finally:
        torch.set_num_threads(threads)


def q6(ns):
    final_losses = require(ns, "final_losses", dict)
    best_step = _as_float(require(ns, "best_step"), "best_step")
    keys = sorted(float(k) for k in final_losses)
    expect(len(keys) == len(_STEPS) and all(math.isclose(k, s) for k, s in zip(keys, _STEPS)),
           f"final_losses should have exactly the step sizes {list(_STEPS)} as keys, got {keys}")
    values = {float(k): _as_float(v, f"final_losses[{k}]") for k, v in final_losses.items()}
    smallest = min(values, key=values.get)
    expect(math.isclose(best_step, smallest),
           f"best_step = {best_step:g} is not the step size with the lowest final loss in your final_losses")
    reference = _sweep_reference()
    for s in _STEPS:
        got = next(v for k, v in values.items() if math.isclose(k, s))
        expect(abs(got - reference[s]) <= 1e-8 * abs(reference[s]),
               f"final_losses[{s:g}] is not the final loss of the specified run: use the library's "
               f"search.random_local_search on the training loss, from W0, with trials=300 and a NEW "
               f"torch.Generator().manual_seed(6) for every step size")


# q7 -------------------------------------------------------------------------------------------
def _exact_success(sigma: float, d: int, r: float) -> float:
    """P(<x, e> < -sigma/2) for |x| = r and e uniform on the unit sphere in d >= 3 dimensions."""
    a = sigma / (2 * r)
    t = torch.linspace(-1, 1, 400001, dtype=_F64)[1:-1]
    density = (1 - t * t) ** ((d - 3) / 2)
    return (density[t < -a].sum() / density.sum()).item()


def q7(ns):
    success_probability = require(ns, "success_probability", "callable")
    step_for_rate = require(ns, "step_for_rate", "callable")
    phi = NormalDist()
    for sigma, d, r in [(0.05, 512, 1.0), (0.2, 128, 0.5), (1.0, 10, 3.0), (0.01, 4096, 0.2)]:
        expect_close(_as_float(success_probability(sigma, d, r), "success_probability"),
                     phi.cdf(-sigma * math.sqrt(d) / (2 * r)), rtol=1e-7, atol=1e-12,
                     what=f"success_probability({sigma}, {d}, {r})")
    for p, d, r in [(0.2, 512, 1.0), (0.05, 100, 2.0), (0.4, 9, 0.3)]:
        expect_close(_as_float(step_for_rate(p, d, r), "step_for_rate"), -2 * r * phi.inv_cdf(p) / math.sqrt(d),
                     rtol=1e-7, what=f"step_for_rate({p}, {d}, {r})")
    measured = _as_float(require(ns, "measured_success"), "measured_success")
    exact = _exact_success(0.1, 256, 1.0)
    # 20000 directions: standard error about 0.003; allow a little over four of them
    expect(abs(measured - exact) < 0.015,
           f"measured_success = {measured:.4f} is too far from the true probability for d = 256, step 0.1, "
           f"distance 1: use 20000 random UNIT directions and count the steps with f(x + 0.1 e) < f(x)")


QUESTIONS = [
    Question("q1", 2, q1, "the multiclass hinge loss"),
    Question("q2", 2, q2, "the gradient of the hinge loss at W = 0"),
    Question("q3", 2, q3, "random search"),
    Question("q4", 2, q4, "what best-of-N buys"),
    Question("q5", 2, q5, "random local search"),
    Question("q6", 2, q6, "the step size of random local search"),
    Question("q7", 3, q7, "a random step in d dimensions"),
]
