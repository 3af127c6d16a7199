"""The checks of chapter 2's exercises: a right answer scores full marks, a plausible wrong one 0."""
from functools import partial
import math

import numpy as np
import torch

from optlib import grad
from optlib.grading import load_questions

import question_scoring

CHAPTER = "02_gradients"
F64 = torch.float64

assert_full = partial(question_scoring.assert_full, CHAPTER)
assert_zero = partial(question_scoring.assert_zero, CHAPTER)


def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == [f"q{k}" for k in range(1, 8)]


# q1: finite differences ------------------------------------------------------------------------
def fd_right(f, x, h=1e-5, method="central"):
    base = x.detach().reshape(-1)
    steps = torch.eye(base.numel(), dtype=x.dtype) * h  # vectorized set of shifted points
    if method == "forward":
        f0 = float(f(x))
        values = [(float(f((base + e).view_as(x))) - f0) / h for e in steps]
    else:
        values = [(float(f((base + e).view_as(x))) - float(f((base - e).view_as(x)))) / (2 * h) for e in steps]
    return torch.tensor(values, dtype=x.dtype).view_as(x)


def fd_forward_twice(f, x, h=1e-5, method="central"):  # recomputes f(x) for every coordinate
    if method == "central":
        return fd_right(f, x, h, method)
    base, out = x.reshape(-1), []
    for i in range(base.numel()):
        e = torch.zeros_like(base)
        e[i] = h
        out.append((float(f((base + e).view_as(x))) - float(f(x))) / h)
    return torch.tensor(out, dtype=x.dtype).view_as(x)


def fd_central_by_h(f, x, h=1e-5, method="central"):
    g = fd_right(f, x, h, method)
    return 2 * g if method == "central" else g  # divides by h instead of 2h


def fd_in_place(f, x, h=1e-5, method="central"):
    flat, out = x.view(-1), torch.zeros(x.numel(), dtype=x.dtype)
    f0 = float(f(x))
    for i in range(flat.numel()):
        flat[i] += h  # shifts the caller's x and shifts it back: x + h - h is not always x
        f_plus = float(f(x))
        if method == "forward":
            out[i] = (f_plus - f0) / h
        else:
            flat[i] -= 2 * h
            out[i] = (f_plus - float(f(x))) / (2 * h)
            flat[i] += h
        if method == "forward":
            flat[i] -= h
    return out.view_as(x)


def test_q1():
    assert_full({"numerical_gradient": fd_right}, "q1")
    assert_full({"numerical_gradient": lambda f, x, h=1e-5, method="central":
                 grad.numerical_gradient(f, x, h=h, method=method)}, "q1")
    assert "evaluated f" in assert_zero({"numerical_gradient": fd_forward_twice}, "q1").message
    assert_zero({"numerical_gradient": fd_central_by_h}, "q1")
    assert_zero({"numerical_gradient": lambda f, x, h=1e-5, method="central": fd_right(f, x, h, "central")}, "q1")
    assert "unchanged" in assert_zero({"numerical_gradient": fd_in_place}, "q1").message


# q2: the best step -----------------------------------------------------------------------------
def measured(dtype=F64, worst=False):
    hs = np.logspace(-12, 0, 97)
    out = {}
    for method in ("forward", "central"):
        e = grad.finite_difference_errors(torch.exp, 0.0, 1.0, hs, method=method, dtype=dtype)
        out[method] = float(hs[int(e.argmax() if worst else e.argmin())])
    return out


def test_q2():
    right = {"best_step_forward": lambda f0, f2, eps: (2 * eps * abs(f0 / f2)) ** 0.5,
             "best_step_central": lambda f0, f3, eps: math.exp(math.log(3 * eps * abs(f0 / f3)) / 3),
             "measured_best_h": measured()}
    assert_full(right, "q2")
    assert_zero({**right, "best_step_forward": lambda f0, f2, eps: math.sqrt(eps)}, "q2")  # the rule of thumb
    assert_zero({**right, "best_step_central": lambda f0, f3, eps: (6 * eps * abs(f0 / f3)) ** (1 / 3)}, "q2")
    assert_zero({**right, "best_step_central": lambda f0, f3, eps: (3 * eps * f0 / f3) ** (1 / 3)}, "q2")  # signs
    assert "far from" in assert_zero({**right, "measured_best_h": measured(torch.float32)}, "q2").message
    assert_zero({**right, "measured_best_h": measured(worst=True)}, "q2")


# q3: squared hinge gradient --------------------------------------------------------------------
def squared_hinge_right(W, X, y, reg):
    n, C = X.shape[0], W.shape[0]
    loss, G = reg * (W * W).sum(), 2 * reg * W.clone()
    for i in range(n):
        s = W @ X[i]
        for j in range(C):
            if j == y[i]:
                continue
            m = s[j] - s[y[i]] + 1
            if m > 0:
                loss = loss + m * m / n
                G[j] += 2 * m * X[i] / n
                G[y[i]] -= 2 * m * X[i] / n
    return loss, G


def squared_hinge_no_factor_two(W, X, y, reg):
    loss, G = squared_hinge_right(W, X, y, reg)
    return loss, (G - 2 * reg * W) / 2 + 2 * reg * W


def squared_hinge_indicator(W, X, y, reg):  # the plain hinge gradient: indicator instead of 2 * margin
    s = X @ W.T
    m = (s - s.gather(1, y[:, None]) + 1).clamp(min=0).scatter(1, y[:, None], 0.0)
    active = (m > 0).to(X.dtype)
    active.scatter_(1, y[:, None], -active.sum(1, keepdim=True))
    return (m * m).sum(1).mean() + reg * (W * W).sum(), active.T @ X / len(X) + 2 * reg * W


def test_q3():
    assert_full({"squared_hinge_loss_and_grad": squared_hinge_right}, "q3")
    assert_zero({"squared_hinge_loss_and_grad": squared_hinge_no_factor_two}, "q3")
    assert_zero({"squared_hinge_loss_and_grad": squared_hinge_indicator}, "q3")
    no_reg = lambda W, X, y, reg: squared_hinge_right(W, X, y, 0.0)  # noqa: E731
    assert_zero({"squared_hinge_loss_and_grad": no_reg}, "q3")


# q4: softmax input gradient --------------------------------------------------------------------
def input_grad_right(W, X, y):
    s = X @ W.T
    P = torch.exp(s - torch.logsumexp(s, dim=1, keepdim=True))
    P[torch.arange(len(y)), y] -= 1
    return P @ W / len(y)


def test_q4():
    assert_full({"softmax_input_grad": input_grad_right}, "q4")
    assert_zero({"softmax_input_grad": lambda W, X, y: input_grad_right(W, X, y) * len(y)}, "q4")  # sum, not mean
    wrong_sign = lambda W, X, y: -input_grad_right(W, X, y)  # noqa: E731
    assert_zero({"softmax_input_grad": wrong_sign}, "q4")
    assert "shape" in assert_zero({"softmax_input_grad": lambda W, X, y: input_grad_right(W, X, y).T}, "q4").message


# q5: the gradient check ------------------------------------------------------------------------
def max_rel_right(f, x, analytic, h=1e-5):
    return grad.gradient_check(f, x, analytic, h=h).max_rel_error


def max_rel_by_analytic(f, x, analytic, h=1e-5):
    n = grad.numerical_gradient(f, x, h=h)
    return ((analytic - n).abs() / analytic.abs().clamp(min=1e-300)).nan_to_num(0.0).max().item()


def max_rel_nan(f, x, analytic, h=1e-5):
    n = grad.numerical_gradient(f, x, h=h)
    return ((analytic - n).abs() / torch.maximum(analytic.abs(), n.abs())).max().item()


def max_rel_forward(f, x, analytic, h=1e-5):
    numerical = grad.numerical_gradient(f, x, h=h, method="forward")  # forward, not central, differences
    return grad.relative_error(analytic, numerical).max().item()


def test_q5():
    assert_full({"max_relative_error": max_rel_right}, "q5")
    assert_zero({"max_relative_error": max_rel_by_analytic}, "q5")
    assert "NaN" in assert_zero({"max_relative_error": max_rel_nan}, "q5").message
    assert "CORRECT" in assert_zero({"max_relative_error": max_rel_forward}, "q5").message


# q6: sampled checks ----------------------------------------------------------------------------
def simulate(with_replacement=False, count=4000):
    g = torch.Generator().manual_seed(9)
    bias = torch.arange(10) * 65 + 64
    misses = 0
    for _ in range(count):
        sample = (torch.randint(0, 650, (20,), generator=g) if with_replacement
                  else torch.randperm(650, generator=g)[:20])
        misses += int(not torch.isin(sample, bias).any())
    return misses / count


def checks_right(d, bad, target):
    k, p = 0, 1.0
    while p > target:  # the product form of comb(d - bad, k) / comb(d, k)
        p *= (d - bad - k) / (d - k)
        k += 1
    return k


def test_q6():
    right = {"miss_probability": lambda d, bad, k: math.prod((d - bad - i) / (d - i) for i in range(k)),
             "checks_needed": checks_right, "measured_miss": simulate()}
    assert_full(right, "q6")
    assert_zero({**right, "miss_probability": lambda d, bad, k: (1 - bad / d) ** k}, "q6")  # with replacement
    assert "SMALLEST" in assert_zero({**right, "checks_needed": lambda d, bad, t: checks_right(d, bad, t) + 1}, "q6").message
    assert_zero({**right, "measured_miss": 1 - simulate()}, "q6")


# q7: Hessian-vector products -------------------------------------------------------------------
def hvp_right(f, x, v):
    return torch.autograd.functional.hvp(f, x, v)[1]


def hvp_gradient_times_v(f, x, v):
    z = x.clone().requires_grad_(True)
    return torch.autograd.grad(f(z), z)[0].detach() * v


def hvp_in_place(f, x, v):
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    return torch.autograd.grad((g * v).sum(), x)[0].detach()


def test_q7():
    assert_full({"hvp": hvp_right}, "q7")
    assert_zero({"hvp": hvp_gradient_times_v}, "q7")
    assert "copy" in assert_zero({"hvp": hvp_in_place}, "q7").message
    attached = lambda f, x, v: hvp_right(f, x, v) + 0 * x.clone().requires_grad_(True)  # noqa: E731
    assert "detach" in assert_zero({"hvp": attached}, "q7").message
