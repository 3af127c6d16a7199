"""Checks for solutions/12_trust_region.ipynb: the Cauchy point, the ratio and the radius update, the
boundary step of Steihaug-CG, the dogleg step, the exact 2-D subproblem, and an experiment with the
initial radius on Rosenbrock.

Every reference is computed here from closed forms or a short loop; the learner's functions are
called on fresh inputs they did not see in the notebook.
"""
from __future__ import annotations

import math

import torch

from optlib.grading import (CheckFailed, Question, as_number, expect, expect_close, random_spd, require,
                            require_number, require_tensor)

F64 = torch.float64


def _indefinite(n: int, gen: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=F64))
    vals = torch.linspace(-1.0, 2.0, n, dtype=F64)
    return q @ torch.diag(vals) @ q.T


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return a new tensor instead")


def _model(g, H, p) -> float:
    return float(g @ p + 0.5 * p @ H @ p)


# ---------------------------------------------------------------- q1
def _cauchy(g, H, radius):
    gHg = float(g @ H @ g)
    gn = float(g.norm())
    tau = 1.0 if gHg <= 0 else min(gn**3 / (radius * gHg), 1.0)
    return -tau * radius / gn * g


def q1(ns):
    cauchy = require(ns, "cauchy_point", "callable")
    gen = torch.Generator().manual_seed(1201)
    cases = [(random_spd(3, gen), 10.0), (random_spd(4, gen), 0.05), (_indefinite(3, gen), 0.7), (-random_spd(2, gen), 1.3)]
    for H, radius in cases:
        g = torch.randn(H.shape[0], generator=gen, dtype=F64)
        saved = (g.clone(), H.clone())
        p = require_tensor(cauchy(g, H, radius), "`cauchy_point`", g.shape).to(F64)
        _untouched((g, H), saved, "cauchy_point")
        expected = _cauchy(saved[0], saved[1], radius)
        if not torch.allclose(p, expected, rtol=1e-9, atol=1e-12):
            full = -radius * saved[0] / saved[0].norm()
            hint = (" (this is the step to the boundary: inside the region, stop where the model is lowest along -g)"
                    if torch.allclose(p, full, rtol=1e-9, atol=1e-12) else "")
            raise CheckFailed(f"cauchy_point(g, H, {radius}) is not the minimizer of the model along -g within "
                              f"the radius{hint}")
    expect_close(require_number(ns, "cauchy_tau"), 0.5, rtol=1e-9,
                 what="`cauchy_tau` (tau for g = (1, 0), H = diag(2, 1), radius 1)")


# ---------------------------------------------------------------- q2
def _radius(radius, rho, hit_boundary, max_radius):
    if rho < 0.25:
        return 0.25 * radius
    if rho > 0.75 and hit_boundary:
        return min(2 * radius, max_radius)
    return radius


def q2(ns):
    ratio = require(ns, "reduction_ratio", "callable")
    nxt = require(ns, "next_radius", "callable")
    gen = torch.Generator().manual_seed(1202)
    for f_new_shift in (-0.3, 0.1, -2.0):
        H = random_spd(3, gen)
        g, p = torch.randn(3, generator=gen, dtype=F64), torch.randn(3, generator=gen, dtype=F64)
        f_old = 1.5
        predicted = -_model(g, H, p)
        f_new = f_old + f_new_shift
        got = as_number(ratio(f_old, f_new, g.clone(), H.clone(), p.clone()), "reduction_ratio(...)")
        expect_close(got, (f_old - f_new) / predicted, rtol=1e-9, atol=1e-12,
                     what=f"reduction_ratio with actual reduction {f_old - f_new:.3g}")
    cases = [(1.0, 0.1, True, 10.0), (1.0, -3.0, False, 10.0), (1.0, 0.9, True, 10.0), (1.0, 0.9, False, 10.0),
             (8.0, 0.95, True, 10.0), (2.0, 0.5, True, 10.0), (2.0, 0.25, True, 10.0), (2.0, 0.75, True, 10.0)]
    for radius, rho, hit, mx in cases:
        got = as_number(nxt(radius, rho, hit, mx), f"next_radius({radius}, {rho}, {hit}, {mx})")
        expect_close(got, _radius(radius, rho, hit, mx), rtol=1e-12, atol=0,
                     what=f"next_radius({radius}, {rho}, {hit}, {mx})")
    expect_close(require_number(ns, "accepted_rho"), 0.5, rtol=1e-9,
                 what="`accepted_rho` (the ratio of the notebook's trial step: actual 0.2, predicted 0.4)")


# ---------------------------------------------------------------- q3
def _tau(z, d, radius):
    a, b, c = float(d @ d), 2 * float(z @ d), float(z @ z) - radius**2
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)


def q3(ns):
    tau_fn = require(ns, "boundary_tau", "callable")
    gen = torch.Generator().manual_seed(1203)
    for n, radius, scale in ((2, 1.0, 0.3), (5, 2.5, 0.9), (3, 1e-3, 0.5), (4, 100.0, 0.99)):
        z = torch.randn(n, generator=gen, dtype=F64)
        z = z / z.norm() * radius * scale
        d = torch.randn(n, generator=gen, dtype=F64)
        saved = (z.clone(), d.clone())
        got = as_number(tau_fn(z, d, radius), f"boundary_tau(z, d, {radius})")
        _untouched((z, d), saved, "boundary_tau")
        expected = _tau(saved[0], saved[1], radius)
        if not math.isclose(got, expected, rel_tol=1e-8, abs_tol=1e-12):
            hint = " (take the non-negative root: the step moves forward along d)" if got < 0 else ""
            raise CheckFailed(f"boundary_tau(z, d, {radius}) is {got:.6g}, expected {expected:.6g}: "
                              f"||z + tau d|| should equal the radius{hint}")
    # z = 0: tau = radius / ||d||
    d = torch.tensor([3.0, 4.0], dtype=F64)
    expect_close(as_number(tau_fn(torch.zeros(2, dtype=F64), d, 2.0), "boundary_tau(0, (3, 4), 2)"), 0.4,
                 rtol=1e-9, what="boundary_tau(0, (3, 4), 2)")


# ---------------------------------------------------------------- q4
def _dogleg(g, H, radius):
    pb = torch.linalg.solve(H, -g)
    if pb.norm() <= radius:
        return pb
    pu = -(g @ g) / (g @ H @ g) * g
    if pu.norm() >= radius:
        return -radius * g / g.norm()
    s = _tau(pu, pb - pu, radius)
    return pu + s * (pb - pu)


def q4(ns):
    dog = require(ns, "dogleg", "callable")
    gen = torch.Generator().manual_seed(1204)
    for radius in (100.0, 1.0, 0.3, 0.01):
        H = random_spd(2, gen) + torch.diag(torch.tensor([0.0, 3.0], dtype=F64))
        g = torch.randn(2, generator=gen, dtype=F64)
        saved = (g.clone(), H.clone())
        p = require_tensor(dog(g, H, radius), "`dogleg`", (2,)).to(F64)
        _untouched((g, H), saved, "dogleg")
        expected = _dogleg(saved[0], saved[1], radius)
        if not torch.allclose(p, expected, rtol=1e-8, atol=1e-11):
            raise CheckFailed(f"dogleg(g, H, {radius}) is {p.tolist()}, expected {expected.tolist()} "
                              f"(Newton step inside, steepest descent to the boundary, or the kink's segment)")
        expect(float(p.norm()) <= radius * (1 + 1e-9), f"dogleg(g, H, {radius}) leaves the region")


# ---------------------------------------------------------------- q5
def _exact(g, H, radius):
    vals, vecs = torch.linalg.eigh(H)
    c = vecs.T @ g

    def norm(lam):
        return float((c / (vals + lam)).norm())

    low = max(0.0, -float(vals[0]))
    if low == 0.0 and float(vals[0]) > 0 and norm(0.0) <= radius:
        return -(vecs @ (c / vals))
    high = low + 1.0
    while norm(high) > radius:
        high *= 2
    for _ in range(200):
        mid = 0.5 * (low + high)
        if norm(mid) > radius:
            low = mid
        else:
            high = mid
    return -(vecs @ (c / (vals + high)))


def q5(ns):
    exact = require(ns, "exact_step", "callable")
    gen = torch.Generator().manual_seed(1205)
    cases = [(random_spd(2, gen), 100.0), (random_spd(2, gen), 0.2), (_indefinite(2, gen), 0.5), (_indefinite(2, gen), 3.0)]
    for H, radius in cases:
        g = torch.randn(2, generator=gen, dtype=F64)
        saved = (g.clone(), H.clone())
        p = require_tensor(exact(g, H, radius), "`exact_step`", (2,)).to(F64)
        _untouched((g, H), saved, "exact_step")
        expected = _exact(saved[0], saved[1], radius)
        expect(float(p.norm()) <= radius * (1 + 1e-6), f"exact_step(g, H, {radius}) leaves the region")
        if not torch.allclose(p, expected, rtol=1e-6, atol=1e-8):
            worse = _model(saved[0], saved[1], p) - _model(saved[0], saved[1], expected)
            raise CheckFailed(f"exact_step(g, H, {radius}) is not the minimizer of the model on the disk "
                              f"(its model value is {worse:.3g} above the minimum)")


# ---------------------------------------------------------------- q6
def _rosenbrock_iterations(radius: float) -> int:
    from optlib.functions import Rosenbrock
    from optlib.optim.trust_region import TrustRegion

    f = Rosenbrock()
    x = torch.tensor([-1.2, 1.0], dtype=F64, requires_grad=True)
    opt = TrustRegion([x], radius=radius, max_radius=1000.0)
    for k in range(500):
        (g,) = torch.autograd.grad(f(x), x)
        if g.norm().item() <= 1e-6:
            return k
        opt.step(lambda: f(x))
    raise RuntimeError("internal: no convergence")


def q6(ns):
    table = require(ns, "iterations_by_radius", dict)
    radii = (0.01, 0.1, 1.0, 10.0)
    expect(sorted(table) == sorted(radii), f"`iterations_by_radius` should have the keys {list(radii)}, "
                                           f"got {sorted(table)}")
    for radius in radii:
        got = as_number(table[radius], f"iterations_by_radius[{radius}]")
        expected = _rosenbrock_iterations(radius)
        expect(got == expected, f"iterations_by_radius[{radius}] is {got:g}: count TrustRegion iterations "
                                f"(rejected trials included) from (-1.2, 1) until ||g|| <= 1e-6")
    best = require_number(ns, "best_radius")
    counts = {r: _rosenbrock_iterations(r) for r in radii}
    expect(best == min(radii, key=lambda r: (counts[r], r)),
           "`best_radius` should be the radius with the fewest iterations (the smallest on a tie)")


QUESTIONS = [
    Question("q1", 2, q1, "The Cauchy point"),
    Question("q2", 2, q2, "The ratio test and the radius update"),
    Question("q3", 2, q3, "Steihaug-CG's step to the boundary"),
    Question("q4", 3, q4, "The dogleg step in 2-D"),
    Question("q5", 3, q5, "The exact subproblem in 2-D"),
    Question("q6", 2, q6, "Experiment: the initial radius on Rosenbrock"),
]
