"""The checks of solutions/13_natural_gradient.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from optlib.grading import load_questions

import question_scoring

CHAPTER = "13_natural_gradient"
F64 = torch.float64

_full = partial(question_scoring.assert_full, CHAPTER)
_zero = partial(question_scoring.assert_zero, CHAPTER)


# ---------------------------------------------------------------- correct answers, written independently

def _logistic_fisher(X, w):
    p = torch.sigmoid(X @ w)
    return torch.einsum("n,ni,nj->ij", p * (1 - p), X, X) / X.shape[0]


def q1_ns():
    return {"logistic_fisher": _logistic_fisher, "fisher_hessian_gap": 3e-16}


def _empirical(X, y, W):
    rows = []
    for x, label in zip(X, y):
        r = torch.softmax(W @ x, 0)
        r[label] -= 1
        rows.append(torch.outer(r, x).reshape(-1))
    G = torch.stack(rows)
    return G.T @ G / len(rows)


def q2_ns():
    return {"empirical_fisher": _empirical, "empirical_rank": 6}


def q3_ns():
    return {"fisher_rank_bound": lambda B, C, d: min(B * C - B, d), "empirical_rank_bound": lambda B, d: min(B, d),
            "measured_ranks": (32, 8)}


def _kron_solve(A, G, V):
    return torch.linalg.inv(G) @ V @ torch.linalg.inv(A)


def q4_ns():
    return {"kron_solve": _kron_solve, "inverse_size_ratio": (4097 * 4096) ** 2 / (4097**2 + 4096**2)}


def _factors(a, g_out):
    a_bar = F.pad(a, (0, 1), value=1.0)
    return torch.einsum("ni,nj->ij", a_bar, a_bar) / len(a), torch.einsum("ni,nj->ij", g_out, g_out) / len(a)


def _batch_gap():
    gen = torch.Generator().manual_seed(5)
    a, g_out = torch.randn(32, 3, generator=gen, dtype=F64), torch.randn(32, 2, generator=gen, dtype=F64)
    A, G = _factors(a, g_out)
    a_bar = F.pad(a, (0, 1), value=1.0)
    exact = torch.stack([torch.kron(torch.outer(x, x), torch.outer(v, v)) for x, v in zip(a_bar, g_out)]).mean(0)
    return ((torch.kron(A, G) - exact).norm() / exact.norm()).item()


def q5_ns():
    return {"kfac_layer_factors": _factors, "one_example_gap": 0.0, "batch_gap": _batch_gap()}


def _ng_path(X, y, w0, steps, lr):
    path = [w0]
    for _ in range(steps):
        w = path[-1]
        p = torch.sigmoid(X @ w)
        fisher = (X.T * (p * (1 - p))) @ X / len(y)
        path.append(w - lr * torch.linalg.lstsq(fisher, X.T @ (p - y) / len(y)).solution)
    return torch.stack(path)


def _gd_gap():
    gen = torch.Generator().manual_seed(6)
    X = torch.randn(100, 2, generator=gen, dtype=F64) * torch.linspace(0.3, 2.0, 2, dtype=F64)
    y = torch.bernoulli(torch.sigmoid(X @ torch.randn(2, generator=gen, dtype=F64)), generator=gen)
    A = torch.tensor([[1.0, 2.0], [0.0, 0.5]], dtype=F64)
    theta, phi = torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64)
    gap = 0.0
    for _ in range(20):
        theta = theta - 0.5 * X.T @ (torch.sigmoid(X @ theta) - y) / 100
        phi = phi - 0.5 * (X @ A).T @ (torch.sigmoid(X @ A @ phi) - y) / 100
        gap = max(gap, (theta - A @ phi).norm().item())
    return gap


def q6_ns():
    return {"natural_gradient_path": _ng_path, "gd_gap": _gd_gap()}


def _kfac_numbers(sizes):
    return 2 * sum((n_in + 1) ** 2 + n_out**2 for n_in, n_out in zip(sizes, sizes[1:]))


def _adam_numbers(sizes):
    return 2 * sum((n_in + 1) * n_out for n_in, n_out in zip(sizes, sizes[1:]))


def q7_ns():
    return {"kfac_state_numbers": _kfac_numbers, "adam_state_numbers": _adam_numbers,
            "square_layer_ratio": _kfac_numbers([4096, 4096]) / _adam_numbers([4096, 4096])}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6", "q7"]


def test_q1():
    _full(q1_ns(), "q1")
    summed = _zero({**q1_ns(), "logistic_fisher": lambda X, w: _logistic_fisher(X, w) * X.shape[0]}, "q1")
    assert "mean" in summed.message
    _zero({**q1_ns(), "logistic_fisher": lambda X, w: X.T @ (X * torch.sigmoid(X @ w)[:, None]) / len(X)}, "q1")
    _zero({**q1_ns(), "logistic_fisher": lambda X, w: X.T @ X / len(X)}, "q1")  # Gauss-Newton of least squares

    def in_place(X, w):
        w.mul_(1.0)
        X.mul_(2.0)
        return _logistic_fisher(X, w)

    _zero({**q1_ns(), "logistic_fisher": in_place}, "q1")
    _zero({**q1_ns(), "fisher_hessian_gap": 0.3}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "fisher_hessian_gap"}, "q1")


def test_q2():
    _full(q2_ns(), "q2")
    summed = _zero({**q2_ns(), "empirical_fisher": lambda X, y, W: _empirical(X, y, W) * len(X)}, "q2")
    assert "sum" in summed.message

    def no_label(X, y, W):
        G = torch.einsum("nc,nd->ncd", torch.softmax(X @ W.T, 1), X).reshape(len(X), -1)
        return G.T @ G / len(X)

    assert "one-hot" in _zero({**q2_ns(), "empirical_fisher": no_label}, "q2").message

    def centred(X, y, W):
        rows = torch.stack([(torch.softmax(W @ x, 0) - F.one_hot(t, W.shape[0])).outer(x).reshape(-1)
                            for x, t in zip(X, y)])
        rows = rows - rows.mean(0)
        return rows.T @ rows / len(X)

    _zero({**q2_ns(), "empirical_fisher": centred}, "q2")  # the covariance, not the second moment

    def column_order(X, y, W):
        rows = torch.stack([(torch.softmax(W @ x, 0) - F.one_hot(t, W.shape[0])).outer(x).T.reshape(-1)
                            for x, t in zip(X, y)])
        return rows.T @ rows / len(X)

    _zero({**q2_ns(), "empirical_fisher": column_order}, "q2")  # flattened column by column
    _zero({**q2_ns(), "empirical_rank": 12}, "q2")
    _zero({**q2_ns(), "empirical_rank": 8}, "q2")  # the true Fisher's rank


def test_q3():
    _full(q3_ns(), "q3")
    _zero({**q3_ns(), "fisher_rank_bound": lambda B, C, d: B * (C - 1)}, "q3")  # forgets the cap at d
    _zero({**q3_ns(), "fisher_rank_bound": lambda B, C, d: min(B * C, d)}, "q3")  # forgets H 1 = 0
    _zero({**q3_ns(), "empirical_rank_bound": lambda B, d: min(B * 4, d)}, "q3")
    _zero({**q3_ns(), "measured_ranks": (8, 32)}, "q3")
    _zero({**q3_ns(), "measured_ranks": (40, 8)}, "q3")
    _zero({**q3_ns(), "measured_ranks": 32}, "q3")


def test_q4():
    _full(q4_ns(), "q4")
    _zero({**q4_ns(), "kron_solve": lambda A, G, V: torch.linalg.solve(G, V)}, "q4")  # forgets A^-1
    _zero({**q4_ns(), "kron_solve": lambda A, G, V: G @ V @ A}, "q4")  # multiplies instead of solving
    _zero({**q4_ns(), "kron_solve": lambda A, G, V: torch.linalg.solve(torch.kron(A, G), V.reshape(-1))
           .reshape(V.shape)}, "q4")  # vec stacking rows with A kron G
    _zero({**q4_ns(), "inverse_size_ratio": (4096 * 4096) ** 2 / (2 * 4096**2) * 0.5}, "q4")
    _zero({**q4_ns(), "inverse_size_ratio": 4097 * 4096}, "q4")  # entries of W, not of the Fisher block


def test_q5():
    _full(q5_ns(), "q5")

    def bias_first(a, g_out):
        a_bar = F.pad(a, (1, 0), value=1.0)
        return a_bar.T @ a_bar / len(a), g_out.T @ g_out / len(a)

    assert "last" in _zero({**q5_ns(), "kfac_layer_factors": bias_first}, "q5").message
    _zero({**q5_ns(), "kfac_layer_factors": lambda a, g: (a.T @ a / len(a), g.T @ g / len(a))}, "q5")  # no bias
    _zero({**q5_ns(), "kfac_layer_factors": lambda a, g: tuple(M * len(a) for M in _factors(a, g))}, "q5")
    _zero({**q5_ns(), "kfac_layer_factors": lambda a, g: tuple(M * len(a) / (len(a) - 1) for M in _factors(a, g))},
          "q5")
    _zero({**q5_ns(), "kfac_layer_factors": lambda a, g: _factors(a, g)[0]}, "q5")  # not a pair
    _zero({**q5_ns(), "one_example_gap": 0.5}, "q5")
    _zero({**q5_ns(), "batch_gap": 0.0}, "q5")


def test_q6():
    _full(q6_ns(), "q6")

    def gradient_descent(X, y, w0, steps, lr):
        path = [w0]
        for _ in range(steps):
            path.append(path[-1] - lr * X.T @ (torch.sigmoid(X @ path[-1]) - y) / len(y))
        return torch.stack(path)

    _zero({**q6_ns(), "natural_gradient_path": gradient_descent}, "q6")
    _zero({**q6_ns(), "natural_gradient_path": lambda X, y, w0, s, lr: _ng_path(X, y, w0, s, lr)[1:]}, "q6")

    def summed_fisher(X, y, w0, steps, lr):
        path = [w0]
        for _ in range(steps):
            w = path[-1]
            p = torch.sigmoid(X @ w)
            path.append(w - lr * torch.linalg.solve((X.T * (p * (1 - p))) @ X, X.T @ (p - y) / len(y)))
        return torch.stack(path)

    _zero({**q6_ns(), "natural_gradient_path": summed_fisher}, "q6")

    def damped(X, y, w0, steps, lr):
        path = [w0]
        for _ in range(steps):
            w = path[-1]
            p = torch.sigmoid(X @ w)
            fisher = (X.T * (p * (1 - p))) @ X / len(y) + 0.1 * torch.eye(len(w), dtype=X.dtype)
            path.append(w - lr * torch.linalg.solve(fisher, X.T @ (p - y) / len(y)))
        return torch.stack(path)

    _zero({**q6_ns(), "natural_gradient_path": damped}, "q6")  # damping breaks the invariance
    _zero({**q6_ns(), "gd_gap": 0.0}, "q6")


def test_q7():
    _full(q7_ns(), "q7")
    no_inverses = _zero({**q7_ns(), "kfac_state_numbers": lambda s: _kfac_numbers(s) // 2}, "q7")
    assert "inverses" in no_inverses.message

    def no_bias(sizes):
        return 2 * sum(n_in**2 + n_out**2 for n_in, n_out in zip(sizes, sizes[1:]))

    assert "bias" in _zero({**q7_ns(), "kfac_state_numbers": no_bias}, "q7").message
    _zero({**q7_ns(), "adam_state_numbers": lambda s: _adam_numbers(s) // 2}, "q7")  # one moment only
    _zero({**q7_ns(), "square_layer_ratio": 1.0}, "q7")
