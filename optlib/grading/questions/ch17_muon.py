"""Checks for solutions/17_muon.ipynb: the exact polar factor, one Newton-Schulz step, steepest descent under
the spectral norm, the routing rule, the shape scale of the learning rate, and a Muon step with momentum.

Every reference is computed here from an SVD or a closed form; the learner's functions are called on fresh
inputs they did not see in the notebook.
"""
from __future__ import annotations

import math

import torch

from optlib.grading import CheckFailed, Question, as_number, expect, expect_close, require, require_number, \
    require_tensor

F64 = torch.float64


def _polar(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


def _untouched(args, saved, name: str) -> None:
    expect(all(torch.equal(a, b) for a, b in zip(args, saved)),
           f"{name} modified its arguments in place: return new tensors instead")


# ---------------------------------------------------------------- q1
def q1(ns):
    polar = require(ns, "polar_factor", "callable")
    gen = torch.Generator().manual_seed(1701)
    for shape in ((4, 4), (6, 3), (3, 7)):
        G = torch.randn(*shape, generator=gen, dtype=F64)
        saved = G.clone()
        O = require_tensor(polar(G), f"`polar_factor` of a {shape[0]} x {shape[1]} matrix", shape)
        _untouched((G,), (saved,), "polar_factor")
        expected = _polar(saved)
        if not torch.allclose(O, expected, rtol=1e-8, atol=1e-10):
            if torch.allclose(O, saved, rtol=1e-8, atol=1e-10):
                raise CheckFailed("polar_factor returned G itself (U S V^T): drop the singular values, keep U V^T")
            raise CheckFailed(f"polar_factor of a {shape[0]} x {shape[1]} matrix is not U V^T of its thin SVD")
        sv = torch.linalg.svdvals(O)
        expect_close(sv, torch.ones_like(sv), rtol=0, atol=1e-9, what="the singular values of polar_factor(G)")


# ---------------------------------------------------------------- q2
def _ns_step(X, a, b, c):
    A = X @ X.T
    return a * X + b * A @ X + c * A @ A @ X


def _cubic_steps(s: float, target: float) -> int:
    k = 0
    while s < target:
        s = 1.5 * s - 0.5 * s**3
        k += 1
    return k


def q2(ns):
    step = require(ns, "ns_step", "callable")
    gen = torch.Generator().manual_seed(1702)
    coefficient_sets = ((3.4445, -4.7750, 2.0315), (1.5, -0.5, 0.0), (2.0, -1.0, 0.25))
    for shape, (a, b, c) in zip(((3, 6), (6, 3), (5, 5)), coefficient_sets):
        X = torch.randn(*shape, generator=gen, dtype=F64) / 4
        saved = X.clone()
        out = require_tensor(step(X, a, b, c), f"`ns_step` on a {shape[0]} x {shape[1]} matrix", shape)
        _untouched((X,), (saved,), "ns_step")
        expected = _ns_step(saved, a, b, c)
        if not torch.allclose(out, expected, rtol=1e-9, atol=1e-12):
            elementwise = a * saved + b * saved**3 + c * saved**5
            hint = (" (this is the polynomial applied to each entry: use A = X X^T and matrix products)"
                    if torch.allclose(out, elementwise, rtol=1e-9, atol=1e-12) else "")
            raise CheckFailed(f"ns_step(X, {a}, {b}, {c}) is not a X + b (X X^T) X + c (X X^T)^2 X{hint}")
    steps = require_number(ns, "cubic_steps")
    expected = _cubic_steps(0.01, 0.99)
    expect(steps == expected, f"`cubic_steps` is {steps:g}: count the cubic steps p(s) = 1.5 s - 0.5 s^3 that "
                              "take s = 0.01 to 0.99 or more for the first time")


# ---------------------------------------------------------------- q3
def q3(ns):
    value = require(ns, "steepest_value", "callable")
    gen = torch.Generator().manual_seed(1703)
    for shape in ((5, 5), (7, 3), (2, 6)):
        M = torch.randn(*shape, generator=gen, dtype=F64)
        saved = M.clone()
        got = as_number(value(M), f"steepest_value of a {shape[0]} x {shape[1]} matrix")
        _untouched((M,), (saved,), "steepest_value")
        sv = torch.linalg.svdvals(saved)
        if math.isclose(got, float(saved.norm()), rel_tol=1e-9):
            raise CheckFailed("steepest_value returned the Frobenius norm of M: that is the value of "
                              "<M, M / ||M||_F>, steepest descent under the Frobenius norm")
        if math.isclose(got, float(sv[0]), rel_tol=1e-9):
            raise CheckFailed("steepest_value returned the spectral norm of M: compute <M, U V^T>")
        expect_close(got, float(sv.sum()), rtol=1e-9, what=f"steepest_value of a {shape[0]} x {shape[1]} matrix "
                                                            "(<M, U V^T>)")
    sgd = require_number(ns, "sgd_value")
    expect_close(sgd, (9 + 1 + 0.25) / 3, rtol=1e-6,
                 what="`sgd_value` (<M, M / ||M||_2> for M = diag(3, 1, 0.5))")


# ---------------------------------------------------------------- q4
_ROUTING_CASES = [
    [("net.0.weight", (64, 64)), ("net.0.bias", (64,)), ("net.2.weight", (32, 64)), ("net.2.bias", (32,)),
     ("net.4.weight", (10, 32)), ("net.4.bias", (10,))],
    [("embed.weight", (100, 16)), ("block.norm.weight", (16,)), ("block.attn.weight", (48, 16)),
     ("block.proj.weight", (16, 16)), ("block.mlp.weight", (64, 16)), ("block.mlp.bias", (64,)),
     ("head.weight", (100, 16))],
    [("conv.weight", (8, 3, 3, 3)), ("fc1.weight", (20, 72)), ("fc2.weight", (20, 20)), ("fc3.weight", (5, 20)),
     ("scale", ())],
    [("only.weight", (4, 4)), ("only.bias", (4,))],
]


def _route(named_shapes):
    mats = [i for i, (_, shape) in enumerate(named_shapes) if len(shape) == 2]
    hidden = set(mats[1:-1])
    return ["muon" if i in hidden else "adamw" for i in range(len(named_shapes))]


def q4(ns):
    route = require(ns, "route", "callable")
    for case in _ROUTING_CASES:
        given = [(name, tuple(shape)) for name, shape in case]
        got = route(given)
        expect(isinstance(got, (list, tuple)) and len(got) == len(case),
               f"`route` should return one label per parameter ({len(case)} here), got {got!r}")
        got = [str(v) for v in got]
        expect(all(v in ("muon", "adamw") for v in got), f"`route` labels must be 'muon' or 'adamw', got {got}")
        expected = _route(case)
        for (name, shape), a, b in zip(case, got, expected):
            if a != b:
                raise CheckFailed(f"`route` sends {name} {tuple(shape)} to {a}; Jordan's recipe sends it to {b} "
                                  "(only 2-D matrices that are neither the first nor the last 2-D one go to Muon)")


# ---------------------------------------------------------------- q5
def _scale(shape, rule):
    rows, cols = shape
    return math.sqrt(max(1.0, rows / cols)) if rule == "sqrt_aspect_ratio" else 0.2 * math.sqrt(max(rows, cols))


def q5(ns):
    scale = require(ns, "shape_scale", "callable")
    for shape in ((64, 64), (256, 64), (64, 256), (30, 7), (7, 30)):
        for rule in ("sqrt_aspect_ratio", "match_rms_adamw"):
            got = as_number(scale(shape, rule), f"shape_scale({shape}, {rule!r})")
            expect_close(got, _scale(shape, rule), rtol=1e-12,
                         what=f"shape_scale({shape}, {rule!r})")
    rms = require_number(ns, "rms_1024x256")
    if math.isclose(rms, 1 / 32, rel_tol=1e-3):
        raise CheckFailed("`rms_1024x256` is the RMS of U V^T itself: multiply by the shape scale")
    expect_close(rms, 1 / 16, rtol=1e-3,
                 what="`rms_1024x256` (the RMS entry of the sqrt_aspect_ratio-scaled update of a 1024 x 256 matrix)")


# ---------------------------------------------------------------- q6
def _muon_step(W, G, B, lr, momentum):
    B_new = momentum * B + (1 - momentum) * G
    D = (1 - momentum) * G + momentum * B_new
    rows, cols = W.shape
    return W - lr * math.sqrt(max(1.0, rows / cols)) * _polar(D), B_new


def q6(ns):
    step = require(ns, "muon_step", "callable")
    gen = torch.Generator().manual_seed(1706)
    for shape, lr, momentum in (((4, 4), 0.02, 0.95), ((9, 4), 0.1, 0.9), ((3, 8), 0.05, 0.5)):
        W = torch.randn(*shape, generator=gen, dtype=F64)
        B = torch.zeros(*shape, dtype=F64)
        for t in range(3):
            G = torch.randn(*shape, generator=gen, dtype=F64)
            saved = (W.clone(), G.clone(), B.clone())
            out = step(W, G, B, lr, momentum)
            expect(isinstance(out, (tuple, list)) and len(out) == 2,
                   "`muon_step` should return a pair (new weights, new momentum buffer)")
            W_new = require_tensor(out[0], "the new weights of `muon_step`", shape)
            B_new = require_tensor(out[1], "the new buffer of `muon_step`", shape)
            _untouched((W, G, B), saved, "muon_step")
            W_ref, B_ref = _muon_step(*saved, lr, momentum)
            if not torch.allclose(B_new, B_ref, rtol=1e-9, atol=1e-12):
                summed = momentum * saved[2] + saved[1]
                hint = (" (this is the sum form mu B + G: use the average mu B + (1 - mu) G)"
                        if torch.allclose(B_new, summed, rtol=1e-9, atol=1e-12) else "")
                raise CheckFailed(f"the buffer of muon_step at step {t + 1} ({shape[0]} x {shape[1]}, "
                                  f"momentum {momentum}) is not mu B + (1 - mu) G{hint}")
            if not torch.allclose(W_new, W_ref, rtol=1e-8, atol=1e-10):
                raise CheckFailed(f"the weights of muon_step at step {t + 1} ({shape[0]} x {shape[1]}, lr {lr}, "
                                  f"momentum {momentum}) are not W - lr sqrt(max(1, rows/cols)) UV^T of the "
                                  "Nesterov direction (1 - mu) G + mu B_new")
            W, B = W_new, B_new


QUESTIONS = [
    Question("q1", 2, q1, "The exact polar factor"),
    Question("q2", 3, q2, "One Newton-Schulz step"),
    Question("q3", 2, q3, "Steepest descent under the spectral norm"),
    Question("q4", 2, q4, "The routing rule"),
    Question("q5", 2, q5, "The shape scale"),
    Question("q6", 3, q6, "A Muon step with momentum"),
]
