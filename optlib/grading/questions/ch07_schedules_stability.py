"""Checks for the exercises of chapter 7, "Learning-rate schedules and stability" (solutions/07_schedules_stability.ipynb).

Every reference is computed here, from closed forms, ``optlib.schedules``, ``torch.nn.utils`` or a
fresh computation with the protocol the task states; the learner's functions are called on inputs
the notebook never used.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from optlib import functions, losses, models, monitoring, schedules
from optlib.grading import CheckFailed, Question, expect, expect_close, require


# --------------------------------------------------------------------------------------------- q1

def q1(ns):
    fn = require(ns, "warmup_cosine_lr", "callable")
    cases = [(57, 5, 0.3, 0.0), (200, 20, 1.7, 0.05), (33, 1, 0.01, 0.001), (12, 11, 2.0, 0.5)]
    for total, warmup, base, low in cases:
        ref = base * np.array([schedules.warmup_then(warmup, schedules.cosine(total - warmup, low / base))(t)
                               for t in range(total + 8)])
        got = []
        for t in range(total + 8):
            value = fn(t, total, warmup, base, low)
            try:
                got.append(float(value))
            except (TypeError, ValueError):
                raise CheckFailed(f"warmup_cosine_lr(t, ...) should return a number, got {type(value).__name__}")
        got = np.array(got)
        where = f"(total_steps={total}, warmup_steps={warmup}, base_lr={base}, min_lr={low})"
        phases = [("during warmup (t < warmup_steps)", slice(0, warmup)),
                  ("during the cosine decay (warmup_steps <= t <= total_steps)", slice(warmup, total + 1)),
                  ("after total_steps", slice(total + 1, None))]
        for label, part in phases:
            expect_close(got[part], ref[part], rtol=1e-9, atol=1e-12, what=f"the learning rate {label} {where}")


# --------------------------------------------------------------------------------------------- q2

def _floor(lr, eigenvalues, sigma):
    eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.float64)
    return float((lr * sigma**2 / (2 * (2 - lr * eigenvalues))).sum())


def q2(ns):
    fn = require(ns, "noise_floor", "callable")
    cases = [(0.1, torch.tensor([0.5, 2.0, 7.0, 14.0], dtype=torch.float64), 0.3),
             (0.02, torch.linspace(1.0, 60.0, 9, dtype=torch.float64), 1.5),
             (0.5, torch.tensor([3.5], dtype=torch.float64), 0.05)]
    for lr, ev, sigma in cases:
        expect_close(fn(lr, ev, sigma), _floor(lr, ev, sigma), rtol=1e-8, atol=0.0,
                     what=f"noise_floor(lr={lr}, eigenvalues={[round(v, 3) for v in ev.tolist()]}, sigma={sigma})")
    measured = require(ns, "measured_floor", (int, float, np.floating, torch.Tensor))
    q = functions.Quadratic(condition_number=10, dim=20, seed=0)
    expect_close(measured, _floor(0.05, q.eigenvalues, 0.1), rtol=0.1, atol=0.0,
                 what="`measured_floor` (mean of f over steps 1000..3000 at lr 0.05; within 10% of the theory)")


# --------------------------------------------------------------------------------------------- q3

SCHEDULE_NAMES = ("constant", "step", "cosine")


def q3(ns):
    final = require(ns, "final_excess", dict)
    expect(set(final) == set(SCHEDULE_NAMES),
           f"`final_excess` should have exactly the keys {list(SCHEDULE_NAMES)}, got {sorted(final)}")
    values = {}
    for name in SCHEDULE_NAMES:
        value = final[name]
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        expect(math.isfinite(value) and value > 0, f"final_excess[{name!r}] should be a positive number, got {value}")
        values[name] = value
    q = functions.Quadratic(condition_number=10, dim=20, seed=0)
    floor = _floor(0.1, q.eigenvalues, 0.1)
    expect_close(values["constant"], floor, rtol=0.25, atol=0.0,
                 what="final_excess['constant'] (a constant lr 0.1 should sit at its noise floor)")
    for name in ("step", "cosine"):
        expect(values[name] < values["constant"] / 10,
               f"final_excess[{name!r}] = {values[name]:.3g} is not far below the constant rate's "
               f"{values['constant']:.3g}: is the scheduler built from the right schedule and stepped every step?")
    best = require(ns, "best_schedule", str)
    expect(best == min(values, key=values.get),
           f"`best_schedule` is {best!r}, but your `final_excess` says otherwise")


# --------------------------------------------------------------------------------------------- q4

def _fresh_grads(shapes, scale, seed):
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def q4(ns):
    fn = require(ns, "clip_by_global_norm", "callable")
    cases = [([(3, 4), (5,), (2, 2, 2)], 3.0, 10.0, 1),   # long: clipped
             ([(7,), (1, 6)], 0.05, 1.0, 2),               # short: untouched
             ([(2,), (50,)], [20.0, 0.01], 2.5, 3)]        # one big tensor, one small: global, not per tensor
    for shapes, scale, max_norm, seed in cases:
        if isinstance(scale, list):
            grads = [s * t for s, t in zip(scale, _fresh_grads(shapes, 1.0, seed))]
        else:
            grads = _fresh_grads(shapes, scale, seed)
        originals = [t.clone() for t in grads]
        params = [torch.nn.Parameter(t.clone()) for t in grads]
        for p, t in zip(params, grads):
            p.grad = t.clone()
        ref_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        out = fn(grads, max_norm)
        expect(isinstance(out, tuple) and len(out) == 2,
               "clip_by_global_norm should return a pair (list of clipped tensors, norm before clipping)")
        clipped, total = out
        expect(all(torch.equal(a, b) for a, b in zip(grads, originals)),
               "clip_by_global_norm modified the tensors it was given: return new tensors instead")
        expect(len(clipped) == len(grads), f"got {len(clipped)} clipped tensors for {len(grads)} gradients")
        expect_close(total, ref_norm, rtol=1e-6, what=f"the returned norm before clipping (max_norm={max_norm})")
        for k, (a, p) in enumerate(zip(clipped, params)):
            expect(isinstance(a, torch.Tensor) and a.shape == p.grad.shape,
                   f"clipped tensor {k} should have shape {tuple(p.grad.shape)}")
            expect_close(a, p.grad, rtol=1e-5, atol=1e-12,
                         what=f"clipped tensor {k} (max_norm={max_norm}; the scale must use the norm of all "
                              "tensors together)")
    zeros = [torch.zeros(3, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64)]
    clipped, total = fn(zeros, 1.0)
    expect(all(torch.isfinite(a).all() and (a == 0).all() for a in clipped),
           "all-zero gradients should come back as zeros (no NaN from dividing by a zero norm)")
    expect_close(total, 0.0, atol=1e-12, what="the norm of all-zero gradients")


# --------------------------------------------------------------------------------------------- q5

def _probe():
    X = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    y = torch.arange(256) % 10
    return X, y


def _first_layer_norm(depth, gain, seed, X, y):
    net = monitoring.init_normal_(models.MLP((64,) + (64,) * depth + (10,)), gain,
                                  generator=torch.Generator().manual_seed(seed))
    losses.softmax_loss(net(X), y).backward()
    return next(iter(monitoring.layer_grad_norms(net).values()))


def q5(ns):
    fn = require(ns, "first_layer_grad_norm", "callable")
    X, y = _probe()
    for depth, gain, seed in ((3, 1.7, 11), (6, 2.2, 4), (1, 0.8, 0)):
        expect_close(fn(depth, gain, seed), _first_layer_norm(depth, gain, seed, X, y), rtol=1e-4,
                     what=f"first_layer_grad_norm(depth={depth}, gain={gain}, seed={seed})")
    growth = require(ns, "growth_per_layer", (int, float, np.floating, torch.Tensor))
    depths = np.arange(2, 11)
    logs = np.array([[math.log(_first_layer_norm(int(d), 3.0, s, X, y)) for d in depths] for s in range(5)])
    slope = np.polyfit(depths, logs.mean(axis=0), 1)[0]
    expect_close(growth, math.exp(slope), rtol=1e-3,
                 what="`growth_per_layer` (exp of the fitted slope of the seed-averaged log norm against depth)")


# --------------------------------------------------------------------------------------------- q6

def _scaled(lr, b0, b, rule):
    return lr * (b / b0 if rule == "linear" else math.sqrt(b / b0))


def _max_batch(lr, b0, sharp, rule):
    limit = 2.0 / sharp
    ratio = limit / lr
    return math.floor(b0 * (ratio if rule == "linear" else ratio**2))


def q6(ns):
    scaled = require(ns, "scaled_lr", "callable")
    for lr, b0, b in ((0.05, 32, 512), (0.3, 8, 24), (1e-3, 256, 64)):
        for rule in ("linear", "sqrt"):
            expect_close(scaled(lr, b0, b, rule), _scaled(lr, b0, b, rule), rtol=1e-10,
                         what=f"scaled_lr({lr}, {b0}, {b}, {rule!r})")
    biggest = require(ns, "max_stable_batch", "callable")
    for lr, b0, sharp in ((0.07, 16, 3.3), (0.011, 64, 9.7), (0.5, 10, 1.3), (0.02, 128, 13.1)):
        for rule in ("linear", "sqrt"):
            got = biggest(lr, b0, sharp, rule)
            want = _max_batch(lr, b0, sharp, rule)
            expect(isinstance(got, (int, np.integer)) and not isinstance(got, bool),
                   f"max_stable_batch should return an int, got {type(got).__name__}")
            expect(got == want, f"max_stable_batch(base_lr={lr}, base_batch={b0}, sharpness={sharp}, {rule!r}) "
                                f"is {got}, expected {want}: the scaled lr must stay <= 2/sharpness")


# --------------------------------------------------------------------------------------------- q7

def _given_hessian():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(200, 30, generator=gen, dtype=torch.float64)
    features[:, :5] = 0.0
    return features.T @ features / 200


def _kappa(H, lam):
    ev = torch.linalg.eigvalsh(H)
    return ((ev[-1] + lam) / (ev[0] + lam)).item()


def q7(ns):
    fn = require(ns, "regularized_condition_number", "callable")
    gen = torch.Generator().manual_seed(7)
    B = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    full = B @ B.T + 0.1 * torch.eye(12, dtype=torch.float64)
    C = torch.randn(12, 4, generator=gen, dtype=torch.float64)
    singular = C @ C.T  # rank 4: eight zero eigenvalues
    for H, label in ((full, "an invertible 12x12 Hessian"), (singular, "a singular 12x12 Hessian")):
        for lam in (5e-4, 0.3, 4.0):
            expect_close(fn(H, lam), _kappa(H, lam), rtol=1e-6,
                         what=f"regularized_condition_number for {label}, lam={lam}")
    rates = require(ns, "measured_rates", dict)
    H = _given_hessian()
    for lam in (0.01, 0.1, 1.0):
        expect(lam in rates, f"`measured_rates` has no entry for lam={lam}; its keys are {sorted(rates)}")
        kappa = _kappa(H, lam)
        expect_close(rates[lam], (kappa - 1) / (kappa + 1), rtol=1e-3,
                     what=f"measured_rates[{lam}] (should match (kappa-1)/(kappa+1) of H_data + lam*I)")


QUESTIONS = [
    Question("q1", 2, q1, "Linear warmup then cosine decay"),
    Question("q2", 3, q2, "The noise floor of constant-step SGD"),
    Question("q3", 2, q3, "Decaying the rate removes the floor"),
    Question("q4", 3, q4, "Clipping by global norm"),
    Question("q5", 2, q5, "Exploding gradients through depth"),
    Question("q6", 2, q6, "Batch-size scaling and the stability limit"),
    Question("q7", 3, q7, "Weight decay as conditioning"),
]
