"""Tests of optlib.tuning's helpers for reading a sweep (tables, curves, widths of the good range,
nudged models) and for random versus grid search."""
import math

import numpy as np
import pytest
import torch

from optlib import data, losses, models, optim, tuning
from optlib.run import Trace


def result(lr, val_loss, *, diverged=False, val_acc=0.9, trace=None, **config):
    metrics = {"val_loss": math.inf if diverged else val_loss, "val_acc": val_acc, "diverged": diverged}
    return tuning.Result("m", {"lr": lr, **config}, metrics, 0, trace)


def trace_with(steps, values):
    t = Trace(name="t")
    t.metrics["train_loss"] = list(zip(steps, values))
    t.time = [0.01 * (k + 1) for k in range(max(steps) + 1)]
    return t


# ---------------------------------------------------------------- reading a sweep
def test_matching_keeps_the_runs_with_the_given_values_in_order():
    runs = [result(0.1, 0.5, weight_decay=0.1), result(0.1, 0.4), result(1.0, 0.3, weight_decay=0.1)]
    assert tuning.matching(runs, weight_decay=0.1) == [runs[0], runs[2]]
    assert tuning.matching(runs, weight_decay=None) == [runs[1]]
    assert tuning.matching(runs, lr=1.0, weight_decay=0.1) == [runs[2]]
    assert tuning.matching(runs) == runs


def test_describe_val_loss():
    assert tuning.describe_val_loss(result(1, 0.0674)) == "0.067"
    assert tuning.describe_val_loss(result(1, 0.41)) == "unstable"
    assert tuning.describe_val_loss(result(1, 0.41), unstable=0.5) == "0.410"
    assert tuning.describe_val_loss(result(1, 0.1, diverged=True)) == "diverged"
    assert tuning.describe_val_loss(result(1, math.nan)) == "unstable"
    with pytest.raises(ValueError):
        tuning.describe_val_loss(result(1, 0.1), unstable=0)


def test_config_text():
    assert tuning.config_text({"lr": 0.0316, "weight_decay": 0.1}) == "lr=0.0316, wd=0.1"
    assert tuning.config_text({"lr": 1.0}) == "lr=1"


def test_sweep_table_stars_the_chosen_run_and_flags_the_edge():
    a = [result(lr, v) for lr, v in zip([0.1, 0.316, 1.0], [0.3, 0.1, 0.2])]
    b = [result(lr, v) for lr, v in zip([1.0, 3.16, 10.0], [0.05, 0.5, 0.0])]
    b[2].metrics["diverged"] = True
    text = tuning.sweep_table({"A": a, "B": b}, {"A": a[1], "B": b[0]})
    header, rule, line_a, line_b = text.splitlines()
    assert header.split()[:5] == ["optimizer", "first", "lr", "x", "1"] and "x 3.16" in header
    assert "*0.100" in line_a and "edge!" not in line_a and line_a.split()[1] == "0.1"
    assert "*0.050" in line_b and "unstable" in line_b and "diverged" in line_b and line_b.endswith("edge!")
    # grids of different ratios: numbered columns
    c = [result(lr, v) for lr, v in zip([1.0, 2.0, 8.0], [0.3, 0.1, 0.2])]
    assert "lr 1" in tuning.sweep_table({"A": a, "C": c}, {"A": a[1], "C": c[1]}).splitlines()[0]


def test_sweep_table_rejects_inconsistent_input():
    a = [result(0.1, 0.3), result(1.0, 0.2)]
    with pytest.raises(ValueError, match="same number"):
        tuning.sweep_table({"A": a, "B": a[:1]}, {"A": a[0], "B": a[0]})
    with pytest.raises(KeyError):
        tuning.sweep_table({"A": a}, {})
    with pytest.raises(ValueError, match="not among"):
        tuning.sweep_table({"A": a}, {"A": result(0.1, 0.3)})


def test_cost_of_mistuning():
    runs = [result(lr, v) for lr, v in zip([0.01, 0.03, 0.1, 0.3, 1.0], [0.4, 0.12, 0.1, 0.162, 0.2])]
    runs[4].metrics["diverged"] = True
    assert tuning.cost_of_mistuning(runs, runs[2], 1) == "x 1.62"
    assert tuning.cost_of_mistuning(runs, runs[2], 2) == "diverged"
    assert tuning.cost_of_mistuning(runs, runs[3], 2) == "x 0.74 (below only)"
    assert tuning.cost_of_mistuning(runs, runs[0], 1) == "x 0.30 (above only)"
    with pytest.raises(ValueError, match="not among"):
        tuning.cost_of_mistuning(runs, result(1, 1), 1)
    with pytest.raises(ValueError, match="no run"):
        tuning.cost_of_mistuning(runs, runs[2], 3)


def test_sweep_curves_by_name_by_function_and_by_target():
    t1 = trace_with([0, 5, 10], [2.0, 0.5, 0.01])
    t2 = trace_with([0, 5, 10], [2.0, 1.5, 1.0])
    runs = [result(0.1, 0.2, trace=t1), result(1.0, 0.3, trace=t2), result(10.0, 0.3, diverged=True, trace=t1)]
    curves = tuning.sweep_curves({"A": runs}, "val_loss")
    assert curves["A"][0] == [0.1, 1.0, 10.0]
    np.testing.assert_array_equal(curves["A"][1], [0.2, 0.3, math.nan])
    np.testing.assert_array_equal(tuning.sweep_curves({"A": runs}, lambda r: 2 * r.config["lr"])["A"][1],
                                  [0.2, 2.0, math.nan])
    np.testing.assert_array_equal(tuning.sweep_curves({"A": runs}, 0.5)["A"][1], [5, math.nan, math.nan])
    with pytest.raises(ValueError, match="no trace"):
        tuning.sweep_curves({"A": [result(0.1, 0.2)]}, 0.5)
    with pytest.raises(TypeError):
        tuning.sweep_curves({"A": runs}, [0.5])


def test_steps_to_target_of_and_seeds_table():
    t1, t2 = trace_with([0, 5, 10], [2.0, 0.04, 0.01]), trace_with([0, 5, 10], [2.0, 0.5, 0.03])
    runs = []
    for t, acc in ((t1, 0.95), (t2, 0.97)):
        r = result(0.1, 0.2, trace=t)
        r.metrics.update(test_acc=acc, train_loss=0.02)
        runs.append(r)
    np.testing.assert_array_equal(tuning.steps_to_target_of(runs, 0.05), [5, 10])
    np.testing.assert_array_equal(tuning.steps_to_target_of(runs, 0.02), [10, math.nan])
    text = tuning.seeds_table({"A": runs}, {"A": runs[0]}, 0.05, steps_per_epoch=5)
    line = text.splitlines()[2]
    assert line.split()[:5] == ["A", "lr=0.1", "7.5", "1.50", "0.0200"] and "0.960 ± 0.014" in line
    assert line.endswith(" s")
    assert "not reached" in tuning.seeds_table({"A": runs}, {"A": runs[0]}, 0.02, 5)
    with pytest.raises(ValueError, match="no trace"):
        tuning.steps_to_target_of([result(0.1, 0.2)], 0.1)


def test_good_range_reads_the_width_and_its_bound():
    lrs = [0.01, 0.0316, 0.1, 0.316, 1.0, 3.16]
    good = tuning.good_range(lrs, [0.5, 0.15, 0.1, 0.19, 0.4, math.inf], 2.0)
    assert (good.low, good.high, good.open) == (0.0316, 0.316, "")
    assert good.decades == pytest.approx(1.0, abs=1e-3)
    assert good.decades_max == pytest.approx(2.0, abs=1e-3)
    tighter = tuning.good_range(lrs, [0.5, 0.15, 0.1, 0.19, 0.4, math.inf], 1.6)
    assert (tighter.low, tighter.high) == (0.0316, 0.1)
    edge = tuning.good_range(lrs, [0.1, 0.15, 0.5, 0.6, 0.7, 0.8], 2.0)
    assert edge.open == "below" and edge.decades_max == pytest.approx(1.0, abs=1e-3)
    everywhere = tuning.good_range([1, 10], [1.0, 1.5], 2.0)
    assert everywhere.open == "below and above" and everywhere.decades == everywhere.decades_max == 1.0


@pytest.mark.parametrize("args", [
    ([1, 10, 100], [0.1, 0.5, 0.15], 2.0),  # two separate good stretches
    ([1, 10, 100], [math.inf, math.nan, math.inf], 2.0),
    ([1, 10, 100], [0.1, 0.2], 2.0),
    ([10, 1, 100], [0.1, 0.2, 0.3], 2.0),
    ([0, 1, 10], [0.1, 0.2, 0.3], 2.0),
    ([1, 10, 100], [0.1, 0.2, 0.3], 1.0),
])
def test_good_range_rejects_bad_input(args):
    with pytest.raises(ValueError):
        tuning.good_range(*args)


def test_nudged_changes_the_weights_by_the_given_relative_size_and_nothing_else():
    def make(gen):
        return models.MLP((4, 8, 3), generator=gen, dtype=torch.float64)

    base = make(torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    moved = tuning.nudged(make, 1e-6)(gen)
    for p, q in zip(base.parameters(), moved.parameters()):
        relative = ((q - p) / p).abs()
        assert 0 < relative.max().item() < 1e-5 and relative.mean().item() > 1e-8
    # the run's generator continues exactly as without the nudge (same minibatch order afterwards)
    plain = torch.Generator().manual_seed(0)
    make(plain)
    assert torch.equal(torch.randperm(10, generator=gen), torch.randperm(10, generator=plain))
    again = tuning.nudged(make, 1e-6)(torch.Generator().manual_seed(0))
    assert all(torch.equal(p, q) for p, q in zip(moved.parameters(), again.parameters()))
    with pytest.raises(ValueError):
        tuning.nudged(make, 0.0)


def test_evaluations_table():
    digits = data.load_digits(dtype=torch.float64)
    X, y = digits.X_train[:200], digits.y_train[:200]
    net = models.MLP((64, 8, 10), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    log = tuning.count_evaluations(net, losses.softmax_loss, X, y, optim.SGD, steps=30, lr=1.0)
    text = tuning.evaluations_table({"GD": (net, log)}, (1.0, 1e-6), (digits.X_test, digits.y_test))
    header, _, line = text.splitlines()
    assert header.split()[:5] == ["method", "its", "1", "evals", "its"]
    hit = log.to_target(1.0)
    cells = line.split()
    assert cells[:5] == ["GD", str(hit[0]), str(hit[1]), "-", "-"] and line.endswith(" ms")
    assert cells[5] == f"{log.final_loss:.1e}"
    without = tuning.evaluations_table({"GD": (net, log)}, (1.0,))
    assert "test acc" not in without and without.splitlines()[2].endswith(" ms")
    with pytest.raises(ValueError, match="no evaluation"):
        tuning.evaluations_table({"x": (net, tuning.EvaluationLog())}, (1.0,), (X, y))


# ---------------------------------------------------------------- random versus grid search
def test_grid_search_best_tries_every_position_of_an_evenly_spaced_grid():
    Z = np.arange(7 * 5, dtype=float).reshape(7, 5)
    best = tuning.grid_search_best(Z, 2)
    # strides 3 and 2; offsets 0..3 along the rows and 0..2 along the columns
    assert len(best) == 4 * 3
    np.testing.assert_array_equal(best, [Z[a, b] for a in range(4) for b in range(3)])
    assert tuning.grid_search_best(Z, 1).min() == 0.0 and len(tuning.grid_search_best(Z, 1)) == Z.size
    # one good cell that no grid of stride 3 x 2 at offset (0, 0) hits
    W = np.ones((7, 5))
    W[1, 1] = 0.0
    found = tuning.grid_search_best(W, 2)
    assert found.min() == 0.0 and (found == 0.0).sum() == 1


def test_random_search_best_draws_distinct_cells_reproducibly():
    Z = np.random.default_rng(0).random((6, 4))
    best, cells = tuning.random_search_best(Z, 5, 300, generator=torch.Generator().manual_seed(0),
                                            return_cells=True)
    assert best.shape == (300,) and cells.shape == (300, 5)
    assert all(len(set(row)) == 5 for row in cells)
    np.testing.assert_array_equal(best, Z.reshape(-1)[cells].min(axis=1))
    assert np.all(best >= Z.min())
    again = tuning.random_search_best(Z, 5, 300, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(best, again)
    everything = tuning.random_search_best(Z, Z.size, 3, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(everything, Z.min())
    # the probability of missing the best cell with 5 of 24 draws is 19/24
    missed = (best > Z.min()).mean()
    assert missed == pytest.approx(19 / 24, abs=0.07)


def test_random_beats_a_grid_when_only_one_hyperparameter_matters():
    # the loss depends on the row only, with its minimum on a row no 3-row grid of stride 4 hits
    rows = np.abs(np.arange(13) - 7.0) + 0.1
    Z = np.repeat(rows[:, None], 7, axis=1)
    grid = tuning.grid_search_best(Z, 3)
    random = tuning.random_search_best(Z, 9, 500, generator=torch.Generator().manual_seed(0))
    assert np.median(random) < np.median(grid)


@pytest.mark.parametrize("call", [
    lambda: tuning.grid_search_best(np.ones(5), 2),
    lambda: tuning.grid_search_best(np.ones((2, 5)), 3),
    lambda: tuning.grid_search_best(np.ones((4, 4)), 0),
    lambda: tuning.random_search_best(np.ones(5), 2, 1),
    lambda: tuning.random_search_best(np.ones((2, 2)), 5, 1),
    lambda: tuning.random_search_best(np.ones((2, 2)), 2, 0),
])
def test_search_helpers_reject_bad_input(call):
    with pytest.raises(ValueError):
        call()


def test_probability_better_counts_ties_half():
    assert tuning.probability_better([1, 2], [3, 4]) == 1.0
    assert tuning.probability_better([3, 4], [1, 2]) == 0.0
    assert tuning.probability_better([1, 2, 3], [1, 2, 3]) == 0.5
    assert tuning.probability_better([1.0], [1.0, 2.0]) == 0.75
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(200)
    assert tuning.probability_better(a, b) + tuning.probability_better(b, a) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tuning.probability_better([], [1.0])
    with pytest.raises(ValueError):
        tuning.probability_better([np.nan], [1.0])
