"""The checks of chapter 1's exercises: a right answer scores full marks, a plausible wrong one 0."""
from functools import partial
import math
from statistics import NormalDist

import pytest
import torch

from optlib import data, losses, search
from optlib.grading import load_questions

import question_scoring

CHAPTER = "01_random_search"
F64 = torch.float64

assert_full = partial(question_scoring.assert_full, CHAPTER)
assert_zero = partial(question_scoring.assert_zero, CHAPTER)


def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == [f"q{k}" for k in range(1, 8)]


# q1: the hinge loss ----------------------------------------------------------------------------
def hinge_right(W, X, y, reg):
    n, C = len(y), W.shape[0]
    total = 0.0
    for i in range(n):  # a deliberately different (loop) implementation
        s = W @ X[i]
        total = total + sum(torch.clamp(s[j] - s[y[i]] + 1, min=0) for j in range(C) if j != y[i])
    return total / n + reg * (W ** 2).sum()


def hinge_counts_true_class(W, X, y, reg):
    s = X @ W.T
    return (s - s.gather(1, y[:, None]) + 1).clamp(min=0).sum(1).mean() + reg * (W * W).sum()


def test_q1():
    assert_full({"hinge_loss": hinge_right}, "q1")
    assert_zero({"hinge_loss": hinge_counts_true_class}, "q1")
    assert_zero({"hinge_loss": lambda W, X, y, reg: hinge_right(W, X, y, 0.0)}, "q1")  # forgot reg
    assert "not defined" in assert_zero({}, "q1").message


# q2: the gradient at 0 -------------------------------------------------------------------------
def grad_zero_right(X, y, num_classes):
    n, D = X.shape
    G = torch.zeros(num_classes, D, dtype=X.dtype)
    for i in range(n):
        for j in range(num_classes):
            if j != y[i]:
                G[j] += X[i] / n
                G[y[i]] -= X[i] / n
    return G


def grad_zero_wrong(X, y, num_classes):
    Y = torch.nn.functional.one_hot(y, num_classes).to(X.dtype)
    return (1 - (num_classes - 1) * Y).T @ X / len(X)  # forgets that the true class is not a term


def test_q2():
    assert_full({"grad_at_zero": grad_zero_right}, "q2")
    assert_zero({"grad_at_zero": grad_zero_wrong}, "q2")
    inferred = lambda X, y, num_classes: grad_zero_right(X, y, int(y.max()) + 1)  # noqa: E731
    assert "shape" in assert_zero({"grad_at_zero": inferred}, "q2").message


# q3: random search -----------------------------------------------------------------------------
def random_search_right(loss_fn, shape, trials, scale, generator):
    candidates = [scale * torch.randn(shape, generator=generator, dtype=F64) for _ in range(trials)]
    values = [float(loss_fn(c)) for c in candidates]
    k = min(range(trials), key=lambda i: (values[i], i))
    return candidates[k], values[k]


def random_search_last(loss_fn, shape, trials, scale, generator):
    best, best_loss = None, math.inf
    for _ in range(trials):
        candidate = scale * torch.randn(shape, generator=generator, dtype=F64)
        best, best_loss = candidate, float(loss_fn(candidate))  # keeps the last, not the best
    return best, best_loss


def random_search_unscaled(loss_fn, shape, trials, scale, generator):
    return random_search_right(loss_fn, shape, trials, 1.0, generator)


def test_q3():
    assert_full({"random_search": random_search_right}, "q3")
    assert_zero({"random_search": random_search_last}, "q3")
    assert_zero({"random_search": random_search_unscaled}, "q3")
    only_best = lambda *args: random_search_right(*args)[0]  # noqa: E731
    assert "tuple" in assert_zero({"random_search": only_best}, "q3").message


# q4: record counts and trials for a cosine -----------------------------------------------------
def test_q4():
    right = {"expected_records": lambda N: sum(1 / k for k in range(1, N + 1)),
             "log10_trials_for_cosine": lambda c, d: math.log10(math.exp(1)) * d * c * c / 2}
    assert_full(right, "q4")
    assert_zero({**right, "expected_records": lambda N: math.log(N)}, "q4")
    assert_zero({**right, "expected_records": lambda N: sum(1 / k for k in range(1, N))}, "q4")
    assert_zero({**right, "log10_trials_for_cosine": lambda c, d: d * c * c / 2}, "q4")  # ln, not log10


# q5: random local search -----------------------------------------------------------------------
def local_right(loss_fn, start, trials, step_size, generator):
    x, fx, moves = start.clone(), float(loss_fn(start)), 0
    for _ in range(trials):
        noise = torch.randn(start.shape, generator=generator, dtype=start.dtype)
        value = float(loss_fn(x + step_size * noise))
        if value < fx:
            x, fx, moves = x + step_size * noise, value, moves + 1
    return x, fx, moves


def local_from_start(loss_fn, start, trials, step_size, generator):
    x, fx, moves = start.clone(), float(loss_fn(start)), 0
    for _ in range(trials):
        proposal = start + step_size * torch.randn(start.shape, generator=generator, dtype=start.dtype)
        value = float(loss_fn(proposal))
        if value < fx:
            x, fx, moves = proposal, value, moves + 1  # proposes around start, not the current point
    return x, fx, moves


def local_in_place(loss_fn, start, trials, step_size, generator):
    fx, moves = float(loss_fn(start)), 0
    for _ in range(trials):
        noise = step_size * torch.randn(start.shape, generator=generator, dtype=start.dtype)
        start += noise
        value = float(loss_fn(start))
        if value < fx:
            fx, moves = value, moves + 1
        else:
            start -= noise
    return start, fx, moves


def test_q5():
    assert_full({"random_local_search": local_right}, "q5")
    assert_zero({"random_local_search": local_from_start}, "q5")
    assert "modify" in assert_zero({"random_local_search": local_in_place}, "q5").message


# q6: the step-size sweep -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def sweep():
    digits = data.load_digits(bias_column=True, dtype=F64)
    X, y = digits.X_train, digits.y_train
    W0 = 1e-3 * torch.randn(10, 65, generator=torch.Generator().manual_seed(0), dtype=F64)

    def loss(W):
        return losses.svm_loss(X @ W.T, y) + 1e-3 * (W * W).sum()

    def run(seed, trials=300):
        return {s: search.random_local_search(loss, W0, trials=trials, step_size=s,
                                              generator=torch.Generator().manual_seed(seed)).best_loss
                for s in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}
    return run


def test_q6(sweep):
    right = sweep(6)
    best = min(right, key=right.get)
    assert_full({"final_losses": right, "best_step": best}, "q6")
    assert_zero({"final_losses": right, "best_step": max(right, key=right.get)}, "q6")
    wrong = sweep(6, trials=200)
    assert_zero({"final_losses": wrong, "best_step": min(wrong, key=wrong.get)}, "q6")
    assert "keys" in assert_zero({"final_losses": {1e-2: 1.0}, "best_step": 1e-2}, "q6").message


# q7: the success probability of a random step --------------------------------------------------
def measure(d, sigma, unit=True, count=20000):
    E = torch.randn(count, d, generator=torch.Generator().manual_seed(3), dtype=F64)
    if unit:
        E = E / E.norm(dim=1, keepdim=True)
    x = torch.ones(d, dtype=F64) / math.sqrt(d)
    return ((x + sigma * E).norm(dim=1) < 1).double().mean().item()


def test_q7():
    phi = NormalDist()
    right = {"success_probability": lambda s, d, r: 0.5 * math.erfc(s * math.sqrt(d) / (2 * r) / math.sqrt(2)),
             "step_for_rate": lambda p, d, r: 2 * r * phi.inv_cdf(1 - p) / math.sqrt(d),
             "measured_success": measure(256, 0.1)}
    assert_full(right, "q7")
    assert_zero({**right, "success_probability": lambda s, d, r: phi.cdf(-s * math.sqrt(d) / 2)}, "q7")  # no r
    assert_zero({**right, "step_for_rate": lambda p, d, r: -r * phi.inv_cdf(p) / math.sqrt(d)}, "q7")
    assert "UNIT" in assert_zero({**right, "measured_success": measure(256, 0.1, unit=False)}, "q7").message
