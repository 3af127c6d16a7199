"""Checks for solutions/11_hessian_free.ipynb: a Hessian-vector product by double backpropagation,
conjugate gradients with their residual history, power iteration, Hutchinson's trace estimator, a
Gauss-Newton-vector product for nonlinear least squares, and CG's iterations against the condition number.

Every reference is computed here (explicit Hessians and Jacobians from torch.autograd, optlib's CG); the
learner's functions are called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from optlib.grading import (CheckFailed, Question, as_number, expect, expect_close, random_spd, require,
                            require_number, require_tensor)

F64 = torch.float64


def _with_spectrum(eigenvalues, gen: torch.Generator) -> torch.Tensor:
    eigenvalues = torch.as_tensor(eigenvalues, dtype=F64)
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=F64))
    return (Q * eigenvalues) @ Q.T


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


class _Function(torch.nn.Module):
    """A test function handed to the learner's code as a module, called like a function.

    The grader records each call the learner's code makes back into a plain function of the test's,
    which fails when ``torch.func`` transforms call it with its own tensor wrappers; a module is
    handed over as it is, so ``torch.func.grad``/``jvp``/``vjp`` of it work in every setting.
    """

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _pair(value, what: str) -> tuple:
    expect(isinstance(value, (tuple, list)) and len(value) == 2, f"{what} should return a pair (two values)")
    return tuple(value)


# ---------------------------------------------------------------- q1
_Q1_MATRIX = _with_spectrum([3.0, 1.0, -0.5, 2.0], torch.Generator().manual_seed(1101))


def _q1_quadratic(x):
    return 0.5 * x @ _Q1_MATRIX @ x + x.sum()


def _q1_trig(x):
    return (torch.cos(x) * x**2).sum() + x[0] * x[-1] ** 3


def _q1_logsumexp(x):
    return torch.logsumexp(torch.stack([x.sum(), (x**2).sum(), (x[:2] ** 3).sum()]), 0)


def q1(ns):
    hvp = require(ns, "hvp_double_backprop", "callable")
    gen = torch.Generator().manual_seed(1102)
    for name, fn in (("a quadratic", _q1_quadratic), ("cos(x) x^2", _q1_trig), ("a log-sum-exp", _q1_logsumexp)):
        f = _Function(fn)
        x, v = torch.randn(4, generator=gen, dtype=F64), torch.randn(4, generator=gen, dtype=F64)
        saved = (x.clone(), v.clone())
        out = require_tensor(hvp(f, x, v), "`hvp_double_backprop(f, x, v)`", (4,))
        _untouched((x, v), saved, "hvp_double_backprop")
        H = torch.autograd.functional.hessian(f, saved[0])
        expected = H @ saved[1]
        if not torch.allclose(out, expected, rtol=1e-9, atol=1e-10):
            gradient = torch.func.grad(f)(saved[0])
            hint = (" (this is the gradient: differentiate the scalar gradient . v once more)"
                    if torch.allclose(out, gradient, rtol=1e-9, atol=1e-10) else "")
            raise CheckFailed(f"hvp_double_backprop is not the Hessian times v for {name}{hint}")
    hv = require_tensor(require(ns, "rosen_hv"), "`rosen_hv`", (5,))
    expect_close(hv, torch.tensor([802.0, -400.0, 0.0, 0.0, 0.0], dtype=F64), rtol=1e-9, atol=1e-9,
                 what="`rosen_hv` (the Hessian of the 5-D Rosenbrock function at (1, ..., 1) times e_1)")


# ---------------------------------------------------------------- q2
def _reference_cg(A: torch.Tensor, b: torch.Tensor, tol: float, max_iter: int):
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), (r @ r).item()
    history = [math.sqrt(rr)]
    for _ in range(max_iter):
        if history[-1] <= tol * history[0]:
            break
        Ap = A @ p
        alpha = rr / (p @ Ap).item()
        x, r = x + alpha * p, r - alpha * Ap
        rr_new = (r @ r).item()
        history.append(math.sqrt(rr_new))
        p, rr = r + (rr_new / rr) * p, rr_new
    return x, history


def _check_cg_output(out, n: int, what: str):
    x, residuals = _pair(out, what)
    x = require_tensor(x, f"the x returned by {what}", (n,))
    expect(isinstance(residuals, (list, tuple)) and len(residuals) >= 1,
           f"{what} should return (x, residuals) with residuals a list of floats ||r_0||, ..., ||r_k||")
    residuals = [as_number(r, f"a residual norm returned by {what}") for r in residuals]
    return x, residuals


def q2(ns):
    cg = require(ns, "cg", "callable")
    gen = torch.Generator().manual_seed(1103)
    for n, shift in ((6, 0.5), (25, 0.05), (60, 0.01)):
        A, b = random_spd(n, gen, shift), torch.randn(n, generator=gen, dtype=F64)
        saved = b.clone()
        out = cg(lambda v, A=A: A @ v, b, 1e-10, 10 * n)
        _untouched((b,), (saved,), "cg")
        x, residuals = _check_cg_output(out, n, f"cg(matvec, b, 1e-10, {10 * n})")
        ref_x, ref_history = _reference_cg(A, saved, 1e-10, 10 * n)
        expect_close(residuals[0], ref_history[0], rtol=1e-12, atol=0,
                     what="residuals[0] (the norm of the first residual, r_0 = b for x_0 = 0)")
        expect(abs(len(residuals) - len(ref_history)) <= 1,
               f"cg stopped after {len(residuals) - 1} iterations on a {n} x {n} system, expected "
               f"{len(ref_history) - 1}: stop as soon as ||r_k|| <= tol * ||b||, and return every ||r_k||")
        k = min(len(residuals), len(ref_history), 8)
        expect_close(residuals[:k], ref_history[:k], rtol=1e-6, atol=1e-12 * ref_history[0],
                     what=f"the first {k} residual norms of cg on a {n} x {n} system")
        expect_close(x, torch.linalg.solve(A, saved), rtol=1e-7, atol=1e-9, what=f"cg's solution on a {n} x {n} system")
    # three iterations exactly: the third CG iterate, not a steepest-descent one
    A, b = random_spd(30, gen, 0.01), torch.randn(30, generator=gen, dtype=F64)
    x, residuals = _check_cg_output(cg(lambda v: A @ v, b, 1e-12, 3), 30, "cg(matvec, b, 1e-12, 3)")
    expect(len(residuals) == 4, f"cg(..., max_iter=3) returned {len(residuals)} residual norms, expected 4 "
                                "(||r_0|| to ||r_3||)")
    expect_close(x, _reference_cg(A, b, 1e-12, 3)[0], rtol=1e-8, atol=1e-10,
                 what="the iterate after 3 CG iterations (is each direction conjugate to the previous one?)")
    count = require_number(ns, "iterations_geometric")
    expected = _geometric_iterations()
    expect(count > 100, f"`iterations_geometric` is {count:g}: on the geometric spectrum CG needs more than d = 100 "
                        "iterations in floating point")
    expect(abs(count - expected) <= 0.15 * expected,
           f"`iterations_geometric` is {count:g}, expected about {expected} (CG to 1e-10 on the chapter's "
           "geometric system, d = 100, kappa = 1e4)")


def _geometric_iterations() -> int:
    from optlib import spectra

    eigenvalues = spectra.spectrum("geometric", 100, 1e4)
    run = spectra.cg_on_spectrum(eigenvalues, generator=torch.Generator().manual_seed(2), rotate=True)
    return run.iterations


# ---------------------------------------------------------------- q3
def q3(ns):
    power = require(ns, "power_iteration", "callable")
    cases = [([5.0, 2.0, 1.0, 0.5, 0.1, -1.0], 5.0), ([-6.0, 3.0, 2.0, 1.0, 0.5], -6.0),
             ([10.0, 4.0, 3.0, -2.0, 1.0, 1.0, 0.2, 0.0], 10.0)]
    for i, (spectrum, top) in enumerate(cases):
        A = _with_spectrum(spectrum, torch.Generator().manual_seed(1104 + i))
        out = power(lambda v, A=A: A @ v, len(spectrum), 300, torch.Generator().manual_seed(7 + i))
        value, vector = _pair(out, "power_iteration")
        value = as_number(value, "the eigenvalue returned by power_iteration")
        vector = require_tensor(vector, "the vector returned by power_iteration", (len(spectrum),))
        if not math.isclose(value, top, rel_tol=1e-6):
            hint = (" (a norm ratio ||Av|| / ||v|| loses the sign: use the Rayleigh quotient v.Av / v.v)"
                    if math.isclose(value, abs(top), rel_tol=1e-6) else "")
            raise CheckFailed(f"power_iteration found {value:.6g}, expected the eigenvalue of largest magnitude "
                              f"{top:g}{hint}")
        expect_close(vector.norm(), 1.0, rtol=1e-8, what="the norm of the vector returned by power_iteration")
        expect_close((A @ vector - top * vector).norm(), 0.0, atol=1e-4,
                     what="||A u - lambda u|| for the vector u returned by power_iteration")
    sharpness = require_number(ns, "sharpness")
    expect_close(sharpness, _sharpness(), rtol=1e-6,
                 what="`sharpness` (the largest eigenvalue of the Hessian of the notebook's MLP at initialization)")


def _sharpness() -> float:
    from torch import nn

    from optlib import curvature, data, models

    digits = data.load_digits(dtype=F64)
    model = models.MLP((64, 8, 10), activation="tanh", generator=torch.Generator().manual_seed(0), dtype=F64)
    H = curvature.hessian_matvec(model, nn.CrossEntropyLoss(), (digits.X_train[:256], digits.y_train[:256]))
    result = curvature.lanczos(H, 610, generator=torch.Generator().manual_seed(0), dtype=F64)
    return result.values[0].item()


# ---------------------------------------------------------------- q4
def q4(ns):
    hutchinson = require(ns, "hutchinson", "callable")
    gen = torch.Generator().manual_seed(1105)
    for d, samples in ((30, 4000), (12, 3000)):
        M = torch.randn(d, d, generator=gen, dtype=F64)
        A = (M + M.T) / 2 + torch.diag(torch.linspace(0, 3, d, dtype=F64))
        out = hutchinson(lambda v, A=A: A @ v, d, samples, torch.Generator().manual_seed(d))
        estimate, std_error = _pair(out, "hutchinson")
        estimate = as_number(estimate, "the estimate returned by hutchinson")
        std_error = as_number(std_error, "the standard error returned by hutchinson")
        exact = torch.trace(A).item()
        off = (A**2).sum().item() - (torch.diagonal(A) ** 2).sum().item()
        low = 0.5 * math.sqrt(2 * off / samples)  # Rademacher probes
        high = 2 * math.sqrt(2 * (A**2).sum().item() / samples)  # Gaussian probes
        expect(abs(estimate - exact) <= 5 * std_error,
               f"hutchinson's estimate {estimate:.4g} is more than five standard errors from the trace {exact:.4g}: "
               "average z.Az over probes with E[z z^T] = I (Rademacher +-1 or standard Gaussian entries)")
        expect(low <= std_error <= high,
               f"hutchinson's standard error is {std_error:.3g} with {samples} samples, expected between "
               f"{low:.3g} and {high:.3g}: the standard deviation of the samples z.Az divided by sqrt(samples)")
    # few samples: still a finite estimate and standard error
    A = random_spd(8, gen)
    estimate, std_error = _pair(hutchinson(lambda v: A @ v, 8, 2, torch.Generator().manual_seed(3)), "hutchinson")
    as_number(estimate, "hutchinson's estimate with 2 samples")
    as_number(std_error, "hutchinson's standard error with 2 samples")


# ---------------------------------------------------------------- q5
_T = torch.linspace(0, 2, 7, dtype=F64)
_Y = torch.tensor([2.1, 1.4, 1.05, 0.6, 0.5, 0.3, 0.25], dtype=F64)


def _q5_exponential(theta):
    return theta[0] * torch.exp(theta[1] * _T) - _Y


def _q5_network(theta):
    hidden = torch.tanh(theta[0] * _T[:, None] + theta[1:4])
    return hidden @ theta[4:7] + theta[7] - _Y


def q5(ns):
    gnvp = require(ns, "gauss_newton_vp", "callable")
    gen = torch.Generator().manual_seed(1106)
    for fn, d in ((_q5_exponential, 2), (_q5_network, 8)):
        residual = _Function(fn)
        for _ in range(2):
            theta, v = torch.randn(d, generator=gen, dtype=F64), torch.randn(d, generator=gen, dtype=F64)
            saved = (theta.clone(), v.clone())
            out = require_tensor(gnvp(residual, theta, v), "`gauss_newton_vp(residual_fn, theta, v)`", (d,))
            _untouched((theta, v), saved, "gauss_newton_vp")
            J = torch.autograd.functional.jacobian(residual, saved[0])
            expected = J.T @ (J @ saved[1])
            if not torch.allclose(out, expected, rtol=1e-8, atol=1e-10):
                loss = lambda t: 0.5 * (residual(t) ** 2).sum()  # noqa: E731
                H = torch.autograd.functional.hessian(loss, saved[0])
                hint = (" (this is the Hessian of 1/2 ||r||^2, which also holds the residuals' second derivatives)"
                        if torch.allclose(out, H @ saved[1], rtol=1e-8, atol=1e-10) else
                        " (twice J^T J v: the loss is 1/2 ||r||^2)" if torch.allclose(out, 2 * expected, rtol=1e-8)
                        else "")
                raise CheckFailed(f"gauss_newton_vp is not J^T (J v){hint}")
    gap = require_number(ns, "gn_gap")
    theta0 = torch.tensor([1.0, -1.0], dtype=F64)
    J = torch.autograd.functional.jacobian(_q5_exponential, theta0)
    H = torch.autograd.functional.hessian(lambda t: 0.5 * (_q5_exponential(t) ** 2).sum(), theta0)
    expected = (torch.linalg.matrix_norm(H - J.T @ J) / torch.linalg.matrix_norm(H)).item()
    expect_close(gap, expected, rtol=1e-6, what="`gn_gap` (||H - J^T J||_F / ||H||_F for the exponential fit at "
                                                "theta = (1, -1))")


# ---------------------------------------------------------------- q6
Q6_KAPPAS = (10.0, 100.0, 1000.0, 10000.0)


def _q6_counts() -> list[int]:
    from optlib import curvature
    from optlib import spectra

    b = torch.randn(1000, generator=torch.Generator().manual_seed(11), dtype=F64)
    counts = []
    for kappa in Q6_KAPPAS:
        eigenvalues = spectra.spectrum("chebyshev", 1000, kappa)
        counts.append(curvature.conjugate_gradient(lambda v: eigenvalues * v, b, tol=1e-6).iterations)
    return counts


def q6(ns):
    counts = require(ns, "cg_counts", (list, tuple))
    expect(len(counts) == len(Q6_KAPPAS), f"`cg_counts` should hold {len(Q6_KAPPAS)} iteration counts, one per "
                                          "kappa in (10, 100, 1000, 10000)")
    counts = [as_number(c, "an entry of `cg_counts`") for c in counts]
    expected = _q6_counts()
    for kappa, got, want in zip(Q6_KAPPAS, counts, expected):
        expect(abs(got - want) <= 2, f"`cg_counts` at kappa = {kappa:g} is {got:g}, expected {want}: CG from x_0 = 0 "
                                     "to a relative residual of 1e-6 on the Chebyshev spectrum, d = 1000")
    slope = require_number(ns, "cg_slope")
    fitted = float(np.polyfit(np.log(Q6_KAPPAS), np.log(counts), 1)[0])
    expect_close(slope, fitted, rtol=0, atol=0.01,
                 what="`cg_slope` (the slope of log(iterations) against log(kappa), a least-squares line)")
    expect(0.4 <= slope <= 0.6, f"`cg_slope` is {slope:.3g}: CG's iterations grow like sqrt(kappa)")


QUESTIONS = [
    Question("q1", 2, q1, "A Hessian-vector product by double backpropagation"),
    Question("q2", 3, q2, "Conjugate gradients with their residual history"),
    Question("q3", 2, q3, "Power iteration and the sharpness of an MLP"),
    Question("q4", 2, q4, "Hutchinson's trace estimator"),
    Question("q5", 3, q5, "A Gauss-Newton-vector product for nonlinear least squares"),
    Question("q6", 2, q6, "CG's iterations against the condition number"),
]
