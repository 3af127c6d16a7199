"""Checks for solutions/05_momentum.ipynb: momentum's two forms, velocity noise, critical damping,
Nesterov's look-ahead, the accelerated method's O(1/t²), and steps against the condition number.

Every reference is computed here from closed forms, optlib or a short loop; the learner's
functions are called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from optlib import convergence, functions, optim
from optlib.grading import CheckFailed, Question, as_number, expect, expect_close, require, require_number

F64 = torch.float64


def _pair(out, name: str):
    expect(isinstance(out, (tuple, list)) and len(out) == 2,
           f"`{name}` should return a pair (new point, new velocity), got {type(out).__name__}")
    for item in out:
        expect(isinstance(item, torch.Tensor), f"`{name}` should return tensors, got {type(item).__name__}")
    return out


def _agrees(actual: float, expected: float, what: str, hint: str, *, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Like expect_close for a measured value, without revealing the reference value."""
    expect(abs(actual - expected) <= atol + rtol * abs(expected),
           f"{what} is {actual:.6g}, which does not match an independent run of the experiment: {hint}")


def _spd(n: int, gen: torch.Generator) -> torch.Tensor:
    m = torch.randn(n, n, generator=gen, dtype=F64)
    return m @ m.T / n + 0.1 * torch.eye(n, dtype=F64)


def _dict_of_numbers(ns, name: str, keys) -> dict:
    value = require(ns, name, dict)
    out = {}
    for k in keys:
        expect(k in value, f"`{name}` should have the key {k!r} (keys found: {sorted(value)[:6]})")
        out[k] = as_number(value[k], f"`{name}[{k!r}]`")
    return out


# ---------------------------------------------------------------- q1
def q1(ns):
    tstep = require(ns, "torch_momentum_step", "callable")
    cstep = require(ns, "classical_momentum_step", "callable")
    gen = torch.Generator().manual_seed(501)
    x, v, grad = (torch.randn(4, generator=gen, dtype=F64) for _ in range(3))
    saved = [x.clone(), v.clone(), grad.clone()]
    lr, rho = 0.3, 0.7
    x_new, v_new = _pair(tstep(x, v, grad, lr, rho), "torch_momentum_step")
    expect(all(torch.equal(a, b) for a, b in zip((x, v, grad), saved)),
           "torch_momentum_step modified its arguments in place: return new tensors instead")
    expect_close(v_new, rho * saved[1] + saved[2], rtol=1e-10, what="v_new of torch_momentum_step")
    expect_close(x_new, saved[0] - lr * (rho * saved[1] + saved[2]), rtol=1e-10,
                 what="x_new of torch_momentum_step (the step uses the NEW velocity)")
    x_new, u_new = _pair(cstep(x, v, grad, lr, rho), "classical_momentum_step")
    expect(all(torch.equal(a, b) for a, b in zip((x, v, grad), saved)),
           "classical_momentum_step modified its arguments in place: return new tensors instead")
    expect_close(u_new, rho * saved[1] - lr * saved[2], rtol=1e-10, what="u_new of classical_momentum_step")
    expect_close(x_new, saved[0] + rho * saved[1] - lr * saved[2], rtol=1e-10, what="x_new of classical_momentum_step")
    # on a fresh quadratic the two forms must give the same iterates
    A = _spd(3, gen)
    xt = xc = torch.randn(3, generator=gen, dtype=F64)
    vt, uc = torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
    for _ in range(40):
        xt, vt = tstep(xt, vt, A @ xt, 0.2, 0.8)
        xc, uc = cstep(xc, uc, A @ xc, 0.2, 0.8)
    expect_close(xc, xt, rtol=1e-9, atol=1e-12, what="classical iterate after 40 steps (vs your PyTorch form)")
    gap = require_number(ns, "formulation_gap")
    expect(0 <= gap < 1e-10, f"`formulation_gap` is {gap:.3g}: with a constant lr the two forms should agree "
                             "to round-off (compare x_1..x_100 from the same start, lr 0.01, rho 0.9)")


# ---------------------------------------------------------------- q2
def _velocity_std(rho: float) -> float:
    return math.sqrt((1 - rho) / (1 + rho))


def q2(ns):
    pred = require(ns, "predicted_std", "callable")
    for rho in (0.3, 0.75, 0.95, 0.999):
        expect_close(as_number(pred(rho), f"predicted_std({rho})"), _velocity_std(rho), rtol=1e-8,
                     what=f"predicted_std({rho})")
    stds = _dict_of_numbers(ns, "measured_std", (0.5, 0.9, 0.99))
    means = _dict_of_numbers(ns, "measured_mean", (0.5, 0.9, 0.99))
    for rho in (0.5, 0.9, 0.99):
        _agrees(means[rho], 1.0, f"`measured_mean[{rho}]`", "average (1 - rho) v over the 1000 coordinates",
                atol=0.1)
        _agrees(stds[rho], _velocity_std(rho), f"`measured_std[{rho}]`",
                "take the std over the 1000 coordinates of (1 - rho) v after 3000 steps", rtol=0.1)


# ---------------------------------------------------------------- q3
def q3(ns):
    crit = require(ns, "critical_momentum", "callable")
    rate = require(ns, "critical_rate", "callable")
    for lr, lam in ((0.02, 3.0), (0.5, 0.5), (1e-3, 10.0), (0.1, 9.0)):
        s = math.sqrt(lr * lam)
        rho = as_number(crit(lr, lam), f"critical_momentum({lr}, {lam})")
        expect_close(rho, (1 - s) ** 2, rtol=1e-8, what=f"critical_momentum({lr}, {lam})")
        # the polynomial really has a double root there
        b = 1 + rho - lr * lam
        expect(abs(b * b - 4 * rho) < 1e-8, f"critical_momentum({lr}, {lam}) does not give a double root")
        expect_close(as_number(rate(lr, lam), f"critical_rate({lr}, {lam})"),
                     convergence.spectral_radius(lr, lam, (1 - s) ** 2),
                     rtol=1e-6, what=f"critical_rate({lr}, {lam})")
    best = require_number(ns, "best_rho_on_grid")
    radii = [convergence.spectral_radius(0.01, 1.0, float(r)) for r in np.round(np.arange(0.0, 1.0, 0.01), 2)]
    _agrees(best, float(np.round(np.arange(0.0, 1.0, 0.01), 2)[int(np.argmin(radii))]), "`best_rho_on_grid`",
            "take the grid value with the smallest spectral radius at lr 0.01, curvature 1", atol=1e-9)


# ---------------------------------------------------------------- q4
def q4(ns):
    step = require(ns, "nesterov_step", "callable")
    gen = torch.Generator().manual_seed(504)
    A = _spd(3, gen)
    b = torch.randn(3, generator=gen, dtype=F64)

    def grad_fn(z):
        return A @ z - b

    x, u = torch.randn(3, generator=gen, dtype=F64), torch.randn(3, generator=gen, dtype=F64)
    lr, rho = 0.15, 0.8
    saved = (x.clone(), u.clone())
    x_new, u_new = _pair(step(x, u, grad_fn, lr, rho), "nesterov_step")
    expect(torch.equal(x, saved[0]) and torch.equal(u, saved[1]),
           "nesterov_step modified its arguments in place: return new tensors instead")
    ref_u = rho * u - lr * grad_fn(x + rho * u)
    if not torch.allclose(u_new, ref_u, rtol=1e-9, atol=1e-12):
        at_x = rho * u - lr * grad_fn(x)
        hint = (" (this is the heavy-ball velocity: the gradient must be taken at the look-ahead point x + rho u)"
                if torch.allclose(u_new, at_x, rtol=1e-9, atol=1e-12) else "")
        raise CheckFailed(f"u_new of nesterov_step is wrong{hint}")
    expect_close(x_new, x + ref_u, rtol=1e-9, atol=1e-12, what="x_new of nesterov_step")
    # change of variables: the look-ahead points are torch's Nesterov iterates
    x, u = torch.randn(3, generator=gen, dtype=F64), torch.zeros(3, dtype=F64)
    p = x.clone().requires_grad_(True)
    opt = optim.SGD([p], lr=lr, momentum=rho, nesterov=True)
    for _ in range(30):
        x, u = step(x, u, grad_fn, lr, rho)
        p.grad = grad_fn(p.detach())
        opt.step()
    expect_close(x + rho * u, p.detach(), rtol=1e-9, atol=1e-12,
                 what="look-ahead point x + rho u after 30 steps (vs SGD(nesterov=True))")
    gap = require_number(ns, "lookahead_gap")
    expect(0 <= gap < 1e-9, f"`lookahead_gap` is {gap:.3g}: SGD's parameter should equal x_t + rho u_t to round-off "
                            "(compare after the same number of steps, both from (-1.2, 1))")
    plain = require_number(ns, "plain_gap")
    expect(plain > 1e-4, f"`plain_gap` is {plain:.3g}: SGD's parameter and your x_t should be different sequences")


# ---------------------------------------------------------------- q5
def _reference_agd(grad_fn, x0, L, steps):
    x_prev, y, xs = x0.clone(), x0.clone(), [x0.clone()]
    for k in range(steps):
        x_next = y - grad_fn(y) / L
        y = x_next + (k / (k + 3)) * (x_next - x_prev)
        x_prev = x_next
        xs.append(x_next)
    return torch.stack(xs)


def q5(ns):
    agd = require(ns, "accelerated_gradient", "callable")
    gen = torch.Generator().manual_seed(505)
    A = _spd(6, gen)
    x_star = torch.randn(6, generator=gen, dtype=F64)
    L = torch.linalg.eigvalsh(A).max().item()

    def grad_fn(z):
        return A @ (z - x_star)

    x0 = torch.randn(6, generator=gen, dtype=F64)
    out = agd(grad_fn, x0.clone(), L, 25)
    expect(isinstance(out, torch.Tensor), f"accelerated_gradient should return a tensor, got {type(out).__name__}")
    expect(tuple(out.shape) == (26, 6), f"accelerated_gradient(..., steps=25) on a 6-dim problem should return shape "
                                        f"(26, 6) (x_0 to x_25), got {tuple(out.shape)}")
    ref = _reference_agd(grad_fn, x0, L, 25)
    expect_close(out[0], x0, rtol=0, atol=0, what="row 0 of accelerated_gradient (should be x0)")
    expect_close(out[1], ref[1], rtol=1e-9, atol=1e-12, what="x_1 (the first step is a plain gradient step)")
    expect_close(out, ref, rtol=1e-8, atol=1e-10, what="the iterates x_k of accelerated_gradient")
    # the experiment, recomputed
    lams = torch.logspace(-6, 0, 500, dtype=F64)
    ones, zeros = torch.ones(500, dtype=F64), torch.zeros(500, dtype=F64)

    def g500(z):
        return lams * (z - ones)

    t = np.arange(1001)
    x, path = zeros.clone(), [zeros.clone()]
    for _ in range(1000):
        x = x - g500(x)
        path.append(x)
    gaps_gd = (0.5 * (lams * (torch.stack(path) - ones) ** 2).sum(-1)).numpy()
    gaps_agd = (0.5 * (lams * (_reference_agd(g500, zeros, 1.0, 1000) - ones) ** 2).sum(-1)).numpy()
    hint = ("fit convergence.fit_slope(t, gaps, x_min=100, x_max=1000) to f(x_t) - f* for t = 0..1000, "
            "both methods from x0 = 0 with lr = 1/L")
    _agrees(require_number(ns, "gd_slope"), convergence.fit_slope(t, gaps_gd, x_min=100, x_max=1000).slope, "`gd_slope`",
            hint, atol=0.02)
    _agrees(require_number(ns, "agd_slope"), convergence.fit_slope(t, gaps_agd, x_min=100, x_max=1000).slope, "`agd_slope`",
            hint, atol=0.02)
    ratio = float((gaps_agd[1:] / (2 * 500.0 / (t[1:] + 1) ** 2)).max())
    _agrees(require_number(ns, "bound_ratio"), ratio, "`bound_ratio`", "take the largest gap / (2 L R^2 / (t+1)^2) over "
            "1 <= t <= 1000 with R^2 = |x0 - x*|^2 and L = 1", rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- q6
def _steps(q, lr, rho=0.0, tol=1e-8, max_steps=20_000):
    A = q.A
    x, v = q.start.clone().to(F64), torch.zeros(q.dim, dtype=F64)
    f0 = 0.5 * (x @ A @ x).item()
    for t in range(1, max_steps + 1):
        v = rho * v + A @ x
        x = x - lr * v
        if 0.5 * (x @ A @ x).item() <= tol * f0:
            return t
    return max_steps


def q6(ns):
    kappas = (10, 100, 1000)
    gd = _dict_of_numbers(ns, "steps_gd", kappas)
    hb = _dict_of_numbers(ns, "steps_hb", kappas)
    speed = _dict_of_numbers(ns, "speedup", kappas)
    ref_gd, ref_hb = {}, {}
    for kappa in kappas:
        q = functions.Quadratic(condition_number=kappa, dim=10, seed=0)
        ref_gd[kappa] = _steps(q, convergence.gd_optimal_lr(kappa, 1.0))
        ref_hb[kappa] = _steps(q, *convergence.heavy_ball_parameters(kappa, 1.0))
        for name, mine, ref in (("steps_gd", gd, ref_gd), ("steps_hb", hb, ref_hb)):
            _agrees(mine[kappa], ref[kappa], f"`{name}[{kappa}]`", "count the first t with f(x_t) <= 1e-8 f(x_0), "
                    "from q.start, with the parameters given in the task", atol=max(1.0, 0.01 * ref[kappa]))
        expect_close(speed[kappa], gd[kappa] / hb[kappa], rtol=1e-6, what=f"speedup[{kappa}] (steps_gd / steps_hb)")
    hint = "fit convergence.fit_slope(kappas, counts) to the step counts for kappa = 10, 100, 1000"
    _agrees(require_number(ns, "kappa_slope_gd"), convergence.fit_slope(kappas, [ref_gd[k] for k in kappas]).slope,
            "`kappa_slope_gd`", hint, atol=0.02)
    _agrees(require_number(ns, "kappa_slope_hb"), convergence.fit_slope(kappas, [ref_hb[k] for k in kappas]).slope,
            "`kappa_slope_hb`", hint, atol=0.02)


QUESTIONS = [
    Question("q1", 2, q1, "Two ways of writing momentum"),
    Question("q2", 3, q2, "How much noise does the velocity average out?"),
    Question("q3", 2, q3, "Critical damping"),
    Question("q4", 3, q4, "Nesterov's look-ahead and PyTorch's nesterov=True"),
    Question("q5", 3, q5, "O(1/t) versus O(1/t^2)"),
    Question("q6", 3, q6, "Momentum is 10-30% faster?"),
]
