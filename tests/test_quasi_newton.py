"""optlib.optim.quasi_newton: the two-loop recursion, the BFGS update, and BFGS / L-BFGS against SciPy,
torch.optim.LBFGS and scikit-learn."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch
import torch.nn.functional as F

from optlib import run
from optlib.optim.quasi_newton import BFGS, LBFGS, bfgs_update, curvature_ok, two_loop
from optlib.stability import NonFiniteLossError

DT = torch.float64


def closure_for(opt, fn, x):
    def closure():
        opt.zero_grad()
        loss = fn(x)
        loss.backward()
        return loss

    return closure


def rosen(x):
    """scipy.optimize.rosen (the chained Rosenbrock) in torch."""
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def random_pairs(d, m, seed):
    """m pairs (s, y = A s) for a random SPD A, so every sᵀy > 0 (as after a Wolfe line search)."""
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(d, d, generator=gen, dtype=DT)
    A = B @ B.T + 0.5 * torch.eye(d, dtype=DT)
    s_list = [torch.randn(d, generator=gen, dtype=DT) for _ in range(m)]
    return s_list, [A @ s for s in s_list], torch.randn(d, generator=gen, dtype=DT)


# ------------------------------------------------------------------ two_loop and the BFGS update

@pytest.mark.parametrize("m", [1, 3, 10])
def test_two_loop_equals_the_explicit_lbfgs_matrix_times_the_gradient(m):
    d = 7
    s_list, y_list, g = random_pairs(d, m, seed=m)
    gamma = float(s_list[-1] @ y_list[-1] / (y_list[-1] @ y_list[-1]))
    H = gamma * torch.eye(d, dtype=DT)  # H⁰ = γI, then the BFGS update with each pair, oldest first
    for s, y in zip(s_list, y_list):
        rho = 1 / (y @ s)
        eye = torch.eye(d, dtype=DT)
        H = (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
    torch.testing.assert_close(two_loop(g, s_list, y_list), H @ g, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(two_loop(g, s_list, y_list, gamma=2.5),
                               _explicit(s_list, y_list, 2.5) @ g, rtol=1e-12, atol=1e-12)


def _explicit(s_list, y_list, gamma):
    H = gamma * torch.eye(len(s_list[0]), dtype=DT)
    for s, y in zip(s_list, y_list):
        H = bfgs_update(H, s, y)
    return H


def test_two_loop_without_pairs_is_gamma_times_the_gradient():
    g = torch.tensor([1.0, -2.0, 3.0], dtype=DT)
    torch.testing.assert_close(two_loop(g, [], []), g)
    torch.testing.assert_close(two_loop(g, [], [], gamma=0.5), 0.5 * g)
    with pytest.raises(ValueError, match="same length, got 1 and 0"):
        two_loop(g, [g], [])


def test_bfgs_update_is_the_product_form_and_satisfies_the_secant_condition():
    s_list, y_list, _ = random_pairs(6, 4, seed=0)
    H = torch.eye(6, dtype=DT)
    for s, y in zip(s_list, y_list):
        rho = 1 / (y @ s)
        eye = torch.eye(6, dtype=DT)
        product = (eye - rho * torch.outer(s, y)) @ H @ (eye - rho * torch.outer(y, s)) + rho * torch.outer(s, s)
        H = bfgs_update(H, s, y)
        torch.testing.assert_close(H, product, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(H @ y, s, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(H, H.T)
        assert torch.linalg.eigvalsh(H).min() > 0


def test_curvature_ok():
    s = torch.tensor([1.0, 0.0], dtype=DT)
    assert curvature_ok(s, torch.tensor([2.0, 1.0], dtype=DT))
    assert not curvature_ok(s, torch.tensor([-2.0, 1.0], dtype=DT))
    assert not curvature_ok(s, torch.tensor([0.0, 1.0], dtype=DT))
    assert not curvature_ok(s, torch.tensor([1e-20, 1.0], dtype=DT))  # sᵀy ≈ 0 relative to ‖s‖‖y‖


# ------------------------------------------------------------------ L-BFGS on Rosenbrock, against SciPy and torch

def lbfgs_run(x0, fn=rosen, dtype=DT, tolerance_grad=1e-6, **kwargs):
    x = torch.tensor(x0, dtype=dtype, requires_grad=True)
    opt = LBFGS([x], max_iter=10_000, max_eval=100_000, tolerance_grad=tolerance_grad, tolerance_change=0.0,
                history_size=10, **kwargs)
    opt.step(closure_for(opt, fn, x))
    return x.detach(), opt.state[x]


def scipy_lbfgsb(x0):
    return scipy.optimize.minimize(scipy.optimize.rosen, x0, jac=scipy.optimize.rosen_der, method="L-BFGS-B",
                                   options=dict(maxcor=10, gtol=1e-6, ftol=0.0, maxiter=10_000, maxfun=100_000))


def test_lbfgs_on_2d_rosenbrock_uses_no_more_evaluations_than_scipy_and_torch():
    x0 = np.array([-1.2, 1.0])
    x, state = lbfgs_run(x0)
    ours = state["func_evals"]
    assert state["stop_reason"] == "tolerance_grad"
    scipy_result = scipy_lbfgsb(x0)  # 37 iterations, 45 evaluations (SciPy 1.17)
    assert scipy_result.success
    y = torch.tensor(x0, dtype=DT, requires_grad=True)
    reference = torch.optim.LBFGS([y], lr=1, max_iter=10_000, max_eval=100_000, tolerance_grad=1e-6,
                                  tolerance_change=0.0, history_size=10, line_search_fn="strong_wolfe")
    reference.step(closure_for(reference, rosen, y))
    torch_evals = reference.state[reference._params[0]]["func_evals"]  # 36 iterations, 45 evaluations
    assert ours <= 45 and ours <= scipy_result.nfev and ours <= torch_evals
    assert state["n_iter"] <= 37
    np.testing.assert_allclose(x.numpy(), scipy_result.x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x.numpy(), [1.0, 1.0], rtol=0, atol=1e-5)
    x.requires_grad_(True)
    rosen(x).backward()
    assert x.grad.abs().max() <= 1e-6


def test_lbfgs_on_100d_rosenbrock_uses_no_more_evaluations_than_scipy():
    x0 = np.tile([-1.2, 1.0], 50)
    x, state = lbfgs_run(x0)
    scipy_result = scipy_lbfgsb(x0)  # 530 iterations, 631 evaluations (SciPy 1.17)
    assert scipy_result.success
    assert state["stop_reason"] == "tolerance_grad"
    assert state["func_evals"] <= 631 and state["func_evals"] <= scipy_result.nfev  # measured: 619
    np.testing.assert_allclose(x.numpy(), scipy_result.x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x.numpy(), np.ones(100), rtol=0, atol=1e-5)


def test_lbfgs_in_float32():
    x, state = lbfgs_run([-1.2, 1.0], dtype=torch.float32, tolerance_grad=1e-3)
    assert x.dtype == torch.float32 and all(s.dtype == torch.float32 for s in state["s"])
    assert state["stop_reason"] in ("tolerance_grad", "tolerance_change", "line_search_failed")
    np.testing.assert_allclose(x.numpy(), [1.0, 1.0], atol=2e-3)


def test_lbfgs_keeps_history_size_pairs_and_counts_evaluations_across_calls():
    x = torch.tensor(np.tile([-1.2, 1.0], 5), dtype=DT, requires_grad=True)
    calls = []

    def fn(v):
        calls.append(1)
        return rosen(v)

    opt = LBFGS([x], max_iter=15, max_eval=1000, history_size=4)
    closure = closure_for(opt, fn, x)
    opt.step(closure)
    state = opt.state[x]
    assert len(state["s"]) == len(state["y"]) == 4
    assert state["n_iter"] == 15 and state["func_evals"] == len(calls)
    opt.step(closure)
    assert state["n_iter"] == 30 and state["func_evals"] == len(calls)
    # each pair satisfies the curvature condition
    assert all(float(s @ y) > 0 for s, y in zip(state["s"], state["y"]))


def test_lbfgs_max_eval_stops_a_call():
    x = torch.tensor([-1.2, 1.0], dtype=DT, requires_grad=True)
    opt = LBFGS([x], max_iter=1000, max_eval=12)
    opt.step(closure_for(opt, rosen, x))
    assert opt.state[x]["stop_reason"] == "max_eval"
    assert 12 <= opt.state[x]["func_evals"] < 12 + 25


def test_lbfgs_state_dict_round_trip_continues_the_same_run():
    x0 = np.tile([-1.2, 1.0], 3)
    a = torch.tensor(x0, dtype=DT, requires_grad=True)
    opt_a = LBFGS([a], max_iter=8)
    opt_a.step(closure_for(opt_a, rosen, a))
    b = a.detach().clone().requires_grad_(True)
    opt_b = LBFGS([b], max_iter=8)
    opt_b.load_state_dict(opt_a.state_dict())
    opt_a.step(closure_for(opt_a, rosen, a))
    opt_b.step(closure_for(opt_b, rosen, b))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_lbfgs_fixed_step_without_line_search():
    A = torch.diag(torch.tensor([1.0, 4.0], dtype=DT))
    x = torch.tensor([1.0, 1.0], dtype=DT, requires_grad=True)
    opt = LBFGS([x], lr=0.2, line_search=None, max_iter=200, max_eval=200, tolerance_grad=1e-10,
                tolerance_change=0.0)
    opt.step(closure_for(opt, lambda v: 0.5 * v @ A @ v, x))
    assert x.detach().abs().max() < 1e-9


def test_lbfgs_works_with_run_minimize():
    trace = run.minimize(rosen, [-1.2, 1.0], LBFGS, steps=5, max_iter=20)
    assert trace.loss[-1] < 1e-10 and trace.loss[0] == pytest.approx(24.2)
    assert all(b <= a for a, b in zip(trace.loss, trace.loss[1:]))


# ------------------------------------------------------------------ L-BFGS on regularised softmax regression

def digits_problem():
    """scikit-learn's digits as LogisticRegression sees them here: all 1797 images, raw pixels 0..16.

    ``optlib.data.load_digits`` divides by 16, splits off a test set and standardizes; none of that
    reproduces the reported objective 17.032352, the full unscaled set does.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X, y


def softmax_objective(X, y, W, b):
    """Σᵢ cross-entropy + ½‖W‖² (C = 1, the intercept b not penalised): scikit-learn's objective."""
    return F.cross_entropy(X @ W.T + b, y, reduction="sum") + 0.5 * (W**2).sum()


def sklearn_objective(X, y) -> float:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # BLAS threads on a busy 2-core machine made the fit 100x slower
        clf = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-12, max_iter=100_000).fit(X, y)
    Xt, yt = torch.tensor(X, dtype=DT), torch.tensor(y)
    W, b = torch.tensor(clf.coef_, dtype=DT), torch.tensor(clf.intercept_, dtype=DT)
    return softmax_objective(Xt, yt, W, b).item()


def test_lbfgs_reaches_scikit_learns_logistic_regression_objective():
    X, y = digits_problem()
    target = sklearn_objective(X, y)  # 17.032352708 (scikit-learn 1.9.1)
    assert target == pytest.approx(17.032352, abs=1e-6)
    Xt, yt = torch.tensor(X, dtype=DT), torch.tensor(y)
    W = torch.zeros(10, 64, dtype=DT, requires_grad=True)
    b = torch.zeros(10, dtype=DT, requires_grad=True)
    opt = LBFGS([W, b], max_iter=100, max_eval=10**6, tolerance_grad=0.0, tolerance_change=0.0, history_size=10)

    def closure():
        opt.zero_grad()
        loss = softmax_objective(Xt, yt, W, b)
        loss.backward()
        return loss

    for _ in range(80):  # at most 8000 iterations; measured: 3000 iterations, 3250 evaluations
        opt.step(closure)
        with torch.no_grad():
            value = softmax_objective(Xt, yt, W, b).item()
        if value <= target * (1 + 1e-6):
            break
    assert abs(value - target) <= 1e-6 * target
    assert opt.state[W]["n_iter"] < 4536  # scikit-learn's own L-BFGS iterations to its answer


# ------------------------------------------------------------------ BFGS

def small_quadratic(d=5, seed=0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    A = Q @ np.diag(np.geomspace(1.0, 30.0, d)) @ Q.T
    return A, rng.standard_normal(d)


def test_bfgs_matches_scipy_with_exact_line_searches_and_ends_in_d_steps():
    """On a quadratic, with exact line searches (c2 small: cubic interpolation is exact there), BFGS makes the
    conjugate-gradient iterates from any H₀ = γI: SciPy's (H₀ = I) and ours (rescaled H₀) coincide."""
    A, c = small_quadratic()
    d = len(c)
    x0 = np.ones(d)
    scipy_iterates = [x0]
    result = scipy.optimize.minimize(lambda v: 0.5 * v @ A @ v - c @ v, x0, jac=lambda v: A @ v - c,
                                     method="BFGS", callback=lambda xk: scipy_iterates.append(xk.copy()),
                                     options=dict(gtol=1e-10, c1=1e-4, c2=1e-3))
    assert result.nit == d
    At, ct = torch.tensor(A), torch.tensor(c)
    x = torch.tensor(x0, requires_grad=True)
    opt = BFGS([x], max_iter=1, tolerance_grad=1e-10, tolerance_change=0.0, c1=1e-4, c2=1e-3)
    closure = closure_for(opt, lambda v: 0.5 * v @ At @ v - ct @ v, x)
    for k in range(1, d + 1):
        opt.step(closure)
        np.testing.assert_allclose(x.detach().numpy(), scipy_iterates[k], rtol=0, atol=1e-9)
    assert opt.state[x]["n_iter"] == d
    np.testing.assert_allclose(x.detach().numpy(), np.linalg.solve(A, c), rtol=0, atol=1e-10)
    # after d exact steps on a quadratic, H is the inverse Hessian
    np.testing.assert_allclose(opt.state[x]["inverse_hessian"].numpy(), np.linalg.inv(A), rtol=0, atol=1e-8)


def test_bfgs_inverse_hessian_satisfies_the_secant_condition_after_each_update():
    x = torch.tensor(np.tile([-1.2, 1.0], 2), dtype=DT, requires_grad=True)
    opt = BFGS([x], max_iter=1)
    closure = closure_for(opt, rosen, x)
    for _ in range(12):
        x_before = x.detach().clone()
        closure()
        g_before = x.grad.detach().clone()
        opt.step(closure)
        s, y = x.detach() - x_before, x.grad.detach() - g_before
        H = opt.state[x]["inverse_hessian"]
        torch.testing.assert_close(H @ y, s, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(H, H.T, rtol=1e-12, atol=1e-14)
        assert torch.linalg.eigvalsh(H).min() > 0
    assert opt.state[x]["skipped"] == 0


def test_bfgs_on_rosenbrock_in_float64_and_float32():
    for dtype, tol, atol in ((DT, 1e-8, 1e-7), (torch.float32, 1e-3, 2e-3)):
        x = torch.tensor([-1.2, 1.0], dtype=dtype, requires_grad=True)
        opt = BFGS([x], max_iter=200, tolerance_grad=tol)
        opt.step(closure_for(opt, rosen, x))
        assert x.dtype == dtype and opt.state[x]["inverse_hessian"].dtype == dtype
        np.testing.assert_allclose(x.detach().numpy(), [1.0, 1.0], atol=atol)
    assert opt.state[x]["func_evals"] < 100


def test_bfgs_skips_a_pair_with_negative_curvature():
    """Without a line search, a fixed step along negative curvature gives sᵀy < 0: the update is skipped."""
    x = torch.tensor([0.5], dtype=DT, requires_grad=True)
    opt = BFGS([x], lr=0.1, line_search=None, max_iter=3, max_eval=10)
    opt.step(closure_for(opt, lambda v: -(v**2).sum(), x))
    assert opt.state[x]["skipped"] == 3 and opt.state[x]["n_iter"] == 3
    torch.testing.assert_close(opt.state[x]["inverse_hessian"], torch.eye(1, dtype=DT))


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("cls", [BFGS, LBFGS])
@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0.0), r"lr must be a finite number > 0"),
    (dict(max_iter=0), r"max_iter must be a positive integer"),
    (dict(max_eval=0), r"max_eval must be a positive integer"),
    (dict(tolerance_grad=-1.0), r"tolerance_grad must be >= 0"),
    (dict(tolerance_change=-1e-9), r"tolerance_change must be >= 0"),
    (dict(line_search="armijo"), r"line_search must be one of"),
    (dict(c1=0.9, c2=0.5), r"0 < c1 < c2 < 1, got c1=0.9, c2=0.5"),
    (dict(c1=0.0), r"0 < c1 < c2 < 1"),
    (dict(c2=1.0), r"c2 must be in"),
])
def test_bad_hyperparameters_raise(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls([torch.zeros(2, requires_grad=True)], **kwargs)


def test_bad_history_size_and_param_groups_raise():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="history_size must be a positive integer, got 0"):
        LBFGS([x], history_size=0)
    y = torch.zeros(1, requires_grad=True)
    for cls in (BFGS, LBFGS):
        with pytest.raises(ValueError, match="single param group"):
            cls([{"params": [x]}, {"params": [y]}])
        with pytest.raises(ValueError, match="needs a closure"):
            cls([x]).step()


@pytest.mark.parametrize("cls", [BFGS, LBFGS])
def test_nan_loss_raises_a_clear_error(cls):
    x = torch.tensor([1.0, 2.0], dtype=DT, requires_grad=True)
    opt = cls([x])
    with pytest.raises(NonFiniteLossError, match=rf"{cls.__name__}: the loss is nan .* at iteration 0"):
        opt.step(closure_for(opt, lambda v: (v**2).sum() * math.nan, x))
    # a NaN at a trial point of the line search only shortens the step (lr = 10 overshoots into it)
    x = torch.tensor([0.1], dtype=DT, requires_grad=True)
    opt = cls([x], lr=10.0, tolerance_grad=1e-9)
    seen = []

    def fn(v):
        seen.append(v.item())
        return torch.where(v.abs() > 4, math.nan, (v - 1) ** 2).sum()

    opt.step(closure_for(opt, fn, x))
    assert max(seen) > 4 and abs(x.item() - 1.0) < 1e-8
