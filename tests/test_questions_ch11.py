"""The checks of solutions/11_hessian_free.ipynb give full marks to a correct answer and 0 to a plausible wrong one."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch
from torch import nn

from optlib import curvature, data, models
from optlib.grading import load_questions
from optlib import spectra

import question_scoring

CHAPTER = "11_hessian_free"
F64 = torch.float64

# torch.func.jvp loads torch's forward-mode decompositions, which warn on first use (torch's internals)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

_full = partial(question_scoring.assert_full, CHAPTER)


def _zero(namespace, question):
    result = question_scoring.assert_zero(CHAPTER, namespace, question)
    MESSAGES.append(f"{question}: {result.message}")
    return result


MESSAGES: list[str] = []


# ---------------------------------------------------------------- correct answers, written independently

def _hvp(f, x, v):
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x, create_graph=True)
    (hv,) = torch.autograd.grad(g, x, grad_outputs=v)
    return hv


def _hvp_forward_over_reverse(f, x, v):
    return torch.func.jvp(torch.func.grad(f), (x,), (v,))[1]


def q1_ns():
    return {"hvp_double_backprop": _hvp, "rosen_hv": torch.tensor([802.0, -400.0, 0.0, 0.0, 0.0], dtype=F64)}


def _cg(matvec, b, tol, max_iter):
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    residuals = [r.norm().item()]
    for _ in range(max_iter):
        if residuals[-1] <= tol * residuals[0]:
            break
        Ap = matvec(p)
        alpha = (r @ r) / (p @ Ap)
        x = x + alpha * p
        r_new = r - alpha * Ap
        p = r_new + (r_new @ r_new) / (r @ r) * p
        r = r_new
        residuals.append(r.norm().item())
    return x, residuals


def _geometric_count():
    run = spectra.cg_on_spectrum(spectra.spectrum("geometric", 100, 1e4),
                                      generator=torch.Generator().manual_seed(2), rotate=True)
    return run.iterations


def q2_ns():
    return {"cg": _cg, "iterations_geometric": _geometric_count()}


def _power(matvec, dim, iters, generator):
    v = torch.randn(dim, generator=generator, dtype=F64)
    v = v / v.norm()
    for _ in range(iters):
        w = matvec(v)
        v = w / w.norm()
    return (v @ matvec(v)).item(), v


def _sharpness_by_power():
    digits = data.load_digits(dtype=F64)
    model = models.MLP((64, 8, 10), activation="tanh", generator=torch.Generator().manual_seed(0), dtype=F64)
    H = curvature.hessian_matvec(model, nn.CrossEntropyLoss(), (digits.X_train[:256], digits.y_train[:256]))
    return _power(H, 610, 400, torch.Generator().manual_seed(0))[0]


def q3_ns():
    return {"power_iteration": _power, "sharpness": _sharpness_by_power()}


def _hutchinson(matvec, dim, samples, generator):
    z = torch.randint(0, 2, (samples, dim), generator=generator).to(F64) * 2 - 1
    values = torch.stack([zi @ matvec(zi) for zi in z])
    return values.mean().item(), (values.std() / math.sqrt(samples)).item()


def _hutchinson_gaussian(matvec, dim, samples, generator):
    z = torch.randn(samples, dim, generator=generator, dtype=F64)
    values = [float(zi @ matvec(zi)) for zi in z]
    return float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(samples))


def q4_ns():
    return {"hutchinson": _hutchinson}


def _gnvp(residual_fn, theta, v):
    _, Jv = torch.func.jvp(residual_fn, (theta,), (v,))
    _, pullback = torch.func.vjp(residual_fn, theta)
    return pullback(Jv)[0]


def _gnvp_by_jacobian(residual_fn, theta, v):
    J = torch.autograd.functional.jacobian(residual_fn, theta)
    return J.T @ (J @ v)


def _gn_gap():
    T = torch.linspace(0, 2, 7, dtype=F64)
    Y = torch.tensor([2.1, 1.4, 1.05, 0.6, 0.5, 0.3, 0.25], dtype=F64)
    r = lambda t: t[0] * torch.exp(t[1] * T) - Y  # noqa: E731
    theta = torch.tensor([1.0, -1.0], dtype=F64)
    J = torch.autograd.functional.jacobian(r, theta)
    H = torch.autograd.functional.hessian(lambda t: 0.5 * (r(t) ** 2).sum(), theta)
    return ((H - J.T @ J).norm() / H.norm()).item()


def q5_ns():
    return {"gauss_newton_vp": _gnvp, "gn_gap": _gn_gap()}


def _counts(shape="chebyshev"):
    b = torch.randn(1000, generator=torch.Generator().manual_seed(11), dtype=F64)
    out = []
    for kappa in (10.0, 100.0, 1000.0, 10000.0):
        lam = spectra.spectrum(shape, 1000, kappa)
        out.append(curvature.conjugate_gradient(lambda v: lam * v, b, tol=1e-6).iterations)
    return out


def q6_ns():
    counts = _counts()
    return {"cg_counts": counts, "cg_slope": float(np.polyfit(np.log([10, 100, 1000, 10000]), np.log(counts), 1)[0])}


# ---------------------------------------------------------------- tests

def test_questions_are_listed_in_order():
    assert [q.id for q in load_questions(CHAPTER)] == ["q1", "q2", "q3", "q4", "q5", "q6"]


def test_q1():
    _full(q1_ns(), "q1")
    _full({**q1_ns(), "hvp_double_backprop": _hvp_forward_over_reverse}, "q1")  # another right way
    _zero({**q1_ns(), "hvp_double_backprop": lambda f, x, v: torch.func.grad(f)(x)}, "q1")  # the gradient
    _zero({**q1_ns(), "hvp_double_backprop": lambda f, x, v: -_hvp(f, x, v)}, "q1")

    def diagonal_only(f, x, v):
        return torch.diagonal(torch.autograd.functional.hessian(f, x)) * v

    _zero({**q1_ns(), "hvp_double_backprop": diagonal_only}, "q1")
    _zero({**q1_ns(), "rosen_hv": torch.tensor([802.0, 400.0, 0.0, 0.0, 0.0], dtype=F64)}, "q1")
    _zero({k: v for k, v in q1_ns().items() if k != "rosen_hv"}, "q1")


def test_q2():
    _full(q2_ns(), "q2")

    def steepest_descent(matvec, b, tol, max_iter):
        x, r = torch.zeros_like(b), b.clone()
        residuals = [r.norm().item()]
        for _ in range(max_iter):
            if residuals[-1] <= tol * residuals[0]:
                break
            Ar = matvec(r)
            alpha = (r @ r) / (r @ Ar)
            x, r = x + alpha * r, r - alpha * Ar
            residuals.append(r.norm().item())
        return x, residuals

    _zero({**q2_ns(), "cg": steepest_descent}, "q2")

    def no_history(matvec, b, tol, max_iter):
        x, residuals = _cg(matvec, b, tol, max_iter)
        return x, residuals[-1:]

    _zero({**q2_ns(), "cg": no_history}, "q2")

    def one_iteration_short(matvec, b, tol, max_iter):
        return _cg(matvec, b, tol, max(max_iter - 1, 0))

    _zero({**q2_ns(), "cg": one_iteration_short}, "q2")
    _zero({**q2_ns(), "iterations_geometric": 100}, "q2")  # "at most d"


def test_q3():
    _full(q3_ns(), "q3")

    def norm_ratio(matvec, dim, iters, generator):
        value, v = _power(matvec, dim, iters, generator)
        return matvec(v).norm().item(), v

    _zero({**q3_ns(), "power_iteration": norm_ratio}, "q3")  # loses the sign of -6

    def too_few(matvec, dim, iters, generator):
        return _power(matvec, dim, 3, generator)

    _zero({**q3_ns(), "power_iteration": too_few}, "q3")
    _zero({**q3_ns(), "sharpness": 1.0144}, "q3")  # |lambda_min|, not lambda_max


def test_q4():
    _full(q4_ns(), "q4")
    _full({"hutchinson": _hutchinson_gaussian}, "q4")

    def summed(matvec, dim, samples, generator):
        estimate, std_error = _hutchinson(matvec, dim, samples, generator)
        return estimate * samples, std_error * samples

    _zero({"hutchinson": summed}, "q4")

    def std_not_error(matvec, dim, samples, generator):
        estimate, std_error = _hutchinson(matvec, dim, samples, generator)
        return estimate, std_error * math.sqrt(samples)

    _zero({"hutchinson": std_not_error}, "q4")

    def uniform_probes(matvec, dim, samples, generator):
        z = torch.rand(samples, dim, generator=generator, dtype=F64)
        values = torch.stack([zi @ matvec(zi) for zi in z])
        return values.mean().item(), (values.std() / math.sqrt(samples)).item()

    _zero({"hutchinson": uniform_probes}, "q4")


def test_q5():
    _full(q5_ns(), "q5")
    _full({**q5_ns(), "gauss_newton_vp": _gnvp_by_jacobian}, "q5")

    def full_hessian(residual_fn, theta, v):
        return torch.autograd.functional.hessian(lambda t: 0.5 * (residual_fn(t) ** 2).sum(), theta) @ v

    _zero({**q5_ns(), "gauss_newton_vp": full_hessian}, "q5")
    _zero({**q5_ns(), "gauss_newton_vp": lambda r, t, v: 2 * _gnvp(r, t, v)}, "q5")
    _zero({**q5_ns(), "gauss_newton_vp": lambda r, t, v: torch.func.jvp(r, (t,), (v,))[1]}, "q5")  # J v only
    _zero({**q5_ns(), "gn_gap": 0.0}, "q5")


def test_q6():
    _full(q6_ns(), "q6")
    uniform = _counts("uniform")
    slope = float(np.polyfit(np.log([10, 100, 1000, 10000]), np.log(uniform), 1)[0])
    _zero({"cg_counts": uniform, "cg_slope": slope}, "q6")  # the wrong spectrum
    _zero({**q6_ns(), "cg_slope": 1.0}, "q6")  # the notes' O(kappa)
    counts = q6_ns()["cg_counts"]
    linear = float(np.polyfit([10, 100, 1000, 10000], counts, 1)[0])
    _zero({**q6_ns(), "cg_slope": linear}, "q6")  # not on log-log axes
