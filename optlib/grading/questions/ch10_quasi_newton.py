"""Checks for solutions/10_quasi_newton.ipynb: the BFGS inverse update and the secant condition, the
two-loop recursion, the curvature condition's bound on sᵀy, BFGS with exact line searches on a quadratic,
the memory of L-BFGS, and L-BFGS's evaluations against its history m.

Every reference is computed here from closed forms or a short loop; the learner's functions are
called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import torch

from optlib.grading import (CheckFailed, Question, as_number, expect, expect_close, random_spd, require,
                            require_number, require_tensor)

F64 = torch.float64


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


def _bfgs(H: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rho = 1.0 / float(y @ s)
    V = torch.eye(len(s), dtype=F64) - rho * torch.outer(y, s)
    return V.T @ H @ V + rho * torch.outer(s, s)


def _pairs(n: int, m: int, gen: torch.Generator):
    A = random_spd(n, gen)
    s_list = [torch.randn(n, generator=gen, dtype=F64) for _ in range(m)]
    return s_list, [A @ s for s in s_list]


# ---------------------------------------------------------------- q1
def q1(ns):
    update = require(ns, "bfgs_inverse_update", "callable")
    gen = torch.Generator().manual_seed(1001)
    for n in (2, 4, 7):
        H = random_spd(n, gen)
        s, y = _pairs(n, 1, gen)
        s, y = s[0], y[0]
        saved = (H.clone(), s.clone(), y.clone())
        new = require_tensor(update(H, s, y), "`bfgs_inverse_update`", (n, n))
        _untouched((H, s, y), saved, "bfgs_inverse_update")
        if not torch.allclose(new @ y, s, rtol=1e-8, atol=1e-10):
            raise CheckFailed(f"bfgs_inverse_update (d = {n}) breaks the secant condition H_new y = s")
        expect_close(new, _bfgs(H, s, y), rtol=1e-8, atol=1e-10,
                     what=f"bfgs_inverse_update(H, s, y) for d = {n} (the BFGS formula)")
    residual = require_number(ns, "secant_residual")
    expect(0 <= residual < 1e-10, f"`secant_residual` is {residual:.3g}: it is ‖H_new y − s‖ for the notebook's "
                                  "pair, zero up to round-off (below 1e-10)")


# ---------------------------------------------------------------- q2
def q2(ns):
    two_loop = require(ns, "two_loop_direction", "callable")
    gen = torch.Generator().manual_seed(1002)
    for n, m in ((3, 1), (6, 3), (10, 5)):
        s_list, y_list = _pairs(n, m, gen)
        g = torch.randn(n, generator=gen, dtype=F64)
        saved = [g.clone()] + [v.clone() for v in s_list + y_list]
        out = require_tensor(two_loop(g, s_list, y_list), "`two_loop_direction`", (n,))
        _untouched([g] + s_list + y_list, saved, "two_loop_direction")
        gamma = float(s_list[-1] @ y_list[-1]) / float(y_list[-1] @ y_list[-1])
        H = gamma * torch.eye(n, dtype=F64)
        for s, y in zip(s_list, y_list):
            H = _bfgs(H, s, y)
        if not torch.allclose(out, H @ g, rtol=1e-8, atol=1e-10):
            H1 = torch.eye(n, dtype=F64)
            for s, y in zip(s_list, y_list):
                H1 = _bfgs(H1, s, y)
            hint = (" (with H0 = I: scale it by gamma = s·y / y·y of the newest pair)"
                    if torch.allclose(out, H1 @ g, rtol=1e-8, atol=1e-10) else "")
            raise CheckFailed(f"two_loop_direction with m = {m} pairs is not H g for the L-BFGS matrix H{hint}")
    g = torch.randn(4, generator=gen, dtype=F64)
    expect_close(two_loop(g, [], []), g, rtol=1e-12, atol=0, what="two_loop_direction(g, [], []) (no pairs: H = I)")


# ---------------------------------------------------------------- q3
def q3(ns):
    bound = require(ns, "sty_lower_bound", "callable")
    for alpha, c2, dphi0 in ((1.0, 0.9, -2.0), (0.3, 0.5, -7.5), (2.5, 0.1, -0.04)):
        got = as_number(bound(alpha, c2, dphi0), f"sty_lower_bound({alpha}, {c2}, {dphi0})")
        expect_close(got, alpha * (c2 - 1.0) * dphi0, rtol=1e-12, atol=0,
                     what=f"sty_lower_bound({alpha}, {c2}, {dphi0}) (α (c2 − 1) φ'(0))")
    smallest = require_number(ns, "smallest_margin")
    expect(smallest >= 1.0, f"`smallest_margin` is {smallest:.3g}: sᵀy can never fall below the bound, so the "
                            "smallest ratio sᵀy / bound over the iterations is at least 1")
    expect(smallest < 1e3, f"`smallest_margin` is {smallest:.3g}: take the smallest ratio over the iterations")


# ---------------------------------------------------------------- q4
def _exact_bfgs(A: torch.Tensor, b: torch.Tensor, x0: torch.Tensor):
    x, H = x0.clone(), torch.eye(len(b), dtype=F64)
    for _ in range(len(b)):
        g = A @ x - b
        if g.norm() <= 1e-13 * b.norm():
            break
        d = -H @ g
        alpha = -float(g @ d) / float(d @ A @ d)
        s = alpha * d
        y = A @ s
        x = x + s
        H = _bfgs(H, s, y)
    return x, H


def q4(ns):
    bfgs = require(ns, "bfgs_exact_quadratic", "callable")
    gen = torch.Generator().manual_seed(1004)
    for n in (2, 4, 6):
        A, b, x0 = random_spd(n, gen), torch.randn(n, generator=gen, dtype=F64), torch.randn(n, generator=gen, dtype=F64)
        out = bfgs(A, b, x0)
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               "`bfgs_exact_quadratic` should return a pair (x, H) after d iterations")
        x = require_tensor(out[0], "`bfgs_exact_quadratic(...)[0]`", (n,))
        H = require_tensor(out[1], "`bfgs_exact_quadratic(...)[1]`", (n, n))
        x_ref, H_ref = _exact_bfgs(A, b, x0)
        expect_close(x, x_ref, rtol=1e-7, atol=1e-9, what=f"x after d = {n} iterations (the minimizer A⁻¹ b)")
        expect_close(H, H_ref, rtol=1e-6, atol=1e-8, what=f"H after d = {n} iterations (A⁻¹)")
    err = require_number(ns, "inverse_error")
    expect(0 <= err < 1e-8, f"`inverse_error` is {err:.3g}: ‖H_d − A⁻¹‖ / ‖A⁻¹‖ is zero up to round-off")


# ---------------------------------------------------------------- q5
def q5(ns):
    size = require(ns, "lbfgs_bytes", "callable")
    for d, m, b in ((1000, 10, 4), (12345, 3, 8), (7, 50, 2)):
        got = as_number(size(d, m, b), f"lbfgs_bytes({d}, {m}, {b})")
        expect_close(got, 2 * m * d * b, rtol=1e-12, atol=0, what=f"lbfgs_bytes({d}, {m}, {b}) (m pairs s, y)")
    expect_close(require_number(ns, "dense_over_lbfgs"), 25.6e6 / 20, rtol=1e-3,
                 what="`dense_over_lbfgs` (d × d entries over 2 m d entries, d = 25.6e6, m = 10)")


# ---------------------------------------------------------------- q6
def _rosen(x):
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


def _evaluations(m: int) -> int:
    from optlib.optim.quasi_newton import LBFGS

    x = torch.tensor([-1.2, 1.0] * 10, dtype=F64, requires_grad=True)
    opt = LBFGS([x], max_iter=10_000, max_eval=100_000, tolerance_grad=1e-6, tolerance_change=0.0,
                history_size=m)

    def closure():
        opt.zero_grad()
        loss = _rosen(x)
        loss.backward()
        return loss

    opt.step(closure)
    return int(opt.state[x]["func_evals"])


HISTORIES = (1, 3, 10, 30)


def q6(ns):
    evals = require(ns, "evals_by_m", dict)
    expect(sorted(evals) == list(HISTORIES), f"`evals_by_m` should have the keys {list(HISTORIES)}")
    for m in HISTORIES:
        got = as_number(evals[m], f"evals_by_m[{m}]")
        ref = _evaluations(m)
        expect(got == ref, f"`evals_by_m[{m}]` is {got:g}: count the closure evaluations of optlib's LBFGS "
                           "(state['func_evals']) on the 20-D chained Rosenbrock, tolerance_grad 1e-6")
    best = require_number(ns, "best_m")
    ref = min(HISTORIES, key=lambda m: (_evaluations(m), m))
    expect(best == ref, f"`best_m` is {best:g}: the m with the fewest evaluations")


QUESTIONS = [
    Question("q1", 2, q1, "The BFGS inverse update and the secant condition"),
    Question("q2", 3, q2, "The two-loop recursion"),
    Question("q3", 2, q3, "Why the curvature condition gives sᵀy > 0"),
    Question("q4", 3, q4, "BFGS on a quadratic ends in d steps"),
    Question("q5", 2, q5, "The memory of L-BFGS"),
    Question("q6", 3, q6, "Evaluations against the history m"),
]
