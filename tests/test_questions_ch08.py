"""The checks of chapter 8's exercises: a correct answer scores full marks, a plausible wrong one scores 0."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch

from optlib import data, losses, models, optim, tuning

import question_scoring

CHAPTER = "08_choosing_an_optimizer"

assert_full = partial(question_scoring.assert_full, CHAPTER)
assert_zero = partial(question_scoring.assert_zero, CHAPTER)


# ------------------------------------------------------------------------------------------------ q1

def right_select(results):
    usable = [(float(r["val_loss"]), i) for i, r in enumerate(results)
              if not r["diverged"] and np.isfinite(r["val_loss"])]
    if not usable:
        raise ValueError("nothing usable")
    return results[min(usable)[1]]  # (loss, index): the earliest of equal losses


def naive_select(results):
    return min((r for r in results if not r["diverged"]), key=lambda r: r["val_loss"])


def last_of_ties(results):
    usable = [r for r in results if not r["diverged"] and math.isfinite(r["val_loss"])]
    if not usable:
        raise ValueError("nothing usable")
    best = min(r["val_loss"] for r in usable)
    return [r for r in usable if r["val_loss"] == best][-1]


def never_raises(results):
    try:
        return right_select(results)
    except ValueError:
        return results[0]


def test_q1():
    assert_full({"select_best": right_select}, "q1")
    assert "never chosen" in assert_zero({"select_best": naive_select}, "q1").message
    assert "earliest" in assert_zero({"select_best": last_of_ties}, "q1").message
    assert "ValueError" in assert_zero({"select_best": never_raises}, "q1").message


# ------------------------------------------------------------------------------------------------ q2

def right_steps(steps, values, target):
    return tuning.steps_to_target(steps, values, target)


def returns_index(steps, values, target):
    hits = np.flatnonzero(np.asarray(values) <= target)
    return int(hits[0]) if len(hits) else None


def strict_less(steps, values, target):
    hits = np.flatnonzero(np.asarray(values) < target)
    return int(steps[hits[0]]) if len(hits) else None


def test_q2():
    assert_full({"steps_to_target": right_steps}, "q2")
    assert "not the index" in assert_zero({"steps_to_target": returns_index}, "q2").message
    assert "expected" in assert_zero({"steps_to_target": strict_less}, "q2").message
    never_none = lambda s, v, t: (lambda hit: -1 if hit is None else hit)(right_steps(s, v, t))  # -1, not None
    assert "None" in assert_zero({"steps_to_target": never_none}, "q2").message


# ------------------------------------------------------------------------------------------------ q3

SGD_LRS = tuning.log_grid(0.01, 10**0.75, 12)
ADAM_LRS = tuning.log_grid(1e-4, 10**-0.25, 16)


@pytest.fixture(scope="module")
def sweep():
    split = tuning.validation_split(data.load_digits(), 0.2, generator=torch.Generator().manual_seed(0))

    def make(gen):
        return models.MLP((64, 32, 10), generator=gen)

    out = {}
    for name, lrs, method in (("SGD", SGD_LRS, optim.SGD), ("Adam", ADAM_LRS, optim.Adam)):
        results = tuning.sweep(lambda lr: tuning.train_and_validate(make, losses.softmax_loss, split, method, epochs=3,
                                                                    batch_size=64, seed=0, lr=lr),
                               tuning.grid(lr=lrs))
        losses_ = [r["val_loss"] for r in results]
        best = tuning.best(results, "val_loss")
        good = [r.config["lr"] for r in results if r["val_loss"] <= 2 * best["val_loss"]]
        out[name] = (losses_, best.config["lr"], math.log10(max(good) / min(good)))
    return out


def sweep_ns(sweep):
    return {"val_losses": {k: v[0] for k, v in sweep.items()}, "chosen_lr": {k: v[1] for k, v in sweep.items()},
            "good_range": {k: v[2] for k, v in sweep.items()},
            "claim_confirmed": sweep["Adam"][2] >= sweep["SGD"][2] + 1}


def test_q3(sweep):
    ns = sweep_ns(sweep)
    assert_full(ns, "q3")
    # the sweep run with another seed: internally consistent, but not the stated protocol
    wrong_seed = dict(ns, val_losses={k: [1.05 * v for v in vals] for k, vals in ns["val_losses"].items()})
    assert "re-run" in assert_zero(wrong_seed, "q3").message
    # the width measured in lr ratio instead of decades
    assert "good_range" in assert_zero(dict(ns, good_range={k: 10**v for k, v in ns["good_range"].items()}), "q3").message
    assert "claim_confirmed" in assert_zero(dict(ns, claim_confirmed=not ns["claim_confirmed"]), "q3").message
    # the chosen lr taken from the largest validation loss
    worst = {k: (SGD_LRS if k == "SGD" else ADAM_LRS)[int(np.argmax(np.where(np.isinf(v), -1, v)))]
             for k, v in ns["val_losses"].items()}
    assert "chosen_lr" in assert_zero(dict(ns, chosen_lr=worst), "q3").message


# ------------------------------------------------------------------------------------------------ q4

ACC_ADAM = [0.962, 0.958, 0.969, 0.955, 0.964]
ACC_SGD = [0.953, 0.967, 0.960, 0.949, 0.962]


def right_welch(a, b):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return ((a.mean() - b.mean()) / (a.var() / len(a) + b.var() / len(b)).sqrt()).item()  # torch var: n - 1


def population_welch(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float((a.mean() - b.mean()) / np.sqrt(a.var() / len(a) + b.var() / len(b)))


def test_q4():
    t = right_welch(ACC_ADAM, ACC_SGD)
    assert_full({"welch_t": right_welch, "t_adam_vs_sgd": t, "significant": abs(t) > 2}, "q4")
    assert "welch_t" in assert_zero({"welch_t": population_welch, "t_adam_vs_sgd": t, "significant": abs(t) > 2},
                                    "q4").message
    assert "significant" in assert_zero({"welch_t": right_welch, "t_adam_vs_sgd": t, "significant": True}, "q4").message


# ------------------------------------------------------------------------------------------------ q5

def right_expected_max(k, n, p):
    # E[max] = sum_m m/n * (F(m)^k - F(m-1)^k), with the binomial pmf from exact integers
    pmf = np.array([math.comb(n, m) * p**m * (1 - p) ** (n - m) for m in range(n + 1)])
    cdf = np.cumsum(pmf)
    previous = np.concatenate([[0.0], cdf[:-1]])
    return float(np.sum(np.arange(n + 1) / n * (cdf**k - previous**k)))


def gaussian_guess(k, n, p):
    # the normal approximation with E[max of k] ~ sqrt(2 log k) standard deviations: close, not exact
    return p + math.sqrt(2 * math.log(k)) * math.sqrt(p * (1 - p) / n) if k > 1 else p


def test_q5():
    bias = right_expected_max(20, 450, 0.95) - 0.95
    assert_full({"expected_max_accuracy": right_expected_max, "simulated_bias": bias + 2e-4}, "q5")
    assert "expected_max_accuracy" in assert_zero({"expected_max_accuracy": gaussian_guess,
                                                   "simulated_bias": bias}, "q5").message
    # the mean accuracy (no max) has no bias at all
    assert "simulated_bias" in assert_zero({"expected_max_accuracy": right_expected_max,
                                            "simulated_bias": 0.0}, "q5").message


# ------------------------------------------------------------------------------------------------ q6

def lbfgs_with(count_iterations_only=False, stepwise=False):
    def fit(model, X, y, max_iter):
        opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=1 if stepwise else max_iter, history_size=10,
                                line_search_fn="strong_wolfe")
        evaluations = 0

        def closure():
            nonlocal evaluations
            evaluations += 1
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(X), y)
            loss.backward()
            return loss

        for _ in range(max_iter if stepwise else 1):
            opt.step(closure)
        state = opt.state[next(iter(model.parameters()))]
        with torch.no_grad():
            final = torch.nn.functional.cross_entropy(model(X), y).item()
        iterations = state["n_iter"]
        return (iterations if count_iterations_only else evaluations), iterations, final
    return fit


def test_q6():
    assert_full({"lbfgs_fit": lbfgs_with()}, "q6")
    assert "evaluations" in assert_zero({"lbfgs_fit": lbfgs_with(count_iterations_only=True)}, "q6").message
    # max_iter separate step() calls re-evaluate the start point every time: different counts
    assert "expected" in assert_zero({"lbfgs_fit": lbfgs_with(stepwise=True)}, "q6").message
    assert "tuple" in assert_zero({"lbfgs_fit": lambda m, X, y, k: lbfgs_with()(m, X, y, k)[:2]}, "q6").message


# ------------------------------------------------------------------------------------------------ q7

RECIPE = {"a": "Adam", "b": "SGD+momentum", "c": "L-BFGS", "d": "Adam"}


def test_q7():
    assert_full({"momentum_lr": lambda lr, rho: lr - lr * rho, "recipe": dict(RECIPE)}, "q7")
    assert "momentum_lr" in assert_zero({"momentum_lr": lambda lr, rho: lr / (1 - rho), "recipe": dict(RECIPE)}, "q7").message
    assert "recipe['d']" in assert_zero({"momentum_lr": lambda lr, rho: lr * (1 - rho),
                                         "recipe": dict(RECIPE, d="L-BFGS")}, "q7").message
    assert "not one of" in assert_zero({"momentum_lr": lambda lr, rho: lr * (1 - rho),
                                        "recipe": dict(RECIPE, a="adam")}, "q7").message
