"""Checks for the exercises of chapter 8, "Choosing an optimizer" (solutions/08_choosing_an_optimizer.ipynb).

References are computed here: closed forms, exact binomial sums, ``torch.optim.LBFGS`` with its own
evaluation counter, and spot re-runs of the sweep protocol the task states (seeded, so a re-run
reproduces the learner's numbers).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from optlib import data, losses, models, optim, tuning
from optlib.grading import Question, expect, expect_close, require

NUMBER = (int, float, np.floating, np.integer, torch.Tensor)


# --------------------------------------------------------------------------------------------- q1

def _entry(lr, val_loss, diverged=False):
    return {"config": {"lr": lr}, "val_loss": val_loss, "diverged": diverged}


def q1(ns):
    fn = require(ns, "select_best", "callable")
    cases = [
        ([_entry(0.1, math.nan), _entry(0.3, 0.52), _entry(1.0, 0.31, True), _entry(3.0, 0.44), _entry(10.0, 0.44)], 3,
         "a list whose first loss is NaN, with a diverged run and a tie"),
        ([_entry(1e-3, 0.9), _entry(1e-2, 0.2), _entry(1e-1, math.inf), _entry(1.0, 0.2)], 1,
         "a list with an infinite loss and a tie"),
        ([_entry(0.5, 1.5)], 0, "a single finite result"),
        ([_entry(0.01, -math.inf), _entry(0.02, 0.7), _entry(0.04, 0.6, False)], 2, "a list with -inf"),
    ]
    for results, index, label in cases:
        snapshot = [dict(r) for r in results]
        chosen = fn(results)
        expect(isinstance(chosen, dict), f"select_best should return one of the result dicts, got {type(chosen).__name__}")
        expect(chosen == results[index],
               f"for {label}, select_best chose config {chosen.get('config')}: diverged runs and non-finite losses "
               "are never chosen, and ties go to the earliest result")
        expect([dict(r) for r in results] == snapshot, "select_best should not modify the list it is given")
    try:
        fn([_entry(0.1, math.nan), _entry(1.0, 0.2, True)])
    except ValueError:
        pass
    else:
        expect(False, "when no result is usable (all diverged or NaN), select_best should raise ValueError")


# --------------------------------------------------------------------------------------------- q2

def q2(ns):
    fn = require(ns, "steps_to_target", "callable")
    steps = np.arange(0, 105, 5)
    values = np.exp(-0.04 * steps) * 2.3
    cases = [(steps, values, 0.5, "a loss curve recorded every 5 steps"),
             (steps, values, float(values[7]), "a target equal to a recorded value"),
             (steps, values, 1e-3, "a target that is never reached"),
             (np.array([0, 1, 2, 3, 10, 20]), np.array([2.0, np.nan, 0.9, 1.2, 0.05, 0.01]), 1.0,
              "a curve with a NaN entry that dips below the target and up again"),
             (np.array([3, 7]), np.array([0.1, 0.05]), 0.2, "a curve that starts below the target")]
    for s, v, target, label in cases:
        hits = np.flatnonzero(v <= target)
        want = int(s[hits[0]]) if len(hits) else None
        got = fn(s.copy(), v.copy(), target)
        if want is None:
            expect(got is None, f"for {label}, steps_to_target returned {got!r}, expected None")
        else:
            expect(got is not None and not isinstance(got, bool) and isinstance(got, (int, np.integer)),
                   f"for {label}, steps_to_target should return an int step, got {got!r}")
            expect(got == want, f"for {label} (target {target:.4g}) steps_to_target returned {got}, expected {want}: "
                                "return the recorded step (not the index) where the value first is <= target")


# --------------------------------------------------------------------------------------------- q3

SGD_LRS = tuning.log_grid(0.01, 10**0.75, 12)
ADAM_LRS = tuning.log_grid(1e-4, 10**-0.25, 16)
GRIDS = {"SGD": (SGD_LRS, optim.SGD), "Adam": (ADAM_LRS, optim.Adam)}


@functools.lru_cache(maxsize=1)
def _split():
    digits = data.load_digits()
    return tuning.validation_split(digits, 0.2, generator=torch.Generator().manual_seed(0))


def _make_mlp(gen):
    return models.MLP((64, 32, 10), generator=gen)


def _val_loss(method, lr):
    return tuning.train_and_validate(_make_mlp, losses.softmax_loss, _split(), method, epochs=3, batch_size=64,
                                     seed=0, lr=lr)["val_loss"]


def _good_range(lrs, values):
    values = np.asarray(values, dtype=float)
    best = np.min(values[np.isfinite(values)])
    good = np.asarray(lrs)[np.isfinite(values) & (values <= 2 * best)]
    return math.log10(good.max() / good.min())


def q3(ns):
    val_losses = require(ns, "val_losses", dict)
    chosen = require(ns, "chosen_lr", dict)
    ranges = require(ns, "good_range", dict)
    for name, (lrs, _) in GRIDS.items():
        for what, d in (("val_losses", val_losses), ("chosen_lr", chosen), ("good_range", ranges)):
            expect(name in d, f"`{what}` has no entry {name!r}")
        values = np.asarray([float(v) for v in val_losses[name]], dtype=float)
        expect(len(values) == len(lrs), f"val_losses[{name!r}] has {len(values)} entries, one per learning rate of "
                                        f"its grid ({len(lrs)}) expected")
        expect(np.isfinite(values).any(), f"val_losses[{name!r}] has no finite value")
        k = int(np.argmin(np.where(np.isfinite(values), values, np.inf)))
        expect_close(chosen[name], lrs[k], rtol=1e-9, what=f"chosen_lr[{name!r}] (the grid lr with the lowest "
                                                           "validation loss in your val_losses)")
        expect_close(ranges[name], _good_range(lrs, values), rtol=1e-6, atol=1e-9,
                     what=f"good_range[{name!r}] (log10 of the widest ratio of lrs within 2x of the best loss)")
    for name, (lrs, method) in GRIDS.items():  # spot re-runs: the chosen lr and its two neighbours
        values = [float(v) for v in val_losses[name]]
        k = lrs.index(min(lrs, key=lambda lr: abs(lr - float(chosen[name]))))
        for j in (k - 1, k, k + 1):
            if 0 <= j < len(lrs):
                ref = _val_loss(method, lrs[j])
                what = f"val_losses[{name!r}][{j}] (lr {lrs[j]:g}), re-run with the stated protocol"
                if math.isinf(ref):
                    expect(math.isinf(values[j]), f"{what}: that run diverges (inf), you have {values[j]:.4g}")
                else:
                    expect_close(values[j], ref, rtol=1e-3, what=what)
    claim = require(ns, "claim_confirmed", (bool, np.bool_))
    expect(bool(claim) == (float(ranges["Adam"]) >= float(ranges["SGD"]) + 1),
           "`claim_confirmed` does not follow from your good_range values (the claim: Adam's good range is at "
           "least 10 times, i.e. one decade, wider than SGD's)")


# --------------------------------------------------------------------------------------------- q4

GIVEN_ADAM = [0.962, 0.958, 0.969, 0.955, 0.964]
GIVEN_SGD = [0.953, 0.967, 0.960, 0.949, 0.962]


def _welch(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return (a.mean() - b.mean()) / math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))


def q4(ns):
    fn = require(ns, "welch_t", "callable")
    cases = [([1.0, 2.0, 4.0], [0.5, 0.7, 0.6, 0.9]), ([0.91, 0.93], [0.95, 0.96, 0.94, 0.97, 0.95, 0.96]),
             ([10.0, 12.0, 11.0, 15.0, 9.0], [11.0, 11.5, 10.5])]
    for a, b in cases:
        expect_close(fn(list(a), list(b)), _welch(a, b), rtol=1e-8, what=f"welch_t({a}, {b})")
    t = require(ns, "t_adam_vs_sgd", NUMBER)
    expect_close(t, _welch(GIVEN_ADAM, GIVEN_SGD), rtol=1e-8, what="`t_adam_vs_sgd`")
    significant = require(ns, "significant", (bool, np.bool_))
    expect(bool(significant) == (abs(_welch(GIVEN_ADAM, GIVEN_SGD)) > 2),
           "`significant` should say whether |t| exceeds 2")


# --------------------------------------------------------------------------------------------- q5

def _expected_max(k, n, p):
    m = np.arange(n + 1)
    log_pmf = (np.array([math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in m])
               + m * math.log(p) + (n - m) * math.log1p(-p))
    cdf = np.minimum(np.cumsum(np.exp(log_pmf)), 1.0)
    # E[max] = sum over m < n of P(max > m), in units of 1/n
    return float(np.sum(1.0 - cdf[:-1] ** k) / n)


def q5(ns):
    fn = require(ns, "expected_max_accuracy", "callable")
    for k, n, p in ((5, 100, 0.9), (50, 300, 0.97), (1, 200, 0.8), (12, 80, 0.5)):
        expect_close(fn(k, n, p), _expected_max(k, n, p), rtol=1e-6,
                     what=f"expected_max_accuracy(k={k}, n={n}, p={p})")
    bias = require(ns, "simulated_bias", NUMBER)
    expect_close(bias, _expected_max(20, 450, 0.95) - 0.95, atol=1e-3, rtol=0.0,
                 what="`simulated_bias` (k=20, n=450, p=0.95; a simulation with enough repetitions lands within 0.001)")


# --------------------------------------------------------------------------------------------- q6

def _reference_lbfgs(model, X, y, max_iter):
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=max_iter, history_size=10,
                                  line_search_fn="strong_wolfe")
    calls = [0]

    def closure():
        optimizer.zero_grad()
        loss = losses.softmax_loss(model(X), y)
        loss.backward()
        calls[0] += 1
        return loss

    optimizer.step(closure)
    iterations = optimizer.state[next(iter(model.parameters()))]["n_iter"]
    with torch.no_grad():
        final = losses.softmax_loss(model(X), y).item()
    return calls[0], int(iterations), final


def _problem(kind, seed):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(120, 12, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (120,), generator=gen)
    if kind == "linear":
        def build():
            model = torch.nn.Linear(12, 4, dtype=torch.float64)
            with torch.no_grad():
                model.weight.copy_(0.1 * torch.randn(4, 12, generator=torch.Generator().manual_seed(seed + 1),
                                                     dtype=torch.float64))
                model.bias.zero_()
            return model
    else:
        def build():
            return models.MLP((12, 16, 4), generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    return build, X, y


def q6(ns):
    fn = require(ns, "lbfgs_fit", "callable")
    for kind, seed, max_iter in (("linear", 3, 15), ("mlp", 5, 40)):
        build, X, y = _problem(kind, seed)
        want = _reference_lbfgs(build(), X, y, max_iter)
        out = fn(build(), X, y, max_iter)
        expect(isinstance(out, tuple) and len(out) == 3,
               "lbfgs_fit should return a tuple (evaluations, iterations, final_loss)")
        evaluations, iterations, final = out
        label = f"on a fresh {'softmax regression' if kind == 'linear' else 'small MLP'} with max_iter={max_iter}"
        expect(iterations == want[1], f"{label}: lbfgs_fit reports {iterations} iterations, expected {want[1]} "
                                      "(the optimizer's own iteration counter)")
        expect(evaluations == want[0], f"{label}: lbfgs_fit reports {evaluations} evaluations, expected {want[0]}: "
                                       "count every call of the closure, line-search trials included")
        expect_close(final, want[2], rtol=1e-6, what=f"{label}: the final loss")


# --------------------------------------------------------------------------------------------- q7

RECIPE = {"a": "Adam", "b": "SGD+momentum", "c": "L-BFGS", "d": "Adam"}
OPTIONS = ("SGD", "SGD+momentum", "Adam", "L-BFGS")


def q7(ns):
    fn = require(ns, "momentum_lr", "callable")
    for lr, rho in ((0.3, 0.9), (1.2, 0.5), (0.05, 0.99)):
        expect_close(fn(lr, rho), lr * (1 - rho), rtol=1e-10,
                     what=f"momentum_lr({lr}, {rho}) (same steady-state step lr/(1 - rho) as plain SGD at {lr})")
    recipe = require(ns, "recipe", dict)
    expect(set(recipe) == set(RECIPE), f"`recipe` should have the keys {sorted(RECIPE)}, got {sorted(recipe)}")
    for key, answer in RECIPE.items():
        expect(recipe[key] in OPTIONS, f"recipe[{key!r}] = {recipe[key]!r} is not one of {list(OPTIONS)}")
    wrong = [key for key, answer in RECIPE.items() if recipe[key] != answer]
    expect(not wrong, f"reconsider recipe{wrong}: what does each method need (tuning budget, noise-free "
                      "loss values, full batches) and what did the chapter measure?")


QUESTIONS = [
    Question("q1", 2, q1, "Choosing the best configuration"),
    Question("q2", 2, q2, "Steps to a target loss"),
    Question("q3", 3, q3, "How sensitive is each optimizer to its learning rate?"),
    Question("q4", 2, q4, "Is the difference larger than the seed spread?"),
    Question("q5", 2, q5, "Why select on a validation set"),
    Question("q6", 3, q6, "Counting L-BFGS's evaluations"),
    Question("q7", 2, q7, "From measurements to a recipe"),
]
