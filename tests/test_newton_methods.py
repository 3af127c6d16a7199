"""optlib.optim.newton beyond the plain step: Armijo line search, Levenberg-Marquardt damping, saddles, and
Newton's quadratic convergence on L2-regularised softmax regression (scikit-learn's digits)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from optlib import run
from optlib.optim.newton import LevenbergMarquardt, Newton
from optlib.stability import NonFiniteLossError

DT = torch.float64
#: scikit-learn 1.9.1's LogisticRegression(C=1, solver="lbfgs", tol=1e-12, max_iter=100000) on all of digits,
#: raw pixels: Σ cross-entropy + ½‖W‖² at its answer (tests/test_quasi_newton.py recomputes it with sklearn).
SKLEARN_OBJECTIVE = 17.032352708


def point(*values):
    return torch.tensor(values, dtype=DT, requires_grad=True)


# ------------------------------------------------------------------ softmax regression on digits

@pytest.fixture(scope="module")
def newton_on_digits():
    """Newton with Armijo backtracking from W = 0 on Σᵢ CE + ½‖W‖² over all 1797 digits (raw pixels 0..16).

    The intercepts are not penalised, so adding one constant to all ten of them changes nothing: the
    Hessian is singular along that direction. We **fix one class**: class 9's intercept is 0 and the other
    nine are free, which leaves the objective's minimum unchanged and makes the Hessian positive definite.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X, dtype=DT), torch.tensor(y)
    W = torch.zeros(10, 64, dtype=DT, requires_grad=True)
    b = torch.zeros(9, dtype=DT, requires_grad=True)

    def objective():
        logits = X @ W.T + torch.cat([b, b.new_zeros(1)])
        return F.cross_entropy(logits, y, reduction="sum") + 0.5 * (W**2).sum()

    opt = Newton([W, b], line_search="armijo")
    losses, grad_norms, alphas = [], [], []
    for _ in range(16):  # iterate k: f(x_k) and ‖∇f(x_k)‖ at the start of step k
        losses.append(opt.step(objective).item())
        grad_norms.append(torch.cat([W.grad.reshape(-1), b.grad]).norm().item())
        alphas.append(opt.state[W]["alpha"])
        if grad_norms[-1] < 1e-9:  # certifies the optimum: f − f* <= ‖g‖²/(2μ) with μ >= 1e-3 here
            break
    return losses, grad_norms, alphas, opt.state[W]


def test_newton_with_armijo_reaches_the_optimum_to_1e_minus_12_in_at_most_15_iterations(newton_on_digits):
    losses, grad_norms, alphas, state = newton_on_digits
    f_star = losses[-1]
    assert grad_norms[-1] < 1e-9
    assert f_star == pytest.approx(SKLEARN_OBJECTIVE, rel=1e-6) and f_star <= SKLEARN_OBJECTIVE
    errors = [(f - f_star) / f_star for f in losses]
    reached = next(k for k, e in enumerate(errors) if e <= 1e-12)
    assert reached <= 15  # measured: 11 iterations (loss at W = 0 is 4139)
    assert all(b <= a for a, b in zip(losses, losses[1:]))  # Armijo: every step decreases f
    assert not state["fallback"]


def test_newton_on_digits_converges_quadratically(newton_on_digits):
    losses, grad_norms, alphas, _ = newton_on_digits
    f_star = losses[-1]
    errors = [(f - f_star) / f_star for f in losses]
    # the final phase takes full steps, and the gradient norm roughly squares each step:
    # measured 1.3, 0.18, 5.3e-3, 6.3e-6, 1.2e-11
    final = [k for k, g in enumerate(grad_norms[:-1]) if g < 2.0]
    assert len(final) >= 4
    for k in final:
        assert alphas[k] == 1.0
        if grad_norms[k + 1] > 1e-10:
            assert grad_norms[k + 1] <= grad_norms[k] ** 2
    # and so do the relative errors of f (measured 2e-3, 4e-5, 3e-8, 5e-14: e_{k+1}/e_k² = 8, 24, 49)
    pairs = [(errors[k], errors[k + 1]) for k in range(len(errors) - 1) if 1e-15 < errors[k + 1] and errors[k] < 1e-2]
    assert len(pairs) >= 3
    assert all(e_next <= 100 * e**2 for e, e_next in pairs)


def softmax_problem(fix_one_class: bool, start: float = 0.0):
    """A small softmax regression (40 points, 4 features, 3 classes) and its parameters [W, b] set to ``start``."""
    gen = torch.Generator().manual_seed(0)
    X = 2 * torch.randn(40, 4, generator=gen, dtype=DT)
    y = torch.randint(0, 3, (40,), generator=gen)
    W = torch.full((3, 4), start, dtype=DT, requires_grad=True)
    b = torch.full((2 if fix_one_class else 3,), start, dtype=DT, requires_grad=True)

    def objective():
        intercepts = torch.cat([b, b.new_zeros(1)]) if fix_one_class else b
        return F.cross_entropy(X @ W.T + intercepts, y, reduction="sum") + 0.5 * (W**2).sum()

    return objective, [W, b]


def hessian(objective, params):
    """∇²f at the parameters, row by row by double backpropagation."""
    grads = torch.autograd.grad(objective(), params, create_graph=True)
    g = torch.cat([gr.reshape(-1) for gr in grads])
    rows = [torch.autograd.grad(g[i], params, retain_graph=True) for i in range(len(g))]
    return torch.stack([torch.cat([r.reshape(-1) for r in row]) for row in rows]).detach()


def test_free_softmax_intercepts_make_the_hessian_singular_and_lm_damping_copes():
    objective, params = softmax_problem(fix_one_class=False)
    H = hessian(objective, params)
    eigvals, eigvecs = torch.linalg.eigh(H)
    assert eigvals[0].abs() < 1e-12 * eigvals[-1]  # a null direction: the three intercepts together
    torch.testing.assert_close(eigvecs[-3:, 0].abs(), torch.full((3,), 3**-0.5, dtype=DT))
    assert eigvecs[:-3, 0].abs().max() < 1e-12
    lm = LevenbergMarquardt(params)
    for _ in range(15):
        lm.step(objective)
    fixed, fixed_params = softmax_problem(fix_one_class=True)
    newton = Newton(fixed_params, line_search="armijo")
    for _ in range(10):
        newton.step(fixed)
    assert objective().item() == pytest.approx(fixed().item(), rel=1e-13)


# ------------------------------------------------------------------ a saddle with a floor: f = x² − y² + y⁴/4

def saddle(p):
    """Saddle at the origin, minima f = −1 at (0, ±√2); H = diag(2, 3y² − 2) is indefinite for |y| < √(2/3)."""
    return p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4


START = (0.1, 0.5)
MINIMUM = torch.tensor([0.0, math.sqrt(2.0)], dtype=DT)


def downhill(values):
    """Each value at most the previous one (up to the rounding of f, where LM trusts its model)."""
    return all(b <= a + 1e-15 * abs(a) for a, b in zip(values, values[1:]))


def run_from_start(make, steps):
    p = point(*START)
    opt = make([p])
    values = [saddle(p).item()]
    for _ in range(steps):
        opt.step(lambda: saddle(p))
        values.append(saddle(p).item())
    return p.detach(), values, opt


def test_plain_newton_goes_uphill_onto_the_saddle():
    p = point(*START)
    g = torch.autograd.grad(saddle(p), p)[0]
    H = torch.autograd.functional.hessian(saddle, p.detach())
    step = -torch.linalg.solve(H, g)
    assert g @ step > 0  # the Newton direction is an ascent direction
    x, values, _ = run_from_start(Newton, 6)
    assert values[1] > values[0]  # -0.224 -> -0.040
    torch.testing.assert_close(x, torch.zeros(2, dtype=DT), rtol=0, atol=1e-12)
    assert values[-1] > values[0]


def test_saddle_free_newton_escapes_to_the_minimum():
    x, values, _ = run_from_start(lambda ps: Newton(ps, mode="saddle_free"), 12)
    assert values[1] < values[0]
    torch.testing.assert_close(x, MINIMUM, rtol=0, atol=1e-10)


def test_fixed_damping_above_the_negative_curvature_escapes():
    x, values, _ = run_from_start(lambda ps: Newton(ps, damping=3.0), 60)
    assert all(b < a for a, b in zip(values, values[1:]) if a > -1 + 1e-12)
    torch.testing.assert_close(x, MINIMUM, rtol=0, atol=1e-8)


def test_armijo_line_search_falls_back_to_steepest_descent_and_escapes():
    p = point(*START)
    opt = Newton([p], line_search="armijo")
    opt.step(lambda: saddle(p))
    assert opt.state[p]["fallback"] and opt.state[p]["alpha"] == 1.0
    assert saddle(p).item() < saddle(torch.tensor(START, dtype=DT)).item()
    for _ in range(8):
        opt.step(lambda: saddle(p))
    assert not opt.state[p]["fallback"] and opt.state[p]["alpha"] == 1.0
    torch.testing.assert_close(p.detach(), MINIMUM, rtol=0, atol=1e-10)


def test_levenberg_marquardt_escapes_and_only_goes_downhill():
    x, values, opt = run_from_start(LevenbergMarquardt, 25)
    assert downhill(values)
    assert values[1] < values[0]
    torch.testing.assert_close(x, MINIMUM, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ Levenberg-Marquardt mechanics

def test_lm_on_a_quadratic_predicts_exactly_and_lowers_the_damping():
    A = torch.tensor([[3.0, 1.0], [1.0, 2.0]], dtype=DT)
    p = point(1.0, -2.0)
    opt = LevenbergMarquardt([p], damping=1.0, factor=4.0)
    dampings = []
    for _ in range(5):
        opt.step(lambda: 0.5 * p @ A @ p)
        assert opt.state[p]["rho"] == pytest.approx(1.0, rel=1e-9) and opt.state[p]["accepted"]
        dampings.append(opt.state[p]["damping"])
    assert dampings == [0.25, 0.0625, 0.015625, 0.00390625, 0.0009765625]


def test_lm_rejects_a_bad_step_keeps_x_and_raises_the_damping():
    # pseudo-Huber f = √(1 + x²) at x = 2: H = 0.089, g = 0.89, so the Newton step lands at x = −8 (ρ < 0)
    p = point(2.0)
    opt = LevenbergMarquardt([p], damping=1e-6, factor=4.0)

    def f():
        return torch.sqrt(1 + p**2).sum()

    state, rejected = None, 0
    for k in range(40):
        if abs(p.item()) < 1e-12:
            break
        x_before, value = p.detach().clone(), f().item()
        lam = state["damping"] if state else 1e-6
        opt.step(f)
        state = opt.state[p]
        if not state["accepted"]:
            rejected += 1
            assert torch.equal(p.detach(), x_before) and state["rho"] < 0.25
            assert state["damping"] >= 4 * lam  # (more when H + λI had to be made positive definite)
        else:
            assert f().item() <= value
        if k == 0:
            assert not state["accepted"] and state["damping"] == 4e-6
    assert rejected >= 5  # λ must grow from 1e-6 to about H = 0.09 before a step is accepted
    assert abs(p.item()) < 1e-12 and k < 39
    assert state["evaluations"] == 2 * state["step"] == 2 * k


def test_lm_rejection_on_rosenbrock_and_convergence():
    p = point(-1.2, 1.0)
    opt = LevenbergMarquardt([p], damping=1e-3)
    values, accepted = [], []
    for _ in range(80):
        opt.step(lambda: (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2)
        values.append(((1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2).item())
        accepted.append(opt.state[p]["accepted"])
    assert not all(accepted)  # some trial steps were rejected (x unchanged)
    assert downhill(values)
    torch.testing.assert_close(p.detach(), torch.ones(2, dtype=DT), rtol=0, atol=1e-10)


def test_lm_nan_trial_counts_as_rejected():
    p = point(1.0)
    opt = LevenbergMarquardt([p], damping=1e-3)

    def f():
        value = ((p - 3) ** 2).sum() - 4 * p.sum()  # minimum at 5, the full step lands there
        return torch.where(p.detach().sum() > 4, torch.full_like(value, math.nan), value)

    opt.step(f)
    assert not opt.state[p]["accepted"] and opt.state[p]["rho"] == -math.inf and p.item() == 1.0


# ------------------------------------------------------------------ the line search option

def test_armijo_newton_equals_plain_newton_when_full_steps_pass():
    objective, params = softmax_problem(fix_one_class=True, start=0.1)
    other_objective, other = softmax_problem(fix_one_class=True, start=0.1)
    searched, plain = Newton(params, line_search="armijo"), Newton(other)
    for _ in range(6):
        searched.step(objective)
        plain.step(other_objective)
        assert searched.state[params[0]]["alpha"] == 1.0
        for a, b in zip(params, other):
            torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)


def test_armijo_backtracks_from_lr_and_counts_evaluations():
    p = point(-1.2, 1.0)
    opt = Newton([p], line_search="armijo", lr=4.0, shrink=0.5)

    def rosen():
        return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

    alphas = []
    for _ in range(30):
        opt.step(rosen)
        alphas.append(opt.state[p]["alpha"])
    state = opt.state[p]
    assert state["evaluations"] > 30 + alphas.count(4.0)  # the other steps backtracked from α = 4
    assert all(a == 0 or math.log2(a).is_integer() for a in alphas) and min(a for a in alphas if a) < 1
    torch.testing.assert_close(p.detach(), torch.ones(2, dtype=DT), rtol=0, atol=1e-8)


def test_line_search_at_a_critical_point_does_not_move():
    p = point(0.0, 0.0)
    opt = Newton([p], line_search="armijo")
    opt.step(lambda: (p**2).sum())
    assert p.detach().abs().max() == 0 and opt.state[p]["alpha"] == 0.0


def test_newton_and_lm_work_with_run_minimize():
    for method, kwargs in ((Newton, dict(line_search="armijo")), (LevenbergMarquardt, {})):
        trace = run.minimize(saddle, list(START), method, steps=25, **kwargs)
        assert trace.loss[-1] == pytest.approx(-1.0, abs=1e-12)


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs, message", [
    (dict(line_search="wolfe"), r"line_search must be one of \[None, 'armijo'\], got 'wolfe'"),
    (dict(line_search="armijo", c1=0.0), r"a line search needs c1 and shrink in \(0, 1\) and lr > 0"),
    (dict(line_search="armijo", shrink=0.0), r"a line search needs c1 and shrink"),
    (dict(line_search="armijo", lr=0.0), r"lr > 0"),
    (dict(c1=1.0), r"c1 must be in \[0.0, 1.0\)"),
    (dict(shrink=1.5), r"shrink must be in"),
])
def test_newton_line_search_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Newton([point(1.0)], **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(damping=0.0), r"damping must be a finite number > 0, got 0"),
    (dict(damping=-1.0), r"damping must be a finite number > 0"),
    (dict(factor=1.0), r"factor must be > 1, got 1.0"),
    (dict(factor=0.0), r"factor must be a finite number > 0"),
    (dict(eta=0.5), r"eta must be in \[0.0, 0.25\)"),
    (dict(mode="cubic"), r"mode must be one of"),
])
def test_lm_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LevenbergMarquardt([point(1.0)], **kwargs)


def test_lm_needs_a_closure_and_one_group():
    with pytest.raises(ValueError, match="LevenbergMarquardt.step needs a closure"):
        LevenbergMarquardt([point(1.0)]).step()
    with pytest.raises(ValueError, match="single param group"):
        LevenbergMarquardt([{"params": [point(1.0)]}, {"params": [point(2.0)]}]).step(lambda: torch.zeros(()))
    assert LevenbergMarquardt.closure_calls_backward is False


@pytest.mark.parametrize("make", [lambda ps: Newton(ps, line_search="armijo"), LevenbergMarquardt])
def test_nan_loss_raises_a_clear_error(make):
    p = point(1.0, 2.0)
    opt = make([p])
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at .* step 0: start from a point where the loss"):
        opt.step(lambda: (p**2).sum() * math.nan)


def test_plain_newton_leaves_nan_to_the_run_loop_as_before():
    """Without a line search Newton keeps its old behaviour: run.minimize's on_nonfinite decides."""
    trace = run.minimize(lambda x: (x**2).sum() * math.nan, [1.0, 2.0], Newton, steps=3, on_nonfinite="stop")
    assert trace.stopped is not None and "nan" in trace.stopped
