"""Checks for solutions/16_shampoo_soap.ipynb: the inverse matrix root, one Shampoo step, the Kronecker
identity, counting optimizer state, rotating a gradient into Shampoo's eigenbasis, and an experiment on
the frequency of Shampoo's roots.

Every reference is computed here (eigendecompositions, the optimizers of optlib, the chapter's matrix
problem); the learner's functions are called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

from functools import partial

import torch

from optlib.grading import (CheckFailed, Question, as_number, expect, expect_close, random_spd, require,
                            require_tensor)

F64 = torch.float64


def _root(A: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(A)
    return (vecs * vals.clamp(min=0.0).add(eps).pow(-1.0 / p)) @ vecs.T


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


def _psd(n: int, rank: int, gen: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, rank, generator=gen, dtype=F64)
    return m @ m.T


# ---------------------------------------------------------------- q1
def q1(ns):
    root = require(ns, "inverse_root", "callable")
    gen = torch.Generator().manual_seed(1601)
    for n, p, eps in ((4, 4, 0.0), (5, 2, 1e-3), (3, 8, 0.1)):
        A = random_spd(n, gen)
        saved = A.clone()
        got = require_tensor(root(A, p, eps), f"`inverse_root(A, {p}, {eps})`", (n, n))
        _untouched((A,), (saved,), "inverse_root")
        expected = _root(saved, p, eps)
        if torch.allclose(got, torch.linalg.inv(expected), rtol=1e-8, atol=1e-10):
            raise CheckFailed(f"inverse_root(A, {p}, {eps}) is (A + eps I)^(+1/p): the power is -1/p")
        expect_close(got, expected, rtol=1e-8, atol=1e-10, what=f"inverse_root(A, {p}, {eps}) ((A + eps I)^(-1/p))")
    # a singular PSD matrix: eps bounds the root by eps^(-1/p)
    A = _psd(5, 2, gen)
    got = require_tensor(root(A, 4, 1e-8), "`inverse_root(A, 4, 1e-8)` for a singular A", (5, 5))
    expect(torch.isfinite(got).all(), "inverse_root of a singular A with eps = 1e-8 should be finite: add eps to "
                                      "the eigenvalues before taking the power")
    top = torch.linalg.eigvalsh(got)[-1].item()
    expect_close(top, 1e-8 ** -0.25, rtol=1e-6,
                 what="the largest eigenvalue of inverse_root(A, 4, 1e-8) for an A of rank 2 (it is eps^(-1/4))")


# ---------------------------------------------------------------- q2
def _optlib_first_step(W, G, lr, eps):
    from optlib.optim import Shampoo

    w = W.clone().requires_grad_(True)
    w.grad = G.clone()
    Shampoo([w], lr=lr, epsilon=eps).step()
    return w.detach()


def q2(ns):
    step = require(ns, "shampoo_step", "callable")
    gen = torch.Generator().manual_seed(1602)
    for (m, n), lr, eps in (((4, 3), 0.1, 1e-6), ((2, 5), 1.0, 1e-3), ((6, 6), 0.05, 1e-8)):
        W, G = torch.randn(m, n, generator=gen, dtype=F64), torch.randn(m, n, generator=gen, dtype=F64)
        saved = (W.clone(), G.clone())
        got = require_tensor(step(W, G, lr, eps), f"`shampoo_step(W, G, {lr}, {eps})`", (m, n))
        _untouched((W, G), saved, "shampoo_step")
        expected = _optlib_first_step(saved[0], saved[1], lr, eps)
        half = saved[0] - lr * _root(saved[1] @ saved[1].T, 2, eps) @ saved[1] @ _root(saved[1].T @ saved[1], 2, eps)
        if torch.allclose(got, half, rtol=1e-7, atol=1e-9):
            raise CheckFailed("shampoo_step uses the power -1/2 on each factor: Shampoo's is -1/4 (each factor "
                              "carries half of AdaGrad's -1/2)")
        expect_close(got, expected, rtol=1e-7, atol=1e-9,
                     what=f"shampoo_step on a {m} x {n} matrix (optlib.optim.Shampoo's first step)")


# ---------------------------------------------------------------- q3
def q3(ns):
    kron = require(ns, "kronecker_preconditioner", "callable")
    gen = torch.Generator().manual_seed(1603)
    for m, n in ((2, 3), (4, 2), (3, 3)):
        L, R = random_spd(m, gen), random_spd(n, gen)
        G = torch.randn(m, n, generator=gen, dtype=F64)
        saved = (L.clone(), R.clone())
        P = require_tensor(kron(L, R), f"`kronecker_preconditioner(L, R)` for L {m} x {m}, R {n} x {n}",
                           (m * n, m * n))
        _untouched((L, R), saved, "kronecker_preconditioner")
        shampoo = (_root(L, 4, 0.0) @ G @ _root(R, 4, 0.0)).reshape(-1)
        if m != n and torch.allclose(P, torch.kron(_root(R, 4, 0.0), _root(L, 4, 0.0)), rtol=1e-7, atol=1e-9):
            raise CheckFailed("kronecker_preconditioner returns R^(-1/4) kron L^(-1/4): that is the matrix for the "
                              "column-major vec; with G.reshape(-1) (row-major) it is L^(-1/4) kron R^(-1/4)")
        expect_close(P @ G.reshape(-1), shampoo, rtol=1e-7, atol=1e-9,
                     what=f"kronecker_preconditioner(L, R) @ G.reshape(-1) (against L^(-1/4) G R^(-1/4), {m} x {n})")
        expect_close(P, P.T, rtol=0, atol=1e-9, what="kronecker_preconditioner(L, R) (it should be symmetric)")


# ---------------------------------------------------------------- q4
def _counted(make, m, n):
    w = torch.zeros(m, n, dtype=F64, requires_grad=True)
    w.grad = torch.ones(m, n, dtype=F64)
    opt = make([w])
    opt.step()
    return sum(v.numel() for v in opt.state[w].values() if torch.is_tensor(v) and v.ndim > 0)


def q4(ns):
    from optlib.optim import SOAP, Adam, Shampoo

    makers = {"adam_floats": partial(Adam, lr=0.1), "shampoo_floats": partial(Shampoo, lr=0.1),
              "soap_floats": partial(SOAP, lr=0.1)}
    functions = {name: require(ns, name, "callable") for name in makers}
    for m, n in ((3, 5), (10, 32), (64, 64), (1, 7)):
        for name, make in makers.items():
            got = as_number(functions[name](m, n), f"{name}({m}, {n})")
            expected = _counted(make, m, n)
            expect(got == expected, f"{name}({m}, {n}) is {got:g}; optlib's optimizer keeps {expected} floats for "
                                    f"an {m} x {n} weight after one step (count every state tensor, not the step)")


# ---------------------------------------------------------------- q5
def _eigenbasis(F: torch.Tensor) -> torch.Tensor:
    return torch.flip(torch.linalg.eigh(F)[1], dims=[1])


def q5(ns):
    rotate = require(ns, "rotate_to_eigenbasis", "callable")
    gen = torch.Generator().manual_seed(1605)
    for m, n in ((4, 3), (3, 5)):
        L, R = random_spd(m, gen), random_spd(n, gen)
        G = torch.randn(m, n, generator=gen, dtype=F64)
        saved = (G.clone(), L.clone(), R.clone())
        got = require_tensor(rotate(G, L, R), f"`rotate_to_eigenbasis(G, L, R)` ({m} x {n})", (m, n))
        _untouched((G, L, R), saved, "rotate_to_eigenbasis")
        QL, QR = _eigenbasis(L), _eigenbasis(R)
        expected = QL.T @ G @ QR
        ascending = torch.flip(QL, dims=[1]).T @ G @ torch.flip(QR, dims=[1])
        if not torch.allclose(got.abs(), expected.abs(), rtol=1e-7, atol=1e-9):
            if torch.allclose(got.abs(), ascending.abs(), rtol=1e-7, atol=1e-9):
                raise CheckFailed("rotate_to_eigenbasis orders the eigenvectors by increasing eigenvalue (eigh's "
                                  "order): SOAP's bases are sorted by decreasing eigenvalue")
            raise CheckFailed(f"rotate_to_eigenbasis(G, L, R) is not Q_L^T G Q_R ({m} x {n}; the signs of the "
                              "eigenvectors may differ, their order and the side of the transpose may not)")
    # gradients with common singular vectors: G' is diagonal, the singular values in decreasing order
    U = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=F64))[0][:, :3]
    V = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=F64))[0]
    s = torch.tensor([2.0, 1.0, 0.5], dtype=F64)
    G = (U * s) @ V.T
    got = require_tensor(rotate(G, G @ G.T, G.T @ G), "`rotate_to_eigenbasis(G, G G^T, G^T G)`", (5, 3))
    expect_close(got.abs(), torch.cat([torch.diag(s), torch.zeros(2, 3, dtype=F64)]), rtol=1e-7, atol=1e-9,
                 what="|rotate_to_eigenbasis(G, G G^T, G^T G)| for G = U diag(2, 1, 0.5) V^T (it is diagonal)")


# ---------------------------------------------------------------- q6
def _steps_by_freq() -> dict:
    from optlib.optim import Shampoo
    from optlib import kronecker

    problem = kronecker.matrix_problem(30, 30)
    out = {}
    for k in (1, 3, 10):
        make = partial(Shampoo, lr=1.0, epsilon=1e-12, update_freq=k, grafting="adam")
        out[k] = kronecker.steps_to(kronecker.matrix_losses(problem, make, 300), 1e-4)
    return out


def q6(ns):
    got = require(ns, "steps_by_freq", dict)
    expected = _steps_by_freq()
    keys = sorted(got, key=str)
    expect(set(got) == set(expected), f"`steps_by_freq` has keys {keys}; expected the update frequencies 1, 3, 10")
    for k, count in expected.items():
        value = got[k]
        value = None if value is None else as_number(value, f"steps_by_freq[{k}]")
        expect(value == count, f"steps_by_freq[{k}] is {value}: run Shampoo (lr 1, epsilon 1e-12, grafting 'adam', "
                               f"update_freq {k}) on kronecker.matrix_problem(30, 30) for 300 steps and count the steps "
                               "until the loss is <= 1e-4 x the first loss (kronecker.steps_to)")


QUESTIONS = [
    Question("q1", 2, q1, "The inverse matrix root"),
    Question("q2", 3, q2, "One Shampoo step"),
    Question("q3", 2, q3, "The Kronecker identity"),
    Question("q4", 2, q4, "Counting optimizer state"),
    Question("q5", 3, q5, "Rotating a gradient into Shampoo's eigenbasis"),
    Question("q6", 3, q6, "How often to compute the roots"),
]
