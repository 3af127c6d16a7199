"""Checks for solutions/13_natural_gradient.ipynb: the Fisher of logistic regression, the empirical Fisher from
per-example gradients, the rank of a minibatch Fisher, the Kronecker-product inverse, K-FAC's factors of a
linear layer, the natural gradient's invariance to a change of coordinates, and the memory of K-FAC and Adam.

Every reference is computed here from closed forms or optlib (``optlib.optim.natural``); the learner's
functions are called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import torch

from optlib.grading import (CheckFailed, Question, as_number, expect, expect_close, random_spd, require,
                            require_number, require_tensor)
from optlib.optim.natural import fisher_matrix, gradient_factor, input_factor

F64 = torch.float64


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------- q1
def _logistic_fisher(X: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(X @ w)
    return X.T @ (X * (p * (1 - p))[:, None]) / len(X)


def q1(ns):
    fisher = require(ns, "logistic_fisher", "callable")
    gen = torch.Generator().manual_seed(1301)
    for n, d in ((30, 2), (50, 4), (7, 3)):
        X, w = torch.randn(n, d, generator=gen, dtype=F64), torch.randn(d, generator=gen, dtype=F64)
        saved = (X.clone(), w.clone())
        got = require_tensor(fisher(X, w), "`logistic_fisher(X, w)`", (d, d)).to(F64)
        _untouched((X, w), saved, "logistic_fisher")
        expected = _logistic_fisher(saved[0], saved[1])
        if not torch.allclose(got, expected, rtol=1e-9, atol=1e-12):
            if torch.allclose(got, n * expected, rtol=1e-9, atol=1e-12):
                raise CheckFailed("logistic_fisher is n times too large: the loss is the *mean* cross-entropy, "
                                  "so F = X^T diag(p(1 - p)) X / n")
            raise CheckFailed(f"logistic_fisher(X, w) is not X^T diag(p(1 - p)) X / n (n = {n}, d = {d})")
    gap = require_number(ns, "fisher_hessian_gap")
    expect(0 <= gap < 1e-10, f"`fisher_hessian_gap` is {gap:.3g}: the relative difference between your Fisher and "
                             "the Hessian of the mean cross-entropy should be at round-off level (below 1e-10)")


# ---------------------------------------------------------------- q2
def _rank_data(gen: torch.Generator, n: int, d: int, classes: int):
    X = torch.randn(n, d, generator=gen, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=gen)
    W = 0.5 * torch.randn(classes, d, generator=gen, dtype=F64)
    return X, y, W


def _reference_empirical(X, y, W) -> torch.Tensor:
    W = W.clone().requires_grad_(True)
    return fisher_matrix(X @ W.T, y, [W], "empirical").detach()


def q2(ns):
    emp = require(ns, "empirical_fisher", "callable")
    gen = torch.Generator().manual_seed(1302)
    for n, d, classes in ((12, 3, 4), (5, 6, 3)):
        X, y, W = _rank_data(gen, n, d, classes)
        saved = (X.clone(), y.clone(), W.clone())
        got = require_tensor(emp(X, y, W), "`empirical_fisher(X, y, W)`", (classes * d, classes * d)).to(F64)
        _untouched((X, y, W), saved, "empirical_fisher")
        expected = _reference_empirical(*saved)
        if not torch.allclose(got, expected, rtol=1e-9, atol=1e-12):
            p = torch.softmax(saved[0] @ saved[2].T, 1)
            no_label = torch.einsum("nc,nd->ncd", p, saved[0]).reshape(n, -1)
            hints = [(n * expected, " (it is n times too large: average the outer products, do not sum them)"),
                     (no_label.T @ no_label / n, " (the per-example gradient is (p_n - onehot(y_n)) x_n^T: "
                                                 "subtract the one-hot label)")]
            hint = next((h for ref, h in hints if torch.allclose(got, ref, rtol=1e-9, atol=1e-12)), "")
            raise CheckFailed(f"empirical_fisher is not (1/n) sum_n g_n g_n^T with g_n the gradient of the n-th "
                              f"example's loss in W (flattened row by row){hint}")
    X, y, W = _rank_data(torch.Generator().manual_seed(13), 6, 4, 3)
    expected = int(torch.linalg.matrix_rank(_reference_empirical(X, y, W), hermitian=True))
    got = require_number(ns, "empirical_rank")
    expect(got == expected, f"`empirical_rank` is {got:g}: compute the rank of the empirical Fisher of the "
                            "notebook's batch (6 examples) with torch.linalg.matrix_rank")


# ---------------------------------------------------------------- q3
def q3(ns):
    bound = require(ns, "fisher_rank_bound", "callable")
    emp_bound = require(ns, "empirical_rank_bound", "callable")
    for B, C, d in ((8, 10, 1210), (200, 10, 1210), (3, 2, 100), (1, 5, 3), (50, 3, 101)):
        got = as_number(bound(B, C, d), f"fisher_rank_bound({B}, {C}, {d})")
        expect(got == min(B * (C - 1), d), f"fisher_rank_bound({B}, {C}, {d}) is {got:g}: each example adds at "
                                           "most C - 1 to the rank, and the rank is at most d")
        got = as_number(emp_bound(B, d), f"empirical_rank_bound({B}, {d})")
        expect(got == min(B, d), f"empirical_rank_bound({B}, {d}) is {got:g}: the empirical Fisher is a sum of "
                                 "B outer products, and its rank is at most d")
    ranks = require(ns, "measured_ranks", (tuple, list))
    expect(len(ranks) == 2, "`measured_ranks` should be the pair (rank of F, rank of F_emp)")
    got = tuple(as_number(r, "a measured rank") for r in ranks)
    expect(got == (32.0, 8.0), f"`measured_ranks` is {got}: measure the ranks of the true and the empirical Fisher "
                               "of the notebook's MLP on its batch of 8 (C = 5 classes)")


# ---------------------------------------------------------------- q4
def _kron_reference(A, G, V):
    m, k = len(A), len(G)
    return torch.linalg.solve(torch.kron(A, G), V.T.reshape(-1)).reshape(m, k).T


def q4(ns):
    solve = require(ns, "kron_solve", "callable")
    gen = torch.Generator().manual_seed(1304)
    for m, k in ((5, 3), (2, 4), (6, 6)):
        A, G = random_spd(m, gen), random_spd(k, gen)
        V = torch.randn(k, m, generator=gen, dtype=F64)
        saved = (A.clone(), G.clone(), V.clone())
        got = require_tensor(solve(A, G, V), "`kron_solve(A, G, V)`", (k, m)).to(F64)
        _untouched((A, G, V), saved, "kron_solve")
        expected = _kron_reference(*saved)
        if not torch.allclose(got, expected, rtol=1e-8, atol=1e-11):
            wrong = torch.linalg.solve(torch.kron(saved[1], saved[0]), saved[2].T.reshape(-1)).reshape(m, k).T
            hint = (" (this solves with G kron A: with vec stacking columns, (A kron G) vec(X) = vec(G X A^T))"
                    if torch.allclose(got, wrong, rtol=1e-8, atol=1e-11) else "")
            raise CheckFailed(f"kron_solve(A, G, V) is not the X with (A kron G) vec(X) = vec(V) for A {m} x {m}, "
                              f"G {k} x {k}{hint}")
    ratio = require_number(ns, "inverse_size_ratio")
    n_in, n_out = 4097, 4096
    expect_close(ratio, (n_in * n_out) ** 2 / (n_in**2 + n_out**2), rtol=1e-6,
                 what="`inverse_size_ratio` (entries of the 4096 x 4097 layer's Fisher block over those of A and G)")


# ---------------------------------------------------------------- q5
def _factor_data(gen: torch.Generator, B: int, d_in: int, d_out: int):
    return torch.randn(B, d_in, generator=gen, dtype=F64), torch.randn(B, d_out, generator=gen, dtype=F64)


def _batch_gap(a, g_out) -> float:
    bar = torch.cat([a, torch.ones(len(a), 1, dtype=F64)], 1)
    exact = sum(torch.kron(torch.outer(x, x), torch.outer(v, v)) for x, v in zip(bar, g_out)) / len(a)
    return _rel(torch.kron(input_factor(a), gradient_factor(g_out)), exact)


def q5(ns):
    factors = require(ns, "kfac_layer_factors", "callable")
    gen = torch.Generator().manual_seed(1305)
    for B, d_in, d_out in ((10, 3, 2), (7, 5, 4)):
        a, g_out = _factor_data(gen, B, d_in, d_out)
        saved = (a.clone(), g_out.clone())
        out = factors(a, g_out)
        expect(isinstance(out, (tuple, list)) and len(out) == 2, "`kfac_layer_factors` should return the pair (A, G)")
        A = require_tensor(out[0], "A", (d_in + 1, d_in + 1)).to(F64)
        G = require_tensor(out[1], "G", (d_out, d_out)).to(F64)
        _untouched((a, g_out), saved, "kfac_layer_factors")
        A_ref, G_ref = input_factor(saved[0]), gradient_factor(saved[1])
        if not torch.allclose(A, A_ref, rtol=1e-9, atol=1e-12):
            hint = (" (the 1 for the bias goes last: a_bar = (a, 1))"
                    if abs(float(A[0, 0]) - 1.0) < 1e-12 and abs(float(A[-1, -1]) - 1.0) > 1e-9 else "")
            raise CheckFailed(f"A is not the mean of a_bar a_bar^T with a_bar = (a, 1){hint}")
        expect_close(G, G_ref, rtol=1e-9, atol=1e-12, what="G (the mean of g g^T over the batch)")
    gap1 = require_number(ns, "one_example_gap")
    expect(0 <= gap1 < 1e-10, f"`one_example_gap` is {gap1:.3g}: for one example the Fisher block is exactly A kron G")
    a, g_out = _factor_data(torch.Generator().manual_seed(5), 32, 3, 2)
    expect_close(require_number(ns, "batch_gap"), _batch_gap(a, g_out), rtol=1e-6,
                 what="`batch_gap` (relative difference between mean(a_bar a_bar^T kron g g^T) and A kron G on the "
                      "notebook's batch of 32)")


# ---------------------------------------------------------------- q6
def _ng_path(X, y, w0, steps, lr):
    w, path = w0.clone(), [w0.clone()]
    for _ in range(steps):
        p = torch.sigmoid(X @ w)
        g = X.T @ (p - y) / len(X)
        w = w - lr * torch.linalg.solve(_logistic_fisher(X, w), g)
        path.append(w.clone())
    return torch.stack(path)


def _logistic_data(gen, n, d):
    X = torch.randn(n, d, generator=gen, dtype=F64) * torch.linspace(0.3, 2.0, d, dtype=F64)
    y = torch.bernoulli(torch.sigmoid(X @ torch.randn(d, generator=gen, dtype=F64)), generator=gen)
    return X, y


def _gd_gap(X, y, w0, A, steps, lr) -> float:
    def path(features, start):
        w, out = start.clone(), [start.clone()]
        for _ in range(steps):
            w = w - lr * features.T @ (torch.sigmoid(features @ w) - y) / len(y)
            out.append(w.clone())
        return torch.stack(out)

    theta = path(X, w0)
    mapped = path(X @ A, torch.linalg.solve(A, w0)) @ A.T
    return float((theta - mapped).norm(dim=1).max())


def q6(ns):
    ng = require(ns, "natural_gradient_path", "callable")
    gen = torch.Generator().manual_seed(1306)
    for n, d, steps, lr in ((80, 2, 5, 1.0), (60, 3, 4, 0.5)):
        X, y = _logistic_data(gen, n, d)
        w0 = 0.1 * torch.randn(d, generator=gen, dtype=F64)
        saved = (X.clone(), y.clone(), w0.clone())
        path = require_tensor(ng(X, y, w0, steps, lr), "`natural_gradient_path`", (steps + 1, d)).to(F64)
        _untouched((X, y, w0), saved, "natural_gradient_path")
        expected = _ng_path(*saved, steps, lr)
        expect_close(path[0], saved[2], rtol=0, atol=1e-15, what="the first row of the path (it is w0)")
        expect_close(path, expected, rtol=1e-8, atol=1e-10,
                     what=f"natural_gradient_path ({steps} steps at lr {lr}, F = X^T diag(p(1 - p)) X / n)")
        # invariance: the same path, trained on the features X A from A^-1 w0 and mapped back with A
        A = 2 * torch.eye(d, dtype=F64) + 0.7 * torch.tril(torch.ones(d, d, dtype=F64), -1)
        phi = require_tensor(ng(saved[0] @ A, saved[1], torch.linalg.solve(A, saved[2]), steps, lr),
                             "`natural_gradient_path` on the features X A", (steps + 1, d)).to(F64)
        expect_close(phi @ A.T, expected, rtol=1e-8, atol=1e-10,
                     what="natural_gradient_path in the coordinates phi (theta = A phi), mapped back to theta")
    X, y = _logistic_data(torch.Generator().manual_seed(6), 100, 2)
    A = torch.tensor([[1.0, 2.0], [0.0, 0.5]], dtype=F64)
    expect_close(require_number(ns, "gd_gap"), _gd_gap(X, y, torch.zeros(2, dtype=F64), A, 20, 0.5), rtol=1e-6,
                 what="`gd_gap` (the largest distance between the two gradient-descent paths, in theta)")


# ---------------------------------------------------------------- q7
def q7(ns):
    kfac = require(ns, "kfac_state_numbers", "callable")
    adam = require(ns, "adam_state_numbers", "callable")
    for sizes in ((64, 16, 10), (784, 300, 100, 10), (5, 5)):
        layers = list(zip(sizes[:-1], sizes[1:]))
        want_kfac = 2 * sum((a + 1) ** 2 + b**2 for a, b in layers)
        want_adam = 2 * sum((a + 1) * b for a, b in layers)
        got = as_number(kfac(list(sizes)), f"kfac_state_numbers({list(sizes)})")
        if got != want_kfac:
            hints = {sum((a + 1) ** 2 + b**2 for a, b in layers): " (keep the inverses too: A, G, A^-1, G^-1)",
                     2 * sum(a**2 + b**2 for a, b in layers): " (A includes the bias: it is (d_in + 1) x (d_in + 1))"}
            raise CheckFailed(f"kfac_state_numbers({list(sizes)}) is {got:g}, expected {want_kfac}"
                              f"{hints.get(got, '')}")
        got = as_number(adam(list(sizes)), f"adam_state_numbers({list(sizes)})")
        expect(got == want_adam, f"adam_state_numbers({list(sizes)}) is {got:g}, expected {want_adam} "
                                 "(two numbers per weight and bias)")
    n = 4096
    expect_close(require_number(ns, "square_layer_ratio"), ((n + 1) ** 2 + n**2) / ((n + 1) * n), rtol=1e-6,
                 what="`square_layer_ratio` (K-FAC's state over Adam's for one 4096 x 4096 layer with a bias)")


QUESTIONS = [
    Question("q1", 2, q1, "The Fisher of logistic regression"),
    Question("q2", 3, q2, "The empirical Fisher from per-example gradients"),
    Question("q3", 2, q3, "The rank of a minibatch Fisher"),
    Question("q4", 3, q4, "The Kronecker-product inverse"),
    Question("q5", 3, q5, "K-FAC's factors of a linear layer"),
    Question("q6", 3, q6, "The natural gradient does not depend on the coordinates"),
    Question("q7", 2, q7, "The memory of K-FAC and Adam"),
]
